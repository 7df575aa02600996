// SPDX-License-Identifier: MIT
#pragma once

#include <dtlspp/version.hpp>

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
#if defined(__linux__)
#include <sys/random.h>
#endif
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

#if defined(__linux__)
// Room for the SO_RXQ_OVFL control message: the kernel's count of datagrams
// this socket dropped because its receive buffer was full.
inline constexpr std::size_t drop_count_control_size = CMSG_SPACE(sizeof(std::uint32_t));

// The drop count a received datagram carries, when the socket has
// SO_RXQ_OVFL on and the kernel has dropped any (udp(7), socket(7)).
inline std::optional<std::uint32_t> drop_count_of(const msghdr& message) noexcept {
    for (auto* c = CMSG_FIRSTHDR(&message); c != nullptr;
         c = CMSG_NXTHDR(const_cast<msghdr*>(&message), c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            std::uint32_t count = 0;
            std::memcpy(&count, CMSG_DATA(c), sizeof count);
            return count;
        }
    }
    return std::nullopt;
}
#endif

// nullopt without an error means nothing is queued. recvmsg is used rather
// than recvfrom because msg_flags & MSG_TRUNC is the portable way to learn
// that the kernel cut the datagram to fit the buffer. Where the kernel
// counts receive-buffer drops (Linux, SO_RXQ_OVFL on), the count it
// attached raises `kernel_drops`.
inline std::optional<received_datagram> receive_datagram(native_socket socket,
                                                         std::span<std::byte> buffer,
                                                         sockaddr_storage& address,
                                                         native_length& length,
                                                         std::error_code& error,
                                                         std::uint64_t* kernel_drops = nullptr) noexcept {
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
#if defined(__linux__)
        alignas(cmsghdr) unsigned char control[drop_count_control_size];
        if (kernel_drops != nullptr) {
            message.msg_control = control;
            message.msg_controllen = sizeof control;
        }
#endif
        const ssize_t received = ::recvmsg(socket, &message, 0);
        if (received >= 0) {
            length = message.msg_namelen;
#if defined(__linux__)
            if (kernel_drops != nullptr) {
                if (const auto count = drop_count_of(message)) {
                    *kernel_drops = std::max<std::uint64_t>(*kernel_drops, *count);
                }
            }
#endif
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

#if defined(__linux__)
// Linux: up to 64 datagrams in one recvmmsg. Returns how many were stored;
// 0 without an error when none was queued. Slot is native_socket.hpp's
// batch_slot.
template <class Slot>
std::size_t receive_batched(native_socket socket, std::span<Slot> slots, std::error_code& error,
                            std::uint64_t* kernel_drops) noexcept {
    error.clear();
    constexpr std::size_t most = 64;
    const std::size_t count = std::min(slots.size(), most);
    mmsghdr messages[most];
    iovec segments[most];
    alignas(cmsghdr) unsigned char control[most][drop_count_control_size];
    for (std::size_t i = 0; i < count; ++i) {
        segments[i].iov_base = slots[i].buffer.data();
        segments[i].iov_len = slots[i].buffer.size();
        messages[i] = mmsghdr{};
        messages[i].msg_hdr.msg_name = &slots[i].address;
        messages[i].msg_hdr.msg_namelen = sizeof slots[i].address;
        messages[i].msg_hdr.msg_iov = &segments[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        if (kernel_drops != nullptr) {
            messages[i].msg_hdr.msg_control = control[i];
            messages[i].msg_hdr.msg_controllen = sizeof control[i];
        }
    }
    for (;;) {
        const int received = ::recvmmsg(socket, messages, static_cast<unsigned>(count), MSG_DONTWAIT, nullptr);
        if (received >= 0) {
            for (int i = 0; i < received; ++i) {
                const auto& m = messages[i];
                slots[i].length = m.msg_hdr.msg_namelen;
                slots[i].size = m.msg_len;
                slots[i].truncated = (m.msg_hdr.msg_flags & MSG_TRUNC) != 0;
                if (kernel_drops != nullptr) {
                    if (const auto dropped = drop_count_of(m.msg_hdr)) {
                        *kernel_drops = std::max<std::uint64_t>(*kernel_drops, *dropped);
                    }
                }
            }
            return static_cast<std::size_t>(received);
        }
        if (errno == EINTR) {
            continue;
        }
        if (!is_would_block(errno)) {
            error = last_socket_error();
        }
        return 0;
    }
}

// Linux: sends slots in order, 64 per sendmmsg. Returns how many the kernel
// took; it stops at the first it refused, with error set
// (operation_would_block for a full buffer).
template <class Slot>
std::size_t send_batched(native_socket socket, std::span<const Slot> slots, std::error_code& error) noexcept {
    error.clear();
    constexpr std::size_t most = 64;
    std::size_t sent_total = 0;
    while (sent_total < slots.size()) {
        const std::size_t count = std::min(slots.size() - sent_total, most);
        mmsghdr messages[most];
        iovec segments[most];
        for (std::size_t i = 0; i < count; ++i) {
            const auto& slot = slots[sent_total + i];
            segments[i].iov_base = const_cast<std::byte*>(slot.payload.data());
            segments[i].iov_len = slot.payload.size();
            messages[i] = mmsghdr{};
            messages[i].msg_hdr.msg_name = const_cast<sockaddr_storage*>(&slot.address);
            messages[i].msg_hdr.msg_namelen = slot.length;
            messages[i].msg_hdr.msg_iov = &segments[i];
            messages[i].msg_hdr.msg_iovlen = 1;
        }
        const int sent = ::sendmmsg(socket, messages, static_cast<unsigned>(count), MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR) {
                continue;
            }
            error = is_would_block(errno) ? std::make_error_code(std::errc::operation_would_block)
                                          : last_socket_error();
            return sent_total;
        }
        // A short count: the next message failed, and the next round,
        // starting with it, tells why.
        sent_total += static_cast<std::size_t>(sent);
    }
    return sent_total;
}

#endif

// Lets several sockets bind the same address and port; the kernel spreads
// datagrams over them by a hash of the 4-tuple, so one peer always reaches
// the same socket (Linux's SO_REUSEPORT; only sockets of the same user may
// join). operation_not_supported where the system has no such balancing.
inline bool share_port(native_socket socket, std::error_code& error) noexcept {
    error.clear();
#if defined(__linux__)
    const int enabled = 1;
    if (::setsockopt(socket, SOL_SOCKET, SO_REUSEPORT, &enabled, sizeof enabled) != 0) {
        error = last_socket_error();
        return false;
    }
    return true;
#else
    (void)socket;
    error = std::make_error_code(std::errc::operation_not_supported);
    return false;
#endif
}

// Asks for kernel buffers of `bytes` (SO_RCVBUF or SO_SNDBUF); the kernel
// may grant less (net.core.rmem_max, wmem_max). Returns what it granted.
inline int set_buffer_size(native_socket socket, bool receive, int bytes, std::error_code& error) noexcept {
    error.clear();
    const int option = receive ? SO_RCVBUF : SO_SNDBUF;
    if (bytes > 0 && ::setsockopt(socket, SOL_SOCKET, option, &bytes, sizeof bytes) != 0) {
        error = last_socket_error();
        return 0;
    }
    int granted = 0;
    socklen_t length = sizeof granted;
    if (::getsockopt(socket, SOL_SOCKET, option, &granted, &length) != 0) {
        error = last_socket_error();
        return 0;
    }
#if defined(__linux__)
    // Linux reports twice what it grants (its bookkeeping overhead) and caps
    // the request at rmem_max / wmem_max; a process with CAP_NET_ADMIN may
    // go past the cap. Without the capability the capped size stands.
    if (bytes > 0 && granted < 2 * bytes) {
        const int forced = receive ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
        if (::setsockopt(socket, SOL_SOCKET, forced, &bytes, sizeof bytes) == 0) {
            ::getsockopt(socket, SOL_SOCKET, option, &granted, &length);
        }
    }
#endif
    return granted;
}

// Turns on the kernel's receive-drop count (SO_RXQ_OVFL, Linux). False,
// without an error, where the system keeps no such count.
inline bool count_kernel_drops(native_socket socket, std::error_code& error) noexcept {
    error.clear();
#if defined(__linux__)
    const int enabled = 1;
    if (::setsockopt(socket, SOL_SOCKET, SO_RXQ_OVFL, &enabled, sizeof enabled) != 0) {
        error = last_socket_error();
        return false;
    }
    return true;
#else
    (void)socket;
    return false;
#endif
}

struct readiness {
    bool readable = false; // a datagram, or a pending socket error, to read
    bool writable = false; // room in the send buffer (asked for only)
};

// Waits until the socket is readable, or also writable when asked, or the
// timeout passes.
inline readiness wait_until_ready(native_socket socket, std::chrono::milliseconds timeout, bool want_write,
                                  std::error_code& error) noexcept {
    error.clear();
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::max(timeout, std::chrono::milliseconds{0});
    for (;;) {
        const auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
        const auto clamped = std::clamp<std::chrono::milliseconds::rep>(remaining.count(), 0, INT_MAX);
        pollfd entry{};
        entry.fd = socket;
        entry.events = static_cast<short>(POLLIN | (want_write ? POLLOUT : 0));
        const int ready = ::poll(&entry, 1, static_cast<int>(clamped));
        if (ready > 0) {
            // Errors are reported as readable so the following receive
            // surfaces the actual cause instead of this wait hiding it.
            return {(entry.revents & (POLLIN | POLLERR | POLLHUP)) != 0, (entry.revents & POLLOUT) != 0};
        }
        if (ready == 0) {
            return {};
        }
        if (errno != EINTR) {
            error = last_socket_error();
            return {};
        }
        // A signal interrupted the wait: poll again for the time still left,
        // so the caller's timeout stays an upper bound.
    }
}

// Fills `bytes` from the system's random source (getrandom on Linux,
// /dev/urandom elsewhere). False when it cannot.
inline bool system_random(std::span<std::uint8_t> bytes) noexcept {
    std::size_t filled = 0;
#if defined(__linux__)
    while (filled < bytes.size()) {
        const ssize_t got = ::getrandom(bytes.data() + filled, bytes.size() - filled, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        filled += static_cast<std::size_t>(got);
    }
    return true;
#else
    const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    while (filled < bytes.size()) {
        const ssize_t got = ::read(fd, bytes.data() + filled, bytes.size() - filled);
        if (got <= 0) {
            if (got < 0 && errno == EINTR) continue;
            ::close(fd);
            return false;
        }
        filled += static_cast<std::size_t>(got);
    }
    ::close(fd);
    return true;
#endif
}

// Nothing to start: the BSD socket API is always ready.
inline std::error_code socket_library_error() noexcept { return {}; }

}  // namespace dtlspp::detail
