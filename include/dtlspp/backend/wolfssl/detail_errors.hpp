// SPDX-License-Identifier: MIT
// wolfSSL error codes and TLS alerts, mapped onto dtlspp::errc.
//
// wolfSSL reports a failed call as wolfSSL_get_error()'s negative code
// (error-ssl.h for the protocol, error-crypt.h for certificates and
// crypto). A received fatal alert is FATAL_ERROR, its description in
// wolfSSL_get_alert_history(); that description goes through the one alert
// table (detail/alerts.hpp) every backend uses.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/detail/alerts.hpp>
#include <dtlspp/detail/trace_names.hpp>
#include <dtlspp/error.hpp>

#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <array>
#include <cstdint>
#include <string>

namespace dtlspp::detail::wolfssl {

// "peer subject name mismatch (-322)".
inline std::string error_text(int code)
{
    std::array<char, WOLFSSL_MAX_ERROR_SZ> text{};
    wolfSSL_ERR_error_string_n(static_cast<unsigned long>(code), text.data(), text.size());
    return std::string(text.data()) + " (" + std::to_string(code) + ")";
}

struct failure_facts {
    int code = 0;             // wolfSSL_get_error()
    bool handshaking = false; // !wolfSSL_is_init_finished()
    bool psk_suite = false;   // the suite being negotiated uses a PSK
    int alert = -1;           // the fatal alert received, when code is FATAL_ERROR
};

inline failure map_failure(const failure_facts& facts)
{
    const auto text = "wolfSSL: " + error_text(facts.code);
    switch (facts.code) {
    case FATAL_ERROR: {
        if (facts.alert < 0) break;
        const auto description = static_cast<std::uint8_t>(facts.alert);
        const auto name = detail::alert_description_name_of(description);
        return make_failure(detail::condition_for_alert(description, facts.psk_suite),
                            "the peer sent a fatal " + std::string(name) + " alert (" + std::to_string(facts.alert) +
                                "); " + text);
    }
    case ZERO_RETURN:
        return make_failure(errc::peer_closed, text);
    // The peer's certificate chain or name.
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
        return make_failure(errc::verify_failed, text + "; no trusted CA (trusted_ca) is the issuer of the peer's chain");
    case ASN_AFTER_DATE_E:
        return make_failure(errc::verify_failed, text + "; the peer's certificate has expired");
    case ASN_BEFORE_DATE_E:
        return make_failure(errc::verify_failed, text + "; the peer's certificate is not valid yet");
    case DOMAIN_NAME_MISMATCH:
    case IPADDR_MISMATCH:
        return make_failure(errc::verify_failed, text + "; the server's certificate does not match server_name");
    case NO_PEER_CERT:
        return make_failure(errc::verify_failed, text + "; the peer sent no certificate, and one is required");
    case VERIFY_CERT_ERROR:
    case ASN_SIG_CONFIRM_E:
        return make_failure(errc::verify_failed, text);
    case DTLS_SIZE_ERROR:
        return make_failure(errc::mtu_too_small,
                            text + "; a handshake message does not fit max_udp_payload: raise max_udp_payload, or "
                                   "shorten the ClientHello (fewer or shorter ALPN names, a shorter server_name)");
    case PSK_KEY_ERROR:
    case BAD_BINDER:
        return make_failure(errc::psk_mismatch, text + "; the peers' psk.identity or psk.key differ");
    case VERIFY_FINISHED_ERROR:
    case VERIFY_MAC_ERROR:
    case DECRYPT_ERROR:
        // With a PSK suite every key derives from the PSK: a Finished that
        // does not verify means the keys differ.
        if (facts.handshaking && facts.psk_suite)
            return make_failure(errc::psk_mismatch,
                                text + "; the peer's Finished did not verify, so the psk.key values differ");
        return make_failure(facts.handshaking ? errc::handshake_failed : errc::bad_record, text);
    case MATCH_SUITE_ERROR:
        return make_failure(errc::handshake_failed,
                            text + "; the peers have no cipher suite in common for their credentials");
    case VERSION_ERROR:
    case UNSUPPORTED_PROTO_VERSION:
        return make_failure(errc::handshake_failed, text + "; no DTLS version in common (min_version/max_version)");
    case UNKNOWN_ALPN_PROTOCOL_NAME_E:
        return make_failure(errc::handshake_failed, text + "; no application protocol (ALPN) in common");
    case MEMORY_ERROR:
    case MEMORY_E:
    case SIDE_ERROR:
        return make_failure(errc::internal, text);
    default: break;
    }
    // Anything else during the handshake is wolfSSL refusing a message the
    // peer (or someone on the path) sent.
    if (facts.handshaking) return make_failure(errc::handshake_failed, text);
    return make_failure(errc::internal, text);
}

} // namespace dtlspp::detail::wolfssl
