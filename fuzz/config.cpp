// Config loading: Backend::make_context with any text as PEM, and
// config::validate on any field values.
//
// Input: byte 0 picks what the rest is.
//   bits 0-1  0: the server's certificate_chain (with the real key)
//             1: the server's private_key (with the real chain)
//             2: a client's trusted_ca
//             3: numeric and text fields for validate() alone
// For PEM, the rest of the input is the text, inline (pem_source::pem).
//
// Properties: no crash, no leak; make_context returns a context or a
// failure with a code and a message, never both or neither; what validate()
// refuses, make_context refuses with the same code (the checks are
// written once).
#include "fixtures.hpp"

#include <string>
#include <string_view>

namespace {

using namespace dtlspp;
using namespace dtlspp::fuzz;

struct byte_reader {
    std::span<const std::uint8_t> bytes;
    std::size_t at = 0;

    std::uint64_t number(int width)
    {
        std::uint64_t value = 0;
        for (int i = 0; i < width; ++i) value = value << 8 | (at < bytes.size() ? bytes[at++] : 0);
        return value;
    }
    std::string text(std::size_t length)
    {
        const auto n = std::min(length, bytes.size() - std::min(at, bytes.size()));
        std::string out(reinterpret_cast<const char*>(bytes.data()) + at, n);
        at += n;
        return out;
    }
};

config fields_from(byte_reader& in)
{
    config c;
    const auto flags = in.number(1);
    c.role = (flags & 1) ? role::server : role::client;
    c.max_udp_payload = static_cast<std::size_t>(in.number(3));
    c.initial_retransmission_timeout = std::chrono::milliseconds(static_cast<std::int32_t>(in.number(4)));
    c.max_retransmission_timeout = std::chrono::milliseconds(static_cast<std::int32_t>(in.number(4)));
    c.handshake_deadline = std::chrono::milliseconds(static_cast<std::int32_t>(in.number(4)));
    c.cookie_lifetime = std::chrono::seconds(static_cast<std::int32_t>(in.number(4)));
    c.cookie_secret.resize(static_cast<std::size_t>(in.number(1) % 40));
    if (flags & 2) {
        psk_credentials psk;
        psk.identity = in.text(in.number(1));
        psk.key.resize(static_cast<std::size_t>(in.number(1) % 80));
        c.psk = psk;
    }
    if (flags & 4) c.certificate = x509_credentials{pem_source::from_file(in.text(in.number(1) % 8)),
                                                    pem_source::from_memory(in.text(in.number(1) % 8))};
    if (flags & 8) c.trusted_ca = pem_source::from_memory("x");
    if (flags & 16) c.verification = static_cast<peer_verification>(in.number(1) % 3);
    if (flags & 32) c.server_name = in.text(in.number(1) % 8);
    for (auto n = in.number(1) % 4; n > 0; --n) c.alpn.push_back(in.text(in.number(2) % 300));
    return c;
}

void check_make_context(const config& c)
{
    const auto checked = validate(c);
    failure f;
    const auto context = fuzz_backend::make_context(c, f);
    if (context && f) finding("make_context returned a context and a failure: " + f.what());
    if (!context && !f.code) finding("make_context refused without an error code");
    if (!context && f.message.empty()) finding("make_context refused without a message");
    if (checked && (context || f.code != checked.code))
        finding("validate refused (" + checked.what() + ") but make_context said: " + (context ? "ok" : f.what()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0) return 0;
    static const auto chain = read_cert("server-ecdsa.pem");
    static const auto key = read_cert("server-ecdsa.key");
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] & 3) {
    case 0: {
        auto c = certificate_server_config();
        c.certificate = x509_credentials{pem_source::from_memory(text), pem_source::from_memory(key)};
        check_make_context(c);
        break;
    }
    case 1: {
        auto c = certificate_server_config();
        c.certificate = x509_credentials{pem_source::from_memory(chain), pem_source::from_memory(text)};
        check_make_context(c);
        break;
    }
    case 2: {
        auto c = certificate_client_config();
        c.trusted_ca = pem_source::from_memory(text);
        check_make_context(c);
        break;
    }
    default: {
        byte_reader in{{data + 1, size - 1}};
        const auto c = fields_from(in);
        const auto f = validate(c);
        if (f && f.message.empty()) finding("validate refused without naming the field");
        break;
    }
    }
    return 0;
}
