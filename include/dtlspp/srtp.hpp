// SPDX-License-Identifier: MIT
// DTLS-SRTP keys (RFC 5764 §4.2): what endpoint::srtp_keys() returns, and
// how long each profile's master key and salt are.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/config.hpp>

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace dtlspp {

// The label RFC 5764 §4.2 gives the RFC 5705 exporter for SRTP keys.
inline constexpr std::string_view srtp_exporter_label = "EXTRACTOR-dtls_srtp";

// Master key and master salt lengths in bytes. RFC 5764 §4.1.2 gives 128
// and 112 bits for the AES-CM profiles. For the NULL-cipher profiles its
// table says 0, but SRTP still derives the authentication keys from a
// master key and salt (RFC 3711 §4.3), so SRTP libraries (libsrtp's
// null-cipher policies, pion/srtp) take the same 128 and 112 bits there:
// dtlspp exports those, so the keys work with them.
struct srtp_key_lengths {
    std::size_t master_key = 0;
    std::size_t master_salt = 0;
};

constexpr srtp_key_lengths key_lengths(srtp_profile p) noexcept
{
    switch (p) {
    case srtp_profile::aes128_cm_hmac_sha1_80:
    case srtp_profile::aes128_cm_hmac_sha1_32:
    case srtp_profile::null_hmac_sha1_80:
    case srtp_profile::null_hmac_sha1_32: return {16, 14};
    }
    return {};
}

// The SRTP master keys and salts of one association, split as RFC 5764
// §4.2 lays out the exported block: client key, server key, client salt,
// server salt. The client's key and salt protect what the client sends,
// the server's what the server sends; each side uses its own to protect
// and its peer's to unprotect.
struct srtp_keying_material {
    srtp_profile profile{};
    std::vector<std::byte> client_master_key;
    std::vector<std::byte> client_master_salt;
    std::vector<std::byte> server_master_key;
    std::vector<std::byte> server_master_salt;
};

// Splits an exported block of 2 × (key + salt) bytes as RFC 5764 §4.2
// lays it out; a shorter block leaves the missing parts empty.
inline srtp_keying_material split_srtp_keying_material(srtp_profile p, std::span<const std::byte> block)
{
    const auto lengths = key_lengths(p);
    std::size_t at = 0;
    auto take = [&](std::size_t n) {
        if (at + n > block.size()) return std::vector<std::byte>();
        std::vector<std::byte> part(block.begin() + static_cast<std::ptrdiff_t>(at),
                                    block.begin() + static_cast<std::ptrdiff_t>(at + n));
        at += n;
        return part;
    };
    srtp_keying_material keys;
    keys.profile = p;
    keys.client_master_key = take(lengths.master_key);
    keys.server_master_key = take(lengths.master_key);
    keys.client_master_salt = take(lengths.master_salt);
    keys.server_master_salt = take(lengths.master_salt);
    return keys;
}

} // namespace dtlspp
