#define BOOST_TEST_MODULE pcap
#include <boost/test/unit_test.hpp>

#include <dtlspp/pcap.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using bytes = std::vector<std::byte>;

constexpr std::uint16_t server_port = 4433;
constexpr std::uint16_t client_port = 50000;

// Removes the file when the test ends, pass or fail.
struct temp_file {
    fs::path path;

    explicit temp_file(const std::string& name)
    {
        const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
        path = fs::temp_directory_path() / ("dtlspp_" + name + "_" + std::to_string(stamp));
    }
    ~temp_file()
    {
        std::error_code ignored;
        fs::remove(path, ignored);
    }
};

std::vector<std::uint8_t> read_file(const fs::path& path)
{
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string read_text(const fs::path& path)
{
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::uint32_t le32(const std::vector<std::uint8_t>& data, std::size_t at)
{
    return data.at(at) | data.at(at + 1) << 8 | data.at(at + 2) << 16 | std::uint32_t{data.at(at + 3)} << 24;
}
std::uint16_t be16(const std::vector<std::uint8_t>& data, std::size_t at)
{
    return static_cast<std::uint16_t>(data.at(at) << 8 | data.at(at + 1));
}

// Sum of 16-bit words; a correct checksum region sums to 0xffff.
std::uint32_t ones_complement_sum(const std::vector<std::uint8_t>& data)
{
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i < data.size(); i += 2)
        sum += static_cast<std::uint32_t>(data[i] << 8 | (i + 1 < data.size() ? data[i + 1] : 0));
    while (sum > 0xffff)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

void put(bytes& out, std::uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; --i)
        out.push_back(static_cast<std::byte>(value >> (8 * i)));
}

bytes handshake(std::uint8_t msg_type, std::uint16_t message_seq, const bytes& body)
{
    bytes out;
    put(out, msg_type, 1);
    put(out, body.size(), 3);
    put(out, message_seq, 2);
    put(out, 0, 3);
    put(out, body.size(), 3);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

bytes record(std::uint8_t type, std::uint16_t epoch, std::uint64_t sequence, const bytes& payload)
{
    bytes out;
    put(out, type, 1);
    put(out, 0xfefd, 2);
    put(out, epoch, 2);
    put(out, sequence, 6);
    put(out, payload.size(), 2);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

// Well-formed bodies so tshark dissects them fully rather than flagging them.
bytes client_hello_body(const bytes& cookie)
{
    bytes out;
    put(out, 0xfefd, 2);
    out.resize(out.size() + 32, std::byte{0x11}); // random
    put(out, 0, 1);                                // session_id
    put(out, cookie.size(), 1);
    out.insert(out.end(), cookie.begin(), cookie.end());
    put(out, 2, 2);
    put(out, 0xc02b, 2); // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    put(out, 1, 1);
    put(out, 0, 1); // null compression
    return out;
}

bytes hello_verify_body(const bytes& cookie)
{
    bytes out;
    put(out, 0xfefd, 2);
    put(out, cookie.size(), 1);
    out.insert(out.end(), cookie.begin(), cookie.end());
    return out;
}

bytes server_hello_body()
{
    bytes out;
    put(out, 0xfefd, 2);
    out.resize(out.size() + 32, std::byte{0x22});
    put(out, 0, 1);
    put(out, 0xc02b, 2);
    put(out, 0, 1);
    return out;
}

std::optional<fs::path> find_tshark()
{
    const char* path = std::getenv("PATH");
    if (path == nullptr)
        return std::nullopt;
    std::istringstream directories(path);
    std::string directory;
    while (std::getline(directories, directory, ':')) {
        if (directory.empty())
            continue;
        const auto candidate = fs::path(directory) / "tshark";
        std::error_code error;
        const auto status = fs::status(candidate, error);
        if (!error && fs::is_regular_file(status) && (status.permissions() & fs::perms::owner_exec) != fs::perms::none)
            return candidate;
    }
    return std::nullopt;
}

boost::test_tools::assertion_result tshark_available(boost::unit_test::test_unit_id)
{
    if (find_tshark())
        return true;
    // Also on stderr: Boost only logs skipped tests at verbose log levels, and
    // a silent skip would read as a pass.
    std::cerr << "SKIPPED tshark_decodes_handshake_types: tshark not found in PATH\n";
    boost::test_tools::assertion_result result(false);
    result.message() << "tshark not found in PATH";
    return result;
}

struct command_output {
    int status = -1;
    std::string text;
};

command_output run(const std::string& command)
{
    command_output output;
    std::FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr)
        return output;
    std::array<char, 4096> buffer{};
    std::size_t read = 0;
    while ((read = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
        output.text.append(buffer.data(), read);
    output.status = pclose(pipe);
    return output;
}

std::vector<std::vector<std::string>> split_rows(const std::string& text)
{
    std::vector<std::vector<std::string>> rows;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        std::vector<std::string> fields;
        std::istringstream cells(line);
        std::string cell;
        while (std::getline(cells, cell, '\t'))
            fields.push_back(cell);
        // getline drops a trailing empty field; keep column positions stable.
        if (!line.empty() && line.back() == '\t')
            fields.emplace_back();
        rows.push_back(fields);
    }
    return rows;
}

const auto client_v4 = dtlspp::ip_endpoint::v4({192, 0, 2, 1}, client_port);
const auto server_v4 = dtlspp::ip_endpoint::v4({192, 0, 2, 2}, server_port);

dtlspp::ip_endpoint v6_endpoint(std::uint8_t last, std::uint16_t port)
{
    // 2001:db8::/32 is the documentation prefix.
    std::array<std::uint8_t, 16> address{0x20, 0x01, 0x0d, 0xb8};
    address[15] = last;
    return dtlspp::ip_endpoint::v6(address, port);
}

const std::chrono::system_clock::time_point fixed_time{std::chrono::seconds(1700000000) +
                                                       std::chrono::microseconds(123456)};

} // namespace

BOOST_AUTO_TEST_CASE(ipv4_file_layout)
{
    temp_file file("ipv4");
    const bytes odd_datagram = record(23, 1, 1, bytes(25, std::byte{0xab})); // odd length exercises padding
    dtlspp::pcap_writer writer;
    BOOST_TEST_REQUIRE(!writer.open(file.path));
    BOOST_TEST(writer.is_open());
    BOOST_TEST(!writer.write(fixed_time, client_v4, server_v4, odd_datagram));
    BOOST_TEST(!writer.write(fixed_time + std::chrono::seconds(1), server_v4, client_v4, odd_datagram));
    BOOST_TEST(!writer.close());
    BOOST_TEST(!writer.is_open());

    const auto data = read_file(file.path);
    const std::size_t packet_size = 20 + 8 + odd_datagram.size();
    BOOST_TEST_REQUIRE(data.size() == 24 + 2 * (16 + packet_size));
    // File header: little-endian magic as written, version 2.4, LINKTYPE_RAW.
    BOOST_TEST(data[0] == 0xd4);
    BOOST_TEST(data[3] == 0xa1);
    BOOST_TEST(le32(data, 0) == 0xa1b2c3d4u);
    BOOST_TEST(le32(data, 4) == (4u << 16 | 2u));
    BOOST_TEST(le32(data, 20) == 101u);
    // Packet header.
    BOOST_TEST(le32(data, 24) == 1700000000u);
    BOOST_TEST(le32(data, 28) == 123456u);
    BOOST_TEST(le32(data, 32) == packet_size);
    BOOST_TEST(le32(data, 36) == packet_size);
    // IPv4 header.
    const std::size_t ip = 40;
    const std::vector<std::uint8_t> ip_header(data.begin() + ip, data.begin() + ip + 20);
    BOOST_TEST(ip_header[0] == 0x45);
    BOOST_TEST(be16(data, ip + 2) == packet_size);
    BOOST_TEST(ip_header[9] == 17);
    BOOST_TEST(ones_complement_sum(ip_header) == 0xffffu);
    BOOST_TEST(ip_header[12] == 192);
    BOOST_TEST(ip_header[15] == 1);
    BOOST_TEST(ip_header[19] == 2);
    // UDP header and payload, with the checksum verified over the pseudo-header.
    const std::size_t udp = ip + 20;
    BOOST_TEST(be16(data, udp) == client_port);
    BOOST_TEST(be16(data, udp + 2) == server_port);
    BOOST_TEST(be16(data, udp + 4) == 8 + odd_datagram.size());
    BOOST_TEST(be16(data, udp + 6) != 0);
    std::vector<std::uint8_t> pseudo(data.begin() + ip + 12, data.begin() + ip + 20);
    pseudo.insert(pseudo.end(), {0, 17, data[udp + 4], data[udp + 5]});
    pseudo.insert(pseudo.end(), data.begin() + udp, data.begin() + ip + packet_size);
    BOOST_TEST(ones_complement_sum(pseudo) == 0xffffu);
    BOOST_TEST(std::equal(odd_datagram.begin(), odd_datagram.end(), data.begin() + udp + 8,
                          [](std::byte a, std::uint8_t b) { return std::to_integer<std::uint8_t>(a) == b; }));
    // Second packet: new timestamp, reversed ports, next IP identification.
    const std::size_t second = 24 + 16 + packet_size;
    BOOST_TEST(le32(data, second) == 1700000001u);
    BOOST_TEST(be16(data, second + 16 + 4) == be16(data, ip + 4) + 1);
    BOOST_TEST(be16(data, second + 16 + 20) == server_port);
}

BOOST_AUTO_TEST_CASE(ipv6_file_layout)
{
    temp_file file("ipv6");
    const bytes datagram = record(23, 1, 1, bytes(30, std::byte{0x5a}));
    dtlspp::pcap_writer writer;
    BOOST_TEST_REQUIRE(!writer.open(file.path));
    BOOST_TEST(!writer.write(fixed_time, v6_endpoint(1, client_port), v6_endpoint(2, server_port), datagram));
    BOOST_TEST(!writer.close());

    const auto data = read_file(file.path);
    const std::size_t packet_size = 40 + 8 + datagram.size();
    BOOST_TEST_REQUIRE(data.size() == 24 + 16 + packet_size);
    const std::size_t ip = 40;
    BOOST_TEST((data[ip] >> 4) == 6);
    BOOST_TEST(be16(data, ip + 4) == 8 + datagram.size());
    BOOST_TEST(data[ip + 6] == 17);
    BOOST_TEST(data[ip + 8] == 0x20);
    BOOST_TEST(data[ip + 23] == 1);
    BOOST_TEST(data[ip + 39] == 2);
    const std::size_t udp = ip + 40;
    std::vector<std::uint8_t> pseudo(data.begin() + ip + 8, data.begin() + ip + 40);
    pseudo.insert(pseudo.end(), {0, 0, data[udp + 4], data[udp + 5], 0, 0, 0, 17});
    pseudo.insert(pseudo.end(), data.begin() + udp, data.end());
    BOOST_TEST(ones_complement_sum(pseudo) == 0xffffu);
}

BOOST_AUTO_TEST_CASE(write_errors_are_reported_not_thrown)
{
    const bytes datagram(10, std::byte{0});
    dtlspp::pcap_writer closed;
    BOOST_TEST((closed.write(fixed_time, client_v4, server_v4, datagram) == std::errc::bad_file_descriptor));
    BOOST_TEST((closed.flush() == std::errc::bad_file_descriptor));

    dtlspp::pcap_writer missing_directory;
    BOOST_TEST(static_cast<bool>(missing_directory.open(fs::path("no_such_directory_dtlspp") / "x.pcap")));
    BOOST_TEST(!missing_directory.is_open());

    temp_file file("errors");
    dtlspp::pcap_writer writer;
    BOOST_TEST_REQUIRE(!writer.open(file.path));
    BOOST_TEST((writer.write(fixed_time, client_v4, v6_endpoint(2, server_port), datagram) ==
                std::errc::address_family_not_supported));
    // IPv4's 16-bit total length caps the UDP payload at 65535 - 20 - 8.
    BOOST_TEST(!writer.write(fixed_time, client_v4, server_v4, bytes(65507)));
    BOOST_TEST((writer.write(fixed_time, client_v4, server_v4, bytes(65508)) == std::errc::message_size));
    // IPv6's payload length excludes its own header.
    BOOST_TEST(!writer.write(fixed_time, v6_endpoint(1, 1), v6_endpoint(2, 2), bytes(65527)));
    BOOST_TEST((writer.write(fixed_time, v6_endpoint(1, 1), v6_endpoint(2, 2), bytes(65528)) ==
                std::errc::message_size));
    BOOST_TEST(!writer.close());

    // A device that is always full: the failure surfaces as an error code
    // once stdio actually writes.
    if (fs::exists("/dev/full")) {
        dtlspp::pcap_writer full;
        BOOST_TEST_REQUIRE(!full.open("/dev/full"));
        std::error_code error;
        for (int i = 0; i < 100 && !error; ++i)
            error = full.write(fixed_time, client_v4, server_v4, bytes(1000));
        if (!error)
            error = full.flush();
        BOOST_TEST(static_cast<bool>(error));
        full.close();
    }
}

BOOST_AUTO_TEST_CASE(keylog_lines)
{
    temp_file file("keylog");
    bytes client_random(32);
    bytes master_secret(48);
    for (std::size_t i = 0; i < client_random.size(); ++i)
        client_random[i] = static_cast<std::byte>(i);
    for (std::size_t i = 0; i < master_secret.size(); ++i)
        master_secret[i] = static_cast<std::byte>(0xff - i);

    dtlspp::keylog_writer closed;
    BOOST_TEST((closed.write(client_random, master_secret) == std::errc::bad_file_descriptor));

    {
        dtlspp::keylog_writer writer;
        BOOST_TEST_REQUIRE(!writer.open(file.path));
        BOOST_TEST(!writer.write(client_random, master_secret));
        BOOST_TEST((writer.write(bytes(31), master_secret) == std::errc::invalid_argument));
        BOOST_TEST((writer.write(client_random, bytes(32)) == std::errc::invalid_argument));
        // Written and flushed at once, so visible before close.
        BOOST_TEST(read_text(file.path).size() == 176u);
    }
#ifndef _WIN32
    // Windows has no such permission bits: a new file takes its folder's
    // access control list (the profile's folders are the user's own).
    BOOST_TEST(((fs::status(file.path).permissions() & (fs::perms::group_all | fs::perms::others_all)) ==
                fs::perms::none));
#endif
    {
        // Reopening appends rather than truncating.
        dtlspp::keylog_writer writer;
        BOOST_TEST_REQUIRE(!writer.open(file.path));
        BOOST_TEST(!writer.write(client_random, master_secret));
        BOOST_TEST(!writer.close());
    }
    const std::string line =
        "CLIENT_RANDOM 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f "
        "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2e1e0dfdedddcdbdad9d8d7d6d5d4d3d2d1d0\n";
    BOOST_TEST(read_text(file.path) == line + line);
}

namespace {
// setenv/unsetenv are POSIX; Windows has _putenv_s, where an empty value
// removes the variable (so the "set but empty" case is the unset case there).
void set_env(const char* name, const char* value)
{
#ifdef _WIN32
    _putenv_s(name, value);
#else
    setenv(name, value, 1);
#endif
}

void unset_env(const char* name)
{
#ifdef _WIN32
    _putenv_s(name, "");
#else
    unsetenv(name);
#endif
}
} // namespace

BOOST_AUTO_TEST_CASE(keylog_path_follows_environment)
{
    const char* previous = std::getenv("SSLKEYLOGFILE");
    const std::optional<std::string> saved = previous ? std::optional<std::string>(previous) : std::nullopt;

    unset_env("SSLKEYLOGFILE");
    BOOST_TEST(!dtlspp::keylog_path_from_env().has_value());
    set_env("SSLKEYLOGFILE", "");
    BOOST_TEST(!dtlspp::keylog_path_from_env().has_value());
    set_env("SSLKEYLOGFILE", "keys.log");
    const auto path = dtlspp::keylog_path_from_env();
    BOOST_TEST_REQUIRE(path.has_value());
    BOOST_TEST(path->string() == "keys.log");

    if (saved)
        set_env("SSLKEYLOGFILE", saved->c_str());
    else
        unset_env("SSLKEYLOGFILE");
}

BOOST_AUTO_TEST_CASE(tshark_decodes_handshake_types, *boost::unit_test::precondition(tshark_available))
{
    temp_file file("tshark");
    const bytes cookie(16, std::byte{0x77});
    const auto client_hello = record(22, 0, 0, handshake(1, 0, client_hello_body({})));
    const auto hello_verify = record(22, 0, 0, handshake(3, 0, hello_verify_body(cookie)));
    const auto client_hello_cookie = record(22, 0, 1, handshake(1, 1, client_hello_body(cookie)));
    bytes two_messages = handshake(2, 1, server_hello_body());
    const auto done = handshake(14, 2, {});
    two_messages.insert(two_messages.end(), done.begin(), done.end());
    const auto server_flight = record(22, 0, 1, two_messages);
    bytes finish = record(20, 0, 2, {std::byte{1}});
    const auto encrypted = record(22, 1, 0, bytes(40, std::byte{0x3c}));
    finish.insert(finish.end(), encrypted.begin(), encrypted.end());
    const auto alert = record(21, 0, 3, {std::byte{2}, std::byte{40}});

    dtlspp::pcap_writer writer;
    BOOST_TEST_REQUIRE(!writer.open(file.path));
    auto time = fixed_time;
    const auto step = std::chrono::milliseconds(1);
    BOOST_TEST(!writer.write(time += step, client_v4, server_v4, client_hello));
    BOOST_TEST(!writer.write(time += step, server_v4, client_v4, hello_verify));
    BOOST_TEST(!writer.write(time += step, client_v4, server_v4, client_hello_cookie));
    BOOST_TEST(!writer.write(time += step, server_v4, client_v4, server_flight));
    BOOST_TEST(!writer.write(time += step, client_v4, server_v4, finish));
    BOOST_TEST(!writer.write(time += step, v6_endpoint(1, client_port), v6_endpoint(2, server_port), client_hello));
    BOOST_TEST(!writer.write(time += step, v6_endpoint(2, server_port), v6_endpoint(1, client_port), alert));
    BOOST_TEST_REQUIRE(!writer.close());

    // -d forces the DTLS dissector on our port instead of relying on
    // heuristics; the -o options make tshark verify both checksums, which it
    // skips by default.
    const std::string command = "'" + find_tshark()->string() + "' -r '" + file.path.string() +
                                "' -d udp.port==" + std::to_string(server_port) +
                                ",dtls -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE -T fields"
                                " -e dtls.record.content_type -e dtls.handshake.type -e dtls.alert_message.desc"
                                " -e ip.checksum.status -e udp.checksum.status -e _ws.malformed 2>/dev/null";
    const auto output = run(command);
    BOOST_TEST_CONTEXT("tshark output:\n" << output.text)
    {
    BOOST_TEST_REQUIRE(output.status == 0);
    const auto rows = split_rows(output.text);
    BOOST_TEST_REQUIRE(rows.size() == 7u);
    const std::vector<std::string> content_types = {"22", "22", "22", "22", "20,22", "22", "21"};
    const std::vector<std::string> handshake_types = {"1", "3", "1", "2,14", "", "1", ""};
    for (std::size_t i = 0; i < rows.size(); ++i) {
        BOOST_TEST_CONTEXT("frame " << i + 1)
        {
            BOOST_TEST_REQUIRE(rows[i].size() == 6u);
            BOOST_TEST(rows[i][0] == content_types[i]);
            BOOST_TEST(rows[i][1] == handshake_types[i]);
            BOOST_TEST(rows[i][2] == (i == 6 ? "40" : ""));
            // Checksum status 1 means "Good"; IPv6 has no header checksum.
            BOOST_TEST(rows[i][3] == (i < 5 ? "1" : ""));
            BOOST_TEST(rows[i][4] == "1");
            BOOST_TEST(rows[i][5] == "");
        }
    }
    }
}
