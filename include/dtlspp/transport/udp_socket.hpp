// SPDX-License-Identifier: MIT
#pragma once

#include <dtlspp/version.hpp>

// udp_socket: a non-blocking datagram socket with error_code reporting.
// It never blocks on its own; callers that want to sleep use wait_readable,
// which keeps the event loop (and its timeouts) in the caller's hands.

#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/detail/native_socket.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

namespace dtlspp {

enum class socket_error {
    // The datagram was larger than the receive buffer; only its head was
    // stored. DTLS records cannot be reassembled from a cut datagram, so
    // callers drop it and count it rather than parse it.
    datagram_truncated = 1,
    // The address family is not IPv4 or IPv6 (e.g. a default peer_address).
    unsupported_family,
};

namespace detail {

class socket_error_category final : public std::error_category {
public:
    const char* name() const noexcept override { return "dtlspp.socket"; }

    std::string message(int value) const override {
        switch (static_cast<socket_error>(value)) {
        case socket_error::datagram_truncated: return "datagram larger than receive buffer";
        case socket_error::unsupported_family: return "address family is not IPv4 or IPv6";
        }
        return "unknown socket error";
    }
};

inline int native_family_of(address_family family) noexcept {
    switch (family) {
    case address_family::ipv4: return ipv4_family;
    case address_family::ipv6: return ipv6_family;
    case address_family::unspecified: break;
    }
    return unspecified_family;
}

inline void throw_if(const std::error_code& error, const char* what) {
    if (error) {
        throw std::system_error(error, what);
    }
}

}  // namespace detail

inline const std::error_category& socket_category() noexcept {
    static const detail::socket_error_category category;
    return category;
}

inline std::error_code make_error_code(socket_error error) noexcept {
    return {static_cast<int>(error), socket_category()};
}

}  // namespace dtlspp

namespace std {
template <>
struct is_error_code_enum<dtlspp::socket_error> : true_type {};
}  // namespace std

namespace dtlspp {

// How a socket is set up before it binds.
struct socket_options {
    // Several sockets, of this process or others of the same user, may bind
    // the same address and port, and the kernel spreads peers over them by
    // their address (Linux SO_REUSEPORT). Elsewhere binding with it fails
    // with std::errc::operation_not_supported.
    bool share_port = false;
    // Kernel buffer sizes to ask for (SO_RCVBUF / SO_SNDBUF); 0 keeps the
    // system default. The kernel may grant less (Linux: net.core.rmem_max and
    // wmem_max); receive_buffer_size() / send_buffer_size() say what it did.
    int receive_buffer_bytes = 0;
    int send_buffer_bytes = 0;
    // Count the datagrams the kernel dropped because the receive buffer was
    // full (Linux SO_RXQ_OVFL; kernel_drops()). Nothing is counted where the
    // system keeps no such count.
    bool count_kernel_drops = false;
};

class udp_socket {
public:
    udp_socket() noexcept = default;

    udp_socket(const udp_socket&) = delete;
    udp_socket& operator=(const udp_socket&) = delete;

    udp_socket(udp_socket&& other) noexcept
        : handle_(std::exchange(other.handle_, detail::invalid_native_socket)),
          family_(std::exchange(other.family_, address_family::unspecified)),
          counting_drops_(std::exchange(other.counting_drops_, false)),
          kernel_drops_(std::exchange(other.kernel_drops_, 0)) {}

    udp_socket& operator=(udp_socket&& other) noexcept {
        if (this != &other) {
            close();
            handle_ = std::exchange(other.handle_, detail::invalid_native_socket);
            family_ = std::exchange(other.family_, address_family::unspecified);
            counting_drops_ = std::exchange(other.counting_drops_, false);
            kernel_drops_ = std::exchange(other.kernel_drops_, 0);
        }
        return *this;
    }

    ~udp_socket() { close(); }

    // Binds to local (socket(2), bind(2)); port 0 lets the system pick (see
    // local_address()). Errors: socket_error::unsupported_family for a
    // default peer_address; the system's code otherwise
    // (std::errc::address_in_use, permission_denied, ...). The forms
    // without an error code throw std::system_error with it.
    [[nodiscard]] static udp_socket bind(const peer_address& local, std::error_code& error) {
        udp_socket socket = open(local.family(), error);
        if (error) {
            return {};
        }
        if (!detail::bind_native(socket.handle_, local.native_address(),
                                 local.native_address_length(), error)) {
            return {};
        }
        return socket;
    }

    // Binds with the options set first (setsockopt(2) before bind(2)).
    // Errors as above, and the code of a refused setsockopt.
    [[nodiscard]] static udp_socket bind(const peer_address& local, const socket_options& options,
                           std::error_code& error) {
        udp_socket socket = open(local.family(), error);
        if (error) {
            return {};
        }
        if (options.share_port && !detail::share_port(socket.handle_, error)) {
            return {};
        }
        if (options.receive_buffer_bytes > 0) {
            detail::set_buffer_size(socket.handle_, true, options.receive_buffer_bytes, error);
            if (error) return {};
        }
        if (options.send_buffer_bytes > 0) {
            detail::set_buffer_size(socket.handle_, false, options.send_buffer_bytes, error);
            if (error) return {};
        }
        if (options.count_kernel_drops) {
            socket.counting_drops_ = detail::count_kernel_drops(socket.handle_, error);
            if (error) return {};
        }
        if (!detail::bind_native(socket.handle_, local.native_address(),
                                 local.native_address_length(), error)) {
            return {};
        }
        return socket;
    }

    [[nodiscard]] static udp_socket bind(const peer_address& local) {
        std::error_code error;
        auto socket = bind(local, error);
        detail::throw_if(error, "udp_socket::bind");
        return socket;
    }

    // An unbound socket for clients (socket(2)); the first send_to binds an
    // ephemeral port. Errors as bind().
    [[nodiscard]] static udp_socket open(address_family family, std::error_code& error) {
        error.clear();
        const int native_family = detail::native_family_of(family);
        if (native_family == detail::unspecified_family) {
            error = socket_error::unsupported_family;
            return {};
        }
        udp_socket socket;
        socket.handle_ = detail::open_datagram(native_family, error);
        if (error) {
            return {};
        }
        socket.family_ = family;
        if (family == address_family::ipv6 && !detail::restrict_to_ipv6(socket.handle_, error)) {
            return {};
        }
        return socket;
    }

    [[nodiscard]] static udp_socket open(address_family family) {
        std::error_code error;
        auto socket = open(family, error);
        detail::throw_if(error, "udp_socket::open");
        return socket;
    }

    // Connects the socket to one peer (a UDP connect sends nothing): only
    // that peer's datagrams are received, and an ICMP error about it (no
    // one listening: std::errc::connection_refused) is reported by the next
    // send_to or receive_from, at once, instead of leaving a client to wait
    // for its deadline. Calls connect(2); on Windows also turns ICMP
    // reporting back on (SIO_UDP_CONNRESET), which an unconnected socket has
    // off so that a vanished peer cannot interrupt a server's receive loop.
    void connect(const peer_address& peer, std::error_code& error) {
        if (!check_open(error)) {
            return;
        }
        detail::connect_native(handle_, peer.native_address(), peer.native_address_length(), error);
    }

    void connect(const peer_address& peer) {
        std::error_code error;
        connect(peer, error);
        detail::throw_if(error, "udp_socket::connect");
    }

    bool is_open() const noexcept { return handle_ != detail::invalid_native_socket; }

    address_family family() const noexcept { return family_; }

    detail::native_socket native_handle() const noexcept { return handle_; }

    void close() noexcept {
        detail::close_native(std::exchange(handle_, detail::invalid_native_socket));
        family_ = address_family::unspecified;
        counting_drops_ = false;
    }

    // The kernel buffer sizes granted (0 when they cannot be read).
    int receive_buffer_size() const noexcept { return buffer_size(true); }
    int send_buffer_size() const noexcept { return buffer_size(false); }

    // Datagrams the kernel dropped at this socket because its receive
    // buffer was full, as of the last datagram received; always 0 unless
    // socket_options::count_kernel_drops was set and the system counts.
    std::uint64_t kernel_drops() const noexcept { return kernel_drops_; }
    bool counts_kernel_drops() const noexcept { return counting_drops_; }

    peer_address local_address(std::error_code& error) const {
        if (!check_open(error)) {
            return {};
        }
        detail::native_storage native{};
        detail::native_length length = 0;
        if (!detail::query_local_name(handle_, native, length, error)) {
            return {};
        }
        auto address = peer_address::from_native(native, length);
        if (!address) {
            error = socket_error::unsupported_family;
            return {};
        }
        return *address;
    }

    peer_address local_address() const {
        std::error_code error;
        auto address = local_address(error);
        detail::throw_if(error, "udp_socket::local_address");
        return address;
    }

    // Returns the bytes sent (a UDP send is all or nothing). A full send
    // buffer yields 0 and std::errc::operation_would_block.
    std::size_t send_to(std::span<const std::byte> payload, const peer_address& destination,
                        std::error_code& error) {
        if (!check_open(error)) {
            return 0;
        }
        return detail::send_datagram(handle_, payload, destination.native_address(),
                                     destination.native_address_length(), error);
    }

    std::size_t send_to(std::span<const std::byte> payload, const peer_address& destination) {
        std::error_code error;
        const auto sent = send_to(payload, destination, error);
        detail::throw_if(error, "udp_socket::send_to");
        return sent;
    }

    // nullopt with no error: nothing queued (would block).
    // A value with socket_error::datagram_truncated: the datagram was cut to
    // buffer.size() bytes and `from` is valid, so the caller can count the
    // drop per peer. No throwing twin: truncation and would-block are normal
    // events on a socket that faces the network, not exceptional failures.
    std::optional<std::size_t> receive_from(std::span<std::byte> buffer, peer_address& from,
                                            std::error_code& error) {
        if (!check_open(error)) {
            return std::nullopt;
        }
        detail::native_storage native{};
        detail::native_length length = 0;
        const auto received = detail::receive_datagram(handle_, buffer, native, length, error,
                                                       counting_drops_ ? &kernel_drops_ : nullptr);
        if (!received) {
            return std::nullopt;
        }
        if (auto sender = peer_address::from_native(native, length)) {
            from = *sender;
        } else {
            from = peer_address{};
        }
        if (received->truncated) {
            error = socket_error::datagram_truncated;
        }
        return received->size;
    }

    // True when a datagram is ready; false on timeout. Never waits longer
    // than timeout, even across signal interruptions.
    bool wait_readable(std::chrono::milliseconds timeout, std::error_code& error) {
        if (!check_open(error)) {
            return false;
        }
        return detail::wait_until_readable(handle_, timeout, error);
    }

    bool wait_readable(std::chrono::milliseconds timeout) {
        std::error_code error;
        const bool ready = wait_readable(timeout, error);
        detail::throw_if(error, "udp_socket::wait_readable");
        return ready;
    }

    // Readable, or also writable when asked, within timeout.
    detail::readiness wait(std::chrono::milliseconds timeout, bool want_write, std::error_code& error) {
        if (!check_open(error)) {
            return {};
        }
        return detail::wait_until_ready(handle_, timeout, want_write, error);
    }

    // Batches for servers: as many datagrams as the slots hold (recvmmsg /
    // sendmmsg on Linux, one call each elsewhere). receive_batch returns how
    // many were stored, 0 with no error when none was queued; send_batch
    // how many the kernel took, stopping at the first refused (error
    // std::errc::operation_would_block: the send buffer is full).
    std::size_t receive_batch(std::span<detail::batch_slot> slots, std::error_code& error) {
        if (!check_open(error)) {
            return 0;
        }
        return detail::receive_datagrams(handle_, slots, error, counting_drops_ ? &kernel_drops_ : nullptr);
    }

    std::size_t send_batch(std::span<const detail::batch_slot> slots, std::error_code& error) {
        if (!check_open(error)) {
            return 0;
        }
        return detail::send_datagrams(handle_, slots, error);
    }

private:
    int buffer_size(bool receive) const noexcept {
        if (!is_open()) return 0;
        std::error_code ignored;
        return detail::set_buffer_size(handle_, receive, 0, ignored);
    }

    bool check_open(std::error_code& error) const noexcept {
        error.clear();
        if (!is_open()) {
            error = std::make_error_code(std::errc::bad_file_descriptor);
            return false;
        }
        return true;
    }

    detail::native_socket handle_ = detail::invalid_native_socket;
    address_family family_ = address_family::unspecified;
    bool counting_drops_ = false;
    std::uint64_t kernel_drops_ = 0;
};

}  // namespace dtlspp
