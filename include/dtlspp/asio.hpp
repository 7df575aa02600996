// SPDX-License-Identifier: MIT
// The Asio adapter: a DTLS client and server over Asio UDP sockets, with
// completion tokens (callbacks, asio::use_future, asio::use_awaitable).
//
//   dtlspp::asio_client<Backend>   one association (asio/client.hpp)
//   dtlspp::asio_server<Backend>   many on one socket (asio/server.hpp)
//   to_udp_endpoint, to_peer_address (asio/address.hpp)
//
// Standalone Asio by default; define DTLSPP_ASIO_BOOST for Boost.Asio
// (asio/detail/net.hpp says what differs).
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/asio/address.hpp>
#include <dtlspp/asio/client.hpp>
#include <dtlspp/asio/server.hpp>
