// How dtlspp behaves on a bad or hostile network, on every stack pair, over
// real UDP sockets on 127.0.0.1 (scripts/robustness runs it and writes
// docs/robustness.md):
//
// - matrix: handshakes through impairing_relay (relay.hpp) under each
//   profile, many at once in this process, every client stack against every
//   server stack; completion, time percentiles and every failure's error;
// - flood: spoofed ClientHellos from many source ports at a udp_server,
//   with a legitimate client connecting meanwhile;
// - forged: random records framed as epoch 1 sent from an open
//   association's own address and port; teardowns and drop counters.
//
// Usage: robustness [--seeds N] [--spacing MS] [--concurrency N] [--flood N] [--forged N]
//                   [--only matrix|flood|forged] [--data FILE]
#include "common.hpp"
#include "relay.hpp"
#include "udp_support.hpp"

#include <dtlspp/backend/mbedtls.hpp>
#include <dtlspp/backend/openssl.hpp>
#include <dtlspp/client.hpp>
#include <dtlspp/endpoint.hpp>
#include <dtlspp/udp_server.hpp>

#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <poll.h>
#include <thread>

using namespace bench;
using namespace std::chrono_literals;

namespace {

// The timers of every handshake here, both sides. Far below RFC 6347's
// 1 s / 60 s so that 100 seeds of a failing cell end in seconds; the same
// values as scripts/cross-stack, so the two reports compare.
constexpr auto initial_timeout = 100ms;
constexpr auto max_timeout = 1600ms;
constexpr auto handshake_deadline = 10000ms;
// A handshake still unresolved this long after its deadline is a hang.
constexpr auto hang_margin = 2000ms;

struct options {
    int seeds = 100;
    // Handshakes start one every `spacing` (an open-loop arrival rate that
    // keeps the cores from queueing them), at most `concurrency` at once.
    std::chrono::milliseconds spacing{25};
    int concurrency = 100;
    int flood = 100000;
    int forged = 10000;
    std::string only;
    std::string data_file;
};

std::string errc_name(const std::error_code& ec)
{
    if (!ec) return "none";
    if (ec.category() != dtlspp::error_category()) return ec.category().name() + std::string(":") + ec.message();
    switch (static_cast<dtlspp::errc>(ec.value())) {
    case dtlspp::errc::config_invalid: return "config_invalid";
    case dtlspp::errc::mtu_too_small: return "mtu_too_small";
    case dtlspp::errc::handshake_timeout: return "handshake_timeout";
    case dtlspp::errc::verify_failed: return "verify_failed";
    case dtlspp::errc::psk_mismatch: return "psk_mismatch";
    case dtlspp::errc::handshake_failed: return "handshake_failed";
    case dtlspp::errc::peer_closed: return "peer_closed";
    case dtlspp::errc::bad_record: return "bad_record";
    case dtlspp::errc::not_open: return "not_open";
    case dtlspp::errc::message_too_large: return "message_too_large";
    case dtlspp::errc::too_many_sessions: return "too_many_sessions";
    case dtlspp::errc::idle_timeout: return "idle_timeout";
    case dtlspp::errc::internal: return "internal";
    }
    return "unknown";
}

std::string tally(const std::map<std::string, int>& counts)
{
    if (counts.empty()) return "-";
    std::string s;
    for (const auto& [name, n] : counts) s += (s.empty() ? "" : ", ") + name + " ×" + std::to_string(n);
    return s;
}

// This process's resident set, in KiB (VmRSS in /proc/self/status).
long rss_kib()
{
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p)
{
    if (sorted.empty()) return 0;
    auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

dtlspp::config with_timers(dtlspp::config c, std::size_t max_udp_payload)
{
    c.max_udp_payload = max_udp_payload;
    c.initial_retransmission_timeout = initial_timeout;
    c.max_retransmission_timeout = max_timeout;
    c.handshake_deadline = handshake_deadline;
    return c;
}

double ms_since(dtlspp::time_point start, dtlspp::time_point now)
{
    return std::chrono::duration<double, std::milli>(now - start).count();
}

// udp_server<S> run by a thread of its own, echoing, and counting how its
// associations end. counters() and closes() only after stop().
template <class S>
class server_runner {
public:
    server_runner(const dtlspp::config& c, dtlspp::server_settings settings)
    {
        dtlspp::failure f;
        auto s = dtlspp::udp_server<S>::bind(c, dtlspp::peer_address::parse("127.0.0.1:0"), settings, f);
        if (!s) throw std::runtime_error("udp_server: " + f.what());
        server_.emplace(std::move(*s));
        address_ = server_->local_address();
        thread_ = std::thread([this] {
            handler h{&*server_, &closes_};
            while (!stop_.load(std::memory_order_relaxed)) server_->run_once(5ms, h);
        });
    }
    ~server_runner() { stop(); }
    void stop()
    {
        if (thread_.joinable()) {
            stop_ = true;
            thread_.join();
        }
    }
    const dtlspp::peer_address& address() const { return address_; }
    const dtlspp::server_counters& counters() const { return server_->core().counters(); }
    const std::map<std::string, int>& closes() const { return closes_; }

private:
    struct handler {
        dtlspp::udp_server<S>* server;
        std::map<std::string, int>* closes;
        void on_data(const dtlspp::peer_address& from, std::span<const std::byte> data)
        {
            std::error_code ec;
            server->send(from, data, ec);
        }
        void on_close(const dtlspp::peer_address&, const dtlspp::failure& f) { ++(*closes)[errc_name(f.code)]; }
    };
    std::optional<dtlspp::udp_server<S>> server_;
    dtlspp::peer_address address_;
    std::map<std::string, int> closes_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// ---------------------------------------------------------------------------
// The matrix: profiles × stack pairs × seeds.

struct profile {
    std::string name;
    std::string what;
    impairment each_way;
    std::size_t endpoint_payload = 1200; // max_udp_payload on both sides
};

std::vector<profile> profiles()
{
    std::vector<profile> all;
    all.push_back({"clean", "no impairment (reference)", {}, 1200});
    impairment three_d;
    three_d.drop = 0.2;
    three_d.duplicate = 0.2;
    three_d.delay = 0.2;
    three_d.hold_until_next = true;
    all.push_back({"3d", "drop, duplicate and delay 1 datagram in 5, each way (udp_proxy drop=5 duplicate=5 delay=5)",
                   three_d, 1200});
    impairment loss;
    loss.drop = 0.2;
    all.push_back({"loss20", "20 % loss each way", loss, 1200});
    impairment reorder;
    reorder.delay = 0.3;
    reorder.hold_min = 5ms;
    reorder.hold_max = 40ms;
    all.push_back({"reorder", "3 datagrams in 10 held 5-40 ms each way, so later ones overtake them; nothing lost",
                   reorder, 1200});
    impairment clamp;
    clamp.max_datagram = 512;
    all.push_back({"mtu512@1200", "datagrams over 512 bytes dropped; endpoints at the default max_udp_payload 1200",
                   clamp, 1200});
    all.push_back({"mtu512@512", "datagrams over 512 bytes dropped; endpoints configured with max_udp_payload 512",
                   clamp, 512});
    return all;
}

struct cell_result {
    std::string profile;
    std::string pair;
    int attempts = 0;
    std::vector<double> completed_ms;
    std::map<std::string, int> failures; // client-side error of each failed handshake
    double latest_failure_ms = 0;        // how long the slowest failure took to be reported
    int hangs = 0;
    relay_counters relay;
    dtlspp::server_counters server;
    std::map<std::string, int> server_closes;
    double wall_s = 0;
};

template <class C, class S>
cell_result run_cell(const profile& p, std::uint64_t profile_index, const std::string& pair, const options& o)
{
    cell_result r;
    r.profile = p.name;
    r.pair = pair;
    const auto started_cell = wall();
    dtlspp::server_settings settings;
    settings.idle_timeout = 5000ms;
    server_runner<S> server(with_timers(server_config(), p.endpoint_payload), settings);
    impairing_relay relay(server.address(), p.each_way, p.each_way);

    dtlspp::failure f;
    auto ctx = C::make_context(with_timers(client_config(), p.endpoint_payload), f);
    if (!ctx) throw std::runtime_error("client context: " + f.what());

    struct attempt {
        int seed;
        dtlspp::udp_socket socket;
        dtlspp::peer_address local;
        std::optional<dtlspp::endpoint<C>> association;
        dtlspp::time_point started;
    };
    std::vector<std::unique_ptr<attempt>> active;
    std::vector<pollfd> fds;
    std::array<std::byte, 65536> buffer{};
    int next_seed = 0;
    dtlspp::time_point last_start{};

    auto flush = [&](attempt& a) {
        a.association->drain([&](std::span<const std::byte> d) {
            std::error_code ignored; // a full buffer is loss; DTLS retransmits
            a.socket.send_to(d, relay.front_address(), ignored);
        });
    };

    while (next_seed < o.seeds || !active.empty()) {
        auto now = dtlspp::clock::now();
        // Starts are spread `spacing` apart so that handshakes do not
        // queue for a core: a queued handshake misses its 100 ms timer and
        // retransmits for nothing.
        if (next_seed < o.seeds && static_cast<int>(active.size()) < o.concurrency && now - last_start >= o.spacing) {
            auto a = std::make_unique<attempt>();
            a->seed = next_seed++;
            std::error_code ec;
            a->socket = dtlspp::udp_socket::bind(dtlspp::peer_address::parse("127.0.0.1:0"), ec);
            if (ec) throw std::runtime_error("client socket: " + ec.message());
            a->local = a->socket.local_address();
            relay.add_flow(a->local, (profile_index << 32) | static_cast<std::uint64_t>(a->seed));
            a->started = now;
            a->association = dtlspp::endpoint<C>::connect(ctx, now, f);
            ++r.attempts;
            last_start = now;
            if (!a->association) {
                ++r.failures[errc_name(f.code)];
                continue;
            }
            flush(*a);
            active.push_back(std::move(a));
        }

        std::optional<dtlspp::time_point> due = relay.next_due();
        for (auto& a : active)
            if (auto d = a->association->next_deadline()) due = due ? std::min(*due, *d) : *d;
        auto wait = 5ms;
        if (next_seed < o.seeds && static_cast<int>(active.size()) < o.concurrency)
            wait = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(last_start + o.spacing - now), 0ms, wait);
        if (due) wait = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(*due - now), 0ms, wait);

        fds.clear();
        relay.add_poll_fds(fds);
        const auto first_client = fds.size();
        for (auto& a : active) fds.push_back({a->socket.native_handle(), POLLIN, 0});
        ::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
        now = dtlspp::clock::now();
        relay.service(fds, now);

        for (std::size_t i = 0; i < active.size(); ++i) {
            auto& a = *active[i];
            if (fds[first_client + i].revents & POLLIN) {
                for (int k = 0; k < 64; ++k) {
                    dtlspp::peer_address from;
                    std::error_code ec;
                    auto n = a.socket.receive_from(buffer, from, ec);
                    if (!n) break;
                    a.association->receive(std::span<const std::byte>(buffer.data(), *n), now);
                }
            }
            if (auto d = a.association->next_deadline(); d && now >= *d) a.association->on_timeout(now);
            flush(a);
        }

        // Settle: completed, failed, or (never expected) hung.
        for (std::size_t i = 0; i < active.size();) {
            auto& a = *active[i];
            const auto state = a.association->state();
            bool finished = true;
            if (state == dtlspp::endpoint_state::open) {
                r.completed_ms.push_back(
                    std::chrono::duration<double, std::milli>(a.association->counters().handshake_duration).count());
                a.association->close(now);
                flush(a);
            } else if (state == dtlspp::endpoint_state::failed || state == dtlspp::endpoint_state::closed) {
                ++r.failures[errc_name(a.association->error())];
                r.latest_failure_ms = std::max(r.latest_failure_ms, ms_since(a.started, now));
            } else if (now > a.started + handshake_deadline + hang_margin) {
                ++r.hangs;
                ++r.failures["hang"];
            } else {
                finished = false;
            }
            if (finished) {
                // The close_notify (or the last retransmission) gets 300 ms
                // to pass the relay before the flow is forgotten.
                relay.retire_flow(a.local, now + 300ms);
                active.erase(active.begin() + static_cast<std::ptrdiff_t>(i));
            } else {
                ++i;
            }
        }
    }
    // The last close_notify messages still have to pass the relay; the
    // server counts those associations as ended once they arrive.
    const auto linger_until = dtlspp::clock::now() + 1000ms;
    while (relay.flow_count() > 0 && dtlspp::clock::now() < linger_until) {
        fds.clear();
        relay.add_poll_fds(fds);
        ::poll(fds.data(), fds.size(), 5);
        relay.service(fds, dtlspp::clock::now());
    }
    std::this_thread::sleep_for(20ms); // for the server thread to read them
    server.stop();
    std::sort(r.completed_ms.begin(), r.completed_ms.end());
    r.relay = relay.counters();
    r.server = server.counters();
    r.server_closes = server.closes();
    r.wall_s = wall() - started_cell;
    return r;
}

void print_matrix(const std::vector<cell_result>& cells, const options& o)
{
    heading("Handshakes through the impairing relay");
    note(std::to_string(o.seeds) + " seeds per cell, one handshake started every " +
         std::to_string(o.spacing.count()) + " ms, up to " + std::to_string(o.concurrency) +
         " at once; timers: initial retransmission timeout 100 ms doubling to 1600 ms, handshake "
         "deadline 10 s. Times from the client's first ClientHello to its handshake completing.\n");
    table t({"profile", "client→server", "completed", "p50 ms", "p99 ms", "max ms", "client failures",
             "slowest failure s", "server ends", "relay to server: fwd/drop/clamp/dup/held",
             "relay to client: fwd/drop/clamp/dup/held"});
    for (const auto& c : cells) {
        const auto& v = c.completed_ms;
        auto way = [](const relay_direction_counters& d) {
            return std::to_string(d.forwarded) + "/" + std::to_string(d.dropped) + "/" +
                   std::to_string(d.dropped_over_clamp) + "/" + std::to_string(d.duplicated) + "/" +
                   std::to_string(d.delayed);
        };
        const double rate = c.attempts ? 100.0 * static_cast<double>(v.size()) / c.attempts : 0;
        t.row({c.profile, c.pair, fmt(rate, 0) + " % (" + std::to_string(v.size()) + "/" + std::to_string(c.attempts) + ")",
               v.empty() ? "-" : fmt(percentile(v, 0.5), 0), v.empty() ? "-" : fmt(percentile(v, 0.99), 0),
               v.empty() ? "-" : fmt(v.back(), 0), tally(c.failures),
               c.failures.empty() ? "-" : fmt(c.latest_failure_ms / 1000, 1), tally(c.server_closes),
               way(c.relay.to_server), way(c.relay.to_client)});
    }
    int hangs = 0;
    for (const auto& c : cells) hangs += c.hangs;
    note("\nHandshakes neither completed nor failed " + std::to_string(hang_margin.count()) +
         " ms after their deadline (hangs): " + std::to_string(hangs) + ".");
}

// ---------------------------------------------------------------------------
// The flood: spoofed ClientHellos from many source ports.

// A hand-built ClientHello: one suite (ECDHE-ECDSA-AES128-GCM-SHA256), the
// null compression method, no session ID, no cookie. Without extensions it
// is the smallest a DTLS 1.2 server can parse; with_extensions adds the
// three an ECDHE-ECDSA suite needs to be selectable (supported_groups
// secp256r1, ec_point_formats uncompressed, signature_algorithms
// ecdsa_secp256r1_sha256; RFC 8422 §5.1, RFC 5246 §7.4.1.4.1).
std::vector<std::byte> small_client_hello(bool with_extensions)
{
    std::vector<std::uint8_t> body = {0xfe, 0xfd}; // client_version DTLS 1.2
    for (int i = 0; i < 32; ++i) body.push_back(static_cast<std::uint8_t>(i)); // random
    body.insert(body.end(), {0x00,                   // session_id
                             0x00,                   // cookie
                             0x00, 0x02, 0xc0, 0x2b, // cipher_suites
                             0x01, 0x00});           // compression_methods
    if (with_extensions) {
        const std::vector<std::uint8_t> extensions = {
            0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: secp256r1
            0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,             // ec_point_formats: uncompressed
            0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, // signature_algorithms
        };
        body.push_back(static_cast<std::uint8_t>(extensions.size() >> 8));
        body.push_back(static_cast<std::uint8_t>(extensions.size()));
        body.insert(body.end(), extensions.begin(), extensions.end());
    }
    const auto hi = static_cast<std::uint8_t>(body.size() >> 8);
    const auto lo = static_cast<std::uint8_t>(body.size());
    // msg_type, length(3), message_seq(2), fragment_offset(3), fragment_length(3)
    std::vector<std::uint8_t> hs = {0x01, 0, hi, lo, 0, 0, 0, 0, 0, 0, hi, lo};
    hs.insert(hs.end(), body.begin(), body.end());
    std::vector<std::uint8_t> record = {22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0,
                                        static_cast<std::uint8_t>(hs.size() >> 8),
                                        static_cast<std::uint8_t>(hs.size())};
    record.insert(record.end(), hs.begin(), hs.end());
    std::vector<std::byte> out(record.size());
    std::memcpy(out.data(), record.data(), record.size());
    return out;
}

// The first datagram a dtlspp client of stack C sends: its cookieless
// ClientHello.
template <class C>
std::vector<std::byte> real_client_hello()
{
    dtlspp::failure f;
    auto ctx = C::make_context(with_timers(client_config(), 1200), f);
    if (!ctx) throw std::runtime_error("client context: " + f.what());
    auto e = dtlspp::endpoint<C>::connect(ctx, dtlspp::clock::now(), f);
    if (!e) throw std::runtime_error("connect: " + f.what());
    std::vector<std::byte> first;
    e->drain([&](std::span<const std::byte> d) {
        if (first.empty()) first.assign(d.begin(), d.end());
    });
    return first;
}

struct hello_kind {
    std::string name;
    std::vector<std::byte> bytes;
    std::size_t reply_bytes = 0; // the HelloVerifyRequest it drew, 0 if none
};

struct legit_result {
    std::string stack;
    std::vector<double> ms;
    std::map<std::string, int> failures;
};

struct flood_result {
    std::string server_stack;
    std::vector<hello_kind> kinds;
    std::uint64_t sent = 0;
    std::uint64_t sent_bytes = 0;
    std::uint64_t replies = 0;
    std::uint64_t reply_bytes = 0;
    double seconds = 0;
    long rss_before_kib = 0;
    long rss_after_kib = 0;
    dtlspp::server_counters server;
    std::vector<legit_result> before;
    std::vector<legit_result> during;
};

// Legitimate handshakes with dtlspp::client over stack C, timed.
template <class C>
void legit_handshake(const dtlspp::peer_address& server, legit_result& out)
{
    dtlspp::failure f;
    const auto start = dtlspp::clock::now();
    auto c = dtlspp::client<C>::connect(with_timers(client_config(), 1200), server, f);
    if (!c) {
        ++out.failures[errc_name(f.code)];
        return;
    }
    out.ms.push_back(ms_since(start, dtlspp::clock::now()));
    c->close();
}

template <class S>
flood_result run_flood(const options& o)
{
    flood_result r;
    r.server_stack = std::string(S::name);
    dtlspp::server_settings settings;
    settings.idle_timeout = 5000ms;
    server_runner<S> server(with_timers(server_config(), 1200), settings);

    r.kinds.push_back({"openssl client's", real_client_hello<dtlspp::openssl_backend>()});
    r.kinds.push_back({"mbedtls client's", real_client_hello<dtlspp::mbedtls_backend>()});
    r.kinds.push_back({"minimal, no extensions", small_client_hello(false)});
    r.kinds.push_back({"minimal + 3 ECDHE extensions", small_client_hello(true)});

    std::array<std::byte, 65536> buffer{};
    // One of each, alone, for the exact reply size.
    for (auto& k : r.kinds) {
        std::error_code ec;
        auto s = dtlspp::udp_socket::bind(dtlspp::peer_address::parse("127.0.0.1:0"), ec);
        s.send_to(k.bytes, server.address(), ec);
        if (s.wait_readable(500ms, ec)) {
            dtlspp::peer_address from;
            if (auto n = s.receive_from(buffer, from, ec)) k.reply_bytes = *n;
        }
    }

    r.before.push_back({"openssl", {}, {}});
    r.before.push_back({"mbedtls", {}, {}});
    for (int i = 0; i < 3; ++i) {
        legit_handshake<dtlspp::openssl_backend>(server.address(), r.before[0]);
        legit_handshake<dtlspp::mbedtls_backend>(server.address(), r.before[1]);
    }

    // A legitimate client of each stack in turn keeps connecting while the
    // flood runs.
    r.during.push_back({"openssl", {}, {}});
    r.during.push_back({"mbedtls", {}, {}});
    std::atomic<bool> flooding{true};
    std::thread legit([&] {
        while (flooding.load()) {
            legit_handshake<dtlspp::openssl_backend>(server.address(), r.during[0]);
            if (!flooding.load()) break;
            legit_handshake<dtlspp::mbedtls_backend>(server.address(), r.during[1]);
        }
    });

    // 500 source ports, each sending in turn; the replies are read (and
    // counted) so the amplification is measured at the receiver.
    constexpr int ports = 500;
    std::vector<dtlspp::udp_socket> sockets;
    std::vector<pollfd> fds;
    for (int i = 0; i < ports; ++i) {
        std::error_code ec;
        sockets.push_back(dtlspp::udp_socket::bind(dtlspp::peer_address::parse("127.0.0.1:0"), ec));
        if (ec) throw std::runtime_error("flood socket: " + ec.message());
        fds.push_back({sockets.back().native_handle(), POLLIN, 0});
    }
    auto drain_replies = [&](int wait_ms) {
        if (::poll(fds.data(), fds.size(), wait_ms) <= 0) return;
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (!(fds[i].revents & POLLIN)) continue;
            for (;;) {
                dtlspp::peer_address from;
                std::error_code ec;
                auto n = sockets[i].receive_from(buffer, from, ec);
                if (!n) break;
                ++r.replies;
                r.reply_bytes += *n;
            }
        }
    };
    r.rss_before_kib = rss_kib();
    const auto started = wall();
    std::vector<std::byte> hello;
    std::uint64_t expected = 0; // replies the kinds sent so far should draw
    for (int i = 0; i < o.flood; ++i) {
        const auto& k = r.kinds[static_cast<std::size_t>(i) % r.kinds.size()];
        hello = k.bytes;
        // A fresh client random per datagram (it starts 27 bytes in: 13
        // record header, 12 handshake header, 2 version).
        for (int b = 0; b < 4; ++b) hello[27 + b] = static_cast<std::byte>((i >> (8 * b)) & 0xff);
        std::error_code ec;
        sockets[static_cast<std::size_t>(i) % ports].send_to(hello, server.address(), ec);
        if (!ec) {
            ++r.sent;
            r.sent_bytes += hello.size();
            if (k.reply_bytes != 0) ++expected;
        }
        // Keep at most 256 answerable ClientHellos unanswered, so the
        // figure measures the server rather than the kernel's socket buffer.
        while (expected - r.replies > 256) {
            const auto before = r.replies;
            drain_replies(2);
            if (r.replies == before) break; // unanswered: count it and go on
        }
    }
    for (int i = 0; i < 50; ++i) drain_replies(10);
    r.seconds = wall() - started;
    r.rss_after_kib = rss_kib();
    flooding = false;
    legit.join();
    server.stop();
    r.server = server.counters();
    return r;
}

void print_flood(const std::vector<flood_result>& floods)
{
    heading("ClientHello flood from spoofed source ports");
    table kinds({"server", "ClientHello", "bytes in", "HelloVerifyRequest bytes out", "amplification (UDP payload)",
                 "amplification (IP datagram)"});
    for (const auto& f : floods)
        for (const auto& k : f.kinds)
            kinds.row({f.server_stack, k.name, std::to_string(k.bytes.size()), std::to_string(k.reply_bytes),
                       ratio(static_cast<double>(k.reply_bytes), static_cast<double>(k.bytes.size())),
                       // An IPv4 datagram adds 20 + 8 header bytes each way.
                       k.reply_bytes == 0 ? "0"
                                          : ratio(static_cast<double>(k.reply_bytes + 28),
                                                  static_cast<double>(k.bytes.size() + 28))});
    note("");
    table t({"server", "ClientHellos sent", "seconds", "HelloVerifyRequests sent", "replies received",
             "bytes out / bytes in", "sessions created", "legitimate handshakes completed",
             "sessions from the flood", "legit p50 / max ms before", "legit p50 / max ms during",
             "legit failures during", "process RSS KiB before → after"});
    for (const auto& f : floods) {
        std::vector<double> before, during;
        std::map<std::string, int> failures;
        for (const auto& l : f.before) before.insert(before.end(), l.ms.begin(), l.ms.end());
        for (const auto& l : f.during) {
            during.insert(during.end(), l.ms.begin(), l.ms.end());
            for (const auto& [k, n] : l.failures) failures[l.stack + " " + k] += n;
        }
        std::sort(before.begin(), before.end());
        std::sort(during.begin(), during.end());
        const auto legit = before.size() + during.size();
        const auto created = f.server.sessions_created;
        auto p50max = [](const std::vector<double>& v) {
            return v.empty() ? std::string("-") : fmt(percentile(v, 0.5), 0) + " / " + fmt(v.back(), 0);
        };
        t.row({f.server_stack, std::to_string(f.sent), fmt(f.seconds, 1), std::to_string(f.server.hello_verify_requests),
               std::to_string(f.replies), ratio(static_cast<double>(f.reply_bytes), static_cast<double>(f.sent_bytes)),
               std::to_string(created), std::to_string(legit),
               std::to_string(created > legit ? created - legit : 0), p50max(before),
               p50max(during) + " (" + std::to_string(during.size()) + " runs)", tally(failures),
               std::to_string(f.rss_before_kib) + " → " + std::to_string(f.rss_after_kib)});
    }
    note("\nThe legitimate clients (dtlspp::client, openssl and mbedtls in turn) use the matrix timers. "
         "'sessions from the flood' = sessions created − legitimate handshakes completed.");
}

// ---------------------------------------------------------------------------
// Forged records into an open association.

struct forged_result {
    std::string pair;
    int sent = 0;
    int teardowns = 0;
    std::map<std::string, int> teardown_by_kind;    // "type len-bucket"
    std::map<std::string, int> teardown_reasons;    // the server's error
    std::map<std::string, std::uint64_t> drops;     // endpoint drop counters, all associations summed
    std::uint64_t datagrams_in = 0;
    int probes = 0;
    int probes_answered = 0;
    bool reconnect_failed = false;
    double seconds = 0;
    long rss_before_kib = 0;
    long rss_after_kib = 0;
};

std::string type_name(std::uint8_t t)
{
    switch (t) {
    case 20: return "change_cipher_spec";
    case 21: return "alert";
    case 22: return "handshake";
    case 23: return "application_data";
    }
    return std::to_string(t);
}

template <class C, class S>
forged_result run_forged(const std::string& pair, const options& o)
{
    forged_result r;
    r.pair = pair;
    const auto started = wall();
    dtlspp::failure f;
    dtlspp::server_settings settings;
    auto server = dtlspp::udp_server<S>::bind(with_timers(server_config(), 1200),
                                              dtlspp::peer_address::parse("127.0.0.1:0"), settings, f);
    if (!server) throw std::runtime_error("udp_server: " + f.what());
    const auto server_address = server->local_address();
    auto ctx = C::make_context(with_timers(client_config(), 1200), f);
    if (!ctx) throw std::runtime_error("client context: " + f.what());

    std::error_code ec;
    auto socket = dtlspp::udp_socket::bind(dtlspp::peer_address::parse("127.0.0.1:0"), ec);
    if (ec) throw std::runtime_error("client socket: " + ec.message());
    const auto client_address = socket.local_address();

    auto add_counters = [&](const dtlspp::endpoint_counters& c) {
        r.datagrams_in += c.datagrams_in;
        c.for_each_drop([&](std::string_view name, std::uint64_t n) { r.drops[std::string(name)] += n; });
    };

    // The server runs in this thread, so each forged record is handled
    // before the next is sent and a teardown is pinned on the record that
    // caused it.
    struct handler {
        dtlspp::udp_server<S>* server;
        dtlspp::peer_address watched;
        std::optional<dtlspp::failure> closed;
        std::function<void(const dtlspp::endpoint_counters&)> keep;
        void on_data(const dtlspp::peer_address& from, std::span<const std::byte> data)
        {
            std::error_code e;
            server->send(from, data, e);
        }
        void on_close(const dtlspp::peer_address& peer, const dtlspp::failure& why)
        {
            if (!(peer == watched)) return;
            closed = why;
            // The association still exists while its handler runs.
            if (auto* e = server->core().find(peer)) keep(e->counters());
        }
    } h{&*server, client_address, std::nullopt, add_counters};

    std::optional<dtlspp::endpoint<C>> association;
    std::array<std::byte, 65536> buffer{};
    std::vector<std::vector<std::byte>> echoes;
    auto flush = [&] {
        association->drain([&](std::span<const std::byte> d) {
            std::error_code ignored;
            socket.send_to(d, server_address, ignored);
        });
    };
    auto pump = [&](std::chrono::milliseconds wait) {
        server->run_once(0ms, h);
        if (socket.wait_readable(wait, ec)) {
            for (int k = 0; k < 64; ++k) {
                dtlspp::peer_address from;
                auto n = socket.receive_from(buffer, from, ec);
                if (!n) break;
                association->receive(std::span<const std::byte>(buffer.data(), *n), dtlspp::clock::now(),
                                     [&](std::span<const std::byte> d) { echoes.emplace_back(d.begin(), d.end()); });
            }
        }
        const auto now = dtlspp::clock::now();
        if (auto d = association->next_deadline(); d && now >= *d) association->on_timeout(now);
        flush();
        server->run_once(0ms, h);
    };
    auto connect = [&]() -> bool {
        association = dtlspp::endpoint<C>::connect(ctx, dtlspp::clock::now(), f);
        if (!association) return false;
        h.closed.reset();
        flush();
        const auto give_up = dtlspp::clock::now() + handshake_deadline + hang_margin;
        while (association->state() == dtlspp::endpoint_state::handshaking && dtlspp::clock::now() < give_up) pump(1ms);
        // The server's side opens when the client's Finished arrives.
        for (int i = 0; i < 5; ++i) pump(0ms);
        return association->is_open();
    };
    if (!connect()) {
        r.reconnect_failed = true;
        return r;
    }

    r.rss_before_kib = rss_kib();
    dtlspp::detail::random_stream random(0x5eed);
    const std::uint8_t types[] = {23, 22, 21, 20};
    const int probe_every = std::max(1, o.forged / 20);
    for (int i = 0; i < o.forged; ++i) {
        // Lengths: 7 in 10 of 1..100 bytes, 2 in 10 of 101..1100, and 1 in
        // 10 whose length field disagrees with the bytes sent (malformed).
        const auto type = types[i % 4];
        const double pick = random.next_unit();
        std::size_t length = pick < 0.7 ? 1 + random.next() % 100 : 101 + random.next() % 1000;
        const bool malformed = pick >= 0.9;
        std::vector<std::byte> record(13 + length);
        record[0] = static_cast<std::byte>(type);
        record[1] = std::byte{0xfe};
        record[2] = std::byte{0xfd};
        record[3] = std::byte{0};
        record[4] = std::byte{1}; // epoch 1
        const auto sequence = random.next();
        for (int b = 0; b < 6; ++b) record[5 + b] = static_cast<std::byte>((sequence >> (8 * (5 - b))) & 0xff);
        const std::size_t claimed = malformed ? length + 1 + random.next() % 50 : length;
        record[11] = static_cast<std::byte>(claimed >> 8);
        record[12] = static_cast<std::byte>(claimed & 0xff);
        for (std::size_t b = 13; b < record.size(); ++b) record[b] = static_cast<std::byte>(random.next() & 0xff);
        socket.send_to(record, server_address, ec);
        ++r.sent;
        pump(0ms);

        if (h.closed || !association->is_open()) {
            ++r.teardowns;
            const std::string bucket = malformed ? "malformed" : length <= 23 ? "1-23" : length <= 100 ? "24-100" : ">100";
            ++r.teardown_by_kind[type_name(type) + " " + bucket];
            ++r.teardown_reasons[h.closed ? "server " + errc_name(h.closed->code) + ": " + h.closed->message
                                          : "client " + errc_name(association->error())];
            if (!h.closed) {
                // Only the client ended: its server-side counters are still live.
                if (auto* e = server->core().find(client_address)) add_counters(e->counters());
            }
            if (!connect()) {
                r.reconnect_failed = true;
                break;
            }
        }
        if ((i + 1) % probe_every == 0) {
            ++r.probes;
            echoes.clear();
            const std::string text = "probe " + std::to_string(i);
            association->send(std::as_bytes(std::span(text.data(), text.size())), dtlspp::clock::now(), ec);
            flush();
            const auto give_up = dtlspp::clock::now() + 1000ms;
            while (echoes.empty() && dtlspp::clock::now() < give_up) pump(1ms);
            if (!echoes.empty()) ++r.probes_answered;
        }
    }
    if (auto* e = server->core().find(client_address)) add_counters(e->counters());
    r.rss_after_kib = rss_kib();
    r.seconds = wall() - started;
    return r;
}

void print_forged(const std::vector<forged_result>& all)
{
    heading("Forged epoch-1 records from the client's own address and port");
    note("Random bytes framed as epoch-1 records (application_data, handshake, alert and change_cipher_spec in "
         "turn; random 48-bit sequence numbers; 7 in 10 of 1-100 bytes, 2 in 10 of 101-1100 bytes, 1 in 10 with a "
         "length field that disagrees with the bytes sent), one datagram each, into an open association. After "
         "a teardown the client connects again and the flood goes on.\n");
    table t({"client→server", "forged", "teardowns", "teardowns by record", "server's error", "dropped by dtlspp "
             "before the stack", "datagrams in (server side)", "echo probes answered", "process RSS KiB before → after", "seconds"});
    for (const auto& r : all) {
        std::string drops;
        for (const auto& [name, n] : r.drops) drops += (drops.empty() ? "" : ", ") + name + " " + std::to_string(n);
        std::map<std::string, int> kinds(r.teardown_by_kind.begin(), r.teardown_by_kind.end());
        t.row({r.pair, std::to_string(r.sent), std::to_string(r.teardowns) + (r.reconnect_failed ? " (reconnect failed)" : ""),
               tally(kinds), tally(r.teardown_reasons), drops, std::to_string(r.datagrams_in),
               std::to_string(r.probes_answered) + "/" + std::to_string(r.probes),
               std::to_string(r.rss_before_kib) + " → " + std::to_string(r.rss_after_kib), fmt(r.seconds, 1)});
    }
}

// ---------------------------------------------------------------------------

template <class F>
void for_each_pair(F&& f)
{
    f.template operator()<dtlspp::openssl_backend, dtlspp::openssl_backend>("openssl→openssl");
    f.template operator()<dtlspp::mbedtls_backend, dtlspp::mbedtls_backend>("mbedtls→mbedtls");
    f.template operator()<dtlspp::openssl_backend, dtlspp::mbedtls_backend>("openssl→mbedtls");
    f.template operator()<dtlspp::mbedtls_backend, dtlspp::openssl_backend>("mbedtls→openssl");
}

} // namespace

int main(int argc, char** argv)
{
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--seeds") o.seeds = std::stoi(value());
        else if (a == "--concurrency") o.concurrency = std::max(1, std::stoi(value()));
        else if (a == "--spacing") o.spacing = std::chrono::milliseconds(std::max(0, std::stoi(value())));
        else if (a == "--flood") o.flood = std::stoi(value());
        else if (a == "--forged") o.forged = std::stoi(value());
        else if (a == "--only") o.only = value();
        else if (a == "--data") o.data_file = value();
        else {
            std::fprintf(stderr,
                         "usage: robustness [--seeds N] [--spacing MS] [--concurrency N] [--flood N] [--forged N] "
                         "[--only matrix|flood|forged] [--data FILE]\n");
            return 2;
        }
    }
    note("Machine: " + machine());
    const auto started = wall();

    if (o.only.empty() || o.only == "matrix") {
        std::vector<cell_result> cells;
        const auto all = profiles();
        for (std::size_t i = 0; i < all.size(); ++i) {
            for_each_pair([&]<class C, class S>(const std::string& pair) {
                std::fprintf(stderr, "robustness: %s %s\n", all[i].name.c_str(), pair.c_str());
                cells.push_back(run_cell<C, S>(all[i], i, pair, o));
            });
        }
        print_matrix(cells, o);
        if (!o.data_file.empty()) {
            if (FILE* out = std::fopen(o.data_file.c_str(), "w")) {
                // p10 and p90 come last, so that readers of the first
                // columns keep working.
                std::fprintf(out, "# profile pair completed_percent p50_ms p99_ms max_ms p10_ms p90_ms\n");
                for (const auto& c : cells) {
                    const auto& v = c.completed_ms;
                    const auto at = [&v](double p) { return v.empty() ? std::string("NaN") : fmt(percentile(v, p), 1); };
                    std::fprintf(out, "%s %s %.1f %s %s %s %s %s\n", c.profile.c_str(), c.pair.c_str(),
                                 c.attempts ? 100.0 * static_cast<double>(v.size()) / c.attempts : 0.0,
                                 at(0.5).c_str(), at(0.99).c_str(), v.empty() ? "NaN" : fmt(v.back(), 1).c_str(),
                                 at(0.1).c_str(), at(0.9).c_str());
                }
                std::fclose(out);
            }
        }
    }
    if (o.only.empty() || o.only == "flood") {
        std::vector<flood_result> floods;
        std::fprintf(stderr, "robustness: flood at openssl\n");
        floods.push_back(run_flood<dtlspp::openssl_backend>(o));
        std::fprintf(stderr, "robustness: flood at mbedtls\n");
        floods.push_back(run_flood<dtlspp::mbedtls_backend>(o));
        print_flood(floods);
    }
    if (o.only.empty() || o.only == "forged") {
        std::vector<forged_result> forged;
        for_each_pair([&]<class C, class S>(const std::string& pair) {
            std::fprintf(stderr, "robustness: forged records %s\n", pair.c_str());
            forged.push_back(run_forged<C, S>(pair, o));
        });
        print_forged(forged);
    }
    note("\nTotal: " + fmt(wall() - started, 0) + " s.");
    return 0;
}
