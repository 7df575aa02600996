// The public-key work one full handshake cannot avoid, timed with the same
// library in the same run: ECDHE key generation + shared secret on each
// side, the server's signature and the client's check of it, and the
// client's verification of the certificate chain (leaf parsed from DER,
// then checked against ca.pem, an ECDSA P-256 root).
//
// The ECDHE group is X25519: both backends offer it first and both stacks
// negotiate it with each other, whatever the certificate's key type.
#pragma once

#include "common.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include <array>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>

namespace bench {

struct floor_ms {
    double ecdhe = 0;       // keygen + derive, one side
    double sign = 0;        // server
    double verify = 0;      // client, the ServerKeyExchange signature
    double chain = 0;       // client, the certificate chain
    double server() const { return ecdhe + sign; }
    double client() const { return ecdhe + verify + chain; }
    double total() const { return server() + client(); }
};

// Milliseconds per call of f, over about `seconds` of CPU.
inline double time_op(const std::function<void()>& f, double seconds)
{
    f(); // warm caches and lazy initialisation
    int n = 0;
    const double t0 = process_cpu();
    double t = t0;
    do {
        for (int i = 0; i < 4; ++i) f();
        n += 4;
        t = process_cpu();
    } while (t - t0 < seconds);
    return (t - t0) * 1000.0 / n;
}

namespace floor_openssl {

inline EVP_PKEY* read_key(const std::string& path)
{
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) throw std::runtime_error("cannot open " + path);
    EVP_PKEY* k = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    return k;
}
inline X509* read_cert(const std::string& path)
{
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) throw std::runtime_error("cannot open " + path);
    X509* c = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    return c;
}

// `pss`: TLS 1.2 peers that both offer rsa_pss_rsae_* (OpenSSL does) sign
// with RSA-PSS; the cost is the same modular exponentiation either way.
inline floor_ms measure(const std::string& leaf, bool pss, double seconds)
{
    floor_ms r;
    EVP_PKEY* peer = nullptr;
    {
        EVP_PKEY_CTX* k = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr);
        EVP_PKEY_keygen_init(k);
        EVP_PKEY_keygen(k, &peer);
        EVP_PKEY_CTX_free(k);
    }
    r.ecdhe = time_op(
        [&] {
            EVP_PKEY* mine = nullptr;
            EVP_PKEY_CTX* k = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr);
            EVP_PKEY_keygen_init(k);
            EVP_PKEY_keygen(k, &mine);
            EVP_PKEY_CTX_free(k);
            EVP_PKEY_CTX* d = EVP_PKEY_CTX_new(mine, nullptr);
            EVP_PKEY_derive_init(d);
            EVP_PKEY_derive_set_peer(d, peer);
            unsigned char secret[64];
            std::size_t n = sizeof secret;
            EVP_PKEY_derive(d, secret, &n);
            EVP_PKEY_CTX_free(d);
            EVP_PKEY_free(mine);
        },
        seconds);
    EVP_PKEY_free(peer);

    EVP_PKEY* key = read_key(cert_path(leaf + ".key"));
    X509* cert = read_cert(cert_path(leaf + ".pem"));
    EVP_PKEY* pub = X509_get0_pubkey(cert);
    const bool rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
    // What a ServerKeyExchange signs: two randoms and the ECDH parameters.
    std::array<unsigned char, 32 + 32 + 36> message{};
    std::array<unsigned char, 512> signature{};
    std::size_t signature_length = signature.size();
    auto set_padding = [&](EVP_PKEY_CTX* p) {
        if (rsa && pss) {
            EVP_PKEY_CTX_set_rsa_padding(p, RSA_PKCS1_PSS_PADDING);
            EVP_PKEY_CTX_set_rsa_pss_saltlen(p, RSA_PSS_SALTLEN_DIGEST);
        }
    };
    auto sign = [&] {
        EVP_MD_CTX* m = EVP_MD_CTX_new();
        EVP_PKEY_CTX* p = nullptr;
        EVP_DigestSignInit(m, &p, EVP_sha256(), nullptr, key);
        set_padding(p);
        signature_length = signature.size();
        EVP_DigestSign(m, signature.data(), &signature_length, message.data(), message.size());
        EVP_MD_CTX_free(m);
    };
    r.sign = time_op(sign, seconds);
    sign();
    r.verify = time_op(
        [&] {
            EVP_MD_CTX* m = EVP_MD_CTX_new();
            EVP_PKEY_CTX* p = nullptr;
            EVP_DigestVerifyInit(m, &p, EVP_sha256(), nullptr, pub);
            set_padding(p);
            if (EVP_DigestVerify(m, signature.data(), signature_length, message.data(), message.size()) != 1)
                throw std::runtime_error("floor: signature did not verify");
            EVP_MD_CTX_free(m);
        },
        seconds);

    X509_STORE* store = X509_STORE_new();
    X509* ca = read_cert(cert_path("ca.pem"));
    X509_STORE_add_cert(store, ca);
    unsigned char* der = nullptr;
    const int der_length = i2d_X509(cert, &der);
    r.chain = time_op(
        [&] {
            const unsigned char* p = der;
            X509* received = d2i_X509(nullptr, &p, der_length);
            X509_STORE_CTX* v = X509_STORE_CTX_new();
            X509_STORE_CTX_init(v, store, received, nullptr);
            X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(v), "localhost", 0);
            if (X509_verify_cert(v) != 1) throw std::runtime_error("floor: chain did not verify");
            X509_STORE_CTX_free(v);
            X509_free(received);
        },
        seconds);
    OPENSSL_free(der);
    X509_free(ca);
    X509_STORE_free(store);
    X509_free(cert);
    EVP_PKEY_free(key);
    return r;
}

} // namespace floor_openssl

namespace floor_mbedtls {

inline void ok(int ret, const char* what)
{
    if (ret != 0) throw std::runtime_error(std::string("floor: ") + what + " -0x" + std::to_string(-ret));
}

// mbedTLS 2.28 signs TLS 1.2 with PKCS#1 v1.5 for RSA and (deterministic,
// where compiled in) ECDSA, like its TLS code does.
inline floor_ms measure(const std::string& leaf, double seconds)
{
    floor_ms r;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    ok(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, nullptr, 0), "seed");

    mbedtls_ecp_group grp;
    mbedtls_ecp_group_init(&grp);
    ok(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_CURVE25519), "group");
    mbedtls_mpi peer_d;
    mbedtls_ecp_point peer_q;
    mbedtls_mpi_init(&peer_d);
    mbedtls_ecp_point_init(&peer_q);
    ok(mbedtls_ecdh_gen_public(&grp, &peer_d, &peer_q, mbedtls_ctr_drbg_random, &drbg), "peer key");
    r.ecdhe = time_op(
        [&] {
            mbedtls_mpi d, z;
            mbedtls_ecp_point q;
            mbedtls_mpi_init(&d);
            mbedtls_mpi_init(&z);
            mbedtls_ecp_point_init(&q);
            ok(mbedtls_ecdh_gen_public(&grp, &d, &q, mbedtls_ctr_drbg_random, &drbg), "keygen");
            ok(mbedtls_ecdh_compute_shared(&grp, &z, &peer_q, &d, mbedtls_ctr_drbg_random, &drbg), "derive");
            mbedtls_mpi_free(&d);
            mbedtls_mpi_free(&z);
            mbedtls_ecp_point_free(&q);
        },
        seconds);
    mbedtls_mpi_free(&peer_d);
    mbedtls_ecp_point_free(&peer_q);
    mbedtls_ecp_group_free(&grp);

    mbedtls_pk_context key;
    mbedtls_x509_crt cert, ca;
    mbedtls_pk_init(&key);
    mbedtls_x509_crt_init(&cert);
    mbedtls_x509_crt_init(&ca);
    ok(mbedtls_pk_parse_keyfile(&key, cert_path(leaf + ".key").c_str(), nullptr), "key");
    ok(mbedtls_x509_crt_parse_file(&cert, cert_path(leaf + ".pem").c_str()), "cert");
    ok(mbedtls_x509_crt_parse_file(&ca, cert_path("ca.pem").c_str()), "ca");
    std::array<unsigned char, 100> message{};
    std::array<unsigned char, 32> hash{};
    std::array<unsigned char, MBEDTLS_PK_SIGNATURE_MAX_SIZE> signature{};
    std::size_t signature_length = 0;
    auto sign = [&] {
        mbedtls_sha256_ret(message.data(), message.size(), hash.data(), 0);
        ok(mbedtls_pk_sign(&key, MBEDTLS_MD_SHA256, hash.data(), hash.size(), signature.data(), &signature_length,
                           mbedtls_ctr_drbg_random, &drbg),
           "sign");
    };
    r.sign = time_op(sign, seconds);
    sign();
    r.verify = time_op(
        [&] {
            mbedtls_sha256_ret(message.data(), message.size(), hash.data(), 0);
            ok(mbedtls_pk_verify(&cert.pk, MBEDTLS_MD_SHA256, hash.data(), hash.size(), signature.data(),
                                 signature_length),
               "verify");
        },
        seconds);
    r.chain = time_op(
        [&] {
            mbedtls_x509_crt received;
            mbedtls_x509_crt_init(&received);
            ok(mbedtls_x509_crt_parse_der(&received, cert.raw.p, cert.raw.len), "parse");
            std::uint32_t flags = 0;
            ok(mbedtls_x509_crt_verify(&received, &ca, nullptr, "localhost", &flags, nullptr, nullptr), "chain");
            mbedtls_x509_crt_free(&received);
        },
        seconds);
    mbedtls_x509_crt_free(&ca);
    mbedtls_x509_crt_free(&cert);
    mbedtls_pk_free(&key);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return r;
}

} // namespace floor_mbedtls

} // namespace bench
