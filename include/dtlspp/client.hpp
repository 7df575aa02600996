// dtlspp::client<Backend>: a small blocking convenience over one endpoint
// and one UDP socket, for programs that just want to connect, send and
// receive (the echo client is one). Every wait is bounded: connect by the
// handshake deadline, receive by its timeout.
#pragma once

#include <dtlspp/detail/socket_loop.hpp>
#include <dtlspp/endpoint.hpp>
#include <dtlspp/transport/address.hpp>
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

    // Connects and completes the handshake, or fails with the reason.
    // `trace` sees each datagram as the endpoint does; `wire` sees it at
    // the socket, with addresses (for captures).
    static std::optional<client> connect(const config& c, const peer_address& server, failure& f,
                                         typename endpoint_type::trace_hook trace = {}, socket_hook wire = {})
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

    void send(std::span<const std::byte> data, std::error_code& ec)
    {
        association_.send(data, clock::now(), ec);
        if (!ec) flush(ec);
        if (ec) ec = describe_socket_error(ec, server_).code;
    }

    // Waits up to `timeout` for one message; copies it into `buffer` and
    // returns its size. nullopt on timeout, or with ec set when the
    // association closed or failed.
    std::optional<std::size_t> receive(std::span<std::byte> buffer, std::chrono::milliseconds timeout,
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
        const auto n = std::min(message.size(), buffer.size());
        std::copy_n(message.begin(), n, buffer.begin());
        inbox_.pop_front();
        return n;
    }

    // Sends close_notify.
    void close()
    {
        association_.close(clock::now());
        std::error_code ignored;
        flush(ignored);
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

    // The local address of the socket in use (it changes with rebind()).
    peer_address local_address(std::error_code& ec) const { return socket_.local_address(ec); }
    peer_address local_address() const { return socket_.local_address(); }

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
