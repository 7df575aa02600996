// The policy every backend shares, checked on every stack pair: the suite
// the two sides settle on comes from one list (detail/policy.hpp) whichever
// stack runs which side; cookies read the config's clock, so they expire on
// virtual time on every stack, and servers of different stacks that share a
// secret accept each other's cookies; the traits say what each stack can do.
#define BOOST_TEST_MODULE policy
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <dtlspp/detail/policy.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

// The suite the policy predicts: the first of the server's list the client
// also offers (servers pick by their own order).
std::string predicted_suite(const config& client, const config& server, detail::server_key key)
{
    const auto offered = detail::offered_suites(client);
    for (const auto iana : detail::offered_suites(server, key))
        if (std::find(offered.begin(), offered.end(), iana) != offered.end())
            return std::string(detail::find_suite(iana)->iana_name);
    return {};
}

struct credential_case {
    const char* name;
    config client;
    config server;
    detail::server_key key;
};

std::vector<credential_case> credential_cases()
{
    std::vector<credential_case> cases;
    cases.push_back({"ECDSA certificate", client_config(), server_config(), {true, false}});
    cases.push_back({"RSA certificate", client_config(), server_config("server-rsa2048"), {false, true}});
    cases.push_back({"PSK only", psk_config(role::client), psk_config(role::server), {}});
    // Both a PSK and a certificate on each side: today's OpenSSL and mbedTLS
    // adapters used to disagree here; the policy puts ECDHE-PSK first.
    auto client = client_config();
    client.psk = test_psk();
    auto server = server_config();
    server.psk = test_psk();
    cases.push_back({"PSK and certificate", client, server, {true, false}});
    // A server with both, a client with a certificate only: ECDHE-ECDSA.
    auto server_both = server_config();
    server_both.psk = test_psk();
    cases.push_back({"server PSK and certificate, client certificate", client_config(), server_both, {true, false}});
    return cases;
}

// A ClientHello from a fresh client session of `Client`, and the listener
// answers of `Server` to it; virtual cookie time.
struct cookie_run {
    std::chrono::system_clock::time_point cookie_now = std::chrono::system_clock::time_point(1'800'000'000s);
};

template <class Backend>
std::optional<typename Backend::listener> listener_for(const config& c, std::shared_ptr<typename Backend::context>& ctx)
{
    failure f;
    ctx = Backend::make_context(c, f);
    BOOST_TEST_REQUIRE(ctx, f.what());
    auto l = Backend::make_listener(*ctx, f);
    BOOST_TEST_REQUIRE(l.has_value(), f.what());
    return l;
}

// Offers `datagram` from one fixed transport id; returns the answer and
// what was queued.
template <class Listener>
listen_result offer(Listener& l, std::span<const std::byte> datagram, datagram_queue& out)
{
    static constexpr std::array<std::byte, 6> peer_id{std::byte{127}, std::byte{0}, std::byte{0}, std::byte{1},
                                                      std::byte{0xc3}, std::byte{0x50}};
    out.clear();
    datagram_io io;
    io.input = datagram;
    io.output = &out;
    io.now = clock::now();
    io.peer_id = peer_id;
    return l.offer(io);
}

// The client's first ClientHello, then (after the server's
// HelloVerifyRequest) the ClientHello with the cookie.
template <class Client, class Server>
std::pair<bytes, bytes> hellos(const config& client_cfg, typename Server::listener& server)
{
    failure f;
    auto ctx = Client::make_context(client_cfg, f);
    BOOST_TEST_REQUIRE(ctx, f.what());
    auto session = Client::connect(*ctx, f);
    BOOST_TEST_REQUIRE(session.has_value(), f.what());
    datagram_queue out;
    datagram_io io;
    io.output = &out;
    io.now = clock::now();
    BOOST_TEST_REQUIRE((session->handshake(io) == step::want_input));
    BOOST_TEST_REQUIRE(out.size() == 1u);
    bytes first(out[0].begin(), out[0].end());
    datagram_queue answer;
    BOOST_TEST_REQUIRE((offer(server, first, answer) == listen_result::cookie_sent));
    BOOST_TEST_REQUIRE(answer.size() == 1u);
    out.clear();
    io.input = answer[0];
    BOOST_TEST_REQUIRE((session->handshake(io) == step::want_input));
    BOOST_TEST_REQUIRE(out.size() == 1u);
    return {first, bytes(out[0].begin(), out[0].end())};
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(every_pair_settles_on_the_suite_the_shared_policy_predicts, Pair, all_pairs)
{
    for (const auto& c : credential_cases()) {
        BOOST_TEST_CONTEXT(c.name)
        {
            pipe_pair<typename Pair::client, typename Pair::server> p(c.server, c.client, Pair::virtual_time);
            failure f;
            BOOST_TEST_REQUIRE(p.start(f), f.what());
            p.run_handshake();
            BOOST_TEST_REQUIRE((p.client().state() == endpoint_state::open), p.client().last_failure().what());
            // DTLS 1.3 has its own suites, named by AEAD and hash only: the
            // first of them, AES-128-GCM, whatever the credentials.
            const auto expected =
                Pair::dtls13 ? std::string("TLS_AES_128_GCM_SHA256") : predicted_suite(c.client, c.server, c.key);
            BOOST_TEST(!expected.empty());
            BOOST_TEST(p.client().cipher_suite() == expected);
            const auto* server_side = p.server_side();
            BOOST_TEST_REQUIRE(server_side != nullptr);
            BOOST_TEST(server_side->cipher_suite() == expected);
        }
    }
}

BOOST_AUTO_TEST_CASE(the_policy_offers_forward_secrecy_first_and_plain_psk_last)
{
    auto both = client_config();
    both.psk = test_psk();
    const auto offered = detail::offered_suites(both);
    BOOST_TEST_REQUIRE(offered.size() == detail::suite_policy.size());
    BOOST_TEST((detail::find_suite(offered.front())->exchange == detail::key_exchange::ecdhe_psk));
    for (std::size_t i = offered.size() - 3; i < offered.size(); ++i)
        BOOST_TEST((detail::find_suite(offered[i])->exchange == detail::key_exchange::psk));
    // A PSK-only client offers no certificate suite: it could not verify one.
    for (const auto iana : detail::offered_suites(psk_config(role::client))) {
        const auto exchange = detail::find_suite(iana)->exchange;
        BOOST_TEST((exchange == detail::key_exchange::psk || exchange == detail::key_exchange::ecdhe_psk));
    }
    // A server offers what its key can sign with.
    for (const auto iana : detail::offered_suites(server_config(), {true, false}))
        BOOST_TEST((detail::find_suite(iana)->exchange == detail::key_exchange::ecdhe_ecdsa));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_cookie_expires_on_the_configured_clock_on_every_stack, Backend, all_backends)
{
    auto now = std::chrono::system_clock::time_point(1'800'000'000s);
    auto server_cfg = server_config();
    server_cfg.cookie_secret.assign(32, 0x11);
    server_cfg.cookie_lifetime = 60s;
    server_cfg.cookie_clock = [&now] { return now; };
    std::shared_ptr<typename Backend::context> ctx;
    auto listener = listener_for<Backend>(server_cfg, ctx);
    const auto [first, with_cookie] = hellos<Backend, Backend>(client_config(), *listener);

    datagram_queue out;
    // Within its period and the next, the cookie verifies.
    now += 61s;
    BOOST_TEST((offer(*listener, with_cookie, out) == listen_result::accepted));
    (void)listener->accept();
    // Two periods later it is stale: a new HelloVerifyRequest, nothing kept.
    // wolfSSL on DTLS 1.3 refuses a cookie it cannot verify with an alert
    // instead of a new HelloRetryRequest; the client starts over.
    now += 120s;
    BOOST_TEST((offer(*listener, with_cookie, out) ==
                (speaks_dtls13<Backend> ? listen_result::refused : listen_result::cookie_sent)));
    BOOST_TEST(out.size() == 1u);
    // The wall clock is far from this virtual one: the cookie can only have
    // expired on the configured clock.
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_missing_cookie_secret_is_drawn_from_the_configured_random_source, Backend, all_backends)
{
    int draws = 0;
    auto server_cfg = server_config();
    server_cfg.random_source = [&draws](std::span<std::uint8_t> out) {
        ++draws;
        std::fill(out.begin(), out.end(), std::uint8_t{0x33});
        return true;
    };
    std::shared_ptr<typename Backend::context> ctx;
    auto listener = listener_for<Backend>(server_cfg, ctx);
    BOOST_TEST(draws == 1);
    // A failing source is a context that cannot be made, with a reason.
    server_cfg.random_source = [](std::span<std::uint8_t>) { return false; };
    failure f;
    BOOST_TEST(!Backend::make_context(server_cfg, f));
    BOOST_TEST((f.code == errc::internal), f.what());
    BOOST_TEST(f.message.find("cookie_secret") != std::string::npos, f.what());
}

#if defined(DTLSPP_HAVE_OPENSSL) && defined(DTLSPP_HAVE_MBEDTLS)
// One cookie scheme for every stack: an OpenSSL and an mbedTLS server behind
// one load balancer, with one secret, accept each other's cookies.
BOOST_AUTO_TEST_CASE(servers_of_different_stacks_that_share_a_secret_accept_each_others_cookies)
{
    auto server_cfg = server_config();
    server_cfg.cookie_secret.assign(32, 0x22);
    std::shared_ptr<openssl_backend::context> openssl_ctx;
    std::shared_ptr<mbedtls_backend::context> mbedtls_ctx;
    auto openssl_listener = listener_for<openssl_backend>(server_cfg, openssl_ctx);
    auto mbedtls_listener = listener_for<mbedtls_backend>(server_cfg, mbedtls_ctx);
    datagram_queue out;
    {
        const auto [first, with_cookie] = hellos<openssl_backend, openssl_backend>(client_config(), *openssl_listener);
        BOOST_TEST((offer(*mbedtls_listener, with_cookie, out) == listen_result::accepted));
    }
    {
        const auto [first, with_cookie] = hellos<mbedtls_backend, mbedtls_backend>(client_config(), *mbedtls_listener);
        BOOST_TEST((offer(*openssl_listener, with_cookie, out) == listen_result::accepted));
    }
    // A different secret does not.
    auto other_cfg = server_cfg;
    other_cfg.cookie_secret.assign(32, 0x23);
    std::shared_ptr<mbedtls_backend::context> other_ctx;
    auto other_listener = listener_for<mbedtls_backend>(other_cfg, other_ctx);
    const auto [first, with_cookie] = hellos<openssl_backend, openssl_backend>(client_config(), *openssl_listener);
    BOOST_TEST((offer(*other_listener, with_cookie, out) == listen_result::cookie_sent));
}
#endif

BOOST_AUTO_TEST_CASE(the_traits_say_which_clock_each_stack_reads_and_what_it_speaks)
{
#ifdef DTLSPP_HAVE_OPENSSL
    static_assert(openssl_backend::traits.timers == timer_clock::wall_clock);
    static_assert(!openssl_backend::traits.connection_id);
    static_assert(openssl_backend::traits.versions.dtls_1_2 && !openssl_backend::traits.versions.dtls_1_3);
#endif
#ifdef DTLSPP_HAVE_MBEDTLS
    static_assert(mbedtls_backend::traits.timers == timer_clock::caller);
    // Connection ID with RFC 9146's code points exists from 3.x on.
    BOOST_TEST(mbedtls_backend::traits.connection_id == (MBEDTLS_VERSION_NUMBER >= 0x03000000));
#endif
    BOOST_TEST(true);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(role_checks_give_the_same_answer_at_every_door, Backend, all_backends)
{
    failure f;
    auto server_ctx = Backend::make_context(server_config(), f);
    BOOST_TEST_REQUIRE(server_ctx, f.what());
    failure via_backend;
    BOOST_TEST(!Backend::connect(*server_ctx, via_backend).has_value());
    failure via_endpoint;
    BOOST_TEST(!endpoint<Backend>::connect(server_ctx, clock::now(), via_endpoint).has_value());
    BOOST_TEST((via_backend.code == errc::config_invalid));
    BOOST_TEST(via_backend.message == via_endpoint.message);
    auto client_ctx = Backend::make_context(client_config(), f);
    BOOST_TEST_REQUIRE(client_ctx, f.what());
    failure listener_failure;
    BOOST_TEST(!Backend::make_listener(*client_ctx, listener_failure).has_value());
    BOOST_TEST((listener_failure.code == errc::config_invalid));
    BOOST_TEST(listener_failure.message.find("role::server") != std::string::npos, listener_failure.message);
}
