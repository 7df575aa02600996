// One comparison run: a client endpoint<C> and a server<S> joined by an
// impaired_link, a handshake, then N echo messages, with everything that
// crossed the link recorded from the wire.
//
// The driver handles one event at a time (one delivered datagram, or one
// side's timer) and hands each side's output to wire_side::batch right
// after, which is what makes "one batch = one flight" true.
#pragma once

#include "wire.hpp"

#include <dtlspp/endpoint.hpp>
#include <dtlspp/pcap.hpp>
#include <dtlspp/server.hpp>
#include <dtlspp/trace.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/link.hpp>
#ifdef EXAMPLES_HAVE_OPENSSL
#include <dtlspp/backend/openssl.hpp>
#endif

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace examples::compare {

using bytes = std::vector<std::byte>;

// The settings shared by every run of a grid.
struct run_settings {
    std::string cert_chain, private_key, trusted_ca; // server credentials, client's CA
    std::chrono::milliseconds initial_rto{100};
    std::chrono::milliseconds max_rto{1600};
    std::chrono::milliseconds deadline{10000};   // handshake deadline, both sides
    std::chrono::milliseconds delay{5};          // one-way link latency
    std::chrono::milliseconds echo_wait{500};    // after the handshake, for the echoes
    std::size_t messages = 10;
    std::size_t message_size = 64;
    bool virtual_clock = false; // honoured only where no OpenSSL is involved
    bool trace = false;
    std::filesystem::path pcap_dir; // empty: no capture
};

// One point of the grid.
struct run_spec {
    bool dtls13 = false;          // both sides DTLS 1.3 only (wolfSSL)
    std::string label;       // for file names and trace headers
    std::size_t mtu = 1200;  // max_udp_payload on both sides, and the link's clamp
    double loss = 0;         // per datagram, each direction, 0..1
    std::uint64_t seed = 1;
    bool openssl_default_mtu = false;
    // Both sides ask for a Connection ID, and halfway through the echoes the
    // client's address changes, as behind a NAT that rebinds.
    bool rebind = false;
};

// The length each side asks for with run_spec::rebind.
inline constexpr std::size_t rebind_connection_id_length = 8;

struct run_result {
    bool ok = false;              // both sides completed the handshake
    bool virtual_clock = false;   // which clock the run used
    double handshake_ms = 0;      // client's first ClientHello to its handshake completing
    std::string failure;          // why not, when !ok
    wire_side client, server;     // client: c>s, server: s>c
    std::uint64_t link_mtu_drops = 0; // datagrams over the MTU: a stack broke its limit
    std::size_t messages_sent = 0, echoed = 0;
    // With run_spec::rebind: whether a CID was negotiated, the messages
    // sent after the address changed and how many came back, and what the
    // server still sent to the old address (nobody there any more).
    bool connection_id = false;
    bool rebound = false;
    std::size_t sent_after_rebind = 0, echoed_after_rebind = 0;
    std::uint64_t to_old_address = 0;
    std::string trace;            // capture-like lines, when asked for
};

namespace detail {

// A clock that is either real or jumps to the next event. Runs that
// include OpenSSL must use real time: its DTLS timer reads the wall clock.
struct run_clock {
    bool is_virtual = false;
    dtlspp::time_point start = dtlspp::clock::now();
    dtlspp::time_point virtual_now = start;
    std::chrono::system_clock::time_point wall_start = std::chrono::system_clock::now();

    dtlspp::time_point now() const { return is_virtual ? virtual_now : dtlspp::clock::now(); }
    void wait_until(dtlspp::time_point t)
    {
        if (is_virtual) virtual_now = std::max(virtual_now, t);
        else std::this_thread::sleep_until(t);
    }
    // Timestamps for the pcap: wall time, advanced by virtual time too.
    std::chrono::system_clock::time_point wall(dtlspp::time_point t) const
    {
        return wall_start + std::chrono::duration_cast<std::chrono::system_clock::duration>(t - start);
    }
};

// A context built with the OpenSSL-only option where it applies. The one
// place the comparison names a stack: reproducing OpenSSL's 228-byte
// default is the point of --openssl-default-mtu.
template <class B>
std::shared_ptr<typename B::context> make_context(const dtlspp::config& c, dtlspp::failure& f, bool default_mtu)
{
#ifdef EXAMPLES_HAVE_OPENSSL
    if constexpr (std::is_same_v<B, dtlspp::openssl_backend>) {
        dtlspp::openssl_backend::options o;
        o.emulate_default_mtu = default_mtu;
        return B::make_context(c, f, o);
    }
#endif
    (void)default_mtu;
    return B::make_context(c, f);
}

inline std::string format_ms(std::chrono::nanoseconds d)
{
    char text[32];
    std::snprintf(text, sizeof text, "%9.3f ms", std::chrono::duration<double, std::milli>(d).count());
    return text;
}

} // namespace detail

template <class C, class S>
run_result run_one(const run_settings& settings, const run_spec& spec)
{
    using namespace std::chrono;
    run_result result;
    detail::run_clock time;
    time.is_virtual = settings.virtual_clock && C::traits.timers == dtlspp::timer_clock::caller &&
                      S::traits.timers == dtlspp::timer_clock::caller;
    result.virtual_clock = time.is_virtual;

    dtlspp::impaired_link link(spec.seed);
    dtlspp::link_impairments knobs;
    knobs.loss_rate = spec.loss;
    knobs.mtu = spec.mtu;
    knobs.delay = settings.delay;
    link.set_impairments(dtlspp::link_direction::a_to_b, knobs);
    link.set_impairments(dtlspp::link_direction::b_to_a, knobs);

    const auto common = [&](dtlspp::config& c) {
        c.max_udp_payload = spec.mtu;
        c.initial_retransmission_timeout = settings.initial_rto;
        c.max_retransmission_timeout = settings.max_rto;
        c.handshake_deadline = settings.deadline;
        if (spec.dtls13) c.min_version = c.max_version = dtlspp::dtls_version::dtls_1_3;
    };
    dtlspp::config server_cfg;
    server_cfg.role = dtlspp::role::server;
    server_cfg.certificate = dtlspp::x509_credentials{dtlspp::pem_source::from_file(settings.cert_chain),
                                                      dtlspp::pem_source::from_file(settings.private_key)};
    common(server_cfg);
    dtlspp::config client_cfg;
    client_cfg.role = dtlspp::role::client;
    client_cfg.trusted_ca = dtlspp::pem_source::from_file(settings.trusted_ca);
    client_cfg.server_name = "localhost";
    common(client_cfg);
    if (spec.rebind) {
        // Asked for on both sides; each stack pair negotiates it or not.
        server_cfg.connection_id = rebind_connection_id_length;
        client_cfg.connection_id = rebind_connection_id_length;
    }

    // Capture: the datagrams as each side sent them, before the link's
    // impairments, so a lost datagram still shows (once) in the file.
    const std::string file_base = spec.label + "-mtu" + std::to_string(spec.mtu) + "-loss" +
                                  std::to_string(static_cast<int>(spec.loss * 1000 + 0.5) / 10) + "-seed" +
                                  std::to_string(spec.seed);
    dtlspp::pcap_writer pcap;
    std::ofstream keys;
    if (!settings.pcap_dir.empty()) {
        if (auto ec = pcap.open(settings.pcap_dir / (file_base + ".pcap"))) {
            result.failure = "pcap: " + ec.message();
            return result;
        }
        keys.open(settings.pcap_dir / (file_base + ".keys"));
        client_cfg.key_log = [&keys](std::string_view line) { keys << line << '\n' << std::flush; };
    }
    // The link carries bytes only: the client's address exists in what the
    // server is told (receive(from, ...)) and in the capture. A rebind
    // changes both to the second port.
    const auto first_ip = dtlspp::ip_endpoint::v4({127, 0, 0, 1}, 50000);
    auto client_ip = first_ip;
    const auto server_ip = dtlspp::ip_endpoint::v4({127, 0, 0, 1}, 4433);
    auto client_address = dtlspp::peer_address::parse("127.0.0.1:50000");
    const auto rebound_ip = dtlspp::ip_endpoint::v4({127, 0, 0, 1}, 50001);
    const auto rebound_address = dtlspp::peer_address::parse("127.0.0.1:50001");

    std::ostringstream trace;
    if (settings.trace)
        trace << "== " << spec.label << " mtu " << spec.mtu << " loss " << spec.loss * 100 << "% seed " << spec.seed
              << (time.is_virtual ? " (virtual time)" : " (real time)") << '\n';

    dtlspp::failure f;
    auto server_ctx = detail::make_context<S>(server_cfg, f, spec.openssl_default_mtu);
    if (!server_ctx) {
        result.failure = "server: " + f.what();
        return result;
    }
    auto server = dtlspp::server<S>::create(server_ctx, {}, f);
    if (!server) {
        result.failure = "server: " + f.what();
        return result;
    }
    auto client_ctx = detail::make_context<C>(client_cfg, f, spec.openssl_default_mtu);
    if (!client_ctx) {
        result.failure = "client: " + f.what();
        return result;
    }

    struct echo_handler {
        dtlspp::server<S>* srv;
        detail::run_clock* time;
        bool opened = false;
        void on_open(const dtlspp::peer_address&) { opened = true; }
        void on_data(const dtlspp::peer_address& from, std::span<const std::byte> data)
        {
            std::error_code ignored; // a failed echo shows as a missing reply
            srv->send(from, data, time->now(), ignored);
        }
    } handler{&*server, &time, false};

    const auto started = time.now();
    auto client = dtlspp::endpoint<C>::connect(client_ctx, started, f);
    if (!client) {
        result.failure = "client: " + f.what();
        return result;
    }

    // Sends one side's batch across the link, tracing and capturing it.
    // Server datagrams flagged in `stray` go to the client's old address:
    // on the wire, but nobody receives them.
    const auto send_batch = [&](bool from_client, const std::vector<bytes>& out, const std::vector<bool>& stray) {
        if (out.empty()) return;
        (from_client ? result.client : result.server).batch(out);
        const auto direction = from_client ? dtlspp::link_direction::a_to_b : dtlspp::link_direction::b_to_a;
        const auto now = time.now();
        for (std::size_t i = 0; i < out.size(); ++i) {
            const auto& d = out[i];
            const bool to_old = !from_client && stray[i];
            const auto before = link.counters(direction).dropped;
            if (to_old) ++result.to_old_address;
            else link.send(direction, d, now);
            const auto after = link.counters(direction).dropped;
            result.link_mtu_drops += after.mtu - before.mtu;
            if (pcap.is_open())
                (void)pcap.write(time.wall(now), from_client ? client_ip : server_ip,
                                 from_client ? server_ip : to_old ? first_ip : client_ip, d);
            if (settings.trace) {
                // Arrows as seen from the client: -> to the server, <- to it.
                // The CID length is the receiver's, as parsing needs it:
                // the server's association knows the one it asked for while
                // the client does not yet know the one it must send.
                const auto dir = from_client ? dtlspp::direction::out : dtlspp::direction::in;
                const auto* at_server = from_client ? server->find(client_address) : nullptr;
                const auto cid_length = at_server ? at_server->connection_id_length(dtlspp::direction::in)
                                                  : client->connection_id_length(dir);
                trace << detail::format_ms(now - started) << "  "
                      << dtlspp::describe_datagram(dir, d, cid_length)
                      << (to_old ? "  [to the old address]" : after.total() > before.total() ? "  [lost]" : "")
                      << '\n';
            }
        }
    };
    const auto drain = [&] {
        std::vector<bytes> up, down;
        std::vector<bool> stray;
        client->drain([&](std::span<const std::byte> d) { up.emplace_back(d.begin(), d.end()); });
        server->drain([&](const dtlspp::peer_address& to, std::span<const std::byte> d) {
            down.emplace_back(d.begin(), d.end());
            stray.push_back(!(to == client_address));
        });
        send_batch(true, up, {});
        send_batch(false, down, stray);
    };

    std::vector<bytes> sent_messages;
    // With a rebind, the first half goes from the first address, the rest
    // from the second.
    const std::size_t before_rebind = spec.rebind ? settings.messages / 2 : settings.messages;
    const auto on_client_data = [&](std::span<const std::byte> d) {
        for (std::size_t i = 0; i < sent_messages.size(); ++i) {
            const auto& m = sent_messages[i];
            if (std::equal(m.begin(), m.end(), d.begin(), d.end())) {
                ++result.echoed;
                if (i >= before_rebind) ++result.echoed_after_rebind;
                return;
            }
        }
    };
    const auto send_messages = [&](std::size_t first, std::size_t end, dtlspp::time_point now) {
        for (std::size_t i = first; i < end; ++i) {
            bytes m(settings.message_size);
            for (std::size_t k = 0; k < m.size(); ++k) m[k] = static_cast<std::byte>('a' + (i + k) % 26);
            const auto tag = std::to_string(i);
            for (std::size_t k = 0; k < tag.size() && k < m.size(); ++k) m[k] = static_cast<std::byte>(tag[k]);
            std::error_code ec;
            client->send(m, now, ec);
            if (ec) break;
            sent_messages.push_back(std::move(m));
            ++result.messages_sent;
            if (i >= before_rebind) ++result.sent_after_rebind;
        }
        drain();
    };

    // Bounded: the handshake deadline ends the first phase on both stacks,
    // the echo wait the second, and the hard limit anything else.
    const auto hard_limit =
        started + settings.deadline + settings.echo_wait * (spec.rebind ? 2 : 1) + seconds(2);
    std::optional<dtlspp::time_point> echo_until;
    std::array<std::byte, dtlspp::max_datagram_in + 1> buffer{};
    drain();
    for (;;) {
        auto now = time.now();
        if (now >= hard_limit) {
            if (result.failure.empty() && !result.ok) result.failure = "run time limit reached";
            break;
        }
        // Until nothing more is due: with no delay (or on virtual time) an
        // answer is due the moment it is sent.
        for (bool delivered = true; delivered;) {
            delivered = false;
            while (auto n = link.receive(dtlspp::link_direction::a_to_b, now, buffer)) {
                server->receive(client_address, std::span<const std::byte>(buffer.data(), std::min(*n, buffer.size())),
                                now, handler);
                drain();
                delivered = true;
            }
            while (auto n = link.receive(dtlspp::link_direction::b_to_a, now, buffer)) {
                client->receive(std::span<const std::byte>(buffer.data(), std::min(*n, buffer.size())), now,
                                on_client_data);
                drain();
                delivered = true;
            }
        }
        if (auto d = client->next_deadline(); d && *d <= now) {
            client->on_timeout(now);
            drain();
        }
        if (auto d = server->next_deadline(); d && *d <= now) {
            server->on_timeout(now, handler);
            drain();
        }

        if (!echo_until && client->state() != dtlspp::endpoint_state::handshaking) {
            if (!client->is_open() || !handler.opened) {
                result.failure = client->is_open() ? "server did not complete" : client->last_failure().what();
                break;
            }
            result.ok = true;
            result.handshake_ms = duration<double, std::milli>(client->counters().handshake_duration).count();
            result.connection_id = client->connection_id().negotiated;
            send_messages(0, before_rebind, now);
            echo_until = now + settings.echo_wait;
        }
        const bool echo_phase_over = echo_until && (result.echoed >= result.messages_sent || now >= *echo_until);
        if (echo_phase_over && spec.rebind && !result.rebound) {
            // The client's address changes; the endpoint does not know.
            result.rebound = true;
            client_address = rebound_address;
            client_ip = rebound_ip;
            if (settings.trace)
                trace << detail::format_ms(now - started) << "  client moves to " << client_address.to_string()
                      << (result.connection_id ? " (Connection ID negotiated)" : " (no Connection ID)") << '\n';
            send_messages(before_rebind, settings.messages, now);
            echo_until = now + settings.echo_wait;
            continue;
        }
        if (echo_phase_over) break;

        auto next = echo_until ? std::min(hard_limit, *echo_until) : hard_limit;
        for (auto d : {link.next_delivery(dtlspp::link_direction::a_to_b),
                       link.next_delivery(dtlspp::link_direction::b_to_a), client->next_deadline(),
                       server->next_deadline()})
            if (d) next = std::min(next, *d);
        // Never spin: an event that is already due but did nothing (a timer
        // a stack left in the past) is retried a millisecond later.
        if (next <= now) next = now + milliseconds(1);
        time.wait_until(next);
    }
    if (settings.trace) {
        trace << "   " << (result.ok ? "handshake complete" : "handshake failed: " + result.failure);
        if (result.ok)
            trace << " in " << result.handshake_ms << " ms; " << result.echoed << "/" << result.messages_sent
                  << " echoes";
        if (result.ok && spec.rebind)
            trace << ", " << result.echoed_after_rebind << "/" << result.sent_after_rebind << " after the rebind";
        trace << '\n';
        result.trace = trace.str();
    }
    return result;
}

} // namespace examples::compare
