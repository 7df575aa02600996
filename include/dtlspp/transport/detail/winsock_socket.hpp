// SPDX-License-Identifier: MIT
#pragma once

#include <dtlspp/version.hpp>

// The Winsock twin of posix_socket.hpp: the same names and the same
// contracts, so address.hpp and udp_socket.hpp compile unchanged on Windows.
// Chosen by native_socket.hpp when _WIN32 is defined; nothing here is
// reached on POSIX systems, and no POSIX header is reached on Windows.
//
// What differs from POSIX, and how it is hidden:
// - Winsock must be started (WSAStartup) before the first call: done once
//   per process, on first use, by winsock_session().
// - Errors come from WSAGetLastError(), not errno: winsock_error() maps the
//   ones a datagram socket meets to the same portable std::errc values the
//   POSIX build reports, so callers test `ec == std::errc::...` on both.
// - A datagram bigger than the buffer fails recvfrom with WSAEMSGSIZE (the
//   head is kept in the buffer), where POSIX sets MSG_TRUNC.
// - An ICMP port unreachable makes the next recvfrom on an *unconnected*
//   socket fail with WSAECONNRESET (Windows' "UDP connection reset"), which
//   would let any peer that goes away, or any host that forges an ICMP
//   message, interrupt a server's receive loop. open_datagram() turns that
//   reporting off (SIO_UDP_CONNRESET = FALSE), as POSIX behaves; a connected
//   socket turns it back on in connect_native(), where it means what POSIX's
//   ECONNREFUSED means: nothing listens at the peer's port.

#if !defined(_WIN32)
#error "winsock_socket.hpp is the Windows socket layer; include native_socket.hpp instead"
#endif

#if defined(_WIN32_WINNT) && _WIN32_WINNT < 0x0600
#error "dtlspp needs _WIN32_WINNT >= 0x0600 (Windows Vista) for inet_pton, getaddrinfo and WSAPoll"
#endif

// windows.h (pulled in by winsock2.h) defines min and max as macros unless
// told not to; they would break std::min/std::max in every dtlspp header.
// A program that includes windows.h before dtlspp should define NOMINMAX.
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif

#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>

#if defined(_MSC_VER)
#pragma comment(lib, "ws2_32.lib")
#endif

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <system_error>

#ifndef SIO_UDP_CONNRESET
#define SIO_UDP_CONNRESET _WSAIOW(IOC_VENDOR, 12)
#endif

namespace dtlspp::detail {

using native_socket = SOCKET;
using native_length = int;
using native_storage = sockaddr_storage;

inline constexpr native_socket invalid_native_socket = INVALID_SOCKET;

inline constexpr int unspecified_family = AF_UNSPEC;
inline constexpr int ipv4_family = AF_INET;
inline constexpr int ipv6_family = AF_INET6;

// The Winsock errors a UDP socket can meet, as the portable conditions the
// POSIX build reports; anything else keeps its Windows code (its message
// comes from the system).
inline std::error_code winsock_error(int code) noexcept {
    using std::errc;
    auto portable = [](errc e) { return std::make_error_code(e); };
    switch (code) {
    case WSAEWOULDBLOCK: return portable(errc::operation_would_block);
    case WSAEINTR: return portable(errc::interrupted);
    case WSAEINVAL: return portable(errc::invalid_argument);
    case WSAEFAULT: return portable(errc::bad_address);
    case WSAEBADF:
    case WSAENOTSOCK: return portable(errc::not_a_socket);
    case WSAEACCES: return portable(errc::permission_denied);
    case WSAEMFILE: return portable(errc::too_many_files_open);
    case WSAENOBUFS: return portable(errc::no_buffer_space);
    case WSAEMSGSIZE: return portable(errc::message_size);
    case WSAEAFNOSUPPORT:
    case WSAEPFNOSUPPORT: return portable(errc::address_family_not_supported);
    case WSAEPROTONOSUPPORT: return portable(errc::protocol_not_supported);
    case WSAEADDRINUSE: return portable(errc::address_in_use);
    case WSAEADDRNOTAVAIL: return portable(errc::address_not_available);
    case WSAENETDOWN: return portable(errc::network_down);
    case WSAENETUNREACH: return portable(errc::network_unreachable);
    case WSAEHOSTUNREACH: return portable(errc::host_unreachable);
    case WSAENETRESET: return portable(errc::network_reset);
    case WSAETIMEDOUT: return portable(errc::timed_out);
    case WSAENOTCONN: return portable(errc::not_connected);
    case WSAEISCONN: return portable(errc::already_connected);
    case WSAECONNREFUSED: return portable(errc::connection_refused);
    // On a datagram socket this is ICMP port unreachable for the peer
    // (Microsoft's recvfrom documentation), which POSIX reports as
    // ECONNREFUSED on a connected socket: the same condition here.
    case WSAECONNRESET: return portable(errc::connection_refused);
    default: return {code, std::system_category()};
    }
}

inline std::error_code last_socket_error() noexcept { return winsock_error(::WSAGetLastError()); }

inline bool is_would_block(int error) noexcept { return error == WSAEWOULDBLOCK; }

// WSAStartup once per process, on first use (thread-safe: a function-local
// static); WSACleanup at exit. Winsock counts startups, so a program that
// starts Winsock itself is unaffected.
class winsock_session {
public:
    winsock_session() noexcept {
        WSADATA data{};
        const int status = ::WSAStartup(MAKEWORD(2, 2), &data);
        if (status != 0) {
            error_ = winsock_error(status);
        } else {
            started_ = true;
        }
    }
    ~winsock_session() {
        if (started_) {
            ::WSACleanup();
        }
    }
    winsock_session(const winsock_session&) = delete;
    winsock_session& operator=(const winsock_session&) = delete;

    std::error_code error() const noexcept { return error_; }

private:
    bool started_ = false;
    std::error_code error_;
};

inline std::error_code start_winsock() noexcept {
    static const winsock_session session;
    return session.error();
}

inline void close_native(native_socket socket) noexcept {
    if (socket != invalid_native_socket) {
        ::closesocket(socket);
    }
}

// ICMP port unreachable reported on recvfrom (TRUE) or ignored (FALSE).
inline bool report_port_unreachable(native_socket socket, bool enabled, std::error_code& error) noexcept {
    error.clear();
    BOOL value = enabled ? TRUE : FALSE;
    DWORD returned = 0;
    if (::WSAIoctl(socket, SIO_UDP_CONNRESET, &value, sizeof value, nullptr, 0, &returned, nullptr,
                   nullptr) == SOCKET_ERROR) {
        error = last_socket_error();
        return false;
    }
    return true;
}

// A non-blocking datagram socket that child processes do not inherit (the
// Windows counterpart of FD_CLOEXEC), deaf to ICMP port unreachable until it
// is connected (see the top of this file).
inline native_socket open_datagram(int family, std::error_code& error) noexcept {
    error = start_winsock();
    if (error) {
        return invalid_native_socket;
    }
    const native_socket socket =
        ::WSASocketW(family, SOCK_DGRAM, IPPROTO_UDP, nullptr, 0, WSA_FLAG_NO_HANDLE_INHERIT);
    if (socket == invalid_native_socket) {
        error = last_socket_error();
        return invalid_native_socket;
    }
    u_long non_blocking = 1;
    if (::ioctlsocket(socket, FIONBIO, &non_blocking) == SOCKET_ERROR ||
        !report_port_unreachable(socket, false, error)) {
        if (!error) {
            error = last_socket_error();
        }
        close_native(socket);
        return invalid_native_socket;
    }
    return socket;
}

// Windows' default is already IPv6-only; set it anyway so the behaviour is
// explicit and identical to the POSIX build.
inline bool restrict_to_ipv6(native_socket socket, std::error_code& error) noexcept {
    error.clear();
    const DWORD enabled = 1;
    if (::setsockopt(socket, IPPROTO_IPV6, IPV6_V6ONLY, reinterpret_cast<const char*>(&enabled),
                     sizeof enabled) != 0) {
        error = last_socket_error();
        return false;
    }
    return true;
}

// As on POSIX, a connected socket drops datagrams from other addresses and
// hears the peer's ICMP port unreachable: reporting is turned back on.
inline bool connect_native(native_socket socket, const sockaddr* address, native_length length,
                           std::error_code& error) noexcept {
    error.clear();
    if (::connect(socket, address, length) != 0) {
        error = last_socket_error();
        return false;
    }
    return report_port_unreachable(socket, true, error);
}

// Returns the number of bytes handed to the stack; 0 with error set on
// failure. A full send buffer is reported as operation_would_block.
inline std::size_t send_datagram(native_socket socket, std::span<const std::byte> payload,
                                 const sockaddr* address, native_length length,
                                 std::error_code& error) noexcept {
    error.clear();
    if (payload.size() > static_cast<std::size_t>(INT_MAX)) {
        error = std::make_error_code(std::errc::message_size);
        return 0;
    }
    const int sent = ::sendto(socket, reinterpret_cast<const char*>(payload.data()),
                              static_cast<int>(payload.size()), 0, address, length);
    if (sent == SOCKET_ERROR) {
        error = last_socket_error();
        return 0;
    }
    return static_cast<std::size_t>(sent);
}

struct received_datagram {
    std::size_t size = 0;    // bytes stored in the caller's buffer
    bool truncated = false;  // the datagram did not fit and its tail was discarded
};

// nullopt without an error means nothing is queued.
inline std::optional<received_datagram> receive_datagram(native_socket socket,
                                                         std::span<std::byte> buffer,
                                                         sockaddr_storage& address,
                                                         native_length& length,
                                                         std::error_code& error,
                                                         std::uint64_t* kernel_drops = nullptr) noexcept {
    (void)kernel_drops; // Winsock keeps no receive-drop count
    error.clear();
    std::memset(&address, 0, sizeof address);
    length = sizeof address;
    const int capacity = static_cast<int>(std::min<std::size_t>(buffer.size(), INT_MAX));
    const int received =
        ::recvfrom(socket, reinterpret_cast<char*>(buffer.data()), capacity, 0,
                   reinterpret_cast<sockaddr*>(&address), &length);
    if (received != SOCKET_ERROR) {
        return received_datagram{static_cast<std::size_t>(received), false};
    }
    const int code = ::WSAGetLastError();
    if (code == WSAEMSGSIZE) {
        // The buffer holds the datagram's head; the rest is gone.
        return received_datagram{static_cast<std::size_t>(capacity), true};
    }
    if (!is_would_block(code)) {
        error = winsock_error(code);
        return std::nullopt;
    }
    // Nothing queued, but an error may be pending that recvfrom did not
    // report: wine 8 leaves a connected socket's ICMP port unreachable in
    // SO_ERROR and answers WSAEWOULDBLOCK (Windows itself returns
    // WSAECONNRESET from recvfrom). Reading SO_ERROR also clears it. One
    // getsockopt per empty receive, on Windows only.
    int pending = 0;
    int size = sizeof pending;
    if (::getsockopt(socket, SOL_SOCKET, SO_ERROR, reinterpret_cast<char*>(&pending), &size) == 0 &&
        pending != 0) {
        error = winsock_error(pending);
    }
    return std::nullopt;
}

struct readiness {
    bool readable = false; // a datagram, or a pending socket error, to read
    bool writable = false; // room in the send buffer (asked for only)
};

// Waits until the socket is readable, or also writable when asked, or the
// timeout passes. WSAPoll is not interrupted by signals, so one call covers
// the timeout.
inline readiness wait_until_ready(native_socket socket, std::chrono::milliseconds timeout, bool want_write,
                                  std::error_code& error) noexcept {
    error.clear();
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::max(timeout, std::chrono::milliseconds{0});
    for (;;) {
        const auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
        const auto clamped = std::clamp<std::chrono::milliseconds::rep>(remaining.count(), 0, INT_MAX);
        WSAPOLLFD entry{};
        entry.fd = socket;
        entry.events = static_cast<SHORT>(POLLRDNORM | (want_write ? POLLWRNORM : 0));
        const int ready = ::WSAPoll(&entry, 1, static_cast<INT>(clamped));
        if (ready > 0) {
            return {(entry.revents & (POLLRDNORM | POLLERR | POLLHUP)) != 0, (entry.revents & POLLWRNORM) != 0};
        }
        if (ready == 0) {
            // WSAPoll may wake early by a millisecond of rounding; the
            // deadline, not the call, bounds the wait.
            if (clock::now() >= deadline) {
                return {};
            }
            continue;
        }
        error = last_socket_error();
        return {};
    }
}

// Windows has no port sharing that balances datagrams: SO_REUSEADDR lets a
// second socket bind, but one socket receives everything.
inline bool share_port(native_socket, std::error_code& error) noexcept {
    error = std::make_error_code(std::errc::operation_not_supported);
    return false;
}

// Asks for kernel buffers of `bytes` (SO_RCVBUF or SO_SNDBUF). Returns what
// the system granted.
inline int set_buffer_size(native_socket socket, bool receive, int bytes, std::error_code& error) noexcept {
    error.clear();
    const int option = receive ? SO_RCVBUF : SO_SNDBUF;
    if (bytes > 0 &&
        ::setsockopt(socket, SOL_SOCKET, option, reinterpret_cast<const char*>(&bytes), sizeof bytes) != 0) {
        error = last_socket_error();
        return 0;
    }
    int granted = 0;
    int length = sizeof granted;
    if (::getsockopt(socket, SOL_SOCKET, option, reinterpret_cast<char*>(&granted), &length) != 0) {
        error = last_socket_error();
        return 0;
    }
    return granted;
}

// Winsock keeps no count of datagrams dropped for a full receive buffer.
inline bool count_kernel_drops(native_socket, std::error_code& error) noexcept {
    error.clear();
    return false;
}

// Winsock must be started before getaddrinfo and getnameinfo too.
inline std::error_code socket_library_error() noexcept { return start_winsock(); }

}  // namespace dtlspp::detail
