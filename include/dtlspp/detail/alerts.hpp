// TLS alert descriptions (RFC 5246 §7.2, RFC 4279 §2) mapped onto dtlspp's
// conditions. Both backends report a received or sent fatal alert by its
// description, so mapping it here once keeps "same failure, same condition"
// true on every stack.
#pragma once

#include <dtlspp/error.hpp>

#include <cstdint>

namespace dtlspp::detail {

inline errc condition_for_alert(std::uint8_t description) noexcept
{
    switch (description) {
    case 0: return errc::peer_closed;          // close_notify
    case 42:                                   // bad_certificate
    case 43:                                   // unsupported_certificate
    case 44:                                   // certificate_revoked
    case 45:                                   // certificate_expired
    case 46:                                   // certificate_unknown
    case 48:                                   // unknown_ca
    case 49:                                   // access_denied
    case 112:                                  // unrecognized_name
        return errc::verify_failed;
    case 115: return errc::psk_mismatch;       // unknown_psk_identity
    case 20:                                   // bad_record_mac
    case 22:                                   // record_overflow
        return errc::bad_record;
    default: return errc::handshake_failed;
    }
}

} // namespace dtlspp::detail
