// SPDX-License-Identifier: MIT
// The mbedTLS adapter's DTLS-SRTP (RFC 5764) and keying material export
// (RFC 5705), on 2.28 and 3.6.
//
// Profiles: both versions know the two AES-CM and the two NULL-cipher
// profiles and no AES-GCM one (ssl.h, MBEDTLS_TLS_SRTP_*), and only when
// built with MBEDTLS_SSL_DTLS_SRTP. A server picks the first profile of the
// client's list that it accepts (ssl_parse_use_srtp_ext walks the client's
// list outermost), where OpenSSL picks by its own list.
//
// Export, the same way on both versions: the key export callback
// (mbedtls_ssl_conf_export_keys_ext_cb on 2.28, mbedtls_ssl_set_export_keys_cb
// on 3.6) hands over the master secret, both randoms and the PRF while the
// keys are derived, and RFC 5705 §4 is that PRF over them
// (mbedtls_ssl_tls_prf). 2.28 has no exporter of its own. 3.6's
// mbedtls_ssl_export_keying_material is not used: it reads ssl->transform,
// which is still NULL on the side that sent the last flight (mbedTLS keeps
// the handshake for a retransmission and switches transforms only when the
// peer's next record arrives), so a server that exported right after its
// handshake crashed (observed with 3.6.6). 2.28's callback belongs to the
// config, shared by every session of it, so io_binding marks whose
// handshake the running call drives (capturing_secrets) and the callback
// stores the secrets there; 3.6 goes through the same path.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/mbedtls/detail_compat.hpp>
#include <dtlspp/backend/mbedtls/detail_errors.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/error.hpp>

#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dtlspp::detail::mbedtls {

#if defined(MBEDTLS_SSL_DTLS_SRTP)
inline constexpr bool has_srtp = true;
#else
inline constexpr bool has_srtp = false;
#endif

// dtlspp's profiles are the IANA numbers, as mbedTLS's are; the list is
// terminated by MBEDTLS_TLS_SRTP_UNSET (0) and must outlive the config
// (ssl.h, mbedtls_ssl_conf_dtls_srtp_protection_profiles keeps the pointer).
using srtp_profile_list = std::array<std::uint16_t, 5>;

// Sets the config's profiles; a failure names what is wrong.
inline failure configure_srtp([[maybe_unused]] mbedtls_ssl_config& conf, const config& c,
                              [[maybe_unused]] srtp_profile_list& list)
{
    if (c.srtp_profiles.empty()) return {};
#if defined(MBEDTLS_SSL_DTLS_SRTP)
    if (c.srtp_profiles.size() + 1 > list.size())
        return make_failure(errc::config_invalid, "srtp_profiles: more than 4");
    list.fill(0);
    std::transform(c.srtp_profiles.begin(), c.srtp_profiles.end(), list.begin(),
                   [](srtp_profile p) { return static_cast<std::uint16_t>(p); });
    if (const int ret = mbedtls_ssl_conf_dtls_srtp_protection_profiles(&conf, list.data()); ret != 0)
        return make_failure(errc::config_invalid, "srtp_profiles: " + error_text(ret));
    return {};
#else
    return make_failure(errc::config_invalid,
                        "srtp_profiles: this mbedTLS is built without DTLS-SRTP (MBEDTLS_SSL_DTLS_SRTP)");
#endif
}

// The profile the handshake chose; none without use_srtp or without a
// common profile (MBEDTLS_TLS_SRTP_UNSET).
inline std::optional<srtp_profile> negotiated_srtp_profile([[maybe_unused]] const mbedtls_ssl_context& ssl) noexcept
{
#if defined(MBEDTLS_SSL_DTLS_SRTP)
    mbedtls_dtls_srtp_info info{};
    mbedtls_ssl_get_dtls_srtp_negotiation_result(&ssl, &info);
    const auto p = static_cast<srtp_profile>(info.DTLSPP_MBEDTLS_FIELD(chosen_dtls_srtp_profile));
    if (to_string(p).empty()) return std::nullopt;
    return p;
#else
    return std::nullopt;
#endif
}

// What the key export callback hands over, kept by each session for
// export_keying_material; wiped when the session goes.
struct exporter_secrets {
    std::array<unsigned char, 48> master_secret{};
    std::array<unsigned char, 64> randoms{}; // client_random then server_random: RFC 5705 §4's seed order
    mbedtls_tls_prf_types prf = MBEDTLS_SSL_TLS_PRF_NONE;
    bool captured = false;

    exporter_secrets() = default;
    exporter_secrets(const exporter_secrets&) = delete;
    exporter_secrets& operator=(const exporter_secrets&) = delete;
    ~exporter_secrets() { mbedtls_platform_zeroize(master_secret.data(), master_secret.size()); }
};

// The secrets of the session whose backend call runs on this thread
// (io_binding sets it), null between calls.
inline thread_local exporter_secrets* capturing_secrets = nullptr;

// From the key export callback: no allocation, no exception.
inline void capture_secrets(const unsigned char* master_secret, const unsigned char* client_random,
                            const unsigned char* server_random, mbedtls_tls_prf_types prf) noexcept
{
    exporter_secrets* into = capturing_secrets;
    if (into == nullptr) return;
    std::memcpy(into->master_secret.data(), master_secret, into->master_secret.size());
    std::memcpy(into->randoms.data(), client_random, 32);
    std::memcpy(into->randoms.data() + 32, server_random, 32);
    into->prf = prf;
    into->captured = true;
}

// RFC 5705 §4 for one established session: PRF(master_secret, label,
// client_random + server_random [+ context_length + context]), through
// mbedtls_ssl_tls_prf.
inline failure export_keying_material(const exporter_secrets& secrets, std::string_view label,
                                      std::optional<std::span<const std::byte>> context, std::span<std::byte> out)
{
    if (!secrets.captured)
        return make_failure(errc::internal, "mbedTLS did not hand over the session's secrets (key export callback)");
    std::vector<unsigned char> seed(secrets.randoms.begin(), secrets.randoms.end());
    if (context) {
        seed.push_back(static_cast<unsigned char>(context->size() >> 8));
        seed.push_back(static_cast<unsigned char>(context->size() & 0xFF));
        const auto* bytes = reinterpret_cast<const unsigned char*>(context->data());
        seed.insert(seed.end(), bytes, bytes + context->size());
    }
    const std::string terminated(label); // the PRF takes a C string (ssl.h)
    const int ret = mbedtls_ssl_tls_prf(secrets.prf, secrets.master_secret.data(), secrets.master_secret.size(),
                                        terminated.c_str(), seed.data(), seed.size(),
                                        reinterpret_cast<unsigned char*>(out.data()), out.size());
    if (ret != 0) return make_failure(errc::internal, "mbedtls_ssl_tls_prf: " + error_text(ret));
    return {};
}

} // namespace dtlspp::detail::mbedtls
