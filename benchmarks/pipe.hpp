// The in-memory datagram network every wrapper benchmark runs on, and the
// driver that moves datagrams between one server and its clients.
//
// The same driver runs the raw implementations (raw_openssl.hpp,
// raw_mbedtls.hpp) and dtlspp (dtlspp_sides.hpp), so whatever the pipe costs
// is paid alike by both and the ratio isolates the wrapper.
//
// A "client" has a member `id` (its peer id, stamped on what it queues) and
// provides:              start(out)  receive(d, out, on_data)  send(d, out)
//                        close(out)  is_open()
// A "server" provides:   receive(peer, d, out)   (echoes application data)
//                        sessions()
#pragma once

#include "common.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

namespace bench {

// Datagrams in flight in one direction, back to back in one reused buffer
// so that moving them allocates nothing once warm.
class datagrams {
public:
    void push(std::uint32_t peer, std::span<const std::byte> d)
    {
        entries_.push_back({peer, bytes_.size(), d.size()});
        bytes_.insert(bytes_.end(), d.begin(), d.end());
    }
    void push(std::uint32_t peer, const void* data, std::size_t length)
    {
        push(peer, std::span(static_cast<const std::byte*>(data), length));
    }
    std::size_t size() const noexcept { return entries_.size(); }
    bool empty() const noexcept { return entries_.empty(); }
    std::uint32_t peer(std::size_t i) const noexcept { return entries_[i].peer; }
    std::span<const std::byte> operator[](std::size_t i) const noexcept
    {
        return std::span<const std::byte>(bytes_).subspan(entries_[i].offset, entries_[i].length);
    }
    void clear() noexcept
    {
        bytes_.clear();
        entries_.clear();
    }
    void swap(datagrams& other) noexcept
    {
        bytes_.swap(other.bytes_);
        entries_.swap(other.entries_);
    }
    std::size_t total_bytes() const noexcept { return bytes_.size(); }

private:
    struct entry {
        std::uint32_t peer;
        std::size_t offset;
        std::size_t length;
    };
    std::vector<std::byte> bytes_;
    std::vector<entry> entries_;
};

// Which side the driver is running right now (0 client, 1 server, 2 the
// pipe itself): the heap benchmark charges allocations to it.
inline int current_side = 2;

// Moves datagrams until both directions are empty. CPU time is charged to
// the side that handles each batch (thread CPU clock around the batch).
template <class Client, class Server>
class driver {
public:
    driver(Server& s, std::vector<Client*> clients) : server_(s), clients_(std::move(clients)) {}

    double cpu_client = 0, cpu_server = 0;
    // Per-side CPU costs two clock syscalls per batch: worth it for a
    // handshake (~1 ms), not for a 10 us echo, where it is switched off.
    bool time_sides = true;
    std::uint64_t client_messages = 0; // application messages the clients received
    std::uint64_t datagrams_moved = 0, bytes_moved = 0;
    // Client-to-server batches moved: for a handshake, the round trips
    // before the client may send application data.
    std::uint64_t round_trips = 0;

    void start(std::uint32_t peer)
    {
        const double t0 = now_cpu();
        current_side = 0;
        clients_[peer]->start(up_);
        current_side = 2;
        cpu_client += now_cpu() - t0;
        pump();
    }
    void send(std::uint32_t peer, std::span<const std::byte> message)
    {
        const double t0 = now_cpu();
        current_side = 0;
        clients_[peer]->send(message, up_);
        current_side = 2;
        cpu_client += now_cpu() - t0;
        pump();
    }
    void close(std::uint32_t peer)
    {
        const double t0 = now_cpu();
        current_side = 0;
        clients_[peer]->close(up_);
        current_side = 2;
        cpu_client += now_cpu() - t0;
        pump();
    }

    void pump()
    {
        // Bounded: a lossless in-memory handshake settles in a handful of
        // rounds; more means a bug, not a slow stack.
        for (int round = 0; round < 64; ++round) {
            if (up_.empty() && down_.empty()) return;
            batch_.clear();
            batch_.swap(up_);
            if (!batch_.empty()) ++round_trips;
            account(batch_);
            double t0 = now_cpu();
            current_side = 1;
            for (std::size_t i = 0; i < batch_.size(); ++i) server_.receive(batch_.peer(i), batch_[i], down_);
            current_side = 2;
            cpu_server += now_cpu() - t0;

            batch_.clear();
            batch_.swap(down_);
            account(batch_);
            t0 = now_cpu();
            for (std::size_t i = 0; i < batch_.size(); ++i) {
                const auto peer = batch_.peer(i);
                current_side = 0;
                clients_.at(peer)->receive(batch_[i], up_, [&](std::span<const std::byte>) { ++client_messages; });
                current_side = 2;
            }
            cpu_client += now_cpu() - t0;
        }
        throw std::runtime_error("pipe driver: datagrams still moving after 64 rounds");
    }

private:
    double now_cpu() const { return time_sides ? thread_cpu() : 0.0; }
    void account(const datagrams& q)
    {
        datagrams_moved += q.size();
        bytes_moved += q.total_bytes();
    }

    Server& server_;
    std::vector<Client*> clients_;
    datagrams up_, down_, batch_;
};

} // namespace bench
