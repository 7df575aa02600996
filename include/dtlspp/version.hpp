// SPDX-License-Identifier: MIT
// The library's version, and the one language check every public header
// makes first: dtlspp is C++20 (std::span, concepts, designated
// initializers), and a C++17 build would otherwise stop with hundreds of
// errors that never say so.
#pragma once

// MSVC reports 199711L in __cplusplus unless /Zc:__cplusplus is given;
// _MSVC_LANG has the real value.
#if defined(_MSVC_LANG) && _MSVC_LANG > __cplusplus
#define DTLSPP_CPLUSPLUS _MSVC_LANG
#else
#define DTLSPP_CPLUSPLUS __cplusplus
#endif

#if DTLSPP_CPLUSPLUS < 202002L
#error "dtlspp needs C++20: compile with -std=c++20 (g++, clang++), /std:c++20 (MSVC), or cpp_std=c++20 in Meson"
// Stops the compiler here, so the message above is the only one it prints.
#include <dtlspp/stop-here-because-this-build-is-not-cxx20>
#endif

// DTLSPP_VERSION is major * 10000 + minor * 100 + patch: 0.1.0 is 100.
#define DTLSPP_VERSION_MAJOR 0
#define DTLSPP_VERSION_MINOR 1
#define DTLSPP_VERSION_PATCH 0
#define DTLSPP_VERSION (DTLSPP_VERSION_MAJOR * 10000 + DTLSPP_VERSION_MINOR * 100 + DTLSPP_VERSION_PATCH)
#define DTLSPP_VERSION_STRING "0.1.0"

namespace dtlspp {

struct version_info {
    int major;
    int minor;
    int patch;
    const char* text;
};

// The version of the headers this code was compiled with.
inline constexpr version_info version{DTLSPP_VERSION_MAJOR, DTLSPP_VERSION_MINOR, DTLSPP_VERSION_PATCH,
                                      DTLSPP_VERSION_STRING};

} // namespace dtlspp
