// SPDX-License-Identifier: MIT
#define BOOST_TEST_MODULE udp_socket
#include <boost/test/unit_test.hpp>

#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <string>
#include <unordered_set>
#include <vector>

using namespace std::chrono_literals;
using dtlspp::address_error;
using dtlspp::address_family;
using dtlspp::peer_address;
using dtlspp::socket_error;
using dtlspp::udp_socket;

namespace {

std::vector<std::byte> bytes_of(std::string_view text) {
    std::vector<std::byte> result(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        result[i] = static_cast<std::byte>(text[i]);
    }
    return result;
}

// Boost.Test cannot print std::byte, so byte ranges are compared as text.
std::string text_of(std::span<const std::byte> data) {
    std::string result(data.size(), '\0');
    for (std::size_t i = 0; i < data.size(); ++i) {
        result[i] = static_cast<char>(data[i]);
    }
    return result;
}

// Local delivery is near-instant, but the datagram is not guaranteed to be
// queued the moment sendto returns, so wait (bounded) before reading.
std::optional<std::size_t> receive_within(udp_socket& socket, std::span<std::byte> buffer,
                                          peer_address& from, std::error_code& error) {
    for (int attempt = 0; attempt < 50; ++attempt) {
        if (!socket.wait_readable(100ms, error) || error) {
            continue;
        }
        auto received = socket.receive_from(buffer, from, error);
        if (received || error) {
            return received;
        }
    }
    return std::nullopt;
}

void check_send_and_receive(const std::string& loopback) {
    std::error_code error;
    auto server = udp_socket::bind(peer_address::parse(loopback + ":0"), error);
    BOOST_REQUIRE_MESSAGE(!error, error.message());
    const auto server_address = server.local_address();
    BOOST_TEST(server_address.port() != 0);

    auto client = udp_socket::open(server_address.family());
    const auto payload = bytes_of("hello over " + loopback);
    BOOST_TEST(client.send_to(payload, server_address) == payload.size());

    std::array<std::byte, 1500> buffer{};
    peer_address from;
    const auto received = receive_within(server, buffer, from, error);
    BOOST_REQUIRE_MESSAGE(!error, error.message());
    BOOST_REQUIRE(received.has_value());
    BOOST_TEST(text_of(std::span(buffer).first(*received)) == text_of(payload));
    BOOST_TEST((from.family() == server_address.family()));
    BOOST_TEST(from.host() == server_address.host());
    // An unbound client reports the wildcard address, so only the port the
    // first send assigned can be compared.
    BOOST_TEST(from.port() == client.local_address().port());

    // And back, so the reply path uses the address learned from recvmsg.
    const auto reply = bytes_of("reply");
    BOOST_TEST(server.send_to(reply, from) == reply.size());
    peer_address reply_from;
    const auto reply_size = receive_within(client, buffer, reply_from, error);
    BOOST_REQUIRE(!error);
    BOOST_REQUIRE(reply_size.has_value());
    BOOST_TEST(*reply_size == reply.size());
    BOOST_TEST(reply_from == server_address);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(address)

BOOST_AUTO_TEST_CASE(parses_and_formats_ipv4) {
    std::error_code error;
    const auto address = peer_address::parse("127.0.0.1:4433", error);
    BOOST_REQUIRE(!error);
    BOOST_TEST((address.family() == address_family::ipv4));
    BOOST_TEST(address.host() == "127.0.0.1");
    BOOST_TEST(address.port() == 4433);
    BOOST_TEST(address.to_string() == "127.0.0.1:4433");
    BOOST_TEST(peer_address::parse(address.to_string()) == address);
}

BOOST_AUTO_TEST_CASE(parses_and_formats_ipv6) {
    std::error_code error;
    const auto address = peer_address::parse("[::1]:4433", error);
    BOOST_REQUIRE(!error);
    BOOST_TEST((address.family() == address_family::ipv6));
    BOOST_TEST(address.host() == "::1");
    BOOST_TEST(address.port() == 4433);
    BOOST_TEST(address.to_string() == "[::1]:4433");
    BOOST_TEST(peer_address::parse(address.to_string()) == address);

    const auto full = peer_address::parse("[2001:db8:0:0:0:0:0:1]:65535");
    BOOST_TEST(full.to_string() == "[2001:db8::1]:65535");
}

BOOST_AUTO_TEST_CASE(resolves_localhost_to_loopback) {
    std::error_code error;
    const auto address = peer_address::parse("localhost:4433", error);
    BOOST_REQUIRE_MESSAGE(!error, error.message());
    BOOST_TEST(address.port() == 4433);
    BOOST_TEST((address.host() == "127.0.0.1" || address.host() == "::1"));
}

BOOST_AUTO_TEST_CASE(port_zero_and_extremes_are_accepted) {
    BOOST_TEST(peer_address::parse("127.0.0.1:0").port() == 0);
    BOOST_TEST(peer_address::parse("127.0.0.1:65535").port() == 65535);
}

BOOST_AUTO_TEST_CASE(bad_input_reports_specific_errors_without_throwing) {
    const std::vector<std::pair<std::string, address_error>> cases = {
        {"", address_error::empty_input},
        {"127.0.0.1", address_error::missing_port},
        {"127.0.0.1:", address_error::missing_port},
        {"127.0.0.1:65536", address_error::invalid_port},
        {"127.0.0.1:-1", address_error::invalid_port},
        {"127.0.0.1:44x", address_error::invalid_port},
        {"127.0.0.1:+44", address_error::invalid_port},
        {"127.0.0.1:000004433", address_error::invalid_port},
        {":4433", address_error::missing_host},
        {"[]:4433", address_error::missing_host},
        {"[::1:4433", address_error::unbalanced_brackets},
        {"::1]:4433", address_error::unbalanced_brackets},
        {"[::1]4433", address_error::unbalanced_brackets},
        {"[::1]", address_error::missing_port},
        {"::1:4433", address_error::ipv6_needs_brackets},
        {"[127.0.0.1]:4433", address_error::invalid_host},
        {"[not-an-address]:4433", address_error::invalid_host},
        {std::string("local\0host:4433", 15), address_error::invalid_host},
        {"bad host:4433", address_error::invalid_host},
    };
    for (const auto& [input, expected] : cases) {
        BOOST_TEST_CONTEXT("input \"" << input << "\"") {
            std::error_code error;
            peer_address result;
            BOOST_CHECK_NO_THROW(result = peer_address::parse(input, error));
            BOOST_TEST(error == make_error_code(expected), error.message());
            BOOST_TEST(!result.is_specified());
            BOOST_TEST(!error.message().empty());
        }
    }
}

BOOST_AUTO_TEST_CASE(unknown_name_reports_a_resolver_error) {
    // .invalid is reserved (RFC 6761) and never resolves. A machine without
    // a reachable resolver fails the lookup instead of answering "no such
    // name", so either resolver error is a correct, clear report.
    std::error_code error;
    const auto result = peer_address::parse("no-such-host.invalid:4433", error);
    BOOST_TEST((error == make_error_code(address_error::host_not_found) ||
                error == make_error_code(address_error::resolution_failed)),
               error.message());
    BOOST_TEST(!result.is_specified());
}

BOOST_AUTO_TEST_CASE(throwing_parse_throws_system_error) {
    BOOST_CHECK_THROW((void)peer_address::parse("127.0.0.1"), std::system_error);
}

BOOST_AUTO_TEST_CASE(equality_hash_and_transport_id) {
    const auto a = peer_address::parse("127.0.0.1:4433");
    const auto same = peer_address::parse("127.0.0.1:4433");
    const auto other_port = peer_address::parse("127.0.0.1:4434");
    const auto v6 = peer_address::parse("[::1]:4433");
    const auto mapped = peer_address::parse("[::ffff:127.0.0.1]:4433");

    BOOST_TEST(a == same);
    BOOST_TEST(!(a == other_port));
    BOOST_TEST(!(a == v6));
    BOOST_TEST(!(a == mapped));
    BOOST_TEST(std::hash<peer_address>{}(a) == std::hash<peer_address>{}(same));

    // 127.0.0.1 then port 4433 = 0x1151, both in network byte order.
    BOOST_TEST(text_of(a.transport_id()) == std::string("\x7f\x00\x00\x01\x11\x51", 6));
    BOOST_TEST(v6.transport_id().size() == 18u);

    std::unordered_set<peer_address> table{a, same, other_port, v6, mapped};
    BOOST_TEST(table.size() == 4u);
    BOOST_TEST(table.count(peer_address::parse("[::1]:4433")) == 1u);
}

BOOST_AUTO_TEST_CASE(default_address_is_unspecified) {
    const peer_address address;
    BOOST_TEST(!address.is_specified());
    BOOST_TEST(address.to_string().empty());
    BOOST_TEST(address.transport_id().empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(udp)

BOOST_AUTO_TEST_CASE(bind_port_zero_ipv4) {
    auto socket = udp_socket::bind(peer_address::parse("127.0.0.1:0"));
    const auto local = socket.local_address();
    BOOST_TEST(local.host() == "127.0.0.1");
    BOOST_TEST(local.port() != 0);
}

BOOST_AUTO_TEST_CASE(bind_port_zero_ipv6) {
    auto socket = udp_socket::bind(peer_address::parse("[::1]:0"));
    const auto local = socket.local_address();
    BOOST_TEST(local.host() == "::1");
    BOOST_TEST(local.port() != 0);
}

BOOST_AUTO_TEST_CASE(ipv4_and_ipv6_loopback_share_a_port) {
    // With IPV6_V6ONLY the two families are separate endpoints, so binding
    // both to the same port number must succeed.
    auto v4 = udp_socket::bind(peer_address::parse("127.0.0.1:0"));
    const auto port = v4.local_address().port();
    std::error_code error;
    auto v6 = udp_socket::bind(peer_address::parse("[::1]:" + std::to_string(port)), error);
    BOOST_TEST(!error, error.message());
    BOOST_TEST(v6.is_open());
}

BOOST_AUTO_TEST_CASE(send_and_receive_ipv4) { check_send_and_receive("127.0.0.1"); }

BOOST_AUTO_TEST_CASE(send_and_receive_ipv6) { check_send_and_receive("[::1]"); }

BOOST_AUTO_TEST_CASE(empty_queue_would_block) {
    auto socket = udp_socket::bind(peer_address::parse("127.0.0.1:0"));
    std::array<std::byte, 64> buffer{};
    peer_address from;
    std::error_code error;
    const auto received = socket.receive_from(buffer, from, error);
    BOOST_TEST(!received.has_value());
    BOOST_TEST(!error, error.message());
}

BOOST_AUTO_TEST_CASE(oversize_datagram_is_reported_as_truncated) {
    auto server = udp_socket::bind(peer_address::parse("127.0.0.1:0"));
    auto client = udp_socket::open(address_family::ipv4);
    const std::vector<std::byte> payload(300, std::byte{0x5a});
    client.send_to(payload, server.local_address());

    std::array<std::byte, 100> small{};
    peer_address from;
    std::error_code error;
    const auto received = receive_within(server, small, from, error);
    BOOST_TEST(error == make_error_code(socket_error::datagram_truncated));
    BOOST_REQUIRE(received.has_value());
    BOOST_TEST(*received == small.size());
    // An unbound client reports the wildcard address, so only the port the
    // first send assigned can be compared.
    BOOST_TEST(from.port() == client.local_address().port());

    // The rest of the datagram is gone, not left for the next read.
    const auto next = server.receive_from(small, from, error);
    BOOST_TEST(!next.has_value());
    BOOST_TEST(!error);
}

BOOST_AUTO_TEST_CASE(wait_readable_times_out_in_bounded_time) {
    auto socket = udp_socket::bind(peer_address::parse("127.0.0.1:0"));
    const auto start = std::chrono::steady_clock::now();
    std::error_code error;
    const bool ready = socket.wait_readable(50ms, error);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    BOOST_TEST(!ready);
    BOOST_TEST(!error);
    BOOST_TEST(elapsed >= 40ms);
    BOOST_TEST(elapsed < 2s);

    BOOST_TEST(!socket.wait_readable(0ms));
}

BOOST_AUTO_TEST_CASE(closed_socket_reports_errors) {
    udp_socket socket;
    std::error_code error;
    std::array<std::byte, 4> buffer{};
    peer_address from;
    BOOST_TEST(!socket.receive_from(buffer, from, error).has_value());
    BOOST_TEST(error == std::make_error_code(std::errc::bad_file_descriptor));
    BOOST_CHECK_THROW(socket.send_to(buffer, peer_address::parse("127.0.0.1:9")),
                      std::system_error);
    BOOST_CHECK_THROW((void)udp_socket::open(address_family::unspecified), std::system_error);
}

BOOST_AUTO_TEST_CASE(move_transfers_ownership) {
    auto first = udp_socket::bind(peer_address::parse("127.0.0.1:0"));
    const auto local = first.local_address();
    udp_socket second = std::move(first);
    BOOST_TEST(!first.is_open());
    BOOST_TEST(second.is_open());
    BOOST_TEST(second.local_address() == local);
}

// What a peer that went away leaves behind: its port answers with ICMP port
// unreachable. A server's (unconnected) socket must not hear of it: Windows
// would fail the next recvfrom with WSAECONNRESET and a naive loop would
// stop serving everyone, which is why the Winsock layer turns
// SIO_UDP_CONNRESET off. On POSIX an unconnected socket never hears of it.
BOOST_AUTO_TEST_CASE(an_unconnected_socket_ignores_a_vanished_peer) {
    for (const std::string loopback : {"127.0.0.1:0", "[::1]:0"}) {
        auto server = udp_socket::bind(peer_address::parse(loopback));
        const peer_address gone = udp_socket::bind(peer_address::parse(loopback)).local_address();
        std::error_code error;
        for (int i = 0; i < 3; ++i) {
            server.send_to(bytes_of("anyone?"), gone, error);
            BOOST_TEST(!error, loopback << ": " << error.message());
        }
        // Time for the ICMP messages to come back.
        std::array<std::byte, 64> buffer{};
        peer_address from;
        server.wait_readable(100ms, error);
        BOOST_TEST(!error, loopback << ": " << error.message());
        BOOST_TEST(!server.receive_from(buffer, from, error).has_value());
        BOOST_TEST(!error, loopback << ": " << error.message());

        auto peer = udp_socket::bind(peer_address::parse(loopback));
        peer.send_to(bytes_of("still here"), server.local_address());
        const auto received = receive_within(server, buffer, from, error);
        BOOST_TEST(!error, loopback << ": " << error.message());
        BOOST_REQUIRE(received.has_value());
        BOOST_TEST(text_of(std::span(buffer).first(*received)) == "still here");
        BOOST_TEST(from == peer.local_address());
    }
}

// A connected socket does hear it, and says so the same way on every
// system: std::errc::connection_refused (ECONNREFUSED on POSIX; WSAECONNRESET
// from recvfrom on Windows, and the pending SO_ERROR under wine).
BOOST_AUTO_TEST_CASE(a_connected_socket_reports_a_closed_port_as_connection_refused) {
    for (const std::string loopback : {"127.0.0.1:0", "[::1]:0"}) {
        const peer_address gone = udp_socket::bind(peer_address::parse(loopback)).local_address();
        auto client = udp_socket::open(gone.family());
        client.connect(gone);
        std::error_code error;
        std::array<std::byte, 64> buffer{};
        peer_address from;
        bool refused = false;
        for (int i = 0; i < 5 && !refused; ++i) {
            client.send_to(bytes_of("anyone?"), gone, error);
            if (error == std::errc::connection_refused) {
                refused = true;
                break;
            }
            BOOST_TEST(!error, loopback << ": " << error.message());
            client.wait_readable(200ms, error);
            BOOST_TEST(!client.receive_from(buffer, from, error).has_value());
            refused = error == std::errc::connection_refused;
            BOOST_TEST((!error || refused), loopback << ": " << error.message());
        }
        BOOST_TEST(refused, loopback << ": no connection_refused after 5 datagrams");
    }
}

#ifdef _WIN32
// The Winsock errors a datagram socket meets compare equal to the portable
// conditions the POSIX build reports, so callers test one std::errc.
BOOST_AUTO_TEST_CASE(winsock_errors_map_to_the_portable_conditions) {
    using dtlspp::detail::winsock_error;
    BOOST_TEST((winsock_error(WSAEWOULDBLOCK) == std::errc::operation_would_block));
    BOOST_TEST((winsock_error(WSAECONNRESET) == std::errc::connection_refused));
    BOOST_TEST((winsock_error(WSAECONNREFUSED) == std::errc::connection_refused));
    BOOST_TEST((winsock_error(WSAENETUNREACH) == std::errc::network_unreachable));
    BOOST_TEST((winsock_error(WSAEHOSTUNREACH) == std::errc::host_unreachable));
    BOOST_TEST((winsock_error(WSAEADDRINUSE) == std::errc::address_in_use));
    BOOST_TEST((winsock_error(WSAEADDRNOTAVAIL) == std::errc::address_not_available));
    BOOST_TEST((winsock_error(WSAEMSGSIZE) == std::errc::message_size));
    BOOST_TEST((winsock_error(WSAEAFNOSUPPORT) == std::errc::address_family_not_supported));
    BOOST_TEST((winsock_error(WSAENOTSOCK) == std::errc::not_a_socket));
    // Anything else keeps its Windows code and the system's message.
    const auto other = winsock_error(WSAEDISCON);
    BOOST_TEST(other.value() == WSAEDISCON);
    BOOST_TEST((other.category() == std::system_category()));
}
#endif

BOOST_AUTO_TEST_SUITE_END()
