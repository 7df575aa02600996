// What one side of a handshake put on the wire, worked out from the
// datagrams alone (trace.hpp's parser), so the numbers mean the same for
// every stack and need no hook inside any of them.
//
// Definitions (docs/cross-stack.md repeats them for readers of the tables):
// - handshake traffic: datagrams with at least one handshake or
//   ChangeCipherSpec record (plaintext or encrypted), or on DTLS 1.3 a
//   record of the handshake epoch (2) under the unified header. Application
//   data and alerts are counted apart.
// - flight: the handshake datagrams one side emits in response to one event
//   (a datagram it received, or its retransmission timer). The driver hands
//   each side's output to batch() once per event, so a batch is a flight.
// - retransmission: a flight that carries no handshake message this side had
//   not sent before. Messages are told apart by message_seq, not by fragment
//   offset, so a flight re-sent in smaller fragments still counts as a
//   retransmission. A ChangeCipherSpec or an encrypted handshake record is
//   new only the first time.
// - MTU reduction: a retransmitted flight whose datagrams are all smaller
//   than the largest datagram of that flight's first transmission AND that
//   carries some handshake message in smaller fragments than the first time
//   (re-fragmented). The flight is known by its lowest plaintext message_seq.
//   This is how a stack backing off its path MTU shows on the wire, e.g.
//   mbedTLS 2.28 re-fragmenting at 508 bytes from its second retransmission
//   on (RFC 6347 §4.1.1.1). The second condition keeps out a stack that
//   merely packs the same records differently: OpenSSL sends a retransmitted
//   ChangeCipherSpec and Finished as two datagrams where the first
//   transmission had one. A reduction cannot be seen when the first
//   transmission already fitted the smaller size.
#pragma once

#include <dtlspp/trace.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <vector>

namespace examples::compare {

struct wire_side {
    std::uint64_t datagrams = 0; // handshake traffic
    std::uint64_t bytes = 0;
    std::size_t largest = 0;
    std::uint64_t other_datagrams = 0; // application data, alerts
    std::uint64_t flights = 0;
    std::uint64_t retransmissions = 0;
    std::uint64_t mtu_reductions = 0;
    std::size_t reduced_to = 0; // largest datagram of the smallest reduced flight; 0 = none

    // One side's output for one event.
    void batch(const std::vector<std::vector<std::byte>>& out)
    {
        bool handshake = false, fresh = false, refragmented = false;
        int key = -1; // lowest plaintext message_seq, -1 for none
        std::size_t batch_largest = 0;
        std::map<std::uint16_t, std::uint32_t> largest_fragment; // per message in this batch
        for (const auto& d : out) {
            bool is_handshake = false;
            dtlspp::parse_datagram(d, [&](const dtlspp::record_view& r) {
                if (r.type == dtlspp::content_type::change_cipher_spec) {
                    is_handshake = true;
                    if (!sent_change_cipher_) fresh = true;
                    sent_change_cipher_ = true;
                } else if (r.unified && r.epoch == 2) {
                    // DTLS 1.3's handshake epoch: the rest of a flight after
                    // the ServerHello, encrypted (and the ACKs of a partly
                    // received flight, which the header cannot tell apart).
                    is_handshake = true;
                    if (!sent_encrypted_) fresh = true;
                    sent_encrypted_ = true;
                } else if (r.type == dtlspp::content_type::handshake && r.is_encrypted()) {
                    is_handshake = true;
                    if (!sent_encrypted_) fresh = true;
                    sent_encrypted_ = true;
                } else if (r.type == dtlspp::content_type::handshake) {
                    for (const auto& f : r.fragments()) {
                        is_handshake = true;
                        if (sent_messages_.insert(f.message_seq).second) fresh = true;
                        auto& n = largest_fragment[f.message_seq];
                        n = std::max(n, f.fragment_length);
                        key = key < 0 ? f.message_seq : std::min<int>(key, f.message_seq);
                    }
                }
            });
            if (!is_handshake) {
                ++other_datagrams;
                continue;
            }
            handshake = true;
            ++datagrams;
            bytes += d.size();
            largest = std::max(largest, d.size());
            batch_largest = std::max(batch_largest, d.size());
        }
        if (!handshake) return;
        ++flights;
        if (fresh) {
            first_largest_.emplace(key, batch_largest); // keeps the first transmission's size
            for (const auto& [seq, length] : largest_fragment) first_fragment_.emplace(seq, length);
            return;
        }
        ++retransmissions;
        for (const auto& [seq, length] : largest_fragment) {
            const auto first = first_fragment_.find(seq);
            if (first != first_fragment_.end() && length < first->second) refragmented = true;
        }
        const auto first = first_largest_.find(key);
        if (refragmented && first != first_largest_.end() && batch_largest < first->second) {
            ++mtu_reductions;
            reduced_to = reduced_to == 0 ? batch_largest : std::min(reduced_to, batch_largest);
        }
    }

private:
    std::set<std::uint16_t> sent_messages_;
    bool sent_change_cipher_ = false;
    bool sent_encrypted_ = false;
    std::map<int, std::size_t> first_largest_;                  // flight key -> largest datagram
    std::map<std::uint16_t, std::uint32_t> first_fragment_;      // message_seq -> largest fragment
};

} // namespace examples::compare
