// SPDX-License-Identifier: MIT
// The checks every entry point makes before a stack is asked anything,
// written once: the role a config was built for, and whether a message may
// be sent now. The endpoint and the server make them; the backends' own
// entry points (public too) call the same functions, so the answer and its
// text are the same whichever door was used.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/config.hpp>
#include <dtlspp/error.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace dtlspp::detail {

// config_invalid unless the config was made for `needed`; `operation` names
// the call ("connect", "a server").
inline failure check_role(const config& c, role needed, std::string_view operation)
{
    if (c.role == needed) return {};
    return make_failure(errc::config_invalid, "role: " + std::string(operation) + " needs a config with role::" +
                                                  (needed == role::client ? "client" : "server"));
}

// config_invalid when the config allows only versions the stack cannot
// speak (DTLS 1.3 only, on a stack without it); a range that reaches past
// the stack's newest version is fine: the stack offers what it has.
inline failure check_versions(const config& c, bool stack_has_dtls_1_3, std::string_view stack)
{
    if (stack_has_dtls_1_3 || c.min_version == dtls_version::dtls_1_2) return {};
    return make_failure(errc::config_invalid, "min_version: " + std::string(to_string(c.min_version)) + ", but " +
                                                  std::string(stack) +
                                                  " speaks DTLS 1.2 only (allow 1.2, or use the wolfSSL backend)");
}

// not_open before the handshake completed or after the association ended;
// message_too_large for a message over one record at this max_udp_payload.
inline failure check_write(bool open, std::size_t size, std::size_t limit)
{
    if (!open) return make_failure(errc::not_open, "the association is not open (handshaking, closed or failed)");
    if (size > limit)
        return make_failure(errc::message_too_large, std::to_string(size) + " bytes; one record carries at most " +
                                                         std::to_string(limit) + " bytes at this max_udp_payload");
    return {};
}

} // namespace dtlspp::detail
