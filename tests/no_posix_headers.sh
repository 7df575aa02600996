#!/usr/bin/env bash
# On Windows, no public header may reach a POSIX socket or system header:
# preprocesses the headers that do not need a stack with the cross compiler
# (-H lists every header included) and fails on any of them.
#   no_posix_headers.sh INCLUDE_DIR COMPILER [COMPILER ARGS...]
set -uo pipefail
include=$1
shift
posix='/(arpa/inet|netinet/in|netdb|poll|unistd|fcntl|sys/socket|sys/uio|sys/select|netinet/udp)\.h$'
status=0
for header in dtlspp/client.hpp dtlspp/udp_server.hpp dtlspp/server.hpp dtlspp/endpoint.hpp \
              dtlspp/transport/udp_socket.hpp dtlspp/transport/address.hpp dtlspp/pcap.hpp dtlspp/trace.hpp; do
  list=$(echo "#include <$header>" | "$@" -std=c++20 -I"$include" -x c++ -E -H -o /dev/null - 2>&1 >/dev/null) || {
    echo "FAIL $header does not preprocess:"; echo "$list" | head -20; status=1; continue
  }
  found=$(grep -E "$posix" <<<"$list" | sed 's/^\.* //')
  if [ -n "$found" ]; then
    echo "FAIL $header reaches POSIX headers:"; echo "$found"; status=1
  else
    echo "ok $header: $(grep -c '^\.' <<<"$list") headers, none of them POSIX"
  fi
done
exit $status
