// SPDX-License-Identifier: MIT
// The endpoint's admission rules: which received datagrams a stack may see.
// Written once for every backend, from the wire alone (trace.hpp's parser),
// so a record no valid peer can send is dropped, and counted, before any
// stack sees it in a form that could end an association. Why each rule:
// - OpenSSL 3.0 fails the whole association, with an alert, on a
//   protected record shorter than its AEAD's explicit nonce + tag (the TLS
//   AAD control refuses it and tls1_enc() raises SSLfatal instead of
//   dropping it; compare openssl/openssl#25290). Anyone who can spoof the
//   peer's address could end every association with one datagram;
// - a record longer than its epoch allows (2^14 bytes of plaintext, plus
//   the cipher's expansion when protected) is one a stack may answer with a
//   fatal record_overflow (RFC 5246 §6.2.1-6.2.3) rather than drop; a
//   stack built with a smaller input buffer (mbedTLS with 4 KiB records)
//   sets the bound lower (backend_traits::max_record_in), and would
//   otherwise lose such a record without anyone counting it;
// - epochs above 1 cannot exist in a DTLS 1.2 header: dtlspp never
//   renegotiates, and DTLS 1.3 protects every record of epoch 1 and up
//   under its unified header (RFC 9147 §4), which only an association that
//   may speak 1.3 accepts; its length is bounded by §4.2.3 and RFC 8446
//   §5.2, and a CID in it must be ours;
// - heartbeat (RFC 6520) is never negotiated: nothing of that type is valid;
// - an empty fragment of a non-empty handshake message is taken by OpenSSL
//   3.0 for the whole message (dtls_get_reassembled_message reassembles only
//   when 0 < frag_len < length) and fails the handshake; a fragment claiming
//   a message over max_handshake_message makes it abandon the handshake
//   without an alert (dtls1_reassemble_fragment);
// - once open, a plaintext alert or application data record cannot come
//   from the peer (both are protected after ChangeCipherSpec, RFC 5246
//   §6.2.3): the stacks ignore them, dtlspp counts them;
// - once open, a plaintext handshake message can only be a late copy of
//   one the peer sent while handshaking (dtlspp never renegotiates, and a
//   new ClientHello is the server's to judge before any association sees
//   it). Only one such copy still has a use: the plaintext part of a DTLS
//   1.2 client's last flight (Certificate, ClientKeyExchange,
//   CertificateVerify), which tells a server that its Finished was lost
//   (RFC 6347 §4.2.4). So an open association admits those alone, and only
//   with the message_seq and type the peer sent; every other plaintext
//   handshake message is dropped. wolfSSL 5.9 ends an open association,
//   with a fatal alert, on a plaintext HelloRequest or Finished, on a type
//   it does not know ("Sanity Check on message order"), on one with the
//   next message_seq ("Out of order message"), and on a late
//   HelloVerifyRequest ("Duplicate HandShake message"), which a network
//   that duplicates datagrams can deliver. A forger during the handshake can
//   add to what is remembered, but can already end a handshake with a
//   plaintext alert; what is open stays protected;
// - while a server's association handshakes, a ClientHello can only be a
//   copy of the one whose cookie verified (its message_seq): after the
//   cookie no server sends another HelloVerifyRequest, and a second
//   HelloRetryRequest is forbidden (RFC 8446 §4.1.4). wolfSSL takes a
//   ClientHello with any higher message_seq for a new one and fails the
//   handshake ("Duplicate HandShake message");
// - a Connection ID record (RFC 9146) is framed with our own CID's length,
//   which only we know: without a CID negotiated none is valid; one
//   carrying another CID belongs to no association of ours; its body holds
//   the inner content type as well, so the shortest one is a byte longer
//   than other protected records.
// A datagram with one such record is dropped whole: a genuine peer never
// sends one, and a forged datagram carries nothing of the peer's.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/trace.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace dtlspp {

// Every suite dtlspp offers is an AEAD, so every protected record carries at
// least the cipher's explicit nonce and tag: 8 + 16 bytes for AES-GCM, 16
// for ChaCha20-Poly1305 (RFC 5288 §3, RFC 7905 §2). Until a backend can say
// which suite was negotiated, the larger of the two is the bound.
inline constexpr std::size_t largest_aead_expansion = 24;
// RFC 6347 §4.1 / RFC 5246 §6.2.1: a plaintext record carries at most 2^14
// bytes.
inline constexpr std::size_t max_plaintext_record = 16384;
// The longest handshake message dtlspp lets a stack start reassembling. The
// largest real one is a Certificate: a few KiB for usual chains, and
// mbedTLS reads none above 16 KiB (MBEDTLS_SSL_IN_CONTENT_LEN). OpenSSL
// abandons a handshake without an alert on a fragment that claims more
// than its own limit (dtls1_reassemble_fragment), so a forged claim of
// 16 MB would end a handshake silently.
inline constexpr std::size_t max_handshake_message = 65536;

} // namespace dtlspp

namespace dtlspp::detail {

// The plaintext handshake messages of a DTLS 1.2 client's last flight that
// a server saw while handshaking, by message_seq (the first 16: no DTLS
// handshake has more messages): once open, the only plaintext handshake
// messages it admits.
class plaintext_handshake_log {
public:
    static constexpr std::size_t tracked = 16;

    // The plaintext part of a DTLS 1.2 client's last flight (RFC 6347
    // §4.2.4). DTLS 1.3 sends only the hellos in plaintext (RFC 9147 §5).
    static constexpr bool repeats_after_open(std::uint8_t type) noexcept
    {
        switch (static_cast<handshake_type>(type)) {
        case handshake_type::certificate:
        case handshake_type::client_key_exchange:
        case handshake_type::certificate_verify: return true;
        default: return false;
        }
    }

    constexpr void note(const handshake_fragment& f) noexcept
    {
        if (f.message_seq < tracked && repeats_after_open(f.msg_type))
            type_plus_one_[f.message_seq] = static_cast<std::uint8_t>(f.msg_type + 1);
    }

    // The ClientHello whose cookie verified: the association's first.
    constexpr void note_client_hello(const handshake_fragment& f) noexcept
    {
        if (client_hello_seq_ < 0 && f.msg_type == static_cast<std::uint8_t>(handshake_type::client_hello))
            client_hello_seq_ = f.message_seq;
    }

    // A ClientHello other than the one whose cookie verified.
    constexpr bool another_client_hello(const handshake_fragment& f) const noexcept
    {
        return f.msg_type == static_cast<std::uint8_t>(handshake_type::client_hello) && client_hello_seq_ >= 0 &&
               f.message_seq != client_hello_seq_;
    }

    constexpr bool may_repeat(const handshake_fragment& f) const noexcept
    {
        return f.message_seq < tracked && repeats_after_open(f.msg_type) &&
               type_plus_one_[f.message_seq] == f.msg_type + 1;
    }

private:
    std::array<std::uint8_t, tracked> type_plus_one_{};
    int client_hello_seq_ = -1;
};

enum class drop_reason { none, malformed, wrong_epoch, unexpected_type, bad_length, unknown_connection_id };

struct admission_limits {
    std::size_t shortest_protected = largest_aead_expansion; // the cipher's expansion, or the bound for all
    std::size_t known_expansion = 0;                         // 0 while the suite is not known for good
    bool open = false;                                       // the association is open
    std::size_t max_plaintext = max_plaintext_record;        // what the stack can take in one record
    // The CID we asked the peer to put on its records (RFC 9146 §3); it
    // must outlive the call. Empty means the peer sends none.
    std::span<const std::byte> own_connection_id;
    bool connection_id_negotiated = false;
    // DTLS 1.3 may be (or is) spoken: records under the unified header are
    // valid. Without it, none is: a DTLS 1.2 association never sees one.
    bool dtls13 = false;
    // Only DTLS 1.3 can be spoken (negotiated, or the config allows no
    // other): a protected record under the 1.2 header cannot be genuine.
    bool dtls13_only = false;
    // A server's: the ClientHello whose cookie verified and, once open, what
    // a DTLS 1.2 client sent in plaintext in its last flight (only copies of
    // those are admitted). Null (a client) admits no plaintext handshake
    // message once open.
    const plaintext_handshake_log* peer_plaintext = nullptr;
};

// RFC 9147 §4.2.3: a DTLS 1.3 protected record holds at least 16 bytes of
// ciphertext (the sequence number mask samples them), and every AEAD dtlspp
// offers adds a 16-byte tag to the inner plaintext, whose content type takes
// one more byte: 17. At most 2^14 of plaintext plus 256 (RFC 8446 §5.2).
inline constexpr std::size_t shortest_dtls13_record = 16 + 1;
inline constexpr std::size_t dtls13_largest_expansion = 256;

struct admission_verdict {
    drop_reason drop = drop_reason::none;
    bool change_cipher_spec = false; // the peer's ChangeCipherSpec is in it
};

// The verdict on one datagram (at most max_datagram_in bytes), from the
// whole parse. Drop reasons are checked in the order of drop_reason.
inline admission_verdict judge_datagram_parsed(std::span<const std::byte> datagram, const admission_limits& limits);

// The verdict on one datagram. The steady state's datagram, one protected
// application-data record (DTLS 1.2, epoch 1) that fills it, is judged
// from its 13-byte header alone; every other datagram is parsed whole. Both
// ways give the same verdict (admission_test compares them).
inline admission_verdict judge_datagram(std::span<const std::byte> datagram, const admission_limits& limits)
{
    if (!limits.dtls13_only && datagram.size() >= record_header_size &&
        datagram[0] == static_cast<std::byte>(content_type::application_data) && datagram[1] == std::byte{0xfe} &&
        datagram[2] == std::byte{0xfd} && datagram[3] == std::byte{0} && datagram[4] == std::byte{1}) {
        const std::size_t length = (std::to_integer<std::size_t>(datagram[11]) << 8) | std::to_integer<std::size_t>(datagram[12]);
        if (length == datagram.size() - record_header_size) {
            const std::size_t largest_expansion = limits.known_expansion != 0 ? limits.known_expansion : 2048;
            admission_verdict verdict;
            if (length < limits.shortest_protected || length > limits.max_plaintext + largest_expansion)
                verdict.drop = drop_reason::bad_length;
            return verdict;
        }
    }
    return judge_datagram_parsed(datagram, limits);
}

inline admission_verdict judge_datagram_parsed(std::span<const std::byte> datagram, const admission_limits& limits)
{
    // With an AEAD a protected record is exactly its plaintext plus the
    // expansion; with no suite known yet, RFC 6347 §4.1's 2^14 + 2048
    // bounds TLSCiphertext.length.
    const std::size_t largest_expansion = limits.known_expansion != 0 ? limits.known_expansion : 2048;
    // A type-25 record is only framed when we asked for a non-empty CID;
    // with 0 the parser calls every such record malformed.
    const std::size_t cid_length = limits.connection_id_negotiated ? limits.own_connection_id.size() : 0;
    bool wrong_epoch = false;
    bool bad_length = false;
    bool late_handshake = false; // a plaintext handshake message an open association cannot take
    bool unexpected_type = false;
    bool bad_fragment = false;
    bool unknown_cid = false;
    admission_verdict verdict;
    const auto parsed = parse_datagram(datagram, [&](const record_view& r) {
        if (r.unified) {
            // DTLS 1.3: any epoch (the header holds its low bits only), the
            // real type encrypted, the CID ours when there is one.
            if (!limits.dtls13) unexpected_type = true;
            const auto length = r.payload.size();
            if (length < shortest_dtls13_record || length > limits.max_plaintext + dtls13_largest_expansion)
                bad_length = true;
            if (!r.connection_id.empty() && !std::ranges::equal(r.connection_id, limits.own_connection_id))
                unknown_cid = true;
            return;
        }
        if (r.epoch > 1 || (r.epoch != 0 && limits.dtls13_only)) wrong_epoch = true;
        if (r.type == content_type::ack && !limits.dtls13) unexpected_type = true;
        if (r.type == content_type::heartbeat) unexpected_type = true;
        // DTLSInnerPlaintext holds the real content type after the content,
        // so a CID record's body is a byte longer than another protected
        // record's with the same content, at both bounds.
        const std::size_t inner_type = r.type == content_type::tls12_cid ? 1 : 0;
        const auto length = r.payload.size();
        if (r.is_encrypted() ? length < limits.shortest_protected + inner_type ||
                                   length > limits.max_plaintext + inner_type + largest_expansion
                             : length > limits.max_plaintext)
            bad_length = true;
        if (r.type == content_type::tls12_cid &&
            !std::ranges::equal(r.connection_id, limits.own_connection_id))
            unknown_cid = true;
        if (r.type == content_type::change_cipher_spec) verdict.change_cipher_spec = true;
        if (r.is_encrypted()) return;
        if (limits.open && (r.type == content_type::alert || r.type == content_type::application_data))
            wrong_epoch = true;
        for (const auto& fragment : r.fragments()) {
            if ((fragment.fragment_length == 0 && fragment.length != 0) || fragment.length > max_handshake_message)
                bad_fragment = true;
            if (limits.open && (limits.peer_plaintext == nullptr || limits.dtls13_only ||
                                !limits.peer_plaintext->may_repeat(fragment)))
                late_handshake = true;
            if (!limits.open && limits.peer_plaintext != nullptr && limits.peer_plaintext->another_client_hello(fragment))
                unexpected_type = true;
        }
    }, cid_length);
    if (!parsed.ok() || bad_fragment) verdict.drop = drop_reason::malformed;
    else if (wrong_epoch) verdict.drop = drop_reason::wrong_epoch;
    else if (unexpected_type) verdict.drop = drop_reason::unexpected_type;
    else if (bad_length) verdict.drop = drop_reason::bad_length;
    else if (late_handshake) verdict.drop = drop_reason::wrong_epoch; // counted as its length's when both
    else if (unknown_cid) verdict.drop = drop_reason::unknown_connection_id;
    return verdict;
}

} // namespace dtlspp::detail
