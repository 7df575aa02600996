// SPDX-License-Identifier: MIT
// dtlspp::server<Backend>: many DTLS associations behind one unconnected
// datagram socket, sans-I/O like the endpoint.
//
// Datagrams are demultiplexed by peer address. A peer without a session only
// reaches the backend's stateless listener: a ClientHello without a valid
// cookie is answered with a HelloVerifyRequest and forgotten, so spoofed
// source addresses cost one HMAC and create nothing (RFC 6347 §4.2.1). A
// fragmented ClientHello is first made whole in a fixed, counted table
// (detail/hello_reassembly.hpp), since not every stack can take one. A
// session exists only once a cookie verifies, up to max_sessions; idle and
// failed sessions expire; one ordered timer set serves every peer.
//
// Why one socket and no connect(): the seed's sample gave each client a
// socket connected to it and bound to the listening port. Until that socket
// exists, and on systems that deliver to the older socket, the client's next
// flight lands on the listening socket instead and the handshake stalls or
// loops (docs/mtu.md). With one socket every datagram takes the same path.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/detail/hello_reassembly.hpp>
#include <dtlspp/detail/checks.hpp>
#include <dtlspp/endpoint.hpp>
#include <dtlspp/error.hpp>
#include <dtlspp/trace.hpp>
#include <dtlspp/transport/address.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dtlspp {

struct server_settings {
    std::size_t max_sessions = 10000;
    // An association with no datagram in either direction for this long is
    // closed (close_notify sent) and forgotten.
    std::chrono::milliseconds idle_timeout{60000};
    // Fragmented ClientHellos are reassembled before the stack sees them,
    // in a table of this many partial hellos (one per peer address, the
    // oldest evicted when full), allocated once. 32 slots cover 32 clients
    // whose fragments are in flight at the same instant; a client whose
    // partial hello is evicted retransmits it (RFC 6347 §4.2.4).
    std::size_t fragmented_hello_slots = 32;
    // A fragmented ClientHello claiming a longer message is refused. DTLS 1.2
    // ClientHellos from OpenSSL, mbedTLS and GnuTLS are 150 to 600 bytes,
    // the cookie adding at most 255 (RFC 6347 §4.2.1); 4 KiB leaves room
    // for long suite lists, ALPN and SNI while the table stays near
    // 150 KiB. At most 16372: the hello must fit one record (RFC 6347 §4.1).
    std::size_t max_fragmented_hello_size = 4096;
};

namespace detail {

// total.x += one.x for every counter x of a struct that lists its counters
// with a static fields(self, f), all std::uint64_t.
template <class Counters>
void add_counters(Counters& total, const Counters& one)
{
    std::array<std::uint64_t, 64> values{};
    std::size_t n = 0;
    Counters::fields(one, [&](const char*, std::uint64_t v) { values.at(n++) = v; });
    n = 0;
    Counters::fields(total, [&](const char*, std::uint64_t& v) { v += values.at(n++); });
}

} // namespace detail

struct server_counters {
    std::uint64_t datagrams_in = 0;
    std::uint64_t datagrams_out = 0;
    std::uint64_t hello_verify_requests = 0; // cookieless or stale-cookie ClientHellos answered
    std::uint64_t dropped_without_session = 0; // not a ClientHello, or unusable
    std::uint64_t sessions_created = 0;
    std::uint64_t sessions_refused = 0;       // cookie verified but max_sessions reached: told with a fatal alert
    std::uint64_t hellos_refused = 0;         // ClientHellos the stack refuses outright (no ALPN protocol in
                                              // common; with wolfSSL on DTLS 1.3 a cookie that does not
                                              // verify, or a hello it cannot parse): told with the
                                              // stack's fatal alert
    std::uint64_t sessions_expired = 0;       // idle timeout
    std::uint64_t sessions_failed = 0;
    std::uint64_t sessions_closed = 0;
    std::uint64_t duplicate_client_hellos = 0; // late copies of an open association's ClientHello, dropped
    std::uint64_t unreadable_client_hellos = 0; // to an open association, too short or partial to read: dropped
    // Fragmented ClientHellos, reassembled before any stack sees them.
    std::uint64_t fragmented_hellos_started = 0;      // first fragment of a hello kept
    std::uint64_t fragmented_hellos_completed = 0;    // whole, handed to the stack
    std::uint64_t fragmented_hellos_evicted = 0;      // table full: the oldest partial hello dropped
    std::uint64_t fragmented_hellos_inconsistent = 0; // length, message_seq or overlapping bytes disagreed: dropped
    std::uint64_t fragmented_hellos_too_large = 0;    // longer than max_fragmented_hello_size: refused
    // Connection ID (RFC 9146): records found by their CID, not their address.
    std::uint64_t connection_id_unknown = 0;      // a Connection ID record with no association of ours: dropped
    std::uint64_t connection_id_moves = 0;        // an association moved to the address its newest record came from
    std::uint64_t connection_id_not_moved = 0;    // a record from another address that did not authenticate, or
                                                  // was older than the newest: delivered or dropped, nothing moved
    std::uint64_t connection_id_collisions = 0;   // a new association drew a CID already in use: refused

    // Calls f(name, value) for every counter, so a report (the echo server's
    // summary, a metrics exporter) lists them all without naming them.
    template <class F>
    void for_each(F&& f) const
    {
        fields(*this, f);
    }

    // Adds another server's counters (the workers of a udp_server_group).
    server_counters& operator+=(const server_counters& other)
    {
        detail::add_counters(*this, other);
        return *this;
    }

    // Every counter of `self` (const or not), by name.
    template <class Self, class F>
    static void fields(Self& self, F&& f)
    {
        f("datagrams_in", self.datagrams_in);
        f("datagrams_out", self.datagrams_out);
        f("hello_verify_requests", self.hello_verify_requests);
        f("dropped_without_session", self.dropped_without_session);
        f("sessions_created", self.sessions_created);
        f("sessions_refused", self.sessions_refused);
        f("hellos_refused", self.hellos_refused);
        f("sessions_expired", self.sessions_expired);
        f("sessions_failed", self.sessions_failed);
        f("sessions_closed", self.sessions_closed);
        f("duplicate_client_hellos", self.duplicate_client_hellos);
        f("unreadable_client_hellos", self.unreadable_client_hellos);
        f("fragmented_hellos_started", self.fragmented_hellos_started);
        f("fragmented_hellos_completed", self.fragmented_hellos_completed);
        f("fragmented_hellos_evicted", self.fragmented_hellos_evicted);
        f("fragmented_hellos_inconsistent", self.fragmented_hellos_inconsistent);
        f("fragmented_hellos_too_large", self.fragmented_hellos_too_large);
        f("connection_id_unknown", self.connection_id_unknown);
        f("connection_id_moves", self.connection_id_moves);
        f("connection_id_not_moved", self.connection_id_not_moved);
        f("connection_id_collisions", self.connection_id_collisions);
    }
};

// What a server tells its handler. Each member is optional: a handler defines
// the ones it cares about.
//   on_open(const peer_address&)                       handshake complete
//   on_data(const peer_address&, std::span<const std::byte>)
//   on_close(const peer_address&, const failure&)      closed, failed, expired,
//       replaced by the client's new handshake, or shut down: every
//       association that was created ends with exactly one on_close
//   on_refused(const peer_address&, const failure&)    a client whose cookie
//       verified was refused (errc::too_many_sessions); it has no association
//
// What a handler may do, from any of these callbacks, about the peer it is
// called for or any other:
// - send(peer, data, now, ec). To an association that is ending (its
//   on_close is running, or close() was called for it) or that does not
//   exist, it fails with errc::not_open and does nothing.
// - close(peer, now, ec). close_notify is queued at once, except for the
//   peer whose on_data is running: its close takes effect as soon as the
//   datagram that carried the data has been handled (no on_data follows for
//   it). on_close(peer) follows within the same receive() when the peer is
//   the one the callback is for, else from on_timeout() (the one running, or
//   the next: the server's next_deadline() is then due at once). Callbacks
//   never nest.
// - find, session_count, counters, next_deadline. While on_close runs, find
//   still returns the ending association, so its counters can be read; it is
//   forgotten when on_close returns.
// A handler must not call receive, on_timeout or shutdown (they throw
// std::logic_error when called from a handler), nor move or destroy the
// server. The server never frees an association while a callback about it
// runs, and its timers never point at a forgotten one.
struct no_handler {};

template <backend Backend>
class server;

// The association a callback is about, as on_open and on_data receive it:
// it converts to the peer's address, so a handler that takes
// `const peer_address&` is served as well, and a handler that takes an
// association_ref sends and closes without the server looking the peer up
// again. Valid only during the callback it was passed to.
template <backend Backend>
class association_ref {
public:
    operator const peer_address&() const noexcept { return peer(); }
    const peer_address& peer() const noexcept;
    // The association itself: its state, counters, cipher suite, CIDs.
    const endpoint<Backend>& association() const noexcept;
    // As server::send(peer(), data, now, ec): queues one message's datagram.
    // Errors: not_open when the association is ending; message_too_large
    // above association().max_message_size(); a stack failure.
    void send(std::span<const std::byte> data, std::error_code& ec) const;
    // As above; throws dtlspp::error instead.
    void send(std::span<const std::byte> data) const;
    // As server::close(peer(), now, ec). Errors: not_open when it is ending
    // already.
    void close(std::error_code& ec) const;
    // As above; throws dtlspp::error instead.
    void close() const;

private:
    friend class server<Backend>;
    using entry = typename server<Backend>::session_entry;
    association_ref(server<Backend>& owner, entry& session, time_point now) noexcept
        : owner_(&owner), session_(&session), now_(now)
    {
    }
    server<Backend>* owner_;
    entry* session_;
    time_point now_;
};

template <backend Backend>
class server {
public:
    using endpoint_type = endpoint<Backend>;

    // Builds the stack's context (Backend::make_context) and its stateless
    // listener. Returns nullopt with the reason in `f`; never throws.
    // Errors (f.code): config_invalid (the config, a client config, or a
    // server_settings bound of 0); the backend's load errors (certificate,
    // key, CA); out_of_memory or internal_error from the stack.
    [[nodiscard]] static std::optional<server> create(const config& c, server_settings settings, failure& f)
    {
        if ((f = detail::check_role(c, role::server, "a server"))) return std::nullopt;
        if (settings.max_sessions == 0) {
            f = make_failure(errc::config_invalid, "max_sessions: must be at least 1");
            return std::nullopt;
        }
        auto ctx = Backend::make_context(c, f);
        if (!ctx) return std::nullopt;
        return create(std::move(ctx), settings, f);
    }

    // As above; throws dtlspp::error with the failure instead.
    [[nodiscard]] static server create(const config& c, server_settings settings = {})
    {
        failure f;
        auto result = create(c, settings, f);
        if (!result) throw dtlspp::error(f);
        return std::move(*result);
    }

    // A server on a context built elsewhere (e.g. with backend-only options).
    [[nodiscard]] static std::optional<server> create(std::shared_ptr<typename Backend::context> ctx,
                                                      server_settings settings, failure& f)
    {
        if ((f = detail::check_role(ctx->settings(), role::server, "a server"))) return std::nullopt;
        // Both create() overloads come here.
        if (settings.fragmented_hello_slots == 0) {
            f = make_failure(errc::config_invalid, "fragmented_hello_slots: must be at least 1");
            return std::nullopt;
        }
        if (settings.max_fragmented_hello_size == 0 ||
            settings.max_fragmented_hello_size > detail::hello_reassembly::largest_max_hello_size) {
            f = make_failure(errc::config_invalid,
                             "max_fragmented_hello_size: must be 1 to " +
                                 std::to_string(detail::hello_reassembly::largest_max_hello_size) +
                                 " (one record holds the hello)");
            return std::nullopt;
        }
        auto l = Backend::make_listener(*ctx, f);
        if (!l) return std::nullopt;
        return server(std::move(ctx), std::move(*l), settings);
    }

    server(server&&) noexcept = default;
    server& operator=(server&&) noexcept = default;

    // One datagram from `from`: a ClientHello goes through the stateless
    // front door (DTLSv1_listen / mbedtls_ssl_cookie_check via the
    // backend's listener), anything else to its association's
    // endpoint::receive. Reports no error: what is malformed, forged, from a
    // stranger or over a limit is dropped and counted (counters()), or
    // refused with an alert and handler.on_refused; an association that
    // fails or closes reaches handler.on_close with the reason.
    template <class Handler = no_handler>
    void receive(const peer_address& from, std::span<const std::byte> datagram, time_point now,
                 Handler&& handler = {})
    {
        refuse_from_handler("receive");
        ++counters_.datagrams_in;
        // With Connection IDs, a CID record names its association whatever
        // address it came from (RFC 9146 §6).
        if (auto* owner = connection_id_owner(datagram)) {
            if (owner->peer != from) {
                receive_from_new_address(*owner, from, datagram, now, handler);
                return;
            }
        }
        auto found = sessions_.find(from);
        if (found == sessions_.end() && cid_length_ != 0 && carries_connection_id(datagram)) {
            // A handshaking association gets its peer's Finished as a CID
            // record from its own address (found above); from anywhere else
            // an unknown CID belongs to nobody.
            ++counters_.connection_id_unknown;
            return;
        }
        if (found != sessions_.end() && found->second->association.is_open()) {
            if (carries_client_hello(datagram)) {
                // No epoch-0 ClientHello ever reaches an open association:
                // mbedTLS inspects one for a reconnect and fails the whole
                // association on one it cannot parse (-0x7900,
                // ssl_handle_possible_reconnect with
                // MBEDTLS_SSL_DTLS_CLIENT_PORT_REUSE, which Debian enables).
                const auto random = client_hello_random(datagram);
                if (!random) {
                    ++counters_.unreadable_client_hellos;
                    return;
                }
                auto& s = *found->second;
                if (s.hello_random && *random == *s.hello_random) {
                    // A late copy of the ClientHello that opened this
                    // association (networks duplicate and delay datagrams).
                    // The association must not see it: a stack may take an
                    // epoch-0 ClientHello with a valid cookie as a reconnect.
                    ++counters_.duplicate_client_hellos;
                    return;
                }
                // RFC 6347 §4.2.8: a client that lost its state (a restart
                // from the same address and port) starts over with a new
                // ClientHello. It goes to the front door: a
                // HelloVerifyRequest keeps the old association, a verified
                // cookie replaces it.
                if (!replace_on_new_handshake(from, datagram, now, handler)) return;
                found = sessions_.end();
            }
        }
        if (found != sessions_.end()) {
            auto& s = *found->second;
            s.last_activity = now;
            {
                // A close() from on_data must wait until the endpoint has
                // returned: it is still reading the datagram's records.
                const flag_scope receiving(s.receiving);
                bool authenticated = false;
                s.association.receive(datagram, now, [&](std::span<const std::byte> data) {
                    authenticated = true;
                    if (s.close_reason) return; // the handler closed it
                    if constexpr (requires { handler.on_data(ref_of(s, now), data); }) {
                        const flag_scope in_callback(in_callback_);
                        handler.on_data(ref_of(s, now), data);
                    }
                });
                if (authenticated) note_newest(s, datagram);
            }
            if (s.close_reason) close_association(s, now);
            settle(s, now, handler);
            return;
        }

        // The front door's traffic (ClientHellos, HelloVerifyRequests) is
        // traced here: no association exists yet to do it.
        if (trace_) trace_(direction::in, datagram);
        std::span<const std::byte> hello = datagram;
        switch (hello_reassembly_.offer(from, datagram, counters_)) {
        case detail::hello_offer::not_fragmented: break;
        case detail::hello_offer::incomplete: return;
        case detail::hello_offer::complete: hello = hello_reassembly_.assembled(); break;
        }
        datagram_io io;
        io.input = hello;
        io.output = &front_door_out_;
        io.now = now;
        io.peer_id = from.transport_id();
        const auto before = front_door_out_.size();
        switch (listener_.offer(io)) {
        case listen_result::dropped: ++counters_.dropped_without_session; break;
        case listen_result::cookie_sent:
            ++counters_.hello_verify_requests;
            if (trace_)
                for (std::size_t i = before; i < front_door_out_.size(); ++i) trace_(direction::out, front_door_out_[i]);
            break;
        case listen_result::refused:
            ++counters_.hellos_refused;
            if (trace_)
                for (std::size_t i = before; i < front_door_out_.size(); ++i) trace_(direction::out, front_door_out_[i]);
            if constexpr (requires { handler.on_refused(from, failure{}); }) {
                const flag_scope in_callback(in_callback_);
                handler.on_refused(from, listener_refusal());
            }
            break;
        case listen_result::accepted: {
            datagram_queue first_flight;
            for (std::size_t i = before; i < front_door_out_.size(); ++i) first_flight.push(front_door_out_[i]);
            // Those datagrams now belong to the endpoint, which queues them.
            front_door_out_.truncate(before);
            adopt_accepted(from, hello, now, first_flight, handler);
            return;
        }
        }
        for (std::size_t i = front_door_peers_.size(); i < front_door_out_.size(); ++i) front_door_peers_.push_back(from);
    }

    // Encrypts one message for an open association and queues its datagram
    // (drain() or drain_batch() hands it out). Errors: not_open when `to`
    // has no open association (none, still in its handshake, or ending);
    // message_too_large above the association's max_message_size(); a stack
    // failure (SSL_write / mbedtls_ssl_write failed: the association fails
    // with it).
    void send(const peer_address& to, std::span<const std::byte> data, time_point now, std::error_code& ec)
    {
        auto found = sessions_.find(to);
        if (found == sessions_.end()) {
            ec = make_error_code(errc::not_open);
            return;
        }
        send_on(*found->second, data, now, ec);
    }

    // As above; throws dtlspp::error instead.
    void send(const peer_address& to, std::span<const std::byte> data, time_point now)
    {
        std::error_code ec;
        send(to, data, now, ec);
        if (ec) throw dtlspp::error(failure{ec, "send to " + to.to_string()});
    }

    // Closes one association: close_notify now (see the handler notes above
    // for a close from on_data), on_close from the next on_timeout. Errors:
    // errc::not_open when `peer` has no association, or it is ending already.
    void close(const peer_address& peer, time_point now, std::error_code& ec)
    {
        auto found = sessions_.find(peer);
        if (found == sessions_.end()) {
            ec = make_error_code(errc::not_open);
            return;
        }
        close_on(*found->second, now, ec);
    }

    // As above; throws dtlspp::error instead.
    void close(const peer_address& peer, time_point now)
    {
        std::error_code ec;
        close(peer, now, ec);
        if (ec) throw dtlspp::error(failure{ec, "close " + peer.to_string()});
    }

private:
    friend class association_ref<Backend>;
    struct session_entry;

    association_ref<Backend> ref_of(session_entry& s, time_point now) noexcept { return {*this, s, now}; }

    void send_on(session_entry& s, std::span<const std::byte> data, time_point now, std::error_code& ec)
    {
        if (s.ending()) {
            ec = make_error_code(errc::not_open);
            return;
        }
        s.association.send(data, now, ec);
        s.last_activity = now;
        collect(s);
        // send() may be called from a handler inside receive(), so the entry
        // must survive here: a failure is settled by the timer, right away.
        reschedule(s, s.association.is_open() ? std::min(now + settings_.idle_timeout,
                                                         s.association.next_deadline().value_or(time_point::max()))
                                              : now);
    }

    void close_on(session_entry& s, time_point now, std::error_code& ec)
    {
        ec.clear();
        if (s.ending() || !s.association_live()) {
            ec = make_error_code(errc::not_open);
            return;
        }
        s.close_reason = make_failure(errc::peer_closed, "closed by the server");
        if (s.receiving) return; // applied when the endpoint returns (receive)
        close_association(s, now);
        reschedule(s, now);
    }

public:
    // Runs every timer that is due: retransmissions, handshake deadlines,
    // idle expiry, and the settling of associations closed by close() or
    // failed by send().
    template <class Handler = no_handler>
    void on_timeout(time_point now, Handler&& handler = {})
    {
        refuse_from_handler("on_timeout");
        while (!timers_.empty() && timers_.begin()->first <= now) {
            // Valid: an entry leaves the timer set before it is forgotten,
            // and an ending one is never scheduled again.
            session_entry& s = *timers_.begin()->second;
            timers_.erase(timers_.begin());
            s.scheduled.reset();
            if (s.association_live() && now >= s.last_activity + settings_.idle_timeout) {
                ++counters_.sessions_expired;
                s.association.close(now);
                collect(s);
                retire(s,
                       make_failure(errc::idle_timeout,
                                    "no datagram for " + std::to_string(settings_.idle_timeout.count()) + " ms"),
                       handler);
                continue;
            }
            // A timer that fired early (see reschedule) reaches the stack
            // only when the association's own deadline is due.
            if (const auto deadline = s.association.next_deadline(); deadline && *deadline <= now)
                s.association.on_timeout(now);
            settle(s, now, handler);
        }
    }

    std::optional<time_point> next_deadline() const
    {
        if (timers_.empty()) return std::nullopt;
        return timers_.begin()->first;
    }

    // Hands every queued datagram to send(const peer_address&, span).
    template <class Send>
    void drain(Send&& send_datagram)
    {
        for (std::size_t i = 0; i < front_door_out_.size(); ++i) {
            ++counters_.datagrams_out;
            send_datagram(front_door_peers_[i], front_door_out_[i]);
        }
        front_door_out_.clear();
        front_door_peers_.clear();
    }

    // Hands every queued datagram over at once, without copying:
    // send_all(peers, datagrams), where peers[i] is where datagrams[i] goes.
    template <class SendAll>
    void drain_batch(SendAll&& send_all)
    {
        counters_.datagrams_out += front_door_out_.size();
        send_all(std::span<const peer_address>(front_door_peers_), std::as_const(front_door_out_));
        front_door_out_.clear();
        front_door_peers_.clear();
    }

    // close_notify to every peer, then forget them all.
    template <class Handler = no_handler>
    void shutdown(time_point now, Handler&& handler = {})
    {
        refuse_from_handler("shutdown");
        // Each on_close may send or close on the others: walk a copy of the
        // addresses, not the table that retire() erases from.
        std::vector<peer_address> peers;
        peers.reserve(sessions_.size());
        for (const auto& entry : sessions_) peers.push_back(entry.first);
        for (const auto& peer : peers) {
            auto found = sessions_.find(peer);
            if (found == sessions_.end()) continue;
            auto& s = *found->second;
            if (s.association.state() == endpoint_state::failed) {
                ++counters_.sessions_failed;
                retire(s, s.association.last_failure(), handler);
                continue;
            }
            s.association.close(now);
            collect(s);
            ++counters_.sessions_closed;
            retire(s, make_failure(errc::peer_closed, "server shut down"), handler);
        }
    }

    std::size_t session_count() const noexcept { return sessions_.size(); }
    const server_counters& counters() const noexcept { return counters_; }
    const endpoint_type* find(const peer_address& peer) const
    {
        auto found = sessions_.find(peer);
        return found == sessions_.end() ? nullptr : &found->second->association;
    }
    // Every new association traces its datagrams through this hook.
    void set_trace(typename endpoint_type::trace_hook hook) { trace_ = std::move(hook); }

private:
    // The CID a Connection ID record carries, when this server asks for
    // CIDs (all of one length, config::connection_id): the bytes after the
    // sequence number of the datagram's first record.
    // DTLS 1.3 (RFC 9147 §4): a unified header with the C bit holds it
    // right after its first byte.
    std::optional<std::span<const std::byte>> connection_id_of(std::span<const std::byte> datagram) const noexcept
    {
        if (cid_length_ == 0 || !carries_connection_id(datagram)) return std::nullopt;
        if (carries_dtls13_connection_id(datagram)) {
            if (datagram.size() < 1 + cid_length_ + 1) return std::nullopt;
            return datagram.subspan(1, cid_length_);
        }
        if (datagram.size() < 11 + cid_length_ + 2) return std::nullopt;
        return datagram.subspan(11, cid_length_);
    }

    static bool carries_dtls13_connection_id(std::span<const std::byte> datagram) noexcept
    {
        return !datagram.empty() && (std::to_integer<unsigned>(datagram[0]) & 0xF0) == 0x30;
    }

    static bool carries_connection_id(std::span<const std::byte> datagram) noexcept
    {
        return !datagram.empty() && (datagram[0] == static_cast<std::byte>(content_type::tls12_cid) ||
                                     carries_dtls13_connection_id(datagram));
    }

    static std::string_view cid_key(std::span<const std::byte> cid) noexcept
    {
        return std::string_view(reinterpret_cast<const char*>(cid.data()), cid.size());
    }

    // Looks CIDs up by string_view, so finding a record's association
    // copies nothing (a CID may be longer than a short-string buffer).
    struct cid_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view key) const noexcept { return std::hash<std::string_view>{}(key); }
    };

    session_entry* connection_id_owner(std::span<const std::byte> datagram)
    {
        const auto cid = connection_id_of(datagram);
        if (!cid || by_connection_id_.empty()) return nullptr;
        const auto found = by_connection_id_.find(cid_key(*cid));
        return found == by_connection_id_.end() ? nullptr : found->second;
    }

    // The highest (epoch, sequence number) of the datagram's protected
    // records, as one number.
    static std::optional<std::uint64_t> newest_record(std::span<const std::byte> datagram, std::size_t cid_length)
    {
        std::optional<std::uint64_t> newest;
        parse_datagram(datagram, [&](const record_view& r) {
            if (!r.is_encrypted() || r.unified) return;
            const std::uint64_t position = (std::uint64_t{r.epoch} << 48) | r.sequence_number;
            newest = newest ? std::max(*newest, position) : position;
        }, cid_length);
        return newest;
    }

    void note_newest(session_entry& s, std::span<const std::byte> datagram)
    {
        if (cid_length_ == 0) return;
        if (const auto n = newest_record(datagram, cid_length_)) s.newest = std::max(s.newest.value_or(0), *n);
    }

    // A Connection ID record of `s` from an address that is not its own.
    // It is delivered, and the association moves to `from` only when the
    // record authenticated (the stack delivered its data) and is newer than
    // every record that did before (RFC 9146 §6): a forged record changes
    // nothing, and a replayed or late one does not drag the association
    // back to an old address.
    template <class Handler>
    void receive_from_new_address(session_entry& s, const peer_address& from, std::span<const std::byte> datagram,
                                  time_point now, Handler& handler)
    {
        // DTLS 1.3 encrypts sequence numbers (RFC 9147 §4.2.3), so no
        // header tells old from new: the record must authenticate, and the
        // stack's replay window refuses one it has seen, so only a record
        // never delivered before moves the association.
        const bool dtls13 = carries_dtls13_connection_id(datagram);
        const auto position = newest_record(datagram, cid_length_); // none for DTLS 1.3 records
        const bool newer = dtls13 || (position && (!s.newest || *position > *s.newest));
        bool moved = false;
        {
            const flag_scope receiving(s.receiving);
            s.association.receive(datagram, now, [&](std::span<const std::byte> data) {
                if (!moved && newer && !s.close_reason) {
                    move_association(s, from, handler);
                    moved = true;
                }
                if (s.close_reason) return;
                if constexpr (requires { handler.on_data(ref_of(s, now), data); }) {
                    const flag_scope in_callback(in_callback_);
                    handler.on_data(ref_of(s, now), data);
                }
            });
        }
        if (moved) {
            if (!dtls13) s.newest = position;
            s.last_activity = now;
        } else {
            ++counters_.connection_id_not_moved;
        }
        if (s.close_reason) close_association(s, now);
        settle(s, now, handler);
    }

    template <class Handler>
    void move_association(session_entry& s, const peer_address& to, Handler& handler)
    {
        // Another association at the new address (a stale one, whose client
        // the NAT reassigned) keeps its own entry: CIDs tell them apart, but
        // the address table holds one per address, so the older one goes.
        if (auto other = sessions_.find(to); other != sessions_.end()) {
            ++counters_.sessions_closed;
            retire(*other->second,
                   make_failure(errc::peer_closed, "another association moved to this address (Connection ID)"),
                   handler);
        }
        auto node = sessions_.extract(s.peer);
        const peer_address old = s.peer;
        node.key() = to;
        s.peer = to;
        sessions_.insert(std::move(node));
        ++counters_.connection_id_moves;
        if constexpr (requires { handler.on_move(old, to); }) {
            const flag_scope in_callback(in_callback_);
            handler.on_move(old, to);
        }
    }

    // Files an open association under its CID, once; a CID already in use
    // (drawn twice: likely only with CIDs of a few bytes) refuses the new
    // association, which is closed with close_notify.
    void register_connection_id(session_entry& s, time_point now)
    {
        if (cid_length_ == 0 || s.cid_registered || !s.association.is_open()) return;
        const auto& ids = s.association.connection_id();
        if (!ids.negotiated || ids.own.size() != cid_length_) return;
        s.cid_registered = true;
        std::string key(cid_key(ids.own));
        if (by_connection_id_.find(std::string_view(key)) != by_connection_id_.end()) {
            ++counters_.connection_id_collisions;
            s.close_reason = make_failure(errc::internal, "its Connection ID is already in use by another association");
            close_association(s, now);
            return;
        }
        s.cid_key = key;
        by_connection_id_.emplace(std::move(key), &s);
    }

    using client_random = std::array<std::byte, 32>;

    struct session_entry {
        session_entry(peer_address p, endpoint_type a, time_point now, std::optional<client_random> random)
            : peer(std::move(p)), association(std::move(a)), last_activity(now), hello_random(random)
        {
        }

        peer_address peer;
        endpoint_type association;
        time_point last_activity;
        std::optional<time_point> scheduled;
        bool announced = false;
        std::optional<client_random> hello_random; // of the ClientHello that opened it
        std::uint64_t number = 0;            // sessions_created when it was made: binds replacement cookies
        bool receiving = false;              // inside association.receive: its on_data may run
        bool retiring = false;               // its on_close runs; forgotten when it returns
        std::optional<failure> close_reason; // close() was called for it
        std::optional<std::uint64_t> newest; // (epoch << 48 | sequence) of the newest record that authenticated
        bool cid_registered = false;         // looked up in by_connection_id_
        std::optional<std::string> cid_key;  // its entry there

        bool ending() const noexcept { return retiring || close_reason.has_value(); }
        bool association_live() const noexcept
        {
            const auto st = association.state();
            return st == endpoint_state::handshaking || st == endpoint_state::open;
        }
    };

    // Sets a flag for a scope, and clears it however the scope is left.
    class flag_scope {
    public:
        explicit flag_scope(bool& flag) noexcept : flag_(flag) { flag_ = true; }
        flag_scope(const flag_scope&) = delete;
        flag_scope& operator=(const flag_scope&) = delete;
        ~flag_scope() { flag_ = false; }

    private:
        bool& flag_;
    };

    server(std::shared_ptr<typename Backend::context> ctx, typename Backend::listener l, server_settings settings)
        : context_(std::move(ctx)), listener_(std::move(l)), settings_(settings),
          hello_reassembly_(settings.fragmented_hello_slots, settings.max_fragmented_hello_size)
    {
        // Only stacks that negotiate CIDs ever receive a CID record.
        if (Backend::traits.connection_id) cid_length_ = context_->settings().connection_id.value_or(0);
    }

    // receive, on_timeout and shutdown walk the table and the timers while
    // handlers run; from inside a handler they would walk them twice.
    void refuse_from_handler(const char* function) const
    {
        if (in_callback_)
            throw std::logic_error(std::string("dtlspp::server::") + function +
                                   " called from a handler; a handler may call send and close only");
    }

    // Queues the close_notify of an association closed by close().
    void close_association(session_entry& s, time_point now)
    {
        s.association.close(now);
        collect(s);
    }

    // The one place an association is forgotten: it leaves the timer set
    // first, its on_close runs while it is still in the table (find works,
    // send and close refuse it), and it is erased when on_close returns,
    // or throws.
    template <class Handler>
    void retire(session_entry& s, const failure& why, Handler& handler)
    {
        s.retiring = true;
        unschedule(s);
        if (s.cid_key) by_connection_id_.erase(*s.cid_key);
        const peer_address peer = s.peer; // s is freed below
        struct erase_on_exit {
            std::unordered_map<peer_address, std::unique_ptr<session_entry>>& table;
            const peer_address& peer;
            ~erase_on_exit() { table.erase(peer); }
        } erase{sessions_, peer};
        if constexpr (requires { handler.on_close(peer, why); }) {
            const flag_scope in_callback(in_callback_);
            handler.on_close(peer, why);
        }
    }

    // The listener verified a cookie from `from`: make it an association,
    // unless the session limit is reached.
    template <class Handler>
    void adopt_accepted(const peer_address& from, std::span<const std::byte> hello, time_point now,
                        const datagram_queue& first_flight, Handler& handler)
    {
        auto verified = listener_.accept();
        if (sessions_.size() >= settings_.max_sessions) {
            refuse(from, hello, handler);
            return; // the verified session is dropped: nothing of it is kept
        }
        auto entry = std::make_unique<session_entry>(
            from, endpoint_type::adopt(context_, std::move(verified), now, first_flight, trace_, hello), now,
            client_hello_random(hello));
        entry->number = ++counters_.sessions_created;
        auto& s = *sessions_.emplace(from, std::move(entry)).first->second;
        settle(s, now, handler);
    }

    // Why the listener refused its last ClientHello: the stack's own words
    // where the listener keeps them (last_refusal()).
    failure listener_refusal() const
    {
        if constexpr (requires { listener_.last_refusal(); }) return listener_.last_refusal();
        else return make_failure(errc::handshake_failed, "the stack refused the ClientHello");
    }

    // A client whose cookie verified, with the table full, is told at once
    // with a fatal alert instead of waiting out its handshake deadline.
    template <class Handler>
    void refuse(const peer_address& from, std::span<const std::byte> hello, Handler& handler)
    {
        ++counters_.sessions_refused;
        const auto alert = refusal_alert(hello);
        front_door_out_.push(alert);
        front_door_peers_.push_back(from);
        if (trace_) trace_(direction::out, alert);
        if constexpr (requires { handler.on_refused(from, failure{}); }) {
            const auto why = make_failure(errc::too_many_sessions,
                                          "max_sessions (" + std::to_string(settings_.max_sessions) + ") reached");
            const flag_scope in_callback(in_callback_);
            handler.on_refused(from, why);
        }
    }

    // The refusal: one plaintext epoch-0 record with a fatal internal_error
    // alert. TLS has no "busy" alert; internal_error is "an internal error
    // unrelated to the peer or the correctness of the protocol" (RFC 5246
    // §7.2.2), which a full session table is, and clients report it as a
    // failure at once. The record takes the sequence number of the
    // ClientHello that carried the cookie, as the stateless
    // HelloVerifyRequest takes the first one's (RFC 6347 §4.2.1): the server
    // keeps no sequence state for a peer it refuses, and the client, having
    // seen the HelloVerifyRequest with a lower number, takes the record as
    // new rather than as a replay (RFC 6347 §4.1.2.6).
    static std::array<std::byte, record_header_size + 2> refusal_alert(std::span<const std::byte> hello)
    {
        std::optional<std::uint64_t> sequence_number;
        parse_datagram(hello, [&](const record_view& r) {
            if (sequence_number || r.epoch != 0 || r.type != content_type::handshake) return;
            for (const auto& fragment : r.fragments())
                if (fragment.msg_type == static_cast<std::uint8_t>(handshake_type::client_hello))
                    sequence_number = r.sequence_number;
        });
        const std::uint64_t seq = sequence_number.value_or(0);
        constexpr std::uint8_t fatal = 2;
        constexpr std::uint8_t internal_error = 80;
        std::array<std::byte, record_header_size + 2> record{};
        record[0] = static_cast<std::byte>(content_type::alert);
        record[1] = std::byte{0xfe}; // DTLS 1.2 (RFC 6347 §4.1)
        record[2] = std::byte{0xfd};
        // record[3..4]: epoch 0
        for (int i = 0; i < 6; ++i) record[5 + i] = static_cast<std::byte>((seq >> (8 * (5 - i))) & 0xff);
        record[11] = std::byte{0};
        record[12] = std::byte{2}; // length
        record[13] = static_cast<std::byte>(fatal);
        record[14] = static_cast<std::byte>(internal_error);
        return record;
    }

    // Moves an association's queued datagrams to the shared outbox.
    void collect(session_entry& s)
    {
        s.association.drain([&](std::span<const std::byte> d) {
            front_door_out_.push(d);
            front_door_peers_.push_back(s.peer);
        });
    }

    // After any event on an association: send what it queued, tell the
    // handler what changed, reschedule its timer or forget it.
    template <class Handler>
    void settle(session_entry& s, time_point now, Handler& handler)
    {
        register_connection_id(s, now);
        collect(s);
        if (!s.announced && s.association.is_open()) {
            s.announced = true;
            if constexpr (requires { handler.on_open(ref_of(s, now)); }) {
                const flag_scope in_callback(in_callback_);
                handler.on_open(ref_of(s, now));
            }
            // on_open may have closed it (close() queued close_notify).
        }
        const auto st = s.association.state();
        if (st == endpoint_state::closed || st == endpoint_state::failed) {
            if (st == endpoint_state::failed) ++counters_.sessions_failed;
            else ++counters_.sessions_closed;
            // A failure, the peer's close_notify, or the server's own close().
            const failure why = st == endpoint_state::closed && s.close_reason && !s.association.last_failure()
                                    ? *s.close_reason
                                    : s.association.last_failure();
            retire(s, why, handler);
            return;
        }
        auto due = s.last_activity + settings_.idle_timeout;
        if (auto deadline = s.association.next_deadline()) due = std::min(due, *deadline);
        reschedule(s, due);
    }

    // Moves an association's timer, only ever earlier. A later due time
    // (the idle timeout, pushed on by every datagram) leaves the timer where
    // it is: it fires early, on_timeout finds nothing due and puts it at
    // the right time then. So a busy association does not move its timer on
    // every datagram, and the set is touched about once per idle timeout.
    // The set node is reused (extract and insert): no allocation.
    void reschedule(session_entry& s, time_point due)
    {
        if (s.retiring) return; // about to be forgotten: no timer may point at it
        if (s.scheduled && *s.scheduled <= due) return;
        if (s.scheduled) {
            auto node = timers_.extract({*s.scheduled, &s});
            if (!node.empty()) {
                node.value().first = due;
                s.scheduled = due;
                timers_.insert(std::move(node));
                return;
            }
        }
        s.scheduled = due;
        timers_.emplace(due, &s);
    }

    // Whether the datagram carries any fragment of an epoch-0 ClientHello.
    static bool carries_client_hello(std::span<const std::byte> datagram)
    {
        // Every datagram of an open association passes here: rule out
        // anything but an epoch-0 handshake record from its first bytes
        // (type 22, epoch at bytes 3-4) before parsing.
        if (datagram.size() < record_header_size ||
            datagram[0] != static_cast<std::byte>(content_type::handshake) || datagram[3] != std::byte{0} ||
            datagram[4] != std::byte{0})
            return false;
        bool hello = false;
        parse_datagram(datagram, [&](const record_view& r) {
            for (const auto& fragment : r.fragments())
                if (fragment.msg_type == static_cast<std::uint8_t>(handshake_type::client_hello)) hello = true;
        });
        return hello;
    }

    // The random of an epoch-0 ClientHello whose first fragment the
    // datagram carries (RFC 5246 §7.4.1.2: client_version, then random).
    static std::optional<client_random> client_hello_random(std::span<const std::byte> datagram)
    {
        // Every datagram of an open association passes here: rule out
        // anything but an epoch-0 handshake record from its first bytes
        // (type 22, epoch at bytes 3-4) before parsing.
        if (datagram.size() < record_header_size ||
            datagram[0] != static_cast<std::byte>(content_type::handshake) || datagram[3] != std::byte{0} ||
            datagram[4] != std::byte{0})
            return std::nullopt;
        std::optional<client_random> random;
        parse_datagram(datagram, [&](const record_view& r) {
            if (r.epoch != 0 || r.type != content_type::handshake) return;
            for (const auto& fragment : r.fragments()) {
                if (fragment.msg_type != static_cast<std::uint8_t>(handshake_type::client_hello) ||
                    fragment.fragment_offset != 0 || fragment.body.size() < 2 + 32)
                    continue;
                client_random value;
                std::copy_n(fragment.body.begin() + 2, 32, value.begin());
                random = value;
            }
        });
        return random;
    }

    // Offers a new ClientHello from a peer that has an open association.
    // Returns true when the old association was dropped and the datagram
    // should go through the front door as from a stranger.
    template <class Handler>
    bool replace_on_new_handshake(const peer_address& from, std::span<const std::byte> datagram, time_point now,
                                  Handler& handler)
    {
        // Only a ClientHello with a valid cookie replaces anything, so an
        // off-path attacker who spoofs the address cannot tear it down.
        //
        // Its cookie is bound to the address *and* to this association: a
        // cookie-bearing ClientHello recorded before the association opened
        // (an earlier association's flight, replayed) still carries a
        // cookie valid for the address alone, and must not end it. The
        // association's number joins the transport id, so only a cookie
        // from a HelloVerifyRequest sent during this association, which
        // only a client at that address receives, replaces it.
        const auto& old = *sessions_.find(from)->second;
        const auto address = from.transport_id();
        std::array<std::byte, peer_address::max_transport_id_size + sizeof(std::uint64_t)> bound_id{};
        std::copy(address.begin(), address.end(), bound_id.begin());
        for (std::size_t i = 0; i < sizeof(std::uint64_t); ++i)
            bound_id[address.size() + i] = std::byte((old.number >> (8 * i)) & 0xff);
        datagram_io probe;
        datagram_queue scratch;
        probe.input = datagram;
        probe.output = &scratch;
        probe.now = now;
        probe.peer_id = std::span<const std::byte>(bound_id.data(), address.size() + sizeof(std::uint64_t));
        const auto result = listener_.offer(probe);
        if (result == listen_result::cookie_sent) {
            ++counters_.hello_verify_requests;
            for (std::size_t i = 0; i < scratch.size(); ++i) {
                front_door_out_.push(scratch[i]);
                front_door_peers_.push_back(from);
            }
            return false;
        }
        if (result == listen_result::refused) {
            // The restart is refused outright; the open association stays.
            ++counters_.hellos_refused;
            for (std::size_t i = 0; i < scratch.size(); ++i) {
                front_door_out_.push(scratch[i]);
                front_door_peers_.push_back(from);
            }
            return false;
        }
        if (result != listen_result::accepted) {
            ++counters_.dropped_without_session;
            return false;
        }
        // The cookie verified: the client really started over. The old
        // association's state is gone at the client, so no close_notify.
        auto found = sessions_.find(from);
        ++counters_.sessions_closed;
        retire(*found->second,
               make_failure(errc::peer_closed, "the client started a new handshake from the same address"), handler);
        adopt_accepted(from, datagram, now, scratch, handler);
        return false;
    }

    void unschedule(session_entry& s)
    {
        if (!s.scheduled) return;
        timers_.erase({*s.scheduled, &s});
        s.scheduled.reset();
    }

    std::shared_ptr<typename Backend::context> context_;
    typename Backend::listener listener_;
    server_settings settings_;
    std::unordered_map<peer_address, std::unique_ptr<session_entry>> sessions_;
    std::set<std::pair<time_point, session_entry*>> timers_;
    datagram_queue front_door_out_;          // every datagram waiting to be sent
    std::vector<peer_address> front_door_peers_; // its destination, index for index
    server_counters counters_;
    typename endpoint_type::trace_hook trace_;
    bool in_callback_ = false; // a handler callback runs
    std::size_t cid_length_ = 0; // of our Connection IDs; 0: none asked for
    std::unordered_map<std::string, session_entry*, cid_hash, std::equal_to<>> by_connection_id_;
    detail::hello_reassembly hello_reassembly_; // partial ClientHellos of peers without a session
};

template <backend Backend>
const peer_address& association_ref<Backend>::peer() const noexcept
{
    return session_->peer;
}

template <backend Backend>
const endpoint<Backend>& association_ref<Backend>::association() const noexcept
{
    return session_->association;
}

template <backend Backend>
void association_ref<Backend>::send(std::span<const std::byte> data, std::error_code& ec) const
{
    owner_->send_on(*session_, data, now_, ec);
}

template <backend Backend>
void association_ref<Backend>::close(std::error_code& ec) const
{
    owner_->close_on(*session_, now_, ec);
}

template <backend Backend>
void association_ref<Backend>::send(std::span<const std::byte> data) const
{
    std::error_code ec;
    send(data, ec);
    if (ec) throw dtlspp::error(failure{ec, "send to " + peer().to_string()});
}

template <backend Backend>
void association_ref<Backend>::close() const
{
    std::error_code ec;
    close(ec);
    if (ec) throw dtlspp::error(failure{ec, "close " + peer().to_string()});
}

} // namespace dtlspp
