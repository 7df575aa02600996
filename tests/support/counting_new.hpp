// Test support: replaces the global operator new so a test can count every
// C++ heap allocation (`dtlspp::test::allocations`). Include it in exactly
// one translation unit of a test program: it defines the replacement.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace dtlspp::test {
inline std::atomic<std::size_t> allocations{0};
}

// The replaced operator new allocates with malloc, so free is the matching
// release; GCC cannot see that through the replacement and warns.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t size)
{
    dtlspp::test::allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
