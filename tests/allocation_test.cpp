// In steady state an association allocates nothing per datagram: every
// C++ heap allocation is counted while an open association echoes.
#define BOOST_TEST_MODULE allocation
#include <boost/test/unit_test.hpp>

#include "backends.hpp"
#include "support/harness.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

#include "support/counting_new.hpp"

using namespace dtlspp;
using namespace dtlspp::test;

namespace {

template <class Backend>
struct echo_handler {
    server<Backend>* srv;
    time_point now;
    void on_data(const peer_address& from, std::span<const std::byte> data)
    {
        std::error_code ec;
        srv->send(from, data, now, ec);
    }
};

} // namespace

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
    echo_round(500);
    const auto during = allocations.load() - before;
    BOOST_TEST(echoed - before_echoed == 500u);
    BOOST_TEST(during == 0u, "allocations during 500 echoes: " << during);
}
