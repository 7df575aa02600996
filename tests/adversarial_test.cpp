// The stateful adversarial suite: what an attacker on or off the path can
// send during and after a handshake, on every pair of client and server
// stacks. The bug classes come from state-machine fuzzing of DTLS stacks
// (messages out of order, skipped or repeated) and from the stacks' own
// advisories (cookie handling, replay, record parsing).
//
// One expectation on every stack: nothing here crashes or leaks, nothing
// ends an open association, and a handshake under attack either completes
// or fails at once with the condition that names why (handshake_failed).
// After the hostile input each test proves the association still carries
// data both ways and, where the endpoint counts the drop, that it did.
//
// Over every pair on DTLS 1.2 and wolfSSL's on 1.3; the cases that script
// DTLS 1.2's own messages say so and do not run on 1.3 (dtls12_wire_only).
#define BOOST_TEST_MODULE adversarial
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/forge.hpp"
#include "support/harness.hpp"

#include <cstdio>
#include <deque>
#include <random>
#include <set>
#include <utility>

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

// Short timers: a case that needs a retransmission to recover finishes
// quickly on real time too (OpenSSL's timer reads the wall clock).
config fast(config c)
{
    c.initial_retransmission_timeout = 50ms;
    c.max_retransmission_timeout = 400ms;
    c.handshake_deadline = 4000ms;
    return c;
}

template <class Pair>
using pair_of = pipe_pair<typename Pair::client, typename Pair::server>;

template <class Pair>
pair_of<Pair> make_pair(const config& server_cfg, const config& client_cfg)
{
    return {server_cfg, client_cfg, Pair::virtual_time};
}

template <class P>
bool both_open(P& p)
{
    return p.client().is_open() && p.server_side() != nullptr && p.server_side()->is_open();
}

// A finished handshake: both sides open, or either side gave up.
template <class P>
bool settled(P& p)
{
    return both_open(p) || p.client().state() == endpoint_state::failed ||
           p.client().state() == endpoint_state::closed || !p.server_failures().empty();
}

template <class P>
bool open_association(P& p)
{
    failure f;
    if (!p.start(f)) return false;
    p.run_handshake();
    p.run_until([&] { return both_open(p); }, 2s);
    return both_open(p);
}

// Data still flows both ways: the client's message comes back (the harness
// server echoes), and a message the server starts arrives.
template <class P>
bool data_flows_both_ways(P& p, const std::string& tag)
{
    if (!both_open(p)) return false;
    if (!p.echo("echo " + tag, 2s)) return false;
    const auto before = p.client_received.size();
    const std::string pushed = "pushed " + tag;
    std::error_code ec;
    p.srv().send(p.client_address, as_bytes(pushed), p.time.now(), ec);
    if (ec) return false;
    p.run_until([&] { return p.client_received.size() > before; }, 2s);
    return p.client_received.size() == before + 1 && p.client_received.back() == pushed;
}

template <class P>
void check_still_open_and_flowing(P& p, const std::string& tag)
{
    BOOST_TEST(p.client().is_open(), "client: " << p.client().last_failure().what());
    BOOST_TEST((p.server_side() != nullptr && p.server_side()->is_open()),
               "server: " << (p.server_failures().empty() ? std::string("no failure reported")
                                                          : p.server_failures().back().what()));
    BOOST_TEST(p.srv().session_count() == 1u);
    BOOST_TEST(data_flows_both_ways(p, tag));
}

// The handshake completed and the association works.
template <class P>
void check_completes(P& p)
{
    BOOST_TEST(p.client().is_open(), "client: " << p.client().last_failure().what());
    BOOST_TEST((p.server_side() != nullptr && p.server_side()->is_open()),
               "server: " << (p.server_failures().empty() ? std::string("no failure reported")
                                                          : p.server_failures().back().what()));
    if (both_open(p)) BOOST_TEST(data_flows_both_ways(p, "after the handshake"));
}

// A forged plaintext handshake message cannot be told from a real one, so a
// stack may take it and refuse the handshake (RFC 5246 §7.2.2): that is
// allowed, but loudly, with handshake_failed on the side that refused, and
// the client must know by the time it settles. Anything else (an internal
// error, a hang until the deadline, a half-open association) is a defect.
template <class P>
void check_completes_or_refused(P& p)
{
    if (both_open(p)) {
        BOOST_TEST(data_flows_both_ways(p, "after the handshake"));
        return;
    }
    // The side that refused sent its alert: the other learns at once.
    p.run_until([&] { return p.client().state() != endpoint_state::handshaking; }, 1s);
    BOOST_TEST_MESSAGE("refused: client " << p.client().last_failure().what() << "; server "
                                          << (p.server_failures().empty() ? std::string("-")
                                                                          : p.server_failures().back().what()));
    BOOST_TEST((p.client().state() == endpoint_state::failed),
               "client is " << to_string(p.client().state()) << ", not failed");
    BOOST_TEST((p.client().error() == errc::handshake_failed), p.client().last_failure().what());
    for (const auto& f : p.server_failures())
        BOOST_TEST((f.code == errc::handshake_failed || f.code == errc::peer_closed), f.what());
    // And the server learns at once too, from the client's alert or its own
    // refusal, rather than holding a handshake open until its deadline.
    p.run_until([&] { return p.srv().session_count() == 0; }, 1s);
    BOOST_TEST(p.srv().session_count() == 0u, "the server still waits: the refusal sent it no alert");
}

// Holds every datagram both pipes carry and hands each to a rewrite
// function, which returns what to deliver instead (nothing, the same, a
// changed copy, several). Every delivered epoch-0 record is renumbered from a
// counter per direction: records the rewrite adds or repeats then never
// collide with the real ones in the receiver's replay window (RFC 6347
// §4.1.2.6), so what is tested is the handshake layer, not record replay.
template <class P>
class man_in_the_middle {
public:
    struct datagram {
        bool to_server;
        bytes data;
    };

    explicit man_in_the_middle(P& p) : p_(p)
    {
        p_.filter = [this](const wire_event& e) {
            held_.push_back({e.to_server, bytes(e.datagram.begin(), e.datagram.end())});
            return false;
        };
    }

    // Relays until done() or the limit of (real or virtual) time.
    template <class Rewrite, class Done>
    void relay(Rewrite&& rewrite, Done&& done, std::chrono::milliseconds limit = 6s)
    {
        const auto give_up = p_.time.now() + limit;
        while (!done() && p_.time.now() < give_up) {
            if (held_.empty()) {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - p_.time.now());
                p_.run_until([&] { return !held_.empty() || done(); }, std::max(left, 1ms));
                continue;
            }
            auto d = std::move(held_.front());
            held_.pop_front();
            note_message_seq(d);
            for (auto& out : rewrite(d)) deliver(d.to_server, out);
        }
    }

    // Stops intercepting: what is held goes through unchanged.
    void release()
    {
        p_.filter = [](const wire_event&) { return true; };
        while (!held_.empty()) {
            auto d = std::move(held_.front());
            held_.pop_front();
            deliver(d.to_server, d.data);
        }
    }

    void deliver(bool to_server, std::span<const std::byte> d)
    {
        auto records = forge::split_records(d);
        bytes out;
        if (records.empty()) {
            out.assign(d.begin(), d.end());
        } else {
            for (auto& r : records) {
                if (r.epoch == 0 && !r.unified) r.raw = forge::with_sequence(r.raw, next_sequence_[to_server]++);
            }
            out = forge::join_records(records);
        }
        if (to_server) p_.inject_to_server(out);
        else p_.inject_to_client(out);
    }

    // The highest message_seq seen from each side so far.
    int last_message_seq(bool from_client) const { return last_message_seq_[from_client]; }

private:
    void note_message_seq(const datagram& d)
    {
        for (const auto& r : forge::split_records(d.data))
            for (const auto& f : r.fragments())
                last_message_seq_[d.to_server] = std::max<int>(last_message_seq_[d.to_server], f.message_seq);
    }

    P& p_;
    std::deque<datagram> held_;
    std::uint64_t next_sequence_[2] = {0, 0};
    int last_message_seq_[2] = {-1, -1};
};

using datagrams = std::vector<bytes>;

datagrams unchanged(const bytes& d) { return {d}; }

bool has_record(const bytes& d, content_type t)
{
    const auto records = forge::split_records(d);
    return std::any_of(records.begin(), records.end(), [&](const forge::wire_record& r) { return r.is(t); });
}

bool carries(const bytes& d, handshake_type t)
{
    const auto records = forge::split_records(d);
    return std::any_of(records.begin(), records.end(), [&](const forge::wire_record& r) { return r.carries(t); });
}

// The first plaintext record carrying message type t.
std::optional<forge::wire_record> record_carrying(const bytes& d, handshake_type t)
{
    for (auto& r : forge::split_records(d))
        if (r.carries(t)) return r;
    return std::nullopt;
}

// A case that scripts DTLS 1.2's own wire (ChangeCipherSpec, ServerHelloDone,
// ClientKeyExchange): DTLS 1.3 has none of it (RFC 9147 §5), so over the
// 1.3 pair there is nothing to run. Said on
// stderr too: Boost logs a skip only at verbose levels.
template <class Pair>
bool dtls12_wire_only(const char* what)
{
    if constexpr (Pair::dtls13) {
        BOOST_TEST_MESSAGE("not on DTLS 1.3: " << what);
        std::fprintf(stderr, "adversarial: not on DTLS 1.3, which has no %s\n", what);
        return true;
    }
    return false;
}

// One plaintext record holding one fatal alert with this description.
bool is_fatal_alert(const bytes& d, std::uint8_t description)
{
    const auto records = forge::split_records(d);
    if (records.size() != 1 || !records[0].is(content_type::alert) || records[0].epoch != 0) return false;
    const auto body = records[0].payload();
    return body.size() == 2 && body[0] == std::byte{2} && body[1] == std::byte{description};
}

constexpr std::uint8_t type_of(handshake_type t) { return static_cast<std::uint8_t>(t); }
constexpr std::uint8_t type_of(content_type t) { return static_cast<std::uint8_t>(t); }

} // namespace

// ===========================================================================
// Handshake messages out of order, skipped or repeated

// Networks reorder datagrams: a Finished that arrives before the
// ChangeCipherSpec that starts its epoch is kept until the keys exist
// (RFC 6347 §4.1: records of the next epoch may be buffered). Each final
// flight is cut into one record per datagram and its Finished delivered
// first, once; retransmissions pass unchanged.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_finished_before_its_change_cipher_spec_is_buffered, Pair, all_pairs)
{
    if (dtls12_wire_only<Pair>("ChangeCipherSpec")) return;
    auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
    man_in_the_middle mitm(p);
    failure f;
    BOOST_REQUIRE(p.start(f));
    bool reordered[2] = {false, false};
    mitm.relay(
        [&](const auto& d) {
            if (reordered[d.to_server] || !has_record(d.data, content_type::change_cipher_spec))
                return unchanged(d.data);
            reordered[d.to_server] = true;
            datagrams before, ccs, after;
            for (const auto& r : forge::split_records(d.data)) {
                if (r.is(content_type::change_cipher_spec)) ccs.push_back(r.raw);
                else if (r.epoch == 1) before.push_back(r.raw);
                else after.push_back(r.raw);
            }
            // Plaintext messages first (ClientKeyExchange), then Finished, then the cipher change.
            datagrams out = after;
            out.insert(out.end(), before.begin(), before.end());
            out.insert(out.end(), ccs.begin(), ccs.end());
            return out;
        },
        [&] { return settled(p); });
    mitm.release();
    BOOST_TEST(reordered[0]);
    BOOST_TEST(reordered[1]);
    check_completes(p);
}

// A plaintext Finished in place of the ChangeCipherSpec: skipping the
// cipher change must never be taken as a finished handshake.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_plaintext_finished_before_the_change_cipher_spec_is_refused_or_ignored, Pair,
                              all_pairs)
{
    if (dtls12_wire_only<Pair>("ChangeCipherSpec")) return;
    for (bool to_server : {true, false}) {
        BOOST_TEST_CONTEXT((to_server ? "to the server" : "to the client"))
        {
            auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
            man_in_the_middle mitm(p);
            failure f;
            BOOST_REQUIRE(p.start(f));
            std::mt19937 random(1);
            bool forged = false;
            mitm.relay(
                [&](const auto& d) {
                    if (forged || d.to_server != to_server || !has_record(d.data, content_type::change_cipher_spec))
                        return unchanged(d.data);
                    forged = true;
                    const auto seq = static_cast<std::uint16_t>(mitm.last_message_seq(to_server) + 1);
                    const auto fake = forge::record(
                        content_type::handshake, 0, 0,
                        forge::handshake_message(handshake_type::finished, seq, forge::random_bytes(12, random)));
                    return datagrams{fake, d.data};
                },
                [&] { return settled(p); });
            mitm.release();
            BOOST_TEST(forged);
            check_completes_or_refused(p);
        }
    }
}

// The server's flight arrives last message first: ServerHelloDone before
// the Certificate and ServerKeyExchange it closes. A receiver reassembles by
// message_seq (RFC 6347 §4.2.2), so order on the wire does not matter.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_server_flight_delivered_backwards_completes, Pair, all_pairs)
{
    if (dtls12_wire_only<Pair>("ServerHelloDone")) return;
    auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
    man_in_the_middle mitm(p);
    failure f;
    BOOST_REQUIRE(p.start(f));
    std::vector<forge::wire_record> flight;
    bool reversed = false;
    mitm.relay(
        [&](const auto& d) {
            if (reversed || d.to_server) return unchanged(d.data);
            if (!carries(d.data, handshake_type::server_hello) && flight.empty()) return unchanged(d.data);
            for (auto& r : forge::split_records(d.data)) flight.push_back(r);
            if (!carries(d.data, handshake_type::server_hello_done)) return datagrams{};
            reversed = true;
            datagrams out;
            for (auto r = flight.rbegin(); r != flight.rend(); ++r) out.push_back(r->raw);
            return out;
        },
        [&] { return settled(p); });
    mitm.release();
    BOOST_TEST(reversed);
    BOOST_TEST(flight.size() >= 4u); // ServerHello, Certificate, ServerKeyExchange, ServerHelloDone
    check_completes(p);
}

// A ClientKeyExchange that reaches the server with the ClientHello, before
// the server has even sent its ServerHelloDone.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_client_key_exchange_before_server_hello_done_is_refused_or_ignored, Pair, all_pairs)
{
    if (dtls12_wire_only<Pair>("ClientKeyExchange")) return;
    auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
    man_in_the_middle mitm(p);
    failure f;
    BOOST_REQUIRE(p.start(f));
    std::mt19937 random(2);
    bool forged = false;
    mitm.relay(
        [&](const auto& d) {
            if (forged || !d.to_server || !forge::client_hello_cookie(d.data).value_or(bytes{}).size())
                return unchanged(d.data);
            forged = true;
            // An X25519 share: one length byte and 32 bytes (RFC 8422 §5.7).
            auto share = forge::random_bytes(33, random);
            share[0] = std::byte{32};
            const auto cke = forge::record(
                content_type::handshake, 0, 0,
                forge::handshake_message(handshake_type::client_key_exchange,
                                         static_cast<std::uint16_t>(mitm.last_message_seq(true) + 1), share));
            return datagrams{forge::concat({d.data, cke})};
        },
        [&] { return settled(p); });
    mitm.release();
    BOOST_TEST(forged);
    check_completes_or_refused(p);
}

// Mid-handshake, a second ClientHello from the same address with another
// random: a copy of the cookie-bearing one (same message_seq), and a fresh
// cookieless one (message_seq 0). Both are old message numbers to the
// server, so they are retransmissions at most, never a new handshake.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_second_client_hello_with_another_random_mid_handshake_is_harmless, Pair, all_pairs)
{
    for (bool with_cookie : {true, false}) {
        BOOST_TEST_CONTEXT((with_cookie ? "with the valid cookie" : "without a cookie"))
        {
            auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
            man_in_the_middle mitm(p);
            failure f;
            BOOST_REQUIRE(p.start(f));
            std::mt19937 random(3);
            std::optional<bytes> first_hello, second_hello;
            bool forged = false;
            mitm.relay(
                [&](const auto& d) {
                    if (d.to_server && !first_hello) first_hello = d.data;
                    else if (d.to_server && !second_hello) second_hello = d.data;
                    // Once the server's flight is on its way, inject.
                    if (forged || d.to_server || !carries(d.data, handshake_type::server_hello))
                        return unchanged(d.data);
                    forged = true;
                    forge::client_hello_edit edit;
                    edit.random = forge::random_bytes(32, random);
                    const auto hello = forge::rewrite_client_hello(with_cookie ? *second_hello : *first_hello, edit);
                    mitm.deliver(true, *hello);
                    return unchanged(d.data);
                },
                [&] { return settled(p); });
            mitm.release();
            BOOST_TEST(forged);
            check_completes(p);
            BOOST_TEST(p.server_opened() == 1u);
        }
    }
}

// The ServerHello arrives twice (a duplicated datagram), then once more with
// another random under the same message_seq: a retransmission at most.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_server_hello_twice_is_harmless, Pair, all_pairs)
{
    auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
    man_in_the_middle mitm(p);
    failure f;
    BOOST_REQUIRE(p.start(f));
    std::optional<bytes> altered;
    mitm.relay(
        [&](const auto& d) {
            if (d.to_server || altered) return unchanged(d.data);
            const auto hello = record_carrying(d.data, handshake_type::server_hello);
            if (!hello) return unchanged(d.data);
            altered = hello->raw;
            // The server random: 2 bytes into the body (RFC 5246 §7.4.1.3).
            for (std::size_t i = 0; i < 32; ++i)
                (*altered)[record_header_size + handshake_header_size + 2 + i] ^= std::byte{0x5a};
            return datagrams{d.data, d.data, *altered};
        },
        [&] { return settled(p); });
    mitm.release();
    BOOST_TEST(altered.has_value());
    check_completes(p);
}

// Copies of real handshake messages renumbered far ahead of and just behind
// the receiver's next message_seq, each right after the real message: the
// ServerHello to the client, the cookie-bearing ClientHello to the server.
// RFC 6347 §4.2.2: a message from the future may be buffered or dropped, an
// old one is a retransmission; neither changes the handshake. (A forgery a
// few messages ahead takes the place of the real message, which no DTLS 1.2
// receiver can tell apart: not tested here.)
BOOST_AUTO_TEST_CASE_TEMPLATE(handshake_messages_far_ahead_or_behind_in_message_seq_are_ignored, Pair, all_pairs)
{
    for (int shift : {-1, 100, 1000, 30000, 64536}) {
        BOOST_TEST_CONTEXT("message_seq shifted by " << shift)
        {
            auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
            man_in_the_middle mitm(p);
            failure f;
            BOOST_REQUIRE(p.start(f));
            bool forged[2] = {false, false};
            int client_hellos = 0;
            mitm.relay(
                [&](const auto& d) {
                    const auto t = d.to_server ? handshake_type::client_hello : handshake_type::server_hello;
                    const auto r = record_carrying(d.data, t);
                    if (forged[d.to_server] || !r) return unchanged(d.data);
                    // The ClientHello that answers the cookie: on DTLS 1.2 the
                    // one with a cookie field, on 1.3 the second (the cookie
                    // is an extension answering the HelloRetryRequest).
                    if (d.to_server && (Pair::dtls13 ? ++client_hellos < 2
                                                     : forge::client_hello_cookie(d.data).value_or(bytes{}).empty()))
                        return unchanged(d.data);
                    forged[d.to_server] = true;
                    const auto seq = static_cast<std::uint16_t>((r->fragments().front().message_seq + shift) & 0xffff);
                    return datagrams{d.data, forge::with_message_seq(r->raw, seq)};
                },
                [&] { return settled(p); });
            mitm.release();
            BOOST_TEST(forged[0]);
            BOOST_TEST(forged[1]);
            check_completes(p);
        }
    }
}

// ===========================================================================
// ChangeCipherSpec duplicated, reordered, or at the wrong epoch

BOOST_AUTO_TEST_CASE_TEMPLATE(a_duplicated_change_cipher_spec_is_harmless, Pair, all_pairs)
{
    if (dtls12_wire_only<Pair>("ChangeCipherSpec")) return;
    auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
    man_in_the_middle mitm(p);
    failure f;
    BOOST_REQUIRE(p.start(f));
    int duplicated = 0;
    mitm.relay(
        [&](const auto& d) {
            if (!has_record(d.data, content_type::change_cipher_spec)) return unchanged(d.data);
            ++duplicated;
            const auto ccs = forge::record(content_type::change_cipher_spec, 0, 0, forge::change_cipher_spec_body());
            // Once before the flight, the flight itself, once after it.
            return datagrams{ccs, d.data, ccs};
        },
        [&] { return settled(p); });
    mitm.release();
    BOOST_TEST(duplicated >= 2);
    check_completes(p);
}

// The client's last flight reordered as ChangeCipherSpec, ClientKeyExchange,
// Finished: the cipher change arrives before the key exchange it depends on.
// The server may drop it and wait for the retransmission, but the handshake
// must recover (fast timers keep that short).
BOOST_AUTO_TEST_CASE_TEMPLATE(a_change_cipher_spec_before_the_client_key_exchange_is_recovered, Pair, all_pairs)
{
    if (dtls12_wire_only<Pair>("ChangeCipherSpec")) return;
    auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
    man_in_the_middle mitm(p);
    failure f;
    BOOST_REQUIRE(p.start(f));
    bool reordered = false;
    std::optional<bytes> held; // a ClientKeyExchange sent without the cipher change in its datagram
    mitm.relay(
        [&](const auto& d) {
            if (reordered || !d.to_server) return unchanged(d.data);
            if (held) {
                if (!has_record(d.data, content_type::change_cipher_spec)) return datagrams{d.data};
                // wolfSSL sends each record of the flight on its own: the
                // datagram with the cipher change goes first.
                reordered = true;
                return datagrams{d.data, *std::exchange(held, std::nullopt)};
            }
            if (!carries(d.data, handshake_type::client_key_exchange)) return unchanged(d.data);
            auto records = forge::split_records(d.data);
            auto ccs = std::find_if(records.begin(), records.end(),
                                    [](const auto& r) { return r.is(content_type::change_cipher_spec); });
            if (ccs == records.end()) {
                held = d.data;
                return datagrams{};
            }
            reordered = true;
            std::rotate(records.begin(), ccs, ccs + 1);
            return datagrams{forge::join_records(records)};
        },
        [&] { return settled(p); });
    mitm.release();
    BOOST_TEST(reordered);
    check_completes(p);
}

// A ChangeCipherSpec at epoch 1 is an encrypted record no one can have
// made: mid-handshake (just before the client's last flight) and once open.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_change_cipher_spec_at_epoch_1_is_dropped, Pair, all_pairs)
{
    const auto ccs_at_epoch_1 =
        forge::record(content_type::change_cipher_spec, 1, 0, forge::change_cipher_spec_body());
    if (!dtls12_wire_only<Pair>("ChangeCipherSpec in its handshake")) {
        BOOST_TEST_CONTEXT("mid-handshake")
        {
            auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
            man_in_the_middle mitm(p);
            failure f;
            BOOST_REQUIRE(p.start(f));
            int forged = 0;
            mitm.relay(
                [&](const auto& d) {
                    if (!has_record(d.data, content_type::change_cipher_spec)) return unchanged(d.data);
                    ++forged;
                    return datagrams{ccs_at_epoch_1, d.data};
                },
                [&] { return settled(p); });
            mitm.release();
            BOOST_TEST(forged >= 2);
            check_completes(p);
        }
    }
    {
        BOOST_TEST_CONTEXT("open association")
        {
            auto p = make_pair<Pair>(server_config(), client_config());
            BOOST_REQUIRE(open_association(p));
            for (std::uint64_t seq : {0u, 1u, 100u}) {
                const auto ccs = forge::with_sequence(ccs_at_epoch_1, seq);
                p.inject_to_client(ccs);
                p.inject_to_server(ccs);
            }
            check_still_open_and_flowing(p, "after a ChangeCipherSpec at epoch 1");
        }
    }
}

// ===========================================================================
// Handshake fragments

// The server's Certificate re-cut into fragments that arrive out of order,
// overlap and repeat one another: RFC 6347 §4.2.3 lets all of these happen,
// and the message still reassembles.
BOOST_AUTO_TEST_CASE_TEMPLATE(overlapping_fragments_reassemble, Pair, all_pairs)
{
    // On DTLS 1.3 the Certificate is encrypted: the HelloRetryRequest, the
    // server's one plaintext message before its ServerHello, instead.
    constexpr auto target = Pair::dtls13 ? handshake_type::server_hello : handshake_type::certificate;
    auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
    man_in_the_middle mitm(p);
    failure f;
    BOOST_REQUIRE(p.start(f));
    bool recut = false;
    mitm.relay(
        [&](const auto& d) {
            if (recut || d.to_server) return unchanged(d.data);
            const auto certificate = record_carrying(d.data, target);
            if (!certificate || !certificate->fragments().front().is_whole_message()) return unchanged(d.data);
            recut = true;
            const auto whole = certificate->fragments().front();
            const auto n = whole.length;
            const auto half = n / 2;
            datagrams out;
            for (const auto& r : forge::split_records(d.data)) {
                if (!r.carries(target)) {
                    out.push_back(r.raw);
                    continue;
                }
                for (auto& piece : forge::refragment(whole, 0,
                                                     {{half - 10, n - (half - 10)}, // second half first
                                                      {0, half + 10},               // overlaps the first
                                                      {5, 20},                      // inside what is there
                                                      {half - 10, n - (half - 10)}}))
                    out.push_back(piece);
            }
            return out;
        },
        [&] { return settled(p); });
    mitm.release();
    BOOST_TEST(recut);
    check_completes(p);
}

// An empty fragment (fragment_length 0) of each message of the server's
// flight, right before that message, at offset 0 and in the middle. It
// carries no byte, so it can complete nothing: the only right reading is to
// ignore it (RFC 6347 §4.2.3 reassembles messages from the bytes received).
BOOST_AUTO_TEST_CASE_TEMPLATE(empty_fragments_are_ignored, Pair, all_pairs)
{
    auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
    man_in_the_middle mitm(p);
    failure f;
    BOOST_REQUIRE(p.start(f));
    int inserted = 0;
    std::set<std::uint16_t> done; // message_seq of the server's messages already given theirs
    bool flight_done = false;     // the client has answered the server's first flight
    mitm.relay(
        [&](const auto& d) {
            // The server's first flight, in however many datagrams its stack
            // sends it (wolfSSL sends a message per datagram).
            if (d.to_server && !done.empty()) flight_done = true;
            if (d.to_server || flight_done) return unchanged(d.data);
            datagrams out;
            for (const auto& r : forge::split_records(d.data)) {
                for (const auto& message : r.fragments()) {
                    if (message.msg_type == type_of(handshake_type::hello_verify_request) ||
                        !done.insert(message.message_seq).second)
                        continue;
                    for (std::uint32_t offset : {0u, message.length / 2}) {
                        out.push_back(forge::record(content_type::handshake, 0, 0,
                                                    forge::handshake_fragment(message.msg_type, message.message_seq,
                                                                              message.length, offset, {})));
                        ++inserted;
                    }
                }
                out.push_back(r.raw);
            }
            return out;
        },
        [&] { return settled(p); });
    mitm.release();
    // Two per message of ServerHello, Certificate, ServerKeyExchange,
    // ServerHelloDone; on DTLS 1.3 the ServerHello is the flight's only
    // plaintext message.
    BOOST_TEST(inserted >= (Pair::dtls13 ? 2 : 8));
    check_completes(p);
}

// Forged fragments of the message the client waits for, sent ahead of the
// real one: one claims another total length, one is empty with a length of
// 2^24 - 1, one starts a 16 MB message. A stack may reject the message they
// poison (RFC 6347 §4.2.3 does not say which fragment wins), but must not
// crash, reserve 16 MB per forgery, or fail any other way.
BOOST_AUTO_TEST_CASE_TEMPLATE(fragments_that_disagree_on_the_message_length_are_refused_or_ignored, Pair, all_pairs)
{
    // The Certificate on DTLS 1.2; on 1.3, where it is encrypted, the
    // HelloRetryRequest.
    constexpr auto target = Pair::dtls13 ? handshake_type::server_hello : handshake_type::certificate;
    struct forgery {
        std::string name;
        std::uint32_t length;    // claimed message length (0: the real one + 100)
        std::uint32_t body_size; // bytes carried
        int seq_shift;           // relative to the real message_seq
    };
    const std::vector<forgery> forgeries = {
        {"another total length", 0, 10, 0},
        {"empty fragment of a 16 MB message", 0xffffff, 0, 0},
        {"start of a 16 MB message", 0xffffff, 100, 0},
        {"start of a 16 MB message, one message ahead", 0xffffff, 100, 1},
    };
    for (const auto& forgery : forgeries) {
        BOOST_TEST_CONTEXT(forgery.name)
        {
            auto p = make_pair<Pair>(fast(server_config()), fast(client_config()));
            man_in_the_middle mitm(p);
            failure f;
            BOOST_REQUIRE(p.start(f));
            std::mt19937 random(4);
            bool forged = false;
            mitm.relay(
                [&](const auto& d) {
                    if (forged || d.to_server) return unchanged(d.data);
                    const auto certificate = record_carrying(d.data, target);
                    if (!certificate) return unchanged(d.data);
                    forged = true;
                    const auto real = certificate->fragments().front();
                    const auto fake = forge::record(
                        content_type::handshake, 0, 0,
                        forge::handshake_fragment(type_of(target),
                                                  static_cast<std::uint16_t>(real.message_seq + forgery.seq_shift),
                                                  forgery.length ? forgery.length : real.length + 100, 0,
                                                  forge::random_bytes(forgery.body_size, random)));
                    return datagrams{fake, d.data};
                },
                [&] { return settled(p); });
            mitm.release();
            BOOST_TEST(forged);
            check_completes_or_refused(p);
        }
    }
}

// ===========================================================================
// Plaintext injected into an open association from the peer's address

// Epoch-0 alerts after the cipher changed cannot come from the peer (RFC
// 5246 §7.2: alerts are protected by the current state), so they end
// nothing, whatever their level or description.
BOOST_AUTO_TEST_CASE_TEMPLATE(plaintext_alerts_do_not_end_an_open_association, Pair, all_pairs)
{
    auto p = make_pair<Pair>(psk_config(role::server), psk_config(role::client));
    BOOST_REQUIRE(open_association(p));
    std::uint64_t seq = 10;
    for (std::uint8_t level : {1, 2}) {
        // close_notify, unexpected_message, bad_record_mac, handshake_failure,
        // bad_certificate, unknown_ca, decrypt_error, internal_error,
        // user_canceled, no_renegotiation, unknown_psk_identity, and 255.
        for (std::uint8_t description : {0, 10, 20, 40, 42, 48, 51, 80, 90, 100, 115, 255}) {
            BOOST_TEST_CONTEXT("level " << int(level) << " description " << int(description))
            {
                const auto alert = forge::record(content_type::alert, 0, seq++, forge::alert_body(level, description));
                p.inject_to_client(alert);
                p.inject_to_server(alert);
                BOOST_TEST(p.client().is_open(), p.client().last_failure().what());
                BOOST_TEST((p.server_side() != nullptr && p.server_side()->is_open()));
            }
            if (!both_open(p)) break;
        }
        if (!both_open(p)) break;
    }
    check_still_open_and_flowing(p, "after plaintext alerts");
}

// Epoch-0 handshake records after the handshake: a cookieless ClientHello
// (answered by the front door, the association untouched), a HelloRequest,
// a Finished, a ServerHello and a HelloVerifyRequest.
BOOST_AUTO_TEST_CASE_TEMPLATE(plaintext_handshake_records_do_not_end_an_open_association, Pair, all_pairs)
{
    auto p = make_pair<Pair>(psk_config(role::server), psk_config(role::client));
    BOOST_REQUIRE(open_association(p));
    BOOST_REQUIRE(!p.delivered_to_server.empty());
    std::mt19937 random(5);
    forge::client_hello_edit fresh;
    fresh.random = forge::random_bytes(32, random);
    const auto cookieless_hello = forge::rewrite_client_hello(p.delivered_to_server.front(), fresh);
    BOOST_REQUIRE(cookieless_hello.has_value());
    const auto hvr_before = p.srv().counters().hello_verify_requests;
    p.inject_to_server(*cookieless_hello);
    BOOST_TEST(p.srv().counters().hello_verify_requests == hvr_before + 1);
    BOOST_TEST(p.client().is_open(), p.client().last_failure().what()); // it got that HelloVerifyRequest

    std::uint64_t seq = 50;
    auto plaintext = [&](handshake_type t, std::uint16_t message_seq, const bytes& body) {
        return forge::record(content_type::handshake, 0, seq++, forge::handshake_message(t, message_seq, body));
    };
    const std::vector<std::pair<std::string, bytes>> to_client = {
        {"HelloRequest", plaintext(handshake_type::hello_request, 0, {})},
        {"HelloRequest, next message_seq", plaintext(handshake_type::hello_request, 5, {})},
        {"Finished", plaintext(handshake_type::finished, 4, forge::random_bytes(12, random))},
        {"ServerHello", plaintext(handshake_type::server_hello, 1, forge::random_bytes(70, random))},
        {"HelloVerifyRequest", plaintext(handshake_type::hello_verify_request, 0,
                                         forge::concat({bytes{std::byte{0xfe}, std::byte{0xfd}, std::byte{4}},
                                                        forge::random_bytes(4, random)}))},
    };
    const std::vector<std::pair<std::string, bytes>> to_server = {
        {"Finished", plaintext(handshake_type::finished, 4, forge::random_bytes(12, random))},
        {"ClientKeyExchange", plaintext(handshake_type::client_key_exchange, 2, forge::random_bytes(33, random))},
        {"HelloRequest", plaintext(handshake_type::hello_request, 0, {})},
    };
    for (const auto& [name, d] : to_client) {
        BOOST_TEST_CONTEXT("to the client: " << name)
        {
            const auto dropped = p.client().counters().dropped_wrong_epoch;
            p.inject_to_client(d);
            BOOST_TEST(p.client().is_open(), p.client().last_failure().what());
            // No plaintext handshake message is of use to an open client:
            // each is dropped, and counted, before the stack sees it.
            BOOST_TEST(p.client().counters().dropped_wrong_epoch == dropped + 1);
        }
    }
    for (const auto& [name, d] : to_server) {
        BOOST_TEST_CONTEXT("to the server: " << name)
        {
            p.inject_to_server(d);
            BOOST_TEST((p.server_side() != nullptr && p.server_side()->is_open()));
        }
    }
    check_still_open_and_flowing(p, "after plaintext handshake records");
}

// Application data at epoch 0 once the cipher changed is a forgery: it is
// never delivered, and the association goes on.
BOOST_AUTO_TEST_CASE_TEMPLATE(plaintext_application_data_is_never_delivered, Pair, all_pairs)
{
    auto p = make_pair<Pair>(psk_config(role::server), psk_config(role::client));
    BOOST_REQUIRE(open_association(p));
    const auto delivered_before = p.client_received.size();
    const auto server_in_before = p.server_side()->counters().application_messages_in;
    for (std::uint64_t seq : {0u, 7u, 1000u}) {
        const auto forged = forge::record(content_type::application_data, 0, seq, as_bytes("forged plaintext"));
        p.inject_to_client(forged);
        p.inject_to_server(forged); // the server would echo what it took
    }
    BOOST_TEST(p.client_received.size() == delivered_before);
    BOOST_REQUIRE(p.server_side() != nullptr);
    BOOST_TEST(p.server_side()->counters().application_messages_in == server_in_before);
    check_still_open_and_flowing(p, "after plaintext application data");
}

// ===========================================================================
// Epoch-1 records an attacker can make: every content type, every length
// 0..64, random bodies. None authenticates, so every one is dropped; types
// that do not exist are dropped by the endpoint and counted as malformed.
BOOST_AUTO_TEST_CASE_TEMPLATE(epoch_1_records_of_every_length_and_type_are_dropped, Pair, all_pairs)
{
    std::mt19937 random(6);
    std::optional<pair_of<Pair>> p;
    auto reopen = [&] {
        p.emplace(make_pair<Pair>(psk_config(role::server), psk_config(role::client)));
        return open_association(*p);
    };
    BOOST_REQUIRE(reopen());
    std::uint64_t seq = 1000;
    for (std::uint8_t type : {20, 21, 22, 23, 24, 0, 19, 25, 255}) {
        const bool known = type >= 20 && type <= 24;
        for (std::size_t length = 0; length <= 64; ++length) {
            for (bool to_server : {false, true}) {
                BOOST_TEST_CONTEXT("content type " << int(type) << ", " << length << " bytes, to the "
                                                   << (to_server ? "server" : "client"))
                {
                    const auto forged = forge::record(type, 1, seq++, forge::random_bytes(length, random));
                    auto malformed = [&]() -> std::uint64_t {
                        if (!to_server) return p->client().counters().dropped_malformed;
                        return p->server_side() ? p->server_side()->counters().dropped_malformed : 0;
                    };
                    const auto malformed_before = malformed();
                    if (to_server) p->inject_to_server(forged);
                    else p->inject_to_client(forged);
                    const bool still_open = both_open(*p);
                    BOOST_TEST(still_open, "client: " << p->client().last_failure().what() << "; server: "
                                                      << (p->server_failures().empty()
                                                              ? std::string("open")
                                                              : p->server_failures().back().what()));
                    if (!still_open) {
                        BOOST_REQUIRE(reopen());
                        continue;
                    }
                    if (!known) BOOST_TEST(malformed() == malformed_before + 1);
                }
            }
        }
    }
    check_still_open_and_flowing(*p, "after forged epoch-1 records");
}

// ===========================================================================
// Replay and the replay window (RFC 6347 §4.1.2.6)

BOOST_AUTO_TEST_CASE_TEMPLATE(a_replayed_application_record_is_never_delivered_twice, Pair, all_pairs)
{
    auto p = make_pair<Pair>(psk_config(role::server), psk_config(role::client));
    BOOST_REQUIRE(open_association(p));
    BOOST_REQUIRE(p.echo("once"));
    const auto to_server = p.delivered_to_server.back(); // the client's "once"
    const auto to_client = p.delivered_to_client.back(); // its echo
    const auto received = p.client_received.size();
    const auto server_in = p.server_side()->counters().application_messages_in;
    for (int copy = 0; copy < 3; ++copy) {
        p.inject_to_client(to_client);
        p.inject_to_server(to_server); // a second "once" would be echoed
    }
    BOOST_TEST(p.client_received.size() == received);
    BOOST_TEST(p.server_side()->counters().application_messages_in == server_in);
    check_still_open_and_flowing(p, "after replays");
}

// A real record renumbered far outside the window, ahead and behind: it no
// longer authenticates (the sequence number is part of the AEAD's input), so
// it must neither be delivered nor move the window; if it moved the window,
// every real record after it would look too old.
BOOST_AUTO_TEST_CASE_TEMPLATE(records_far_outside_the_replay_window_are_dropped, Pair, all_pairs)
{
    auto p = make_pair<Pair>(psk_config(role::server), psk_config(role::client));
    BOOST_REQUIRE(open_association(p));
    BOOST_REQUIRE(p.echo("template"));
    const auto to_server = p.delivered_to_server.back();
    const auto to_client = p.delivered_to_client.back();
    const auto received = p.client_received.size();
    const auto server_in = p.server_side()->counters().application_messages_in;
    for (std::uint64_t seq : {std::uint64_t{0xffffffffffff}, std::uint64_t{1} << 47, std::uint64_t{100000},
                              std::uint64_t{65}, std::uint64_t{0}}) {
        BOOST_TEST_CONTEXT("sequence number " << seq)
        {
            p.inject_to_client(forge::with_sequence(to_client, seq));
            p.inject_to_server(forge::with_sequence(to_server, seq));
            BOOST_TEST(p.client_received.size() == received);
            BOOST_TEST(p.server_side()->counters().application_messages_in == server_in);
        }
    }
    check_still_open_and_flowing(p, "after records outside the window");
}

// ===========================================================================
// Cookies (RFC 6347 §4.2.1; on DTLS 1.3 an extension, RFC 9147 §5.1)

// The cookie-bearing ClientHello with a forged cookie: every length 0..255
// of DTLS 1.2's cookie field, and on DTLS 1.3 of the cookie extension's
// (whose length field has two bytes) and a few longer ones; the right length
// holding the wrong bytes on both. None creates a session, and none is
// answered with more than one small datagram: the front door must not
// amplify what a spoofed source sends it. The real one then proceeds.
//
// On 1.2 each is answered with a HelloVerifyRequest carrying a fresh cookie
// (RFC 6347 §4.2.1: as if the ClientHello had none). On 1.3 wolfSSL
// answers a cookie that does not verify with a fatal illegal_parameter
// alert (RFC 9147 §5.1 requires it, so that the client starts over without
// one), which the front door counts as a refused hello, never with a new
// HelloRetryRequest; an empty cookie, which the extension's
// cookie<1..2^16-1> cannot hold, it drops without an answer.
BOOST_AUTO_TEST_CASE_TEMPLATE(only_the_issued_cookie_opens_a_session, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    // On both versions the client's second datagram is its second
    // ClientHello (message_seq 1), answering the HelloVerifyRequest or the
    // HelloRetryRequest.
    std::optional<bytes> real_hello;
    p.filter = [&](const wire_event& e) {
        if (e.to_server && e.index == 2) {
            real_hello.emplace(e.datagram.begin(), e.datagram.end());
            return false;
        }
        return true;
    };
    failure f;
    BOOST_REQUIRE(p.start(f));
    BOOST_REQUIRE(real_hello.has_value());
    const auto real_cookie =
        Pair::dtls13 ? forge::client_hello_cookie_extension(*real_hello) : forge::client_hello_cookie(*real_hello);
    BOOST_REQUIRE(real_cookie.has_value());
    BOOST_REQUIRE(!real_cookie->empty());
    if constexpr (Pair::dtls13) BOOST_TEST(forge::client_hello_cookie(*real_hello).value_or(bytes{1}).empty());
    std::vector<std::size_t> lengths;
    for (std::size_t length = 0; length <= 255; ++length) lengths.push_back(length);
    if constexpr (Pair::dtls13) {
        lengths.insert(lengths.end(), {256, 1000, 4000});
        if (real_cookie->size() > 255) lengths.push_back(real_cookie->size());
    }
    std::mt19937 random(8);
    for (const auto length : lengths) {
        BOOST_TEST_CONTEXT("cookie of " << length << " bytes")
        {
            auto cookie = forge::random_bytes(length, random);
            if (length == real_cookie->size()) {
                cookie = *real_cookie;
                cookie[length / 2] ^= std::byte{1};
            }
            std::optional<bytes> forged;
            if constexpr (Pair::dtls13) {
                forged = forge::with_cookie_extension(*real_hello, cookie);
                BOOST_REQUIRE(forged.has_value());
                BOOST_TEST((forge::client_hello_cookie_extension(*forged) == std::optional<bytes>(cookie)));
            } else {
                forge::client_hello_edit edit;
                edit.cookie = cookie;
                forged = forge::rewrite_client_hello(*real_hello, edit);
                BOOST_REQUIRE(forged.has_value());
            }
            const auto before = p.srv().counters();
            // From the client's own address, answered straight back to the
            // attacker's pipe: nothing reaches the waiting client.
            p.srv().receive(p.client_address, *forged, p.time.now());
            datagrams answers;
            p.srv().drain([&](const peer_address& to, std::span<const std::byte> d) {
                BOOST_TEST(to == p.client_address);
                answers.emplace_back(d.begin(), d.end());
            });
            const auto& after = p.srv().counters();
            BOOST_TEST(p.srv().session_count() == 0u);
            BOOST_TEST(after.sessions_created == 0u);
            BOOST_TEST(answers.size() <= 1u);
            for (const auto& a : answers) BOOST_TEST(a.size() <= 3 * forged->size());
            if constexpr (Pair::dtls13) {
                BOOST_TEST(after.hello_verify_requests == before.hello_verify_requests);
                if (length == 0) {
                    BOOST_TEST(answers.empty());
                    BOOST_TEST(after.dropped_without_session == before.dropped_without_session + 1);
                } else {
                    BOOST_TEST(after.hellos_refused == before.hellos_refused + 1);
                    BOOST_REQUIRE(answers.size() == 1u);
                    BOOST_TEST(is_fatal_alert(answers[0], 47)); // illegal_parameter
                }
            } else {
                BOOST_TEST(after.hello_verify_requests == before.hello_verify_requests + 1);
                BOOST_REQUIRE(answers.size() == 1u);
                BOOST_TEST(carries(answers[0], handshake_type::hello_verify_request));
            }
        }
    }
    BOOST_TEST(p.srv().counters().sessions_created == 0u);
    p.filter = [](const wire_event&) { return true; };
    p.inject_to_server(*real_hello);
    BOOST_TEST(p.srv().counters().sessions_created == 1u);
    p.run_handshake();
    check_completes(p);
}

// A valid cookie-bearing ClientHello replayed from another address: the
// cookie binds to the address it was issued to, so it creates nothing
// (the class of mbedTLS's CVE-2022-35409 fix, which hardened this check).
// On 1.2 the stranger gets a HelloVerifyRequest with a cookie of its own;
// on 1.3 wolfSSL refuses the cookie with a fatal illegal_parameter alert
// (RFC 9147 §5.1), counted as a refused hello, not a cookie exchange.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_cookie_issued_to_another_address_creates_no_session, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    BOOST_REQUIRE(open_association(p));
    BOOST_REQUIRE(p.delivered_to_server.size() >= 2u);
    const auto hello_with_cookie = p.delivered_to_server[1];
    if constexpr (Pair::dtls13)
        BOOST_REQUIRE(forge::client_hello_cookie_extension(hello_with_cookie).value_or(bytes{}).size() > 0);
    else
        BOOST_REQUIRE(forge::client_hello_cookie(hello_with_cookie).value_or(bytes{}).size() > 0);
    const auto created = p.srv().counters().sessions_created;
    for (const auto* stranger : {"127.0.0.1:50001", "127.0.0.2:50000", "[::1]:50000"}) {
        BOOST_TEST_CONTEXT("from " << stranger)
        {
            const auto from = peer_address::parse(stranger);
            const auto before = p.srv().counters();
            p.srv().receive(from, hello_with_cookie, p.time.now());
            datagrams to_stranger;
            std::size_t to_others = 0;
            p.srv().drain([&](const peer_address& to, std::span<const std::byte> d) {
                if (to == from) to_stranger.emplace_back(d.begin(), d.end());
                else ++to_others;
            });
            const auto& after = p.srv().counters();
            BOOST_TEST(after.sessions_created == created);
            BOOST_TEST(p.srv().find(from) == nullptr);
            BOOST_TEST(to_others == 0u);
            BOOST_REQUIRE(to_stranger.size() == 1u); // one small answer, nothing more
            BOOST_TEST(to_stranger[0].size() <= hello_with_cookie.size());
            if constexpr (Pair::dtls13) {
                BOOST_TEST(after.hellos_refused == before.hellos_refused + 1);
                BOOST_TEST(after.hello_verify_requests == before.hello_verify_requests);
                BOOST_TEST(is_fatal_alert(to_stranger[0], 47)); // illegal_parameter
            } else {
                BOOST_TEST(after.hello_verify_requests == before.hello_verify_requests + 1);
                BOOST_TEST(after.hellos_refused == before.hellos_refused);
                BOOST_TEST(carries(to_stranger[0], handshake_type::hello_verify_request));
            }
        }
    }
    check_still_open_and_flowing(p, "after a cookie from another address");
}

// A ClientHello whose cookie length byte claims more than the record holds:
// the shape of CVE-2022-35409 (mbedTLS < 2.28.1, with client port reuse, read
// past its buffer checking such a cookie). Sent to the front door from a
// stranger and to the open association from its own address.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_cookie_running_past_the_client_hello_is_dropped, Pair, all_pairs)
{
    auto p = make_pair<Pair>(server_config(), client_config());
    BOOST_REQUIRE(open_association(p));
    // Another random, so the server takes it for a new ClientHello rather
    // than a late copy of the one that opened the association.
    std::mt19937 random(9);
    forge::client_hello_edit edit;
    edit.random = forge::random_bytes(32, random);
    const auto hello = *forge::rewrite_client_hello(p.delivered_to_server[1], edit);
    const auto stranger = peer_address::parse("127.0.0.1:50002");
    for (std::uint8_t claimed : {1, 32, 64, 255}) {
        for (std::size_t present : {std::size_t{0}, std::size_t{1}, std::size_t{claimed} - 1}) {
            BOOST_TEST_CONTEXT("cookie claims " << int(claimed) << " bytes, holds " << present)
            {
                const auto forged = forge::client_hello_with_overlong_cookie(hello, claimed, present);
                BOOST_REQUIRE(forged.has_value());
                p.srv().receive(stranger, *forged, p.time.now());
                p.srv().drain([](const peer_address&, std::span<const std::byte>) {});
                BOOST_TEST(p.srv().find(stranger) == nullptr);
                p.inject_to_server(*forged);
                BOOST_TEST((p.server_side() != nullptr && p.server_side()->is_open()));
            }
        }
    }
    // DTLS 1.3 has its cookie in an extension (RFC 9147 §5.1), with lengths
    // of its own: the cookie<1..2^16-1> inside claiming more or less than
    // the extension holds, and the extension's length running into the next
    // extension, or past the extensions block, every other length field
    // consistent. wolfSSL drops every shape where the cookie's length and
    // the extension's disagree without an answer, and answers an extension
    // past the block with a fatal decode_error alert (the ClientHello does
    // not parse); the front door counts that as a refused hello, and must
    // not report it as a cookie that did not verify. None opens anything,
    // and the open association takes none of them.
    if constexpr (Pair::dtls13) {
        const auto body = forge::find_message(hello, handshake_type::client_hello)->body;
        const auto layout = forge::extensions_of(body);
        BOOST_REQUIRE(layout.has_value());
        const auto cookie = layout->find(forge::cookie_extension_type);
        BOOST_REQUIRE(cookie.has_value());
        BOOST_REQUIRE(cookie->length > 2u);
        const std::size_t real = cookie->length - 2;
        struct shape {
            std::string what;
            bytes forged;
            bool decode_error; // else dropped without an answer
        };
        std::vector<shape> shapes;
        const std::pair<std::size_t, std::size_t> inner[] = {
            {1, 0}, {real, 0}, {real, 1}, {real, real - 1}, {255, 254}, {256, 255}, {1000, 999},
            {0xffff, 0}, {0xffff, 1}, {0, real}, {1, real}, {real - 1, real}};
        for (const auto& [claimed, held] : inner) {
            bytes data{std::byte(claimed >> 8), std::byte(claimed & 0xff)};
            data.resize(2 + held, std::byte{0xa5});
            shapes.push_back({"the cookie claims " + std::to_string(claimed) + " bytes, the extension holds " +
                                  std::to_string(held),
                              *forge::with_cookie_extension_data(hello, data), false});
        }
        // From the cookie's data to the end of the extensions block (the
        // ClientHello's end).
        const std::size_t left = body.size() - cookie->data_at();
        if (cookie->length < left)
            shapes.push_back({"the extension runs into the next one",
                              *forge::with_cookie_extension_length(hello, static_cast<std::uint16_t>(cookie->length + 1)),
                              false});
        shapes.push_back({"the extension runs to the end of the block",
                          *forge::with_cookie_extension_length(hello, static_cast<std::uint16_t>(left)), false});
        for (std::size_t claimed : {left + 1, std::size_t{0xffff}})
            shapes.push_back({"the extension claims " + std::to_string(claimed) + " bytes, " + std::to_string(left) +
                                  " are left in the block",
                              *forge::with_cookie_extension_length(hello, static_cast<std::uint16_t>(claimed)), true});
        struct {
            std::vector<failure> refusals;
            void on_refused(const peer_address&, const failure& f) { refusals.push_back(f); }
        } handler;
        const auto created = p.srv().counters().sessions_created;
        for (const auto& s : shapes) {
            BOOST_TEST_CONTEXT(s.what)
            {
                const auto before = p.srv().counters();
                handler.refusals.clear();
                p.srv().receive(stranger, s.forged, p.time.now(), handler);
                datagrams answers;
                p.srv().drain([&](const peer_address& to, std::span<const std::byte> d) {
                    BOOST_TEST(to == stranger);
                    answers.emplace_back(d.begin(), d.end());
                });
                const auto& after = p.srv().counters();
                BOOST_TEST(p.srv().find(stranger) == nullptr);
                BOOST_TEST(after.sessions_created == created);
                if (s.decode_error) {
                    BOOST_TEST(after.hellos_refused == before.hellos_refused + 1);
                    BOOST_REQUIRE(answers.size() == 1u);
                    BOOST_TEST(is_fatal_alert(answers[0], 50)); // decode_error
                    BOOST_REQUIRE(handler.refusals.size() == 1u);
                    BOOST_TEST(handler.refusals[0].what().find("decode_error") != std::string::npos,
                               handler.refusals[0].what());
                } else {
                    BOOST_TEST(after.dropped_without_session == before.dropped_without_session + 1);
                    BOOST_TEST(answers.empty());
                    BOOST_TEST(handler.refusals.empty());
                }
                // To the open association, from its own address.
                p.inject_to_server(s.forged);
                BOOST_TEST((p.server_side() != nullptr && p.server_side()->is_open()));
                BOOST_TEST(p.srv().counters().sessions_created == created);
            }
        }
    }
    // Cut before the random ends, the body is too short to be a ClientHello
    // at all: it reaches the association itself, where mbedTLS checks an
    // epoch-0 ClientHello for a client reconnect (RFC 6347 §4.2.8).
    const auto whole = *forge::find_message(hello, handshake_type::client_hello);
    for (std::size_t cut : {0u, 1u, 2u, 10u, 33u, 35u, 36u}) {
        BOOST_TEST_CONTEXT("ClientHello body cut to " << cut << " bytes")
        {
            const auto forged = forge::record(
                content_type::handshake, 0, 900 + cut,
                forge::handshake_message(handshake_type::client_hello, whole.message_seq, whole.body.first(cut)));
            p.inject_to_server(forged);
            BOOST_TEST((p.server_side() != nullptr && p.server_side()->is_open()));
        }
    }
    BOOST_TEST(p.srv().session_count() == 1u);
    check_still_open_and_flowing(p, "after overlong cookies");
}

// ===========================================================================
// A whole flight replayed from an earlier association

// Every datagram a client sent in a first handshake, replayed into a second,
// open association of the same address on a server that shares the cookie
// secret (or the same server, within the cookie's lifetime). The old
// cookie still verifies, but the replay is not the peer starting over: the
// open association must survive it (RFC 6347 §4.2.8 keeps the old
// association until the new handshake completes).
BOOST_AUTO_TEST_CASE_TEMPLATE(a_flight_replayed_from_an_earlier_association_leaves_the_open_one_alone, Pair,
                              all_pairs)
{
    auto server_cfg = server_config();
    server_cfg.cookie_secret = std::vector<std::uint8_t>(32, 0x5c);
    auto earlier = make_pair<Pair>(server_cfg, client_config());
    BOOST_REQUIRE(open_association(earlier));
    const auto captured = earlier.delivered_to_server; // ClientHellos, the key exchange flight, none since
    BOOST_REQUIRE(captured.size() >= 3u);

    auto p = make_pair<Pair>(server_cfg, client_config());
    BOOST_REQUIRE(open_association(p));
    for (std::size_t i = 0; i < captured.size(); ++i) {
        BOOST_TEST_CONTEXT("replayed datagram " << i + 1 << " of " << captured.size())
        {
            p.inject_to_server(captured[i]);
            BOOST_TEST((p.server_side() != nullptr && p.server_side()->is_open()),
                       (p.server_failures().empty() ? std::string("no failure reported")
                                                    : p.server_failures().back().what()));
        }
    }
    BOOST_TEST(p.server_opened() == 1u); // no second association opened in its place
    check_still_open_and_flowing(p, "after a replayed flight");
}
