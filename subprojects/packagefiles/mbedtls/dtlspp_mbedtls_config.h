/*
 * dtlspp's changes to mbedTLS 3.6's default configuration (mbedtls_config.h).
 *
 * mbedTLS includes this file right after its own configuration, through
 * MBEDTLS_USER_CONFIG_FILE, so only the differences are written here. It
 * changes the layout of structures such as mbedtls_ssl_context, so every
 * translation unit that includes an mbedTLS header must see the same
 * definition: mbedtls_dep carries it as a compile argument.
 *
 * Everything DTLS 1.2 in dtlspp relies on is on in the default configuration
 * and stays on: MBEDTLS_SSL_PROTO_TLS1_2 with MBEDTLS_SSL_PROTO_DTLS,
 * HelloVerifyRequest cookies (MBEDTLS_SSL_DTLS_HELLO_VERIFY,
 * MBEDTLS_SSL_COOKIE_C), the replay window (MBEDTLS_SSL_DTLS_ANTI_REPLAY),
 * client port reuse, ALPN, AES-GCM, ChaCha20-Poly1305, the x25519, secp256r1
 * and secp384r1 groups, X.509 with PEM, file loading (MBEDTLS_FS_IO),
 * CTR_DRBG over the entropy module, and MBEDTLS_HAVE_TIME for certificate
 * dates and cookie expiry.
 */
#ifndef DTLSPP_MBEDTLS_CONFIG_H
#define DTLSPP_MBEDTLS_CONFIG_H

/* TLS 1.3 is not used: dtlspp speaks DTLS 1.2, and mbedTLS 3.6 has no
 * DTLS 1.3. Turning it off drops the ssl_tls13_*.c code from the link and
 * keeps handshakes from offering it over TLS. */
#undef MBEDTLS_SSL_PROTO_TLS1_3
#undef MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE
#undef MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_ENABLED
#undef MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED
#undef MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED

/* Key exchanges: the ones dtlspp's cipher suites use (ECDHE with ECDSA or
 * RSA certificates, plain PSK, ECDHE-PSK) stay. The others have no forward
 * secrecy (RSA key transport, with or without PSK, and fixed ECDH) or use
 * finite-field DH, which no dtlspp cipher suite uses; leaving them out
 * shrinks the ClientHello and the code. */
#undef MBEDTLS_KEY_EXCHANGE_RSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_DHE_RSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_DHE_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_RSA_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDH_ECDSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDH_RSA_ENABLED

/* Connection IDs (RFC 9146) are on by default; stated here because dtlspp
 * depends on it. COMPAT 0 selects the RFC's extension number and record
 * content type rather than the pre-RFC draft's, so mbedTLS interoperates
 * with OpenSSL and GnuTLS. IDs up to 32 bytes either way is mbedTLS's
 * default and plenty. */
#ifndef MBEDTLS_SSL_DTLS_CONNECTION_ID
#define MBEDTLS_SSL_DTLS_CONNECTION_ID
#endif
#undef MBEDTLS_SSL_DTLS_CONNECTION_ID_COMPAT
#define MBEDTLS_SSL_DTLS_CONNECTION_ID_COMPAT 0
#define MBEDTLS_SSL_CID_IN_LEN_MAX 32
#define MBEDTLS_SSL_CID_OUT_LEN_MAX 32

/* DTLS-SRTP key negotiation (RFC 5764), off by default; enabled so media
 * applications can use the use_srtp extension. */
#define MBEDTLS_SSL_DTLS_SRTP

/* No CBC mode. Every suite dtlspp offers is an AEAD (AES-GCM or
 * ChaCha20-Poly1305, detail/policy.hpp), so no DTLS record is ever CBC;
 * with CBC compiled in, mbedTLS reserves room for CBC padding and an HMAC
 * (288 bytes) in both record buffers of every connection. It also drops
 * the CBC suites (Lucky Thirteen and its kin) from the library outright.
 * The one other user is PEM decryption of password-protected keys, which
 * dtlspp does not take (it has no key password). */
#undef MBEDTLS_CIPHER_MODE_CBC

/* Record buffers sized for datagrams rather than TLS's 16 KiB. Each
 * connection holds one input and one output buffer of this much plaintext
 * plus 93 bytes (counter and header, explicit IV, tag, Connection ID) for
 * its whole life, so this is most of what a connection costs: 1536 instead
 * of 16384 saves about 29 KiB a connection.
 *
 * What a connection can then carry:
 * - a received record of up to 1536 bytes of plaintext. dtlspp reads this
 *   limit (backend_traits::max_record_in) and drops a longer record before
 *   mbedTLS sees it, counted as dropped_bad_length. A datagram longer than
 *   the input buffer (about 1600 bytes) cannot be read either and is lost
 *   like any datagram. Everything a peer sends over a 1500-byte path (at
 *   most 1472 bytes of UDP payload) fits;
 * - a sent record of up to 1536 bytes of plaintext: max_message_size() is
 *   the smaller of this and what max_udp_payload leaves;
 * - handshake messages of up to 1536 bytes each, ours and the peer's (a
 *   fragmented message is reassembled into the input buffer). The
 *   Certificate message is the largest: it carries a chain of up to about
 *   1510 bytes of DER. An RSA-4096 certificate with its intermediate, as in
 *   tests/certs, is 1484 bytes; ECDSA chains are far smaller. A longer
 *   chain needs a larger buffer: -Dmbedtls:record_buffer=N (up to 16384)
 *   sets both, at about 2 KiB a connection for each KiB more. */
#ifndef DTLSPP_MBEDTLS_RECORD_BUFFER
#define DTLSPP_MBEDTLS_RECORD_BUFFER 1536 /* -Dmbedtls:record_buffer=N */
#endif
#define MBEDTLS_SSL_IN_CONTENT_LEN DTLSPP_MBEDTLS_RECORD_BUFFER
#define MBEDTLS_SSL_OUT_CONTENT_LEN DTLSPP_MBEDTLS_RECORD_BUFFER

/* Locks for what is shared between connections: udp_server_group runs one
 * context per worker thread, and mbedTLS 3.6's PSA key store and its RNG
 * state are process-wide. Windows has one worker per group, and keeps
 * mbedTLS without threads. */
#if !defined(_WIN32)
#define MBEDTLS_THREADING_C
#define MBEDTLS_THREADING_PTHREAD
#endif

/* Out-of-order handshake messages and records of the next epoch that a
 * connection may buffer during a handshake: 32 KiB by default. With no
 * message above 1536 bytes, a flight's worth fits in 8 KiB; the bound is
 * what a handshake in progress can cost at most. */
#define MBEDTLS_SSL_DTLS_MAX_BUFFERING 8192

/* Keep only a digest of the peer's certificate after the handshake, not
 * the parsed chain (about 1.5 KiB a connection on the side that verified a
 * certificate). dtlspp verifies during the handshake and never reads the
 * peer's chain afterwards; the digest is what mbedTLS needs to check that
 * a peer does not change certificates on renegotiation, which dtlspp does
 * not do anyway. mbedtls_ssl_get_peer_cert() returns NULL as a result. */
#undef MBEDTLS_SSL_KEEP_PEER_CERTIFICATE

#endif /* DTLSPP_MBEDTLS_CONFIG_H */
