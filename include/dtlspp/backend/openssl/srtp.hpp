// SPDX-License-Identifier: MIT
// The OpenSSL adapter's DTLS-SRTP (RFC 5764) pieces: dtlspp's profiles in
// OpenSSL's names, and the profile a handshake chose.
//
// OpenSSL 3.0 knows the AES-CM and AES-GCM profiles but no NULL-cipher one
// (d1_srtp.c, srtp_known_profiles): SSL_CTX_set_tlsext_use_srtp refuses
// "SRTP_NULL_SHA1_80" although srtp.h defines its number. A server picks
// the first profile of its own list that the client offered
// (tls_parse_ctos_use_srtp, statem/extensions_srvr.c).
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/config.hpp>

#include <openssl/opensslconf.h>
#include <openssl/ssl.h>

#include <optional>
#include <string>
#include <string_view>

namespace dtlspp::detail::openssl {

#if defined(OPENSSL_NO_SRTP)
inline constexpr bool has_srtp = false;
#else
inline constexpr bool has_srtp = true;
#endif

// OpenSSL's name for a profile, empty where it has none.
constexpr std::string_view srtp_name(srtp_profile p) noexcept
{
    switch (p) {
    case srtp_profile::aes128_cm_hmac_sha1_80: return "SRTP_AES128_CM_SHA1_80";
    case srtp_profile::aes128_cm_hmac_sha1_32: return "SRTP_AES128_CM_SHA1_32";
    case srtp_profile::null_hmac_sha1_80:
    case srtp_profile::null_hmac_sha1_32: return {};
    }
    return {};
}

// The colon-separated list SSL_CTX_set_tlsext_use_srtp takes, in the
// config's order; an error text naming the first profile OpenSSL lacks.
inline std::optional<std::string> srtp_profile_list(const config& c, std::string& refusal)
{
    std::string list;
    for (const auto p : c.srtp_profiles) {
        const auto name = srtp_name(p);
        if (name.empty()) {
            refusal = "srtp_profiles: " + std::string(to_string(p)) +
                      " is not available with OpenSSL, which has no NULL-cipher SRTP profile";
            return std::nullopt;
        }
        if (!list.empty()) list += ':';
        list += name;
    }
    return list;
}

// The profile the handshake chose, or none (SSL_get_selected_srtp_profile
// returns NULL without use_srtp or without a common profile).
inline std::optional<srtp_profile> selected_srtp_profile([[maybe_unused]] SSL* ssl) noexcept
{
#if !defined(OPENSSL_NO_SRTP)
    const SRTP_PROTECTION_PROFILE* chosen = SSL_get_selected_srtp_profile(ssl);
    if (chosen == nullptr) return std::nullopt;
    const auto p = static_cast<srtp_profile>(chosen->id);
    // Only a profile dtlspp offered can be chosen; anything else is a
    // profile this enum does not name, reported as none.
    if (srtp_name(p).empty()) return std::nullopt;
    return p;
#else
    return std::nullopt;
#endif
}

} // namespace dtlspp::detail::openssl
