// SPDX-License-Identifier: MIT
// What the wolfSSL adapter needs besides wolfSSL: hex, HMAC-SHA256 for the
// cookie factory, the IP-literal test, SRTP profile names, the TLS 1.3
// suites, the cookie test of a ClientHello, and the limiter of resends
// triggered by received datagrams.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/detail/cookie.hpp>
#include <dtlspp/trace.hpp>

#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace dtlspp {
namespace detail::wolfssl {

inline std::string to_hex(const unsigned char* bytes, std::size_t length)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    text.reserve(length * 2);
    for (std::size_t i = 0; i < length; ++i) {
        text += digits[bytes[i] >> 4];
        text += digits[bytes[i] & 0x0F];
    }
    return text;
}

inline bool hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> message,
                        std::span<std::uint8_t, cookie_size> out) noexcept
{
    Hmac hmac;
    if (wc_HmacInit(&hmac, nullptr, INVALID_DEVID) != 0) return false;
    const bool ok = wc_HmacSetKey(&hmac, WC_SHA256, key.data(), static_cast<word32>(key.size())) == 0 &&
                    wc_HmacUpdate(&hmac, message.data(), static_cast<word32>(message.size())) == 0 &&
                    wc_HmacFinal(&hmac, out.data()) == 0;
    wc_HmacFree(&hmac);
    return ok;
}

// wolfSSL_Init once per process; wolfSSL_Cleanup is never called, since
// contexts may outlive any one user.
inline bool initialise() noexcept
{
    static const bool ok = wolfSSL_Init() == WOLFSSL_SUCCESS;
    return ok;
}

// An IP literal (dotted IPv4 or any text with ':'): no SNI for it (RFC 6066
// §3), and wolfSSL checks it against the certificate's iPAddress names.
inline bool is_ip_literal(std::string_view name) noexcept
{
    if (name.find(':') != std::string_view::npos) return true;
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

inline const char* srtp_name(srtp_profile p) noexcept
{
    switch (p) {
    case srtp_profile::aes128_cm_hmac_sha1_80: return "SRTP_AES128_CM_SHA1_80";
    case srtp_profile::aes128_cm_hmac_sha1_32: return "SRTP_AES128_CM_SHA1_32";
    case srtp_profile::null_hmac_sha1_80: return "SRTP_NULL_SHA1_80";
    case srtp_profile::null_hmac_sha1_32: return "SRTP_NULL_SHA1_32";
    }
    return nullptr;
}

// The TLS 1.3 suites (RFC 8446 §B.4) dtlspp offers on DTLS 1.3, in the
// policy's order of bulk ciphers.
inline constexpr std::array<std::uint16_t, 3> tls13_suites{0x1301, 0x1302, 0x1303};

// DTLS 1.3 protects every record with the AEAD tag (16 bytes) and adds the
// inner content type (1 byte); no explicit nonce (RFC 9147 §4).
inline constexpr std::size_t dtls13_expansion = 16 + 1;


// Whether a ClientHello carries a cookie: DTLS 1.2's cookie field
// (RFC 6347 §4.2.1), or DTLS 1.3's cookie extension (44, RFC 8446
// §4.2.2). Only a whole, unfragmented ClientHello is looked at.
inline bool carries_cookie(std::span<const std::byte> datagram) noexcept
{
    bool found = false;
    parse_datagram(datagram, [&](const record_view& r) {
        for (const auto& f : r.fragments()) {
            if (f.msg_type != static_cast<std::uint8_t>(handshake_type::client_hello) || !f.is_whole_message())
                continue;
            const auto b = f.body;
            auto at = [&](std::size_t i) { return std::to_integer<std::size_t>(b[i]); };
            std::size_t i = 2 + 32; // client_version, random
            if (i >= b.size()) continue;
            i += 1 + at(i); // session_id
            if (i >= b.size()) continue;
            if (at(i) != 0) {
                found = true;
                continue;
            }
            i += 1;
            if (i + 2 > b.size()) continue;
            i += 2 + ((at(i) << 8) | at(i + 1)); // cipher_suites
            if (i >= b.size()) continue;
            i += 1 + at(i); // compression_methods
            if (i + 2 > b.size()) continue;
            const std::size_t end = std::min(b.size(), i + 2 + ((at(i) << 8) | at(i + 1)));
            i += 2;
            while (i + 4 <= end) {
                const std::size_t type = (at(i) << 8) | at(i + 1);
                const std::size_t length = (at(i + 2) << 8) | at(i + 3);
                if (type == 44) found = true;
                i += 4 + length;
            }
        }
    });
    return found;
}

// A fatal alert in one plaintext epoch-0 record, answering the ClientHello
// in `hello` (its record sequence number, as a HelloVerifyRequest takes it:
// RFC 6347 §4.2.1).
inline std::array<std::byte, 15> plaintext_alert(std::span<const std::byte> hello, std::uint8_t description) noexcept
{
    std::uint64_t sequence = 0;
    parse_datagram(hello, [&](const record_view& r) { sequence = std::max(sequence, r.sequence_number); });
    std::array<std::byte, 15> alert{std::byte{21}, std::byte{0xfe}, std::byte{0xfd}};
    for (int i = 0; i < 6; ++i) alert[5 + i] = std::byte((sequence >> (8 * (5 - i))) & 0xff);
    alert[12] = std::byte{2};
    alert[13] = std::byte{2};
    alert[14] = std::byte{description};
    return alert;
}

// Whether every datagram queued holds plaintext alerts only (and there is
// one at least).
inline bool only_alerts(const datagram_queue& sent) noexcept
{
    if (sent.empty()) return false;
    for (std::size_t i = 0; i < sent.size(); ++i) {
        bool alerts = true;
        const auto parsed = parse_datagram(sent[i], [&](const record_view& r) {
            alerts = alerts && r.type == content_type::alert && !r.is_encrypted();
        });
        if (!parsed.ok() || !alerts) return false;
    }
    return true;
}

// The description of the first alert queued (only_alerts() said that every
// datagram holds plaintext alerts only).
inline std::optional<std::uint8_t> first_alert_description(const datagram_queue& sent) noexcept
{
    std::optional<std::uint8_t> description;
    for (std::size_t i = 0; i < sent.size() && !description; ++i)
        parse_datagram(sent[i], [&](const record_view& r) {
            if (!description && r.type == content_type::alert && r.payload.size() == 2)
                description = std::to_integer<std::uint8_t>(r.payload[1]);
        });
    return description;
}

// DTLS 1.2: wolfSSL resends its last flight whenever a datagram of the
// peer's previous flight arrives (RFC 6347 §4.2.4), and so does mbedTLS.
// When a handshake cannot finish (different PSKs: the Finished never
// verifies), each one's resend is the other's trigger, and the two
// would exchange flights as fast as the path carries them. Here a resend
// caused by a received datagram goes out at most once per half initial
// retransmission timeout; the timer's own resends are not limited. A
// flight is a resend when every handshake message in it went out before
// (by message_seq) and its ChangeCipherSpec, if any, did too. DTLS 1.3
// encrypts that information; wolfSSL spaces its 1.3 resends itself
// (DTLS13_MIN_RTX_INTERVAL, on dtlspp's clock).
class resend_limiter {
public:
    void after_call(datagram_io& io, std::size_t queued_before, std::chrono::milliseconds spacing)
    {
        if (!io.output || io.output->size() <= queued_before) return;
        bool fresh = false;
        bool handshake = false;
        for (std::size_t i = queued_before; i < io.output->size(); ++i) {
            parse_datagram((*io.output)[i], [&](const record_view& r) {
                if (r.unified) {
                    fresh = true; // DTLS 1.3: not judged here
                } else if (r.type == content_type::change_cipher_spec) {
                    handshake = true;
                    if (!sent_change_cipher_) fresh = true;
                    sent_change_cipher_ = true;
                } else if (r.type == content_type::handshake && !r.is_encrypted()) {
                    for (const auto& fragment : r.fragments()) {
                        handshake = true;
                        if (!next_message_seq_ || fragment.message_seq >= *next_message_seq_) fresh = true;
                        highest_message_seq_ = std::max<std::uint32_t>(highest_message_seq_, fragment.message_seq);
                    }
                } else if (r.type == content_type::handshake) {
                    handshake = true;
                }
            });
        }
        if (!handshake) return;
        if (fresh) {
            next_message_seq_ = highest_message_seq_ + 1;
            return;
        }
        if (last_resend_ && io.now - *last_resend_ < spacing) {
            io.output->truncate(queued_before);
            return;
        }
        last_resend_ = io.now;
    }

private:
    std::optional<std::uint32_t> next_message_seq_;
    std::uint32_t highest_message_seq_ = 0;
    bool sent_change_cipher_ = false;
    std::optional<time_point> last_resend_;
};

} // namespace detail::wolfssl
} // namespace dtlspp
