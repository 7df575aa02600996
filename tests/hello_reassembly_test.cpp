// Fragmented ClientHellos at server<Backend>'s front door, typed over every
// backend: a client's hello split into 2, 3 or many fragments, in order or
// not, overlapping, duplicated, packed into records and datagrams in every
// way RFC 6347 §4.2.3 allows, completes the handshake; fragments that
// contradict each other, claim a huge message or flood the table from many
// addresses are refused, counted, and cost a bounded amount of memory.
#define BOOST_TEST_MODULE hello_reassembly
#include <boost/test/unit_test.hpp>

#include "backends.hpp"

#include "support/forge.hpp"
#include "support/harness.hpp"

#include <dtlspp/detail/hello_reassembly.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <vector>

// Counts every C++ heap allocation, for the test that a flood of fragments
// allocates nothing.
#include "support/counting_new.hpp"

using namespace dtlspp;
using namespace dtlspp::test;

namespace {

// ---------------------------------------------------------------------------
// Splitting a ClientHello.

// A whole ClientHello as one client sent it, in one record.
struct client_hello {
    std::uint16_t record_version = 0;
    std::uint64_t sequence_number = 0;
    std::uint16_t message_seq = 0;
    bytes body;
};

// The ClientHello a datagram carries, when it is one record holding one
// whole ClientHello (what every client here sends).
std::optional<client_hello> whole_client_hello(std::span<const std::byte> datagram)
{
    std::optional<client_hello> found;
    parse_datagram(datagram, [&](const record_view& r) {
        if (r.epoch != 0 || r.type != content_type::handshake) return;
        for (const auto fragment : r.fragments()) {
            if (fragment.msg_type != static_cast<std::uint8_t>(handshake_type::client_hello) ||
                !fragment.is_whole_message())
                continue;
            found = client_hello{r.version, r.sequence_number, fragment.message_seq,
                                 bytes(fragment.body.begin(), fragment.body.end())};
        }
    });
    return found;
}

void put(bytes& out, std::uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; --i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
}

// One handshake fragment of `hello`: bytes [offset, offset + length) of its
// body, under a header that may lie about the message.
struct piece {
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
    std::optional<std::uint32_t> claimed_length{};     // default: the real one
    std::optional<std::uint16_t> claimed_message_seq{}; // default: the real one
    std::optional<std::uint32_t> flipped_byte{};        // a body byte to corrupt, as an index into the body
};

void append_fragment(bytes& out, const client_hello& hello, const piece& p)
{
    put(out, static_cast<std::uint8_t>(handshake_type::client_hello), 1);
    put(out, p.claimed_length.value_or(static_cast<std::uint32_t>(hello.body.size())), 3);
    put(out, p.claimed_message_seq.value_or(hello.message_seq), 2);
    put(out, p.offset, 3);
    put(out, p.length, 3);
    for (std::uint32_t i = p.offset; i < p.offset + p.length; ++i) {
        auto b = hello.body[i];
        if (p.flipped_byte == i) b ^= std::byte{0x5a};
        out.push_back(b);
    }
}

void append_record(bytes& out, const client_hello& hello, std::uint64_t sequence_number,
                   const std::vector<piece>& pieces)
{
    bytes payload;
    for (const auto& p : pieces) append_fragment(payload, hello, p);
    put(out, static_cast<std::uint8_t>(content_type::handshake), 1);
    put(out, hello.record_version, 2);
    put(out, 0, 2); // epoch
    put(out, sequence_number, 6);
    put(out, payload.size(), 2);
    out.insert(out.end(), payload.begin(), payload.end());
}

// How a hello is cut up and packed: datagrams, each of records, each of
// pieces.
using record_plan = std::vector<piece>;
using datagram_plan = std::vector<record_plan>;
using split_plan = std::vector<datagram_plan>;

// The datagrams a plan makes of `hello`. Records are numbered from the
// hello's own record sequence number upwards, in the order they are sent,
// as a client's would be.
std::vector<bytes> split(const client_hello& hello, const split_plan& plan)
{
    std::vector<bytes> datagrams;
    auto sequence_number = hello.sequence_number;
    for (const auto& datagram : plan) {
        bytes d;
        for (const auto& record : datagram) append_record(d, hello, sequence_number++, record);
        datagrams.push_back(std::move(d));
    }
    return datagrams;
}

// One fragment per datagram and record.
split_plan one_per_datagram(const std::vector<piece>& pieces)
{
    split_plan plan;
    for (const auto& p : pieces) plan.push_back({{p}});
    return plan;
}

// [0, length) cut into `count` pieces of nearly equal size, in order.
std::vector<piece> equal_pieces(std::uint32_t length, std::uint32_t count)
{
    std::vector<piece> pieces;
    for (std::uint32_t i = 0; i < count; ++i) {
        const auto from = length * i / count, to = length * (i + 1) / count;
        pieces.push_back({from, to - from});
    }
    return pieces;
}

using plan_for_length = std::function<split_plan(std::uint32_t body_length)>;

// ---------------------------------------------------------------------------
// A client endpoint and a server<Backend>, with every ClientHello the client
// sends split by a plan before the server sees it.

template <class Backend>
class split_hello_run {
public:
    struct echo_handler {
        server<Backend>* srv = nullptr;
        test_clock* time = nullptr;
        std::size_t opened = 0;
        std::vector<std::string> failures;
        void on_open(const peer_address&) { ++opened; }
        void on_data(const peer_address& from, std::span<const std::byte> data)
        {
            std::error_code ec;
            srv->send(from, data, time->now(), ec);
        }
        void on_close(const peer_address&, const failure& f) { failures.push_back(f.what()); }
    };

    peer_address client_address = peer_address::parse("127.0.0.1:50000");
    std::size_t hellos_split = 0;
    std::vector<std::string> received;

    split_hello_run(server<Backend>& srv, plan_for_length plan) : srv_(srv), plan_(std::move(plan))
    {
        time_.is_virtual = runs_on_virtual_time<Backend>;
        handler_.srv = &srv_;
        handler_.time = &time_;
    }

    // Runs the handshake to its end, bounded, then echoes one line. True
    // when both sides opened and the line came back.
    bool connect_and_echo()
    {
        failure f;
        auto c = endpoint<Backend>::connect(client_config(), time_.now(), f);
        BOOST_REQUIRE_MESSAGE(c, f.what());
        client_.emplace(std::move(*c));
        run_until([&] { return client_->state() != endpoint_state::handshaking && handler_.opened > 0; });
        if (!client_->is_open() || handler_.opened != 1) return false;
        client_->send(as_bytes(std::string("reassembled")), time_.now());
        run_until([&] { return !received.empty(); });
        return received.size() == 1 && received[0] == "reassembled";
    }

    // Between two client datagrams (used to interleave a flood).
    std::function<void()> between_datagrams = [] {};

    const endpoint<Backend>& client() const { return *client_; }
    const echo_handler& handler() const { return handler_; }

private:
    template <class Done>
    void run_until(Done done)
    {
        const auto give_up = time_.now() + std::chrono::seconds(10);
        while (!done() && time_.now() < give_up) {
            if (pump()) continue;
            auto next = give_up;
            if (auto d = client_->next_deadline()) next = std::min(next, *d);
            if (auto d = srv_.next_deadline()) next = std::min(next, *d);
            time_.wait_until(next);
            client_->on_timeout(time_.now());
            srv_.on_timeout(time_.now(), handler_);
        }
    }

    bool pump()
    {
        bool moved = false;
        for (int round = 0; round < 1000; ++round) {
            std::vector<bytes> up, down;
            client_->drain([&](std::span<const std::byte> d) { up.emplace_back(d.begin(), d.end()); });
            srv_.drain([&](const peer_address& to, std::span<const std::byte> d) {
                if (to == client_address) down.emplace_back(d.begin(), d.end());
            });
            if (up.empty() && down.empty()) break;
            moved = true;
            for (const auto& d : up) {
                if (auto hello = whole_client_hello(d)) {
                    ++hellos_split;
                    hello->sequence_number += records_added_;
                    const auto plan = plan_(static_cast<std::uint32_t>(hello->body.size()));
                    for (const auto& fragment : split(*hello, plan)) {
                        between_datagrams();
                        srv_.receive(client_address, fragment, time_.now(), handler_);
                    }
                    records_added_ += records_in(plan) - 1;
                    continue;
                }
                between_datagrams();
                srv_.receive(client_address, renumbered(d), time_.now(), handler_);
            }
            for (const auto& d : down)
                client_->receive(d, time_.now(), [&](std::span<const std::byte> data) { received.push_back(as_string(data)); });
        }
        return moved;
    }

    // A client that fragments its hello itself numbers each fragment's
    // record, and its later records count on from the last of them; the
    // server's stack may refuse a record numbered below the verified hello
    // as a replay (wolfSSL marks all of them read when it turns stateful).
    // The client here sent each hello as one record, so every plaintext
    // record it sends later is moved up by the records a split added.
    // Encrypted records keep their numbers: their epochs count on their own.
    bytes renumbered(std::span<const std::byte> datagram) const
    {
        if (records_added_ == 0) return bytes(datagram.begin(), datagram.end());
        auto records = forge::split_records(datagram);
        for (auto& r : records)
            if (r.epoch == 0 && !r.unified) r.raw = forge::with_sequence(r.raw, r.sequence + records_added_);
        return forge::join_records(records);
    }

    static std::uint64_t records_in(const split_plan& plan)
    {
        std::uint64_t n = 0;
        for (const auto& datagram : plan) n += datagram.size();
        return n;
    }

    server<Backend>& srv_;
    plan_for_length plan_;
    std::uint64_t records_added_ = 0;
    test_clock time_;
    std::optional<endpoint<Backend>> client_;
    echo_handler handler_;
};

template <class Backend>
server<Backend> make_server(server_settings settings = {})
{
    failure f;
    auto s = server<Backend>::create(server_config(), settings, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    return std::move(*s);
}

// Splits both of the client's ClientHellos (the cookieless one and the one
// carrying the cookie) by `plan` and checks the handshake completes, the
// echo comes back, and both hellos were reassembled and handed over once.
// `stale_partial_hellos`: late copies that outlive the hello they belong to,
// each dropped (and counted as inconsistent) when the next hello starts.
template <class Backend>
void check_handshake_completes(const plan_for_length& plan, std::uint64_t stale_partial_hellos = 0)
{
    auto srv = make_server<Backend>();
    split_hello_run<Backend> run(srv, plan);
    const bool echoed = run.connect_and_echo();
    BOOST_TEST(echoed);
    BOOST_TEST(run.client().is_open());
    BOOST_TEST(run.hellos_split == 2u);
    const auto& k = srv.counters();
    BOOST_TEST(k.fragmented_hellos_completed == 2u);
    BOOST_TEST(k.hello_verify_requests == 1u);
    BOOST_TEST(k.sessions_created == 1u);
    BOOST_TEST(k.fragmented_hellos_inconsistent == stale_partial_hellos);
    BOOST_TEST(k.fragmented_hellos_evicted == 0u);
    BOOST_TEST(run.handler().failures.empty());
}

// ---------------------------------------------------------------------------
// Sans-I/O helpers for the hostile cases.

template <class Backend>
client_hello a_client_hello()
{
    failure f;
    auto e = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(e, f.what());
    BOOST_REQUIRE_EQUAL(e->pending().size(), 1u);
    const auto hello = whole_client_hello(e->pending()[0]);
    BOOST_REQUIRE(hello);
    return *hello;
}

// The datagrams the server sends after receiving `datagram` from `from`.
template <class Backend>
std::size_t answers_to(server<Backend>& srv, const peer_address& from, std::span<const std::byte> datagram)
{
    srv.receive(from, datagram, clock::now());
    std::size_t answers = 0;
    srv.drain([&](const peer_address& to, std::span<const std::byte>) { answers += to == from ? 1 : 0; });
    return answers;
}

bytes one_fragment(const client_hello& hello, const piece& p)
{
    bytes d;
    append_record(d, hello, hello.sequence_number, {p});
    return d;
}

peer_address address_number(std::size_t n)
{
    return peer_address::parse("10.1." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1) + ":4000");
}

} // namespace

// ---------------------------------------------------------------------------
// (a) Reassembly: every way a client may fragment its hello.

BOOST_AUTO_TEST_CASE_TEMPLATE(a_hello_in_two_fragments_completes_the_handshake, Backend, all_backends)
{
    check_handshake_completes<Backend>([](std::uint32_t length) { return one_per_datagram(equal_pieces(length, 2)); });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_hello_in_three_fragments_out_of_order_completes_the_handshake, Backend, all_backends)
{
    check_handshake_completes<Backend>([](std::uint32_t length) {
        const auto p = equal_pieces(length, 3);
        return one_per_datagram({p[2], p[0], p[1]});
    });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_hello_in_many_small_fragments_completes_the_handshake, Backend, all_backends)
{
    // 24 fragments of about 10 bytes: the cookie falls in a late one, where
    // a stack that reads only the first fragment cannot see it.
    check_handshake_completes<Backend>([](std::uint32_t length) { return one_per_datagram(equal_pieces(length, 24)); });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_hello_in_many_fragments_last_first_completes_the_handshake, Backend, all_backends)
{
    check_handshake_completes<Backend>([](std::uint32_t length) {
        auto p = equal_pieces(length, 12);
        std::reverse(p.begin(), p.end());
        return one_per_datagram(p);
    });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(overlapping_fragments_that_agree_complete_the_handshake, Backend, all_backends)
{
    check_handshake_completes<Backend>([](std::uint32_t length) {
        const std::uint32_t half = length / 2;
        return one_per_datagram({{length / 4, 20}, {0, half + 10}, {half - 10, length - (half - 10)}});
    });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(duplicated_fragments_complete_the_handshake, Backend, all_backends)
{
    // A copy before the hello is whole, and one after it. The late copy of
    // the cookieless hello's first half starts a partial hello, which the
    // next hello's first fragment replaces without being lost; the late
    // copy of the second hello's reaches the new association, whose stack
    // takes it for a retransmission.
    check_handshake_completes<Backend>(
        [](std::uint32_t length) {
            const auto p = equal_pieces(length, 2);
            return one_per_datagram({p[0], p[0], p[1], p[0]});
        },
        1);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fragments_in_their_own_records_sharing_a_datagram_complete_the_handshake, Backend,
                              all_backends)
{
    check_handshake_completes<Backend>([](std::uint32_t length) {
        const auto p = equal_pieces(length, 4);
        return split_plan{{{p[1]}, {p[0]}}, {{p[3]}, {p[2]}}};
    });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(every_fragment_in_one_datagram_completes_the_handshake, Backend, all_backends)
{
    check_handshake_completes<Backend>([](std::uint32_t length) {
        const auto p = equal_pieces(length, 3);
        return split_plan{{{p[2]}, {p[0]}, {p[1]}}};
    });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(several_fragments_in_one_record_complete_the_handshake, Backend, all_backends)
{
    check_handshake_completes<Backend>([](std::uint32_t length) {
        const auto p = equal_pieces(length, 5);
        return split_plan{{{p[0], p[3]}}, {{p[4], p[1], p[2]}}};
    });
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_whole_hello_never_enters_the_table, Backend, all_backends)
{
    pipe_pair<Backend> p(server_config(), client_config(), runs_on_virtual_time<Backend>);
    failure f;
    BOOST_REQUIRE_MESSAGE(p.start(f), f.what());
    p.run_handshake();
    BOOST_REQUIRE(p.client().is_open());
    const auto& k = p.srv().counters();
    BOOST_TEST(k.fragmented_hellos_started == 0u);
    BOOST_TEST(k.fragmented_hellos_completed == 0u);
    BOOST_TEST(k.hello_verify_requests == 1u);
}

// ---------------------------------------------------------------------------
// The reassembled record itself.

BOOST_AUTO_TEST_CASE_TEMPLATE(the_reassembled_hello_is_one_whole_fragment_under_the_highest_record_number, Backend,
                              all_backends)
{
    const auto hello = a_client_hello<Backend>();
    const auto length = static_cast<std::uint32_t>(hello.body.size());
    const auto p = equal_pieces(length, 3);
    detail::hello_reassembly table(4, 4096);
    server_counters k;
    const auto from = peer_address::parse("127.0.0.1:1");
    // Sent with record numbers 7, 9 and 8: the last to arrive is not the
    // highest.
    bytes d;
    append_record(d, hello, 7, {p[0]});
    BOOST_TEST((table.offer(from, d, k) == detail::hello_offer::incomplete));
    d.clear();
    append_record(d, hello, 9, {p[2]});
    BOOST_TEST((table.offer(from, d, k) == detail::hello_offer::incomplete));
    d.clear();
    append_record(d, hello, 8, {p[1]});
    BOOST_REQUIRE((table.offer(from, d, k) == detail::hello_offer::complete));

    std::vector<record_view> records;
    std::vector<handshake_fragment> fragments;
    const auto parsed = parse_datagram(table.assembled(), [&](const record_view& r) {
        records.push_back(r);
        for (const auto fragment : r.fragments()) fragments.push_back(fragment);
    });
    BOOST_TEST(parsed.ok());
    BOOST_REQUIRE_EQUAL(records.size(), 1u);
    BOOST_TEST(records[0].sequence_number == 9u);
    BOOST_TEST(records[0].epoch == 0u);
    BOOST_TEST(records[0].version == hello.record_version);
    BOOST_REQUIRE_EQUAL(fragments.size(), 1u);
    BOOST_TEST(fragments[0].is_whole_message());
    BOOST_TEST(fragments[0].length == length);
    BOOST_TEST(fragments[0].message_seq == hello.message_seq);
    BOOST_TEST(std::equal(fragments[0].body.begin(), fragments[0].body.end(), hello.body.begin(), hello.body.end()));
    BOOST_TEST(k.fragmented_hellos_started == 1u);
    BOOST_TEST(k.fragmented_hellos_completed == 1u);
    BOOST_TEST(table.partial_hellos() == 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(the_hello_verify_request_echoes_the_highest_record_number_of_the_hello, Backend,
                              all_backends)
{
    auto srv = make_server<Backend>();
    const auto hello = a_client_hello<Backend>();
    const auto p = equal_pieces(static_cast<std::uint32_t>(hello.body.size()), 2);
    const auto from = peer_address::parse("192.0.2.1:1000");
    // The second half goes first, under the higher number.
    bytes d;
    append_record(d, hello, 5, {p[1]});
    srv.receive(from, d, clock::now());
    d.clear();
    append_record(d, hello, 3, {p[0]});
    srv.receive(from, d, clock::now());
    std::vector<std::uint64_t> numbers;
    srv.drain([&](const peer_address&, std::span<const std::byte> answer) {
        parse_datagram(answer, [&](const record_view& r) { numbers.push_back(r.sequence_number); });
    });
    BOOST_TEST(srv.counters().hello_verify_requests == 1u);
    BOOST_TEST(numbers == std::vector<std::uint64_t>{5}, boost::test_tools::per_element());
}

// ---------------------------------------------------------------------------
// (b) Hostile fragments.

BOOST_AUTO_TEST_CASE_TEMPLATE(fragments_that_disagree_on_the_length_drop_the_partial_hello, Backend, all_backends)
{
    auto srv = make_server<Backend>();
    const auto hello = a_client_hello<Backend>();
    const auto length = static_cast<std::uint32_t>(hello.body.size());
    const auto half = length / 2;
    const auto from = peer_address::parse("192.0.2.1:1000");
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {0, half})) == 0u);
    piece longer{half, length - half};
    longer.claimed_length = length + 100;
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, longer)) == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_inconsistent == 1u);
    // The first half was dropped: the true second half disagrees with the
    // longer message in turn and starts over, and only the first half
    // again makes the hello whole.
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {half, length - half})) == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_inconsistent == 2u);
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {0, half})) == 1u);
    BOOST_TEST(srv.counters().fragmented_hellos_completed == 1u);
    BOOST_TEST(srv.counters().hello_verify_requests == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(fragments_that_disagree_on_message_seq_drop_the_partial_hello, Backend, all_backends)
{
    auto srv = make_server<Backend>();
    const auto hello = a_client_hello<Backend>();
    const auto length = static_cast<std::uint32_t>(hello.body.size());
    const auto half = length / 2;
    const auto from = peer_address::parse("192.0.2.1:1000");
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {0, half})) == 0u);
    piece other{half, length - half};
    other.claimed_message_seq = static_cast<std::uint16_t>(hello.message_seq + 1);
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, other)) == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_inconsistent == 1u);
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {half, length - half})) == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_inconsistent == 2u);
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {0, half})) == 1u);
    BOOST_TEST(srv.counters().hello_verify_requests == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(overlapping_fragments_with_different_bytes_drop_the_partial_hello, Backend, all_backends)
{
    auto srv = make_server<Backend>();
    const auto hello = a_client_hello<Backend>();
    const auto length = static_cast<std::uint32_t>(hello.body.size());
    const auto half = length / 2;
    const auto from = peer_address::parse("192.0.2.1:1000");
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {0, half + 10})) == 0u);
    piece forged{half, length - half};
    forged.flipped_byte = half + 5; // inside the overlap
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, forged)) == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_inconsistent == 1u);
    BOOST_TEST(srv.counters().fragmented_hellos_completed == 0u);
    BOOST_TEST(srv.counters().hello_verify_requests == 0u);
    // A byte that differs outside any overlap cannot be told from the
    // client's own; the stack judges that hello. Here the true fragments
    // still make a hello that is answered.
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {0, half + 10})) == 0u);
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, {half, length - half})) == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_fragment_claiming_a_huge_hello_is_refused_and_kept_nowhere, Backend, all_backends)
{
    auto srv = make_server<Backend>();
    const auto hello = a_client_hello<Backend>();
    const auto from = peer_address::parse("192.0.2.1:1000");
    for (const std::uint32_t claimed : {std::uint32_t{4097}, std::uint32_t{0xffffff}}) {
        piece huge{0, 100};
        huge.claimed_length = claimed;
        BOOST_TEST(answers_to(srv, from, one_fragment(hello, huge)) == 0u);
    }
    BOOST_TEST(srv.counters().fragmented_hellos_too_large == 2u);
    BOOST_TEST(srv.counters().fragmented_hellos_started == 0u);
    // Exactly at the limit is still taken.
    piece largest{0, 100};
    largest.claimed_length = 4096;
    BOOST_TEST(answers_to(srv, from, one_fragment(hello, largest)) == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_started == 1u);
    BOOST_TEST(srv.counters().fragmented_hellos_too_large == 2u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_flood_of_first_fragments_evicts_the_oldest_partial_hello, Backend, all_backends)
{
    server_settings settings;
    settings.fragmented_hello_slots = 8;
    auto srv = make_server<Backend>(settings);
    const auto hello = a_client_hello<Backend>();
    const auto length = static_cast<std::uint32_t>(hello.body.size());
    const auto half = length / 2;
    const std::size_t flood = 13;
    for (std::size_t i = 0; i < flood; ++i)
        BOOST_TEST(answers_to(srv, address_number(i), one_fragment(hello, {0, half})) == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_started == flood);
    BOOST_TEST(srv.counters().fragmented_hellos_evicted == flood - 8);
    const auto second_half = one_fragment(hello, {half, length - half});
    // Addresses 0 to 4, the oldest, were evicted: a second half from one of
    // them starts a new partial hello instead of completing one, and that
    // start evicts the oldest left (address 5), whose second half in turn
    // evicts address 6.
    BOOST_TEST(answers_to(srv, address_number(0), second_half) == 0u);
    BOOST_TEST(answers_to(srv, address_number(5), second_half) == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_evicted == flood - 8 + 2);
    // The newer ones are all still there.
    BOOST_TEST(answers_to(srv, address_number(7), second_half) == 1u);
    BOOST_TEST(answers_to(srv, address_number(flood - 1), second_half) == 1u);
    BOOST_TEST(srv.counters().fragmented_hellos_completed == 2u);
    BOOST_TEST(srv.counters().fragmented_hellos_evicted == flood - 8 + 2);
    BOOST_TEST(srv.session_count() == 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_legitimate_client_connects_through_a_flood_of_first_fragments, Backend, all_backends)
{
    auto srv = make_server<Backend>();
    const auto hello = a_client_hello<Backend>();
    const auto half = static_cast<std::uint32_t>(hello.body.size()) / 2;
    const auto first_half = one_fragment(hello, {0, half});
    std::size_t spoofed = 0;
    const auto flood = [&](std::size_t count) {
        // Each is a partial hello, so nothing is queued to answer them.
        for (std::size_t i = 0; i < count; ++i) srv.receive(address_number(spoofed++), first_half, clock::now());
    };
    flood(1000);
    split_hello_run<Backend> run(srv, [](std::uint32_t length) { return one_per_datagram(equal_pieces(length, 2)); });
    // More spoofed first fragments between any two of the client's
    // datagrams than there are slots would evict its hello every time; a
    // few keep the table full and churning.
    run.between_datagrams = [&] { flood(5); };
    BOOST_TEST(run.connect_and_echo());
    const auto& k = srv.counters();
    BOOST_TEST(k.fragmented_hellos_completed == 2u);
    BOOST_TEST(k.sessions_created == 1u);
    // The table never held more than its slots.
    BOOST_TEST(k.fragmented_hellos_started - k.fragmented_hellos_evicted - k.fragmented_hellos_completed <= 32u);
    BOOST_TEST(k.fragmented_hellos_evicted >= spoofed - 32);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_flood_of_fragments_allocates_nothing, Backend, all_backends)
{
    auto srv = make_server<Backend>();
    const auto hello = a_client_hello<Backend>();
    const auto half = static_cast<std::uint32_t>(hello.body.size()) / 2;
    const auto first_half = one_fragment(hello, {0, half});
    piece forged{half - 4, 8};
    forged.flipped_byte = half - 2;
    const auto contradiction = one_fragment(hello, forged);
    const std::vector<peer_address> sources = [] {
        std::vector<peer_address> a;
        for (std::size_t i = 0; i < 200; ++i) a.push_back(address_number(i));
        return a;
    }();
    const auto now = clock::now();
    const auto before = allocations.load();
    for (const auto& from : sources) {
        srv.receive(from, first_half, now);
        srv.receive(from, contradiction, now);
        srv.receive(from, first_half, now);
    }
    BOOST_TEST(allocations.load() - before == 0u);
    BOOST_TEST(srv.counters().fragmented_hellos_started == 400u);
    BOOST_TEST(srv.counters().fragmented_hellos_inconsistent == 200u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(reassembly_settings_out_of_range_are_refused_by_name, Backend, all_backends)
{
    for (const auto& [slots, size, field] :
         {std::tuple{std::size_t{0}, std::size_t{4096}, "fragmented_hello_slots"},
          std::tuple{std::size_t{32}, std::size_t{0}, "max_fragmented_hello_size"},
          std::tuple{std::size_t{32}, std::size_t{16373}, "max_fragmented_hello_size"}}) {
        server_settings settings;
        settings.fragmented_hello_slots = slots;
        settings.max_fragmented_hello_size = size;
        failure f;
        BOOST_TEST(!server<Backend>::create(server_config(), settings, f).has_value());
        BOOST_TEST((f.code == errc::config_invalid), f.what());
        BOOST_TEST(std::string(f.what()).find(field) != std::string::npos, f.what());
    }
    server_settings largest;
    largest.max_fragmented_hello_size = 16372;
    failure f;
    BOOST_TEST(server<Backend>::create(server_config(), largest, f).has_value(), f.what());
}
