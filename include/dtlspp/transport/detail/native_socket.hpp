// SPDX-License-Identifier: MIT
#pragma once

#include <dtlspp/version.hpp>

// The operating system's socket layer, chosen at compile time: Winsock on
// Windows, BSD sockets everywhere else. Both headers provide the same names
// with the same contracts (see the top of each); what follows them here is
// the part that is the same on both: bind, getsockname, name resolution and
// the sockaddr fields, which Winsock declares exactly as POSIX does.

#if defined(_WIN32)
#include <dtlspp/transport/detail/winsock_socket.hpp>
#else
#include <dtlspp/transport/detail/posix_socket.hpp>
#endif

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <system_error>

namespace dtlspp::detail {

inline bool bind_native(native_socket socket, const sockaddr* address, native_length length,
                        std::error_code& error) noexcept {
    error.clear();
    if (::bind(socket, address, length) != 0) {
        error = last_socket_error();
        return false;
    }
    return true;
}

inline bool query_local_name(native_socket socket, sockaddr_storage& address, native_length& length,
                             std::error_code& error) noexcept {
    error.clear();
    std::memset(&address, 0, sizeof address);
    length = sizeof address;
    if (::getsockname(socket, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        error = last_socket_error();
        return false;
    }
    return true;
}

// True when a datagram (or a pending socket error) is ready to be read.
inline bool wait_until_readable(native_socket socket, std::chrono::milliseconds timeout,
                                std::error_code& error) noexcept {
    return wait_until_ready(socket, timeout, false, error).readable;
}

// One datagram of a batch: where it is stored or what it carries, and the
// peer's address.
struct batch_slot {
    std::span<std::byte> buffer;        // receive: where the datagram goes
    std::span<const std::byte> payload; // send: what goes out
    sockaddr_storage address{};
    native_length length = 0;
    std::size_t size = 0;               // receive: bytes stored
    bool truncated = false;             // receive: cut to the buffer (MSG_TRUNC, WSAEMSGSIZE)
};

// Whether receive_datagrams and send_datagrams take a batch per system
// call (recvmmsg / sendmmsg) or one call per datagram.
inline constexpr bool batched_system_calls =
#if defined(__linux__)
    true;
#else
    false;
#endif

// Receives up to slots.size() datagrams (at most 64 per call on Linux).
// Returns how many were stored; 0 without an error when none was queued. An
// error met after some datagrams is left for the next call, which meets it
// first.
inline std::size_t receive_datagrams(native_socket socket, std::span<batch_slot> slots, std::error_code& error,
                                     std::uint64_t* kernel_drops) noexcept {
#if defined(__linux__)
    return receive_batched(socket, slots, error, kernel_drops);
#else
    error.clear();
    std::size_t stored = 0;
    for (auto& slot : slots) {
        auto received = receive_datagram(socket, slot.buffer, slot.address, slot.length, error, kernel_drops);
        if (!received) break;
        slot.size = received->size;
        slot.truncated = received->truncated;
        ++stored;
    }
    if (stored > 0) error.clear();
    return stored;
#endif
}

// Sends slots in order. Returns how many the system took; it stops at the
// first one refused, with error set (operation_would_block: the send buffer
// is full).
inline std::size_t send_datagrams(native_socket socket, std::span<const batch_slot> slots,
                                  std::error_code& error) noexcept {
#if defined(__linux__)
    return send_batched(socket, slots, error);
#else
    error.clear();
    std::size_t sent = 0;
    for (const auto& slot : slots) {
        send_datagram(socket, slot.payload, reinterpret_cast<const sockaddr*>(&slot.address), slot.length, error);
        if (error) break;
        ++sent;
    }
    return sent;
#endif
}

enum class resolve_status { resolved, not_found, failed };

// Looks up one address for host. family narrows the search (AF_UNSPEC for
// any); numeric_only forbids touching DNS or the hosts file.
inline resolve_status resolve_host(const std::string& host, int family, bool numeric_only,
                                   sockaddr_storage& address, native_length& length) noexcept {
    if (socket_library_error()) {
        return resolve_status::failed;
    }
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = numeric_only ? AI_NUMERICHOST : 0;
    addrinfo* results = nullptr;
    const int status = ::getaddrinfo(host.c_str(), nullptr, &hints, &results);
    if (status != 0) {
        bool unknown_name = status == EAI_NONAME || status == EAI_FAMILY;
#ifdef EAI_NODATA
        // Not POSIX, but glibc uses it for "name exists without addresses".
        unknown_name = unknown_name || status == EAI_NODATA;
#endif
        return unknown_name ? resolve_status::not_found : resolve_status::failed;
    }
    resolve_status outcome = resolve_status::not_found;
    for (const addrinfo* entry = results; entry != nullptr; entry = entry->ai_next) {
        const bool supported = entry->ai_family == AF_INET || entry->ai_family == AF_INET6;
        if (supported && entry->ai_addrlen <= sizeof address) {
            std::memset(&address, 0, sizeof address);
            std::memcpy(&address, entry->ai_addr, entry->ai_addrlen);
            length = static_cast<native_length>(entry->ai_addrlen);
            outcome = resolve_status::resolved;
            break;
        }
    }
    ::freeaddrinfo(results);
    return outcome;
}

inline int family_of(const sockaddr_storage& address) noexcept {
    return address.ss_family;
}

inline native_length native_length_for(int family) noexcept {
    if (family == AF_INET) {
        return sizeof(sockaddr_in);
    }
    if (family == AF_INET6) {
        return sizeof(sockaddr_in6);
    }
    return 0;
}

// Field access goes through memcpy into the concrete struct so that reading
// a sockaddr_storage never relies on type-punning through a pointer cast.
inline std::uint16_t port_of(const sockaddr_storage& address) noexcept {
    if (address.ss_family == AF_INET) {
        sockaddr_in v4{};
        std::memcpy(&v4, &address, sizeof v4);
        return ntohs(v4.sin_port);
    }
    if (address.ss_family == AF_INET6) {
        sockaddr_in6 v6{};
        std::memcpy(&v6, &address, sizeof v6);
        return ntohs(v6.sin6_port);
    }
    return 0;
}

inline void set_port(sockaddr_storage& address, std::uint16_t port) noexcept {
    if (address.ss_family == AF_INET) {
        sockaddr_in v4{};
        std::memcpy(&v4, &address, sizeof v4);
        v4.sin_port = htons(port);
        std::memcpy(&address, &v4, sizeof v4);
    } else if (address.ss_family == AF_INET6) {
        sockaddr_in6 v6{};
        std::memcpy(&v6, &address, sizeof v6);
        v6.sin6_port = htons(port);
        std::memcpy(&address, &v6, sizeof v6);
    }
}

inline std::uint32_t scope_of(const sockaddr_storage& address) noexcept {
    if (address.ss_family != AF_INET6) {
        return 0;
    }
    sockaddr_in6 v6{};
    std::memcpy(&v6, &address, sizeof v6);
    return v6.sin6_scope_id;
}

// Copies the raw IP address (network byte order) and returns its size:
// 4 for IPv4, 16 for IPv6, 0 otherwise.
inline std::size_t copy_ip_bytes(const sockaddr_storage& address,
                                 std::span<std::byte, 16> output) noexcept {
    if (address.ss_family == AF_INET) {
        sockaddr_in v4{};
        std::memcpy(&v4, &address, sizeof v4);
        std::memcpy(output.data(), &v4.sin_addr, 4);
        return 4;
    }
    if (address.ss_family == AF_INET6) {
        sockaddr_in6 v6{};
        std::memcpy(&v6, &address, sizeof v6);
        std::memcpy(output.data(), &v6.sin6_addr, 16);
        return 16;
    }
    return 0;
}

// The bytes of an IPv4 or IPv6 literal (no brackets, no port): 4, 16, or 0
// for text that is not one.
inline std::size_t parse_numeric_ip(const std::string& text, std::span<unsigned char, 16> output) noexcept {
    if (::inet_pton(AF_INET, text.c_str(), output.data()) == 1) {
        return 4;
    }
    if (::inet_pton(AF_INET6, text.c_str(), output.data()) == 1) {
        return 16;
    }
    return 0;
}

// Numeric text of the IP address alone (no port, no brackets); getnameinfo
// rather than inet_ntop so an IPv6 scope shows up as "%interface".
inline std::string format_numeric_host(const sockaddr_storage& address, native_length length) {
    if (socket_library_error()) {
        return {};
    }
    // Room for the longest IPv6 text plus a "%interface" suffix; NI_MAXHOST
    // would be larger but is not guaranteed by POSIX.
    char text[INET6_ADDRSTRLEN + 64] = {};
    if (::getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, text, sizeof text,
                      nullptr, 0, NI_NUMERICHOST) != 0) {
        return {};
    }
    return text;
}

}  // namespace dtlspp::detail
