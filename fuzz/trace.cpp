// The keyless wire parser every part of dtlspp reads datagrams through
// (trace.hpp): parse_datagram, describe_datagram, flight_tracker and
// describe_flight on any bytes.
//
// Input (datagram_input.hpp): datagrams; a flagged chunk counts as sent,
// the others as received, so the flight tracker sees direction changes.
//
// Properties beyond "no crash": the parser's views stay inside the datagram,
// a datagram it calls well-formed is exactly its records end to end, and the
// descriptions name every record it visited.
#include "datagram_input.hpp"
#include "record_mutator.hpp"

#include <dtlspp/trace.hpp>

#include <cstdio>
#include <string>

namespace {

using namespace dtlspp;
using namespace dtlspp::fuzz;

[[noreturn]] void finding(const std::string& what)
{
    std::fprintf(stderr, "dtlspp fuzz finding: %s\n", what.c_str());
    __builtin_trap();
}

bool inside(std::span<const std::byte> part, std::span<const std::byte> whole)
{
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto input = split_input({data, size}, 0);
    flight_tracker tracker;
    for (const auto& chunk : input.chunks) {
        const auto datagram = chunk.datagram();
        std::size_t visited = 0;
        std::size_t framed = 0;
        const auto result = parse_datagram(datagram, [&](const record_view& record) {
            ++visited;
            if (!inside(record.payload, datagram)) finding("a record payload points outside its datagram");
            if (record.offset != framed) finding("a record does not start where the previous one ended");
            framed += record.header_size() + record.payload.size(); // 1.2 header, or a DTLS 1.3 unified one
            for (const auto fragment : record.fragments()) {
                if (!inside(fragment.body, record.payload)) finding("a fragment body points outside its record");
                if (fragment.body.size() != fragment.fragment_length) finding("a fragment body is not fragment_length long");
            }
            if (const auto alert = record.alert()) (void)alert_description_name(alert->description);
        });
        if (result.records != visited) finding("parse_result.records differs from the records visited");
        if (result.ok() && framed != datagram.size()) finding("a well-formed datagram is not its records end to end");
        if (!result.ok() && result.malformed_offset > datagram.size()) finding("malformed_offset is past the datagram");

        const auto dir = chunk.flagged ? direction::out : direction::in;
        const auto line = describe_datagram(dir, datagram);
        if (line.empty()) finding("describe_datagram returned nothing");
        tracker.observe(dir, datagram);
    }
    std::size_t total = 0;
    for (const auto& flight : tracker.flights()) {
        total += flight.datagrams;
        if (describe_flight(flight).empty()) finding("describe_flight returned nothing");
    }
    if (total != input.chunks.size()) finding("the flight tracker lost datagrams");
    return 0;
}

DTLSPP_FUZZ_RECORD_MUTATOR(0)
