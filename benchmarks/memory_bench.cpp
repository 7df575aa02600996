// Heap bytes per established DTLS session, raw C API vs dtlspp, per side.
//
// Three counters, all live bytes:
// - every libc heap allocation of the process, through malloc/calloc/
//   realloc/free defined here (they interpose on libc's for the whole
//   process, OpenSSL and mbedTLS included), sized with malloc_usable_size;
// - OpenSSL's own share, through CRYPTO_set_mem_functions (installed first
//   thing in main: OpenSSL refuses it after its first allocation);
// - the C++ share, through a replaced global operator new/delete.
// mbedTLS 2.28 as Debian builds it has MBEDTLS_PLATFORM_MEMORY off, so
// mbedtls_platform_set_calloc_free does not exist: it calls libc's calloc
// and free directly, and its share is the libc total minus the C++ share
// (nothing else allocates during an mbedTLS run).
//
// Allocations and frees are charged to the side the pipe driver is running
// (client or server), so per-side figures come from one run with both
// sides in the process. N sessions are opened and kept; the delta divided
// by N is the cost of one session, shared contexts excluded.
#include "dtlspp_sides.hpp"
#include "raw_mbedtls.hpp"
#include "raw_openssl.hpp"

#include <dtlspp/backend/mbedtls.hpp>
#include <dtlspp/backend/openssl.hpp>

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

inline void charge(long long (&bucket)[3], void* p, int sign)
{
    if (p) bucket[bench::current_side] += sign * static_cast<long long>(malloc_usable_size(p));
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
    double total[2];   // client, server: every libc heap byte
    double library[2]; // OpenSSL (hook) or mbedTLS (libc minus C++)
    double cxx[2];
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
    for (int i = 0; i < n; ++i) {
        d.start(static_cast<std::uint32_t>(i));
        if (!clients[static_cast<std::size_t>(i)]->is_open()) throw std::runtime_error("handshake failed");
    }
    if (server.sessions() != static_cast<std::size_t>(n)) throw std::runtime_error("server lost sessions");
    const counters after = live;
    per_session r{};
    for (int side = 0; side < 2; ++side) {
        r.total[side] = static_cast<double>(after.libc[side] - before.libc[side]) / n;
        r.cxx[side] = static_cast<double>(after.cxx[side] - before.cxx[side]) / n;
        r.library[side] = openssl ? static_cast<double>(after.openssl[side] - before.openssl[side]) / n
                                  : r.total[side] - r.cxx[side];
    }
    for (int i = 0; i < n; ++i) d.close(static_cast<std::uint32_t>(i));
    return r;
}

} // namespace

int main()
{
    if (CRYPTO_set_mem_functions(counted_crypto_malloc, counted_crypto_realloc, counted_crypto_free) != 1) {
        std::fprintf(stderr, "CRYPTO_set_mem_functions refused: OpenSSL allocated before main\n");
        return 1;
    }
    const int n = 200;
    const int reps = repeats(3);
    heading("Heap bytes per established session, raw C API vs dtlspp");
    note("Machine: " + machine() + ". " + std::to_string(n) +
         " sessions held open at once over the in-memory pipe, ECDSA P-256 certificate, max UDP payload 1472; "
         "bytes are live heap bytes (malloc_usable_size) after the handshakes minus before, divided by the "
         "sessions. 'library' is OpenSSL's share through CRYPTO_set_mem_functions, or mbedTLS's share "
         "(libc minus C++: Debian's mbedTLS has MBEDTLS_PLATFORM_MEMORY off, so "
         "mbedtls_platform_set_calloc_free is not available). Medians of " +
         std::to_string(reps) + " runs.\n");
    table t({"backend", "side", "raw total", "dtlspp total", "dtlspp/raw", "raw library", "dtlspp library",
             "raw C++", "dtlspp C++"});
    auto run = [&](const std::string& backend, auto raw_once, auto dt_once) {
        std::vector<per_session> raw, dt;
        for (int r = 0; r < reps; ++r) {
            raw.push_back(raw_once());
            dt.push_back(dt_once());
        }
        for (int side = 0; side < 2; ++side) {
            auto pick = [&](const std::vector<per_session>& v, auto field) {
                std::vector<double> x;
                for (const auto& s : v) x.push_back((s.*field)[side]);
                return median(x);
            };
            const double rt = pick(raw, &per_session::total), dtt = pick(dt, &per_session::total);
            const std::string name = side == 0 ? "client" : "server";
            result("memory." + backend + "." + name + ".raw", rt);
            result("memory." + backend + "." + name + ".dtlspp", dtt);
            t.row({backend, name, fmt(rt), fmt(dtt), ratio(dtt, rt), fmt(pick(raw, &per_session::library)),
                   fmt(pick(dt, &per_session::library)), fmt(pick(raw, &per_session::cxx)),
                   fmt(pick(dt, &per_session::cxx))});
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
            raw_mbedtls::settings s;
            return measure<raw_mbedtls::client, raw_mbedtls::server>(s, s, n, false);
        },
        [&] {
            with_dtlspp::settings s;
            return measure<with_dtlspp::client<dtlspp::mbedtls_backend>, with_dtlspp::server<dtlspp::mbedtls_backend>>(
                s, s, n, false);
        });
    return 0;
}
