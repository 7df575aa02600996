// SPDX-License-Identifier: MIT
// One WOLFSSL object plus the state its I/O callbacks and dtlspp's timer
// read.
//
// wolfSSL keeps raw pointers to its callbacks' contexts (wolfSSL_SetIOReadCtx,
// wolfSSL_SetIOWriteCtx), so everything here lives at one heap address: a
// session or listener owns it through a unique_ptr and moving them moves only
// that pointer.
//
// The callbacks never touch a socket. During each backend call an io_binding
// points them at that call's datagram_io: receive takes its one datagram,
// send appends to its queue, and wolfSSL's clock reads its `now`.
// wolfSSL's retransmission timer is the application's in non-blocking DTLS
// (wolfSSL_dtls_got_timeout), so the schedule lives here, on the caller's
// clock.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>

#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <utility>
#include <vector>

// The clock wolfSSL reads during a call (subprojects/packagefiles/wolfssl/
// dtlspp/dtlspp_wolfssl_clock.c, built into the wrap's wolfSSL): the
// caller's time, in milliseconds.
extern "C" void dtlspp_wolfssl_set_time_ms(long long ms);
extern "C" void dtlspp_wolfssl_clear_time(void);

namespace dtlspp::detail::wolfssl {

struct ssl_state {
    // Keeps the WOLFSSL_CTX (and what it points to) alive for as long as
    // `ssl` refers to it: wolfSSL_free runs in the destructor body, before
    // any member is destroyed.
    std::shared_ptr<const void> context;
    WOLFSSL* ssl = nullptr;

    // Bound for the duration of one backend call (io_binding).
    datagram_io* io = nullptr;
    datagram_queue* sink = nullptr;

    // Datagrams a call was given but wolfSSL did not read during it. The
    // concept hands each datagram over once, so they wait here.
    std::vector<std::vector<std::byte>> stash;
    static constexpr std::size_t stash_limit = 16;

    // max_udp_payload: a larger datagram is refused, not sent, and its size
    // kept for the error message.
    std::size_t max_datagram = 0;
    std::size_t refused_size = 0;
    // Why a callback failed, for last_failure(): wolfSSL only sees its error
    // code.
    const char* callback_failure = nullptr;
    // Datagrams sent since the counter was last read: tells a new flight
    // (the timer restarts) from a quiet call.
    std::size_t sent = 0;
    bool sent_any = false;

    // The retransmission timer (RFC 6347 §4.2.4.1, RFC 9147 §5.8): wolfSSL
    // resends when told the timer expired; when is dtlspp's business.
    std::chrono::milliseconds initial_timeout{1000};
    std::chrono::milliseconds max_timeout{60000};
    std::chrono::milliseconds timeout{1000};
    std::optional<time_point> deadline;
    // DTLS 1.3's short timer (a quarter of the long one): wolfSSL holds
    // part of a flight and wants to ACK what came, so the peer resends only
    // the rest (RFC 9147 §7.1).
    std::optional<time_point> ack_deadline;

    // Our Connection ID, when one is asked for.
    std::vector<unsigned char> own_connection_id;
    // Listeners: the cookie period whose key wolfSSL holds.
    std::optional<std::int64_t> cookie_period;

    ssl_state() = default;
    ~ssl_state()
    {
        if (ssl) wolfSSL_free(ssl);
    }
    ssl_state(const ssl_state&) = delete;
    ssl_state& operator=(const ssl_state&) = delete;

    // CallbackIOSend. A DTLS send callback must take the whole datagram or
    // fail; no exception may unwind through wolfSSL's frames.
    static int send(WOLFSSL*, char* data, int length, void* self) noexcept
    {
        auto& state = *static_cast<ssl_state*>(self);
        if (!state.sink || length < 0) return WOLFSSL_CBIO_ERR_GENERAL;
        const auto size = static_cast<std::size_t>(length);
        if (state.max_datagram != 0 && size > state.max_datagram) {
            state.refused_size = size;
            return WOLFSSL_CBIO_ERR_GENERAL;
        }
        try {
            state.sink->push(std::as_bytes(std::span(data, size)));
        } catch (const std::bad_alloc&) {
            state.callback_failure = "out of memory queueing an outgoing datagram";
            return WOLFSSL_CBIO_ERR_GENERAL;
        } catch (...) {
            state.callback_failure = "exception while queueing an outgoing datagram";
            return WOLFSSL_CBIO_ERR_GENERAL;
        }
        ++state.sent;
        state.sent_any = true;
        return length;
    }

    // CallbackIORecv: one datagram per call, or WANT_READ when there is none.
    static int receive(WOLFSSL*, char* buffer, int capacity, void* self) noexcept
    {
        auto& state = *static_cast<ssl_state*>(self);
        for (;;) {
            std::vector<std::byte> stashed;
            std::span<const std::byte> datagram;
            if (!state.stash.empty()) {
                stashed = std::move(state.stash.front());
                state.stash.erase(state.stash.begin());
                datagram = stashed;
            } else if (!state.io || !state.io->take_input(datagram)) {
                return WOLFSSL_CBIO_ERR_WANT_READ;
            }
            // wolfSSL offers its MTU plus WOLFSSL_DTLS_MTU_ADDITIONAL_READ_BUFFER;
            // a larger datagram cannot be read whole, and a truncated one is
            // garbage, so it is dropped like any UDP loss.
            if (capacity < 0 || datagram.empty() || datagram.size() > static_cast<std::size_t>(capacity)) continue;
            std::memcpy(buffer, datagram.data(), datagram.size());
            return static_cast<int>(datagram.size());
        }
    }

    // After a call that may have sent: a new flight restarts the timer at
    // its initial value (RFC 6347 §4.2.4.1).
    void note_sent(time_point now) noexcept
    {
        if (std::exchange(sent, 0) == 0) return;
        timeout = initial_timeout;
        deadline = now + timeout;
    }

    // Whether wolfSSL still waits for something that a timer must chase:
    // during the handshake always; after it, on DTLS 1.3, while a flight of
    // ours (the client's Finished, a KeyUpdate) waits for its ACK.
    void settle_timer(time_point now, bool handshaking) noexcept
    {
        bool waiting = handshaking;
#if defined(WOLFSSL_DTLS13)
        if (!waiting && wolfSSL_dtls13_has_pending_msg(ssl)) waiting = true;
        if (waiting && wolfSSL_dtls13_use_quick_timeout(ssl)) {
            if (!ack_deadline) ack_deadline = now + std::max(timeout / 4, std::chrono::milliseconds(1));
        } else {
            ack_deadline.reset();
        }
#endif
        if (!waiting) {
            deadline.reset();
            ack_deadline.reset();
        } else if (!deadline) {
            deadline = now + timeout;
        }
    }

    std::optional<time_point> next_deadline() const noexcept
    {
        if (ack_deadline && (!deadline || *ack_deadline < *deadline)) return ack_deadline;
        return deadline;
    }
};

// Points a state's callbacks at one call's datagram_io, and unbinds them
// when the call returns. With `keep_unread`, a datagram wolfSSL did not read
// is stashed for the next call instead of being lost.
class io_binding {
public:
    io_binding(ssl_state& state, datagram_io& io, datagram_queue* sink, bool keep_unread) noexcept
        : state_(state), io_(io), keep_unread_(keep_unread)
    {
        state_.io = &io;
        state_.sink = sink;
        dtlspp_wolfssl_set_time_ms(
            std::chrono::duration_cast<std::chrono::milliseconds>(io.now.time_since_epoch()).count());
    }
    ~io_binding()
    {
        dtlspp_wolfssl_clear_time();
        if (keep_unread_ && !io_.input.empty() && state_.stash.size() < ssl_state::stash_limit) {
            try {
                state_.stash.emplace_back(io_.input.begin(), io_.input.end());
            } catch (...) {
                // Lost like any UDP datagram; retransmission recovers.
            }
        }
        io_.input = {};
        state_.io = nullptr;
        state_.sink = nullptr;
    }
    io_binding(const io_binding&) = delete;
    io_binding& operator=(const io_binding&) = delete;

    bool input_waiting() const noexcept { return !io_.input.empty() || !state_.stash.empty(); }

private:
    ssl_state& state_;
    datagram_io& io_;
    bool keep_unread_;
};

} // namespace dtlspp::detail::wolfssl
