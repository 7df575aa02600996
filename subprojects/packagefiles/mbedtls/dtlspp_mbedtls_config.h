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

/* Record buffers sized for datagrams rather than TLS's 16 KiB. Each
 * connection holds one input and one output buffer of about this much
 * plaintext plus record overhead, so this cuts a connection's memory by
 * roughly 24 KiB. The cost: a peer's record or handshake message (after
 * reassembly) with more than 4096 bytes of plaintext is not accepted, and
 * our own handshake messages, the certificate chain above all, must fit
 * 4096 bytes. A datagram on a typical 1500-byte path is far smaller. */
#define MBEDTLS_SSL_IN_CONTENT_LEN 4096
#define MBEDTLS_SSL_OUT_CONTENT_LEN 4096

#endif /* DTLSPP_MBEDTLS_CONFIG_H */
