// A handshake in progress receiving whatever the network sends, at each
// flight of a certificate handshake (ECDSA server, verifying client).
//
// Input (datagram_input.hpp): byte 0 picks the association under test and
// where its handshake stopped:
//   0  the client, after sending its first ClientHello
//   1  the client, after the HelloVerifyRequest (second ClientHello sent)
//   2  the server's association, after the verified ClientHello (its
//      ServerHello ... ServerHelloDone flight sent)
//   3  the client, after the server's flight (its Finished sent, waiting
//      for the server's ChangeCipherSpec and Finished)
// then the datagrams delivered to it as if from its peer.
//
// Properties: no crash, no leak, everything sent is well-framed, and the
// handshake ends: past its deadline the association is open or has failed
// with an error, never still handshaking (dtlspp's handshake never loops).
#include "fixtures.hpp"
#include "record_mutator.hpp"

namespace {

using namespace dtlspp;
using namespace dtlspp::fuzz;

constexpr std::size_t prefix_size = 1;
constexpr int stage_count = 4;

template <class Association>
void check_ended(const Association& association, const char* who)
{
    if (association.state() == endpoint_state::handshaking)
        finding(std::string(who) + " is still handshaking past its deadline");
    if (association.state() == endpoint_state::failed && !association.error())
        finding(std::string(who) + " failed without an error");
    if (association.state() != endpoint_state::open && association.next_deadline())
        finding(std::string(who) + " has a deadline though it is " + std::string(to_string(association.state())));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const auto server_context = make_context_or_die<fuzz_backend>(certificate_server_config());
    static const auto client_context = make_context_or_die<fuzz_backend>(certificate_client_config());
    const auto input = split_input({data, size}, prefix_size);
    const int stage = input.prefix[0] % stage_count;

    handshake_pair<fuzz_backend> pair(server_context, client_context);
    // Walk the real handshake up to the chosen flight; what the side under
    // test sent last stays undelivered.
    auto hello = pair.take_from_client();
    if (stage >= 1) {
        pair.to_server(hello);
        pair.to_client(pair.take_from_server()); // HelloVerifyRequest
        hello = pair.take_from_client();
    }
    if (stage >= 2) {
        pair.to_server(hello);
        if (!pair.server_side()) finding("the fixture's second ClientHello did not verify");
    }
    if (stage >= 3) {
        pair.to_client(pair.take_from_server());
        pair.take_from_client();
    }

    const auto now = fixed_now();
    const bool test_server = stage == 2;
    for (const auto& chunk : input.chunks) {
        if (test_server) {
            pair.srv().receive(client_address(), chunk.datagram(), now, pair.handler);
            pair.take_from_server();
        } else {
            pair.to_client({std::vector<std::byte>(chunk.datagram().begin(), chunk.datagram().end())});
            pair.take_from_client();
        }
    }

    const auto late = now + client_context->settings().handshake_deadline + std::chrono::seconds(1);
    if (test_server) {
        const auto* side = pair.server_side();
        if (side && side->state() == endpoint_state::handshaking) {
            pair.srv().on_timeout(late, pair.handler);
            pair.take_from_server();
            side = pair.server_side();
            // The server forgets a failed association; one still there must
            // have finished its handshake.
            if (side) check_ended(*side, "the server's association");
        }
    } else {
        pair.client().on_timeout(late);
        pair.take_from_client();
        check_ended(pair.client(), "the client");
    }
    return 0;
}

DTLSPP_FUZZ_RECORD_MUTATOR(prefix_size)
