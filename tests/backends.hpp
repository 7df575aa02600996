// The backends this test build has, as a Boost.Test type list, so a
// BOOST_AUTO_TEST_CASE_TEMPLATE runs once per stack.
#pragma once

#include <boost/mpl/list.hpp>

#include <string_view>

#ifdef DTLSPP_HAVE_OPENSSL
#include <dtlspp/backend/openssl.hpp>
#endif
#ifdef DTLSPP_HAVE_MBEDTLS
#include <dtlspp/backend/mbedtls.hpp>
#endif

namespace dtlspp::test {

#if defined(DTLSPP_HAVE_OPENSSL) && defined(DTLSPP_HAVE_MBEDTLS)
using all_backends = boost::mpl::list<openssl_backend, mbedtls_backend>;
#elif defined(DTLSPP_HAVE_OPENSSL)
using all_backends = boost::mpl::list<openssl_backend>;
#elif defined(DTLSPP_HAVE_MBEDTLS)
using all_backends = boost::mpl::list<mbedtls_backend>;
#else
#error "the test suite needs at least one backend"
#endif

// Whether the stack's timers read the caller's clock (backend_traits), so a
// test can drive them with virtual time.
template <class Backend>
inline constexpr bool runs_on_virtual_time = Backend::traits.timers == timer_clock::caller;

// A client stack and a server stack: one suite runs A<->A, A<->B and B<->A.
template <class Client, class Server>
struct backend_pair {
    using client = Client;
    using server = Server;
    static constexpr bool virtual_time = runs_on_virtual_time<Client> && runs_on_virtual_time<Server>;
};

#if defined(DTLSPP_HAVE_OPENSSL) && defined(DTLSPP_HAVE_MBEDTLS)
using all_pairs = boost::mpl::list<backend_pair<openssl_backend, openssl_backend>,
                                   backend_pair<mbedtls_backend, mbedtls_backend>,
                                   backend_pair<openssl_backend, mbedtls_backend>,
                                   backend_pair<mbedtls_backend, openssl_backend>>;
#elif defined(DTLSPP_HAVE_OPENSSL)
using all_pairs = boost::mpl::list<backend_pair<openssl_backend, openssl_backend>>;
#else
using all_pairs = boost::mpl::list<backend_pair<mbedtls_backend, mbedtls_backend>>;
#endif

} // namespace dtlspp::test
