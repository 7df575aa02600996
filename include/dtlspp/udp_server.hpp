// dtlspp::udp_server<Backend>: server<Backend> on one UDP socket, with the
// one small loop that touches it.
#pragma once

#include <dtlspp/detail/socket_loop.hpp>
#include <dtlspp/server.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>

namespace dtlspp {

template <backend Backend>
class udp_server {
public:
    using core_type = server<Backend>;

    static std::optional<udp_server> bind(const config& c, const peer_address& local, server_settings settings,
                                          failure& f)
    {
        auto core = core_type::create(c, settings, f);
        if (!core) return std::nullopt;
        std::error_code ec;
        auto socket = udp_socket::bind(local, ec);
        if (ec) {
            f = {ec, "cannot bind UDP " + local.to_string()};
            return std::nullopt;
        }
        return udp_server(std::move(*core), std::move(socket));
    }

    // Waits up to max_wait (less when a timer is due), then handles every
    // datagram waiting on the socket (at most a batch) and every due timer.
    template <class Handler = no_handler>
    void run_once(std::chrono::milliseconds max_wait, Handler&& handler = {})
    {
        std::error_code ec;
        detail::receive_batch(socket_, detail::wait_time(core_.next_deadline(), max_wait), 256, ec,
                              [&](const peer_address& from, std::span<const std::byte> datagram) {
                                  if (wire_) wire_(direction::in, socket_, from, datagram);
                                  core_.receive(from, datagram, clock::now(), handler);
                              });
        core_.on_timeout(clock::now(), handler);
        flush();
    }

    // Sends one message to an open association (from a handler, too).
    void send(const peer_address& to, std::span<const std::byte> data, std::error_code& ec)
    {
        core_.send(to, data, clock::now(), ec);
    }

    // Closes one association (from a handler, too); see server<Backend>::close.
    void close(const peer_address& peer, std::error_code& ec) { core_.close(peer, clock::now(), ec); }

    // close_notify to every peer.
    template <class Handler = no_handler>
    void shutdown(Handler&& handler = {})
    {
        core_.shutdown(clock::now(), handler);
        flush();
    }

    peer_address local_address() const { return socket_.local_address(); }
    // Every datagram at the socket, with its peer (for captures).
    void set_socket_hook(socket_hook wire) { wire_ = std::move(wire); }
    core_type& core() noexcept { return core_; }
    const core_type& core() const noexcept { return core_; }

    void flush()
    {
        core_.drain([&](const peer_address& to, std::span<const std::byte> d) {
            std::error_code send_error; // a full buffer is loss; DTLS retransmits
            socket_.send_to(d, to, send_error);
            if (!send_error && wire_) wire_(direction::out, socket_, to, d);
        });
    }

private:
    udp_server(core_type core, udp_socket socket) : core_(std::move(core)), socket_(std::move(socket)) {}

    core_type core_;
    udp_socket socket_;
    socket_hook wire_;
};

} // namespace dtlspp
