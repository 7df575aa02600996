// echo_client: connects over DTLS (1.2 by default, 1.3 with --dtls), sends --count messages of --size
// bytes and checks that each comes back.
//
//   echo_client --connect localhost:4433 --ca ca.pem --count 10 --verbose
#include "backends.hpp"
#include "echo.hpp"

#include <iostream>

static const char* const usage =
    "usage: echo_client [options]\n"
    "  --connect HOST:PORT       server address (default 127.0.0.1:4433; [::1]:PORT for IPv6)\n"
    "  --ca FILE                 CAs that sign the server's certificate (verification is on by default)\n"
    "  --server-name NAME        name to check in the server's certificate (default: HOST)\n"
    "  --verify MODE             the server's certificate: required (the default) or none (tests only)\n"
    "  --insecure                the same as --verify none\n"
    "  --cert FILE --key FILE    client certificate and key, if the server asks\n"
    "  --psk IDENTITY:HEXKEY     use this pre-shared key\n"
    "  --alpn LIST               offer these ALPN protocols (comma-separated, most preferred first)\n"
    "  --ciphers POLICY          cipher suites: aead (ECDHE or PSK with AES-GCM or ChaCha20-Poly1305;\n"
    "                            the default and, for now, the only policy)\n"
    "  --mtu N                   largest UDP payload to send (default 1200)\n"
    "  --backend NAME            openssl, mbedtls or wolfssl (those built in)\n"
    "  --dtls VERSIONS           1.2 (the default), 1.3 or 1.2-1.3; DTLS 1.3 needs --backend wolfssl\n"
    "  --list-backends           print the backends built in, then exit\n"
    "  --count N                 messages to echo (default 1)\n"
    "  --size BYTES              bytes per message (default 32)\n"
    "  --handshake-timeout-ms N  give up the handshake after this long (default 30000)\n"
    "  --connection-id N         ask the server for an N-byte Connection ID (0 to 32, RFC 9146)\n"
    "  --rebind-after K          after K echoes, move to a new local port (a NAT rebinding)\n"
    "  --verbose                 print one line per datagram\n"
    "  --pcap FILE               write every datagram in and out to FILE (pcap, real addresses)\n"
    "  --keylog FILE             append the session keys to FILE (NSS key log, for Wireshark);\n"
    "                            without it, the SSLKEYLOGFILE environment variable is used\n";

int main(int argc, char** argv)
{
    return examples::run_program("echo_client", usage, argc, argv,
                                 {"--connect", "--ca", "--server-name", "--cert", "--key", "--psk", "--mtu", "--backend",
                                  "--count", "--size", "--handshake-timeout-ms", "--pcap", "--keylog",
                                  "--connection-id", "--rebind-after", "--verify", "--alpn", "--ciphers", "--dtls"},
                                 {"--verbose", "--insecure"}, [&](const examples::arguments& args) {
        dtlspp::config c;
        c.role = dtlspp::role::client;
        examples::apply_common(args, c);
        if (args.has("--psk") && !args.has("--ca")) c.verification = dtlspp::peer_verification::none;
        if (args.has("--verify")) {
            // config::validate: optional is for servers only.
            c.verification = examples::parse_verification(args.get("--verify"), {"none", "required"});
            if (args.has("--insecure") && *c.verification != dtlspp::peer_verification::none)
                throw examples::usage_error("--insecure and --verify " + args.get("--verify") + " contradict each other");
        }
        examples::capture cap;
        examples::apply_capture(args, cap, c);
        const int status =
            examples::with_backend(args, [&]<class Backend>() { return examples::run_echo_client<Backend>(args, c, cap); });
        cap.close();
        return status;
    });
}
