// SPDX-License-Identifier: MIT
// dtlspp::udp_server<Backend>: server<Backend> on one UDP socket, with the
// one small loop that touches it.
//
// Datagrams come in and go out in batches: one recvmmsg / sendmmsg per batch
// on Linux, one call per datagram elsewhere. What the kernel cannot take
// (a full send buffer) is kept, in order, and sent as soon as the socket is
// writable again; nothing is dropped without a counter saying so.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/detail/socket_loop.hpp>
#include <dtlspp/server.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/socket_hook.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

namespace dtlspp {

// The socket side of a udp_server.
struct udp_settings {
    // Kernel buffers sized for a server with many peers: the system's
    // defaults (Linux: 208 KiB) overflow when a few hundred clients send at
    // once. The kernel grants at most net.core.rmem_max / wmem_max; a
    // process with CAP_NET_ADMIN gets the full size. kernel_drops counts
    // what still overflows.
    socket_options socket{.share_port = false,
                          .receive_buffer_bytes = 4 << 20,
                          .send_buffer_bytes = 1 << 20,
                          .count_kernel_drops = true};
    // Datagrams kept while the send buffer is full; beyond this many, new
    // ones are dropped and counted (send_backlog_full). DTLS retransmits
    // handshake flights, and application data over DTLS is unreliable by
    // design, so a bound is safe; without one a peer that never reads
    // could grow the server without limit.
    std::size_t max_send_backlog = 8192;
    // Datagrams taken per run_once before timers run, so one busy peer
    // cannot starve the others' retransmissions.
    std::size_t receive_batch = 256;
};

// What happened at the socket (server_counters say what happened above it).
struct udp_counters {
    std::uint64_t receive_calls = 0;        // system calls that returned datagrams
    std::uint64_t send_calls = 0;           // system calls that sent datagrams
    std::uint64_t send_buffer_full = 0;     // times the kernel refused for a full send buffer
    std::uint64_t sends_deferred = 0;       // datagrams kept for a retry (each counted once)
    std::uint64_t send_backlog_full = 0;    // dropped: max_send_backlog datagrams were waiting already
    std::uint64_t send_errors = 0;          // refused for another reason (no route, ...): dropped
    std::uint64_t truncated_in = 0;         // larger than any DTLS datagram: cut, then dropped by the server
    std::uint64_t kernel_receive_drops = 0; // dropped by the kernel, receive buffer full (Linux)

    template <class F>
    void for_each(F&& f) const
    {
        fields(*this, f);
    }

    udp_counters& operator+=(const udp_counters& other)
    {
        detail::add_counters(*this, other);
        return *this;
    }

    template <class Self, class F>
    static void fields(Self& self, F&& f)
    {
        f("receive_calls", self.receive_calls);
        f("send_calls", self.send_calls);
        f("send_buffer_full", self.send_buffer_full);
        f("sends_deferred", self.sends_deferred);
        f("send_backlog_full", self.send_backlog_full);
        f("send_errors", self.send_errors);
        f("truncated_in", self.truncated_in);
        f("kernel_receive_drops", self.kernel_receive_drops);
    }
};

template <backend Backend>
class udp_server {
public:
    using core_type = server<Backend>;

    // Makes the server (server<Backend>::create) and binds its UDP socket
    // to `local` (socket(), setsockopt() for the buffers and drop counting,
    // bind()). Returns nullopt with the reason in `f`; never throws.
    //
    // Errors (f.code): config_invalid (the config, or udp_settings with a
    // zero bound) and the backend's load errors; a socket error with its
    // system code (address in use, permission denied, ...).
    [[nodiscard]] static std::optional<udp_server> bind(const config& c, const peer_address& local,
                                                        server_settings settings, failure& f)
    {
        return bind(c, local, settings, udp_settings{}, f);
    }

    [[nodiscard]] static std::optional<udp_server> bind(const config& c, const peer_address& local,
                                                        server_settings settings, const udp_settings& socket_settings,
                                                        failure& f)
    {
        auto core = core_type::create(c, settings, f);
        if (!core) return std::nullopt;
        return bind(std::move(*core), local, socket_settings, f);
    }

    // A server whose core was made elsewhere (a context with backend-only
    // options, or one of several workers).
    [[nodiscard]] static std::optional<udp_server> bind(core_type core, const peer_address& local,
                                                        const udp_settings& socket_settings, failure& f)
    {
        if (socket_settings.max_send_backlog == 0 || socket_settings.receive_batch == 0) {
            f = make_failure(errc::config_invalid, "udp_settings: max_send_backlog and receive_batch must be at least 1");
            return std::nullopt;
        }
        std::error_code ec;
        auto socket = udp_socket::bind(local, socket_settings.socket, ec);
        if (ec) {
            f = {ec, "cannot bind UDP " + local.to_string()};
            return std::nullopt;
        }
        return udp_server(std::move(core), std::move(socket), socket_settings);
    }

    // As bind(c, local, settings, socket_settings, f); throws dtlspp::error
    // with the failure instead.
    [[nodiscard]] static udp_server bind(const config& c, const peer_address& local, server_settings settings = {},
                                         const udp_settings& socket_settings = {})
    {
        failure f;
        auto result = bind(c, local, settings, socket_settings, f);
        if (!result) throw dtlspp::error(f);
        return std::move(*result);
    }

    // Waits up to max_wait (less when a timer is due, and only until the
    // socket is writable while datagrams wait to be sent), then handles the
    // datagrams waiting on the socket (at most receive_batch), every due
    // timer, and sends what they produced.
    template <class Handler = no_handler>
    void run_once(std::chrono::milliseconds max_wait, Handler&& handler = {})
    {
        // Under load (the last round found several datagrams) more are
        // likely queued: read before waiting, which saves the poll.
        std::size_t received = busy_ ? receive_waiting(handler) : 0;
        if (received == 0) {
            std::error_code ec;
            const auto ready =
                socket_.wait(detail::wait_time(core_.next_deadline(), max_wait), !backlog_peers_.empty(), ec);
            if (ready.readable) received = receive_waiting(handler);
        }
        busy_ = received > 1;
        core_.on_timeout(clock::now(), handler);
        flush();
    }

    // Encrypts one message for an open association (from a handler, too)
    // and queues its datagram: this call makes no system call. The datagram
    // leaves at the end of the current run_once round, or at the next
    // flush(), in one sendmmsg() batch with the others where the system has
    // it (sendto() elsewhere). Call flush() yourself when sending outside
    // run_once.
    //
    // Errors: not_open when `to` has no open association (none, still in
    // its handshake, or closing); message_too_large above the association's
    // max_message_size(); a stack failure (the association fails with it).
    void send(const peer_address& to, std::span<const std::byte> data, std::error_code& ec)
    {
        core_.send(to, data, clock::now(), ec);
    }

    // As above; throws dtlspp::error instead.
    void send(const peer_address& to, std::span<const std::byte> data)
    {
        std::error_code ec;
        send(to, data, ec);
        if (ec) throw dtlspp::error(failure{ec, "send to " + to.to_string()});
    }

    // Closes one association (from a handler, too): close_notify is queued
    // like send()'s datagrams; see server<Backend>::close. Errors: not_open
    // when `peer` has no association, or it is ending already.
    void close(const peer_address& peer, std::error_code& ec) { core_.close(peer, clock::now(), ec); }

    // As above; throws dtlspp::error instead.
    void close(const peer_address& peer)
    {
        std::error_code ec;
        close(peer, ec);
        if (ec) throw dtlspp::error(failure{ec, "close " + peer.to_string()});
    }

    // close_notify to every peer; waits up to `linger` for a full send
    // buffer to take them.
    template <class Handler = no_handler>
    void shutdown(Handler&& handler = {}, std::chrono::milliseconds linger = std::chrono::milliseconds(500))
    {
        core_.shutdown(clock::now(), handler);
        flush();
        const auto until = clock::now() + linger;
        while (!backlog_peers_.empty() && clock::now() < until) {
            std::error_code ec;
            socket_.wait(std::chrono::ceil<std::chrono::milliseconds>(until - clock::now()), true, ec);
            if (ec) break;
            retry_backlog();
        }
    }

    // getsockname(); throws std::system_error (the form with an error code
    // sets it instead).
    [[nodiscard]] peer_address local_address() const { return socket_.local_address(); }
    [[nodiscard]] peer_address local_address(std::error_code& ec) const { return socket_.local_address(ec); }
    const udp_socket& socket() const noexcept { return socket_; }
    // Every datagram at the socket, with its peer (for captures).
    void set_socket_hook(socket_hook wire) { wire_ = std::move(wire); }
    core_type& core() noexcept { return core_; }
    const core_type& core() const noexcept { return core_; }
    const udp_counters& socket_counters() const noexcept { return counters_; }
    // Datagrams waiting for room in the send buffer.
    std::size_t send_backlog() const noexcept { return backlog_peers_.size() - backlog_head_; }

    // Sends everything queued: what waited for the send buffer first, then
    // what the server produced since, in order (sendmmsg() batches on Linux,
    // sendto() elsewhere). Never fails: what a full send buffer refuses
    // waits in order for the next round (udp_counters::sends_deferred), and
    // what the system refuses for another reason is dropped and counted
    // (udp_counters::send_errors), as the network would lose it.
    void flush()
    {
        core_.drain_batch([&](std::span<const peer_address> peers, const datagram_queue& datagrams) {
            if (send_backlog() != 0) {
                for (std::size_t i = 0; i < peers.size(); ++i) defer(peers[i], datagrams[i]);
                return;
            }
            const auto sent = send_all(peers, [&](std::size_t i) { return datagrams[i]; }, 0);
            for (std::size_t i = sent; i < peers.size(); ++i) defer(peers[i], datagrams[i]);
        });
        retry_backlog();
    }

private:
    udp_server(core_type core, udp_socket socket, const udp_settings& settings)
        : core_(std::move(core)), socket_(std::move(socket)), settings_(settings), slots_(batch_size),
          buffers_(batch_size * slot_bytes)
    {
        for (std::size_t i = 0; i < batch_size; ++i)
            slots_[i].buffer = std::span<std::byte>(buffers_).subspan(i * slot_bytes, slot_bytes);
    }

    // One byte more than any valid DTLS datagram: a longer one arrives cut
    // to this, and the server drops and counts it as oversized.
    static constexpr std::size_t slot_bytes = max_datagram_in + 1;
    static constexpr std::size_t batch_size = 32;

    // Returns how many datagrams it took.
    template <class Handler>
    std::size_t receive_waiting(Handler& handler)
    {
        std::size_t taken = 0;
        while (taken < settings_.receive_batch) {
            std::error_code ec;
            const auto want = std::min(batch_size, settings_.receive_batch - taken);
            const auto n = socket_.receive_batch(std::span(slots_).first(want), ec);
            if (n == 0) break; // nothing more queued, or an error an unconnected socket can skip
            ++counters_.receive_calls;
            const auto now = clock::now();
            for (std::size_t i = 0; i < n; ++i) {
                auto& slot = slots_[i];
                const auto from = peer_address::from_native(slot.address, slot.length).value_or(peer_address{});
                if (slot.truncated) ++counters_.truncated_in;
                const std::span<const std::byte> datagram(slot.buffer.data(), std::min(slot.size, slot_bytes));
                if (wire_) wire_(direction::in, socket_, from, datagram);
                core_.receive(from, datagram, now, handler);
            }
            taken += n;
            if (n < want) break;
        }
        counters_.kernel_receive_drops = socket_.kernel_drops();
        return taken;
    }

    // Sends datagram(i) to peers[i] for i from `first`, in batches. Returns
    // the index of the first one the send buffer had no room for (or
    // peers.size()); other refusals are counted and skipped.
    template <class DatagramAt>
    std::size_t send_all(std::span<const peer_address> peers, DatagramAt&& datagram, std::size_t first)
    {
        std::size_t next = first;
        while (next < peers.size()) {
            const auto count = std::min(peers.size() - next, batch_size);
            for (std::size_t i = 0; i < count; ++i) {
                auto& slot = out_slots_[i];
                const auto& to = peers[next + i];
                slot.payload = datagram(next + i);
                slot.length = static_cast<detail::native_length>(to.native_address_length());
                std::memcpy(&slot.address, to.native_address(), slot.length);
            }
            std::error_code ec;
            const auto sent = socket_.send_batch(std::span<const detail::batch_slot>(out_slots_.data(), count), ec);
            if (sent > 0) ++counters_.send_calls;
            if (wire_)
                for (std::size_t i = 0; i < sent; ++i) wire_(direction::out, socket_, peers[next + i], datagram(next + i));
            next += sent;
            if (!ec) continue;
            if (ec == std::errc::operation_would_block) {
                ++counters_.send_buffer_full;
                return next;
            }
            // No route, a firewall, a peer address the family cannot reach:
            // this datagram cannot go, the next ones may.
            ++counters_.send_errors;
            ++next;
        }
        return next;
    }

    void defer(const peer_address& to, std::span<const std::byte> datagram)
    {
        if (send_backlog() >= settings_.max_send_backlog) {
            ++counters_.send_backlog_full;
            return;
        }
        ++counters_.sends_deferred;
        backlog_.push(datagram);
        backlog_peers_.push_back(to);
    }

    void retry_backlog()
    {
        if (send_backlog() == 0) return;
        backlog_head_ = send_all(backlog_peers_, [&](std::size_t i) { return backlog_[i]; }, backlog_head_);
        if (backlog_head_ == backlog_peers_.size()) {
            backlog_.clear();
            backlog_peers_.clear();
            backlog_head_ = 0;
        }
    }

    core_type core_;
    udp_socket socket_;
    udp_settings settings_;
    socket_hook wire_;
    udp_counters counters_;
    std::vector<detail::batch_slot> slots_;            // receive batch, over buffers_
    std::vector<std::byte> buffers_;                   // batch_size datagrams of slot_bytes
    std::array<detail::batch_slot, batch_size> out_slots_{}; // send batch: addresses and spans, no payload copies
    datagram_queue backlog_;                           // refused for a full send buffer, in order
    std::vector<peer_address> backlog_peers_;
    std::size_t backlog_head_ = 0;                     // backlog_[head..] still to send
    bool busy_ = false;                                // the last round took more than one datagram
};

} // namespace dtlspp
