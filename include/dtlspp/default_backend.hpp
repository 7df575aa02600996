// SPDX-License-Identifier: MIT
// dtlspp::default_backend: the stack picked at build time.
//
// Meson's crypto_backend option defines DTLSPP_BACKEND_OPENSSL or
// DTLSPP_BACKEND_MBEDTLS or DTLSPP_BACKEND_WOLFSSL through dtlspp_dep;
// without any, OpenSSL.
#pragma once

#include <dtlspp/version.hpp>

#if defined(DTLSPP_BACKEND_WOLFSSL)
#include <dtlspp/backend/wolfssl.hpp>
namespace dtlspp {
using default_backend = wolfssl_backend;
}
#elif defined(DTLSPP_BACKEND_MBEDTLS)
#include <dtlspp/backend/mbedtls.hpp>
namespace dtlspp {
using default_backend = mbedtls_backend;
}
#else
#include <dtlspp/backend/openssl.hpp>
namespace dtlspp {
using default_backend = openssl_backend;
}
#endif
