// dtlspp over real UDP sockets on loopback, per backend:
// - udp_server<B> in its own thread, clients multiplexed in the main
//   thread: handshakes per second with 1, 10 and 100 handshakes in flight,
//   echo throughput with 1 and 10 clients;
// - peak RSS of a server process holding 1,000 established sessions;
// - one association's 1024-byte echo ping-pong, paired in the same run with
//   a plain UDP ping-pong over the same two sockets;
// - packets and bytes of one handshake, as dtlspp counts them.
//
// Usage: udp_bench [openssl|mbedtls] [--rss-server]
#include "udp_support.hpp"

#include <dtlspp/backend/mbedtls.hpp>
#include <dtlspp/backend/openssl.hpp>
#include <dtlspp/endpoint.hpp>
#include <dtlspp/udp_server.hpp>

#include <atomic>
#include <csignal>
#include <cstring>
#include <optional>
#include <poll.h>
#include <pthread.h>
#include <sys/wait.h>
#include <thread>

using namespace bench;
using namespace std::chrono_literals;

namespace {

struct rate {
    double per_second = 0;
    double server_cpu_ms = 0; // server thread CPU per handshake or per echo
};

// Keeps `concurrency` handshakes in flight for `seconds`; each one that
// opens is closed (close_notify) and replaced on a fresh socket.
template <class B>
rate handshake_rate(int concurrency, double seconds)
{
    server_thread<B> server;
    clients<B> cs(server.address());
    cs.all.resize(static_cast<std::size_t>(concurrency));
    for (auto& c : cs.all) cs.connect(c);
    std::uint64_t done = 0, failed = 0;
    // Warm-up until every slot has completed one handshake (bounded), so the
    // window measures the steady state, not the first burst of ClientHellos.
    const double warm_limit = wall() + 20;
    double t0 = wall(), cpu0 = server.cpu();
    bool warm = false;
    while (!warm || wall() - t0 < seconds) {
        if (!warm && (done >= static_cast<std::uint64_t>(concurrency) || wall() > warm_limit)) {
            warm = true;
            done = failed = 0;
            t0 = wall();
            cpu0 = server.cpu();
        }
        cs.poll_once(5ms, [](auto&) {});
        for (auto& c : cs.all) {
            if (c.ep->is_open()) {
                ++done;
                cs.close(c);
                cs.connect(c);
            } else if (c.ep->state() == dtlspp::endpoint_state::failed) {
                ++failed;
                cs.connect(c);
            }
        }
    }
    const double elapsed = wall() - t0, cpu = server.cpu() - cpu0;
    if (failed) std::fprintf(stderr, "note: %llu handshakes failed\n", static_cast<unsigned long long>(failed));
    return {done / elapsed, done ? cpu * 1000 / done : 0};
}

// `count` clients each keep one 1024-byte message in flight (ping-pong).
template <class B>
rate echo_rate(int count, double seconds)
{
    server_thread<B> server;
    clients<B> cs(server.address());
    cs.all.resize(static_cast<std::size_t>(count));
    for (auto& c : cs.all) cs.connect(c);
    const double give_up = wall() + 10;
    auto all_open = [&] {
        for (auto& c : cs.all)
            if (!c.ep->is_open()) return false;
        return true;
    };
    while (!all_open() && wall() < give_up) cs.poll_once(5ms, [](auto&) {});
    if (!all_open()) throw std::runtime_error("echo clients did not connect");
    const bytes message(1024, std::byte{0x42});
    auto send = [&](auto& c) {
        c.ep->send(message, dtlspp::clock::now());
        cs.flush(c);
    };
    for (auto& c : cs.all) send(c);
    std::uint64_t echoes = 0;
    const double t0 = wall(), cpu0 = server.cpu();
    while (wall() - t0 < seconds) {
        cs.poll_once(50ms, [&](auto& c) {
            echoes += c.received;
            c.received = 0;
            send(c);
        });
    }
    const double elapsed = wall() - t0, cpu = server.cpu() - cpu0;
    return {echoes / elapsed, echoes ? cpu * 1000 / echoes : 0};
}

// 1024-byte ping-pong between two sockets: plain UDP and DTLS take turns on
// the same sockets and the same server thread.
struct ping_pong_figures {
    double plain = 0, dtls = 0;                       // round trips per second
    double plain_client_us = 0, plain_server_us = 0;  // thread CPU per round trip
    double dtls_client_us = 0, dtls_server_us = 0;
};

template <class B>
ping_pong_figures ping_pong(double seconds, int reps)
{
    std::error_code ec;
    auto server_socket = dtlspp::udp_socket::bind(dtlspp::peer_address::parse("127.0.0.1:0"), ec);
    const auto server_address = server_socket.local_address();
    auto client_socket = dtlspp::udp_socket::open(dtlspp::address_family::ipv4, ec);
    dtlspp::failure f;
    auto core = dtlspp::server<B>::create(server_config(), {}, f);
    if (!core) throw std::runtime_error("server: " + f.message);

    std::atomic<bool> plain{false}, stop{false};
    std::vector<double> cpu_client[2], cpu_server[2]; // [0] plain, [1] DTLS: microseconds per round trip
    std::thread server([&] {
        std::array<std::byte, 65536> buffer;
        struct echo {
            dtlspp::server<B>* core;
            void on_data(const dtlspp::peer_address& from, std::span<const std::byte> data)
            {
                std::error_code e;
                core->send(from, data, dtlspp::clock::now(), e);
            }
        } handler{&*core};
        while (!stop.load(std::memory_order_relaxed)) {
            std::error_code e;
            if (!server_socket.wait_readable(20ms, e)) {
                core->on_timeout(dtlspp::clock::now(), handler);
            } else {
                for (int k = 0; k < 64; ++k) {
                    dtlspp::peer_address from;
                    auto n = server_socket.receive_from(buffer, from, e);
                    if (!n) break;
                    const std::span<const std::byte> d(buffer.data(), *n);
                    if (plain.load(std::memory_order_relaxed)) server_socket.send_to(d, from, e);
                    else core->receive(from, d, dtlspp::clock::now(), handler);
                }
            }
            core->drain([&](const dtlspp::peer_address& to, std::span<const std::byte> d) { server_socket.send_to(d, to, e); });
        }
    });

    auto ctx = B::make_context(client_config(), f);
    auto ep = dtlspp::endpoint<B>::connect(ctx, dtlspp::clock::now(), f);
    std::array<std::byte, 65536> buffer;
    std::uint64_t got = 0;
    auto flush = [&] {
        ep->drain([&](std::span<const std::byte> d) { client_socket.send_to(d, server_address, ec); });
    };
    auto pump = [&](std::chrono::milliseconds wait) {
        if (client_socket.wait_readable(wait, ec)) {
            for (int k = 0; k < 64; ++k) {
                dtlspp::peer_address from;
                auto n = client_socket.receive_from(buffer, from, ec);
                if (!n) break;
                ep->receive(std::span<const std::byte>(buffer.data(), *n), dtlspp::clock::now(),
                            [&](std::span<const std::byte>) { ++got; });
            }
        }
        if (auto d = ep->next_deadline(); d && dtlspp::clock::now() >= *d) ep->on_timeout(dtlspp::clock::now());
        flush();
    };
    flush();
    const double give_up = wall() + 10;
    while (!ep->is_open() && wall() < give_up) pump(50ms);
    if (!ep->is_open()) throw std::runtime_error("ping-pong handshake failed");

    clockid_t server_clock{};
    pthread_getcpuclockid(server.native_handle(), &server_clock);
    auto charge = [&](int which, double c0, double s0, std::uint64_t n) {
        if (n == 0) return;
        cpu_client[which].push_back((thread_cpu() - c0) * 1e6 / static_cast<double>(n));
        cpu_server[which].push_back((seconds_of(server_clock) - s0) * 1e6 / static_cast<double>(n));
    };
    const bytes message(1024, std::byte{0x24});
    auto dtls_round_trips = [&] {
        plain = false;
        std::uint64_t n = 0;
        const double t0 = wall(), c0 = thread_cpu(), s0 = seconds_of(server_clock);
        while (wall() - t0 < seconds) {
            const auto before = got;
            ep->send(message, dtlspp::clock::now());
            flush();
            // A lost datagram is not retransmitted after the handshake: give
            // up on this one after a while and send the next.
            const double limit = wall() + 0.2;
            while (got == before && wall() < limit) pump(200ms);
            n += got > before;
        }
        charge(1, c0, s0, n);
        return n / (wall() - t0);
    };
    auto plain_round_trips = [&] {
        plain = true;
        std::uint64_t n = 0;
        const double t0 = wall(), c0 = thread_cpu(), s0 = seconds_of(server_clock);
        while (wall() - t0 < seconds) {
            client_socket.send_to(message, server_address, ec);
            if (client_socket.wait_readable(200ms, ec)) {
                dtlspp::peer_address from;
                if (client_socket.receive_from(buffer, from, ec)) ++n;
            }
        }
        charge(0, c0, s0, n);
        plain = false;
        return n / (wall() - t0);
    };
    const auto m = alternate(reps, {plain_round_trips, dtls_round_trips});
    stop = true;
    server.join();
    return {m[0], m[1], median(cpu_client[0]), median(cpu_server[0]), median(cpu_client[1]), median(cpu_server[1])};
}

// The server process for the RSS figure: prints its port, serves until
// its parent closes stdin (or 300 s pass, whichever is first).
template <class B>
int rss_server()
{
    dtlspp::failure f;
    auto s = dtlspp::udp_server<B>::bind(server_config(), dtlspp::peer_address::parse("127.0.0.1:0"), {}, f);
    if (!s) return 1;
    std::printf("%u\n", s->local_address().port());
    std::fflush(stdout);
    const double give_up = wall() + 300;
    while (wall() < give_up) {
        s->run_once(5ms);
        pollfd in{0, POLLIN, 0};
        if (::poll(&in, 1, 0) > 0) break; // parent closed the pipe
    }
    return 0;
}


// Starts `self --rss-server`, opens `sessions` associations to it and
// returns the growth of its peak RSS in KiB.
template <class B>
double rss_growth(const char* self, const std::string& backend, int sessions)
{
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) throw std::runtime_error("pipe");
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[1]);
        close(from_child[0]);
        execl("/proc/self/exe", self, backend.c_str(), "--rss-server", static_cast<char*>(nullptr));
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    char line[32] = {};
    const auto n = read(from_child[0], line, sizeof line - 1);
    const int port = n > 0 ? std::atoi(line) : 0;
    double growth = -1;
    if (port > 0) {
        clients<B> cs(dtlspp::peer_address::parse("127.0.0.1:" + std::to_string(port)));
        // One session first so that lazy initialisation is in the baseline.
        cs.all.resize(1);
        cs.connect(cs.all[0]);
        const double warm = wall() + 10;
        while (!cs.all[0].ep->is_open() && wall() < warm) cs.poll_once(5ms, [](auto&) {});
        const long base = status_kb(pid, "VmRSS:");
        cs.all.resize(static_cast<std::size_t>(sessions) + 1);
        // Batches of 50 in flight keep loopback buffers from overflowing.
        for (std::size_t first = 1; first < cs.all.size(); first += 50) {
            const auto last = std::min(cs.all.size(), first + 50);
            for (auto i = first; i < last; ++i) cs.connect(cs.all[i]);
            const double limit = wall() + 20;
            auto open = [&] {
                for (auto i = first; i < last; ++i)
                    if (!cs.all[i].ep->is_open()) return false;
                return true;
            };
            while (!open() && wall() < limit) cs.poll_once(5ms, [](auto&) {});
        }
        std::size_t opened = 0;
        for (auto& c : cs.all) opened += c.ep->is_open();
        const long peak = status_kb(pid, "VmHWM:");
        growth = static_cast<double>(peak - base) * 1000.0 / static_cast<double>(opened - 1);
    }
    close(to_child[1]); // tells the child to exit
    close(from_child[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return growth;
}

// Datagrams and bytes of one handshake as the client's endpoint counts them.
template <class B>
dtlspp::endpoint_counters one_handshake()
{
    server_thread<B> server;
    clients<B> cs(server.address());
    cs.all.resize(1);
    cs.connect(cs.all[0]);
    const double limit = wall() + 10;
    while (!cs.all[0].ep->is_open() && wall() < limit) cs.poll_once(5ms, [](auto&) {});
    return cs.all[0].ep->counters();
}

template <class B>
void run(const char* self, const std::string& backend)
{
    const int reps = repeats(3);
    heading(backend + " (" + B::version() + "): dtlspp over UDP on loopback");
    note("udp_server<" + backend + "> in one thread, the clients in another (the machine has " +
         std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) +
         " CPUs, so clients and server share them). ECDSA P-256 certificate, max UDP payload 1200, "
         "cookie exchange on. Medians of " + std::to_string(reps) + " runs.\n");
    table t({"workload", "per second (wall)", "server CPU ms each", "per server CPU-second"});
    for (const int n : {1, 10, 100}) {
        std::vector<double> r, c;
        for (int i = 0; i < reps; ++i) {
            const auto x = handshake_rate<B>(n, budget(1.5));
            r.push_back(x.per_second);
            c.push_back(x.server_cpu_ms);
        }
        result("udp." + backend + ".handshakes" + std::to_string(n), median(r));
        t.row({"handshakes, " + std::to_string(n) + " in flight", sig(median(r)), fmt(median(c), 3),
               sig(1000 / median(c))});
    }
    for (const int n : {1, 10}) {
        std::vector<double> r, c;
        for (int i = 0; i < reps; ++i) {
            const auto x = echo_rate<B>(n, budget(1.5));
            r.push_back(x.per_second);
            c.push_back(x.server_cpu_ms);
        }
        result("udp." + backend + ".echo" + std::to_string(n), median(r));
        t.row({"1024-byte echoes, " + std::to_string(n) + " client" + (n > 1 ? "s" : "") + " (" +
                   sig(median(r) * 1024 / 1e6) + " MB/s each way)",
               sig(median(r)), fmt(median(c), 4), sig(1000 / median(c))});
    }
    std::vector<double> rss;
    for (int i = 0; i < std::min(reps, 2); ++i) rss.push_back(rss_growth<B>(self, backend, 1000));
    result("udp." + backend + ".rss_kib_per_1000", median(rss));
    t.row({"peak RSS growth per 1,000 established sessions", fmt(median(rss) / 1024, 1) + " MiB", "", ""});

    const auto hs = one_handshake<B>();
    result("udp." + backend + ".handshake_datagrams", static_cast<double>(hs.datagrams_in + hs.datagrams_out));
    result("udp." + backend + ".handshake_bytes", static_cast<double>(hs.bytes_in + hs.bytes_out));
    note("\nOne handshake (with cookie exchange) as the client counts it: " + std::to_string(hs.datagrams_out) +
         " datagrams / " + std::to_string(hs.bytes_out) + " UDP payload bytes sent, " +
         std::to_string(hs.datagrams_in) + " / " + std::to_string(hs.bytes_in) +
         " received; largest datagram sent " + std::to_string(hs.largest_datagram_out) + " bytes; " +
         std::to_string(hs.datagrams_in + hs.datagrams_out) + " packets and " +
         std::to_string(hs.bytes_in + hs.bytes_out + 28 * (hs.datagrams_in + hs.datagrams_out)) +
         " bytes with IPv4+UDP headers.");

    heading(backend + ": 1024-byte ping-pong, DTLS vs plain UDP on the same sockets");
    const auto pp = ping_pong<B>(budget(1.0), std::max(reps, 5));
    result("pingpong." + backend + ".plain", pp.plain);
    result("pingpong." + backend + ".dtls", pp.dtls);
    result("pingpong." + backend + ".ratio", pp.dtls / pp.plain);
    note("One message in flight; each side waits in poll(). The CPU columns are thread CPU time (user + "
         "kernel) per round trip, so they show how much of the longer round trip is work DTLS adds and how "
         "much is waiting.\n");
    table p({"plain UDP round trips/s", "DTLS round trips/s", "DTLS / plain", "target", "wall us/rt plain",
             "wall us/rt DTLS", "client CPU us/rt plain", "client CPU us/rt DTLS", "server CPU us/rt plain",
             "server CPU us/rt DTLS"});
    p.row({sig(pp.plain), sig(pp.dtls), fmt(pp.dtls / pp.plain, 2) + "x", backend == "openssl" ? ">= 0.85x" : ">= 0.5x",
           fmt(1e6 / pp.plain, 1), fmt(1e6 / pp.dtls, 1), fmt(pp.plain_client_us, 1), fmt(pp.dtls_client_us, 1),
           fmt(pp.plain_server_us, 1), fmt(pp.dtls_server_us, 1)});
}

} // namespace

int main(int argc, char** argv)
{
    const std::string only = argc > 1 ? argv[1] : "";
    if (argc > 2 && std::string(argv[2]) == "--rss-server") {
        if (only == "openssl") return rss_server<dtlspp::openssl_backend>();
        return rss_server<dtlspp::mbedtls_backend>();
    }
    std::signal(SIGPIPE, SIG_IGN);
    std::printf("## dtlspp over real sockets\n\nMachine: %s\n", machine().c_str());
    if (only.empty() || only == "openssl") run<dtlspp::openssl_backend>(argv[0], "openssl");
    if (only.empty() || only == "mbedtls") run<dtlspp::mbedtls_backend>(argv[0], "mbedtls");
    return 0;
}
