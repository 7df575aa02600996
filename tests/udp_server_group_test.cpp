// udp_server_group<Backend> and the socket side of udp_server, over real
// UDP sockets on loopback, typed over every backend:
// - several workers share one port, every worker serves clients, and the
//   group's counters add up;
// - a cookie issued by one worker verifies at another (one secret), and not
//   at a server with another secret;
// - with Connection IDs, a client that rebinds reaches the worker that holds
//   its association, whichever socket its new address hashes to;
// - a full send buffer keeps the datagrams and sends them later, counted;
// - datagrams the kernel dropped for a full receive buffer are counted.
#define BOOST_TEST_MODULE udp_server_group
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <dtlspp/client.hpp>
#include <dtlspp/udp_server_group.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <cerrno>
#include <dlfcn.h>
#include <sys/socket.h>
#endif

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

// See a_full_send_buffer_keeps_the_datagrams_and_sends_them_later.
struct injected_send_buffer {
    std::atomic<int> refuse_every{0}; // 0: sendmmsg as the kernel does it
    std::atomic<int> calls{0};
};
injected_send_buffer full_send_buffer;

// Echoes every message on the worker that received it.
template <class Backend>
struct echo_handler {
    udp_server<Backend>* server = nullptr;
    void on_data(association_ref<Backend> peer, std::span<const std::byte> data)
    {
        std::error_code ignored;
        peer.send(data, ignored);
    }
};

// A group running on its own threads until stopped (at most 60 s).
template <class Backend>
class group_thread {
public:
    group_thread(const config& c, unsigned workers, bool route = true, const std::string& local = "127.0.0.1:0")
    {
        group_settings g;
        g.workers = workers;
        g.route_connection_ids = route;
        auto made = udp_server_group<Backend>::bind(c, peer_address::parse(local), server_settings{}, g, failure_);
        if (!made) return;
        group_.emplace(std::move(*made));
        address_ = group_->local_address();
        thread_ = std::thread([this] {
            const auto deadline = clock::now() + 60s;
            std::atomic<bool>& stop = stop_;
            std::thread watchdog([&] {
                while (!stop && clock::now() < deadline) std::this_thread::sleep_for(10ms);
                stop = true;
            });
            group_->run([](std::size_t, udp_server<Backend>& w) { return echo_handler<Backend>{&w}; }, stop_, 10ms);
            watchdog.join();
        });
    }
    group_thread(const group_thread&) = delete;
    group_thread& operator=(const group_thread&) = delete;
    ~group_thread() { stop(); }

    void stop()
    {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    bool started() const { return group_.has_value(); }
    const failure& bind_failure() const { return failure_; }
    const peer_address& address() const { return address_; }
    // Only after stop().
    udp_server_group<Backend>& group() { return *group_; }

private:
    failure failure_;
    std::optional<udp_server_group<Backend>> group_;
    peer_address address_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

template <class Backend>
std::string echo(client<Backend>& c, const std::string& text, std::chrono::milliseconds limit, std::error_code& ec)
{
    c.send(as_bytes(text), ec);
    if (ec) return {};
    std::vector<std::byte> reply(text.size() + 16);
    const auto n = c.receive(reply, limit, ec);
    if (!n) return {};
    return as_string(std::span<const std::byte>(reply.data(), *n));
}

// Several workers need SO_REUSEPORT (Linux); elsewhere a group has one.
bool several_workers_possible()
{
    if (detail::can_share_ports()) return true;
    BOOST_TEST_MESSAGE("no SO_REUSEPORT port sharing here: a group has one worker");
    return false;
}

} // namespace

#if defined(__linux__)
extern "C" int sendmmsg(int fd, struct mmsghdr* messages, unsigned int count, int flags)
{
    using real_sendmmsg = int (*)(int, struct mmsghdr*, unsigned int, int);
    static const auto real = reinterpret_cast<real_sendmmsg>(::dlsym(RTLD_NEXT, "sendmmsg"));
    const int every = full_send_buffer.refuse_every.load();
    if (every > 0) {
        if (++full_send_buffer.calls % every == 0) {
            errno = EAGAIN;
            return -1;
        }
        count = std::min(count, 4u);
    }
    return real(fd, messages, count, flags);
}
#endif

BOOST_AUTO_TEST_CASE_TEMPLATE(every_worker_serves_clients_on_one_shared_port, Backend, all_backends)
{
    if (!several_workers_possible()) return;
    group_thread<Backend> srv(server_config(), 2);
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    BOOST_TEST(srv.address().port() != 0u);

    // 24 clients from 24 ports: the chance that the kernel's hash put them
    // all on one of the two workers is 2 in 2^24.
    constexpr int clients = 24;
    std::vector<std::unique_ptr<client<Backend>>> open;
    for (int i = 0; i < clients; ++i) {
        failure f;
        auto c = client<Backend>::connect(client_config(), srv.address(), f);
        BOOST_REQUIRE_MESSAGE(c, "client " << i << ": " << f.what());
        std::error_code ec;
        const auto text = "client " + std::to_string(i);
        BOOST_TEST(echo(*c, text, 5s, ec) == text, ec.message());
        open.push_back(std::make_unique<client<Backend>>(std::move(*c)));
    }
    srv.stop();
    auto& g = srv.group();
    BOOST_REQUIRE_EQUAL(g.size(), 2u);
    BOOST_TEST(g.worker(0).local_address() == g.worker(1).local_address());
    for (std::size_t w = 0; w < g.size(); ++w)
        BOOST_TEST(g.worker(w).core().counters().sessions_created > 0u, "worker " << w << " served no client");
    const auto total = g.counters();
    BOOST_TEST(total.sessions_created == std::uint64_t(clients));
    BOOST_TEST(total.sessions_failed == 0u);
    BOOST_TEST(total.sessions_closed == std::uint64_t(clients)); // run() ends with shutdown
    const auto sockets = g.socket_counters();
    BOOST_TEST(sockets.send_errors == 0u);
    BOOST_TEST(sockets.kernel_receive_drops == 0u);
    BOOST_TEST(sockets.receive_calls > 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_cookie_from_one_worker_verifies_at_another, Backend, all_backends)
{
    if (!several_workers_possible()) return;
    // The workers are driven by hand here (no run()): the ClientHello goes
    // to worker 0, the ClientHello with its cookie to worker 1, as when the
    // kernel rehashes after a socket joins or leaves the group.
    failure f;
    group_settings g;
    g.workers = 2;
    auto group = udp_server_group<Backend>::bind(server_config(), peer_address::parse("127.0.0.1:0"), {}, g, f);
    BOOST_REQUIRE_MESSAGE(group, f.what());
    auto other = udp_server_group<Backend>::bind(server_config(), peer_address::parse("127.0.0.1:0"), {}, g, f);
    BOOST_REQUIRE_MESSAGE(other, f.what());
    std::uint16_t next_port = 40000;

    // The ClientHello to `first`, its HelloVerifyRequest back, the
    // ClientHello with the cookie to `second`; then, if `second` took it,
    // the rest of the handshake. Returns whether the client is open.
    auto run = [&](server<Backend>& first, server<Backend>& second, bool expect_accepted) {
        const auto peer = peer_address::parse("127.0.0.1:" + std::to_string(next_port++));
        auto e = endpoint<Backend>::connect(client_config(), clock::now(), f);
        BOOST_REQUIRE_MESSAGE(e, f.what());
        std::vector<std::vector<std::byte>> to_server, to_client;
        auto take_client = [&] {
            e->drain([&](std::span<const std::byte> d) { to_server.emplace_back(d.begin(), d.end()); });
        };
        auto take_server = [&](server<Backend>& s) {
            s.drain([&](const peer_address&, std::span<const std::byte> d) { to_client.emplace_back(d.begin(), d.end()); });
        };
        take_client();
        BOOST_REQUIRE_EQUAL(to_server.size(), 1u); // the ClientHello
        const auto first_hvr = first.counters().hello_verify_requests;
        first.receive(peer, to_server.front(), clock::now());
        to_server.clear();
        take_server(first);
        BOOST_REQUIRE_EQUAL(to_client.size(), 1u); // the HelloVerifyRequest
        BOOST_TEST(first.counters().hello_verify_requests == first_hvr + 1);
        e->receive(to_client.front(), clock::now());
        to_client.clear();
        take_client();
        BOOST_REQUIRE(!to_server.empty()); // the ClientHello with the cookie
        const auto before = second.counters();
        for (const auto& d : to_server) second.receive(peer, d, clock::now());
        to_server.clear();
        const auto& after = second.counters();
        if (!expect_accepted) {
            BOOST_TEST(after.sessions_created == before.sessions_created);
            // wolfSSL on DTLS 1.3 refuses a cookie it cannot verify with an
            // alert instead of a new HelloRetryRequest (policy_test).
            if constexpr (speaks_dtls13<Backend>)
                BOOST_TEST(after.hellos_refused == before.hellos_refused + 1);
            else
                BOOST_TEST(after.hello_verify_requests == before.hello_verify_requests + 1);
            return false;
        }
        BOOST_TEST(after.sessions_created == before.sessions_created + 1);
        BOOST_TEST(after.hello_verify_requests == before.hello_verify_requests);
        for (int round = 0; round < 10 && e->state() == endpoint_state::handshaking; ++round) {
            take_server(second);
            for (const auto& d : to_client) e->receive(d, clock::now());
            to_client.clear();
            take_client();
            for (const auto& d : to_server) second.receive(peer, d, clock::now());
            to_server.clear();
        }
        return e->is_open();
    };

    BOOST_TEST(run(group->worker(0).core(), group->worker(1).core(), true));
    BOOST_TEST(run(group->worker(1).core(), group->worker(0).core(), true));
    // Another group drew another secret: its worker answers the cookie with
    // a new HelloVerifyRequest, and keeps nothing.
    run(group->worker(0).core(), other->worker(1).core(), false);
    BOOST_TEST(other->worker(1).core().session_count() == 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_client_that_rebinds_reaches_the_worker_with_its_connection_id, Backend, all_backends)
{
    if (!several_workers_possible()) return;
    if constexpr (!Backend::traits.connection_id) {
        BOOST_TEST_MESSAGE(Backend::name << " " << Backend::version() << " has no Connection ID: nothing to route");
        return;
    } else {
        auto server_cfg = server_config();
        server_cfg.connection_id = 8;
        auto client_cfg = client_config();
        client_cfg.connection_id = 8;

        // Each rebind picks a new port, which the hash sends to either
        // worker; with routing every echo after every rebind arrives.
        {
            group_thread<Backend> srv(server_cfg, 2);
            BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
            failure f;
            auto c = client<Backend>::connect(client_cfg, srv.address(), f);
            BOOST_REQUIRE_MESSAGE(c, f.what());
            BOOST_REQUIRE(c->association().connection_id().negotiated);
            const auto& own = c->association().connection_id().peer; // the server's CID
            BOOST_REQUIRE_EQUAL(own.size(), 8u);
            const auto owner = std::to_integer<unsigned>(own.front());
            BOOST_TEST(owner < 2u); // the worker index leads the CID
            constexpr int rebinds = 12;
            for (int i = 0; i < rebinds; ++i) {
                std::error_code ec;
                c->rebind(ec);
                BOOST_REQUIRE(!ec);
                const auto text = "after rebind " + std::to_string(i);
                BOOST_TEST(echo(*c, text, 5s, ec) == text, ec.message());
            }
            srv.stop();
            auto& g = srv.group();
            BOOST_TEST(g.routes_connection_ids());
            BOOST_TEST(g.counters().connection_id_unknown == 0u);
            BOOST_TEST(g.worker(owner).core().counters().connection_id_moves == std::uint64_t(rebinds));
            BOOST_TEST(g.counters().sessions_created == 1u);
        }

        // The control: without routing, a rebind that hashes to the other
        // worker is lost there (20 tries: all on the owner has odds 2^-20).
        {
            group_thread<Backend> srv(server_cfg, 2, false);
            BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
            failure f;
            auto c = client<Backend>::connect(client_cfg, srv.address(), f);
            BOOST_REQUIRE_MESSAGE(c, f.what());
            bool lost = false;
            for (int i = 0; i < 20 && !lost; ++i) {
                std::error_code ec;
                c->rebind(ec);
                BOOST_REQUIRE(!ec);
                const auto text = "after rebind " + std::to_string(i);
                lost = echo(*c, text, 700ms, ec) != text;
            }
            srv.stop();
            BOOST_TEST(lost);
            BOOST_TEST(!srv.group().routes_connection_ids());
            BOOST_TEST(srv.group().counters().connection_id_unknown >= 1u);
        }
    }
}

// Loopback never fills a UDP send buffer: the loopback device hands each
// datagram to the receiver at once and frees the sender's share. So the full
// buffer that a real link produces is injected at the system call: this
// binary's sendmmsg takes at most 4 datagrams per call and refuses every
// third call with EAGAIN, as the kernel does when the buffer is full; the
// datagrams still travel over real sockets.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_full_send_buffer_keeps_the_datagrams_and_sends_them_later, Backend, all_backends)
{
#if !defined(__linux__)
    BOOST_TEST_MESSAGE("sendmmsg is Linux's: no full send buffer to inject here");
#else
    failure f;
    auto s = udp_server<Backend>::bind(server_config(), peer_address::parse("127.0.0.1:0"), {}, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    // 60 of 1000 bytes: what the client's default receive buffer holds.
    constexpr int burst = 60;
    struct burst_handler {
        udp_server<Backend>* server;
        void on_data(const peer_address& peer, std::span<const std::byte>)
        {
            const std::string payload(1000, 'b');
            for (int i = 0; i < burst; ++i) {
                std::error_code ec;
                auto text = std::to_string(i) + ":" + payload;
                server->send(peer, as_bytes(text), ec);
            }
        }
    };
    std::atomic<bool> stop{false};
    std::thread loop([&] {
        burst_handler h{&*s};
        const auto deadline = clock::now() + 60s;
        while (!stop && clock::now() < deadline) s->run_once(10ms, h);
    });

    failure cf;
    auto c = client<Backend>::connect(client_config(), s->local_address(), cf);
    BOOST_REQUIRE_MESSAGE(c, cf.what());
    full_send_buffer.refuse_every = 3;
    std::error_code ec;
    c->send(as_bytes("go"), ec);
    BOOST_REQUIRE(!ec);
    int received = 0;
    bool in_order = true;
    std::vector<std::byte> buffer(2048);
    while (received < burst) {
        const auto n = c->receive(buffer, 5s, ec);
        if (!n) break;
        const auto text = as_string(std::span<const std::byte>(buffer.data(), *n));
        if (text.substr(0, text.find(':')) != std::to_string(received)) in_order = false;
        ++received;
    }
    full_send_buffer.refuse_every = 0;
    stop = true;
    loop.join();
    BOOST_TEST(received == burst);
    BOOST_TEST(in_order);
    const auto& k = s->socket_counters();
    BOOST_TEST(k.send_buffer_full > 0u, "no send met a full buffer: the test shows nothing");
    BOOST_TEST(k.sends_deferred > 0u);
    BOOST_TEST(k.send_backlog_full == 0u);
    BOOST_TEST(k.send_errors == 0u);
    BOOST_TEST(s->send_backlog() == 0u);
    BOOST_TEST(s->core().counters().datagrams_out >= std::uint64_t(burst));
#endif
}

// A backlog has a bound: past max_send_backlog datagrams, new ones are
// dropped and counted, never kept without limit.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_send_backlog_past_its_bound_drops_and_counts, Backend, all_backends)
{
#if !defined(__linux__)
    BOOST_TEST_MESSAGE("sendmmsg is Linux's: no full send buffer to inject here");
#else
    udp_settings bounded;
    bounded.max_send_backlog = 10;
    failure f;
    auto s = udp_server<Backend>::bind(server_config(), peer_address::parse("127.0.0.1:0"), {}, bounded, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    struct burst_handler {
        udp_server<Backend>* server;
        void on_data(const peer_address& peer, std::span<const std::byte>)
        {
            for (int i = 0; i < 40; ++i) {
                std::error_code ec;
                server->send(peer, as_bytes("x" + std::to_string(i)), ec);
            }
        }
    };
    std::atomic<bool> stop{false};
    std::thread loop([&] {
        burst_handler h{&*s};
        const auto deadline = clock::now() + 60s;
        while (!stop && clock::now() < deadline) s->run_once(10ms, h);
    });
    failure cf;
    auto c = client<Backend>::connect(client_config(), s->local_address(), cf);
    BOOST_REQUIRE_MESSAGE(c, cf.what());
    // Every call refused until the burst is queued: 40 wait, 10 fit.
    full_send_buffer.refuse_every = 1;
    std::error_code ec;
    c->send(as_bytes("go"), ec);
    std::this_thread::sleep_for(300ms);
    full_send_buffer.refuse_every = 0;
    int received = 0;
    std::vector<std::byte> buffer(256);
    while (c->receive(buffer, 1s, ec)) ++received;
    stop = true;
    loop.join();
    const auto& k = s->socket_counters();
    BOOST_TEST(k.send_backlog_full == 30u);
    BOOST_TEST(k.sends_deferred == 10u);
    BOOST_TEST(received == 10);
    BOOST_TEST(s->send_backlog() == 0u);
#endif
}

// Elsewhere than Linux, more than one worker is refused with a clear error.
BOOST_AUTO_TEST_CASE_TEMPLATE(several_workers_without_port_sharing_are_refused, Backend, all_backends)
{
    group_settings g;
    g.workers = 2;
    failure f;
    auto group = udp_server_group<Backend>::bind(server_config(), peer_address::parse("127.0.0.1:0"), {}, g, f);
    if (detail::can_share_ports()) {
        BOOST_TEST(group.has_value(), f.what());
        return;
    }
    BOOST_TEST(!group.has_value());
    BOOST_TEST((f.code == errc::config_invalid));
    BOOST_TEST(f.what().find("SO_REUSEPORT") != std::string::npos, f.what());
    g.workers = 0; // one per CPU means one here
    auto one = udp_server_group<Backend>::bind(server_config(), peer_address::parse("127.0.0.1:0"), {}, g, f);
    BOOST_REQUIRE(one.has_value());
    BOOST_TEST(one->size() == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(datagrams_the_kernel_dropped_are_counted, Backend, all_backends)
{
    udp_settings small;
    small.socket.receive_buffer_bytes = 4096;
    failure f;
    auto s = udp_server<Backend>::bind(server_config(), peer_address::parse("127.0.0.1:0"), {}, small, f);
    BOOST_REQUIRE_MESSAGE(s, f.what());
    if (!s->socket().counts_kernel_drops()) {
        BOOST_TEST_MESSAGE("this system keeps no receive-drop count");
        return;
    }
    // 200 datagrams of 1000 bytes while the server does not read: a few
    // KiB of buffer holds a handful.
    auto sender = udp_socket::bind(peer_address::parse("127.0.0.1:0"));
    const std::vector<std::byte> junk(1000, std::byte{0x17});
    for (int i = 0; i < 200; ++i) {
        std::error_code ec;
        sender.send_to(junk, s->local_address(), ec);
    }
    s->run_once(100ms);
    // The kernel tells the count with the next datagram it queues: those
    // already queued were there before the drops.
    std::error_code ec;
    sender.send_to(junk, s->local_address(), ec);
    s->run_once(100ms);
    const auto& k = s->socket_counters();
    BOOST_TEST(k.kernel_receive_drops > 0u);
    BOOST_TEST(k.kernel_receive_drops < 200u);
    // What did arrive was read and dropped as garbage, without a session.
    BOOST_TEST(s->core().counters().datagrams_in + k.kernel_receive_drops == 201u);
    BOOST_TEST(s->core().counters().dropped_without_session == s->core().counters().datagrams_in);
}
