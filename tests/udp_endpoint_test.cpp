// client<Backend> against udp_server<Backend> over real UDP sockets on the
// loopback interfaces, typed over every backend: what the in-memory tests
// show must also hold when the kernel carries the datagrams.
//
// The server runs in its own thread (a bounded loop that stops on an atomic
// flag); the client runs in the test thread. Server state is only read after
// its thread has been joined, or through what its handler recorded under a
// mutex.
#define BOOST_TEST_MODULE udp_endpoint
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <dtlspp/client.hpp>
#include <dtlspp/udp_server.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

// A udp_server<Backend> that echoes every message, run by a thread until
// stop() (or, as a safety net, until max_lifetime has passed).
template <class Backend>
class echo_server_thread {
public:
    struct close_event {
        peer_address peer;
        failure why;
    };

    echo_server_thread(const config& c, const std::string& local, server_settings settings = {},
                       std::chrono::seconds max_lifetime = 60s, socket_hook wire = {})
    {
        auto s = udp_server<Backend>::bind(c, peer_address::parse(local), settings, bind_failure_);
        if (!s) return;
        server_.emplace(std::move(*s));
        server_->set_socket_hook(std::move(wire));
        address_ = server_->local_address();
        thread_ = std::thread([this, max_lifetime] { run(max_lifetime); });
    }

    echo_server_thread(const echo_server_thread&) = delete;
    echo_server_thread& operator=(const echo_server_thread&) = delete;
    ~echo_server_thread() { stop(); }

    bool started() const { return server_.has_value(); }
    const failure& bind_failure() const { return bind_failure_; }
    const peer_address& address() const { return address_; }

    // With shutdown, the thread calls udp_server::shutdown (close_notify to
    // every peer) after its last loop. Idempotent.
    void stop(bool shutdown = false)
    {
        shutdown_on_stop_ = shutdown;
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }

    // Only after stop(): the thread no longer touches the server.
    udp_server<Backend>& server() { return *server_; }

    std::vector<peer_address> opened() const
    {
        std::lock_guard lock(mutex_);
        return handler_.opened;
    }
    std::vector<close_event> closed() const
    {
        std::lock_guard lock(mutex_);
        return handler_.closed;
    }
    std::vector<std::pair<peer_address, peer_address>> moves() const
    {
        std::lock_guard lock(mutex_);
        return handler_.moves;
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

private:
    struct handler {
        echo_server_thread* owner = nullptr;
        std::vector<peer_address> opened;
        std::vector<close_event> closed;
        std::vector<std::pair<peer_address, peer_address>> moves;

        void on_open(const peer_address& peer)
        {
            std::lock_guard lock(owner->mutex_);
            opened.push_back(peer);
        }
        void on_data(const peer_address& peer, std::span<const std::byte> data)
        {
            std::error_code ignored;
            owner->server_->send(peer, data, ignored);
        }
        void on_close(const peer_address& peer, const failure& why)
        {
            std::lock_guard lock(owner->mutex_);
            closed.push_back({peer, why});
        }
        void on_move(const peer_address& from, const peer_address& to)
        {
            std::lock_guard lock(owner->mutex_);
            moves.emplace_back(from, to);
        }
    };

    void run(std::chrono::seconds max_lifetime)
    {
        handler_.owner = this;
        const auto give_up = clock::now() + max_lifetime;
        while (!stop_.load() && clock::now() < give_up) {
            server_->run_once(10ms, handler_);
            sessions_ = server_->core().session_count();
            ++rounds_;
        }
        if (shutdown_on_stop_.load()) server_->shutdown(handler_);
        sessions_ = server_->core().session_count();
    }

    failure bind_failure_;
    std::optional<udp_server<Backend>> server_;
    peer_address address_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> shutdown_on_stop_{false};
    std::atomic<std::size_t> sessions_{0};
    std::atomic<std::uint64_t> rounds_{0}; // loop rounds completed
    mutable std::mutex mutex_;
    handler handler_;
    std::thread thread_;
};

// Sends `text` and waits (bounded) for it to come back.
template <class Backend>
std::string echo(client<Backend>& c, const std::string& text, std::error_code& ec)
{
    c.send(as_bytes(text), ec);
    if (ec) return {};
    std::vector<std::byte> reply(text.size() + 16);
    const auto n = c.receive(reply, 5s, ec);
    if (!n) return {};
    return as_string(std::span<const std::byte>(reply.data(), *n));
}

template <class Backend>
void check_handshake_and_echo(const std::string& loopback, address_family family)
{
    echo_server_thread<Backend> srv(server_config(), loopback);
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    BOOST_TEST((srv.address().family() == family));
    BOOST_TEST(srv.address().port() != 0u); // port 0 asked the system for one

    failure f;
    auto c = client<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(c, f.what());
    BOOST_TEST(c->association().is_open());
    BOOST_TEST(!c->association().cipher_suite().empty());

    const std::vector<std::string> messages = {"hello over UDP", std::string(1000, 'x'),
                                               std::string(c->association().max_message_size(), 'm'), "last"};
    for (const auto& m : messages) {
        std::error_code ec;
        BOOST_TEST(echo(*c, m, ec) == m, "echo of " << m.size() << " bytes: " << ec.message());
    }
    const auto& k = c->association().counters();
    BOOST_TEST(k.application_messages_in == messages.size());
    BOOST_TEST(k.dropped() == 0u);

    // The server saw the client at the client's own port, on the same family.
    BOOST_REQUIRE(srv.wait_for_sessions(1, 2s));
    const auto opened = srv.opened();
    BOOST_REQUIRE_EQUAL(opened.size(), 1u);
    BOOST_TEST((opened.front().family() == family));
    BOOST_TEST(opened.front().port() == c->socket().local_address().port());

    c->close();
    BOOST_TEST(srv.wait_for_sessions(0, 2s)); // the close_notify reached the server
}

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(x509_handshake_and_echo_over_ipv4_loopback, Backend, all_backends)
{
    check_handshake_and_echo<Backend>("127.0.0.1:0", address_family::ipv4);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(x509_handshake_and_echo_over_ipv6_loopback, Backend, all_backends)
{
    check_handshake_and_echo<Backend>("[::1]:0", address_family::ipv6);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(psk_handshake_and_echo_over_udp, Backend, all_backends)
{
    echo_server_thread<Backend> srv(psk_config(role::server), "127.0.0.1:0");
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    failure f;
    auto c = client<Backend>::connect(psk_config(role::client), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(c, f.what());
    // A TLS 1.3 suite does not name the key exchange (RFC 8446 §B.4).
    if constexpr (speaks_dtls13<Backend>)
        BOOST_TEST(c->association().cipher_suite().find("TLS_AES_") == 0u, c->association().cipher_suite());
    else
        BOOST_TEST(c->association().cipher_suite().find("PSK") != std::string::npos, c->association().cipher_suite());
    for (const std::string m : {"psk one", "psk two"}) {
        std::error_code ec;
        BOOST_TEST(echo(*c, m, ec) == m, ec.message());
    }
    c->close();
    BOOST_TEST(srv.wait_for_sessions(0, 2s));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(an_untrusted_server_certificate_fails_the_client_with_verify_failed_over_udp, Backend,
                              all_backends)
{
    // The server's leaf is signed by a CA the client does not trust.
    echo_server_thread<Backend> srv(server_config("server-other"), "127.0.0.1:0");
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    auto client_cfg = client_config();
    client_cfg.handshake_deadline = 10s;
    failure f;
    const auto started = clock::now();
    auto c = client<Backend>::connect(client_cfg, srv.address(), f);
    const auto elapsed = clock::now() - started;
    BOOST_TEST(!c);
    BOOST_TEST((f.code == errc::verify_failed), f.what());
    // Each stack words it its own way (OpenSSL: "unable to get local issuer
    // certificate", mbedTLS: "not correctly signed by the trusted CA").
    BOOST_TEST((f.message.find("issuer") != std::string::npos || f.message.find("trusted CA") != std::string::npos),
               f.message);
    // A verdict, not a timeout: it comes long before the handshake deadline.
    BOOST_TEST(elapsed < client_cfg.handshake_deadline / 2);
    BOOST_TEST(srv.opened().empty());
    // The client's fatal alert (unknown_ca) ends the server's half-done
    // association too, with the same condition.
    BOOST_TEST(srv.wait_for_sessions(0, 3s));
    const auto closed = srv.closed();
    BOOST_REQUIRE_EQUAL(closed.size(), 1u);
    BOOST_TEST((closed.front().why.code == errc::verify_failed), closed.front().why.what());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(server_shutdown_sends_close_notify_and_the_client_sees_peer_closed, Backend,
                              all_backends)
{
    echo_server_thread<Backend> srv(server_config(), "127.0.0.1:0");
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    failure f;
    auto c = client<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(c, f.what());
    std::error_code ec;
    BOOST_REQUIRE_EQUAL(echo(*c, "before shutdown", ec), "before shutdown");

    srv.stop(/*shutdown=*/true);
    BOOST_TEST(srv.server().core().session_count() == 0u);
    const auto closed = srv.closed();
    BOOST_REQUIRE_EQUAL(closed.size(), 1u);
    BOOST_TEST((closed.front().why.code == errc::peer_closed), closed.front().why.what());

    std::vector<std::byte> buffer(64);
    const auto started = clock::now();
    const auto n = c->receive(buffer, 3s, ec);
    const auto waited = clock::now() - started;
    BOOST_TEST(!n);
    BOOST_TEST((ec == errc::peer_closed), ec.message());
    BOOST_TEST(waited < 2s); // the close_notify arrived; the receive did not just time out
    BOOST_TEST((c->association().state() == endpoint_state::closed));

    c->send(as_bytes("after shutdown"), ec);
    BOOST_TEST((ec == errc::not_open));
}

// What a packet capture needs: every datagram at the socket, both ways, with
// the peer's address, on the client and on the server, the stateless
// cookie exchange included.
struct wire_record {
    std::mutex mutex;
    std::vector<std::pair<direction, peer_address>> seen;
    std::size_t bytes = 0;

    socket_hook hook()
    {
        return [this](direction d, const udp_socket&, const peer_address& peer, std::span<const std::byte> datagram) {
            std::lock_guard lock(mutex);
            seen.emplace_back(d, peer);
            bytes += datagram.size();
        };
    }
    std::size_t count(direction d)
    {
        std::lock_guard lock(mutex);
        return static_cast<std::size_t>(std::count_if(seen.begin(), seen.end(), [&](auto& e) { return e.first == d; }));
    }
};

BOOST_AUTO_TEST_CASE_TEMPLATE(socket_hooks_see_every_datagram_with_its_peer, Backend, all_backends)
{
    wire_record at_server, at_client;
    echo_server_thread<Backend> srv(server_config(), "127.0.0.1:0", {}, 60s, at_server.hook());
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());

    failure f;
    auto c = client<Backend>::connect(client_config(), srv.address(), f, {}, at_client.hook());
    BOOST_REQUIRE_MESSAGE(c, f.what());
    std::error_code ec;
    BOOST_TEST(echo(*c, "captured", ec) == "captured");
    c->close();
    BOOST_REQUIRE(srv.wait_for_sessions(0, 5s));
    srv.stop();

    const auto& k = c->association().counters();
    BOOST_TEST(at_client.count(direction::out) == k.datagrams_out);
    BOOST_TEST(at_client.count(direction::in) == k.datagrams_in);
    for (const auto& [d, peer] : at_client.seen) BOOST_TEST(peer == srv.address());
    // The server's socket saw the cookieless ClientHello and its
    // HelloVerifyRequest too, which no association ever saw.
    BOOST_TEST(at_server.count(direction::in) == at_client.count(direction::out));
    BOOST_TEST(at_server.count(direction::out) == at_client.count(direction::in));
    BOOST_TEST(at_server.bytes == at_client.bytes);
    BOOST_TEST(at_server.count(direction::in) == srv.server().core().counters().datagrams_in);
}

namespace {

// A loopback address where nothing listens: a port the system just handed
// out and that is free again.
peer_address closed_port(const std::string& loopback)
{
    auto probe = udp_socket::bind(peer_address::parse(loopback));
    return probe.local_address();
}

} // namespace

// A client to a closed port is told so by the network (ICMP port
// unreachable on its connected socket) and fails at once, as
// `openssl s_client` does, rather than after its whole handshake deadline.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_client_to_a_closed_port_fails_at_once_with_peer_unreachable, Backend, all_backends)
{
    for (const std::string loopback : {"127.0.0.1:0", "[::1]:0"}) {
        auto client_cfg = client_config();
        client_cfg.handshake_deadline = 10s;
        failure f;
        const auto started = clock::now();
        auto c = client<Backend>::connect(client_cfg, closed_port(loopback), f);
        const auto elapsed = clock::now() - started;
        BOOST_TEST(!c);
        BOOST_TEST((f.code == errc::peer_unreachable), loopback << ": " << f.what());
        BOOST_TEST(f.message.find("no DTLS server at") != std::string::npos, f.message);
        BOOST_TEST(elapsed < client_cfg.handshake_deadline / 2);
    }
}

// A server that goes away without a close_notify (a crash, a stopped
// process): the client's next exchange learns it from the network.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_server_that_vanished_is_reported_as_peer_unreachable, Backend, all_backends)
{
    std::optional<echo_server_thread<Backend>> srv;
    srv.emplace(server_config(), "127.0.0.1:0");
    BOOST_REQUIRE_MESSAGE(srv->started(), srv->bind_failure().what());
    failure f;
    auto c = client<Backend>::connect(client_config(), srv->address(), f);
    BOOST_REQUIRE_MESSAGE(c, f.what());
    std::error_code ec;
    BOOST_REQUIRE_EQUAL(echo(*c, "before", ec), "before");
    srv.reset(); // stops its thread and closes its socket, sending nothing

    std::string reply = echo(*c, "anyone there?", ec);
    if (!ec) reply = echo(*c, "anyone there?", ec); // the ICMP error may follow the first send
    BOOST_TEST(reply.empty());
    BOOST_TEST((ec == errc::peer_unreachable), ec.message());
}

// A peer that vanishes leaves an ICMP port unreachable at the server's
// socket. Windows would fail the server's next recvfrom with WSAECONNRESET
// (unless SIO_UDP_CONNRESET is off, as dtlspp sets it); on any system the
// server must go on serving its open associations and new clients.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_vanished_peer_does_not_stop_the_server, Backend, all_backends)
{
    echo_server_thread<Backend> srv(server_config(), "127.0.0.1:0");
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    failure f;
    auto a = client<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(a, f.what());
    std::error_code ec;
    BOOST_REQUIRE_EQUAL(echo(*a, "before", ec), "before");

    // ClientHellos from ports that close at once: the server's
    // HelloVerifyRequests go to closed ports.
    for (int i = 0; i < 3; ++i) {
        failure ignored;
        auto e = endpoint<Backend>::connect(client_config(), clock::now(), ignored);
        BOOST_REQUIRE_MESSAGE(e, ignored.what());
        auto gone = udp_socket::bind(peer_address::parse("127.0.0.1:0"));
        e->drain([&](std::span<const std::byte> d) { gone.send_to(d, srv.address()); });
    }
    std::this_thread::sleep_for(200ms);

    BOOST_TEST(echo(*a, "after", ec) == "after", ec.message());
    auto b = client<Backend>::connect(client_config(), srv.address(), f);
    BOOST_REQUIRE_MESSAGE(b, f.what());
    BOOST_TEST(echo(*b, "new client", ec) == "new client", ec.message());
}

// A NAT rebinding over real sockets: the client moves to a new local port.
// With a Connection ID (stacks that have it) the server follows it there and
// the echo goes on; without one the server takes the new port for a
// stranger, and the client hears nothing: no reply and no error, only its
// receive timeout.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_client_that_rebinds_keeps_its_association_only_with_a_connection_id, Backend,
                              all_backends)
{
    auto server_cfg = server_config();
    server_cfg.connection_id = 8;
    echo_server_thread<Backend> srv(server_cfg, "127.0.0.1:0");
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    auto client_cfg = client_config();
    client_cfg.connection_id = 8;
    failure f;
    auto c = client<Backend>::connect(client_cfg, srv.address(), f);
    BOOST_REQUIRE_MESSAGE(c, f.what());
    const auto& ids = c->association().connection_id();
    BOOST_TEST(ids.negotiated == Backend::traits.connection_id);
    if (ids.negotiated) {
        BOOST_TEST(ids.own.size() == 8u);
        BOOST_TEST(ids.peer.size() == 8u);
    }
    std::error_code ec;
    BOOST_REQUIRE_EQUAL(echo(*c, "before the rebind", ec), "before the rebind");

    const auto before = c->local_address();
    c->rebind(ec);
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    const auto after = c->local_address();
    BOOST_TEST(after.port() != before.port());
    BOOST_TEST((after.family() == before.family()));
    BOOST_TEST(c->socket().local_address() == after);

    if constexpr (Backend::traits.connection_id) {
        for (const std::string m : {"after the rebind", "and again"}) {
            BOOST_TEST(echo(*c, m, ec) == m, ec.message());
        }
        srv.stop();
        const auto moves = srv.moves();
        BOOST_REQUIRE_EQUAL(moves.size(), 1u);
        BOOST_TEST(moves.front().first == before);
        BOOST_TEST(moves.front().second == after);
        const auto& k = srv.server().core().counters();
        BOOST_TEST(k.connection_id_moves == 1u);
        BOOST_TEST(k.sessions_created == 1u);
        BOOST_TEST(srv.server().core().session_count() == 1u);
        BOOST_TEST(srv.server().core().find(after) != nullptr);
        BOOST_TEST(srv.server().core().find(before) == nullptr);
    } else {
        // The records from the new port are not a ClientHello: dropped
        // without a reply. The client's send succeeds; its receive ends by
        // its timeout with no error, the association still open.
        c->send(as_bytes("after the rebind"), ec);
        BOOST_TEST(!ec, ec.message());
        std::vector<std::byte> buffer(64);
        const auto n = c->receive(buffer, 1500ms, ec);
        BOOST_TEST(!n);
        BOOST_TEST(!ec, ec.message());
        BOOST_TEST(c->association().is_open());
        srv.stop();
        BOOST_TEST(srv.moves().empty());
        const auto& k = srv.server().core().counters();
        BOOST_TEST(k.connection_id_moves == 0u);
        BOOST_TEST(k.dropped_without_session >= 1u);
        BOOST_TEST(k.sessions_created == 1u);
        // The association waits at the old port for its idle timeout.
        BOOST_TEST(srv.server().core().find(before) != nullptr);
    }
}

// A message larger than the caller's buffer is never cut: receive() says
// message_too_large, keeps it, and next_message_size() says what it needs.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_message_larger_than_the_receive_buffer_is_refused_and_kept, Backend, all_backends)
{
    echo_server_thread<Backend> srv(server_config(), "127.0.0.1:0");
    BOOST_REQUIRE_MESSAGE(srv.started(), srv.bind_failure().what());
    auto c = client<Backend>::connect(client_config(), srv.address()); // the throwing twin
    const std::string text(300, 'q');
    c.send(as_bytes(text));

    std::vector<std::byte> small(100);
    std::error_code ec;
    auto n = c.receive(small, 5s, ec);
    BOOST_TEST(!n);
    BOOST_TEST((ec == errc::message_too_large), ec.message());
    BOOST_REQUIRE(c.next_message_size());
    BOOST_TEST(*c.next_message_size() == text.size());
    BOOST_CHECK_THROW((void)c.receive(small, 1s), dtlspp::error); // the throwing twin agrees

    std::vector<std::byte> room(*c.next_message_size());
    n = c.receive(room, 5s, ec);
    BOOST_REQUIRE_MESSAGE(n, ec.message());
    BOOST_TEST(as_string(std::span<const std::byte>(room.data(), *n)) == text);
    BOOST_TEST(!c.next_message_size());
    c.close(ec);
    BOOST_TEST(!ec, ec.message());
}

// Every operation's twin throws dtlspp::error with the code its error_code
// overload gives, and the failure's text where there is one.
BOOST_AUTO_TEST_CASE_TEMPLATE(throwing_twins_throw_what_the_error_code_forms_report, Backend, all_backends)
{
    auto client_cfg = client_config();
    client_cfg.handshake_deadline = 5s;
    try {
        (void)client<Backend>::connect(client_cfg, closed_port("127.0.0.1:0"));
        BOOST_FAIL("connect to a closed port did not throw");
    } catch (const dtlspp::error& e) {
        BOOST_TEST((e.code() == errc::peer_unreachable), e.what());
        BOOST_TEST(std::string(e.what()).find("no DTLS server at") != std::string::npos, e.what());
    }

    auto bad = server_config();
    bad.max_udp_payload = 10;
    BOOST_CHECK_THROW((void)udp_server<Backend>::bind(bad, peer_address::parse("127.0.0.1:0")), dtlspp::error);
    BOOST_CHECK_THROW((void)server<Backend>::create(bad), dtlspp::error);
    BOOST_CHECK_THROW((void)endpoint<Backend>::connect(server_config(), clock::now()), dtlspp::error);

    auto srv = udp_server<Backend>::bind(server_config(), peer_address::parse("127.0.0.1:0"));
    const auto stranger = peer_address::parse("127.0.0.1:9");
    std::error_code ec;
    srv.send(stranger, as_bytes(std::string("x")), ec);
    BOOST_TEST((ec == errc::not_open));
    try {
        srv.send(stranger, as_bytes(std::string("x")));
        BOOST_FAIL("send to no association did not throw");
    } catch (const dtlspp::error& e) {
        BOOST_TEST((e.code() == errc::not_open));
    }
    BOOST_CHECK_THROW(srv.close(stranger), dtlspp::error);
    srv.close(stranger, ec);
    BOOST_TEST((ec == errc::not_open));
}
