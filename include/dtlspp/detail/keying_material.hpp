// SPDX-License-Identifier: MIT
// The checks every stack shares before exporting keying material
// (RFC 5705), written once: the endpoint runs them, adapters do not.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/error.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace dtlspp::detail {

// The most bytes one export may ask for. RFC 5705 sets no bound; this is
// mbedTLS 3.6's exporter's (MBEDTLS_SSL_EXPORT_MAX_KEY_LEN, ssl.h: what
// TLS 1.3 with SHA-256 can give), far above any key, and one bound on
// every stack keeps a program portable between them.
inline constexpr std::size_t max_exported_length = 8160;

// The PRF labels TLS 1.2 itself uses (RFC 5246 §§6.3, 7.4.9, 8.1;
// RFC 7627 §4): an exporter with one of them could reproduce the
// connection's own keys or Finished values (RFC 5705 §4). A label that
// begins with one is refused too, as OpenSSL does, so every stack refuses
// the same labels.
inline constexpr std::array<std::string_view, 5> reserved_exporter_labels{
    "client finished", "server finished", "master secret", "extended master secret", "key expansion"};

inline failure check_export(std::string_view label, std::optional<std::span<const std::byte>> context,
                            std::size_t length)
{
    auto refuse = [](std::string why) { return make_failure(errc::export_refused, std::move(why)); };
    for (const auto reserved : reserved_exporter_labels)
        if (label.starts_with(reserved))
            return refuse("label \"" + std::string(label) + "\" is reserved: TLS uses \"" + std::string(reserved) +
                          "\" for its own keys (RFC 5705 §4)");
    // Labels are ASCII strings (RFC 5705 §4); mbedTLS 2.28's PRF takes a
    // NUL-terminated one (mbedtls_ssl_tls_prf), so a NUL would cut it.
    if (label.find('\0') != std::string_view::npos) return refuse("label contains a NUL byte");
    // The context's length is sent as two bytes (RFC 5705 §4).
    if (context && context->size() > 0xFFFF)
        return refuse("context: " + std::to_string(context->size()) + " bytes; at most 65535");
    if (length == 0) return refuse("out is empty: nothing to export");
    if (length > max_exported_length)
        return refuse("out: " + std::to_string(length) + " bytes; at most " + std::to_string(max_exported_length) +
                      " per export");
    return {};
}

// Overwrites secret bytes in a way the compiler may not drop as a dead
// store (a plain fill before the memory is freed may be).
inline void wipe(std::span<std::byte> secret) noexcept
{
    volatile std::byte* p = secret.data();
    for (std::size_t i = 0; i < secret.size(); ++i) p[i] = std::byte{0};
}

} // namespace dtlspp::detail
