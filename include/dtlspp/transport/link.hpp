// SPDX-License-Identifier: MIT
#pragma once

#include <dtlspp/version.hpp>

// impaired_link: two in-memory datagram pipes (a_to_b, b_to_a) that lose,
// duplicate, delay and reorder datagrams on purpose, so handshake and
// retransmission logic can be tested without a real network.
//
// Design choices:
// - The caller supplies the time on every call, so the link runs equally on
//   a virtual clock (fast, deterministic tests) or on steady_clock::now().
// - Randomness comes from a private xoshiro256** generator and a private
//   [0,1) conversion. std::*_distribution results differ between standard
//   libraries, which would make "seed 42 fails" unreproducible elsewhere.
// - Each direction has its own generator, so traffic in one direction never
//   shifts the impairments seen by the other.
// - Only the reorder knob reorders. Delay and jitter keep FIFO order, so each
//   knob can be tested (and reasoned about) on its own.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

namespace dtlspp {

enum class link_direction { a_to_b, b_to_a };

// Gilbert-Elliott two-state loss model. The default never leaves the good
// state and never loses in it, i.e. it is off.
struct burst_loss {
    double good_to_bad = 0.0;   // per-datagram probability of entering the bad state
    double bad_to_good = 0.0;   // per-datagram probability of leaving it
    double loss_in_good = 0.0;  // loss probability while good
    double loss_in_bad = 1.0;   // loss probability while bad

    bool enabled() const noexcept { return good_to_bad > 0.0 || loss_in_good > 0.0; }
};

struct link_impairments {
    using duration = std::chrono::steady_clock::duration;

    double loss_rate = 0.0;  // independent per-datagram loss probability
    burst_loss burst{};
    double duplicate_rate = 0.0;  // probability a datagram is delivered twice

    // Probability a datagram is held back until the next datagram in the
    // same direction has been queued, which then overtakes it. If no next
    // datagram is sent within reorder_max_hold, it is released late instead
    // (a handshake's last flight must not vanish just because nothing follows).
    // Only one datagram is held at a time and the one that overtakes it is
    // never held itself, so the observed share is reorder_rate / (1 + reorder_rate).
    double reorder_rate = 0.0;
    duration reorder_max_hold = std::chrono::milliseconds{50};

    duration delay{0};   // base one-way latency
    duration jitter{0};  // latency varies uniformly in [delay - jitter, delay + jitter]

    std::optional<std::size_t> mtu;  // datagrams larger than this are dropped

    // 1-based send indices (per direction) to drop, e.g. {1} loses the first
    // ClientHello. Counted on every send() call, including dropped ones.
    std::set<std::uint64_t> drop_indices;
};

struct link_drop_counters {
    std::uint64_t loss = 0;   // loss_rate
    std::uint64_t burst = 0;  // Gilbert-Elliott
    std::uint64_t mtu = 0;    // over the MTU clamp
    std::uint64_t index = 0;  // listed in drop_indices

    std::uint64_t total() const noexcept { return loss + burst + mtu + index; }
};

struct link_counters {
    std::uint64_t sent = 0;       // send() calls
    std::uint64_t delivered = 0;  // datagrams handed out by receive(), duplicates included
    link_drop_counters dropped{};
    std::uint64_t duplicated = 0;  // extra copies queued
    std::uint64_t reordered = 0;   // held datagrams that were overtaken
};

namespace detail {

// splitmix64 expands one 64-bit seed into well-mixed state words; feeding
// xoshiro a raw small seed (0, 1, 2...) would start it in a poor state.
inline std::uint64_t splitmix64_next(std::uint64_t& state) noexcept {
    state += 0x9e3779b97f4a7c15ULL;
    std::uint64_t mixed = state;
    mixed = (mixed ^ (mixed >> 30)) * 0xbf58476d1ce4e5b9ULL;
    mixed = (mixed ^ (mixed >> 27)) * 0x94d049bb133111ebULL;
    return mixed ^ (mixed >> 31);
}

// xoshiro256**: small, fast, and defined purely by integer operations, so
// every platform yields the same sequence for the same seed.
class random_stream {
public:
    explicit random_stream(std::uint64_t seed) noexcept {
        for (auto& word : state_) {
            word = splitmix64_next(seed);
        }
    }

    std::uint64_t next() noexcept {
        const std::uint64_t result = rotate_left(state_[1] * 5, 7) * 9;
        const std::uint64_t shifted = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= shifted;
        state_[3] = rotate_left(state_[3], 45);
        return result;
    }

    // Top 53 bits scaled by 2^-53: exactly representable, uniform on [0, 1).
    double next_unit() noexcept {
        return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
    }

    // Always false for 0 and always true for 1, since next_unit() < 1.
    bool chance(double probability) noexcept { return next_unit() < probability; }

private:
    static std::uint64_t rotate_left(std::uint64_t value, int shift) noexcept {
        return (value << shift) | (value >> (64 - shift));
    }

    std::array<std::uint64_t, 4> state_{};
};

}  // namespace detail

class impaired_link {
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;

    explicit impaired_link(std::uint64_t seed = 0)
        : pipes_{pipe{detail::random_stream(seed)},
                 // A fixed odd constant separates the two directions' streams.
                 pipe{detail::random_stream(seed ^ 0xa5a5a5a5a5a5a5a5ULL)}} {}

    // Applies to datagrams sent from now on; datagrams in flight keep the
    // fate they were given when sent.
    void set_impairments(link_direction direction, link_impairments impairments) {
        at(direction).impairments = std::move(impairments);
    }

    const link_impairments& impairments(link_direction direction) const {
        return at(direction).impairments;
    }

    void send(link_direction direction, std::span<const std::byte> datagram, time_point now) {
        pipe& line = at(direction);
        const link_impairments& knobs = line.impairments;
        release_expired_hold(line, now);

        const std::uint64_t index = ++line.counters.sent;
        if (knobs.drop_indices.contains(index)) {
            ++line.counters.dropped.index;
            return;
        }
        if (knobs.mtu && datagram.size() > *knobs.mtu) {
            ++line.counters.dropped.mtu;
            return;
        }
        if (knobs.burst.enabled() && lost_in_burst(line)) {
            ++line.counters.dropped.burst;
            return;
        }
        if (knobs.loss_rate > 0.0 && line.random.chance(knobs.loss_rate)) {
            ++line.counters.dropped.loss;
            return;
        }
        const bool duplicate =
            knobs.duplicate_rate > 0.0 && line.random.chance(knobs.duplicate_rate);
        // The FIFO clamp is what keeps jitter from reordering on its own.
        const time_point due = std::max(now + latency(line), line.last_due);
        const bool hold = !line.held && knobs.reorder_rate > 0.0 &&
                          line.random.chance(knobs.reorder_rate);

        std::vector<std::byte> payload(datagram.begin(), datagram.end());
        if (duplicate) {
            ++line.counters.duplicated;
        }
        if (hold) {
            line.held = held_datagram{std::move(payload), due, due + knobs.reorder_max_hold, duplicate};
            return;
        }
        if (duplicate) {
            enqueue(line, payload, due);
        }
        enqueue(line, std::move(payload), due);

        // This datagram overtakes the held one, which now follows it.
        if (line.held) {
            ++line.counters.reordered;
            release_hold(line, due);
        }
    }

    // Copies the next due datagram into buffer and returns its full size.
    // A result larger than buffer.size() means the copy was cut short, just
    // as MSG_TRUNC reports for a socket; the datagram is consumed either way.
    std::optional<std::size_t> receive(link_direction direction, time_point now,
                                       std::span<std::byte> buffer) {
        pipe& line = at(direction);
        release_expired_hold(line, now);
        if (line.queue.empty() || line.queue.front().due > now) {
            return std::nullopt;
        }
        const std::vector<std::byte> payload = std::move(line.queue.front().payload);
        line.queue.pop_front();
        ++line.counters.delivered;
        const std::size_t copied = std::min(payload.size(), buffer.size());
        std::copy_n(payload.begin(), copied, buffer.begin());
        return payload.size();
    }

    // When the next datagram becomes receivable; nullopt if none is in
    // flight. Lets a virtual-time driver jump straight to the next event.
    std::optional<time_point> next_delivery(link_direction direction) const {
        const pipe& line = at(direction);
        if (!line.queue.empty()) {
            // Everything queued was sent before the held datagram, so it is
            // due no later than the hold's deadline.
            return line.queue.front().due;
        }
        if (line.held) {
            return line.held->deadline;
        }
        return std::nullopt;
    }

    // Datagrams (copies included) queued or held, not yet received.
    std::size_t in_flight(link_direction direction) const {
        const pipe& line = at(direction);
        const std::size_t held = line.held ? (line.held->duplicate ? 2 : 1) : 0;
        return line.queue.size() + held;
    }

    const link_counters& counters(link_direction direction) const {
        return at(direction).counters;
    }

private:
    struct queued_datagram {
        std::vector<std::byte> payload;
        time_point due;
    };

    struct held_datagram {
        std::vector<std::byte> payload;
        time_point due;       // when it would have arrived had it not been held
        time_point deadline;  // released at this time if nothing overtakes it
        bool duplicate = false;
    };

    struct pipe {
        explicit pipe(detail::random_stream stream) : random(stream) {}

        detail::random_stream random;
        link_impairments impairments{};
        link_counters counters{};
        std::deque<queued_datagram> queue;  // due times never decrease
        std::optional<held_datagram> held;
        time_point last_due{};
        bool burst_bad = false;
    };

    pipe& at(link_direction direction) {
        return pipes_[direction == link_direction::a_to_b ? 0 : 1];
    }

    const pipe& at(link_direction direction) const {
        return pipes_[direction == link_direction::a_to_b ? 0 : 1];
    }

    static bool lost_in_burst(pipe& line) {
        const burst_loss& model = line.impairments.burst;
        // Decide loss in the current state, then move: a datagram that
        // triggers the switch to "bad" still gets the good state's odds.
        const double loss = line.burst_bad ? model.loss_in_bad : model.loss_in_good;
        const bool lost = line.random.chance(loss);
        line.burst_bad = line.burst_bad ? !line.random.chance(model.bad_to_good)
                                        : line.random.chance(model.good_to_bad);
        return lost;
    }

    static link_impairments::duration latency(pipe& line) {
        const link_impairments& knobs = line.impairments;
        if (knobs.jitter <= link_impairments::duration::zero()) {
            return knobs.delay;
        }
        // Integer tick arithmetic after a single double multiply keeps the
        // result identical across platforms.
        using duration = link_impairments::duration;
        const auto spread = knobs.jitter.count();
        const auto width = static_cast<double>(2 * spread + 1);
        const auto offset =
            static_cast<duration::rep>(line.random.next_unit() * width) - spread;
        return std::max(knobs.delay + duration{offset}, duration::zero());
    }

    static void enqueue(pipe& line, std::vector<std::byte> payload, time_point due) {
        line.queue.push_back(queued_datagram{std::move(payload), due});
        line.last_due = due;
    }

    static void release_hold(pipe& line, time_point not_before) {
        held_datagram held = std::move(*line.held);
        line.held.reset();
        const time_point due = std::max({not_before, held.due, line.last_due});
        if (held.duplicate) {
            enqueue(line, held.payload, due);
        }
        enqueue(line, std::move(held.payload), due);
    }

    static void release_expired_hold(pipe& line, time_point now) {
        if (line.held && line.held->deadline <= now) {
            release_hold(line, line.held->deadline);
        }
    }

    std::array<pipe, 2> pipes_;
};

}  // namespace dtlspp
