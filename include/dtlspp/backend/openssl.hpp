// SPDX-License-Identifier: MIT
// dtlspp::openssl_backend: the backend contract (backend/concept.hpp) over
// OpenSSL 3.
//
// Every OpenSSL quirk dtlspp knows about is handled in this file and in
// backend/openssl/, each with its cause:
// - the datagram BIO answers the MTU controls (openssl/bio.hpp), so OpenSSL
//   never falls back to its 228-byte minimum payload;
// - SSL_OP_NO_QUERY_MTU is set on the SSL_CTX, before SSL_new, and the MTU
//   after it: dtls1_clear() keeps d1->mtu across SSL_clear() only when that
//   option is set, and SSL_accept/SSL_connect call SSL_clear(). With the
//   option OpenSSL also stops halving the MTU after two timeouts;
// - OpenSSL's DTLS timer reads the wall clock (gettimeofday), not ours: the
//   endpoint asks DTLSv1_get_timeout how long is left and calls
//   DTLSv1_handle_timeout when that is over. DTLS_set_timer_cb sets the
//   initial timeout (OpenSSL's own default is 1 s, fixed) and the cap;
// - stateless cookies through DTLSv1_listen on one listener SSL object per
//   server, with dtlspp's cookies (detail/cookie.hpp), the same on every
//   stack.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/backend/openssl/bio.hpp>
#include <dtlspp/backend/openssl/srtp.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/detail/alerts.hpp>
#include <dtlspp/detail/checks.hpp>
#include <dtlspp/detail/cookie.hpp>
#include <dtlspp/detail/policy.hpp>
#include <dtlspp/error.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "dtlspp's OpenSSL backend needs OpenSSL 3.0 or newer"
#endif

namespace dtlspp {

namespace detail::openssl {

struct ssl_ctx_deleter {
    void operator()(SSL_CTX* p) const noexcept { SSL_CTX_free(p); }
};
struct ssl_deleter {
    void operator()(SSL* p) const noexcept { SSL_free(p); }
};
struct bio_addr_deleter {
    void operator()(BIO_ADDR* p) const noexcept { BIO_ADDR_free(p); }
};

// All of OpenSSL's queued errors as one line, oldest first, and the queue
// emptied so the next call starts clean.
inline std::string drain_errors()
{
    std::string text;
    unsigned long code = 0;
    char buffer[256];
    while ((code = ERR_get_error()) != 0) {
        ERR_error_string_n(code, buffer, sizeof buffer);
        if (!text.empty()) text += "; ";
        text += buffer;
    }
    return text;
}

inline failure config_failure(const std::string& field, const char* what)
{
    auto detail = drain_errors();
    return make_failure(errc::config_invalid, field + ": " + what + (detail.empty() ? "" : " (" + detail + ")"));
}

// PEM text from a pem_source: a memory BIO over the inline text, or the file.
inline BIO* open_pem(const pem_source& source)
{
    if (!source.pem.empty()) return BIO_new_mem_buf(source.pem.data(), static_cast<int>(source.pem.size()));
    return BIO_new_file(source.file.c_str(), "r");
}

using bio_ptr = std::unique_ptr<BIO, decltype(&BIO_free)>;

// SSL_get_error needs an empty error queue before each call, but
// ERR_clear_error walks and frees every slot even when the queue is empty:
// profiled at about 20 % of an echo's CPU. Peeking first is cheap.
inline void clear_errors()
{
    if (ERR_peek_error() != 0) ERR_clear_error();
}

// OpenSSL decodes a certificate's extensions once, on first use, and caches
// the result in the X509 object, failures included: when that decoding runs
// out of memory the certificate stays marked EXFLAG_INVALID for good
// (ossl_x509v3_cache_extensions), SSL_CTX_use_certificate still returns 1,
// and every later handshake fails (no usable signing certificate, or a CA
// that never verifies). Decoding at load time makes that failure a config
// failure now instead of a server that silently cannot serve.
inline bool extensions_decoded(X509* certificate)
{
    return (X509_get_extension_flags(certificate) & EXFLAG_INVALID) == 0;
}

// After a loop of PEM_read_bio_X509 calls: true when it stopped because the
// input has no further PEM block (PEM_R_NO_START_LINE, the normal end), and
// the queue is then emptied. Anything else (out of memory, a corrupt block)
// is left queued for the caller's failure text.
inline bool pem_ended_cleanly()
{
    const unsigned long last = ERR_peek_last_error();
    if (last == 0 || (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)) {
        ERR_clear_error();
        return true;
    }
    return false;
}

// HMAC-SHA256 for the cookies. HMAC() returns NULL on failure (hmac.h);
// the length must also be SHA-256's, or part of the output would be stale.
inline bool hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> message,
                        std::span<std::uint8_t, 32> out) noexcept
{
    unsigned int length = 0;
    return HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), message.data(), message.size(), out.data(),
                &length) != nullptr &&
           length == out.size();
}

inline bool random_bytes(std::span<std::uint8_t> out) noexcept
{
    return RAND_bytes(out.data(), static_cast<int>(out.size())) == 1;
}

// The policy's suites (detail/policy.hpp) by OpenSSL's names.
constexpr const char* suite_name(std::uint16_t iana) noexcept
{
    switch (iana) {
    case 0xCCAC: return "ECDHE-PSK-CHACHA20-POLY1305";
    case 0xC02B: return "ECDHE-ECDSA-AES128-GCM-SHA256";
    case 0xC02F: return "ECDHE-RSA-AES128-GCM-SHA256";
    case 0xC02C: return "ECDHE-ECDSA-AES256-GCM-SHA384";
    case 0xC030: return "ECDHE-RSA-AES256-GCM-SHA384";
    case 0xCCA9: return "ECDHE-ECDSA-CHACHA20-POLY1305";
    case 0xCCA8: return "ECDHE-RSA-CHACHA20-POLY1305";
    case 0x00A8: return "PSK-AES128-GCM-SHA256";
    case 0x00A9: return "PSK-AES256-GCM-SHA384";
    case 0xCCAB: return "PSK-CHACHA20-POLY1305";
    default: return nullptr;
    }
}

constexpr const char* group_name(detail::group g) noexcept
{
    switch (g) {
    case detail::group::x25519: return "X25519";
    case detail::group::secp256r1: return "P-256";
    case detail::group::secp384r1: return "P-384";
    }
    return nullptr;
}

// What the certificate's key can sign with, for the server's suites.
inline detail::server_key key_kind(SSL_CTX* ctx)
{
    detail::server_key kind;
    EVP_PKEY* key = SSL_CTX_get0_privatekey(ctx);
    if (key == nullptr) return kind;
    kind.ecdsa = EVP_PKEY_is_a(key, "EC") == 1;
    kind.rsa = EVP_PKEY_is_a(key, "RSA") == 1;
    return kind;
}

} // namespace detail::openssl

struct openssl_backend {
    static constexpr std::string_view name = "openssl";
    // OpenSSL's DTLS timer reads its own clock (see the top of this file);
    // OpenSSL 3.0 has no Connection ID. SRTP: no NULL-cipher profiles, the
    // server's order wins (openssl/srtp.hpp).
    static constexpr backend_traits traits{timer_clock::wall_clock, false, {true, false}, 16384, true,
                                           {detail::openssl::has_srtp, false, true, true}};

    // OpenSSL-only extras, outside the backend contract.
    struct options {
        // Reproduces what a plain BIO_s_datagram on an unconnected socket
        // does (the seed's failure): no SSL_OP_NO_QUERY_MTU, no SSL_set_mtu,
        // and a BIO that cannot tell the path MTU and reports 28 bytes of
        // IPv4 + UDP overhead, so OpenSSL falls back to 256 - 28 = 228-byte
        // datagrams. For comparisons and demonstrations only.
        bool emulate_default_mtu = false;
    };

    static std::string version() { return OpenSSL_version(OPENSSL_VERSION); }

    // ------------------------------------------------------------------
    // context: one SSL_CTX per config, shared by its sessions.
    class context {
    public:
        context(const config& c, options o)
            : config_(c), options_(o),
              cookies_(c, &detail::openssl::hmac_sha256,
                       [](std::span<std::uint8_t> out) { return detail::openssl::random_bytes(out); })
        {
        }

        const dtlspp::config& settings() const noexcept { return config_; }
        const openssl_backend::options& backend_options() const noexcept { return options_; }
        SSL_CTX* native() const noexcept { return ctx_.get(); }
        const detail::cookie_factory& cookies() const noexcept { return cookies_; }

    private:
        friend struct openssl_backend;
        dtlspp::config config_;
        openssl_backend::options options_;
        detail::cookie_factory cookies_;
        std::unique_ptr<SSL_CTX, detail::openssl::ssl_ctx_deleter> ctx_;
        // Sessions share ownership of their context, but the contract hands
        // connect/make_listener a plain reference: recover it from here.
        std::weak_ptr<context> self_;
        std::string alpn_wire_; // ALPN list in wire format, for the server's select callback
    };

    // ------------------------------------------------------------------
    // session: one SSL object with its datagram BIO.
    class session {
    public:
        session(session&&) noexcept = default;
        session& operator=(session&&) noexcept = default;

        step handshake(datagram_io& io)
        {
            detail::openssl::io_binding bind(*bio_, io);
            detail::openssl::clear_errors();
            const int rc = SSL_do_handshake(ssl_.get());
            if (rc == 1) return step::done;
            return classify(rc) ? step::want_input : step::failed;
        }

        read_result read(datagram_io& io, std::span<std::byte> buffer)
        {
            // The endpoint reads until it is told to wait. With no new
            // datagram and nothing buffered (SSL_has_pending covers the rest
            // of a datagram that held several records), the answer is known
            // without a failing SSL_read and its error-queue work.
            if (io.input.empty() && SSL_has_pending(ssl_.get()) == 0) return {read_result::kind::want_input, 0};
            detail::openssl::io_binding bind(*bio_, io);
            detail::openssl::clear_errors();
            std::size_t got = 0;
            const int rc = SSL_read_ex(ssl_.get(), buffer.data(), buffer.size(), &got);
            if (rc == 1) return {read_result::kind::data, got};
            const int error = SSL_get_error(ssl_.get(), 0);
            if (error == SSL_ERROR_ZERO_RETURN) {
                failure_ = make_failure(errc::peer_closed, "close_notify received");
                return {read_result::kind::closed, 0};
            }
            return {classify(0) ? read_result::kind::want_input : read_result::kind::failed, 0};
        }

        step write(datagram_io& io, std::span<const std::byte> data)
        {
            detail::openssl::io_binding bind(*bio_, io);
            detail::openssl::clear_errors();
            std::size_t written = 0;
            if (SSL_write_ex(ssl_.get(), data.data(), data.size(), &written) == 1) return step::done;
            classify(0);
            if (!failure_) failure_ = make_failure(errc::internal, "SSL_write: " + detail::openssl::drain_errors());
            return step::failed;
        }

        timeout_result handle_timeout(datagram_io& io)
        {
            detail::openssl::io_binding bind(*bio_, io);
            detail::openssl::clear_errors();
            const int rc = DTLSv1_handle_timeout(ssl_.get());
            if (rc > 0) return timeout_result::retransmitted;
            if (rc == 0) return timeout_result::nothing_due;
            if (const char* reason = std::exchange(bio_->write_failure, nullptr)) {
                failure_ = make_failure(errc::internal, std::string("datagram BIO: ") + reason + " (" +
                                                            detail::openssl::drain_errors() + ")");
                return timeout_result::failed;
            }
            // OpenSSL gives up after DTLS1_TMO_ALERT_COUNT (12) timeouts, and
            // fails when it cannot rebuild the flight (out of memory).
            failure_ = make_failure(errc::handshake_timeout,
                                    "OpenSSL gave up retransmitting: " + detail::openssl::drain_errors());
            return timeout_result::failed;
        }

        std::optional<time_point> next_timeout(datagram_io& io) const
        {
            timeval left{};
            if (DTLSv1_get_timeout(ssl_.get(), &left) != 1) return std::nullopt;
            return io.now + std::chrono::seconds(left.tv_sec) + std::chrono::microseconds(left.tv_usec);
        }

        void close(datagram_io& io)
        {
            detail::openssl::io_binding bind(*bio_, io);
            detail::openssl::clear_errors();
            // 0 (close_notify sent, the peer's not yet seen) and 1 are both
            // fine for a datagram association: dtlspp never waits for the
            // peer's close_notify. A negative result (the alert could not be
            // written) changes nothing either: the association ends here,
            // and the peer's own idle timeout ends its side.
            if (SSL_shutdown(ssl_.get()) < 0) detail::openssl::clear_errors();
            detail::openssl::clear_errors();
        }

        const failure& last_failure() const noexcept { return failure_; }

        std::size_t max_record_payload() const
        {
            // DTLS_get_data_mtu subtracts the record header and the current
            // cipher's expansion from the MTU; before the handshake it has
            // no cipher and returns 0.
            const auto n = DTLS_get_data_mtu(ssl_.get());
            return n;
        }

        // OpenSSL has no public call for a cipher's record overhead: the
        // suite policy's table has it (detail/policy.hpp). 0 before a suite
        // is chosen.
        std::size_t record_expansion() const
        {
            const SSL_CIPHER* cipher = chosen_cipher();
            if (cipher == nullptr) return 0;
            const auto* suite = detail::find_suite(static_cast<std::uint16_t>(SSL_CIPHER_get_protocol_id(cipher)));
            return suite ? detail::aead_expansion(suite->cipher) : 0;
        }

        // OpenSSL 3.0 implements no Connection ID.
        dtlspp::connection_ids connection_ids() const { return {}; }

        // OpenSSL 3.0 has no DTLS 1.3.
        dtls_version protocol_version() const noexcept { return dtls_version::dtls_1_2; }

        std::string cipher_suite() const
        {
            const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_.get());
            if (cipher == nullptr) return {};
            const char* standard = SSL_CIPHER_standard_name(cipher);
            return standard != nullptr ? standard : SSL_CIPHER_get_name(cipher);
        }

        std::optional<dtlspp::srtp_profile> srtp_profile() const
        {
            return detail::openssl::selected_srtp_profile(ssl_.get());
        }

        // The caller checked the session is open and the request well formed
        // (detail/keying_material.hpp); OpenSSL does its own label check
        // too. Calls SSL_export_keying_material, 1 on success.
        failure export_keying_material(std::string_view label, std::optional<std::span<const std::byte>> context,
                                       std::span<std::byte> out) const
        {
            detail::openssl::clear_errors();
            static constexpr unsigned char none = 0; // a valid pointer for an empty context
            const auto* context_bytes =
                context && !context->empty() ? reinterpret_cast<const unsigned char*>(context->data()) : &none;
            if (SSL_export_keying_material(ssl_.get(), reinterpret_cast<unsigned char*>(out.data()), out.size(),
                                           label.data(), label.size(), context_bytes, context ? context->size() : 0,
                                           context ? 1 : 0) != 1)
                return make_failure(errc::internal, "SSL_export_keying_material: " + detail::openssl::drain_errors());
            return {};
        }

        SSL* native_handle() const noexcept { return ssl_.get(); }

    private:
        friend struct openssl_backend;
        session() = default;

        // After an SSL call returned rc <= 0: true when it only wants more
        // input; otherwise records the failure with its dtlspp condition.
        bool classify(int rc)
        {
            const int error = SSL_get_error(ssl_.get(), rc);
            if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
                detail::openssl::clear_errors();
                return true;
            }
            if (const char* reason = std::exchange(bio_->write_failure, nullptr)) {
                // OpenSSL only saw the write callback return -1; the reason
                // is ours (openssl/bio.hpp).
                const auto text = detail::openssl::drain_errors();
                failure_ = make_failure(errc::internal,
                                        std::string("datagram BIO: ") + reason + (text.empty() ? "" : " (" + text + ")"));
                return false;
            }
            failure_ = describe_failure(error);
            return false;
        }

        // False for a moved-from session, or one the listener could not make.
        bool usable() const noexcept { return ssl_ != nullptr && bio_ != nullptr; }

        failure describe_failure(int ssl_error)
        {
            if (ssl_error == SSL_ERROR_ZERO_RETURN) return make_failure(errc::peer_closed, "close_notify received");
            const unsigned long first = ERR_peek_error();
            const int reason = ERR_GET_REASON(first);
            std::string text = detail::openssl::drain_errors();
            if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
                const long result = SSL_get_verify_result(ssl_.get());
                return make_failure(errc::verify_failed,
                                    std::string(X509_verify_cert_error_string(result)) + " (" + text + ")");
            }
            // OpenSSL reports a received alert as reason 1000 + description
            // (SSL_AD_REASON_OFFSET).
            if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
                const auto description = static_cast<std::uint8_t>(reason - SSL_AD_REASON_OFFSET);
                return make_failure(detail::condition_for_alert(description, negotiating_psk_suite()),
                                    "alert from peer: " + text);
            }
            if (reason == SSL_R_PSK_IDENTITY_NOT_FOUND)
                return make_failure(errc::psk_mismatch, "unknown PSK identity (" + text + ")");
            if (reason == SSL_R_NO_SHARED_CIPHER || reason == SSL_R_NO_CIPHERS_AVAILABLE ||
                reason == SSL_R_NO_SHARED_GROUPS || reason == SSL_R_UNSUPPORTED_PROTOCOL ||
                reason == SSL_R_WRONG_VERSION_NUMBER)
                return make_failure(errc::handshake_failed, text);
            if (SSL_is_init_finished(ssl_.get()) == 0)
                return make_failure(errc::handshake_failed, text.empty() ? "SSL error " + std::to_string(ssl_error) : text);
            return make_failure(errc::internal, text.empty() ? "SSL error " + std::to_string(ssl_error) : text);
        }

        // Whether the suite chosen so far authenticates with a PSK (plain
        // PSK and ECDHE-PSK both report NID_auth_psk).
        bool negotiating_psk_suite() const
        {
            const SSL_CIPHER* cipher = chosen_cipher();
            return cipher != nullptr && SSL_CIPHER_get_auth_nid(cipher) == NID_auth_psk;
        }

        // The suite of this association. During the handshake a server has
        // chosen it (SSL_get_pending_cipher) before the session records it
        // (SSL_get_current_cipher stays null until then).
        const SSL_CIPHER* chosen_cipher() const
        {
            if (const SSL_CIPHER* current = SSL_get_current_cipher(ssl_.get())) return current;
            return SSL_get_pending_cipher(ssl_.get());
        }

        std::shared_ptr<context> context_; // keeps the SSL_CTX alive
        std::unique_ptr<detail::openssl::bio_state> bio_;
        std::unique_ptr<SSL, detail::openssl::ssl_deleter> ssl_;
        failure failure_;
    };

    // ------------------------------------------------------------------
    // listener: one SSL object that answers cookieless ClientHellos with a
    // HelloVerifyRequest and keeps nothing (DTLSv1_listen).
    class listener {
    public:
        listener(listener&&) noexcept = default;
        listener& operator=(listener&&) noexcept = default;

        listen_result offer(datagram_io& io)
        {
            // The SSL object a previous offer or accept() could not replace
            // (out of memory) is made now; while it cannot be, every
            // datagram is dropped and the listener keeps no state.
            if (!next_.usable()) {
                failure ignored;
                auto fresh = make_session(context_, ignored);
                if (!fresh) return listen_result::dropped;
                next_ = std::move(*fresh);
            }
            const auto queued = io.output != nullptr ? io.output->size() : 0;
            int rc = 0;
            {
                // Unbound before next_ may be replaced below: the binding
                // points into next_'s bio_state.
                detail::openssl::io_binding bind(*next_.bio_, io);
                next_.bio_->remember_peer(io.peer_id);
                ERR_clear_error();
                rc = DTLSv1_listen(next_.ssl_.get(), address_.get());
                ERR_clear_error();
            }
            if (rc == 1) return listen_result::accepted;
            if (rc < 0) {
                // A fatal error leaves the SSL object in an unknown state
                // (including a cookie that could not be computed, which
                // DTLSv1_listen treats as fatal): start the front door afresh
                // so the next peer is unaffected. When no fresh one can be
                // made, the next offer tries again.
                failure ignored;
                auto fresh = make_session(context_, ignored);
                next_ = fresh ? std::move(*fresh) : session();
                // Whatever the failed call queued is not a HelloVerifyRequest.
                if (io.output != nullptr) io.output->truncate(queued);
                return listen_result::dropped;
            }
            const bool answered = io.output != nullptr && io.output->size() > queued;
            return answered ? listen_result::cookie_sent : listen_result::dropped;
        }

        // After offer() returned accepted. The replacement SSL object is
        // made here; when it cannot be, next_ is left empty and the next
        // offer() makes it.
        session accept()
        {
            session verified = std::move(next_);
            next_ = session();
            failure ignored;
            if (auto fresh = make_session(context_, ignored)) next_ = std::move(*fresh);
            return verified;
        }

    private:
        friend struct openssl_backend;
        listener(std::shared_ptr<context> ctx, session first,
                 std::unique_ptr<BIO_ADDR, detail::openssl::bio_addr_deleter> address)
            : context_(std::move(ctx)), next_(std::move(first)), address_(std::move(address))
        {
        }

        std::shared_ptr<context> context_;
        session next_;
        std::unique_ptr<BIO_ADDR, detail::openssl::bio_addr_deleter> address_;
    };

    // ------------------------------------------------------------------
    static std::shared_ptr<context> make_context(const config& c, failure& f) { return make_context(c, f, {}); }

    static std::shared_ptr<context> make_context(const config& c, failure& f, options o)
    {
        using namespace detail::openssl;
        if ((f = validate(c))) return nullptr;
        if ((f = detail::check_versions(c, false, "OpenSSL 3.0"))) return nullptr;
        ERR_clear_error();
        auto result = std::make_shared<context>(c, o);
        result->ctx_.reset(SSL_CTX_new(DTLS_method()));
        SSL_CTX* ctx = result->ctx_.get();
        if (ctx == nullptr) {
            f = make_failure(errc::internal, "SSL_CTX_new: " + drain_errors());
            return nullptr;
        }
        // Every callback finds the context here. SSL_CTX_set_app_data is
        // CRYPTO_set_ex_data, which allocates and can fail.
        if (SSL_CTX_set_app_data(ctx, result.get()) != 1) {
            f = make_failure(errc::internal, "SSL_CTX_set_app_data: " + drain_errors());
            return nullptr;
        }
        if (c.role == role::server && !result->cookies_.usable()) {
            f = make_failure(errc::internal, "cookie_secret: no secret could be drawn for the cookies (" + drain_errors() + ")");
            return nullptr;
        }
        // DTLS 1.2 only: DTLS 1.0 is deprecated (RFC 8996).
        if (SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION) != 1 ||
            SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION) != 1) {
            f = make_failure(errc::internal, "SSL_CTX_set_min/max_proto_version(DTLS 1.2): " + drain_errors());
            return nullptr;
        }
        // NO_QUERY_MTU: see the top of this file. NO_RENEGOTIATION: a
        // renegotiation would mean epochs above 1, which the endpoint treats
        // as invalid. NO_TICKET: keeps the handshake comparable across stacks
        // and the final flight small.
        SSL_CTX_set_options(ctx, (o.emulate_default_mtu ? 0 : SSL_OP_NO_QUERY_MTU) | SSL_OP_NO_RENEGOTIATION |
                                     SSL_OP_NO_TICKET | (c.role == role::server ? SSL_OP_COOKIE_EXCHANGE : 0));
        // No session cache, as on mbedTLS (which has none unless given
        // one): dtlspp offers no resumption, and OpenSSL's server cache
        // would keep every session in the context's hash table for its
        // 300 s lifetime. It also keeps away from a use-after-free in
        // SSL_CTX_add_session when inserting into that table fails for
        // lack of memory (openssl/openssl#28632), which the
        // fault-injection test hit with OpenSSL 3.0.20 on Windows.
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        if (c.certificate && (f = load_certificate(ctx, *c.certificate))) return nullptr;
        if (!c.trusted_ca.empty() && (f = load_trusted(ctx, c.trusted_ca))) return nullptr;

        // The shared suite and group policy (detail/policy.hpp), in its
        // order, and a server picks by that order, as mbedTLS servers do.
        std::string suites;
        for (const auto iana : detail::offered_suites(c, key_kind(ctx))) {
            if (!suites.empty()) suites += ':';
            suites += suite_name(iana);
        }
        if (suites.empty()) {
            f = make_failure(errc::config_invalid,
                             "certificate: the private key is neither ECDSA nor RSA, so no offered suite can use it");
            return nullptr;
        }
        if (SSL_CTX_set_cipher_list(ctx, suites.c_str()) != 1) {
            f = config_failure("ciphers", "no usable cipher suite");
            return nullptr;
        }
        if (c.role == role::server) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
        std::string groups;
        for (const auto g : detail::group_policy) {
            if (!groups.empty()) groups += ':';
            groups += group_name(g);
        }
        if (SSL_CTX_set1_groups_list(ctx, groups.c_str()) != 1) {
            f = config_failure("ciphers", "key exchange groups not available");
            return nullptr;
        }

        switch (c.effective_verification()) {
        case peer_verification::none: SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr); break;
        case peer_verification::optional: SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr); break;
        case peer_verification::required:
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
            break;
        }

        if (c.psk) {
            if (c.role == role::client)
                SSL_CTX_set_psk_client_callback(ctx, psk_client_callback);
            else
                SSL_CTX_set_psk_server_callback(ctx, psk_server_callback);
        }
        if (!c.alpn.empty()) {
            std::string wire;
            for (const auto& p : c.alpn) {
                wire += static_cast<char>(p.size());
                wire += p;
            }
            result->alpn_wire_ = wire;
            if (c.role == role::client) {
                if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                            static_cast<unsigned>(wire.size())) != 0) {
                    f = config_failure("alpn", "rejected by OpenSSL");
                    return nullptr;
                }
            } else {
                SSL_CTX_set_alpn_select_cb(ctx, alpn_select_callback, result.get());
            }
        }
        if (!c.srtp_profiles.empty()) {
            std::string refusal;
            const auto list = srtp_profile_list(c, refusal);
            if (!has_srtp) {
                f = config_failure("srtp_profiles", "this OpenSSL is built without DTLS-SRTP (OPENSSL_NO_SRTP)");
                return nullptr;
            }
            if (!list) {
                f = make_failure(errc::config_invalid, refusal);
                return nullptr;
            }
#if !defined(OPENSSL_NO_SRTP)
            // Returns 0 on success, unlike most of OpenSSL (ssl.h,
            // SSL_CTX_set_tlsext_use_srtp).
            if (SSL_CTX_set_tlsext_use_srtp(ctx, list->c_str()) != 0) {
                f = config_failure("srtp_profiles", "rejected by OpenSSL");
                return nullptr;
            }
#endif
        }
        if (c.key_log) SSL_CTX_set_keylog_callback(ctx, key_log_callback);
        if (c.role == role::server) {
            SSL_CTX_set_cookie_generate_cb(ctx, cookie_generate_callback);
            SSL_CTX_set_cookie_verify_cb(ctx, cookie_verify_callback);
        }
        result->self_ = result;
        return result;
    }

    static std::optional<session> connect(context& ctx, failure& f)
    {
        if ((f = detail::check_role(ctx.settings(), role::client, "connect"))) return std::nullopt;
        auto s = make_session(owner_of(ctx), f);
        if (!s) return std::nullopt;
        SSL* ssl = s->ssl_.get();
        SSL_set_connect_state(ssl);
        const auto& c = ctx.settings();
        if (!c.server_name.empty()) {
            // SNI carries host names only (RFC 6066 §3), never IP literals.
            const bool is_ip = is_ip_literal(c.server_name);
            if (!is_ip && SSL_set_tlsext_host_name(ssl, c.server_name.c_str()) != 1) {
                f = detail::openssl::config_failure("server_name", "refused as SNI host name");
                return std::nullopt;
            }
            if (c.effective_verification() != peer_verification::none) {
                X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
                const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, c.server_name.c_str())
                                     : X509_VERIFY_PARAM_set1_host(param, c.server_name.c_str(), 0);
                if (ok != 1) {
                    f = detail::openssl::config_failure("server_name", "not a valid host name or address");
                    return std::nullopt;
                }
            }
        }
        return s;
    }

    static std::optional<listener> make_listener(context& ctx, failure& f)
    {
        if ((f = detail::check_role(ctx.settings(), role::server, "make_listener"))) return std::nullopt;
        auto first = make_session(owner_of(ctx), f);
        if (!first) return std::nullopt;
        std::unique_ptr<BIO_ADDR, detail::openssl::bio_addr_deleter> address(BIO_ADDR_new());
        if (!address) {
            f = make_failure(errc::internal, "BIO_ADDR_new: " + detail::openssl::drain_errors());
            return std::nullopt;
        }
        return listener(owner_of(ctx), std::move(*first), std::move(address));
    }

private:
    static std::shared_ptr<context> owner_of(context& ctx) { return ctx.self_.lock(); }

    static std::optional<session> make_session(std::shared_ptr<context> ctx, failure& f)
    {
        using namespace detail::openssl;
        session s;
        s.context_ = ctx;
        s.bio_ = std::make_unique<bio_state>();
        s.bio_->mtu = static_cast<long>(ctx->settings().max_udp_payload);
        s.bio_->emulate_default_mtu = ctx->backend_options().emulate_default_mtu;
        s.ssl_.reset(SSL_new(ctx->native()));
        if (!s.ssl_) {
            f = make_failure(errc::internal, "SSL_new: " + drain_errors());
            return std::nullopt;
        }
        SSL* ssl = s.ssl_.get();
        BIO* bio = make_datagram_bio(*s.bio_);
        if (bio == nullptr) {
            f = make_failure(errc::internal, "BIO_new: " + drain_errors());
            return std::nullopt;
        }
        SSL_set_bio(ssl, bio, bio); // the SSL owns the BIO (one reference for read and write)
        // After SSL_new: dtls1_clear() keeps this MTU only because
        // SSL_OP_NO_QUERY_MTU is already on the SSL_CTX. SSL_set_mtu refuses
        // values below its floor (256 - 48 = 208); config::validate() already
        // refuses anything below 256.
        if (!s.bio_->emulate_default_mtu && SSL_set_mtu(ssl, s.bio_->mtu) <= 0) { // returns the MTU it set, 0 when below its floor
            f = make_failure(errc::mtu_too_small, "OpenSSL refused MTU " + std::to_string(s.bio_->mtu));
            return std::nullopt;
        }
        // The write buffer holds one record, and OpenSSL sizes it for
        // max_send_fragment (2^14 unless told) when the handshake starts.
        // No record dtlspp sends is longer than the datagram it goes in:
        // handshake fragments are cut to the MTU and max_record_payload()
        // is DTLS_get_data_mtu, less than max_udp_payload. So the datagram
        // limit is the fragment limit, and a session's write buffer shrinks
        // from 16 KiB to about max_udp_payload. OpenSSL takes 512 to 16384.
        const auto fragment = std::clamp<long>(s.bio_->mtu, 512, SSL3_RT_MAX_PLAIN_LENGTH);
        if (SSL_set_max_send_fragment(ssl, fragment) != 1) {
            f = make_failure(errc::internal, "SSL_set_max_send_fragment: " + drain_errors());
            return std::nullopt;
        }
        DTLS_set_timer_cb(ssl, timer_callback);
        if (ctx->settings().role == role::server) SSL_set_accept_state(ssl);
        return s;
    }

    // Called by OpenSSL when it starts or doubles its retransmission timer:
    // 0 asks for the initial value; return the next one, capped.
    static unsigned int timer_callback(SSL* ssl, unsigned int previous_us) noexcept
    {
        const auto* ctx = context_of(ssl);
        // No context (cannot happen: make_context checks set_app_data):
        // OpenSSL's own 1 s initial timeout, doubled.
        if (ctx == nullptr) return previous_us == 0 ? 1000000u : 2u * previous_us;
        const auto initial = std::chrono::duration_cast<std::chrono::microseconds>(
            ctx->settings().initial_retransmission_timeout);
        const auto maximum =
            std::chrono::duration_cast<std::chrono::microseconds>(ctx->settings().max_retransmission_timeout);
        if (previous_us == 0) return static_cast<unsigned int>(initial.count());
        const auto doubled = std::min<long long>(2LL * previous_us, maximum.count());
        return static_cast<unsigned int>(doubled);
    }

    // The context every callback reads; null only if the SSL object has no
    // context of ours.
    static const context* context_of(const SSL* ssl) noexcept
    {
        return static_cast<const context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    }

    static const detail::openssl::bio_state* bio_of(SSL* ssl) noexcept
    {
        BIO* rbio = SSL_get_rbio(ssl);
        return rbio != nullptr ? static_cast<const detail::openssl::bio_state*>(BIO_get_data(rbio)) : nullptr;
    }

    // 0 tells DTLSv1_listen the cookie could not be made: it fails the call
    // (SSL_R_COOKIE_GEN_CALLBACK_FAILURE) and the listener drops the
    // ClientHello, so no HelloVerifyRequest ever carries a cookie that was
    // not computed.
    static int cookie_generate_callback(SSL* ssl, unsigned char* cookie, unsigned int* length) noexcept
    {
        const auto* state = bio_of(ssl);
        const auto* ctx = context_of(ssl);
        if (state == nullptr || ctx == nullptr) return 0;
        const auto value = ctx->cookies().make(state->peer());
        if (!value) return 0;
        // DTLSv1_listen hands a buffer of DTLS1_COOKIE_LENGTH (255) bytes.
        static_assert(detail::cookie_size <= DTLS1_COOKIE_LENGTH);
        std::memcpy(cookie, value->data(), value->size());
        *length = static_cast<unsigned int>(value->size());
        return 1;
    }

    static int cookie_verify_callback(SSL* ssl, const unsigned char* cookie, unsigned int length) noexcept
    {
        const auto* state = bio_of(ssl);
        const auto* ctx = context_of(ssl);
        if (state == nullptr || ctx == nullptr) return 0;
        return ctx->cookies().verify(state->peer(), std::span(cookie, length)) ? 1 : 0;
    }

    // 0 = no PSK: OpenSSL fails the handshake.
    static unsigned int psk_client_callback(SSL* ssl, const char* /*hint*/, char* identity,
                                            unsigned int max_identity, unsigned char* key,
                                            unsigned int max_key) noexcept
    {
        const auto* ctx = context_of(ssl);
        if (ctx == nullptr || !ctx->settings().psk) return 0;
        const auto& psk = *ctx->settings().psk;
        if (psk.identity.size() + 1 > max_identity || psk.key.size() > max_key) return 0;
        std::memcpy(identity, psk.identity.c_str(), psk.identity.size() + 1);
        std::memcpy(key, psk.key.data(), psk.key.size());
        return static_cast<unsigned int>(psk.key.size());
    }

    static unsigned int psk_server_callback(SSL* ssl, const char* identity, unsigned char* key,
                                            unsigned int max_key) noexcept
    {
        const auto* ctx = context_of(ssl);
        if (ctx == nullptr || !ctx->settings().psk) return 0;
        const auto& psk = *ctx->settings().psk;
        // An unknown identity returns 0: OpenSSL then fails the handshake
        // with an unknown_psk_identity alert (RFC 4279 §2).
        if (identity == nullptr || psk.identity != identity || psk.key.size() > max_key) return 0;
        std::memcpy(key, psk.key.data(), psk.key.size());
        return static_cast<unsigned int>(psk.key.size());
    }

    static int alpn_select_callback(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length,
                                    const unsigned char* in, unsigned int in_length, void* arg) noexcept
    {
        const auto* ctx = static_cast<const context*>(arg);
        unsigned char* selected = nullptr;
        const auto& ours = ctx->alpn_wire_;
        if (SSL_select_next_proto(&selected, out_length, reinterpret_cast<const unsigned char*>(ours.data()),
                                  static_cast<unsigned>(ours.size()), in, in_length) != OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_ALERT_FATAL; // RFC 7301 §3.2: no_application_protocol
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }

    // The user's key log may throw; it must not unwind through OpenSSL. A
    // key log that fails loses a line and never the handshake, as on the
    // mbedTLS backend (context::export_keys).
    static void key_log_callback(const SSL* ssl, const char* line) noexcept
    {
        const auto* ctx = context_of(ssl);
        if (ctx == nullptr || !ctx->settings().key_log) return;
        try {
            ctx->settings().key_log(line);
        } catch (...) {
        }
    }

    static bool is_ip_literal(const std::string& name)
    {
        ASN1_OCTET_STRING* ip = a2i_IPADDRESS(name.c_str());
        if (ip == nullptr) return false;
        ASN1_OCTET_STRING_free(ip);
        return true;
    }

    static failure load_certificate(SSL_CTX* ctx, const x509_credentials& credentials)
    {
        using namespace detail::openssl;
        bio_ptr chain(open_pem(credentials.certificate_chain), &BIO_free);
        if (!chain) return config_failure("certificate.certificate_chain", "cannot open");
        X509* leaf = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr);
        if (leaf == nullptr) return config_failure("certificate.certificate_chain", "no PEM certificate found");
        if (!extensions_decoded(leaf)) {
            X509_free(leaf);
            return config_failure("certificate.certificate_chain", "certificate extensions could not be decoded");
        }
        const int used = SSL_CTX_use_certificate(ctx, leaf);
        X509_free(leaf);
        if (used != 1) return config_failure("certificate.certificate_chain", "certificate rejected");
        // The rest of the file is the chain up to (not including) the root.
        while (X509* extra = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr)) {
            if (!extensions_decoded(extra)) {
                X509_free(extra);
                return config_failure("certificate.certificate_chain", "intermediate's extensions could not be decoded");
            }
            if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
                X509_free(extra);
                return config_failure("certificate.certificate_chain", "intermediate rejected");
            }
        }
        // The loop ends on a "no start line" error: expected. Any other
        // error would silently drop the rest of the chain.
        if (!pem_ended_cleanly())
            return config_failure("certificate.certificate_chain", "cannot read an intermediate certificate");

        bio_ptr key_bio(open_pem(credentials.private_key), &BIO_free);
        if (!key_bio) return config_failure("certificate.private_key", "cannot open");
        EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
        if (key == nullptr) return config_failure("certificate.private_key", "no PEM private key found");
        const int key_used = SSL_CTX_use_PrivateKey(ctx, key);
        EVP_PKEY_free(key);
        if (key_used != 1 || SSL_CTX_check_private_key(ctx) != 1)
            return config_failure("certificate.private_key", "does not match the certificate");
        return {};
    }

    static failure load_trusted(SSL_CTX* ctx, const pem_source& source)
    {
        using namespace detail::openssl;
        bio_ptr bio(open_pem(source), &BIO_free);
        if (!bio) return config_failure("trusted_ca", "cannot open");
        X509_STORE* store = SSL_CTX_get_cert_store(ctx);
        if (store == nullptr) return config_failure("trusted_ca", "the SSL_CTX has no certificate store");
        int count = 0;
        while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
            if (!extensions_decoded(cert)) {
                X509_free(cert);
                return config_failure("trusted_ca", "certificate extensions could not be decoded");
            }
            const int added = X509_STORE_add_cert(store, cert);
            X509_free(cert);
            if (added != 1) {
                // A certificate listed twice in a bundle is fine: OpenSSL
                // refuses the second copy with CERT_ALREADY_IN_HASH_TABLE.
                const unsigned long error = ERR_peek_last_error();
                if (ERR_GET_LIB(error) != ERR_LIB_X509 || ERR_GET_REASON(error) != X509_R_CERT_ALREADY_IN_HASH_TABLE)
                    return config_failure("trusted_ca", "certificate rejected by the store");
                ERR_clear_error();
            }
            ++count;
        }
        if (count == 0) return config_failure("trusted_ca", "no PEM certificate found");
        if (!pem_ended_cleanly()) return config_failure("trusted_ca", "cannot read a certificate");
        return {};
    }
};

static_assert(backend<openssl_backend>);
static_assert(keying_material_backend<openssl_backend>);

} // namespace dtlspp
