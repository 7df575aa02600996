// SPDX-License-Identifier: MIT
// Wire trace for DTLS 1.2 and 1.3: reads the cleartext framing of each
// datagram (record headers, and for epoch 0 the handshake headers) without
// any keys. DTLS 1.3 protects its records under the unified header (RFC 9147
// §4: one flags byte, an optional Connection ID, 8 or 16 bits of encrypted
// sequence number, an optional length); its plaintext records (ClientHello,
// ServerHello, HelloRetryRequest, alerts before keys) keep the 1.2 header.
//
// The parser never allocates and never reads outside the datagram, so it can
// run on every packet of a live connection and on hostile input alike.
// describe_datagram() and flight_tracker build on it for human-readable logs.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/detail/trace_names.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dtlspp {

enum class direction { out, in };

// RFC 6347 §4.1 record content types. Only these reach a record visitor;
// anything else means we lost the framing and is reported as malformed.
enum class content_type : std::uint8_t {
    change_cipher_spec = 20,
    alert = 21,
    handshake = 22,
    application_data = 23,
    heartbeat = 24,
    // RFC 9146 §4: a protected record carrying a Connection ID. Its real
    // type is inside the ciphertext, and its header holds the CID, whose
    // length is not on the wire: only the side that chose it knows it.
    tls12_cid = 25,
    // RFC 9147 §7: a DTLS 1.3 ACK. On the wire only in plaintext at epoch
    // 0; later ones are inside protected records.
    ack = 26,
    // Not a code on the wire: a DTLS 1.3 protected record (unified header,
    // first byte 001CSLEE, RFC 9147 §4), whose real type is encrypted.
    dtls13_ciphertext = 0x20,
};

// RFC 5246 §7.4 / RFC 6347 §4.2.2 handshake message types.
enum class handshake_type : std::uint8_t {
    hello_request = 0,
    client_hello = 1,
    server_hello = 2,
    hello_verify_request = 3,
    new_session_ticket = 4,
    certificate = 11,
    server_key_exchange = 12,
    certificate_request = 13,
    server_hello_done = 14,
    certificate_verify = 15,
    client_key_exchange = 16,
    finished = 20,
    certificate_status = 22,
};

// The plain DTLS 1.2 record header; a tls12_cid header adds the CID.
inline constexpr std::size_t record_header_size = 13;
inline constexpr std::size_t handshake_header_size = 12;

// The header of a record of the given type: the CID sits between the
// sequence number and the length (RFC 9146 §4), so only tls12_cid records
// grow.
constexpr std::size_t record_header_size_of(content_type type, std::size_t connection_id_length) noexcept
{
    return type == content_type::tls12_cid ? record_header_size + connection_id_length : record_header_size;
}

// Names return "unknown" for codes outside the registries we track.
constexpr std::string_view content_type_name(std::uint8_t type) noexcept
{
    return detail::content_type_name_of(type);
}
constexpr std::string_view handshake_type_name(std::uint8_t type) noexcept
{
    return detail::handshake_type_name_of(type);
}
constexpr std::string_view alert_level_name(std::uint8_t level) noexcept
{
    return detail::alert_level_name_of(level);
}
constexpr std::string_view alert_description_name(std::uint8_t description) noexcept
{
    return detail::alert_description_name_of(description);
}

// One handshake fragment header (RFC 6347 §4.2.2) and the bytes it carries.
struct handshake_fragment {
    std::uint8_t msg_type = 0;
    std::uint32_t length = 0; // of the whole message, not of this fragment
    std::uint16_t message_seq = 0;
    std::uint32_t fragment_offset = 0;
    std::uint32_t fragment_length = 0;
    std::span<const std::byte> body;

    constexpr bool is_whole_message() const noexcept
    {
        return fragment_offset == 0 && fragment_length == length;
    }
};

struct alert_message {
    std::uint8_t level = 0;
    std::uint8_t description = 0;
};

namespace detail {

constexpr std::uint32_t read_u8(std::span<const std::byte> bytes, std::size_t at) noexcept
{
    return std::to_integer<std::uint32_t>(bytes[at]);
}
constexpr std::uint32_t read_u16(std::span<const std::byte> bytes, std::size_t at) noexcept
{
    return read_u8(bytes, at) << 8 | read_u8(bytes, at + 1);
}
constexpr std::uint32_t read_u24(std::span<const std::byte> bytes, std::size_t at) noexcept
{
    return read_u8(bytes, at) << 16 | read_u16(bytes, at + 1);
}
constexpr std::uint64_t read_u48(std::span<const std::byte> bytes, std::size_t at) noexcept
{
    return std::uint64_t{read_u16(bytes, at)} << 32 | std::uint64_t{read_u16(bytes, at + 2)} << 16 |
           read_u16(bytes, at + 4);
}

// Empty when `rest` starts with a well-formed fragment. Shared by the parser
// (to report the problem) and the fragment iterator (to stop before it), so
// both always agree on where the valid prefix ends.
constexpr std::string_view check_fragment(std::span<const std::byte> rest) noexcept
{
    if (rest.size() < handshake_header_size)
        return "truncated handshake header";
    const auto length = read_u24(rest, 1);
    const auto offset = read_u24(rest, 6);
    const auto fragment_length = read_u24(rest, 9);
    if (fragment_length > rest.size() - handshake_header_size)
        return "handshake fragment past record end";
    // Both are 24-bit, so the sum cannot overflow 32 bits.
    if (offset + fragment_length > length)
        return "handshake fragment past message length";
    return {};
}

constexpr handshake_fragment read_fragment(std::span<const std::byte> rest) noexcept
{
    handshake_fragment fragment;
    fragment.msg_type = static_cast<std::uint8_t>(read_u8(rest, 0));
    fragment.length = read_u24(rest, 1);
    fragment.message_seq = static_cast<std::uint16_t>(read_u16(rest, 4));
    fragment.fragment_offset = read_u24(rest, 6);
    fragment.fragment_length = read_u24(rest, 9);
    fragment.body = rest.subspan(handshake_header_size, fragment.fragment_length);
    return fragment;
}

constexpr bool is_known_content_type(std::uint32_t type) noexcept
{
    return (type >= 20 && type <= 24) || type == 26;
}

// RFC 9147 §4: the first byte of a unified header is 001CSLEE.
constexpr bool is_unified_header(std::uint32_t first_byte) noexcept
{
    return (first_byte & 0xE0) == 0x20;
}

} // namespace detail

// Lazily walks the handshake fragments of one plaintext record. It stops at
// the first malformed fragment, so it only ever yields in-bounds views.
class fragment_range {
public:
    class iterator {
    public:
        using value_type = handshake_fragment;
        using difference_type = std::ptrdiff_t;

        iterator() = default;
        explicit constexpr iterator(std::span<const std::byte> rest) noexcept : rest_(rest) {}

        constexpr handshake_fragment operator*() const noexcept { return detail::read_fragment(rest_); }
        constexpr iterator& operator++() noexcept
        {
            rest_ = rest_.subspan(handshake_header_size + detail::read_u24(rest_, 9));
            return *this;
        }
        constexpr iterator operator++(int) noexcept
        {
            auto previous = *this;
            ++*this;
            return previous;
        }
        friend constexpr bool operator==(const iterator& it, std::default_sentinel_t) noexcept
        {
            return it.rest_.empty() || !detail::check_fragment(it.rest_).empty();
        }

    private:
        std::span<const std::byte> rest_;
    };

    fragment_range() = default;
    explicit constexpr fragment_range(std::span<const std::byte> payload) noexcept : payload_(payload) {}

    constexpr iterator begin() const noexcept { return iterator(payload_); }
    constexpr std::default_sentinel_t end() const noexcept { return {}; }
    constexpr bool empty() const noexcept { return begin() == end(); }

private:
    std::span<const std::byte> payload_;
};

// One DTLS record (RFC 6347 §4.1) as seen on the wire. Views into the
// datagram: valid only during the visitor call unless the caller keeps the
// datagram alive.
struct record_view {
    content_type type = content_type::handshake;
    std::uint16_t version = 0;
    std::uint16_t epoch = 0;
    std::uint64_t sequence_number = 0; // 48 bits on the wire
    std::uint16_t length = 0;
    std::size_t offset = 0; // of the record header within the datagram
    std::span<const std::byte> payload;
    // Non-empty when the record's framing was fine but its plaintext body was
    // not; fragments() then yields only the well-formed prefix.
    std::string_view malformed_reason;
    // The CID of a tls12_cid record (never empty for one), or of a DTLS 1.3
    // record whose header carries one; empty otherwise.
    std::span<const std::byte> connection_id;
    // DTLS 1.3 unified header (type dtls13_ciphertext): `epoch` holds the
    // epoch's low two bits, all the header says (RFC 9147 §4), and
    // `sequence_number` the 8 or 16 low bits as sent, which are encrypted
    // (§4.2.3): neither orders anything without the keys. `version` is 0.
    bool unified = false;
    std::uint8_t unified_header_size = 0;

    // Anything after ChangeCipherSpec is protected; we cannot look inside.
    // tls12_cid records are always protected (the parser refuses epoch 0),
    // and so are unified-header records.
    constexpr bool is_encrypted() const noexcept { return unified || epoch != 0; }

    // Bytes from the record's start to its payload.
    constexpr std::size_t header_size() const noexcept
    {
        return unified ? unified_header_size : record_header_size + connection_id.size();
    }

    // Empty unless this is a plaintext handshake record.
    constexpr fragment_range fragments() const noexcept
    {
        if (type != content_type::handshake || is_encrypted())
            return {};
        return fragment_range(payload);
    }

    // Only plaintext, well-formed alerts can be read.
    constexpr std::optional<alert_message> alert() const noexcept
    {
        if (type != content_type::alert || is_encrypted() || payload.size() != 2)
            return std::nullopt;
        return alert_message{static_cast<std::uint8_t>(detail::read_u8(payload, 0)),
                             static_cast<std::uint8_t>(detail::read_u8(payload, 1))};
    }
};

struct parse_result {
    std::size_t records = 0; // handed to the visitor
    // Empty when the whole datagram was well-formed. Parsing stops at the
    // first problem, so there is at most one.
    std::string_view malformed_reason;
    std::size_t malformed_offset = 0; // byte within the datagram

    constexpr bool ok() const noexcept { return malformed_reason.empty(); }
};

namespace detail {

struct body_problem {
    std::string_view reason;
    std::size_t offset = 0; // within the payload
};

// Checks only what is readable at this epoch; encrypted bodies are opaque.
constexpr body_problem check_record_body(const record_view& record) noexcept
{
    if (record.is_encrypted())
        return {};
    const auto payload = record.payload;
    switch (record.type) {
    case content_type::handshake: {
        // RFC 5246 §6.2.1: zero-length handshake fragments must not be sent.
        if (payload.empty())
            return {"empty handshake record", 0};
        std::size_t at = 0;
        while (at < payload.size()) {
            const auto rest = payload.subspan(at);
            if (const auto reason = check_fragment(rest); !reason.empty())
                return {reason, at};
            at += handshake_header_size + read_u24(rest, 9);
        }
        return {};
    }
    case content_type::alert:
        if (payload.size() != 2)
            return {"alert record length is not 2", 0};
        return {};
    case content_type::change_cipher_spec:
        if (payload.size() != 1 || read_u8(payload, 0) != 1)
            return {"bad ChangeCipherSpec", 0};
        return {};
    default:
        return {};
    }
}

} // namespace detail

// Calls on_record(const record_view&) for each record in the datagram, in
// order. Stops at the first problem; a record whose header is fine but whose
// body is not is still delivered (with malformed_reason set) before stopping.
//
// connection_id_length is the length of the CID that tls12_cid records in
// this datagram carry: the receiver's own CID, as it asked its peer to use
// (RFC 9146 §3). 0, the default, means none was negotiated, so any such
// record is malformed: a peer sends one only to a side that asked for a
// non-empty CID.
template <class F>
constexpr parse_result parse_datagram(std::span<const std::byte> datagram, F&& on_record,
                                      std::size_t connection_id_length = 0)
{
    parse_result result;
    if (datagram.empty()) {
        result.malformed_reason = "empty datagram";
        return result;
    }
    std::size_t at = 0;
    while (at < datagram.size()) {
        const auto rest = datagram.subspan(at);
        const auto type = detail::read_u8(rest, 0);
        const auto fail = [&](std::string_view reason) {
            result.malformed_reason = reason;
            result.malformed_offset = at;
            return result;
        };
        if (detail::is_unified_header(type)) {
            // RFC 9147 §4: C (0x10) a CID follows, S (0x08) 16-bit sequence
            // number, L (0x04) a length follows, else the record runs to the
            // datagram's end; EE the epoch's low bits.
            std::size_t header = 1;
            if (type & 0x10) {
                if (connection_id_length == 0)
                    return fail("DTLS 1.3 record with a Connection ID, but no Connection ID negotiated");
                header += connection_id_length;
            }
            const std::size_t sequence_size = (type & 0x08) ? 2 : 1;
            header += sequence_size;
            if (type & 0x04) header += 2;
            if (rest.size() < header) return fail("truncated record header");
            const std::size_t length = (type & 0x04) ? detail::read_u16(rest, header - 2) : rest.size() - header;
            if (length > rest.size() - header) return fail("record length past end of datagram");
            record_view record;
            record.type = content_type::dtls13_ciphertext;
            record.unified = true;
            record.unified_header_size = static_cast<std::uint8_t>(header);
            record.epoch = static_cast<std::uint16_t>(type & 0x03);
            const std::size_t sequence_at = 1 + ((type & 0x10) ? connection_id_length : 0);
            record.sequence_number = sequence_size == 2 ? detail::read_u16(rest, sequence_at)
                                                        : detail::read_u8(rest, sequence_at);
            record.length = static_cast<std::uint16_t>(length);
            record.offset = at;
            if (type & 0x10) record.connection_id = rest.subspan(1, connection_id_length);
            record.payload = rest.subspan(header, length);
            on_record(std::as_const(record));
            ++result.records;
            at += header + length;
            continue;
        }
        if (rest.size() < record_header_size) {
            result.malformed_reason = "truncated record header";
            result.malformed_offset = at;
            return result;
        }
        const bool cid_record = type == static_cast<std::uint8_t>(content_type::tls12_cid);
        if (!cid_record && !detail::is_known_content_type(type))
            return fail("unknown content type");
        const auto epoch = detail::read_u16(rest, 3);
        std::size_t header = record_header_size;
        if (cid_record) {
            if (connection_id_length == 0)
                return fail("Connection ID record, but no Connection ID negotiated");
            // Its real content type is encrypted, so it can only come after
            // ChangeCipherSpec (RFC 9146 §4).
            if (epoch == 0)
                return fail("Connection ID record at epoch 0");
            // Compared before adding, so no CID length can overflow the sum.
            if (connection_id_length > rest.size() - record_header_size)
                return fail("truncated record header");
            header += connection_id_length;
        }
        const auto length = detail::read_u16(rest, header - 2);
        if (length > rest.size() - header)
            return fail("record length past end of datagram");
        record_view record;
        record.type = static_cast<content_type>(type);
        record.version = static_cast<std::uint16_t>(detail::read_u16(rest, 1));
        record.epoch = static_cast<std::uint16_t>(epoch);
        record.sequence_number = detail::read_u48(rest, 5);
        record.length = static_cast<std::uint16_t>(length);
        record.offset = at;
        if (cid_record)
            record.connection_id = rest.subspan(11, connection_id_length);
        record.payload = rest.subspan(header, length);
        const auto problem = detail::check_record_body(record);
        record.malformed_reason = problem.reason;
        on_record(std::as_const(record));
        ++result.records;
        if (!problem.reason.empty()) {
            result.malformed_reason = problem.reason;
            result.malformed_offset = at + header + problem.offset;
            return result;
        }
        at += header + length;
    }
    return result;
}

namespace detail {

inline void append_number(std::string& out, std::uint64_t value)
{
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    out.append(digits, end);
}

constexpr std::string_view arrow(direction dir) noexcept
{
    return dir == direction::out ? "->" : "<-";
}

inline void append_handshake_name(std::string& out, std::uint8_t type)
{
    const auto name = handshake_type_name(type);
    if (name != unknown_code_name) {
        out += name;
        return;
    }
    out += "handshake type ";
    append_number(out, type);
}

inline void append_hex(std::string& out, std::span<const std::byte> bytes)
{
    constexpr std::string_view digits = "0123456789abcdef";
    for (const auto b : bytes) {
        const auto value = std::to_integer<unsigned>(b);
        out += digits[value >> 4];
        out += digits[value & 0xf];
    }
}

inline void append_record(std::string& out, const record_view& record)
{
    if (record.unified) {
        // "DTLS 1.3 epoch 3 (low bits) seq 0x2a (encrypted) cid ..: protected record (40 B)".
        out += "DTLS 1.3 epoch ";
        append_number(out, record.epoch);
        out += " (low bits): protected record";
        if (!record.connection_id.empty()) {
            out += " cid ";
            append_hex(out, record.connection_id);
        }
        out += " (";
        append_number(out, record.payload.size());
        out += " B)";
        return;
    }
    out += "epoch ";
    append_number(out, record.epoch);
    out += " seq ";
    append_number(out, record.sequence_number);
    if (!record.connection_id.empty()) {
        out += " cid ";
        append_hex(out, record.connection_id);
    }
    out += ": ";
    const auto append_size = [&] {
        out += " (";
        append_number(out, record.payload.size());
        out += " B)";
    };
    switch (record.type) {
    case content_type::handshake: {
        if (record.is_encrypted()) {
            out += "encrypted handshake";
            append_size();
            return;
        }
        bool first = true;
        for (const auto fragment : record.fragments()) {
            if (!first)
                out += ", ";
            first = false;
            append_handshake_name(out, fragment.msg_type);
            out += " (msg ";
            append_number(out, fragment.message_seq);
            out += ", frag ";
            append_number(out, fragment.fragment_offset);
            out += '+';
            append_number(out, fragment.fragment_length);
            out += '/';
            append_number(out, fragment.length);
            out += ')';
        }
        if (first)
            out += "Handshake";
        return;
    }
    case content_type::alert:
        if (const auto alert = record.alert()) {
            out += "Alert (";
            out += alert_level_name(alert->level);
            out += ", ";
            out += alert_description_name(alert->description);
            out += ')';
            return;
        }
        out += record.is_encrypted() ? "encrypted Alert" : "Alert";
        append_size();
        return;
    case content_type::change_cipher_spec:
        out += "ChangeCipherSpec";
        return;
    case content_type::tls12_cid:
        // The real content type is encrypted with the data, so not even the
        // kind of record can be named.
        out += "encrypted record";
        append_size();
        return;
    default:
        out += content_type_name(static_cast<std::uint8_t>(record.type));
        append_size();
        return;
    }
}

} // namespace detail

// One capture-like line per datagram, e.g.
//   -> 243 B  epoch 0 seq 0: ClientHello (msg 0, frag 0+231/231)
// Records are separated by "; ", and a trailing "malformed (...)" names the
// first problem and where it starts. A record with a Connection ID shows it
// in hex, e.g. "epoch 1 seq 3 cid 0a1b2c3d: encrypted record (29 B)";
// connection_id_length is as for parse_datagram(), so it is the CID length
// of the side receiving this datagram.
inline std::string describe_datagram(direction dir, std::span<const std::byte> datagram,
                                     std::size_t connection_id_length = 0)
{
    std::string line;
    line += detail::arrow(dir);
    line += ' ';
    detail::append_number(line, datagram.size());
    line += " B  ";
    bool first = true;
    const auto result = parse_datagram(datagram, [&](const record_view& record) {
        if (!first)
            line += "; ";
        first = false;
        detail::append_record(line, record);
    }, connection_id_length);
    if (!result.ok()) {
        if (!first)
            line += "; ";
        line += "malformed (";
        line += result.malformed_reason;
        line += " at byte ";
        detail::append_number(line, result.malformed_offset);
        line += ')';
    }
    return line;
}

struct flight_summary {
    std::size_t number = 0; // 1-based, in order of appearance
    direction dir = direction::out;
    std::size_t datagrams = 0;
    std::size_t bytes = 0; // UDP payload bytes
    std::size_t records = 0;
    std::size_t retransmissions = 0; // handshake fragments seen before
    std::size_t malformed_datagrams = 0;
    // Distinct messages in first-seen order: handshake type names for
    // plaintext handshakes, otherwise the record kind (e.g. ChangeCipherSpec,
    // EncryptedHandshake, or ConnectionID for records whose kind is
    // encrypted). Static strings, so views are safe to keep.
    std::vector<std::string_view> messages;
};

// Groups consecutive same-direction datagrams into flights (RFC 6347 §4.2.4)
// and spots retransmissions. Only plaintext fragments can be recognised as
// retransmitted: an encrypted Finished looks new every time because its
// record sequence number changes and its message_seq is hidden.
class flight_tracker {
public:
    // connection_id_length is the CID length of this datagram's receiver
    // (see parse_datagram()). It is per call because the two directions
    // carry different CIDs, each chosen by its receiver, whose lengths may
    // differ.
    void observe(direction dir, std::span<const std::byte> datagram, std::size_t connection_id_length = 0)
    {
        if (flights_.empty() || flights_.back().dir != dir) {
            flight_summary next;
            next.number = flights_.size() + 1;
            next.dir = dir;
            flights_.push_back(std::move(next));
            flight_messages_.clear();
        }
        auto& flight = flights_.back();
        auto& seen = seen_fragments_[dir == direction::out ? 0 : 1];
        ++flight.datagrams;
        flight.bytes += datagram.size();
        const auto result = parse_datagram(datagram, [&](const record_view& record) {
            ++flight.records;
            if (record.type == content_type::handshake && !record.is_encrypted()) {
                for (const auto fragment : record.fragments()) {
                    if (!seen.insert(fragment_key(record.epoch, fragment)).second)
                        ++flight.retransmissions;
                    if (flight_messages_.insert(message_key(record.epoch, fragment)).second)
                        flight.messages.push_back(message_name(fragment.msg_type));
                }
                return;
            }
            add_unique(flight.messages, record_label(record));
        }, connection_id_length);
        if (!result.ok())
            ++flight.malformed_datagrams;
    }

    const std::vector<flight_summary>& flights() const noexcept { return flights_; }

    std::size_t retransmissions() const noexcept
    {
        std::size_t total = 0;
        for (const auto& flight : flights_)
            total += flight.retransmissions;
        return total;
    }

private:
    // Packs (epoch, message_seq, fragment_offset) into 16+16+24 bits.
    static std::uint64_t fragment_key(std::uint16_t epoch, const handshake_fragment& fragment) noexcept
    {
        return std::uint64_t{epoch} << 40 | std::uint64_t{fragment.message_seq} << 24 |
               fragment.fragment_offset;
    }
    static std::uint64_t message_key(std::uint16_t epoch, const handshake_fragment& fragment) noexcept
    {
        return std::uint64_t{epoch} << 16 | fragment.message_seq;
    }
    static std::string_view message_name(std::uint8_t type) noexcept
    {
        const auto name = handshake_type_name(type);
        return name == detail::unknown_code_name ? std::string_view("UnknownHandshake") : name;
    }
    static std::string_view record_label(const record_view& record) noexcept
    {
        if (record.type == content_type::handshake)
            return "EncryptedHandshake";
        return content_type_name(static_cast<std::uint8_t>(record.type));
    }
    static void add_unique(std::vector<std::string_view>& labels, std::string_view label)
    {
        for (const auto existing : labels)
            if (existing == label)
                return;
        labels.push_back(label);
    }

    std::vector<flight_summary> flights_;
    std::set<std::uint64_t> seen_fragments_[2]; // per direction
    std::set<std::uint64_t> flight_messages_;   // (epoch, message_seq) in the open flight
};

// e.g. "flight 3 (->): 4 datagrams, 2310 B, 6 records, 0 retransmissions:
// Certificate ServerKeyExchange ServerHelloDone" (on one line).
inline std::string describe_flight(const flight_summary& flight)
{
    std::string line;
    const auto append_count = [&](std::size_t count, std::string_view noun) {
        detail::append_number(line, count);
        line += ' ';
        line += noun;
        if (count != 1)
            line += 's';
    };
    line += "flight ";
    detail::append_number(line, flight.number);
    line += " (";
    line += detail::arrow(flight.dir);
    line += "): ";
    append_count(flight.datagrams, "datagram");
    line += ", ";
    detail::append_number(line, flight.bytes);
    line += " B, ";
    append_count(flight.records, "record");
    line += ", ";
    append_count(flight.retransmissions, "retransmission");
    if (flight.malformed_datagrams != 0) {
        line += ", ";
        detail::append_number(line, flight.malformed_datagrams);
        line += " malformed";
    }
    if (!flight.messages.empty()) {
        line += ':';
        for (const auto message : flight.messages) {
            line += ' ';
            line += message;
        }
    }
    return line;
}

} // namespace dtlspp
