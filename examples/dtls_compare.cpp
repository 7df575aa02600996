// dtls_compare: the same handshake and echo over every client/server stack
// pair, on an impaired in-memory link, over a grid of MTU x loss x seed;
// one table of what each pair put on the wire and how it fared.
//
//   dtls_compare                                  # defaults: MTU 1200, loss 0,10,30 %, 20 seeds
//   dtls_compare --mtu 1200,576 --loss 0,20 --seeds 50 --jobs 8 --csv
//   dtls_compare --pairs openssl-mbedtls --seeds 1 --trace --pcap captures
//   dtls_compare --openssl-default-mtu            # OpenSSL's 228-byte fallback next to the fix
//   dtls_compare --loss 0 --seeds 1 --rebind      # does the association follow a client's new address?
//
// Timing: OpenSSL's DTLS timer reads the wall clock, so every pair with
// OpenSSL runs on real time (sleeping until the next event); keep the
// retransmission timers short (default: 100 ms initial). mbedTLS runs on the
// endpoint's clock, so --clock virtual makes mbedtls-mbedtls runs jump from
// event to event; the default is real time for every pair so the times mean
// the same thing everywhere.
#include "backends.hpp"
#include "compare/report.hpp"
#include "compare/run.hpp"
#include "options.hpp"

#ifdef _WIN32
#include <io.h>
#else
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

const char* const usage =
    "usage: dtls_compare [options]\n"
    "  --pairs LIST            client-server pairs, comma separated, or all (default all built:\n"
    "                          openssl-openssl, mbedtls-mbedtls, openssl-mbedtls, mbedtls-openssl;\n"
    "                          with wolfSSL: wolfssl-wolfssl, wolfssl-openssl, openssl-wolfssl,\n"
    "                          wolfssl-mbedtls, mbedtls-wolfssl, and wolfssl-wolfssl-dtls13 on DTLS 1.3)\n"
    "  --mtu LIST              max UDP payload on both sides and the link's clamp (default 1200)\n"
    "  --loss LIST             loss per datagram and direction, in percent (default 0,10,30)\n"
    "  --seeds N               link seeds per grid point (default 20)\n"
    "  --first-seed N          first seed (default 1)\n"
    "  --messages N            echo messages after the handshake (default 10)\n"
    "  --size BYTES            bytes per message (default 64)\n"
    "  --initial-rto-ms N      initial retransmission timeout (default 100)\n"
    "  --max-rto-ms N          retransmission timeout cap (default 1600)\n"
    "  --deadline-ms N         handshake deadline, both sides (default 10000, at most 120000)\n"
    "  --delay-ms N            one-way link latency (default 5)\n"
    "  --echo-wait-ms N        how long to wait for the echoes after the handshake (default 500)\n"
    "  --clock real|virtual    virtual: mbedtls-mbedtls runs jump to the next event; pairs with\n"
    "                          OpenSSL always run on real time (default real)\n"
    "  --jobs N                runs at once; real-time runs mostly sleep (default: the CPU count)\n"
    "  --openssl-default-mtu   also run pairs with OpenSSL as a plain datagram BIO would set it up,\n"
    "                          falling back to 228-byte datagrams, next to the configured MTU\n"
    "  --rebind                both sides ask for an 8-byte Connection ID, and the client's address\n"
    "                          changes after half the messages (a NAT rebinding); the table says\n"
    "                          whether each pair's association survived it\n"
    "  --certs DIR             test certificates (default tests/certs)\n"
    "  --leaf NAME             server certificate in DIR (default server-ecdsa; e.g. server-rsa4096)\n"
    "  --trace                 print every datagram of every run, like a capture\n"
    "  --pcap DIR              one pcap (and key log) per run in DIR\n"
    "  --csv | --json          machine-readable output instead of the table\n"
    "  --quiet                 no progress line on stderr\n"
    "  --list-backends         print the backends built in, then exit\n";

using examples::usage_error;
using namespace examples::compare;

using run_function = run_result (*)(const run_settings&, const run_spec&);

struct pair_entry {
    std::string name; // client-server, "-dtls13" when both sides speak DTLS 1.3 only
    run_function run;
    bool has_openssl;
    bool dtls13 = false;
};

std::vector<pair_entry> built_pairs()
{
    std::vector<pair_entry> pairs;
#ifdef EXAMPLES_HAVE_OPENSSL
    using O = dtlspp::openssl_backend;
    pairs.push_back({"openssl-openssl", &run_one<O, O>, true});
#endif
#ifdef EXAMPLES_HAVE_MBEDTLS
    using M = dtlspp::mbedtls_backend;
    pairs.push_back({"mbedtls-mbedtls", &run_one<M, M>, false});
#endif
#if defined(EXAMPLES_HAVE_OPENSSL) && defined(EXAMPLES_HAVE_MBEDTLS)
    pairs.push_back({"openssl-mbedtls", &run_one<O, M>, true});
    pairs.push_back({"mbedtls-openssl", &run_one<M, O>, true});
#endif
#ifdef EXAMPLES_HAVE_WOLFSSL
    using W = dtlspp::wolfssl_backend;
    pairs.push_back({"wolfssl-wolfssl", &run_one<W, W>, false});
#ifdef EXAMPLES_HAVE_OPENSSL
    pairs.push_back({"wolfssl-openssl", &run_one<W, O>, true});
    pairs.push_back({"openssl-wolfssl", &run_one<O, W>, true});
#endif
#ifdef EXAMPLES_HAVE_MBEDTLS
    pairs.push_back({"wolfssl-mbedtls", &run_one<W, M>, false});
    pairs.push_back({"mbedtls-wolfssl", &run_one<M, W>, false});
#endif
    // The same stack on DTLS 1.3 (RFC 9147), the only one here that has it.
    pairs.push_back({"wolfssl-wolfssl-dtls13", &run_one<W, W>, false, true});
#endif
    return pairs;
}

std::vector<std::string> split_list(const std::string& flag, const std::string& text)
{
    std::vector<std::string> items;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        if (item.empty()) throw usage_error(flag + ": empty item in '" + text + "'");
        items.push_back(item);
    }
    if (items.empty()) throw usage_error(flag + ": empty list");
    return items;
}

double parse_number(const std::string& flag, const std::string& text, double low, double high)
{
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(value))
        throw usage_error(flag + ": '" + text + "' is not a number");
    if (value < low || value > high) {
        std::ostringstream why;
        why << flag << ": " << text << " is outside " << low << ".." << high;
        throw usage_error(why.str());
    }
    return value;
}

long long bounded(const examples::arguments& args, const std::string& flag, long long fallback, long long low,
                  long long high)
{
    const long long value = args.number(flag, fallback);
    if (value < low || value > high)
        throw usage_error(flag + ": " + std::to_string(value) + " is outside " + std::to_string(low) + ".." +
                          std::to_string(high));
    return value;
}

// One line on stderr, rewritten in place on a terminal; elsewhere (a log
// file, CI) a new line every tenth of the grid.
class progress {
public:
    progress(std::size_t total, bool enabled) : total_(total), enabled_(enabled && total > 1), tty_(stderr_is_terminal()) {}

    static bool stderr_is_terminal()
    {
#ifdef _WIN32
        return ::_isatty(2) != 0;
#else
        return ::isatty(2) != 0;
#endif
    }

    void update(std::size_t done)
    {
        if (!enabled_) return;
        const auto now = std::chrono::steady_clock::now();
        const std::size_t tenth = done * 10 / total_;
        if (tty_ ? now - last_ < std::chrono::milliseconds(250) && done != total_ : tenth == last_tenth_) return;
        last_ = now;
        last_tenth_ = tenth;
        const auto elapsed = std::chrono::duration<double>(now - start_).count();
        std::ostringstream line;
        line << "dtls_compare: " << done << "/" << total_ << " runs (" << done * 100 / total_ << "%), "
             << static_cast<long>(elapsed) << " s";
        if (done > 0 && done < total_)
            line << ", about " << static_cast<long>(elapsed / static_cast<double>(done) *
                                                    static_cast<double>(total_ - done))
                 << " s left";
        std::cerr << (tty_ ? "\r" : "") << line.str() << (tty_ ? "\x1b[K" : "\n") << std::flush;
    }
    void finish()
    {
        if (enabled_ && tty_) std::cerr << '\n';
    }

private:
    std::size_t total_;
    bool enabled_, tty_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_{};
    std::size_t last_tenth_ = static_cast<std::size_t>(-1);
};

struct job {
    std::size_t group;
    const pair_entry* pair;
    run_spec spec;
};

} // namespace

int main(int argc, char** argv)
{
    return examples::run_program("dtls_compare", usage, argc, argv,
                                 {"--pairs", "--mtu", "--loss", "--seeds", "--first-seed", "--messages", "--size",
                                  "--initial-rto-ms", "--max-rto-ms", "--deadline-ms", "--delay-ms", "--echo-wait-ms",
                                  "--clock", "--jobs", "--certs", "--leaf", "--pcap"},
                                 {"--trace", "--csv", "--json", "--quiet", "--openssl-default-mtu", "--rebind"}, [&](const examples::arguments& args) {
        const auto available = built_pairs();
        if (available.empty()) throw usage_error("no backend built in");

        std::vector<const pair_entry*> pairs;
        const auto pair_names = split_list("--pairs", args.get("--pairs", "all"));
        for (const auto& name : pair_names) {
            if (name == "all") {
                for (const auto& p : available) pairs.push_back(&p);
                continue;
            }
            const auto found = std::find_if(available.begin(), available.end(), [&](const pair_entry& p) { return p.name == name; });
            if (found == available.end()) {
                std::string known;
                for (const auto& p : available) known += " " + p.name;
                throw usage_error("--pairs: unknown pair '" + name + "' (CLIENT-SERVER; this build has:" + known + ")");
            }
            pairs.push_back(&*found);
        }
        std::sort(pairs.begin(), pairs.end());
        pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());

        std::vector<std::size_t> mtus;
        for (const auto& m : split_list("--mtu", args.get("--mtu", "1200")))
            mtus.push_back(static_cast<std::size_t>(parse_number(
                "--mtu", m, static_cast<double>(dtlspp::min_udp_payload), static_cast<double>(dtlspp::max_udp_payload_limit))));
        std::vector<double> losses;
        for (const auto& l : split_list("--loss", args.get("--loss", "0,10,30")))
            losses.push_back(parse_number("--loss", l, 0, 100) / 100);

        run_settings settings;
        const auto seeds = static_cast<std::size_t>(bounded(args, "--seeds", 20, 1, 100000));
        const auto first_seed = static_cast<std::uint64_t>(bounded(args, "--first-seed", 1, 0, 1LL << 40));
        settings.messages = static_cast<std::size_t>(bounded(args, "--messages", 10, 0, 10000));
        settings.message_size = static_cast<std::size_t>(bounded(args, "--size", 64, 1, 16384));
        settings.initial_rto = std::chrono::milliseconds(bounded(args, "--initial-rto-ms", 100, 1, 60000));
        settings.max_rto = std::chrono::milliseconds(bounded(args, "--max-rto-ms", 1600, 1, 60000));
        settings.deadline = std::chrono::milliseconds(bounded(args, "--deadline-ms", 10000, 1, 120000));
        settings.delay = std::chrono::milliseconds(bounded(args, "--delay-ms", 5, 0, 10000));
        settings.echo_wait = std::chrono::milliseconds(bounded(args, "--echo-wait-ms", 500, 0, 60000));
        if (settings.max_rto < settings.initial_rto) throw usage_error("--max-rto-ms: below --initial-rto-ms");
        if (settings.deadline < settings.initial_rto) throw usage_error("--deadline-ms: below --initial-rto-ms");
        const auto smallest_mtu = *std::min_element(mtus.begin(), mtus.end());
        // Record header, explicit nonce and tag of the AEAD suites: a message
        // must fit one record in one datagram at every MTU of the grid.
        if (settings.messages > 0 && settings.message_size + 13 + 8 + 16 > smallest_mtu)
            throw usage_error("--size: " + std::to_string(settings.message_size) +
                              " bytes do not fit one record at MTU " + std::to_string(smallest_mtu) + " (at most " +
                              std::to_string(smallest_mtu - 37) + ")");
        const auto clock_name = args.get("--clock", "real");
        if (clock_name != "real" && clock_name != "virtual")
            throw usage_error("--clock: '" + clock_name + "' is neither real nor virtual");
        settings.virtual_clock = clock_name == "virtual";
        // hardware_concurrency() may return 0 when it cannot tell.
        const long long cpus = std::max(1u, std::thread::hardware_concurrency());
        const auto jobs = static_cast<std::size_t>(bounded(args, "--jobs", cpus, 1, 256));
        if (args.has("--csv") && args.has("--json")) throw usage_error("--csv and --json: choose one");

        namespace fs = std::filesystem;
        const fs::path certs = args.get("--certs", "tests/certs");
        const auto leaf = args.get("--leaf", "server-ecdsa");
        // The 4096-bit RSA leaf comes with an intermediate: its chain file
        // makes the server's flight large enough to need several datagrams.
        const auto chain = certs / (leaf == "server-rsa4096" ? "server-rsa4096-chain.pem" : leaf + ".pem");
        settings.cert_chain = chain.string();
        settings.private_key = (certs / (leaf + ".key")).string();
        settings.trusted_ca = (certs / "ca.pem").string();
        for (const auto& file : {settings.cert_chain, settings.private_key, settings.trusted_ca})
            if (!fs::is_regular_file(file))
                throw usage_error("--certs/--leaf: " + file + " not found (run from the source tree or pass --certs DIR)");
        settings.trace = args.has("--trace");
        if (args.has("--pcap")) {
            settings.pcap_dir = args.get("--pcap");
            std::error_code ec;
            fs::create_directories(settings.pcap_dir, ec);
            if (ec || !fs::is_directory(settings.pcap_dir))
                throw usage_error("--pcap: cannot use directory " + settings.pcap_dir.string() +
                                  (ec ? ": " + ec.message() : ""));
        }
        const bool openssl_default_mtu = args.has("--openssl-default-mtu");
        const bool rebind = args.has("--rebind");
        if (rebind && settings.messages == 0) throw usage_error("--rebind: needs --messages 1 or more");

        // The grid, one group of seeds per row.
        std::vector<job> grid;
        std::vector<std::pair<std::string, run_spec>> groups;
        for (const auto* pair : pairs) {
            for (const bool default_mtu : {false, true}) {
                if (default_mtu && (!openssl_default_mtu || !pair->has_openssl)) continue;
                for (const auto mtu : mtus) {
                    for (const auto loss : losses) {
                        run_spec spec;
                        spec.label = pair->name + (default_mtu ? "-openssl-default-mtu" : "");
                        spec.mtu = mtu;
                        spec.loss = loss;
                        spec.openssl_default_mtu = default_mtu;
                        spec.rebind = rebind;
                        spec.dtls13 = pair->dtls13;
                        groups.emplace_back(pair->name, spec);
                        for (std::size_t s = 0; s < seeds; ++s) {
                            spec.seed = first_seed + s;
                            grid.push_back({groups.size() - 1, pair, spec});
                        }
                    }
                }
            }
        }

        // Runs in parallel: real-time runs spend nearly all their time
        // asleep waiting for a timer, so a few jobs per core keep the CPU
        // busy without queueing the handshakes behind each other.
        std::vector<run_result> results(grid.size());
        std::atomic<std::size_t> next{0}, done{0};
        std::mutex output;
        const bool machine = args.has("--csv") || args.has("--json");
        std::ostream& trace_out = machine ? std::cerr : std::cout;
        // Seed by seed across the whole grid rather than row by row: the runs
        // that compute (no loss: back-to-back handshakes) then run beside
        // runs that mostly sleep (high loss), instead of dozens of CPU-bound
        // handshakes at once, whose queueing would fire retransmission
        // timers and inflate the times being measured.
        std::vector<std::size_t> order;
        for (std::size_t s = 0; s < seeds; ++s)
            for (std::size_t g = 0; g < groups.size(); ++g) order.push_back(g * seeds + s);
        const auto worker = [&] {
            for (std::size_t k; (k = next.fetch_add(1)) < grid.size();) {
                const auto i = order[k];
                results[i] = grid[i].pair->run(settings, grid[i].spec);
                if (settings.trace) {
                    std::lock_guard lock(output);
                    trace_out << results[i].trace << std::flush;
                }
                done.fetch_add(1);
            }
        };
        progress bar(grid.size(), !args.has("--quiet"));
        std::vector<std::thread> threads;
        for (std::size_t t = 0; t < std::min(jobs, grid.size()); ++t) threads.emplace_back(worker);
        while (done.load() < grid.size()) {
            bar.update(done.load());
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        for (auto& t : threads) t.join();
        bar.update(grid.size());
        bar.finish();

        std::vector<row> rows;
        for (std::size_t g = 0; g < groups.size(); ++g) {
            std::vector<run_result> runs;
            for (std::size_t i = 0; i < grid.size(); ++i)
                if (grid[i].group == g) runs.push_back(std::move(results[i]));
            rows.push_back(summarize(groups[g].first, groups[g].second, runs));
        }

        if (args.has("--csv")) {
            print_csv(std::cout, rows);
        } else if (args.has("--json")) {
            print_json(std::cout, rows, settings);
        } else {
            print_table(std::cout, rows, openssl_default_mtu, rebind);
            std::cout << "\nTimers: initial retransmission timeout " << settings.initial_rto.count()
                      << " ms, doubling up to " << settings.max_rto.count() << " ms; handshake deadline "
                      << settings.deadline.count() << " ms. Link: " << settings.delay.count()
                      << " ms one way, loss applied to each direction independently. Clock: "
                      << (settings.virtual_clock ? "virtual for mbedtls-mbedtls, real for pairs with OpenSSL"
                                                 : "real for every pair")
                      << ". " << settings.messages << " echo messages of " << settings.message_size
                      << " bytes per run; leaf certificate " << leaf << ".\n";
            if (rebind)
                std::cout << "Rebind: both sides ask for Connection IDs of " << rebind_connection_id_length
                          << " bytes; after " << settings.messages / 2
                          << " messages the client's address changes (the server is told a new source port) "
                             "and the rest are sent from there. \"survived\": every message sent after the "
                             "move was echoed; without a Connection ID the server takes the client for a stranger.\n";
            bool any_failure = false;
            for (const auto& r : rows)
                for (const auto& why : r.failures) {
                    if (!any_failure) std::cout << "\nFailure reasons seen:\n";
                    any_failure = true;
                    std::cout << "  " << r.pair << (r.openssl_default_mtu ? " (OpenSSL default MTU)" : "") << " MTU "
                              << r.mtu << " loss " << r.loss_percent << "%: " << why << '\n';
                }
            for (const auto& r : rows)
                if (r.link_mtu_drops > 0)
                    std::cout << "WARNING: " << r.pair << " MTU " << r.mtu << ": " << r.link_mtu_drops
                              << " datagrams exceeded the MTU and were dropped by the link\n";
        }
        return 0;
    });
}
