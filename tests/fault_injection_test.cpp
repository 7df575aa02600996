// Fault injection by count, in the manner of Boost.Beast's tests ("fail on
// the Nth operation"): every allocation a stack makes is counted, the Nth
// one fails, and a whole client <-> server handshake, a few echoes and a
// close run over in-memory pipes. Whichever allocation fails, neither side
// may crash or hang, every failure must be a dtlspp failure with a code, the
// server must go on serving the next client, and (under AddressSanitizer)
// nothing may leak.
//
// A binary of its own, because each stack's allocator is replaced for the
// whole process:
// - OpenSSL takes a replacement allocator only before its first allocation
//   (CRYPTO_set_mem_functions, crypto.h), so it is installed by a static
//   initializer of this file;
// - mbedTLS 2.28 as Debian builds it has no MBEDTLS_PLATFORM_MEMORY, so
//   mbedtls_platform_set_calloc_free does not exist and its code calls
//   calloc itself. This binary links the static mbedTLS libraries with
//   `ld --wrap=calloc` (tests/meson.build), which sends exactly those calls
//   to __wrap_calloc below; the rest of the process keeps the real calloc.
#define BOOST_TEST_MODULE fault_injection
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#ifdef DTLSPP_HAVE_OPENSSL
#include <openssl/crypto.h>
#endif

using namespace dtlspp;
using namespace dtlspp::test;
using namespace std::chrono_literals;

namespace {

// Counts one stack's allocations while armed and fails the chosen one (or,
// with fail_rest, that one and every later one).
struct allocation_injector {
    std::atomic<bool> armed{false};
    std::atomic<std::size_t> count{0};
    std::atomic<std::size_t> failed{0};
    std::size_t fail_at = 0; // 1-based; 0 fails none
    bool fail_rest = false;

    bool should_fail() noexcept
    {
        if (!armed.load(std::memory_order_relaxed)) return false;
        const auto n = count.fetch_add(1, std::memory_order_relaxed) + 1;
        if (fail_at == 0 || n < fail_at || (n > fail_at && !fail_rest)) return false;
        failed.fetch_add(1, std::memory_order_relaxed);
        return true;
    }

    void arm(std::size_t nth, bool and_every_later = false) noexcept
    {
        count = 0;
        failed = 0;
        fail_at = nth;
        fail_rest = and_every_later;
        armed = true;
    }
    void disarm() noexcept { armed = false; }
};

// Disarms on every way out of a scope, assertion failures included.
struct armed_scope {
    allocation_injector& injector;
    armed_scope(allocation_injector& i, std::size_t nth, bool and_every_later = false) : injector(i)
    {
        injector.arm(nth, and_every_later);
    }
    ~armed_scope() { injector.disarm(); }
    armed_scope(const armed_scope&) = delete;
    armed_scope& operator=(const armed_scope&) = delete;
};

} // namespace

#ifdef DTLSPP_HAVE_OPENSSL
namespace {

allocation_injector openssl_allocations;

void* injected_malloc(std::size_t size, const char*, int) noexcept
{
    return openssl_allocations.should_fail() ? nullptr : std::malloc(size);
}
// realloc(p, 0) frees p, as CRYPTO_realloc does; it is not an allocation.
void* injected_realloc(void* p, std::size_t size, const char*, int) noexcept
{
    if (size != 0 && openssl_allocations.should_fail()) return nullptr;
    return std::realloc(p, size);
}
void injected_free(void* p, const char*, int) noexcept { std::free(p); }

// Before main, before any OpenSSL call: CRYPTO_set_mem_functions returns 0
// once OpenSSL has allocated anything.
const bool openssl_allocator_installed =
    CRYPTO_set_mem_functions(injected_malloc, injected_realloc, injected_free) == 1;

} // namespace
#endif

#ifdef DTLSPP_HAVE_MBEDTLS
namespace {
allocation_injector mbedtls_allocations;
}
#ifdef DTLSPP_FAULT_INJECT_MBEDTLS
// The names ld --wrap gives the original and the replacement.
extern "C" void* __real_calloc(std::size_t count, std::size_t size);
extern "C" void* __wrap_calloc(std::size_t count, std::size_t size)
{
    return mbedtls_allocations.should_fail() ? nullptr : __real_calloc(count, size);
}
#endif
#endif

namespace {

// The injector for a backend's stack, and whether this build can inject
// into it at all.
template <class Backend>
struct stack_allocations;
#ifdef DTLSPP_HAVE_OPENSSL
template <>
struct stack_allocations<openssl_backend> {
    static allocation_injector& injector() { return openssl_allocations; }
    static bool available() { return openssl_allocator_installed; }
};
#endif
#ifdef DTLSPP_HAVE_MBEDTLS
template <>
struct stack_allocations<mbedtls_backend> {
    static allocation_injector& injector() { return mbedtls_allocations; }
#ifdef DTLSPP_FAULT_INJECT_MBEDTLS
    static bool available() { return true; }
#else
    static bool available() { return false; }
#endif
};
#endif

// Short timers: a run whose flight was lost to a failed allocation
// retransmits after 100 ms and gives up after 500 ms, on OpenSSL's wall
// clock as on mbedTLS's virtual one. Not shorter: OpenSSL retransmits from
// inside SSL_do_handshake once its timer has expired (dtls1_read_bytes
// calls dtls1_handle_timeout), so on a loaded machine a timer of a few
// milliseconds would put two ClientHellos into the first flight.
config fast(config c)
{
    c.initial_retransmission_timeout = 100ms;
    c.max_retransmission_timeout = 200ms;
    c.handshake_deadline = 500ms;
    return c;
}

// The credentials a run uses: certificates exercise PEM and X.509 parsing,
// signatures and verification; a pre-shared key makes a handshake so cheap
// that every single allocation can be failed in turn.
struct credentials {
    const char* name;
    config server;
    config client;
};
credentials certificates() { return {"certificates", fast(server_config()), fast(client_config())}; }
credentials pre_shared_key() { return {"PSK", fast(psk_config(role::server)), fast(psk_config(role::client))}; }

template <class Backend>
struct recording_handler {
    server<Backend>* srv = nullptr;
    test_clock* time = nullptr;
    std::vector<failure> closed;
    void on_data(const peer_address& from, std::span<const std::byte> data)
    {
        std::error_code ec;
        srv->send(from, data, time->now(), ec);
    }
    void on_close(const peer_address&, const failure& f) { closed.push_back(f); }
};

struct client_outcome {
    bool connected = false;   // endpoint::connect returned an endpoint
    bool hung = false;        // still handshaking when the bound ran out
    bool opened = false;
    std::size_t echoed = 0;   // echoes that came back intact
    failure failed;           // connect's failure, or the endpoint's
};

// One server and the clients that talk to it over in-memory pipes, each
// client at its own address.
template <class Backend>
class server_under_test {
public:
    // Called around the server's receive of the client's up_index-th datagram.
    std::function<void(std::size_t up_index)> before_server_receive = [](std::size_t) {};
    std::function<void()> after_server_receive = [] {};

    server_under_test(server<Backend>& s, test_clock& t) : srv_(s), time_(t)
    {
        handler_.srv = &srv_;
        handler_.time = &time_;
    }

    const std::vector<failure>& server_failures() const { return handler_.closed; }

    client_outcome run_client(const config& cfg, const peer_address& address, int echoes)
    {
        client_outcome out;
        failure f;
        auto made = endpoint<Backend>::connect(cfg, time_.now(), f);
        if (!made) {
            out.failed = f;
            return out;
        }
        out.connected = true;
        auto& client = *made;
        std::vector<std::string> received;
        std::size_t up_index = 0;
        auto on_reply = [&](std::span<const std::byte> d) { received.push_back(as_string(d)); };

        // Moves every queued datagram across; bounded, true when any moved.
        auto pump = [&] {
            bool moved = false;
            for (int round = 0; round < 100; ++round) {
                std::vector<bytes> up, down;
                client.drain([&](std::span<const std::byte> d) { up.emplace_back(d.begin(), d.end()); });
                srv_.drain([&](const peer_address& to, std::span<const std::byte> d) {
                    if (to == address) down.emplace_back(d.begin(), d.end());
                });
                if (up.empty() && down.empty()) break;
                moved = true;
                for (auto& d : up) {
                    before_server_receive(++up_index);
                    srv_.receive(address, d, time_.now(), handler_);
                    after_server_receive();
                }
                for (auto& d : down) client.receive(d, time_.now(), on_reply);
            }
            return moved;
        };
        // Bounded twice: by (real or virtual) time and by a step count, so a
        // stack that asks for an immediate timeout forever still stops.
        auto run_until = [&](auto done, std::chrono::milliseconds limit) {
            const auto give_up = time_.now() + limit;
            for (int steps = 0; steps < 10000 && !done() && time_.now() < give_up; ++steps) {
                if (pump()) continue;
                auto next = give_up;
                if (auto d = client.next_deadline()) next = std::min(next, *d);
                if (auto d = srv_.next_deadline()) next = std::min(next, *d);
                time_.wait_until(next);
                client.on_timeout(time_.now());
                srv_.on_timeout(time_.now(), handler_);
                pump();
            }
        };

        pump();
        run_until([&] { return client.state() != endpoint_state::handshaking; }, 2s);
        out.hung = client.state() == endpoint_state::handshaking;
        out.opened = client.is_open();
        for (int i = 0; i < echoes && client.is_open(); ++i) {
            const std::string text = "echo " + std::to_string(i);
            const auto before = received.size();
            std::error_code ec;
            client.send(as_bytes(text), time_.now(), ec);
            if (ec) break;
            pump();
            // The pipes deliver at once: an echo that is not back after the
            // pump was lost to a failure, and waiting would only cost time.
            run_until([&] { return received.size() > before; }, 20ms);
            if (received.size() > before && received.back() == text) ++out.echoed;
        }
        if (client.is_open()) {
            client.close(time_.now());
            pump();
        }
        if (client.state() == endpoint_state::failed) out.failed = client.last_failure();
        return out;
    }

private:
    server<Backend>& srv_;
    test_clock& time_;
    recording_handler<Backend> handler_;
};

bool is_dtlspp_failure(const failure& f) { return f.code && f.code.category() == dtlspp::error_category(); }

constexpr int echoes_per_run = 3;

// What one run under an injected failure did, for the summary.
struct run_report {
    std::size_t runs = 0, complete = 0, refused = 0, injected = 0;
    std::map<std::string, std::size_t> by_condition;
    void count(const failure& f) { ++by_condition[f.code.message()]; }
    std::string summary() const
    {
        std::ostringstream text;
        text << runs << " runs, " << injected << " with an allocation failed, " << complete << " completed, "
             << refused << " ended by a dtlspp failure;";
        for (const auto& [condition, n] : by_condition) text << " " << condition << " x" << n << ";";
        return text.str();
    }
};

// One run with the nth allocation of Backend's stack failing (0: none):
// server creation, a client's handshake and echoes and close, then a second
// client with nothing failing, which the same server must serve. Returns
// the number of allocations the stack made while armed.
template <class Backend>
std::size_t run_with_failed_allocation(const credentials& with, std::size_t nth, run_report& report)
{
    auto& injector = stack_allocations<Backend>::injector();
    test_clock time;
    time.is_virtual = runs_on_virtual_time<Backend>;
    std::optional<server<Backend>> srv;
    std::optional<server_under_test<Backend>> wire;
    client_outcome first;
    failure server_failure;
    std::size_t allocations = 0;
    {
        armed_scope armed(injector, nth);
        if (auto s = server<Backend>::create(with.server, {}, server_failure)) {
            srv.emplace(std::move(*s));
            wire.emplace(*srv, time);
            first = wire->run_client(with.client, peer_address::parse("127.0.0.1:40001"), echoes_per_run);
        }
        allocations = injector.count;
        if (injector.failed > 0) ++report.injected;
    }
    ++report.runs;

    BOOST_TEST_CONTEXT("allocation " << nth << " of " << Backend::name << " failed, " << with.name)
    {
        if (!srv) {
            BOOST_TEST(is_dtlspp_failure(server_failure), "server::create failed without a dtlspp code: "
                                                              << server_failure.what());
            ++report.refused;
            report.count(server_failure);
            return allocations;
        }
        BOOST_TEST(!first.hung, "the handshake neither completed nor failed within its bound");
        if (!first.connected || first.failed) {
            BOOST_TEST(is_dtlspp_failure(first.failed), "the client failed without a dtlspp code: " << first.failed.what());
        }
        for (const auto& f : wire->server_failures())
            BOOST_TEST((!f.code || is_dtlspp_failure(f)), "the server ended an association without a dtlspp code: "
                                                             << f.what());
        const bool server_refused = std::any_of(wire->server_failures().begin(), wire->server_failures().end(),
                                                [](const failure& f) { return f.code && f.code != errc::peer_closed; });
        const bool complete = first.opened && first.echoed == echoes_per_run && !first.failed;
        // Anything short of a complete run must be explained by a failure
        // on one side: no silent loss.
        const bool explained = complete || first.failed || server_refused;
        BOOST_TEST(explained, "the run stopped short (opened " << first.opened << ", " << first.echoed
                                                    << " echoes) and neither side reported a failure");
        if (complete) {
            ++report.complete;
        } else {
            ++report.refused;
            if (first.failed) report.count(first.failed);
            for (const auto& f : wire->server_failures())
                if (f.code && f.code != errc::peer_closed) report.count(f);
        }

        // Whatever failed, the server still serves the next client.
        const auto next = wire->run_client(with.client, peer_address::parse("127.0.0.1:40002"), 1);
        const bool served = next.opened && next.echoed == 1;
        BOOST_TEST(served, "the server did not serve a second client afterwards: " << next.failed.what());
    }
    return allocations;
}

// Every allocation of one complete run, or a stride over them so that the
// sweep stays within about `budget`. Says which in the test log.
template <class Backend>
void sweep_every_allocation(const credentials& with, std::chrono::seconds budget)
{
    run_report warm_up;
    // One run without failures first: OpenSSL's one-time initialisation
    // (providers, error strings) is then out of the count, and a failure
    // there would disable it for the whole process.
    run_with_failed_allocation<Backend>(with, 0, warm_up);
    const auto started = std::chrono::steady_clock::now();
    const auto total = run_with_failed_allocation<Backend>(with, 0, warm_up);
    const auto one_run = std::chrono::steady_clock::now() - started;
    BOOST_REQUIRE_GT(total, 0u);
    BOOST_REQUIRE_EQUAL(warm_up.complete, 2u);

    // A run with a failure costs up to its handshake deadline more than a
    // clean one; allow four clean runs' time per point on average.
    const auto affordable = std::max<std::size_t>(1, static_cast<std::size_t>(budget / (4 * one_run)));
    const std::size_t stride = std::max<std::size_t>(1, (total + affordable - 1) / affordable);
    run_report report;
    for (std::size_t nth = 1; nth <= total; nth += stride) {
        // A crash then names the allocation that was failed (Boost.Test
        // prints the last checkpoint with the signal).
        BOOST_TEST_CHECKPOINT(Backend::name << ", " << with.name << ": failing allocation " << nth << " of " << total);
        run_with_failed_allocation<Backend>(with, nth, report);
    }
    BOOST_TEST_MESSAGE(Backend::name << ", " << with.name << ": " << total << " allocations in a complete run; failed each "
                                     << (stride == 1 ? std::string("one") : std::to_string(stride) + "th one")
                                     << ": " << report.summary());
    BOOST_TEST(report.injected > 0u);
}

} // namespace

#ifdef DTLSPP_HAVE_OPENSSL
// Without the check on HMAC(), a failed computation left an all-zero cookie,
// which anyone could send back and which the listener would have accepted.
BOOST_AUTO_TEST_CASE(an_openssl_cookie_that_cannot_be_computed_is_never_made_and_never_verifies)
{
    BOOST_REQUIRE(openssl_allocator_installed);
    config c;
    c.role = role::server;
    c.cookie_secret.assign(32, 0x5a);
    const detail::cookie_factory cookies(c, &detail::openssl::hmac_sha256, {});
    const std::array<std::byte, 6> peer{std::byte{127}, std::byte{0}, std::byte{0}, std::byte{1}, std::byte{0x9c},
                                        std::byte{0x41}};
    const auto good = cookies.make(peer);
    BOOST_REQUIRE(good.has_value());
    BOOST_REQUIRE(cookies.verify(peer, *good));
    {
        armed_scope every_allocation_fails(openssl_allocations, 1, true);
        BOOST_TEST(!cookies.make(peer).has_value());
        const detail::cookie_value zero{};
        BOOST_TEST(!cookies.verify(peer, zero));
        BOOST_TEST(!cookies.verify(peer, *good));
        BOOST_TEST(openssl_allocations.failed > 0u);
    }
    BOOST_TEST(cookies.verify(peer, *good));
}

// The listener drops a ClientHello it cannot answer with a computed cookie,
// sends nothing for it, and answers the same ClientHello once it can.
BOOST_AUTO_TEST_CASE(an_openssl_listener_that_cannot_compute_a_cookie_drops_the_hello_and_recovers)
{
    BOOST_REQUIRE(openssl_allocator_installed);
    failure f;
    auto srv = server<openssl_backend>::create(server_config(), {}, f);
    BOOST_REQUIRE_MESSAGE(srv, f.what());
    auto client = endpoint<openssl_backend>::connect(client_config(), clock::now(), f);
    BOOST_REQUIRE_MESSAGE(client, f.what());
    bytes hello;
    client->drain([&](std::span<const std::byte> d) { hello.assign(d.begin(), d.end()); });
    BOOST_REQUIRE(!hello.empty());
    const auto from = peer_address::parse("127.0.0.1:40003");
    std::size_t sent = 0;
    auto count_sent = [&](const peer_address&, std::span<const std::byte>) { ++sent; };
    {
        armed_scope every_allocation_fails(openssl_allocations, 1, true);
        srv->receive(from, hello, clock::now());
    }
    srv->drain(count_sent);
    BOOST_TEST(sent == 0u);
    BOOST_TEST(srv->counters().hello_verify_requests == 0u);
    BOOST_TEST(srv->counters().dropped_without_session == 1u);

    srv->receive(from, hello, clock::now());
    srv->drain(count_sent);
    BOOST_TEST(sent == 1u);
    BOOST_TEST(srv->counters().hello_verify_requests == 1u);
}
#endif

// The listener must replace the stack object that verified a cookie; when
// it cannot (out of memory), it must neither crash on the next ClientHello
// nor stop serving. Every allocation from the kth on fails while the server
// takes the ClientHello that carries the cookie. The replacement is made at
// the very end of that receive, so k covers the first and the last 64
// allocations of it, and a stride of 61 in between (mbedTLS answers that
// ClientHello with its whole first flight: thousands of allocations, as
// its bignum code allocates per operation).
BOOST_AUTO_TEST_CASE_TEMPLATE(a_listener_that_cannot_replace_its_stack_object_keeps_serving, Backend, all_backends)
{
    if (!stack_allocations<Backend>::available()) {
        BOOST_TEST_MESSAGE(Backend::name << ": allocations cannot be injected in this build");
        return;
    }
    auto& injector = stack_allocations<Backend>::injector();
    test_clock time;
    time.is_virtual = runs_on_virtual_time<Backend>;
    failure f;
    const auto with = pre_shared_key();
    auto srv = server<Backend>::create(with.server, {}, f);
    BOOST_REQUIRE_MESSAGE(srv, f.what());
    server_under_test<Backend> wire(*srv, time);
    std::size_t port = 41000;
    auto next_address = [&] { return peer_address::parse("127.0.0.1:" + std::to_string(port++)); };

    // Runs a client with allocations failing from the kth on (0: none)
    // during the cookie ClientHello; returns how many that receive made.
    auto run_failing_from = [&](std::size_t k) {
        std::size_t made = 0;
        wire.before_server_receive = [&](std::size_t up_index) {
            if (up_index == 2) injector.arm(k, true); // the ClientHello with the cookie
        };
        wire.after_server_receive = [&] {
            if (injector.armed) made = injector.count;
            injector.disarm();
        };
        const auto faulty = wire.run_client(with.client, next_address(), 1);
        wire.before_server_receive = [](std::size_t) {};
        wire.after_server_receive = [] {};
        return std::pair(faulty, made);
    };

    const auto [clean, total] = run_failing_from(0);
    BOOST_REQUIRE(clean.opened);
    BOOST_REQUIRE_GT(total, 0u);
    std::size_t points = 0;
    for (std::size_t k = 1; k <= total; k += (k < 64 || k + 64 >= total) ? 1 : 61) {
        ++points;
        const auto [faulty, made] = run_failing_from(k);
        BOOST_TEST_CONTEXT("allocations from the " << k << "th of " << total << " on failed")
        {
            BOOST_TEST(!faulty.hung);
            if (faulty.failed) BOOST_TEST(is_dtlspp_failure(faulty.failed), faulty.failed.what());
            const auto next = wire.run_client(with.client, next_address(), 1);
            const bool served = next.opened && next.echoed == 1;
            BOOST_TEST(served, "no second client served: " << next.failed.what());
        }
    }
    BOOST_TEST_MESSAGE(Backend::name << ": the cookie ClientHello takes " << total << " allocations; failed from "
                                     << points << " points on");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(no_single_failed_allocation_crashes_hangs_or_goes_unreported, Backend, all_backends)
{
    if (!stack_allocations<Backend>::available()) {
        BOOST_TEST_MESSAGE(Backend::name << ": allocations cannot be injected in this build");
        return;
    }
    sweep_every_allocation<Backend>(pre_shared_key(), 10s);
    sweep_every_allocation<Backend>(certificates(), 6s);
}
