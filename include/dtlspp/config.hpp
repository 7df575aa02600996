// SPDX-License-Identifier: MIT
// One backend-neutral description of a DTLS endpoint.
//
// Every backend maps these fields onto its own native calls (see
// docs/backends.md). validate() rejects a bad config before any traffic, with
// a message that names the field, so a typo never turns into a handshake that
// silently times out.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/error.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dtlspp {

enum class role { client, server };

// PEM text, either inline or read from a file. Exactly one may be set.
struct pem_source {
    std::string file;
    std::string pem;

    static pem_source from_file(std::string path) { return {std::move(path), {}}; }
    static pem_source from_memory(std::string text) { return {{}, std::move(text)}; }
    bool empty() const noexcept { return file.empty() && pem.empty(); }
};

// A certificate chain (leaf first, then intermediates) and its private key.
struct x509_credentials {
    pem_source certificate_chain;
    pem_source private_key;
};

struct psk_credentials {
    std::string identity;
    std::vector<std::uint8_t> key;
};

// Whether the peer's certificate is checked. Clients verify by default; a
// server asks for client certificates only when told to.
enum class peer_verification {
    none,     // no check at all: only for tests and PSK
    optional, // servers: ask for a certificate, verify it if one is sent
    required, // verify, and fail when none is sent
};

// Cipher suites offered. The default allows only AEAD suites with forward
// secrecy (ECDHE + AES-GCM or ChaCha20-Poly1305), or PSK + AEAD with a PSK.
enum class cipher_policy { aead_only };

// DTLS-SRTP protection profiles (RFC 5764 §4.1.2), valued as their IANA
// code points. Only the profiles both OpenSSL and mbedTLS define are here;
// the RFC 7714 AES-GCM profiles are absent because mbedTLS has none. OpenSSL
// has no NULL-cipher profile: asking an OpenSSL context for one fails with
// errc::config_invalid (docs/backends.md).
enum class srtp_profile : std::uint16_t {
    aes128_cm_hmac_sha1_80 = 0x0001,
    aes128_cm_hmac_sha1_32 = 0x0002,
    null_hmac_sha1_80 = 0x0005,
    null_hmac_sha1_32 = 0x0006,
};

// The RFC's name of a profile ("SRTP_AES128_CM_HMAC_SHA1_80"); empty for a
// value that is none of the above.
inline std::string_view to_string(srtp_profile p) noexcept
{
    switch (p) {
    case srtp_profile::aes128_cm_hmac_sha1_80: return "SRTP_AES128_CM_HMAC_SHA1_80";
    case srtp_profile::aes128_cm_hmac_sha1_32: return "SRTP_AES128_CM_HMAC_SHA1_32";
    case srtp_profile::null_hmac_sha1_80: return "SRTP_NULL_HMAC_SHA1_80";
    case srtp_profile::null_hmac_sha1_32: return "SRTP_NULL_HMAC_SHA1_32";
    }
    return {};
}

// DTLS protocol versions, valued as their wire codes (RFC 6347 §4.1:
// 1.2 is {254, 253}; RFC 9147 §5.3: 1.3 is {254, 252}).
enum class dtls_version : std::uint16_t {
    dtls_1_2 = 0xfefd,
    dtls_1_3 = 0xfefc,
};

// "DTLS 1.2", "DTLS 1.3"; empty for another value.
inline std::string_view to_string(dtls_version v) noexcept
{
    switch (v) {
    case dtls_version::dtls_1_2: return "DTLS 1.2";
    case dtls_version::dtls_1_3: return "DTLS 1.3";
    }
    return {};
}

// Orders versions by age: 1.2 before 1.3 (the wire codes count down).
constexpr bool older_than(dtls_version a, dtls_version b) noexcept
{
    return static_cast<std::uint16_t>(a) > static_cast<std::uint16_t>(b);
}

struct config {
    dtlspp::role role = role::client;

    // The DTLS versions this side offers (clients) or accepts (servers):
    // 1.2 only (the default: OpenSSL 3.0 and mbedTLS have no DTLS 1.3), 1.2
    // to 1.3, or 1.3 only. The handshake settles on the newest version both
    // sides allow; endpoint::version() says which. A stack without DTLS 1.3
    // (backend_traits::versions) offers 1.2 for a range up to 1.3, and
    // refuses a config of 1.3 only with errc::config_invalid.
    dtls_version min_version = dtls_version::dtls_1_2;
    dtls_version max_version = dtls_version::dtls_1_2;

    // The largest UDP payload either side may send, in bytes: the "MTU" as a
    // DTLS stack sees it (link MTU minus IP and UDP headers). 1200 is what
    // QUIC and WebRTC use: it fits IPv6's 1280-byte minimum link MTU with
    // room for tunnels, so it is safe on almost any path.
    std::size_t max_udp_payload = 1200;

    // Our certificate (required on servers unless a PSK is set; optional on
    // clients, for client authentication).
    std::optional<x509_credentials> certificate;
    // CA bundle used to verify the peer.
    pem_source trusted_ca;
    std::optional<psk_credentials> psk;

    // Defaults to required for clients and none for servers (see
    // effective_verification()).
    std::optional<peer_verification> verification;
    // Clients: the host name sent as SNI and checked against the server's
    // certificate. Required when verifying certificates.
    std::string server_name;

    cipher_policy ciphers = cipher_policy::aead_only;

    // Retransmission timer, RFC 6347 §4.2.4.1: start at 1 s, double on each
    // timeout, never above 60 s.
    std::chrono::milliseconds initial_retransmission_timeout{1000};
    std::chrono::milliseconds max_retransmission_timeout{60000};
    // The handshake either completes or fails with errc::handshake_timeout
    // by this time after it started; it never loops.
    std::chrono::milliseconds handshake_deadline{30000};

    // Servers: the secret behind stateless cookies (RFC 6347 §4.2.1). Empty
    // means a random secret per server; set the same one on every server
    // behind a load balancer. At least 16 bytes.
    std::vector<std::uint8_t> cookie_secret;
    // How often the cookie secret rotates (a cookie stays valid for up to
    // two periods).
    std::chrono::seconds cookie_lifetime{60};
    // The clock cookies read (detail/cookie.hpp). Servers that share
    // cookie_secret must read clocks that agree to well within
    // cookie_lifetime, as wall clocks do; empty means the system clock. Tests
    // give a virtual clock to watch cookies expire.
    std::function<std::chrono::system_clock::time_point()> cookie_clock;
    // Fills the span with secret random bytes and returns true, or returns
    // false. Draws the cookie secret when cookie_secret is empty. Empty means
    // the stack's own generator (OpenSSL's RAND_bytes, mbedTLS's CTR_DRBG).
    std::function<bool(std::span<std::uint8_t>)> random_source;

    // Connection ID (RFC 9146): when set, this side asks its peer to put a
    // Connection ID of this many bytes (0 to 32) in every record it sends
    // here, and uses the one its peer asks for. A server then finds an
    // association by its Connection ID, so it survives the client's address
    // or port changing (NAT rebinding). Negotiated only where both stacks
    // support it (backend_traits::connection_id); otherwise the handshake
    // completes without. Use at least 4 bytes on a server: its Connection IDs
    // are drawn at random and a collision refuses the new association.
    std::optional<std::size_t> connection_id;
    // The first bytes of every Connection ID this side draws; the rest stays
    // random. A server index here lets a router (the kernel's reuseport
    // filter in udp_server_group, a QUIC-LB-style load balancer) send a CID
    // record to the server that holds its association. Must be shorter than
    // connection_id. The random part is what keeps CIDs unguessable and
    // distinct: keep at least 4 random bytes.
    std::vector<std::byte> connection_id_prefix;

    // ALPN protocol names offered (clients) or accepted (servers).
    std::vector<std::string> alpn;

    // DTLS-SRTP (RFC 5764): the SRTP protection profiles a client offers in
    // its use_srtp extension, or a server accepts, most preferred first.
    // Empty: no use_srtp extension. A server that shares no profile with
    // the client completes the handshake without SRTP (RFC 5764 §4.1.1: it
    // omits the extension), so check endpoint::srtp_profile() once open.
    // Which side's order wins is the server stack's choice
    // (backend_traits::srtp_server_order). At most 4 profiles, none twice.
    std::vector<srtp_profile> srtp_profiles;

    // Called with the lines of the NSS key log format, hex, so Wireshark can
    // decrypt a capture: on DTLS 1.2 one line per handshake ("CLIENT_RANDOM
    // <client random> <master secret>"), on DTLS 1.3 one per traffic secret
    // ("CLIENT_HANDSHAKE_TRAFFIC_SECRET <client random> <secret>", then
    // SERVER_HANDSHAKE_, CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0,
    // EXPORTER_SECRET). Empty: no key is ever exported.
    std::function<void(std::string_view line)> key_log;

    peer_verification effective_verification() const noexcept
    {
        if (verification) return *verification;
        if (psk && !certificate && trusted_ca.empty()) return peer_verification::none;
        return role == role::client ? peer_verification::required : peer_verification::none;
    }
};

// The smallest payload dtlspp accepts. Below it neither a ClientHello with
// the default suites nor a useful record fits, and OpenSSL refuses to go
// below 256 bytes of DTLS datagram at all.
inline constexpr std::size_t min_udp_payload = 256;
// The largest: a UDP datagram can carry 65,507 bytes over IPv4, but no DTLS
// record exceeds 2^14 bytes of plaintext plus expansion, so larger values only
// hide fragmentation in the IP layer.
inline constexpr std::size_t max_udp_payload_limit = 16384 + 2048;

// The longest Connection ID dtlspp asks for (RFC 9146 allows 255; the
// stacks that implement it cap it lower, mbedTLS at MBEDTLS_SSL_CID_IN_LEN_MAX,
// 32 by default).
inline constexpr std::size_t max_connection_id_length = 32;

// Checks what can be checked without the backend: presence, ranges and
// consistency. Backends add their own checks (can the PEM be parsed, does the
// key match) when building a context.
inline failure validate(const config& c)
{
    auto bad = [](std::string what) { return make_failure(errc::config_invalid, std::move(what)); };

    if (c.max_udp_payload < min_udp_payload)
        return make_failure(errc::mtu_too_small,
                            "max_udp_payload: " + std::to_string(c.max_udp_payload) +
                                " bytes cannot carry a ClientHello in one datagram (minimum " +
                                std::to_string(min_udp_payload) + ")");
    if (c.max_udp_payload > max_udp_payload_limit)
        return bad("max_udp_payload: " + std::to_string(c.max_udp_payload) + " is above the limit of " +
                   std::to_string(max_udp_payload_limit) + " bytes");

    if (to_string(c.min_version).empty() || to_string(c.max_version).empty())
        return bad("min_version/max_version: not a DTLS version dtlspp knows (1.2 or 1.3)");
    if (older_than(c.max_version, c.min_version))
        return bad("max_version: " + std::string(to_string(c.max_version)) + " is older than min_version (" +
                   std::string(to_string(c.min_version)) + ")");

    auto check_source = [&](const pem_source& s, const char* field) -> failure {
        if (!s.file.empty() && !s.pem.empty())
            return bad(std::string(field) + ": set either file or pem, not both");
        return {};
    };
    if (c.certificate) {
        if (c.certificate->certificate_chain.empty()) return bad("certificate.certificate_chain: empty");
        if (c.certificate->private_key.empty()) return bad("certificate.private_key: empty");
        if (auto f = check_source(c.certificate->certificate_chain, "certificate.certificate_chain")) return f;
        if (auto f = check_source(c.certificate->private_key, "certificate.private_key")) return f;
    }
    if (auto f = check_source(c.trusted_ca, "trusted_ca")) return f;
    if (c.psk) {
        if (c.psk->identity.empty()) return bad("psk.identity: empty");
        if (c.psk->identity.size() > 128) return bad("psk.identity: longer than 128 bytes");
        if (c.psk->key.size() < 16) return bad("psk.key: shorter than 16 bytes (128 bits)");
        if (c.psk->key.size() > 64) return bad("psk.key: longer than 64 bytes");
    }

    if (c.role == role::server && !c.certificate && !c.psk)
        return bad("certificate: a server needs a certificate or a PSK");

    const auto verification = c.effective_verification();
    if (verification != peer_verification::none) {
        if (c.trusted_ca.empty())
            return bad("trusted_ca: required to verify the peer's certificate (or set verification = none)");
        if (c.role == role::client && c.server_name.empty())
            return bad("server_name: required to check the server's certificate against a host name");
        if (c.role == role::client && verification == peer_verification::optional)
            return bad("verification: optional is for servers; clients verify (required) or not (none)");
    }

    if (c.initial_retransmission_timeout.count() <= 0)
        return bad("initial_retransmission_timeout: must be positive");
    if (c.max_retransmission_timeout < c.initial_retransmission_timeout)
        return bad("max_retransmission_timeout: below initial_retransmission_timeout");
    if (c.handshake_deadline < c.initial_retransmission_timeout)
        return bad("handshake_deadline: shorter than one retransmission timeout");
    if (c.max_retransmission_timeout > std::chrono::hours(1))
        return bad("max_retransmission_timeout: above one hour");

    if (!c.cookie_secret.empty() && c.cookie_secret.size() < 16)
        return bad("cookie_secret: shorter than 16 bytes");
    if (c.cookie_lifetime.count() <= 0) return bad("cookie_lifetime: must be positive");

    if (!c.connection_id_prefix.empty() &&
        (!c.connection_id || c.connection_id_prefix.size() >= *c.connection_id))
        return bad("connection_id_prefix: " + std::to_string(c.connection_id_prefix.size()) +
                   " bytes; it must be shorter than connection_id");
    if (c.connection_id && *c.connection_id > max_connection_id_length)
        return bad("connection_id: " + std::to_string(*c.connection_id) + " bytes; at most " +
                   std::to_string(max_connection_id_length));

    for (const auto& protocol : c.alpn)
        if (protocol.empty() || protocol.size() > 255)
            return bad("alpn: each protocol name must be 1 to 255 bytes");

    for (std::size_t i = 0; i < c.srtp_profiles.size(); ++i) {
        const auto p = c.srtp_profiles[i];
        if (to_string(p).empty())
            return bad("srtp_profiles: " + std::to_string(static_cast<unsigned>(p)) +
                       " is not a known SRTP protection profile");
        for (std::size_t j = 0; j < i; ++j)
            if (c.srtp_profiles[j] == p) return bad("srtp_profiles: " + std::string(to_string(p)) + " is listed twice");
    }
    // mbedTLS takes at most 4 (MBEDTLS_TLS_SRTP_MAX_PROFILE_LIST_LENGTH), and
    // there are only 4 distinct ones: a longer list has a duplicate, caught
    // above.

    return {};
}

} // namespace dtlspp
