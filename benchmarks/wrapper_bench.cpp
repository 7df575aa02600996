// What dtlspp costs over the raw C APIs, per backend, on an in-memory
// datagram pipe (no kernel, one thread): full handshakes per CPU-second,
// CPU per handshake on each side, echo throughput, and the public-key floor
// a handshake cannot go below.
//
// Raw and dtlspp runs alternate inside each repetition and the tables show
// medians, so a noisy neighbour slows both alike.
#include "crypto_floor.hpp"
#include "dtlspp_sides.hpp"
#include "raw_mbedtls.hpp"
#include "raw_openssl.hpp"

#include <dtlspp/backend/mbedtls.hpp>
#include <dtlspp/backend/openssl.hpp>

#include <cstdio>
#include <map>
#include <string>

using namespace bench;

namespace {

struct handshake_figures {
    double per_cpu_second = 0;
    double client_ms = 0;
    double server_ms = 0;
};

// Full handshakes (client connects, both open, client sends close_notify
// and the server forgets it) for about `seconds` of CPU.
template <class Client, class Server>
handshake_figures handshakes(Client& c, Server& s, double seconds)
{
    driver<Client, Server> d(s, {&c});
    d.start(0); // warm-up
    d.close(0);
    d.cpu_client = d.cpu_server = 0;
    int n = 0;
    const double t0 = process_cpu();
    double t = t0;
    do {
        d.start(0);
        if (!c.is_open()) throw std::runtime_error("handshake did not complete");
        d.close(0);
        ++n;
        t = process_cpu();
    } while (t - t0 < seconds);
    if (s.sessions() != 0) throw std::runtime_error("server kept sessions after close_notify");
    return {n / (t - t0), d.cpu_client * 1000 / n, d.cpu_server * 1000 / n};
}

// Echo round trips of `size`-byte records on one association.
template <class Client, class Server>
double echoes_per_cpu_second(Client& c, Server& s, std::size_t size, double seconds)
{
    driver<Client, Server> d(s, {&c});
    d.time_sides = false;
    d.start(0);
    bytes message(size, std::byte{0x5a});
    for (int i = 0; i < 16; ++i) d.send(0, message); // warm-up
    const auto before = d.client_messages;
    int n = 0;
    const double t0 = process_cpu();
    double t = t0;
    do {
        for (int i = 0; i < 64; ++i) d.send(0, message);
        n += 64;
        t = process_cpu();
    } while (t - t0 < seconds);
    if (d.client_messages - before != static_cast<std::uint64_t>(n)) throw std::runtime_error("echo lost a record");
    d.close(0);
    return n / (t - t0);
}

template <class RawC, class RawS, class B, class RawSettings>
void run_backend(const std::string& backend, const std::string& version, RawSettings base,
                 const std::function<floor_ms(const std::string&)>& floor)
{
    const int reps = repeats();
    heading(backend + " (" + version + "): handshakes, raw C API vs dtlspp");
    note("In-memory pipe, one thread, max UDP payload 1472. Handshakes per CPU-second of the whole process "
         "(both sides); CPU per handshake charged to each side. dtlspp's server always does the cookie "
         "exchange (stateless HelloVerifyRequest), so its 'without cookie' cell is empty. Medians of " +
         std::to_string(reps) + " alternating runs.\n");
    std::map<std::string, floor_ms> floors;
    for (const std::string leaf : {"server-ecdsa", "server-rsa2048"}) floors[leaf] = floor(leaf);
    table t({"certificate", "cookie", "raw hs/CPU-s", "dtlspp hs/CPU-s", "dtlspp/raw", "raw client ms",
             "dtlspp client ms", "raw server ms", "dtlspp server ms", "floor client ms", "floor server ms",
             "raw / floor"});
    for (const std::string leaf : {"server-ecdsa", "server-rsa2048"}) {
        const auto fl = floors[leaf];
        const std::string cert = leaf == "server-ecdsa" ? "ECDSA P-256" : "RSA-2048";
        for (const bool cookies : {true, false}) {
            RawSettings rs = base;
            rs.leaf = leaf;
            rs.cookies = cookies;
            RawC rc(rs);
            RawS rsrv(rs);
            with_dtlspp::settings ds{leaf, 1472};
            with_dtlspp::client<B> dc(ds);
            with_dtlspp::server<B> dsrv(ds);
            std::vector<double> raw_rate, raw_c, raw_s, dt_rate, dt_c, dt_s;
            const double each = budget(backend == "mbedtls" ? 0.6 : 0.4);
            for (int r = 0; r < reps; ++r) {
                const auto a = handshakes(rc, rsrv, each);
                raw_rate.push_back(a.per_cpu_second);
                raw_c.push_back(a.client_ms);
                raw_s.push_back(a.server_ms);
                if (cookies) {
                    const auto b = handshakes(dc, dsrv, each);
                    dt_rate.push_back(b.per_cpu_second);
                    dt_c.push_back(b.client_ms);
                    dt_s.push_back(b.server_ms);
                }
            }
            const std::string key = "wrapper." + backend + "." + (leaf == "server-ecdsa" ? "ecdsa" : "rsa") +
                                    (cookies ? ".cookie" : ".nocookie");
            const double raw_total_ms = median(raw_c) + median(raw_s);
            result(key + ".raw.hs_per_cpu_s", median(raw_rate));
            result(key + ".raw.client_ms", median(raw_c));
            result(key + ".raw.server_ms", median(raw_s));
            result(key + ".floor.client_ms", fl.client());
            result(key + ".floor.server_ms", fl.server());
            if (cookies) {
                result(key + ".dtlspp.hs_per_cpu_s", median(dt_rate));
                result(key + ".dtlspp.client_ms", median(dt_c));
                result(key + ".dtlspp.server_ms", median(dt_s));
                result(key + ".ratio", median(dt_rate) / median(raw_rate));
            }
            t.row({cert, cookies ? "yes" : "no", sig(median(raw_rate)), cookies ? sig(median(dt_rate)) : "",
                   cookies ? ratio(median(dt_rate), median(raw_rate)) : "", fmt(median(raw_c), 3),
                   cookies ? fmt(median(dt_c), 3) : "", fmt(median(raw_s), 3), cookies ? fmt(median(dt_s), 3) : "",
                   fmt(fl.client(), 3), fmt(fl.server(), 3), fmt(raw_total_ms / fl.total(), 2) + "x"});
        }
    }

    heading(backend + ": one handshake on the wire (in-memory pipe, ECDSA P-256)");
    note("Datagrams and UDP payload bytes both ways for one handshake, counted by the pipe; IP bytes add 28 "
         "per datagram (IPv4 + UDP headers). Round trips: client flights before it may send application "
         "data.\n");
    table w({"implementation", "cookie", "datagrams", "UDP payload bytes", "IPv4 bytes", "round trips"});
    auto wire_row = [&](auto& c, auto& s, const std::string& who, bool cookies) {
        using C = std::remove_reference_t<decltype(c)>;
        using S = std::remove_reference_t<decltype(s)>;
        driver<C, S> d(s, {&c});
        d.time_sides = false;
        d.start(0);
        const auto datagrams = d.datagrams_moved, payload = d.bytes_moved, trips = d.round_trips;
        d.close(0);
        const std::string key = "wire." + backend + "." + who + (cookies ? ".cookie" : ".nocookie");
        result(key + ".datagrams", static_cast<double>(datagrams));
        result(key + ".ip_bytes", static_cast<double>(payload + 28 * datagrams));
        result(key + ".round_trips", static_cast<double>(trips));
        w.row({who, cookies ? "yes" : "no", std::to_string(datagrams), std::to_string(payload),
               std::to_string(payload + 28 * datagrams), std::to_string(trips)});
    };
    for (const bool cookies : {true, false}) {
        RawSettings rs = base;
        rs.cookies = cookies;
        RawC rc(rs);
        RawS rsrv(rs);
        wire_row(rc, rsrv, "raw", cookies);
    }
    {
        with_dtlspp::settings ds{"server-ecdsa", 1472};
        with_dtlspp::client<B> dc(ds);
        with_dtlspp::server<B> dsrv(ds);
        wire_row(dc, dsrv, "dtlspp", true);
    }

    heading(backend + ": the public-key floor of one handshake");
    note("ms per operation, same library, same run. Client = ECDHE + signature check + chain check; "
         "server = ECDHE + signature.\n");
    table f({"certificate", "ECDHE X25519 keygen+derive", "sign", "verify signature", "verify chain", "client floor",
             "server floor"});
    for (const std::string leaf : {"server-ecdsa", "server-rsa2048"}) {
        const auto fl = floors[leaf];
        f.row({leaf == "server-ecdsa" ? "ECDSA P-256" : "RSA-2048", fmt(fl.ecdhe, 3), fmt(fl.sign, 3),
               fmt(fl.verify, 3), fmt(fl.chain, 3), fmt(fl.client(), 3), fmt(fl.server(), 3)});
    }

    heading(backend + ": echo throughput on one association, raw C API vs dtlspp");
    note("Client sends one record, the server echoes it, the client reads it: one echo. Per CPU-second of the "
         "whole process (client + server + pipe); MB/s counts the payload one way. ECDSA certificate, "
         "AES-128-GCM.\n");
    table e({"record bytes", "raw echoes/CPU-s", "dtlspp echoes/CPU-s", "dtlspp/raw", "raw MB/s", "dtlspp MB/s"});
    RawSettings rs = base;
    RawC rc(rs);
    RawS rsrv(rs);
    with_dtlspp::settings ds{"server-ecdsa", 1472};
    with_dtlspp::client<B> dc(ds);
    with_dtlspp::server<B> dsrv(ds);
    for (const std::size_t size : {std::size_t{64}, std::size_t{1200}}) {
        const double each = budget(0.4);
        const auto m = alternate(reps, {[&] { return echoes_per_cpu_second(rc, rsrv, size, each); },
                                        [&] { return echoes_per_cpu_second(dc, dsrv, size, each); }});
        result("wrapper." + backend + ".echo" + std::to_string(size) + ".raw", m[0]);
        result("wrapper." + backend + ".echo" + std::to_string(size) + ".dtlspp", m[1]);
        e.row({std::to_string(size), sig(m[0]), sig(m[1]), ratio(m[1], m[0]), sig(m[0] * size / 1e6),
               sig(m[1] * size / 1e6)});
    }
}

} // namespace

int main(int argc, char** argv)
{
    const std::string only = argc > 1 ? argv[1] : "";
    std::printf("## Wrapper overhead: dtlspp vs the raw C API\n\nMachine: %s\n", machine().c_str());
    const double floor_seconds = budget(0.25);
    if (only.empty() || only == "openssl")
        run_backend<raw_openssl::client, raw_openssl::server, dtlspp::openssl_backend>(
            "openssl", dtlspp::openssl_backend::version(), raw_openssl::settings{},
            [&](const std::string& leaf) { return floor_openssl::measure(leaf, true, floor_seconds); });
    if (only.empty() || only == "mbedtls")
        run_backend<raw_mbedtls::client, raw_mbedtls::server, dtlspp::mbedtls_backend>(
            "mbedtls", dtlspp::mbedtls_backend::version(), raw_mbedtls::settings{},
            [&](const std::string& leaf) { return floor_mbedtls::measure(leaf, floor_seconds); });
    return 0;
}
