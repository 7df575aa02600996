// Capture for the example programs: every datagram that crosses the socket
// goes to a pcap file with the addresses it really had, and the session keys
// go to an NSS key log, so Wireshark or tshark can show and decrypt exactly
// what was on the wire (including the HelloVerifyRequest exchange, which no
// association ever sees).
#pragma once

#include <dtlspp/config.hpp>
#include <dtlspp/pcap.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

namespace examples {

// pcap.hpp keeps its own small address type so tracing never depends on the
// socket layer; this is the one place the two meet. transport_id() is the
// address bytes followed by the big-endian port, in either family.
inline std::optional<dtlspp::ip_endpoint> to_ip_endpoint(const dtlspp::peer_address& address)
{
    const auto id = address.transport_id();
    const auto byte = [&](std::size_t i) { return std::to_integer<std::uint8_t>(id[i]); };
    if (address.family() == dtlspp::address_family::ipv4) {
        std::array<std::uint8_t, 4> ip{};
        for (std::size_t i = 0; i < ip.size(); ++i) ip[i] = byte(i);
        return dtlspp::ip_endpoint::v4(ip, address.port());
    }
    if (address.family() == dtlspp::address_family::ipv6) {
        std::array<std::uint8_t, 16> ip{};
        for (std::size_t i = 0; i < ip.size(); ++i) ip[i] = byte(i);
        return dtlspp::ip_endpoint::v6(ip, address.port());
    }
    return std::nullopt;
}

// The local address a datagram to `peer` leaves from. A socket bound to the
// wildcard address (0.0.0.0, ::, or a client's implicit bind) only knows its
// port: the kernel picks the source address per destination. Connecting a
// spare UDP socket asks the kernel for that choice without sending anything.
inline dtlspp::peer_address local_address_toward(const dtlspp::udp_socket& socket, const dtlspp::peer_address& peer)
{
    std::error_code ec;
    const auto local = socket.local_address(ec);
    if (ec) return {};
    const auto id = local.transport_id();
    const bool wildcard = id.size() > 2 && std::all_of(id.begin(), id.end() - 2, [](std::byte b) { return b == std::byte{0}; });
    if (!wildcard) return local;
    auto probe = dtlspp::udp_socket::open(peer.family(), ec);
    if (ec || ::connect(probe.native_handle(), peer.native_address(), peer.native_address_length()) != 0) return local;
    const auto chosen = probe.local_address(ec);
    if (ec) return local;
    const auto host = chosen.family() == dtlspp::address_family::ipv6 ? "[" + chosen.host() + "]" : chosen.host();
    auto result = dtlspp::peer_address::parse(host + ":" + std::to_string(local.port()), ec);
    return ec ? local : result;
}

// The pcap file and the key log behind --pcap, --keylog and SSLKEYLOGFILE.
// Shared state (not a plain member) because config::key_log is copied into
// every context the config builds and must stay valid as long as they live.
class capture {
public:
    capture() : state_(std::make_shared<state>()) {}

    // Throws std::runtime_error naming the file when it cannot be opened:
    // asking for a capture and silently getting none would be worse.
    void open_pcap(const std::filesystem::path& path)
    {
        if (auto ec = state_->pcap.open(path))
            throw std::runtime_error("--pcap: cannot write " + path.string() + ": " + ec.message());
    }

    void open_keylog(const std::filesystem::path& path)
    {
        if (auto ec = state_->keys.open(path))
            throw std::runtime_error("key log: cannot append to " + path.string() + ": " + ec.message());
    }

    bool has_pcap() const noexcept { return state_->pcap.is_open(); }
    bool has_keylog() const noexcept { return state_->keys.is_open(); }

    // Points the config's key export at the key log, if one is open.
    void install_key_log(dtlspp::config& c) const
    {
        if (!state_->keys.is_open()) return;
        c.key_log = [s = state_](std::string_view line) { s->write_key_line(line); };
    }

    // A datagram this socket sent to `to`. Call after send_to: before its
    // first send a client socket has no port yet.
    void sent(const dtlspp::udp_socket& socket, const dtlspp::peer_address& to, std::span<const std::byte> datagram)
    {
        if (has_pcap()) state_->write(local_for(socket, to), to, datagram);
    }

    void received(const dtlspp::udp_socket& socket, const dtlspp::peer_address& from,
                  std::span<const std::byte> datagram)
    {
        if (has_pcap()) state_->write(from, local_for(socket, from), datagram);
    }

    // Flushes and closes both files; errors are reported, not thrown, since
    // the session they describe is already over.
    void close()
    {
        if (auto ec = state_->pcap.close()) std::cerr << "pcap: " << ec.message() << '\n';
        if (auto ec = state_->keys.close()) std::cerr << "key log: " << ec.message() << '\n';
    }

private:
    struct state {
        dtlspp::pcap_writer pcap;
        dtlspp::keylog_writer keys;
        bool reported = false;

        void write(const dtlspp::peer_address& from, const dtlspp::peer_address& to, std::span<const std::byte> d)
        {
            const auto source = to_ip_endpoint(from);
            const auto destination = to_ip_endpoint(to);
            if (!source || !destination) return;
            if (auto ec = pcap.write(std::chrono::system_clock::now(), *source, *destination, d)) report("pcap", ec);
        }

        // The backends hand over a finished NSS line; keylog_writer takes
        // the two binary fields so it can check their sizes, so parse it
        // back. Any other label would be a stack we do not know: skip it.
        // "LABEL <client random> <secret>": CLIENT_RANDOM and a 48-byte
        // master secret (DTLS 1.2), or a DTLS 1.3 traffic secret of 32 or 48
        // bytes; keylog_writer checks the label and the sizes.
        void write_key_line(std::string_view line)
        {
            std::array<std::byte, dtlspp::keylog_writer::client_random_size> random{};
            std::array<std::byte, 48> secret{};
            const auto space = line.find(' ');
            const auto label = line.substr(0, space);
            const auto rest = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
            const std::size_t secret_hex = rest.size() > 65 ? rest.size() - 65 : 0;
            if (rest.size() < 65 || rest[64] != ' ' || (secret_hex != 64 && secret_hex != 96) ||
                !unhex(rest.substr(0, 64), random) ||
                !unhex_into(rest.substr(65), std::span<std::byte>(secret.data(), secret_hex / 2))) {
                report("key log", std::make_error_code(std::errc::invalid_argument));
                return;
            }
            if (auto ec = keys.write(label, random, std::span<const std::byte>(secret.data(), secret_hex / 2)))
                report("key log", ec);
        }

        static bool unhex_into(std::string_view text, std::span<std::byte> out)
        {
            if (text.size() != out.size() * 2) return false;
            const auto digit = [](char c) -> int {
                if (c >= '0' && c <= '9') return c - '0';
                if (c >= 'a' && c <= 'f') return c - 'a' + 10;
                if (c >= 'A' && c <= 'F') return c - 'A' + 10;
                return -1;
            };
            for (std::size_t i = 0; i < out.size(); ++i) {
                const int hi = digit(text[2 * i]), lo = digit(text[2 * i + 1]);
                if (hi < 0 || lo < 0) return false;
                out[i] = static_cast<std::byte>(hi << 4 | lo);
            }
            return true;
        }

        template <std::size_t N>
        static bool unhex(std::string_view text, std::array<std::byte, N>& out)
        {
            const auto digit = [](char c) -> int {
                if (c >= '0' && c <= '9') return c - '0';
                if (c >= 'a' && c <= 'f') return c - 'a' + 10;
                if (c >= 'A' && c <= 'F') return c - 'A' + 10;
                return -1;
            };
            for (std::size_t i = 0; i < N; ++i) {
                const int high = digit(text[2 * i]), low = digit(text[2 * i + 1]);
                if (high < 0 || low < 0) return false;
                out[i] = static_cast<std::byte>(high << 4 | low);
            }
            return true;
        }

        // Once: a full disk should not flood the terminal, and must not stop
        // the session either.
        void report(const char* what, std::error_code ec)
        {
            if (reported) return;
            reported = true;
            std::cerr << what << ": " << ec.message() << " (capture incomplete)\n";
        }
    };

    // The kernel's choice of source address does not change for a peer, so
    // ask once per peer.
    const dtlspp::peer_address& local_for(const dtlspp::udp_socket& socket, const dtlspp::peer_address& peer)
    {
        auto found = local_.find(peer);
        if (found == local_.end()) found = local_.emplace(peer, local_address_toward(socket, peer)).first;
        return found->second;
    }

    std::shared_ptr<state> state_;
    std::unordered_map<dtlspp::peer_address, dtlspp::peer_address> local_;
};

} // namespace examples
