#!/usr/bin/env bash
# The example programs' configuration flags, end to end: for every pair of
# backends they were built with (client stack x server stack), on 127.0.0.1,
#
#   --alpn          a protocol both sides list echoes; none in common fails
#                   the handshake (RFC 7301 §3.2: no_application_protocol)
#   --verify        a server that requires client certificates refuses a
#                   client without one and serves a client with one
#   bad values      --verify, --alpn and --ciphers values that do not exist
#                   exit 2 with a usage error naming the flag
#
#   example_flags.sh ECHO_SERVER ECHO_CLIENT CERT_DIR
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
pass() { echo "PASS $1${2:+: $2}"; passes=$((passes + 1)); }

backends=$("${run_client[@]}" --list-backends | tr -d '\r')
[ -n "$backends" ] || { echo "FAIL: $client --list-backends printed nothing"; exit 1; }

work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
log="$work/server.log"

# start_server BACKEND ARGS...: sets port, or returns 1 with the log printed.
start_server() {
  local backend=$1
  shift
  : >"$log"
  timeout 60 "${run_server[@]}" --backend "$backend" --listen 127.0.0.1:0 --cert "$certs/server-ecdsa.pem" \
    --key "$certs/server-ecdsa.key" --exit-after 1 "$@" >"$log" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 400); do
    port=$(tr -d '\r' <"$log" | sed -n 's/.*listening on .*:\([0-9][0-9]*\),.*/\1/p')
    [ -n "$port" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  stop_server
  return 1
}

# stop_server: waits up to 5 s for --exit-after, then stops it; sets server_out.
stop_server() {
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  kill "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=""
  server_out=$(tr -d '\r' <"$log")
}

# run_client BACKEND ARGS...: sets out and client_status.
run_client() {
  local backend=$1
  shift
  out=$(timeout 60 "${run_client[@]}" --backend "$backend" --connect "127.0.0.1:$port" --ca "$certs/ca.pem" \
          --server-name localhost --count 2 "$@" 2>&1 | tr -d '\r')
  client_status=${PIPESTATUS[0]}
}

for s in $backends; do
  for c in $backends; do
    pair="$c client -> $s server"

    name="$pair, --alpn in common"
    if start_server "$s" --alpn dtlspp-echo,other; then
      run_client "$c" --alpn unknown,dtlspp-echo
      stop_server
      if [ "$client_status" -ne 0 ] || ! grep -q '2/2 echoes' <<<"$out"; then
        fail "$name" "client exited $client_status: $out"
      else
        pass "$name"
      fi
    else
      fail "$name" "the server printed no port: $(tr -d '\r' <"$log")"
    fi

    name="$pair, no --alpn in common"
    if start_server "$s" --alpn dtlspp-echo; then
      run_client "$c" --alpn unknown --handshake-timeout-ms 10000
      stop_server
      if [ "$client_status" -eq 0 ]; then
        fail "$name" "the handshake completed: $out"
      elif grep -qi 'timed out' <<<"$out"; then
        # Every server stack tells the client at once, mbedTLS too, which
        # refuses before the cookie exchange (listen_result::refused).
        fail "$name" "the client waited for its deadline instead of hearing the refusal: $out"
      elif ! grep -qi 'no.application.protocol' <<<"$out"; then
        fail "$name" "the client's error does not name no_application_protocol: $out"
      else
        pass "$name" "$out"
      fi
    else
      fail "$name" "the server printed no port: $(tr -d '\r' <"$log")"
    fi

    name="$pair, --verify required, no client certificate"
    if start_server "$s" --ca "$certs/ca.pem" --verify required; then
      run_client "$c" --handshake-timeout-ms 3000
      stop_server
      if [ "$client_status" -eq 0 ]; then
        fail "$name" "the handshake completed: $out"
      elif ! grep -q '^closed .*certificat' <<<"$server_out"; then
        fail "$name" "the server did not say it lacked a certificate: $server_out"
      else
        pass "$name" "$(grep '^closed' <<<"$server_out")"
      fi
    else
      fail "$name" "the server printed no port: $(tr -d '\r' <"$log")"
    fi

    name="$pair, --verify required, client certificate"
    if start_server "$s" --ca "$certs/ca.pem" --verify required; then
      run_client "$c" --cert "$certs/client.pem" --key "$certs/client.key"
      stop_server
      if [ "$client_status" -ne 0 ] || ! grep -q '2/2 echoes' <<<"$out"; then
        fail "$name" "client exited $client_status: $out (server: $server_out)"
      elif ! grep -q '^open ' <<<"$server_out"; then
        fail "$name" "the server opened no association: $server_out"
      else
        pass "$name"
      fi
    else
      fail "$name" "the server printed no port: $(tr -d '\r' <"$log")"
    fi
  done
done

# usage_error NAME EXPECTED PROGRAM ARGS...: exit status 2, the message on
# stderr naming the flag, then the usage text.
usage_error() {
  local name=$1 expected=$2
  shift 2
  local text status
  text=$(timeout 30 "$@" 2>&1 | tr -d '\r')
  status=${PIPESTATUS[0]}
  if [ "$status" -ne 2 ]; then
    fail "$name" "exited $status, not 2: $text"
  elif ! grep -q -- "$expected" <<<"$text" || ! grep -q '^usage: ' <<<"$text"; then
    fail "$name" "no usage error saying '$expected': $text"
  else
    pass "$name" "$(head -n 1 <<<"$text")"
  fi
}
usage_error "server --verify maybe" "--verify: 'maybe' is not one of none, optional, required" \
  "${run_server[@]}" --verify maybe
usage_error "server --verify required without --ca" "--verify required: needs --ca" \
  "${run_server[@]}" --verify required --cert "$certs/server-ecdsa.pem" --key "$certs/server-ecdsa.key"
usage_error "client --verify optional" "--verify: 'optional' is not one of none, required" \
  "${run_client[@]}" --verify optional
usage_error "client --insecure --verify required" "--insecure and --verify required" \
  "${run_client[@]}" --insecure --verify required
usage_error "client --alpn with an empty name" "--alpn: expected comma-separated protocol names" \
  "${run_client[@]}" --alpn a,,b
usage_error "server --ciphers all" "--ciphers: 'all' is not a cipher policy" "${run_server[@]}" --ciphers all

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ] && [ "$passes" -gt 0 ]
