// asio_client<Backend> and asio_server<Backend> over real UDP sockets on the
// loopback interfaces, typed over every backend, with each kind of
// completion token: callbacks, use_future and (where the compiler has C++20
// coroutines) use_awaitable.
//
// Every io_context run is bounded (run_for), so no case can hang: an
// operation that never completes leaves its result empty and the check fails.
#define BOOST_TEST_MODULE asio
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <dtlspp/asio.hpp>

#include <array>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;
using udp = asio::ip::udp;

namespace {

const std::array<std::string, 2> loopbacks{"127.0.0.1", "::1"};

udp::endpoint loopback(const std::string& host, unsigned short port = 0)
{
    return {asio::ip::make_address(host), port};
}

// Echoes every message and records what the callbacks saw.
template <class Backend>
struct echo_handler {
    int opened = 0;
    int closed = 0;
    std::vector<failure> why_closed;

    void on_open(association_ref<Backend>) { ++opened; }
    void on_data(association_ref<Backend> peer, std::span<const std::byte> data)
    {
        std::error_code ignored;
        peer.send(data, ignored);
    }
    void on_close(const peer_address&, const failure& why)
    {
        ++closed;
        why_closed.push_back(why);
    }
};

// A server on `host`, port chosen by the system, serving until stopped.
template <class Backend>
struct running_server {
    asio::io_context& io;
    std::optional<asio_server<Backend>> server;
    echo_handler<Backend> handler;
    std::optional<std::error_code> run_result;

    running_server(asio::io_context& context, const std::string& host, const config& c = server_config(),
                   server_settings settings = {})
        : io(context)
    {
        failure f;
        server = asio_server<Backend>::bind(io, c, loopback(host), settings, f);
        BOOST_TEST_REQUIRE(server.has_value(), f.what());
        server->async_run(handler, [this](std::error_code ec) { run_result = ec; });
    }

    udp::endpoint endpoint() const { return server->local_endpoint(); }
};

std::string text_of(const std::array<char, 2048>& buffer, std::size_t n) { return std::string(buffer.data(), n); }

} // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(a_handshake_and_an_echo_complete_with_callbacks, Backend, all_backends)
{
    for (const auto& host : loopbacks) {
        asio::io_context io;
        running_server<Backend> srv(io, host);
        asio_client<Backend> client(io);
        std::optional<std::error_code> connected, sent, received, closed;
        std::array<char, 2048> reply{};
        std::size_t reply_size = 0;
        const std::string message = "hello over asio";

        client.async_connect(client_config(), srv.endpoint(), [&](std::error_code ec) {
            connected = ec;
            if (ec) return;
            client.async_send(asio::buffer(message), [&](std::error_code ec2) { sent = ec2; });
            client.async_receive(asio::buffer(reply), [&](std::error_code ec2, std::size_t n) {
                received = ec2;
                reply_size = n;
                client.async_close([&](std::error_code ec3) {
                    closed = ec3;
                    srv.server->stop();
                });
            });
        });
        io.run_for(20s);

        BOOST_TEST_REQUIRE(connected.has_value(), host << ": no handshake within 20 s");
        BOOST_TEST_REQUIRE(!*connected, host << ": " << connected->message() << ": " << client.last_failure().what());
        BOOST_TEST((sent && !*sent));
        BOOST_TEST((received && !*received));
        BOOST_TEST(text_of(reply, reply_size) == message);
        BOOST_TEST((closed && !*closed));
        BOOST_TEST((srv.run_result && !*srv.run_result), host << ": the server's run did not end cleanly");
        BOOST_TEST(srv.handler.opened == 1);
        BOOST_TEST(srv.handler.closed == 1);
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_handshake_and_an_echo_complete_with_use_future, Backend, all_backends)
{
    for (const auto& host : loopbacks) {
        asio::io_context io;
        running_server<Backend> srv(io, host);
        asio_client<Backend> client(io);
        // The futures are waited for in this thread while another runs the
        // io_context: every wait is bounded.
        auto guard = asio::make_work_guard(io);
        std::thread runner([&] { io.run_for(30s); });
        const std::string message(700, 'x');
        std::array<char, 2048> reply{};

        auto connected = asio::post(io, asio::use_future([&] {
            return client.async_connect(client_config(), srv.endpoint(), asio::use_future);
        })).get();
        const bool connect_done = connected.wait_for(20s) == std::future_status::ready;
        BOOST_TEST(connect_done, host << ": no handshake within 20 s");
        std::optional<std::size_t> got;
        if (connect_done) {
            BOOST_CHECK_NO_THROW(connected.get());
            auto sent = asio::post(io, asio::use_future([&] { return client.async_send(asio::buffer(message), asio::use_future); })).get();
            auto received =
                asio::post(io, asio::use_future([&] { return client.async_receive(asio::buffer(reply), asio::use_future); })).get();
            if (sent.wait_for(10s) == std::future_status::ready) BOOST_CHECK_NO_THROW(sent.get());
            if (received.wait_for(10s) == std::future_status::ready) got = received.get();
        }
        BOOST_TEST((got && std::string(reply.data(), *got) == message), host);
        asio::post(io, [&] { srv.server->stop(); });
        guard.reset();
        io.stop();
        runner.join();
    }
}

#if defined(ASIO_HAS_CO_AWAIT)
BOOST_AUTO_TEST_CASE_TEMPLATE(a_handshake_and_an_echo_complete_in_a_coroutine, Backend, all_backends)
{
    for (const auto& host : loopbacks) {
        asio::io_context io;
        running_server<Backend> srv(io, host);
        std::optional<std::string> reply;
        std::string problem;

        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                asio_client<Backend> client(co_await asio::this_coro::executor);
                co_await client.async_connect(client_config(), srv.endpoint(), asio::use_awaitable);
                const std::string message = "ping";
                co_await client.async_send(asio::buffer(message), asio::use_awaitable);
                std::array<char, 2048> buffer{};
                const auto n = co_await client.async_receive(asio::buffer(buffer), asio::use_awaitable);
                reply = std::string(buffer.data(), n);
                co_await client.async_close(asio::use_awaitable);
                srv.server->stop();
            },
            [&](std::exception_ptr e) {
                if (!e) return;
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& x) {
                    problem = x.what();
                }
            });
        io.run_for(20s);

        BOOST_TEST(problem.empty(), host << ": " << problem);
        BOOST_TEST((reply && *reply == "ping"), host);
        BOOST_TEST((srv.run_result && !*srv.run_result));
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_failed_handshake_throws_a_system_error_with_dtlspps_code, Backend, all_backends)
{
    asio::io_context io;
    // Nothing listens on the port of a socket that is bound, then closed.
    udp::socket probe(io, loopback("127.0.0.1"));
    const auto closed_port = probe.local_endpoint();
    probe.close();
    std::optional<std::error_code> caught;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio_client<Backend> client(co_await asio::this_coro::executor);
            try {
                co_await client.async_connect(client_config(), closed_port, asio::use_awaitable);
            } catch (const std::system_error& e) {
                caught = e.code();
            }
        },
        asio::detached);
    io.run_for(10s);
    BOOST_TEST_REQUIRE(caught.has_value());
    BOOST_TEST((*caught == errc::peer_unreachable), caught->message());
}
#endif

BOOST_AUTO_TEST_CASE_TEMPLATE(one_server_serves_several_clients_at_once, Backend, all_backends)
{
    asio::io_context io;
    running_server<Backend> srv(io, "127.0.0.1");
    constexpr int clients = 5;
    std::vector<std::unique_ptr<asio_client<Backend>>> peers;
    std::vector<std::array<char, 2048>> replies(clients);
    std::vector<std::string> sent(clients);
    std::vector<std::string> got(clients);
    int done = 0;
    for (int i = 0; i < clients; ++i) {
        peers.push_back(std::make_unique<asio_client<Backend>>(io));
        sent[i] = "client " + std::to_string(i);
        auto& c = *peers.back();
        c.async_connect(client_config(), srv.endpoint(), [&, i](std::error_code ec) {
            if (ec) return;
            peers[i]->async_send(asio::buffer(sent[i]), [](std::error_code) {});
            peers[i]->async_receive(asio::buffer(replies[i]), [&, i](std::error_code ec2, std::size_t n) {
                if (!ec2) got[i] = std::string(replies[i].data(), n);
                if (++done == clients) srv.server->stop();
            });
        });
    }
    io.run_for(30s);

    for (int i = 0; i < clients; ++i) BOOST_TEST(got[i] == sent[i], "client " << i);
    BOOST_TEST(srv.handler.opened == clients);
    BOOST_TEST(srv.handler.closed == clients); // stop() closes every association
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_message_longer_than_the_buffer_is_refused_whole_then_received_whole, Backend,
                              all_backends)
{
    asio::io_context io;
    running_server<Backend> srv(io, "127.0.0.1");
    asio_client<Backend> client(io);
    const std::string message(300, 'm');
    std::array<char, 16> small{};
    std::array<char, 2048> large{};
    std::optional<std::error_code> first;
    std::optional<std::size_t> second;

    client.async_connect(client_config(), srv.endpoint(), [&](std::error_code ec) {
        if (ec) return;
        client.async_send(asio::buffer(message), [](std::error_code) {});
        client.async_receive(asio::buffer(small), [&](std::error_code ec2, std::size_t n) {
            first = ec2;
            BOOST_TEST(n == 0u);
            client.async_receive(asio::buffer(large), [&](std::error_code ec3, std::size_t m) {
                if (!ec3) second = m;
                srv.server->stop();
            });
        });
    });
    io.run_for(20s);

    BOOST_TEST_REQUIRE(first.has_value());
    BOOST_TEST((*first == errc::message_too_large), first->message());
    BOOST_TEST((second && *second == message.size()));
    BOOST_TEST(std::string(large.data(), message.size()) == message);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_handshake_to_a_closed_port_fails_at_once_with_peer_unreachable, Backend, all_backends)
{
    for (const auto& host : loopbacks) {
        asio::io_context io;
        udp::socket probe(io, loopback(host));
        const auto closed_port = probe.local_endpoint();
        probe.close();
        auto c = client_config();
        c.handshake_deadline = 10s;
        asio_client<Backend> client(io);
        std::optional<std::error_code> result;
        const auto started = clock::now();
        clock::duration elapsed{};
        client.async_connect(c, closed_port, [&](std::error_code ec) {
            result = ec;
            elapsed = clock::now() - started;
        });
        io.run_for(10s);

        BOOST_TEST_REQUIRE(result.has_value(), host);
        BOOST_TEST((*result == errc::peer_unreachable), host << ": " << client.last_failure().what());
        BOOST_TEST(elapsed < c.handshake_deadline / 2);
        BOOST_TEST(client.last_failure().message.find("no DTLS server at") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_silent_peer_fails_the_handshake_at_its_deadline, Backend, all_backends)
{
    asio::io_context io;
    // A bound socket that never answers: no ICMP, no reply.
    udp::socket silent(io, loopback("127.0.0.1"));
    auto c = client_config();
    c.handshake_deadline = 1500ms;
    asio_client<Backend> client(io);
    std::optional<std::error_code> result;
    const auto started = clock::now();
    clock::duration elapsed{};
    client.async_connect(c, silent.local_endpoint(), [&](std::error_code ec) {
        result = ec;
        elapsed = clock::now() - started;
    });
    io.run_for(10s);

    BOOST_TEST_REQUIRE(result.has_value(), "the connect never completed");
    BOOST_TEST((*result == errc::handshake_timeout), client.last_failure().what());
    BOOST_TEST(elapsed >= c.handshake_deadline);
    BOOST_TEST(elapsed < c.handshake_deadline + 2s);
    BOOST_TEST(!client.is_open());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(an_association_survives_a_garbage_datagram, Backend, all_backends)
{
    asio::io_context io;
    running_server<Backend> srv(io, "127.0.0.1");
    asio_client<Backend> client(io);
    std::array<char, 2048> reply{};
    std::optional<std::string> echoed;
    const std::string message = "after the garbage";
    std::uint64_t dropped = 0;

    client.async_connect(client_config(), srv.endpoint(), [&](std::error_code ec) {
        if (ec) return;
        // From the client's own address, so it reaches the association.
        const std::array<unsigned char, 5> garbage{0x17, 0xfe, 0xfd, 0x00, 0x01};
        std::error_code ignored;
        client.socket().send(asio::buffer(garbage), 0, ignored);
        client.async_send(asio::buffer(message), [](std::error_code) {});
        client.async_receive(asio::buffer(reply), [&](std::error_code ec2, std::size_t n) {
            if (!ec2) echoed = std::string(reply.data(), n);
            // The server's view of the association, before stop() forgets it.
            if (const auto me = to_peer_address(client.socket().local_endpoint()))
                if (const auto* association = srv.server->core().find(*me))
                    dropped = association->counters().dropped_malformed;
            srv.server->stop();
        });
    });
    io.run_for(20s);

    BOOST_TEST((echoed && *echoed == message));
    BOOST_TEST(srv.handler.opened == 1);
    BOOST_TEST(dropped == 1u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_server_that_stops_ends_a_waiting_receive_with_peer_closed, Backend, all_backends)
{
    asio::io_context io;
    running_server<Backend> srv(io, "127.0.0.1");
    asio_client<Backend> client(io);
    std::array<char, 2048> buffer{};
    std::optional<std::error_code> received;
    client.async_connect(client_config(), srv.endpoint(), [&](std::error_code ec) {
        if (ec) return;
        client.async_receive(asio::buffer(buffer), [&](std::error_code ec2, std::size_t) { received = ec2; });
        srv.server->stop(); // close_notify to the client
    });
    io.run_for(20s);

    BOOST_TEST_REQUIRE(received.has_value());
    BOOST_TEST((*received == errc::peer_closed), received->message());
    BOOST_TEST(!client.is_open());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(async_close_aborts_a_waiting_receive_and_completes_once_close_notify_is_sent, Backend,
                              all_backends)
{
    asio::io_context io;
    running_server<Backend> srv(io, "127.0.0.1");
    asio_client<Backend> client(io);
    std::array<char, 2048> buffer{};
    std::optional<std::error_code> received, closed, closed_again;
    client.async_connect(client_config(), srv.endpoint(), [&](std::error_code ec) {
        if (ec) return;
        client.async_receive(asio::buffer(buffer), [&](std::error_code ec2, std::size_t) { received = ec2; });
        client.async_close([&](std::error_code ec2) {
            closed = ec2;
            client.async_close([&](std::error_code ec3) { closed_again = ec3; });
        });
    });
    // The server learns of the close from the close_notify.
    asio::steady_timer give_up(io, 10s);
    give_up.async_wait([&](std::error_code) { srv.server->stop(); });
    io.run_for(1s);
    const int closed_at_server = srv.handler.closed;
    give_up.cancel();
    srv.server->stop();
    io.run_for(5s);

    BOOST_TEST_REQUIRE(received.has_value());
    BOOST_TEST((*received == asio::error::operation_aborted), received->message());
    BOOST_TEST((closed && !*closed));
    BOOST_TEST((closed_again && *closed_again == errc::not_open));
    BOOST_TEST(closed_at_server == 1);
    BOOST_TEST(srv.handler.why_closed.at(0).code == errc::peer_closed, srv.handler.why_closed.at(0).what());
}

BOOST_AUTO_TEST_CASE_TEMPLATE(operations_before_a_connect_fail_with_not_open, Backend, all_backends)
{
    asio::io_context io;
    asio_client<Backend> client(io);
    std::optional<std::error_code> sent, received, closed;
    std::array<char, 16> buffer{};
    client.async_send(asio::buffer("x", 1), [&](std::error_code ec) { sent = ec; });
    client.async_receive(asio::buffer(buffer), [&](std::error_code ec, std::size_t) { received = ec; });
    client.async_close([&](std::error_code ec) { closed = ec; });
    io.run_for(5s);
    BOOST_TEST((sent && *sent == errc::not_open));
    BOOST_TEST((received && *received == errc::not_open));
    BOOST_TEST((closed && *closed == errc::not_open));
}

BOOST_AUTO_TEST_CASE(peer_address_and_asio_endpoints_convert_both_ways)
{
    for (const auto* text : {"127.0.0.1:4433", "[::1]:5544"}) {
        const auto address = peer_address::parse(text);
        const auto endpoint = to_udp_endpoint(address);
        BOOST_TEST(endpoint.port() == address.port());
        BOOST_TEST(endpoint.address().to_string() == address.host());
        const auto back = to_peer_address(endpoint);
        BOOST_TEST_REQUIRE(back.has_value());
        BOOST_TEST((*back == address));
    }
    BOOST_TEST(!peer_address::from_native(nullptr, 16).has_value());
}
