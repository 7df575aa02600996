// SPDX-License-Identifier: MIT
// Capture and key-log files that Wireshark understands, so a dtlspp session
// can be inspected offline without a packet sniffer or root privileges.
//
// pcap_writer wraps each DTLS datagram in synthesised IP and UDP headers;
// keylog_writer records the secrets that let Wireshark decrypt the capture.
// Neither throws once open: I/O failures come back as std::error_code, since
// a broken trace file must never take a live connection down with it.
#pragma once

#include <dtlspp/version.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace dtlspp {

// Just enough of an address to synthesise headers; kept independent of any
// networking library so tracing does not drag one in.
struct ip_endpoint {
    std::array<std::uint8_t, 16> address{}; // IPv4 uses the first 4 bytes
    bool is_v6 = false;
    std::uint16_t port = 0;

    static constexpr ip_endpoint v4(std::array<std::uint8_t, 4> address, std::uint16_t port) noexcept
    {
        ip_endpoint endpoint;
        for (std::size_t i = 0; i < address.size(); ++i)
            endpoint.address[i] = address[i];
        endpoint.port = port;
        return endpoint;
    }
    static constexpr ip_endpoint v6(std::array<std::uint8_t, 16> address, std::uint16_t port) noexcept
    {
        ip_endpoint endpoint;
        endpoint.address = address;
        endpoint.is_v6 = true;
        endpoint.port = port;
        return endpoint;
    }
};

namespace detail {

struct file_closer {
    void operator()(std::FILE* file) const noexcept { std::fclose(file); }
};
using file_handle = std::unique_ptr<std::FILE, file_closer>;

// stdio does not always set errno (e.g. on a short write to a full pipe), so
// fall back to a generic I/O error rather than reporting "success".
inline std::error_code last_io_error() noexcept
{
    const int error = errno;
    return error != 0 ? std::error_code(error, std::generic_category())
                      : std::make_error_code(std::errc::io_error);
}

inline std::error_code open_file(file_handle& file, const std::filesystem::path& path, const char* mode)
{
    errno = 0;
    const auto name = path.string();
    file.reset(std::fopen(name.c_str(), mode));
    return file ? std::error_code() : last_io_error();
}

inline std::error_code write_all(std::FILE* file, const void* data, std::size_t size) noexcept
{
    errno = 0;
    if (size != 0 && std::fwrite(data, 1, size, file) != size)
        return last_io_error();
    return {};
}

// pcap's own header fields are in the writer's byte order; readers detect it
// from the magic. We pin little-endian so files are identical on any host.
inline std::uint8_t* put_le32(std::uint8_t* out, std::uint32_t value) noexcept
{
    for (int i = 0; i < 4; ++i)
        *out++ = static_cast<std::uint8_t>(value >> (8 * i));
    return out;
}
inline std::uint8_t* put_le16(std::uint8_t* out, std::uint16_t value) noexcept
{
    *out++ = static_cast<std::uint8_t>(value);
    *out++ = static_cast<std::uint8_t>(value >> 8);
    return out;
}
// IP and UDP headers are in network byte order.
inline std::uint8_t* put_be16(std::uint8_t* out, std::uint32_t value) noexcept
{
    *out++ = static_cast<std::uint8_t>(value >> 8);
    *out++ = static_cast<std::uint8_t>(value);
    return out;
}
inline std::uint8_t* put_bytes(std::uint8_t* out, const std::uint8_t* data, std::size_t size) noexcept
{
    for (std::size_t i = 0; i < size; ++i)
        *out++ = data[i];
    return out;
}

// RFC 1071 one's-complement sum over big-endian 16-bit words; an odd final
// byte is padded with zero. Folded at the end, so the accumulator is 64-bit.
class internet_checksum {
public:
    void add(const std::uint8_t* data, std::size_t size) noexcept
    {
        for (std::size_t i = 0; i < size; ++i) {
            sum_ += odd_ ? data[i] : std::uint64_t{data[i]} << 8;
            odd_ = !odd_;
        }
    }
    void add(std::span<const std::byte> data) noexcept
    {
        add(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
    }
    std::uint16_t finish() const noexcept
    {
        auto sum = sum_;
        while (sum >> 16)
            sum = (sum & 0xffff) + (sum >> 16);
        return static_cast<std::uint16_t>(~sum);
    }

private:
    std::uint64_t sum_ = 0;
    bool odd_ = false;
};

inline constexpr std::uint8_t udp_protocol = 17;
inline constexpr std::uint8_t default_ttl = 64;

} // namespace detail

// Classic libpcap format (not pcapng), the lowest common denominator that
// every tool reads:
//   file header   magic 0xa1b2c3d4 (microsecond timestamps), version 2.4,
//                 thiszone 0, sigfigs 0, snaplen, network = LINKTYPE_RAW (101)
//   per packet    ts_sec, ts_usec, incl_len, orig_len, then the packet bytes
// LINKTYPE_RAW means each packet starts at the IP header, and the IP version
// nibble selects IPv4 or IPv6, so one file can mix both without fake MACs.
// Not synchronised: share one writer between threads only behind a lock.
class pcap_writer {
public:
    static constexpr std::uint32_t magic = 0xa1b2c3d4;
    static constexpr std::uint32_t linktype_raw = 101;
    static constexpr std::uint32_t snapshot_length = 262144;

    // Truncates `path` and writes the file header.
    std::error_code open(const std::filesystem::path& path)
    {
        if (auto error = detail::open_file(file_, path, "wb"))
            return error;
        std::array<std::uint8_t, 24> header{};
        auto* out = detail::put_le32(header.data(), magic);
        out = detail::put_le16(out, 2);
        out = detail::put_le16(out, 4);
        out = detail::put_le32(out, 0); // thiszone: timestamps are UTC
        out = detail::put_le32(out, 0); // sigfigs: always 0 in practice
        out = detail::put_le32(out, snapshot_length);
        detail::put_le32(out, linktype_raw);
        if (auto error = detail::write_all(file_.get(), header.data(), header.size())) {
            file_.reset();
            return error;
        }
        return {};
    }

    bool is_open() const noexcept { return file_ != nullptr; }

    // Appends one UDP datagram from `source` to `destination`. Both must be the
    // same address family. No allocation; stdio buffers the output.
    std::error_code write(std::chrono::system_clock::time_point timestamp, const ip_endpoint& source,
                          const ip_endpoint& destination, std::span<const std::byte> datagram) noexcept
    {
        if (!file_)
            return std::make_error_code(std::errc::bad_file_descriptor);
        if (source.is_v6 != destination.is_v6)
            return std::make_error_code(std::errc::address_family_not_supported);
        const std::size_t ip_header_size = source.is_v6 ? 40 : 20;
        const std::size_t udp_length = 8 + datagram.size();
        // Both the UDP length and the IPv4 total length are 16-bit fields.
        if (udp_length + (source.is_v6 ? 0 : ip_header_size) > 0xffff)
            return std::make_error_code(std::errc::message_size);
        const auto packet_size = static_cast<std::uint32_t>(ip_header_size + udp_length);

        // Record header (16) + IPv6 header (40) + UDP header (8) at most.
        std::array<std::uint8_t, 64> headers{};
        const auto since_epoch = std::chrono::duration_cast<std::chrono::microseconds>(timestamp.time_since_epoch());
        const auto micros = since_epoch.count() < 0 ? 0 : static_cast<std::uint64_t>(since_epoch.count());
        auto* out = detail::put_le32(headers.data(), static_cast<std::uint32_t>(micros / 1000000));
        out = detail::put_le32(out, static_cast<std::uint32_t>(micros % 1000000));
        out = detail::put_le32(out, packet_size);
        out = detail::put_le32(out, packet_size);

        detail::internet_checksum udp_checksum;
        std::array<std::uint8_t, 4> length_field{};
        detail::put_be16(length_field.data() + 2, static_cast<std::uint32_t>(udp_length));
        if (source.is_v6) {
            out = detail::put_be16(out, 0x6000); // version 6, traffic class 0
            out = detail::put_be16(out, 0);      // flow label
            out = detail::put_be16(out, static_cast<std::uint32_t>(udp_length));
            *out++ = detail::udp_protocol;
            *out++ = detail::default_ttl;
            out = detail::put_bytes(out, source.address.data(), 16);
            out = detail::put_bytes(out, destination.address.data(), 16);
            // RFC 8200 §8.1 pseudo-header: addresses, 32-bit length, next header.
            udp_checksum.add(source.address.data(), 16);
            udp_checksum.add(destination.address.data(), 16);
            udp_checksum.add(length_field.data(), 4);
        } else {
            auto* ip_header = out;
            *out++ = 0x45; // version 4, 5 words of header (no options)
            *out++ = 0;
            out = detail::put_be16(out, packet_size);
            out = detail::put_be16(out, next_identification_++);
            out = detail::put_be16(out, 0x4000); // don't fragment
            *out++ = detail::default_ttl;
            *out++ = detail::udp_protocol;
            auto* checksum_field = out;
            out = detail::put_be16(out, 0);
            out = detail::put_bytes(out, source.address.data(), 4);
            out = detail::put_bytes(out, destination.address.data(), 4);
            detail::internet_checksum ip_checksum;
            ip_checksum.add(ip_header, 20);
            detail::put_be16(checksum_field, ip_checksum.finish());
            // RFC 768 pseudo-header: addresses, zero, protocol, UDP length.
            udp_checksum.add(source.address.data(), 4);
            udp_checksum.add(destination.address.data(), 4);
            udp_checksum.add(length_field.data() + 2, 2);
        }
        const std::uint8_t protocol_word[2] = {0, detail::udp_protocol};
        udp_checksum.add(protocol_word, 2);

        auto* udp_header = out;
        out = detail::put_be16(out, source.port);
        out = detail::put_be16(out, destination.port);
        out = detail::put_be16(out, static_cast<std::uint32_t>(udp_length));
        udp_checksum.add(udp_header, 6); // the checksum field itself counts as zero
        udp_checksum.add(datagram);
        // A computed zero is sent as all ones: zero on the wire means "no
        // checksum" for IPv4 and is invalid for IPv6.
        const auto checksum = udp_checksum.finish();
        out = detail::put_be16(out, checksum == 0 ? 0xffff : checksum);

        const auto header_size = static_cast<std::size_t>(out - headers.data());
        if (auto error = detail::write_all(file_.get(), headers.data(), header_size))
            return error;
        return detail::write_all(file_.get(), datagram.data(), datagram.size());
    }

    std::error_code flush() noexcept
    {
        if (!file_)
            return std::make_error_code(std::errc::bad_file_descriptor);
        errno = 0;
        return std::fflush(file_.get()) == 0 ? std::error_code() : detail::last_io_error();
    }

    // Flushes and closes; the returned error is the flush's, which is where
    // buffered write failures finally show up.
    std::error_code close() noexcept
    {
        if (!file_)
            return {};
        errno = 0;
        const bool failed = std::fclose(file_.release()) != 0;
        return failed ? detail::last_io_error() : std::error_code();
    }

private:
    detail::file_handle file_;
    std::uint16_t next_identification_ = 0;
};

// Appends NSS key log lines ("CLIENT_RANDOM <client_random> <master_secret>",
// both lowercase hex; on DTLS 1.3 one line per traffic secret), the format Wireshark's TLS/DTLS dissector reads to
// decrypt a capture. Each line is flushed at once so a crash loses nothing
// and a Wireshark watching the file sees keys as they appear.
class keylog_writer {
public:
    static constexpr std::size_t client_random_size = 32;
    static constexpr std::size_t master_secret_size = 48;

    // Appends to `path`, creating it if needed. A new file is made readable by
    // its owner only, because it holds everything needed to decrypt traffic.
    // On Windows, which has no such mode bits, it takes its folder's access
    // control list: keep key logs in a folder only you can read.
    std::error_code open(const std::filesystem::path& path)
    {
        std::error_code ignored;
        const bool existed = std::filesystem::exists(path, ignored);
        if (auto error = detail::open_file(file_, path, "ab"))
            return error;
        if (!existed)
            std::filesystem::permissions(path,
                                         std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                                         ignored);
        return {};
    }

    bool is_open() const noexcept { return file_ != nullptr; }

    // Sizes must be 32 and 48 bytes. The whole line goes out in one fwrite,
    // which stdio serialises per stream, so concurrent callers (e.g. two
    // backends' key-export callbacks) cannot interleave within a line.
    std::error_code write(std::span<const std::byte> client_random, std::span<const std::byte> master_secret) noexcept
    {
        if (!file_)
            return std::make_error_code(std::errc::bad_file_descriptor);
        if (client_random.size() != client_random_size || master_secret.size() != master_secret_size)
            return std::make_error_code(std::errc::invalid_argument);
        static constexpr std::string_view label = "CLIENT_RANDOM ";
        std::array<char, label.size() + 2 * client_random_size + 1 + 2 * master_secret_size + 1> line{};
        auto* out = line.data();
        for (const char c : label)
            *out++ = c;
        out = append_hex(out, client_random);
        *out++ = ' ';
        out = append_hex(out, master_secret);
        *out++ = '\n';
        if (auto error = detail::write_all(file_.get(), line.data(), line.size()))
            return error;
        errno = 0;
        return std::fflush(file_.get()) == 0 ? std::error_code() : detail::last_io_error();
    }

    // Any line of the format: DTLS 1.3's labels (CLIENT_HANDSHAKE_TRAFFIC_SECRET,
    // SERVER_HANDSHAKE_TRAFFIC_SECRET, CLIENT_TRAFFIC_SECRET_0,
    // SERVER_TRAFFIC_SECRET_0, EXPORTER_SECRET) with a 32- or 48-byte secret
    // (SHA-256 or SHA-384 suites), or CLIENT_RANDOM with a 48-byte master
    // secret. Another label, or another size, is invalid_argument.
    std::error_code write(std::string_view label, std::span<const std::byte> client_random,
                          std::span<const std::byte> secret) noexcept
    {
        if (label == "CLIENT_RANDOM")
            return write(client_random, secret);
        if (!file_)
            return std::make_error_code(std::errc::bad_file_descriptor);
        static constexpr std::array<std::string_view, 5> dtls13_labels{
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET"};
        bool known = false;
        for (const auto l : dtls13_labels)
            known = known || l == label;
        if (!known || client_random.size() != client_random_size || (secret.size() != 32 && secret.size() != 48))
            return std::make_error_code(std::errc::invalid_argument);
        std::array<char, 32 + 1 + 2 * client_random_size + 1 + 2 * 48 + 1> line{};
        auto* out = line.data();
        for (const char c : label)
            *out++ = c;
        *out++ = ' ';
        out = append_hex(out, client_random);
        *out++ = ' ';
        out = append_hex(out, secret);
        *out++ = '\n';
        if (auto error = detail::write_all(file_.get(), line.data(), static_cast<std::size_t>(out - line.data())))
            return error;
        errno = 0;
        return std::fflush(file_.get()) == 0 ? std::error_code() : detail::last_io_error();
    }

    std::error_code close() noexcept
    {
        if (!file_)
            return {};
        errno = 0;
        const bool failed = std::fclose(file_.release()) != 0;
        return failed ? detail::last_io_error() : std::error_code();
    }

private:
    static char* append_hex(char* out, std::span<const std::byte> bytes) noexcept
    {
        static constexpr char digits[] = "0123456789abcdef";
        for (const auto byte : bytes) {
            const auto value = std::to_integer<unsigned>(byte);
            *out++ = digits[value >> 4];
            *out++ = digits[value & 0xf];
        }
        return out;
    }

    detail::file_handle file_;
};

// The de-facto convention shared by browsers, OpenSSL-based tools and
// Wireshark: SSLKEYLOGFILE names the key log. Unset or empty means "off".
inline std::optional<std::filesystem::path> keylog_path_from_env()
{
    const char* value = std::getenv("SSLKEYLOGFILE");
    if (value == nullptr || *value == '\0')
        return std::nullopt;
    return std::filesystem::path(value);
}

} // namespace dtlspp
