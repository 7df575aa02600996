#!/usr/bin/env bash
# Smoke test for the example programs: for every pair of backends they were
# built with (client stack x server stack), echo_server on 127.0.0.1 and on
# [::1], echo_client echoing three messages, both exiting 0, the server
# reporting one association opened and closed by the peer.
#
#   echo_smoke.sh ECHO_SERVER ECHO_CLIENT CERT_DIR
#
# Windows programs (*.exe) run under ${WINE:-wine}; their console output
# ends lines with CR LF, which is stripped before matching. Every process
# runs under `timeout` and every wait is a bounded poll.
set -uo pipefail
server=$1
client=$2
certs=$3

runner() { # program -> the command line that runs it here
  if [[ $1 == *.exe ]]; then echo "${WINE:-wine} $1"; else echo "$1"; fi
}
read -ra run_server <<<"$(runner "$server")"
read -ra run_client <<<"$(runner "$client")"

failures=0
passes=0
fail() { echo "FAIL $1: $2"; failures=$((failures + 1)); }

backends=$("${run_client[@]}" --list-backends | tr -d '\r')
[ -n "$backends" ] || { echo "FAIL: $client --list-backends printed nothing"; exit 1; }

work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for family in 127.0.0.1 '[::1]'; do
  for s in $backends; do
    for c in $backends; do
      name="$c client -> $s server on $family"
      log="$work/server.log"
      : >"$log"
      timeout 60 "${run_server[@]}" --backend "$s" --listen "$family:0" --cert "$certs/server-ecdsa.pem" \
        --key "$certs/server-ecdsa.key" --exit-after 1 >"$log" 2>&1 &
      server_pid=$!
      port=""
      for _ in $(seq 400); do
        port=$(tr -d '\r' <"$log" | sed -n 's/.*listening on .*:\([0-9][0-9]*\),.*/\1/p')
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
      done
      if [ -z "$port" ]; then
        fail "$name" "the server printed no port: $(tr -d '\r' <"$log")"
        kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; server_pid=""
        continue
      fi
      out=$(timeout 60 "${run_client[@]}" --backend "$c" --connect "$family:$port" --ca "$certs/ca.pem" \
              --count 3 --size 100 2>&1 | tr -d '\r')
      client_status=${PIPESTATUS[0]}
      wait "$server_pid"
      server_status=$?
      server_pid=""
      server_out=$(tr -d '\r' <"$log")
      if [ "$client_status" -ne 0 ]; then
        fail "$name" "client exited $client_status: $out"
      elif ! grep -q '3/3 echoes of 100 bytes' <<<"$out"; then
        fail "$name" "client did not get 3 echoes: $out"
      elif [ "$server_status" -ne 0 ]; then
        fail "$name" "server exited $server_status: $server_out"
      elif ! grep -q 'sessions_created=1 .*sessions_closed=1' <<<"$server_out"; then
        fail "$name" "server did not see one association open and close: $server_out"
      else
        echo "PASS $name: $(grep connected <<<"$out" | sed 's/^echo_client: //')"
        passes=$((passes + 1))
      fi
    done
  done
done
echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ] && [ "$passes" -gt 0 ]
