// The echo logic, written once as templates over the backend: the server
// echoes every message back on the same association; the client sends
// --count messages of --size bytes and checks every reply.
#pragma once

#include "capture.hpp"
#include "options.hpp"

#include <dtlspp/client.hpp>
#include <dtlspp/trace.hpp>
#include <dtlspp/udp_server_group.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <deque>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace examples {

inline std::atomic<bool> stop_requested{false};

inline dtlspp::trace_hook verbose_trace(bool on)
{
    if (!on) return {};
    // The framing tells the CID length of records coming in, which the
    // bytes alone cannot: a CID record does not say how long its CID is.
    return [](dtlspp::direction d, std::span<const std::byte> datagram, const dtlspp::wire_framing& framing) {
        std::cout << dtlspp::describe_datagram(d, datagram, framing.connection_id_length) << '\n';
    };
}

inline std::string hex(std::span<const std::byte> bytes)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    for (const auto b : bytes) {
        text += digits[std::to_integer<unsigned>(b) >> 4];
        text += digits[std::to_integer<unsigned>(b) & 0xf];
    }
    return text;
}

// "DTLS 1.3": the version an open association negotiated.
template <class Endpoint>
std::string version_of(const Endpoint& e)
{
    const auto v = e.version();
    return v ? std::string(dtlspp::to_string(*v)) : std::string("DTLS ?");
}

// "connection id: ..." for the connected / open lines, when one was asked
// for: the CIDs in use, or why there are none.
template <class Backend>
std::string describe_connection_id(const dtlspp::config& c, const dtlspp::connection_ids& ids)
{
    if (!c.connection_id) return {};
    const auto one = [](std::span<const std::byte> cid) {
        return std::to_string(cid.size()) + " bytes" + (cid.empty() ? "" : " " + hex(cid));
    };
    if (ids.negotiated) return "connection id: ours " + one(ids.own) + ", peer's " + one(ids.peer);
    if (!Backend::traits.connection_id)
        return "connection id: not negotiated (" + std::string(Backend::name) + " " + Backend::version() +
               " has none)";
    return "connection id: not negotiated (the peer did not take it up)";
}

// The capture plugs into the socket hook of udp_server / client: it sees
// every datagram where it crosses the socket, with the real source and
// destination, the stateless HelloVerifyRequest exchange included.
inline dtlspp::socket_hook capture_hook(capture& cap)
{
    return [&cap](dtlspp::direction d, const dtlspp::udp_socket& socket, const dtlspp::peer_address& peer,
                  std::span<const std::byte> datagram) {
        if (d == dtlspp::direction::out)
            cap.sent(socket, peer, datagram);
        else
            cap.received(socket, peer, datagram);
    };
}

template <class Backend>
int run_echo_server(const arguments& args, dtlspp::config c, capture& cap)
{
    using namespace std::chrono;
    std::error_code ec;
    const auto local = dtlspp::peer_address::parse(args.get("--listen", "127.0.0.1:4433"), ec);
    if (ec) throw usage_error("--listen: " + ec.message());
    dtlspp::server_settings settings;
    settings.max_sessions = static_cast<std::size_t>(args.number("--max-sessions", 10000));
    settings.idle_timeout = milliseconds(args.number("--idle-timeout-ms", 60000));
    const long exit_after = args.number("--exit-after", 0); // sessions; 0 = run until a signal
    dtlspp::group_settings group;
    group.workers = static_cast<unsigned>(args.number("--workers", 1)); // 0: one per CPU
    // Several server processes on one port: the kernel balances them, the
    // shared secret lets each verify the others' cookies, and the index
    // routes Connection ID records to the process that issued the CID.
    group.share_port = args.has("--share-port");
    group.first_worker_index = static_cast<unsigned>(args.number("--worker-index", 0));
    if (args.has("--cookie-secret")) {
        const auto secret = parse_hex("--cookie-secret", args.get("--cookie-secret"), "the secret");
        c.cookie_secret.assign(secret.begin(), secret.end());
    }

    dtlspp::failure f;
    auto server = dtlspp::udp_server_group<Backend>::bind(c, local, settings, group, f);
    if (!server) {
        std::cerr << "echo_server: " << f.what() << '\n';
        return 1;
    }
    // Workers print and capture from their own threads: one line, one
    // captured datagram at a time.
    std::mutex output;
    const auto hook = capture_hook(cap);
    for (std::size_t i = 0; i < server->size(); ++i) {
        auto& w = server->worker(i);
        if (args.has("--verbose")) {
            w.core().set_trace([&output, t = verbose_trace(true)](dtlspp::direction d, std::span<const std::byte> datagram,
                                                                 const dtlspp::wire_framing& framing) {
                const std::lock_guard lock(output);
                t(d, datagram, framing);
            });
        }
        if (hook) {
            w.set_socket_hook([&output, hook](dtlspp::direction d, const dtlspp::udp_socket& socket,
                                              const dtlspp::peer_address& peer, std::span<const std::byte> datagram) {
                const std::lock_guard lock(output);
                hook(d, socket, peer, datagram);
            });
        }
    }
    std::cout << "echo_server: " << Backend::name << " (" << Backend::version() << ") listening on "
              << server->local_address().to_string() << ", max UDP payload " << c.max_udp_payload << ", "
              << server->size() << (server->size() == 1 ? " worker" : " workers")
              << (server->routes_connection_ids() ? " (Connection IDs routed to their worker)" : "") << std::endl;

    std::atomic<long> closed{0};
    struct handler {
        dtlspp::udp_server<Backend>* server;
        const dtlspp::config* config;
        std::mutex* output;
        std::atomic<long>* closed;
        long exit_after;
        bool verbose = false;
        void on_open(const dtlspp::peer_address& peer)
        {
            const auto* e = server->core().find(peer);
            const std::lock_guard lock(*output);
            std::cout << "open " << peer.to_string() << " " << (e ? version_of(*e) + " " + e->cipher_suite() : "");
            if (e && config->connection_id) std::cout << ", " << describe_connection_id<Backend>(*config, e->connection_id());
            std::cout << std::endl;
        }
        // The client's address changed and its Connection ID led the
        // server to the association (RFC 9146): it now answers there.
        void on_move(const dtlspp::peer_address& from, const dtlspp::peer_address& to)
        {
            const std::lock_guard lock(*output);
            std::cout << "echo_server: " << from.to_string() << " moved to " << to.to_string() << " (Connection ID)"
                      << std::endl;
        }
        // The association itself, not only its address: the echo goes out
        // without a second lookup.
        void on_data(dtlspp::association_ref<Backend> peer, std::span<const std::byte> data)
        {
            std::error_code send_error;
            peer.send(data, send_error);
            if (!send_error) return;
            const std::lock_guard lock(*output);
            std::cerr << "echo to " << peer.peer().to_string() << ": " << send_error.message() << '\n';
        }
        void on_close(const dtlspp::peer_address& peer, const dtlspp::failure& why)
        {
            if (exit_after != 0 && ++*closed >= exit_after) stop_requested = true;
            const std::lock_guard lock(*output);
            std::cout << "closed " << peer.to_string() << ": " << why.what() << std::endl;
            // The association is still there while on_close runs: say what
            // it dropped and why, every reason, zeros included.
            const auto* e = server->core().find(peer);
            if (!verbose || !e) return;
            std::cout << "dropped " << peer.to_string() << ":";
            e->counters().for_each_drop(
                [](std::string_view name, std::uint64_t n) { std::cout << ' ' << name << '=' << n; });
            std::cout << std::endl;
        }
        void on_refused(const dtlspp::peer_address& peer, const dtlspp::failure& why)
        {
            const std::lock_guard lock(*output);
            std::cout << "refused " << peer.to_string() << ": " << why.what() << std::endl;
        }
    };

    std::signal(SIGINT, [](int) { stop_requested = true; });
    std::signal(SIGTERM, [](int) { stop_requested = true; });
    // run() returns once stop_requested is set, after every worker's
    // shutdown (close_notify to its peers).
    server->run(
        [&](std::size_t, dtlspp::udp_server<Backend>& w) {
            return handler{&w, &c, &output, &closed, exit_after, args.has("--verbose")};
        },
        stop_requested, milliseconds(200));
    // Every counter, by name: what was refused, expired and dropped is as
    // visible as what was served, at the socket as above it.
    std::cout << "echo_server: counters";
    server->counters().for_each([](std::string_view name, std::uint64_t n) { std::cout << ' ' << name << '=' << n; });
    server->socket_counters().for_each(
        [](std::string_view name, std::uint64_t n) { std::cout << ' ' << name << '=' << n; });
    std::cout << std::endl;
    return 0;
}

template <class Backend>
int run_echo_client(const arguments& args, dtlspp::config c, capture& cap)
{
    using namespace std::chrono;
    std::error_code ec;
    const auto target = args.get("--connect", "127.0.0.1:4433");
    const auto server_address = dtlspp::peer_address::parse(target, ec);
    if (ec) throw usage_error("--connect: " + ec.message());
    if (c.server_name.empty()) c.server_name = args.get("--server-name", server_address.host());
    if (args.has("--insecure")) c.verification = dtlspp::peer_verification::none;
    const long count = args.number("--count", 1);
    const long size = args.number("--size", 32);
    if (size == 0) throw usage_error("--size: must be at least 1");
    const long rebind_after = args.has("--rebind-after") ? args.number("--rebind-after", 0) : -1; // -1: never

    dtlspp::failure f;
    const auto started = steady_clock::now();
    // Every wait is bounded: the endpoint fails the handshake by its deadline.
    auto client = dtlspp::client<Backend>::connect(c, server_address, f, verbose_trace(args.has("--verbose")),
                                                   capture_hook(cap));
    if (!client) {
        std::cerr << "echo_client: " << f.what() << '\n';
        return 1;
    }
    const auto handshake = duration_cast<microseconds>(steady_clock::now() - started);
    std::cout << "echo_client: " << Backend::name << " connected to " << server_address.to_string() << " with "
              << version_of(client->association()) << " " << client->association().cipher_suite() << " in " << handshake.count() / 1000.0 << " ms";
    if (c.connection_id) std::cout << ", " << describe_connection_id<Backend>(c, client->association().connection_id());
    std::cout << std::endl;

    std::vector<std::byte> message(static_cast<std::size_t>(size)), reply(static_cast<std::size_t>(size) + 1);
    long echoed = 0;
    bool rebound = false;
    for (long i = 0; i < count; ++i) {
        if (i == rebind_after) {
            // A NAT rebinding, on purpose: the same association from a new port.
            const auto before = client->local_address(ec);
            if (!ec) client->rebind(ec);
            if (ec) {
                std::cerr << "echo_client: rebind: " << ec.message() << '\n';
                return 1;
            }
            rebound = true;
            std::cout << "echo_client: rebound from " << before.to_string() << " to "
                      << client->local_address().to_string() << std::endl;
        }
        for (std::size_t k = 0; k < message.size(); ++k) message[k] = static_cast<std::byte>('a' + (i + static_cast<long>(k)) % 26);
        client->send(message, ec);
        if (ec) {
            std::cerr << "echo_client: send " << i + 1 << ": " << ec.message() << " (max message "
                      << client->association().max_message_size() << " bytes)\n";
            return 1;
        }
        auto n = client->receive(reply, seconds(5), ec);
        if (!n || *n != message.size() || !std::equal(message.begin(), message.end(), reply.begin())) {
            std::cerr << "echo_client: echo " << i + 1 << " "
                      << (ec ? ec.message() : n ? "came back different" : "timed out");
            // Without a CID the server cannot tell the new port is us.
            if (rebound && !n && !ec && !client->association().connection_id().negotiated)
                std::cerr << " (after the rebind, with no Connection ID the server takes the new port for a stranger)";
            std::cerr << '\n';
            return 1;
        }
        ++echoed;
    }
    client->close();
    const auto& k = client->association().counters();
    std::cout << "echo_client: " << echoed << "/" << count << " echoes of " << size << " bytes; datagrams out "
              << k.datagrams_out << " in " << k.datagrams_in << ", bytes out " << k.bytes_out << " in " << k.bytes_in
              << ", flights " << k.flights_out << ", retransmissions " << k.retransmissions << ", largest datagram "
              << k.largest_datagram_out << std::endl;
    return 0;
}

} // namespace examples
