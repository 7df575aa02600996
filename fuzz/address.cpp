// peer_address::parse on any string.
//
// parse() asks the resolver for names that are not numeric. A fuzzer must
// not reach DNS (slow, and a different answer per run), so this target
// interposes getaddrinfo: numeric lookups (AI_NUMERICHOST) go to the C
// library, every name lookup answers "no such name".
//
// Properties: no crash; an error or an address, never a half-parsed one;
// an address prints as a string that parses back to the same address.
#include <dtlspp/transport/address.hpp>

#include <dlfcn.h>
#include <netdb.h>

#include <cstdio>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void finding(const std::string& what)
{
    std::fprintf(stderr, "dtlspp fuzz finding: %s\n", what.c_str());
    __builtin_trap();
}

using getaddrinfo_function = int (*)(const char*, const char*, const addrinfo*, addrinfo**);

} // namespace

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** results)
{
    if (!hints || !(hints->ai_flags & AI_NUMERICHOST)) return EAI_NONAME;
    static const auto real = reinterpret_cast<getaddrinfo_function>(dlsym(RTLD_NEXT, "getaddrinfo"));
    if (!real) return EAI_FAIL;
    return real(node, service, hints, results);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::error_code error;
    const auto address = dtlspp::peer_address::parse(text, error);
    if (error) {
        if (address.is_specified()) finding("parse failed but returned an address");
        if (error.message().empty()) finding("an address error without a message");
        return 0;
    }
    if (!address.is_specified()) finding("parse succeeded without an address");
    const auto printed = address.to_string();
    std::error_code again;
    const auto reparsed = dtlspp::peer_address::parse(printed, again);
    if (again) finding("'" + printed + "' does not parse back: " + again.message());
    if (!(reparsed == address)) finding("'" + printed + "' parses back to another address");
    if (reparsed.hash() != address.hash()) finding("equal addresses hash differently");
    return 0;
}
