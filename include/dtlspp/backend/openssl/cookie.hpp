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
#include <span>
#include <stdexcept>
#include <vector>

namespace dtlspp::detail::openssl {

class cookie_factory {
public:
    static constexpr std::size_t cookie_size = 32;
    using cookie = std::array<unsigned char, cookie_size>;

    cookie_factory(std::vector<std::uint8_t> master_secret, std::chrono::seconds lifetime)
        : master_(std::move(master_secret)), lifetime_(lifetime)
    {
        if (master_.empty()) {
            master_.resize(32);
            if (RAND_bytes(master_.data(), static_cast<int>(master_.size())) != 1)
                throw std::runtime_error("RAND_bytes failed: no randomness for the cookie secret");
        }
    }

    cookie make(std::span<const std::byte> peer_id) const { return make_for_period(peer_id, current_period()); }

    bool verify(std::span<const std::byte> peer_id, std::span<const unsigned char> candidate) const
    {
        if (candidate.size() != cookie_size) return false;
        const auto period = current_period();
        for (auto p : {period, period - 1}) {
            const auto expected = make_for_period(peer_id, p);
            // Constant time: the comparison must not tell an attacker how
            // many leading bytes of a forged cookie were right.
            if (CRYPTO_memcmp(expected.data(), candidate.data(), cookie_size) == 0) return true;
        }
        return false;
    }

private:
    std::int64_t current_period() const
    {
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        return std::chrono::duration_cast<std::chrono::seconds>(now).count() / lifetime_.count();
    }

    cookie make_for_period(std::span<const std::byte> peer_id, std::int64_t period) const
    {
        unsigned char period_bytes[8];
        for (int i = 0; i < 8; ++i) period_bytes[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(period) >> (56 - 8 * i));
        cookie key{};
        unsigned int length = 0;
        HMAC(EVP_sha256(), master_.data(), static_cast<int>(master_.size()), period_bytes, sizeof period_bytes,
             key.data(), &length);
        cookie result{};
        HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(peer_id.data()), peer_id.size(), result.data(), &length);
        OPENSSL_cleanse(key.data(), key.size());
        return result;
    }

    std::vector<std::uint8_t> master_;
    std::chrono::seconds lifetime_;
};

} // namespace dtlspp::detail::openssl
