// How a dtlspp server scales: a load generator for udp_server_group<B>.
//
// One process, per backend. The server (udp_server_group, N worker threads)
// runs in a thread of its own, or in a child process where its memory is
// measured. The load generator is one thread: thousands of client
// associations, one connected UDP socket each (the server tells peers apart
// by address), multiplexed by one epoll loop, their timers scanned every few
// milliseconds.
//
// 1. Handshakes, closed loop with K in flight (each association that opens
//    is closed and replaced), and open loop at a given rate.
// 2. Sessions: RSS of a server process holding 1,000 and 10,000 sessions.
// 3. Echo: n clients, each with one message in flight, against the same
//    load on a plain UDP echo server (recvfrom/sendto per datagram, same
//    worker count, same socket options), alternating run by run.
// 4. Workers: handshakes and echoes with 1, 2 and N workers.
//
// Server CPU is the CPU time of the worker threads themselves, so "per
// server CPU-second" figures leave out the load generator, which shares
// this machine's cores with the server.
//
// Usage: load [openssl|mbedtls]... [--workers N] [--rate R] [--seconds S]
//             [--sessions N] [--only handshakes,open,sessions,echo,workers]
// BENCH_SCALE multiplies every duration, BENCH_REPEATS the echo repeats.
#include "common.hpp"
#include "crypto_floor.hpp"
#include "udp_support.hpp"

#include <dtlspp/backend/mbedtls.hpp>
#include <dtlspp/backend/openssl.hpp>
#include <dtlspp/endpoint.hpp>
#include <dtlspp/udp_server_group.hpp>

#include <mbedtls/version.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>

using namespace bench;
using namespace std::chrono_literals;

namespace {

struct options {
    std::vector<std::string> backends;
    unsigned workers = 1;
    double rate = 0;       // open loop; 0: 50 % and 90 % of the closed-loop rate
    double seconds = 3;    // one handshake measurement window
    int sessions = 10000;
    std::string only;      // empty: everything
    bool wants(const std::string& part) const
    {
        if (only.empty()) return true;
        return ("," + only + ",").find("," + part + ",") != std::string::npos;
    }
};
options opt;

// ---------------------------------------------------------------------------
// Measurements shared by every part.

struct samples {
    std::vector<double> v;
    void add(double seconds) { v.push_back(seconds); }
    void clear() { v.clear(); }
    // The p-th percentile in milliseconds.
    double ms(double p)
    {
        if (v.empty()) return 0;
        auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1));
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
        return v[k] * 1000;
    }
};

// The kernel's drop count for every socket bound to 127.0.0.1:port (all of
// an SO_REUSEPORT group), from /proc/net/udp: readable while the server runs.
std::uint64_t kernel_drops(std::uint16_t port)
{
    std::ifstream in("/proc/net/udp");
    std::string line;
    std::getline(in, line);
    char want[16];
    std::snprintf(want, sizeof want, "0100007F:%04X", port);
    std::uint64_t total = 0;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::vector<std::string> f;
        for (std::string x; fields >> x;) f.push_back(x);
        if (f.size() >= 13 && f[1] == want) total += std::stoull(f[12]);
    }
    return total;
}

double cpu_of(const std::vector<clockid_t>& clocks)
{
    double total = 0;
    for (auto c : clocks) total += seconds_of(c);
    return total;
}

// ---------------------------------------------------------------------------
// The servers.

dtlspp::server_settings roomy()
{
    dtlspp::server_settings s;
    s.max_sessions = 40000;
    s.idle_timeout = 3600s;
    return s;
}

// udp_server_group<B> echoing, run() in a thread of its own.
template <class B>
class group_server {
public:
    explicit group_server(unsigned workers, dtlspp::server_settings settings = roomy())
    {
        dtlspp::failure f;
        auto g = dtlspp::udp_server_group<B>::bind(server_config(), dtlspp::peer_address::parse("127.0.0.1:0"),
                                                   settings, dtlspp::group_settings{.workers = workers}, f);
        if (!g) throw std::runtime_error("udp_server_group: " + f.message);
        group_.emplace(std::move(*g));
        port_ = group_->local_address().port();
        clocks_.resize(group_->size());
        thread_ = std::thread([this] {
            group_->run(
                [this](std::size_t index, dtlspp::udp_server<B>& worker) {
                    pthread_getcpuclockid(pthread_self(), &clocks_[index]);
                    ++ready_;
                    return echo{&worker};
                },
                stop_, 20ms);
        });
        while (ready_.load() < clocks_.size()) std::this_thread::sleep_for(1ms);
    }
    ~group_server() { stop(); }
    void stop()
    {
        if (!thread_.joinable()) return;
        stop_ = true;
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    double cpu() const { return cpu_of(clocks_); } // while running
    std::size_t workers() const { return clocks_.size(); }
    dtlspp::udp_server_group<B>& group() { return *group_; } // after stop()

private:
    struct echo {
        dtlspp::udp_server<B>* worker;
        void on_data(const dtlspp::peer_address& from, std::span<const std::byte> data)
        {
            std::error_code ec;
            worker->send(from, data, ec);
        }
    };
    std::optional<dtlspp::udp_server_group<B>> group_;
    std::uint16_t port_ = 0;
    std::vector<clockid_t> clocks_;
    std::atomic<std::size_t> ready_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// The baseline: N threads, each with its own SO_REUSEPORT socket (the same
// socket options as dtlspp's workers), one blocking recvfrom and one sendto
// per datagram.
class plain_server {
public:
    explicit plain_server(unsigned workers)
    {
        dtlspp::udp_settings defaults;
        auto socket_options = defaults.socket;
        socket_options.share_port = true;
        auto address = dtlspp::peer_address::parse("127.0.0.1:0");
        for (unsigned i = 0; i < workers; ++i) {
            std::error_code ec;
            sockets_.push_back(dtlspp::udp_socket::bind(address, socket_options, ec));
            if (ec) throw std::runtime_error("plain server: " + ec.message());
            if (i == 0) address = sockets_[0].local_address();
            // dtlspp's sockets are non-blocking; this server blocks in
            // recvfrom (waking every 20 ms to see whether to stop).
            const int fd = sockets_.back().native_handle();
            ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            timeval tv{0, 20000};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        }
        port_ = address.port();
        clocks_.resize(workers);
        for (unsigned i = 0; i < workers; ++i) {
            threads_.emplace_back([this, i] {
                pthread_getcpuclockid(pthread_self(), &clocks_[i]);
                ++ready_;
                const int fd = sockets_[i].native_handle();
                std::array<char, 65536> buffer;
                while (!stop_.load(std::memory_order_relaxed)) {
                    sockaddr_storage from{};
                    socklen_t length = sizeof from;
                    const auto n = ::recvfrom(fd, buffer.data(), buffer.size(), 0,
                                              reinterpret_cast<sockaddr*>(&from), &length);
                    if (n < 0) continue;
                    ::sendto(fd, buffer.data(), static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&from),
                             length);
                }
            });
        }
        while (ready_.load() < workers) std::this_thread::sleep_for(1ms);
    }
    ~plain_server()
    {
        stop_ = true;
        for (auto& t : threads_) t.join();
    }
    std::uint16_t port() const { return port_; }
    double cpu() const { return cpu_of(clocks_); }

private:
    std::vector<dtlspp::udp_socket> sockets_;
    std::uint16_t port_ = 0;
    std::vector<clockid_t> clocks_;
    std::atomic<unsigned> ready_{0};
    std::atomic<bool> stop_{false};
    std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------
// The load generator: slots of client associations, one socket each, one
// epoll set. A slot with no endpoint is a plain UDP client.

// Every client runs over OpenSSL, whatever the server's stack: it is the
// cheapest client here, so the load generator takes less of the CPU the
// server needs, and the server does the same work for any client stack.
using client_backend = dtlspp::openssl_backend;

class pool {
public:
    struct slot {
        int fd = -1;
        std::optional<dtlspp::endpoint<client_backend>> ep;
        double started = 0; // handshake start, or when the message in flight was sent
        bool got = false;   // application data arrived in the last read
        // The endpoint's next deadline, as of its last flush: scanning this
        // is cheap, asking thousands of endpoints every few ms is not.
        std::optional<dtlspp::clock::time_point> due;
    };
    std::vector<slot> s;
    std::uint64_t retransmissions = 0; // flights re-sent by released associations

    pool(std::size_t n, std::uint16_t port) : s(n)
    {
        epoll_ = epoll_create1(EPOLL_CLOEXEC);
        to_.sin_family = AF_INET;
        to_.sin_port = htons(port);
        to_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        auto c = client_config();
        // The load generator does not check the server's chain: the server's
        // work is the same, and the CPU this saves goes to the server.
        c.verification = dtlspp::peer_verification::none;
        dtlspp::failure f;
        ctx_ = client_backend::make_context(c, f);
        if (!ctx_) throw std::runtime_error("client context: " + f.message);
    }
    ~pool()
    {
        for (std::size_t i = 0; i < s.size(); ++i)
            if (s[i].fd >= 0) ::close(s[i].fd);
        ::close(epoll_);
    }
    pool(const pool&) = delete;

    void open_socket(std::size_t i)
    {
        auto& c = s[i];
        c.fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&to_), sizeof to_) != 0)
            throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.u64 = i;
        epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &e);
    }
    // Swaps two slots (their sockets stay registered under their new index).
    void swap_slots(std::size_t i, std::size_t j)
    {
        std::swap(s[i], s[j]);
        for (auto k : {i, j}) {
            if (s[k].fd < 0) continue;
            epoll_event e{};
            e.events = EPOLLIN;
            e.data.u64 = k;
            epoll_ctl(epoll_, EPOLL_CTL_MOD, s[k].fd, &e);
        }
    }
    // A new association in slot i: socket, ClientHello.
    void start(std::size_t i, double now)
    {
        open_socket(i);
        dtlspp::failure f;
        s[i].ep = dtlspp::endpoint<client_backend>::connect(ctx_, dtlspp::clock::now(), f);
        if (!s[i].ep) throw std::runtime_error("connect: " + f.message);
        s[i].started = now;
        flush(i);
    }
    // Ends slot i: close_notify if open, socket closed.
    void release(std::size_t i)
    {
        auto& c = s[i];
        if (c.ep) {
            retransmissions += c.ep->counters().retransmissions;
            if (c.ep->is_open()) {
                c.ep->close(dtlspp::clock::now());
                flush(i);
            }
            c.ep.reset();
        }
        if (c.fd >= 0) ::close(c.fd);
        c.fd = -1;
    }
    void flush(std::size_t i)
    {
        auto& c = s[i];
        c.ep->drain([&](std::span<const std::byte> d) { (void)::send(c.fd, d.data(), d.size(), 0); });
        c.due = c.ep->next_deadline();
    }
    void send_plain(std::size_t i, std::span<const std::byte> d) { (void)::send(s[i].fd, d.data(), d.size(), 0); }

    // Waits up to `ms` and calls on_readable(i) for each ready socket.
    template <class F>
    void wait(int ms, F&& on_readable)
    {
        const int n = epoll_wait(epoll_, events_.data(), static_cast<int>(events_.size()), ms);
        for (int k = 0; k < n; ++k) on_readable(static_cast<std::size_t>(events_[k].data.u64));
    }
    // Feeds what slot i's socket holds to its endpoint; app data sets `got`.
    void read_dtls(std::size_t i)
    {
        auto& c = s[i];
        if (!c.ep) return;
        const auto now = dtlspp::clock::now();
        for (int k = 0; k < 32; ++k) {
            const auto n = ::recv(c.fd, buffer_.data(), buffer_.size(), 0);
            if (n < 0) break;
            c.ep->receive(std::span<const std::byte>(buffer_.data(), static_cast<std::size_t>(n)), now,
                          [&](std::span<const std::byte>) { c.got = true; });
        }
        flush(i);
    }
    // Reads slot i's plain datagrams; returns how many.
    int read_plain(std::size_t i)
    {
        int got = 0;
        for (int k = 0; k < 32; ++k) {
            if (::recv(s[i].fd, buffer_.data(), buffer_.size(), 0) < 0) break;
            ++got;
        }
        return got;
    }
    // Runs due endpoint timers in slots [0, n); calls after(i) for each.
    template <class F>
    void timers(std::size_t n, F&& after)
    {
        const auto now = dtlspp::clock::now();
        for (std::size_t i = 0; i < n; ++i) {
            auto& c = s[i];
            if (!c.ep) continue;
            if (c.due && now >= *c.due) {
                c.ep->on_timeout(now);
                flush(i);
                after(i);
            }
        }
    }

private:
    int epoll_ = -1;
    sockaddr_in to_{};
    std::shared_ptr<client_backend::context> ctx_;
    std::array<epoll_event, 1024> events_{};
    std::array<std::byte, 65536> buffer_{};
};

// Opens slots [first, last) and waits until each is open (at most `limit`
// seconds), `in_flight` handshakes at a time. Returns how many opened.
std::size_t establish(pool& p, std::size_t first, std::size_t last, std::size_t in_flight, double limit)
{
    const double give_up = wall() + limit;
    std::size_t next = first, opened = 0, pending = 0;
    std::vector<char> done(last, 0);
    auto settle = [&](std::size_t i) {
        if (i < first || i >= last || done[i] || !p.s[i].ep) return;
        const auto st = p.s[i].ep->state();
        if (st == dtlspp::endpoint_state::open) {
            done[i] = 1;
            ++opened;
            --pending;
        } else if (st == dtlspp::endpoint_state::failed) { // try again
            p.release(i);
            p.start(i, wall());
        }
    };
    double scan = 0;
    while (opened < last - first && wall() < give_up) {
        while (pending < in_flight && next < last) {
            p.start(next++, wall());
            ++pending;
        }
        p.wait(5, [&](std::size_t i) {
            p.read_dtls(i);
            settle(i);
        });
        if (wall() >= scan) {
            p.timers(last, settle);
            scan = wall() + 0.005;
        }
    }
    return opened;
}

// ---------------------------------------------------------------------------
// 1. Handshakes.

// "server % / generator %": CPU time over wall time. Far under 100 % on
// both sides means something else had the CPUs.
std::string busy(double server_cpu, double generator_cpu, double elapsed)
{
    if (elapsed <= 0) return "";
    return fmt(server_cpu / elapsed * 100, 0) + " / " + fmt(generator_cpu / elapsed * 100, 0);
}

struct handshake_figures {
    double per_second = 0, server_cpu = 0, generator_cpu = 0, elapsed = 0, warm_up = 0;
    std::uint64_t done = 0, failed = 0, retransmissions = 0, drops = 0, not_started = 0;
    double generator_ms() const { return done ? generator_cpu * 1e3 / static_cast<double>(done) : 0; }
    double server_ms() const { return done ? server_cpu * 1e3 / static_cast<double>(done) : 0; }
    double p10 = 0, p50 = 0, p90 = 0, p99 = 0; // handshake latency percentiles, ms
    double per_server_second() const { return server_cpu > 0 ? static_cast<double>(done) / server_cpu : 0; }
};

// Keeps `in_flight` handshakes going for `seconds` or more after a warm-up (until
// as many have finished as are in flight, at most 20 s scaled), so the
// window sees the steady state, not the first burst; each association that
// opens is closed and replaced by a new one on a new socket.
template <class B>
handshake_figures closed_loop(unsigned workers, std::size_t in_flight, double seconds)
{
    group_server<B> server(workers);
    pool p(in_flight, server.port());
    for (std::size_t i = 0; i < in_flight; ++i) p.start(i, wall());
    handshake_figures r;
    samples latency;
    bool warm = false;
    const double start = wall(), warm_until = start + budget(20);
    double t0 = wall(), cpu0 = 0, generator0 = 0, scan = 0;
    std::uint64_t drops0 = 0;
    auto check = [&](std::size_t i) {
        auto& c = p.s[i];
        if (!c.ep) return;
        const auto st = c.ep->state();
        if (st == dtlspp::endpoint_state::open) {
            ++r.done;
            latency.add(wall() - c.started);
        } else if (st == dtlspp::endpoint_state::failed) {
            ++r.failed;
        } else {
            return;
        }
        p.release(i);
        p.start(i, wall());
    };
    // The window lasts `seconds`, and until twice as many handshakes as are
    // in flight have finished (at most 30 s scaled): with many in flight the
    // handshakes finish in waves, and a short window could fall between two.
    const double longest = budget(30);
    auto window_over = [&] {
        const double t = wall() - t0;
        return t >= seconds && (r.done >= 2 * in_flight || t >= longest);
    };
    while (!warm || !window_over()) {
        if (!warm && (r.done >= in_flight || wall() > warm_until)) {
            warm = true;
            r = {};
            r.warm_up = wall() - start;
            latency.clear();
            p.retransmissions = 0;
            t0 = wall();
            cpu0 = server.cpu();
            generator0 = thread_cpu();
            drops0 = kernel_drops(server.port());
        }
        p.wait(2, [&](std::size_t i) {
            p.read_dtls(i);
            check(i);
        });
        if (wall() >= scan) {
            p.timers(in_flight, check);
            scan = wall() + 0.005;
        }
    }
    r.elapsed = wall() - t0;
    r.server_cpu = server.cpu() - cpu0;
    r.generator_cpu = thread_cpu() - generator0;
    r.drops = kernel_drops(server.port()) - drops0;
    r.retransmissions = p.retransmissions;
    r.per_second = static_cast<double>(r.done) / r.elapsed;
    r.p10 = latency.ms(10);
    r.p50 = latency.ms(50);
    r.p90 = latency.ms(90);
    r.p99 = latency.ms(99);
    for (std::size_t i = 0; i < in_flight; ++i) p.release(i);
    return r;
}

// Starts handshakes at `rate` per second for `seconds`, whether or not the
// earlier ones finished (at most `cap` in flight: a start with no free slot
// is counted as not started). Latency runs from the scheduled start, so a
// server that falls behind shows it.
template <class B>
handshake_figures open_loop(unsigned workers, double rate, double seconds, std::size_t cap)
{
    group_server<B> server(workers);
    pool p(cap, server.port());
    std::vector<std::size_t> free_slots;
    for (std::size_t i = cap; i-- > 0;) free_slots.push_back(i);
    std::vector<double> scheduled(cap, 0);
    handshake_figures r;
    samples latency;
    const double t0 = wall(), cpu0 = server.cpu(), generator0 = thread_cpu();
    const std::uint64_t drops0 = kernel_drops(server.port());
    std::uint64_t started = 0;
    auto check = [&](std::size_t i) {
        auto& c = p.s[i];
        if (!c.ep) return;
        const auto st = c.ep->state();
        if (st == dtlspp::endpoint_state::open) {
            ++r.done;
            latency.add(wall() - scheduled[i]);
        } else if (st == dtlspp::endpoint_state::failed) {
            ++r.failed;
        } else {
            return;
        }
        p.release(i);
        free_slots.push_back(i);
    };
    double scan = 0;
    // Starts stop after `seconds`; what is in flight then may finish within 5 s.
    const double drain_until = t0 + seconds + 5;
    while (true) {
        const double now = wall();
        if (now - t0 < seconds) {
            while (static_cast<double>(started) < (now - t0) * rate) {
                const double at = t0 + static_cast<double>(started) / rate;
                ++started;
                if (free_slots.empty()) {
                    ++r.not_started;
                    continue;
                }
                const auto i = free_slots.back();
                free_slots.pop_back();
                p.start(i, now);
                scheduled[i] = at;
            }
        } else if (free_slots.size() == cap || now > drain_until) {
            break;
        }
        p.wait(1, [&](std::size_t i) {
            p.read_dtls(i);
            check(i);
        });
        if (wall() >= scan) {
            p.timers(cap, check);
            scan = wall() + 0.005;
        }
    }
    r.elapsed = wall() - t0;
    r.server_cpu = server.cpu() - cpu0;
    r.generator_cpu = thread_cpu() - generator0;
    r.drops = kernel_drops(server.port()) - drops0;
    r.retransmissions = p.retransmissions;
    r.per_second = static_cast<double>(r.done) / r.elapsed;
    r.p50 = latency.ms(50);
    r.p99 = latency.ms(99);
    for (std::size_t i = 0; i < cap; ++i) p.release(i);
    return r;
}

// ---------------------------------------------------------------------------
// 3. Echo: established clients, one message in flight each.

struct echo_figures {
    double per_second = 0, server_cpu = 0, generator_cpu = 0, elapsed = 0, p50 = 0, p99 = 0;
    std::uint64_t messages = 0, lost = 0, drops = 0;
    double generator_us() const { return messages ? generator_cpu * 1e6 / static_cast<double>(messages) : 0; }
    double per_server_second() const { return server_cpu > 0 ? static_cast<double>(messages) / server_cpu : 0; }
};

template <class B>
class echo_bed {
public:
    echo_bed(unsigned workers, std::size_t clients)
        : dtls_server_(workers), plain_server_(workers), dtls_(clients, dtls_server_.port()),
          plain_(clients, plain_server_.port())
    {
        const double t0 = wall();
        establish(dtls_, 0, clients, 100, budget(120));
        setup_seconds_ = wall() - t0;
        // The open ones first: run(n) uses slots [0, n).
        for (std::size_t i = 0; i < clients; ++i) {
            if (!dtls_.s[i].ep || !dtls_.s[i].ep->is_open()) continue;
            if (i != opened_) dtls_.swap_slots(i, opened_);
            ++opened_;
        }
        if (opened_ < clients)
            std::fprintf(stderr, "note: %zu of %zu echo clients opened in %.1f s\n", opened_, clients, setup_seconds_);
        for (std::size_t i = 0; i < clients; ++i) plain_.open_socket(i);
    }
    std::size_t opened() const { return opened_; }
    double setup_seconds() const { return setup_seconds_; }

    // n clients, `size`-byte messages, for `seconds`; DTLS or plain UDP.
    echo_figures run(std::size_t n, std::size_t size, double seconds, bool plain)
    {
        n = std::min(n, opened_);
        auto& p = plain ? plain_ : dtls_;
        const bytes message(size, std::byte{0x5a});
        auto send = [&](std::size_t i) {
            p.s[i].started = wall();
            if (plain) {
                p.send_plain(i, message);
            } else {
                p.s[i].ep->send(message, dtlspp::clock::now());
                p.flush(i);
            }
        };
        echo_figures r;
        samples latency;
        const std::uint16_t port = plain ? plain_server_.port() : dtls_server_.port();
        // A tenth of the time warms up (not counted).
        const double begin = wall(), t0 = begin + seconds / 10, end = t0 + seconds;
        bool counting = false;
        double cpu0 = 0, generator0 = 0, scan = 0;
        std::uint64_t drops0 = 0;
        for (std::size_t i = 0; i < n; ++i) send(i);
        auto answered = [&](std::size_t i) {
            if (counting) {
                ++r.messages;
                latency.add(wall() - p.s[i].started);
            }
            send(i);
        };
        while (true) {
            const double now = wall();
            if (!counting && now >= t0) {
                counting = true;
                cpu0 = server_cpu(plain);
                generator0 = thread_cpu();
                drops0 = kernel_drops(port);
            }
            if (now >= end) break;
            p.wait(5, [&](std::size_t i) {
                if (i >= n) { // a late echo from a larger run
                    plain ? (void)p.read_plain(i) : (p.read_dtls(i), p.s[i].got = false, void());
                    return;
                }
                if (plain) {
                    if (p.read_plain(i) > 0) answered(i);
                } else {
                    p.read_dtls(i);
                    if (p.s[i].got) {
                        p.s[i].got = false;
                        answered(i);
                    }
                }
            });
            if (now >= scan) {
                scan = now + 0.01;
                // A message with no answer after 250 ms is lost: send the next.
                for (std::size_t i = 0; i < n; ++i)
                    if (now - p.s[i].started > 0.25) {
                        r.lost += counting;
                        send(i);
                    }
                if (!plain) p.timers(n, [](std::size_t) {});
            }
        }
        const double elapsed = wall() - t0;
        r.server_cpu = server_cpu(plain) - cpu0;
        r.generator_cpu = thread_cpu() - generator0;
        r.drops = kernel_drops(port) - drops0;
        r.per_second = static_cast<double>(r.messages) / elapsed;
        r.elapsed = elapsed;
        r.p50 = latency.ms(50);
        r.p99 = latency.ms(99);
        // Let the last answers arrive so they do not count in the next run.
        const double quiet = wall() + 0.05;
        while (wall() < quiet)
            p.wait(5, [&](std::size_t i) { plain ? (void)p.read_plain(i) : (p.read_dtls(i), p.s[i].got = false, void()); });
        return r;
    }

private:
    double server_cpu(bool plain) const { return plain ? plain_server_.cpu() : dtls_server_.cpu(); }
    group_server<B> dtls_server_;
    plain_server plain_server_;
    pool dtls_, plain_;
    std::size_t opened_ = 0;
    double setup_seconds_ = 0;
};

// DTLS and plain UDP alternately, `reps` times each; medians per side.
template <class B>
std::pair<echo_figures, echo_figures> echo_pair(echo_bed<B>& bed, std::size_t n, std::size_t size, double seconds,
                                                int reps)
{
    std::vector<echo_figures> d, u;
    for (int k = 0; k < reps; ++k) {
        d.push_back(bed.run(n, size, seconds, false));
        u.push_back(bed.run(n, size, seconds, true));
    }
    auto pick = [](std::vector<echo_figures>& v) {
        // The run with the median rate, so its latencies and drops go with it.
        std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.per_second < b.per_second; });
        return v[v.size() / 2];
    };
    return {pick(d), pick(u)};
}

// ---------------------------------------------------------------------------
// 2. Sessions: a server process of its own, so its RSS is its own.


// The child: prints its port, serves until stdin closes (at most 30 min).
template <class B>
int rss_server()
{
    std::atomic<bool> stop{false};
    std::optional<group_server<B>> server;
    try {
        server.emplace(1u);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    std::printf("%u\n", server->port());
    std::fflush(stdout);
    const double give_up = wall() + 1800;
    while (wall() < give_up) {
        pollfd in{0, POLLIN, 0};
        if (::poll(&in, 1, 200) > 0) break; // the parent closed the pipe
    }
    server->stop();
    return 0;
}

struct rss_figures {
    long base_kb = 0;
    std::vector<std::pair<std::size_t, long>> at; // sessions, RSS KiB
    std::vector<double> seconds;                   // to reach each
};

template <class B>
rss_figures rss_growth(const std::string& backend, std::vector<std::size_t> marks)
{
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) throw std::runtime_error("pipe");
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[1]);
        close(from_child[0]);
        execl("/proc/self/exe", "load", backend.c_str(), "--rss-server", static_cast<char*>(nullptr));
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    char line[32] = {};
    const auto n = read(from_child[0], line, sizeof line - 1);
    const int port = n > 0 ? std::atoi(line) : 0;
    rss_figures r;
    if (port > 0) {
        pool p(marks.back() + 1, static_cast<std::uint16_t>(port));
        // One session first, so lazy initialisation is in the baseline.
        establish(p, 0, 1, 1, 10);
        std::this_thread::sleep_for(100ms);
        r.base_kb = status_kb(pid, "VmRSS:");
        std::size_t have = 0;
        const double t0 = wall();
        for (auto m : marks) {
            have += establish(p, have + 1, m + 1, 100, budget(300));
            std::this_thread::sleep_for(200ms);
            r.at.emplace_back(have, status_kb(pid, "VmRSS:"));
            r.seconds.push_back(wall() - t0);
        }
        for (std::size_t i = 0; i < p.s.size(); ++i) p.release(i);
    }
    close(to_child[1]); // tells the child to exit
    close(from_child[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return r;
}

// ---------------------------------------------------------------------------
// The report.

struct target_row {
    std::string figure, value, target, met;
};
std::vector<target_row> targets;

std::string load_average()
{
    std::ifstream in("/proc/loadavg");
    std::string one;
    in >> one;
    return one;
}

void against(const std::string& figure, const std::string& value, const std::string& target, bool met)
{
    targets.push_back({figure, value, target, met ? "yes" : "no"});
}

template <class B>
floor_ms public_key_floor()
{
    if constexpr (std::is_same_v<B, dtlspp::openssl_backend>)
        return floor_openssl::measure("server-ecdsa", false, budget(0.3));
    else
        return floor_mbedtls::measure("server-ecdsa", budget(0.3));
}

template <class B>
void run(const std::string& backend)
{
    targets.clear();
    const unsigned cpus = static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN));
    heading(backend + " (" + B::version() + "): how the server scales");
    note("udp_server_group<" + backend + "> with " + std::to_string(opt.workers) +
         " worker(s) unless a row says otherwise; one load-generator thread drives every client "
         "(one UDP socket per association, one epoll loop) on the same machine. This machine has " +
         std::to_string(cpus) + " CPUs and the load generator takes one of them, so wall-clock rates are "
         "bounded by it; the per server CPU-second columns count only the worker threads' CPU and are what "
         "predicts a server on more cores. ECDSA P-256, X25519, AES-128-GCM, cookie exchange on. The clients "
         "are dtlspp endpoints over OpenSSL whatever the server's stack (the cheapest client here) and do not "
         "verify the server's chain: the server's work is the same, and the CPU saved goes to the server. Load average (1 min) at the "
         "start: " + load_average() + ".");

    const auto fl = public_key_floor<B>();
    const double floor_rate = 1000 / fl.server();
    result("load." + backend + ".floor_server_ms", fl.server());
    note("\nPublic-key floor, server side (ECDHE keygen + derive, one signature): " + fmt(fl.server(), 3) +
         " ms, i.e. at most " + sig(floor_rate) + " handshakes per server CPU-second.");

    double k100_rate = 0;
    if (opt.wants("handshakes")) {
        heading(backend + ": handshakes, closed loop");
        note("K handshakes in flight for " + fmt(budget(opt.seconds), 1) +
             " s, and until 2K have finished (at most " + fmt(budget(30), 0) + " s), after a warm-up; each association that opens is closed (close_notify) and replaced on a new "
             "socket; the warm-up lasts until as many have finished as are in flight (at most " +
             fmt(budget(20), 0) + " s). Latency: ClientHello to open, at the client. Retransmissions: flights the clients "
             "re-sent. Drops: the server sockets' kernel receive drops in the window.\n");
        table t({"in flight", "handshakes/s", "per server CPU-s", "% of floor", "p50 ms", "p99 ms", "failed",
                 "client retransmissions", "server kernel drops", "server / generator CPU ms each",
                 "CPU busy % server / generator", "warm-up s"});
        std::vector<double> per_core;
        for (const std::size_t k : {1, 10, 100, 1000}) {
            const auto r = closed_loop<B>(opt.workers, k, budget(opt.seconds));
            const double pct = r.per_server_second() / floor_rate * 100;
            per_core.push_back(r.per_server_second());
            if (k == 100) k100_rate = r.per_second;
            const std::string key = "load." + backend + ".hs" + std::to_string(k);
            result(key + ".rate", r.per_second);
            result(key + ".per_cpu", r.per_server_second());
            result(key + ".floor_pct", pct);
            result(key + ".p10_ms", r.p10);
            result(key + ".p50_ms", r.p50);
            result(key + ".p90_ms", r.p90);
            result(key + ".p99_ms", r.p99);
            result(key + ".retransmissions", static_cast<double>(r.retransmissions));
            result(key + ".drops", static_cast<double>(r.drops));
            t.row({std::to_string(k), sig(r.per_second), sig(r.per_server_second()), fmt(pct, 0) + " %",
                   fmt(r.p50, 2), fmt(r.p99, 2), std::to_string(r.failed), std::to_string(r.retransmissions),
                   std::to_string(r.drops), fmt(r.server_ms(), 3) + " / " + fmt(r.generator_ms(), 3),
                   busy(r.server_cpu, r.generator_cpu, r.elapsed), fmt(r.warm_up, 1)});
            against("handshakes per server CPU-s, " + std::to_string(k) + " in flight, % of floor",
                    fmt(pct, 0) + " %", ">= 70 %", pct >= 70);
        }
        const auto [lo, hi] = std::minmax_element(per_core.begin(), per_core.end());
        const double flat = *hi > 0 ? *lo / *hi : 0;
        result("load." + backend + ".hs_flatness", flat);
        against("handshakes per server CPU-s, lowest / highest over 1-1000 in flight", fmt(flat, 2),
                "flat (>= 0.90)", flat >= 0.9);
    }

    if (opt.wants("open")) {
        heading(backend + ": handshakes, open loop");
        note("New handshakes started at a fixed rate whatever the earlier ones do (at most 4,000 in flight); "
             "latency from each one's scheduled start.\n");
        table t({"offered /s", "achieved /s", "per server CPU-s", "p50 ms", "p99 ms", "failed", "not started",
                 "client retransmissions", "server kernel drops", "server / generator CPU ms each"});
        std::vector<double> rates;
        if (opt.rate > 0) rates.push_back(opt.rate);
        else if (k100_rate > 0) rates = {k100_rate * 0.5, k100_rate * 0.9};
        else rates = {100};
        for (const double rate : rates) {
            const auto r = open_loop<B>(opt.workers, rate, budget(opt.seconds), 4000);
            const std::string key = "load." + backend + ".open" + fmt(rate, 0);
            result(key + ".rate", r.per_second);
            result(key + ".p99_ms", r.p99);
            t.row({sig(rate), sig(r.per_second), sig(r.per_server_second()), fmt(r.p50, 2), fmt(r.p99, 2),
                   std::to_string(r.failed), std::to_string(r.not_started), std::to_string(r.retransmissions),
                   std::to_string(r.drops), fmt(r.server_ms(), 3) + " / " + fmt(r.generator_ms(), 3)});
        }
        note("\nAchieved counts the handshakes that completed over the whole run, the drain after the last "
             "start included, so it reads a little under the offered rate even when the server keeps up.");
    }

    if (opt.wants("sessions")) {
        heading(backend + ": memory per established session");
        std::vector<std::size_t> marks{std::min<std::size_t>(1000, static_cast<std::size_t>(opt.sessions))};
        if (opt.sessions > 1000) marks.push_back(static_cast<std::size_t>(opt.sessions));
        const auto r = rss_growth<B>(backend, marks);
        note("A server process of its own (one worker) holding the sessions open; RSS from /proc/PID/status "
             "before (one session open) and after. Opened 100 at a time.\n");
        table t({"sessions", "RSS before", "RSS after", "RSS per session", "time to open them all"});
        const double limit = std::is_same_v<B, dtlspp::openssl_backend> ? 16 : 8;
        for (std::size_t k = 0; k < r.at.size(); ++k) {
            const auto [n, kb] = r.at[k];
            const double per = n ? static_cast<double>(kb - r.base_kb) * 1024.0 / static_cast<double>(n) : 0;
            result("load." + backend + ".rss_per_session_" + std::to_string(marks[k]), per);
            t.row({std::to_string(n) + (n < marks[k] ? " (of " + std::to_string(marks[k]) + ")" : ""),
                   fmt(static_cast<double>(r.base_kb) / 1024, 1) + " MiB",
                   fmt(static_cast<double>(kb) / 1024, 1) + " MiB", fmt(per / 1000, 1) + " KB",
                   fmt(r.seconds[k], 1) + " s"});
            against("RSS per session, " + std::to_string(n) + " sessions", fmt(per / 1000, 1) + " KB",
                    std::is_same_v<B, dtlspp::openssl_backend> ? "<= 16 KB" : "<= 8 KB (mbedTLS 3.6 wrap build)",
                    per / 1000 <= limit);
        }
        if (std::is_same_v<B, dtlspp::mbedtls_backend> && MBEDTLS_VERSION_NUMBER < 0x03000000)
            note("\nThis build uses " + std::string(B::version()) +
                 ", whose 16 KiB input and output buffers per session are fixed; the 8 KB target is for the "
                 "mbedTLS 3.6 wrap build.");
    }

    if (opt.wants("echo")) {
        heading(backend + ": echo, DTLS vs plain UDP");
        const std::vector<std::size_t> counts{1, 10, 100, 500, 1000};
        echo_bed<B> bed(opt.workers, counts.back());
        const int reps = repeats(3);
        note("Each client keeps one message in flight (closed loop); " + std::to_string(bed.opened()) +
             " DTLS clients opened in " + fmt(bed.setup_seconds(), 1) +
             " s. The plain UDP server has the same worker count and socket options and does one "
             "recvfrom and one sendto per datagram; the same load generator drives it without DTLS. DTLS and "
             "plain runs alternate, " + std::to_string(reps) + " each of " + fmt(budget(1.0), 1) +
             " s; the median run is shown. A message unanswered after 250 ms counts as lost.\n");
        table t({"clients", "bytes", "DTLS msgs/s", "plain msgs/s", "DTLS / plain", "DTLS per server CPU-s",
                 "plain per server CPU-s", "DTLS / plain per CPU-s", "DTLS p50/p99 ms", "plain p50/p99 ms",
                 "lost DTLS/plain", "generator CPU us/msg DTLS/plain", "server kernel drops DTLS/plain",
                 "DTLS CPU busy % server / generator"});
        auto row = [&](std::size_t n, std::size_t size) {
            const auto [d, u] = echo_pair(bed, n, size, budget(1.0), reps);
            const double wall_ratio = u.per_second > 0 ? d.per_second / u.per_second : 0;
            const double cpu_ratio = u.per_server_second() > 0 ? d.per_server_second() / u.per_server_second() : 0;
            const std::string key = "load." + backend + ".echo" + std::to_string(n) + "_" + std::to_string(size);
            result(key + ".rate", d.per_second);
            result(key + ".plain_rate", u.per_second);
            result(key + ".ratio", wall_ratio);
            result(key + ".cpu_ratio", cpu_ratio);
            result(key + ".p99_ms", d.p99);
            result(key + ".drops", static_cast<double>(d.drops));
            t.row({std::to_string(n), std::to_string(size), sig(d.per_second), sig(u.per_second),
                   fmt(wall_ratio, 2) + "x", sig(d.per_server_second()), sig(u.per_server_second()),
                   fmt(cpu_ratio, 2) + "x", fmt(d.p50, 3) + " / " + fmt(d.p99, 3),
                   fmt(u.p50, 3) + " / " + fmt(u.p99, 3), std::to_string(d.lost) + " / " + std::to_string(u.lost),
                   fmt(d.generator_us(), 1) + " / " + fmt(u.generator_us(), 1),
                   std::to_string(d.drops) + " / " + std::to_string(u.drops),
                   busy(d.server_cpu, d.generator_cpu, d.elapsed)});
            if (size == 64) {
                against("echo " + std::to_string(n) + " clients 64 B, DTLS / plain msgs/s", fmt(wall_ratio, 2) + "x",
                        ">= 1.0x (>= 0.97x for 64 B)", wall_ratio >= 0.97);
                against("echo " + std::to_string(n) + " clients 64 B, DTLS / plain per server CPU-s",
                        fmt(cpu_ratio, 2) + "x", ">= 0.97x", cpu_ratio >= 0.97);
            }
            if (n == 500)
                against("echo 500 active clients, server kernel drops", std::to_string(d.drops), "0", d.drops == 0);
        };
        for (auto n : counts) row(n, 64);
        for (std::size_t n : {1, 100}) row(n, 1024);
    }

    if (opt.wants("workers")) {
        heading(backend + ": workers");
        std::vector<unsigned> ws{1, 2};
        if (opt.workers > 2) ws.push_back(opt.workers);
        note("Handshakes with 100 in flight, and 64-byte echoes with 100 clients, per worker count. With " +
             std::to_string(cpus) + " CPUs and one taken by the load generator, a second worker cannot double "
             "the wall-clock rate here; per server CPU-second shows whether the workers share anything that "
             "costs (it should stay flat as workers are added).\n");
        table t({"workers", "handshakes/s", "handshakes per server CPU-s", "echo msgs/s", "echo per server CPU-s",
                 "server kernel drops (echo)", "CPU busy % server / generator, handshakes / echo"});
        std::vector<double> hs, hs_cpu, echo, echo_cpu;
        for (const unsigned w : ws) {
            const auto h = closed_loop<B>(w, 100, budget(opt.seconds * 2 / 3));
            echo_bed<B> bed(w, 100);
            const auto e = bed.run(100, 64, budget(1.5), false);
            hs.push_back(h.per_second);
            hs_cpu.push_back(h.per_server_second());
            echo.push_back(e.per_second);
            echo_cpu.push_back(e.per_server_second());
            const std::string key = "load." + backend + ".workers" + std::to_string(w);
            result(key + ".hs", h.per_second);
            result(key + ".echo", e.per_second);
            t.row({std::to_string(w), sig(h.per_second), sig(h.per_server_second()), sig(e.per_second),
                   sig(e.per_server_second()), std::to_string(e.drops),
                   busy(h.server_cpu, h.generator_cpu, h.elapsed) + " ; " + busy(e.server_cpu, e.generator_cpu, e.elapsed)});
        }
        const double hs_ratio = hs[0] > 0 ? hs[1] / hs[0] : 0, echo_ratio = echo[0] > 0 ? echo[1] / echo[0] : 0;
        result("load." + backend + ".workers_hs_ratio", hs_ratio);
        result("load." + backend + ".workers_echo_ratio", echo_ratio);
        t.row({"1 -> 2", fmt(hs_ratio, 2) + "x", fmt(hs_cpu[0] > 0 ? hs_cpu[1] / hs_cpu[0] : 0, 2) + "x",
               fmt(echo_ratio, 2) + "x", fmt(echo_cpu[0] > 0 ? echo_cpu[1] / echo_cpu[0] : 0, 2) + "x", "", ""});
        against("handshakes/s, 1 -> 2 workers (wall; load generator on the same 2 CPUs)", fmt(hs_ratio, 2) + "x",
                ">= 1.8x", hs_ratio >= 1.8);
        against("echo msgs/s, 1 -> 2 workers (wall; load generator on the same 2 CPUs)", fmt(echo_ratio, 2) + "x",
                ">= 1.8x", echo_ratio >= 1.8);
    }

    heading(backend + ": figures against their targets");
    note("Targets are printed, never enforced. Load average (1 min) now: " + load_average() +
         "; anything else running on these CPUs lowers the wall-clock rates, not the per server CPU-second ones.\n");
    table t({"figure", "measured", "target", "met"});
    for (const auto& r : targets) t.row({r.figure, r.value, r.target, r.met});
}

void raise_file_limit()
{
    rlimit l{};
    if (getrlimit(RLIMIT_NOFILE, &l) == 0 && l.rlim_cur < l.rlim_max) {
        l.rlim_cur = l.rlim_max;
        setrlimit(RLIMIT_NOFILE, &l);
    }
}

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[1] == "--rss-server") {
        raise_file_limit();
        if (args[0] == "openssl") return rss_server<dtlspp::openssl_backend>();
        return rss_server<dtlspp::mbedtls_backend>();
    }
    for (std::size_t i = 0; i < args.size(); ++i) {
        const auto& a = args[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return args[++i];
        };
        if (a == "openssl" || a == "mbedtls") opt.backends.push_back(a);
        else if (a == "--workers") opt.workers = static_cast<unsigned>(std::max(1, std::stoi(value())));
        else if (a == "--rate") opt.rate = std::stod(value());
        else if (a == "--seconds") opt.seconds = std::stod(value());
        else if (a == "--sessions") opt.sessions = std::max(1, std::stoi(value()));
        else if (a == "--only") opt.only = value();
        else {
            std::fprintf(stderr,
                         "usage: load [openssl|mbedtls]... [--workers N] [--rate R] [--seconds S] [--sessions N]\n"
                         "            [--only handshakes,open,sessions,echo,workers]\n");
            return 2;
        }
    }
    if (opt.backends.empty()) opt.backends = {"openssl", "mbedtls"};
    std::signal(SIGPIPE, SIG_IGN);
    raise_file_limit();
    rlimit l{};
    getrlimit(RLIMIT_NOFILE, &l);
    const auto needed = static_cast<rlim_t>(opt.sessions) + 200;
    if (l.rlim_cur < needed) {
        std::fprintf(stderr, "note: %llu file descriptors allowed, %llu needed for %d sessions: fewer sessions\n",
                     static_cast<unsigned long long>(l.rlim_cur), static_cast<unsigned long long>(needed),
                     opt.sessions);
        opt.sessions = static_cast<int>(l.rlim_cur) - 200;
    }
    std::printf("## How a dtlspp server scales\n\nMachine: %s\n", machine().c_str());
    for (const auto& b : opt.backends) {
        if (b == "openssl") run<dtlspp::openssl_backend>(b);
        else run<dtlspp::mbedtls_backend>(b);
    }
    return 0;
}
