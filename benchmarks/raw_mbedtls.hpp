// The baseline on mbed TLS 2.28: a DTLS 1.2 client and server written
// straight against its C API (bio callbacks on the in-memory pipe, the
// library's own timing callbacks), configured like dtlspp's mbedTLS backend
// (same suites, curves, MTU, no tickets) so that only the wrapping differs.
#pragma once

#include "pipe.hpp"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cookie.h>
#include <mbedtls/timing.h>
#include <mbedtls/x509_crt.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace bench::raw_mbedtls {

inline void check(int ret, const char* what)
{
    if (ret != 0) throw std::runtime_error(std::string(what) + " failed: -0x" + std::to_string(-ret));
}

struct settings {
    std::string leaf = "server-ecdsa";
    bool cookies = true;
    std::uint16_t mtu = 1472;
};

// The curves and suites dtlspp's mbedTLS backend configures.
inline const mbedtls_ecp_group_id curves[] = {MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1,
                                              MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
inline const int client_suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                                    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                                    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                                    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                                    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                                    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                                    0};
inline const int ecdsa_suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                                   MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                                   MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 0};
inline const int rsa_suites[] = {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                                 MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                                 MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, 0};

// Everything an mbedtls_ssl_config points to, for one role.
struct shared_config {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt chain, ca;
    mbedtls_pk_context key;
    mbedtls_ssl_cookie_ctx cookies;
    mbedtls_ssl_config conf;

    shared_config(bool server, const settings& s)
    {
        mbedtls_entropy_init(&entropy);
        mbedtls_ctr_drbg_init(&drbg);
        mbedtls_x509_crt_init(&chain);
        mbedtls_x509_crt_init(&ca);
        mbedtls_pk_init(&key);
        mbedtls_ssl_cookie_init(&cookies);
        mbedtls_ssl_config_init(&conf);
        check(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, nullptr, 0), "drbg seed");
        check(mbedtls_ssl_config_defaults(&conf, server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
                                          MBEDTLS_SSL_TRANSPORT_DATAGRAM, MBEDTLS_SSL_PRESET_DEFAULT),
              "config defaults");
        mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
        mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_curves(&conf, curves);
        mbedtls_ssl_conf_session_tickets(&conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
        if (server) {
            check(mbedtls_x509_crt_parse_file(&chain, cert_path(s.leaf + ".pem").c_str()), "server cert");
            check(mbedtls_pk_parse_keyfile(&key, cert_path(s.leaf + ".key").c_str(), nullptr), "server key");
            check(mbedtls_ssl_conf_own_cert(&conf, &chain, &key), "own cert");
            mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
            mbedtls_ssl_conf_ciphersuites(&conf, mbedtls_pk_can_do(&key, MBEDTLS_PK_ECDSA) ? ecdsa_suites : rsa_suites);
            if (s.cookies) {
                check(mbedtls_ssl_cookie_setup(&cookies, mbedtls_ctr_drbg_random, &drbg), "cookie setup");
                mbedtls_ssl_conf_dtls_cookies(&conf, mbedtls_ssl_cookie_write, mbedtls_ssl_cookie_check, &cookies);
            } else {
                // ssl.h: a NULL check callback turns HelloVerifyRequest off.
                mbedtls_ssl_conf_dtls_cookies(&conf, nullptr, nullptr, nullptr);
            }
        } else {
            check(mbedtls_x509_crt_parse_file(&ca, cert_path("ca.pem").c_str()), "CA");
            mbedtls_ssl_conf_ca_chain(&conf, &ca, nullptr);
            mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
            mbedtls_ssl_conf_ciphersuites(&conf, client_suites);
        }
    }
    ~shared_config()
    {
        mbedtls_ssl_config_free(&conf);
        mbedtls_ssl_cookie_free(&cookies);
        mbedtls_pk_free(&key);
        mbedtls_x509_crt_free(&ca);
        mbedtls_x509_crt_free(&chain);
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
    }
    shared_config(const shared_config&) = delete;
    shared_config& operator=(const shared_config&) = delete;
};

// One mbedtls_ssl_context with its callbacks' state, at a fixed address.
struct connection {
    mbedtls_ssl_context ssl;
    mbedtls_timing_delay_context timer;
    std::span<const std::byte> in;
    datagrams* out = nullptr;
    std::uint32_t peer = 0;
    bool open = false;

    connection(const shared_config& c, std::uint16_t mtu, const char* host)
    {
        mbedtls_ssl_init(&ssl);
        check(mbedtls_ssl_setup(&ssl, &c.conf), "ssl setup");
        mbedtls_ssl_set_bio(&ssl, this, &connection::send, &connection::receive, nullptr);
        mbedtls_ssl_set_timer_cb(&ssl, &timer, mbedtls_timing_set_delay, mbedtls_timing_get_delay);
        mbedtls_ssl_set_mtu(&ssl, mtu);
        if (host) check(mbedtls_ssl_set_hostname(&ssl, host), "hostname");
    }
    ~connection() { mbedtls_ssl_free(&ssl); }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    static int send(void* self, const unsigned char* data, std::size_t n)
    {
        auto& c = *static_cast<connection*>(self);
        c.out->push(c.peer, data, n);
        return static_cast<int>(n);
    }
    static int receive(void* self, unsigned char* buffer, std::size_t capacity)
    {
        auto& c = *static_cast<connection*>(self);
        if (c.in.empty()) return MBEDTLS_ERR_SSL_WANT_READ;
        const auto n = std::min(capacity, c.in.size());
        std::memcpy(buffer, c.in.data(), n);
        c.in = {};
        return static_cast<int>(n);
    }
};

inline bool wants_io(int ret) { return ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE; }

class client {
public:
    std::uint32_t id = 0;

    explicit client(const settings& s) : config_(std::make_unique<shared_config>(false, s)), mtu_(s.mtu) {}

    void start(datagrams& out)
    {
        conn_ = std::make_unique<connection>(*config_, mtu_, "localhost");
        conn_->out = &out;
        conn_->peer = id;
        const int ret = mbedtls_ssl_handshake(&conn_->ssl);
        if (!wants_io(ret)) check(ret, "client handshake start");
    }

    template <class OnData>
    void receive(std::span<const std::byte> d, datagrams& out, OnData&& on_data)
    {
        auto& c = *conn_;
        c.in = d;
        c.out = &out;
        if (!c.open) {
            const int ret = mbedtls_ssl_handshake(&c.ssl);
            if (ret == 0) c.open = true;
            else if (!wants_io(ret)) check(ret, "client handshake");
        }
        if (!c.open) return;
        // Bounded: a datagram holds a few records at most.
        for (int attempt = 0; attempt < 64; ++attempt) {
            const int ret = mbedtls_ssl_read(&c.ssl, buffer_, sizeof buffer_);
            if (ret > 0) {
                on_data(std::span<const std::byte>(reinterpret_cast<std::byte*>(buffer_), static_cast<std::size_t>(ret)));
                continue;
            }
            if (ret == 0 || wants_io(ret)) {
                if (c.in.empty() && mbedtls_ssl_check_pending(&c.ssl) == 0) return;
                continue;
            }
            return;
        }
    }

    void send(std::span<const std::byte> d, datagrams& out)
    {
        conn_->out = &out;
        const int ret = mbedtls_ssl_write(&conn_->ssl, reinterpret_cast<const unsigned char*>(d.data()), d.size());
        if (ret != static_cast<int>(d.size())) throw std::runtime_error("raw mbedTLS write failed");
    }

    void close(datagrams& out)
    {
        conn_->out = &out;
        mbedtls_ssl_close_notify(&conn_->ssl);
        conn_.reset();
    }

    bool is_open() const { return conn_ && conn_->open; }

private:
    std::unique_ptr<shared_config> config_;
    std::uint16_t mtu_;
    std::unique_ptr<connection> conn_;
    unsigned char buffer_[16384 + 256];
};

// One context per peer in a hash map, plus a spare context that answers
// new peers; once their cookie verifies (or at once without cookies) it
// becomes the peer's connection. Application data is echoed.
class server {
public:
    explicit server(const settings& s) : config_(std::make_unique<shared_config>(true, s)), settings_(s) {}
    ~server()
    {
        conns_.clear();
        spare_.reset();
    }

    void receive(std::uint32_t peer, std::span<const std::byte> d, datagrams& out)
    {
        auto found = conns_.find(peer);
        if (found == conns_.end()) {
            if (!spare_) spare_ = std::make_unique<connection>(*config_, settings_.mtu, nullptr);
            auto& c = *spare_;
            c.in = d;
            c.out = &out;
            c.peer = peer;
            check(mbedtls_ssl_set_client_transport_id(&c.ssl, reinterpret_cast<const unsigned char*>(&peer), sizeof peer),
                  "transport id");
            const int ret = mbedtls_ssl_handshake(&c.ssl);
            // The server flight went out: the ClientHello was accepted.
            if (wants_io(ret) && c.ssl.state > MBEDTLS_SSL_SERVER_HELLO_DONE) {
                conns_.emplace(peer, std::move(spare_));
                return;
            }
            // HelloVerifyRequest sent, or garbage: forget this peer
            // (ssl.h: reset the context before the next ClientHello).
            mbedtls_ssl_session_reset(&c.ssl);
            return;
        }
        auto& c = *found->second;
        c.in = d;
        c.out = &out;
        if (!c.open) {
            const int ret = mbedtls_ssl_handshake(&c.ssl);
            if (ret == 0) c.open = true;
            else if (!wants_io(ret)) {
                conns_.erase(found);
                return;
            }
        }
        if (!c.open) return;
        for (int attempt = 0; attempt < 64; ++attempt) {
            const int ret = mbedtls_ssl_read(&c.ssl, buffer_, sizeof buffer_);
            if (ret > 0) {
                mbedtls_ssl_write(&c.ssl, buffer_, static_cast<std::size_t>(ret));
                continue;
            }
            if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
                conns_.erase(found);
                return;
            }
            if (ret == 0 || wants_io(ret)) {
                if (c.in.empty() && mbedtls_ssl_check_pending(&c.ssl) == 0) return;
                continue;
            }
            conns_.erase(found);
            return;
        }
    }

    std::size_t sessions() const { return conns_.size(); }

private:
    std::unique_ptr<shared_config> config_;
    settings settings_;
    std::unordered_map<std::uint32_t, std::unique_ptr<connection>> conns_;
    std::unique_ptr<connection> spare_;
    unsigned char buffer_[16384 + 256];
};

} // namespace bench::raw_mbedtls
