// SPDX-License-Identifier: MIT
// The whole of dtlspp with the backend chosen at build time.
#pragma once

#include <dtlspp/version.hpp>

#include <dtlspp/backend/concept.hpp>
#include <dtlspp/client.hpp>
#include <dtlspp/config.hpp>
#include <dtlspp/default_backend.hpp>
#include <dtlspp/endpoint.hpp>
#include <dtlspp/error.hpp>
#include <dtlspp/pcap.hpp>
#include <dtlspp/server.hpp>
#include <dtlspp/trace.hpp>
#include <dtlspp/transport/address.hpp>
#include <dtlspp/transport/link.hpp>
#include <dtlspp/transport/udp_socket.hpp>
#include <dtlspp/udp_server.hpp>
#include <dtlspp/udp_server_group.hpp>
