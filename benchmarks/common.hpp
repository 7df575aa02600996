// Shared by every benchmark: clocks, medians, the machine description, the
// certificate paths and a tiny table printer.
//
// Every figure is a median over repeated runs, and every comparison
// (raw vs dtlspp, DTLS vs TLS, DTLS vs plain UDP) is measured in the same
// process, alternating the two sides run by run, so that a noisy shared
// machine slows both sides alike and the ratio stays meaningful.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <sys/utsname.h>
#include <unistd.h>
#include <vector>

namespace bench {

using bytes = std::vector<std::byte>;

inline double seconds_of(clockid_t id)
{
    timespec ts{};
    clock_gettime(id, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
inline double wall() { return seconds_of(CLOCK_MONOTONIC); }
inline double process_cpu() { return seconds_of(CLOCK_PROCESS_CPUTIME_ID); }
inline double thread_cpu() { return seconds_of(CLOCK_THREAD_CPUTIME_ID); }

inline double median(std::vector<double> v)
{
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// How many times each measurement is repeated; BENCH_REPEATS overrides it
// (scripts/bench uses the default, a quick smoke run can lower it).
inline int repeats(int fallback = 5)
{
    if (const char* r = std::getenv("BENCH_REPEATS")) return std::max(1, std::atoi(r));
    return fallback;
}

// A time budget per measured run, in seconds (BENCH_SCALE multiplies it).
inline double budget(double base)
{
    if (const char* s = std::getenv("BENCH_SCALE")) return base * std::max(0.05, std::atof(s));
    return base;
}

inline std::string cert_dir()
{
    if (const char* dir = std::getenv("DTLSPP_CERT_DIR")) return dir;
#ifdef BENCH_DEFAULT_CERT_DIR
    return BENCH_DEFAULT_CERT_DIR;
#else
    return "tests/certs";
#endif
}
inline std::string cert_path(const std::string& name) { return cert_dir() + "/" + name; }

inline std::string read_text(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// One line that says where the figures come from.
inline std::string machine()
{
    std::string cpu = "unknown CPU";
    std::ifstream info("/proc/cpuinfo");
    for (std::string line; std::getline(info, line);) {
        if (line.rfind("model name", 0) == 0) {
            cpu = line.substr(line.find(':') + 2);
            break;
        }
    }
    utsname u{};
    uname(&u);
    char host[256];
    std::snprintf(host, sizeof host, "%s, %ld online CPUs, Linux %s %s", cpu.c_str(), sysconf(_SC_NPROCESSORS_ONLN),
                  u.release, u.machine);
    return host;
}

inline std::string fmt(double v, int decimals = 0)
{
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", decimals, v);
    return b;
}
// Three significant digits, whatever the magnitude.
inline std::string sig(double v)
{
    char b[64];
    if (v >= 100) std::snprintf(b, sizeof b, "%.0f", v);
    else if (v >= 10) std::snprintf(b, sizeof b, "%.1f", v);
    else if (v >= 1) std::snprintf(b, sizeof b, "%.2f", v);
    else std::snprintf(b, sizeof b, "%.3f", v);
    return b;
}
inline std::string ratio(double num, double den) { return den > 0 ? fmt(num / den, 3) : "n/a"; }

// A Markdown table, printed as it is built.
class table {
public:
    explicit table(std::vector<std::string> header) : columns_(header.size())
    {
        row(header);
        std::string rule = "|";
        for (std::size_t i = 0; i < columns_; ++i) rule += " --- |";
        std::printf("%s\n", rule.c_str());
    }
    void row(const std::vector<std::string>& cells)
    {
        std::string line = "|";
        for (const auto& c : cells) line += " " + c + " |";
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
    }

private:
    std::size_t columns_;
};

inline void heading(const std::string& text)
{
    std::printf("\n### %s\n\n", text.c_str());
    std::fflush(stdout);
}
inline void note(const std::string& text)
{
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
}

// Machine-readable copy of a figure, one per line, for scripts/bench's
// report (plots and the verdict read these rather than the tables).
inline void result(const std::string& key, double value)
{
    if (const char* path = std::getenv("BENCH_RESULTS")) {
        if (FILE* f = std::fopen(path, "a")) {
            std::fprintf(f, "%s %.6g\n", key.c_str(), value);
            std::fclose(f);
        }
    }
}

// Runs `once` alternately for each side, `repeats` times, and returns the
// median of each side's results: interleaving keeps drift from favouring
// one side.
inline std::vector<double> alternate(int reps, const std::vector<std::function<double()>>& sides)
{
    std::vector<std::vector<double>> samples(sides.size());
    for (int r = 0; r < reps; ++r)
        for (std::size_t i = 0; i < sides.size(); ++i) samples[i].push_back(sides[i]());
    std::vector<double> medians;
    for (auto& s : samples) medians.push_back(median(s));
    return medians;
}

} // namespace bench
