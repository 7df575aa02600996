// server<Backend> and udp_server<Backend>, typed over every backend: many
// associations behind one socket, the stateless cookie front door, session
// limits, idle expiry and isolation between peers.
//
// Tests that need the wire run udp_server in its own thread (a bounded loop
// that stops on an atomic flag) and read its state only while that thread is
// paused (joined). Tests about the front door feed server<Backend>::receive
// directly, which lets them use any source address.
#define BOOST_TEST_MODULE server
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <dtlspp/client.hpp>
#include <dtlspp/udp_server.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------------------
// An echo udp_server<Backend> in a thread.

template <class Backend>
class running_server {
public:
    struct close_event {
        peer_address peer;
        failure why;
        time_point at;
    };

    running_server(const config& c, server_settings settings = {}, const std::string& local = "127.0.0.1:0")
    {
        auto s = udp_server<Backend>::bind(c, peer_address::parse(local), settings, bind_failure_);
        if (!s) return;
        server_.emplace(std::move(*s));
        address_ = server_->local_address();
        resume();
    }

    running_server(const running_server&) = delete;
    running_server& operator=(const running_server&) = delete;
    ~running_server() { pause(); }

    bool started() const { return server_.has_value(); }
    const failure& bind_failure() const { return bind_failure_; }
    const peer_address& address() const { return address_; }

    // Stops the loop and joins the thread: afterwards the test thread may
    // use core() until resume().
    void pause()
    {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    void resume()
    {
        pause();
        stop_ = false;
        // Safety net: no loop outlives a minute even if a test forgets it.
        const auto give_up = clock::now() + 60s;
        thread_ = std::thread([this, give_up] {
            handler_.owner = this;
            while (!stop_.load() && clock::now() < give_up) {
                server_->run_once(10ms, handler_);
                sessions_ = server_->core().session_count();
                ++rounds_;
            }
        });
    }

    server<Backend>& core()
    {
        BOOST_REQUIRE(!thread_.joinable()); // only while paused
        return server_->core();
    }

    // Waits (bounded) until the server has exactly `n` sessions, as seen by
    // a loop round that started after this call (never a stale count).
    bool wait_for_sessions(std::size_t n, std::chrono::milliseconds limit) const
    {
        const auto give_up = clock::now() + limit;
        const auto first_round = rounds_.load() + 2;
        while (clock::now() < give_up) {
            if (rounds_.load() >= first_round && sessions_.load() == n) return true;
            std::this_thread::sleep_for(2ms);
        }
        return false;
    }

    std::vector<close_event> closed() const
    {
        std::lock_guard lock(mutex_);
        return handler_.closed;
    }
    std::size_t opened() const
    {
        std::lock_guard lock(mutex_);
        return handler_.opened;
    }

private:
    struct handler {
        running_server* owner = nullptr;
        std::size_t opened = 0;
        std::vector<close_event> closed;

        void on_open(const peer_address&)
        {
            std::lock_guard lock(owner->mutex_);
            ++opened;
        }
        void on_data(const peer_address& peer, std::span<const std::byte> data)
        {
            std::error_code ignored;
            owner->server_->send(peer, data, ignored);
        }
        void on_close(const peer_address& peer, const failure& why)
        {
            std::lock_guard lock(owner->mutex_);
            closed.push_back({peer, why, clock::now()});
        }
    };

    failure bind_failure_;
    std::optional<udp_server<Backend>> server_;
    peer_address address_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> sessions_{0};
    std::atomic<std::uint64_t> rounds_{0}; // loop rounds completed
    mutable std::mutex mutex_;
    handler handler_;
    std::thread thread_;
};

// ---------------------------------------------------------------------------
// A client endpoint on a socket of its own, driven from the test thread. Unlike
// client<Backend> it can also put raw bytes on the wire from its own address.

template <class Backend>
class udp_peer {
public:
    static std::unique_ptr<udp_peer> connect(const config& c, const peer_address& server, failure& f)
    {
        std::error_code ec;
        const auto local = server.family() == address_family::ipv6 ? "[::1]:0" : "127.0.0.1:0";
        auto socket = udp_socket::bind(peer_address::parse(local), ec);
        if (ec) {
            f = {ec, "bind"};
            return nullptr;
        }
        auto e = endpoint<Backend>::connect(c, clock::now(), f);
        if (!e) return nullptr;
        auto p = std::unique_ptr<udp_peer>(new udp_peer(std::move(socket), server, std::move(*e)));
        p->flush();
        return p;
    }

    // Runs until the handshake is over (or `limit`); true when open.
    bool handshake(std::chrono::milliseconds limit = 10s)
    {
        const auto give_up = clock::now() + limit;
        while (e_->state() == endpoint_state::handshaking && clock::now() < give_up) poll(50ms);
        return e_->is_open();
    }

    void send(const std::string& text, std::error_code& ec)
    {
        e_->send(as_bytes(text), clock::now(), ec);
        flush();
    }

    // The next message, waiting at most `limit`.
    std::optional<std::string> receive(std::chrono::milliseconds limit)
    {
        const auto give_up = clock::now() + limit;
        while (inbox_.empty() && clock::now() < give_up) poll(20ms);
        if (inbox_.empty()) return std::nullopt;
        auto m = std::move(inbox_.front());
        inbox_.pop_front();
        return m;
    }

    // Sends `text` and returns the next message, or what went wrong.
    std::string echo(const std::string& text, std::chrono::milliseconds limit = 5s)
    {
        std::error_code ec;
        send(text, ec);
        if (ec) return "<send failed: " + ec.message() + ">";
        auto reply = receive(limit);
        return reply ? *reply : "<no reply>";
    }

    // Bytes on the wire from this peer's address, bypassing DTLS.
    void send_raw(std::span<const std::byte> datagram)
    {
        std::error_code ignored;
        socket_.send_to(datagram, server_, ignored);
    }

    // One round: wait for a datagram or the endpoint's deadline (at most
    // `wait`), feed what arrived, run the timer, send what is queued.
    void poll(std::chrono::milliseconds wait)
    {
        if (auto deadline = e_->next_deadline()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - clock::now());
            wait = std::clamp(left, 0ms, wait);
        }
        std::error_code ec;
        if (socket_.wait_readable(wait, ec)) {
            std::array<std::byte, max_datagram_in + 1> buffer;
            for (int i = 0; i < 64; ++i) {
                peer_address from;
                auto n = socket_.receive_from(buffer, from, ec);
                if (!n) break;
                if (!(from == server_)) continue;
                e_->receive(std::span<const std::byte>(buffer.data(), *n), clock::now(),
                            [&](std::span<const std::byte> d) { inbox_.push_back(as_string(d)); });
            }
        }
        if (auto deadline = e_->next_deadline(); deadline && clock::now() >= *deadline) e_->on_timeout(clock::now());
        flush();
    }

    endpoint<Backend>& association() { return *e_; }
    const peer_address& address() const { return address_; }
    // The last datagram this peer sent (a copy of real, authenticated bytes).
    const bytes& last_sent() const { return last_sent_; }
    std::size_t unread() const { return inbox_.size(); }

private:
    udp_peer(udp_socket socket, peer_address server, endpoint<Backend> e)
        : socket_(std::move(socket)), server_(std::move(server)), e_(std::move(e))
    {
        address_ = socket_.local_address();
    }

    void flush()
    {
        e_->drain([&](std::span<const std::byte> d) {
            last_sent_.assign(d.begin(), d.end());
            send_raw(d);
        });
    }

    udp_socket socket_;
    peer_address server_;
    peer_address address_;
    std::optional<endpoint<Backend>> e_;
    std::deque<std::string> inbox_;
    bytes last_sent_;
};

// ---------------------------------------------------------------------------
// Sans-I/O helpers.

// The first datagram a fresh client would send: a cookieless ClientHello.
template <class Backend>
bytes first_client_hello()
{
    failure f;
    auto e = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(e, f.what());
    BOOST_REQUIRE_EQUAL(e->pending().size(), 1u);
    const auto d = e->pending()[0];
    return bytes(d.begin(), d.end());
}

// The handshake message types a datagram carries (plaintext records only).
std::vector<int> handshake_types(std::span<const std::byte> d)
{
    std::vector<int> types;
    parse_datagram(d, [&](const record_view& r) {
        if (r.type != content_type::handshake || r.is_encrypted()) return;
        for (const auto& fragment : r.fragments()) types.push_back(fragment.msg_type);
    });
    return types;
}

// The cookie exchange's reply: a HelloVerifyRequest (3) on DTLS 1.2; on
// 1.3 a HelloRetryRequest, which is a ServerHello (2) on the wire (RFC 8446
// §4.1.3).
template <class Backend>
constexpr int cookie_reply_type = speaks_dtls13<Backend> ? 2 : 3;

struct routed {
    peer_address to;
    bytes datagram;
};

template <class Backend>
std::vector<routed> drain_all(server<Backend>& s)
{
    std::vector<routed> out;
    s.drain([&](const peer_address& to, std::span<const std::byte> d) { out.push_back({to, bytes(d.begin(), d.end())}); });
    return out;
}

// Moves datagrams between one client endpoint (seen as `from`) and a server
// core in memory, running timers on real time, until the client's handshake
// is over or `limit` has passed. Datagrams for other peers are discarded.
template <class Backend>
void handshake_in_memory(server<Backend>& s, endpoint<Backend>& e, const peer_address& from,
                         std::chrono::milliseconds limit = 10s)
{
    const auto give_up = clock::now() + limit;
    while (e.state() == endpoint_state::handshaking && clock::now() < give_up) {
        bool moved = false;
        e.drain([&](std::span<const std::byte> d) {
            moved = true;
            s.receive(from, d, clock::now());
        });
        for (auto& r : drain_all(s)) {
            moved = true;
            if (r.to == from) e.receive(r.datagram, clock::now());
        }
        if (moved) continue;
        auto next = give_up;
        if (auto d = e.next_deadline()) next = std::min(next, *d);
        if (auto d = s.next_deadline()) next = std::min(next, *d);
        std::this_thread::sleep_until(next);
        e.on_timeout(clock::now());
        s.on_timeout(clock::now());
    }
}

peer_address fake_peer(std::size_t i)
{
    // Half IPv4, half IPv6; every (address, port) pair distinct.
    const auto port = std::to_string(1024 + i % 50000);
    if (i % 2 == 0)
        return peer_address::parse("10." + std::to_string(i / 500 % 256) + "." + std::to_string(i / 2 % 250) + ".7:" +
                                   port);
    return peer_address::parse("[fd00::" + std::to_string(i % 9000 + 1) + "]:" + port);
}

std::string message_for(std::size_t client, std::size_t i)
{
    std::string m = "client " + std::to_string(client) + " message " + std::to_string(i) + " ";
    m.append((client * 37 + i * 11) % 400, static_cast<char>('a' + (client + i) % 26));
    return m;
}

} // namespace

// ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(fifty_concurrent_clients_get_every_echo_on_one_server_socket, Backend, all_backends)
{
    constexpr std::size_t clients = 50;
    constexpr std::size_t echoes = 100;
    running_server<Backend> srv(server_config());
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());

    // Boost.Test is not thread-safe: each thread writes only its own slot,
    // and the assertions run after the join.
    struct outcome {
        bool connected = false;
        std::size_t correct = 0;
        std::string problem;
    };
    std::vector<outcome> results(clients);
    std::vector<std::thread> threads;
    for (std::size_t id = 0; id < clients; ++id) {
        threads.emplace_back([&, id] {
            auto& r = results[id];
            auto cfg = client_config();
            cfg.handshake_deadline = 20s;
            failure f;
            auto c = client<Backend>::connect(cfg, srv.address(), f);
            if (!c) {
                r.problem = "connect: " + f.what();
                return;
            }
            r.connected = true;
            std::vector<std::byte> reply(2048);
            for (std::size_t i = 0; i < echoes; ++i) {
                const auto m = message_for(id, i);
                std::error_code ec;
                c->send(as_bytes(m), ec);
                const auto n = ec ? std::nullopt : c->receive(reply, 5s, ec);
                if (!n || as_string(std::span<const std::byte>(reply.data(), *n)) != m) {
                    // Stop at the first miss: the test stays bounded.
                    r.problem = "echo " + std::to_string(i) + ": " + (ec ? ec.message() : n ? "wrong bytes" : "timeout");
                    break;
                }
                ++r.correct;
            }
            c->close();
        });
    }
    for (auto& t : threads) t.join();

    for (std::size_t id = 0; id < clients; ++id) {
        BOOST_TEST_CONTEXT("client " << id)
        {
            BOOST_TEST(results[id].connected, results[id].problem);
            BOOST_TEST(results[id].correct == echoes, results[id].problem);
        }
    }
    // Every close_notify arrived: nothing is left behind.
    BOOST_TEST(srv.wait_for_sessions(0, 5s));
    srv.pause();
    const auto& k = srv.core().counters();
    BOOST_TEST(srv.core().session_count() == 0u);
    BOOST_TEST(k.sessions_created == clients);
    BOOST_TEST(k.sessions_closed == clients);
    BOOST_TEST(k.sessions_failed == 0u);
    BOOST_TEST(srv.opened() == clients);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(two_hundred_back_to_back_handshakes_need_no_retransmission, Backend, all_backends)
{
    // The seed's sample accepted each client on a socket of its own; the
    // client's second ClientHello could reach the listening socket first,
    // get lost, and cost a 1 s retransmission. On one socket none is lost.
    constexpr std::size_t handshakes = 200;
    running_server<Backend> srv(server_config());
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());

    std::uint64_t retransmissions = 0;
    std::size_t completed = 0;
    std::chrono::nanoseconds slowest{0};
    for (std::size_t i = 0; i < handshakes; ++i) {
        failure f;
        auto c = client<Backend>::connect(client_config(), srv.address(), f);
        BOOST_REQUIRE_MESSAGE(c, "handshake " << i << ": " << f.what());
        ++completed;
        const auto& k = c->association().counters();
        retransmissions += k.retransmissions;
        slowest = std::max(slowest, k.handshake_duration);
        c->close();
    }
    BOOST_TEST(completed == handshakes);
    BOOST_TEST(retransmissions == 0u);
    BOOST_TEST(slowest < std::chrono::nanoseconds(1s)); // below the first retransmission timeout
    BOOST_TEST_MESSAGE(Backend::name << ": slowest handshake "
                                     << std::chrono::duration_cast<std::chrono::microseconds>(slowest).count()
                                     << " us");

    BOOST_TEST(srv.wait_for_sessions(0, 5s));
    srv.pause();
    const auto& k = srv.core().counters();
    BOOST_TEST(k.sessions_created == handshakes);
    // Exactly one HelloVerifyRequest per client: no ClientHello was resent.
    BOOST_TEST(k.hello_verify_requests == handshakes);
    BOOST_TEST(k.sessions_failed == 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(spoofed_cookieless_client_hellos_create_no_session, Backend, all_backends)
{
    constexpr std::size_t spoofed = 1000;
    failure f;
    auto s = server<Backend>::create(server_config(), {}, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    const auto hello = first_client_hello<Backend>();
    BOOST_REQUIRE(!hello.empty());

    std::vector<peer_address> sources;
    for (std::size_t i = 0; i < spoofed; ++i) sources.push_back(fake_peer(i));
    {
        std::set<std::string> distinct;
        for (const auto& p : sources) distinct.insert(p.to_string());
        BOOST_REQUIRE_EQUAL(distinct.size(), spoofed);
    }

    for (const auto& from : sources) s->receive(from, hello, clock::now());

    BOOST_TEST(s->session_count() == 0u);
    BOOST_TEST(s->counters().sessions_created == 0u);
    BOOST_TEST(s->counters().hello_verify_requests == spoofed);
    BOOST_TEST(s->counters().dropped_without_session == 0u);
    BOOST_TEST(!s->next_deadline()); // no timer either: nothing is kept per source

    // Each source got one HelloVerifyRequest, no larger than what it sent
    // (no amplification towards the spoofed victim).
    const auto answers = drain_all(*s);
    BOOST_REQUIRE_EQUAL(answers.size(), spoofed);
    std::size_t misrouted = 0, not_hvr = 0, larger = 0;
    for (std::size_t i = 0; i < spoofed; ++i) {
        if (!(answers[i].to == sources[i])) ++misrouted;
        if (handshake_types(answers[i].datagram) != std::vector<int>{cookie_reply_type<Backend>}) ++not_hvr;
        if (answers[i].datagram.size() > hello.size()) ++larger;
    }
    BOOST_TEST(misrouted == 0u);
    BOOST_TEST(not_hvr == 0u);
    BOOST_TEST(larger == 0u);

    // The front door still works for a real client afterwards.
    auto e = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(e, f.what());
    const auto real = peer_address::parse("192.0.2.1:4444");
    handshake_in_memory(*s, *e, real);
    BOOST_TEST(e->is_open(), e->last_failure().what());
    BOOST_TEST(s->session_count() == 1u);
    BOOST_TEST(s->counters().sessions_created == 1u);
    BOOST_TEST(s->find(real) != nullptr);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(spoofed_client_hellos_over_udp_from_many_ports_create_no_session, Backend, all_backends)
{
    constexpr std::size_t sockets = 200;
    running_server<Backend> srv(server_config());
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    const auto hello = first_client_hello<Backend>();

    std::vector<udp_socket> spoofers;
    for (std::size_t i = 0; i < sockets; ++i) {
        spoofers.push_back(udp_socket::bind(peer_address::parse("127.0.0.1:0")));
        spoofers.back().send_to(hello, srv.address());
    }
    // Every source gets its HelloVerifyRequest back.
    std::size_t answered = 0;
    std::array<std::byte, 2048> buffer;
    for (auto& sock : spoofers) {
        std::error_code ec;
        if (!sock.wait_readable(2s, ec)) continue;
        peer_address from;
        const auto n = sock.receive_from(buffer, from, ec);
        if (n && from == srv.address() &&
            handshake_types(std::span<const std::byte>(buffer.data(), *n)) ==
                std::vector<int>{cookie_reply_type<Backend>})
            ++answered;
    }
    BOOST_TEST(answered == sockets);
    BOOST_TEST(srv.wait_for_sessions(0, 1s));

    // A real client still gets through.
    failure f;
    auto c = client<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(c, f.what());
    c->close();
    BOOST_TEST(srv.wait_for_sessions(0, 2s));

    srv.pause();
    const auto& k = srv.core().counters();
    BOOST_TEST(k.hello_verify_requests == sockets + 1);
    BOOST_TEST(k.sessions_created == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_cookie_opens_a_session_only_for_the_address_it_was_issued_to, Backend, all_backends)
{
    failure f;
    auto s = server<Backend>::create(server_config(), {}, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    auto e = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(e, f.what());
    const auto issued_to = peer_address::parse("192.0.2.10:5000");
    const auto other_port = peer_address::parse("192.0.2.10:5001");
    const auto other_host = peer_address::parse("192.0.2.11:5000");

    // ClientHello, HelloVerifyRequest, ClientHello with the cookie.
    BOOST_REQUIRE_EQUAL(e->pending().size(), 1u);
    const bytes cookieless(e->pending()[0].begin(), e->pending()[0].end());
    e->drain([&](std::span<const std::byte> d) { s->receive(issued_to, d, clock::now()); });
    auto answers = drain_all(*s);
    BOOST_REQUIRE_EQUAL(answers.size(), 1u);
    e->receive(answers[0].datagram, clock::now());
    BOOST_REQUIRE_EQUAL(e->pending().size(), 1u);
    const bytes with_cookie(e->pending()[0].begin(), e->pending()[0].end());
    BOOST_REQUIRE(with_cookie.size() > cookieless.size()); // it carries the cookie

    // Replayed from elsewhere, the cookie is only worth a new HelloVerifyRequest.
    // wolfSSL on DTLS 1.3 answers it with a fatal alert instead: refused.
    for (const auto& from : {other_port, other_host}) {
        BOOST_TEST_CONTEXT("from " << from)
        {
            if constexpr (speaks_dtls13<Backend>) {
                const auto refused_before = s->counters().hellos_refused;
                s->receive(from, with_cookie, clock::now());
                BOOST_TEST(s->session_count() == 0u);
                BOOST_TEST(s->counters().hellos_refused == refused_before + 1);
                answers = drain_all(*s);
                BOOST_REQUIRE_EQUAL(answers.size(), 1u);
                BOOST_TEST(answers[0].to == from);
                BOOST_TEST((answers[0].datagram[0] == std::byte{21})); // an alert
                continue;
            }
            const auto before = s->counters().hello_verify_requests;
            s->receive(from, with_cookie, clock::now());
            BOOST_TEST(s->session_count() == 0u);
            BOOST_TEST(s->counters().hello_verify_requests == before + 1);
            answers = drain_all(*s);
            BOOST_REQUIRE_EQUAL(answers.size(), 1u);
            BOOST_TEST(answers[0].to == from);
            BOOST_TEST((handshake_types(answers[0].datagram) == std::vector<int>{cookie_reply_type<Backend>}));
        }
    }
    BOOST_TEST(s->counters().sessions_created == 0u);

    // From the address it was issued to, it opens the session.
    handshake_in_memory(*s, *e, issued_to);
    BOOST_TEST(e->is_open(), e->last_failure().what());
    BOOST_TEST(s->counters().sessions_created == 1u);
    BOOST_TEST(s->find(issued_to) != nullptr);
    BOOST_TEST(s->find(other_port) == nullptr);
}

// Refusals are loud: a client refused at max_sessions learns it at once
// from a fatal alert, instead of waiting out its handshake deadline.
BOOST_AUTO_TEST_CASE_TEMPLATE(max_sessions_refuses_a_third_client_at_once_while_the_first_two_still_echo, Pair,
                              all_pairs)
{
    using Client = typename Pair::client;
    using Server = typename Pair::server;
    server_settings settings;
    settings.max_sessions = 2;
    running_server<Server> srv(server_config(), settings);
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());

    failure f;
    auto first = client<Client>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(first, f.what());
    auto second = client<Client>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(second, f.what());
    BOOST_REQUIRE(srv.wait_for_sessions(2, 2s));

    // The third gets its HelloVerifyRequest, and once its cookie verifies,
    // the refusal: well before its handshake deadline.
    auto third_cfg = client_config();
    third_cfg.handshake_deadline = 5s;
    const auto started = clock::now();
    auto third = client<Client>::connect(third_cfg, srv.address(), f);
    const auto elapsed = clock::now() - started;
    BOOST_TEST(!third);
    BOOST_TEST((elapsed < 2s), "refused after " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                                                << " ms: " << f.what());
    BOOST_TEST((f.code == errc::too_many_sessions), f.what());
    BOOST_TEST(srv.wait_for_sessions(2, 1s));

    for (auto* c : {&first, &second}) {
        std::error_code ec;
        (*c)->send(as_bytes("still served"), ec);
        std::vector<std::byte> reply(64);
        const auto n = (*c)->receive(reply, 5s, ec);
        BOOST_REQUIRE_MESSAGE(n, ec.message());
        BOOST_TEST(as_string(std::span<const std::byte>(reply.data(), *n)) == "still served");
    }

    srv.pause();
    const auto& k = srv.core().counters();
    BOOST_TEST(k.sessions_refused == 1u);
    BOOST_TEST(k.sessions_created == 2u);
    BOOST_TEST(srv.core().session_count() == 2u);
    srv.resume();

    // A freed slot is usable again.
    first->close();
    BOOST_REQUIRE(srv.wait_for_sessions(1, 2s));
    auto fourth = client<Client>::connect(client_config(), srv.address(), f);
    BOOST_TEST(fourth.has_value(), f.what());
}

// The refusal on the wire: exactly one plaintext epoch-0 record, a fatal
// internal_error alert, numbered like the ClientHello whose cookie verified,
// and nothing of the stack's own first flight.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_refused_client_gets_one_fatal_internal_error_alert_numbered_like_its_client_hello,
                              Backend, all_backends)
{
    server_settings settings;
    settings.max_sessions = 1;
    failure f;
    auto s = server<Backend>::create(server_config(), settings, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    auto admitted = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(admitted, f.what());
    handshake_in_memory(*s, *admitted, peer_address::parse("192.0.2.40:4000"));
    BOOST_REQUIRE(admitted->is_open());

    const auto refused_at = peer_address::parse("192.0.2.41:4001");
    auto e = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(e, f.what());
    e->drain([&](std::span<const std::byte> d) { s->receive(refused_at, d, clock::now()); });
    auto answers = drain_all(*s);
    BOOST_REQUIRE_EQUAL(answers.size(), 1u); // the HelloVerifyRequest
    e->receive(answers[0].datagram, clock::now());
    BOOST_REQUIRE_EQUAL(e->pending().size(), 1u);
    const bytes hello_with_cookie(e->pending()[0].begin(), e->pending()[0].end());
    e->drain([&](std::span<const std::byte> d) { s->receive(refused_at, d, clock::now()); });

    answers = drain_all(*s);
    BOOST_REQUIRE_EQUAL(answers.size(), 1u);
    BOOST_TEST(answers[0].to == refused_at);
    // Type alert, DTLS 1.2, epoch 0, then the 48-bit sequence number as the
    // ClientHello's record carries it, length 2, fatal, internal_error.
    std::vector<int> expected = {21, 0xfe, 0xfd, 0, 0};
    for (std::size_t i = 5; i < 11; ++i) expected.push_back(std::to_integer<int>(hello_with_cookie[i]));
    for (int b : {0, 2, 2, 80}) expected.push_back(b);
    std::vector<int> sent;
    for (auto b : answers[0].datagram) sent.push_back(std::to_integer<int>(b));
    BOOST_TEST(sent == expected, boost::test_tools::per_element());
    // A client that retried would have a non-zero number: it is copied, not assumed.
    BOOST_TEST(std::to_integer<int>(hello_with_cookie[10]) != 0);
    BOOST_TEST(s->counters().sessions_refused == 1u);
    BOOST_TEST(s->session_count() == 1u);
    BOOST_TEST(s->find(refused_at) == nullptr);

    // The client takes it as the end of its handshake, at once.
    e->receive(answers[0].datagram, clock::now());
    BOOST_TEST((e->state() == endpoint_state::failed));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_silent_association_expires_after_the_idle_timeout, Backend, all_backends)
{
    constexpr auto idle = 300ms;
    server_settings settings;
    settings.idle_timeout = idle;
    running_server<Backend> srv(server_config(), settings);
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());

    failure f;
    auto silent = udp_peer<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(silent, f.what());
    BOOST_REQUIRE_MESSAGE(silent->handshake(), silent->association().last_failure().what());
    auto busy = udp_peer<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(busy, f.what());
    BOOST_REQUIRE_MESSAGE(busy->handshake(), busy->association().last_failure().what());

    const auto last_word = clock::now(); // before the server last heard from `silent`
    BOOST_REQUIRE(silent->echo("then silence") == "then silence");

    // `busy` keeps talking for three idle periods; `silent` says nothing.
    const auto talk_until = clock::now() + 3 * idle;
    std::size_t busy_echoes = 0, busy_attempts = 0;
    while (clock::now() < talk_until) {
        ++busy_attempts;
        if (busy->echo("ping " + std::to_string(busy_attempts), 1s) == "ping " + std::to_string(busy_attempts))
            ++busy_echoes;
        silent->poll(0ms);
        std::this_thread::sleep_for(30ms);
    }
    BOOST_TEST(busy_echoes == busy_attempts);
    BOOST_TEST(busy_attempts >= 5u);

    BOOST_TEST(srv.wait_for_sessions(1, 2s));
    const auto closed = srv.closed();
    BOOST_REQUIRE_EQUAL(closed.size(), 1u);
    BOOST_TEST(closed[0].peer == silent->address());
    BOOST_TEST((closed[0].why.code == errc::idle_timeout), closed[0].why.what());
    BOOST_TEST((closed[0].at - last_word >= idle));
    BOOST_TEST((closed[0].at - last_word < idle + 1s));

    // The expiry is announced: the silent client reads a close_notify.
    const auto give_up = clock::now() + 2s;
    while (silent->association().is_open() && clock::now() < give_up) silent->poll(20ms);
    BOOST_TEST((silent->association().state() == endpoint_state::closed));
    BOOST_TEST((silent->association().error() == errc::peer_closed), silent->association().last_failure().what());

    // The busy one is untouched; once it falls silent too, it goes the same way.
    BOOST_TEST(busy->echo("still here") == "still here");
    BOOST_TEST(srv.closed().size() == 1u);
    BOOST_TEST(srv.wait_for_sessions(0, 2s));
    srv.pause();
    BOOST_TEST(srv.core().session_count() == 0u);
    BOOST_TEST(srv.core().counters().sessions_expired == 2u);
    const auto all_closed = srv.closed();
    BOOST_REQUIRE_EQUAL(all_closed.size(), 2u);
    BOOST_TEST(all_closed[1].peer == busy->address());
    BOOST_TEST((all_closed[1].why.code == errc::idle_timeout), all_closed[1].why.what());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(malformed_datagrams_from_one_peer_do_not_disturb_another, Backend, all_backends)
{
    running_server<Backend> srv(server_config());
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    failure f;
    auto good = udp_peer<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(good, f.what());
    BOOST_REQUIRE(good->handshake());
    auto noisy = udp_peer<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(noisy, f.what());
    BOOST_REQUIRE(noisy->handshake());
    BOOST_REQUIRE(noisy->echo("noisy before") == "noisy before");
    const bytes real = noisy->last_sent(); // an authenticated application record
    BOOST_REQUIRE(real.size() > 13u);
    auto stranger = udp_socket::bind(peer_address::parse("127.0.0.1:0"));

    // What the noisy peer (which has a session) and a stranger (which has
    // none) throw at the server.
    std::vector<bytes> junk;
    std::mt19937 random(11);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int i = 0; i < 100; ++i) {
        bytes b(static_cast<std::size_t>(1 + i * 13 % 600));
        for (auto& x : b) x = static_cast<std::byte>(byte(random));
        junk.push_back(b);
    }
    for (std::size_t n = 1; n < real.size(); n += 3) junk.emplace_back(real.begin(), real.begin() + static_cast<long>(n));
    bytes wrong_epoch = real;
    if constexpr (speaks_dtls13<Backend>) {
        // DTLS 1.3 sends its records under the unified header: forge a
        // 1.2-style header at epoch 6, which no version sends.
        wrong_epoch = bytes{std::byte{23}, std::byte{0xfe}, std::byte{0xfd}, std::byte{0}, std::byte{6}, std::byte{0},
                            std::byte{0},  std::byte{0},    std::byte{0},    std::byte{0}, std::byte{1}, std::byte{0},
                            std::byte{40}};
        wrong_epoch.resize(13 + 40, std::byte{0x33});
    } else {
        wrong_epoch[3] = std::byte{0};
        wrong_epoch[4] = std::byte{6};
    }
    junk.push_back(wrong_epoch);
    bytes flipped = real; // well framed, fails authentication
    flipped.back() ^= std::byte{0x01};
    junk.push_back(flipped);
    junk.push_back(bytes(max_datagram_in + 100, std::byte{23})); // larger than any DTLS datagram
    junk.push_back(real); // a replay: must not be delivered (and echoed) twice

    for (std::size_t i = 0; i < junk.size(); ++i) {
        noisy->send_raw(junk[i]);
        stranger.send_to(junk[i], srv.address());
        if (i == junk.size() / 2) BOOST_TEST(good->echo("good during") == "good during");
    }

    for (int i = 0; i < 10; ++i) {
        const auto m = "good after " + std::to_string(i);
        BOOST_TEST(good->echo(m) == m);
    }
    // The noisy peer's own association survived its junk, and the replay
    // produced no second echo.
    BOOST_TEST(noisy->echo("noisy after") == "noisy after");
    noisy->poll(100ms);
    BOOST_TEST(noisy->unread() == 0u);
    BOOST_TEST(good->association().counters().dropped() == 0u);
    BOOST_TEST(good->association().counters().retransmissions == 0u);

    srv.pause();
    auto& core = srv.core();
    BOOST_TEST(core.session_count() == 2u);
    BOOST_TEST(core.counters().sessions_failed == 0u);
    BOOST_TEST(core.counters().sessions_created == 2u);
    const auto* good_side = core.find(good->address());
    const auto* noisy_side = core.find(noisy->address());
    BOOST_REQUIRE(good_side != nullptr);
    BOOST_REQUIRE(noisy_side != nullptr);
    BOOST_TEST(good_side->is_open());
    BOOST_TEST(noisy_side->is_open());
    BOOST_TEST(good_side->counters().dropped() == 0u);
    BOOST_TEST(noisy_side->counters().dropped() >= 100u);
    BOOST_TEST(noisy_side->counters().dropped_oversized == 1u);
    BOOST_TEST(noisy_side->counters().dropped_wrong_epoch >= 1u);
    // Without a session, junk only ever reaches the stateless front door.
    BOOST_TEST(core.counters().dropped_without_session >= 100u);
    BOOST_TEST(core.find(stranger.local_address()) == nullptr);
}

// RFC 6347 §4.2.8: a client that restarts on the same address and port
// gets a new association; a spoofed ClientHello without a valid cookie
// leaves the old one alone.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_client_restarting_on_the_same_address_gets_a_new_association, Backend, all_backends)
{
    failure f;
    auto s = server<Backend>::create(server_config(), {}, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    const auto from = peer_address::parse("192.0.2.20:6000");

    auto first = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(first, f.what());
    handshake_in_memory(*s, *first, from);
    BOOST_REQUIRE(first->is_open());
    BOOST_REQUIRE(s->find(from) != nullptr);

    // A cookieless ClientHello only earns a HelloVerifyRequest.
    s->receive(from, first_client_hello<Backend>(), clock::now());
    auto answers = drain_all(*s);
    BOOST_REQUIRE_EQUAL(answers.size(), 1u);
    BOOST_TEST((handshake_types(answers[0].datagram) == std::vector<int>{cookie_reply_type<Backend>}));
    BOOST_TEST(s->find(from) != nullptr);
    BOOST_TEST(s->find(from)->is_open());
    BOOST_TEST(s->counters().sessions_created == 1u);

    // The restarted client completes the cookie exchange and replaces it.
    auto second = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(second, f.what());
    handshake_in_memory(*s, *second, from, 5s);
    BOOST_TEST(second->is_open(), second->last_failure().what());
    BOOST_TEST(second->counters().retransmissions == 0u);
    BOOST_TEST(s->counters().sessions_created == 2u);
    BOOST_TEST(s->session_count() == 1u);
}

// A network may duplicate and delay a datagram: a late copy of the
// ClientHello that opened an association must leave it alone.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_late_copy_of_the_opening_client_hello_keeps_the_association, Backend, all_backends)
{
    failure f;
    auto s = server<Backend>::create(server_config(), {}, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    const auto from = peer_address::parse("192.0.2.30:7000");
    auto e = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(e, f.what());

    // Run the handshake by hand, keeping the ClientHello that carried the cookie.
    std::vector<bytes> sent;
    for (int round = 0; round < 20 && !(e->is_open() && s->find(from) && s->find(from)->is_open()); ++round) {
        e->drain([&](std::span<const std::byte> d) {
            sent.emplace_back(d.begin(), d.end());
            s->receive(from, d, clock::now());
        });
        for (auto& r : drain_all(*s)) e->receive(r.datagram, clock::now());
    }
    BOOST_REQUIRE(e->is_open());
    BOOST_REQUIRE(sent.size() >= 2u);
    const bytes hello_with_cookie = sent[1];

    s->receive(from, hello_with_cookie, clock::now());
    for (auto& r : drain_all(*s)) e->receive(r.datagram, clock::now());
    BOOST_TEST(s->counters().duplicate_client_hellos == 1u);
    BOOST_TEST(s->counters().sessions_created == 1u);
    BOOST_REQUIRE(s->find(from) != nullptr);
    BOOST_TEST(s->find(from)->is_open());
    BOOST_TEST(e->is_open());

    // And the association still carries data.
    std::string got;
    struct echo {
        server<Backend>* srv;
        void on_data(const peer_address& to, std::span<const std::byte> d)
        {
            std::error_code ec;
            srv->send(to, d, clock::now(), ec);
        }
    } handler{&*s};
    e->send(as_bytes(std::string("still here")), clock::now());
    e->drain([&](std::span<const std::byte> d) { s->receive(from, d, clock::now(), handler); });
    for (auto& r : drain_all(*s)) e->receive(r.datagram, clock::now(), [&](std::span<const std::byte> d) { got = as_string(d); });
    BOOST_TEST(got == "still here");
}
