// SPDX-License-Identifier: MIT
#pragma once

#include <dtlspp/version.hpp>

// socket_hook: sees every datagram where it crosses a socket, with the
// peer's address. A packet capture (pcap_writer) needs that; the endpoint's
// trace_hook cannot give it, since an endpoint knows no addresses.
// client<Backend>::connect and udp_server<Backend>::set_socket_hook take one.

#include <dtlspp/trace.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/udp_socket.hpp>

#include <cstddef>
#include <functional>
#include <span>

namespace dtlspp {

using socket_hook =
    std::function<void(direction, const udp_socket&, const peer_address& peer, std::span<const std::byte>)>;

} // namespace dtlspp
