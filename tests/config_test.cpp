#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include <dtlspp/config.hpp>

using namespace dtlspp;

namespace {
config valid_client()
{
    config c;
    c.role = role::client;
    c.trusted_ca = pem_source::from_file("ca.pem");
    c.server_name = "localhost";
    return c;
}
bool names(const failure& f, const std::string& field) { return f.message.find(field) != std::string::npos; }
} // namespace

BOOST_AUTO_TEST_CASE(defaults_are_secure_and_documented)
{
    config c;
    BOOST_TEST(c.max_udp_payload == 1200u);
    BOOST_TEST(c.initial_retransmission_timeout.count() == 1000);
    BOOST_TEST(c.max_retransmission_timeout.count() == 60000);
    BOOST_TEST((c.effective_verification() == peer_verification::required)); // clients verify by default
    c.role = role::server;
    BOOST_TEST((c.effective_verification() == peer_verification::none));
}

BOOST_AUTO_TEST_CASE(a_valid_client_config_passes)
{
    BOOST_TEST(!validate(valid_client()));
}

BOOST_AUTO_TEST_CASE(an_mtu_below_the_floor_is_mtu_too_small)
{
    auto c = valid_client();
    c.max_udp_payload = 200;
    const auto f = validate(c);
    BOOST_TEST((f.code == errc::mtu_too_small));
    BOOST_TEST(names(f, "max_udp_payload"));
}

BOOST_AUTO_TEST_CASE(each_bad_field_is_named)
{
    struct bad_case {
        std::function<void(config&)> change;
        std::string field;
    };
    const std::vector<bad_case> cases = {
        {[](config& c) { c.server_name.clear(); }, "server_name"},
        {[](config& c) { c.trusted_ca = {}; }, "trusted_ca"},
        {[](config& c) { c.max_udp_payload = 70000; }, "max_udp_payload"},
        {[](config& c) { c.psk = psk_credentials{"", std::vector<std::uint8_t>(32, 1)}; }, "psk.identity"},
        {[](config& c) { c.psk = psk_credentials{"id", std::vector<std::uint8_t>(8, 1)}; }, "psk.key"},
        {[](config& c) { c.max_retransmission_timeout = std::chrono::milliseconds(10); }, "max_retransmission_timeout"},
        {[](config& c) { c.handshake_deadline = std::chrono::milliseconds(10); }, "handshake_deadline"},
        {[](config& c) { c.initial_retransmission_timeout = std::chrono::milliseconds(0); }, "initial_retransmission_timeout"},
        {[](config& c) { c.alpn = {""}; }, "alpn"},
        {[](config& c) { c.cookie_secret = {1, 2, 3}; }, "cookie_secret"},
        {[](config& c) { c.certificate = x509_credentials{pem_source::from_file("a.pem"), {}}; }, "certificate.private_key"},
        {[](config& c) { c.trusted_ca = pem_source{"ca.pem", "-----BEGIN"}; }, "trusted_ca"},
        {[](config& c) { c.verification = peer_verification::optional; }, "verification"},
    };
    for (const auto& bad : cases) {
        auto c = valid_client();
        bad.change(c);
        const auto f = validate(c);
        BOOST_TEST((f.code == errc::config_invalid), bad.field);
        BOOST_TEST(names(f, bad.field), f.message);
    }
}

BOOST_AUTO_TEST_CASE(a_server_needs_credentials)
{
    config c;
    c.role = role::server;
    const auto f = validate(c);
    BOOST_TEST((f.code == errc::config_invalid));
    BOOST_TEST(names(f, "certificate"));
    c.psk = psk_credentials{"id", std::vector<std::uint8_t>(16, 7)};
    BOOST_TEST(!validate(c));
}

BOOST_AUTO_TEST_CASE(psk_only_clients_need_no_ca)
{
    config c;
    c.role = role::client;
    c.psk = psk_credentials{"id", std::vector<std::uint8_t>(16, 7)};
    BOOST_TEST((c.effective_verification() == peer_verification::none));
    BOOST_TEST(!validate(c));
}

BOOST_AUTO_TEST_CASE(error_messages_read_well)
{
    BOOST_TEST(make_error_code(errc::verify_failed).message() == "peer certificate verification failed");
    BOOST_TEST(std::string(error_category().name()) == "dtlspp");
    const auto f = make_failure(errc::handshake_timeout, "no answer");
    BOOST_TEST(f.what() == "handshake timed out: no answer");
}
