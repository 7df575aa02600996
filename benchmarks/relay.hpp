// A seeded impairing UDP relay on real sockets, in the spirit of mbedTLS's
// programs/test/udp_proxy.c: it sits between DTLS clients and a server and,
// per direction, drops, duplicates, delays or reorders datagrams, and drops
// those over an MTU clamp. Linux without the netem qdisc cannot impair
// loopback, so the impairment lives here.
//
// Clients send to front_address(). Each client address (a flow) gets an
// upstream socket of its own, so the server sees one peer per client. A flow
// is registered before its first datagram with the seed that fixes its
// random choices, so seed N meets the same fate by datagram position on
// every run and every stack pair (the order datagrams reach the relay still
// depends on timing).
//
// Single-threaded and non-blocking: the caller polls fds() with its own
// sockets, then calls service(). Every wait stays the caller's.
#pragma once

#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/link.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <poll.h>
#include <queue>
#include <span>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace bench {

// What one direction of the relay does to each datagram, decided in this
// order: clamp, drop, delay, forward (then maybe duplicate).
struct impairment {
    double drop = 0;      // probability a datagram is lost
    double duplicate = 0; // probability a forwarded datagram is sent twice
    double delay = 0;     // probability a datagram is held back
    // How a held datagram is released. hold_until_next: after the next
    // datagram forwarded in the same direction (what udp_proxy.c's delay=N
    // does), or after hold_limit when none comes, so a held datagram is
    // late but never lost. Otherwise: after a uniform random time in
    // [hold_min, hold_max], so later datagrams overtake it.
    bool hold_until_next = false;
    std::chrono::milliseconds hold_min{0};
    std::chrono::milliseconds hold_max{0};
    std::chrono::milliseconds hold_limit{200};
    // Datagrams with a UDP payload larger than this are dropped (0: none).
    std::size_t max_datagram = 0;
};

struct relay_direction_counters {
    std::uint64_t received = 0;
    std::uint64_t forwarded = 0; // duplicates included
    std::uint64_t dropped = 0;
    std::uint64_t dropped_over_clamp = 0;
    std::uint64_t duplicated = 0;
    std::uint64_t delayed = 0;
};

struct relay_counters {
    relay_direction_counters to_server;
    relay_direction_counters to_client;
    std::uint64_t unknown_source = 0; // datagrams from an address with no flow
};

class impairing_relay {
public:
    using clock = std::chrono::steady_clock;

    impairing_relay(const dtlspp::peer_address& server, impairment to_server, impairment to_client)
        : server_(server), to_server_(to_server), to_client_(to_client)
    {
        std::error_code ec;
        front_ = dtlspp::udp_socket::bind(dtlspp::peer_address::parse("127.0.0.1:0"), ec);
        if (ec) throw std::runtime_error("relay: cannot bind the front socket: " + ec.message());
        front_address_ = front_.local_address();
    }

    const dtlspp::peer_address& front_address() const noexcept { return front_address_; }
    const relay_counters& counters() const noexcept { return counters_; }

    // Registers the client at `client` (its bound address) with the seed
    // of its random choices.
    void add_flow(const dtlspp::peer_address& client, std::uint64_t seed)
    {
        std::error_code ec;
        auto upstream = dtlspp::udp_socket::bind(dtlspp::peer_address::parse("127.0.0.1:0"), ec);
        if (ec) throw std::runtime_error("relay: cannot bind an upstream socket: " + ec.message());
        auto f = std::make_unique<flow>(flow{next_flow_id_++, client, std::move(upstream),
                                             dtlspp::detail::random_stream(seed * 2 + 1),
                                             dtlspp::detail::random_stream(seed * 2 + 2), {}, {}});
        by_id_[f->id] = f.get();
        flows_[client] = std::move(f);
    }

    // Forgets the flow at `at` (its held datagrams die with it): give the
    // last datagrams of an association (a close_notify) time to pass first.
    void retire_flow(const dtlspp::peer_address& client, clock::time_point at) { retiring_.emplace(at, client); }

    // The sockets to poll for reading: the front socket, then each flow's.
    void add_poll_fds(std::vector<pollfd>& fds)
    {
        first_fd_ = fds.size();
        polled_.clear();
        fds.push_back({front_.native_handle(), POLLIN, 0});
        for (auto& [address, f] : flows_) {
            fds.push_back({f->upstream.native_handle(), POLLIN, 0});
            polled_.push_back(f.get());
        }
    }

    // When service() must run next for a held datagram or a retirement.
    std::optional<clock::time_point> next_due() const
    {
        std::optional<clock::time_point> due;
        if (!held_.empty()) due = held_.top().due;
        if (!retiring_.empty()) due = due ? std::min(*due, retiring_.begin()->first) : retiring_.begin()->first;
        return due;
    }

    // Reads what poll() marked readable in `fds` (as filled by
    // add_poll_fds), applies the impairment, and sends what is due.
    void service(const std::vector<pollfd>& fds, clock::time_point now)
    {
        if (fds[first_fd_].revents & POLLIN) read_front(now);
        for (std::size_t i = 0; i < polled_.size(); ++i)
            if (fds[first_fd_ + 1 + i].revents & POLLIN) read_upstream(*polled_[i], now);
        release_due(now);
        while (!retiring_.empty() && retiring_.begin()->first <= now) {
            auto found = flows_.find(retiring_.begin()->second);
            if (found != flows_.end()) {
                by_id_.erase(found->second->id);
                flows_.erase(found);
            }
            retiring_.erase(retiring_.begin());
        }
    }

    std::size_t flow_count() const noexcept { return flows_.size(); }

private:
    enum class way { to_server, to_client };

    struct held_datagram {
        clock::time_point due;
        std::uint64_t order;
        std::uint64_t flow_id;
        way direction;
        std::vector<std::byte> bytes;
        bool operator>(const held_datagram& other) const
        {
            return due != other.due ? due > other.due : order > other.order;
        }
    };

    struct flow {
        std::uint64_t id;
        dtlspp::peer_address client;
        dtlspp::udp_socket upstream;
        dtlspp::detail::random_stream random_to_server;
        dtlspp::detail::random_stream random_to_client;
        // udp_proxy-style holds waiting for the next datagram, per direction.
        std::vector<std::vector<std::byte>> waiting_to_server;
        std::vector<std::vector<std::byte>> waiting_to_client;
    };

    void read_front(clock::time_point now)
    {
        for (int i = 0; i < 256; ++i) {
            dtlspp::peer_address from;
            std::error_code ec;
            auto n = front_.receive_from(buffer_, from, ec);
            if (!n) break;
            auto found = flows_.find(from);
            if (found == flows_.end()) {
                ++counters_.unknown_source;
                continue;
            }
            impair(*found->second, way::to_server, std::span<const std::byte>(buffer_.data(), *n), now);
        }
    }

    void read_upstream(flow& f, clock::time_point now)
    {
        for (int i = 0; i < 64; ++i) {
            dtlspp::peer_address from;
            std::error_code ec;
            auto n = f.upstream.receive_from(buffer_, from, ec);
            if (!n) break;
            if (!(from == server_)) {
                ++counters_.unknown_source;
                continue;
            }
            impair(f, way::to_client, std::span<const std::byte>(buffer_.data(), *n), now);
        }
    }

    void impair(flow& f, way direction, std::span<const std::byte> datagram, clock::time_point now)
    {
        const auto& rule = direction == way::to_server ? to_server_ : to_client_;
        auto& count = direction == way::to_server ? counters_.to_server : counters_.to_client;
        auto& random = direction == way::to_server ? f.random_to_server : f.random_to_client;
        ++count.received;
        // Four draws per datagram whatever happens to it, so the choices
        // for datagram k of a flow never depend on those before it.
        const bool lose = random.chance(rule.drop);
        const bool hold = random.chance(rule.delay);
        const bool twice = random.chance(rule.duplicate);
        const double hold_fraction = random.next_unit();
        if (rule.max_datagram != 0 && datagram.size() > rule.max_datagram) {
            ++count.dropped_over_clamp;
            return;
        }
        if (lose) {
            ++count.dropped;
            return;
        }
        if (hold) {
            ++count.delayed;
            std::vector<std::byte> copy(datagram.begin(), datagram.end());
            if (rule.hold_until_next) {
                (direction == way::to_server ? f.waiting_to_server : f.waiting_to_client).push_back(copy);
                held_.push({now + rule.hold_limit, order_++, f.id, direction, std::move(copy)});
                // The copy in held_ is the fallback: whichever leaves first
                // marks the other as sent (see release_due).
                return;
            }
            const auto span = rule.hold_max - rule.hold_min;
            const auto wait = rule.hold_min + std::chrono::duration_cast<std::chrono::milliseconds>(span * hold_fraction);
            held_.push({now + wait, order_++, f.id, direction, std::move(copy)});
            return;
        }
        send(f, direction, datagram, count);
        if (twice) {
            ++count.duplicated;
            send(f, direction, datagram, count);
        }
        auto& waiting = direction == way::to_server ? f.waiting_to_server : f.waiting_to_client;
        for (auto& d : waiting) send(f, direction, d, count);
        waiting.clear();
    }

    void release_due(clock::time_point now)
    {
        while (!held_.empty() && held_.top().due <= now) {
            const auto& h = held_.top();
            auto found = by_id_.find(h.flow_id);
            if (found != by_id_.end()) {
                flow& f = *found->second;
                const auto& rule = h.direction == way::to_server ? to_server_ : to_client_;
                auto& count = h.direction == way::to_server ? counters_.to_server : counters_.to_client;
                if (rule.hold_until_next) {
                    // Still waiting for a next datagram: release it now.
                    auto& waiting = h.direction == way::to_server ? f.waiting_to_server : f.waiting_to_client;
                    auto it = std::find(waiting.begin(), waiting.end(), h.bytes);
                    if (it != waiting.end()) {
                        send(f, h.direction, *it, count);
                        waiting.erase(it);
                    }
                } else {
                    send(f, h.direction, h.bytes, count);
                }
            }
            held_.pop();
        }
    }

    void send(flow& f, way direction, std::span<const std::byte> datagram, relay_direction_counters& count)
    {
        std::error_code ignored; // a full buffer is loss, as on a network
        if (direction == way::to_server) f.upstream.send_to(datagram, server_, ignored);
        else front_.send_to(datagram, f.client, ignored);
        if (!ignored) ++count.forwarded;
    }

    dtlspp::peer_address server_;
    impairment to_server_;
    impairment to_client_;
    dtlspp::udp_socket front_;
    dtlspp::peer_address front_address_;
    std::unordered_map<dtlspp::peer_address, std::unique_ptr<flow>> flows_;
    std::unordered_map<std::uint64_t, flow*> by_id_;
    std::multimap<clock::time_point, dtlspp::peer_address> retiring_;
    std::priority_queue<held_datagram, std::vector<held_datagram>, std::greater<>> held_;
    std::vector<flow*> polled_;
    std::size_t first_fd_ = 0;
    std::uint64_t next_flow_id_ = 1;
    std::uint64_t order_ = 0;
    relay_counters counters_;
    std::array<std::byte, 65536> buffer_{};
};

} // namespace bench
