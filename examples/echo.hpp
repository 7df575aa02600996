// The echo logic, written once as templates over the backend: the server
// echoes every message back on the same association; the client sends
// --count messages of --size bytes and checks every reply.
#pragma once

#include "capture.hpp"
#include "options.hpp"

#include <dtlspp/endpoint.hpp>
#include <dtlspp/server.hpp>
#include <dtlspp/trace.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <deque>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace examples {

inline std::atomic<bool> stop_requested{false};

inline dtlspp::trace_hook verbose_trace(bool on)
{
    if (!on) return {};
    return [](dtlspp::direction d, std::span<const std::byte> datagram) {
        std::cout << dtlspp::describe_datagram(d, datagram) << '\n';
    };
}

// The examples run the sans-I/O cores (server<Backend>, endpoint<Backend>)
// on their own small socket loops rather than through udp_server / client:
// those own their sockets and report datagrams without addresses, while the
// capture must see every datagram where it crosses the socket, with the real
// source and destination, including the stateless HelloVerifyRequest
// exchange that happens before any association exists.

template <class Backend>
int run_echo_server(const arguments& args, dtlspp::config c, capture& cap)
{
    using namespace std::chrono;
    using dtlspp::clock;
    std::error_code ec;
    const auto local = dtlspp::peer_address::parse(args.get("--listen", "127.0.0.1:4433"), ec);
    if (ec) throw usage_error("--listen: " + ec.message());
    dtlspp::server_settings settings;
    settings.max_sessions = static_cast<std::size_t>(args.number("--max-sessions", 10000));
    settings.idle_timeout = milliseconds(args.number("--idle-timeout-ms", 60000));
    const long exit_after = args.number("--exit-after", 0); // sessions; 0 = run until a signal

    dtlspp::failure f;
    auto core = dtlspp::server<Backend>::create(c, settings, f);
    if (!core) {
        std::cerr << "echo_server: " << f.what() << '\n';
        return 1;
    }
    auto socket = dtlspp::udp_socket::bind(local, ec);
    if (ec) {
        std::cerr << "echo_server: cannot bind UDP " << local.to_string() << ": " << ec.message() << '\n';
        return 1;
    }
    const bool verbose = args.has("--verbose");
    if (verbose) core->set_trace(verbose_trace(true));
    std::cout << "echo_server: " << Backend::name << " (" << Backend::version() << ") listening on "
              << socket.local_address().to_string() << ", max UDP payload " << c.max_udp_payload << std::endl;

    struct handler {
        dtlspp::server<Backend>* server;
        long closed = 0;
        void on_open(const dtlspp::peer_address& peer)
        {
            const auto* e = server->find(peer);
            std::cout << "open " << peer.to_string() << " " << (e ? e->cipher_suite() : "") << std::endl;
        }
        void on_data(const dtlspp::peer_address& peer, std::span<const std::byte> data)
        {
            std::error_code send_error;
            server->send(peer, data, clock::now(), send_error);
            if (send_error) std::cerr << "echo to " << peer.to_string() << ": " << send_error.message() << '\n';
        }
        void on_close(const dtlspp::peer_address& peer, const dtlspp::failure& why)
        {
            ++closed;
            std::cout << "closed " << peer.to_string() << ": " << why.what() << std::endl;
        }
    } h{&*core};

    const auto flush = [&] {
        core->drain([&](const dtlspp::peer_address& to, std::span<const std::byte> d) {
            std::error_code ignored; // a full buffer is loss; DTLS retransmits
            socket.send_to(d, to, ignored);
            cap.sent(socket, to, d);
        });
    };

    std::signal(SIGINT, [](int) { stop_requested = true; });
    std::signal(SIGTERM, [](int) { stop_requested = true; });
    while (!stop_requested && (exit_after == 0 || h.closed < exit_after)) {
        auto wait = milliseconds(200);
        if (auto deadline = core->next_deadline())
            wait = std::clamp(ceil<milliseconds>(*deadline - clock::now()), milliseconds(0), wait);
        std::error_code wait_error;
        if (socket.wait_readable(wait, wait_error)) {
            thread_local std::array<std::byte, dtlspp::max_datagram_in + 1> buffer;
            for (int i = 0; i < 256; ++i) {
                dtlspp::peer_address from;
                std::error_code receive_error;
                auto n = socket.receive_from(buffer, from, receive_error);
                if (!n) break;
                const std::span<const std::byte> d(buffer.data(), std::min(*n, buffer.size()));
                cap.received(socket, from, d);
                core->receive(from, d, clock::now(), h);
            }
        }
        core->on_timeout(clock::now(), h);
        flush();
    }
    core->shutdown(clock::now(), h);
    flush();
    const auto& k = core->counters();
    std::cout << "echo_server: " << k.sessions_created << " sessions, " << k.hello_verify_requests
              << " HelloVerifyRequests, " << k.datagrams_in << " datagrams in, " << k.datagrams_out << " out"
              << std::endl;
    return 0;
}

// One association on one socket: the blocking loop of dtlspp::client, with
// the capture at the socket.
template <class Backend>
class echo_connection {
public:
    echo_connection(dtlspp::udp_socket socket, dtlspp::peer_address server, dtlspp::endpoint<Backend> association,
                    capture& cap)
        : socket_(std::move(socket)), server_(std::move(server)), association_(std::move(association)), capture_(cap)
    {
    }

    void flush(std::error_code& ec)
    {
        association_.drain([&](std::span<const std::byte> d) {
            std::error_code send_error;
            socket_.send_to(d, server_, send_error);
            // A full socket buffer loses the datagram like the network
            // would; DTLS retransmits. Other errors are the caller's.
            if (send_error && send_error != std::errc::operation_would_block) ec = send_error;
            else if (!send_error) capture_.sent(socket_, server_, d);
        });
    }

    // Waits for a datagram or the endpoint's next deadline (at most `limit`),
    // then feeds, times out and flushes.
    void wait_and_process(std::chrono::milliseconds limit, std::error_code& ec)
    {
        using namespace std::chrono;
        using dtlspp::clock;
        auto wait = limit;
        if (auto deadline = association_.next_deadline())
            wait = std::clamp(ceil<milliseconds>(*deadline - clock::now()), milliseconds(0), limit);
        const bool readable = socket_.wait_readable(wait, ec);
        if (ec) return;
        if (readable) {
            thread_local std::array<std::byte, dtlspp::max_datagram_in + 1> buffer;
            for (int i = 0; i < 64; ++i) {
                dtlspp::peer_address from;
                std::error_code receive_error;
                auto n = socket_.receive_from(buffer, from, receive_error);
                if (!n) break;
                // Only the server we connected to may speak.
                if (!(from == server_)) continue;
                const std::span<const std::byte> d(buffer.data(), std::min(*n, buffer.size()));
                capture_.received(socket_, from, d);
                association_.receive(d, clock::now(), [&](std::span<const std::byte> data) {
                    inbox_.emplace_back(data.begin(), data.end());
                });
            }
        }
        if (auto deadline = association_.next_deadline(); deadline && clock::now() >= *deadline)
            association_.on_timeout(clock::now());
        flush(ec);
    }

    // Up to `timeout` for one message; nullopt on timeout, or with ec set
    // when the association closed or failed.
    std::optional<std::vector<std::byte>> receive(std::chrono::milliseconds timeout, std::error_code& ec)
    {
        using namespace std::chrono;
        using dtlspp::clock;
        ec.clear();
        const auto give_up = clock::now() + timeout;
        while (inbox_.empty()) {
            const auto state = association_.state();
            if (state == dtlspp::endpoint_state::closed || state == dtlspp::endpoint_state::failed) {
                ec = association_.error() ? association_.error() : make_error_code(dtlspp::errc::peer_closed);
                return std::nullopt;
            }
            const auto now = clock::now();
            if (now >= give_up) return std::nullopt;
            wait_and_process(duration_cast<milliseconds>(give_up - now) + milliseconds(1), ec);
            if (ec) return std::nullopt;
        }
        auto message = std::move(inbox_.front());
        inbox_.pop_front();
        return message;
    }

    dtlspp::endpoint<Backend>& association() noexcept { return association_; }

private:
    dtlspp::udp_socket socket_;
    dtlspp::peer_address server_;
    dtlspp::endpoint<Backend> association_;
    capture& capture_;
    std::deque<std::vector<std::byte>> inbox_;
};

template <class Backend>
int run_echo_client(const arguments& args, dtlspp::config c, capture& cap)
{
    using namespace std::chrono;
    using dtlspp::clock;
    std::error_code ec;
    const auto target = args.get("--connect", "127.0.0.1:4433");
    const auto server_address = dtlspp::peer_address::parse(target, ec);
    if (ec) throw usage_error("--connect: " + ec.message());
    if (c.server_name.empty()) c.server_name = args.get("--server-name", server_address.host());
    if (args.has("--insecure")) c.verification = dtlspp::peer_verification::none;
    const long count = args.number("--count", 1);
    const long size = args.number("--size", 32);
    if (size == 0) throw usage_error("--size: must be at least 1");

    dtlspp::failure f;
    // Unbound: the first send_to picks an ephemeral port.
    auto socket = dtlspp::udp_socket::open(server_address.family(), ec);
    if (ec) {
        std::cerr << "echo_client: cannot open a UDP socket for " << server_address.to_string() << ": "
                  << ec.message() << '\n';
        return 1;
    }
    auto ctx = Backend::make_context(c, f);
    if (!ctx) {
        std::cerr << "echo_client: " << f.what() << '\n';
        return 1;
    }
    const auto started = steady_clock::now();
    auto association = dtlspp::endpoint<Backend>::connect(std::move(ctx), clock::now(), f,
                                                          verbose_trace(args.has("--verbose")));
    if (!association) {
        std::cerr << "echo_client: " << f.what() << '\n';
        return 1;
    }
    echo_connection<Backend> client(std::move(socket), server_address, std::move(*association), cap);
    // Every wait is bounded: the endpoint fails the handshake by its deadline.
    client.flush(ec);
    while (!ec && client.association().state() == dtlspp::endpoint_state::handshaking)
        client.wait_and_process(milliseconds(1000), ec);
    if (ec) {
        std::cerr << "echo_client: socket error during the handshake with " << server_address.to_string() << ": "
                  << ec.message() << '\n';
        return 1;
    }
    if (!client.association().is_open()) {
        std::cerr << "echo_client: " << client.association().last_failure().what() << '\n';
        return 1;
    }
    const auto handshake = duration_cast<microseconds>(steady_clock::now() - started);
    std::cout << "echo_client: " << Backend::name << " connected to " << server_address.to_string() << " with "
              << client.association().cipher_suite() << " in " << handshake.count() / 1000.0 << " ms" << std::endl;

    std::vector<std::byte> message(static_cast<std::size_t>(size));
    long echoed = 0;
    for (long i = 0; i < count; ++i) {
        for (std::size_t k = 0; k < message.size(); ++k) message[k] = static_cast<std::byte>('a' + (i + static_cast<long>(k)) % 26);
        client.association().send(message, clock::now(), ec);
        if (!ec) client.flush(ec);
        if (ec) {
            std::cerr << "echo_client: send " << i + 1 << ": " << ec.message() << " (max message "
                      << client.association().max_message_size() << " bytes)\n";
            return 1;
        }
        auto reply = client.receive(seconds(5), ec);
        if (!reply || *reply != message) {
            std::cerr << "echo_client: echo " << i + 1 << " "
                      << (ec ? ec.message() : reply ? "came back different" : "timed out") << '\n';
            return 1;
        }
        ++echoed;
    }
    client.association().close(clock::now());
    std::error_code ignored;
    client.flush(ignored);
    const auto& k = client.association().counters();
    std::cout << "echo_client: " << echoed << "/" << count << " echoes of " << size << " bytes; datagrams out "
              << k.datagrams_out << " in " << k.datagrams_in << ", bytes out " << k.bytes_out << " in " << k.bytes_in
              << ", flights " << k.flights_out << ", retransmissions " << k.retransmissions << ", largest datagram "
              << k.largest_datagram_out << std::endl;
    return 0;
}

} // namespace examples
