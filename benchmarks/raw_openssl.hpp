// The baseline: a DTLS 1.2 client and server written straight against
// OpenSSL's C API, as a careful user would without dtlspp, configured like
// dtlspp's OpenSSL backend (same suites, groups, options, MTU) so that both
// run the same handshake and only the wrapping differs.
//
// OpenSSL 3.0 has no BIO_s_dgram_pair, and a memory BIO is a byte stream
// (two queued datagrams would read as one), so the datagrams pass through
// the smallest custom BIO that keeps one read = one datagram.
#pragma once

#include "pipe.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace bench::raw_openssl {

// The cipher suites and groups dtlspp's OpenSSL backend offers, so the
// ClientHello, the negotiated suite and the key exchange are identical.
inline constexpr const char* suites =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* groups = "X25519:P-256:P-384";

// What one SSL object's BIO reads from and writes to during one call.
struct wire {
    std::span<const std::byte> in; // the datagram to hand over, once
    datagrams* out = nullptr;
    std::uint32_t peer = 0;
};

inline int wire_write(BIO* b, const char* data, int n)
{
    auto* w = static_cast<wire*>(BIO_get_data(b));
    w->out->push(w->peer, data, static_cast<std::size_t>(n));
    return n;
}

inline int wire_read(BIO* b, char* buffer, int capacity)
{
    auto* w = static_cast<wire*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    if (w->in.empty()) {
        BIO_set_retry_read(b);
        return -1;
    }
    const auto n = std::min<std::size_t>(w->in.size(), static_cast<std::size_t>(capacity));
    std::memcpy(buffer, w->in.data(), n);
    w->in = {};
    return static_cast<int>(n);
}

inline long wire_ctrl(BIO*, int command, long, void*)
{
    // statem_flush() treats a flush result <= 0 as failure; everything else
    // (MTU queries, timers, peer addresses) may be ignored because the MTU
    // is set explicitly with SSL_OP_NO_QUERY_MTU.
    return command == BIO_CTRL_FLUSH ? 1 : 0;
}

inline const BIO_METHOD* wire_method()
{
    static BIO_METHOD* m = [] {
        BIO_METHOD* method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "bench wire");
        BIO_meth_set_write(method, wire_write);
        BIO_meth_set_read(method, wire_read);
        BIO_meth_set_ctrl(method, wire_ctrl);
        BIO_meth_set_create(method, [](BIO* b) {
            BIO_set_init(b, 1);
            return 1;
        });
        return method;
    }();
    return m;
}

inline void check(bool ok, const char* what)
{
    if (!ok) {
        char text[256];
        ERR_error_string_n(ERR_get_error(), text, sizeof text);
        throw std::runtime_error(std::string(what) + ": " + text);
    }
}

struct settings {
    std::string leaf = "server-ecdsa"; // server certificate (tests/certs)
    bool cookies = true;
    long mtu = 1472;
};

inline SSL_CTX* make_context(bool server, const settings& s)
{
    SSL_CTX* ctx = SSL_CTX_new(DTLS_method());
    check(ctx != nullptr, "SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 (server && s.cookies ? SSL_OP_COOKIE_EXCHANGE : 0));
    check(SSL_CTX_set_cipher_list(ctx, suites) == 1, "cipher list");
    check(SSL_CTX_set1_groups_list(ctx, groups) == 1, "groups");
    if (server) {
        check(SSL_CTX_use_certificate_file(ctx, cert_path(s.leaf + ".pem").c_str(), SSL_FILETYPE_PEM) == 1, "cert");
        check(SSL_CTX_use_PrivateKey_file(ctx, cert_path(s.leaf + ".key").c_str(), SSL_FILETYPE_PEM) == 1, "key");
    } else {
        check(SSL_CTX_load_verify_locations(ctx, cert_path("ca.pem").c_str(), nullptr) == 1, "CA");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    }
    return ctx;
}

inline SSL* make_ssl(SSL_CTX* ctx, wire& w, long mtu)
{
    SSL* ssl = SSL_new(ctx);
    check(ssl != nullptr, "SSL_new");
    BIO* bio = BIO_new(wire_method());
    BIO_set_data(bio, &w);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_mtu(ssl, mtu); // after the BIO: OpenSSL checks it against the BIO's overhead
    return ssl;
}

class client {
public:
    std::uint32_t id = 0;

    explicit client(const settings& s) : ctx_(make_context(false, s)), mtu_(s.mtu) {}
    ~client()
    {
        if (ssl_) SSL_free(ssl_);
        SSL_CTX_free(ctx_);
    }
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    void start(datagrams& out)
    {
        if (ssl_) SSL_free(ssl_);
        open_ = false;
        wire_ = {{}, &out, id};
        ssl_ = make_ssl(ctx_, wire_, mtu_);
        SSL_set_connect_state(ssl_);
        SSL_set_tlsext_host_name(ssl_, "localhost");
        SSL_set1_host(ssl_, "localhost");
        SSL_do_handshake(ssl_);
    }

    template <class OnData>
    void receive(std::span<const std::byte> d, datagrams& out, OnData&& on_data)
    {
        wire_ = {d, &out, id};
        if (!open_) {
            const int rc = SSL_do_handshake(ssl_);
            if (rc == 1) open_ = true;
            else if (SSL_get_error(ssl_, rc) != SSL_ERROR_WANT_READ) throw std::runtime_error("raw OpenSSL client handshake failed");
        }
        if (open_) {
            std::size_t n = 0;
            while (SSL_read_ex(ssl_, buffer_, sizeof buffer_, &n) == 1)
                on_data(std::span<const std::byte>(reinterpret_cast<std::byte*>(buffer_), n));
        }
    }

    void send(std::span<const std::byte> d, datagrams& out)
    {
        wire_ = {{}, &out, id};
        std::size_t n = 0;
        if (SSL_write_ex(ssl_, d.data(), d.size(), &n) != 1) throw std::runtime_error("raw OpenSSL SSL_write failed");
    }

    void close(datagrams& out)
    {
        wire_ = {{}, &out, id};
        SSL_shutdown(ssl_);
        SSL_free(ssl_);
        ssl_ = nullptr;
        open_ = false;
    }

    bool is_open() const { return open_; }
    SSL* native() const { return ssl_; }

private:
    SSL_CTX* ctx_;
    long mtu_;
    SSL* ssl_ = nullptr;
    wire wire_;
    bool open_ = false;
    unsigned char buffer_[16384 + 256];
};

// One SSL per peer in a hash map, plus a spare SSL that answers ClientHellos
// with DTLSv1_listen until a cookie verifies; it then becomes the peer's
// connection. Application data is echoed.
class server {
public:
    explicit server(const settings& s) : ctx_(make_context(true, s)), settings_(s), address_(BIO_ADDR_new())
    {
        RAND_bytes(secret_, sizeof secret_);
        SSL_CTX_set_app_data(ctx_, this);
        SSL_CTX_set_cookie_generate_cb(ctx_, &server::make_cookie);
        SSL_CTX_set_cookie_verify_cb(ctx_, &server::check_cookie);
    }
    ~server()
    {
        conns_.clear();
        spare_.reset();
        BIO_ADDR_free(address_);
        SSL_CTX_free(ctx_);
    }
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    void receive(std::uint32_t peer, std::span<const std::byte> d, datagrams& out)
    {
        auto found = conns_.find(peer);
        if (found == conns_.end()) {
            if (!spare_) spare_ = std::make_unique<connection>(ctx_, settings_.mtu);
            spare_->w = {d, &out, peer};
            if (settings_.cookies) {
                current_peer_ = peer;
                const int rc = DTLSv1_listen(spare_->ssl, address_);
                if (rc <= 0) {
                    if (rc < 0) spare_.reset();
                    return;
                }
                // DTLSv1_listen keeps the verified ClientHello; SSL_accept
                // goes on from there without reading it again.
                spare_->w.in = {};
            }
            found = conns_.emplace(peer, std::move(spare_)).first;
        } else {
            found->second->w = {d, &out, peer};
        }
        auto& c = *found->second;
        if (!c.open) {
            const int rc = SSL_do_handshake(c.ssl);
            if (rc == 1) c.open = true;
            else if (SSL_get_error(c.ssl, rc) != SSL_ERROR_WANT_READ) {
                conns_.erase(found);
                return;
            }
        }
        if (!c.open) return;
        std::size_t n = 0;
        for (;;) {
            if (SSL_read_ex(c.ssl, buffer_, sizeof buffer_, &n) == 1) {
                std::size_t written = 0;
                SSL_write_ex(c.ssl, buffer_, n, &written);
                continue;
            }
            if (SSL_get_error(c.ssl, 0) == SSL_ERROR_ZERO_RETURN) conns_.erase(found);
            return;
        }
    }

    std::size_t sessions() const { return conns_.size(); }

private:
    struct connection {
        connection(SSL_CTX* ctx, long mtu) : ssl(make_ssl(ctx, w, mtu)) { SSL_set_accept_state(ssl); }
        ~connection() { SSL_free(ssl); }
        wire w;
        SSL* ssl;
        bool open = false;
    };

    // A stateless cookie: HMAC-SHA256(secret, peer id).
    static int make_cookie(SSL* ssl, unsigned char* cookie, unsigned int* length)
    {
        auto* self = static_cast<server*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
        HMAC(EVP_sha256(), self->secret_, sizeof self->secret_, reinterpret_cast<unsigned char*>(&self->current_peer_),
             sizeof self->current_peer_, cookie, length);
        return 1;
    }
    static int check_cookie(SSL* ssl, const unsigned char* cookie, unsigned int length)
    {
        unsigned char expected[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        make_cookie(ssl, expected, &n);
        return n == length && CRYPTO_memcmp(expected, cookie, n) == 0;
    }

    SSL_CTX* ctx_;
    settings settings_;
    BIO_ADDR* address_;
    unsigned char secret_[32];
    std::uint32_t current_peer_ = 0;
    std::unordered_map<std::uint32_t, std::unique_ptr<connection>> conns_;
    std::unique_ptr<connection> spare_;
    unsigned char buffer_[16384 + 256];
};

} // namespace bench::raw_openssl
