// echo_server_asio: the DTLS 1.2 echo server on Asio, served by a C++20
// coroutine (asio::co_spawn, asio::use_awaitable) until SIGINT or SIGTERM.
//
//   echo_server_asio --listen 127.0.0.1:4433 --cert server.pem --key server.key
//   echo_server_asio --listen [::1]:4433 --psk client1:00112233445566778899aabbccddeeff
//
// echo_client talks to it as to echo_server. Where Asio has no co_await
// (Asio 1.22 under clang 14 with libstdc++), the same server is built with
// callbacks.
#include "backends.hpp"
#include "echo.hpp"

#include <dtlspp/asio.hpp>

#include <iostream>
#include <optional>

static const char* const usage =
    "usage: echo_server_asio [options]\n"
    "  --listen HOST:PORT        address to bind (default 127.0.0.1:4433; [::1]:PORT for IPv6)\n"
    "  --cert FILE --key FILE    certificate chain and private key (PEM)\n"
    "  --ca FILE                 require client certificates signed by these CAs\n"
    "  --psk IDENTITY:HEXKEY     accept this pre-shared key\n"
    "  --mtu N                   largest UDP payload to send (default 1200)\n"
    "  --backend NAME            openssl or mbedtls (those built in)\n"
    "  --list-backends           print the backends built in, then exit\n"
    "  --max-sessions N          refuse handshakes beyond N associations (default 10000)\n"
    "  --idle-timeout-ms N       close associations idle this long (default 60000)\n"
    "  --handshake-timeout-ms N  fail handshakes not done by then (default 30000)\n"
    "  --exit-after N            stop after N associations have ended (default: run until SIGINT)\n"
    "  --verbose                 print one line per datagram, and each association's end\n";

namespace {

template <class Backend>
struct echo {
    dtlspp::asio_server<Backend>* server = nullptr;
    long exit_after = 0;
    bool verbose = false;
    long ended = 0;

    void on_open(dtlspp::association_ref<Backend> peer)
    {
        if (verbose) std::cout << peer.peer() << ": open, " << peer.association().cipher_suite() << '\n';
    }
    void on_data(dtlspp::association_ref<Backend> peer, std::span<const std::byte> data)
    {
        std::error_code ec;
        peer.send(data, ec); // sent when this callback returns
    }
    void on_close(const dtlspp::peer_address& peer, const dtlspp::failure& why)
    {
        if (verbose) std::cout << peer << ": ended: " << why.what() << '\n';
        if (exit_after > 0 && ++ended == exit_after) server->stop();
    }
};

#if defined(ASIO_HAS_CO_AWAIT)
template <class Backend>
asio::awaitable<void> serve(dtlspp::asio_server<Backend>& server, echo<Backend>& handler, asio::signal_set& signals)
{
    co_await server.async_run(handler, asio::use_awaitable);
    signals.cancel();
}

template <class Backend>
asio::awaitable<void> stop_on_signal(dtlspp::asio_server<Backend>& server, asio::signal_set& signals)
{
    std::error_code ec; // cancelled once the server has stopped by itself (--exit-after)
    co_await signals.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) server.stop();
}
#endif

template <class Backend>
int run_server(const examples::arguments& args, const dtlspp::config& c)
{
    std::error_code ec;
    const auto local = dtlspp::peer_address::parse(args.get("--listen", "127.0.0.1:4433"), ec);
    if (ec) throw examples::usage_error("--listen: " + ec.message());
    dtlspp::server_settings settings;
    settings.max_sessions = static_cast<std::size_t>(args.number("--max-sessions", 10000));
    settings.idle_timeout = std::chrono::milliseconds(args.number("--idle-timeout-ms", 60000));

    asio::io_context io;
    dtlspp::failure f;
    auto server = dtlspp::asio_server<Backend>::bind(io, c, dtlspp::to_udp_endpoint(local), settings, f);
    if (!server) {
        std::cerr << "echo_server_asio: " << f.what() << '\n';
        return 1;
    }
    if (args.has("--verbose")) server->core().set_trace(examples::verbose_trace(true));
    echo<Backend> handler{&*server, args.number("--exit-after", 0), args.has("--verbose")};
    std::cout << "echo_server_asio: " << Backend::name << " (" << Backend::version() << ") listening on "
              << dtlspp::to_peer_address(server->local_endpoint()).value_or(local) << std::endl;

    asio::signal_set signals(io, SIGINT, SIGTERM);
    std::error_code result;
#if defined(ASIO_HAS_CO_AWAIT)
    asio::co_spawn(io, serve(*server, handler, signals), [&](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    });
    asio::co_spawn(io, stop_on_signal(*server, signals), asio::detached);
#else
    server->async_run(handler, [&](std::error_code ec) {
        result = ec;
        signals.cancel();
    });
    signals.async_wait([&](std::error_code ec, int) {
        if (!ec) server->stop();
    });
#endif
    io.run();
    if (result) {
        std::cerr << "echo_server_asio: " << result.message() << '\n';
        return 1;
    }
    const auto& counters = server->core().counters();
    std::cout << "echo_server_asio: " << counters.datagrams_in << " datagrams in, " << counters.datagrams_out
              << " out\n";
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    return examples::run_program("echo_server_asio", usage, argc, argv,
                                 {"--listen", "--cert", "--key", "--ca", "--psk", "--mtu", "--backend", "--max-sessions",
                                  "--idle-timeout-ms", "--handshake-timeout-ms", "--exit-after"},
                                 {"--verbose"}, [&](const examples::arguments& args) {
        dtlspp::config c;
        c.role = dtlspp::role::server;
        examples::apply_common(args, c);
        if (args.has("--ca")) c.verification = dtlspp::peer_verification::required;
        return examples::with_backend(args, [&]<class Backend>() { return run_server<Backend>(args, c); });
    });
}
