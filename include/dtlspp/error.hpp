// SPDX-License-Identifier: MIT
// dtlspp's error conditions: one std::error_category shared by every backend.
//
// The same failure gives the same code whichever stack runs underneath, so a
// caller can branch on `ec == dtlspp::errc::verify_failed` without knowing the
// backend. The backend's own text is kept next to the code (see
// dtlspp::failure) because it is what a human needs to fix the problem.
#pragma once

#include <dtlspp/version.hpp>

#include <string>
#include <system_error>
#include <utility>

namespace dtlspp {

enum class errc {
    // Usage and configuration: found before any datagram is sent.
    config_invalid = 1,   // a config field is missing, out of range or inconsistent
    mtu_too_small,        // max_udp_payload cannot carry the ClientHello in one datagram
    // Handshake outcomes.
    handshake_timeout,    // the handshake deadline or retransmission bound was reached
    verify_failed,        // the peer's certificate chain or host name did not verify
    psk_mismatch,         // the peers' pre-shared keys or identities do not match
    handshake_failed,     // the peer refused the handshake (alert) or no common parameters
    // Established association.
    peer_closed,          // the peer sent close_notify
    bad_record,           // a record could not be parsed or authenticated (counted, dropped)
    not_open,             // application data was offered before the handshake completed or after close
    message_too_large,    // application data larger than one record over the configured MTU, or than a receive buffer
    // Server.
    too_many_sessions,    // the server's session limit was reached
    idle_timeout,         // the association was idle longer than allowed
    // Transport.
    peer_unreachable,     // the network reported that nothing listens at the peer's address (ICMP)
    // Anything the backend reported that has no better condition.
    internal,
    // Keying material export (RFC 5705, RFC 5764 §4.2): the label is
    // reserved or not usable, the context or output is too long, no SRTP
    // profile was negotiated, or the stack was built without export.
    export_refused,
};

namespace detail {

class error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "dtlspp"; }

    std::string message(int value) const override
    {
        switch (static_cast<errc>(value)) {
        case errc::config_invalid: return "invalid configuration";
        case errc::mtu_too_small: return "MTU too small for the ClientHello";
        case errc::handshake_timeout: return "handshake timed out";
        case errc::verify_failed: return "peer certificate verification failed";
        case errc::psk_mismatch: return "pre-shared key mismatch";
        case errc::handshake_failed: return "handshake failed";
        case errc::peer_closed: return "peer closed the association";
        case errc::bad_record: return "bad record";
        case errc::not_open: return "association is not open";
        case errc::message_too_large: return "message larger than one record, or than the buffer to receive it";
        case errc::too_many_sessions: return "too many sessions";
        case errc::idle_timeout: return "idle timeout";
        case errc::peer_unreachable: return "peer unreachable";
        case errc::internal: return "internal error in the DTLS stack";
        case errc::export_refused: return "keying material export refused";
        }
        return "unknown dtlspp error";
    }
};

} // namespace detail

inline const std::error_category& error_category() noexcept
{
    static const detail::error_category_impl category;
    return category;
}

inline std::error_code make_error_code(errc value) noexcept
{
    return {static_cast<int>(value), error_category()};
}

// A failure as a program sees it (the code) and as a human reads it (the
// message: what dtlspp knows plus what the backend said).
struct failure {
    std::error_code code;
    std::string message;

    explicit operator bool() const noexcept { return static_cast<bool>(code); }

    // "handshake timed out: <detail>" — the text printed by examples and tests.
    std::string what() const
    {
        if (!code) return "no error";
        if (message.empty()) return code.message();
        return code.message() + ": " + message;
    }
};

inline failure make_failure(errc value, std::string message)
{
    return {make_error_code(value), std::move(message)};
}

// Thrown by the throwing twins of error_code overloads.
class error : public std::system_error {
public:
    explicit error(const failure& f) : std::system_error(f.code, f.message) {}
};

} // namespace dtlspp

template <>
struct std::is_error_code_enum<dtlspp::errc> : std::true_type {};
