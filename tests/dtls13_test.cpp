// DTLS 1.3 (RFC 9147) through the wolfSSL backend: version negotiation with
// the 1.2-only stacks, the unified header on the wire, and the hardening
// rules for 1.3 records (forged, truncated, or sent to a 1.2 association).
// The typed suites (endpoint_test and the rest) run over wolfSSL on 1.3
// too; this file holds what only 1.3 has.
#define BOOST_TEST_MODULE dtls13
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <dtlspp/detail/admission.hpp>
#include <dtlspp/trace.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

using namespace dtlspp;
using namespace dtlspp::test;

namespace {

config versions(config c, dtls_version min, dtls_version max)
{
    c.min_version = min;
    c.max_version = max;
    c.initial_retransmission_timeout = std::chrono::milliseconds(100);
    c.handshake_deadline = std::chrono::milliseconds(5000);
    return c;
}

constexpr auto v12 = dtls_version::dtls_1_2;
constexpr auto v13 = dtls_version::dtls_1_3;

bool any_unified(const std::vector<bytes>& datagrams)
{
    for (const auto& d : datagrams) {
        bool unified = false;
        parse_datagram(d, [&](const record_view& r) { unified = unified || r.unified; });
        if (unified) return true;
    }
    return false;
}

// A protected DTLS 1.3 record as an attacker forges it: a plausible unified
// header (epoch 3, 16-bit sequence number, length) over random bytes.
bytes forged_unified_record(std::size_t body, std::uint8_t fill = 0x5a)
{
    bytes d{std::byte{0x2f}, std::byte{0x12}, std::byte{0x34}, std::byte(body >> 8), std::byte(body & 0xff)};
    d.insert(d.end(), body, std::byte{fill});
    return d;
}

} // namespace

BOOST_AUTO_TEST_CASE(config_refuses_a_range_that_runs_backwards)
{
    auto c = versions(client_config(), v13, v12);
    const auto f = validate(c);
    BOOST_TEST((f.code == errc::config_invalid));
    BOOST_TEST(f.message.find("max_version") != std::string::npos, f.message);
}

#ifdef DTLSPP_HAVE_WOLFSSL

BOOST_AUTO_TEST_CASE(wolfssl_negotiates_dtls13_with_itself)
{
    pipe_pair<wolfssl_backend> p(versions(server_config(), v12, v13), versions(client_config(), v12, v13), true);
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
    BOOST_TEST((p.client().version() == v13));
    BOOST_TEST(to_string(*p.client().version()) == "DTLS 1.3");
    BOOST_TEST(p.client().cipher_suite().find("TLS_AES_128_GCM_SHA256") == 0u, p.client().cipher_suite());
    BOOST_TEST(p.echo("over DTLS 1.3"));
    // The cookie exchange is a HelloRetryRequest, counted as on 1.2.
    BOOST_TEST(p.srv().counters().hello_verify_requests == 1u);
    // After the ServerHello, every record travels under the unified header.
    BOOST_TEST(any_unified(p.delivered_to_client));
    BOOST_TEST(any_unified(p.delivered_to_server));
    BOOST_TEST(p.client().counters().dropped() == 0u);
}

#ifdef DTLSPP_HAVE_OPENSSL
BOOST_AUTO_TEST_CASE(a_dtls13_capable_client_settles_on_12_with_openssl)
{
    pipe_pair<wolfssl_backend, openssl_backend> p(versions(server_config(), v12, v12),
                                                  versions(client_config(), v12, v13));
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
    BOOST_TEST((p.client().version() == v12));
    BOOST_TEST(p.echo("settled on 1.2"));
    BOOST_TEST(!any_unified(p.delivered_to_client));
}

BOOST_AUTO_TEST_CASE(a_dtls13_only_client_is_refused_at_once_by_a_12_server)
{
    pipe_pair<wolfssl_backend, openssl_backend> p(versions(server_config(), v12, v12),
                                                  versions(client_config(), v13, v13));
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    const auto started = p.time.now();
    p.run_handshake();
    BOOST_TEST((p.client().error() == errc::handshake_failed), p.client().last_failure().what());
    // Refused with an alert, not left to time out.
    BOOST_TEST((p.time.now() - started < std::chrono::seconds(2)));
}

BOOST_AUTO_TEST_CASE(the_12_only_stacks_refuse_a_dtls13_only_config)
{
    failure f;
    BOOST_TEST(!openssl_backend::make_context(versions(client_config(), v13, v13), f));
    BOOST_TEST((f.code == errc::config_invalid));
    BOOST_TEST(f.message.find("DTLS 1.2 only") != std::string::npos, f.message);
    // A range reaching 1.3 is fine: the stack offers what it has.
    failure g;
    BOOST_TEST(openssl_backend::make_context(versions(client_config(), v12, v13), g) != nullptr, g.what());
}
#endif

#ifdef DTLSPP_HAVE_MBEDTLS
BOOST_AUTO_TEST_CASE(an_mbedtls_client_gets_12_from_a_dtls13_capable_server)
{
    pipe_pair<mbedtls_backend, wolfssl_backend> p(versions(server_config(), v12, v13),
                                                  versions(client_config(), v12, v13), true);
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
    BOOST_TEST((p.client().version() == v12));
    BOOST_TEST(p.echo("mbedtls over 1.2"));
}
#endif

BOOST_AUTO_TEST_CASE(forged_dtls13_records_never_end_an_open_association)
{
    pipe_pair<wolfssl_backend> p(versions(server_config(), v13, v13), versions(client_config(), v13, v13), true);
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
    // Garbage that fails authentication (the stack drops it), a record too
    // short to carry a tag, one longer than any record may be, a header cut
    // short, and a CID flag without a CID negotiated.
    const std::vector<bytes> hostile = {
        forged_unified_record(40),
        forged_unified_record(8),
        forged_unified_record(16384 + 300),
        bytes{std::byte{0x2f}, std::byte{0x12}},
        bytes{std::byte{0x3f}, std::byte{1}, std::byte{2}, std::byte{3}, std::byte{0}, std::byte{20}},
    };
    for (const auto& d : hostile) {
        p.inject_to_server(d);
        auto copy = d;
        p.client().receive(copy, p.time.now(), [](std::span<const std::byte>) {});
    }
    BOOST_TEST(p.client().is_open());
    BOOST_TEST(p.echo("still alive"));
    const auto& k = p.client().counters();
    BOOST_TEST(k.dropped_bad_length >= 2u);
    BOOST_TEST(k.dropped_malformed >= 2u);
    BOOST_REQUIRE(p.server_side() != nullptr);
    BOOST_TEST(p.server_side()->is_open());
    BOOST_TEST(p.srv().session_count() == 1u);
}

BOOST_AUTO_TEST_CASE(a_12_association_drops_dtls13_records_as_unexpected)
{
    pipe_pair<wolfssl_backend> p(versions(server_config(), v12, v12), versions(client_config(), v12, v12), true);
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE_MESSAGE(p.client().is_open(), p.client().last_failure().what());
    auto d = forged_unified_record(40);
    p.client().receive(d, p.time.now(), [](std::span<const std::byte>) {});
    BOOST_TEST(p.client().counters().dropped_unexpected_type == 1u);
    BOOST_TEST(p.echo("1.2 untouched"));
}

BOOST_AUTO_TEST_CASE(losing_any_one_dtls13_datagram_is_recovered)
{
    // Each datagram of the handshake, in turn, is lost once; RFC 9147's
    // timers and ACKs recover every time, on the virtual clock.
    pipe_pair<wolfssl_backend> probe(versions(server_config(), v13, v13), versions(client_config(), v13, v13), true);
    failure f;
    BOOST_REQUIRE(probe.start(f));
    probe.run_handshake();
    BOOST_REQUIRE(probe.client().is_open());
    const auto total = probe.delivered_to_server.size() + probe.delivered_to_client.size();
    for (std::size_t lost = 1; lost <= total; ++lost) {
        BOOST_TEST_CONTEXT("datagram " << lost << " of " << total << " lost")
        {
            pipe_pair<wolfssl_backend> p(versions(server_config(), v13, v13), versions(client_config(), v13, v13),
                                         true);
            std::size_t seen = 0;
            p.filter = [&](const wire_event&) { return ++seen != lost; };
            failure g;
            BOOST_REQUIRE(p.start(g));
            p.run_handshake();
            BOOST_TEST(p.client().is_open(), p.client().last_failure().what());
            BOOST_TEST(p.echo("recovered"));
        }
    }
}

BOOST_AUTO_TEST_CASE(the_key_log_has_the_dtls13_traffic_secrets)
{
    std::vector<std::string> lines;
    auto client_cfg = versions(client_config(), v13, v13);
    client_cfg.key_log = [&](std::string_view line) { lines.emplace_back(line); };
    pipe_pair<wolfssl_backend> p(versions(server_config(), v13, v13), client_cfg, true);
    failure f;
    BOOST_REQUIRE(p.start(f));
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    for (const char* label : {"CLIENT_HANDSHAKE_TRAFFIC_SECRET ", "SERVER_HANDSHAKE_TRAFFIC_SECRET ",
                              "CLIENT_TRAFFIC_SECRET_0 ", "SERVER_TRAFFIC_SECRET_0 "}) {
        BOOST_TEST(std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(label, 0) == 0; }),
                   label);
    }
}

#endif // DTLSPP_HAVE_WOLFSSL

BOOST_AUTO_TEST_CASE(the_parser_reads_the_unified_header)
{
    // 001CSLEE = 0x2e: no CID, 16-bit sequence, length, epoch 2 (low bits).
    const bytes d{std::byte{0x2e}, std::byte{0xab}, std::byte{0xcd}, std::byte{0}, std::byte{17},
                  std::byte{1},    std::byte{2},    std::byte{3},    std::byte{4}, std::byte{5},
                  std::byte{6},    std::byte{7},    std::byte{8},    std::byte{9}, std::byte{10},
                  std::byte{11},   std::byte{12},   std::byte{13},   std::byte{14}, std::byte{15},
                  std::byte{16},   std::byte{17}};
    std::vector<record_view> seen;
    const auto r = parse_datagram(d, [&](const record_view& v) { seen.push_back(v); });
    BOOST_TEST(r.ok());
    BOOST_REQUIRE(seen.size() == 1u);
    BOOST_TEST(seen[0].unified);
    BOOST_TEST(seen[0].is_encrypted());
    BOOST_TEST(seen[0].epoch == 2u);
    BOOST_TEST(seen[0].sequence_number == 0xabcdu);
    BOOST_TEST(seen[0].payload.size() == 17u);
    BOOST_TEST(seen[0].header_size() == 5u);
    BOOST_TEST(describe_datagram(direction::in, d).find("DTLS 1.3 epoch 2") != std::string::npos);
    // Without L the record runs to the end; with an 8-bit sequence number
    // the header is two bytes.
    const bytes short_form{std::byte{0x23}, std::byte{7}, std::byte{1}, std::byte{2}};
    seen.clear();
    BOOST_TEST(parse_datagram(short_form, [&](const record_view& v) { seen.push_back(v); }).ok());
    BOOST_REQUIRE(seen.size() == 1u);
    BOOST_TEST(seen[0].payload.size() == 2u);
    BOOST_TEST(seen[0].epoch == 3u);
    // A CID (C bit) is read with the receiver's own length.
    const bytes with_cid{std::byte{0x3b}, std::byte{0xc1}, std::byte{0xc2}, std::byte{9}, std::byte{0}, std::byte{1},
                         std::byte{0}};
    seen.clear();
    BOOST_TEST(parse_datagram(with_cid, [&](const record_view& v) { seen.push_back(v); }, 2).ok());
    BOOST_REQUIRE(seen.size() == 1u);
    BOOST_TEST(seen[0].connection_id.size() == 2u);
    BOOST_TEST(!parse_datagram(with_cid, [](const record_view&) {}).ok()); // no CID negotiated
}

BOOST_AUTO_TEST_CASE(admission_takes_dtls13_records_only_where_13_may_be_spoken)
{
    const auto d = forged_unified_record(40);
    detail::admission_limits limits;
    BOOST_TEST((detail::judge_datagram(d, limits).drop == detail::drop_reason::unexpected_type));
    limits.dtls13 = true;
    BOOST_TEST((detail::judge_datagram(d, limits).drop == detail::drop_reason::none));
    BOOST_TEST((detail::judge_datagram(forged_unified_record(16), limits).drop == detail::drop_reason::bad_length));
    // An ACK (type 26) in plaintext: only where 1.3 may be spoken.
    const bytes ack{std::byte{26}, std::byte{0xfe}, std::byte{0xfd}, std::byte{0}, std::byte{0},
                    std::byte{0},  std::byte{0},    std::byte{0},    std::byte{0}, std::byte{0},
                    std::byte{1},  std::byte{0},    std::byte{2},    std::byte{0}, std::byte{0}};
    BOOST_TEST((detail::judge_datagram(ack, limits).drop == detail::drop_reason::none));
    limits.dtls13 = false;
    BOOST_TEST((detail::judge_datagram(ack, limits).drop == detail::drop_reason::unexpected_type));
}
