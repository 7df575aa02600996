// SPDX-License-Identifier: MIT
#pragma once

#include <dtlspp/version.hpp>

// peer_address: an IPv4 or IPv6 UDP endpoint. It is the server's demux key
// (hence equality and std::hash) and the input to DTLS cookies (hence
// transport_id), so it must compare by value, never by raw struct bytes.

#include <dtlspp/transport/detail/native_socket.hpp>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace dtlspp {

enum class address_family { unspecified, ipv4, ipv6 };

// Why parse() rejected its input. Each cause is distinct so that a user
// mistyping "::1:4433" learns about brackets rather than "bad address".
enum class address_error {
    empty_input = 1,
    missing_port,         // no ":port" suffix
    invalid_port,         // not a decimal number in 0..65535
    missing_host,         // ":4433" or "[]:4433"
    unbalanced_brackets,  // "[::1:4433" or "::1]:4433"
    ipv6_needs_brackets,  // "::1:4433" is ambiguous without them
    invalid_host,         // text that can never be a host (e.g. a NUL byte)
    host_not_found,       // the resolver knows no IPv4/IPv6 address for it
    resolution_failed,    // the resolver itself failed (temporary or system error)
};

namespace detail {

class address_error_category final : public std::error_category {
public:
    const char* name() const noexcept override { return "dtlspp.address"; }

    std::string message(int value) const override {
        switch (static_cast<address_error>(value)) {
        case address_error::empty_input: return "empty address";
        case address_error::missing_port: return "address has no :port suffix";
        case address_error::invalid_port: return "port is not a number in 0..65535";
        case address_error::missing_host: return "address has no host part";
        case address_error::unbalanced_brackets: return "unbalanced [ ] around IPv6 address";
        case address_error::ipv6_needs_brackets: return "IPv6 address must be written as [addr]:port";
        case address_error::invalid_host: return "host contains invalid characters";
        case address_error::host_not_found: return "host not found";
        case address_error::resolution_failed: return "host name resolution failed";
        }
        return "unknown address error";
    }
};

}  // namespace detail

inline const std::error_category& address_category() noexcept {
    static const detail::address_error_category category;
    return category;
}

inline std::error_code make_error_code(address_error error) noexcept {
    return {static_cast<int>(error), address_category()};
}

}  // namespace dtlspp

// Reopening namespace std (rather than a qualified specialization) is the
// form every compiler accepts.
namespace std {
template <>
struct is_error_code_enum<dtlspp::address_error> : true_type {};
}  // namespace std

namespace dtlspp {

class peer_address {
public:
    // Largest transport_id: 16 address bytes (IPv6) + 2 port bytes.
    static constexpr std::size_t max_transport_id_size = 18;

    peer_address() noexcept { std::memset(&storage_, 0, sizeof storage_); }

    // Accepts "127.0.0.1:4433", "[::1]:4433" and "name:4433". Numeric forms
    // never reach DNS; a name takes the resolver's first IPv4/IPv6 answer.
    [[nodiscard]] static peer_address parse(std::string_view host_port, std::error_code& error) {
        error.clear();
        if (host_port.empty()) {
            error = address_error::empty_input;
            return {};
        }

        std::string_view host;
        std::string_view port_text;
        bool bracketed = false;
        if (host_port.front() == '[') {
            const auto close = host_port.find(']');
            if (close == std::string_view::npos) {
                error = address_error::unbalanced_brackets;
                return {};
            }
            host = host_port.substr(1, close - 1);
            const auto rest = host_port.substr(close + 1);
            if (rest.empty()) {
                error = address_error::missing_port;
                return {};
            }
            if (rest.front() != ':') {
                error = address_error::unbalanced_brackets;
                return {};
            }
            port_text = rest.substr(1);
            bracketed = true;
        } else {
            const auto colon = host_port.rfind(':');
            if (colon == std::string_view::npos) {
                error = host_port.find(']') == std::string_view::npos
                            ? address_error::missing_port
                            : address_error::unbalanced_brackets;
                return {};
            }
            host = host_port.substr(0, colon);
            port_text = host_port.substr(colon + 1);
            if (host.find(']') != std::string_view::npos || host.find('[') != std::string_view::npos) {
                error = address_error::unbalanced_brackets;
                return {};
            }
            if (host.find(':') != std::string_view::npos) {
                error = address_error::ipv6_needs_brackets;
                return {};
            }
        }

        if (host.empty()) {
            error = address_error::missing_host;
            return {};
        }
        const auto port = parse_port(port_text);
        if (!port) {
            error = port_text.empty() ? address_error::missing_port : address_error::invalid_port;
            return {};
        }
        if (host.find('\0') != std::string_view::npos || host.find(' ') != std::string_view::npos) {
            error = address_error::invalid_host;
            return {};
        }

        const std::string host_text(host);
        peer_address result;
        // Brackets promise an IPv6 literal, so only that is tried for them.
        const int family = bracketed ? detail::ipv6_family : detail::unspecified_family;
        auto status = detail::resolve_host(host_text, family, true, result.storage_, result.length_);
        if (status == detail::resolve_status::not_found && !bracketed) {
            status = detail::resolve_host(host_text, family, false, result.storage_, result.length_);
        }
        if (status != detail::resolve_status::resolved) {
            if (bracketed) {
                error = address_error::invalid_host;
            } else if (status == detail::resolve_status::not_found) {
                error = address_error::host_not_found;
            } else {
                error = address_error::resolution_failed;
            }
            return {};
        }
        detail::set_port(result.storage_, *port);
        result.refresh_transport_id();
        return result;
    }

    [[nodiscard]] static peer_address parse(std::string_view host_port) {
        std::error_code error;
        auto result = parse(host_port, error);
        if (error) {
            throw std::system_error(error, std::string(host_port));
        }
        return result;
    }

    // Adopts an address produced by the socket layer (recvmsg, getsockname).
    // nullopt for families other than IPv4/IPv6 or a too-short length.
    [[nodiscard]] static std::optional<peer_address> from_native(const detail::native_storage& address,
                                                   detail::native_length length) noexcept {
        const int family = detail::family_of(address);
        const detail::native_length expected = detail::native_length_for(family);
        if (expected == 0 || length < expected) {
            return std::nullopt;
        }
        peer_address result;
        std::memcpy(&result.storage_, &address, expected);
        result.length_ = expected;
        result.refresh_transport_id();
        return result;
    }

    // Adopts an address from any socket API that speaks sockaddr (recvfrom,
    // getpeername, an Asio endpoint's data() and size()). nullopt for a null
    // pointer, a family other than IPv4/IPv6, or a length too short for the
    // family it names. The bytes are copied: `address` need not outlive the call.
    static std::optional<peer_address> from_native(const sockaddr* address, std::size_t length) noexcept {
        if (address == nullptr) {
            return std::nullopt;
        }
        detail::native_storage storage;
        std::memset(&storage, 0, sizeof storage);
        const std::size_t copied = length < sizeof storage ? length : sizeof storage;
        std::memcpy(&storage, address, copied);
        return from_native(storage, static_cast<detail::native_length>(copied));
    }
    address_family family() const noexcept {
        switch (detail::family_of(storage_)) {
        case detail::ipv4_family: return address_family::ipv4;
        case detail::ipv6_family: return address_family::ipv6;
        default: return address_family::unspecified;
        }
    }

    bool is_specified() const noexcept { return family() != address_family::unspecified; }

    // Numeric host without brackets, e.g. "127.0.0.1" or "::1".
    std::string host() const {
        return is_specified() ? detail::format_numeric_host(storage_, length_) : std::string{};
    }

    std::uint16_t port() const noexcept { return detail::port_of(storage_); }

    // "127.0.0.1:4433" or "[::1]:4433"; empty for a default-constructed address.
    std::string to_string() const {
        if (!is_specified()) {
            return {};
        }
        const std::string port_text = std::to_string(port());
        return family() == address_family::ipv6 ? "[" + host() + "]:" + port_text
                                                : host() + ":" + port_text;
    }

    // Address bytes followed by the big-endian port: stable across runs and
    // platforms, so it is suitable as DTLS cookie input. IPv4 ids are 6 bytes
    // and IPv6 ids 18, so the two families can never produce the same id.
    std::span<const std::byte> transport_id() const noexcept {
        return {transport_id_.data(), transport_id_size_};
    }

    const sockaddr* native_address() const noexcept {
        return reinterpret_cast<const sockaddr*>(&storage_);
    }

    detail::native_length native_address_length() const noexcept { return length_; }
    // The size of native_address() in bytes (that of a sockaddr_in or a
    // sockaddr_in6), as sendto or an Asio endpoint's resize() take it; 0 for
    // a default-constructed address.
    std::size_t native_address_size() const noexcept { return static_cast<std::size_t>(length_); }

    friend bool operator==(const peer_address& left, const peer_address& right) noexcept {
        // Link-local IPv6 peers on different interfaces are different peers
        // even when their address bytes match, so the scope takes part.
        return left.transport_id().size() == right.transport_id().size() &&
               std::memcmp(left.transport_id_.data(), right.transport_id_.data(),
                           left.transport_id_size_) == 0 &&
               detail::scope_of(left.storage_) == detail::scope_of(right.storage_);
    }

    // Lets loggers and test frameworks print addresses without to_string().
    friend std::ostream& operator<<(std::ostream& stream, const peer_address& address) {
        return stream << address.to_string();
    }

    std::size_t hash() const noexcept {
        // FNV-1a: simple, no dependencies, and good enough for a demux table
        // whose keys attackers can only choose within their own address.
        std::uint64_t value = 0xcbf29ce484222325ULL;
        const auto mix = [&value](std::uint8_t byte) {
            value ^= byte;
            value *= 0x100000001b3ULL;
        };
        for (const std::byte byte : transport_id()) {
            mix(static_cast<std::uint8_t>(byte));
        }
        const std::uint32_t scope = detail::scope_of(storage_);
        for (int shift = 0; shift < 32; shift += 8) {
            mix(static_cast<std::uint8_t>(scope >> shift));
        }
        return static_cast<std::size_t>(value);
    }

private:
    static std::optional<std::uint16_t> parse_port(std::string_view text) noexcept {
        // from_chars stops at the first non-digit, so the full-consumption
        // check is what rejects "44x"; the length cap keeps "000004433" out.
        if (text.empty() || text.size() > 5) {
            return std::nullopt;
        }
        unsigned value = 0;
        const auto [end, status] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (status != std::errc{} || end != text.data() + text.size() || value > 65535) {
            return std::nullopt;
        }
        return static_cast<std::uint16_t>(value);
    }

    void refresh_transport_id() noexcept {
        std::array<std::byte, 16> ip{};
        const std::size_t ip_size = detail::copy_ip_bytes(storage_, ip);
        std::memcpy(transport_id_.data(), ip.data(), ip_size);
        const std::uint16_t port_number = port();
        transport_id_[ip_size] = static_cast<std::byte>(port_number >> 8);
        transport_id_[ip_size + 1] = static_cast<std::byte>(port_number & 0xff);
        transport_id_size_ = ip_size + 2;
    }

    detail::native_storage storage_;
    detail::native_length length_ = 0;
    std::array<std::byte, max_transport_id_size> transport_id_{};
    std::size_t transport_id_size_ = 0;
};

}  // namespace dtlspp

namespace std {
template <>
struct hash<dtlspp::peer_address> {
    size_t operator()(const dtlspp::peer_address& address) const noexcept {
        return address.hash();
    }
};
}  // namespace std
