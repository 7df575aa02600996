// SPDX-License-Identifier: MIT
// TLS alert descriptions (RFC 5246 §7.2, RFC 4279 §2, RFC 6066 §3, RFC 7301
// §3.2) mapped onto dtlspp's conditions: the one table every backend uses,
// so the same alert gives the same condition whichever stack received it.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/error.hpp>

#include <cstdint>

namespace dtlspp::detail {

// `psk_suite`: the suite being negotiated authenticates with a pre-shared
// key. Then every key derives from the PSK (RFC 4279 §2), so a peer that
// cannot decrypt our Finished (bad_record_mac) or cannot verify it
// (decrypt_error) holds a different key.
inline errc condition_for_alert(std::uint8_t description, bool psk_suite = false) noexcept
{
    switch (description) {
    case 0: return errc::peer_closed;          // close_notify
    case 41:                                   // no_certificate (SSL 3.0, still sent by some stacks)
    case 42:                                   // bad_certificate
    case 43:                                   // unsupported_certificate
    case 44:                                   // certificate_revoked
    case 45:                                   // certificate_expired
    case 46:                                   // certificate_unknown
    case 48:                                   // unknown_ca
    case 49:                                   // access_denied
    case 112:                                  // unrecognized_name: no certificate for the name asked for
        return errc::verify_failed;
    case 115: return errc::psk_mismatch;       // unknown_psk_identity
    case 20:                                   // bad_record_mac
        return psk_suite ? errc::psk_mismatch : errc::bad_record;
    case 51:                                   // decrypt_error
        return psk_suite ? errc::psk_mismatch : errc::handshake_failed;
    case 21:                                   // decryption_failed (reserved)
    case 22:                                   // record_overflow
        return errc::bad_record;
    default: return errc::handshake_failed;    // handshake_failure, illegal_parameter, protocol_version, ...
    }
}

} // namespace dtlspp::detail
