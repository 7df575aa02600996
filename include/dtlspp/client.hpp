// SPDX-License-Identifier: MIT
// dtlspp::client<Backend>: a small blocking convenience over one endpoint
// and one UDP socket, for programs that just want to connect, send and
// receive (the echo client is one). Every wait is bounded: connect by the
// handshake deadline, receive by its timeout.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/detail/socket_loop.hpp>
#include <dtlspp/endpoint.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/socket_hook.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <vector>

namespace dtlspp {

template <backend Backend>
class client {
public:
    using endpoint_type = endpoint<Backend>;

    // Opens a UDP socket, connects it to `server` and completes the
    // handshake, or fails with the reason in `f` and returns nullopt. Never
    // throws. `trace` sees each datagram as the endpoint does; `wire` sees it
    // at the socket, with addresses (for captures).
    //
    // Errors (f.code): config_invalid and the backend's load errors (the
    // context is made here, Backend::make_context); peer_unreachable when
    // the network says nothing listens at `server` (ICMP, on the connected
    // socket); handshake_timeout after config::handshake_deadline;
    // verify_failed, handshake_failed, peer_alert and the other handshake
    // failures of errc; a socket error (socket(), connect()) with its
    // system code.
    [[nodiscard]] static std::optional<client> connect(const config& c, const peer_address& server, failure& f,
                                                       typename endpoint_type::trace_hook trace = {},
                                                       socket_hook wire = {})
    {
        std::error_code ec;
        auto socket = udp_socket::open(server.family(), ec);
        if (ec) {
            f = {ec, "cannot open a UDP socket for " + server.to_string()};
            return std::nullopt;
        }
        // Connected, so the ICMP port unreachable of a closed port reaches
        // us and the handshake fails at once (errc::peer_unreachable), as
        // `openssl s_client` does, instead of after handshake_deadline.
        socket.connect(server, ec);
        if (ec) {
            f = {ec, "cannot connect a UDP socket to " + server.to_string()};
            return std::nullopt;
        }
        auto ctx = Backend::make_context(c, f);
        if (!ctx) return std::nullopt;
        auto e = endpoint_type::connect(std::move(ctx), clock::now(), f, std::move(trace));
        if (!e) return std::nullopt;
        client result(std::move(socket), server, std::move(*e), std::move(wire));
        result.flush(ec);
        while (!ec && result.association_.state() == endpoint_state::handshaking)
            result.wait_and_process(std::chrono::milliseconds(1000), ec);
        if (ec) {
            f = describe_socket_error(ec, server);
            return std::nullopt;
        }
        if (!result.association_.is_open()) {
            f = result.association_.last_failure();
            return std::nullopt;
        }
        return result;
    }

    // As above; throws dtlspp::error with the failure instead.
    [[nodiscard]] static client connect(const config& c, const peer_address& server,
                                        typename endpoint_type::trace_hook trace = {}, socket_hook wire = {})
    {
        failure f;
        auto result = connect(c, server, f, std::move(trace), std::move(wire));
        if (!result) throw dtlspp::error(f);
        return std::move(*result);
    }

    // Sends one message as one record in one datagram (endpoint::send), then
    // hands the datagram to the socket (sendto). A full socket buffer loses
    // it as the network would, without an error.
    //
    // Errors: not_open after close or failure; message_too_large above
    // max_message_size(); a stack failure (the association fails with it);
    // peer_unreachable when ICMP said nothing listens at the server; another
    // socket error with its system code.
    void send(std::span<const std::byte> data, std::error_code& ec)
    {
        association_.send(data, clock::now(), ec);
        if (!ec) flush(ec);
        if (ec) ec = describe_socket_error(ec, server_).code;
    }

    // As above; throws dtlspp::error instead.
    void send(std::span<const std::byte> data)
    {
        std::error_code ec;
        send(data, ec);
        if (ec) throw dtlspp::error(failure{ec, "send to " + server_.to_string()});
    }

    // Waits up to `timeout` for one message and copies it into `buffer`;
    // returns its size. Returns nullopt with `ec` clear on timeout. A message
    // is never cut: one larger than `buffer` stays queued and the call
    // returns nullopt with errc::message_too_large; next_message_size() then
    // says how much room it needs. Waits with poll() (select() on Windows)
    // and reads with recvmmsg() where the system has it, else recvfrom().
    //
    // Errors: message_too_large as above; peer_closed once the server sent
    // close_notify; the association's failure (handshake or stack errors,
    // peer_alert) once it failed; peer_unreachable or another socket error.
    [[nodiscard]] std::optional<std::size_t> receive(std::span<std::byte> buffer, std::chrono::milliseconds timeout,
                                                     std::error_code& ec)
    {
        ec.clear();
        const auto give_up = clock::now() + timeout;
        while (inbox_.empty()) {
            if (association_.state() == endpoint_state::closed || association_.state() == endpoint_state::failed) {
                ec = association_.error() ? association_.error() : make_error_code(errc::peer_closed);
                return std::nullopt;
            }
            const auto now = clock::now();
            if (now >= give_up) return std::nullopt;
            wait_and_process(std::chrono::duration_cast<std::chrono::milliseconds>(give_up - now) +
                                 std::chrono::milliseconds(1),
                             ec);
            if (ec) {
                ec = describe_socket_error(ec, server_).code;
                return std::nullopt;
            }
        }
        auto& message = inbox_.front();
        if (message.size() > buffer.size()) {
            ec = make_error_code(errc::message_too_large);
            return std::nullopt;
        }
        const auto n = message.size();
        std::copy_n(message.begin(), n, buffer.begin());
        inbox_.pop_front();
        return n;
    }

    // As above; throws dtlspp::error instead of setting an error code (a
    // timeout is still nullopt, not an exception).
    [[nodiscard]] std::optional<std::size_t> receive(std::span<std::byte> buffer, std::chrono::milliseconds timeout)
    {
        std::error_code ec;
        auto n = receive(buffer, timeout, ec);
        if (ec) {
            const auto& last = association_.last_failure();
            throw dtlspp::error(ec == last.code ? last : failure{ec, "receive from " + server_.to_string()});
        }
        return n;
    }

    // The size of the message the next receive() returns, if one has
    // arrived already; what a buffer needs after message_too_large.
    [[nodiscard]] std::optional<std::size_t> next_message_size() const noexcept
    {
        if (inbox_.empty()) return std::nullopt;
        return inbox_.front().size();
    }

    // Sends close_notify (endpoint::close, then sendto). The association is
    // closed afterwards; a second call does nothing. Errors: a socket error
    // while sending close_notify (the association is closed anyway; the
    // server's idle timeout ends its side if the alert was lost).
    void close(std::error_code& ec)
    {
        ec.clear();
        association_.close(clock::now());
        flush(ec);
        if (ec) ec = describe_socket_error(ec, server_).code;
    }

    // As above, but never throws: a socket error is ignored, for callers
    // that close on their way out (destructors, error paths).
    void close() noexcept
    {
        std::error_code ignored;
        try {
            close(ignored);
        } catch (...) {
            // describe_socket_error may allocate; nothing to report here.
        }
    }

    // Moves the association to a new UDP socket of the same family, on a
    // new ephemeral local port, connected to the same server; the old socket
    // is closed and anything still queued on it is lost (DTLS copes, as with
    // any loss). The association itself is untouched. This is what a NAT
    // rebinding does to a client, made on purpose (to test it, or to leave
    // a path that went bad).
    //
    // With a Connection ID negotiated (association().connection_id()
    // .negotiated), the server finds the association by its CID and follows
    // the client to the new port once an authenticated record arrives from
    // there. Without one, the server sees a stranger: it drops the records
    // (they are not a ClientHello), sends nothing back, and the client gets
    // no error either: send() succeeds and receive() returns nullopt with
    // `ec` clear when its timeout ends, as for lost datagrams, while the
    // server's association at the old port waits for its idle timeout.
    //
    // Errors: a socket error of socket() or connect() with its system code
    // (the association stays on the old socket then).
    void rebind(std::error_code& ec)
    {
        // The old socket stays open until the new one is connected, so the
        // system cannot give the new one the same port.
        auto fresh = udp_socket::open(server_.family(), ec);
        if (!ec) fresh.connect(server_, ec); // binds an ephemeral port
        if (ec) {
            ec = describe_socket_error(ec, server_).code;
            return;
        }
        socket_ = std::move(fresh);
    }

    // As above; throws dtlspp::error instead.
    void rebind()
    {
        std::error_code ec;
        rebind(ec);
        if (ec) throw dtlspp::error(failure{ec, "rebind to " + server_.to_string()});
    }

    // The local address of the socket in use (it changes with rebind()),
    // from getsockname(). Errors: its system code; the second form throws
    // std::system_error.
    [[nodiscard]] peer_address local_address(std::error_code& ec) const { return socket_.local_address(ec); }
    [[nodiscard]] peer_address local_address() const { return socket_.local_address(); }

    const endpoint_type& association() const noexcept { return association_; }
    const udp_socket& socket() const noexcept { return socket_; }

private:
    client(udp_socket socket, peer_address server, endpoint_type association, socket_hook wire)
        : socket_(std::move(socket)), server_(std::move(server)), association_(std::move(association)),
          wire_(std::move(wire))
    {
    }

    // The network's word that nothing listens at the server's address
    // (ICMP port, host or network unreachable, reported on the connected
    // socket) becomes errc::peer_unreachable; other socket errors stay.
    static failure describe_socket_error(const std::error_code& ec, const peer_address& server)
    {
        if (ec == std::errc::connection_refused || ec == std::errc::host_unreachable ||
            ec == std::errc::network_unreachable)
            return make_failure(errc::peer_unreachable,
                                "no DTLS server at " + server.to_string() + ": " + ec.message() + " (ICMP)");
        if (ec.category() == error_category()) return {ec, {}};
        return {ec, "socket error with " + server.to_string() + ": " + ec.message()};
    }

    void flush(std::error_code& ec)
    {
        association_.drain([&](std::span<const std::byte> d) {
            std::error_code send_error;
            socket_.send_to(d, server_, send_error);
            // A full socket buffer loses the datagram like the network
            // would; DTLS retransmits. Other errors are the caller's.
            if (send_error && send_error != std::errc::operation_would_block) ec = send_error;
            else if (!send_error && wire_) wire_(direction::out, socket_, server_, d);
        });
    }

    // Waits for a datagram or the endpoint's next deadline (at most `limit`),
    // then feeds, times out and flushes.
    void wait_and_process(std::chrono::milliseconds limit, std::error_code& ec)
    {
        detail::receive_batch(socket_, detail::wait_time(association_.next_deadline(), limit), 64, ec,
                              [&](const peer_address& from, std::span<const std::byte> datagram) {
                                  // Only the server we connected to may speak.
                                  if (!(from == server_)) return;
                                  if (wire_) wire_(direction::in, socket_, from, datagram);
                                  association_.receive(datagram, clock::now(), [&](std::span<const std::byte> data) {
                                      inbox_.emplace_back(data.begin(), data.end());
                                  });
                              });
        if (ec) return;
        if (auto deadline = association_.next_deadline(); deadline && clock::now() >= *deadline)
            association_.on_timeout(clock::now());
        flush(ec);
    }

    udp_socket socket_;
    peer_address server_;
    endpoint_type association_;
    socket_hook wire_;
    std::deque<std::vector<std::byte>> inbox_;
};

} // namespace dtlspp
