/* wolfSSL build settings for dtlspp (WOLFSSL_USER_SETTINGS): what
 * `./configure --enable-dtls --enable-dtls13 --enable-dtlscid
 * --enable-dtls-mtu --enable-psk --enable-keying-material --enable-srtp
 * --enable-secret-callback --enable-sni --enable-alpn --enable-hrrcookie`
 * would give, written out so that the build needs no autotools.
 *
 * Everything that includes a wolfSSL header must see the same settings
 * (they change structure layouts): the dependency in meson.build passes
 * -DWOLFSSL_USER_SETTINGS and this folder to its users. */
#ifndef DTLSPP_WOLFSSL_USER_SETTINGS_H
#define DTLSPP_WOLFSSL_USER_SETTINGS_H

/* A program may link OpenSSL too (dtlspp's tests run both stacks in one
 * binary): no OpenSSL-compatible names in wolfSSL's headers. */
#define OPENSSL_COEXIST

/* Protocols: DTLS 1.2 and 1.3 (TLS 1.3 code is shared), nothing older. */
#define WOLFSSL_DTLS
#define WOLFSSL_DTLS13
#define WOLFSSL_TLS13
#define WOLFSSL_W64_WRAPPER
#define NO_OLD_TLS
#define WOLFSSL_SEND_HRR_COOKIE      /* DTLS 1.3 stateless cookie in HelloRetryRequest */
#define WOLFSSL_DTLS_CID             /* RFC 9146 / RFC 9147 Connection IDs */
#define WOLFSSL_DTLS_MTU             /* wolfSSL_dtls_set_mtu */
#define WOLFSSL_DTLS_CH_FRAG         /* a DTLS 1.3 ClientHello over several datagrams */
#define WOLFSSL_DTLS_DROP_STATS
#define HAVE_TLS_EXTENSIONS
#define HAVE_SUPPORTED_CURVES
#define HAVE_EXTENDED_MASTER
#define HAVE_ENCRYPT_THEN_MAC
#define HAVE_SNI
#define HAVE_ALPN
#define HAVE_SERVER_RENEGOTIATION_INFO
#define HAVE_KEYING_MATERIAL         /* RFC 5705 / RFC 8446 exporters */
#define WOLFSSL_SRTP                 /* DTLS-SRTP use_srtp */
#define HAVE_SECRET_CALLBACK         /* key log (NSS format) */
#define KEEP_PEER_CERT
#define SESSION_CERTS
#define WOLFSSL_ALWAYS_VERIFY_CB
#define WOLFSSL_VERIFY_CB_ALL_CERTS
#define NO_SESSION_CACHE             /* dtlspp never resumes */
#define WOLFSSL_IP_ALT_NAME          /* server_name may be an IP address (SAN iPAddress) */
/* Time runs on the caller's clock: dtlspp calls wolfSSL_dtls_got_timeout
 * when its own timer expires, and tells wolfSSL the time of each call
 * (dtlspp_wolfssl_clock.c provides TimeNowInMilliseconds and LowResTimer).
 * DTLS 1.3 resends at most once per DTLS13_MIN_RTX_INTERVAL on that clock,
 * however many ACKs ask for it: wolfSSL's default, a second, would swallow
 * the timer's resends at dtlspp's shorter timeouts (down to 100 ms in its
 * tests); 50 ms keeps an exchange of ACKs and resends from feeding itself. */
#define USER_TICKS
#define DTLS13_MIN_RTX_INTERVAL 50
/* The input buffer of a DTLS read is the MTU plus this: room for a peer
 * whose datagrams are larger than ours (its max_udp_payload is its own). */
#define WOLFSSL_DTLS_MTU_ADDITIONAL_READ_BUFFER 16384
#define NO_WOLFSSL_STUB
/* wolfSSL's heap (dtlspp_wolfssl_memory.c): record buffers come from a
 * small cache per thread instead of a malloc and a free per record. */
#define XMALLOC_USER

/* PSK: plain PSK (WOLFSSL_STATIC_PSK) and ECDHE-PSK suites, and TLS 1.3
 * external PSKs; on unless NO_PSK. */
#define WOLFSSL_STATIC_PSK

/* Crypto: ECDHE over P-256/P-384/X25519, ECDSA and RSA(-PSS) signatures,
 * AES-GCM and ChaCha20-Poly1305, SHA-2, HKDF. */
#define HAVE_ECC
#define ECC_SHAMIR
#define ECC_TIMING_RESISTANT
#define HAVE_ECC384
#define HAVE_ECC256
#define HAVE_CURVE25519
#define WC_RSA_PSS
#define WC_RSA_BLINDING
#define WOLFSSL_KEY_GEN
#define HAVE_AESGCM
#define WOLFSSL_AES_DIRECT
#define HAVE_AES_ECB
#define WOLFSSL_AES_COUNTER
#define HAVE_CHACHA
#define HAVE_POLY1305
#define HAVE_ONE_TIME_AUTH
#define WOLFSSL_SHA384
#define WOLFSSL_SHA512
#define WOLFSSL_SHA224
#define HAVE_HKDF
#define HAVE_FFDHE_2048
#define HAVE_DH_DEFAULT_PARAMS
#define WOLFSSL_BASE64_ENCODE
#define WOLFSSL_CERT_EXT
#define WOLFSSL_ASN_TEMPLATE
#define HAVE_AESCCM
#define WOLFSSL_SP_MATH_ALL
#define WOLFSSL_HAVE_SP_RSA
#define WOLFSSL_HAVE_SP_ECC
#define WOLFSSL_HAVE_SP_DH
#define WOLFSSL_SP_4096
#define WOLFSSL_SP_384
#define TFM_TIMING_RESISTANT
#define HAVE_HASHDRBG
#define HAVE_THREAD_LS
#define WOLFSSL_PUBLIC_MP

/* Off: what dtlspp never uses. */
#define NO_DSA
#define NO_RC4
#define NO_MD4
#define NO_DES3
#define WOLFSSL_NO_SHAKE128
#define WOLFSSL_NO_SHAKE256

#endif
