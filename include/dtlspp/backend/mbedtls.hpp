// dtlspp::mbedtls_backend: the backend contract (backend/concept.hpp) on
// mbed TLS 2.28.
//
// One context is one mbedtls_ssl_config plus what it points to (DRBG,
// certificates, key, cookie key, cipher suite and ALPN lists); sessions of
// the same config share it. A session or listener is one
// mbedtls_ssl_context at a fixed heap address (detail_io.hpp), because
// mbedTLS keeps pointers to it in its callbacks.
//
// mbedTLS 2.28 has no getters for several things dtlspp reports (the
// received alert, the handshake state), but its structs are public in the
// 2.x series (3.x marks them MBEDTLS_PRIVATE). This adapter reads those
// fields directly and says so where it does; porting it to 3.x means
// replacing exactly those reads.
#pragma once

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/backend/mbedtls/detail_ip_san.hpp>
#include <dtlspp/backend/mbedtls/detail_errors.hpp>
#include <dtlspp/backend/mbedtls/detail_io.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/error.hpp>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/ssl_cookie.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if MBEDTLS_VERSION_NUMBER < 0x021C0000 || MBEDTLS_VERSION_NUMBER >= 0x03000000
#error "dtlspp's mbedtls backend is written for the mbed TLS 2.28 LTS API (3.x renamed and hid the fields it reads)"
#endif
#if !defined(MBEDTLS_SSL_PROTO_DTLS) || !defined(MBEDTLS_SSL_DTLS_HELLO_VERIFY) || !defined(MBEDTLS_SSL_COOKIE_C)
#error "dtlspp needs mbed TLS built with MBEDTLS_SSL_PROTO_DTLS, MBEDTLS_SSL_DTLS_HELLO_VERIFY and MBEDTLS_SSL_COOKIE_C"
#endif
#if !defined(MBEDTLS_SSL_DTLS_ANTI_REPLAY) || !defined(MBEDTLS_SSL_EXPORT_KEYS) || !defined(MBEDTLS_SSL_ALPN)
#error "dtlspp needs mbed TLS built with MBEDTLS_SSL_DTLS_ANTI_REPLAY, MBEDTLS_SSL_EXPORT_KEYS and MBEDTLS_SSL_ALPN"
#endif

namespace dtlspp {

struct mbedtls_backend {
    class context;
    class session;
    class listener;

    static constexpr std::string_view name = "mbedtls";

    static std::string version();
    static std::shared_ptr<context> make_context(const config& cfg, failure& f);
    static std::optional<session> connect(context& ctx, failure& f);
    static std::optional<listener> make_listener(context& ctx, failure& f);
};

namespace detail::mbedtls {

inline std::string to_hex(const unsigned char* bytes, std::size_t length)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    text.reserve(length * 2);
    for (std::size_t i = 0; i < length; ++i) {
        text += digits[bytes[i] >> 4];
        text += digits[bytes[i] & 0x0F];
    }
    return text;
}

// An f_rng for mbedtls_ssl_cookie_setup() that yields SHA-256(counter ||
// cookie_secret) blocks. mbedtls_ssl_cookie_setup() has no "set key" call:
// it draws its HMAC key from f_rng (ssl_cookie.h, "generate keys"), so a
// deterministic generator is the only way to give every server behind a
// load balancer the same cookie key.
struct secret_stream {
    std::span<const std::uint8_t> secret;
    std::uint32_t counter = 0;

    // Streams the hash through one mbedtls_sha256_context so that nothing
    // allocates: an f_rng is called from C and must not throw.
    static int generate(void* self, unsigned char* output, std::size_t length) noexcept
    {
        auto& stream = *static_cast<secret_stream*>(self);
        while (length > 0) {
            std::array<unsigned char, 4> counter_bytes{};
            for (std::size_t i = 0; i < counter_bytes.size(); ++i)
                counter_bytes[i] = static_cast<unsigned char>(stream.counter >> (8 * (3 - i)));
            ++stream.counter;
            std::array<unsigned char, 32> block{};
            mbedtls_sha256_context sha;
            mbedtls_sha256_init(&sha);
            int ret = mbedtls_sha256_starts_ret(&sha, 0);
            if (ret == 0) ret = mbedtls_sha256_update_ret(&sha, counter_bytes.data(), counter_bytes.size());
            if (ret == 0) ret = mbedtls_sha256_update_ret(&sha, stream.secret.data(), stream.secret.size());
            if (ret == 0) ret = mbedtls_sha256_finish_ret(&sha, block.data());
            mbedtls_sha256_free(&sha);
            if (ret != 0) return ret;
            const auto take = std::min(length, block.size());
            std::copy_n(block.begin(), take, output);
            output += take;
            length -= take;
        }
        return 0;
    }
};

} // namespace detail::mbedtls

// ---------------------------------------------------------------------------
// context

class mbedtls_backend::context : public std::enable_shared_from_this<context> {
public:
    context()
    {
        mbedtls_entropy_init(&entropy_);
        mbedtls_ctr_drbg_init(&drbg_);
        mbedtls_x509_crt_init(&own_chain_);
        mbedtls_x509_crt_init(&trusted_);
        mbedtls_pk_init(&own_key_);
        mbedtls_ssl_cookie_init(&cookies_);
        mbedtls_ssl_config_init(&conf_);
    }
    ~context()
    {
        // conf_ points at everything else, so it goes first.
        mbedtls_ssl_config_free(&conf_);
        mbedtls_ssl_cookie_free(&cookies_);
        mbedtls_pk_free(&own_key_);
        mbedtls_x509_crt_free(&trusted_);
        mbedtls_x509_crt_free(&own_chain_);
        mbedtls_ctr_drbg_free(&drbg_);
        mbedtls_entropy_free(&entropy_);
    }
    context(const context&) = delete;
    context& operator=(const context&) = delete;

    dtlspp::role role() const noexcept { return role_; }
    const dtlspp::config& settings() const noexcept { return settings_; }

private:
    friend struct mbedtls_backend;
    friend class mbedtls_backend::session;
    friend class mbedtls_backend::listener;

    // Curves for ECDHE and for the peer's end-entity certificate
    // (mbedtls_ssl_conf_curves, ssl.h). Left at its default, 2.28 offers
    // every compiled-in curve largest first, so a 2.28 server picks
    // secp521r1 against a 2.28 client, which doubles its CPU per handshake.
    static constexpr std::array<mbedtls_ecp_group_id, 4> curves{
        MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};

    static failure invalid(std::string what) { return make_failure(errc::config_invalid, std::move(what)); }

    static failure load_chain(mbedtls_x509_crt& chain, const pem_source& source, const std::string& field,
                              bool allow_partial)
    {
        int ret = 0;
        if (!source.file.empty()) {
            ret = mbedtls_x509_crt_parse_file(&chain, source.file.c_str());
        } else {
            // For PEM, mbedtls_x509_crt_parse() wants the terminating NUL
            // counted in the length (x509_crt.h: "buflen ... including the
            // terminating null byte for PEM data"); without it the buffer
            // is taken for DER and rejected.
            ret = mbedtls_x509_crt_parse(&chain, reinterpret_cast<const unsigned char*>(source.pem.c_str()),
                                         source.pem.size() + 1);
        }
        const std::string where = source.file.empty() ? field : field + " ('" + source.file + "')";
        if (ret < 0) return invalid(where + ": " + detail::mbedtls::error_text(ret));
        // A positive result counts certificates that failed while others
        // parsed (x509_crt.h). A CA bundle may hold certificates mbedTLS
        // cannot read (unsupported curves or signatures) and is still
        // useful; our own chain must be complete.
        if (chain.raw.len == 0) return invalid(where + ": no certificate found");
        if (ret > 0 && !allow_partial)
            return invalid(where + ": " + std::to_string(ret) + " certificate(s) could not be parsed");
        return {};
    }

    static failure load_key(mbedtls_pk_context& key, const pem_source& source)
    {
        int ret = 0;
        if (!source.file.empty()) {
            ret = mbedtls_pk_parse_keyfile(&key, source.file.c_str(), nullptr);
        } else {
            // Same NUL rule as certificates (pk.h: "keylen ... including
            // the terminating null byte for PEM data").
            ret = mbedtls_pk_parse_key(&key, reinterpret_cast<const unsigned char*>(source.pem.c_str()),
                                       source.pem.size() + 1, nullptr, 0);
        }
        if (ret != 0) {
            const std::string where = source.file.empty() ? std::string("certificate.private_key")
                                                           : "certificate.private_key ('" + source.file + "')";
            return invalid(where + ": " + detail::mbedtls::error_text(ret));
        }
        return {};
    }

    // mbedtls_ssl_export_keys_ext_t, called while the keys are derived.
    // The NSS key log line needs only the client random and the 48-byte
    // master secret (RFC 5246 §8.1).
    static int export_keys(void* self, const unsigned char* master_secret, const unsigned char*, std::size_t,
                           std::size_t, std::size_t, const unsigned char client_random[32], const unsigned char[32],
                           mbedtls_tls_prf_types) noexcept
    {
        auto& ctx = *static_cast<context*>(self);
        try {
            const auto line =
                "CLIENT_RANDOM " + detail::mbedtls::to_hex(client_random, 32) + " " +
                detail::mbedtls::to_hex(master_secret, 48);
            ctx.key_log_(line);
        } catch (...) {
            // A failing key log must not break the handshake, and an
            // exception must not unwind through mbedTLS's C frames.
        }
        return 0;
    }

    failure setup(const config& cfg)
    {
        if (auto f = validate(cfg)) return f;
        role_ = cfg.role;
        settings_ = cfg;
        max_udp_payload_ = cfg.max_udp_payload;
        verification_ = cfg.effective_verification();
        server_name_ = cfg.server_name;
        server_ip_ = detail::mbedtls::parse_ip_literal(cfg.server_name);
        key_log_ = cfg.key_log;

        static constexpr std::string_view personalization = "dtlspp mbedtls context";
        if (const int ret = mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_,
                                                  reinterpret_cast<const unsigned char*>(personalization.data()),
                                                  personalization.size());
            ret != 0)
            return make_failure(errc::internal, "seeding CTR_DRBG: " + detail::mbedtls::error_text(ret));

        const int endpoint = role_ == role::client ? MBEDTLS_SSL_IS_CLIENT : MBEDTLS_SSL_IS_SERVER;
        if (const int ret = mbedtls_ssl_config_defaults(&conf_, endpoint, MBEDTLS_SSL_TRANSPORT_DATAGRAM,
                                                        MBEDTLS_SSL_PRESET_DEFAULT);
            ret != 0)
            return make_failure(errc::internal, "mbedtls_ssl_config_defaults: " + detail::mbedtls::error_text(ret));
        mbedtls_ssl_conf_rng(&conf_, mbedtls_ctr_drbg_random, &drbg_);

        // DTLS 1.2 is TLS 1.2's record version, minor 3 (ssl.h: "(D)TLS 1.2").
        mbedtls_ssl_conf_min_version(&conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_max_version(&conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);

        switch (verification_) {
        case peer_verification::required: mbedtls_ssl_conf_authmode(&conf_, MBEDTLS_SSL_VERIFY_REQUIRED); break;
        // OPTIONAL lets the handshake go on after a failed verification
        // (ssl.h); the session adds the "fail if a sent certificate is bad"
        // half of dtlspp's meaning (session::drive_handshake).
        case peer_verification::optional: mbedtls_ssl_conf_authmode(&conf_, MBEDTLS_SSL_VERIFY_OPTIONAL); break;
        case peer_verification::none: mbedtls_ssl_conf_authmode(&conf_, MBEDTLS_SSL_VERIFY_NONE); break;
        }

        // RFC 6347 §4.2.4.1 timer, in milliseconds. The maximum given to
        // mbedTLS is far above the configured cap: mbedTLS ends the
        // handshake (MBEDTLS_ERR_SSL_TIMEOUT) once its doubling timer reaches
        // hs_timeout_max, which would make it give up at a different time
        // than OpenSSL. The cap itself is applied in the timer callback
        // (ssl_state::timer_cap) and the endpoint's handshake_deadline ends
        // the handshake on both stacks.
        mbedtls_ssl_conf_handshake_timeout(&conf_, static_cast<std::uint32_t>(cfg.initial_retransmission_timeout.count()),
                                           0x7fffffffu);
        mbedtls_ssl_conf_dtls_anti_replay(&conf_, MBEDTLS_SSL_ANTI_REPLAY_ENABLED);
        // 0 = records with a bad MAC are dropped silently and never end the
        // association (ssl.h, mbedtls_ssl_conf_dtls_badmac_limit): any
        // limit lets whoever can spoof the peer's address kill it.
        mbedtls_ssl_conf_dtls_badmac_limit(&conf_, 0);
        mbedtls_ssl_conf_renegotiation(&conf_, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
        // dtlspp never resumes, so the empty SessionTicket extension would
        // only make the ClientHello longer.
        mbedtls_ssl_conf_session_tickets(&conf_, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
#endif
        mbedtls_ssl_conf_curves(&conf_, curves.data());

        bool have_certificate = false;
        if (cfg.certificate) {
            if (auto f = load_chain(own_chain_, cfg.certificate->certificate_chain, "certificate.certificate_chain",
                                    false))
                return f;
            if (auto f = load_key(own_key_, cfg.certificate->private_key)) return f;
            if (const int ret = mbedtls_pk_check_pair(&own_chain_.pk, &own_key_); ret != 0)
                return invalid("certificate.private_key: does not match the first certificate of "
                               "certificate.certificate_chain: " +
                               detail::mbedtls::error_text(ret));
            if (const int ret = mbedtls_ssl_conf_own_cert(&conf_, &own_chain_, &own_key_); ret != 0)
                return make_failure(errc::internal, "mbedtls_ssl_conf_own_cert: " + detail::mbedtls::error_text(ret));
            have_certificate = true;
        }
        if (!cfg.trusted_ca.empty()) {
            if (auto f = load_chain(trusted_, cfg.trusted_ca, "trusted_ca", true)) return f;
            mbedtls_ssl_conf_ca_chain(&conf_, &trusted_, nullptr);
        }
        if (cfg.psk) {
            const auto& psk = *cfg.psk;
            if (const int ret = mbedtls_ssl_conf_psk(&conf_, psk.key.data(), psk.key.size(),
                                                     reinterpret_cast<const unsigned char*>(psk.identity.data()),
                                                     psk.identity.size());
                ret != 0)
                return invalid("psk: " + detail::mbedtls::error_text(ret));
        }

        // Cipher suites: AEAD with forward secrecy first, and only those the
        // credentials can complete. A server can only sign with its own key
        // type; a client offers certificate suites unless it is PSK-only
        // (a PSK and no CA to check a certificate with).
        const bool ecdsa_key = have_certificate && mbedtls_pk_can_do(&own_key_, MBEDTLS_PK_ECDSA);
        const bool rsa_key = have_certificate && mbedtls_pk_can_do(&own_key_, MBEDTLS_PK_RSA);
        const bool client_uses_certificates = !cfg.psk || !cfg.trusted_ca.empty();
        const bool offer_ecdsa = role_ == role::client ? client_uses_certificates : ecdsa_key;
        const bool offer_rsa = role_ == role::client ? client_uses_certificates : rsa_key;
        if (cfg.psk) ciphersuites_.push_back(MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256);
        if (offer_ecdsa) {
            ciphersuites_.push_back(MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
            ciphersuites_.push_back(MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
            ciphersuites_.push_back(MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256);
        }
        if (offer_rsa) {
            ciphersuites_.push_back(MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256);
            ciphersuites_.push_back(MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384);
            ciphersuites_.push_back(MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256);
        }
        if (cfg.psk) {
            ciphersuites_.push_back(MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256);
            ciphersuites_.push_back(MBEDTLS_TLS_PSK_WITH_AES_256_GCM_SHA384);
            ciphersuites_.push_back(MBEDTLS_TLS_PSK_WITH_CHACHA20_POLY1305_SHA256);
        }
        if (ciphersuites_.empty())
            return invalid("certificate: the private key is neither ECDSA nor RSA, so no offered suite can use it");
        ciphersuites_.push_back(0); // the list is zero-terminated (ssl.h)
        mbedtls_ssl_conf_ciphersuites(&conf_, ciphersuites_.data());

        if (!cfg.alpn.empty()) {
            alpn_names_ = cfg.alpn;
            for (const auto& protocol : alpn_names_) alpn_list_.push_back(protocol.c_str());
            alpn_list_.push_back(nullptr); // NULL-terminated, and kept alive by us (ssl.h)
            if (const int ret = mbedtls_ssl_conf_alpn_protocols(&conf_, alpn_list_.data()); ret != 0)
                return invalid("alpn: " + detail::mbedtls::error_text(ret));
        }

        if (key_log_) mbedtls_ssl_conf_export_keys_ext_cb(&conf_, &context::export_keys, this);

        if (role_ == role::server) {
            int ret = 0;
            if (cfg.cookie_secret.empty()) {
                ret = mbedtls_ssl_cookie_setup(&cookies_, mbedtls_ctr_drbg_random, &drbg_);
            } else {
                detail::mbedtls::secret_stream stream{cfg.cookie_secret};
                ret = mbedtls_ssl_cookie_setup(&cookies_, &detail::mbedtls::secret_stream::generate, &stream);
            }
            if (ret != 0) return make_failure(errc::internal, "mbedtls_ssl_cookie_setup: " + detail::mbedtls::error_text(ret));
            // mbedTLS does not rotate the cookie key: each cookie carries
            // its creation time and expires after this delay, measured on
            // the wall clock (mbedtls_time, MBEDTLS_HAVE_TIME), not on
            // datagram_io::now.
            mbedtls_ssl_cookie_set_timeout(&cookies_, static_cast<unsigned long>(cfg.cookie_lifetime.count()));
            mbedtls_ssl_conf_dtls_cookies(&conf_, mbedtls_ssl_cookie_write, mbedtls_ssl_cookie_check, &cookies_);
        }
        return {};
    }

    // A fresh mbedtls_ssl_context bound to this config and to its state's
    // callbacks.
    std::unique_ptr<detail::mbedtls::ssl_state> make_state(failure& f)
    {
        auto state = std::make_unique<detail::mbedtls::ssl_state>();
        state->context = shared_from_this();
        if (const int ret = mbedtls_ssl_setup(&state->ssl, &conf_); ret != 0) {
            f = make_failure(errc::internal, "mbedtls_ssl_setup: " + detail::mbedtls::error_text(ret));
            return nullptr;
        }
        // No recv_timeout callback: with datagram_io the receive callback
        // never blocks, it answers WANT_READ.
        mbedtls_ssl_set_bio(&state->ssl, state.get(), &detail::mbedtls::ssl_state::send,
                            &detail::mbedtls::ssl_state::receive, nullptr);
        mbedtls_ssl_set_timer_cb(&state->ssl, state.get(), &detail::mbedtls::ssl_state::set_timer,
                                 &detail::mbedtls::ssl_state::get_timer);
        // Always: mbedTLS's default MTU is 0, "no limit" (ssl.h), which
        // sends each flight as datagrams of up to 16 KiB.
        mbedtls_ssl_set_mtu(&state->ssl, static_cast<std::uint16_t>(max_udp_payload_));
        state->max_datagram = max_udp_payload_;
        state->timer_cap = settings_.max_retransmission_timeout;
        if (role_ == role::client && server_ip_ && verification_ != peer_verification::none) {
            // An IP literal: checked by detail_ip_san.hpp, not by mbedTLS.
            mbedtls_ssl_set_verify(&state->ssl, &detail::mbedtls::verify_ip_address, &*server_ip_);
        } else if (role_ == role::client && !server_name_.empty()) {
            // The SNI name, and the name the server's certificate must
            // carry when verification is on (ssl.h, mbedtls_ssl_set_hostname).
            if (const int ret = mbedtls_ssl_set_hostname(&state->ssl, server_name_.c_str()); ret != 0) {
                f = make_failure(errc::config_invalid, "server_name: " + detail::mbedtls::error_text(ret));
                return nullptr;
            }
        }
        return state;
    }

    dtlspp::role role_ = role::client;
    dtlspp::config settings_;
    std::size_t max_udp_payload_ = 0;
    peer_verification verification_ = peer_verification::none;
    std::string server_name_;
    std::optional<detail::mbedtls::ip_literal> server_ip_; // server_name is an IP address
    std::function<void(std::string_view)> key_log_;

    mbedtls_entropy_context entropy_;
    mbedtls_ctr_drbg_context drbg_;
    mbedtls_x509_crt own_chain_;
    mbedtls_x509_crt trusted_;
    mbedtls_pk_context own_key_;
    mbedtls_ssl_cookie_ctx cookies_;
    mbedtls_ssl_config conf_;
    std::vector<int> ciphersuites_;
    std::vector<std::string> alpn_names_;
    std::vector<const char*> alpn_list_;
};

// ---------------------------------------------------------------------------
// session

class mbedtls_backend::session {
public:
    session(session&&) noexcept = default;
    session& operator=(session&&) noexcept = default;

    step handshake(datagram_io& io)
    {
        if (broken_) return step::failed;
        detail::mbedtls::io_binding binding(*state_, io, io.output, true);
        return run_handshake(binding);
    }

    read_result read(datagram_io& io, std::span<std::byte> buffer)
    {
        if (broken_) return {read_result::kind::failed, 0};
        if (peer_closed_) return {read_result::kind::closed, 0};
        detail::mbedtls::io_binding binding(*state_, io, io.output, true);
        auto& ssl = state_->ssl;
        if (ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
            const auto progress = run_handshake(binding);
            if (progress == step::failed) return {read_result::kind::failed, 0};
            if (progress == step::want_input) return {read_result::kind::want_input, 0};
        }
        // With a datagram holding several records, mbedTLS returns one
        // record per call and keeps the rest in its input buffer
        // (mbedtls_ssl_check_pending, ssl.h); the next call returns the
        // next record without asking the receive callback.
        for (int attempt = 0;; ++attempt) {
            const int ret = mbedtls_ssl_read(&ssl, reinterpret_cast<unsigned char*>(buffer.data()), buffer.size());
            if (ret > 0) return {read_result::kind::data, static_cast<std::size_t>(ret)};
            if (ret == 0 || ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
                if ((binding.input_waiting() || mbedtls_ssl_check_pending(&ssl)) && attempt < 4) continue;
                return {read_result::kind::want_input, 0};
            }
            if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
                peer_closed_ = true;
                failure_ = detail::mbedtls::map_failure({.code = ret});
                return {read_result::kind::closed, 0};
            }
            if (ret == MBEDTLS_ERR_SSL_CLIENT_RECONNECT) {
                // A server saw a new ClientHello with a valid cookie from
                // this peer's address and port: the client restarted
                // (RFC 6347 §4.2.8). mbedTLS has already reset the context,
                // so this association is over.
                peer_closed_ = true;
                failure_ = make_failure(errc::peer_closed,
                                        "the peer started a new handshake from the same address and port "
                                        "(RFC 6347 §4.2.8); mbedTLS: " +
                                            detail::mbedtls::error_text(ret));
                return {read_result::kind::closed, 0};
            }
            fail(ret);
            return {read_result::kind::failed, 0};
        }
    }

    step write(datagram_io& io, std::span<const std::byte> data)
    {
        if (broken_) return step::failed;
        auto& ssl = state_->ssl;
        if (closed_ || peer_closed_ || ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
            failure_ = make_failure(errc::not_open, closed_ || peer_closed_ ? "the association is closed"
                                                                              : "the handshake has not completed");
            return step::failed;
        }
        const auto limit = max_record_payload();
        if (data.size() > limit) {
            failure_ = make_failure(errc::message_too_large,
                                    std::to_string(data.size()) + " bytes; one record carries at most " +
                                        std::to_string(limit) + " bytes at this max_udp_payload");
            return step::failed;
        }
        detail::mbedtls::io_binding binding(*state_, io, io.output, true);
        const int ret = mbedtls_ssl_write(&ssl, reinterpret_cast<const unsigned char*>(data.data()), data.size());
        if (ret >= 0 && static_cast<std::size_t>(ret) == data.size()) return step::done;
        if (ret >= 0) {
            // With datagram transport mbedTLS writes a whole record or
            // fails (ssl.h, mbedtls_ssl_write), so this cannot happen.
            failure_ = make_failure(errc::internal, "mbedtls_ssl_write wrote part of a record");
            return step::failed;
        }
        fail(ret);
        return step::failed;
    }

    timeout_result handle_timeout(datagram_io& io)
    {
        if (broken_ || closed_ || peer_closed_) return timeout_result::nothing_due;
        auto& state = *state_;
        if (!state.final_deadline || io.now < *state.final_deadline) return timeout_result::nothing_due;
        detail::mbedtls::io_binding binding(state, io, io.output, true);
        if (state.ssl.state == MBEDTLS_SSL_HANDSHAKE_OVER) {
            // After the handshake mbedTLS cancels its timer
            // (mbedtls_ssl_handshake_wrapup) and resends its last flight
            // only when the peer's retransmission arrives (inside
            // mbedtls_ssl_read). With renegotiation off and no read timeout
            // nothing else uses the timer, so a leftover deadline is
            // dropped rather than left to fire forever.
            state.intermediate_deadline.reset();
            state.final_deadline.reset();
            return timeout_result::nothing_due;
        }
        const auto queued_before = io.output ? io.output->size() : 0;
        // mbedTLS retransmits from inside the handshake: seeing the final
        // timer expired (ssl_fetch_input), it doubles the timeout and
        // resends the flight, or returns MBEDTLS_ERR_SSL_TIMEOUT once the
        // timeout already was at its maximum.
        const int ret = drive_handshake();
        if (ret != 0 && ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
            fail(ret);
            return timeout_result::failed;
        }
        const auto queued_after = io.output ? io.output->size() : 0;
        return queued_after > queued_before ? timeout_result::retransmitted : timeout_result::nothing_due;
    }

    std::optional<time_point> next_timeout(datagram_io&) const
    {
        if (broken_ || closed_ || peer_closed_) return std::nullopt;
        return state_->final_deadline;
    }

    void close(datagram_io& io)
    {
        if (broken_ || closed_) return;
        closed_ = true;
        auto& ssl = state_->ssl;
        // mbedtls_ssl_close_notify sends the alert only once the handshake
        // is over; before that there is nothing to close.
        if (ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) return;
        detail::mbedtls::io_binding binding(*state_, io, io.output, true);
        if (const int ret = mbedtls_ssl_close_notify(&ssl); ret != 0 && ret != MBEDTLS_ERR_SSL_WANT_WRITE) fail(ret);
    }

    const failure& last_failure() const noexcept { return failure_; }

    std::size_t max_record_payload() const
    {
        const int payload = mbedtls_ssl_get_max_out_record_payload(&state_->ssl);
        return payload > 0 ? static_cast<std::size_t>(payload) : 0;
    }

    // mbedtls_ssl_get_record_expansion() counts the record header plus the
    // outgoing transform's expansion, or the header alone while no
    // transform is active (ssl_msg.c); with AEAD suites the incoming
    // transform expands alike.
    std::size_t record_expansion() const
    {
        const int with_header = mbedtls_ssl_get_record_expansion(&state_->ssl);
        constexpr int header = 13; // the DTLS 1.2 record header (RFC 6347 §4.1); no CID is negotiated
        return with_header > header ? static_cast<std::size_t>(with_header - header) : 0;
    }

    std::string cipher_suite() const
    {
        const char* name = mbedtls_ssl_get_ciphersuite(&state_->ssl);
        if (!name) return {};
        // mbedTLS spells "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"; for
        // every suite offered here the IANA name differs only in using '_'.
        std::string iana(name);
        std::replace(iana.begin(), iana.end(), '-', '_');
        return iana;
    }

private:
    friend struct mbedtls_backend;
    friend class mbedtls_backend::listener;

    session(std::unique_ptr<detail::mbedtls::ssl_state> state, bool check_sent_client_certificate)
        : state_(std::move(state)), check_sent_client_certificate_(check_sent_client_certificate)
    {
    }

    step run_handshake(detail::mbedtls::io_binding& binding)
    {
        for (int attempt = 0;; ++attempt) {
            const int ret = drive_handshake();
            if (ret == 0) return step::done;
            if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
                // When the timer has expired mbedTLS retransmits first and
                // returns WANT_READ without reading (ssl_fetch_input), so a
                // datagram given with this call may still be waiting.
                if (binding.input_waiting() && attempt < 4) continue;
                return step::want_input;
            }
            fail(ret);
            return step::failed;
        }
    }

    // mbedtls_ssl_handshake, plus one check for servers with verification
    // = optional: mbedTLS's OPTIONAL mode completes the handshake even when
    // a certificate the client did send fails verification (ssl.h,
    // mbedtls_ssl_conf_authmode). dtlspp's optional means "verify it if one
    // is sent", so the loop steps the handshake itself and stops right
    // after the client's Certificate was parsed, before our Finished.
    int drive_handshake()
    {
        auto& ssl = state_->ssl;
        if (!check_sent_client_certificate_ || client_certificate_checked_) return mbedtls_ssl_handshake(&ssl);
        while (ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
            if (const int ret = mbedtls_ssl_handshake_step(&ssl); ret != 0) return ret;
            if (ssl.state > MBEDTLS_SSL_CLIENT_CERTIFICATE && !client_certificate_checked_) {
                client_certificate_checked_ = true;
                const auto* negotiating = ssl.session_negotiate;
                if (negotiating && negotiating->peer_cert && negotiating->verify_result != 0) {
                    // An alert that could not be sent (the send callback
                    // ran out of memory) only leaves the client to learn of
                    // the refusal from its deadline; the verification
                    // failure stays the reason reported here.
                    if (mbedtls_ssl_send_alert_message(&ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                                       alert_for(negotiating->verify_result)) != 0)
                        state_->callback_failure = nullptr;
                    return MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
                }
                return mbedtls_ssl_handshake(&ssl);
            }
        }
        return 0;
    }

    // The alert mbedTLS itself sends for a failed verification in REQUIRED
    // mode (ssl_parse_certificate), so both modes look alike on the wire.
    static unsigned char alert_for(std::uint32_t flags)
    {
        if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) return MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA;
        if (flags & MBEDTLS_X509_BADCERT_EXPIRED) return MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED;
        if (flags & MBEDTLS_X509_BADCERT_REVOKED) return MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED;
        if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE))
            return MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT;
        return MBEDTLS_SSL_ALERT_MSG_BAD_CERT;
    }

    // Records why the context stopped; mbedTLS contexts are unusable after
    // a fatal error until reset (ssl.h, mbedtls_ssl_handshake).
    void fail(int code)
    {
        broken_ = true;
        if (const char* reason = std::exchange(state_->callback_failure, nullptr)) {
            // mbedTLS only saw the callback's error code; the reason is ours
            // (detail_io.hpp).
            failure_ = make_failure(errc::internal,
                                    std::string(reason) + " (mbedTLS: " + detail::mbedtls::error_text(code) + ")");
            return;
        }
        if (state_->refused_size != 0) {
            failure_ = make_failure(errc::mtu_too_small,
                                    "mbedTLS produced a " + std::to_string(state_->refused_size) +
                                        "-byte datagram, above max_udp_payload (" +
                                        std::to_string(state_->max_datagram) +
                                        "); mbedTLS 2.28 never fragments its ClientHello, so shorten it (fewer or "
                                        "shorter ALPN names, a shorter server_name) or raise max_udp_payload");
            return;
        }
        const auto& ssl = state_->ssl;
        detail::mbedtls::failure_facts facts;
        facts.code = code;
        facts.handshaking = ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER;
        const mbedtls_ssl_session* negotiated = ssl.session_negotiate ? ssl.session_negotiate : ssl.session;
        if (negotiated) {
            if (const auto* suite = mbedtls_ssl_ciphersuite_from_id(negotiated->ciphersuite))
                facts.psk_suite = mbedtls_ssl_ciphersuite_uses_psk(suite) != 0;
        }
        // mbedtls_ssl_get_verify_result returns all bits set when there is
        // no session to ask (ssl.h); that is "no result", not a failure.
        if (const auto flags = mbedtls_ssl_get_verify_result(&ssl); flags != 0xFFFFFFFFu) facts.verify_flags = flags;
        // 2.28 has no getter for the alert it received: on
        // MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE the alert record is still the
        // current message, level in in_msg[0], description in in_msg[1]
        // (ssl_msg.c, mbedtls_ssl_handle_message_type).
        if (code == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && ssl.in_msg && ssl.in_msgtype == MBEDTLS_SSL_MSG_ALERT &&
            ssl.in_msglen >= 2)
            facts.alert = ssl.in_msg[1];
        failure_ = detail::mbedtls::map_failure(facts);
    }

    std::unique_ptr<detail::mbedtls::ssl_state> state_;
    failure failure_;
    bool check_sent_client_certificate_ = false;
    bool client_certificate_checked_ = false;
    bool broken_ = false;      // mbedTLS returned a fatal error
    bool closed_ = false;      // we called close()
    bool peer_closed_ = false; // the peer sent close_notify
};

// ---------------------------------------------------------------------------
// listener: the stateless front door of RFC 6347 §4.2.1

class mbedtls_backend::listener {
public:
    listener(listener&&) noexcept = default;
    listener& operator=(listener&&) noexcept = default;

    listen_result offer(datagram_io& io)
    {
        if (!clean_) reset();
        // A context that accept() or reset() could not replace (out of
        // memory) is made now; while it cannot be, every datagram is
        // dropped and nothing is kept.
        if (!state_) {
            failure ignored;
            state_ = context_->make_state(ignored);
            if (!state_) return listen_result::dropped;
            clean_ = true;
        }
        auto& ssl = state_->ssl;
        // Whatever mbedTLS sends goes to staging_ first: a dropped offer
        // must send nothing (concept.hpp), yet mbedTLS may queue an alert
        // for a ClientHello it refuses.
        staging_.clear();
        auto result = listen_result::dropped;
        {
            detail::mbedtls::io_binding binding(*state_, io, &staging_, false);
            clean_ = false;
            // The cookie binds to this transport id (ssl.h,
            // mbedtls_ssl_set_client_transport_id; it is copied).
            if (!io.peer_id.empty() &&
                mbedtls_ssl_set_client_transport_id(&ssl, reinterpret_cast<const unsigned char*>(io.peer_id.data()),
                                                    io.peer_id.size()) == 0) {
                const int ret = mbedtls_ssl_handshake(&ssl);
                if (ret == MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED) {
                    // The ClientHello had no cookie or a stale one, and the
                    // HelloVerifyRequest is queued (ssl.h,
                    // mbedtls_ssl_handshake: reset before the next one).
                    result = listen_result::hello_verify_sent;
                } else if ((ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) &&
                           ssl.state >= MBEDTLS_SSL_CLIENT_CERTIFICATE && ssl.state < MBEDTLS_SSL_HANDSHAKE_OVER &&
                           !staging_.empty()) {
                    // The cookie verified, the server flight up to
                    // ServerHelloDone was written and mbedTLS now waits for
                    // the client's flight.
                    result = listen_result::accepted;
                }
            }
        }
        if (result != listen_result::dropped && io.output) {
            for (std::size_t i = 0; i < staging_.size(); ++i) io.output->push(staging_[i]);
        }
        if (result != listen_result::accepted) reset();
        staging_.clear();
        return result;
    }

    // After offer() returned accepted: the context that verified the
    // cookie becomes the session, and a fresh one takes its place. If that
    // fresh context cannot be set up now, the next offer() tries again.
    session accept()
    {
        auto taken = std::move(state_);
        clean_ = true;
        failure ignored;
        state_ = context_->make_state(ignored);
        return session(std::move(taken), check_sent_client_certificate_);
    }

private:
    friend struct mbedtls_backend;

    listener(std::shared_ptr<context> ctx, std::unique_ptr<detail::mbedtls::ssl_state> state)
        : context_(std::move(ctx)), state_(std::move(state)),
          check_sent_client_certificate_(context_->verification_ == peer_verification::optional)
    {
    }

    // Forget the last peer: nothing is kept before a cookie verifies.
    // When the reset itself fails, a fresh context replaces this one, and
    // when that cannot be made either, state_ is left empty for the next
    // offer() to make.
    void reset()
    {
        clean_ = true;
        if (!state_) return;
        if (mbedtls_ssl_session_reset(&state_->ssl) != 0) {
            state_.reset();
            failure ignored;
            state_ = context_->make_state(ignored);
            return;
        }
        state_->stash.clear();
        state_->callback_failure = nullptr;
        state_->refused_size = 0;
    }

    std::shared_ptr<context> context_;
    std::unique_ptr<detail::mbedtls::ssl_state> state_;
    datagram_queue staging_;
    bool check_sent_client_certificate_ = false;
    bool clean_ = true;
};

// ---------------------------------------------------------------------------
// entry points

inline std::string mbedtls_backend::version()
{
    // At least 18 bytes (version.h).
    std::array<char, 64> text{};
    mbedtls_version_get_string_full(text.data());
    return text.data();
}

inline std::shared_ptr<mbedtls_backend::context> mbedtls_backend::make_context(const config& cfg, failure& f)
{
    auto ctx = std::make_shared<context>();
    if (auto problem = ctx->setup(cfg)) {
        f = std::move(problem);
        return nullptr;
    }
    return ctx;
}

inline std::optional<mbedtls_backend::session> mbedtls_backend::connect(context& ctx, failure& f)
{
    if (ctx.role_ != role::client) {
        f = make_failure(errc::config_invalid, "role: connect() needs a client config");
        return std::nullopt;
    }
    auto state = ctx.make_state(f);
    if (!state) return std::nullopt;
    return session(std::move(state), false);
}

inline std::optional<mbedtls_backend::listener> mbedtls_backend::make_listener(context& ctx, failure& f)
{
    if (ctx.role_ != role::server) {
        f = make_failure(errc::config_invalid, "role: make_listener() needs a server config");
        return std::nullopt;
    }
    auto state = ctx.make_state(f);
    if (!state) return std::nullopt;
    return listener(ctx.shared_from_this(), std::move(state));
}

static_assert(backend<mbedtls_backend>);

} // namespace dtlspp
