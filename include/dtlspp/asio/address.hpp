// SPDX-License-Identifier: MIT
// peer_address to and from Asio's UDP endpoint. Both hold a native socket
// address, so each conversion is one copy of a sockaddr_in or sockaddr_in6
// (scope id included) and never reaches a resolver.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/asio/detail/net.hpp>
#include <dtlspp/transport/address.hpp>

#include <cstring>
#include <optional>

namespace dtlspp {

// The Asio endpoint of `address`; a default-constructed (unspecified)
// address gives a default endpoint (IPv4 any, port 0). Never fails.
inline detail::net::ip::udp::endpoint to_udp_endpoint(const peer_address& address)
{
    detail::net::ip::udp::endpoint endpoint;
    if (!address.is_specified()) return endpoint;
    std::memcpy(endpoint.data(), address.native_address(), address.native_address_size());
    endpoint.resize(address.native_address_size());
    return endpoint;
}

// The peer_address of an Asio endpoint; nullopt only for an endpoint that
// holds neither an IPv4 nor an IPv6 address.
inline std::optional<peer_address> to_peer_address(const detail::net::ip::udp::endpoint& endpoint) noexcept
{
    return peer_address::from_native(endpoint.data(), endpoint.size());
}

} // namespace dtlspp
