// SPDX-License-Identifier: MIT
// The cipher-suite and group policy, written once for every backend.
//
// Each adapter maps these IANA code points onto its own identifiers (mbedTLS
// uses the IANA numbers themselves; OpenSSL its suite names), offers exactly
// the list offered_suites() returns, in that order, and, as a server, picks
// by that order rather than the client's. So two stacks always agree on the
// suite, whichever side runs which.
//
// The order: ECDHE-PSK first when a PSK is set (forward secrecy and the
// PSK's mutual authentication), then ECDHE with certificates (AES-128-GCM,
// AES-256-GCM, ChaCha20-Poly1305; ECDSA before RSA), and plain PSK last,
// since it has no forward secrecy.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/config.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace dtlspp::detail {

enum class key_exchange { ecdhe_psk, ecdhe_ecdsa, ecdhe_rsa, psk };
enum class bulk_cipher { aes_128_gcm, aes_256_gcm, chacha20_poly1305 };

struct suite_entry {
    std::uint16_t iana;        // the TLS Cipher Suites registry number
    key_exchange exchange;
    bulk_cipher cipher;
    std::string_view iana_name;
};

// In order of preference.
inline constexpr std::array<suite_entry, 10> suite_policy{{
    {0xCCAC, key_exchange::ecdhe_psk, bulk_cipher::chacha20_poly1305, "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256"},
    {0xC02B, key_exchange::ecdhe_ecdsa, bulk_cipher::aes_128_gcm, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
    {0xC02F, key_exchange::ecdhe_rsa, bulk_cipher::aes_128_gcm, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
    {0xC02C, key_exchange::ecdhe_ecdsa, bulk_cipher::aes_256_gcm, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
    {0xC030, key_exchange::ecdhe_rsa, bulk_cipher::aes_256_gcm, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
    {0xCCA9, key_exchange::ecdhe_ecdsa, bulk_cipher::chacha20_poly1305, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
    {0xCCA8, key_exchange::ecdhe_rsa, bulk_cipher::chacha20_poly1305, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
    {0x00A8, key_exchange::psk, bulk_cipher::aes_128_gcm, "TLS_PSK_WITH_AES_128_GCM_SHA256"},
    {0x00A9, key_exchange::psk, bulk_cipher::aes_256_gcm, "TLS_PSK_WITH_AES_256_GCM_SHA384"},
    {0xCCAB, key_exchange::psk, bulk_cipher::chacha20_poly1305, "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256"},
}};

// Key exchange groups, in order of preference (TLS Supported Groups
// registry): x25519, secp256r1, secp384r1, which every stack dtlspp runs on
// has. Larger curves only cost CPU: left to their defaults, mbedTLS 2.28
// prefers secp521r1.
enum class group { x25519, secp256r1, secp384r1 };
inline constexpr std::array<group, 3> group_policy{group::x25519, group::secp256r1, group::secp384r1};

// The record expansion of an AEAD suite's bulk cipher: explicit nonce + tag
// (RFC 5288 §3: AES-GCM sends an 8-byte explicit nonce and a 16-byte tag;
// RFC 7905 §2: ChaCha20-Poly1305 only the 16-byte tag).
constexpr std::size_t aead_expansion(bulk_cipher c) noexcept
{
    return c == bulk_cipher::chacha20_poly1305 ? 16 : 8 + 16;
}

// What a server's own key can sign with.
struct server_key {
    bool ecdsa = false;
    bool rsa = false;
};

// The suites this side offers (a client) or accepts (a server), in order.
// A client offers certificate suites unless it is PSK-only (a PSK and no
// certificate material: nothing to verify a server certificate with); a
// server offers those its own key can complete.
inline std::vector<std::uint16_t> offered_suites(const config& c, server_key key = {})
{
    const bool psk = c.psk.has_value();
    bool ecdsa = false;
    bool rsa = false;
    if (c.role == role::client) {
        const bool certificates = !psk || c.certificate || !c.trusted_ca.empty();
        ecdsa = rsa = certificates;
    } else {
        ecdsa = key.ecdsa;
        rsa = key.rsa;
    }
    std::vector<std::uint16_t> offered;
    for (const auto& s : suite_policy) {
        const bool usable = (s.exchange == key_exchange::ecdhe_psk || s.exchange == key_exchange::psk)
                                ? psk
                                : (s.exchange == key_exchange::ecdhe_ecdsa ? ecdsa : rsa);
        if (usable) offered.push_back(s.iana);
    }
    return offered;
}

inline const suite_entry* find_suite(std::uint16_t iana) noexcept
{
    for (const auto& s : suite_policy)
        if (s.iana == iana) return &s;
    return nullptr;
}

} // namespace dtlspp::detail
