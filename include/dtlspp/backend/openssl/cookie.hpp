// Stateless HelloVerifyRequest cookies for the OpenSSL adapter (RFC 6347
// §4.2.1). OpenSSL leaves the cookie to the application
// (SSL_CTX_set_cookie_generate_cb / _verify_cb); this is dtlspp's:
//
//   cookie = HMAC-SHA256(period_key, peer transport id)
//   period_key = HMAC-SHA256(master secret, period number)
//
// The period number is wall-clock time divided by the cookie lifetime, so the
// secret rotates by itself and servers that share a master secret (behind a
// load balancer) agree on cookies. A cookie from the current or the previous
// period verifies. No per-peer state exists at any point.
#pragma once

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace dtlspp::detail::openssl {

class cookie_factory {
public:
    static constexpr std::size_t cookie_size = 32;
    using cookie = std::array<unsigned char, cookie_size>;

    // Without a master secret, one is drawn from RAND_bytes. When that
    // fails the factory is left unusable (usable() is false) rather than
    // throwing: make_context turns that into a failure, and a factory
    // without a secret makes no cookie and verifies none.
    cookie_factory(std::vector<std::uint8_t> master_secret, std::chrono::seconds lifetime)
        : master_(std::move(master_secret)), lifetime_(lifetime)
    {
        if (master_.empty()) {
            master_.resize(32);
            if (RAND_bytes(master_.data(), static_cast<int>(master_.size())) != 1) {
                OPENSSL_cleanse(master_.data(), master_.size());
                master_.clear();
            }
        }
    }

    bool usable() const noexcept { return !master_.empty() && lifetime_.count() > 0; }

    // Nothing when the HMAC cannot be computed (HMAC() fails when OpenSSL
    // cannot allocate its MAC context): such a cookie must never be sent,
    // since an unchecked failure would leave a predictable all-zero value.
    std::optional<cookie> make(std::span<const std::byte> peer_id) const noexcept
    {
        if (!usable()) return std::nullopt;
        return make_for_period(peer_id, current_period());
    }

    // False when the candidate is not the current or the previous period's
    // cookie for this peer, and false whenever the expected cookie cannot
    // be computed.
    bool verify(std::span<const std::byte> peer_id, std::span<const unsigned char> candidate) const noexcept
    {
        if (candidate.size() != cookie_size || !usable()) return false;
        const auto period = current_period();
        for (auto p : {period, period - 1}) {
            const auto expected = make_for_period(peer_id, p);
            if (!expected) return false;
            // Constant time: the comparison must not tell an attacker how
            // many leading bytes of a forged cookie were right.
            if (CRYPTO_memcmp(expected->data(), candidate.data(), cookie_size) == 0) return true;
        }
        return false;
    }

private:
    std::int64_t current_period() const noexcept
    {
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        return std::chrono::duration_cast<std::chrono::seconds>(now).count() / lifetime_.count();
    }

    std::optional<cookie> make_for_period(std::span<const std::byte> peer_id, std::int64_t period) const noexcept
    {
        unsigned char period_bytes[8];
        for (int i = 0; i < 8; ++i) period_bytes[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(period) >> (56 - 8 * i));
        cookie key{};
        unsigned int length = 0;
        // HMAC() returns NULL on failure (hmac.h); the length must also be
        // SHA-256's, or part of the buffer would stay zero.
        const bool keyed = HMAC(EVP_sha256(), master_.data(), static_cast<int>(master_.size()), period_bytes,
                                sizeof period_bytes, key.data(), &length) != nullptr &&
                           length == cookie_size;
        std::optional<cookie> result;
        if (keyed) {
            cookie value{};
            length = 0;
            if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                     reinterpret_cast<const unsigned char*>(peer_id.data()), peer_id.size(), value.data(),
                     &length) != nullptr &&
                length == cookie_size)
                result = value;
            OPENSSL_cleanse(value.data(), value.size());
        }
        OPENSSL_cleanse(key.data(), key.size());
        return result;
    }

    std::vector<std::uint8_t> master_;
    std::chrono::seconds lifetime_;
};

} // namespace dtlspp::detail::openssl
