// Writes the seed corpora of fuzz/corpus/ from real handshakes run in
// memory over each stack and each pair of stacks, in the input format of
// each target (datagram_input.hpp):
//
//   fuzz_seed_generator OUTPUT_DIR     # e.g. fuzz/corpus
//
// It uses the targets' own configs (and so their cookie secret), so a
// recorded second ClientHello still verifies when the fuzzer replays it.
#include "fixtures.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

using namespace dtlspp;
using namespace dtlspp::fuzz;
namespace fs = std::filesystem;

using datagrams = std::vector<std::vector<std::byte>>;
using flights = std::vector<std::pair<bool, datagrams>>;

fs::path output_dir;

void write_seed(const std::string& target, const std::string& name, const std::vector<std::uint8_t>& bytes)
{
    const auto dir = output_dir / target;
    fs::create_directories(dir);
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
        std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
        std::exit(1);
    }
}

datagram_chunk chunk_of(const std::vector<std::byte>& d, bool flagged = false)
{
    datagram_chunk c;
    c.flagged = flagged;
    for (auto b : d) c.bytes.push_back(std::to_integer<std::uint8_t>(b));
    return c;
}

datagram_input input_of(std::vector<std::uint8_t> prefix, const datagrams& ds)
{
    datagram_input in;
    in.prefix = std::move(prefix);
    for (const auto& d : ds) in.chunks.push_back(chunk_of(d));
    return in;
}

// The certificate handshake, flight by flight: ClientHello, HVR, ClientHello
// with cookie, the server's flight, the client's flight, the server's
// ChangeCipherSpec + Finished.
template <class Client, class Server>
flights certificate_handshake()
{
    flights recorded;
    handshake_pair<Client, Server> pair(make_context_or_die<Server>(certificate_server_config()),
                                        make_context_or_die<Client>(certificate_client_config()));
    pair.run(&recorded);
    if (!pair.client().is_open() || recorded.size() != 6) {
        std::fprintf(stderr, "the %s -> %s handshake did not complete in 6 flights (%zu)\n",
                     std::string(Client::name).c_str(), std::string(Server::name).c_str(), recorded.size());
        std::exit(1);
    }
    return recorded;
}

template <class Client, class Server>
void seeds_for_pair()
{
    const std::string label = std::string(Client::name) + "-" + std::string(Server::name);
    const auto hs = certificate_handshake<Client, Server>();
    const std::vector<std::uint8_t> address_prefix = {2, 0xc3, 0x50}; // 10.0.0.1:50000, as client_address()

    // front_door: the client's datagrams, from the first ClientHello on.
    write_seed("front_door", label + "-client-hello", join_input(input_of(address_prefix, hs[0].second)));
    write_seed("front_door", label + "-hello-with-cookie", join_input(input_of(address_prefix, hs[2].second)));
    datagrams all_client;
    for (int i : {0, 2, 4}) all_client.insert(all_client.end(), hs[i].second.begin(), hs[i].second.end());
    write_seed("front_door", label + "-client-flights", join_input(input_of(address_prefix, all_client)));

    // handshaking: at each stage, what the real peer sent next.
    const int next_flight[] = {1, 3, 4, 5};
    for (std::uint8_t stage = 0; stage < 4; ++stage)
        write_seed("handshaking", label + "-stage-" + std::to_string(stage),
                   join_input(input_of({stage}, hs[next_flight[stage]].second)));

    // trace: every flight, sent (flagged) and received.
    datagram_input wire;
    for (const auto& [to_server, flight] : hs)
        for (const auto& d : flight) wire.chunks.push_back(chunk_of(d, to_server));
    write_seed("trace", label + "-handshake", join_input(wire));
}

// A PSK handshake and one message each way: epoch-1 records with the
// framing of real ones, for open_association.
template <class Backend>
void open_association_seeds()
{
    const std::string label(Backend::name);
    handshake_pair<Backend> pair(make_context_or_die<Backend>(psk_config(role::server)),
                                 make_context_or_die<Backend>(psk_config(role::client)));
    flights recorded;
    pair.run(&recorded);
    const std::string text = "hello";
    const auto message = std::as_bytes(std::span(text.data(), text.size()));
    pair.client().send(message, fixed_now());
    const auto from_client = pair.take_from_client();
    std::error_code ec;
    pair.srv().send(client_address(), message, fixed_now(), ec);
    const auto from_server = pair.take_from_server();
    if (ec || from_client.size() != 1 || from_server.size() != 1 || recorded.empty()) {
        std::fprintf(stderr, "the %s PSK association did not carry a message\n", label.c_str());
        std::exit(1);
    }
    std::vector<std::uint8_t> hello(text.begin(), text.end());
    for (std::uint8_t side = 0; side < 2; ++side) {
        // From the peer of the side under test: a record of its framing, an
        // authentic message (flagged chunk), a replay of it (empty flagged
        // chunk), and its last handshake flight again.
        const auto& peer_record = side == 0 ? from_server : from_client;
        auto in = input_of({side}, peer_record);
        in.chunks.push_back({true, hello});
        in.chunks.push_back({true, {}});
        const auto& last_flight = side == 0 ? recorded.back() : recorded[recorded.size() - 2];
        for (const auto& d : last_flight.second) in.chunks.push_back(chunk_of(d));
        write_seed("open_association", label + (side == 0 ? "-client" : "-server"), join_input(in));
    }
}

void config_seeds()
{
    const auto seed = [](std::uint8_t selector, const std::string& file, const std::string& name) {
        const auto text = read_cert(file);
        std::vector<std::uint8_t> bytes{selector};
        bytes.insert(bytes.end(), text.begin(), text.end());
        write_seed("config", name, bytes);
    };
    seed(0, "server-ecdsa.pem", "chain-ecdsa");
    seed(0, "server-rsa2048.pem", "chain-rsa2048");
    seed(1, "server-ecdsa.key", "key-ecdsa");
    seed(2, "ca.pem", "trusted-ca");
    // validate(): a server with a PSK, an ALPN list and timers.
    write_seed("config", "fields", {3, 0x03, 0x00, 0x04, 0xb0, 0, 0, 0x03, 0xe8, 0, 0, 0xea, 0x60, 0, 0, 0x75, 0x30,
                                    0, 0, 0, 0x3c, 32, 4, 'p', 's', 'k', '1', 32, 1, 0, 2, 'h', '2'});
}

void address_seeds()
{
    const char* samples[] = {"127.0.0.1:4433", "[::1]:4433", "[fe80::1%1]:5684", "10.0.0.1:0", "localhost:443"};
    int n = 0;
    for (const std::string s : samples)
        write_seed("address", "sample-" + std::to_string(n++), std::vector<std::uint8_t>(s.begin(), s.end()));
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    output_dir = argv[1];
#if defined(DTLSPP_FUZZ_OPENSSL)
    seeds_for_pair<openssl_backend, openssl_backend>();
    open_association_seeds<openssl_backend>();
#endif
#if defined(DTLSPP_FUZZ_MBEDTLS)
    seeds_for_pair<mbedtls_backend, mbedtls_backend>();
    open_association_seeds<mbedtls_backend>();
#endif
#if defined(DTLSPP_FUZZ_OPENSSL) && defined(DTLSPP_FUZZ_MBEDTLS)
    seeds_for_pair<openssl_backend, mbedtls_backend>();
    seeds_for_pair<mbedtls_backend, openssl_backend>();
#endif
    config_seeds();
    address_seeds();
    return 0;
}
