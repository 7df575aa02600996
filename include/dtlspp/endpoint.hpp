// SPDX-License-Identifier: MIT
// dtlspp::endpoint<Backend>: one DTLS 1.2 association, sans-I/O.
//
// Inputs: a received datagram, the current time, application data, close.
// Outputs: datagrams to send, application data received, the next deadline,
// the state, a failure (std::error_code + text) and counters. It owns no
// socket and never sleeps: a small loop elsewhere (udp_socket, server,
// blocking_client, the in-memory link in tests) moves the datagrams.
//
// The rules that hold on every stack live here, not in the adapters:
// - the handshake completes or fails with errc::handshake_timeout by
//   config::handshake_deadline: it never loops;
// - a datagram that is malformed, oversized, from a wrong epoch, of a
//   content type dtlspp never negotiates, or that holds a record whose
//   length no valid record of its epoch can have is dropped and counted
//   before the stack sees it, and the association goes on (admit());
// - a client's ClientHello must fit one datagram (mbedTLS 2.28 servers cannot
//   reassemble a fragmented one), else errc::mtu_too_small;
// - counters are computed from the wire (trace.hpp), so they mean the same
//   on every backend.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/detail/admission.hpp>
#include <dtlspp/detail/checks.hpp>
#include <dtlspp/detail/keying_material.hpp>
#include <dtlspp/error.hpp>
#include <dtlspp/srtp.hpp>
#include <dtlspp/trace.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace dtlspp {

enum class endpoint_state { handshaking, open, closed, failed };

inline std::string_view to_string(endpoint_state s) noexcept
{
    switch (s) {
    case endpoint_state::handshaking: return "handshaking";
    case endpoint_state::open: return "open";
    case endpoint_state::closed: return "closed";
    case endpoint_state::failed: return "failed";
    }
    return "unknown";
}

struct endpoint_counters {
    std::uint64_t datagrams_in = 0;
    std::uint64_t datagrams_out = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t flights_out = 0;          // handshake flights sent, retransmissions included
    std::uint64_t retransmissions = 0;      // flights that re-sent only what was sent before
    std::uint64_t dropped_malformed = 0;    // unparseable record framing
    std::uint64_t dropped_oversized = 0;    // larger than any DTLS datagram can be
    std::uint64_t dropped_wrong_epoch = 0;  // epoch other than 0 or 1 (no renegotiation)
    std::uint64_t dropped_not_open = 0;     // arrived after close or failure
    std::uint64_t dropped_bad_length = 0;   // a protected record shorter than its cipher's nonce + tag, or
                                            // any record longer than its epoch allows
    std::uint64_t dropped_unexpected_type = 0; // a content type never negotiated (heartbeat)
    std::uint64_t dropped_unknown_connection_id = 0; // a Connection ID record with a CID that is not ours
    std::uint64_t application_messages_in = 0;
    std::uint64_t application_messages_out = 0;
    std::uint64_t application_bytes_in = 0;
    std::uint64_t application_bytes_out = 0;
    std::size_t largest_datagram_out = 0;
    std::chrono::nanoseconds handshake_duration{0};

    std::uint64_t dropped() const noexcept
    {
        std::uint64_t total = 0;
        for_each_drop([&](std::string_view, std::uint64_t n) { total += n; });
        return total;
    }

    // Calls f(name, count) for every drop counter, so a report (the echo
    // server's summary, a log line) lists each reason without naming them.
    template <class F>
    void for_each_drop(F&& f) const
    {
        f("malformed", dropped_malformed);
        f("oversized", dropped_oversized);
        f("wrong_epoch", dropped_wrong_epoch);
        f("not_open", dropped_not_open);
        f("bad_length", dropped_bad_length);
        f("unexpected_type", dropped_unexpected_type);
        f("unknown_connection_id", dropped_unknown_connection_id);
    }
};

// The largest datagram dtlspp hands to a stack: one maximal record (2^14
// plaintext + 2048 expansion, RFC 6347 §4.1) plus its header. Anything
// bigger cannot be valid DTLS 1.2 and is dropped as oversized.
inline constexpr std::size_t max_datagram_in = max_udp_payload_limit + record_header_size;

// What a trace needs to read a datagram besides its bytes: the length of
// the Connection ID its records carry (RFC 9146), which is not on the wire.
// 0 while none is negotiated, or while the peer's is not known yet (a
// Connection ID record then reads as one whose framing is unknown).
struct wire_framing {
    std::size_t connection_id_length = 0;
};

// Called with every datagram in and out, e.g. describe_datagram for a
// capture-like log, or a pcap_writer. Takes either
// f(direction, datagram) or f(direction, datagram, const wire_framing&).
class trace_hook {
public:
    trace_hook() = default;
    trace_hook(std::nullptr_t) {}
    template <class F>
        requires std::invocable<F&, direction, std::span<const std::byte>, const wire_framing&>
    trace_hook(F f) : hook_(std::move(f))
    {
    }
    template <class F>
        requires(std::invocable<F&, direction, std::span<const std::byte>> &&
                 !std::invocable<F&, direction, std::span<const std::byte>, const wire_framing&>)
    trace_hook(F f)
    {
        // An empty std::function or a null function pointer stays an empty
        // hook (a lambda is never empty).
        if constexpr (is_nullable<F>::value) {
            if (!f) return;
        }
        hook_ = [f = std::move(f)](direction d, std::span<const std::byte> datagram, const wire_framing&) mutable {
            f(d, datagram);
        };
    }

    explicit operator bool() const noexcept { return static_cast<bool>(hook_); }
    void operator()(direction d, std::span<const std::byte> datagram, const wire_framing& framing = {}) const
    {
        hook_(d, datagram, framing);
    }

private:
    template <class T>
    struct is_nullable : std::is_pointer<T> {};
    template <class R, class... A>
    struct is_nullable<std::function<R(A...)>> : std::true_type {};

    std::function<void(direction, std::span<const std::byte>, const wire_framing&)> hook_;
};

template <backend Backend>
class endpoint {
public:
    using context_type = typename Backend::context;
    using session_type = typename Backend::session;
    using trace_hook = dtlspp::trace_hook;

    // A client: builds a context from the config (Backend::make_context)
    // and queues the ClientHello (SSL_do_handshake / mbedtls_ssl_handshake);
    // drain() hands it out. Returns nullopt with the reason in `f`; never
    // throws.
    //
    // Errors (f.code): config_invalid (the config, or a server config);
    // the backend's load errors (certificate, key, CA); mtu_too_small when
    // the ClientHello cannot fit max_udp_payload; out_of_memory or
    // internal_error from the stack.
    [[nodiscard]] static std::optional<endpoint> connect(const config& c, time_point now, failure& f)
    {
        auto ctx = Backend::make_context(c, f);
        if (!ctx) return std::nullopt;
        return connect(std::move(ctx), now, f);
    }

    // As above; throws dtlspp::error with the failure instead.
    [[nodiscard]] static endpoint connect(const config& c, time_point now)
    {
        failure f;
        auto e = connect(c, now, f);
        if (!e) throw dtlspp::error(f);
        return std::move(*e);
    }

    // A client on a shared context (many associations, one config). Errors
    // as connect(c, now, f), less the context's own.
    [[nodiscard]] static std::optional<endpoint> connect(std::shared_ptr<context_type> ctx, time_point now,
                                                         failure& f, trace_hook trace = {})
    {
        if ((f = detail::check_role(ctx->settings(), role::client, "connect"))) return std::nullopt;
        auto s = Backend::connect(*ctx, f);
        if (!s) return std::nullopt;
        endpoint e(std::move(ctx), std::move(*s), now);
        e.trace_ = std::move(trace);
        e.advance_handshake();
        e.check_client_hello();
        e.after_call();
        if (e.state_ == endpoint_state::failed) {
            f = e.failure_;
            return std::nullopt;
        }
        return e;
    }

    // A server-side association whose cookie verified (server<Backend> calls
    // this). `first_flight` is what the stack queued while accepting;
    // `verified_hello` the datagram whose ClientHello carried the cookie.
    static endpoint adopt(std::shared_ptr<context_type> ctx, session_type s, time_point now,
                          const datagram_queue& first_flight, trace_hook trace = {},
                          std::span<const std::byte> verified_hello = {})
    {
        endpoint e(std::move(ctx), std::move(s), now);
        e.trace_ = std::move(trace);
        parse_datagram(verified_hello, [&](const record_view& r) {
            if (!r.is_encrypted() && r.type == content_type::handshake)
                for (const auto& fragment : r.fragments()) e.peer_plaintext_.note_client_hello(fragment);
        });
        for (std::size_t i = 0; i < first_flight.size(); ++i) e.out_.push(first_flight[i]);
        e.account_output();
        // Some stacks answer the verified ClientHello inside the listener
        // (mbedTLS), others on the next handshake call (OpenSSL, after
        // DTLSv1_listen): one call without input covers both.
        e.advance_handshake();
        e.after_call();
        return e;
    }

    endpoint(endpoint&&) noexcept = default;
    endpoint& operator=(endpoint&&) noexcept = default;

    // Feeds one received datagram (SSL_read / mbedtls_ssl_read, and the
    // handshake calls while handshaking). Application data it carries is
    // passed to on_data(std::span<const std::byte>) before this returns; the
    // span is valid only during the call.
    //
    // Reports no error itself: a datagram that is malformed, replayed,
    // unauthenticated or not for this association is dropped and counted
    // (counters(), endpoint_counters::for_each_drop) and changes nothing. A
    // handshake failure or a fatal alert from the peer moves state() to
    // failed with the reason in last_failure() (verify_failed,
    // handshake_failed, peer_alert, ...); close_notify moves it to closed.
    template <class OnData>
    void receive(std::span<const std::byte> datagram, time_point now, OnData&& on_data)
    {
        const state_report report(*this);
        bind(now);
        ++counters_.datagrams_in;
        counters_.bytes_in += datagram.size();
        if (trace_) trace_(direction::in, datagram, {connection_id_length(direction::in)});
        if (state_ == endpoint_state::closed || state_ == endpoint_state::failed) {
            ++counters_.dropped_not_open;
            return;
        }
        if (!admit(datagram)) return;

        io_.input = datagram;
        if (state_ == endpoint_state::handshaking) advance_handshake();
        if (state_ == endpoint_state::open) drain_application_data(on_data);
        io_.input = {};
        after_call();
    }

    void receive(std::span<const std::byte> datagram, time_point now)
    {
        receive(datagram, now, [](std::span<const std::byte>) {});
    }

    // Call when now >= next_deadline(): retransmits (DTLSv1_handle_timeout /
    // the mbedTLS timer callbacks), or fails the handshake with
    // handshake_timeout once config::handshake_deadline has passed. Like
    // receive(), it reports through state() and last_failure().
    void on_timeout(time_point now)
    {
        const state_report report(*this);
        bind(now);
        if (state_ == endpoint_state::closed || state_ == endpoint_state::failed) return;
        if (state_ == endpoint_state::handshaking && now >= handshake_deadline_) {
            fail_handshake_deadline();
            return;
        }
        if (session_.handle_timeout(io_) == timeout_result::failed) {
            fail(session_.last_failure());
            return;
        }
        // mbedTLS may finish a handshake step from inside its timer path.
        if (state_ == endpoint_state::handshaking) advance_handshake();
        after_call();
    }

    // Encrypts one message as one record in one datagram (SSL_write /
    // mbedtls_ssl_write) and queues the datagram; drain() hands it out.
    //
    // Errors: not_open before the handshake completed or after close or
    // failure; message_too_large above max_message_size() (nothing is sent:
    // dtlspp never splits a message or exceeds max_udp_payload); a stack
    // failure (internal_error, out_of_memory), which also fails the
    // association (last_failure() has the stack's text).
    void send(std::span<const std::byte> data, time_point now, std::error_code& ec)
    {
        const state_report report(*this);
        bind(now);
        ec.clear();
        // Refuse rather than let the stack build a datagram over the MTU
        // (OpenSSL would) or split the message (mbedTLS would not).
        if (const auto refusal = detail::check_write(state_ == endpoint_state::open, data.size(),
                                                     state_ == endpoint_state::open ? session_.max_record_payload() : 0)) {
            ec = refusal.code;
            return;
        }
        if (session_.write(io_, data) == step::failed) {
            fail(session_.last_failure());
            ec = failure_.code;
            return;
        }
        ++counters_.application_messages_out;
        counters_.application_bytes_out += data.size();
        after_call();
    }

    // As above; throws dtlspp::error instead.
    void send(std::span<const std::byte> data, time_point now)
    {
        std::error_code ec;
        send(data, now, ec);
        if (ec) throw dtlspp::error(ec == failure_.code ? failure_ : failure{ec, {}});
    }

    // Queues close_notify (SSL_shutdown / mbedtls_ssl_close_notify); the
    // association is closed afterwards. Never fails: a second call, or one
    // after a failure, does nothing.
    void close(time_point now)
    {
        const state_report report(*this);
        bind(now);
        if (state_ == endpoint_state::open || state_ == endpoint_state::handshaking) {
            session_.close(io_);
            state_ = endpoint_state::closed;
            after_call();
        }
    }

    // Hands every queued datagram to send(std::span<const std::byte>) and
    // empties the queue. Each span is valid only during its call: copy it,
    // or send it before returning. Never fails itself; an exception from
    // `send_datagram` leaves every datagram queued, those already handed
    // out included.
    template <class Send>
    void drain(Send&& send_datagram)
    {
        for (std::size_t i = 0; i < out_.size(); ++i) send_datagram(out_[i]);
        out_.clear();
        counted_ = 0;
        // The queue grew to hold whole handshake flights; once the
        // handshake is over it holds the datagrams of one call, so its
        // memory is given back once and regrows only to what that needs.
        if (!queue_released_ && state_ != endpoint_state::handshaking) {
            out_.release();
            queue_released_ = true;
        }
    }

    // The datagrams drain() would hand out, for an I/O loop that looks
    // before it sends (to size a batch, say). Read-only: drain() empties it.
    const datagram_queue& pending() const noexcept { return out_; }

    // Moves every queued datagram into `into` without copying a byte: the two
    // queues trade buffers, so what `into` held is dropped and its memory
    // holds this endpoint's next datagrams. For an asynchronous send, which
    // must keep the datagrams alive until it completes; drain() serves a
    // synchronous one. Taking the datagrams counts as sending them.
    void take_pending(datagram_queue& into) noexcept
    {
        into.clear();
        std::swap(out_, into);
        counted_ = 0;
    }

    datagram_queue take_pending() noexcept
    {
        datagram_queue taken;
        take_pending(taken);
        return taken;
    }

    // When on_timeout must be called next; nullopt when nothing is due.
    std::optional<time_point> next_deadline() const noexcept
    {
        if (state_ == endpoint_state::closed || state_ == endpoint_state::failed) return std::nullopt;
        std::optional<time_point> due = session_deadline_;
        if (state_ == endpoint_state::handshaking) due = due ? std::min(*due, handshake_deadline_) : handshake_deadline_;
        return due;
    }

    [[nodiscard]] endpoint_state state() const noexcept { return state_; }
    bool is_open() const noexcept { return state_ == endpoint_state::open; }
    std::error_code error() const noexcept { return failure_.code; }
    const failure& last_failure() const noexcept { return failure_; }
    const endpoint_counters& counters() const noexcept { return counters_; }
    // The largest message send() takes: one record's payload in
    // max_udp_payload, for the negotiated cipher suite.
    std::size_t max_message_size() const { return session_.max_record_payload(); }
    std::string cipher_suite() const { return session_.cipher_suite(); }
    // The DTLS version negotiated (to_string() gives "DTLS 1.3"); empty
    // until the handshake is over.
    std::optional<dtls_version> version() const
    {
        if (state_ == endpoint_state::handshaking) return std::nullopt;
        return session_.protocol_version();
    }
    // The Connection IDs (RFC 9146); negotiated is known once open. While
    // handshaking, `own` is the one this side asked for.
    const connection_ids& connection_id() const noexcept { return connection_ids_; }
    // The Connection ID length of records travelling in direction `d`, as a
    // trace needs it (wire_framing).
    std::size_t connection_id_length(direction d) const noexcept
    {
        if (d == direction::in) return connection_ids_.own.size();
        if (connection_ids_.negotiated) return connection_ids_.peer.size();
        // Our Finished already carries the peer's CID: while handshaking,
        // the length the ServerHello asked for (a client reads it there).
        return state_ == endpoint_state::handshaking ? peer_cid_length_in_hello_ : 0;
    }
    const dtlspp::config& settings() const noexcept { return context_->settings(); }
    // The stack's own session object (Backend::session: an SSL* owner on
    // OpenSSL, the mbedtls_ssl_context on mbedTLS), for what dtlspp does not
    // wrap. Reading from it is safe; reading or writing records through it
    // bypasses dtlspp's queue, accounting and checks, and is not supported.
    session_type& native_session() noexcept { return session_; }
    void set_trace(trace_hook hook) { trace_ = std::move(hook); }

    // Called as hook(from, to) when a call to receive, on_timeout, send or
    // close changed state(), once, as that call returns: the datagrams it
    // queued are in pending() and last_failure() says why it failed or
    // closed. So a driver learns of open, closed and failed without asking
    // state() after every call. The hook may call this endpoint (send, close,
    // take_pending); an exception it throws leaves the call that ran it. An
    // empty hook removes it.
    using state_hook = std::function<void(endpoint_state from, endpoint_state to)>;
    void set_state_hook(state_hook hook) { state_hook_ = std::move(hook); }

    // DTLS-SRTP and keying material export, once the association is open
    // (backend/concept.hpp, keying_material_backend).

    // The SRTP protection profile negotiated (RFC 5764 §4.1.1); nullopt
    // unless open, without config::srtp_profiles, or when the two sides
    // shared no profile (the handshake then completes without SRTP). Calls
    // SSL_get_selected_srtp_profile (OpenSSL) or
    // mbedtls_ssl_get_dtls_srtp_negotiation_result (mbedTLS).
    std::optional<dtlspp::srtp_profile> srtp_profile() const
        requires keying_material_backend<Backend>
    {
        if (state_ != endpoint_state::open) return std::nullopt;
        return session_.srtp_profile();
    }

    // Fills `out` with keying material exported under `label` (RFC 5705
    // §4): the same bytes on both sides of the association, and different
    // ones for another label or context. `context` nullopt means no context,
    // which RFC 5705 distinguishes from an empty one. On error `out` is
    // zeroed and f says why:
    // - errc::not_open: the handshake is not complete, or the association
    //   closed or failed;
    // - errc::export_refused: a reserved label ("client finished", "server
    //   finished", "master secret", "extended master secret", "key
    //   expansion", or one starting so), a label with a NUL byte, a context
    //   over 65535 bytes, `out` empty or over 8160 bytes, or a stack built
    //   without export (backend_traits::srtp.exports_keying_material);
    // - errc::internal: the stack's call failed.
    // Calls SSL_export_keying_material (OpenSSL) or mbedtls_ssl_tls_prf over
    // the secrets mbedTLS's key export callback handed over
    // (backend/mbedtls/detail_srtp.hpp).
    void export_keying_material(std::string_view label, std::optional<std::span<const std::byte>> context,
                                std::span<std::byte> out, failure& f) const
        requires keying_material_backend<Backend>
    {
        f = {};
        if (state_ != endpoint_state::open)
            f = make_failure(errc::not_open, std::string("export_keying_material: the association is ") +
                                                 std::string(to_string(state_)) + ", not open");
        else if (auto refusal = detail::check_export(label, context, out.size()))
            f = std::move(refusal);
        else
            f = session_.export_keying_material(label, context, out);
        if (f) detail::wipe(out);
    }

    void export_keying_material(std::string_view label, std::optional<std::span<const std::byte>> context,
                                std::span<std::byte> out, std::error_code& ec) const
        requires keying_material_backend<Backend>
    {
        failure f;
        export_keying_material(label, context, out, f);
        ec = f.code;
    }

    // Throws dtlspp::error with the errors above.
    void export_keying_material(std::string_view label, std::optional<std::span<const std::byte>> context,
                                std::span<std::byte> out) const
        requires keying_material_backend<Backend>
    {
        failure f;
        export_keying_material(label, context, out, f);
        if (f) throw dtlspp::error(f);
    }

    // The SRTP master keys and salts (RFC 5764 §4.2): 2 × (key + salt)
    // bytes exported under "EXTRACTOR-dtls_srtp" with no context, split
    // into the client's and the server's, at the negotiated profile's
    // lengths (dtlspp/srtp.hpp). Errors: those of export_keying_material,
    // and errc::export_refused when no SRTP profile was negotiated. Makes
    // the same native calls.
    srtp_keying_material srtp_keys(failure& f) const
        requires keying_material_backend<Backend>
    {
        f = {};
        srtp_keying_material keys;
        const auto profile = srtp_profile();
        if (!profile) {
            f = state_ != endpoint_state::open
                    ? make_failure(errc::not_open, std::string("srtp_keys: the association is ") +
                                                       std::string(to_string(state_)) + ", not open")
                    : make_failure(errc::export_refused,
                                   "srtp_keys: no SRTP profile was negotiated (none asked for, or none in common)");
            return keys;
        }
        const auto lengths = key_lengths(*profile);
        std::vector<std::byte> block(2 * (lengths.master_key + lengths.master_salt));
        export_keying_material(srtp_exporter_label, std::nullopt, block, f);
        if (!f) keys = split_srtp_keying_material(*profile, block);
        detail::wipe(block);
        return keys;
    }

    srtp_keying_material srtp_keys(std::error_code& ec) const
        requires keying_material_backend<Backend>
    {
        failure f;
        auto keys = srtp_keys(f);
        ec = f.code;
        return keys;
    }

    // Throws dtlspp::error with the errors above.
    srtp_keying_material srtp_keys() const
        requires keying_material_backend<Backend>
    {
        failure f;
        auto keys = srtp_keys(f);
        if (f) throw dtlspp::error(f);
        return keys;
    }

private:
    endpoint(std::shared_ptr<context_type> ctx, session_type s, time_point now)
        : context_(std::move(ctx)), session_(std::move(s))
    {
        io_.output = &out_;
        bind(now);
        started_ = now;
        handshake_deadline_ = now + context_->settings().handshake_deadline;
        connection_ids_ = session_.connection_ids();
    }

    // Reports a change of state_ to the state hook when the call that made
    // it returns, however it returns; not while an exception unwinds it.
    class state_report {
    public:
        explicit state_report(endpoint& e) noexcept
            : endpoint_(e), before_(e.state_), exceptions_(std::uncaught_exceptions())
        {
        }
        state_report(const state_report&) = delete;
        state_report& operator=(const state_report&) = delete;
        ~state_report() noexcept(false)
        {
            if (std::uncaught_exceptions() > exceptions_) return;
            if (endpoint_.state_hook_ && endpoint_.state_ != before_) endpoint_.state_hook_(before_, endpoint_.state_);
        }

    private:
        endpoint& endpoint_;
        endpoint_state before_;
        int exceptions_;
    };

    // io_ points into this object, which may have moved since the last call.
    void bind(time_point now) noexcept
    {
        io_.output = &out_;
        io_.now = now;
    }

    // The pre-filter (detail/admission.hpp says each rule and why): the
    // stack only ever sees well-framed records (DTLS 1.2 of epoch 0 or 1,
    // DTLS 1.3 where it may be spoken) whose lengths and contents a valid
    // peer can send at this point of the association.
    bool admit(std::span<const std::byte> datagram)
    {
        if (datagram.size() > max_datagram_in) {
            ++counters_.dropped_oversized;
            return false;
        }
        const std::size_t shortest = minimum_protected_record();
        detail::admission_limits limits;
        limits.shortest_protected = shortest;
        limits.known_expansion = protected_minimum_;
        limits.open = state_ == endpoint_state::open;
        limits.max_plaintext = std::min(max_plaintext_record, Backend::traits.max_record_in);
        // Records carrying our CID are valid from the peer's Finished on
        // when we asked for one, and after the handshake only if it was
        // negotiated.
        limits.own_connection_id = connection_ids_.own;
        limits.connection_id_negotiated =
            !connection_ids_.own.empty() && (state_ == endpoint_state::handshaking || connection_ids_.negotiated);
        // DTLS 1.3 records: while 1.3 may still be negotiated, or once it
        // was.
        limits.dtls13 = may_speak_dtls13();
        limits.dtls13_only = limits.dtls13 && (settings().min_version == dtls_version::dtls_1_3 ||
                                               (state_ != endpoint_state::handshaking &&
                                                session_.protocol_version() == dtls_version::dtls_1_3));
        if (settings().role == role::server) limits.peer_plaintext = &peer_plaintext_;
        const auto verdict = detail::judge_datagram(datagram, limits);
        switch (verdict.drop) {
        case detail::drop_reason::none: break;
        case detail::drop_reason::malformed: ++counters_.dropped_malformed; return false;
        case detail::drop_reason::wrong_epoch: ++counters_.dropped_wrong_epoch; return false;
        case detail::drop_reason::unexpected_type: ++counters_.dropped_unexpected_type; return false;
        case detail::drop_reason::bad_length: ++counters_.dropped_bad_length; return false;
        case detail::drop_reason::unknown_connection_id: ++counters_.dropped_unknown_connection_id; return false;
        }
        if (verdict.change_cipher_spec) peer_changed_cipher_ = true;
        if (state_ == endpoint_state::handshaking)
            parse_datagram(datagram, [&](const record_view& r) {
                if (r.is_encrypted()) return;
                if (r.type == content_type::handshake && settings().role == role::server)
                    for (const auto& fragment : r.fragments()) peer_plaintext_.note(fragment);
                if (settings().role == role::client) notice_plaintext(r);
            });
        return true;
    }

    bool may_speak_dtls13() const noexcept
    {
        if constexpr (!Backend::traits.versions.dtls_1_3) {
            return false;
        } else {
            if (settings().max_version != dtls_version::dtls_1_3) return false;
            if (state_ == endpoint_state::handshaking) return true;
            return session_.protocol_version() == dtls_version::dtls_1_3;
        }
    }

    // The shortest body a protected record can have with the negotiated
    // cipher, or the bound for every offered cipher while none is known.
    std::size_t minimum_protected_record()
    {
        if (protected_minimum_ != 0) return protected_minimum_;
        const std::size_t expansion = session_.record_expansion();
        if (expansion == 0) return largest_aead_expansion;
        // The suite cannot change once the association is open (no
        // renegotiation): ask the stack no more.
        if (state_ == endpoint_state::open) protected_minimum_ = expansion;
        return expansion;
    }

    // What a client learns from the server's plaintext records while it
    // handshakes: whether a ServerHello came, and whether the server refused
    // the association at its session limit before sending one (a fatal
    // internal_error alert in answer to the ClientHello, see server.hpp).
    void notice_plaintext(const record_view& r)
    {
        if (r.is_encrypted()) return;
        if (r.type == content_type::handshake) {
            for (const auto& fragment : r.fragments())
                if (fragment.msg_type == static_cast<std::uint8_t>(handshake_type::server_hello) &&
                    !is_hello_retry_request(fragment)) {
                    seen_server_hello_ = true;
                    if (!connection_ids_.own.empty() || context_->settings().connection_id)
                        peer_cid_length_in_hello_ = connection_id_asked_in(fragment);
                }
        } else if (const auto alert = r.alert()) {
            refused_at_limit_ = !seen_server_hello_ && alert->level == 2 && alert->description == 80;
        }
    }

    // DTLS 1.3's cookie exchange: a HelloRetryRequest is a ServerHello whose
    // random is SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3). It answers
    // the first ClientHello as a HelloVerifyRequest does on 1.2, so it is
    // not yet the server's ServerHello.
    static bool is_hello_retry_request(const handshake_fragment& hello) noexcept
    {
        static constexpr std::array<std::uint8_t, 32> hrr_random{
            0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
            0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C};
        if (hello.fragment_offset != 0 || hello.body.size() < 2 + hrr_random.size()) return false;
        for (std::size_t i = 0; i < hrr_random.size(); ++i)
            if (std::to_integer<std::uint8_t>(hello.body[2 + i]) != hrr_random[i]) return false;
        return true;
    }

    // The length of the CID a whole ServerHello asks for in its
    // connection_id extension (RFC 9146 §3: extension 54, a one-byte length
    // and the CID), 0 without one. Only for the trace and the counters: the
    // stack negotiates.
    static std::size_t connection_id_asked_in(const handshake_fragment& hello) noexcept
    {
        if (!hello.is_whole_message()) return 0;
        const auto body = hello.body;
        auto byte = [&](std::size_t i) { return std::to_integer<std::size_t>(body[i]); };
        std::size_t at = 2 + 32; // server_version, random
        if (at >= body.size()) return 0;
        at += 1 + byte(at); // session_id
        at += 2 + 1;        // cipher_suite, compression_method
        if (at + 2 > body.size()) return 0;
        const std::size_t end = std::min(body.size(), at + 2 + ((byte(at) << 8) | byte(at + 1)));
        at += 2;
        while (at + 4 <= end) {
            const std::size_t type = (byte(at) << 8) | byte(at + 1);
            const std::size_t length = (byte(at + 2) << 8) | byte(at + 3);
            at += 4;
            if (at + length > end) return 0;
            if (type == 54 && length >= 1) return byte(at);
            at += length;
        }
        return 0;
    }

    void advance_handshake()
    {
        switch (session_.handshake(io_)) {
        case step::done:
            state_ = endpoint_state::open;
            counters_.handshake_duration = io_.now - started_;
            connection_ids_ = session_.connection_ids();
            break;
        case step::failed: fail_handshake(session_.last_failure()); break;
        case step::want_input: break;
        }
        account_output();
    }

    template <class OnData>
    void drain_application_data(OnData& on_data)
    {
        // One buffer per thread: a record is handed to on_data before the
        // next one is read, so no association needs a buffer of its own.
        thread_local std::array<std::byte, 16384 + 256> buffer;
        for (;;) {
            const auto r = session_.read(io_, buffer);
            if (r.status == read_result::kind::data) {
                ++counters_.application_messages_in;
                counters_.application_bytes_in += r.bytes;
                on_data(std::span<const std::byte>(buffer.data(), r.bytes));
                continue;
            }
            if (r.status == read_result::kind::closed) {
                state_ = endpoint_state::closed;
                failure_ = session_.last_failure();
            } else if (r.status == read_result::kind::failed) {
                fail(session_.last_failure());
            }
            break;
        }
    }

    // A client whose ClientHello does not fit one datagram cannot talk to
    // every server (a plain mbedTLS 2.28 server cannot reassemble it;
    // dtlspp's server reassembles one in its front door), so refuse
    // before anything is sent.
    void check_client_hello()
    {
        if (state_ == endpoint_state::failed) return;
        std::uint32_t hello_length = 0;
        bool whole = false;
        // The first datagram decides: a ClientHello split over datagrams
        // starts with a partial fragment there. Later datagrams may be
        // copies of the first (OpenSSL retransmits inside its first
        // SSL_do_handshake when its wall-clock timer already expired).
        if (!out_.empty()) {
            parse_datagram(out_[0], [&](const record_view& r) {
                for (const auto& fragment : r.fragments()) {
                    if (fragment.msg_type != static_cast<std::uint8_t>(handshake_type::client_hello)) continue;
                    hello_length = fragment.length;
                    whole = fragment.is_whole_message();
                }
            });
        }
        if (whole && out_[0].size() <= settings().max_udp_payload) return;
        fail(make_failure(errc::mtu_too_small,
                          "the ClientHello (" + std::to_string(hello_length) +
                              " bytes) does not fit one datagram of max_udp_payload " +
                              std::to_string(settings().max_udp_payload)));
        out_.clear();
        counted_ = 0;
    }

    void fail_handshake_deadline()
    {
        const auto& c = settings();
        std::string why = "no handshake within " + std::to_string(c.handshake_deadline.count()) + " ms (" +
                          std::to_string(counters_.retransmissions) + " retransmissions)";
        // A PSK mismatch looks like silence in DTLS: records that fail
        // authentication are dropped without an alert (RFC 6347 §4.1.2.7),
        // so both sides wait for a Finished that never verifies. Once the
        // cipher changed on either side with a PSK, that is the likely cause.
        if (c.psk && (sent_change_cipher_ || peer_changed_cipher_)) {
            fail(make_failure(errc::psk_mismatch,
                              why + "; the cipher changed but no Finished verified: the pre-shared keys differ"));
            return;
        }
        fail(make_failure(errc::handshake_timeout, why));
    }

    // With a PSK, a handshake record that fails authentication (the peer's
    // bad_record_mac alert, or our own MAC check on its Finished) means the
    // keys differ: report it as such on every stack, whichever side noticed.
    void fail_handshake(const failure& f)
    {
        if (refused_at_limit_ && f.code == errc::handshake_failed) {
            fail(make_failure(errc::too_many_sessions,
                              "the server refused the association before its ServerHello (fatal internal_error "
                              "alert): it is at its session limit; " + f.message));
            return;
        }
        make_refusal_loud();
        if (f.code == errc::bad_record) {
            // A record that fails authentication during the handshake (our
            // own check, or the peer's bad_record_mac / record_overflow
            // alert) means the two sides derived different keys.
            if (settings().psk)
                fail(make_failure(errc::psk_mismatch, f.message + "; during a PSK handshake this means the keys differ"));
            else
                fail(make_failure(errc::handshake_failed, f.message + "; the peers derived different keys"));
            return;
        }
        fail(f);
    }

    // A stack that gives up a handshake does not always say so to the peer
    // (OpenSSL abandons it without an alert when a fragment's length
    // disagrees with the message it is reassembling), which would leave the
    // peer waiting for its deadline. If the failing call queued no alert and
    // we still write plaintext (no ChangeCipherSpec sent yet), add a fatal
    // handshake_failure (RFC 5246 §7.2.2), numbered after our last record.
    void make_refusal_loud()
    {
        if (sent_change_cipher_) return;
        bool alert_queued = false;
        std::uint64_t sequence = next_plaintext_sequence_;
        for (std::size_t i = counted_; i < out_.size(); ++i)
            parse_datagram(out_[i], [&](const record_view& r) {
                if (r.type == content_type::alert) alert_queued = true;
                if (r.type == content_type::change_cipher_spec) alert_queued = true; // the peer reads epoch 1 now
                if (!r.is_encrypted()) sequence = std::max(sequence, r.sequence_number + 1);
            });
        if (alert_queued) return;
        std::array<std::byte, record_header_size + 2> alert{
            std::byte{static_cast<std::uint8_t>(content_type::alert)}, std::byte{0xfe}, std::byte{0xfd}};
        for (int i = 0; i < 6; ++i) alert[5 + i] = std::byte((sequence >> (40 - 8 * i)) & 0xff);
        alert[12] = std::byte{2};
        alert[13] = std::byte{2};  // fatal
        alert[14] = std::byte{40}; // handshake_failure
        out_.push(alert);
    }

    void fail(const failure& f)
    {
        state_ = endpoint_state::failed;
        failure_ = f;
        if (!failure_.code) failure_ = make_failure(errc::internal, "the stack failed without an error");
    }

    // Counts what the last call queued, and sorts handshake flights into
    // first transmissions and retransmissions by their content: a flight
    // that carries no handshake message, ChangeCipherSpec or Finished that
    // was not sent before is a retransmission.
    void account_output()
    {
        bool handshake_content = false;
        bool new_content = false;
        for (; counted_ < out_.size(); ++counted_) {
            const auto d = out_[counted_];
            ++counters_.datagrams_out;
            counters_.bytes_out += d.size();
            counters_.largest_datagram_out = std::max(counters_.largest_datagram_out, d.size());
            if (trace_) trace_(direction::out, d, {connection_id_length(direction::out)});
            // Application data alone needs no accounting beyond the above:
            // skip the parse on the hot path of an open association.
            if (state_ == endpoint_state::open && is_one_protected_record(d)) continue;
            const auto parsed = parse_datagram(d, [&](const record_view& r) {
                if (!r.is_encrypted()) next_plaintext_sequence_ = std::max(next_plaintext_sequence_, r.sequence_number + 1);
                if (r.type == content_type::change_cipher_spec) {
                    handshake_content = true;
                    if (!sent_change_cipher_) new_content = true;
                    sent_change_cipher_ = true;
                } else if (r.type == content_type::handshake && r.is_encrypted()) {
                    handshake_content = true;
                    if (!sent_finished_) new_content = true;
                    sent_finished_ = true;
                } else if (r.unified && r.epoch == 2) {
                    // DTLS 1.3: epoch 2 protects the handshake after the
                    // ServerHello (RFC 9147 §6.1), its types encrypted. The
                    // first such send is our flight (the client's Finished,
                    // the server's EncryptedExtensions to Finished, after a
                    // plaintext ServerHello counted by its message_seq);
                    // sending epoch 2 again is resending it. An ACK (type 26)
                    // of a partly received flight travels there too and is
                    // counted the same way: the header cannot tell them
                    // apart.
                    handshake_content = true;
                    if (!sent_finished_) new_content = true;
                    sent_finished_ = true;
                } else if (r.type == content_type::handshake) {
                    for (const auto& fragment : r.fragments()) {
                        handshake_content = true;
                        if (fragment.message_seq >= next_message_seq_) new_content = true;
                        highest_seen_ = std::max<int>(highest_seen_, fragment.message_seq);
                    }
                }
            }, connection_id_length(direction::out));
            // With a Connection ID negotiated our Finished already travels
            // as a Connection ID record, whose CID length (the peer's) is
            // known only once the handshake is over: a protected record
            // of that type before then is the Finished.
            if (!parsed.ok() && state_ == endpoint_state::handshaking && parsed.malformed_offset < d.size() &&
                d[parsed.malformed_offset] == static_cast<std::byte>(content_type::tls12_cid)) {
                handshake_content = true;
                if (!sent_finished_) new_content = true;
                sent_finished_ = true;
            }
        }
        if (!handshake_content) return;
        next_message_seq_ = static_cast<std::uint32_t>(highest_seen_ + 1);
        ++counters_.flights_out;
        if (!new_content) ++counters_.retransmissions;
    }

    // One application data record, or one Connection ID record (whose type
    // is hidden, but after the handshake only application data and alerts
    // travel, and an alert's accounting is the same): what an open
    // association sends, judged from its first bytes.
    bool is_one_protected_record(std::span<const std::byte> d) const noexcept
    {
        if (d.empty()) return false;
        std::size_t header = record_header_size;
        if (d[0] == static_cast<std::byte>(content_type::tls12_cid) && connection_ids_.negotiated)
            header += connection_ids_.peer.size();
        else if (d[0] != static_cast<std::byte>(content_type::application_data))
            return false;
        if (d.size() < header) return false;
        const std::size_t length =
            (std::to_integer<std::size_t>(d[header - 2]) << 8) | std::to_integer<std::size_t>(d[header - 1]);
        return d.size() == header + length;
    }

    void after_call()
    {
        account_output();
        session_deadline_ = (state_ == endpoint_state::closed || state_ == endpoint_state::failed)
                                ? std::nullopt
                                : session_.next_timeout(io_);
    }

    std::shared_ptr<context_type> context_;
    session_type session_;
    datagram_queue out_;
    bool queue_released_ = false; // out_ given back after the handshake (drain)
    datagram_io io_;
    trace_hook trace_;
    state_hook state_hook_;
    connection_ids connection_ids_;
    endpoint_state state_ = endpoint_state::handshaking;
    failure failure_;
    endpoint_counters counters_;
    time_point started_{};
    time_point handshake_deadline_{};
    std::optional<time_point> session_deadline_;
    std::size_t counted_ = 0;
    std::uint64_t next_plaintext_sequence_ = 0; // after our last epoch-0 record
    std::size_t protected_minimum_ = 0; // minimum_protected_record(), once known for good
    std::uint32_t next_message_seq_ = 0;
    int highest_seen_ = -1;
    bool sent_change_cipher_ = false;
    bool sent_finished_ = false;
    bool peer_changed_cipher_ = false;
    detail::plaintext_handshake_log peer_plaintext_; // what the peer may send again once open, see admit()
    bool seen_server_hello_ = false;
    bool refused_at_limit_ = false;
    std::size_t peer_cid_length_in_hello_ = 0; // see connection_id_length()
};

} // namespace dtlspp
