#define BOOST_TEST_MODULE trace
#include <boost/test/unit_test.hpp>

#include <dtlspp/trace.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <ranges>
#include <span>
#include <string>
#include <vector>

namespace {

using bytes = std::vector<std::byte>;

void put(bytes& out, std::uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; --i)
        out.push_back(static_cast<std::byte>(value >> (8 * i)));
}

bytes filler(std::size_t size, unsigned seed = 0)
{
    bytes out(size);
    for (std::size_t i = 0; i < size; ++i)
        out[i] = static_cast<std::byte>(seed + i * 7);
    return out;
}

bytes concat(std::initializer_list<bytes> parts)
{
    bytes out;
    for (const auto& part : parts)
        out.insert(out.end(), part.begin(), part.end());
    return out;
}

// A handshake fragment header plus body; fragment_length is the body size.
bytes fragment(std::uint8_t msg_type, std::uint32_t length, std::uint16_t message_seq, std::uint32_t offset,
               const bytes& body)
{
    bytes out;
    put(out, msg_type, 1);
    put(out, length, 3);
    put(out, message_seq, 2);
    put(out, offset, 3);
    put(out, body.size(), 3);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

bytes whole_message(std::uint8_t msg_type, std::uint16_t message_seq, std::size_t size)
{
    return fragment(msg_type, static_cast<std::uint32_t>(size), message_seq, 0, filler(size, msg_type));
}

bytes record(dtlspp::content_type type, std::uint16_t epoch, std::uint64_t sequence, const bytes& payload)
{
    bytes out;
    put(out, static_cast<std::uint8_t>(type), 1);
    put(out, 0xfefd, 2);
    put(out, epoch, 2);
    put(out, sequence, 6);
    put(out, payload.size(), 2);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

bytes handshake_record(std::uint16_t epoch, std::uint64_t sequence, const bytes& payload)
{
    return record(dtlspp::content_type::handshake, epoch, sequence, payload);
}

std::vector<dtlspp::record_view> records_of(std::span<const std::byte> datagram, dtlspp::parse_result* result = nullptr)
{
    std::vector<dtlspp::record_view> records;
    const auto parsed = dtlspp::parse_datagram(datagram, [&](const dtlspp::record_view& r) { records.push_back(r); });
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

} // namespace

BOOST_AUTO_TEST_CASE(names)
{
    BOOST_TEST(dtlspp::content_type_name(20) == "ChangeCipherSpec");
    BOOST_TEST(dtlspp::content_type_name(23) == "ApplicationData");
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
    datagram[17] = std::byte{0x30};
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
