// Test support: crafts DTLS 1.2 records and handshake messages byte by byte,
// and takes apart and rewrites captured ones (DTLS 1.3's plaintext
// ClientHello and its cookie extension too), for tests that play an
// attacker on the wire (injection, replay, reordering, re-fragmentation).
//
// Everything here works on the cleartext framing only (RFC 6347 §4.1 record
// header, §4.2.2 handshake header): it never needs keys, so an epoch-1
// record it builds has a random body that no stack can authenticate, which
// is exactly what an off-path attacker can send.
#pragma once

#include <dtlspp/trace.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace dtlspp::test::forge {

using bytes = std::vector<std::byte>;

// DTLS 1.2 on the wire (RFC 6347 §4.1: the one's complement of 1.2).
inline constexpr std::uint16_t dtls12_version = 0xfefd;

namespace detail {

inline void put_u8(bytes& out, std::uint32_t v) { out.push_back(static_cast<std::byte>(v & 0xff)); }
inline void put_u16(bytes& out, std::uint32_t v)
{
    put_u8(out, v >> 8);
    put_u8(out, v);
}
inline void put_u24(bytes& out, std::uint32_t v)
{
    put_u8(out, v >> 16);
    put_u16(out, v);
}
inline void put_u48(bytes& out, std::uint64_t v)
{
    put_u16(out, static_cast<std::uint32_t>(v >> 32));
    put_u16(out, static_cast<std::uint32_t>(v >> 16));
    put_u16(out, static_cast<std::uint32_t>(v));
}
inline void set_u16(std::span<std::byte> at, std::uint32_t v)
{
    at[0] = static_cast<std::byte>((v >> 8) & 0xff);
    at[1] = static_cast<std::byte>(v & 0xff);
}
inline void set_u24(std::span<std::byte> at, std::uint32_t v)
{
    at[0] = static_cast<std::byte>((v >> 16) & 0xff);
    set_u16(at.subspan(1), v);
}
inline std::uint32_t get_u8(std::span<const std::byte> b, std::size_t at) { return std::to_integer<std::uint32_t>(b[at]); }
inline std::uint32_t get_u16(std::span<const std::byte> b, std::size_t at) { return get_u8(b, at) << 8 | get_u8(b, at + 1); }
inline std::uint32_t get_u24(std::span<const std::byte> b, std::size_t at) { return get_u8(b, at) << 16 | get_u16(b, at + 1); }

} // namespace detail

inline bytes concat(std::initializer_list<std::span<const std::byte>> parts)
{
    bytes out;
    for (auto part : parts) out.insert(out.end(), part.begin(), part.end());
    return out;
}

// `n` bytes from a seeded generator: a forged body is random but the same
// on every run, so a failure can be replayed.
inline bytes random_bytes(std::size_t n, std::mt19937& random)
{
    std::uniform_int_distribution<int> byte(0, 255);
    bytes out(n);
    for (auto& b : out) b = static_cast<std::byte>(byte(random));
    return out;
}

// One record: 13-byte header (type, version, epoch, 48-bit sequence number,
// length) and the payload as given. The type is a raw byte so that tests can
// send content types no registry knows.
inline bytes record(std::uint8_t type, std::uint16_t epoch, std::uint64_t sequence, std::span<const std::byte> payload,
                    std::uint16_t version = dtls12_version)
{
    bytes out;
    out.reserve(record_header_size + payload.size());
    detail::put_u8(out, type);
    detail::put_u16(out, version);
    detail::put_u16(out, epoch);
    detail::put_u48(out, sequence);
    detail::put_u16(out, static_cast<std::uint32_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

inline bytes record(content_type type, std::uint16_t epoch, std::uint64_t sequence, std::span<const std::byte> payload)
{
    return record(static_cast<std::uint8_t>(type), epoch, sequence, payload);
}

// One handshake fragment (RFC 6347 §4.2.2): the header claims a message of
// `message_length` bytes and says this fragment holds `body` at `offset`.
// Nothing forces the claims to be consistent: that is the point.
inline bytes handshake_fragment(std::uint8_t msg_type, std::uint16_t message_seq, std::uint32_t message_length,
                                std::uint32_t offset, std::span<const std::byte> body)
{
    bytes out;
    out.reserve(handshake_header_size + body.size());
    detail::put_u8(out, msg_type);
    detail::put_u24(out, message_length);
    detail::put_u16(out, message_seq);
    detail::put_u24(out, offset);
    detail::put_u24(out, static_cast<std::uint32_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

inline bytes handshake_message(handshake_type msg_type, std::uint16_t message_seq, std::span<const std::byte> body)
{
    return handshake_fragment(static_cast<std::uint8_t>(msg_type), message_seq,
                              static_cast<std::uint32_t>(body.size()), 0, body);
}

// RFC 5246 §7.2: level (1 warning, 2 fatal), description.
inline bytes alert_body(std::uint8_t level, std::uint8_t description)
{
    return {static_cast<std::byte>(level), static_cast<std::byte>(description)};
}

// RFC 5246 §7.1: a ChangeCipherSpec message is the single byte 1.
inline bytes change_cipher_spec_body() { return {std::byte{1}}; }

// ---------------------------------------------------------------------------
// Captured records: taking real datagrams apart.

// A record as it was on the wire, header included, with its parsed fields.
struct wire_record {
    std::uint8_t type = 0;
    std::uint16_t epoch = 0;
    std::uint64_t sequence = 0;
    bool unified = false;                     // a DTLS 1.3 unified header: epoch and sequence are low bits only
    std::size_t header_size = record_header_size; // with a CID, or a unified header, it differs
    bytes raw; // header + payload

    std::span<const std::byte> payload() const { return std::span(raw).subspan(header_size); }
    bool is(content_type t) const { return type == static_cast<std::uint8_t>(t); }
    // The handshake fragments of a plaintext handshake record.
    std::vector<dtlspp::handshake_fragment> fragments() const
    {
        std::vector<dtlspp::handshake_fragment> out;
        if (!is(content_type::handshake) || epoch != 0 || unified) return out;
        for (const auto& f : fragment_range(payload())) out.push_back(f);
        return out;
    }
    bool carries(handshake_type t) const
    {
        const auto all = fragments();
        return std::any_of(all.begin(), all.end(),
                           [&](const dtlspp::handshake_fragment& f) { return f.msg_type == static_cast<std::uint8_t>(t); });
    }
};

// The well-formed records of a datagram, in order.
inline std::vector<wire_record> split_records(std::span<const std::byte> datagram)
{
    std::vector<wire_record> out;
    parse_datagram(datagram, [&](const record_view& r) {
        wire_record w;
        w.type = static_cast<std::uint8_t>(r.type);
        w.epoch = r.epoch;
        w.sequence = r.sequence_number;
        w.unified = r.unified;
        w.header_size = r.header_size();
        const auto whole = datagram.subspan(r.offset, r.header_size() + r.length);
        w.raw.assign(whole.begin(), whole.end());
        out.push_back(std::move(w));
    });
    return out;
}

inline bytes join_records(const std::vector<wire_record>& records)
{
    bytes out;
    for (const auto& r : records) out.insert(out.end(), r.raw.begin(), r.raw.end());
    return out;
}

// A copy of a record with another 48-bit sequence number. The AEAD of an
// encrypted record covers its sequence number (RFC 5246 §6.2.3.3), so a
// rewritten epoch-1 record no longer authenticates.
inline bytes with_sequence(std::span<const std::byte> record_bytes, std::uint64_t sequence)
{
    bytes out(record_bytes.begin(), record_bytes.end());
    for (int i = 0; i < 6; ++i) out[5 + i] = static_cast<std::byte>((sequence >> (40 - 8 * i)) & 0xff);
    return out;
}

// A copy of a one-fragment plaintext handshake record with another
// message_seq.
inline bytes with_message_seq(std::span<const std::byte> record_bytes, std::uint16_t message_seq)
{
    bytes out(record_bytes.begin(), record_bytes.end());
    detail::set_u16(std::span(out).subspan(record_header_size + 4), message_seq);
    return out;
}

// Cuts one whole handshake message (a fragment with offset 0 and the full
// length) into pieces: each {offset, length} becomes one fragment record.
// Pieces may overlap, leave gaps or be empty; RFC 6347 §4.2.3 lets a
// receiver get any of these.
struct piece {
    std::uint32_t offset;
    std::uint32_t length;
};
inline std::vector<bytes> refragment(const dtlspp::handshake_fragment& whole, std::uint64_t first_sequence,
                                     std::initializer_list<piece> pieces)
{
    std::vector<bytes> out;
    std::uint64_t sequence = first_sequence;
    for (const auto& p : pieces) {
        const auto body = whole.body.subspan(p.offset, p.length);
        out.push_back(record(content_type::handshake, 0, sequence++,
                             handshake_fragment(whole.msg_type, whole.message_seq, whole.length, p.offset, body)));
    }
    return out;
}

// ---------------------------------------------------------------------------
// ClientHello and HelloVerifyRequest bodies (RFC 6347 §4.2.1, RFC 5246
// §7.4.1.2): client_version(2) random(32) session_id<0..32> cookie<0..2^8-1>
// cipher_suites ... and server_version(2) cookie<0..2^8-1>.

// The first whole ClientHello in a datagram.
inline std::optional<dtlspp::handshake_fragment> find_message(std::span<const std::byte> datagram, handshake_type t)
{
    std::optional<dtlspp::handshake_fragment> found;
    parse_datagram(datagram, [&](const record_view& r) {
        for (const auto& f : r.fragments())
            if (!found && f.msg_type == static_cast<std::uint8_t>(t) && f.is_whole_message()) found = f;
    });
    return found;
}

// The cookie a HelloVerifyRequest carries.
inline std::optional<bytes> hello_verify_cookie(std::span<const std::byte> datagram)
{
    const auto hvr = find_message(datagram, handshake_type::hello_verify_request);
    if (!hvr || hvr->body.size() < 3) return std::nullopt;
    const auto n = detail::get_u8(hvr->body, 2);
    if (hvr->body.size() < 3 + n) return std::nullopt;
    const auto cookie = hvr->body.subspan(3, n);
    return bytes(cookie.begin(), cookie.end());
}

// Where the cookie sits inside a ClientHello body.
struct client_hello_layout {
    std::size_t random_at = 2;
    std::size_t cookie_length_at = 0;
};
inline std::optional<client_hello_layout> layout_of(std::span<const std::byte> body)
{
    if (body.size() < 2 + 32 + 1) return std::nullopt;
    const auto session_id_length = detail::get_u8(body, 34);
    client_hello_layout l;
    l.cookie_length_at = 35 + session_id_length;
    if (body.size() < l.cookie_length_at + 1) return std::nullopt;
    if (body.size() < l.cookie_length_at + 1 + detail::get_u8(body, l.cookie_length_at)) return std::nullopt;
    return l;
}

inline std::optional<bytes> client_hello_cookie(std::span<const std::byte> datagram)
{
    const auto hello = find_message(datagram, handshake_type::client_hello);
    if (!hello) return std::nullopt;
    const auto l = layout_of(hello->body);
    if (!l) return std::nullopt;
    const auto cookie = hello->body.subspan(l->cookie_length_at + 1, detail::get_u8(hello->body, l->cookie_length_at));
    return bytes(cookie.begin(), cookie.end());
}

// A one-record datagram with the ClientHello of `datagram` rebuilt: another
// cookie and/or another random, every length field made consistent, the
// record's sequence number and message_seq kept.
struct client_hello_edit {
    std::optional<bytes> cookie;
    std::optional<bytes> random; // 32 bytes
};
inline std::optional<bytes> rewrite_client_hello(std::span<const std::byte> datagram, const client_hello_edit& edit)
{
    const auto records = split_records(datagram);
    if (records.empty()) return std::nullopt;
    const auto hello = find_message(datagram, handshake_type::client_hello);
    if (!hello) return std::nullopt;
    const auto l = layout_of(hello->body);
    if (!l) return std::nullopt;
    bytes body(hello->body.begin(), hello->body.end());
    if (edit.random) std::copy_n(edit.random->begin(), 32, body.begin() + static_cast<std::ptrdiff_t>(l->random_at));
    if (edit.cookie) {
        const auto old_length = detail::get_u8(body, l->cookie_length_at);
        const auto first = body.begin() + static_cast<std::ptrdiff_t>(l->cookie_length_at);
        body.erase(first, first + 1 + old_length);
        bytes field;
        detail::put_u8(field, static_cast<std::uint32_t>(edit.cookie->size()));
        field.insert(field.end(), edit.cookie->begin(), edit.cookie->end());
        body.insert(body.begin() + static_cast<std::ptrdiff_t>(l->cookie_length_at), field.begin(), field.end());
    }
    return record(content_type::handshake, 0, records.front().sequence,
                  handshake_message(handshake_type::client_hello, hello->message_seq, body));
}

// ---------------------------------------------------------------------------
// DTLS 1.3's cookie (RFC 9147 §5.1, RFC 8446 §4.2.2): not a ClientHello
// field (legacy_cookie stays empty) but extension 44 of the second
// ClientHello, answering the server's HelloRetryRequest. The body:
// legacy_version(2) random(32) legacy_session_id<0..32> legacy_cookie<0..255>
// cipher_suites<2..2^16-2> legacy_compression_methods<1..255>
// extensions<8..2^16-1>; each extension is type(2) length(2) data, and the
// cookie extension's data is cookie<1..2^16-1>.

inline constexpr std::uint16_t cookie_extension_type = 44;

// Where one extension sits inside a ClientHello body: `at` is its type
// field, its data follows the 4-byte type and length.
struct extension_place {
    std::uint16_t type = 0;
    std::size_t at = 0;
    std::size_t length = 0;
    std::size_t data_at() const { return at + 4; }
};
struct extensions_layout {
    std::size_t block_length_at = 0; // the extensions block's 2-byte length
    std::vector<extension_place> extensions;
    std::optional<extension_place> find(std::uint16_t type) const
    {
        for (const auto& e : extensions)
            if (e.type == type) return e;
        return std::nullopt;
    }
};

// The extensions of a well-formed ClientHello body: every vector inside its
// enclosing one and the extensions block running to the body's end.
inline std::optional<extensions_layout> extensions_of(std::span<const std::byte> body)
{
    const auto l = layout_of(body);
    if (!l) return std::nullopt;
    std::size_t i = l->cookie_length_at + 1 + detail::get_u8(body, l->cookie_length_at); // past legacy_cookie
    if (body.size() < i + 2) return std::nullopt;
    i += 2 + detail::get_u16(body, i); // cipher_suites
    if (body.size() < i + 1) return std::nullopt;
    i += 1 + detail::get_u8(body, i); // legacy_compression_methods
    if (body.size() < i + 2) return std::nullopt;
    extensions_layout out;
    out.block_length_at = i;
    const std::size_t end = i + 2 + detail::get_u16(body, i);
    if (end != body.size()) return std::nullopt;
    for (i += 2; i < end;) {
        if (end - i < 4) return std::nullopt;
        extension_place e;
        e.type = static_cast<std::uint16_t>(detail::get_u16(body, i));
        e.at = i;
        e.length = detail::get_u16(body, i + 2);
        if (end - e.data_at() < e.length) return std::nullopt;
        out.extensions.push_back(e);
        i = e.data_at() + e.length;
    }
    return out;
}

// The cookie a DTLS 1.3 ClientHello carries in its cookie extension.
inline std::optional<bytes> client_hello_cookie_extension(std::span<const std::byte> datagram)
{
    const auto hello = find_message(datagram, handshake_type::client_hello);
    if (!hello) return std::nullopt;
    const auto l = extensions_of(hello->body);
    if (!l) return std::nullopt;
    const auto e = l->find(cookie_extension_type);
    if (!e || e->length < 2) return std::nullopt;
    const auto n = detail::get_u16(hello->body, e->data_at());
    if (e->length != 2 + n) return std::nullopt;
    const auto cookie = hello->body.subspan(e->data_at() + 2, n);
    return bytes(cookie.begin(), cookie.end());
}

// A one-record datagram with the ClientHello of `datagram`, its cookie
// extension's data replaced by `data` as given (any bytes: a consistent
// cookie<1..2^16-1> or an inner length that lies). The extension keeps its
// place among the others (a pre_shared_key extension must stay last: RFC
// 8446 §4.2.11). The extension's length, the extensions block's length,
// the handshake message and fragment lengths and the record length all
// match the new data; the record's version and sequence number and the
// message_seq are kept.
inline std::optional<bytes> with_cookie_extension_data(std::span<const std::byte> datagram,
                                                       std::span<const std::byte> data)
{
    const auto records = split_records(datagram);
    const auto hello = find_message(datagram, handshake_type::client_hello);
    if (records.empty() || !hello) return std::nullopt;
    const auto l = extensions_of(hello->body);
    if (!l) return std::nullopt;
    const auto e = l->find(cookie_extension_type);
    if (!e) return std::nullopt;
    const auto block_length = detail::get_u16(hello->body, l->block_length_at) - e->length + data.size();
    if (data.size() > 0xffff || block_length > 0xffff) return std::nullopt;
    bytes body(hello->body.begin(), hello->body.begin() + static_cast<std::ptrdiff_t>(e->at + 2));
    detail::put_u16(body, static_cast<std::uint32_t>(data.size()));
    body.insert(body.end(), data.begin(), data.end());
    body.insert(body.end(), hello->body.begin() + static_cast<std::ptrdiff_t>(e->data_at() + e->length),
                hello->body.end());
    detail::set_u16(std::span(body).subspan(l->block_length_at), static_cast<std::uint32_t>(block_length));
    const auto& first = records.front();
    return record(first.type, first.epoch, first.sequence,
                  handshake_message(handshake_type::client_hello, hello->message_seq, body),
                  static_cast<std::uint16_t>(detail::get_u16(first.raw, 1)));
}

// The same with a well-formed cookie extension holding `cookie`.
inline std::optional<bytes> with_cookie_extension(std::span<const std::byte> datagram, std::span<const std::byte> cookie)
{
    bytes data;
    detail::put_u16(data, static_cast<std::uint32_t>(cookie.size()));
    data.insert(data.end(), cookie.begin(), cookie.end());
    return with_cookie_extension_data(datagram, data);
}

// A ClientHello whose cookie extension's length field claims `claimed`
// bytes, and nothing else changed: every other length field stays as it
// was, so a claim past the extension's real data runs into the next
// extension, or past the end of the extensions block.
inline std::optional<bytes> with_cookie_extension_length(std::span<const std::byte> datagram, std::uint16_t claimed)
{
    const auto records = split_records(datagram);
    const auto hello = find_message(datagram, handshake_type::client_hello);
    if (records.empty() || !hello) return std::nullopt;
    const auto l = extensions_of(hello->body);
    if (!l) return std::nullopt;
    const auto e = l->find(cookie_extension_type);
    if (!e) return std::nullopt;
    bytes body(hello->body.begin(), hello->body.end());
    detail::set_u16(std::span(body).subspan(e->at + 2), claimed);
    const auto& first = records.front();
    return record(first.type, first.epoch, first.sequence,
                  handshake_message(handshake_type::client_hello, hello->message_seq, body),
                  static_cast<std::uint16_t>(detail::get_u16(first.raw, 1)));
}

// A ClientHello cut short right after a cookie length byte that claims
// `claimed` bytes the record does not hold: the shape of CVE-2022-35409
// (mbedTLS < 2.28.1 read past its input buffer checking such a cookie).
inline std::optional<bytes> client_hello_with_overlong_cookie(std::span<const std::byte> datagram, std::uint8_t claimed,
                                                              std::size_t present)
{
    const auto records = split_records(datagram);
    const auto hello = find_message(datagram, handshake_type::client_hello);
    if (records.empty() || !hello) return std::nullopt;
    const auto l = layout_of(hello->body);
    if (!l) return std::nullopt;
    bytes body(hello->body.begin(), hello->body.begin() + static_cast<std::ptrdiff_t>(l->cookie_length_at));
    detail::put_u8(body, claimed);
    body.insert(body.end(), present, std::byte{0xa5});
    return record(content_type::handshake, 0, records.front().sequence,
                  handshake_message(handshake_type::client_hello, hello->message_seq, body));
}

} // namespace dtlspp::test::forge
