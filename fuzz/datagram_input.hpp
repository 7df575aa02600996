// The input format of the datagram targets (front_door, open_association,
// handshaking, trace), shared with the structure-aware mutator and the seed
// generator so that all three agree on it:
//
//   prefix      a fixed number of bytes that the target reads first (which
//               peer address, which handshake stage, which side)
//   chunk*      u16 big-endian header, then that many bytes of datagram. The
//               header's top bit marks a chunk the target treats specially
//               (open_association: "the real peer sends these bytes as
//               application data"); the low 15 bits are the length. A last
//               chunk cut short takes whatever is left.
//
// Any byte string is a valid input: the framing only decides how the bytes
// are cut, never whether they are used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dtlspp::fuzz {

inline constexpr std::uint16_t chunk_flag = 0x8000;
inline constexpr std::size_t max_chunk_length = 0x7fff;

struct datagram_chunk {
    bool flagged = false;
    std::vector<std::uint8_t> bytes;

    std::span<const std::byte> datagram() const noexcept { return std::as_bytes(std::span(bytes)); }
};

struct datagram_input {
    std::vector<std::uint8_t> prefix;
    std::vector<datagram_chunk> chunks;
};

inline datagram_input split_input(std::span<const std::uint8_t> data, std::size_t prefix_size)
{
    datagram_input input;
    const auto prefix_length = data.size() < prefix_size ? data.size() : prefix_size;
    input.prefix.assign(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(prefix_length));
    // A short input still gets a full prefix (zeros), so every target can
    // read its prefix without a bounds check of its own.
    input.prefix.resize(prefix_size, 0);
    std::size_t at = prefix_length;
    while (at + 2 <= data.size()) {
        const std::uint16_t header = static_cast<std::uint16_t>(data[at] << 8 | data[at + 1]);
        at += 2;
        std::size_t length = header & max_chunk_length;
        if (length > data.size() - at) length = data.size() - at;
        datagram_chunk chunk;
        chunk.flagged = (header & chunk_flag) != 0;
        chunk.bytes.assign(data.begin() + static_cast<std::ptrdiff_t>(at),
                           data.begin() + static_cast<std::ptrdiff_t>(at + length));
        input.chunks.push_back(std::move(chunk));
        at += length;
    }
    return input;
}

inline std::vector<std::uint8_t> join_input(const datagram_input& input)
{
    std::vector<std::uint8_t> out(input.prefix);
    for (const auto& chunk : input.chunks) {
        const auto length = chunk.bytes.size() > max_chunk_length ? max_chunk_length : chunk.bytes.size();
        const auto header = static_cast<std::uint16_t>(length | (chunk.flagged ? chunk_flag : 0));
        out.push_back(static_cast<std::uint8_t>(header >> 8));
        out.push_back(static_cast<std::uint8_t>(header & 0xff));
        out.insert(out.end(), chunk.bytes.begin(), chunk.bytes.begin() + static_cast<std::ptrdiff_t>(length));
    }
    return out;
}

} // namespace dtlspp::fuzz
