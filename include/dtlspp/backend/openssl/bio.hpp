// SPDX-License-Identifier: MIT
// The OpenSSL adapter's datagram BIO.
//
// Why not BIO_s_mem: a memory BIO is a byte stream, so two datagrams written
// back to back come out as one read and OpenSSL sees a corrupt record. Why
// not BIO_s_datagram: it owns a socket (dtlspp's endpoint does no I/O), and
// when the kernel cannot tell it the path MTU (unconnected sockets, loopback
// on some systems) OpenSSL falls back to its minimum of 256 minus 28 bytes of
// IPv4/UDP overhead = 228 bytes per datagram, which is exactly the tiny,
// fragmented handshake of the seed story (docs/mtu.md).
//
// This BIO maps one BIO_write to one datagram and one BIO_read to one
// datagram, and answers the BIO_CTRL_DGRAM_* MTU questions itself with the
// configured payload size and zero overhead.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>

#include <openssl/bio.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <new>
#include <span>

namespace dtlspp::detail::openssl {

// What the BIO reads from and writes to. It lives at a stable heap address
// (owned by the session) and points at the datagram_io of the current call
// only: between calls io is null and the BIO has nothing to read.
struct bio_state {
    datagram_io* io = nullptr;
    long mtu = 0;
    // openssl_backend::options::emulate_default_mtu: answer like
    // BIO_s_datagram on an unconnected socket (no MTU known, 28 bytes of
    // IPv4 + UDP overhead).
    bool emulate_default_mtu = false;
    // The peer's transport id as seen by the listener. OpenSSL verifies the
    // cookie twice: in DTLSv1_listen and again when SSL_accept re-reads the
    // same ClientHello, by which time the call's io may carry no peer id.
    std::array<std::byte, 64> peer_id{};
    std::size_t peer_id_size = 0;
    // Why the last write callback failed, for last_failure(): OpenSSL only
    // sees -1 from it. A fixed text, so recording it allocates nothing.
    const char* write_failure = nullptr;

    void remember_peer(std::span<const std::byte> id) noexcept
    {
        peer_id_size = std::min(id.size(), peer_id.size());
        std::copy_n(id.begin(), peer_id_size, peer_id.begin());
    }
    std::span<const std::byte> peer() const noexcept { return {peer_id.data(), peer_id_size}; }
};

// Binds a bio_state to one call's datagram_io and unbinds it on exit, so a
// dangling pointer can never outlive the call.
class io_binding {
public:
    io_binding(bio_state& state, datagram_io& io) noexcept : state_(state) { state_.io = &io; }
    ~io_binding() { state_.io = nullptr; }
    io_binding(const io_binding&) = delete;
    io_binding& operator=(const io_binding&) = delete;

private:
    bio_state& state_;
};

// No exception may unwind through OpenSSL's frames: a datagram that cannot be
// queued (datagram_queue::push allocates) fails the write, and OpenSSL fails
// the call that wrote it.
inline int datagram_bio_write(BIO* bio, const char* data, int length) noexcept
{
    auto* state = static_cast<bio_state*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    if (state == nullptr || state->io == nullptr || state->io->output == nullptr || length < 0) return -1;
    try {
        state->io->output->push(std::as_bytes(std::span(data, static_cast<std::size_t>(length))));
    } catch (const std::bad_alloc&) {
        state->write_failure = "out of memory queueing an outgoing datagram";
        return -1;
    } catch (...) {
        state->write_failure = "exception while queueing an outgoing datagram";
        return -1;
    }
    return length;
}

inline int datagram_bio_read(BIO* bio, char* buffer, int capacity) noexcept
{
    auto* state = static_cast<bio_state*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    std::span<const std::byte> datagram;
    if (state == nullptr || state->io == nullptr || !state->io->take_input(datagram)) {
        // No datagram now: ask OpenSSL to try again later (SSL_ERROR_WANT_READ).
        BIO_set_retry_read(bio);
        return -1;
    }
    // OpenSSL reads into a buffer of the maximum record size plus overhead;
    // the endpoint drops larger datagrams before they reach the stack, so a
    // cut here would only lose bytes of an invalid datagram.
    const auto n = std::min(datagram.size(), static_cast<std::size_t>(std::max(capacity, 0)));
    std::memcpy(buffer, datagram.data(), n);
    return static_cast<int>(n);
}

inline long datagram_bio_ctrl(BIO* bio, int command, long number, void* /*pointer*/) noexcept
{
    auto* state = static_cast<bio_state*>(BIO_get_data(bio));
    switch (command) {
    // The MTU questions. OpenSSL asks QUERY_MTU / GET_FALLBACK_MTU when it has
    // no MTU (or after repeated timeouts, unless SSL_OP_NO_QUERY_MTU is set):
    // answer with the configured payload so it never guesses.
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
    case BIO_CTRL_DGRAM_GET_MTU:
        if (state != nullptr && state->emulate_default_mtu) return 0; // the kernel could not say
        return state != nullptr ? state->mtu : 0;
    case BIO_CTRL_DGRAM_SET_MTU:
        // OpenSSL echoes its chosen MTU back; keep ours, it is the contract.
        return state != nullptr ? state->mtu : number;
    // Overhead is what OpenSSL subtracts for IP + UDP headers. Our MTU is
    // already the UDP payload, so nothing is subtracted.
    case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD:
        return state != nullptr && state->emulate_default_mtu ? 28 : 0;
    // A datagram is never rejected for size here: the endpoint checks sizes.
    case BIO_CTRL_DGRAM_MTU_EXCEEDED:
        return 0;
    // Timeouts are the endpoint's business (it passes the time in), and the
    // peer address belongs to the transport: accept and ignore.
    case BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT:
    case BIO_CTRL_DGRAM_SET_CONNECTED:
    case BIO_CTRL_DGRAM_SET_PEER:
    case BIO_CTRL_DGRAM_SET_DONT_FRAG:
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_RESET:
        return 1;
    // DTLSv1_listen asks for the peer; it has no use for it here since the
    // cookie callbacks read the transport id from datagram_io.
    case BIO_CTRL_DGRAM_GET_PEER:
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING:
        return 0;
    default:
        return 0;
    }
}

inline int datagram_bio_create(BIO* bio) noexcept
{
    BIO_set_init(bio, 1);
    return 1;
}

// A new method table, or null when OpenSSL could not make one.
inline BIO_METHOD* new_datagram_bio_method() noexcept
{
    const int index = BIO_get_new_index(); // -1 when OpenSSL has no index left (bio.h)
    if (index == -1) return nullptr;
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | index, "dtlspp datagram");
    if (m == nullptr) return nullptr;
    if (BIO_meth_set_write(m, datagram_bio_write) != 1 || BIO_meth_set_read(m, datagram_bio_read) != 1 ||
        BIO_meth_set_ctrl(m, datagram_bio_ctrl) != 1 || BIO_meth_set_create(m, datagram_bio_create) != 1) {
        BIO_meth_free(m);
        return nullptr;
    }
    return m;
}

// One method table for the whole process; OpenSSL keeps a pointer to it in
// every BIO, so it must outlive them all. Null when it cannot be made now;
// a later call tries again, so one failed allocation does not disable the
// backend for the rest of the process.
inline const BIO_METHOD* datagram_bio_method() noexcept
{
    static std::atomic<BIO_METHOD*> method{nullptr};
    if (BIO_METHOD* existing = method.load(std::memory_order_acquire)) return existing;
    BIO_METHOD* made = new_datagram_bio_method();
    if (made == nullptr) return nullptr;
    BIO_METHOD* expected = nullptr;
    if (!method.compare_exchange_strong(expected, made, std::memory_order_acq_rel)) {
        BIO_meth_free(made); // another thread's table won
        return expected;
    }
    return made;
}

// Null (with OpenSSL's error queue telling why) when the BIO cannot be made.
inline BIO* make_datagram_bio(bio_state& state) noexcept
{
    const BIO_METHOD* method = datagram_bio_method();
    if (method == nullptr) return nullptr;
    BIO* bio = BIO_new(method);
    if (bio != nullptr) BIO_set_data(bio, &state);
    return bio;
}

} // namespace dtlspp::detail::openssl
