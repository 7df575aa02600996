// dtlspp on the in-memory pipe: endpoint<B> as the client and server<B> as
// the server, with the same interface as the raw implementations. Only
// public dtlspp API is used, as an application would.
#pragma once

#include "pipe.hpp"

#include <dtlspp/endpoint.hpp>
#include <dtlspp/server.hpp>
#include <dtlspp/transport/address.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench::with_dtlspp {

struct settings {
    std::string leaf = "server-ecdsa";
    std::size_t mtu = 1472;
    bool dtls13 = false; // DTLS 1.3 only (wolfSSL); DTLS 1.2 otherwise
};

inline void set_versions(dtlspp::config& c, const settings& s)
{
    if (s.dtls13) c.min_version = c.max_version = dtlspp::dtls_version::dtls_1_3;
}

inline dtlspp::config server_config(const settings& s)
{
    dtlspp::config c;
    c.role = dtlspp::role::server;
    c.max_udp_payload = s.mtu;
    set_versions(c, s);
    c.certificate = dtlspp::x509_credentials{dtlspp::pem_source::from_file(cert_path(s.leaf + ".pem")),
                                             dtlspp::pem_source::from_file(cert_path(s.leaf + ".key"))};
    return c;
}

inline dtlspp::config client_config(const settings& s)
{
    dtlspp::config c;
    c.role = dtlspp::role::client;
    c.max_udp_payload = s.mtu;
    set_versions(c, s);
    c.trusted_ca = dtlspp::pem_source::from_file(cert_path("ca.pem"));
    c.server_name = "localhost";
    return c;
}

// Peer ids map to 127.0.0.1 ports from 10000 up; the server keys its
// sessions by address like it does on a real socket.
inline constexpr std::uint16_t first_port = 10000;
inline dtlspp::peer_address address_of(std::uint32_t peer)
{
    return dtlspp::peer_address::parse("127.0.0.1:" + std::to_string(first_port + peer));
}

template <class B>
class client {
public:
    std::uint32_t id = 0;

    explicit client(const settings& s)
    {
        dtlspp::failure f;
        ctx_ = B::make_context(client_config(s), f);
        if (!ctx_) throw std::runtime_error("dtlspp client context: " + f.message);
    }

    void start(datagrams& out)
    {
        dtlspp::failure f;
        ep_ = dtlspp::endpoint<B>::connect(ctx_, dtlspp::clock::now(), f);
        if (!ep_) throw std::runtime_error("dtlspp connect: " + f.message);
        flush(out);
    }

    template <class OnData>
    void receive(std::span<const std::byte> d, datagrams& out, OnData&& on_data)
    {
        ep_->receive(d, dtlspp::clock::now(), on_data);
        if (ep_->state() == dtlspp::endpoint_state::failed)
            throw std::runtime_error("dtlspp client failed: " + ep_->last_failure().message);
        flush(out);
    }

    void send(std::span<const std::byte> d, datagrams& out)
    {
        ep_->send(d, dtlspp::clock::now());
        flush(out);
    }

    void close(datagrams& out)
    {
        ep_->close(dtlspp::clock::now());
        flush(out);
        ep_.reset();
    }

    bool is_open() const { return ep_ && ep_->is_open(); }
    const dtlspp::endpoint<B>& native() const { return *ep_; }

private:
    void flush(datagrams& out)
    {
        ep_->drain([&](std::span<const std::byte> d) { out.push(id, d); });
    }

    std::shared_ptr<typename B::context> ctx_;
    std::optional<dtlspp::endpoint<B>> ep_;
};

template <class B>
class server {
public:
    explicit server(const settings& s, dtlspp::server_settings limits = {})
    {
        dtlspp::failure f;
        auto created = dtlspp::server<B>::create(server_config(s), limits, f);
        if (!created) throw std::runtime_error("dtlspp server: " + f.message);
        server_.emplace(std::move(*created));
        handler_.owner = this;
    }

    void receive(std::uint32_t peer, std::span<const std::byte> d, datagrams& out)
    {
        while (addresses_.size() <= peer) addresses_.push_back(address_of(static_cast<std::uint32_t>(addresses_.size())));
        now_ = dtlspp::clock::now();
        server_->receive(addresses_[peer], d, now_, handler_);
        server_->drain([&](const dtlspp::peer_address& to, std::span<const std::byte> datagram) {
            out.push(static_cast<std::uint32_t>(to.port() - first_port), datagram);
        });
    }

    std::size_t sessions() const { return server_->session_count(); }
    dtlspp::server<B>& native() { return *server_; }

private:
    struct echo {
        server* owner = nullptr;
        void on_data(const dtlspp::peer_address& from, std::span<const std::byte> data)
        {
            std::error_code ec;
            owner->server_->send(from, data, owner->now_, ec);
        }
    };

    std::optional<dtlspp::server<B>> server_;
    std::vector<dtlspp::peer_address> addresses_;
    dtlspp::time_point now_{};
    echo handler_;
};

} // namespace bench::with_dtlspp
