// Test support: building datagrams byte by byte for the wire parser's
// tests.
#pragma once

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

} // namespace dtlspp::test::wire
