// SPDX-License-Identifier: MIT
// Name tables for the wire trace. Kept apart from trace.hpp so the parser
// stays readable; the public spellings live in trace.hpp.
#pragma once

#include <dtlspp/version.hpp>

#include <cstdint>
#include <string_view>

namespace dtlspp::detail {

// Returned for codes we do not know, so callers can print the result directly
// and still detect the case by comparing against it.
inline constexpr std::string_view unknown_code_name = "unknown";

// RFC 6347 §4.1 / RFC 5246 §6.2.1, plus Heartbeat (RFC 6520) because peers
// may legitimately send it and it must not be reported as garbage, and
// tls12_cid (RFC 9146), the outer type of every record carrying a
// Connection ID.
constexpr std::string_view content_type_name_of(std::uint8_t type) noexcept
{
    switch (type) {
    case 20: return "ChangeCipherSpec";
    case 21: return "Alert";
    case 22: return "Handshake";
    case 23: return "ApplicationData";
    case 24: return "Heartbeat";
    case 25: return "ConnectionID";
    case 26: return "ACK";
    case 0x20: return "DTLS13Ciphertext";
    default: return unknown_code_name;
    }
}

// RFC 5246 §7.4 and RFC 6347 §4.2.2 (HelloVerifyRequest), RFC 5077
// (NewSessionTicket), RFC 6066 (CertificateURL, CertificateStatus).
constexpr std::string_view handshake_type_name_of(std::uint8_t type) noexcept
{
    switch (type) {
    case 0: return "HelloRequest";
    case 1: return "ClientHello";
    case 2: return "ServerHello";
    case 3: return "HelloVerifyRequest";
    case 4: return "NewSessionTicket";
    case 11: return "Certificate";
    case 12: return "ServerKeyExchange";
    case 13: return "CertificateRequest";
    case 14: return "ServerHelloDone";
    case 15: return "CertificateVerify";
    case 16: return "ClientKeyExchange";
    case 20: return "Finished";
    case 21: return "CertificateURL";
    case 22: return "CertificateStatus";
    default: return unknown_code_name;
    }
}

constexpr std::string_view alert_level_name_of(std::uint8_t level) noexcept
{
    switch (level) {
    case 1: return "warning";
    case 2: return "fatal";
    default: return unknown_code_name;
    }
}

// The snake_case spellings match the RFCs' enum names, which is also what
// Wireshark and the TLS libraries print, so traces can be grepped together.
constexpr std::string_view alert_description_name_of(std::uint8_t description) noexcept
{
    switch (description) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 21: return "decryption_failed";
    case 22: return "record_overflow";
    case 30: return "decompression_failure";
    case 40: return "handshake_failure";
    case 41: return "no_certificate";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 60: return "export_restriction";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 100: return "no_renegotiation";
    case 110: return "unsupported_extension";
    case 111: return "certificate_unobtainable";
    case 112: return "unrecognized_name";
    case 113: return "bad_certificate_status_response";
    case 114: return "bad_certificate_hash_value";
    case 115: return "unknown_psk_identity";
    case 120: return "no_application_protocol";
    default: return unknown_code_name;
    }
}

} // namespace dtlspp::detail
