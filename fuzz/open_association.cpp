// An open association receiving whatever the network sends: the property
// "nothing a network sends ends an association the peer did not end".
//
// Per input, a client and a server complete a real PSK handshake in memory
// (PSK: the cheapest handshake both stacks run, so each input starts from a
// fresh, reproducible association). Input (datagram_input.hpp): byte 0's low
// bit picks the association under test (0: the client endpoint, 1: the
// server's association, reached through server::receive), then the
// datagrams, each delivered as if the peer had sent it. A flagged chunk
// instead has the real peer send its bytes as application data, so the
// fuzzer can mix authentic records (and, with an empty flagged chunk,
// replays of the last one) into its own.
//
// The server's cookie secret is random, as it is for an off-path attacker:
// a ClientHello with a cookie that verifies would rightly replace the
// association (RFC 6347 §4.2.8), and only a peer on the path can make one.
//
// The input holds no keys, so it cannot carry a valid close_notify or any
// record that authenticates: afterwards the association must still be open,
// and every authentic record must have been delivered once, unchanged.
#include "fixtures.hpp"
#include "record_mutator.hpp"

namespace {

using namespace dtlspp;
using namespace dtlspp::fuzz;

constexpr std::size_t prefix_size = 1;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const auto server_context = make_context_or_die<fuzz_backend>(psk_config(role::server));
    static const auto client_context = make_context_or_die<fuzz_backend>(psk_config(role::client));
    const auto input = split_input({data, size}, prefix_size);
    const bool test_server = (input.prefix[0] & 1) != 0;

    handshake_pair<fuzz_backend> pair(server_context, client_context);
    pair.run();
    if (!pair.client().is_open() || !pair.server_side() || !pair.server_side()->is_open())
        finding("the fixture's handshake did not complete");

    const auto now = fixed_now();
    std::vector<std::vector<std::byte>> authentic_sent;
    std::vector<std::byte> last_authentic;
    const auto received = [&]() -> const std::vector<std::vector<std::byte>>& {
        return test_server ? pair.handler.data : pair.client_data;
    };
    const auto deliver = [&](std::span<const std::byte> d) {
        if (test_server) pair.srv().receive(client_address(), d, now, pair.handler);
        else pair.client().receive(d, now, [&](std::span<const std::byte> m) { pair.client_data.emplace_back(m.begin(), m.end()); });
    };

    for (const auto& chunk : input.chunks) {
        if (!chunk.flagged) {
            deliver(chunk.datagram());
        } else if (chunk.bytes.empty()) {
            if (!last_authentic.empty()) deliver(last_authentic);
        } else {
            // The peer's stack seals the bytes: an authentic record.
            auto message = chunk.datagram();
            std::error_code ec;
            if (test_server) {
                message = message.first(std::min(message.size(), pair.client().max_message_size()));
                pair.client().send(message, now, ec);
            } else {
                const auto* side = pair.server_side();
                if (side) message = message.first(std::min(message.size(), side->max_message_size()));
                pair.srv().send(client_address(), message, now, ec);
            }
            if (ec) finding("the peer could not send on its open association: " + ec.message());
            const auto sealed = test_server ? pair.take_from_client() : pair.take_from_server();
            if (sealed.size() != 1) finding("one message did not become one datagram");
            authentic_sent.emplace_back(message.begin(), message.end());
            last_authentic = sealed.front();
            deliver(last_authentic);
        }
        // Whatever the association answers (alerts, retransmissions) goes
        // nowhere, but it must be well-framed.
        test_server ? pair.take_from_server() : pair.take_from_client();
    }

    const auto* association = test_server ? pair.server_side() : &pair.client();
    if (!association)
        finding("the server ended an association the peer never ended: " + pair.handler.last_close.what());
    if (!association->is_open())
        finding(std::string("the association is ") + std::string(to_string(association->state())) +
                " after datagrams that carry no key: " + association->last_failure().what());
    if (received() != authentic_sent)
        finding("authentic records were not delivered once each, unchanged (" + std::to_string(received().size()) +
                " delivered, " + std::to_string(authentic_sent.size()) + " sent)");
    return 0;
}

DTLSPP_FUZZ_RECORD_MUTATOR(prefix_size)
