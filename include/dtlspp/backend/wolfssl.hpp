// SPDX-License-Identifier: MIT
// dtlspp::wolfssl_backend: the backend contract (backend/concept.hpp) on
// wolfSSL 5.9 built with DTLS 1.2 and 1.3 (subprojects/wolfssl.wrap), the
// one stack here that speaks DTLS 1.3 (RFC 9147).
//
// One context is one WOLFSSL_CTX plus what dtlspp keeps beside it (the
// cookie factory, PSK, key log); sessions of the same context share it. A
// session or listener is one WOLFSSL at a fixed heap address
// (wolfssl/detail_io.hpp), because wolfSSL keeps pointers to its callbacks'
// contexts.
//
// wolfSSL is GPLv3 or commercial: a program linked with it is bound by that
// licence (docs/backends.md). The backend is built only on request
// (-Dwolfssl=enabled or -Dcrypto_backend=wolfssl).
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/backend/wolfssl/detail_errors.hpp>
#include <dtlspp/backend/wolfssl/detail_io.hpp>
#include <dtlspp/backend/wolfssl/detail_support.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/detail/checks.hpp>
#include <dtlspp/detail/cookie.hpp>
#include <dtlspp/detail/policy.hpp>
#include <dtlspp/error.hpp>

#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if !defined(WOLFSSL_DTLS) || !defined(WOLFSSL_DTLS13) || !defined(WOLFSSL_DTLS_CID) || !defined(WOLFSSL_DTLS_MTU)
#error "dtlspp's wolfSSL backend needs wolfSSL built with DTLS 1.2 and 1.3, Connection ID and MTU control (subprojects/wolfssl.wrap)"
#endif

namespace dtlspp {

struct wolfssl_backend {
    class context;
    class session;
    class listener;

    static constexpr std::string_view name = "wolfssl";
    // Timers run on datagram_io::now: wolfSSL retransmits when told the
    // timer expired (wolfSSL_dtls_got_timeout). Connection ID on both
    // versions; DTLS 1.2 and 1.3. SRTP: all four profiles, the client's
    // order wins (TLSX_UseSRTP_Parse takes the client's first it knows),
    // and a client offers them by code point, whatever config's order.
    static constexpr backend_traits traits{timer_clock::caller, true, {true, true}, 16384, true,
                                           {true, true, false, true, false}};

    static std::string version() { return std::string("wolfSSL ") + wolfSSL_lib_version(); }
    static std::shared_ptr<context> make_context(const config& cfg, failure& f);
    static std::optional<session> connect(context& ctx, failure& f);
    static std::optional<listener> make_listener(context& ctx, failure& f);
};


// ---------------------------------------------------------------------------
// context

class wolfssl_backend::context : public std::enable_shared_from_this<context> {
public:
    context() = default;
    ~context()
    {
        if (ctx_) wolfSSL_CTX_free(ctx_);
        if (rng_ready_) wc_FreeRng(&rng_);
    }
    context(const context&) = delete;
    context& operator=(const context&) = delete;

    dtlspp::role role() const noexcept { return settings_.role; }
    const dtlspp::config& settings() const noexcept { return settings_; }

private:
    friend struct wolfssl_backend;
    friend class wolfssl_backend::session;
    friend class wolfssl_backend::listener;

    static failure invalid(std::string what) { return make_failure(errc::config_invalid, std::move(what)); }

    // The loaders answer WOLFSSL_FAILURE (0) or an error code.
    static std::string load_error(int ret)
    {
        return ret == WOLFSSL_FAILURE ? std::string("wolfSSL could not load it") : detail::wolfssl::error_text(ret);
    }

    static std::string where(const pem_source& s, const std::string& field)
    {
        return s.file.empty() ? field : field + " ('" + s.file + "')";
    }

    bool draw_random(std::span<std::uint8_t> out) noexcept
    {
        const std::lock_guard lock(rng_mutex_);
        return rng_ready_ && wc_RNG_GenerateBlock(&rng_, out.data(), static_cast<word32>(out.size())) == 0;
    }

    static unsigned int psk_client(WOLFSSL* ssl, const char*, char* identity, unsigned int identity_max,
                                   unsigned char* key, unsigned int key_max) noexcept
    {
        const auto* self = static_cast<const context*>(wolfSSL_get_psk_callback_ctx(ssl));
        if (!self || !self->settings_.psk) return 0;
        const auto& psk = *self->settings_.psk;
        // identity_max counts the terminating NUL.
        if (psk.identity.size() + 1 > identity_max || psk.key.size() > key_max) return 0;
        std::memcpy(identity, psk.identity.c_str(), psk.identity.size() + 1);
        std::memcpy(key, psk.key.data(), psk.key.size());
        return static_cast<unsigned int>(psk.key.size());
    }

    static unsigned int psk_server(WOLFSSL* ssl, const char* identity, unsigned char* key,
                                   unsigned int key_max) noexcept
    {
        const auto* self = static_cast<const context*>(wolfSSL_get_psk_callback_ctx(ssl));
        if (!self || !self->settings_.psk || !identity) return 0;
        const auto& psk = *self->settings_.psk;
        // 0 = unknown identity: wolfSSL answers with an alert.
        if (psk.identity != identity || psk.key.size() > key_max) return 0;
        std::memcpy(key, psk.key.data(), psk.key.size());
        return static_cast<unsigned int>(psk.key.size());
    }

    // NSS key log lines. DTLS 1.2: the master secret, once per handshake
    // (wolfSSL_set_secret_cb, called as it is derived). DTLS 1.3: each
    // traffic secret (wolfSSL_set_tls13_secret_cb).
    static int log_master_secret(WOLFSSL* ssl, void* secret, int length, void* self) noexcept
    {
        auto& ctx = *static_cast<context*>(self);
        if (!ctx.key_log_ || length <= 0) return 0;
        emit(ctx, ssl, "CLIENT_RANDOM", static_cast<const unsigned char*>(secret), static_cast<std::size_t>(length));
        return 0;
    }

    static int log_tls13_secret(WOLFSSL* ssl, int id, const unsigned char* secret, int length, void* self) noexcept
    {
        auto& ctx = *static_cast<context*>(self);
        if (!ctx.key_log_ || length <= 0) return 0;
        const char* label = nullptr;
        switch (id) {
        case CLIENT_HANDSHAKE_TRAFFIC_SECRET: label = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"; break;
        case SERVER_HANDSHAKE_TRAFFIC_SECRET: label = "SERVER_HANDSHAKE_TRAFFIC_SECRET"; break;
        case CLIENT_TRAFFIC_SECRET: label = "CLIENT_TRAFFIC_SECRET_0"; break;
        case SERVER_TRAFFIC_SECRET: label = "SERVER_TRAFFIC_SECRET_0"; break;
        case EXPORTER_SECRET: label = "EXPORTER_SECRET"; break;
        default: return 0;
        }
        emit(ctx, ssl, label, secret, static_cast<std::size_t>(length));
        return 0;
    }

    static void emit(context& ctx, WOLFSSL* ssl, const char* label, const unsigned char* secret,
                     std::size_t length) noexcept
    {
        try {
            std::array<unsigned char, 32> client_random{};
            if (wolfSSL_get_client_random(ssl, client_random.data(), client_random.size()) != client_random.size())
                return;
            ctx.key_log_(std::string(label) + " " + detail::wolfssl::to_hex(client_random.data(), 32) + " " +
                         detail::wolfssl::to_hex(secret, length));
        } catch (...) {
            // A failing key log must not break the handshake, and an
            // exception must not unwind through wolfSSL's C frames.
        }
    }

    failure setup(const config& cfg)
    {
        if (auto f = validate(cfg)) return f;
        settings_ = cfg;
        verification_ = cfg.effective_verification();
        key_log_ = cfg.key_log;
        if (!detail::wolfssl::initialise()) return make_failure(errc::internal, "wolfSSL_Init failed");
        if (wc_InitRng(&rng_) != 0) return make_failure(errc::internal, "wc_InitRng failed");
        rng_ready_ = true;

        const bool client = cfg.role == role::client;
        const bool v12 = cfg.min_version == dtls_version::dtls_1_2;
        const bool v13 = cfg.max_version == dtls_version::dtls_1_3;
        WOLFSSL_METHOD* method = nullptr;
        if (v12 && v13) method = client ? wolfDTLS_client_method() : wolfDTLS_server_method();
        else if (v13) method = client ? wolfDTLSv1_3_client_method() : wolfDTLSv1_3_server_method();
        else method = client ? wolfDTLSv1_2_client_method() : wolfDTLSv1_2_server_method();
        if (!method || !(ctx_ = wolfSSL_CTX_new(method))) return make_failure(errc::internal, "wolfSSL_CTX_new failed");
        // The version-flexible method goes down to DTLS 1.0 unless told.
        if (v12 && v13 && wolfSSL_CTX_SetMinVersion(ctx_, WOLFSSL_DTLSV1_2) != WOLFSSL_SUCCESS)
            return make_failure(errc::internal, "wolfSSL_CTX_SetMinVersion failed");
        // dtlspp never resumes: no NewSessionTicket after a 1.3 handshake.
        wolfSSL_CTX_no_ticket_TLSv13(ctx_);

        switch (verification_) {
        case peer_verification::required:
            wolfSSL_CTX_set_verify(ctx_, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
            break;
        // Asks for a certificate and verifies one that is sent.
        case peer_verification::optional: wolfSSL_CTX_set_verify(ctx_, WOLFSSL_VERIFY_PEER, nullptr); break;
        case peer_verification::none: wolfSSL_CTX_set_verify(ctx_, WOLFSSL_VERIFY_NONE, nullptr); break;
        }

        if (cfg.certificate) {
            const auto& chain = cfg.certificate->certificate_chain;
            const auto& key = cfg.certificate->private_key;
            int ret = chain.file.empty()
                          ? wolfSSL_CTX_use_certificate_chain_buffer_format(
                                ctx_, reinterpret_cast<const unsigned char*>(chain.pem.data()),
                                static_cast<long>(chain.pem.size()), WOLFSSL_FILETYPE_PEM)
                          : wolfSSL_CTX_use_certificate_chain_file(ctx_, chain.file.c_str());
            if (ret != WOLFSSL_SUCCESS)
                return invalid(where(chain, "certificate.certificate_chain") + ": " + load_error(ret));
            ret = key.file.empty() ? wolfSSL_CTX_use_PrivateKey_buffer(ctx_,
                                                                        reinterpret_cast<const unsigned char*>(key.pem.data()),
                                                                        static_cast<long>(key.pem.size()),
                                                                        WOLFSSL_FILETYPE_PEM)
                                   : wolfSSL_CTX_use_PrivateKey_file(ctx_, key.file.c_str(), WOLFSSL_FILETYPE_PEM);
            if (ret != WOLFSSL_SUCCESS)
                return invalid(where(key, "certificate.private_key") + ": " + load_error(ret));
            if (wolfSSL_CTX_check_private_key(ctx_) != WOLFSSL_SUCCESS)
                return invalid("certificate.private_key: does not match the first certificate of "
                               "certificate.certificate_chain");
        }
        if (!cfg.trusted_ca.empty()) {
            const auto& ca = cfg.trusted_ca;
            const int ret = ca.file.empty()
                                ? wolfSSL_CTX_load_verify_buffer(ctx_, reinterpret_cast<const unsigned char*>(ca.pem.data()),
                                                                 static_cast<long>(ca.pem.size()), WOLFSSL_FILETYPE_PEM)
                                : wolfSSL_CTX_load_verify_locations(ctx_, ca.file.c_str(), nullptr);
            if (ret != WOLFSSL_SUCCESS) return invalid(where(ca, "trusted_ca") + ": " + load_error(ret));
        }
        if (cfg.psk) {
            if (client) wolfSSL_CTX_set_psk_client_callback(ctx_, &context::psk_client);
            else wolfSSL_CTX_set_psk_server_callback(ctx_, &context::psk_server);
        }

        // The shared suite policy (detail/policy.hpp) for DTLS 1.2, then the
        // TLS 1.3 suites; wolfSSL names them from their IANA numbers. A
        // server's key decides which certificate suites it can complete;
        // wolfSSL skips those its key cannot sign (VerifyServerSuite).
        detail::server_key key{cfg.certificate.has_value(), cfg.certificate.has_value()};
        std::string suites;
        auto add = [&](std::uint16_t iana) {
            const char* name = wolfSSL_get_cipher_name_from_suite(static_cast<unsigned char>(iana >> 8),
                                                                  static_cast<unsigned char>(iana & 0xFF));
            if (!name || std::string_view(name) == "None") return;
            if (!suites.empty()) suites += ':';
            suites += name;
        };
        if (v13)
            for (const auto suite : detail::wolfssl::tls13_suites) add(suite);
        if (v12)
            for (const auto suite : detail::offered_suites(cfg, key)) add(suite);
        if (suites.empty()) return invalid("certificate: no offered cipher suite can use these credentials");
        if (wolfSSL_CTX_set_cipher_list(ctx_, suites.c_str()) != WOLFSSL_SUCCESS)
            return make_failure(errc::internal, "wolfSSL_CTX_set_cipher_list(" + suites + ") failed");

        std::array<int, 3> groups{WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};
        if (wolfSSL_CTX_set_groups(ctx_, groups.data(), static_cast<int>(groups.size())) != WOLFSSL_SUCCESS)
            return make_failure(errc::internal, "wolfSSL_CTX_set_groups failed");

        for (const auto& protocol : cfg.alpn) {
            if (!alpn_list_.empty()) alpn_list_ += ',';
            alpn_list_ += protocol;
        }
        for (const auto p : cfg.srtp_profiles) {
            if (!srtp_list_.empty()) srtp_list_ += ':';
            srtp_list_ += detail::wolfssl::srtp_name(p);
        }

        if (!client) {
            cookies_.emplace(cfg, &detail::wolfssl::hmac_sha256,
                             [this](std::span<std::uint8_t> out) { return draw_random(out); });
            if (!cookies_->usable())
                return make_failure(errc::internal, "cookie_secret: no secret could be drawn for the cookies");
        }
        return {};
    }

    // A fresh WOLFSSL bound to this context and to its state's callbacks.
    std::unique_ptr<detail::wolfssl::ssl_state> make_state(failure& f)
    {
        auto state = std::make_unique<detail::wolfssl::ssl_state>();
        state->context = shared_from_this();
        state->ssl = wolfSSL_new(ctx_);
        if (!state->ssl) {
            f = make_failure(errc::internal, "wolfSSL_new failed");
            return nullptr;
        }
        WOLFSSL* ssl = state->ssl;
        auto fail = [&](std::string what) {
            f = make_failure(errc::internal, std::move(what));
            return nullptr;
        };
        wolfSSL_SSLSetIORecv(ssl, &detail::wolfssl::ssl_state::receive);
        wolfSSL_SSLSetIOSend(ssl, &detail::wolfssl::ssl_state::send);
        wolfSSL_SetIOReadCtx(ssl, state.get());
        wolfSSL_SetIOWriteCtx(ssl, state.get());
        // Non-blocking: a receive callback's WANT_READ is "no datagram
        // yet", not a timeout.
        wolfSSL_dtls_set_using_nonblock(ssl, 1);
        // Keying material export (RFC 5705, DTLS-SRTP) reads the handshake's
        // randoms and secrets after it, which wolfSSL frees unless told.
        wolfSSL_KeepArrays(ssl);
        if (wolfSSL_dtls_set_mtu(ssl, static_cast<word16>(settings_.max_udp_payload)) != WOLFSSL_SUCCESS)
            return fail("wolfSSL_dtls_set_mtu failed");
        state->max_datagram = settings_.max_udp_payload;
        // wolfSSL counts its timeout in whole seconds and gives up once it
        // has doubled past the maximum; dtlspp keeps the schedule in
        // milliseconds (ssl_state) and the endpoint's handshake_deadline is
        // the one bound, so wolfSSL's own is set out of reach.
        wolfSSL_dtls_set_timeout_init(ssl, 1);
        wolfSSL_dtls_set_timeout_max(ssl, 1 << 30);
        state->initial_timeout = settings_.initial_retransmission_timeout;
        state->max_timeout = settings_.max_retransmission_timeout;
        state->timeout = state->initial_timeout;
        if (settings_.psk) wolfSSL_set_psk_callback_ctx(ssl, this);
        if (key_log_) {
            wolfSSL_set_secret_cb(ssl, &context::log_master_secret, this);
            wolfSSL_set_tls13_secret_cb(ssl, &context::log_tls13_secret, this);
        }
        if (settings_.role == role::client && !settings_.server_name.empty()) {
            const auto& name = settings_.server_name;
            if (!detail::wolfssl::is_ip_literal(name) &&
                wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, name.data(), static_cast<word16>(name.size())) !=
                    WOLFSSL_SUCCESS)
                return fail("wolfSSL_UseSNI failed");
            // An IP literal is checked against iPAddress entries
            // (wolfSSL_check_ip_address), a name against DNS names and the
            // CN (wolfSSL_check_domain_name).
            if (verification_ != peer_verification::none &&
                (detail::wolfssl::is_ip_literal(name) ? wolfSSL_check_ip_address(ssl, name.c_str())
                                                      : wolfSSL_check_domain_name(ssl, name.c_str())) != WOLFSSL_SUCCESS)
                return fail("wolfSSL_check_domain_name / wolfSSL_check_ip_address failed");
        }
        if (!alpn_list_.empty() &&
            wolfSSL_UseALPN(ssl, alpn_list_.data(), static_cast<unsigned int>(alpn_list_.size()),
                            WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS)
            return fail("wolfSSL_UseALPN failed");
        if (!srtp_list_.empty() && wolfSSL_set_tlsext_use_srtp(ssl, srtp_list_.c_str()) != 0)
            return fail("wolfSSL_set_tlsext_use_srtp(" + srtp_list_ + ") failed");
        if (settings_.connection_id) {
            // Our CID, drawn at random behind the configured prefix.
            state->own_connection_id.resize(*settings_.connection_id);
            auto* bytes = reinterpret_cast<std::uint8_t*>(state->own_connection_id.data());
            if (!state->own_connection_id.empty() &&
                !draw_random(std::span(bytes, state->own_connection_id.size())))
                return fail("drawing a Connection ID failed");
            const auto& prefix = settings_.connection_id_prefix;
            std::copy(prefix.begin(), prefix.end(), reinterpret_cast<std::byte*>(bytes));
            if (wolfSSL_dtls_cid_use(ssl) != WOLFSSL_SUCCESS ||
                wolfSSL_dtls_cid_set(ssl, state->own_connection_id.data(),
                                     static_cast<unsigned int>(state->own_connection_id.size())) != WOLFSSL_SUCCESS)
                return fail("wolfSSL_dtls_cid_set failed");
        }
        if (settings_.role == role::server && !refresh_cookie_secret(*state)) return fail("no cookie secret");
        return state;
    }

    // wolfSSL computes its own cookies (HMAC over the peer id and the
    // ClientHello, RFC 6347 §4.2.1 / RFC 9147 §5.1) under a secret it is
    // given: here the current period's key from dtlspp's cookie factory, so
    // config::cookie_secret and cookie_lifetime mean what they mean on the
    // other stacks. A cookie of the period just ended still verifies: the
    // listener tries that period's key when the current one sent a new
    // cookie (listener::offer).
    bool refresh_cookie_secret(detail::wolfssl::ssl_state& state, int back = 0) noexcept
    {
        const auto key = cookies_->period_key(back);
        if (!key) return false;
        if (state.cookie_period == key->first) return true;
        auto secret = key->second;
        // The HelloRetryRequest cookie exists only where 1.3 may be spoken
        // (wolfSSL_send_hrr_cookie refuses a 1.2-only WOLFSSL).
        const bool ok =
            wolfSSL_DTLS_SetCookieSecret(state.ssl, secret.data(), static_cast<unsigned int>(secret.size())) == 0 &&
            (settings_.max_version != dtls_version::dtls_1_3 ||
             wolfSSL_send_hrr_cookie(state.ssl, secret.data(), static_cast<unsigned int>(secret.size())) ==
                 WOLFSSL_SUCCESS);
        detail::wipe(secret);
        if (ok) state.cookie_period = key->first;
        return ok;
    }

    dtlspp::config settings_;
    peer_verification verification_ = peer_verification::none;
    std::function<void(std::string_view)> key_log_;
    WOLFSSL_CTX* ctx_ = nullptr;
    WC_RNG rng_{};
    bool rng_ready_ = false;
    std::mutex rng_mutex_;
    std::optional<detail::cookie_factory> cookies_; // servers only
    std::string alpn_list_;                         // "a,b": wolfSSL_UseALPN's format
    std::string srtp_list_;                         // "A:B": wolfSSL_set_tlsext_use_srtp's format
};

// ---------------------------------------------------------------------------
// session

class wolfssl_backend::session {
public:
    session(session&&) noexcept = default;
    session& operator=(session&&) noexcept = default;

    step handshake(datagram_io& io)
    {
        if (broken_) return step::failed;
        const auto queued_before = io.output ? io.output->size() : 0;
        detail::wolfssl::io_binding binding(*state_, io, io.output, true);
        const auto result = run_handshake(binding);
        limit_resends(io, queued_before);
        settle(io);
        return result;
    }

    read_result read(datagram_io& io, std::span<std::byte> buffer)
    {
        if (broken_) return {read_result::kind::failed, 0};
        if (peer_closed_) return {read_result::kind::closed, 0};
        const auto queued_before = io.output ? io.output->size() : 0;
        detail::wolfssl::io_binding binding(*state_, io, io.output, true);
        struct settle_on_exit {
            session& s;
            datagram_io& io;
            std::size_t queued_before;
            ~settle_on_exit()
            {
                s.limit_resends(io, queued_before);
                s.settle(io);
            }
        } settle_later{*this, io, queued_before};
        WOLFSSL* ssl = state_->ssl;
        if (!wolfSSL_is_init_finished(ssl)) {
            const auto progress = run_handshake(binding);
            if (progress == step::failed) return {read_result::kind::failed, 0};
            if (progress == step::want_input) return {read_result::kind::want_input, 0};
        }
        // A datagram with several records: wolfSSL returns one record's
        // data per call and keeps the rest in its input buffer.
        for (int attempt = 0;; ++attempt) {
            const int ret = wolfSSL_read(ssl, buffer.data(), static_cast<int>(buffer.size()));
            if (ret > 0) return {read_result::kind::data, static_cast<std::size_t>(ret)};
            const int err = wolfSSL_get_error(ssl, ret);
            if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
                if ((binding.input_waiting() || wolfSSL_has_pending(ssl)) && attempt < 4) continue;
                return {read_result::kind::want_input, 0};
            }
            if (err == WOLFSSL_ERROR_ZERO_RETURN) {
                peer_closed_ = true;
                failure_ = detail::wolfssl::map_failure({.code = ZERO_RETURN});
                return {read_result::kind::closed, 0};
            }
            fail(err);
            return {read_result::kind::failed, 0};
        }
    }

    step write(datagram_io& io, std::span<const std::byte> data)
    {
        if (broken_) return step::failed;
        if (auto refusal = detail::check_write(!(closed_ || peer_closed_) && wolfSSL_is_init_finished(state_->ssl),
                                               data.size(), max_record_payload())) {
            failure_ = std::move(refusal);
            return step::failed;
        }
        detail::wolfssl::io_binding binding(*state_, io, io.output, true);
        const auto pending_before = waiting_for_ack();
        const int ret = wolfSSL_write(state_->ssl, data.data(), static_cast<int>(data.size()));
        // Application data is no flight: it does not restart a timer that
        // chases an unacknowledged one.
        if (!pending_before) state_->sent = 0;
        settle(io);
        if (ret > 0 && static_cast<std::size_t>(ret) == data.size()) return step::done;
        if (ret > 0) {
            failure_ = make_failure(errc::internal, "wolfSSL_write wrote part of a record");
            return step::failed;
        }
        fail(wolfSSL_get_error(state_->ssl, ret));
        return step::failed;
    }

    timeout_result handle_timeout(datagram_io& io)
    {
        if (broken_ || closed_ || peer_closed_) return timeout_result::nothing_due;
        auto& state = *state_;
        const auto due = state.next_deadline();
        if (!due || io.now < *due) return timeout_result::nothing_due;
        detail::wolfssl::io_binding binding(state, io, io.output, true);
        WOLFSSL* ssl = state.ssl;
        const auto queued_before = io.output ? io.output->size() : 0;
        auto tell = [&]() {
            if (wolfSSL_dtls_got_timeout(ssl) == WOLFSSL_SUCCESS) return true;
            fail(wolfSSL_get_error(ssl, WOLFSSL_FATAL_ERROR));
            return false;
        };
        if (state.ack_deadline && io.now >= *state.ack_deadline && (!state.deadline || io.now < *state.deadline)) {
            // The short DTLS 1.3 timer: wolfSSL sends ACKs for the records
            // it holds, so the peer resends only what is missing. No
            // retransmission of ours.
            state.ack_deadline.reset();
            if (!tell()) return timeout_result::failed;
            state.sent = 0;
            return timeout_result::nothing_due;
        }
        // The long timer: resend the flight. With the short timer still
        // armed, wolfSSL's first call only sends ACKs (Dtls13RtxTimeout).
        if (state.ack_deadline || wolfSSL_dtls13_use_quick_timeout(ssl)) {
            state.ack_deadline.reset();
            if (!tell()) return timeout_result::failed;
        }
        if (!tell()) return timeout_result::failed;
        state.sent = 0;
        state.timeout = std::min(state.timeout * 2, state.max_timeout);
        state.deadline = io.now + state.timeout;
        const auto queued_after = io.output ? io.output->size() : 0;
        return queued_after > queued_before ? timeout_result::retransmitted : timeout_result::nothing_due;
    }

    std::optional<time_point> next_timeout(datagram_io&) const
    {
        if (broken_ || closed_ || peer_closed_) return std::nullopt;
        return state_->next_deadline();
    }

    void close(datagram_io& io)
    {
        if (broken_ || closed_) return;
        closed_ = true;
        if (!wolfSSL_is_init_finished(state_->ssl)) return;
        detail::wolfssl::io_binding binding(*state_, io, io.output, true);
        // One close_notify; wolfSSL_shutdown returns "not yet" until the
        // peer's arrives, which dtlspp does not wait for.
        (void)wolfSSL_shutdown(state_->ssl);
        state_->deadline.reset();
        state_->ack_deadline.reset();
    }

    const failure& last_failure() const noexcept { return failure_; }

    // The largest write that fits one datagram at our MTU; 0 while
    // handshaking (wolfSSL answers only once the handshake is done).
    std::size_t max_record_payload() const
    {
        const int payload = wolfSSL_GetMaxOutputSize(state_->ssl);
        return payload > 0 ? static_cast<std::size_t>(payload) : 0;
    }

    // DTLS 1.2: the suite policy's table, the same answer for every stack.
    // DTLS 1.3: tag plus inner content type.
    std::size_t record_expansion() const
    {
        const auto suite = static_cast<std::uint16_t>(wolfSSL_get_current_cipher_suite(state_->ssl));
        if ((suite >> 8) == 0x13) return detail::wolfssl::dtls13_expansion;
        const auto* entry = detail::find_suite(suite);
        return entry ? detail::aead_expansion(entry->cipher) : 0;
    }

    std::string cipher_suite() const
    {
        const auto suite = wolfSSL_get_current_cipher_suite(state_->ssl);
        if (suite == 0) return {};
        const char* name = wolfSSL_get_cipher_name_iana_from_suite(static_cast<unsigned char>(suite >> 8),
                                                                   static_cast<unsigned char>(suite & 0xFF));
        return name ? std::string(name) : std::string();
    }

    dtls_version protocol_version() const noexcept
    {
        return wolfSSL_GetVersion(state_->ssl) == WOLFSSL_DTLSV1_3 ? dtls_version::dtls_1_3 : dtls_version::dtls_1_2;
    }

    dtlspp::connection_ids connection_ids() const
    {
        dtlspp::connection_ids ids;
        const auto& own = state_->own_connection_id;
        if (!settings().connection_id) return ids;
        auto as_bytes = [](const unsigned char* p, std::size_t n) {
            std::vector<std::byte> v(n);
            if (n) std::memcpy(v.data(), p, n);
            return v;
        };
        WOLFSSL* ssl = state_->ssl;
        // While handshaking: the one we asked for. After: both, or none
        // when the peer did not take part.
        if (!wolfSSL_is_init_finished(ssl)) {
            ids.own = as_bytes(own.data(), own.size());
            return ids;
        }
        if (wolfSSL_dtls_cid_is_enabled(ssl) != WOLFSSL_SUCCESS) return ids;
        ids.own = as_bytes(own.data(), own.size());
        unsigned int peer_size = 0;
        if (wolfSSL_dtls_cid_get_tx_size(ssl, &peer_size) != WOLFSSL_SUCCESS) return ids;
        std::vector<unsigned char> peer(peer_size);
        if (peer_size && wolfSSL_dtls_cid_get_tx(ssl, peer.data(), peer_size) != WOLFSSL_SUCCESS) return ids;
        ids.negotiated = true;
        ids.peer = as_bytes(peer.data(), peer.size());
        return ids;
    }

    std::optional<dtlspp::srtp_profile> srtp_profile() const
    {
        const auto* chosen = wolfSSL_get_selected_srtp_profile(state_->ssl);
        if (!chosen) return std::nullopt;
        const auto id = static_cast<dtlspp::srtp_profile>(chosen->id);
        if (to_string(id).empty()) return std::nullopt;
        return id;
    }

    // RFC 5705 on DTLS 1.2, RFC 8446 §7.5 on DTLS 1.3: wolfSSL picks the
    // exporter of the negotiated version.
    failure export_keying_material(std::string_view label, std::optional<std::span<const std::byte>> context,
                                   std::span<std::byte> out) const
    {
        const auto* context_bytes = context ? reinterpret_cast<const unsigned char*>(context->data()) : nullptr;
        const std::size_t context_size = context ? context->size() : 0;
        if (wolfSSL_export_keying_material(state_->ssl, reinterpret_cast<unsigned char*>(out.data()), out.size(),
                                           label.data(), label.size(), context_bytes, context_size,
                                           context ? 1 : 0) != WOLFSSL_SUCCESS)
            return make_failure(errc::export_refused, "wolfSSL_export_keying_material refused the request");
        return {};
    }

private:
    friend struct wolfssl_backend;
    friend class wolfssl_backend::listener;

    explicit session(std::unique_ptr<detail::wolfssl::ssl_state> state) : state_(std::move(state)) {}

    const config& settings() const
    {
        return static_cast<const wolfssl_backend::context*>(state_->context.get())->settings();
    }

    bool waiting_for_ack() const noexcept { return wolfSSL_dtls13_has_pending_msg(state_->ssl) != 0; }

    void limit_resends(datagram_io& io, std::size_t queued_before)
    {
        resends_.after_call(io, queued_before, state_->initial_timeout / 2);
    }

    // The timer after a call: a new flight restarts it; whether it runs on
    // depends on what wolfSSL still waits for.
    void settle(const datagram_io& io)
    {
        if (broken_ || closed_ || peer_closed_) return;
        state_->note_sent(io.now);
        state_->settle_timer(io.now, !wolfSSL_is_init_finished(state_->ssl));
    }

    step run_handshake(detail::wolfssl::io_binding& binding)
    {
        WOLFSSL* ssl = state_->ssl;
        const bool client = wolfSSL_is_server(ssl) == 0;
        for (int attempt = 0;; ++attempt) {
            const int ret = client ? wolfSSL_connect(ssl) : wolfSSL_accept(ssl);
            if (ret == WOLFSSL_SUCCESS) return step::done;
            const int err = wolfSSL_get_error(ssl, ret);
            if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
                if (binding.input_waiting() && attempt < 4) continue;
                return step::want_input;
            }
            fail(err);
            return step::failed;
        }
    }

    void fail(int code)
    {
        broken_ = true;
        state_->deadline.reset();
        state_->ack_deadline.reset();
        if (const char* reason = std::exchange(state_->callback_failure, nullptr)) {
            failure_ = make_failure(errc::internal,
                                    std::string(reason) + " (wolfSSL: " + detail::wolfssl::error_text(code) + ")");
            return;
        }
        if (state_->refused_size != 0) {
            failure_ = make_failure(errc::mtu_too_small, "wolfSSL produced a " + std::to_string(state_->refused_size) +
                                                             "-byte datagram, above max_udp_payload (" +
                                                             std::to_string(state_->max_datagram) +
                                                             "); raise max_udp_payload");
            return;
        }
        WOLFSSL* ssl = state_->ssl;
        if (code == BUFFER_ERROR && !state_->sent_any && wolfSSL_is_server(ssl) == 0) {
            // wolfSSL's DTLS 1.3 client reports a ClientHello it cannot fit
            // into max_udp_payload as a buffer error, before sending anything.
            failure_ = make_failure(errc::mtu_too_small,
                                    "wolfSSL: " + detail::wolfssl::error_text(code) + "; the ClientHello does not fit "
                                    "max_udp_payload (" + std::to_string(state_->max_datagram) +
                                    "): raise max_udp_payload, or shorten it (fewer or shorter ALPN names, a shorter "
                                    "server_name)");
            return;
        }
        detail::wolfssl::failure_facts facts;
        facts.code = code;
        facts.handshaking = !wolfSSL_is_init_finished(ssl);
        const auto suite = static_cast<std::uint16_t>(wolfSSL_get_current_cipher_suite(ssl));
        if (const auto* entry = detail::find_suite(suite))
            facts.psk_suite = entry->exchange == detail::key_exchange::psk ||
                              entry->exchange == detail::key_exchange::ecdhe_psk;
        else if ((suite >> 8) == 0x13 || (suite == 0 && settings().min_version == dtls_version::dtls_1_3))
            facts.psk_suite = settings().psk.has_value() && !settings().certificate;
        WOLFSSL_ALERT_HISTORY history{};
        if (code == FATAL_ERROR && wolfSSL_get_alert_history(ssl, &history) == WOLFSSL_SUCCESS &&
            history.last_rx.level == alert_fatal)
            facts.alert = history.last_rx.code;
        failure_ = detail::wolfssl::map_failure(facts);
        // DTLS 1.3 checks a PSK through the ClientHello's binder (RFC 8446
        // §4.2.11); wolfSSL refuses a binder made with another key with
        // illegal_parameter, before any ServerHello. For a PSK-only client
        // that can only be a PSK the server does not share.
        if (facts.handshaking && facts.psk_suite && (facts.alert == 47 || facts.alert == 51) &&
            settings().max_version == dtls_version::dtls_1_3 && wolfSSL_is_server(ssl) == 0)
            failure_.code = make_error_code(errc::psk_mismatch);
    }

    std::unique_ptr<detail::wolfssl::ssl_state> state_;
    failure failure_;
    detail::wolfssl::resend_limiter resends_;
    bool broken_ = false;      // wolfSSL returned a fatal error
    bool closed_ = false;      // we called close()
    bool peer_closed_ = false; // the peer sent close_notify
};

// ---------------------------------------------------------------------------
// listener: the stateless front door (RFC 6347 §4.2.1, RFC 9147 §5.1)

class wolfssl_backend::listener {
public:
    listener(listener&&) noexcept = default;
    listener& operator=(listener&&) noexcept = default;

    listen_result offer(datagram_io& io)
    {
        const auto input = io.input;
        cookie_rejected_ = false;
        auto result = offer_with_key(io, 0);
        // A cookie of the period just ended is still good (detail/cookie.hpp),
        // but wolfSSL checks one key at a time: when a ClientHello that
        // carried one got a new cookie (DTLS 1.2) or an illegal_parameter
        // alert (1.3), try the previous period's key.
        if ((result == listen_result::cookie_sent || (result == listen_result::refused && cookie_rejected_)) &&
            detail::wolfssl::carries_cookie(input)) {
            datagram_queue first_answer;
            std::swap(first_answer, answer_);
            const auto first_refusal = last_refusal_;
            datagram_io retry = io;
            retry.input = input;
            retry.output = nullptr;
            if (offer_with_key(retry, 1) == listen_result::accepted) {
                result = listen_result::accepted;
            } else {
                std::swap(first_answer, answer_);
                last_refusal_ = first_refusal;
            }
            if (state_) context_->refresh_cookie_secret(*state_);
        }
        if (result != listen_result::dropped && io.output)
            for (std::size_t i = 0; i < answer_.size(); ++i) io.output->push(answer_[i]);
        answer_.clear();
        return result;
    }

private:
    listen_result offer_with_key(datagram_io& io, int back)
    {
        const auto input = io.input;
        if (!state_) {
            failure ignored;
            state_ = context_->make_state(ignored);
            if (!state_) return listen_result::dropped;
        }
        if (!context_->refresh_cookie_secret(*state_, back)) return listen_result::dropped;
        WOLFSSL* ssl = state_->ssl;
        // The cookie binds to this transport id: wolfSSL hashes the "peer
        // address" it is given, whatever its bytes.
        if (io.peer_id.empty() ||
            wolfSSL_dtls_set_peer(ssl, const_cast<std::byte*>(io.peer_id.data()),
                                  static_cast<unsigned int>(io.peer_id.size())) != WOLFSSL_SUCCESS)
            return listen_result::dropped;
        // Whatever wolfSSL sends goes to staging_ first: a dropped offer
        // must send nothing (concept.hpp).
        staging_.clear();
        auto result = listen_result::dropped;
        bool fresh_needed = false;
        {
            detail::wolfssl::io_binding binding(*state_, io, &staging_, false);
            const int ret = wolfDTLS_accept_stateless(ssl);
            if (ret == WOLFSSL_SUCCESS) {
                // The cookie verified: the association may hold state now.
                // Write the server's flight, up to where it waits for the
                // client.
                const int next = wolfSSL_accept(ssl);
                const int err = next == WOLFSSL_SUCCESS ? 0 : wolfSSL_get_error(ssl, next);
                if ((err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) && !staging_.empty()) {
                    result = listen_result::accepted;
                } else {
                    fresh_needed = true;
                    if (err != 0) {
                        // wolfSSL refused the verified ClientHello (no ALPN
                        // protocol or suite in common, a DTLS 1.3 PSK binder
                        // that does not verify): the client learns it at
                        // once. Where wolfSSL sent nothing (a bad binder),
                        // the alert is ours: decrypt_error for a PSK (RFC
                        // 8446 §4.2.11), else handshake_failure.
                        result = listen_result::refused;
                        last_refusal_ = detail::wolfssl::map_failure({.code = err, .handshaking = true});
                        if (staging_.empty()) {
                            const bool psk = err == BAD_BINDER || err == PSK_KEY_ERROR;
                            if (psk) last_refusal_.code = make_error_code(errc::psk_mismatch);
                            try {
                                staging_.push(detail::wolfssl::plaintext_alert(input, psk ? 51 : 40));
                            } catch (...) {
                                result = listen_result::dropped;
                            }
                        }
                    }
                }
            } else if (ret == WOLFSSL_FAILURE) {
                // No cookie yet, or a stale one: the HelloVerifyRequest or
                // HelloRetryRequest is queued, nothing is kept. On DTLS 1.3
                // wolfSSL answers a cookie that does not verify (replayed
                // from another address, or forged) with an illegal_parameter
                // alert instead (RFC 9147 §5.1): a refusal. It also answers
                // with an alert a ClientHello it cannot parse (decode_error
                // for an extension running past the extensions block): a
                // refusal too, but not the cookie's, so it names the alert
                // and no other period's key is tried.
                if (detail::wolfssl::only_alerts(staging_)) {
                    result = listen_result::refused;
                    const auto description = detail::wolfssl::first_alert_description(staging_).value_or(0);
                    cookie_rejected_ = description == 47; // illegal_parameter
                    if (cookie_rejected_)
                        last_refusal_ = make_failure(errc::handshake_failed,
                                                     "the ClientHello's cookie did not verify for this address");
                    else
                        last_refusal_ = make_failure(
                            detail::condition_for_alert(description),
                            "wolfSSL refused the ClientHello with a fatal " +
                                std::string(detail::alert_description_name_of(description)) + " alert (" +
                                std::to_string(description) + ")");
                } else if (!staging_.empty()) {
                    result = listen_result::cookie_sent;
                }
            } else {
                // wolfSSL refused the ClientHello while reading it, after the
                // cookie (an ALPN protocol or a DTLS 1.3 PSK binder it does not
                // accept): refused, with its alert or, where it sent none, ours.
                fresh_needed = true;
                const int err = wolfSSL_get_error(ssl, ret);
                if (err == UNKNOWN_ALPN_PROTOCOL_NAME_E || err == BAD_BINDER || err == PSK_KEY_ERROR) {
                    result = listen_result::refused;
                    last_refusal_ = detail::wolfssl::map_failure({.code = err, .handshaking = true});
                    if (err != UNKNOWN_ALPN_PROTOCOL_NAME_E) last_refusal_.code = make_error_code(errc::psk_mismatch);
                    if (staging_.empty()) {
                        try {
                            staging_.push(detail::wolfssl::plaintext_alert(input, err == UNKNOWN_ALPN_PROTOCOL_NAME_E ? 120 : 51));
                        } catch (...) {
                            result = listen_result::dropped;
                        }
                    }
                }
            }
        }
        if (result != listen_result::dropped) std::swap(answer_, staging_);
        staging_.clear();
        if (fresh_needed) state_.reset(); // the next offer makes a clean one
        return result;
    }

public:
    const failure& last_refusal() const noexcept { return last_refusal_; }

    // After offer() returned accepted: that WOLFSSL becomes the session,
    // and the next offer() makes a fresh one.
    session accept() { return session(std::move(state_)); }

private:
    friend struct wolfssl_backend;

    listener(std::shared_ptr<context> ctx, std::unique_ptr<detail::wolfssl::ssl_state> state)
        : context_(std::move(ctx)), state_(std::move(state))
    {
    }

    std::shared_ptr<context> context_;
    std::unique_ptr<detail::wolfssl::ssl_state> state_;
    failure last_refusal_;
    datagram_queue staging_; // what wolfSSL sent during one attempt
    datagram_queue answer_;  // what the offer answers with
    bool cookie_rejected_ = false; // the last attempt's refusal was a cookie that did not verify
};

// ---------------------------------------------------------------------------
// entry points

inline std::shared_ptr<wolfssl_backend::context> wolfssl_backend::make_context(const config& cfg, failure& f)
{
    auto ctx = std::make_shared<context>();
    if (auto problem = ctx->setup(cfg)) {
        f = std::move(problem);
        return nullptr;
    }
    return ctx;
}

inline std::optional<wolfssl_backend::session> wolfssl_backend::connect(context& ctx, failure& f)
{
    if ((f = detail::check_role(ctx.settings_, role::client, "connect"))) return std::nullopt;
    auto state = ctx.make_state(f);
    if (!state) return std::nullopt;
    return session(std::move(state));
}

inline std::optional<wolfssl_backend::listener> wolfssl_backend::make_listener(context& ctx, failure& f)
{
    if ((f = detail::check_role(ctx.settings_, role::server, "make_listener"))) return std::nullopt;
    auto state = ctx.make_state(f);
    if (!state) return std::nullopt;
    return listener(ctx.shared_from_this(), std::move(state));
}

static_assert(backend<wolfssl_backend>);
static_assert(keying_material_backend<wolfssl_backend>);

} // namespace dtlspp
