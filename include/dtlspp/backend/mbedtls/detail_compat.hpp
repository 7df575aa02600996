// SPDX-License-Identifier: MIT
// Every difference between mbedTLS 2.28 and 3.6 the adapter meets, in one
// place. Each #if says which API changed; everything else in the adapter is
// the same code on both.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/detail/policy.hpp>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <psa/crypto.h>
#endif

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#if !(MBEDTLS_VERSION_NUMBER >= 0x021C0000 && MBEDTLS_VERSION_NUMBER < 0x03000000) && \
    !(MBEDTLS_VERSION_NUMBER >= 0x03060000 && MBEDTLS_VERSION_NUMBER < 0x04000000)
#error "dtlspp's mbedtls backend supports the two LTS branches, mbed TLS 2.28 and 3.6"
#endif
#if !defined(MBEDTLS_SSL_PROTO_DTLS) || !defined(MBEDTLS_SSL_DTLS_HELLO_VERIFY) || !defined(MBEDTLS_SSL_DTLS_ANTI_REPLAY) || \
    !defined(MBEDTLS_SSL_ALPN) || !defined(MBEDTLS_MD_C)
#error "dtlspp needs mbed TLS built with MBEDTLS_SSL_PROTO_DTLS, MBEDTLS_SSL_DTLS_HELLO_VERIFY, MBEDTLS_SSL_DTLS_ANTI_REPLAY, MBEDTLS_SSL_ALPN and MBEDTLS_MD_C"
#endif
#if MBEDTLS_VERSION_NUMBER < 0x03000000 && !defined(MBEDTLS_SSL_EXPORT_KEYS)
// 3.x always has the key export callback; 2.28 only with this option.
#error "dtlspp needs mbed TLS 2.28 built with MBEDTLS_SSL_EXPORT_KEYS"
#endif

// 3.x hides the fields of mbedtls_ssl_context and mbedtls_ssl_session behind
// MBEDTLS_PRIVATE() (ssl.h); 2.28 has them public under the same names. The
// adapter reads a few of them for what neither version has a getter for:
// the handshake state, the session in negotiation and the received alert.
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define DTLSPP_MBEDTLS_FIELD(name) MBEDTLS_PRIVATE(name)
#else
#define DTLSPP_MBEDTLS_FIELD(name) name
#endif

namespace dtlspp::detail::mbedtls {

inline constexpr bool is_3x = MBEDTLS_VERSION_NUMBER >= 0x03000000;

// Connection ID with RFC 9146's code points: 3.x with
// MBEDTLS_SSL_DTLS_CONNECTION_ID_COMPAT 0. 2.28 implements only the draft
// (its extension and content type numbers differ, and Debian builds it
// without), so dtlspp never negotiates a CID there.
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SSL_DTLS_CONNECTION_ID) && \
    (!defined(MBEDTLS_SSL_DTLS_CONNECTION_ID_COMPAT) || MBEDTLS_SSL_DTLS_CONNECTION_ID_COMPAT == 0)
inline constexpr bool has_connection_id = true;
#else
inline constexpr bool has_connection_id = false;
#endif

// 3.x shares the PSA key store and its RNG between every context of the
// process: without MBEDTLS_THREADING_C two threads race on them. 2.28's TLS
// code shares nothing between contexts.
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C) && !defined(MBEDTLS_THREADING_C)
inline constexpr bool contexts_on_threads = false;
#else
inline constexpr bool contexts_on_threads = true;
#endif

inline int handshake_state(const mbedtls_ssl_context& ssl) noexcept { return ssl.DTLSPP_MBEDTLS_FIELD(state); }

inline bool handshake_over(const mbedtls_ssl_context& ssl) noexcept
{
    return handshake_state(ssl) == MBEDTLS_SSL_HANDSHAKE_OVER;
}

// The session being negotiated, or the established one after the
// handshake; null before the first ClientHello.
inline const mbedtls_ssl_session* current_session(const mbedtls_ssl_context& ssl) noexcept
{
    if (const auto* negotiating = ssl.DTLSPP_MBEDTLS_FIELD(session_negotiate)) return negotiating;
    return ssl.DTLSPP_MBEDTLS_FIELD(session);
}

// The IANA number of the suite chosen so far, 0 before one is.
inline std::uint16_t chosen_suite(const mbedtls_ssl_context& ssl) noexcept
{
    const auto* session = current_session(ssl);
    return session ? static_cast<std::uint16_t>(session->DTLSPP_MBEDTLS_FIELD(ciphersuite)) : 0;
}

// Whether the peer sent a certificate in the handshake under way.
inline bool peer_sent_certificate(const mbedtls_ssl_context& ssl) noexcept
{
    const auto* negotiating = ssl.DTLSPP_MBEDTLS_FIELD(session_negotiate);
#if defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE)
    return negotiating && negotiating->DTLSPP_MBEDTLS_FIELD(peer_cert) != nullptr;
#else
    // Without the chain kept, a session remembers a digest of the peer's
    // certificate once it has been parsed and verified (ssl_tls.c,
    // mbedtls_ssl_parse_certificate), and only then.
    return negotiating && negotiating->DTLSPP_MBEDTLS_FIELD(peer_cert_digest) != nullptr;
#endif
}

// Neither version has a getter for the alert received: on
// MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE the alert record is still the current
// message, level in in_msg[0], description in in_msg[1] (ssl_msg.c,
// mbedtls_ssl_handle_message_type). -1 when that is not what is there.
inline int received_alert(const mbedtls_ssl_context& ssl) noexcept
{
    const unsigned char* message = ssl.DTLSPP_MBEDTLS_FIELD(in_msg);
    if (message && ssl.DTLSPP_MBEDTLS_FIELD(in_msgtype) == MBEDTLS_SSL_MSG_ALERT &&
        ssl.DTLSPP_MBEDTLS_FIELD(in_msglen) >= 2)
        return message[1];
    return -1;
}

// 3.x needs PSA Crypto initialised before any TLS use when it is compiled
// in (psa/crypto.h: "applications must call psa_crypto_init() before any
// other PSA function", and 3.6's TLS code calls PSA for hashes and keys).
// It may be called any number of times. 2.28 has nothing to initialise.
inline int initialise_crypto() noexcept
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
    const psa_status_t status = psa_crypto_init();
    return status == PSA_SUCCESS ? 0 : MBEDTLS_ERR_SSL_INTERNAL_ERROR;
#else
    return 0;
#endif
}

// 3.x: the key parser and the pair check take an RNG, for the blinding of
// private-key operations (pk.h).
inline int parse_key(mbedtls_pk_context& key, const unsigned char* pem, std::size_t length,
                     mbedtls_ctr_drbg_context& drbg) noexcept
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_pk_parse_key(&key, pem, length, nullptr, 0, mbedtls_ctr_drbg_random, &drbg);
#else
    (void)drbg;
    return mbedtls_pk_parse_key(&key, pem, length, nullptr, 0);
#endif
}

inline int parse_key_file(mbedtls_pk_context& key, const char* path, mbedtls_ctr_drbg_context& drbg) noexcept
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_pk_parse_keyfile(&key, path, nullptr, mbedtls_ctr_drbg_random, &drbg);
#else
    (void)drbg;
    return mbedtls_pk_parse_keyfile(&key, path, nullptr);
#endif
}

inline int check_pair(const mbedtls_pk_context& certificate_key, const mbedtls_pk_context& key,
                      mbedtls_ctr_drbg_context& drbg) noexcept
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_pk_check_pair(&certificate_key, &key, mbedtls_ctr_drbg_random, &drbg);
#else
    (void)drbg;
    return mbedtls_pk_check_pair(&certificate_key, &key);
#endif
}

// DTLS 1.2 only. 3.x names versions by their TLS protocol number;
// 2.28 by major/minor (DTLS 1.2 is TLS 1.2's minor 3).
inline void restrict_to_dtls_1_2(mbedtls_ssl_config& conf) noexcept
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    mbedtls_ssl_conf_min_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

// The server picks by its own suite order. 2.28 does unless built with
// MBEDTLS_SSL_SRV_RESPECT_CLIENT_PREFERENCE; 3.x has a setting for it.
inline void prefer_server_suite_order(mbedtls_ssl_config& conf) noexcept
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    mbedtls_ssl_conf_preference_order(&conf, MBEDTLS_SSL_SRV_CIPHERSUITE_ORDER_SERVER);
#else
    (void)conf;
#if defined(MBEDTLS_SSL_SRV_RESPECT_CLIENT_PREFERENCE)
#error "dtlspp's suite policy needs the server's order: build mbed TLS 2.28 without MBEDTLS_SSL_SRV_RESPECT_CLIENT_PREFERENCE"
#endif
#endif
}

// HMAC-SHA256 through the generic message-digest layer, the same call on
// both versions (the SHA-256 module's own names changed in 3.0).
inline bool hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> message,
                        std::span<std::uint8_t, 32> out) noexcept
{
    const mbedtls_md_info_t* sha256 = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    return sha256 != nullptr &&
           mbedtls_md_hmac(sha256, key.data(), key.size(), message.data(), message.size(), out.data()) == 0;
}

} // namespace dtlspp::detail::mbedtls


namespace dtlspp::detail::mbedtls {

// Key exchange groups: 3.x takes the TLS registry numbers
// (mbedtls_ssl_conf_groups); 2.28 its own curve ids (mbedtls_ssl_conf_curves,
// deprecated in 3.x).
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
using group_id = std::uint16_t;
inline constexpr group_id no_group = MBEDTLS_SSL_IANA_TLS_GROUP_NONE;
constexpr group_id native_group(detail::group g) noexcept
{
    switch (g) {
    case detail::group::x25519: return MBEDTLS_SSL_IANA_TLS_GROUP_X25519;
    case detail::group::secp256r1: return MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1;
    case detail::group::secp384r1: return MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1;
    }
    return no_group;
}
inline void set_groups(mbedtls_ssl_config& conf, const group_id* list) noexcept { mbedtls_ssl_conf_groups(&conf, list); }
#else
using group_id = mbedtls_ecp_group_id;
inline constexpr group_id no_group = MBEDTLS_ECP_DP_NONE;
constexpr group_id native_group(detail::group g) noexcept
{
    switch (g) {
    case detail::group::x25519: return MBEDTLS_ECP_DP_CURVE25519;
    case detail::group::secp256r1: return MBEDTLS_ECP_DP_SECP256R1;
    case detail::group::secp384r1: return MBEDTLS_ECP_DP_SECP384R1;
    }
    return no_group;
}
inline void set_groups(mbedtls_ssl_config& conf, const group_id* list) noexcept { mbedtls_ssl_conf_curves(&conf, list); }
#endif

// The policy's groups in native ids, terminated as the stack wants.
inline constexpr std::array<group_id, detail::group_policy.size() + 1> policy_groups = [] {
    std::array<group_id, detail::group_policy.size() + 1> list{};
    for (std::size_t i = 0; i < detail::group_policy.size(); ++i) list[i] = native_group(detail::group_policy[i]);
    list[detail::group_policy.size()] = no_group;
    return list;
}();

} // namespace dtlspp::detail::mbedtls
