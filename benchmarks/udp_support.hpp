// Real-socket helpers shared by udp_bench and tls_bench: dtlspp's
// udp_server<B> in a thread of its own (echoing), and many client
// associations multiplexed by one poll loop in the calling thread.
#pragma once

#include "common.hpp"

#include <dtlspp/endpoint.hpp>
#include <dtlspp/udp_server.hpp>

#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/types.h>
#include <atomic>
#include <optional>
#include <poll.h>
#include <pthread.h>
#include <stdexcept>
#include <thread>

namespace bench {

using namespace std::chrono_literals;

// A kB field of /proc/PID/status (VmRSS:, VmHWM:); -1 when it cannot be read.
inline long status_kb(pid_t pid, const char* field)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field));
    return -1;
}

inline dtlspp::config server_config(const std::string& leaf = "server-ecdsa")
{
    dtlspp::config c;
    c.role = dtlspp::role::server;
    c.certificate = dtlspp::x509_credentials{dtlspp::pem_source::from_file(cert_path(leaf + ".pem")),
                                             dtlspp::pem_source::from_file(cert_path(leaf + ".key"))};
    return c;
}

inline dtlspp::config client_config()
{
    dtlspp::config c;
    c.role = dtlspp::role::client;
    c.trusted_ca = dtlspp::pem_source::from_file(cert_path("ca.pem"));
    c.server_name = "localhost";
    return c;
}

// udp_server<B> with an echo handler, run by one thread until stopped.
template <class B>
class server_thread {
public:
    explicit server_thread(dtlspp::server_settings limits = {})
    {
        dtlspp::failure f;
        auto s = dtlspp::udp_server<B>::bind(server_config(), dtlspp::peer_address::parse("127.0.0.1:0"), limits, f);
        if (!s) throw std::runtime_error("udp_server: " + f.message);
        server_.emplace(std::move(*s));
        address_ = server_->local_address();
        thread_ = std::thread([this] {
            echo handler{&*server_};
            while (!stop_.load(std::memory_order_relaxed)) server_->run_once(5ms, handler);
        });
        pthread_getcpuclockid(thread_.native_handle(), &cpu_clock_);
    }
    ~server_thread()
    {
        stop_ = true;
        thread_.join();
    }
    const dtlspp::peer_address& address() const { return address_; }
    double cpu() const { return seconds_of(cpu_clock_); }

private:
    struct echo {
        dtlspp::udp_server<B>* server;
        void on_data(const dtlspp::peer_address& from, std::span<const std::byte> data)
        {
            std::error_code ec;
            server->send(from, data, ec);
        }
    };
    std::optional<dtlspp::udp_server<B>> server_;
    dtlspp::peer_address address_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    clockid_t cpu_clock_{};
};

// Many client associations, each on its own socket, driven by one poll loop.
template <class B>
class clients {
public:
    clients(const dtlspp::peer_address& server) : server_(server)
    {
        dtlspp::failure f;
        ctx_ = B::make_context(client_config(), f);
        if (!ctx_) throw std::runtime_error("client context: " + f.message);
    }

    struct one {
        dtlspp::udp_socket socket;
        std::optional<dtlspp::endpoint<B>> ep;
        std::uint64_t received = 0;
        std::uint64_t handshakes = 0;
    };
    std::vector<one> all;

    void connect(one& c)
    {
        std::error_code ec;
        c.socket = dtlspp::udp_socket::open(dtlspp::address_family::ipv4, ec);
        dtlspp::failure f;
        c.ep = dtlspp::endpoint<B>::connect(ctx_, dtlspp::clock::now(), f);
        if (!c.ep) throw std::runtime_error("connect: " + f.message);
        flush(c);
    }
    void close(one& c)
    {
        c.ep->close(dtlspp::clock::now());
        flush(c);
        c.ep.reset();
    }
    void flush(one& c)
    {
        c.ep->drain([&](std::span<const std::byte> d) {
            std::error_code ignored; // a full buffer is loss; DTLS retransmits
            c.socket.send_to(d, server_, ignored);
        });
    }

    // Waits up to `wait` for datagrams, feeds them and runs due timers.
    // on_event(one&) is called for each association that received something.
    template <class OnEvent>
    void poll_once(std::chrono::milliseconds wait, OnEvent&& on_event)
    {
        fds_.resize(all.size());
        for (std::size_t i = 0; i < all.size(); ++i) fds_[i] = {all[i].socket.native_handle(), POLLIN, 0};
        ::poll(fds_.data(), fds_.size(), static_cast<int>(wait.count()));
        const auto now = dtlspp::clock::now();
        for (std::size_t i = 0; i < all.size(); ++i) {
            auto& c = all[i];
            if (!c.ep) continue;
            bool got = false;
            if (fds_[i].revents & POLLIN) {
                for (int k = 0; k < 64; ++k) {
                    dtlspp::peer_address from;
                    std::error_code ec;
                    auto n = c.socket.receive_from(buffer_, from, ec);
                    if (!n) break;
                    c.ep->receive(std::span<const std::byte>(buffer_.data(), *n), now,
                                  [&](std::span<const std::byte>) { ++c.received; });
                    got = true;
                }
            }
            if (auto d = c.ep->next_deadline(); d && now >= *d) c.ep->on_timeout(now);
            flush(c);
            if (got) on_event(c);
        }
    }

private:
    dtlspp::peer_address server_;
    std::shared_ptr<typename B::context> ctx_;
    std::vector<pollfd> fds_;
    std::array<std::byte, 65536> buffer_;
};

} // namespace bench
