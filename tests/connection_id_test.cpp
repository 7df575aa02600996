// Connection ID (RFC 9146), typed over every stack pair: negotiated where
// both stacks have it and completed without it where one does not; a server
// finds an association by its CID, so it survives the client's address
// changing (NAT rebinding), and moves it only for a record that
// authenticated and is the newest; forged and replayed records move nothing.
#define BOOST_TEST_MODULE connection_id
#include <boost/test/unit_test.hpp>

#include "backends.hpp"

#include "support/harness.hpp"

#include <string>
#include <vector>

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

template <class Pair>
constexpr bool pair_has_connection_id = Pair::client::traits.connection_id && Pair::server::traits.connection_id;

config with_cid(config c, std::optional<std::size_t> length)
{
    c.connection_id = length;
    return c;
}

// A pair with PSKs and a CID asked for on each side as given.
template <class Pair>
struct cid_pair : pipe_pair<typename Pair::client, typename Pair::server> {
    cid_pair(std::optional<std::size_t> client_cid, std::optional<std::size_t> server_cid)
        : pipe_pair<typename Pair::client, typename Pair::server>(with_cid(psk_config(role::server), server_cid),
                                                                  with_cid(psk_config(role::client), client_cid),
                                                                  Pair::virtual_time)
    {
    }
};

// A record carrying a CID: type 25 on DTLS 1.2 (RFC 9146 §4), the unified
// header's C bit on 1.3 (RFC 9147 §4); the CID starts at byte 11 or 1.
inline bool is_cid_record(const bytes& d)
{
    return !d.empty() && (d[0] == std::byte{25} || (std::to_integer<unsigned>(d[0]) & 0xF0) == 0x30);
}
template <class Pair>
constexpr std::size_t cid_at = Pair::dtls13 ? 1 : 11;

template <class P>
void open(P& p)
{
    failure f;
    BOOST_TEST_REQUIRE(p.start(f), f.what());
    p.run_handshake();
    BOOST_TEST_REQUIRE((p.client().state() == endpoint_state::open), p.client().last_failure().what());
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(a_connection_id_is_negotiated_only_where_both_stacks_have_it, Pair, all_pairs)
{
    struct asked {
        std::optional<std::size_t> client, server;
    };
    for (const auto& a : {asked{8, 8}, asked{0, 6}, asked{8, std::nullopt}, asked{std::nullopt, 8}}) {
        BOOST_TEST_CONTEXT("client asks " << (a.client ? std::to_string(*a.client) : "none") << ", server asks "
                                          << (a.server ? std::to_string(*a.server) : "none"))
        {
            cid_pair<Pair> p(a.client, a.server);
            open(p);
            const bool expected = pair_has_connection_id<Pair> && a.client && a.server;
            const auto& client_ids = p.client().connection_id();
            BOOST_TEST(client_ids.negotiated == expected);
            const auto* server_side = p.server_side();
            BOOST_TEST_REQUIRE(server_side != nullptr);
            BOOST_TEST(server_side->connection_id().negotiated == expected);
            if (expected) {
                BOOST_TEST(client_ids.own.size() == *a.client);
                BOOST_TEST(client_ids.peer.size() == *a.server);
                BOOST_TEST(client_ids.peer == server_side->connection_id().own);
                BOOST_TEST(client_ids.own == server_side->connection_id().peer);
            } else {
                BOOST_TEST(client_ids.own.empty());
                BOOST_TEST(client_ids.peer.empty());
            }
            BOOST_TEST(p.echo("over the association"));
            BOOST_TEST(p.echo("and again"));
            // A CID record went to the server exactly when one was asked
            // for and negotiated (type 25, RFC 9146 §4; on 1.3 the unified
            // header's C bit).
            const bool saw_cid_record = std::any_of(p.delivered_to_server.begin(), p.delivered_to_server.end(),
                                                    [](const bytes& d) { return is_cid_record(d); });
            BOOST_TEST(saw_cid_record == (expected && *a.server > 0));
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(rebinding_mid_session_keeps_the_association_and_its_counters, Pair, all_pairs)
{
    cid_pair<Pair> p(8, 8);
    open(p);
    BOOST_TEST_REQUIRE(p.echo("before"));
    const auto before = p.server_side()->counters();
    const auto old_address = p.client_address;
    // The client's NAT mapping changes: its datagrams now come from another
    // port.
    p.client_address = peer_address::parse("127.0.0.1:50001");
    const bool echoed = p.echo("after the move");
    if constexpr (pair_has_connection_id<Pair>) {
        BOOST_TEST(echoed);
        BOOST_TEST(p.srv().session_count() == 1u);
        BOOST_TEST(p.srv().find(old_address) == nullptr);
        const auto* moved = p.server_side();
        BOOST_TEST_REQUIRE(moved != nullptr);
        // The same association: its counters went on.
        BOOST_TEST(moved->counters().application_messages_in == before.application_messages_in + 1);
        BOOST_TEST(moved->counters().handshake_duration == before.handshake_duration);
        BOOST_TEST(p.srv().counters().connection_id_moves == 1u);
        BOOST_TEST(p.srv().counters().sessions_created == 1u);
        // The reply went to the new address.
        BOOST_TEST(p.server_sent_to.back() == p.client_address);
        BOOST_TEST(p.echo("and stays there"));
        BOOST_TEST(p.srv().counters().connection_id_moves == 1u);
    } else {
        // Without CIDs a datagram from the new address belongs to no
        // association: it is dropped, and the old one is untouched.
        BOOST_TEST(!echoed);
        BOOST_TEST(p.srv().find(old_address) != nullptr);
        BOOST_TEST(p.srv().counters().connection_id_moves == 0u);
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(forged_and_replayed_connection_id_records_move_nothing, Pair, all_pairs)
{
    if constexpr (!pair_has_connection_id<Pair>) {
        BOOST_TEST_MESSAGE("no Connection ID on this pair");
        BOOST_TEST(true);
    } else {
        cid_pair<Pair> p(8, 8);
        open(p);
        BOOST_TEST_REQUIRE(p.echo("first"));
        const bytes genuine = p.delivered_to_server.back(); // a CID record with the server's CID
        BOOST_TEST_REQUIRE(is_cid_record(genuine));
        BOOST_TEST_REQUIRE(p.echo("second"));
        const auto third = peer_address::parse("192.0.2.7:4444");
        const auto in_before = p.server_side()->counters().application_messages_in;

        // The right CID, a broken tag: it does not authenticate.
        bytes forged = genuine;
        forged.back() ^= std::byte{0x5a};
        p.inject_to_server_from(third, forged);
        // A genuine record, replayed from elsewhere: the stack's replay
        // window drops it, and it is older than the newest anyway.
        p.inject_to_server_from(third, genuine);
        // A CID nobody has.
        bytes stranger = genuine;
        stranger[cid_at<Pair>] ^= std::byte{0xff};
        p.inject_to_server_from(third, stranger);

        BOOST_TEST(p.srv().counters().connection_id_moves == 0u);
        BOOST_TEST(p.srv().counters().connection_id_not_moved == 2u);
        BOOST_TEST(p.srv().counters().connection_id_unknown == 1u);
        BOOST_TEST(p.srv().find(third) == nullptr);
        const auto* still = p.server_side();
        BOOST_TEST_REQUIRE(still != nullptr);
        BOOST_TEST(still->is_open());
        BOOST_TEST(still->counters().application_messages_in == in_before);
        BOOST_TEST(p.echo("still here"));
        BOOST_TEST(p.server_sent_to.back() == p.client_address);
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_record_with_another_connection_id_is_dropped_and_counted, Pair, all_pairs)
{
    if constexpr (!pair_has_connection_id<Pair>) {
        BOOST_TEST(true);
    } else {
        cid_pair<Pair> p(4, 4);
        open(p);
        BOOST_TEST_REQUIRE(p.echo("hello"));
        // A server record, its CID (the client's) changed: the client's
        // admission drops it before the stack sees it.
        bytes to_client = p.delivered_to_client.back();
        BOOST_TEST_REQUIRE(is_cid_record(to_client));
        to_client[cid_at<Pair>] ^= std::byte{0x01};
        p.inject_to_client(to_client);
        BOOST_TEST(p.client().counters().dropped_unknown_connection_id == 1u);
        BOOST_TEST(p.client().is_open());
        BOOST_TEST(p.echo("hello again"));
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_trace_shows_the_connection_id, Pair, all_pairs)
{
    if constexpr (!pair_has_connection_id<Pair>) {
        BOOST_TEST(true);
    } else {
        cid_pair<Pair> p(4, 4);
        std::vector<std::string> lines;
        open(p);
        p.client().set_trace([&](direction d, std::span<const std::byte> datagram, const wire_framing& framing) {
            lines.push_back(describe_datagram(d, datagram, framing.connection_id_length));
        });
        BOOST_TEST_REQUIRE(p.echo("traced"));
        BOOST_TEST_REQUIRE(lines.size() == 2u);
        std::string hex;
        for (const auto b : p.client().connection_id().peer) {
            static constexpr char digits[] = "0123456789abcdef";
            hex += digits[std::to_integer<unsigned>(b) >> 4];
            hex += digits[std::to_integer<unsigned>(b) & 15];
        }
        BOOST_TEST(lines[0].find("cid " + hex) != std::string::npos, lines[0]);
        BOOST_TEST(lines[0].find("malformed") == std::string::npos, lines[0]);
        BOOST_TEST(lines[1].find("malformed") == std::string::npos, lines[1]);
    }
}
