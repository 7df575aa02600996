// SPDX-License-Identifier: MIT
// The backend contract: the short, fixed list of operations every DTLS stack
// adapter implements. dtlspp::endpoint and dtlspp::server call nothing else,
// so every stack-specific quirk stays inside its adapter.
//
// A backend never does I/O and never sleeps. Each call receives a
// datagram_io: at most one received datagram to read, a queue for the
// datagrams the stack wants sent, the current time and the peer's transport
// id. The adapter binds its stack's I/O hooks (OpenSSL BIO, mbedTLS bio/timer
// callbacks) to that object for the duration of the call only.
//
// Valid expressions, with B a backend, ctx a B::context&, s a B::session&,
// l a B::listener&, io a datagram_io&, f a failure&:
//
// | expression                    | result                          | meaning                                        |
// |-------------------------------|---------------------------------|------------------------------------------------|
// | B::name                       | std::string_view                | "openssl", "mbedtls", "wolfssl"                |
// | B::traits                     | backend_traits                  | what the stack can do (below)                  |
// | B::version()                  | std::string                     | the stack's version string                     |
// | B::make_context(cfg, f)       | std::shared_ptr<B::context>     | credentials, verification, ciphers; null + f on error |
// | ctx.settings()                | const config&                   | the config it was built from                   |
// | B::connect(ctx, f)            | std::optional<B::session>       | a client session, nothing sent yet             |
// | B::make_listener(ctx, f)      | std::optional<B::listener>      | a server's stateless front door                |
// | l.offer(io)                   | listen_result                   | one datagram from io.peer_id: cookie sent, dropped, refused or accepted |
// | l.accept()                    | B::session                      | after accepted: the session that verified its cookie |
// | s.handshake(io)               | step                            | drive the handshake with io.input              |
// | s.read(io, buffer)            | read_result                     | one record of application data                 |
// | s.write(io, data)             | step                            | one record; done or failed                     |
// | s.handle_timeout(io)          | timeout_result                  | retransmit the last flight if its timer expired|
// | s.next_timeout(io)            | std::optional<time_point>       | when handle_timeout has work                   |
// | s.close(io)                   | void                            | queue close_notify                             |
// | s.last_failure()              | const failure&                  | after failed: condition + the stack's text     |
// | s.max_record_payload()        | std::size_t                     | largest write that fits one datagram           |
// | s.record_expansion()          | std::size_t                     | bytes the negotiated cipher adds to a record body (AEAD nonce + tag); 0 while unknown |
// | s.cipher_suite()              | std::string                     | negotiated suite (IANA name where known)       |
// | s.connection_ids()            | connection_ids                  | RFC 9146 CIDs: while handshaking the one we asked for; after, both if negotiated |
// | s.protocol_version()          | dtls_version                    | the version negotiated; meaningful once the handshake is over |
//
// Keying material (keying_material_backend, below), after the handshake:
//
// | expression                              | result                     | meaning                                  |
// |-----------------------------------------|----------------------------|------------------------------------------|
// | s.srtp_profile()                        | std::optional<srtp_profile>| the use_srtp profile negotiated, if any  |
// | s.export_keying_material(label, context, out) | failure              | RFC 5705 exporter into out; context nullopt = none |
//
// Callers check the role, the association's state and the message size
// before calling (detail/checks.hpp holds those checks, once); a backend does
// not repeat them.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/config.hpp>
#include <dtlspp/error.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dtlspp {

using clock = std::chrono::steady_clock;
using time_point = clock::time_point;

// Datagrams waiting to be sent, stored back to back in one buffer that is
// reused: after warm-up, queueing a datagram allocates nothing.
class datagram_queue {
public:
    void push(std::span<const std::byte> datagram)
    {
        const auto offset = bytes_.size();
        bytes_.insert(bytes_.end(), datagram.begin(), datagram.end());
        entries_.push_back({offset, datagram.size()});
    }

    std::size_t size() const noexcept { return entries_.size(); }
    bool empty() const noexcept { return entries_.empty(); }
    std::span<const std::byte> operator[](std::size_t index) const noexcept
    {
        const auto& e = entries_[index];
        return std::span<const std::byte>(bytes_).subspan(e.offset, e.length);
    }
    void clear() noexcept
    {
        bytes_.clear();
        entries_.clear();
    }
    // Empties the queue and gives its memory back. For a queue that held a
    // handshake flight (several kilobytes) and from now on holds one
    // datagram at a time, or none.
    void release() noexcept
    {
        std::vector<std::byte>().swap(bytes_);
        std::vector<entry>().swap(entries_);
    }
    // Keeps the first `count` datagrams.
    void truncate(std::size_t count) noexcept
    {
        if (count >= entries_.size()) return;
        bytes_.resize(entries_[count].offset);
        entries_.resize(count);
    }

private:
    struct entry {
        std::size_t offset;
        std::size_t length;
    };
    std::vector<std::byte> bytes_;
    std::vector<entry> entries_;
};

// Everything a backend may touch during one call.
struct datagram_io {
    std::span<const std::byte> input;     // one received datagram, or empty
    datagram_queue* output = nullptr;     // where the stack's datagrams go
    time_point now{};                     // the caller's clock
    std::span<const std::byte> peer_id;   // the peer's transport id (address + port), for cookies

    // The stack's read hook calls this: a datagram is handed over once.
    bool take_input(std::span<const std::byte>& datagram) noexcept
    {
        if (input.empty()) return false;
        datagram = input;
        input = {};
        return true;
    }
};

enum class step { done, want_input, failed };

struct read_result {
    enum class kind { data, want_input, closed, failed };
    kind status = kind::want_input;
    std::size_t bytes = 0;
};

enum class timeout_result { nothing_due, retransmitted, failed };

// Which clock a stack's retransmission timers read.
enum class timer_clock {
    caller,     // datagram_io::now: the stack runs on any clock, a virtual one included
    wall_clock, // the stack's own clock (OpenSSL's gettimeofday): virtual time does not move it
};

// The DTLS versions a stack can speak.
struct dtls_versions {
    bool dtls_1_2 = true;
    bool dtls_1_3 = false;
};

// DTLS-SRTP (RFC 5764) and RFC 5705 export as a stack implements them.
struct srtp_support {
    bool negotiates = false;              // built with the use_srtp extension
    bool null_cipher_profiles = false;    // knows SRTP_NULL_HMAC_SHA1_80 and _32
    // A server of this stack picks the first profile of its own list that
    // the client offered (true), or the first of the client's list that it
    // accepts (false). RFC 5764 §4.1.1 leaves the choice to the server.
    bool server_order = true;
    bool exports_keying_material = false; // RFC 5705 exporter after the handshake
    // A client of this stack offers config::srtp_profiles in their order
    // (true), or in the order of their code points (false: wolfSSL keeps
    // them as a bit set).
    bool client_order = true;
};

// What a backend can do, known at compile time, so code that depends on it
// asks the trait rather than the stack's name.
struct backend_traits {
    timer_clock timers = timer_clock::caller;
    bool connection_id = false; // negotiates RFC 9146 Connection IDs
    dtls_versions versions{};
    // The most plaintext one received record may carry: 2^14 by the RFC, less
    // where the stack's input buffer was built smaller (mbedTLS's
    // MBEDTLS_SSL_IN_CONTENT_LEN). The endpoint drops and counts a longer
    // record (dropped_bad_length) rather than let the stack lose it unseen.
    std::size_t max_record_in = 16384;
    // Contexts of this stack may be used on several threads at once, one
    // context per thread (udp_server_group's workers): whatever the stack
    // shares between contexts is locked.
    bool contexts_on_threads = true;
    srtp_support srtp{};
};

// The Connection IDs of an association (RFC 9146 §3): `own` is the one the
// peer puts in the records it sends us, `peer` the one we put in ours. Either
// may be empty while negotiated (a side may ask for a zero-length one).
// During the handshake only `own` is known (what this side asked for), and
// records carrying it are already valid: the peer's Finished uses it.
struct connection_ids {
    bool negotiated = false;
    std::vector<std::byte> own;
    std::vector<std::byte> peer;
};

enum class listen_result {
    dropped,            // not a ClientHello, or unusable: nothing sent, nothing kept
    cookie_sent,        // cookieless or stale cookie: the cookie exchange's reply queued, nothing kept:
                        // a HelloVerifyRequest on DTLS 1.2 (RFC 6347 §4.2.1), a HelloRetryRequest
                        // with a cookie extension on DTLS 1.3 (RFC 9147 §5.1)
    hello_verify_sent [[deprecated("DTLS 1.3 sends a HelloRetryRequest: use listen_result::cookie_sent")]] =
        cookie_sent,
    accepted,           // the cookie verified: call accept() for the session
    refused,            // the stack refuses this ClientHello whatever its cookie (no application
                        // protocol in common): its fatal alert is queued, nothing kept, so the
                        // client fails at once instead of at its deadline
};

template <class B>
concept backend =
    requires { typename B::context; typename B::session; typename B::listener; } &&
    std::movable<typename B::session> && std::movable<typename B::listener> &&
    requires(const config& cfg, typename B::context& ctx, typename B::session& s, const typename B::session& cs,
             typename B::listener& l, datagram_io& io, std::span<std::byte> buffer,
             std::span<const std::byte> data, failure& f) {
        { B::name } -> std::convertible_to<std::string_view>;
        { B::traits } -> std::convertible_to<backend_traits>;
        { B::version() } -> std::convertible_to<std::string>;
        { B::make_context(cfg, f) } -> std::same_as<std::shared_ptr<typename B::context>>;
        { std::as_const(ctx).settings() } -> std::same_as<const config&>;
        { B::connect(ctx, f) } -> std::same_as<std::optional<typename B::session>>;
        { B::make_listener(ctx, f) } -> std::same_as<std::optional<typename B::listener>>;
        { l.offer(io) } -> std::same_as<listen_result>;
        { l.accept() } -> std::same_as<typename B::session>;
        { s.handshake(io) } -> std::same_as<step>;
        { s.read(io, buffer) } -> std::same_as<read_result>;
        { s.write(io, data) } -> std::same_as<step>;
        { s.handle_timeout(io) } -> std::same_as<timeout_result>;
        { s.next_timeout(io) } -> std::same_as<std::optional<time_point>>;
        { s.close(io) };
        { cs.last_failure() } -> std::same_as<const failure&>;
        { cs.max_record_payload() } -> std::convertible_to<std::size_t>;
        { cs.record_expansion() } -> std::convertible_to<std::size_t>;
        { cs.cipher_suite() } -> std::convertible_to<std::string>;
        { cs.connection_ids() } -> std::convertible_to<connection_ids>;
        { cs.protocol_version() } -> std::same_as<dtls_version>;
    };

// A backend whose sessions report the SRTP profile and export keying
// material once the handshake is over (the second table above). The caller
// checks that the association is open and the request well formed
// (detail/keying_material.hpp); the backend maps the rest to its stack.
template <class B>
concept keying_material_backend =
    backend<B> && requires(const typename B::session& cs, std::string_view label,
                           std::optional<std::span<const std::byte>> context, std::span<std::byte> out) {
        { cs.srtp_profile() } -> std::same_as<std::optional<srtp_profile>>;
        { cs.export_keying_material(label, context, out) } -> std::same_as<failure>;
    };

} // namespace dtlspp
