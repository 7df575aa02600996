// SPDX-License-Identifier: MIT
// Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1), one scheme for
// every backend:
//
//   cookie     = HMAC-SHA256(period_key, peer transport id)
//   period_key = HMAC-SHA256(master secret, period number, 8 bytes big-endian)
//   period     = config::cookie_clock() in seconds / cookie_lifetime
//
// The secret rotates by itself, and a cookie of the current or the previous
// period verifies, so a cookie lives between one and two lifetimes. Servers
// that share the master secret and agree on the clock accept each other's
// cookies, whichever stack runs them. No per-peer state exists at any point.
//
// The adapter supplies HMAC-SHA256 from its own stack; the time and the
// randomness for a missing secret come from the config (config.hpp), so
// cookie expiry is testable on a virtual clock.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/config.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace dtlspp::detail {

inline constexpr std::size_t cookie_size = 32;
using cookie_value = std::array<std::uint8_t, cookie_size>;

// HMAC-SHA256 of `message` under `key` into `out`; false when the stack
// could not compute it (out of memory). Must not throw.
using hmac_sha256_fn = bool (*)(std::span<const std::uint8_t> key, std::span<const std::uint8_t> message,
                                std::span<std::uint8_t, cookie_size> out) noexcept;

// Overwrites secrets so they do not linger in freed memory; the volatile
// stores are not optimised away.
inline void wipe(std::span<std::uint8_t> bytes) noexcept
{
    volatile std::uint8_t* p = bytes.data();
    for (std::size_t i = 0; i < bytes.size(); ++i) p[i] = 0;
}

// Compares in time independent of the contents, so a forged cookie does not
// learn how many of its leading bytes were right.
inline bool equal_in_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept
{
    if (a.size() != b.size()) return false;
    std::uint8_t difference = 0;
    for (std::size_t i = 0; i < a.size(); ++i) difference |= static_cast<std::uint8_t>(a[i] ^ b[i]);
    return difference == 0;
}

class cookie_factory {
public:
    // `stack_random` draws the secret when the config gives neither a
    // cookie_secret nor a random_source. When no secret can be drawn the
    // factory is unusable: it makes no cookie and verifies none, and
    // make_context reports that.
    cookie_factory(const config& c, hmac_sha256_fn hmac,
                   const std::function<bool(std::span<std::uint8_t>)>& stack_random)
        : master_(c.cookie_secret), lifetime_(c.cookie_lifetime), clock_(c.cookie_clock), hmac_(hmac)
    {
        if (master_.empty()) {
            master_.resize(32);
            const auto& draw = c.random_source ? c.random_source : stack_random;
            if (!draw || !draw(master_)) {
                wipe(master_);
                master_.clear();
            }
        }
    }
    cookie_factory(const cookie_factory&) = delete;
    cookie_factory& operator=(const cookie_factory&) = delete;
    ~cookie_factory() { wipe(master_); }

    bool usable() const noexcept { return !master_.empty() && lifetime_.count() > 0 && hmac_ != nullptr; }

    // Nothing when the HMAC cannot be computed: such a cookie must never be
    // sent, since an unchecked failure would leave a predictable value.
    std::optional<cookie_value> make(std::span<const std::byte> peer_id) const noexcept
    {
        const auto period = current_period();
        if (!usable() || !period) return std::nullopt;
        return make_for_period(peer_id, *period);
    }

    // False unless the candidate is this or the previous period's cookie
    // for this peer, and false whenever the expected one cannot be computed.
    bool verify(std::span<const std::byte> peer_id, std::span<const std::uint8_t> candidate) const noexcept
    {
        if (candidate.size() != cookie_size || !usable()) return false;
        const auto period = current_period();
        if (!period) return false;
        for (auto p : {*period, *period - 1}) {
            auto expected = make_for_period(peer_id, p);
            if (!expected) return false;
            const bool match = equal_in_constant_time(*expected, candidate);
            wipe(*expected);
            if (match) return true;
        }
        return false;
    }

    // The current period and its key, for a stack that computes its cookies
    // itself under a secret it is given (wolfSSL): the secret then rotates
    // with cookie_lifetime as it does here. Nothing when unusable.
    // `back` = 1 gives the previous period's, whose cookies still verify.
    std::optional<std::pair<std::int64_t, cookie_value>> period_key(int back = 0) const noexcept
    {
        auto period = current_period();
        if (!usable() || !period) return std::nullopt;
        *period -= back;
        std::array<std::uint8_t, 8> period_bytes{};
        for (std::size_t i = 0; i < period_bytes.size(); ++i)
            period_bytes[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(*period) >> (56 - 8 * i));
        cookie_value key{};
        if (!hmac_(master_, period_bytes, key)) return std::nullopt;
        return std::pair{*period, key};
    }

private:
    std::optional<std::int64_t> current_period() const noexcept
    {
        try {
            const auto now = clock_ ? clock_() : std::chrono::system_clock::now();
            return std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() /
                   lifetime_.count();
        } catch (...) {
            // A throwing clock is a clock that cannot tell the time: no
            // cookie, and this runs inside a C callback.
            return std::nullopt;
        }
    }

    std::optional<cookie_value> make_for_period(std::span<const std::byte> peer_id, std::int64_t period) const noexcept
    {
        std::array<std::uint8_t, 8> period_bytes{};
        for (std::size_t i = 0; i < period_bytes.size(); ++i)
            period_bytes[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(period) >> (56 - 8 * i));
        cookie_value key{};
        std::optional<cookie_value> result;
        if (hmac_(master_, period_bytes, key)) {
            cookie_value value{};
            const std::span<const std::uint8_t> id(reinterpret_cast<const std::uint8_t*>(peer_id.data()),
                                                   peer_id.size());
            if (hmac_(key, id, value)) result = value;
            wipe(value);
        }
        wipe(key);
        return result;
    }

    std::vector<std::uint8_t> master_;
    std::chrono::seconds lifetime_;
    std::function<std::chrono::system_clock::time_point()> clock_;
    hmac_sha256_fn hmac_;
};

} // namespace dtlspp::detail
