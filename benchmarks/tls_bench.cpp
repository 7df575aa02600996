// Is DTLS lighter than TLS? Same library, same ECDSA P-256 key, same
// AES-128-GCM suite (TLS 1.3: TLS_AES_128_GCM_SHA256), same X25519 group:
// DTLS 1.2 over UDP (dtlspp: udp_server<B> and endpoint<B>) against TLS 1.2
// over TCP (and TLS 1.3 for OpenSSL), written straight against the
// library's API with blocking sockets. Server in one thread, client in
// another, loopback.
//
//   tls_bench [openssl|mbedtls]          the tables
//   tls_bench --wire BACKEND PROTO PORT  one handshake + one echoed byte on
//                                        PORT, for scripts/bench's capture
//                                        (PROTO: dtls12, tls12, tls13)
#include "udp_support.hpp"

#include <dtlspp/backend/mbedtls.hpp>
#include <dtlspp/backend/openssl.hpp>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <csignal>
#include <linux/tcp.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace bench;

namespace {

// ---------------------------------------------------------------------------
// TCP plumbing

int tcp_listen(int port)
{
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 256) != 0)
        throw std::runtime_error("tcp listen failed");
    return fd;
}
int tcp_port(int fd)
{
    sockaddr_in a{};
    socklen_t n = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
    return ntohs(a.sin_port);
}
int tcp_connect(int port)
{
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("tcp connect failed");
    // Records go out as written, as DTLS datagrams do: no Nagle delay.
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}
// Accepts with a bounded wait so that the server thread can be stopped.
int tcp_accept(int listener, std::atomic<bool>& stop)
{
    while (!stop.load()) {
        pollfd p{listener, POLLIN, 0};
        if (::poll(&p, 1, 50) > 0) {
            const int fd = accept(listener, nullptr, nullptr);
            const int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
    }
    return -1;
}
std::uint64_t tcp_bytes_sent(int fd)
{
    tcp_info info{};
    socklen_t n = sizeof info;
    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &n);
    return info.tcpi_bytes_sent;
}

// ---------------------------------------------------------------------------
// A TLS implementation: server_session(fd) handshakes and echoes until the
// peer closes (or holds the session when told to); client connects.

enum class proto { dtls12, tls12, tls13 };
std::string name_of(proto p) { return p == proto::dtls12 ? "DTLS 1.2/UDP" : p == proto::tls12 ? "TLS 1.2/TCP" : "TLS 1.3/TCP"; }

struct openssl_tls {
    SSL_CTX* server = nullptr;
    SSL_CTX* client = nullptr;

    explicit openssl_tls(proto p)
    {
        const int v = p == proto::tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
        for (SSL_CTX** ctx : {&server, &client}) {
            *ctx = SSL_CTX_new(TLS_method());
            SSL_CTX_set_min_proto_version(*ctx, v);
            SSL_CTX_set_max_proto_version(*ctx, v);
            SSL_CTX_set_options(*ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
            SSL_CTX_set_num_tickets(*ctx, 0);
            SSL_CTX_set_cipher_list(*ctx, "ECDHE-ECDSA-AES128-GCM-SHA256");
            SSL_CTX_set_ciphersuites(*ctx, "TLS_AES_128_GCM_SHA256");
            SSL_CTX_set1_groups_list(*ctx, "X25519:P-256:P-384");
        }
        SSL_CTX_use_certificate_file(server, cert_path("server-ecdsa.pem").c_str(), SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(server, cert_path("server-ecdsa.key").c_str(), SSL_FILETYPE_PEM);
        SSL_CTX_load_verify_locations(client, cert_path("ca.pem").c_str(), nullptr);
        SSL_CTX_set_verify(client, SSL_VERIFY_PEER, nullptr);
    }
    ~openssl_tls()
    {
        SSL_CTX_free(server);
        SSL_CTX_free(client);
    }

    struct conn {
        SSL* ssl = nullptr;
        int fd = -1;
        bool ok = false;
        conn() = default;
        conn(conn&& o) noexcept : ssl(std::exchange(o.ssl, nullptr)), fd(std::exchange(o.fd, -1)), ok(o.ok) {}
        ~conn()
        {
            if (ssl) {
                SSL_shutdown(ssl);
                SSL_free(ssl);
            }
            if (fd >= 0) close(fd);
        }
        int write(const void* d, int n) { return SSL_write(ssl, d, n); }
        int read(void* d, int n) { return SSL_read(ssl, d, n); }
    };
    conn accept(int fd)
    {
        conn c;
        c.fd = fd;
        c.ssl = SSL_new(server);
        SSL_set_fd(c.ssl, fd);
        c.ok = SSL_accept(c.ssl) == 1;
        return c;
    }
    conn connect(int fd)
    {
        conn c;
        c.fd = fd;
        c.ssl = SSL_new(client);
        SSL_set_fd(c.ssl, fd);
        SSL_set_tlsext_host_name(c.ssl, "localhost");
        SSL_set1_host(c.ssl, "localhost");
        c.ok = SSL_connect(c.ssl) == 1;
        return c;
    }
};

struct mbedtls_tls {
    struct side {
        mbedtls_entropy_context entropy;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_x509_crt chain, ca;
        mbedtls_pk_context key;
        mbedtls_ssl_config conf;
    };
    side server, client;
    static constexpr mbedtls_ecp_group_id curves[] = {MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1,
                                                      MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
    static constexpr int suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0};

    explicit mbedtls_tls(proto)
    {
        for (side* s : {&server, &client}) {
            mbedtls_entropy_init(&s->entropy);
            mbedtls_ctr_drbg_init(&s->drbg);
            mbedtls_x509_crt_init(&s->chain);
            mbedtls_x509_crt_init(&s->ca);
            mbedtls_pk_init(&s->key);
            mbedtls_ssl_config_init(&s->conf);
            mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy, nullptr, 0);
            mbedtls_ssl_config_defaults(&s->conf, s == &server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
                                        MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
            mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
            mbedtls_ssl_conf_min_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
            mbedtls_ssl_conf_max_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
            mbedtls_ssl_conf_curves(&s->conf, curves);
            mbedtls_ssl_conf_ciphersuites(&s->conf, suites);
            mbedtls_ssl_conf_session_tickets(&s->conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
        }
        mbedtls_x509_crt_parse_file(&server.chain, cert_path("server-ecdsa.pem").c_str());
        mbedtls_pk_parse_keyfile(&server.key, cert_path("server-ecdsa.key").c_str(), nullptr);
        mbedtls_ssl_conf_own_cert(&server.conf, &server.chain, &server.key);
        mbedtls_ssl_conf_authmode(&server.conf, MBEDTLS_SSL_VERIFY_NONE);
        mbedtls_x509_crt_parse_file(&client.ca, cert_path("ca.pem").c_str());
        mbedtls_ssl_conf_ca_chain(&client.conf, &client.ca, nullptr);
        mbedtls_ssl_conf_authmode(&client.conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
    ~mbedtls_tls()
    {
        for (side* s : {&server, &client}) {
            mbedtls_ssl_config_free(&s->conf);
            mbedtls_pk_free(&s->key);
            mbedtls_x509_crt_free(&s->ca);
            mbedtls_x509_crt_free(&s->chain);
            mbedtls_ctr_drbg_free(&s->drbg);
            mbedtls_entropy_free(&s->entropy);
        }
    }

    struct conn {
        std::unique_ptr<mbedtls_ssl_context> ssl;
        std::unique_ptr<mbedtls_net_context> net;
        int fd = -1;
        bool ok = false;
        conn() = default;
        conn(conn&&) noexcept = default;
        ~conn()
        {
            if (ssl) {
                mbedtls_ssl_close_notify(ssl.get());
                mbedtls_ssl_free(ssl.get());
            }
            if (net) mbedtls_net_free(net.get());
        }
        int write(const void* d, int n)
        {
            return mbedtls_ssl_write(ssl.get(), static_cast<const unsigned char*>(d), static_cast<std::size_t>(n));
        }
        int read(void* d, int n)
        {
            for (;;) {
                const int r = mbedtls_ssl_read(ssl.get(), static_cast<unsigned char*>(d), static_cast<std::size_t>(n));
                if (r != MBEDTLS_ERR_SSL_WANT_READ) return r;
            }
        }
    };
    conn make(side& s, int fd, const char* host)
    {
        conn c;
        c.fd = fd;
        c.net = std::make_unique<mbedtls_net_context>();
        c.net->fd = fd;
        c.ssl = std::make_unique<mbedtls_ssl_context>();
        mbedtls_ssl_init(c.ssl.get());
        mbedtls_ssl_setup(c.ssl.get(), &s.conf);
        if (host) mbedtls_ssl_set_hostname(c.ssl.get(), host);
        mbedtls_ssl_set_bio(c.ssl.get(), c.net.get(), mbedtls_net_send, mbedtls_net_recv, nullptr);
        c.ok = mbedtls_ssl_handshake(c.ssl.get()) == 0;
        return c;
    }
    conn accept(int fd) { return make(server, fd, nullptr); }
    conn connect(int fd) { return make(client, fd, "localhost"); }
};

// The TLS server: one connection at a time, echoing; or, in hold mode,
// handshakes and keeps every connection (for the memory figure).
template <class Impl>
class tls_server {
public:
    tls_server(Impl& impl, int port = 0) : impl_(impl), listener_(tcp_listen(port))
    {
        port_ = tcp_port(listener_);
        thread_ = std::thread([this] {
            std::array<char, 16384> buffer;
            while (!stop_) {
                const int fd = tcp_accept(listener_, stop_);
                if (fd < 0) break;
                auto c = impl_.accept(fd);
                if (hold_) {
                    held_.push_back(std::move(c));
                    ++accepted_;
                    continue;
                }
                ++accepted_;
                for (;;) {
                    const int n = c.read(buffer.data(), static_cast<int>(buffer.size()));
                    if (n <= 0) break;
                    if (c.write(buffer.data(), n) != n) break;
                }
            }
            held_.clear();
        });
        pthread_getcpuclockid(thread_.native_handle(), &cpu_clock_);
    }
    ~tls_server()
    {
        stop_ = true;
        thread_.join();
        close(listener_);
    }
    int port() const { return port_; }
    double cpu() const { return seconds_of(cpu_clock_); }
    void hold(bool on) { hold_ = on; }
    std::size_t accepted() const { return accepted_; }

private:
    Impl& impl_;
    int listener_;
    int port_ = 0;
    std::atomic<bool> stop_{false}, hold_{false};
    std::atomic<std::size_t> accepted_{0};
    std::vector<typename Impl::conn> held_;
    std::thread thread_;
    clockid_t cpu_clock_{};
};

struct figures {
    double client_ms = 0, server_ms = 0, wall_ms = 0;
    // The spread of client + server CPU per handshake: the cheapest and
    // the dearest of the repeated runs.
    double cpu_low_ms = 0, cpu_high_ms = 0;
    double small_per_s = 0, large_per_s = 0;
    double record_overhead = 0;
    double memory_bytes = 0; // client + server heap per held connection
};

// Run by run, client and server CPU belong together: their sum's extremes.
void spread(const std::vector<double>& client, const std::vector<double>& server, figures& f)
{
    std::vector<double> sum;
    for (std::size_t i = 0; i < client.size() && i < server.size(); ++i) sum.push_back(client[i] + server[i]);
    if (sum.empty()) return;
    f.cpu_low_ms = *std::min_element(sum.begin(), sum.end());
    f.cpu_high_ms = *std::max_element(sum.begin(), sum.end());
}

long heap_in_use() { return static_cast<long>(mallinfo2().uordblks); }

template <class Impl>
figures measure_tls(proto p, int reps, double seconds)
{
    Impl impl(p);
    figures f;
    {
        tls_server<Impl> server(impl);
        std::vector<double> c, s, w;
        for (int r = 0; r < reps; ++r) {
            int n = 0;
            const double t0 = wall(), c0 = thread_cpu(), s0 = server.cpu();
            do {
                auto conn = impl.connect(tcp_connect(server.port()));
                char byte = 'x';
                if (!conn.ok || conn.write(&byte, 1) != 1 || conn.read(&byte, 1) != 1)
                    throw std::runtime_error("TLS handshake or echo failed");
                ++n;
            } while (wall() - t0 < seconds);
            // The server finishes the last connection after we close it.
            std::this_thread::sleep_for(20ms);
            c.push_back((thread_cpu() - c0) * 1000 / n);
            s.push_back((server.cpu() - s0) * 1000 / n);
            w.push_back((wall() - t0) * 1000 / n);
        }
        f.client_ms = median(c);
        f.server_ms = median(s);
        f.wall_ms = median(w);
        spread(c, s, f);

        auto conn = impl.connect(tcp_connect(server.port()));
        std::array<char, 1024> buffer{};
        auto ping_pong = [&](int size) {
            int n = 0;
            const double t0 = wall();
            while (wall() - t0 < seconds) {
                for (int i = 0; i < 32; ++i) {
                    conn.write(buffer.data(), size);
                    int got = 0;
                    while (got < size) {
                        const int r = conn.read(buffer.data() + got, size - got);
                        if (r <= 0) throw std::runtime_error("TLS echo failed");
                        got += r;
                    }
                }
                n += 32;
            }
            return n / (wall() - t0);
        };
        const auto m = alternate(reps, {[&] { return ping_pong(64); }, [&] { return ping_pong(1024); }});
        f.small_per_s = m[0];
        f.large_per_s = m[1];
        const auto before = tcp_bytes_sent(conn.fd);
        conn.write(buffer.data(), 1000);
        conn.read(buffer.data(), 1000);
        f.record_overhead = static_cast<double>(tcp_bytes_sent(conn.fd) - before) - 1000;
    }
    {
        tls_server<Impl> server(impl);
        server.hold(true);
        const int n = 100;
        std::vector<typename Impl::conn> held;
        const long base = heap_in_use();
        for (int i = 0; i < n; ++i) held.push_back(impl.connect(tcp_connect(server.port())));
        const double limit = wall() + 10;
        while (server.accepted() < static_cast<std::size_t>(n) && wall() < limit) std::this_thread::sleep_for(5ms);
        f.memory_bytes = static_cast<double>(heap_in_use() - base) / n;
    }
    return f;
}

template <class B>
figures measure_dtls(int reps, double seconds)
{
    figures f;
    {
        server_thread<B> server;
        clients<B> cs(server.address());
        cs.all.resize(1);
        auto& c = cs.all[0];
        std::vector<double> cc, ss, ww;
        for (int r = 0; r < reps; ++r) {
            int n = 0;
            const double t0 = wall(), c0 = thread_cpu(), s0 = server.cpu();
            do {
                cs.connect(c);
                const double limit = wall() + 10;
                while (!c.ep->is_open() && wall() < limit) cs.poll_once(50ms, [](auto&) {});
                const bytes one(1, std::byte{'x'});
                c.received = 0;
                c.ep->send(one, dtlspp::clock::now());
                cs.flush(c);
                while (c.received == 0 && wall() < limit) cs.poll_once(50ms, [](auto&) {});
                if (c.received == 0) throw std::runtime_error("DTLS handshake or echo failed");
                cs.close(c);
                ++n;
            } while (wall() - t0 < seconds);
            std::this_thread::sleep_for(20ms);
            cc.push_back((thread_cpu() - c0) * 1000 / n);
            ss.push_back((server.cpu() - s0) * 1000 / n);
            ww.push_back((wall() - t0) * 1000 / n);
        }
        f.client_ms = median(cc);
        f.server_ms = median(ss);
        f.wall_ms = median(ww);
        spread(cc, ss, f);

        cs.connect(c);
        const double limit = wall() + 10;
        while (!c.ep->is_open() && wall() < limit) cs.poll_once(50ms, [](auto&) {});
        auto ping_pong = [&](std::size_t size) {
            const bytes message(size, std::byte{1});
            int n = 0;
            const double t0 = wall();
            while (wall() - t0 < seconds) {
                c.received = 0;
                c.ep->send(message, dtlspp::clock::now());
                cs.flush(c);
                const double give_up = wall() + 0.2; // a lost datagram is not resent
                while (c.received == 0 && wall() < give_up) cs.poll_once(200ms, [](auto&) {});
                n += c.received > 0;
            }
            return n / (wall() - t0);
        };
        const auto m = alternate(reps, {[&] { return ping_pong(64); }, [&] { return ping_pong(1024); }});
        f.small_per_s = m[0];
        f.large_per_s = m[1];
        const auto before = c.ep->counters().bytes_out;
        c.ep->send(bytes(1000, std::byte{2}), dtlspp::clock::now());
        cs.flush(c);
        f.record_overhead = static_cast<double>(c.ep->counters().bytes_out - before) - 1000;
        cs.close(c);
    }
    {
        server_thread<B> server;
        clients<B> cs(server.address());
        const int n = 100;
        const long base = heap_in_use();
        cs.all.resize(n);
        for (auto& c : cs.all) cs.connect(c);
        const double limit = wall() + 20;
        auto open = [&] {
            for (auto& c : cs.all)
                if (!c.ep->is_open()) return false;
            return true;
        };
        while (!open() && wall() < limit) cs.poll_once(5ms, [](auto&) {});
        std::this_thread::sleep_for(50ms); // the server settles its last sessions
        f.memory_bytes = static_cast<double>(heap_in_use() - base) / n;
    }
    return f;
}

template <class B, class Tls>
void run(const std::string& backend, const std::vector<proto>& tls_versions)
{
    const int reps = repeats(3);
    const double seconds = budget(backend == "mbedtls" ? 1.5 : 1.0);
    heading(backend + " (" + B::version() + "): DTLS 1.2 over UDP vs TLS over TCP, measured");
    note("Loopback, server thread + client thread, ECDSA P-256 key, AES-128-GCM, X25519. A 'handshake' is "
         "connect + full handshake + one byte echoed + close, one at a time. CPU is each thread's CPU time "
         "(user + kernel, so socket calls count). Ping-pong: one message in flight on one connection. Record "
         "overhead: bytes on the wire for one 1000-byte message minus 1000 (DTLS: datagram payload; TLS: "
         "TCP payload). Heap: libc heap in use (mallinfo2, all threads) for 100 held connections, client and "
         "server together, divided by 100; kernel socket buffers not included. DTLS is dtlspp with its cookie "
         "exchange; TLS over TCP is the library's API used directly. Medians of " +
         std::to_string(reps) + " runs.\n");
    table t({"protocol", "client CPU ms/hs", "server CPU ms/hs", "wall ms/hs", "64 B round trips/s",
             "1024 B round trips/s", "record overhead B", "heap per connection B"});
    std::vector<std::pair<proto, figures>> all;
    all.emplace_back(proto::dtls12, measure_dtls<B>(reps, seconds));
    for (const auto p : tls_versions) all.emplace_back(p, measure_tls<Tls>(p, reps, seconds));
    for (const auto& [p, f] : all) {
        const std::string key = "tls." + backend + "." + (p == proto::dtls12 ? "dtls12" : p == proto::tls12 ? "tls12" : "tls13");
        result(key + ".client_ms", f.client_ms);
        result(key + ".server_ms", f.server_ms);
        result(key + ".wall_ms", f.wall_ms);
        result(key + ".cpu_low_ms", f.cpu_low_ms);
        result(key + ".cpu_high_ms", f.cpu_high_ms);
        result(key + ".small_rt", f.small_per_s);
        result(key + ".large_rt", f.large_per_s);
        result(key + ".overhead", f.record_overhead);
        result(key + ".heap", f.memory_bytes);
        t.row({name_of(p), fmt(f.client_ms, 3), fmt(f.server_ms, 3), fmt(f.wall_ms, 3), sig(f.small_per_s),
               sig(f.large_per_s), fmt(f.record_overhead), fmt(f.memory_bytes)});
    }
}

// One handshake and one echoed byte on a fixed port, nothing else, for a
// packet capture.
template <class B, class Tls>
int wire(proto p, int port)
{
    if (p == proto::dtls12) {
        dtlspp::failure f;
        auto s = dtlspp::udp_server<B>::bind(server_config(), dtlspp::peer_address::parse("127.0.0.1:" + std::to_string(port)), {}, f);
        if (!s) return 1;
        std::atomic<bool> stop{false};
        std::thread t([&] {
            struct echo {
                dtlspp::udp_server<B>* s;
                void on_data(const dtlspp::peer_address& from, std::span<const std::byte> d)
                {
                    std::error_code ec;
                    s->send(from, d, ec);
                }
            } h{&*s};
            while (!stop) s->run_once(5ms, h);
        });
        {
            clients<B> cs(s->local_address());
            cs.all.resize(1);
            auto& c = cs.all[0];
            cs.connect(c);
            const double limit = wall() + 10;
            while (!c.ep->is_open() && wall() < limit) cs.poll_once(50ms, [](auto&) {});
            c.ep->send(bytes(1, std::byte{'x'}), dtlspp::clock::now());
            cs.flush(c);
            while (c.received == 0 && wall() < limit) cs.poll_once(50ms, [](auto&) {});
            cs.close(c);
        }
        std::this_thread::sleep_for(100ms);
        stop = true;
        t.join();
        return 0;
    }
    Tls impl(p);
    tls_server<Tls> server(impl, port);
    {
        auto conn = impl.connect(tcp_connect(port));
        char byte = 'x';
        conn.write(&byte, 1);
        conn.read(&byte, 1);
    }
    std::this_thread::sleep_for(100ms);
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    std::signal(SIGPIPE, SIG_IGN);
    if (argc == 5 && std::string(argv[1]) == "--wire") {
        const std::string backend = argv[2], p = argv[3];
        const proto which = p == "dtls12" ? proto::dtls12 : p == "tls12" ? proto::tls12 : proto::tls13;
        const int port = std::atoi(argv[4]);
        if (backend == "openssl") return wire<dtlspp::openssl_backend, openssl_tls>(which, port);
        return wire<dtlspp::mbedtls_backend, mbedtls_tls>(which, port);
    }
    const std::string only = argc > 1 ? argv[1] : "";
    std::printf("## DTLS over UDP vs TLS over TCP\n\nMachine: %s\n", machine().c_str());
    if (only.empty() || only == "openssl")
        run<dtlspp::openssl_backend, openssl_tls>("openssl", {proto::tls12, proto::tls13});
    if (only.empty() || only == "mbedtls") run<dtlspp::mbedtls_backend, mbedtls_tls>("mbedtls", {proto::tls12});
    return 0;
}
