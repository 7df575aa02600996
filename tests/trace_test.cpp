#define BOOST_TEST_MODULE trace
#include <boost/test/unit_test.hpp>

#include "support/wire_bytes.hpp"

#include <dtlspp/trace.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <ranges>
#include <span>
#include <string>
#include <vector>

namespace {

using bytes = dtlspp::test::wire::bytes;

using dtlspp::test::wire::cid_record;
using dtlspp::test::wire::concat;
using dtlspp::test::wire::filler;
using dtlspp::test::wire::fragment;
using dtlspp::test::wire::put;
using dtlspp::test::wire::record;

bytes whole_message(std::uint8_t msg_type, std::uint16_t message_seq, std::size_t size)
{
    return fragment(msg_type, static_cast<std::uint32_t>(size), message_seq, 0, filler(size, msg_type));
}

bytes handshake_record(std::uint16_t epoch, std::uint64_t sequence, const bytes& payload)
{
    return record(dtlspp::content_type::handshake, epoch, sequence, payload);
}

const bytes four_byte_cid = {std::byte{0x0a}, std::byte{0x1b}, std::byte{0x2c}, std::byte{0x3d}};

std::vector<dtlspp::record_view> records_of(std::span<const std::byte> datagram, dtlspp::parse_result* result = nullptr,
                                           std::size_t connection_id_length = 0)
{
    std::vector<dtlspp::record_view> records;
    const auto parsed = dtlspp::parse_datagram(
        datagram, [&](const dtlspp::record_view& r) { records.push_back(r); }, connection_id_length);
    if (result != nullptr)
        *result = parsed;
    return records;
}

std::vector<dtlspp::handshake_fragment> fragments_of(const dtlspp::record_view& record)
{
    std::vector<dtlspp::handshake_fragment> out;
    for (const auto f : record.fragments())
        out.push_back(f);
    return out;
}

using dtlspp::content_type;
using dtlspp::direction;

// Fragments must work with the standard range algorithms, not just range-for.
static_assert(std::ranges::input_range<dtlspp::fragment_range>);

// The parser stays usable in constant expressions with a CID record in.
constexpr bool parses_a_connection_id_record_at_compile_time()
{
    constexpr auto b = [](unsigned v) { return static_cast<std::byte>(v); };
    const std::array<std::byte, 20> datagram = {b(25), b(0xfe), b(0xfd), b(0), b(1), b(0), b(0), b(0), b(0), b(0),
                                                b(7), b(0xaa), b(0xbb), b(0xcc), b(0), b(3), b(1), b(2), b(3), b(0)};
    std::size_t records = 0;
    std::size_t cid = 0;
    std::size_t payload = 0;
    const auto result = dtlspp::parse_datagram(
        std::span<const std::byte>(datagram.data(), 19),
        [&](const dtlspp::record_view& r) {
            ++records;
            cid = r.connection_id.size();
            payload = r.payload.size();
        },
        3);
    return result.ok() && records == 1 && cid == 3 && payload == 3;
}
static_assert(parses_a_connection_id_record_at_compile_time());
static_assert(dtlspp::record_header_size_of(dtlspp::content_type::tls12_cid, 4) == 17);
static_assert(dtlspp::record_header_size_of(dtlspp::content_type::application_data, 4) == 13);

} // namespace

BOOST_AUTO_TEST_CASE(names)
{
    BOOST_TEST(dtlspp::content_type_name(20) == "ChangeCipherSpec");
    BOOST_TEST(dtlspp::content_type_name(23) == "ApplicationData");
    BOOST_TEST(dtlspp::content_type_name(25) == "ConnectionID");
    BOOST_TEST(dtlspp::content_type_name(99) == "unknown");
    BOOST_TEST(dtlspp::handshake_type_name(1) == "ClientHello");
    BOOST_TEST(dtlspp::handshake_type_name(3) == "HelloVerifyRequest");
    BOOST_TEST(dtlspp::handshake_type_name(14) == "ServerHelloDone");
    BOOST_TEST(dtlspp::handshake_type_name(16) == "ClientKeyExchange");
    BOOST_TEST(dtlspp::handshake_type_name(20) == "Finished");
    BOOST_TEST(dtlspp::handshake_type_name(200) == "unknown");
    BOOST_TEST(dtlspp::alert_level_name(2) == "fatal");
    BOOST_TEST(dtlspp::alert_description_name(0) == "close_notify");
    BOOST_TEST(dtlspp::alert_description_name(40) == "handshake_failure");
    BOOST_TEST(dtlspp::alert_description_name(255) == "unknown");
}

BOOST_AUTO_TEST_CASE(client_hello_fragment)
{
    // First 200 bytes of a 500-byte ClientHello, sequence number using all 48 bits.
    const auto datagram = handshake_record(0, 0xfedcba987654, fragment(1, 500, 0, 0, filler(200)));
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result);
    BOOST_TEST(result.ok());
    BOOST_TEST(result.records == 1u);
    BOOST_TEST_REQUIRE(records.size() == 1u);
    const auto& r = records[0];
    BOOST_TEST((r.type == content_type::handshake));
    BOOST_TEST(r.version == 0xfefd);
    BOOST_TEST(r.epoch == 0);
    BOOST_TEST(r.sequence_number == 0xfedcba987654u);
    BOOST_TEST(r.length == 212);
    BOOST_TEST(r.offset == 0u);
    BOOST_TEST(r.payload.size() == 212u);
    BOOST_TEST(r.payload.data() == datagram.data() + 13);
    BOOST_TEST(r.malformed_reason.empty());
    BOOST_TEST(!r.is_encrypted());
    const auto fragments = fragments_of(r);
    BOOST_TEST_REQUIRE(fragments.size() == 1u);
    const auto& f = fragments[0];
    BOOST_TEST(f.msg_type == 1);
    BOOST_TEST(f.length == 500u);
    BOOST_TEST(f.message_seq == 0);
    BOOST_TEST(f.fragment_offset == 0u);
    BOOST_TEST(f.fragment_length == 200u);
    BOOST_TEST(!f.is_whole_message());
    BOOST_TEST(f.body.data() == datagram.data() + 25);
    BOOST_TEST(f.body.size() == 200u);

    BOOST_TEST(dtlspp::describe_datagram(direction::out, datagram) ==
               "-> 225 B  epoch 0 seq 280223976814164: ClientHello (msg 0, frag 0+200/500)");
}

BOOST_AUTO_TEST_CASE(whole_client_hello_line)
{
    const auto datagram = handshake_record(0, 0, whole_message(1, 0, 231));
    BOOST_TEST(dtlspp::describe_datagram(direction::out, datagram) ==
               "-> 256 B  epoch 0 seq 0: ClientHello (msg 0, frag 0+231/231)");
}

BOOST_AUTO_TEST_CASE(two_handshake_messages_in_one_record)
{
    const auto datagram = handshake_record(0, 1, concat({whole_message(2, 1, 70), whole_message(14, 2, 0)}));
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result);
    BOOST_TEST(result.ok());
    BOOST_TEST_REQUIRE(records.size() == 1u);
    const auto fragments = fragments_of(records[0]);
    BOOST_TEST_REQUIRE(fragments.size() == 2u);
    BOOST_TEST(fragments[0].msg_type == 2);
    BOOST_TEST(fragments[0].fragment_length == 70u);
    BOOST_TEST(fragments[0].is_whole_message());
    BOOST_TEST(fragments[1].msg_type == 14);
    BOOST_TEST(fragments[1].message_seq == 2);
    BOOST_TEST(fragments[1].length == 0u);
    BOOST_TEST(fragments[1].body.empty());
    BOOST_TEST(dtlspp::describe_datagram(direction::in, datagram) ==
               "<- 107 B  epoch 0 seq 1: ServerHello (msg 1, frag 0+70/70), ServerHelloDone (msg 2, frag 0+0/0)");
}

BOOST_AUTO_TEST_CASE(two_records_in_one_datagram)
{
    const auto first = handshake_record(0, 2, fragment(11, 1000, 2, 600, filler(400)));
    const auto second = handshake_record(0, 3, whole_message(14, 3, 0));
    const auto datagram = concat({first, second});
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result);
    BOOST_TEST(result.ok());
    BOOST_TEST(result.records == 2u);
    BOOST_TEST_REQUIRE(records.size() == 2u);
    BOOST_TEST(records[0].sequence_number == 2u);
    BOOST_TEST(records[1].sequence_number == 3u);
    BOOST_TEST(records[1].offset == first.size());
    BOOST_TEST(fragments_of(records[0])[0].fragment_offset == 600u);
    BOOST_TEST(dtlspp::describe_datagram(direction::in, datagram) ==
               "<- 450 B  epoch 0 seq 2: Certificate (msg 2, frag 600+400/1000); "
               "epoch 0 seq 3: ServerHelloDone (msg 3, frag 0+0/0)");
}

BOOST_AUTO_TEST_CASE(change_cipher_spec_and_encrypted_finished)
{
    const auto datagram =
        concat({record(content_type::change_cipher_spec, 0, 5, {std::byte{1}}), handshake_record(1, 0, filler(40))});
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result);
    BOOST_TEST(result.ok());
    BOOST_TEST_REQUIRE(records.size() == 2u);
    BOOST_TEST((records[0].type == content_type::change_cipher_spec));
    BOOST_TEST(!records[0].is_encrypted());
    BOOST_TEST(records[1].is_encrypted());
    // The ciphertext must not be mistaken for handshake headers.
    BOOST_TEST(records[1].fragments().empty());
    BOOST_TEST(dtlspp::describe_datagram(direction::out, datagram) ==
               "-> 67 B  epoch 0 seq 5: ChangeCipherSpec; epoch 1 seq 0: encrypted handshake (40 B)");
}

BOOST_AUTO_TEST_CASE(alerts)
{
    const auto plain = record(content_type::alert, 0, 7, {std::byte{2}, std::byte{40}});
    const auto records = records_of(plain);
    BOOST_TEST_REQUIRE(records.size() == 1u);
    const auto alert = records[0].alert();
    BOOST_TEST_REQUIRE(alert.has_value());
    BOOST_TEST(alert->level == 2);
    BOOST_TEST(alert->description == 40);
    BOOST_TEST(dtlspp::describe_datagram(direction::in, plain) ==
               "<- 15 B  epoch 0 seq 7: Alert (fatal, handshake_failure)");

    const auto encrypted = record(content_type::alert, 1, 9, filler(26));
    const auto encrypted_records = records_of(encrypted);
    BOOST_TEST_REQUIRE(encrypted_records.size() == 1u);
    BOOST_TEST(!encrypted_records[0].alert().has_value());
    BOOST_TEST(dtlspp::describe_datagram(direction::out, encrypted) == "-> 39 B  epoch 1 seq 9: encrypted Alert (26 B)");
}

BOOST_AUTO_TEST_CASE(application_data)
{
    const auto datagram = record(content_type::application_data, 1, 1, filler(29));
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result);
    BOOST_TEST(result.ok());
    BOOST_TEST_REQUIRE(records.size() == 1u);
    BOOST_TEST((records[0].type == content_type::application_data));
    BOOST_TEST(records[0].fragments().empty());
    BOOST_TEST(dtlspp::describe_datagram(direction::out, datagram) == "-> 42 B  epoch 1 seq 1: ApplicationData (29 B)");
}

BOOST_AUTO_TEST_CASE(every_truncation_of_a_valid_record)
{
    const auto datagram = handshake_record(0, 0, whole_message(1, 0, 20));
    for (std::size_t cut = 0; cut < datagram.size(); ++cut) {
        BOOST_TEST_CONTEXT("cut at " << cut)
        {
            // Exact-size copy so a sanitizer would catch any read past the end.
            const bytes truncated(datagram.begin(), datagram.begin() + static_cast<std::ptrdiff_t>(cut));
            dtlspp::parse_result result;
            const auto records = records_of(truncated, &result);
            BOOST_TEST(!result.ok());
            BOOST_TEST(records.empty());
            BOOST_TEST(result.malformed_offset == 0u);
            const std::string_view expected = cut == 0    ? "empty datagram"
                                              : cut < 13 ? "truncated record header"
                                                         : "record length past end of datagram";
            BOOST_TEST(result.malformed_reason == expected);
            BOOST_TEST(dtlspp::describe_datagram(direction::out, truncated).find("malformed (") != std::string::npos);
        }
    }
}

BOOST_AUTO_TEST_CASE(every_truncation_of_a_handshake_body)
{
    // The record header is made consistent with the cut, so only the
    // handshake layer can notice.
    const auto message = whole_message(1, 0, 20);
    for (std::size_t cut = 1; cut < message.size(); ++cut) {
        BOOST_TEST_CONTEXT("cut at " << cut)
        {
            const auto datagram =
                handshake_record(0, 0, bytes(message.begin(), message.begin() + static_cast<std::ptrdiff_t>(cut)));
            dtlspp::parse_result result;
            const auto records = records_of(datagram, &result);
            BOOST_TEST(!result.ok());
            BOOST_TEST_REQUIRE(records.size() == 1u);
            BOOST_TEST(records[0].malformed_reason == result.malformed_reason);
            BOOST_TEST(records[0].fragments().empty());
            BOOST_TEST(result.malformed_offset == 13u);
            const std::string_view expected =
                cut < 12 ? "truncated handshake header" : "handshake fragment past record end";
            BOOST_TEST(result.malformed_reason == expected);
        }
    }
}

BOOST_AUTO_TEST_CASE(length_past_end)
{
    auto datagram = concat({record(content_type::application_data, 1, 0, filler(10)),
                            record(content_type::application_data, 1, 1, filler(10))});
    datagram[23 + 12] = std::byte{11}; // second record claims one byte more than is there
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result);
    BOOST_TEST(result.malformed_reason == "record length past end of datagram");
    BOOST_TEST(result.malformed_offset == 23u);
    BOOST_TEST(records.size() == 1u);
    BOOST_TEST(result.records == 1u);
    BOOST_TEST(dtlspp::describe_datagram(direction::in, datagram) ==
               "<- 46 B  epoch 1 seq 0: ApplicationData (10 B); "
               "malformed (record length past end of datagram at byte 23)");
}

BOOST_AUTO_TEST_CASE(fragment_past_message_length)
{
    const auto bad = fragment(11, 35, 2, 10, filler(30)); // 10 + 30 > 35
    dtlspp::parse_result result;
    const auto lone = handshake_record(0, 0, bad); // views below point into it
    const auto records = records_of(lone, &result);
    BOOST_TEST(result.malformed_reason == "handshake fragment past message length");
    BOOST_TEST_REQUIRE(records.size() == 1u);
    BOOST_TEST(records[0].fragments().empty());

    // A good fragment before the bad one is still visible.
    const auto good = whole_message(2, 1, 5);
    const auto datagram = handshake_record(0, 0, concat({good, bad}));
    const auto mixed = records_of(datagram, &result);
    BOOST_TEST(result.malformed_offset == 13u + good.size());
    BOOST_TEST_REQUIRE(mixed.size() == 1u);
    BOOST_TEST(fragments_of(mixed[0]).size() == 1u);
    BOOST_TEST(dtlspp::describe_datagram(direction::in, datagram) ==
               "<- 72 B  epoch 0 seq 0: ServerHello (msg 1, frag 0+5/5); "
               "malformed (handshake fragment past message length at byte 30)");
}

BOOST_AUTO_TEST_CASE(unknown_content_type_and_bad_plaintext_bodies)
{
    auto datagram = concat({record(content_type::application_data, 1, 0, filler(4)), record(content_type::alert, 0, 0, {})});
    datagram[17] = std::byte{0x40}; // 0x20 to 0x3f start a DTLS 1.3 unified header
    dtlspp::parse_result result;
    BOOST_TEST(records_of(datagram, &result).size() == 1u);
    BOOST_TEST(result.malformed_reason == "unknown content type");
    BOOST_TEST(result.malformed_offset == 17u);

    records_of(record(content_type::alert, 0, 0, {std::byte{2}}), &result);
    BOOST_TEST(result.malformed_reason == "alert record length is not 2");
    records_of(record(content_type::change_cipher_spec, 0, 0, {std::byte{2}}), &result);
    BOOST_TEST(result.malformed_reason == "bad ChangeCipherSpec");
    records_of(handshake_record(0, 0, {}), &result);
    BOOST_TEST(result.malformed_reason == "empty handshake record");
    // Encrypted bodies are opaque, so any size is acceptable.
    records_of(record(content_type::alert, 1, 0, {std::byte{2}}), &result);
    BOOST_TEST(result.ok());
}

BOOST_AUTO_TEST_CASE(random_datagrams_never_escape_bounds)
{
    std::mt19937 random(0x5eed);
    const auto byte_in = [&](unsigned low, unsigned high) {
        return static_cast<std::byte>(std::uniform_int_distribution<unsigned>(low, high)(random));
    };
    // Valid shapes to mutate, so the deep paths get exercised rather than
    // almost everything failing on the content type.
    const std::vector<bytes> templates = {
        handshake_record(0, 0, whole_message(1, 0, 40)),
        handshake_record(0, 1, concat({whole_message(2, 1, 10), fragment(11, 90, 2, 0, filler(30)), whole_message(14, 3, 0)})),
        concat({record(content_type::change_cipher_spec, 0, 2, {std::byte{1}}), handshake_record(1, 0, filler(40))}),
        concat({record(content_type::alert, 0, 3, {std::byte{1}, std::byte{0}}), record(content_type::application_data, 1, 4, filler(9))}),
    };

    dtlspp::flight_tracker tracker;
    std::size_t escapes = 0;
    std::size_t ok_count = 0;
    std::size_t total_records = 0;
    for (int i = 0; i < 100000; ++i) {
        bytes scratch;
        switch (i % 3) {
        case 0: // pure noise
            scratch.resize(std::uniform_int_distribution<std::size_t>(0, 80)(random));
            for (auto& b : scratch)
                b = byte_in(0, 255);
            break;
        case 1: { // a valid datagram with a few bytes changed and maybe cut short
            scratch = templates[static_cast<std::size_t>(i / 3) % templates.size()];
            const int flips = std::uniform_int_distribution<int>(1, 3)(random);
            for (int f = 0; f < flips; ++f)
                scratch[std::uniform_int_distribution<std::size_t>(0, scratch.size() - 1)(random)] = byte_in(0, 255);
            if (random() % 2 == 0)
                scratch.resize(std::uniform_int_distribution<std::size_t>(0, scratch.size())(random));
            break;
        }
        default: // plausible headers with random lengths and small payloads
            for (int r = std::uniform_int_distribution<int>(1, 3)(random); r > 0; --r) {
                scratch.push_back(byte_in(20, 24));
                for (int h = 0; h < 10; ++h)
                    scratch.push_back(byte_in(0, 1));
                scratch.push_back(std::byte{0});
                scratch.push_back(byte_in(0, 40));
                for (int p = std::uniform_int_distribution<int>(0, 40)(random); p > 0; --p)
                    scratch.push_back(byte_in(0, 30));
            }
            break;
        }
        // Exact-size buffer so a sanitizer build sees any overread.
        const bytes datagram(scratch.begin(), scratch.end());
        const auto* begin = datagram.data();
        const auto* end = begin + datagram.size();
        const auto inside = [&](std::span<const std::byte> view) {
            return view.empty() || (std::less_equal<>()(begin, view.data()) &&
                                    std::less_equal<>()(view.data() + view.size(), end));
        };
        const auto result = dtlspp::parse_datagram(datagram, [&](const dtlspp::record_view& record) {
            ++total_records;
            if (!inside(record.payload))
                ++escapes;
            for (const auto f : record.fragments())
                if (!inside(f.body) || f.fragment_offset + f.fragment_length > f.length)
                    ++escapes;
        });
        if (result.ok())
            ++ok_count;
        if (result.malformed_offset > datagram.size())
            ++escapes;
        BOOST_TEST_REQUIRE(!dtlspp::describe_datagram(i % 2 ? direction::in : direction::out, datagram).empty());
        tracker.observe(i % 5 < 2 ? direction::in : direction::out, datagram);
    }
    BOOST_TEST(escapes == 0u);
    // Guard against a generator that never reaches the interesting paths.
    BOOST_TEST(ok_count > 1000u);
    BOOST_TEST(total_records > 30000u);
    BOOST_TEST(tracker.flights().size() > 1000u);
}

BOOST_AUTO_TEST_CASE(flights_and_retransmissions)
{
    // Client retransmits its first ClientHello once before the server answers.
    const auto client_hello_0 = handshake_record(0, 0, whole_message(1, 0, 100));
    const auto client_hello_0_again = handshake_record(0, 1, whole_message(1, 0, 100));
    const auto hello_verify = handshake_record(0, 0, whole_message(3, 0, 23));
    const auto client_hello_1 = handshake_record(0, 2, whole_message(1, 1, 132));
    // Server flight across three datagrams, Certificate split in two.
    const auto server_1 = concat({handshake_record(0, 1, whole_message(2, 1, 70)),
                                  handshake_record(0, 2, fragment(11, 900, 2, 0, filler(500)))});
    const auto server_2 = handshake_record(0, 3, fragment(11, 900, 2, 500, filler(400)));
    const auto server_3 = handshake_record(0, 4, concat({whole_message(12, 3, 300), whole_message(14, 4, 0)}));
    // Server retransmission with new record sequence numbers.
    const auto server_1_again = concat({handshake_record(0, 5, whole_message(2, 1, 70)),
                                        handshake_record(0, 6, fragment(11, 900, 2, 0, filler(500)))});
    const auto client_finish = concat({handshake_record(0, 3, whole_message(16, 2, 66)),
                                       record(content_type::change_cipher_spec, 0, 4, {std::byte{1}}),
                                       handshake_record(1, 0, filler(40))});
    const auto server_finish =
        concat({record(content_type::change_cipher_spec, 0, 7, {std::byte{1}}), handshake_record(1, 0, filler(40))});
    const auto data = record(content_type::application_data, 1, 1, filler(29));

    dtlspp::flight_tracker tracker;
    tracker.observe(direction::out, client_hello_0);
    tracker.observe(direction::out, client_hello_0_again);
    tracker.observe(direction::in, hello_verify);
    tracker.observe(direction::out, client_hello_1);
    for (const auto* datagram : {&server_1, &server_2, &server_3, &server_1_again})
        tracker.observe(direction::in, *datagram);
    tracker.observe(direction::out, client_finish);
    tracker.observe(direction::in, server_finish);
    tracker.observe(direction::out, data);

    const auto& flights = tracker.flights();
    BOOST_TEST_REQUIRE(flights.size() == 7u);
    BOOST_TEST(flights[0].datagrams == 2u);
    BOOST_TEST(flights[0].retransmissions == 1u);
    BOOST_TEST(describe_flight(flights[0]) ==
               "flight 1 (->): 2 datagrams, 250 B, 2 records, 1 retransmission: ClientHello");
    // The second ClientHello has a new message_seq, so it is not a repeat,
    // and the server's message_seq 0 does not collide with the client's.
    BOOST_TEST(flights[1].retransmissions == 0u);
    BOOST_TEST(flights[2].retransmissions == 0u);

    const auto& server = flights[3];
    BOOST_TEST(server.number == 4u);
    BOOST_TEST((server.dir == direction::in));
    BOOST_TEST(server.datagrams == 4u);
    BOOST_TEST(server.bytes == server_1.size() + server_2.size() + server_3.size() + server_1_again.size());
    BOOST_TEST(server.records == 6u);
    BOOST_TEST(server.retransmissions == 2u);
    BOOST_TEST(describe_flight(server) == "flight 4 (<-): 4 datagrams, " + std::to_string(server.bytes) +
                                              " B, 6 records, 2 retransmissions: ServerHello Certificate "
                                              "ServerKeyExchange ServerHelloDone");

    BOOST_TEST(describe_flight(flights[4]) == "flight 5 (->): 1 datagram, " + std::to_string(client_finish.size()) +
                                                  " B, 3 records, 0 retransmissions: ClientKeyExchange "
                                                  "ChangeCipherSpec EncryptedHandshake");
    BOOST_TEST(flights[5].messages.size() == 2u);
    BOOST_TEST(flights[6].messages.at(0) == "ApplicationData");
    BOOST_TEST(tracker.retransmissions() == 3u);
}

BOOST_AUTO_TEST_CASE(malformed_datagram_counted_in_flight)
{
    dtlspp::flight_tracker tracker;
    tracker.observe(direction::in, bytes{std::byte{22}, std::byte{0xfe}});
    BOOST_TEST_REQUIRE(tracker.flights().size() == 1u);
    BOOST_TEST(tracker.flights()[0].malformed_datagrams == 1u);
    BOOST_TEST(describe_flight(tracker.flights()[0]) ==
               "flight 1 (<-): 1 datagram, 2 B, 0 records, 0 retransmissions, 1 malformed");
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_parses_with_the_negotiated_length)
{
    const auto datagram = cid_record(1, 3, four_byte_cid, filler(29));
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result, four_byte_cid.size());
    BOOST_TEST(result.ok());
    BOOST_TEST(result.records == 1u);
    BOOST_TEST_REQUIRE(records.size() == 1u);
    const auto& r = records[0];
    BOOST_TEST((r.type == content_type::tls12_cid));
    BOOST_TEST(r.version == 0xfefd);
    BOOST_TEST(r.epoch == 1);
    BOOST_TEST(r.sequence_number == 3u);
    BOOST_TEST(r.length == 29);
    BOOST_TEST(r.offset == 0u);
    BOOST_TEST(r.header_size() == 17u);
    BOOST_TEST(r.connection_id.data() == datagram.data() + 11);
    BOOST_TEST(bytes(r.connection_id.begin(), r.connection_id.end()) == four_byte_cid);
    BOOST_TEST(r.payload.data() == datagram.data() + 17);
    BOOST_TEST(r.payload.size() == 29u);
    BOOST_TEST(r.malformed_reason.empty());
    BOOST_TEST(r.is_encrypted());
    BOOST_TEST(r.fragments().empty());
    BOOST_TEST(!r.alert().has_value());
    BOOST_TEST(dtlspp::describe_datagram(direction::in, datagram, four_byte_cid.size()) ==
               "<- 46 B  epoch 1 seq 3 cid 0a1b2c3d: encrypted record (29 B)");
}

BOOST_AUTO_TEST_CASE(records_without_a_connection_id_are_unchanged_when_one_is_negotiated)
{
    // Only tls12_cid records carry the CID; a plain record parses as before.
    const auto datagram = record(content_type::application_data, 1, 1, filler(29));
    const auto records = records_of(datagram, nullptr, 4);
    BOOST_TEST_REQUIRE(records.size() == 1u);
    BOOST_TEST(records[0].connection_id.empty());
    BOOST_TEST(records[0].header_size() == 13u);
    BOOST_TEST(records[0].payload.size() == 29u);
    BOOST_TEST(dtlspp::describe_datagram(direction::out, datagram, 4) == "-> 42 B  epoch 1 seq 1: ApplicationData (29 B)");
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_without_a_negotiated_connection_id_is_malformed)
{
    const auto datagram = concat({record(content_type::application_data, 1, 0, filler(10)),
                                  cid_record(1, 3, four_byte_cid, filler(29))});
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result);
    BOOST_TEST(result.malformed_reason == "Connection ID record, but no Connection ID negotiated");
    BOOST_TEST(result.malformed_offset == 23u);
    BOOST_TEST(records.size() == 1u);
    BOOST_TEST(dtlspp::describe_datagram(direction::in, datagram) ==
               "<- 69 B  epoch 1 seq 0: ApplicationData (10 B); "
               "malformed (Connection ID record, but no Connection ID negotiated at byte 23)");
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_read_with_the_wrong_length_is_malformed)
{
    // One byte short: the length is read from the CID's last byte and the
    // length's first (0x3d00). One byte long: from the length's second byte
    // and the payload's first (0x1d00). Neither fits in the datagram.
    const auto datagram = cid_record(1, 3, four_byte_cid, filler(29));
    for (const std::size_t wrong : {3u, 5u}) {
        BOOST_TEST_CONTEXT("CID length " << wrong)
        {
            dtlspp::parse_result result;
            BOOST_TEST(records_of(datagram, &result, wrong).empty());
            BOOST_TEST(result.malformed_reason == "record length past end of datagram");
            BOOST_TEST(result.malformed_offset == 0u);
        }
    }
    // A CID longer than the datagram is a truncated header, and no length
    // can overflow the header arithmetic.
    for (const std::size_t wrong : {std::size_t{34}, std::size_t{100}, SIZE_MAX}) {
        dtlspp::parse_result result;
        BOOST_TEST(records_of(datagram, &result, wrong).empty());
        BOOST_TEST(result.malformed_reason == "truncated record header");
    }
}

BOOST_AUTO_TEST_CASE(a_connection_id_record_at_epoch_0_is_malformed)
{
    const auto datagram = cid_record(0, 3, four_byte_cid, filler(29));
    dtlspp::parse_result result;
    BOOST_TEST(records_of(datagram, &result, four_byte_cid.size()).empty());
    BOOST_TEST(result.malformed_reason == "Connection ID record at epoch 0");
    BOOST_TEST(result.malformed_offset == 0u);
    BOOST_TEST(dtlspp::describe_datagram(direction::in, datagram, four_byte_cid.size()) ==
               "<- 46 B  malformed (Connection ID record at epoch 0 at byte 0)");
}

BOOST_AUTO_TEST_CASE(plaintext_handshake_then_connection_id_record_in_one_datagram)
{
    // A client's last flight once CIDs are negotiated: epoch 0 records carry
    // none, the encrypted Finished carries the server's.
    const auto datagram = concat({handshake_record(0, 5, whole_message(16, 2, 66)),
                                  record(content_type::change_cipher_spec, 0, 6, {std::byte{1}}),
                                  cid_record(1, 0, four_byte_cid, filler(40))});
    dtlspp::parse_result result;
    const auto records = records_of(datagram, &result, four_byte_cid.size());
    BOOST_TEST(result.ok());
    BOOST_TEST_REQUIRE(records.size() == 3u);
    BOOST_TEST(records[0].connection_id.empty());
    BOOST_TEST(fragments_of(records[0]).size() == 1u);
    BOOST_TEST(records[1].connection_id.empty());
    BOOST_TEST((records[2].type == content_type::tls12_cid));
    BOOST_TEST(records[2].offset == 105u);
    BOOST_TEST(records[2].connection_id.data() == datagram.data() + 105 + 11);
    BOOST_TEST(records[2].payload.data() == datagram.data() + 105 + 17);
    BOOST_TEST(records[2].payload.size() == 40u);
    BOOST_TEST(dtlspp::describe_datagram(direction::out, datagram, four_byte_cid.size()) ==
               "-> 162 B  epoch 0 seq 5: ClientKeyExchange (msg 2, frag 0+66/66); epoch 0 seq 6: ChangeCipherSpec; "
               "epoch 1 seq 0 cid 0a1b2c3d: encrypted record (40 B)");
}

BOOST_AUTO_TEST_CASE(every_truncation_of_a_connection_id_datagram_stays_in_bounds)
{
    const auto whole = concat({record(content_type::change_cipher_spec, 0, 6, {std::byte{1}}),
                               cid_record(1, 0, four_byte_cid, filler(40)), cid_record(1, 1, four_byte_cid, filler(25))});
    for (std::size_t cut = 0; cut <= whole.size(); ++cut) {
        BOOST_TEST_CONTEXT("cut at " << cut)
        {
            // Exact-size copy so a sanitizer would catch any read past the end.
            const bytes truncated(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut));
            const auto* begin = truncated.data();
            const auto* end = begin + truncated.size();
            const auto inside = [&](std::span<const std::byte> view) {
                return view.empty() || (std::less_equal<>()(begin, view.data()) &&
                                        std::less_equal<>()(view.data() + view.size(), end));
            };
            std::size_t records = 0;
            const auto result = dtlspp::parse_datagram(
                truncated,
                [&](const dtlspp::record_view& r) {
                    ++records;
                    BOOST_TEST(inside(r.payload));
                    BOOST_TEST(inside(r.connection_id));
                    BOOST_TEST(r.offset + r.header_size() + r.payload.size() <= truncated.size());
                },
                four_byte_cid.size());
            BOOST_TEST(result.malformed_offset <= truncated.size());
            // Where the cut lands within the record it spoils.
            const auto record_start = cut <= 14 ? 0u : cut <= 14 + 57 ? 14u : 14u + 57u;
            const auto within = cut - record_start;
            if (cut == 0) {
                BOOST_TEST(result.malformed_reason == "empty datagram");
            } else if (cut == 14 || cut == 14 + 57 || cut == whole.size()) {
                BOOST_TEST(result.ok());
            } else if (within < 13 || (record_start != 0 && within < 17)) {
                BOOST_TEST(result.malformed_reason == "truncated record header");
                BOOST_TEST(result.malformed_offset == record_start);
            } else {
                BOOST_TEST(result.malformed_reason == "record length past end of datagram");
                BOOST_TEST(result.malformed_offset == record_start);
            }
            BOOST_TEST(records == result.records);
            BOOST_TEST(!dtlspp::describe_datagram(direction::in, truncated, four_byte_cid.size()).empty());
        }
    }
}

BOOST_AUTO_TEST_CASE(random_connection_id_datagrams_never_escape_bounds)
{
    std::mt19937 random(0xc1d);
    const auto pick = [&](std::size_t low, std::size_t high) {
        return std::uniform_int_distribution<std::size_t>(low, high)(random);
    };
    std::size_t escapes = 0;
    std::size_t cid_records = 0;
    for (int i = 0; i < 20000; ++i) {
        // A valid datagram for some CID length, read with that length or a
        // nearby wrong one, after a few byte flips and maybe a cut.
        const std::size_t cid_length = pick(1, 8);
        bytes scratch = concat({cid_record(1, 0, filler(cid_length, 0xc0), filler(pick(0, 40))),
                                cid_record(1, 1, filler(cid_length, 0xd0), filler(pick(0, 40)))});
        for (std::size_t f = pick(0, 3); f > 0; --f)
            scratch[pick(0, scratch.size() - 1)] = static_cast<std::byte>(pick(0, 255));
        if (i % 2 == 0)
            scratch.resize(pick(0, scratch.size()));
        const std::size_t read_length = i % 3 == 0 ? pick(0, 10) : cid_length;
        const bytes datagram(scratch.begin(), scratch.end());
        const auto* begin = datagram.data();
        const auto* end = begin + datagram.size();
        const auto inside = [&](std::span<const std::byte> view) {
            return view.empty() || (std::less_equal<>()(begin, view.data()) &&
                                    std::less_equal<>()(view.data() + view.size(), end));
        };
        const auto result = dtlspp::parse_datagram(
            datagram,
            [&](const dtlspp::record_view& r) {
                if (r.type == content_type::tls12_cid) {
                    ++cid_records;
                    if (r.connection_id.size() != read_length || r.epoch == 0)
                        ++escapes;
                }
                if (!inside(r.payload) || !inside(r.connection_id))
                    ++escapes;
            },
            read_length);
        if (result.malformed_offset > datagram.size())
            ++escapes;
        BOOST_TEST_REQUIRE(!dtlspp::describe_datagram(direction::in, datagram, read_length).empty());
    }
    BOOST_TEST(escapes == 0u);
    BOOST_TEST(cid_records > 5000u);
}

BOOST_AUTO_TEST_CASE(flight_tracker_counts_connection_id_records_as_protected_records)
{
    const auto client_finish = concat({handshake_record(0, 5, whole_message(16, 2, 66)),
                                       record(content_type::change_cipher_spec, 0, 6, {std::byte{1}}),
                                       cid_record(1, 0, four_byte_cid, filler(40))});
    // The server asked for no CID of its own here, so what it sends carries
    // none, while what it receives carries the one it chose.
    const auto server_finish =
        concat({record(content_type::change_cipher_spec, 0, 7, {std::byte{1}}), handshake_record(1, 0, filler(40))});
    const auto data = cid_record(1, 1, four_byte_cid, filler(29));

    dtlspp::flight_tracker tracker;
    tracker.observe(direction::out, client_finish, four_byte_cid.size());
    tracker.observe(direction::in, server_finish);
    tracker.observe(direction::out, data, four_byte_cid.size());
    // Read without the CID length, the same datagram is malformed.
    tracker.observe(direction::out, data);

    const auto& flights = tracker.flights();
    BOOST_TEST_REQUIRE(flights.size() == 3u);
    BOOST_TEST(flights[0].records == 3u);
    BOOST_TEST(flights[0].malformed_datagrams == 0u);
    BOOST_TEST(describe_flight(flights[0]) == "flight 1 (->): 1 datagram, 162 B, 3 records, 0 retransmissions: "
                                              "ClientKeyExchange ChangeCipherSpec ConnectionID");
    BOOST_TEST(flights[1].malformed_datagrams == 0u);
    BOOST_TEST(describe_flight(flights[2]) ==
               "flight 3 (->): 2 datagrams, 92 B, 1 record, 0 retransmissions, 1 malformed: ConnectionID");
}
