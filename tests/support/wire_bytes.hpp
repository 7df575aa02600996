// Test support: building datagrams byte by byte for the wire parser's
// tests.
#pragma once

#include <dtlspp/trace.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace dtlspp::test::wire {

using bytes = std::vector<std::byte>;

// Appends `value` big-endian in `width` bytes.
inline void put(bytes& out, std::uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; --i)
        out.push_back(static_cast<std::byte>(value >> (8 * i)));
}

// `size` bytes of a recognisable pattern.
inline bytes filler(std::size_t size, unsigned seed = 0)
{
    bytes out(size);
    for (std::size_t i = 0; i < size; ++i)
        out[i] = static_cast<std::byte>(seed + i * 7);
    return out;
}

inline bytes concat(std::initializer_list<bytes> parts)
{
    bytes out;
    for (const auto& part : parts)
        out.insert(out.end(), part.begin(), part.end());
    return out;
}

// A handshake fragment header (RFC 6347 §4.2.2) and its body;
// fragment_length is the body's size.
inline bytes fragment(std::uint8_t msg_type, std::uint32_t length, std::uint16_t message_seq, std::uint32_t offset,
                      const bytes& body)
{
    bytes out;
    put(out, msg_type, 1);
    put(out, length, 3);
    put(out, message_seq, 2);
    put(out, offset, 3);
    put(out, body.size(), 3);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

// A DTLS 1.2 record (RFC 6347 §4.1).
inline bytes record(content_type type, std::uint16_t epoch, std::uint64_t sequence, const bytes& payload)
{
    bytes out;
    put(out, static_cast<std::uint8_t>(type), 1);
    put(out, 0xfefd, 2);
    put(out, epoch, 2);
    put(out, sequence, 6);
    put(out, payload.size(), 2);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

// RFC 9146 §4: the CID sits between the sequence number and the length.
inline bytes cid_record(std::uint16_t epoch, std::uint64_t sequence, const bytes& cid, const bytes& payload)
{
    bytes out;
    put(out, 25, 1);
    put(out, 0xfefd, 2);
    put(out, epoch, 2);
    put(out, sequence, 6);
    out.insert(out.end(), cid.begin(), cid.end());
    put(out, payload.size(), 2);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

} // namespace dtlspp::test::wire
