// The backends this test build has, as a Boost.Test type list, so a
// BOOST_AUTO_TEST_CASE_TEMPLATE runs once per stack.
#pragma once

#include <boost/mpl/list.hpp>

#include <string_view>
#include <type_traits>

#ifdef DTLSPP_HAVE_OPENSSL
#include <dtlspp/backend/openssl.hpp>
#endif
#ifdef DTLSPP_HAVE_MBEDTLS
#include <dtlspp/backend/mbedtls.hpp>
#endif
#ifdef DTLSPP_HAVE_WOLFSSL
#include <dtlspp/backend/wolfssl.hpp>
#endif

#include <boost/mpl/remove.hpp>

namespace dtlspp::test {

#ifdef DTLSPP_HAVE_WOLFSSL
// wolfSSL held to DTLS 1.3 only, so that every typed test also runs over
// DTLS 1.3: the same stack and types, with min_version = max_version = 1.3
// forced into every config it is given.
struct wolfssl_dtls13_backend : wolfssl_backend {
    static constexpr std::string_view name = "wolfssl-dtls13";
    static std::shared_ptr<context> make_context(const config& cfg, failure& f)
    {
        config c = cfg;
        c.min_version = c.max_version = dtls_version::dtls_1_3;
        return wolfssl_backend::make_context(c, f);
    }
};
#endif

// Each stack this build has; wolfSSL twice, on DTLS 1.2 and on 1.3. Each
// entry ends in a comma; the closing void is taken out again.
using all_backends = boost::mpl::remove<boost::mpl::list<
#ifdef DTLSPP_HAVE_OPENSSL
    openssl_backend,
#endif
#ifdef DTLSPP_HAVE_MBEDTLS
    mbedtls_backend,
#endif
#ifdef DTLSPP_HAVE_WOLFSSL
    wolfssl_backend, wolfssl_dtls13_backend,
#endif
    void>, void>::type;
#if !defined(DTLSPP_HAVE_OPENSSL) && !defined(DTLSPP_HAVE_MBEDTLS) && !defined(DTLSPP_HAVE_WOLFSSL)
#error "the test suite needs at least one backend"
#endif

// Whether the stack speaks DTLS 1.3 in these tests: some facts differ by
// version (TLS 1.3 suite names say nothing of the key exchange, its
// handshake after the ServerHello is encrypted).
template <class Backend>
inline constexpr bool speaks_dtls13 =
#ifdef DTLSPP_HAVE_WOLFSSL
    std::is_same_v<Backend, wolfssl_dtls13_backend>;
#else
    false;
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
    static constexpr bool dtls13 = speaks_dtls13<Client> && speaks_dtls13<Server>;
};

// Every pair of stacks on DTLS 1.2 (each with itself, then each direction
// of each mix), and wolfSSL with itself on DTLS 1.3.
using all_pairs = boost::mpl::remove<boost::mpl::list<
#ifdef DTLSPP_HAVE_OPENSSL
    backend_pair<openssl_backend, openssl_backend>,
#endif
#ifdef DTLSPP_HAVE_MBEDTLS
    backend_pair<mbedtls_backend, mbedtls_backend>,
#endif
#if defined(DTLSPP_HAVE_OPENSSL) && defined(DTLSPP_HAVE_MBEDTLS)
    backend_pair<openssl_backend, mbedtls_backend>, backend_pair<mbedtls_backend, openssl_backend>,
#endif
#ifdef DTLSPP_HAVE_WOLFSSL
#ifdef DTLSPP_HAVE_OPENSSL
    backend_pair<wolfssl_backend, openssl_backend>, backend_pair<openssl_backend, wolfssl_backend>,
#endif
#ifdef DTLSPP_HAVE_MBEDTLS
    backend_pair<wolfssl_backend, mbedtls_backend>, backend_pair<mbedtls_backend, wolfssl_backend>,
#endif
    backend_pair<wolfssl_backend, wolfssl_backend>, backend_pair<wolfssl_dtls13_backend, wolfssl_dtls13_backend>,
#endif
    void>, void>::type;

} // namespace dtlspp::test
