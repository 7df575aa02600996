// SPDX-License-Identifier: MIT
// dtlspp::asio_client<Backend>: one DTLS client association over an Asio UDP
// socket, with completion tokens: a callback, asio::use_future and
// asio::use_awaitable (C++20 coroutines) all work, as with Asio's own
// sockets.
//
// The sans-I/O endpoint does the DTLS; this adapter only moves datagrams and
// runs one steady_timer at the endpoint's next deadline. The socket is
// connected to the server, so the ICMP error of a closed port fails the
// handshake at once (errc::peer_unreachable) instead of at its deadline.
//
// Like an Asio socket, an asio_client is not thread-safe: call it from the
// thread that runs its executor (or through a strand). Handlers are never
// run inside the call that starts their operation. Destroying the client
// (or a failed association) completes every waiting operation; destroying it
// sends no close_notify: async_close does.
//
// Copies: outgoing datagrams are never copied (the endpoint's queue is moved
// to the send, take_pending). A received message is copied once, from the
// stack's decryption buffer into the caller's buffer, or into a queue when
// no async_receive waits for it: the stack reuses that buffer for the next
// record, and an Asio buffer must stay valid until its operation completes.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/asio/address.hpp>
#include <dtlspp/asio/detail/net.hpp>
#include <dtlspp/endpoint.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace dtlspp {

template <backend Backend>
class asio_client {
public:
    using executor_type = detail::net::any_io_executor;
    using endpoint_type = endpoint<Backend>;
    using udp = detail::net::ip::udp;

    explicit asio_client(const executor_type& executor) : state_(std::make_shared<state>(executor)) {}

    template <class ExecutionContext>
        requires std::is_convertible_v<ExecutionContext&, detail::net::execution_context&>
    explicit asio_client(ExecutionContext& context) : asio_client(executor_type(context.get_executor()))
    {
    }

    asio_client(asio_client&&) noexcept = default;
    asio_client& operator=(asio_client&& other) noexcept
    {
        if (this != &other) {
            if (state_) state_->abandon();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    ~asio_client()
    {
        if (state_) state_->abandon();
    }

    executor_type get_executor() const { return state_->socket.get_executor(); }

    // Every datagram in and out, as the endpoint sees it; set before
    // async_connect.
    void set_trace(trace_hook hook) { state_->trace = std::move(hook); }

    // Opens a UDP socket connected to `server` and runs the handshake.
    // Completes as void(std::error_code) once the association is open, or
    // with: errc::config_invalid (and every other error of
    // Backend::make_context and endpoint::connect, e.g. mtu_too_small);
    // errc::handshake_timeout at config::handshake_deadline (psk_mismatch
    // when the keys differ); errc::peer_unreachable when the network
    // reports that nothing listens there (ICMP); verify_failed,
    // handshake_failed, too_many_sessions; a socket error (std::errc) from
    // opening or connecting the socket; std::errc::already_connected for a
    // second call; operation_aborted when the client is closed or destroyed
    // first. last_failure() has the text for humans.
    // @note Calls socket open and connect, then async_send / async_receive.
    template <class Token>
    auto async_connect(const config& c, const udp::endpoint& server, Token&& token)
    {
        return detail::net::async_initiate<Token, void(std::error_code)>(
            [s = state_](auto handler, const config& c, const udp::endpoint& server) {
                s->start_connect(std::move(handler), c, server);
            },
            token, c, server);
    }

    // Sends one message as one record in one datagram. Completes as
    // void(std::error_code) once the datagram is handed to the socket, or
    // with errc::not_open (no open association), errc::message_too_large
    // (more than association()->max_message_size() bytes: nothing is sent),
    // the association's failure, errc::peer_unreachable (ICMP), another
    // socket error, or operation_aborted (closed or destroyed first). The
    // bytes are encrypted before this returns: `data` need not outlive the call.
    // @note Calls async_send on the connected socket (endpoint::take_pending).
    template <class Token>
    auto async_send(detail::net::const_buffer data, Token&& token)
    {
        return detail::net::async_initiate<Token, void(std::error_code)>(
            [s = state_](auto handler, detail::net::const_buffer data) { s->start_send(std::move(handler), data); },
            token, data);
    }

    // Receives one whole message into `buffer`. Completes as
    // void(std::error_code, std::size_t bytes) with the message, or with:
    // errc::message_too_large when the next message is longer than `buffer`
    // (nothing is truncated: the message stays first in line, for a call
    // with a buffer of association()->max_message_size() bytes);
    // errc::peer_closed (the server's close_notify); the association's
    // failure; errc::peer_unreachable (ICMP); errc::not_open before a
    // connect; std::errc::operation_in_progress while another receive
    // waits; operation_aborted (closed or destroyed first). No deadline of
    // its own: cancel with async_close, or race a timer.
    // @note Reads with async_receive on the connected socket, continuously
    // from connect on; this call only waits for the next message.
    template <class Token>
    auto async_receive(detail::net::mutable_buffer buffer, Token&& token)
    {
        return detail::net::async_initiate<Token, void(std::error_code, std::size_t)>(
            [s = state_](auto handler, detail::net::mutable_buffer buffer) {
                s->start_receive(std::move(handler), buffer);
            },
            token, buffer);
    }

    // Sends close_notify and closes the socket. Completes as
    // void(std::error_code) once close_notify is handed to the socket, or
    // with errc::not_open when there is no association to close (never
    // connected, already closed or failed). Waiting operations complete
    // with operation_aborted.
    // @note Calls async_send for close_notify, then closes the socket.
    template <class Token>
    auto async_close(Token&& token)
    {
        return detail::net::async_initiate<Token, void(std::error_code)>(
            [s = state_](auto handler) { s->start_close(std::move(handler)); }, token);
    }

    bool is_open() const noexcept
    {
        return state_->association && state_->association->is_open() && !state_->error;
    }
    // Why the association or its socket failed (code + text); empty while fine.
    const failure& last_failure() const noexcept { return state_->error; }
    // The association (state, counters, cipher suite); null before async_connect.
    const endpoint_type* association() const noexcept
    {
        return state_->association ? &*state_->association : nullptr;
    }
    udp::socket& socket() noexcept { return state_->socket; }

private:
    // Shared with every operation in flight, so a handler that runs after
    // the client is gone finds its state and does nothing.
    struct state : std::enable_shared_from_this<state> {
        explicit state(const executor_type& executor) : socket(executor), timer(executor) {}

        template <class Handler>
        detail::stored_handler<std::error_code> keep(Handler&& handler)
        {
            return {std::forward<Handler>(handler), socket.get_executor()};
        }
        template <class Handler>
        detail::stored_handler<std::error_code, std::size_t> keep_receive(Handler&& handler)
        {
            return {std::forward<Handler>(handler), socket.get_executor()};
        }

        template <class Handler>
        void start_connect(Handler&& handler, const config& c, const udp::endpoint& to)
        {
            auto waiter = keep(std::forward<Handler>(handler));
            if (association || connect_waiter || abandoned) {
                waiter.complete(std::make_error_code(std::errc::already_connected));
                return;
            }
            server = to_peer_address(to).value_or(peer_address{});
            error = {};
            transport_failed = false;
            detail::net_error_code ec;
            if (socket.is_open()) socket.close(ec);
            socket.open(to.protocol(), ec);
            // Connected, so the ICMP error of a closed port reaches us.
            if (!ec) socket.connect(to, ec);
            if (ec) {
                error = {detail::to_std_error(ec), "cannot connect a UDP socket to " + server.to_string() + ": " +
                                                        ec.message()};
                socket.close(ec);
                waiter.complete(error.code);
                return;
            }
            failure f;
            auto ctx = Backend::make_context(c, f);
            std::optional<endpoint_type> e;
            if (ctx) e = endpoint_type::connect(std::move(ctx), clock::now(), f, trace);
            if (!e) {
                error = f;
                socket.close(ec);
                waiter.complete(error.code);
                return;
            }
            association.emplace(std::move(*e));
            association->set_state_hook([this](endpoint_state, endpoint_state to) { on_state(to); });
            connect_waiter = std::move(waiter);
            receive_buffer.resize(max_datagram_in);
            after_event();
        }

        template <class Handler>
        void start_send(Handler&& handler, detail::net::const_buffer data)
        {
            auto waiter = keep(std::forward<Handler>(handler));
            if (!association || error) {
                waiter.complete(error ? error.code : make_error_code(errc::not_open));
                return;
            }
            std::error_code ec;
            association->send(std::span(static_cast<const std::byte*>(data.data()), data.size()), clock::now(), ec);
            if (ec) {
                waiter.complete(ec);
                return;
            }
            send_waiters.push_back(std::move(waiter));
            after_event();
        }

        template <class Handler>
        void start_receive(Handler&& handler, detail::net::mutable_buffer buffer)
        {
            auto waiter = keep_receive(std::forward<Handler>(handler));
            if (receive_waiter) {
                waiter.complete(std::make_error_code(std::errc::operation_in_progress), 0);
                return;
            }
            if (!inbox.empty()) {
                auto& message = inbox.front();
                if (message.size() > buffer.size()) {
                    waiter.complete(make_error_code(errc::message_too_large), 0);
                    return;
                }
                std::memcpy(buffer.data(), message.data(), message.size());
                const auto n = message.size();
                inbox.pop_front();
                waiter.complete(std::error_code{}, n);
                return;
            }
            if (const auto ec = why_not_open()) {
                waiter.complete(ec, 0);
                return;
            }
            receive_waiter = std::move(waiter);
            receive_into = buffer;
        }

        template <class Handler>
        void start_close(Handler&& handler)
        {
            auto waiter = keep(std::forward<Handler>(handler));
            if (!association || error || closing || association->state() == endpoint_state::closed ||
                association->state() == endpoint_state::failed) {
                waiter.complete(make_error_code(errc::not_open));
                return;
            }
            closing = true;
            association->close(clock::now()); // on_state completes the waiting operations
            send_waiters.push_back(std::move(waiter));
            after_event();
        }

        // The code a receive gets when no message can come any more.
        std::error_code why_not_open() const
        {
            if (error) return error.code;
            if (!association || closing) return make_error_code(errc::not_open);
            if (association->state() == endpoint_state::failed) return association->error();
            if (association->state() == endpoint_state::closed)
                return association->error() ? association->error() : make_error_code(errc::peer_closed);
            return {};
        }

        // The endpoint's state hook: runs as the endpoint call that changed
        // the state returns; completions are posted, so nothing reenters.
        void on_state(endpoint_state to)
        {
            if (to == endpoint_state::open) {
                connect_waiter.complete(std::error_code{});
                return;
            }
            if (closing) {
                finish(detail::aborted_error(), false);
                return;
            }
            if (to == endpoint_state::failed) error = association->last_failure();
            finish(why_not_open(), false);
        }

        // Completes every waiting operation with `ec`; the sends too unless
        // their datagrams are still to be handed to the socket.
        void finish(std::error_code ec, bool sends)
        {
            connect_waiter.complete(ec);
            receive_waiter.complete(ec, 0);
            if (!sends) return;
            for (auto& w : in_flight_waiters) w.complete(ec);
            for (auto& w : send_waiters) w.complete(ec);
            in_flight_waiters.clear();
            send_waiters.clear();
        }

        // After anything the endpoint did: send what it queued, keep
        // receiving while the association lives, and move the timer.
        void after_event()
        {
            if (abandoned || !association) return;
            flush();
            const auto st = association->state();
            if (!error && (st == endpoint_state::handshaking || st == endpoint_state::open)) start_reading();
            arm_timer();
        }

        void flush()
        {
            if (sending || transport_failed) return;
            if (association->pending().empty()) {
                for (auto& w : send_waiters) w.complete(std::error_code{});
                send_waiters.clear();
                // Once the association is over and its last datagrams
                // (close_notify, a fatal alert) are out, the socket is too.
                const auto st = association->state();
                if (closing || st == endpoint_state::closed || st == endpoint_state::failed) {
                    detail::net_error_code ignored;
                    socket.close(ignored);
                    timer.cancel();
                }
                return;
            }
            // No copy: the endpoint's queue becomes the send's (and ours
            // becomes the endpoint's next queue).
            association->take_pending(out);
            next_out = 0;
            in_flight_waiters = std::move(send_waiters);
            send_waiters.clear();
            sending = true;
            send_next();
        }

        void send_next()
        {
            if (next_out == out.size()) {
                sending = false;
                for (auto& w : in_flight_waiters) w.complete(std::error_code{});
                in_flight_waiters.clear();
                flush();
                return;
            }
            const auto d = out[next_out];
            socket.async_send(detail::net::buffer(d.data(), d.size()),
                              [self = this->shared_from_this()](const detail::net_error_code& ec, std::size_t) {
                                  self->on_sent(ec);
                              });
        }

        void on_sent(const detail::net_error_code& ec)
        {
            if (abandoned) return;
            if (ec && !detail::would_block(ec)) {
                sending = false;
                fail_transport(ec);
                return;
            }
            // A full socket buffer loses the datagram as the network would:
            // DTLS retransmits handshake flights.
            ++next_out;
            send_next();
        }

        void start_reading()
        {
            if (reading) return;
            reading = true;
            socket.async_receive(detail::net::buffer(receive_buffer),
                                 [self = this->shared_from_this()](const detail::net_error_code& ec, std::size_t n) {
                                     self->on_read(ec, n);
                                 });
        }

        void on_read(const detail::net_error_code& ec, std::size_t n)
        {
            reading = false;
            if (abandoned || detail::is_aborted(ec) || closing) return;
            if (ec) {
                fail_transport(ec);
                return;
            }
            association->receive(std::span<const std::byte>(receive_buffer.data(), n), clock::now(),
                                 [this](std::span<const std::byte> message) { deliver(message); });
            after_event();
        }

        void deliver(std::span<const std::byte> message)
        {
            if (receive_waiter && inbox.empty()) {
                if (message.size() <= receive_into.size()) {
                    std::memcpy(receive_into.data(), message.data(), message.size());
                    receive_waiter.complete(std::error_code{}, message.size());
                    return;
                }
                inbox.emplace_back(message.begin(), message.end());
                receive_waiter.complete(make_error_code(errc::message_too_large), 0);
                return;
            }
            inbox.emplace_back(message.begin(), message.end());
        }

        void arm_timer()
        {
            const auto due = association->next_deadline();
            if (!due || error) {
                if (timer_at) timer.cancel();
                timer_at.reset();
                return;
            }
            if (timer_at && *timer_at == *due) return;
            timer_at = due;
            timer.expires_at(*due); // cancels the wait before, if any
            timer.async_wait([self = this->shared_from_this()](const detail::net_error_code& ec) {
                self->on_timer(ec);
            });
        }

        void on_timer(const detail::net_error_code& ec)
        {
            if (abandoned || detail::is_aborted(ec) || !association) return;
            timer_at.reset();
            const auto now = clock::now();
            // A wait that completed just before the timer moved later.
            if (const auto due = association->next_deadline(); due && now >= *due) association->on_timeout(now);
            after_event();
        }

        // The network's word that nothing listens at the server's address
        // (ICMP port, host or network unreachable, reported on the
        // connected socket) becomes errc::peer_unreachable; other socket
        // errors stay as they are.
        void fail_transport(const detail::net_error_code& ec)
        {
            transport_failed = true;
            const auto code = detail::to_std_error(ec);
            if (ec == detail::net::error::connection_refused || ec == detail::net::error::host_unreachable ||
                ec == detail::net::error::network_unreachable)
                error = make_failure(errc::peer_unreachable,
                                     "no DTLS server at " + server.to_string() + ": " + ec.message() + " (ICMP)");
            else
                error = {code, "socket error with " + server.to_string() + ": " + ec.message()};
            finish(error.code, true);
            timer.cancel();
            timer_at.reset();
        }

        // The client is gone: complete what waits, close the socket.
        void abandon()
        {
            if (abandoned) return;
            finish(detail::aborted_error(), true);
            abandoned = true;
            detail::net_error_code ignored;
            socket.close(ignored);
            timer.cancel();
        }

        udp::socket socket;
        detail::net::steady_timer timer;
        std::optional<endpoint_type> association;
        trace_hook trace;
        peer_address server;
        failure error; // the association's failure, or the socket's
        bool abandoned = false;
        bool closing = false;
        bool transport_failed = false; // nothing more is sent or received
        // Receiving: one datagram at a time, into a buffer of the largest
        // datagram DTLS allows; messages no async_receive waited for.
        std::vector<std::byte> receive_buffer;
        bool reading = false;
        std::deque<std::vector<std::byte>> inbox;
        detail::stored_handler<std::error_code, std::size_t> receive_waiter;
        detail::net::mutable_buffer receive_into;
        // Sending: the datagrams taken from the endpoint, sent in order.
        datagram_queue out;
        std::size_t next_out = 0;
        bool sending = false;
        std::vector<detail::stored_handler<std::error_code>> send_waiters;      // their datagrams are queued
        std::vector<detail::stored_handler<std::error_code>> in_flight_waiters; // theirs are in `out`
        detail::stored_handler<std::error_code> connect_waiter;
        std::optional<time_point> timer_at;
    };

    std::shared_ptr<state> state_;
};

} // namespace dtlspp
