// SPDX-License-Identifier: MIT
#pragma once

// The only place in dtlspp that talks to the BSD socket API directly.
//
// Every POSIX socket call sits behind this small set of functions; its
// Winsock twin, winsock_socket.hpp, provides the same names (native_socket,
// open_datagram, receive_datagram, ...), and native_socket.hpp picks one of
// the two at compile time and adds what both share (name resolution, the
// sockaddr fields). address.hpp and udp_socket.hpp never see errno, fcntl or
// poll.

#if defined(_WIN32)
#error "posix_socket.hpp is the POSIX socket layer; include native_socket.hpp instead"
#endif

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <system_error>

namespace dtlspp::detail {

using native_socket = int;
using native_length = socklen_t;
// Large enough for any address family; callers outside this header use the
// alias so they do not name a BSD type directly.
using native_storage = sockaddr_storage;

inline constexpr native_socket invalid_native_socket = -1;

inline constexpr int unspecified_family = AF_UNSPEC;
inline constexpr int ipv4_family = AF_INET;
inline constexpr int ipv6_family = AF_INET6;

inline std::error_code last_socket_error() noexcept {
    return {errno, std::system_category()};
}

// EAGAIN and EWOULDBLOCK may be distinct values on some systems; folding both
// into one portable code lets callers test a single condition.
inline bool is_would_block(int error) noexcept {
    return error == EAGAIN || error == EWOULDBLOCK;
}

inline void close_native(native_socket socket) noexcept {
    if (socket != invalid_native_socket) {
        // The descriptor is released even when close reports EINTR, so a
        // retry could close an unrelated descriptor; one call is correct.
        ::close(socket);
    }
}

// Creates a non-blocking, close-on-exec datagram socket. fcntl is used
// instead of SOCK_NONBLOCK/SOCK_CLOEXEC because those flags are Linux-only.
inline native_socket open_datagram(int family, std::error_code& error) noexcept {
    error.clear();
    const native_socket socket = ::socket(family, SOCK_DGRAM, 0);
    if (socket == invalid_native_socket) {
        error = last_socket_error();
        return invalid_native_socket;
    }
    const int status_flags = ::fcntl(socket, F_GETFL, 0);
    const int descriptor_flags = ::fcntl(socket, F_GETFD, 0);
    if (status_flags == -1 || descriptor_flags == -1 ||
        ::fcntl(socket, F_SETFL, status_flags | O_NONBLOCK) == -1 ||
        ::fcntl(socket, F_SETFD, descriptor_flags | FD_CLOEXEC) == -1) {
        error = last_socket_error();
        close_native(socket);
        return invalid_native_socket;
    }
    return socket;
}

// Without IPV6_V6ONLY an IPv6 socket may also accept IPv4-mapped traffic
// (the default differs between systems), which would make [::1] and
// 127.0.0.1 collide on the same port.
inline bool restrict_to_ipv6(native_socket socket, std::error_code& error) noexcept {
    error.clear();
    const int enabled = 1;
    if (::setsockopt(socket, IPPROTO_IPV6, IPV6_V6ONLY, &enabled, sizeof enabled) != 0) {
        error = last_socket_error();
        return false;
    }
    return true;
}

// Fixes the socket's peer: the kernel then drops datagrams from any other
// address, and reports an ICMP error about this peer (port unreachable:
// ECONNREFUSED) on the next send or receive, where an unconnected socket
// never hears of it (udp(7)).
inline bool connect_native(native_socket socket, const sockaddr* address, native_length length,
                           std::error_code& error) noexcept {
    error.clear();
    if (::connect(socket, address, length) != 0) {
        error = last_socket_error();
        return false;
    }
    return true;
}

// Returns the number of bytes handed to the kernel; 0 with error set on
// failure. A full send buffer is reported as operation_would_block.
inline std::size_t send_datagram(native_socket socket, std::span<const std::byte> payload,
                                 const sockaddr* address, native_length length,
                                 std::error_code& error) noexcept {
    error.clear();
    for (;;) {
        const ssize_t sent = ::sendto(socket, payload.data(), payload.size(), 0, address, length);
        if (sent >= 0) {
            return static_cast<std::size_t>(sent);
        }
        if (errno == EINTR) {
            continue;
        }
        error = is_would_block(errno) ? std::make_error_code(std::errc::operation_would_block)
                                      : last_socket_error();
        return 0;
    }
}

struct received_datagram {
    std::size_t size = 0;    // bytes stored in the caller's buffer
    bool truncated = false;  // the datagram did not fit and its tail was discarded
};

// nullopt without an error means nothing is queued. recvmsg is used rather
// than recvfrom because msg_flags & MSG_TRUNC is the portable way to learn
// that the kernel cut the datagram to fit the buffer.
inline std::optional<received_datagram> receive_datagram(native_socket socket,
                                                         std::span<std::byte> buffer,
                                                         sockaddr_storage& address,
                                                         native_length& length,
                                                         std::error_code& error) noexcept {
    error.clear();
    for (;;) {
        std::memset(&address, 0, sizeof address);
        iovec segment{};
        segment.iov_base = buffer.data();
        segment.iov_len = buffer.size();
        msghdr message{};
        message.msg_name = &address;
        message.msg_namelen = sizeof address;
        message.msg_iov = &segment;
        message.msg_iovlen = 1;
        const ssize_t received = ::recvmsg(socket, &message, 0);
        if (received >= 0) {
            length = message.msg_namelen;
            return received_datagram{static_cast<std::size_t>(received),
                                     (message.msg_flags & MSG_TRUNC) != 0};
        }
        if (errno == EINTR) {
            continue;
        }
        if (!is_would_block(errno)) {
            error = last_socket_error();
        }
        return std::nullopt;
    }
}

// True when a datagram (or a pending socket error) is ready to be read.
inline bool wait_until_readable(native_socket socket, std::chrono::milliseconds timeout,
                                std::error_code& error) noexcept {
    error.clear();
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::max(timeout, std::chrono::milliseconds{0});
    for (;;) {
        const auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
        const auto clamped = std::clamp<std::chrono::milliseconds::rep>(remaining.count(), 0, INT_MAX);
        pollfd entry{};
        entry.fd = socket;
        entry.events = POLLIN;
        const int ready = ::poll(&entry, 1, static_cast<int>(clamped));
        if (ready > 0) {
            // Errors are reported as readable so the following receive
            // surfaces the actual cause instead of this wait hiding it.
            return (entry.revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        }
        if (ready == 0) {
            return false;
        }
        if (errno != EINTR) {
            error = last_socket_error();
            return false;
        }
        // A signal interrupted the wait: poll again for the time still left,
        // so the caller's timeout stays an upper bound.
    }
}

// Nothing to start: the BSD socket API is always ready.
inline std::error_code socket_library_error() noexcept { return {}; }

}  // namespace dtlspp::detail
