// DTLS-SRTP (RFC 5764) and RFC 5705 keying material export, typed over
// every client x server stack pair: the server picks a profile both sides
// know and both report it; with none in common the handshake completes
// without SRTP; both sides derive the same keys and the same export; a
// cross-stack pair checks one stack's exporter against the other's.
#define BOOST_TEST_MODULE srtp
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <dtlspp/srtp.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

using namespace dtlspp;
using namespace dtlspp::test;

namespace {

constexpr auto sha1_80 = srtp_profile::aes128_cm_hmac_sha1_80;
constexpr auto sha1_32 = srtp_profile::aes128_cm_hmac_sha1_32;

config with_profiles(config c, std::vector<srtp_profile> profiles)
{
    c.srtp_profiles = std::move(profiles);
    return c;
}

// A PSK pair with the SRTP profiles given to each side.
template <class Pair>
struct srtp_pair : pipe_pair<typename Pair::client, typename Pair::server> {
    srtp_pair(std::vector<srtp_profile> client, std::vector<srtp_profile> server)
        : pipe_pair<typename Pair::client, typename Pair::server>(with_profiles(psk_config(role::server), server),
                                                                  with_profiles(psk_config(role::client), client),
                                                                  Pair::virtual_time)
    {
    }
    const auto& server_end()
    {
        const auto* s = this->server_side();
        BOOST_TEST_REQUIRE(s != nullptr);
        BOOST_TEST_REQUIRE(s->is_open());
        return *s;
    }
};

template <class P>
void open(P& p)
{
    failure f;
    BOOST_TEST_REQUIRE(p.start(f), f.what());
    p.run_handshake();
    BOOST_TEST_REQUIRE(p.client().is_open(), p.client().last_failure().what());
    BOOST_TEST_REQUIRE(p.server_opened() == 1u);
}

template <class Pair>
constexpr bool pair_has_srtp = Pair::client::traits.srtp.negotiates && Pair::server::traits.srtp.negotiates;

std::span<const std::byte> bytes_of(const std::string& s) { return as_bytes(s); }

template <class Endpoint>
bytes exported(const Endpoint& e, std::string_view label, std::optional<std::span<const std::byte>> context,
               std::size_t length = 32)
{
    bytes out(length);
    e.export_keying_material(label, context, out); // throws on error
    return out;
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(the_server_picks_a_profile_both_sides_know_and_both_report_it, Pair, all_pairs)
{
    if constexpr (!pair_has_srtp<Pair>) return;
    // The two sides order the two AES-CM profiles differently: which one
    // wins is the server stack's rule (backend_traits::srtp.server_order).
    srtp_pair<Pair> p({sha1_32, sha1_80}, {sha1_80, sha1_32});
    open(p);
    // The client's first: sha1_32 as configured, or sha1_80 (code point 1)
    // from a client that offers by code point.
    const auto expected =
        Pair::server::traits.srtp.server_order || !Pair::client::traits.srtp.client_order ? sha1_80 : sha1_32;
    BOOST_TEST_REQUIRE(p.client().srtp_profile().has_value());
    BOOST_TEST((*p.client().srtp_profile() == expected), to_string(*p.client().srtp_profile()));
    BOOST_TEST((p.server_end().srtp_profile() == p.client().srtp_profile()));

    // With one profile in common, that one, whatever the order.
    srtp_pair<Pair> q({sha1_80, sha1_32}, {sha1_32});
    open(q);
    BOOST_TEST((q.client().srtp_profile() == std::optional(sha1_32)));
    BOOST_TEST((q.server_end().srtp_profile() == std::optional(sha1_32)));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(without_a_common_profile_the_handshake_completes_without_srtp, Pair, all_pairs)
{
    if constexpr (!pair_has_srtp<Pair>) return;
    struct offer {
        const char* what;
        std::vector<srtp_profile> client, server;
    };
    // RFC 5764 §4.1.1: a server with no profile in common, or without
    // use_srtp, omits the extension, and the client goes on without SRTP.
    for (const auto& o : {offer{"no profile in common", {sha1_80}, {sha1_32}},
                          offer{"only the client asks", {sha1_80, sha1_32}, {}},
                          offer{"only the server accepts", {}, {sha1_80}}}) {
        BOOST_TEST_CONTEXT(o.what)
        {
            srtp_pair<Pair> p(o.client, o.server);
            open(p);
            BOOST_TEST(!p.client().srtp_profile().has_value());
            BOOST_TEST(!p.server_end().srtp_profile().has_value());
            std::error_code ec;
            const auto keys = p.client().srtp_keys(ec);
            BOOST_TEST((ec == errc::export_refused));
            BOOST_TEST(keys.client_master_key.empty());
            // RFC 5705 export does not depend on SRTP.
            BOOST_TEST((exported(p.client(), "EXPERIMENTAL-dtlspp", std::nullopt) ==
                       exported(p.server_end(), "EXPERIMENTAL-dtlspp", std::nullopt)));
            BOOST_TEST(p.echo("still an association"));
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(both_sides_derive_the_same_srtp_keys, Pair, all_pairs)
{
    if constexpr (!pair_has_srtp<Pair>) return;
    srtp_pair<Pair> p({sha1_80}, {sha1_80});
    open(p);
    const auto client = p.client().srtp_keys();
    const auto server = p.server_end().srtp_keys();
    BOOST_TEST((client.profile == sha1_80));
    BOOST_TEST((server.profile == sha1_80));
    // RFC 5764 §4.1.2: a 128-bit master key and a 112-bit master salt.
    BOOST_TEST((client.client_master_key.size() == 16u));
    BOOST_TEST((client.server_master_key.size() == 16u));
    BOOST_TEST((client.client_master_salt.size() == 14u));
    BOOST_TEST((client.server_master_salt.size() == 14u));
    BOOST_TEST((client.client_master_key == server.client_master_key));
    BOOST_TEST((client.server_master_key == server.server_master_key));
    BOOST_TEST((client.client_master_salt == server.client_master_salt));
    BOOST_TEST((client.server_master_salt == server.server_master_salt));
    // Each direction has its own key.
    BOOST_TEST((client.client_master_key != client.server_master_key));
    BOOST_TEST((client.client_master_salt != client.server_master_salt));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(srtp_keys_are_the_rfc_5764_split_of_the_extractor_export, Pair, all_pairs)
{
    if constexpr (!pair_has_srtp<Pair>) return;
    srtp_pair<Pair> p({sha1_32}, {sha1_32});
    open(p);
    // §4.2: client key, server key, client salt, server salt, back to back.
    // Taken here from the server's stack while srtp_keys() ran on the
    // client's: on a cross-stack pair, one implementation checks the other.
    const auto block = exported(p.server_end(), srtp_exporter_label, std::nullopt, 2 * (16 + 14));
    const auto keys = p.client().srtp_keys();
    auto part = [&](std::size_t at, std::size_t n) { return bytes(block.begin() + at, block.begin() + at + n); };
    BOOST_TEST((keys.client_master_key == part(0, 16)));
    BOOST_TEST((keys.server_master_key == part(16, 16)));
    BOOST_TEST((keys.client_master_salt == part(32, 14)));
    BOOST_TEST((keys.server_master_salt == part(46, 14)));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(both_sides_export_the_same_material_for_a_label_and_context, Pair, all_pairs)
{
    srtp_pair<Pair> p({}, {});
    open(p);
    const auto& client = p.client();
    // Right after its handshake, before any later record of the client's:
    // where mbedTLS 3.6's own exporter reads a transform not yet in place.
    const auto& server = p.server_end();
    const std::string context = "a context";
    const std::span<const std::byte> empty;

    const auto no_context = exported(client, "EXPERIMENTAL-dtlspp", std::nullopt);
    const auto empty_context = exported(client, "EXPERIMENTAL-dtlspp", empty);
    const auto with_context = exported(client, "EXPERIMENTAL-dtlspp", bytes_of(context));
    BOOST_TEST((no_context == exported(server, "EXPERIMENTAL-dtlspp", std::nullopt)));
    BOOST_TEST((empty_context == exported(server, "EXPERIMENTAL-dtlspp", empty)));
    BOOST_TEST((with_context == exported(server, "EXPERIMENTAL-dtlspp", bytes_of(context))));
    if constexpr (Pair::dtls13) {
        // RFC 8446 §7.5: the TLS 1.3 exporter takes no context as an empty
        // one.
        BOOST_TEST((no_context == empty_context));
    } else {
        // RFC 5705 §4: no context and an empty one are different inputs.
        BOOST_TEST((no_context != empty_context));
    }
    BOOST_TEST((no_context != with_context));
    BOOST_TEST((no_context != exported(client, "EXPERIMENTAL-other", std::nullopt)));
    BOOST_TEST((with_context != exported(client, "EXPERIMENTAL-dtlspp", bytes_of(std::string("another context")))));
    // A longer export begins with the shorter one on 1.2 (the PRF is a
    // stream); TLS 1.3's HKDF-Expand-Label puts the length in its input, so
    // there a longer export is another value (RFC 8446 §7.1).
    const auto longer = exported(server, "EXPERIMENTAL-dtlspp", std::nullopt, 100);
    BOOST_TEST(((bytes(longer.begin(), longer.begin() + 32) == no_context) == !Pair::dtls13));
    BOOST_TEST((exported(client, "EXPERIMENTAL-dtlspp", std::nullopt, 8160).size() == 8160u));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(export_needs_an_open_association, Pair, all_pairs)
{
    srtp_pair<Pair> p({sha1_80}, {sha1_80});
    // The server's answers are held back, so the client stays handshaking.
    bool hold = true;
    p.filter = [&](const wire_event& e) { return e.to_server || !hold; };
    failure f;
    BOOST_TEST_REQUIRE(p.start(f), f.what());
    BOOST_TEST_REQUIRE((p.client().state() == endpoint_state::handshaking));
    bytes out(32, std::byte{0x55});
    std::error_code ec;
    p.client().export_keying_material("EXPERIMENTAL-dtlspp", std::nullopt, out, ec);
    BOOST_TEST((ec == errc::not_open));
    BOOST_TEST((std::all_of(out.begin(), out.end(), [](std::byte b) { return b == std::byte{0}; })));
    BOOST_TEST(!p.client().srtp_profile().has_value());
    p.client().srtp_keys(ec);
    BOOST_TEST((ec == errc::not_open));
    BOOST_CHECK_EXCEPTION(p.client().export_keying_material("EXPERIMENTAL-dtlspp", std::nullopt, out),
                          dtlspp::error, [](const dtlspp::error& e) { return e.code() == errc::not_open; });

    hold = false;
    p.run_handshake();
    BOOST_TEST_REQUIRE(p.client().is_open(), p.client().last_failure().what());
    p.client().export_keying_material("EXPERIMENTAL-dtlspp", std::nullopt, out, ec);
    BOOST_TEST(!ec);
    p.client().close(p.time.now());
    p.client().export_keying_material("EXPERIMENTAL-dtlspp", std::nullopt, out, ec);
    BOOST_TEST((ec == errc::not_open));
    BOOST_TEST(!p.client().srtp_profile().has_value());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(reserved_labels_and_oversized_requests_are_refused_on_every_stack, Pair, all_pairs)
{
    srtp_pair<Pair> p({}, {});
    open(p);
    bytes out(32, std::byte{0x55});
    auto refused = [&](std::string_view label, std::optional<std::span<const std::byte>> context,
                       std::span<std::byte> into) {
        failure f;
        p.client().export_keying_material(label, context, into, f);
        BOOST_TEST_MESSAGE(f.what());
        return f.code == errc::export_refused &&
               std::all_of(into.begin(), into.end(), [](std::byte b) { return b == std::byte{0}; });
    };
    for (const char* label : {"client finished", "server finished", "master secret", "extended master secret",
                              "key expansion", "master secret and more"})
        BOOST_TEST(refused(label, std::nullopt, out), label);
    BOOST_TEST(refused(std::string_view("EXPERIMENTAL\0dtlspp", 19), std::nullopt, out));
    const bytes huge_context(65536);
    BOOST_TEST(refused("EXPERIMENTAL-dtlspp", huge_context, out));
    bytes too_long(8161);
    BOOST_TEST(refused("EXPERIMENTAL-dtlspp", std::nullopt, too_long));
    BOOST_TEST(refused("EXPERIMENTAL-dtlspp", std::nullopt, std::span<std::byte>()));
    // The association is unharmed.
    BOOST_TEST(p.echo("after the refusals"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_profile_the_stack_lacks_is_refused_when_the_context_is_made, Backend, all_backends)
{
    for (const auto profile : {srtp_profile::aes128_cm_hmac_sha1_80, srtp_profile::aes128_cm_hmac_sha1_32,
                               srtp_profile::null_hmac_sha1_80, srtp_profile::null_hmac_sha1_32}) {
        BOOST_TEST_CONTEXT(to_string(profile))
        {
            const bool known = Backend::traits.srtp.negotiates &&
                               (Backend::traits.srtp.null_cipher_profiles ||
                                (profile != srtp_profile::null_hmac_sha1_80 && profile != srtp_profile::null_hmac_sha1_32));
            for (const auto r : {role::client, role::server}) {
                failure f;
                const auto ctx = Backend::make_context(with_profiles(psk_config(r), {profile}), f);
                BOOST_TEST((static_cast<bool>(ctx) == known), f.what());
                if (!known) {
                    BOOST_TEST((f.code == errc::config_invalid));
                    BOOST_TEST((f.message.find("srtp_profiles") != std::string::npos), f.message);
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(null_cipher_profiles_negotiate_where_both_stacks_have_them, Pair, all_pairs)
{
    constexpr bool both = pair_has_srtp<Pair> && Pair::client::traits.srtp.null_cipher_profiles &&
                          Pair::server::traits.srtp.null_cipher_profiles;
    if constexpr (!both) return;
    srtp_pair<Pair> p({srtp_profile::null_hmac_sha1_32, sha1_80}, {srtp_profile::null_hmac_sha1_32});
    open(p);
    BOOST_TEST((p.client().srtp_profile() == std::optional(srtp_profile::null_hmac_sha1_32)));
    const auto keys = p.client().srtp_keys();
    BOOST_TEST((keys.client_master_key.size() == 16u));
    BOOST_TEST((keys.client_master_salt.size() == 14u));
    BOOST_TEST((keys.server_master_key == p.server_end().srtp_keys().server_master_key));
}

BOOST_AUTO_TEST_CASE(the_config_check_refuses_duplicate_and_unknown_profiles)
{
    auto c = with_profiles(psk_config(role::client), {sha1_80, sha1_32, sha1_80});
    auto f = validate(c);
    BOOST_TEST((f.code == errc::config_invalid));
    BOOST_TEST((f.message.find("srtp_profiles: SRTP_AES128_CM_HMAC_SHA1_80 is listed twice") != std::string::npos),
               f.message);

    c.srtp_profiles = {sha1_80, static_cast<srtp_profile>(0x0007)};
    f = validate(c);
    BOOST_TEST((f.code == errc::config_invalid));
    BOOST_TEST((f.message.find("srtp_profiles: 7 is not a known SRTP protection profile") != std::string::npos),
               f.message);

    c.srtp_profiles = {sha1_32, sha1_80, srtp_profile::null_hmac_sha1_80, srtp_profile::null_hmac_sha1_32};
    BOOST_TEST(!validate(c), validate(c).what());
}

BOOST_AUTO_TEST_CASE(the_error_has_its_own_message)
{
    BOOST_TEST((make_error_code(errc::export_refused).message() == "keying material export refused"));
}

BOOST_AUTO_TEST_CASE(the_split_follows_rfc_5764_section_4_2)
{
    bytes block(60);
    for (std::size_t i = 0; i < block.size(); ++i) block[i] = std::byte(i);
    const auto keys = split_srtp_keying_material(sha1_80, block);
    auto run = [](std::size_t from, std::size_t n) {
        bytes b(n);
        for (std::size_t i = 0; i < n; ++i) b[i] = std::byte(from + i);
        return b;
    };
    BOOST_TEST((keys.client_master_key == run(0, 16)));
    BOOST_TEST((keys.server_master_key == run(16, 16)));
    BOOST_TEST((keys.client_master_salt == run(32, 14)));
    BOOST_TEST((keys.server_master_salt == run(46, 14)));
}
