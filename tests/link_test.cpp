// SPDX-License-Identifier: MIT
#define BOOST_TEST_MODULE link
#include <boost/test/unit_test.hpp>

#include <dtlspp/transport/link.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

using namespace std::chrono_literals;
using dtlspp::impaired_link;
using dtlspp::link_direction;
using dtlspp::link_impairments;
using time_point = impaired_link::time_point;

namespace {

// A fixed virtual epoch: the link never reads the clock itself.
const time_point start{};

// Datagrams carry their send index in the first four bytes so tests can see
// exactly which ones arrived and in what order; size pads the rest.
std::vector<std::byte> numbered(std::uint32_t index, std::size_t size = 16) {
    std::vector<std::byte> datagram(std::max<std::size_t>(size, 4));
    for (int i = 0; i < 4; ++i) {
        datagram[static_cast<std::size_t>(i)] = static_cast<std::byte>(index >> (8 * i));
    }
    return datagram;
}

std::uint32_t index_of(std::span<const std::byte> datagram) {
    std::uint32_t index = 0;
    for (int i = 0; i < 4; ++i) {
        index |= static_cast<std::uint32_t>(datagram[static_cast<std::size_t>(i)]) << (8 * i);
    }
    return index;
}

// Receives everything deliverable at `now` (bounded by a generous cap).
std::vector<std::uint32_t> drain(impaired_link& link, link_direction direction, time_point now) {
    std::vector<std::uint32_t> indices;
    std::array<std::byte, 4096> buffer{};
    for (int guard = 0; guard < 1'000'000; ++guard) {
        const auto size = link.receive(direction, now, buffer);
        if (!size) {
            break;
        }
        indices.push_back(index_of(buffer));
    }
    return indices;
}

std::vector<std::uint32_t> send_all_then_drain(impaired_link& link, std::uint32_t count,
                                               time_point drain_at = start + 1h) {
    for (std::uint32_t i = 1; i <= count; ++i) {
        link.send(link_direction::a_to_b, numbered(i), start);
    }
    return drain(link, link_direction::a_to_b, drain_at);
}

std::vector<std::uint32_t> sequence(std::uint32_t first, std::uint32_t last) {
    std::vector<std::uint32_t> result;
    for (std::uint32_t i = first; i <= last; ++i) {
        result.push_back(i);
    }
    return result;
}

}  // namespace

BOOST_AUTO_TEST_CASE(no_impairments_is_a_perfect_zero_delay_fifo) {
    impaired_link link(7);
    for (std::uint32_t i = 1; i <= 100; ++i) {
        link.send(link_direction::a_to_b, numbered(i), start);
    }
    BOOST_TEST((link.next_delivery(link_direction::a_to_b) == start));
    BOOST_TEST(drain(link, link_direction::a_to_b, start) == sequence(1, 100),
               boost::test_tools::per_element());
    BOOST_TEST(!link.next_delivery(link_direction::a_to_b).has_value());
    const auto& counters = link.counters(link_direction::a_to_b);
    BOOST_TEST(counters.sent == 100u);
    BOOST_TEST(counters.delivered == 100u);
    BOOST_TEST(counters.dropped.total() == 0u);
    BOOST_TEST(counters.duplicated == 0u);
    BOOST_TEST(counters.reordered == 0u);
}

BOOST_AUTO_TEST_CASE(payload_bytes_survive_unchanged) {
    impaired_link link;
    std::vector<std::byte> datagram(300);
    for (std::size_t i = 0; i < datagram.size(); ++i) {
        datagram[i] = static_cast<std::byte>(i * 7);
    }
    link.send(link_direction::b_to_a, datagram, start);
    std::vector<std::byte> buffer(1000);
    const auto size = link.receive(link_direction::b_to_a, start, buffer);
    BOOST_REQUIRE(size.has_value());
    BOOST_TEST(*size == datagram.size());
    BOOST_TEST(std::equal(datagram.begin(), datagram.end(), buffer.begin()));
}

BOOST_AUTO_TEST_CASE(small_buffer_reports_full_size) {
    impaired_link link;
    link.send(link_direction::a_to_b, numbered(9, 100), start);
    std::array<std::byte, 10> buffer{};
    const auto size = link.receive(link_direction::a_to_b, start, buffer);
    BOOST_REQUIRE(size.has_value());
    BOOST_TEST(*size == 100u);  // larger than the buffer: truncated
    BOOST_TEST(index_of(buffer) == 9u);
    BOOST_TEST(!link.receive(link_direction::a_to_b, start, buffer).has_value());
}

BOOST_AUTO_TEST_CASE(loss_rate_matches_within_tolerance) {
    impaired_link link(1);
    link_impairments knobs;
    knobs.loss_rate = 0.3;
    link.set_impairments(link_direction::a_to_b, knobs);
    const auto delivered = send_all_then_drain(link, 10'000);
    const auto& counters = link.counters(link_direction::a_to_b);
    // 0.3 +- 0.02 is more than four standard deviations at n = 10000.
    BOOST_TEST(counters.dropped.loss >= 2800u);
    BOOST_TEST(counters.dropped.loss <= 3200u);
    BOOST_TEST(counters.dropped.total() == counters.dropped.loss);
    BOOST_TEST(delivered.size() == 10'000u - counters.dropped.loss);
    BOOST_TEST(std::is_sorted(delivered.begin(), delivered.end()));
}

BOOST_AUTO_TEST_CASE(burst_loss_follows_gilbert_elliott) {
    impaired_link link(2);
    link_impairments knobs;
    knobs.burst.good_to_bad = 0.05;
    knobs.burst.bad_to_good = 0.25;
    knobs.burst.loss_in_good = 0.0;
    knobs.burst.loss_in_bad = 1.0;
    link.set_impairments(link_direction::a_to_b, knobs);
    const std::uint32_t count = 20'000;
    const auto delivered = send_all_then_drain(link, count);

    std::vector<bool> arrived(count + 1, false);
    for (const auto index : delivered) {
        arrived[index] = true;
    }
    std::size_t lost = 0;
    std::size_t bursts = 0;
    for (std::uint32_t i = 1; i <= count; ++i) {
        if (!arrived[i]) {
            ++lost;
            if (i == 1 || arrived[i - 1]) {
                ++bursts;
            }
        }
    }
    BOOST_TEST(link.counters(link_direction::a_to_b).dropped.burst == lost);
    // Stationary bad-state share is 0.05 / (0.05 + 0.25) = 1/6 and a bad
    // stay lasts 1 / 0.25 = 4 datagrams on average. Independent loss at the
    // same rate would give bursts of only about 1.2.
    const double loss_share = static_cast<double>(lost) / count;
    const double mean_burst = static_cast<double>(lost) / static_cast<double>(bursts);
    BOOST_TEST(loss_share > 0.13);
    BOOST_TEST(loss_share < 0.20);
    BOOST_TEST(mean_burst > 3.4);
    BOOST_TEST(mean_burst < 4.6);
}

BOOST_AUTO_TEST_CASE(duplication_delivers_twice) {
    impaired_link link(3);
    link_impairments knobs;
    knobs.duplicate_rate = 1.0;
    link.set_impairments(link_direction::a_to_b, knobs);
    const auto delivered = send_all_then_drain(link, 5);
    const std::vector<std::uint32_t> expected = {1, 1, 2, 2, 3, 3, 4, 4, 5, 5};
    BOOST_TEST(delivered == expected, boost::test_tools::per_element());
    BOOST_TEST(link.counters(link_direction::a_to_b).duplicated == 5u);
    BOOST_TEST(link.counters(link_direction::a_to_b).delivered == 10u);
}

BOOST_AUTO_TEST_CASE(duplication_rate_matches_within_tolerance) {
    impaired_link link(4);
    link_impairments knobs;
    knobs.duplicate_rate = 0.25;
    link.set_impairments(link_direction::a_to_b, knobs);
    const auto delivered = send_all_then_drain(link, 10'000);
    const auto duplicated = link.counters(link_direction::a_to_b).duplicated;
    BOOST_TEST(duplicated >= 2300u);
    BOOST_TEST(duplicated <= 2700u);
    BOOST_TEST(delivered.size() == 10'000u + duplicated);
}

BOOST_AUTO_TEST_CASE(reorder_lets_the_next_datagram_overtake) {
    impaired_link link(5);
    link_impairments knobs;
    knobs.reorder_rate = 0.3;
    link.set_impairments(link_direction::a_to_b, knobs);
    const std::uint32_t count = 1000;
    const auto delivered = send_all_then_drain(link, count);

    BOOST_TEST(!std::is_sorted(delivered.begin(), delivered.end()));
    auto sorted = delivered;
    std::sort(sorted.begin(), sorted.end());
    BOOST_TEST(sorted == sequence(1, count), boost::test_tools::per_element());

    // Every held datagram lands right behind the one that overtook it, so
    // each reorder shows up as exactly one adjacent swap.
    std::size_t swaps = 0;
    for (std::size_t i = 1; i < delivered.size(); ++i) {
        if (delivered[i] < delivered[i - 1]) {
            ++swaps;
            BOOST_TEST(delivered[i] + 1 == delivered[i - 1]);
        }
    }
    const auto reordered = link.counters(link_direction::a_to_b).reordered;
    BOOST_TEST(swaps == reordered);
    BOOST_TEST(reordered > 150u);
    BOOST_TEST(reordered < 300u);
}

BOOST_AUTO_TEST_CASE(held_datagram_without_successor_arrives_late) {
    impaired_link link(6);
    link_impairments knobs;
    knobs.reorder_rate = 1.0;
    knobs.reorder_max_hold = 30ms;
    link.set_impairments(link_direction::a_to_b, knobs);
    link.send(link_direction::a_to_b, numbered(1), start);
    std::array<std::byte, 64> buffer{};
    BOOST_TEST(!link.receive(link_direction::a_to_b, start + 29ms, buffer).has_value());
    BOOST_TEST((link.next_delivery(link_direction::a_to_b) == start + 30ms));
    BOOST_TEST(link.in_flight(link_direction::a_to_b) == 1u);
    BOOST_TEST(link.receive(link_direction::a_to_b, start + 30ms, buffer).has_value());
    BOOST_TEST(link.counters(link_direction::a_to_b).reordered == 0u);
}

BOOST_AUTO_TEST_CASE(delay_holds_until_now_plus_delay) {
    impaired_link link;
    link_impairments knobs;
    knobs.delay = 20ms;
    link.set_impairments(link_direction::a_to_b, knobs);
    const time_point sent_at = start + 5ms;
    link.send(link_direction::a_to_b, numbered(1), sent_at);
    std::array<std::byte, 64> buffer{};
    BOOST_TEST(!link.receive(link_direction::a_to_b, sent_at, buffer).has_value());
    BOOST_TEST(!link.receive(link_direction::a_to_b, sent_at + 19ms, buffer).has_value());
    BOOST_TEST((link.next_delivery(link_direction::a_to_b) == sent_at + 20ms));
    BOOST_TEST(link.receive(link_direction::a_to_b, sent_at + 20ms, buffer).has_value());
    BOOST_TEST(!link.next_delivery(link_direction::a_to_b).has_value());
}

BOOST_AUTO_TEST_CASE(jitter_varies_delay_within_bounds_and_keeps_order) {
    impaired_link link(8);
    link_impairments knobs;
    knobs.delay = 20ms;
    knobs.jitter = 5ms;
    link.set_impairments(link_direction::a_to_b, knobs);
    std::vector<time_point> arrivals;
    std::vector<std::uint32_t> order;
    std::array<std::byte, 64> buffer{};
    for (std::uint32_t i = 1; i <= 200; ++i) {
        // Sent far apart so the FIFO clamp never stretches a delay.
        const time_point sent_at = start + i * 100ms;
        link.send(link_direction::a_to_b, numbered(i), sent_at);
        const auto due = link.next_delivery(link_direction::a_to_b);
        BOOST_REQUIRE(due.has_value());
        BOOST_TEST((*due >= sent_at + 15ms));
        BOOST_TEST((*due <= sent_at + 25ms));
        arrivals.push_back(*due);
        BOOST_REQUIRE(link.receive(link_direction::a_to_b, *due, buffer).has_value());
        order.push_back(index_of(buffer));
    }
    std::vector<std::chrono::nanoseconds> delays;
    for (std::size_t i = 0; i < arrivals.size(); ++i) {
        delays.push_back(arrivals[i] - (start + static_cast<int>(i + 1) * 100ms));
    }
    const auto [low, high] = std::minmax_element(delays.begin(), delays.end());
    BOOST_TEST((*high - *low > 5ms));  // actually varies, not a constant delay
    BOOST_TEST(order == sequence(1, 200), boost::test_tools::per_element());

    // Back-to-back sends with jitter still come out in order.
    impaired_link burst(9);
    burst.set_impairments(link_direction::a_to_b, knobs);
    BOOST_TEST(send_all_then_drain(burst, 500) == sequence(1, 500),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(mtu_clamp_drops_exactly_the_oversize_datagrams) {
    impaired_link link(10);
    link_impairments knobs;
    knobs.mtu = 1200;
    link.set_impairments(link_direction::a_to_b, knobs);
    std::vector<std::uint32_t> expected;
    std::uint32_t oversize = 0;
    for (std::uint32_t size = 1100; size <= 1300; ++size) {
        link.send(link_direction::a_to_b, numbered(size, size), start);
        if (size <= 1200) {
            expected.push_back(size);
        } else {
            ++oversize;
        }
    }
    BOOST_TEST(drain(link, link_direction::a_to_b, start) == expected,
               boost::test_tools::per_element());
    BOOST_TEST(link.counters(link_direction::a_to_b).dropped.mtu == oversize);
    BOOST_TEST(link.counters(link_direction::a_to_b).dropped.total() == oversize);
}

BOOST_AUTO_TEST_CASE(drop_indices_drop_exactly_those_sends) {
    impaired_link link(11);
    link_impairments knobs;
    knobs.drop_indices = {1, 3, 7};
    link.set_impairments(link_direction::a_to_b, knobs);
    const std::vector<std::uint32_t> expected = {2, 4, 5, 6, 8, 9, 10};
    BOOST_TEST(send_all_then_drain(link, 10) == expected, boost::test_tools::per_element());
    BOOST_TEST(link.counters(link_direction::a_to_b).dropped.index == 3u);
}

BOOST_AUTO_TEST_CASE(directions_are_independent) {
    impaired_link link(12);
    link_impairments knobs;
    knobs.loss_rate = 1.0;
    link.set_impairments(link_direction::a_to_b, knobs);
    link.send(link_direction::a_to_b, numbered(1), start);
    link.send(link_direction::b_to_a, numbered(2), start);
    BOOST_TEST(drain(link, link_direction::a_to_b, start).empty());
    const std::vector<std::uint32_t> expected = {2};
    BOOST_TEST(drain(link, link_direction::b_to_a, start) == expected,
               boost::test_tools::per_element());
    BOOST_TEST(link.counters(link_direction::b_to_a).dropped.total() == 0u);
}

namespace {

// Runs a mixed workload with every random knob on, sending and receiving
// in interleaved virtual time, and records (index, arrival tick) pairs.
std::vector<std::pair<std::uint32_t, std::int64_t>> run_everything(std::uint64_t seed) {
    impaired_link link(seed);
    link_impairments knobs;
    knobs.loss_rate = 0.1;
    knobs.burst.good_to_bad = 0.02;
    knobs.burst.bad_to_good = 0.5;
    knobs.duplicate_rate = 0.1;
    knobs.reorder_rate = 0.1;
    knobs.delay = 10ms;
    knobs.jitter = 3ms;
    link.set_impairments(link_direction::a_to_b, knobs);
    link.set_impairments(link_direction::b_to_a, knobs);

    std::vector<std::pair<std::uint32_t, std::int64_t>> log;
    std::array<std::byte, 64> buffer{};
    for (std::uint32_t i = 1; i <= 2000; ++i) {
        const time_point now = start + i * 1ms;
        link.send(link_direction::a_to_b, numbered(i), now);
        link.send(link_direction::b_to_a, numbered(i + 100'000), now);
        for (const auto direction : {link_direction::a_to_b, link_direction::b_to_a}) {
            while (link.receive(direction, now, buffer)) {
                log.emplace_back(index_of(buffer), (now - start).count());
            }
        }
    }
    return log;
}

}  // namespace

BOOST_AUTO_TEST_CASE(same_seed_reproduces_and_different_seed_differs) {
    const auto first = run_everything(42);
    const auto again = run_everything(42);
    const auto other = run_everything(43);
    BOOST_TEST(first.size() > 1000u);
    BOOST_TEST((first == again));
    BOOST_TEST((first != other));
}

BOOST_AUTO_TEST_CASE(generator_is_stable_across_platforms) {
    // Pins the first outputs for seed 0 so a change in the generator (which
    // would silently change every seeded scenario) fails loudly.
    dtlspp::detail::random_stream stream(0);
    std::array<std::uint64_t, 3> outputs{};
    for (auto& output : outputs) {
        output = stream.next();
    }
    dtlspp::detail::random_stream same(0);
    for (const auto output : outputs) {
        BOOST_TEST(same.next() == output);
    }
    BOOST_TEST(outputs[0] == UINT64_C(0x99ec5f36cb75f2b4));
}
