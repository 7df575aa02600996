// endpoint<Backend> over in-memory pipes, typed over every pair of client
// and server stacks (OpenSSL<->OpenSSL, mbedTLS<->mbedTLS and both mixed
// directions): the behaviour that must be the same on every stack, and
// proof that the stacks talk to each other.
#define BOOST_TEST_MODULE endpoint
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/forge.hpp"
#include "support/harness.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <random>

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

// Short timers so loss tests finish quickly on real time (OpenSSL) too.
config fast(config c, std::chrono::milliseconds deadline = 5000ms)
{
    c.initial_retransmission_timeout = 50ms;
    c.max_retransmission_timeout = 400ms;
    c.handshake_deadline = deadline;
    return c;
}

template <class Pair>
pipe_pair<typename Pair::client, typename Pair::server> make_pair(const config& server_cfg, const config& client_cfg)
{
    return {server_cfg, client_cfg, Pair::virtual_time};
}

std::size_t largest(const std::vector<bytes>& datagrams)
{
    std::size_t n = 0;
    for (const auto& d : datagrams) n = std::max(n, d.size());
    return n;
}

// Number of handshake fragments in a datagram (plaintext ones).
bool is_single_whole_client_hello(const bytes& d)
{
    int hellos = 0;
    bool whole = false;
    parse_datagram(d, [&](const record_view& r) {
        for (const auto& fragment : r.fragments())
            if (fragment.msg_type == 1) {
                ++hellos;
                whole = fragment.is_whole_message();
            }
    });
    return hellos == 1 && whole;
}

// A well-formed plaintext handshake record whose one message is `length`
// bytes long: over 2^14 it is longer than any plaintext record may be.
bytes plaintext_handshake_record(std::size_t length, std::uint64_t sequence)
{
    const bytes body(length, std::byte{1});
    return forge::record(content_type::handshake, 0, sequence,
                         forge::handshake_fragment(2, 1, static_cast<std::uint32_t>(length), 0, body));
}

bytes fatal_alert(std::uint8_t description, std::uint64_t sequence = 40)
{
    const std::array<std::byte, 2> body{std::byte{2}, std::byte{description}};
    return forge::record(21, 0, sequence, body);
}

// The AEAD nonce + tag of the suite the pair negotiated (RFC 5288 §3,
// RFC 7905 §2), from its name, independently of the backends' own answer.
template <class Endpoint>
std::size_t expected_expansion(const Endpoint& e)
{
    return e.cipher_suite().find("CHACHA20") != std::string::npos ? 16 : 24;
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(x509_handshake_then_echo, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
    BOOST_TEST(!p.client().cipher_suite().empty());
    BOOST_TEST(p.echo("hello over DTLS"));
    BOOST_TEST(p.echo(std::string(1000, 'x')));
    const auto& k = p.client().counters();
    BOOST_TEST(k.retransmissions == 0u);
    // 1.2: ClientHello, ClientHello+cookie, key exchange + Finished. 1.3:
    // ClientHello, ClientHello+cookie (after the HelloRetryRequest), Finished.
    BOOST_TEST(k.flights_out == 3u);
    BOOST_TEST((p.client().version() == (Pair::dtls13 ? dtls_version::dtls_1_3 : dtls_version::dtls_1_2)));
    BOOST_TEST(k.application_messages_in == 2u);
    BOOST_TEST(k.dropped() == 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(psk_handshake_then_echo, Pair, all_pairs)
{
    for (std::size_t mtu : {512u, 1400u}) {
        BOOST_TEST_CONTEXT("max_udp_payload " << mtu)
        {
            auto server_cfg = psk_config(role::server);
            auto client_cfg = psk_config(role::client);
            server_cfg.max_udp_payload = client_cfg.max_udp_payload = mtu;
            auto p = make_pair<Pair>(server_cfg, client_cfg);
            failure f;
            BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
            p.run_handshake();
            BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
            if constexpr (Pair::dtls13) {
                // A TLS 1.3 suite names only the AEAD and hash (RFC 8446
                // §B.4): the PSK shows in the version, not the name.
                BOOST_TEST(p.client().cipher_suite().find("TLS_AES_") == 0u);
                BOOST_TEST((p.client().version() == dtls_version::dtls_1_3));
            } else {
                BOOST_TEST(p.client().cipher_suite().find("PSK") != std::string::npos);
            }
            BOOST_TEST(p.echo("psk"));
            BOOST_TEST(p.echo(std::string(p.client().max_message_size(), 'p')));
            BOOST_TEST(largest(p.delivered_to_server) <= mtu);
            BOOST_TEST(largest(p.delivered_to_client) <= mtu);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(no_datagram_exceeds_the_mtu_with_a_large_chain, Pair, all_pairs)
{
    for (std::size_t mtu : {512u, 1200u, 1400u}) {
        BOOST_TEST_CONTEXT("max_udp_payload " << mtu)
        {
            auto server_cfg = server_config("server-rsa4096");
            auto client_cfg = client_config();
            server_cfg.max_udp_payload = mtu;
            client_cfg.max_udp_payload = mtu;
            auto p = make_pair<Pair>(server_cfg, client_cfg);
            failure f;
            BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
            p.run_handshake();
            BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
            BOOST_TEST(p.echo(std::string(p.client().max_message_size(), 'm')));
            BOOST_TEST(largest(p.delivered_to_server) <= mtu);
            BOOST_TEST(largest(p.delivered_to_client) <= mtu);
            // The chain (a 1.5 kB Certificate and a 0.5 kB ServerKeyExchange) must
            // have been fragmented, not sent whole.
            BOOST_TEST(p.delivered_to_client.size() >= 3u);
            BOOST_REQUIRE(!p.delivered_to_server.empty());
            BOOST_TEST(is_single_whole_client_hello(p.delivered_to_server[0]));
            BOOST_TEST(p.client().counters().retransmissions == 0u);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_client_hello_that_cannot_fit_is_mtu_too_small, Pair, all_pairs)
{
    auto client_cfg = client_config();
    client_cfg.max_udp_payload = 256;
    // Long ALPN names push the ClientHello past 256 bytes.
    client_cfg.alpn = {std::string(60, 'a'), std::string(60, 'b'), std::string(60, 'c')};
    failure f;
    auto e = endpoint<typename Pair::client>::connect(client_cfg, clock::now(), f);
    BOOST_TEST(!e);
    BOOST_TEST((f.code == errc::mtu_too_small), f.what());
    BOOST_TEST(f.message.find("max_udp_payload") != std::string::npos);

    client_cfg.max_udp_payload = 200; // below any stack's floor: refused before the backend runs
    auto e2 = endpoint<typename Pair::client>::connect(client_cfg, clock::now(), f);
    BOOST_TEST(!e2);
    BOOST_TEST((f.code == errc::mtu_too_small), f.what());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(losing_any_one_handshake_datagram_is_recovered, Pair, all_pairs)
{
    // Find how many datagrams each direction carries in a clean handshake
    // (default 1 s timers, so a busy machine cannot add a retransmission).
    std::size_t up = 0, down = 0;
    {
        auto p = make_pair<Pair>(server_config(), client_config());
        failure f;
        BOOST_REQUIRE(p.start(f));
        p.run_handshake();
        BOOST_REQUIRE(p.client().is_open());
        up = p.delivered_to_server.size();
        down = p.delivered_to_client.size();
    }
    BOOST_TEST(up >= 3u);
    BOOST_TEST(down >= 2u);
    for (int to_server = 0; to_server < 2; ++to_server) {
        const auto positions = to_server ? up : down;
        for (std::size_t k = 1; k <= positions; ++k) {
            BOOST_TEST_CONTEXT((to_server ? "client->server" : "server->client") << " datagram " << k)
            {
                auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
                bool dropped = false;
                // Every datagram of that direction with its record sequence
                // numbers blanked, so a resent flight matches its original.
                std::vector<bytes> sent;
                std::optional<bytes> lost;
                p.filter = [&](const wire_event& e) {
                    if (e.to_server != bool(to_server)) return true;
                    bytes d(e.datagram.begin(), e.datagram.end());
                    parse_datagram(e.datagram, [&](const record_view& r) {
                        std::fill_n(d.begin() + static_cast<std::ptrdiff_t>(r.offset + 5), 6, std::byte{0});
                    });
                    if (e.index == k && !dropped) {
                        dropped = true;
                        lost = d;
                        return false;
                    }
                    sent.push_back(d);
                    return true;
                };
                failure f;
                BOOST_REQUIRE(p.start(f));
                p.run_handshake(10s);
                BOOST_TEST(dropped);
                BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
                p.run_until([&] { return p.server_side() && p.server_side()->is_open(); }, 5s);
                const auto* server_side = p.server_side();
                BOOST_REQUIRE(server_side != nullptr);
                const auto retransmissions =
                    p.client().counters().retransmissions + server_side->counters().retransmissions;
                // Recovery needs the lost datagram again. On a loaded
                // machine OpenSSL may resend a flight inside the very call
                // that first sent it (its timer reads the wall clock), which
                // no counter calls a retransmission; otherwise a counted
                // retransmission must have brought it.
                const bool resent_in_the_same_call =
                    retransmissions == 0 && lost && std::count(sent.begin(), sent.end(), *lost) > 0;
                if (!resent_in_the_same_call) BOOST_TEST(retransmissions >= 1u);
                BOOST_TEST(p.echo("after loss"));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(total_loss_ends_in_handshake_timeout_by_the_deadline, Pair, all_pairs)
{
    const auto deadline = 1500ms;
    auto p = make_pair<Pair>(fast(server_config(), deadline), fast(client_config(), deadline));
    p.filter = [](const wire_event&) { return false; };
    failure f;
    const auto started = p.time.now();
    BOOST_REQUIRE(p.start(f));
    p.run_handshake(20s);
    const auto elapsed = p.time.now() - started;
    BOOST_TEST((p.client().state() == endpoint_state::failed));
    BOOST_TEST((p.client().error() == errc::handshake_timeout), p.client().last_failure().what());
    BOOST_TEST(elapsed >= deadline);
    BOOST_TEST(elapsed <= deadline + 500ms); // bounded: it never loops on
    BOOST_TEST(p.client().counters().retransmissions >= 2u);
    BOOST_TEST(p.server_opened() == 0u);
    BOOST_TEST(p.srv().session_count() == 0u); // nothing passed the cookie check
}

BOOST_AUTO_TEST_CASE_TEMPLATE(bad_datagrams_are_dropped_counted_and_harmless, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    failure f;
    BOOST_REQUIRE(p.start(f));
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    BOOST_REQUIRE(!p.delivered_to_client.empty());

    std::mt19937 random(7);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int i = 0; i < 200; ++i) {
        bytes junk(static_cast<std::size_t>(1 + i * 7 % 300));
        for (auto& b : junk) b = static_cast<std::byte>(byte(random));
        p.inject_to_client(junk);
        p.inject_to_server(junk);
    }
    // A truncated copy of a real record, at every length.
    const auto real = p.delivered_to_client.back();
    for (std::size_t n = 1; n < real.size(); ++n) p.inject_to_client(std::span(real).first(n));
    // A well-formed record from an epoch that cannot exist (no renegotiation).
    // DTLS 1.3 sends its records under the unified header, which holds two
    // bits of epoch: the impossible one is a 1.2-style header at epoch 5.
    bytes wrong_epoch = real;
    if constexpr (Pair::dtls13) {
        wrong_epoch = forge::record(content_type::application_data, 5, 1, bytes(40, std::byte{0x33}));
    } else {
        wrong_epoch[3] = std::byte{0};
        wrong_epoch[4] = std::byte{5};
    }
    p.inject_to_client(wrong_epoch);
    p.inject_to_server(wrong_epoch);
    // Bigger than any DTLS datagram.
    p.inject_to_client(bytes(70000, std::byte{23}));

    const auto& k = p.client().counters();
    BOOST_TEST(k.dropped_wrong_epoch >= 1u);
    BOOST_TEST(k.dropped_oversized == 1u);
    BOOST_TEST(k.dropped_malformed >= real.size() - 1);
    BOOST_TEST(p.client().is_open());
    BOOST_TEST(p.echo("still alive"));
    BOOST_REQUIRE(p.server_side() != nullptr);
    BOOST_TEST(p.server_side()->counters().dropped() >= 1u);
    BOOST_TEST(p.srv().session_count() == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(certificate_failures_give_verify_failed, Pair, all_pairs)
{
    struct scenario {
        std::string name;
        config server_cfg;
        config client_cfg;
        std::vector<std::string> says; // each stack words it its own way
    };
    auto wrong_name = client_config();
    wrong_name.server_name = "localhost";
    const std::vector<scenario> scenarios = {
        {"wrong CA", server_config("server-other"), client_config(), {"issuer", "trusted CA"}},
        {"expired", server_config("server-expired"), client_config(), {"expired"}},
        {"wrong host", server_config("server-wronghost"), wrong_name, {"mismatch", "does not match"}},
    };
    for (const auto& s : scenarios) {
        BOOST_TEST_CONTEXT(s.name)
        {
            auto p = make_pair<Pair>(fast(s.server_cfg), fast(s.client_cfg));
            failure f;
            BOOST_REQUIRE(p.start(f));
            p.run_handshake();
            BOOST_TEST((p.client().error() == errc::verify_failed), p.client().last_failure().what());
            const auto& message = p.client().last_failure().message;
            BOOST_TEST(std::any_of(s.says.begin(), s.says.end(),
                                   [&](const std::string& w) { return message.find(w) != std::string::npos; }),
                       message);
            BOOST_TEST(p.server_opened() == 0u);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_psk_mismatch_fails_on_both_sides, Pair, all_pairs)
{
    auto server_cfg = fast(psk_config(role::server, 0x11), 2000ms);
    auto client_cfg = fast(psk_config(role::client, 0x22), 2000ms);
    auto p = make_pair<Pair>(server_cfg, client_cfg);
    failure f;
    BOOST_REQUIRE(p.start(f));
    if constexpr (Pair::dtls13) {
        // DTLS 1.3 checks the PSK in the ClientHello (its binder, RFC 8446
        // §4.2.11): the server refuses it at the front door, with an alert,
        // before any association exists.
        p.run_until([&] { return p.client().state() == endpoint_state::failed; }, 10s);
        BOOST_TEST((p.client().error() == errc::psk_mismatch), p.client().last_failure().what());
        BOOST_TEST(p.srv().counters().hellos_refused >= 1u);
        BOOST_TEST(p.server_failures().empty());
        return;
    }
    p.run_until([&] { return p.client().state() == endpoint_state::failed && !p.server_failures().empty(); }, 10s);
    BOOST_TEST((p.client().error() == errc::psk_mismatch), p.client().last_failure().what());
    BOOST_REQUIRE(!p.server_failures().empty());
    BOOST_TEST((p.server_failures().front().code == errc::psk_mismatch), p.server_failures().front().what());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(messages_larger_than_a_record_are_refused, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    failure f;
    BOOST_REQUIRE(p.start(f));
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    std::error_code ec;
    const auto limit = p.client().max_message_size();
    BOOST_TEST(limit > 1000u);
    BOOST_TEST(limit < 1200u);
    bytes big(limit + 1);
    p.client().send(big, p.time.now(), ec);
    BOOST_TEST((ec == errc::message_too_large));
    BOOST_TEST(p.client().is_open());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(close_notify_closes_the_peer, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    failure f;
    BOOST_REQUIRE(p.start(f));
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    p.client().close(p.time.now());
    p.run_until([&] { return p.srv().session_count() == 0; }, 2s);
    BOOST_TEST(p.srv().session_count() == 0u);
    BOOST_REQUIRE(!p.server_failures().empty());
    BOOST_TEST((p.server_failures().front().code == errc::peer_closed));
    std::error_code ec;
    p.client().send(as_bytes("late"), p.time.now(), ec);
    BOOST_TEST((ec == errc::not_open));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(an_ip_address_server_name_is_checked_against_ip_entries, Pair, all_pairs)
{
    // The ECDSA leaf names 127.0.0.1 and ::1 in its subjectAltName.
    for (const auto& [name, valid] : std::vector<std::pair<std::string, bool>>{
             {"127.0.0.1", true}, {"::1", true}, {"10.1.2.3", false}, {"::2", false}}) {
        BOOST_TEST_CONTEXT("server_name " << name)
        {
            auto client_cfg = client_config();
            client_cfg.server_name = name;
            auto p = make_pair<Pair>(fast(server_config()), fast(client_cfg));
            failure f;
            BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
            p.run_handshake();
            if (valid) {
                BOOST_TEST(p.client().is_open(), p.client().last_failure().what());
            } else {
                BOOST_TEST((p.client().error() == errc::verify_failed), p.client().last_failure().what());
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(every_record_of_a_datagram_is_delivered, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    failure f;
    BOOST_REQUIRE(p.start(f));
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    p.run_until([&] { return p.server_side() && p.server_side()->is_open(); }, std::chrono::seconds(2));

    // Three records from the server, packed into one datagram as a stack may do.
    std::error_code ec;
    for (const std::string m : {"one", "two", "three"}) {
        p.srv().send(p.client_address, as_bytes(m), p.time.now(), ec);
        BOOST_REQUIRE(!ec);
    }
    bytes packed;
    p.srv().drain([&](const peer_address&, std::span<const std::byte> d) { packed.insert(packed.end(), d.begin(), d.end()); });
    const auto before = p.client_received.size();
    p.inject_to_client(packed);
    BOOST_REQUIRE_EQUAL(p.client_received.size(), before + 3);
    BOOST_TEST(p.client_received[before] == "one");
    BOOST_TEST(p.client_received[before + 1] == "two");
    BOOST_TEST(p.client_received[before + 2] == "three");
}

// One spoofed datagram used to end an OpenSSL association: a protected
// record shorter than its AEAD's explicit nonce + tag makes OpenSSL 3.0
// fail fatally instead of dropping it. No such record reaches a stack now,
// on any pair, in either direction, whatever its content type.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_forged_short_protected_record_never_ends_the_association, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    failure f;
    BOOST_REQUIRE(p.start(f));
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    const auto expansion = expected_expansion(p.client());

    std::mt19937 random(11);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uint64_t sequence = 100;
    std::size_t too_short = 0;
    for (std::uint8_t type : {20, 21, 22, 23}) {
        for (std::size_t length = 0; length <= 64; ++length) {
            bytes body(length);
            for (auto& b : body) b = static_cast<std::byte>(byte(random));
            const auto d = forge::record(type, 1, sequence++, body);
            p.inject_to_client(d);
            p.inject_to_server(d);
            if (length < expansion) ++too_short;
            BOOST_REQUIRE_MESSAGE(p.client().is_open(), "client ended by type " << int(type) << " length " << length
                                                                                << ": " << p.client().last_failure().what());
            BOOST_REQUIRE_MESSAGE(p.server_side() != nullptr && p.server_side()->is_open(),
                                  "server ended by type " << int(type) << " length " << length);
        }
    }
    if constexpr (Pair::dtls13) {
        // DTLS 1.3 sends no protected record under the 1.2 header: each of
        // these is from an epoch that cannot exist there, whatever its length.
        BOOST_TEST(p.client().counters().dropped_wrong_epoch == 4u * 65u);
        BOOST_TEST(p.server_side()->counters().dropped_wrong_epoch == 4u * 65u);
    } else {
        BOOST_TEST(p.client().counters().dropped_bad_length == too_short);
        BOOST_TEST(p.server_side()->counters().dropped_bad_length == too_short);
    }
    BOOST_TEST(p.server_failures().empty());
    BOOST_TEST(p.echo("still open"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(records_longer_than_their_epoch_allows_are_dropped, Pair, all_pairs)
{
    // DTLS 1.2 record headers: on DTLS 1.3 a protected one under this header
    // is dropped whatever its length (a_forged_short_protected_record_...);
    // the 1.3 bounds are in dtls13_test.
    if constexpr (Pair::dtls13) return;
    auto p = make_pair<Pair>(server_config(), client_config());
    failure f;
    BOOST_REQUIRE(p.start(f));
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    const auto expansion = expected_expansion(p.client());

    std::uint64_t sequence = 200;
    // Protected: anything above 2^14 + the cipher's expansion; plaintext
    // (epoch 0): anything above 2^14. Heartbeat is never negotiated.
    for (std::size_t length : {16384 + expansion + 1, std::size_t{16704}, std::size_t{17000}, std::size_t{18432}}) {
        const bytes body(length, std::byte{0x5a});
        p.inject_to_client(forge::record(23, 1, sequence++, body));
        p.inject_to_server(forge::record(22, 1, sequence++, body));
    }
    p.inject_to_client(plaintext_handshake_record(16384, sequence++));
    p.inject_to_client(forge::record(24, 1, sequence++, bytes(40, std::byte{1})));
    p.inject_to_server(forge::record(24, 0, sequence++, bytes(3, std::byte{1})));

    BOOST_TEST(p.client().counters().dropped_bad_length == 5u);
    BOOST_TEST(p.client().counters().dropped_unexpected_type == 1u);
    BOOST_REQUIRE(p.server_side() != nullptr);
    BOOST_TEST(p.server_side()->counters().dropped_bad_length == 4u);
    BOOST_TEST(p.server_side()->counters().dropped_unexpected_type == 1u);
    BOOST_TEST(p.client().is_open());
    BOOST_TEST(p.echo("still open"));
}

// A handshake is still open to a forged plaintext record of over 2^14
// bytes (OpenSSL would answer it with a fatal record_overflow): it is
// dropped before the stack, and the handshake completes.
BOOST_AUTO_TEST_CASE_TEMPLATE(an_overlong_plaintext_record_does_not_fail_a_handshake, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), fast(client_config()));
    bool hold_server = true;
    p.filter = [&](const wire_event& e) { return e.to_server || !hold_server || e.index <= 1; };
    failure f;
    BOOST_REQUIRE(p.start(f));
    BOOST_REQUIRE(p.client().state() == endpoint_state::handshaking);
    p.inject_to_client(plaintext_handshake_record(16384, 60));
    BOOST_TEST(p.client().counters().dropped_bad_length == 1u);
    hold_server = false;
    p.run_handshake();
    BOOST_TEST(p.client().is_open(), p.client().last_failure().what());
}

namespace {

struct alert_expectation {
    std::uint8_t description;
    errc condition;
};

// The one alert table (detail/alerts.hpp), spelled out: what a peer's fatal
// alert during the handshake means, whichever stack received it. (Once open,
// bad_record_mac and record_overflow are errc::bad_record; during a
// handshake they mean the keys differ.)
constexpr std::array<alert_expectation, 15> certificate_handshake_alerts{{
    {0, errc::peer_closed},        // close_notify
    {10, errc::handshake_failed},  // unexpected_message
    {20, errc::handshake_failed},  // bad_record_mac: the keys differ
    {22, errc::handshake_failed},  // record_overflow
    {40, errc::handshake_failed},  // handshake_failure
    {42, errc::verify_failed},     // bad_certificate
    {45, errc::verify_failed},     // certificate_expired
    {48, errc::verify_failed},     // unknown_ca
    {49, errc::verify_failed},     // access_denied
    {51, errc::handshake_failed},  // decrypt_error
    {70, errc::handshake_failed},  // protocol_version
    {80, errc::handshake_failed},  // internal_error, after the ServerHello
    {112, errc::verify_failed},    // unrecognized_name
    {115, errc::psk_mismatch},     // unknown_psk_identity
    {120, errc::handshake_failed}, // no_application_protocol
}};

// Runs a handshake until the client has the server's flight and the server
// waits for the client's (dropped), then hands `alert` to one side.
template <class Pair>
void expect_alert_condition(const config& server_cfg, const config& client_cfg, std::uint8_t description,
                            errc expected)
{
    for (bool to_client : {true, false}) {
        auto p = make_pair<Pair>(server_cfg, client_cfg);
        // Client datagrams: 1 ClientHello, 2 ClientHello with cookie, 3 its
        // key exchange flight.
        p.filter = [](const wire_event& e) { return !e.to_server || e.index <= 2; };
        failure f;
        BOOST_REQUIRE(p.start(f));
        BOOST_REQUIRE(p.client().state() == endpoint_state::handshaking);
        if constexpr (Pair::dtls13) {
            // DTLS 1.3 protects everything after the ServerHello, alerts
            // included (RFC 9147 §4): a plaintext alert at that point can
            // only be forged, and must not end the handshake. The mapping of
            // a real alert is the one table every backend shares.
            if (to_client) {
                p.inject_to_client(fatal_alert(description));
                BOOST_TEST((p.client().state() == endpoint_state::handshaking),
                           "client ended by a plaintext alert " << int(description));
            } else {
                p.inject_to_server(fatal_alert(description, 10));
                BOOST_TEST(p.server_failures().empty(), "server ended by a plaintext alert " << int(description));
            }
            continue;
        }
        if (to_client) {
            p.inject_to_client(fatal_alert(description));
            BOOST_TEST(p.client().error() == expected,
                       "client got alert " << int(description) << ": " << p.client().last_failure().what());
        } else {
            p.inject_to_server(fatal_alert(description, 10));
            BOOST_REQUIRE_MESSAGE(!p.server_failures().empty(), "server ignored alert " << int(description));
            BOOST_TEST(p.server_failures().back().code == expected,
                       "server got alert " << int(description) << ": " << p.server_failures().back().what());
        }
    }
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(each_alert_gives_the_same_condition_on_every_stack, Pair, all_pairs)
{
    for (const auto& [description, expected] : certificate_handshake_alerts)
        expect_alert_condition<Pair>(server_config(), client_config(), description, expected);
    // During a PSK handshake a peer that cannot decrypt or verify our
    // Finished holds another key.
    for (std::uint8_t description : {20, 51})
        expect_alert_condition<Pair>(psk_config(role::server), psk_config(role::client), description,
                                     errc::psk_mismatch);
}

// A server at its session limit answers a verified ClientHello with a fatal
// internal_error alert before any ServerHello: the client says why at once.
BOOST_AUTO_TEST_CASE_TEMPLATE(an_internal_error_before_the_server_hello_means_too_many_sessions, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    // Only the HelloVerifyRequest reaches the client.
    p.filter = [](const wire_event& e) { return e.to_server || e.index <= 1; };
    failure f;
    BOOST_REQUIRE(p.start(f));
    BOOST_REQUIRE(p.client().state() == endpoint_state::handshaking);
    p.inject_to_client(fatal_alert(80, 1));
    BOOST_TEST(p.client().error() == errc::too_many_sessions, p.client().last_failure().what());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_state_hook_reports_each_change_once_as_its_call_returns, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), fast(client_config()));
    // The in-memory handshake would finish inside start(): hold the
    // server's answers until the hook is set (the client retransmits).
    bool hold = true;
    p.filter = [&](const wire_event& e) { return e.to_server || !hold; };
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    BOOST_REQUIRE(p.client().state() == endpoint_state::handshaking);
    hold = false;
    std::vector<std::pair<endpoint_state, endpoint_state>> changes;
    std::vector<endpoint_state> seen_by_hook;
    p.client().set_state_hook([&](endpoint_state from, endpoint_state to) {
        changes.emplace_back(from, to);
        seen_by_hook.push_back(p.client().state());
    });
    p.run_handshake();
    BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
    p.client().close(p.time.now());
    BOOST_REQUIRE_EQUAL(changes.size(), 2u);
    BOOST_TEST((changes[0] == std::pair{endpoint_state::handshaking, endpoint_state::open}));
    BOOST_TEST((changes[1] == std::pair{endpoint_state::open, endpoint_state::closed}));
    BOOST_TEST((seen_by_hook == std::vector{endpoint_state::open, endpoint_state::closed}));
    BOOST_TEST(!p.client().pending().empty()); // the close_notify, queued before the hook ran
}

BOOST_AUTO_TEST_CASE_TEMPLATE(take_pending_hands_over_the_queued_datagrams_whole_and_in_order, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
    p.client().send(as_bytes("one"), p.time.now());
    p.client().send(as_bytes("two"), p.time.now());
    std::vector<bytes> expected;
    for (std::size_t i = 0; i < p.client().pending().size(); ++i)
        expected.emplace_back(p.client().pending()[i].begin(), p.client().pending()[i].end());

    datagram_queue taken;
    taken.push(as_bytes("stale")); // what the queue held before is dropped
    p.client().take_pending(taken);

    BOOST_TEST(p.client().pending().empty());
    BOOST_REQUIRE(taken.size() == 2u);
    for (std::size_t i = 0; i < taken.size(); ++i)
        BOOST_TEST((bytes(taken[i].begin(), taken[i].end()) == expected[i]), "datagram " << i);
    // They are the datagrams send() made: the server echoes both.
    const auto before = p.client_received.size();
    for (std::size_t i = 0; i < taken.size(); ++i) p.inject_to_server(taken[i]);
    BOOST_REQUIRE(p.client_received.size() == before + 2);
    BOOST_TEST(p.client_received[before] == "one");
    BOOST_TEST(p.client_received[before + 1] == "two");
}
