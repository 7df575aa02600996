// In steady state an association allocates nothing per datagram: every
// heap allocation is counted while an open association echoes. The C++ ones
// through a replaced operator new; on glibc also every malloc, calloc and
// realloc of the process (defined here, they take the place of libc's for
// every library: OpenSSL's CRYPTO_malloc and mbedTLS's calloc included), so
// the stacks' own allocations count too. Not under AddressSanitizer, which
// must own malloc: there only the C++ count runs.
#define BOOST_TEST_MODULE allocation
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

#include "support/counting_new.hpp"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DTLSPP_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DTLSPP_TEST_ASAN 1
#endif
#if defined(__GLIBC__) && !defined(DTLSPP_TEST_ASAN)
#define DTLSPP_TEST_COUNTS_LIBC 1
namespace {
std::atomic<std::size_t> libc_allocations{0};
}
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);

void* malloc(std::size_t size)
{
    libc_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_malloc(size);
}
void* calloc(std::size_t count, std::size_t size)
{
    libc_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_calloc(count, size);
}
void* realloc(void* p, std::size_t size)
{
    libc_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_realloc(p, size);
}
void* memalign(std::size_t alignment, std::size_t size)
{
    libc_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(alignment, size);
}
void* aligned_alloc(std::size_t alignment, std::size_t size)
{
    libc_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(alignment, size);
}
}
#endif

using namespace dtlspp;
using namespace dtlspp::test;

namespace {

// Echoes through the association the callback names: no second lookup.
template <class Backend>
struct echo_handler {
    server<Backend>* srv;
    time_point now;
    void on_data(association_ref<Backend> peer, std::span<const std::byte> data)
    {
        std::error_code ec;
        peer.send(data, ec);
    }
};

} // namespace

// Over wolfSSL too: its record buffers, which it takes and gives back for
// each record, come from the wrap's per-thread cache (XMALLOC_USER,
// dtlspp_wolfssl_memory.c), not from malloc.
BOOST_AUTO_TEST_CASE_TEMPLATE(an_open_association_echoes_without_allocating, Backend, all_backends)
{
    failure f;
    auto srv = server<Backend>::create(server_config(), {}, f);
    BOOST_REQUIRE_MESSAGE(srv, f.what());
    auto client = endpoint<Backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(client, f.what());
    const auto from = peer_address::parse("127.0.0.1:40000");
    echo_handler<Backend> handler{&*srv, clock::now()};

    std::array<std::byte, 1000> message{};
    std::size_t echoed = 0;
    auto on_reply = [&](std::span<const std::byte> d) { echoed += d.size() == message.size() ? 1 : 0; };
    // One round trip of whatever is queued, both ways, without copies.
    auto pump = [&] {
        for (int i = 0; i < 16; ++i) {
            const auto now = clock::now();
            handler.now = now;
            bool moved = false;
            client->drain([&](std::span<const std::byte> d) {
                moved = true;
                srv->receive(from, d, now, handler);
            });
            srv->drain([&](const peer_address&, std::span<const std::byte> d) {
                moved = true;
                client->receive(d, now, on_reply);
            });
            if (!moved) break;
        }
    };
    pump();
    BOOST_REQUIRE_MESSAGE(client->is_open(), client->last_failure().what());

    auto echo_round = [&](int count) {
        for (int i = 0; i < count; ++i) {
            message[0] = static_cast<std::byte>(i);
            client->send(message, clock::now());
            pump();
        }
    };
    echo_round(20); // warm-up: queues reach their working size
    const auto before_echoed = echoed;
    const auto before = allocations.load();
#ifdef DTLSPP_TEST_COUNTS_LIBC
    const auto libc_before = libc_allocations.load();
#endif
    echo_round(500);
    const auto during = allocations.load() - before;
#ifdef DTLSPP_TEST_COUNTS_LIBC
    const auto libc_during = libc_allocations.load() - libc_before;
#endif
    BOOST_TEST(echoed - before_echoed == 500u);
    BOOST_TEST(during == 0u, "C++ allocations during 500 echoes: " << during);
#ifdef DTLSPP_TEST_COUNTS_LIBC
    // The count works: the handshake before it allocated.
    BOOST_TEST(libc_before > 0u);
    BOOST_TEST(libc_during == 0u, "malloc/calloc/realloc calls during 500 echoes (stacks included): " << libc_during);
#else
    BOOST_TEST_MESSAGE("only C++ allocations counted here (AddressSanitizer or not glibc)");
#endif
}
