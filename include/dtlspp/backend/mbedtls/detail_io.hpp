// SPDX-License-Identifier: MIT
// One mbedtls_ssl_context plus the state its I/O and timer callbacks read.
//
// mbedTLS keeps raw pointers to its callbacks' context (mbedtls_ssl_set_bio,
// mbedtls_ssl_set_timer_cb) and to its mbedtls_ssl_config, so everything
// here lives at one heap address for its whole life: a session or listener
// owns it through a unique_ptr and moving them moves only that pointer.
//
// The callbacks never touch a socket or a clock. During each backend call
// an io_binding points them at that call's datagram_io: receive takes its
// one datagram, send appends to its queue, the timer reads its `now`. So
// mbedTLS runs on whatever clock the caller uses, virtual time included.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/backend/mbedtls/detail_srtp.hpp>

#include <mbedtls/ssl.h>

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

namespace dtlspp::detail::mbedtls {

struct ssl_state {
    // Keeps the mbedtls_ssl_config (and the DRBG, certificates and key it
    // points to) alive for as long as `ssl` refers to it: mbedtls_ssl_free
    // runs in the destructor body, before any member is destroyed, so the
    // context is released only after the ssl context is gone.
    std::shared_ptr<const void> context;

    mbedtls_ssl_context ssl;
    // Our Connection ID, when one is asked for (RFC 9146): the bytes peers
    // put in the records they send us. Possibly empty while enabled.
    std::vector<unsigned char> own_connection_id;
    bool connection_id_enabled = false;
    // This session's secrets for RFC 5705 export (detail_srtp.hpp).
    exporter_secrets exporter;

    // Bound for the duration of one backend call (io_binding).
    datagram_io* io = nullptr;
    datagram_queue* sink = nullptr;
    // The last `now` seen, for a timer callback outside any call (for
    // example from mbedtls_ssl_session_reset, which cancels the timer).
    time_point now{};

    // mbedtls_ssl_set_timer_t: two deadlines, or none when cancelled.
    std::optional<time_point> intermediate_deadline;
    std::optional<time_point> final_deadline;
    // The retransmission timeout cap (config::max_retransmission_timeout),
    // applied here rather than through mbedTLS's hs_timeout_max: mbedTLS
    // gives up the handshake once its timer has reached that maximum, so
    // with a cap of 60 s it would end a handshake on its own schedule. The
    // endpoint's handshake deadline is the one bound on every stack.
    std::chrono::milliseconds timer_cap{60000};

    // Datagrams a call was given but mbedTLS did not read during it (it was
    // still returning records from an earlier datagram, or it took the
    // expired-timer branch first). The concept hands each datagram over
    // once, so they wait here for the next receive callback. A vector, not
    // a deque: it is empty nearly always, and an empty std::deque already
    // holds a 576-byte block (libstdc++) in every session.
    std::vector<std::vector<std::byte>> stash;
    static constexpr std::size_t stash_limit = 16;

    // max_udp_payload, enforced here because the 2.28 client ignores its
    // MTU for the ClientHello: it sends it whole, never fragmented,
    // whatever mbedtls_ssl_set_mtu() says (observed: a 397-byte ClientHello
    // at MTU 256, with the debug line "Still 15835 bytes available in
    // current datagram"). A larger datagram is refused, not sent, and its
    // size is kept for the error message.
    std::size_t max_datagram = 0;
    std::size_t refused_size = 0;
    // Why a callback failed, for last_failure(): mbedTLS only sees its error
    // code. A fixed text, so recording it allocates nothing.
    const char* callback_failure = nullptr;

    ssl_state() { mbedtls_ssl_init(&ssl); }
    ~ssl_state() { mbedtls_ssl_free(&ssl); }
    ssl_state(const ssl_state&) = delete;
    ssl_state& operator=(const ssl_state&) = delete;

    time_point current_time() const noexcept { return io ? io->now : now; }

    // mbedtls_ssl_send_t. A DTLS send callback must take the whole datagram
    // or fail (ssl.h: with datagram transport a partial write is an error).
    // The queue takes it unless it cannot allocate; no exception may unwind
    // through mbedTLS's frames, so that becomes MBEDTLS_ERR_SSL_ALLOC_FAILED.
    static int send(void* self, const unsigned char* data, std::size_t length) noexcept
    {
        auto& state = *static_cast<ssl_state*>(self);
        if (!state.sink) return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
        if (state.max_datagram != 0 && length > state.max_datagram) {
            state.refused_size = length;
            return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
        }
        try {
            state.sink->push(std::as_bytes(std::span(data, length)));
        } catch (const std::bad_alloc&) {
            state.callback_failure = "out of memory queueing an outgoing datagram";
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        } catch (...) {
            state.callback_failure = "exception while queueing an outgoing datagram";
            return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
        }
        return static_cast<int>(length);
    }

    // mbedtls_ssl_recv_t: one datagram per call, or WANT_READ when there is
    // none (the non-blocking convention of ssl.h).
    // Nothing here allocates: a stashed datagram is moved out, not copied.
    static int receive(void* self, unsigned char* buffer, std::size_t capacity) noexcept
    {
        auto& state = *static_cast<ssl_state*>(self);
        for (;;) {
            std::vector<std::byte> stashed;
            std::span<const std::byte> datagram;
            if (!state.stash.empty()) {
                stashed = std::move(state.stash.front());
                state.stash.erase(state.stash.begin()); // at most stash_limit moves, no allocation
                datagram = stashed;
            } else if (!state.io || !state.io->take_input(datagram)) {
                return MBEDTLS_ERR_SSL_WANT_READ;
            }
            // mbedTLS offers the rest of its input buffer
            // (MBEDTLS_SSL_IN_CONTENT_LEN plus record overhead). A larger
            // datagram cannot hold a valid record for it; truncating would
            // only turn it into garbage, so it is dropped like any UDP loss.
            if (datagram.size() > capacity || datagram.empty()) continue;
            std::memcpy(buffer, datagram.data(), datagram.size());
            return static_cast<int>(datagram.size());
        }
    }

    // mbedtls_ssl_set_timer_t: fin_ms == 0 cancels (ssl.h).
    static void set_timer(void* self, std::uint32_t intermediate_ms, std::uint32_t final_ms) noexcept
    {
        auto& state = *static_cast<ssl_state*>(self);
        if (final_ms == 0) {
            state.intermediate_deadline.reset();
            state.final_deadline.reset();
            return;
        }
        const auto start = state.current_time();
        const auto final_delay = std::min(std::chrono::milliseconds(final_ms), state.timer_cap);
        const auto intermediate_delay = std::min(std::chrono::milliseconds(intermediate_ms), final_delay);
        state.intermediate_deadline = start + intermediate_delay;
        state.final_deadline = start + final_delay;
    }

    // mbedtls_ssl_get_timer_t: -1 cancelled, 0 none expired, 1 the
    // intermediate delay passed, 2 the final one (ssl.h).
    static int get_timer(void* self) noexcept
    {
        auto& state = *static_cast<ssl_state*>(self);
        if (!state.final_deadline) return -1;
        const auto now = state.current_time();
        if (now >= *state.final_deadline) return 2;
        if (state.intermediate_deadline && now >= *state.intermediate_deadline) return 1;
        return 0;
    }
};

// Points a state's callbacks at one call's datagram_io, and unbinds them
// when the call returns. With `keep_unread`, a datagram mbedTLS did not read
// is stashed for the next call instead of being lost.
class io_binding {
public:
    io_binding(ssl_state& state, datagram_io& io, datagram_queue* sink, bool keep_unread) noexcept
        : state_(state), io_(io), keep_unread_(keep_unread)
    {
        state_.io = &io;
        state_.sink = sink;
        state_.now = io.now;
        // Keys derived during this call are this state's (detail_srtp.hpp).
        previous_secrets_ = std::exchange(capturing_secrets, &state.exporter);
    }
    ~io_binding()
    {
        if (keep_unread_ && !io_.input.empty() && state_.stash.size() < ssl_state::stash_limit) {
            // Copying allocates, and a destructor must not throw (it would
            // end the program). A datagram that cannot be kept is lost like
            // any UDP datagram, and DTLS retransmission recovers from that.
            try {
                state_.stash.emplace_back(io_.input.begin(), io_.input.end());
            } catch (...) {
            }
        }
        io_.input = {};
        state_.io = nullptr;
        state_.sink = nullptr;
        capturing_secrets = previous_secrets_;
    }
    io_binding(const io_binding&) = delete;
    io_binding& operator=(const io_binding&) = delete;

    // Whether a received datagram is still waiting to be read by mbedTLS.
    bool input_waiting() const noexcept { return !io_.input.empty() || !state_.stash.empty(); }

private:
    ssl_state& state_;
    datagram_io& io_;
    bool keep_unread_;
    exporter_secrets* previous_secrets_ = nullptr;
};

} // namespace dtlspp::detail::mbedtls
