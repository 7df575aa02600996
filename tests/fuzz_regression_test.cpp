// What the fuzzers (fuzz/) found, each kept as a specification that runs on
// every stack pair. A test names the target that found it and the smallest
// input that shows it, rewritten as the property it broke.
#define BOOST_TEST_MODULE fuzz_regression
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <string>

using namespace dtlspp;
using namespace dtlspp::test;

namespace {

// An epoch-1 record (RFC 6347 §4.1) of the given type and body length,
// well-framed and sequence number 1, filled with a byte no key turns into
// a valid record.
bytes epoch_one_record(std::uint8_t type, std::size_t body_length)
{
    bytes r = {std::byte{type}, std::byte{0xfe}, std::byte{0xfd}, std::byte{0}, std::byte{1},
               std::byte{0},    std::byte{0},    std::byte{0},    std::byte{0}, std::byte{0},
               std::byte{1},    std::byte(body_length >> 8), std::byte(body_length & 0xff)};
    r.resize(r.size() + body_length, std::byte{0x97});
    return r;
}

} // namespace

// fuzz_open_association_openssl, within its first thousand inputs: an
// epoch-1 application_data record with a 21-byte body ended the server's
// open association (OpenSSL 3.0 takes a record too short for its cipher's
// explicit nonce and tag as fatal). Any record that does not authenticate
// must be dropped, whatever its length: only the peer ends an association.
BOOST_AUTO_TEST_CASE_TEMPLATE(short_epoch_one_records_leave_an_open_association_open, Pair, all_pairs)
{
    pipe_pair<typename Pair::client, typename Pair::server> p(psk_config(role::server), psk_config(role::client),
                                                              Pair::virtual_time);
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    BOOST_REQUIRE(p.server_side() != nullptr);

    for (const std::uint8_t type : {20, 21, 22, 23}) {
        for (std::size_t length = 0; length <= 48; ++length) {
            const auto record = epoch_one_record(type, length);
            // Each side is checked right after its own record: an alert from
            // a side that failed would end the other side too, and rightly.
            p.inject_to_server(record);
            const auto* server_side = p.server_side();
            BOOST_TEST_REQUIRE((server_side != nullptr && server_side->is_open()),
                               "type " << int(type) << ", " << length << "-byte body ended the server's association"
                                       << (p.server_failures().empty() ? std::string()
                                                                        : ": " + p.server_failures().back().what()));
            p.inject_to_client(record);
            BOOST_TEST_REQUIRE(p.client().is_open(), "type " << int(type) << ", " << length
                                                             << "-byte body ended the client: "
                                                             << p.client().last_failure().what());
        }
    }
    BOOST_TEST(p.echo("still open"));
}
