// Test support: a client endpoint and a server<Backend> joined by in-memory
// datagram pipes, with a hook that may drop, corrupt or inject datagrams,
// and a clock that is real or virtual.
#pragma once

#include <dtlspp/endpoint.hpp>
#include <dtlspp/server.hpp>
#include <dtlspp/transport/address.hpp>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace dtlspp::test {

inline std::string cert_dir()
{
    if (const char* dir = std::getenv("DTLSPP_CERT_DIR")) return dir;
    return DTLSPP_DEFAULT_CERT_DIR;
}

inline pem_source cert_file(const std::string& name) { return pem_source::from_file(cert_dir() + "/" + name); }

// A server config with the ECDSA leaf (or another server certificate).
inline config server_config(const std::string& leaf = "server-ecdsa")
{
    config c;
    c.role = role::server;
    c.certificate = x509_credentials{cert_file(leaf + ".pem"), cert_file(leaf + ".key")};
    if (leaf == "server-rsa4096") c.certificate->certificate_chain = cert_file("server-rsa4096-chain.pem");
    return c;
}

inline config client_config(const std::string& ca = "ca.pem")
{
    config c;
    c.role = role::client;
    c.trusted_ca = cert_file(ca);
    c.server_name = "localhost";
    return c;
}

inline psk_credentials test_psk(std::uint8_t fill = 0x42)
{
    return {"dtlspp-test", std::vector<std::uint8_t>(32, fill)};
}

inline config psk_config(role r, std::uint8_t fill = 0x42)
{
    config c;
    c.role = r;
    c.psk = test_psk(fill);
    return c;
}

// Real time for stacks whose timers read the wall clock (OpenSSL), virtual
// time (jumps straight to the next deadline) where the stack runs on ours.
struct test_clock {
    bool is_virtual = false;
    time_point virtual_now = clock::now();

    time_point now() const { return is_virtual ? virtual_now : clock::now(); }
    void wait_until(time_point t)
    {
        if (is_virtual) {
            if (t > virtual_now) virtual_now = t;
        } else {
            std::this_thread::sleep_until(t);
        }
    }
};

using bytes = std::vector<std::byte>;

inline std::span<const std::byte> as_bytes(const std::string& s)
{
    return std::as_bytes(std::span(s.data(), s.size()));
}
inline std::string as_string(std::span<const std::byte> b)
{
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Which way a datagram travels and its 1-based position in that direction.
struct wire_event {
    bool to_server;
    std::size_t index;
    std::span<const std::byte> datagram;
};

// A client and a server on in-memory pipes.
template <class ClientBackend, class ServerBackend = ClientBackend>
class pipe_pair {
    using Backend = ServerBackend;

public:
    // Return false to drop the datagram.
    std::function<bool(const wire_event&)> filter = [](const wire_event&) { return true; };
    // Every datagram that was delivered, for assertions on sizes.
    std::vector<bytes> delivered_to_server, delivered_to_client;
    std::vector<std::string> client_received;
    // Where the server sent each datagram it sent to the client.
    std::vector<peer_address> server_sent_to;
    test_clock time;
    peer_address client_address = peer_address::parse("127.0.0.1:50000");

    pipe_pair(const config& server_cfg, const config& client_cfg, bool virtual_time = false,
              server_settings settings = {})
        : server_cfg_(server_cfg), client_cfg_(client_cfg), settings_(settings)
    {
        time.is_virtual = virtual_time;
    }

    // Creates both sides and sends the ClientHello. False (with f) when the
    // client refused to start.
    bool start(failure& f)
    {
        auto s = server<Backend>::create(server_cfg_, settings_, f);
        if (!s) return false;
        server_.emplace(std::move(*s));
        auto c = endpoint<ClientBackend>::connect(client_cfg_, time.now(), f);
        if (!c) return false;
        client_.emplace(std::move(*c));
        pump();
        return true;
    }

    // Runs until the client is open, closed or failed (and the server has no
    // handshake left), or until `limit` of (real or virtual) time.
    void run_handshake(std::chrono::milliseconds limit = std::chrono::seconds(20))
    {
        run_until([&] { return client_->state() != endpoint_state::handshaking && server_settled(); }, limit);
    }

    template <class Done>
    void run_until(Done done, std::chrono::milliseconds limit)
    {
        const auto give_up = time.now() + limit;
        while (!done() && time.now() < give_up) {
            if (pump()) continue;
            auto next = give_up;
            if (auto d = client_->next_deadline()) next = std::min(next, *d);
            if (auto d = server_->next_deadline()) next = std::min(next, *d);
            time.wait_until(next);
            const auto now = time.now();
            client_->on_timeout(now);
            server_->on_timeout(now, handler_);
            pump();
        }
    }

    void client_send(const std::string& text)
    {
        client_->send(as_bytes(text), time.now());
        pump();
    }

    // Sends text and waits for `expected` to come back (echo server).
    bool echo(const std::string& text, std::chrono::milliseconds limit = std::chrono::seconds(5))
    {
        const auto before = client_received.size();
        client_send(text);
        run_until([&] { return client_received.size() > before; }, limit);
        return client_received.size() > before && client_received.back() == text;
    }

    // Injects a datagram as if the peer had sent it.
    void inject_to_client(std::span<const std::byte> d) { client_->receive(d, time.now(), on_client_data()); pump(); }
    void inject_to_server(std::span<const std::byte> d)
    {
        server_->receive(client_address, d, time.now(), handler_);
        pump();
    }
    // As if a datagram came from another address (a forger, or the client
    // after a NAT rebinding).
    void inject_to_server_from(const peer_address& from, std::span<const std::byte> d)
    {
        server_->receive(from, d, time.now(), handler_);
        pump();
    }

    endpoint<ClientBackend>& client() { return *client_; }
    // The server's side of the association, while it exists.
    const endpoint<Backend>* server_side() const { return server_->find(client_address); }
    server<Backend>& srv() { return *server_; }
    const std::vector<failure>& server_failures() const { return handler_.failures; }
    std::size_t server_opened() const { return handler_.opened; }
    std::size_t server_to_client_index() const { return to_client_count_; }

    bool server_settled() const { return server_->session_count() == 0 || handler_.opened > 0; }

private:
    struct echo_handler {
        server<Backend>* srv = nullptr;
        test_clock* time = nullptr;
        std::size_t opened = 0;
        std::vector<failure> failures;
        void on_open(const peer_address&) { ++opened; }
        void on_data(const peer_address& from, std::span<const std::byte> data)
        {
            std::error_code ec;
            srv->send(from, data, time->now(), ec);
        }
        void on_close(const peer_address&, const failure& f) { failures.push_back(f); }
    };

    auto on_client_data()
    {
        return [this](std::span<const std::byte> d) { client_received.push_back(as_string(d)); };
    }

    // Moves every queued datagram across; true when anything moved.
    bool pump()
    {
        handler_.srv = &*server_;
        handler_.time = &time;
        bool moved = false;
        for (int round = 0; round < 1000; ++round) {
            std::vector<bytes> up, down;
            client_->drain([&](std::span<const std::byte> d) { up.emplace_back(d.begin(), d.end()); });
            server_->drain([&](const peer_address& to, std::span<const std::byte> d) {
                down.emplace_back(d.begin(), d.end());
                server_sent_to.push_back(to);
            });
            if (up.empty() && down.empty()) break;
            moved = true;
            for (auto& d : up) {
                if (!filter({true, ++to_server_count_, d})) continue;
                delivered_to_server.push_back(d);
                server_->receive(client_address, d, time.now(), handler_);
            }
            for (auto& d : down) {
                if (!filter({false, ++to_client_count_, d})) continue;
                delivered_to_client.push_back(d);
                client_->receive(d, time.now(), on_client_data());
            }
        }
        return moved;
    }

    config server_cfg_, client_cfg_;
    server_settings settings_;
    std::optional<server<Backend>> server_;
    std::optional<endpoint<ClientBackend>> client_;
    echo_handler handler_;
    std::size_t to_server_count_ = 0, to_client_count_ = 0;
};

} // namespace dtlspp::test
