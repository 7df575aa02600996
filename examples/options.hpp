// Command-line parsing shared by the examples: flags in the spirit of
// `openssl s_server` / `s_client`, every error said plainly.
#pragma once

#include "capture.hpp"

#include <dtlspp/config.hpp>
#include <dtlspp/pcap.hpp>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace examples {

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// --name VALUE and --flag arguments; `flags` lists the ones without a value.
class arguments {
public:
    arguments(int argc, char** argv, const std::vector<std::string>& with_value, const std::vector<std::string>& flags)
    {
        for (int i = 1; i < argc; ++i) {
            std::string name = argv[i];
            if (name == "-h" || name == "--help") {
                help_ = true;
                continue;
            }
            if (contains(flags, name)) {
                values_[name] = "1";
                continue;
            }
            if (!contains(with_value, name)) throw usage_error("unknown option " + name);
            if (i + 1 >= argc) throw usage_error(name + " needs a value");
            values_[name] = argv[++i];
        }
    }

    bool help() const { return help_; }
    bool has(const std::string& name) const { return values_.count(name) != 0; }
    std::string get(const std::string& name, const std::string& fallback = {}) const
    {
        auto found = values_.find(name);
        return found == values_.end() ? fallback : found->second;
    }
    // long long, not long: long has 32 bits on Windows.
    long long number(const std::string& name, long long fallback) const
    {
        if (!has(name)) return fallback;
        const auto text = get(name);
        char* end = nullptr;
        const long long value = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || value < 0) throw usage_error(name + ": not a number: " + text);
        return value;
    }

private:
    static bool contains(const std::vector<std::string>& list, const std::string& s)
    {
        for (const auto& x : list)
            if (x == s) return true;
        return false;
    }
    std::map<std::string, std::string> values_;
    bool help_ = false;
};

// Bytes from hex digits; `flag` names the option in errors.
inline std::vector<std::uint8_t> parse_hex(const std::string& flag, const std::string& hex, const char* what)
{
    if (hex.size() % 2 != 0 || hex.empty())
        throw usage_error(flag + ": " + what + " must be an even number of hex digits");
    std::vector<std::uint8_t> bytes;
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        const auto byte = hex.substr(i, 2);
        char* end = nullptr;
        const auto value = std::strtoul(byte.c_str(), &end, 16);
        if (*end != '\0') throw usage_error(flag + ": not a hex digit in " + byte);
        bytes.push_back(static_cast<std::uint8_t>(value));
    }
    return bytes;
}

// IDENTITY:HEXKEY, as `openssl s_client -psk_identity ID -psk HEX` takes it.
inline dtlspp::psk_credentials parse_psk(const std::string& text)
{
    const auto colon = text.find(':');
    if (colon == std::string::npos || colon == 0) throw usage_error("--psk: expected IDENTITY:HEXKEY");
    dtlspp::psk_credentials psk;
    psk.identity = text.substr(0, colon);
    psk.key = parse_hex("--psk", text.substr(colon + 1), "the key");
    return psk;
}

// --alpn h1,h2: the protocol names, in order of preference.
inline std::vector<std::string> parse_alpn(const std::string& text)
{
    std::vector<std::string> protocols;
    std::size_t start = 0;
    while (true) {
        const auto comma = text.find(',', start);
        const auto name = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        // RFC 7301 §3.1: each name is 1 to 255 bytes.
        if (name.empty() || name.size() > 255)
            throw usage_error("--alpn: expected comma-separated protocol names of 1 to 255 bytes, got '" + text + "'");
        protocols.push_back(name);
        if (comma == std::string::npos) return protocols;
        start = comma + 1;
    }
}

// --verify none|optional|required; `allowed` lists the values this role takes.
inline dtlspp::peer_verification parse_verification(const std::string& text, const std::vector<std::string>& allowed)
{
    std::string list;
    bool known = false;
    for (const auto& name : allowed) {
        list += (list.empty() ? "" : ", ") + name;
        known = known || name == text;
    }
    if (!known) throw usage_error("--verify: '" + text + "' is not one of " + list);
    if (text == "none") return dtlspp::peer_verification::none;
    if (text == "optional") return dtlspp::peer_verification::optional;
    return dtlspp::peer_verification::required;
}

// --ciphers NAME: the names of config::cipher_policy's values.
inline dtlspp::cipher_policy parse_cipher_policy(const std::string& text)
{
    if (text == "aead") return dtlspp::cipher_policy::aead_only;
    throw usage_error("--ciphers: '" + text + "' is not a cipher policy; the one there is: aead");
}

// The options both examples share.
// --dtls 1.2 | 1.3 | 1.2-1.3: the versions offered or accepted.
inline void parse_dtls_versions(const std::string& text, dtlspp::config& c)
{
    using dtlspp::dtls_version;
    if (text == "1.2") c.min_version = c.max_version = dtls_version::dtls_1_2;
    else if (text == "1.3") c.min_version = c.max_version = dtls_version::dtls_1_3;
    else if (text == "1.2-1.3") {
        c.min_version = dtls_version::dtls_1_2;
        c.max_version = dtls_version::dtls_1_3;
    } else {
        throw usage_error("--dtls: '" + text + "'; use 1.2, 1.3 or 1.2-1.3");
    }
}

inline void apply_common(const arguments& args, dtlspp::config& c)
{
    if (args.has("--cert") != args.has("--key")) throw usage_error("--cert and --key go together");
    if (args.has("--cert"))
        c.certificate = dtlspp::x509_credentials{dtlspp::pem_source::from_file(args.get("--cert")),
                                                 dtlspp::pem_source::from_file(args.get("--key"))};
    if (args.has("--ca")) c.trusted_ca = dtlspp::pem_source::from_file(args.get("--ca"));
    if (args.has("--psk")) c.psk = parse_psk(args.get("--psk"));
    c.max_udp_payload = static_cast<std::size_t>(args.number("--mtu", 1200));
    if (args.has("--handshake-timeout-ms"))
        c.handshake_deadline = std::chrono::milliseconds(args.number("--handshake-timeout-ms", 30000));
    if (args.has("--connection-id")) {
        const long length = args.number("--connection-id", 0);
        if (length > static_cast<long>(dtlspp::max_connection_id_length))
            throw usage_error("--connection-id: " + std::to_string(length) + " bytes; the length must be 0 to " +
                              std::to_string(dtlspp::max_connection_id_length));
        c.connection_id = static_cast<std::size_t>(length);
    }
    if (args.has("--alpn")) c.alpn = parse_alpn(args.get("--alpn"));
    if (args.has("--ciphers")) c.ciphers = parse_cipher_policy(args.get("--ciphers"));
    if (args.has("--dtls")) parse_dtls_versions(args.get("--dtls"), c);
}

// --pcap FILE and --keylog FILE; without --keylog, SSLKEYLOGFILE names the
// key log as it does for browsers and OpenSSL's own tools. Opened before any
// traffic so a bad path is an error up front, not a missing capture later.
inline void apply_capture(const arguments& args, capture& cap, dtlspp::config& c)
{
    if (args.has("--pcap")) {
        if (args.get("--pcap").empty()) throw usage_error("--pcap: empty file name");
        cap.open_pcap(args.get("--pcap"));
    }
    if (args.has("--keylog")) {
        if (args.get("--keylog").empty()) throw usage_error("--keylog: empty file name");
        cap.open_keylog(args.get("--keylog"));
    } else if (const auto from_env = dtlspp::keylog_path_from_env()) {
        cap.open_keylog(*from_env);
    }
    cap.install_key_log(c);
}

} // namespace examples
