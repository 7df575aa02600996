// SPDX-License-Identifier: MIT
// dtlspp::udp_server_group<Backend>: one DTLS server on every core.
//
// N workers, each a thread with its own udp_server: its own socket bound to
// the same address and port (SO_REUSEPORT), its own sans-I/O server and its
// own stack context. Nothing is shared between workers while they run, so
// nothing is locked. The kernel picks the socket for each datagram by a hash
// of its source and destination, so all of a peer's datagrams reach the
// worker that holds its association.
//
// What crosses workers:
// - Cookies. Every worker derives its cookies from one secret (the config's
//   cookie_secret, or one drawn here for the group), rotating per
//   cookie_lifetime with the previous period still verifying
//   (detail/cookie.hpp). A ClientHello whose cookie came from another
//   worker, or another process or host with the same secret, verifies.
// - Connection IDs (RFC 9146). A client that changes address (NAT
//   rebinding) hashes to another socket. Each worker's Connection IDs start
//   with its index (config::connection_id_prefix), and on Linux a socket
//   filter (SO_ATTACH_REUSEPORT_CBPF) sends every CID record, DTLS 1.2 or
//   1.3, to the socket whose index its first CID byte names; other
//   datagrams keep the hash.
//   The kernel does the hand-off: no datagram crosses threads.
//
// Handlers run on their worker's thread, one handler object per worker, and
// a handler sends and closes only through the udp_server it was made for.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/detail/cookie.hpp>
#include <dtlspp/udp_server.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <linux/filter.h>
#include <sys/socket.h>
#endif

namespace dtlspp {

struct group_settings {
    // Worker threads; 0: one per CPU (std::thread::hardware_concurrency).
    // More than one needs SO_REUSEPORT, which Linux has, and a stack whose
    // contexts may run on several threads (backend_traits::
    // contexts_on_threads); without either, 0 means 1 and more is refused
    // with errc::config_invalid.
    unsigned workers = 0;
    // Each worker's socket (share_port is set by the group).
    udp_settings socket{};
    // Route Connection ID records to the worker that issued the CID (Linux;
    // needs config::connection_id of at least 2 bytes and a stack with CIDs).
    bool route_connection_ids = true;
    // Let other processes bind the same port (SO_REUSEPORT) even with one
    // worker: several server processes, the kernel as their balancer. Give
    // them all the same config::cookie_secret, and each its place among the
    // port's sockets in first_worker_index.
    bool share_port = false;
    // The index of this group's first worker among every socket on the port,
    // in the order they joined it: 0 for the first process started, then
    // the sum of the workers of the processes started before. Worker i's
    // Connection IDs start with first_worker_index + i.
    unsigned first_worker_index = 0;
};

namespace detail {

inline bool can_share_ports() noexcept
{
#if defined(__linux__)
    return true;
#else
    return false;
#endif
}

} // namespace detail

// Steers the datagrams of every socket sharing `member`'s port
// (SO_REUSEPORT): a Connection ID record goes to the socket whose index, in
// the order the sockets joined the port, is the first byte of its CID, and
// anything else, and an index with no socket, keeps the kernel's hash. The
// CID is at offset 11 of a DTLS 1.2 CID record (content type 25, then
// version 2, epoch 2, sequence number 6; RFC 9146 §4) and at offset 1 of a
// DTLS 1.3 unified header whose C bit is set (first byte 0b0011xxxx, RFC
// 9147 §4). Classic BPF on the UDP payload (SO_ATTACH_REUSEPORT_CBPF), so
// it needs no privilege; attaching it again, from any process on the port,
// replaces it. Linux; elsewhere std::errc::operation_not_supported.
inline bool route_connection_ids(const udp_socket& member, std::error_code& ec) noexcept
{
    ec.clear();
#if defined(__linux__)
    const auto socket = member.native_handle();
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),                 // 0: A = payload length
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 12, 0, 4),         // 1: shorter than 12 bytes: 6
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),                 // 2: A = first byte
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 25, 3, 0),         // 3: tls12_cid: 7
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf0),             // 4: fixed bits 001 and the C bit
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x30, 3, 0),       // 5: unified header with a CID: 9
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),                // 6: out of range: the kernel's hash
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 11),                // 7: A = first CID byte (DTLS 1.2)
        BPF_STMT(BPF_RET | BPF_A, 0),                          // 8: that socket
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),                 // 9: A = first CID byte (DTLS 1.3)
        BPF_STMT(BPF_RET | BPF_A, 0),                          // 10: that socket
    };
    sock_fprog program{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (::setsockopt(socket, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof program) != 0) {
        ec = detail::last_socket_error();
        return false;
    }
    return true;
#else
    (void)member;
    ec = std::make_error_code(std::errc::operation_not_supported);
    return false;
#endif
}

template <backend Backend>
class udp_server_group {
public:
    using worker_type = udp_server<Backend>;

    // Binds settings.workers sockets to `local` (port 0: the first picks a
    // port, the others join it). server_settings::max_sessions is for the
    // whole group: each worker takes its share, rounded up. Each worker's
    // socket: socket(), setsockopt(SO_REUSEPORT and the buffers), bind();
    // with route_connection_ids, setsockopt(SO_ATTACH_REUSEPORT_CBPF).
    // Returns nullopt with the reason in `f`; never throws.
    //
    // Errors (f.code): config_invalid (the config; several workers where
    // ports cannot be shared or the stack has no locks; worker indexes past
    // 255) and the backend's load errors; a socket error with its system
    // code (address in use, permission denied, ...).
    [[nodiscard]] static std::optional<udp_server_group> bind(const config& c, const peer_address& local,
                                                              server_settings settings, group_settings group,
                                                              failure& f)
    {
        unsigned n = group.workers;
        if (n == 0)
            n = detail::can_share_ports() && Backend::traits.contexts_on_threads
                    ? std::max(1u, std::thread::hardware_concurrency())
                    : 1u;
        if (n > 1 && !detail::can_share_ports()) {
            f = make_failure(errc::config_invalid,
                             "workers: " + std::to_string(n) +
                                 " workers need SO_REUSEPORT port sharing, which this system lacks; use 1");
            return std::nullopt;
        }
        if (n > 1 && !Backend::traits.contexts_on_threads) {
            f = make_failure(errc::config_invalid,
                             "workers: " + std::string(Backend::name) + " " + Backend::version() +
                                 " shares state between contexts without locks (built without threading): use 1");
            return std::nullopt;
        }
        const bool sharing = n > 1 || group.share_port;
        if (sharing && !detail::can_share_ports()) {
            f = make_failure(errc::config_invalid, "share_port: needs SO_REUSEPORT port sharing, which this system lacks");
            return std::nullopt;
        }
        if (group.first_worker_index + n > 256) {
            f = make_failure(errc::config_invalid,
                             "workers: first_worker_index + workers at most 256 (a worker's index is one CID byte)");
            return std::nullopt;
        }
        config shared = c;
        if (n > 1 && shared.cookie_secret.empty()) {
            // One secret for every worker, drawn once.
            shared.cookie_secret.resize(32);
            const bool drawn = shared.random_source ? shared.random_source(shared.cookie_secret)
                                                    : draw_system_random(shared.cookie_secret);
            if (!drawn) {
                f = make_failure(errc::internal, "cannot draw the group's cookie secret");
                return std::nullopt;
            }
        }
        const bool route = sharing && group.route_connection_ids && Backend::traits.connection_id &&
                           shared.connection_id && *shared.connection_id >= 2;
        settings.max_sessions = (settings.max_sessions + n - 1) / n;
        group.socket.socket.share_port = sharing;

        udp_server_group result;
        peer_address address = local;
        for (unsigned i = 0; i < n; ++i) {
            config own = shared;
            if (route) own.connection_id_prefix = {static_cast<std::byte>(group.first_worker_index + i)};
            auto core = server<Backend>::create(own, settings, f);
            detail::wipe(own.cookie_secret);
            if (!core) return std::nullopt;
            auto w = worker_type::bind(std::move(*core), address, group.socket, f);
            if (!w) return std::nullopt;
            if (i == 0) address = w->local_address();
            result.workers_.push_back(std::make_unique<worker_type>(std::move(*w)));
        }
        detail::wipe(shared.cookie_secret);
        if (route) {
            std::error_code ec;
            route_connection_ids(result.workers_.front()->socket(), ec);
            if (ec) {
                f = {ec, "cannot route Connection IDs to their workers (SO_ATTACH_REUSEPORT_CBPF)"};
                return std::nullopt;
            }
            result.routes_connection_ids_ = true;
        }
        return result;
    }

    // As above; throws dtlspp::error with the failure instead.
    [[nodiscard]] static udp_server_group bind(const config& c, const peer_address& local,
                                               server_settings settings = {}, group_settings group = {})
    {
        failure f;
        auto result = bind(c, local, settings, std::move(group), f);
        if (!result) throw dtlspp::error(f);
        return std::move(*result);
    }

    udp_server_group(udp_server_group&&) noexcept = default;
    udp_server_group& operator=(udp_server_group&&) noexcept = default;

    // Runs every worker on its own thread until `stop` turns true, then shuts
    // each down (close_notify to its peers) and returns. make_handler(index,
    // worker) is called on the worker's thread and returns its handler. An
    // exception from a handler stops every worker and is rethrown here.
    template <class MakeHandler>
    void run(MakeHandler&& make_handler, const std::atomic<bool>& stop,
             std::chrono::milliseconds poll = std::chrono::milliseconds(100))
    {
        std::atomic<bool> failed{false};
        std::vector<std::exception_ptr> errors(workers_.size());
        std::vector<std::thread> threads;
        threads.reserve(workers_.size());
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            threads.emplace_back([&, i] {
                try {
                    auto& w = *workers_[i];
                    auto handler = make_handler(i, w);
                    while (!stop.load(std::memory_order_relaxed) && !failed.load(std::memory_order_relaxed))
                        w.run_once(poll, handler);
                    w.shutdown(handler);
                } catch (...) {
                    errors[i] = std::current_exception();
                    failed = true;
                }
            });
        }
        for (auto& t : threads) t.join();
        for (auto& e : errors)
            if (e) std::rethrow_exception(e);
    }

    std::size_t size() const noexcept { return workers_.size(); }
    // A worker, for its counters; not while run() is running.
    worker_type& worker(std::size_t index) { return *workers_.at(index); }
    const worker_type& worker(std::size_t index) const { return *workers_.at(index); }
    peer_address local_address() const { return workers_.front()->local_address(); }
    // Whether the kernel routes CID records to their worker.
    bool routes_connection_ids() const noexcept { return routes_connection_ids_; }

    // The workers' counters added up; not while run() is running.
    server_counters counters() const
    {
        server_counters total;
        for (const auto& w : workers_) total += w->core().counters();
        return total;
    }
    udp_counters socket_counters() const
    {
        udp_counters total;
        for (const auto& w : workers_) total += w->socket_counters();
        return total;
    }
    std::size_t session_count() const
    {
        std::size_t total = 0;
        for (const auto& w : workers_) total += w->core().session_count();
        return total;
    }

private:
    udp_server_group() = default;

    static bool draw_system_random(std::span<std::uint8_t> out) noexcept
    {
#if defined(_WIN32)
        (void)out;
        return false; // never reached: one worker needs no shared secret
#else
        return detail::system_random(out);
#endif
    }

    std::vector<std::unique_ptr<worker_type>> workers_;
    bool routes_connection_ids_ = false;
};

} // namespace dtlspp
