// SPDX-License-Identifier: MIT
// The small loop that touches a UDP socket, shared by client<Backend> and
// udp_server<Backend>: wait until a datagram or the next deadline, then take
// a bounded batch of datagrams.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/endpoint.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/socket_hook.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <optional>
#include <span>

namespace dtlspp::detail {

// How long to wait: until the deadline, never longer than `limit`.
inline std::chrono::milliseconds wait_time(std::optional<time_point> deadline, std::chrono::milliseconds limit)
{
    if (!deadline) return limit;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - clock::now());
    return std::clamp(left, std::chrono::milliseconds(0), limit);
}

// Waits up to `wait` for the socket, then hands each waiting datagram (at
// most `batch`) to on_datagram(from, bytes). A batch bound keeps one busy
// peer from starving timers. A datagram larger than the buffer arrives cut
// short: one byte more than any valid DTLS datagram, so the endpoint drops
// and counts it as oversized. Returns false when waiting failed; an error
// the socket reported on receive is left in ec after the batch.
template <class OnDatagram>
bool receive_batch(udp_socket& socket, std::chrono::milliseconds wait, int batch, std::error_code& ec,
                   OnDatagram&& on_datagram)
{
    if (!socket.wait_readable(wait, ec)) return !ec;
    thread_local std::array<std::byte, max_datagram_in + 1> buffer;
    for (int i = 0; i < batch; ++i) {
        peer_address from;
        std::error_code receive_error;
        auto n = socket.receive_from(buffer, from, receive_error);
        if (!n) {
            // Nothing more queued, or an error the socket holds (on a
            // connected socket: the peer's ICMP unreachable).
            if (receive_error) ec = receive_error;
            break;
        }
        on_datagram(from, std::span<const std::byte>(buffer.data(), *n));
    }
    return true;
}

} // namespace dtlspp::detail
