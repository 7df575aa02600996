// A structure-aware mutator for the datagram targets: it reads the input as
// datagrams of DTLS records (RFC 6347 §4.1) holding handshake fragments
// (§4.2.2), changes one field, one body or the order of things, and writes
// the framing back consistent (record lengths, fragment lengths), so most
// mutants get past parse_datagram and the stacks' own framing checks and
// reach the code behind them. One mutation in five, and any mutant that
// would not fit, is left to libFuzzer's own byte-level LLVMFuzzerMutate.
//
// A target uses it by defining LLVMFuzzerCustomMutator and
// LLVMFuzzerCustomCrossOver as calls to mutate() and cross_over() with its
// prefix size (see datagram_input.hpp).
#pragma once

#include "datagram_input.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

namespace dtlspp::fuzz {

// A record read leniently: a length past the end takes what is there, so
// every input has a structure to mutate. Written back with the true length.
struct loose_record {
    std::uint8_t type = 22;
    std::uint16_t version = 0xfefd;
    std::uint16_t epoch = 0;
    std::uint64_t sequence_number = 0;
    std::vector<std::uint8_t> body;
};

struct loose_datagram {
    std::vector<loose_record> records;
    std::vector<std::uint8_t> trailing; // fewer bytes than a record header
};

inline loose_datagram read_records(const std::vector<std::uint8_t>& bytes)
{
    loose_datagram d;
    std::size_t at = 0;
    while (bytes.size() - at >= 13) {
        const auto* h = bytes.data() + at;
        loose_record r;
        r.type = h[0];
        r.version = static_cast<std::uint16_t>(h[1] << 8 | h[2]);
        r.epoch = static_cast<std::uint16_t>(h[3] << 8 | h[4]);
        for (int i = 5; i < 11; ++i) r.sequence_number = r.sequence_number << 8 | h[i];
        std::size_t length = static_cast<std::size_t>(h[11] << 8 | h[12]);
        at += 13;
        length = std::min(length, bytes.size() - at);
        r.body.assign(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                      bytes.begin() + static_cast<std::ptrdiff_t>(at + length));
        at += length;
        d.records.push_back(std::move(r));
    }
    d.trailing.assign(bytes.begin() + static_cast<std::ptrdiff_t>(at), bytes.end());
    return d;
}

inline void put_uint(std::vector<std::uint8_t>& out, std::uint64_t value, int bytes)
{
    for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

inline std::vector<std::uint8_t> write_records(const loose_datagram& d)
{
    std::vector<std::uint8_t> out;
    for (const auto& r : d.records) {
        out.push_back(r.type);
        put_uint(out, r.version, 2);
        put_uint(out, r.epoch, 2);
        put_uint(out, r.sequence_number & 0xffffffffffffULL, 6);
        const auto length = std::min<std::size_t>(r.body.size(), 0xffff);
        put_uint(out, length, 2);
        out.insert(out.end(), r.body.begin(), r.body.begin() + static_cast<std::ptrdiff_t>(length));
    }
    out.insert(out.end(), d.trailing.begin(), d.trailing.end());
    return out;
}

// A handshake fragment (RFC 6347 §4.2.2), read leniently like records.
struct loose_fragment {
    std::uint8_t msg_type = 1;
    std::uint32_t length = 0;
    std::uint16_t message_seq = 0;
    std::uint32_t fragment_offset = 0;
    std::vector<std::uint8_t> body;
};

inline std::vector<loose_fragment> read_fragments(const std::vector<std::uint8_t>& payload, std::vector<std::uint8_t>& trailing)
{
    std::vector<loose_fragment> fragments;
    std::size_t at = 0;
    const auto u24 = [&](std::size_t i) {
        return static_cast<std::uint32_t>(payload[i] << 16 | payload[i + 1] << 8 | payload[i + 2]);
    };
    while (payload.size() - at >= 12) {
        loose_fragment f;
        f.msg_type = payload[at];
        f.length = u24(at + 1);
        f.message_seq = static_cast<std::uint16_t>(payload[at + 4] << 8 | payload[at + 5]);
        f.fragment_offset = u24(at + 6);
        std::size_t fragment_length = u24(at + 9);
        at += 12;
        fragment_length = std::min(fragment_length, payload.size() - at);
        f.body.assign(payload.begin() + static_cast<std::ptrdiff_t>(at),
                      payload.begin() + static_cast<std::ptrdiff_t>(at + fragment_length));
        at += fragment_length;
        fragments.push_back(std::move(f));
    }
    trailing.assign(payload.begin() + static_cast<std::ptrdiff_t>(at), payload.end());
    return fragments;
}

inline std::vector<std::uint8_t> write_fragments(const std::vector<loose_fragment>& fragments,
                                                 const std::vector<std::uint8_t>& trailing)
{
    std::vector<std::uint8_t> out;
    for (const auto& f : fragments) {
        out.push_back(f.msg_type);
        put_uint(out, f.length, 3);
        put_uint(out, f.message_seq, 2);
        put_uint(out, f.fragment_offset, 3);
        put_uint(out, f.body.size(), 3);
        out.insert(out.end(), f.body.begin(), f.body.end());
    }
    out.insert(out.end(), trailing.begin(), trailing.end());
    return out;
}

class record_mutator {
public:
    explicit record_mutator(unsigned seed) : random_(seed) {}

    // Mutates `input` in place; false when no structured mutation applied
    // (the caller then falls back to LLVMFuzzerMutate).
    bool mutate(datagram_input& input)
    {
        if (input.chunks.empty()) {
            input.chunks.push_back({false, write_records({{new_record()}, {}})});
            return true;
        }
        auto& chunk = input.chunks[pick(input.chunks.size())];
        switch (pick(10)) {
        case 0: return mutate_datagrams(input);
        case 1:
            if (input.prefix.empty()) return mutate_datagrams(input);
            input.prefix[pick(input.prefix.size())] = static_cast<std::uint8_t>(random_());
            return true;
        default: break;
        }
        auto d = read_records(chunk.bytes);
        if (d.records.empty()) {
            d.records.push_back(new_record());
        } else if (!mutate_records(d)) {
            return false;
        }
        chunk.bytes = write_records(d);
        return true;
    }

    // Splices datagrams of two inputs: the prefix of the first, then a
    // random run of each one's chunks.
    datagram_input cross_over(const datagram_input& a, const datagram_input& b)
    {
        datagram_input out;
        out.prefix = a.prefix;
        const auto take = [&](const datagram_input& from) {
            if (from.chunks.empty()) return;
            const auto first = pick(from.chunks.size());
            const auto count = 1 + pick(from.chunks.size() - first);
            out.chunks.insert(out.chunks.end(), from.chunks.begin() + static_cast<std::ptrdiff_t>(first),
                              from.chunks.begin() + static_cast<std::ptrdiff_t>(first + count));
        };
        take(a);
        take(b);
        return out;
    }

private:
    std::size_t pick(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(random_() % n); }

    // Record bodies the stacks must survive: mostly short, since length
    // checks before decryption are where records are told apart.
    loose_record new_record()
    {
        static constexpr std::uint8_t types[] = {20, 21, 22, 23, 24, 25};
        loose_record r;
        r.type = types[pick(sizeof types)];
        r.epoch = static_cast<std::uint16_t>(pick(3));
        r.sequence_number = pick(8);
        r.body.resize(pick(4) == 0 ? pick(300) : pick(40));
        for (auto& b : r.body) b = static_cast<std::uint8_t>(random_());
        return r;
    }

    std::uint64_t interesting_sequence(std::uint64_t current)
    {
        switch (pick(6)) {
        case 0: return current + 1;
        case 1: return current - 1;
        case 2: return 0;
        case 3: return 0xffffffffffffULL;
        case 4: return current + 64; // past a 64-entry replay window (RFC 6347 §4.1.2.6)
        default: return random_() & 0xffffffffffffULL;
        }
    }

    void mutate_bytes(std::vector<std::uint8_t>& bytes, std::size_t limit)
    {
        // LLVMFuzzerMutate needs something to mutate.
        if (bytes.empty()) bytes.push_back(static_cast<std::uint8_t>(random_()));
        const auto size = bytes.size();
        const auto max_size = std::max<std::size_t>(limit, size);
        bytes.resize(max_size);
        bytes.resize(LLVMFuzzerMutate(bytes.data(), size, max_size));
    }

    bool mutate_records(loose_datagram& d)
    {
        auto& r = d.records[pick(d.records.size())];
        switch (pick(12)) {
        case 0: {
            static constexpr std::uint8_t types[] = {20, 21, 22, 23, 24, 0, 255};
            r.type = types[pick(sizeof types)];
            return true;
        }
        case 1: {
            static constexpr std::uint16_t versions[] = {0xfefd, 0xfeff, 0xfefc, 0x0303, 0x0000};
            r.version = versions[pick(std::size(versions))];
            return true;
        }
        case 2: r.epoch = pick(3) == 0 ? static_cast<std::uint16_t>(random_()) : static_cast<std::uint16_t>(pick(3)); return true;
        case 3: r.sequence_number = interesting_sequence(r.sequence_number); return true;
        case 4:
        case 5: mutate_bytes(r.body, r.body.size() * 2 + 16); return true;
        case 6: // A short body: below a cipher's explicit nonce + tag.
            r.body.resize(pick(40));
            return true;
        case 7: d.records.push_back(r); return true;
        case 8:
            if (d.records.size() < 2) return false;
            d.records.erase(d.records.begin() + static_cast<std::ptrdiff_t>(pick(d.records.size())));
            return true;
        case 9:
            if (d.records.size() < 2) return false;
            std::swap(d.records[pick(d.records.size())], d.records[pick(d.records.size())]);
            return true;
        case 10: d.records.insert(d.records.begin() + static_cast<std::ptrdiff_t>(pick(d.records.size() + 1)), new_record()); return true;
        default: return mutate_fragments(r);
        }
    }

    bool mutate_fragments(loose_record& r)
    {
        if (r.type != 22) return false;
        std::vector<std::uint8_t> trailing;
        auto fragments = read_fragments(r.body, trailing);
        if (fragments.empty()) return false;
        const auto index = pick(fragments.size());
        auto& f = fragments[index];
        switch (pick(7)) {
        case 0: f.msg_type = static_cast<std::uint8_t>(pick(3) == 0 ? random_() : pick(21)); break;
        case 1: f.message_seq = static_cast<std::uint16_t>(f.message_seq + pick(3) - 1); break;
        case 2: f.fragment_offset = static_cast<std::uint32_t>(pick(2) == 0 ? random_() & 0xffffff : pick(f.length + 2)); break;
        case 3: f.length = static_cast<std::uint32_t>(pick(2) == 0 ? random_() & 0xffffff : f.body.size() + f.fragment_offset); break;
        case 4: mutate_bytes(f.body, f.body.size() * 2 + 16); break;
        case 5: { // Split in two fragments of the same message (§4.2.3).
            if (f.body.size() < 2) return false;
            const auto cut = 1 + pick(f.body.size() - 1);
            loose_fragment tail = f;
            tail.fragment_offset = static_cast<std::uint32_t>(f.fragment_offset + cut);
            tail.body.assign(f.body.begin() + static_cast<std::ptrdiff_t>(cut), f.body.end());
            f.body.resize(cut);
            fragments.insert(fragments.begin() + static_cast<std::ptrdiff_t>(index + 1), std::move(tail));
            break;
        }
        default: fragments.push_back(fragments[pick(fragments.size())]); break;
        }
        r.body = write_fragments(fragments, trailing);
        return true;
    }

    bool mutate_datagrams(datagram_input& input)
    {
        auto& chunks = input.chunks;
        switch (pick(5)) {
        case 0: chunks.push_back(chunks[pick(chunks.size())]); return true;
        case 1:
            if (chunks.size() < 2) return false;
            chunks.erase(chunks.begin() + static_cast<std::ptrdiff_t>(pick(chunks.size())));
            return true;
        case 2:
            if (chunks.size() < 2) return false;
            std::swap(chunks[pick(chunks.size())], chunks[pick(chunks.size())]);
            return true;
        case 3: {
            auto& c = chunks[pick(chunks.size())];
            c.flagged = !c.flagged;
            return true;
        }
        default: {
            // Move one record into a datagram of its own (a peer's stack
            // may pack records or not, RFC 6347 §4.1.1).
            auto& c = chunks[pick(chunks.size())];
            auto d = read_records(c.bytes);
            if (d.records.size() < 2) return false;
            const auto index = pick(d.records.size());
            loose_datagram alone{{d.records[index]}, {}};
            d.records.erase(d.records.begin() + static_cast<std::ptrdiff_t>(index));
            c.bytes = write_records(d);
            chunks.push_back({c.flagged, write_records(alone)});
            return true;
        }
        }
    }

    std::minstd_rand random_;
};

// The body of LLVMFuzzerCustomMutator for a target whose inputs have
// `prefix_size` bytes of prefix.
inline std::size_t mutate(std::uint8_t* data, std::size_t size, std::size_t max_size, unsigned seed,
                          std::size_t prefix_size)
{
    record_mutator mutator(seed);
    if (seed % 5 != 0) {
        auto input = split_input(std::span<const std::uint8_t>(data, size), prefix_size);
        if (mutator.mutate(input)) {
            const auto out = join_input(input);
            if (out.size() <= max_size) {
                // out.data() may be null when out is empty: memcpy must not see it.
                if (!out.empty()) std::memcpy(data, out.data(), out.size());
                return out.size();
            }
        }
    }
    return LLVMFuzzerMutate(data, size, max_size);
}

inline std::size_t cross_over(const std::uint8_t* data1, std::size_t size1, const std::uint8_t* data2,
                              std::size_t size2, std::uint8_t* out, std::size_t max_out_size, unsigned seed,
                              std::size_t prefix_size)
{
    record_mutator mutator(seed);
    const auto joined = join_input(mutator.cross_over(split_input({data1, size1}, prefix_size),
                                                      split_input({data2, size2}, prefix_size)));
    const auto size = std::min(joined.size(), max_out_size);
    if (size != 0) std::memcpy(out, joined.data(), size);
    return size;
}

} // namespace dtlspp::fuzz

// Defines the two libFuzzer hooks of a datagram target.
#define DTLSPP_FUZZ_RECORD_MUTATOR(prefix_size)                                                                   \
    extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,   \
                                                   unsigned int seed)                                           \
    {                                                                                                            \
        return dtlspp::fuzz::mutate(data, size, max_size, seed, prefix_size);                                    \
    }                                                                                                            \
    extern "C" std::size_t LLVMFuzzerCustomCrossOver(const std::uint8_t* data1, std::size_t size1,              \
                                                     const std::uint8_t* data2, std::size_t size2,              \
                                                     std::uint8_t* out, std::size_t max_out_size,               \
                                                     unsigned int seed)                                         \
    {                                                                                                            \
        return dtlspp::fuzz::cross_over(data1, size1, data2, size2, out, max_out_size, seed, prefix_size);       \
    }
