// server<Backend>::receive with any datagrams from any address: the front
// door that every stranger on the network reaches before a cookie verifies.
//
// Input (datagram_input.hpp): a 3-byte prefix picks the peer address (byte 0:
// even IPv4 10.0.0.x, odd IPv6 [fd00::x]; bytes 1-2: the port), then the
// datagrams it sends. The server's cookie secret is the seed generator's, so
// a recorded second ClientHello passes the cookie check and what follows it
// reaches a real association.
//
// Properties: no crash, no leak, everything the server sends is well-framed,
// and once every timer has run out (idle expiry) no session is left.
#include "fixtures.hpp"
#include "record_mutator.hpp"

#include <string>

namespace {

using namespace dtlspp;
using namespace dtlspp::fuzz;

constexpr std::size_t prefix_size = 3;

peer_address address_from(const std::vector<std::uint8_t>& prefix)
{
    const auto host = std::to_string(prefix[0] >> 1);
    const auto port = std::to_string(prefix[1] << 8 | prefix[2]);
    return peer_address::parse((prefix[0] & 1) ? "[fd00::" + host + "]:" + port : "10.0.0." + host + ":" + port);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const auto context = make_context_or_die<fuzz_backend>(certificate_server_config());
    const auto input = split_input({data, size}, prefix_size);
    const auto from = address_from(input.prefix);

    failure f;
    auto srv = server<fuzz_backend>::create(context, server_settings{}, f);
    if (!srv) finding("server::create failed: " + f.what());
    recording_handler handler;
    const auto drain = [&] {
        srv->drain([](const peer_address&, std::span<const std::byte> d) { check_well_framed(d, "the server"); });
    };

    const auto now = fixed_now();
    for (const auto& chunk : input.chunks) {
        srv->receive(from, chunk.datagram(), now, handler);
        drain();
    }
    srv->on_timeout(now, handler);
    drain();
    // Past every deadline: handshakes time out, open associations expire.
    srv->on_timeout(now + std::chrono::hours(2), handler);
    drain();
    if (srv->session_count() != 0)
        finding(std::to_string(srv->session_count()) + " sessions left after every timer ran out");
    return 0;
}

DTLSPP_FUZZ_RECORD_MUTATOR(prefix_size)
