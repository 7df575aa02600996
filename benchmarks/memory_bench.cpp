// Heap bytes per established DTLS session, raw C API vs dtlspp, per side.
//
// Three counters, all live bytes:
// - every libc heap allocation of the process, through malloc/calloc/
//   realloc/free defined here (they interpose on libc's for the whole
//   process, OpenSSL and mbedTLS included), sized with malloc_usable_size;
// - OpenSSL's own share, through CRYPTO_set_mem_functions (installed first
//   thing in main: OpenSSL refuses it after its first allocation);
// - the C++ share, through a replaced global operator new/delete.
// mbedTLS 2.28 as Debian builds it, and 3.6 with the wrap's config, have
// MBEDTLS_PLATFORM_MEMORY off, so mbedtls_platform_set_calloc_free does not
// exist: it calls libc's calloc and free directly (the static 3.6 libraries
// too, so they reach the hooks here), and its share is the libc total minus
// the C++ share (nothing else allocates during an mbedTLS run).
//
// Allocations and frees are charged to the side the pipe driver is running
// (client or server), so per-side figures come from one run with both
// sides in the process. N sessions are opened and kept; the delta divided
// by N is the cost of one session, shared contexts excluded.
#include "dtlspp_sides.hpp"
#include "raw_openssl.hpp"

#include <dtlspp/backend/mbedtls.hpp>
// The raw mbedTLS side is written to the 2.28 API; on 3.x only dtlspp's
// mbedTLS side is measured.
#if MBEDTLS_VERSION_NUMBER < 0x03000000
#include "raw_mbedtls.hpp"
#define MEMORY_BENCH_RAW_MBEDTLS 1
#endif
#include <dtlspp/backend/openssl.hpp>
#ifdef DTLSPP_HAVE_WOLFSSL
#include <dtlspp/backend/wolfssl.hpp>
#endif

#include <array>
#include <malloc.h>
#include <new>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void __libc_free(void*);
void* __libc_memalign(std::size_t, std::size_t);
}

namespace {

struct counters {
    long long libc[3] = {0, 0, 0};
    long long openssl[3] = {0, 0, 0};
    long long cxx[3] = {0, 0, 0};
};
counters live;

// Live blocks of at least `smallest_block` bytes (2 KiB unless the second
// argument says otherwise), by usable size and side: which buffers a session
// holds. A fixed table, so the hooks never allocate.
struct large_blocks {
    static constexpr int slots = 1024;
    std::size_t size[slots] = {};
    long long live[3][slots] = {};
    long long uncounted = 0; // blocks of sizes that found no free slot
};
large_blocks large;
std::size_t smallest_block = 2048;

inline void count_large(std::size_t size, int sign)
{
    if (size < smallest_block) return;
    for (int i = 0; i < large_blocks::slots; ++i) {
        if (large.size[i] == 0) large.size[i] = size;
        if (large.size[i] == size) {
            large.live[bench::current_side][i] += sign;
            return;
        }
    }
    ++large.uncounted;
}

inline void charge(long long (&bucket)[3], void* p, int sign)
{
    if (!p) return;
    const std::size_t size = malloc_usable_size(p);
    bucket[bench::current_side] += sign * static_cast<long long>(size);
    if (&bucket == &live.libc) count_large(size, sign);
}

void* counted_crypto_malloc(std::size_t n, const char*, int)
{
    void* p = std::malloc(n);
    charge(live.openssl, p, +1);
    return p;
}
void* counted_crypto_realloc(void* old, std::size_t n, const char*, int)
{
    charge(live.openssl, old, -1);
    void* p = std::realloc(old, n);
    charge(live.openssl, p ? p : (n == 0 ? nullptr : old), +1);
    return p;
}
void counted_crypto_free(void* p, const char*, int)
{
    charge(live.openssl, p, -1);
    std::free(p);
}

} // namespace

extern "C" {
void* malloc(std::size_t n)
{
    void* p = __libc_malloc(n);
    charge(live.libc, p, +1);
    return p;
}
void* calloc(std::size_t count, std::size_t n)
{
    void* p = __libc_calloc(count, n);
    charge(live.libc, p, +1);
    return p;
}
void* realloc(void* old, std::size_t n)
{
    charge(live.libc, old, -1);
    void* p = __libc_realloc(old, n);
    charge(live.libc, p ? p : (n == 0 ? nullptr : old), +1);
    return p;
}
void free(void* p)
{
    charge(live.libc, p, -1);
    __libc_free(p);
}
void* memalign(std::size_t alignment, std::size_t n)
{
    void* p = __libc_memalign(alignment, n);
    charge(live.libc, p, +1);
    return p;
}
void* aligned_alloc(std::size_t alignment, std::size_t n) { return memalign(alignment, n); }
int posix_memalign(void** out, std::size_t alignment, std::size_t n)
{
    *out = memalign(alignment, n);
    return *out ? 0 : ENOMEM;
}
}

void* operator new(std::size_t n)
{
    void* p = std::malloc(n ? n : 1);
    if (!p) throw std::bad_alloc();
    charge(live.cxx, p, +1);
    return p;
}
void operator delete(void* p) noexcept
{
    charge(live.cxx, p, -1);
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

using namespace bench;

namespace {

struct per_session {
    bool measured = true; // false: this variant was not run
    double total[2];   // client, server: every libc heap byte
    double echoed[2];  // the same after one echo on every session
    double library[2]; // OpenSSL (hook) or mbedTLS (libc minus C++)
    double cxx[2];
    // (usable size, client blocks, server blocks) per session, smallest_block and up.
    std::vector<std::array<double, 3>> large;
};

template <class Client, class Server, class ClientSettings, class ServerSettings>
per_session measure(const ClientSettings& cs, const ServerSettings& ss, int n, bool openssl)
{
    Server server(ss);
    std::vector<std::unique_ptr<Client>> clients;
    std::vector<Client*> pointers;
    for (int i = 0; i < n; ++i) {
        clients.push_back(std::make_unique<Client>(cs));
        clients.back()->id = static_cast<std::uint32_t>(i);
        pointers.push_back(clients.back().get());
    }
    driver<Client, Server> d(server, pointers);
    d.time_sides = false;
    // Warm-up: lazy initialisation, the pipe's buffers, the server's spare
    // session, all allocated before the baseline.
    d.start(0);
    d.close(0);
    const counters before = live;
    const large_blocks large_before = large;
    for (int i = 0; i < n; ++i) {
        d.start(static_cast<std::uint32_t>(i));
        if (!clients[static_cast<std::size_t>(i)]->is_open()) throw std::runtime_error("handshake failed");
    }
    if (server.sessions() != static_cast<std::size_t>(n)) throw std::runtime_error("server lost sessions");
    const counters after = live;
    // One 32-byte echo per session: the first application data a DTLS
    // server receives tells it that the client has its last flight, so
    // mbedTLS frees the handshake state it kept to resend that flight.
    const std::array<std::byte, 32> message{};
    for (int i = 0; i < n; ++i) d.send(static_cast<std::uint32_t>(i), message);
    const counters echoed = live;
    const large_blocks large_after = large;
    per_session r{};
    for (int i = 0; i < large_blocks::slots && large_after.size[i] != 0; ++i) {
        const double c = static_cast<double>(large_after.live[0][i] - large_before.live[0][i]) / n;
        const double sv = static_cast<double>(large_after.live[1][i] - large_before.live[1][i]) / n;
        if (c >= 0.5 || sv >= 0.5) r.large.push_back({static_cast<double>(large_after.size[i]), c, sv});
    }
    std::sort(r.large.begin(), r.large.end(), [](const auto& a, const auto& b) { return a[0] > b[0]; });
    for (int side = 0; side < 2; ++side) {
        r.total[side] = static_cast<double>(after.libc[side] - before.libc[side]) / n;
        r.echoed[side] = static_cast<double>(echoed.libc[side] - before.libc[side]) / n;
        r.cxx[side] = static_cast<double>(after.cxx[side] - before.cxx[side]) / n;
        r.library[side] = openssl ? static_cast<double>(after.openssl[side] - before.openssl[side]) / n
                                  : r.total[side] - r.cxx[side];
    }
    for (int i = 0; i < n; ++i) d.close(static_cast<std::uint32_t>(i));
    return r;
}

} // namespace

int main(int argc, char** argv)
{
    if (CRYPTO_set_mem_functions(counted_crypto_malloc, counted_crypto_realloc, counted_crypto_free) != 1) {
        std::fprintf(stderr, "CRYPTO_set_mem_functions refused: OpenSSL allocated before main\n");
        return 1;
    }
    const int n = argc > 1 ? std::max(1, std::atoi(argv[1])) : 200;
    if (argc > 2) smallest_block = static_cast<std::size_t>(std::max(1, std::atoi(argv[2])));
    const int reps = repeats(3);
    heading("Heap bytes per established session, raw C API vs dtlspp");
    // One mbedTLS per program: 2.28 and 3.6 export the same symbols, so the
    // comparison between them takes two builds and two runs.
    note(std::string("Stacks: ") + OPENSSL_VERSION_TEXT + "; mbedTLS " + MBEDTLS_VERSION_STRING +
         " (record buffers for " + std::to_string(MBEDTLS_SSL_IN_CONTENT_LEN) + " / " +
         std::to_string(MBEDTLS_SSL_OUT_CONTENT_LEN) + " bytes of plaintext in / out).");
    note("Machine: " + machine() + ". " + std::to_string(n) +
         " sessions held open at once over the in-memory pipe, ECDSA P-256 certificate, max UDP payload 1472; "
         "bytes are live heap bytes (malloc_usable_size) after the handshakes minus before, divided by the "
         "sessions; 'after 1 echo' counts the same after each session has echoed one 32-byte message "
         "(a server keeps its last flight until the client's first data shows it arrived). "
         "'library' is OpenSSL's share through CRYPTO_set_mem_functions, or mbedTLS's share "
         "(libc minus C++: MBEDTLS_PLATFORM_MEMORY is off, so "
         "mbedtls_platform_set_calloc_free is not available)"
#ifdef DTLSPP_HAVE_WOLFSSL
         ", or wolfSSL " LIBWOLFSSL_VERSION_STRING "'s the same way (dtlspp only: no raw wolfSSL side)"
#endif
         ". Medians of " +
         std::to_string(reps) + " runs.\n");
    table t({"backend", "side", "raw total", "dtlspp total", "dtlspp/raw", "raw library", "dtlspp library",
             "raw C++", "dtlspp C++", "raw after 1 echo", "dtlspp after 1 echo"});
    std::vector<std::pair<std::string, per_session>> blocks;
    auto run = [&](const std::string& backend, auto raw_once, auto dt_once) {
        std::vector<per_session> raw, dt;
        for (int r = 0; r < reps; ++r) {
            raw.push_back(raw_once());
            dt.push_back(dt_once());
        }
        const bool has_raw = raw.front().measured;
        if (has_raw) blocks.emplace_back(backend + " raw", raw.front());
        blocks.emplace_back(backend + " dtlspp", dt.front());
        for (int side = 0; side < 2; ++side) {
            auto pick = [&](const std::vector<per_session>& v, auto field) {
                std::vector<double> x;
                for (const auto& s : v) x.push_back((s.*field)[side]);
                return median(x);
            };
            const double rt = pick(raw, &per_session::total), dtt = pick(dt, &per_session::total);
            const std::string name = side == 0 ? "client" : "server";
            if (has_raw) result("memory." + backend + "." + name + ".raw", rt);
            result("memory." + backend + "." + name + ".dtlspp", dtt);
            const double re = pick(raw, &per_session::echoed), dte = pick(dt, &per_session::echoed);
            if (has_raw) result("memory." + backend + "." + name + ".raw_echoed", re);
            result("memory." + backend + "." + name + ".dtlspp_echoed", dte);
            auto raw_cell = [&](double v) { return has_raw ? fmt(v) : std::string("n/a"); };
            t.row({backend, name, raw_cell(rt), fmt(dtt), has_raw ? ratio(dtt, rt) : "n/a",
                   raw_cell(pick(raw, &per_session::library)), fmt(pick(dt, &per_session::library)),
                   raw_cell(pick(raw, &per_session::cxx)), fmt(pick(dt, &per_session::cxx)), raw_cell(re),
                   fmt(dte)});
        }
    };
    run(
        "openssl",
        [&] {
            raw_openssl::settings s;
            return measure<raw_openssl::client, raw_openssl::server>(s, s, n, true);
        },
        [&] {
            with_dtlspp::settings s;
            return measure<with_dtlspp::client<dtlspp::openssl_backend>, with_dtlspp::server<dtlspp::openssl_backend>>(
                s, s, n, true);
        });
    run(
        "mbedtls",
        [&] {
#ifdef MEMORY_BENCH_RAW_MBEDTLS
            raw_mbedtls::settings s;
            return measure<raw_mbedtls::client, raw_mbedtls::server>(s, s, n, false);
#else
            per_session none{};
            none.measured = false;
            return none;
#endif
        },
        [&] {
            with_dtlspp::settings s;
            return measure<with_dtlspp::client<dtlspp::mbedtls_backend>, with_dtlspp::server<dtlspp::mbedtls_backend>>(
                s, s, n, false);
        });
#ifdef DTLSPP_HAVE_WOLFSSL
    // wolfSSL: dtlspp only (no raw side here), on DTLS 1.2 and 1.3. Its
    // allocations go through the wrap's heap to malloc, so they are the
    // libc total minus the C++ share, as for mbedTLS. The record buffers it
    // keeps per thread between records (at most four) are in place before
    // the baseline, after the warm-up handshake. A cached buffer freed by
    // one side may next serve the other, so for wolfSSL only the sum of
    // the two sides is exact.
    for (const bool dtls13 : {false, true}) {
        run(
            dtls13 ? "wolfssl-dtls13" : "wolfssl",
            [&] {
                per_session none{};
                none.measured = false;
                return none;
            },
            [&] {
                with_dtlspp::settings s;
                s.dtls13 = dtls13;
                return measure<with_dtlspp::client<dtlspp::wolfssl_backend>,
                               with_dtlspp::server<dtlspp::wolfssl_backend>>(s, s, n, false);
            });
    }
#endif
    note("\nLive blocks of " + std::to_string(smallest_block) +
         " bytes or more held per session after its echo (first run), by usable size:");
    if (large.uncounted != 0)
        note("(" + std::to_string(large.uncounted) + " blocks of sizes beyond the table were not counted)");
    table b({"run", "block bytes", "client blocks", "server blocks"});
    for (const auto& [name, r] : blocks)
        for (const auto& row : r.large) b.row({name, fmt(row[0]), fmt(row[1], 2), fmt(row[2], 2)});
    return 0;
}
