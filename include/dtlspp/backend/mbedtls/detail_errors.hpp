// SPDX-License-Identifier: MIT
// mbedTLS 2.28 and 3.6 error codes and TLS alerts, mapped onto dtlspp::errc.
// Codes that exist in one version only are guarded by #ifdef on the code
// itself (3.0 merged several handshake codes into fewer, more general ones).
//
// mbedTLS reports everything as one negative int. Its text comes from
// mbedtls_strerror(); a certificate problem is only described by the flags
// of mbedtls_ssl_get_verify_result(), which mbedtls_x509_crt_verify_info()
// turns into sentences. The failure message keeps both, because that text
// is what tells a human which certificate or setting is wrong.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/detail/alerts.hpp>
#include <dtlspp/detail/trace_names.hpp>
#include <dtlspp/error.hpp>

#include <mbedtls/error.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace dtlspp::detail::mbedtls {

// "SSL - The peer notified us ... (-0x7880)". mbedtls_strerror() writes a
// NUL-terminated string that fits the buffer (error.h).
inline std::string error_text(int code)
{
    std::array<char, 256> text{};
    mbedtls_strerror(code, text.data(), text.size());
    std::array<char, 16> number{};
    const int magnitude = code < 0 ? -code : code;
    std::snprintf(number.data(), number.size(), "%s0x%04X", code < 0 ? "-" : "", static_cast<unsigned>(magnitude));
    return std::string(text.data()) + " (" + number.data() + ")";
}

// mbedtls_x509_crt_verify_info() writes one line per flag, each ending in
// '\n' (x509_crt.h); joined with "; " they read as one sentence.
inline std::string verify_text(std::uint32_t flags)
{
    if (flags == 0) return {};
    std::array<char, 1024> text{};
    if (mbedtls_x509_crt_verify_info(text.data(), text.size(), "", flags) < 0) return "verify flags " + std::to_string(flags);
    std::string joined;
    std::string_view rest(text.data());
    while (!rest.empty()) {
        const auto end = rest.find('\n');
        const auto line = rest.substr(0, end);
        if (!line.empty()) {
            if (!joined.empty()) joined += "; ";
            joined += line;
        }
        if (end == std::string_view::npos) break;
        rest.remove_prefix(end + 1);
    }
    return joined;
}

// Everything the mapping needs to know about the context that failed.
struct failure_facts {
    int code = 0;                   // the mbedTLS return value
    bool handshaking = false;       // ssl->state != MBEDTLS_SSL_HANDSHAKE_OVER
    bool psk_suite = false;         // the negotiated (or negotiating) suite uses a PSK
    int alert = -1;                 // the received alert's description, for FATAL_ALERT_MESSAGE
    std::uint32_t verify_flags = 0; // mbedtls_ssl_get_verify_result() of the session in negotiation
};

inline failure map_failure(const failure_facts& facts)
{
    const auto text = error_text(facts.code);
    switch (facts.code) {
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
#ifdef MBEDTLS_ERR_SSL_PEER_VERIFY_FAILED
    case MBEDTLS_ERR_SSL_PEER_VERIFY_FAILED:
#endif
    {
        auto detail = verify_text(facts.verify_flags);
        return make_failure(errc::verify_failed, "mbedTLS: " + text + (detail.empty() ? "" : "; " + detail));
    }
    // A server with verification = required got an empty Certificate
    // message (ssl.h: "No client certification received from the client,
    // but required by the authentication mode").
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
        return make_failure(errc::verify_failed, "mbedTLS: " + text);
    case MBEDTLS_ERR_SSL_TIMEOUT:
        return make_failure(errc::handshake_timeout,
                            "mbedTLS: " + text + "; the retransmission timer reached max_retransmission_timeout");
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: {
        const auto description = static_cast<std::uint8_t>(facts.alert);
        const auto name = detail::alert_description_name_of(description);
        return make_failure(detail::condition_for_alert(description, facts.psk_suite),
                            "the peer sent a fatal " + std::string(name) + " alert (" + std::to_string(facts.alert) +
                                "); mbedTLS: " + text);
    }
    case MBEDTLS_ERR_SSL_UNKNOWN_IDENTITY:
        return make_failure(errc::psk_mismatch, "mbedTLS: " + text + "; the client's psk.identity is not ours");
    case MBEDTLS_ERR_SSL_INVALID_MAC:
        // During the handshake mbedTLS only reports a bad MAC when it is
        // waiting for Finished (elsewhere it drops the record silently,
        // ssl_msg.c), so with a PSK suite the two sides derived different
        // keys from different pre-shared keys.
        if (facts.handshaking && facts.psk_suite)
            return make_failure(errc::psk_mismatch,
                                "mbedTLS: " + text + "; the peer's Finished did not decrypt, so the psk.key values differ");
        return make_failure(facts.handshaking ? errc::handshake_failed : errc::bad_record, "mbedTLS: " + text);
#ifdef MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE
    case MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE:
    case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
        return make_failure(errc::handshake_failed,
                            "mbedTLS: " + text + "; the peers have no cipher suite in common for their credentials");
#endif
#ifdef MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION
    case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
#else
    case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION:
#endif
        return make_failure(errc::handshake_failed, "mbedTLS: " + text + "; dtlspp speaks DTLS 1.2 only");
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        return make_failure(errc::peer_closed, "mbedTLS: " + text);
    // Faults of this side, whatever the peer sent.
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
    case MBEDTLS_ERR_SSL_INTERNAL_ERROR:
    case MBEDTLS_ERR_SSL_BAD_INPUT_DATA:
    case MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL:
    case MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE:
#ifdef MBEDTLS_ERR_SSL_HW_ACCEL_FAILED
    case MBEDTLS_ERR_SSL_HW_ACCEL_FAILED:
#endif
        return make_failure(errc::internal, "mbedTLS: " + text);
    }
    // Any other error during the handshake is mbedTLS refusing a message the
    // peer (or someone on the path) sent: MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE,
    // MBEDTLS_ERR_SSL_BAD_HS_* for a message it could not parse. OpenSSL's
    // unexpected_message and decode_error give handshake_failed; so must
    // these, on the side that refused as on the side that gets its alert.
    if (facts.handshaking) return make_failure(errc::handshake_failed, "mbedTLS: " + text);
    return make_failure(errc::internal, "mbedTLS: " + text);
}

} // namespace dtlspp::detail::mbedtls
