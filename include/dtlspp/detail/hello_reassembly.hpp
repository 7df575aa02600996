// SPDX-License-Identifier: MIT
// A bounded table that reassembles fragmented ClientHellos in front of a
// server's stateless listener.
//
// Why it exists: RFC 6347 §4.2.3 lets a client fragment any handshake
// message, the ClientHello included, and some do (openssl s_client -mtu 256
// sends its cookie-bearing ClientHello as 203 + 27 bytes). mbedTLS 2.28
// refuses a fragmented ClientHello outright (ssl_srv.c,
// ssl_parse_client_hello: "ClientHello fragmentation not supported"), and
// OpenSSL's DTLSv1_listen only reads the first fragment, so a cookie that
// lands in a later fragment is never seen. Reassembling here gives every
// stack one whole ClientHello in one record.
//
// Memory before the cookie is bounded: a fixed number of slots, each holding
// at most max_hello_size bytes, all allocated when the table is built; a
// datagram never allocates. A peer holds at most one slot (the key is its
// address), so one source cannot fill the table by cycling message_seq. When
// every slot is in use, the partial hello started longest ago is evicted.
// Everything is counted in the caller's counters (server_counters).
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/trace.hpp>
#include <dtlspp/transport/address.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dtlspp::detail {

// What offer() made of one datagram from a peer without a session.
enum class hello_offer {
    not_fragmented, // no partial ClientHello fragment in it: the stack gets the datagram as it came
    incomplete,     // taken by the table (kept, or refused and counted): nothing for the stack yet
    complete,       // a ClientHello is whole: the stack gets assembled()
};

class hello_reassembly {
public:
    // The reassembled ClientHello travels as one plaintext record, whose
    // length is at most 2^14 (RFC 6347 §4.1, RFC 5246 §6.2.1), and that
    // record also holds the 12-byte handshake header.
    static constexpr std::size_t largest_max_hello_size = 16384 - handshake_header_size;

    hello_reassembly(std::size_t slots, std::size_t max_hello_size)
        : max_hello_size_(std::min(max_hello_size, largest_max_hello_size)),
          slot_bytes_(record_header_size + handshake_header_size + max_hello_size_),
          slot_words_((max_hello_size_ + 63) / 64), slots_(slots), bytes_(slots * slot_bytes_),
          received_(slots * slot_words_)
    {
    }

    // Takes the datagram's ClientHello fragments, if any are partial.
    // Counters needs the fragmented_hellos_* fields of server_counters.
    // After `complete`, assembled() holds the ClientHello.
    template <class Counters>
    hello_offer offer(const peer_address& from, std::span<const std::byte> datagram, Counters& counters)
    {
        if (is_one_whole_message(datagram)) return hello_offer::not_fragmented;
        bool took_fragment = false;
        bool completed = false;
        parse_datagram(datagram, [&](const record_view& record) {
            if (completed || record.epoch != 0 || record.type != content_type::handshake) return;
            for (const auto fragment : record.fragments()) {
                if (completed) return;
                if (fragment.msg_type != static_cast<std::uint8_t>(handshake_type::client_hello) ||
                    fragment.is_whole_message())
                    continue;
                took_fragment = true;
                completed = take(from, record, fragment, counters);
            }
        });
        if (completed) return hello_offer::complete;
        return took_fragment ? hello_offer::incomplete : hello_offer::not_fragmented;
    }

    // The last ClientHello offer() completed, as one record carrying one
    // fragment with fragment_offset 0 and fragment_length == length. Valid
    // until the next offer().
    std::span<const std::byte> assembled() const noexcept { return assembled_; }

    std::size_t partial_hellos() const noexcept
    {
        return static_cast<std::size_t>(
            std::count_if(slots_.begin(), slots_.end(), [](const slot& s) { return s.in_use; }));
    }
    std::size_t capacity() const noexcept { return slots_.size(); }
    std::size_t max_hello_size() const noexcept { return max_hello_size_; }

private:
    static constexpr std::size_t body_offset = record_header_size + handshake_header_size;

    struct slot {
        bool in_use = false;
        peer_address peer;
        std::uint64_t started = 0; // order of start, for oldest-first eviction
        std::uint16_t record_version = 0;
        std::uint64_t sequence_number = 0; // highest of the records that carried it
        std::uint16_t message_seq = 0;
        std::uint32_t length = 0;   // of the whole message
        std::uint32_t received = 0; // distinct bytes so far
    };

    // The common case, decided from the header bytes alone: one record
    // holding one handshake message that is not a fragment. Such a datagram
    // goes to the stack exactly as it did before this table existed.
    static bool is_one_whole_message(std::span<const std::byte> datagram) noexcept
    {
        if (datagram.size() < record_header_size + handshake_header_size) return false;
        const auto record_length = read_u16(datagram, 11);
        const auto rest = datagram.subspan(record_header_size);
        return record_length == datagram.size() - record_header_size &&
               read_u24(rest, 1) + handshake_header_size == record_length && read_u24(rest, 6) == 0 &&
               read_u24(rest, 9) == read_u24(rest, 1);
    }

    // One partial ClientHello fragment. True when it completed the hello.
    template <class Counters>
    bool take(const peer_address& from, const record_view& record, const handshake_fragment& fragment,
              Counters& counters)
    {
        auto* s = find(from);
        if (s && (s->length != fragment.length || s->message_seq != fragment.message_seq)) {
            // The same peer now describes another message: its earlier
            // fragments cannot belong with this one, so they go, and this
            // fragment starts over. That is also how a client that moved on
            // to its next hello (message_seq 1 after a HelloVerifyRequest,
            // RFC 6347 §4.2.2) loses no fragment to a stale partial hello,
            // left by a late copy of a fragment of its first one.
            ++counters.fragmented_hellos_inconsistent;
            s->in_use = false;
            s = nullptr;
        }
        if (!s) {
            if (fragment.length > max_hello_size_) {
                ++counters.fragmented_hellos_too_large;
                return false;
            }
            // An empty fragment adds nothing; it must not cost a slot.
            if (fragment.fragment_length == 0) return false;
            s = claim(counters);
            if (!s) return false; // a table of no slots keeps nothing
            ++counters.fragmented_hellos_started;
            s->in_use = true;
            s->peer = from;
            s->started = next_start_++;
            s->record_version = record.version;
            s->sequence_number = record.sequence_number;
            s->message_seq = fragment.message_seq;
            s->length = fragment.length;
            s->received = 0;
            std::fill_n(bits_of(*s), slot_words_, std::uint64_t{0});
        }
        if (!merge(*s, fragment)) {
            // RFC 6347 §4.2.3 allows overlapping fragments, but their bytes
            // must be the same message; a mismatch is a forgery or a
            // different hello, and neither version can be trusted.
            ++counters.fragmented_hellos_inconsistent;
            s->in_use = false;
            return false;
        }
        // RFC 6347 §4.2.1: a stack answers with a HelloVerifyRequest that
        // carries the ClientHello's record sequence number, and mbedTLS goes
        // on counting its own epoch-0 records from it. The highest number of
        // the records that carried the hello is one the client really used,
        // and it grows from one transmission of the hello to the next
        // whatever order the fragments arrived in, so the numbers the
        // server echoes never go back.
        s->sequence_number = std::max(s->sequence_number, record.sequence_number);
        if (s->received != s->length) return false;
        ++counters.fragmented_hellos_completed;
        s->in_use = false;
        assembled_ = seal(*s);
        return true;
    }

    slot* find(const peer_address& from) noexcept
    {
        for (auto& s : slots_)
            if (s.in_use && s.peer == from) return &s;
        return nullptr;
    }

    // A free slot, or the one started longest ago (evicted).
    template <class Counters>
    slot* claim(Counters& counters) noexcept
    {
        slot* oldest = nullptr;
        for (auto& s : slots_) {
            if (!s.in_use) return &s;
            if (!oldest || s.started < oldest->started) oldest = &s;
        }
        if (oldest) ++counters.fragmented_hellos_evicted;
        return oldest;
    }

    std::byte* bytes_of(const slot& s) noexcept { return bytes_.data() + index_of(s) * slot_bytes_; }
    std::uint64_t* bits_of(const slot& s) noexcept { return received_.data() + index_of(s) * slot_words_; }
    std::size_t index_of(const slot& s) const noexcept { return static_cast<std::size_t>(&s - slots_.data()); }

    // Copies the fragment's bytes in; false when a byte already received
    // differs.
    bool merge(slot& s, const handshake_fragment& fragment) noexcept
    {
        auto* body = bytes_of(s) + body_offset;
        auto* bits = bits_of(s);
        // The parser guarantees fragment_offset + fragment_length <= length,
        // and length <= max_hello_size_ here.
        for (std::uint32_t i = 0; i < fragment.fragment_length; ++i) {
            const std::size_t at = fragment.fragment_offset + i;
            const std::uint64_t bit = std::uint64_t{1} << (at % 64);
            if (bits[at / 64] & bit) {
                if (body[at] != fragment.body[i]) return false;
                continue;
            }
            body[at] = fragment.body[i];
            bits[at / 64] |= bit;
            ++s.received;
        }
        return true;
    }

    // Writes the record and handshake headers in front of the body: one
    // record, one fragment covering the whole message. The handshake hash
    // covers a message as if it were unfragmented (RFC 6347 §4.2.6), so the
    // stack's transcript is the one the client computes.
    std::span<const std::byte> seal(const slot& s) noexcept
    {
        auto* out = bytes_of(s);
        const auto put = [&](std::size_t at, std::uint64_t value, int width) {
            for (int i = 0; i < width; ++i)
                out[at + static_cast<std::size_t>(i)] = static_cast<std::byte>(value >> (8 * (width - 1 - i)));
        };
        put(0, static_cast<std::uint8_t>(content_type::handshake), 1);
        put(1, s.record_version, 2);
        put(3, 0, 2); // epoch
        put(5, s.sequence_number, 6);
        put(11, handshake_header_size + s.length, 2);
        put(13, static_cast<std::uint8_t>(handshake_type::client_hello), 1);
        put(14, s.length, 3);
        put(17, s.message_seq, 2);
        put(19, 0, 3);         // fragment_offset
        put(22, s.length, 3); // fragment_length
        return {out, body_offset + s.length};
    }

    std::size_t max_hello_size_;
    std::size_t slot_bytes_;
    std::size_t slot_words_;
    std::vector<slot> slots_;
    std::vector<std::byte> bytes_;         // slot_bytes_ per slot: record header, handshake header, body
    std::vector<std::uint64_t> received_; // slot_words_ per slot: one bit per body byte received
    std::uint64_t next_start_ = 0;
    std::span<const std::byte> assembled_;
};

} // namespace dtlspp::detail
