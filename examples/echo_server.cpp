// echo_server: a DTLS echo server (1.2 by default, 1.3 with --dtls) on one UDP port, with one or more workers.
//
//   echo_server --listen 127.0.0.1:4433 --cert server.pem --key server.key
//   echo_server --listen [::1]:4433 --psk client1:00112233445566778899aabbccddeeff
#include "backends.hpp"
#include "echo.hpp"

#include <iostream>

static const char* const usage =
    "usage: echo_server [options]\n"
    "  --listen HOST:PORT        address to bind (default 127.0.0.1:4433; [::1]:PORT for IPv6)\n"
    "  --cert FILE --key FILE    certificate chain and private key (PEM)\n"
    "  --ca FILE                 CAs that sign client certificates; with it, --verify defaults to required\n"
    "  --verify MODE             client certificates: none (not asked for), optional (asked for, checked\n"
    "                            if sent) or required (asked for, handshake fails without one); optional\n"
    "                            and required need --ca (default: required with --ca, none without)\n"
    "  --alpn LIST               accept these ALPN protocols (comma-separated, RFC 7301); a client that\n"
    "                            offers none of them is refused with a no_application_protocol alert\n"
    "  --ciphers POLICY          cipher suites: aead (ECDHE or PSK with AES-GCM or ChaCha20-Poly1305;\n"
    "                            the default and, for now, the only policy)\n"
    "  --psk IDENTITY:HEXKEY     accept this pre-shared key\n"
    "  --mtu N                   largest UDP payload to send (default 1200)\n"
    "  --backend NAME            openssl, mbedtls or wolfssl (those built in)\n"
    "  --dtls VERSIONS           1.2 (the default), 1.3 or 1.2-1.3; DTLS 1.3 needs --backend wolfssl\n"
    "  --list-backends           print the backends built in, then exit\n"
    "  --max-sessions N          refuse handshakes beyond N associations (default 10000)\n"
    "  --idle-timeout-ms N       close associations idle this long (default 60000)\n"
    "  --handshake-timeout-ms N  fail handshakes not done by then (default 30000)\n"
    "  --exit-after N            stop after N associations have ended (default: run until SIGINT)\n"
    "  --workers N               N threads, each with its own socket on the same port (SO_REUSEPORT,\n"
    "                            Linux); 0: one per CPU (default 1)\n"
    "  --share-port              let other echo_server processes bind the same port (SO_REUSEPORT)\n"
    "  --worker-index N          this process's first worker's place among the port's sockets, in\n"
    "                            the order they were bound (with --share-port; Connection ID routing)\n"
    "  --cookie-secret HEX       the cookie secret (16 bytes or more), the same on every server\n"
    "                            that shares the port or the load balancer\n"
    "  --connection-id N         ask clients for an N-byte Connection ID (0 to 32, RFC 9146):\n"
    "                            associations then follow a client to a new address\n"
    "  --verbose                 print one line per datagram, and each association's drop\n"
    "                            counters when it closes\n"
    "  --pcap FILE               write every datagram in and out to FILE (pcap, real addresses)\n"
    "  --keylog FILE             append the session keys to FILE (NSS key log, for Wireshark);\n"
    "                            without it, the SSLKEYLOGFILE environment variable is used\n";

int main(int argc, char** argv)
{
    return examples::run_program("echo_server", usage, argc, argv,
                                 {"--listen", "--cert", "--key", "--ca", "--psk", "--mtu", "--backend", "--max-sessions",
                                  "--idle-timeout-ms", "--handshake-timeout-ms", "--exit-after", "--pcap", "--keylog",
                                  "--connection-id", "--workers", "--worker-index", "--cookie-secret", "--verify", "--alpn",
                                  "--ciphers", "--dtls"},
                                 {"--verbose", "--share-port"}, [&](const examples::arguments& args) {
        dtlspp::config c;
        c.role = dtlspp::role::server;
        examples::apply_common(args, c);
        if (args.has("--ca")) c.verification = dtlspp::peer_verification::required;
        if (args.has("--verify")) {
            c.verification = examples::parse_verification(args.get("--verify"), {"none", "optional", "required"});
            if (*c.verification != dtlspp::peer_verification::none && !args.has("--ca"))
                throw examples::usage_error("--verify " + args.get("--verify") +
                                            ": needs --ca, the CAs that sign client certificates");
        }
        examples::capture cap;
        examples::apply_capture(args, cap, c);
        const int status =
            examples::with_backend(args, [&]<class Backend>() { return examples::run_echo_server<Backend>(args, c, cap); });
        cap.close();
        return status;
    });
}
