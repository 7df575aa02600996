// What the backend targets share: the backend under test, configs built once
// from the test certificates, a fixed clock, and a client and a server in
// memory that can be stopped at any flight of their handshake.
#pragma once

#include "datagram_input.hpp"

#include <dtlspp/endpoint.hpp>
#include <dtlspp/server.hpp>
#include <dtlspp/trace.hpp>
#include <dtlspp/transport/address.hpp>

#if defined(DTLSPP_FUZZ_OPENSSL)
#include <dtlspp/backend/openssl.hpp>
#endif
#if defined(DTLSPP_FUZZ_MBEDTLS)
#include <dtlspp/backend/mbedtls.hpp>
#endif
#if defined(DTLSPP_FUZZ_WOLFSSL)
#include <dtlspp/backend/wolfssl.hpp>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace dtlspp::fuzz {

// A target is built once per stack, with one of these defined; the seed
// generator defines both and names the backends itself.
#if defined(DTLSPP_FUZZ_WOLFSSL) && defined(DTLSPP_FUZZ_DTLS13)
// wolfSSL held to DTLS 1.3: every config it is given says 1.3 only.
struct wolfssl_dtls13_backend : wolfssl_backend {
    static std::shared_ptr<context> make_context(const config& cfg, failure& f)
    {
        config c = cfg;
        c.min_version = c.max_version = dtls_version::dtls_1_3;
        return wolfssl_backend::make_context(c, f);
    }
};
using fuzz_backend = wolfssl_dtls13_backend;
#elif defined(DTLSPP_FUZZ_WOLFSSL)
using fuzz_backend = wolfssl_backend;
#elif defined(DTLSPP_FUZZ_OPENSSL) && !defined(DTLSPP_FUZZ_MBEDTLS)
using fuzz_backend = openssl_backend;
#elif defined(DTLSPP_FUZZ_MBEDTLS) && !defined(DTLSPP_FUZZ_OPENSSL)
using fuzz_backend = mbedtls_backend;
#endif

// Stops the fuzzer with a message: a broken property is a finding like a
// crash, and the message says which property.
[[noreturn]] inline void finding(const std::string& what)
{
    std::fprintf(stderr, "dtlspp fuzz finding: %s\n", what.c_str());
    __builtin_trap();
}

inline std::string cert_dir()
{
    if (const char* dir = std::getenv("DTLSPP_CERT_DIR")) return dir;
    return DTLSPP_FUZZ_CERT_DIR;
}

inline std::string read_cert(const std::string& name)
{
    std::ifstream in(cert_dir() + "/" + name, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "cannot read %s/%s (set DTLSPP_CERT_DIR)\n", cert_dir().c_str(), name.c_str());
        std::abort();
    }
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every target runs at one fixed instant: the endpoint's deadlines read only
// the time they are given, so an input replays the same way every time.
inline time_point fixed_now() { return time_point(std::chrono::hours(24 * 365)); }

// A cookie secret shared by the targets and the seed generator, and a
// lifetime longer than any run: the cookies in the seed files then verify
// (OpenSSL's cookie period and mbedTLS's cookie timeout read the wall
// clock), so seeds reach the association behind the cookie check.
inline void set_stable_cookies(config& c)
{
    c.cookie_secret.assign(32, 0x5a);
    c.cookie_lifetime = std::chrono::seconds(1LL << 40);
}

inline config certificate_server_config()
{
    config c;
    c.role = role::server;
    c.certificate = x509_credentials{pem_source::from_memory(read_cert("server-ecdsa.pem")),
                                     pem_source::from_memory(read_cert("server-ecdsa.key"))};
    set_stable_cookies(c);
    return c;
}

inline config certificate_client_config()
{
    config c;
    c.role = role::client;
    c.trusted_ca = pem_source::from_memory(read_cert("ca.pem"));
    c.server_name = "localhost";
    return c;
}

inline config psk_config(role r)
{
    config c;
    c.role = r;
    c.psk = psk_credentials{"dtlspp-fuzz", std::vector<std::uint8_t>(32, 0x42)};
    return c;
}

inline const peer_address& client_address()
{
    static const peer_address address = peer_address::parse("10.0.0.1:50000");
    return address;
}

// Everything dtlspp sends must be well-framed DTLS: a peer drops anything
// else, so a malformed datagram out is a bug whoever caused it.
inline void check_well_framed(std::span<const std::byte> datagram, const char* sender)
{
    const auto parsed = parse_datagram(datagram, [](const record_view&) {});
    if (!parsed.ok())
        finding(std::string(sender) + " sent a malformed datagram: " + describe_datagram(direction::out, datagram));
}

struct recording_handler {
    std::vector<std::vector<std::byte>> data;
    std::size_t opened = 0;
    std::size_t closed = 0;
    failure last_close; // why the server last ended an association
    void on_open(const peer_address&) { ++opened; }
    void on_data(const peer_address&, std::span<const std::byte> d) { data.emplace_back(d.begin(), d.end()); }
    void on_close(const peer_address&, const failure& f)
    {
        ++closed;
        last_close = f;
    }
};

// A client endpoint and a server<Backend> joined in memory, moved one flight
// at a time so that a target can stop at any point of the handshake.
template <class ClientBackend, class ServerBackend = ClientBackend>
class handshake_pair {
public:
    using datagrams = std::vector<std::vector<std::byte>>;

    handshake_pair(std::shared_ptr<typename ServerBackend::context> server_context,
                   std::shared_ptr<typename ClientBackend::context> client_context)
    {
        failure f;
        auto s = server<ServerBackend>::create(std::move(server_context), server_settings{}, f);
        if (!s) finding("the fixture's server did not start: " + f.what());
        server_.emplace(std::move(*s));
        auto c = endpoint<ClientBackend>::connect(std::move(client_context), fixed_now(), f);
        if (!c) finding("the fixture's client did not start: " + f.what());
        client_.emplace(std::move(*c));
    }

    // What each side queued since the last call.
    datagrams take_from_client()
    {
        datagrams out;
        client_->drain([&](std::span<const std::byte> d) {
            check_well_framed(d, "the client");
            out.emplace_back(d.begin(), d.end());
        });
        return out;
    }
    datagrams take_from_server()
    {
        datagrams out;
        server_->drain([&](const peer_address&, std::span<const std::byte> d) {
            check_well_framed(d, "the server");
            out.emplace_back(d.begin(), d.end());
        });
        return out;
    }

    void to_server(const datagrams& flight)
    {
        for (const auto& d : flight) server_->receive(client_address(), d, fixed_now(), handler);
    }
    void to_client(const datagrams& flight)
    {
        for (const auto& d : flight)
            client_->receive(d, fixed_now(), [&](std::span<const std::byte> data) {
                client_data.emplace_back(data.begin(), data.end());
            });
    }

    // Moves every datagram across until both sides are quiet; returns the
    // flights in wire order (to the server first), for the seed generator.
    void run(std::vector<std::pair<bool, datagrams>>* flights = nullptr)
    {
        for (int round = 0; round < 16; ++round) {
            auto up = take_from_client();
            auto down = take_from_server();
            if (up.empty() && down.empty()) return;
            if (flights && !up.empty()) flights->push_back({true, up});
            to_server(up);
            if (flights && !down.empty()) flights->push_back({false, down});
            to_client(down);
        }
    }

    endpoint<ClientBackend>& client() { return *client_; }
    server<ServerBackend>& srv() { return *server_; }
    const endpoint<ServerBackend>* server_side() const { return server_->find(client_address()); }

    recording_handler handler;
    std::vector<std::vector<std::byte>> client_data;

private:
    std::optional<server<ServerBackend>> server_;
    std::optional<endpoint<ClientBackend>> client_;
};

template <class Backend>
std::shared_ptr<typename Backend::context> make_context_or_die(const config& c)
{
    failure f;
    auto ctx = Backend::make_context(c, f);
    if (!ctx) finding("the fixture's config was refused: " + f.what());
    return ctx;
}

} // namespace dtlspp::fuzz
