// SPDX-License-Identifier: MIT
// dtlspp::mbedtls_backend: the backend contract (backend/concept.hpp) on
// mbed TLS 2.28 and 3.6, the two LTS branches.
//
// One context is one mbedtls_ssl_config plus what it points to (DRBG,
// certificates, key, cookie key, cipher suite and ALPN lists); sessions of
// the same config share it. A session or listener is one
// mbedtls_ssl_context at a fixed heap address (detail_io.hpp), because
// mbedTLS keeps pointers to it in its callbacks.
//
// Neither version has getters for a few things dtlspp reports (the
// received alert, the handshake state); the adapter reads those fields, and
// every difference between 2.28 and 3.6 lives in mbedtls/detail_compat.hpp.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/backend/mbedtls/detail_compat.hpp>
#include <dtlspp/backend/mbedtls/detail_errors.hpp>
#include <dtlspp/backend/mbedtls/detail_io.hpp>
#include <dtlspp/backend/mbedtls/detail_ip_san.hpp>
#include <dtlspp/backend/mbedtls/detail_srtp.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/detail/checks.hpp>
#include <dtlspp/detail/cookie.hpp>
#include <dtlspp/detail/policy.hpp>
#include <dtlspp/error.hpp>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
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

namespace dtlspp {

struct mbedtls_backend {
    class context;
    class session;
    class listener;

    static constexpr std::string_view name = "mbedtls";
    // Timers run on datagram_io::now (mbedtls_ssl_set_timer_cb). Connection
    // ID only on 3.x (detail_compat.hpp). SRTP: all four profiles, the
    // client's order wins (detail_srtp.hpp).
    static constexpr backend_traits traits{timer_clock::caller, detail::mbedtls::has_connection_id, {true, false},
                                           MBEDTLS_SSL_IN_CONTENT_LEN, detail::mbedtls::contexts_on_threads,
                                           {detail::mbedtls::has_srtp, detail::mbedtls::has_srtp, false,
                                            true}};

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
        mbedtls_ssl_config_init(&conf_);
    }
    ~context()
    {
        // conf_ points at everything else, so it goes first.
        mbedtls_ssl_config_free(&conf_);
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

    failure load_key(mbedtls_pk_context& key, const pem_source& source)
    {
        int ret = 0;
        if (!source.file.empty()) {
            ret = detail::mbedtls::parse_key_file(key, source.file.c_str(), drbg_);
        } else {
            // Same NUL rule as certificates (pk.h: "keylen ... including
            // the terminating null byte for PEM data").
            ret = detail::mbedtls::parse_key(key, reinterpret_cast<const unsigned char*>(source.pem.c_str()),
                                             source.pem.size() + 1, drbg_);
        }
        if (ret != 0) {
            const std::string where = source.file.empty() ? std::string("certificate.private_key")
                                                           : "certificate.private_key ('" + source.file + "')";
            return invalid(where + ": " + detail::mbedtls::error_text(ret));
        }
        return {};
    }

    // The NSS key log line needs only the client random and the 48-byte
    // master secret (RFC 5246 §8.1). The callback that delivers them changed
    // in 3.0: per context (mbedtls_ssl_set_export_keys_cb) and typed by
    // secret, where 2.28 has one per config (mbedtls_ssl_conf_export_keys_ext_cb).
    // The same callback keeps each session's secrets for RFC 5705 export
    // (detail_srtp.hpp), so it is always set.
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    static void export_keys(void* self, mbedtls_ssl_key_export_type type, const unsigned char* secret,
                            std::size_t secret_length, const unsigned char client_random[32],
                            const unsigned char server_random[32], mbedtls_tls_prf_types prf) noexcept
    {
        if (type != MBEDTLS_SSL_KEY_EXPORT_TLS12_MASTER_SECRET || secret_length != 48) return;
        detail::mbedtls::capture_secrets(secret, client_random, server_random, prf);
        auto& ctx = *static_cast<context*>(self);
        if (ctx.key_log_) log_master_secret(ctx, secret, client_random);
    }
#else
    static int export_keys(void* self, const unsigned char* master_secret, const unsigned char*, std::size_t,
                           std::size_t, std::size_t, const unsigned char client_random[32],
                           const unsigned char server_random[32], mbedtls_tls_prf_types prf) noexcept
    {
        detail::mbedtls::capture_secrets(master_secret, client_random, server_random, prf);
        auto& ctx = *static_cast<context*>(self);
        if (ctx.key_log_) log_master_secret(ctx, master_secret, client_random);
        return 0;
    }
#endif

    static void log_master_secret(context& ctx, const unsigned char* master_secret,
                                  const unsigned char* client_random) noexcept
    {
        try {
            const auto line =
                "CLIENT_RANDOM " + detail::mbedtls::to_hex(client_random, 32) + " " +
                detail::mbedtls::to_hex(master_secret, 48);
            ctx.key_log_(line);
        } catch (...) {
            // A failing key log must not break the handshake, and an
            // exception must not unwind through mbedTLS's C frames.
        }
    }

    // The cookie callbacks of mbedtls_ssl_conf_dtls_cookies (ssl.h):
    // dtlspp's own cookies (detail/cookie.hpp) instead of mbedTLS's
    // ssl_cookie module, whose time is mbedtls_time() and whose key cannot
    // be given.
    static int write_cookie(void* self, unsigned char** position, unsigned char* end, const unsigned char* peer,
                            std::size_t peer_length) noexcept
    {
        const auto& ctx = *static_cast<const context*>(self);
        if (end < *position || static_cast<std::size_t>(end - *position) < detail::cookie_size)
            return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
        const auto value = ctx.cookies_->make(std::as_bytes(std::span(peer, peer_length)));
        if (!value) return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
        std::copy(value->begin(), value->end(), *position);
        *position += value->size();
        return 0;
    }

    static int check_cookie(void* self, const unsigned char* cookie, std::size_t cookie_length,
                            const unsigned char* peer, std::size_t peer_length) noexcept
    {
        const auto& ctx = *static_cast<const context*>(self);
        return ctx.cookies_->verify(std::as_bytes(std::span(peer, peer_length)), std::span(cookie, cookie_length)) ? 0
                                                                                                                : -1;
    }

    // An RNG for config::random_source's default: the context's CTR_DRBG.
    bool draw_random(std::span<std::uint8_t> out) noexcept
    {
        return mbedtls_ctr_drbg_random(&drbg_, out.data(), out.size()) == 0;
    }

    failure setup(const config& cfg)
    {
        if (auto f = validate(cfg)) return f;
        if (auto f = detail::check_versions(cfg, false, "mbedTLS")) return f;
        role_ = cfg.role;
        settings_ = cfg;
        max_udp_payload_ = cfg.max_udp_payload;
        verification_ = cfg.effective_verification();
        server_name_ = cfg.server_name;
        server_ip_ = detail::mbedtls::parse_ip_literal(cfg.server_name);
        key_log_ = cfg.key_log;

        if (const int ret = detail::mbedtls::initialise_crypto(); ret != 0)
            return make_failure(errc::internal, "psa_crypto_init failed");
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

        detail::mbedtls::restrict_to_dtls_1_2(conf_);
        detail::mbedtls::prefer_server_suite_order(conf_);

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
#if defined(MBEDTLS_SSL_RENEGOTIATION)
        mbedtls_ssl_conf_renegotiation(&conf_, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
        // dtlspp never resumes, so the empty SessionTicket extension would
        // only make the ClientHello longer.
        mbedtls_ssl_conf_session_tickets(&conf_, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
#endif
        detail::mbedtls::set_groups(conf_, detail::mbedtls::policy_groups.data());

        bool have_certificate = false;
        if (cfg.certificate) {
            if (auto f = load_chain(own_chain_, cfg.certificate->certificate_chain, "certificate.certificate_chain",
                                    false))
                return f;
            if (auto f = load_key(own_key_, cfg.certificate->private_key)) return f;
            if (const int ret = detail::mbedtls::check_pair(own_chain_.pk, own_key_, drbg_); ret != 0)
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

        // The shared suite policy (detail/policy.hpp); mbedTLS's suite ids
        // are the IANA numbers.
        detail::server_key key;
        key.ecdsa = have_certificate && mbedtls_pk_can_do(&own_key_, MBEDTLS_PK_ECDSA);
        key.rsa = have_certificate && mbedtls_pk_can_do(&own_key_, MBEDTLS_PK_RSA);
        for (const auto suite : detail::offered_suites(cfg, key)) ciphersuites_.push_back(suite);
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

        if (auto f = detail::mbedtls::configure_srtp(conf_, cfg, srtp_profiles_)) return f;

#if MBEDTLS_VERSION_NUMBER < 0x03000000
        mbedtls_ssl_conf_export_keys_ext_cb(&conf_, &context::export_keys, this);
#endif

#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SSL_DTLS_CONNECTION_ID)
        // The length of the CIDs we ask peers for; a record with another CID
        // is dropped, not fatal (ssl.h, mbedtls_ssl_conf_cid). Without CID
        // support config::connection_id is ignored: the handshake completes
        // without one.
        if (cfg.connection_id && detail::mbedtls::has_connection_id) {
            if (const int ret = mbedtls_ssl_conf_cid(&conf_, *cfg.connection_id, MBEDTLS_SSL_UNEXPECTED_CID_IGNORE);
                ret != 0)
                return invalid("connection_id: " + detail::mbedtls::error_text(ret));
            connection_id_length_ = cfg.connection_id;
        }
#endif

        if (role_ == role::server) {
            cookies_.emplace(cfg, &detail::mbedtls::hmac_sha256,
                             [this](std::span<std::uint8_t> out) { return draw_random(out); });
            if (!cookies_->usable())
                return make_failure(errc::internal, "cookie_secret: no secret could be drawn for the cookies");
            mbedtls_ssl_conf_dtls_cookies(&conf_, &context::write_cookie, &context::check_cookie, this);
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
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
        mbedtls_ssl_set_export_keys_cb(&state->ssl, &context::export_keys, this);
#endif
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SSL_DTLS_CONNECTION_ID)
        if (connection_id_length_) {
            // Our CID, drawn at random; mbedtls_ssl_session_reset keeps it,
            // so a listener's context asks for the same one until accepted.
            state->own_connection_id.resize(*connection_id_length_);
            if (!state->own_connection_id.empty() &&
                mbedtls_ctr_drbg_random(&drbg_, state->own_connection_id.data(), state->own_connection_id.size()) != 0) {
                f = make_failure(errc::internal, "drawing a Connection ID failed");
                return nullptr;
            }
            const auto& prefix = settings_.connection_id_prefix;
            std::copy(prefix.begin(), prefix.end(),
                      reinterpret_cast<std::byte*>(state->own_connection_id.data()));
            state->connection_id_enabled = true;
            if (const int ret = mbedtls_ssl_set_cid(&state->ssl, MBEDTLS_SSL_CID_ENABLED, state->own_connection_id.data(),
                                                    state->own_connection_id.size());
                ret != 0) {
                f = make_failure(errc::internal, "mbedtls_ssl_set_cid: " + detail::mbedtls::error_text(ret));
                return nullptr;
            }
        }
#endif
        if (role_ == role::client && server_ip_ && verification_ != peer_verification::none) {
            // An IP literal: checked by detail_ip_san.hpp, not by mbedTLS.
            // 3.6 refuses to verify a certificate with no host name set
            // unless told explicitly that none will be (ssl.h,
            // mbedtls_ssl_set_hostname: NULL), which is the case here.
            mbedtls_ssl_set_verify(&state->ssl, &detail::mbedtls::verify_ip_address, &*server_ip_);
            if (const int ret = mbedtls_ssl_set_hostname(&state->ssl, nullptr); ret != 0) {
                f = make_failure(errc::internal, "mbedtls_ssl_set_hostname: " + detail::mbedtls::error_text(ret));
                return nullptr;
            }
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
    std::optional<detail::cookie_factory> cookies_; // servers only
    std::optional<std::size_t> connection_id_length_;
    mbedtls_ssl_config conf_;
    std::vector<int> ciphersuites_;
    std::vector<std::string> alpn_names_;
    std::vector<const char*> alpn_list_;
    detail::mbedtls::srtp_profile_list srtp_profiles_{}; // conf_ points at it
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
        if (!detail::mbedtls::handshake_over(ssl)) {
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
        // The caller checked state and size (detail/checks.hpp); only a
        // session mbedTLS would drive back into a handshake is refused here.
        if (auto refusal = detail::check_write(!(closed_ || peer_closed_) && detail::mbedtls::handshake_over(ssl),
                                               data.size(), max_record_payload())) {
            failure_ = std::move(refusal);
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
        if (detail::mbedtls::handshake_over(state.ssl)) {
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
        if (!detail::mbedtls::handshake_over(ssl)) return;
        detail::mbedtls::io_binding binding(*state_, io, io.output, true);
        if (const int ret = mbedtls_ssl_close_notify(&ssl); ret != 0 && ret != MBEDTLS_ERR_SSL_WANT_WRITE) fail(ret);
    }

    const failure& last_failure() const noexcept { return failure_; }

    std::size_t max_record_payload() const
    {
        const int payload = mbedtls_ssl_get_max_out_record_payload(&state_->ssl);
        return payload > 0 ? static_cast<std::size_t>(payload) : 0;
    }

    // From the suite policy's table (detail/policy.hpp), the same answer
    // for every stack; 0 before a suite is chosen.
    std::size_t record_expansion() const
    {
        const auto* suite = detail::find_suite(detail::mbedtls::chosen_suite(state_->ssl));
        return suite ? detail::aead_expansion(suite->cipher) : 0;
    }

    // While handshaking: the CID we asked for, if any. After: both, when
    // negotiated (mbedtls_ssl_get_peer_cid answers only then).
    dtlspp::connection_ids connection_ids() const
    {
        dtlspp::connection_ids ids;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SSL_DTLS_CONNECTION_ID)
        if (!state_->connection_id_enabled) return ids;
        const auto& own = state_->own_connection_id;
        auto as_bytes = [](const unsigned char* p, std::size_t n) {
            return std::vector<std::byte>(reinterpret_cast<const std::byte*>(p), reinterpret_cast<const std::byte*>(p) + n);
        };
        auto& ssl = const_cast<mbedtls_ssl_context&>(state_->ssl); // the getter takes a non-const pointer
        if (!detail::mbedtls::handshake_over(ssl)) {
            ids.own = as_bytes(own.data(), own.size());
            return ids;
        }
        int enabled = MBEDTLS_SSL_CID_DISABLED;
        std::array<unsigned char, MBEDTLS_SSL_CID_OUT_LEN_MAX> peer{};
        std::size_t peer_length = 0;
        // Reports disabled when both sides asked for an empty CID, which is
        // the same as none (ssl.h, mbedtls_ssl_get_peer_cid).
        if (mbedtls_ssl_get_peer_cid(&ssl, &enabled, peer.data(), &peer_length) != 0 ||
            enabled != MBEDTLS_SSL_CID_ENABLED)
            return ids;
        ids.negotiated = true;
        ids.own = as_bytes(own.data(), own.size());
        ids.peer = as_bytes(peer.data(), peer_length);
#endif
        return ids;
    }

    std::optional<dtlspp::srtp_profile> srtp_profile() const
    {
        return detail::mbedtls::negotiated_srtp_profile(state_->ssl);
    }

    // The caller checked the session is open and the request well formed
    // (detail/keying_material.hpp). mbedtls_ssl_tls_prf over the secrets
    // the key export callback handed over (detail_srtp.hpp).
    failure export_keying_material(std::string_view label, std::optional<std::span<const std::byte>> context,
                                   std::span<std::byte> out) const
    {
        return detail::mbedtls::export_keying_material(state_->exporter, label, context, out);
    }

    // mbedTLS has no DTLS 1.3 (3.6 has TLS 1.3 over streams only).
    dtls_version protocol_version() const noexcept { return dtls_version::dtls_1_2; }

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
        while (!detail::mbedtls::handshake_over(ssl)) {
            if (const int ret = mbedtls_ssl_handshake_step(&ssl); ret != 0) return ret;
            if (detail::mbedtls::handshake_state(ssl) > MBEDTLS_SSL_CLIENT_CERTIFICATE && !client_certificate_checked_) {
                client_certificate_checked_ = true;
                // During the handshake mbedtls_ssl_get_verify_result reads
                // the session in negotiation (ssl_tls.c).
                const auto flags = mbedtls_ssl_get_verify_result(&ssl);
                if (detail::mbedtls::peer_sent_certificate(ssl) && flags != 0 && flags != 0xFFFFFFFFu) {
                    // An alert that could not be sent (the send callback
                    // ran out of memory) only leaves the client to learn of
                    // the refusal from its deadline; the verification
                    // failure stays the reason reported here.
                    if (mbedtls_ssl_send_alert_message(&ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                                       alert_for(flags)) != 0)
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
                                        ")" + (detail::mbedtls::is_3x ? std::string("; raise max_udp_payload")
                                                                      : std::string("; mbedTLS 2.28 never fragments its ClientHello, so "
                                                                                    "shorten it (fewer or shorter ALPN names, a shorter "
                                                                                    "server_name) or raise max_udp_payload")));
            return;
        }
        const auto& ssl = state_->ssl;
        detail::mbedtls::failure_facts facts;
        facts.code = code;
        facts.handshaking = !detail::mbedtls::handshake_over(ssl);
        if (const auto* suite = detail::find_suite(detail::mbedtls::chosen_suite(ssl)))
            facts.psk_suite = suite->exchange == detail::key_exchange::psk ||
                              suite->exchange == detail::key_exchange::ecdhe_psk;
        // mbedtls_ssl_get_verify_result returns all bits set when there is
        // no session to ask (ssl.h); that is "no result", not a failure.
        if (const auto flags = mbedtls_ssl_get_verify_result(&ssl); flags != 0xFFFFFFFFu) facts.verify_flags = flags;
        if (code == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) facts.alert = detail::mbedtls::received_alert(ssl);
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
                    result = listen_result::cookie_sent;
                } else if ((ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) &&
                           detail::mbedtls::handshake_state(ssl) >= MBEDTLS_SSL_CLIENT_CERTIFICATE &&
                           !detail::mbedtls::handshake_over(ssl) &&
                           !staging_.empty()) {
                    // The cookie verified, the server flight up to
                    // ServerHelloDone was written and mbedTLS now waits for
                    // the client's flight.
                    result = listen_result::accepted;
                } else if (ret < 0 && ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE &&
                           refuses_protocol(staging_)) {
                    // mbedTLS reads ALPN while it parses the first
                    // ClientHello, before any cookie, and refuses a client
                    // with no protocol in common with no_application_protocol
                    // (RFC 7301 §3.2). Nothing verified the address, but the
                    // one alert record is smaller than the ClientHello, and
                    // without it the client would wait out its deadline.
                    result = listen_result::refused;
                    last_refusal_ = make_failure(errc::handshake_failed,
                                                 "no application protocol (ALPN) in common with the client: " +
                                                     detail::mbedtls::error_text(ret));
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

    // Why the last offer() returned refused.
    const failure& last_refusal() const noexcept { return last_refusal_; }

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
    // The stack's whole answer is one plaintext fatal no_application_protocol
    // alert (content type 21, epoch 0, level 2, description 120).
    static bool refuses_protocol(const datagram_queue& sent) noexcept
    {
        if (sent.size() != 1) return false;
        const auto d = sent[0];
        return d.size() == 15 && d[0] == std::byte{21} && d[3] == std::byte{0} && d[4] == std::byte{0} &&
               d[11] == std::byte{0} && d[12] == std::byte{2} && d[13] == std::byte{2} && d[14] == std::byte{120};
    }

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
    failure last_refusal_;
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
    if ((f = detail::check_role(ctx.settings_, role::client, "connect"))) return std::nullopt;
    auto state = ctx.make_state(f);
    if (!state) return std::nullopt;
    return session(std::move(state), false);
}

inline std::optional<mbedtls_backend::listener> mbedtls_backend::make_listener(context& ctx, failure& f)
{
    if ((f = detail::check_role(ctx.settings_, role::server, "make_listener"))) return std::nullopt;
    auto state = ctx.make_state(f);
    if (!state) return std::nullopt;
    return listener(ctx.shared_from_this(), std::move(state));
}

static_assert(backend<mbedtls_backend>);
static_assert(keying_material_backend<mbedtls_backend>);

} // namespace dtlspp
