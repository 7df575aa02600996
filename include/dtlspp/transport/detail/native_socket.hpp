// SPDX-License-Identifier: MIT
#pragma once

// The operating system's socket layer, chosen at compile time: Winsock on
// Windows, BSD sockets everywhere else. Both headers provide the same names
// with the same contracts (see the top of each).

#if defined(_WIN32)
#include <dtlspp/transport/detail/winsock_socket.hpp>
#else
#include <dtlspp/transport/detail/posix_socket.hpp>
#endif
