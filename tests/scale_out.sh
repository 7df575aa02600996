#!/usr/bin/env bash
# Several server processes on one port, the kernel as their load balancer
# (SO_REUSEPORT), as docs/scale-out.md describes: for each backend, two
# echo_server processes share a port and a cookie secret; 16 echo_clients,
# each from its own port, all complete their echoes; both processes served
# some (the chance that the kernel's hash puts all 16 on one is 2 in 2^16),
# and the two together served exactly 16. Where the stack has Connection IDs,
# every client also moves to a new port after its first echo and its later
# echoes must still arrive: the CID record may hash to the other process,
# and the reuseport filter sends it to the one whose index leads the CID.
#
#   scale_out.sh ECHO_SERVER ECHO_CLIENT CERT_DIR
#
# Linux only (SO_REUSEPORT). Every process runs under `timeout`; every wait
# is a bounded poll.
set -uo pipefail
server=$1
client=$2
certs=$3
secret=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
clients=16

failures=0
passes=0
fail() { echo "FAIL $1: $2"; failures=$((failures + 1)); }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# wait_port LOG PID: the port from the server's "listening on" line.
wait_port() {
  local port=""
  for _ in $(seq 400); do
    port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\),.*/\1/p' "$1")
    [ -n "$port" ] && break
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  echo "$port"
}

# counter LOG NAME: NAME's value on the server's last counters line.
counter() { sed -n "s/.*echo_server: counters.* $2=\([0-9]*\).*/\1/p" "$1" | tail -n 1; }

for backend in $("$client" --list-backends); do
  name="$backend: 2 processes on one port"
  common=(--backend "$backend" --cert "$certs/server-ecdsa.pem" --key "$certs/server-ecdsa.key"
          --share-port --cookie-secret "$secret" --connection-id 8)
  timeout 120 "$server" "${common[@]}" --listen 127.0.0.1:0 --worker-index 0 >"$work/a.log" 2>&1 &
  a=$!
  pids=("$a")
  port=$(wait_port "$work/a.log" "$a")
  if [ -z "$port" ]; then
    fail "$name" "the first server printed no port: $(cat "$work/a.log")"
    continue
  fi
  timeout 120 "$server" "${common[@]}" --listen "127.0.0.1:$port" --worker-index 1 >"$work/b.log" 2>&1 &
  b=$!
  pids+=("$b")
  if [ -z "$(wait_port "$work/b.log" "$b")" ]; then
    fail "$name" "the second server could not share port $port: $(cat "$work/b.log")"
    kill "$a" "$b" 2>/dev/null; wait 2>/dev/null
    continue
  fi

  # Does this stack pair negotiate a Connection ID? Then every client rebinds.
  probe=$(timeout 60 "$client" --backend "$backend" --connect "127.0.0.1:$port" --ca "$certs/ca.pem" \
            --server-name localhost --connection-id 8 --count 1 2>&1)
  rebind=()
  grep -q 'connection id: ours' <<<"$probe" && rebind=(--rebind-after 1)
  served=1
  bad=""
  for i in $(seq 2 "$clients"); do
    out=$(timeout 60 "$client" --backend "$backend" --connect "127.0.0.1:$port" --ca "$certs/ca.pem" \
            --server-name localhost --connection-id 8 --count 4 --size 64 "${rebind[@]}" 2>&1)
    if grep -q '4/4 echoes of 64 bytes' <<<"$out"; then
      served=$((served + 1))
    else
      bad="client $i: $out"
    fi
  done
  kill -TERM "$a" "$b" 2>/dev/null
  wait "$a" "$b" 2>/dev/null
  pids=()
  created_a=$(counter "$work/a.log" sessions_created)
  created_b=$(counter "$work/b.log" sessions_created)
  unknown_a=$(counter "$work/a.log" connection_id_unknown)
  unknown_b=$(counter "$work/b.log" connection_id_unknown)
  moves=$(( $(counter "$work/a.log" connection_id_moves) + $(counter "$work/b.log" connection_id_moves) ))
  if ! grep -q '1/1 echoes' <<<"$probe"; then
    fail "$name" "the first client failed: $probe"
  elif [ -n "$bad" ]; then
    fail "$name" "$bad"
  elif [ -z "$created_a" ] || [ -z "$created_b" ]; then
    fail "$name" "a server printed no counters: $(tail -n 2 "$work/a.log") / $(tail -n 2 "$work/b.log")"
  elif [ $((created_a + created_b)) -ne "$clients" ]; then
    fail "$name" "the servers created $created_a + $created_b associations for $clients clients"
  elif [ "$created_a" -eq 0 ] || [ "$created_b" -eq 0 ]; then
    fail "$name" "one process served every client ($created_a / $created_b): the port was not shared"
  elif [ $((unknown_a + unknown_b)) -ne 0 ]; then
    fail "$name" "Connection ID records reached a process without their association: $unknown_a / $unknown_b"
  elif [ ${#rebind[@]} -gt 0 ] && [ "$moves" -ne $((clients - 1)) ]; then
    fail "$name" "$((clients - 1)) clients rebound, the servers followed $moves"
  else
    detail="associations $created_a + $created_b"
    [ ${#rebind[@]} -gt 0 ] && detail+=", $moves rebinds followed by Connection ID"
    echo "PASS $name: $detail"
    passes=$((passes + 1))
  fi
done
echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ] && [ "$passes" -gt 0 ]
