// The examples run over any backend this build has; --backend picks one,
// and the build's crypto_backend option is the default.
#pragma once

#include "options.hpp"

#include <dtlspp/default_backend.hpp>
#ifdef EXAMPLES_HAVE_OPENSSL
#include <dtlspp/backend/openssl.hpp>
#endif
#ifdef EXAMPLES_HAVE_MBEDTLS
#include <dtlspp/backend/mbedtls.hpp>
#endif
#ifdef EXAMPLES_HAVE_WOLFSSL
#include <dtlspp/backend/wolfssl.hpp>
#endif

#include <exception>
#include <iostream>
#include <string>
#include <vector>

namespace examples {

// The backends this build has, space separated (for --list-backends).
inline std::string built_backends()
{
    std::string names;
#ifdef EXAMPLES_HAVE_OPENSSL
    names += "openssl ";
#endif
#ifdef EXAMPLES_HAVE_MBEDTLS
    names += "mbedtls ";
#endif
#ifdef EXAMPLES_HAVE_WOLFSSL
    names += "wolfssl ";
#endif
    if (!names.empty()) names.pop_back();
    return names;
}

// Calls run.template operator()<Backend>() for the backend named by --backend.
template <class Run>
int with_backend(const arguments& args, Run&& run)
{
    const std::string name = args.get("--backend", std::string(dtlspp::default_backend::name));
#ifdef EXAMPLES_HAVE_OPENSSL
    if (name == "openssl") return run.template operator()<dtlspp::openssl_backend>();
#endif
#ifdef EXAMPLES_HAVE_MBEDTLS
    if (name == "mbedtls") return run.template operator()<dtlspp::mbedtls_backend>();
#endif
#ifdef EXAMPLES_HAVE_WOLFSSL
    if (name == "wolfssl") return run.template operator()<dtlspp::wolfssl_backend>();
#endif
    throw usage_error("--backend: '" + name + "' is not built in (this build has:"
#ifdef EXAMPLES_HAVE_OPENSSL
                      " openssl"
#endif
#ifdef EXAMPLES_HAVE_MBEDTLS
                      " mbedtls"
#endif
#ifdef EXAMPLES_HAVE_WOLFSSL
                      " wolfssl"
#endif
                      ")");
}

// The shape every example's main() shares: parse the flags, answer --help
// and --list-backends, run, and turn errors into a message and an exit
// status (2 for a usage error, 1 for anything else).
template <class Body>
int run_program(const char* name, const char* usage, int argc, char** argv, const std::vector<std::string>& with_value,
                std::vector<std::string> flags, Body&& body)
{
    try {
        flags.push_back("--list-backends");
        arguments args(argc, argv, with_value, flags);
        if (args.help()) {
            std::cout << usage;
            return 0;
        }
        if (args.has("--list-backends")) {
            std::cout << built_backends() << '\n';
            return 0;
        }
        return body(args);
    } catch (const usage_error& e) {
        std::cerr << name << ": " << e.what() << "\n" << usage;
        return 2;
    } catch (const std::exception& e) {
        std::cerr << name << ": " << e.what() << '\n';
        return 1;
    }
}

} // namespace examples
