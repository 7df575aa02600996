// Turns the runs of one grid point (a pair, an MTU, a loss rate, N seeds)
// into one row, and prints the rows as a Markdown table, CSV or JSON.
#pragma once

#include "run.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <set>
#include <string>
#include <vector>

namespace examples::compare {

struct row {
    std::string pair; // client-server, e.g. "openssl-mbedtls"
    bool openssl_default_mtu = false;
    bool virtual_clock = false;
    std::size_t mtu = 0;
    double loss_percent = 0;
    std::size_t runs = 0, ok = 0;
    // Medians: the handshake time over completed runs, traffic over all
    // runs (a failed handshake also put datagrams on the wire).
    double handshake_ms = NAN;
    // The spread around it: 10th and 90th percentiles.
    double handshake_p10_ms = NAN;
    double handshake_p90_ms = NAN;
    double c_datagrams = 0, c_bytes = 0, s_datagrams = 0, s_bytes = 0;
    std::size_t c_largest = 0, s_largest = 0; // over all runs
    double c_flights = 0, s_flights = 0, c_retransmissions = 0, s_retransmissions = 0;
    std::size_t runs_with_mtu_reduction = 0;
    std::size_t reduced_to = 0; // smallest largest-datagram of a reduced flight; 0 = none
    std::size_t echoed = 0, messages_sent = 0;
    std::uint64_t link_mtu_drops = 0;
    // With run_spec::rebind: completed runs that negotiated a CID, and those
    // whose every message sent after the address change came back.
    bool rebind = false;
    std::size_t runs_with_connection_id = 0, survived_rebind = 0;
    std::size_t echoed_after_rebind = 0, sent_after_rebind = 0;
    std::vector<std::string> failures; // distinct reasons, first few
};

inline double quantile(std::vector<double> v, double q)
{
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    if (q == 0.5 && v.size() % 2 == 0) return (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    const auto index = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
    return v[std::min(index, v.size() - 1)];
}

inline row summarize(std::string pair, const run_spec& spec, const std::vector<run_result>& runs)
{
    row r;
    r.pair = std::move(pair);
    r.openssl_default_mtu = spec.openssl_default_mtu;
    r.mtu = spec.mtu;
    r.loss_percent = spec.loss * 100;
    r.runs = runs.size();
    r.rebind = spec.rebind;
    std::vector<double> times, cd, cb, sd, sb, cf, sf, cr, sr;
    std::set<std::string> reasons;
    for (const auto& x : runs) {
        r.virtual_clock = x.virtual_clock;
        if (x.ok) {
            ++r.ok;
            times.push_back(x.handshake_ms);
        } else if (reasons.insert(x.failure).second && r.failures.size() < 3) {
            r.failures.push_back(x.failure);
        }
        cd.push_back(static_cast<double>(x.client.datagrams));
        cb.push_back(static_cast<double>(x.client.bytes));
        sd.push_back(static_cast<double>(x.server.datagrams));
        sb.push_back(static_cast<double>(x.server.bytes));
        cf.push_back(static_cast<double>(x.client.flights));
        sf.push_back(static_cast<double>(x.server.flights));
        cr.push_back(static_cast<double>(x.client.retransmissions));
        sr.push_back(static_cast<double>(x.server.retransmissions));
        r.c_largest = std::max(r.c_largest, x.client.largest);
        r.s_largest = std::max(r.s_largest, x.server.largest);
        if (x.client.mtu_reductions + x.server.mtu_reductions > 0) ++r.runs_with_mtu_reduction;
        for (auto to : {x.client.reduced_to, x.server.reduced_to})
            if (to != 0) r.reduced_to = r.reduced_to == 0 ? to : std::min(r.reduced_to, to);
        r.echoed += x.echoed;
        r.messages_sent += x.messages_sent;
        r.link_mtu_drops += x.link_mtu_drops;
        if (x.ok && x.connection_id) ++r.runs_with_connection_id;
        if (x.ok && x.rebound && x.sent_after_rebind > 0 && x.echoed_after_rebind == x.sent_after_rebind)
            ++r.survived_rebind;
        r.echoed_after_rebind += x.echoed_after_rebind;
        r.sent_after_rebind += x.sent_after_rebind;
    }
    r.handshake_ms = quantile(times, 0.5);
    r.handshake_p10_ms = quantile(times, 0.1);
    r.handshake_p90_ms = quantile(times, 0.9);
    r.c_datagrams = quantile(cd, 0.5);
    r.c_bytes = quantile(cb, 0.5);
    r.s_datagrams = quantile(sd, 0.5);
    r.s_bytes = quantile(sb, 0.5);
    r.c_flights = quantile(cf, 0.5);
    r.s_flights = quantile(sf, 0.5);
    r.c_retransmissions = quantile(cr, 0.5);
    r.s_retransmissions = quantile(sr, 0.5);
    return r;
}

namespace detail {

// Whole numbers without a fraction, halves (medians of an even count) with one.
inline std::string number(double v, int decimals = 1)
{
    if (std::isnan(v)) return "-";
    char text[32];
    if (std::fabs(v - std::round(v)) < 1e-9) std::snprintf(text, sizeof text, "%.0f", v);
    else std::snprintf(text, sizeof text, "%.*f", decimals, v);
    return text;
}

inline std::string json_string(const std::string& s)
{
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
            continue;
        }
        out += c;
    }
    return out + "\"";
}

inline std::string json_number(double v) { return std::isnan(v) ? "null" : number(v, 3); }

} // namespace detail

// A Markdown table: readable in a terminal, and pasted as is into docs.
inline void print_table(std::ostream& out, const std::vector<row>& rows, bool show_openssl_mtu, bool show_rebind = false)
{
    std::vector<std::vector<std::string>> cells;
    std::vector<std::string> header = {"pair (client-server)"};
    if (show_openssl_mtu) header.push_back("OpenSSL MTU");
    for (const char* h : {"MTU", "loss", "handshakes", "median ms", "p90 ms", "dgrams c>s", "bytes c>s", "dgrams s>c",
                          "bytes s>c", "largest c>s/s>c", "flights c/s", "retrans c/s", "MTU reduced", "echoed"})
        header.push_back(h);
    if (show_rebind)
        for (const char* h : {"CID", "after rebind"}) header.push_back(h);
    cells.push_back(header);
    for (const auto& r : rows) {
        std::vector<std::string> c = {r.pair};
        if (show_openssl_mtu)
            c.push_back(r.pair.find("openssl") == std::string::npos ? "n/a" : r.openssl_default_mtu ? "default" : "set");
        c.push_back(std::to_string(r.mtu));
        c.push_back(detail::number(r.loss_percent) + "%");
        c.push_back(std::to_string(r.ok) + "/" + std::to_string(r.runs));
        c.push_back(detail::number(std::round(r.handshake_ms * 10) / 10));
        c.push_back(detail::number(std::round(r.handshake_p90_ms * 10) / 10));
        c.push_back(detail::number(r.c_datagrams));
        c.push_back(detail::number(r.c_bytes));
        c.push_back(detail::number(r.s_datagrams));
        c.push_back(detail::number(r.s_bytes));
        c.push_back(std::to_string(r.c_largest) + "/" + std::to_string(r.s_largest));
        c.push_back(detail::number(r.c_flights) + "/" + detail::number(r.s_flights));
        c.push_back(detail::number(r.c_retransmissions) + "/" + detail::number(r.s_retransmissions));
        c.push_back(r.runs_with_mtu_reduction == 0
                        ? "-"
                        : std::to_string(r.runs_with_mtu_reduction) + " runs, to " + std::to_string(r.reduced_to));
        c.push_back(std::to_string(r.echoed) + "/" + std::to_string(r.messages_sent));
        if (show_rebind) {
            // Of the completed handshakes: how many had a CID, and in how
            // many the association still echoed after the move.
            const auto of_ok = [&](std::size_t n) { return std::to_string(n) + "/" + std::to_string(r.ok); };
            c.push_back(of_ok(r.runs_with_connection_id));
            c.push_back(r.ok == 0                 ? std::string("-")
                        : r.survived_rebind == 0 ? "lost " + of_ok(r.ok)
                                                 : "survived " + of_ok(r.survived_rebind));
        }
        cells.push_back(std::move(c));
    }
    std::vector<std::size_t> width(header.size(), 0);
    for (const auto& line : cells)
        for (std::size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
    const auto print_line = [&](const std::vector<std::string>& line) {
        out << '|';
        for (std::size_t i = 0; i < line.size(); ++i) {
            // Names left, numbers right, as a reader scans them.
            const auto pad = std::string(width[i] - line[i].size(), ' ');
            out << ' ' << (i == 0 ? line[i] + pad : pad + line[i]) << " |";
        }
        out << '\n';
    };
    print_line(cells[0]);
    out << '|';
    for (std::size_t i = 0; i < width.size(); ++i)
        out << (i == 0 ? ":" + std::string(width[i] + 1, '-') : std::string(width[i] + 1, '-') + ":") << '|';
    out << '\n';
    for (std::size_t i = 1; i < cells.size(); ++i) print_line(cells[i]);
}

inline void print_csv(std::ostream& out, const std::vector<row>& rows)
{
    out << "pair,client,server,openssl_default_mtu,clock,mtu,loss_percent,runs,ok,success_rate,p10_handshake_ms,"
           "median_handshake_ms,p90_handshake_ms,datagrams_c2s,bytes_c2s,datagrams_s2c,bytes_s2c,largest_c2s,largest_s2c,flights_c,"
           "flights_s,retransmissions_c,retransmissions_s,runs_with_mtu_reduction,reduced_to,echoed,messages_sent,"
           "link_mtu_drops,rebind,runs_with_connection_id,survived_rebind,echoed_after_rebind,sent_after_rebind\n";
    for (const auto& r : rows) {
        const auto dash = r.pair.find('-');
        out << r.pair << ',' << r.pair.substr(0, dash) << ',' << r.pair.substr(dash + 1) << ','
            << (r.openssl_default_mtu ? 1 : 0) << ',' << (r.virtual_clock ? "virtual" : "real") << ',' << r.mtu << ','
            << detail::number(r.loss_percent, 3) << ',' << r.runs << ',' << r.ok << ','
            << detail::number(r.runs ? static_cast<double>(r.ok) / static_cast<double>(r.runs) : 0, 4) << ','
            << (std::isnan(r.handshake_p10_ms) ? "" : detail::number(r.handshake_p10_ms, 3)) << ','
            << (std::isnan(r.handshake_ms) ? "" : detail::number(r.handshake_ms, 3)) << ','
            << (std::isnan(r.handshake_p90_ms) ? "" : detail::number(r.handshake_p90_ms, 3)) << ','
            << detail::number(r.c_datagrams) << ',' << detail::number(r.c_bytes) << ',' << detail::number(r.s_datagrams)
            << ',' << detail::number(r.s_bytes) << ',' << r.c_largest << ',' << r.s_largest << ','
            << detail::number(r.c_flights) << ',' << detail::number(r.s_flights) << ','
            << detail::number(r.c_retransmissions) << ',' << detail::number(r.s_retransmissions) << ','
            << r.runs_with_mtu_reduction << ',' << r.reduced_to << ',' << r.echoed << ',' << r.messages_sent << ','
            << r.link_mtu_drops << ',' << (r.rebind ? 1 : 0) << ',' << r.runs_with_connection_id << ','
            << r.survived_rebind << ',' << r.echoed_after_rebind << ',' << r.sent_after_rebind << '\n';
    }
}

inline void print_json(std::ostream& out, const std::vector<row>& rows, const run_settings& s)
{
    using detail::json_number;
    out << "{\n  \"settings\": {\"initial_rto_ms\": " << s.initial_rto.count() << ", \"max_rto_ms\": "
        << s.max_rto.count() << ", \"handshake_deadline_ms\": " << s.deadline.count()
        << ", \"one_way_delay_ms\": " << s.delay.count() << ", \"echo_wait_ms\": " << s.echo_wait.count()
        << ", \"messages\": " << s.messages << ", \"message_size\": " << s.message_size << "},\n  \"rows\": [";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        out << (i ? "," : "") << "\n    {\"pair\": " << detail::json_string(r.pair)
            << ", \"openssl_default_mtu\": " << (r.openssl_default_mtu ? "true" : "false")
            << ", \"clock\": " << (r.virtual_clock ? "\"virtual\"" : "\"real\"") << ", \"mtu\": " << r.mtu
            << ", \"loss_percent\": " << json_number(r.loss_percent) << ", \"runs\": " << r.runs
            << ", \"ok\": " << r.ok << ", \"p10_handshake_ms\": " << json_number(r.handshake_p10_ms)
            << ", \"median_handshake_ms\": " << json_number(r.handshake_ms)
            << ", \"p90_handshake_ms\": " << json_number(r.handshake_p90_ms)
            << ", \"datagrams_c2s\": " << json_number(r.c_datagrams) << ", \"bytes_c2s\": " << json_number(r.c_bytes)
            << ", \"datagrams_s2c\": " << json_number(r.s_datagrams) << ", \"bytes_s2c\": " << json_number(r.s_bytes)
            << ", \"largest_c2s\": " << r.c_largest << ", \"largest_s2c\": " << r.s_largest
            << ", \"flights_c\": " << json_number(r.c_flights) << ", \"flights_s\": " << json_number(r.s_flights)
            << ", \"retransmissions_c\": " << json_number(r.c_retransmissions)
            << ", \"retransmissions_s\": " << json_number(r.s_retransmissions)
            << ", \"runs_with_mtu_reduction\": " << r.runs_with_mtu_reduction << ", \"reduced_to\": " << r.reduced_to
            << ", \"echoed\": " << r.echoed << ", \"messages_sent\": " << r.messages_sent
            << ", \"link_mtu_drops\": " << r.link_mtu_drops << ", \"rebind\": " << (r.rebind ? "true" : "false")
            << ", \"runs_with_connection_id\": " << r.runs_with_connection_id
            << ", \"survived_rebind\": " << r.survived_rebind << ", \"echoed_after_rebind\": " << r.echoed_after_rebind
            << ", \"sent_after_rebind\": " << r.sent_after_rebind << ", \"failures\": [";
        for (std::size_t k = 0; k < r.failures.size(); ++k)
            out << (k ? ", " : "") << detail::json_string(r.failures[k]);
        out << "]}";
    }
    out << "\n  ]\n}\n";
}

} // namespace examples::compare
