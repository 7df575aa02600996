#!/usr/bin/env bash
# Interop between dtlspp's example programs and other DTLS 1.2 stacks'
# command-line tools, on loopback only:
#   (a) openssl s_client  -> echo_server       (b) echo_client -> openssl s_server
#   (c) gnutls-cli --udp  -> echo_server       (d) echo_client -> gnutls-serv --udp --echo
#
# usage: interop.sh ECHO_SERVER ECHO_CLIENT CERT_DIR BACKEND [BACKEND...]
#
# Every case runs once per BACKEND (passed to --backend). A backend the
# example programs were built without is skipped with a SKIP line; so is a
# case whose peer tool is not installed. Output: one "PASS name" or
# "FAIL name: reason" line per case (a failure shows the programs' output),
# then "N passed, M failed". Exit status: 0 when nothing failed, 1 when a case
# failed, 77 (Meson's "skipped") when no case could run at all, 2 on bad usage.
#
# Every process runs under `timeout`, every wait is a bounded poll, and
# ports are either chosen by our server (it binds port 0 and prints
# "listening on HOST:PORT") or picked at random among the free ones and
# retried when the peer tool cannot bind it.
set -u

if (($# < 4)); then
    echo "usage: $0 ECHO_SERVER ECHO_CLIENT CERT_DIR BACKEND [BACKEND...]" >&2
    exit 2
fi
ECHO_SERVER=$1
ECHO_CLIENT=$2
CERTS=$3
shift 3
BACKENDS=("$@")

for program in "$ECHO_SERVER" "$ECHO_CLIENT"; do
    if [[ ! -x $program || -d $program ]]; then
        echo "interop.sh: $program is not an executable" >&2
        exit 2
    fi
done
ECHO_SERVER=$(realpath "$ECHO_SERVER")
ECHO_CLIENT=$(realpath "$ECHO_CLIENT")
# The cases name certificate files relative to CERT_DIR, so that a path
# with spaces cannot break their argument lists.
if ! cd "$CERTS"; then
    echo "interop.sh: cannot enter $CERTS" >&2
    exit 2
fi
for file in ca.pem client.pem client.key server-ecdsa.pem server-ecdsa.key \
    server-rsa4096.pem server-rsa4096.key server-rsa4096-chain.pem intermediate.pem; do
    if [[ ! -r $file ]]; then
        echo "interop.sh: $CERTS/$file is missing" >&2
        exit 2
    fi
done

PSK_ID=interop-client
PSK_KEY=0f1e2d3c4b5a69788796a5b4c3d2e1f0
PROCESS_LIMIT=20 # seconds any one process may run
WAIT_LIMIT=10    # seconds any one poll may wait

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dtlspp-interop.XXXXXX")
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    # Only our own background jobs that still run: `jobs` never lists a
    # process this shell did not start.
    local pids
    pids=$(jobs -pr)
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086
        kill $pids 2>/dev/null
        wait 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
skipped=0
case_number=0

pass() {
    echo "PASS $1"
    passed=$((passed + 1))
}

# fail NAME REASON [FILE...]: the reason, then the end of each file.
fail() {
    local name=$1 reason=$2 file
    shift 2
    echo "FAIL $name: $reason"
    for file in "$@"; do
        [[ -s $file ]] || continue
        echo "    --- ${file##*/} (last 25 lines)"
        tail -n 25 "$file" | sed 's/^/    | /'
    done
    failed=$((failed + 1))
}

skip() {
    echo "SKIP $1: $2"
    skipped=$((skipped + 1))
}

# A fresh file prefix for one case's outputs.
next_case() {
    case_number=$((case_number + 1))
    CASE="$WORK/case$case_number"
}

# stop PID: ends a process we started (a `timeout` wrapper passes the signal
# on to its command) and reaps it.
stop() {
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# alive PID
alive() { kill -0 "$1" 2>/dev/null; }

# wait_for FILE PATTERN [PID]: polls until FILE matches the extended regex
# PATTERN (0), or WAIT_LIMIT passes or PID exits without it (1).
wait_for() {
    local file=$1 pattern=$2 pid=${3:-} i
    for ((i = 0; i < WAIT_LIMIT * 20; i++)); do
        grep -Eq -- "$pattern" "$file" 2>/dev/null && return 0
        if [[ -n $pid ]] && ! alive "$pid"; then
            grep -Eq -- "$pattern" "$file" 2>/dev/null
            return
        fi
        sleep 0.05
    done
    return 1
}

# wait_exit PID: the exit status of PID once it ends by itself, polling for at
# most WAIT_LIMIT; stops it and returns 124 when it does not.
wait_exit() {
    local pid=$1 i
    for ((i = 0; i < WAIT_LIMIT * 20; i++)); do
        if ! alive "$pid"; then
            wait "$pid"
            return
        fi
        sleep 0.05
    done
    stop "$pid"
    return 124
}

# UDP ports bound on this host, as uppercase hex (Linux /proc).
udp_port_bound() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="$hex" 'FNR > 1 { split($2, a, ":"); if (a[length(a)] == p) found = 1 } END { exit !found }' \
        /proc/net/udp /proc/net/udp6 2>/dev/null
}

random_free_port() {
    local port i
    for ((i = 0; i < 50; i++)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        udp_port_bound "$port" || {
            echo "$port"
            return 0
        }
    done
    return 1
}

# start_peer_server LOOP OUT ERR COMMAND...: starts a peer's server on a
# random free port, substituting @PORT@ (and @PSKFILE@, the GnuTLS PSK file)
# in COMMAND. With LOOP=loop, the server's standard output is fed back to its
# standard input through a FIFO, so a server that prints what it receives and
# sends what it reads (openssl s_server -quiet) becomes an echo server. Sets
# PEER_PID and PEER_PORT once the port is bound; tries another port when the
# server dies first (the port was taken meanwhile).
start_peer_server() {
    local loop=$1 out=$2 err=$3 attempt arg i
    shift 3
    for ((attempt = 0; attempt < 5; attempt++)); do
        PEER_PORT=$(random_free_port) || return 1
        local command=()
        for arg in "$@"; do
            arg=${arg//@PORT@/$PEER_PORT}
            command+=("${arg//@PSKFILE@/$WORK/psk-passwd}")
        done
        if [[ $loop == loop ]]; then
            local fifo="$out.loop"
            rm -f "$fifo"
            mkfifo "$fifo"
            # <> opens the FIFO without waiting for a writer; the server
            # itself is then the reader that lets the > open proceed.
            # shellcheck disable=SC2094 # reading and writing it is the point
            timeout "$PROCESS_LIMIT" "${command[@]}" <>"$fifo" >"$fifo" 2>"$err" &
            : >"$out"
        else
            timeout "$PROCESS_LIMIT" "${command[@]}" </dev/null >"$out" 2>"$err" &
        fi
        PEER_PID=$!
        for ((i = 0; i < WAIT_LIMIT * 20; i++)); do
            udp_port_bound "$PEER_PORT" && return 0
            alive "$PEER_PID" || break
            sleep 0.05
        done
        stop "$PEER_PID"
    done
    return 1
}

# start_echo_server BACKEND OUT LISTEN_HOST ARGS...: our echo_server on port
# 0; sets ECHO_PID and ECHO_PORT from its "listening on" line.
start_echo_server() {
    local backend=$1 out=$2 host=$3
    shift 3
    timeout "$PROCESS_LIMIT" "$ECHO_SERVER" --backend "$backend" --listen "$host:0" --exit-after 1 "$@" \
        </dev/null >"$out" 2>&1 &
    ECHO_PID=$!
    if ! wait_for "$out" ' listening on .*:[0-9]+, ' "$ECHO_PID"; then
        stop "$ECHO_PID"
        return 1
    fi
    ECHO_PORT=$(sed -n 's/.* listening on .*:\([0-9][0-9]*\), .*/\1/p' "$out" | head -n 1)
    [[ -n $ECHO_PORT ]]
}

# line_client OUT ERR TOKEN COMMAND...: runs a peer client that sends what
# it reads on standard input and prints what it receives (s_client -quiet,
# gnutls-cli), writes TOKEN and a newline, waits for TOKEN to come back, then
# closes its input so it shuts the association down. Sets CLIENT_STATUS.
line_client() {
    local out=$1 err=$2 token=$3 fifo="$1.in" writer
    shift 3
    rm -f "$fifo"
    mkfifo "$fifo"
    timeout "$PROCESS_LIMIT" "$@" <"$fifo" >"$out" 2>"$err" &
    local pid=$!
    exec {writer}>"$fifo" # returns once the client has opened its end
    # A client that already died would make this write raise SIGPIPE.
    (
        trap '' PIPE
        printf '%s\n' "$token" >&"$writer"
    ) 2>/dev/null
    wait_for "$out" "$token" "$pid"
    local echoed=$?
    exec {writer}>&-
    wait_exit "$pid"
    CLIENT_STATUS=$?
    return "$echoed"
}

# largest TRACE ARROW: the largest datagram size on ARROW ("->" sent,
# "<-" received) lines of a --verbose trace.
largest() {
    awk -v arrow="$2" '$1 == arrow && $3 == "B" { if ($2 + 0 > max) max = $2 + 0 } END { print max + 0 }' "$1"
}

# summary_problem OUT: why the echo_server output OUT lacks the counters
# summary its operator reads after one association (nothing when it has it):
# every server counter by name, with the one association created and
# nothing refused; with --verbose, the association's drop counters by reason.
summary_problem() {
    local out=$1 summary
    summary=$(grep -E '^echo_server: counters ' "$out" | tail -n 1)
    if [[ -z $summary ]]; then
        echo "no 'echo_server: counters' summary line"
        return
    fi
    local counter
    for counter in datagrams_in datagrams_out hello_verify_requests dropped_without_session sessions_created \
        sessions_refused sessions_expired sessions_failed sessions_closed duplicate_client_hellos; do
        if ! grep -Eq " $counter=[0-9]+( |\$)" <<<"$summary"; then
            echo "the summary lacks $counter: $summary"
            return
        fi
    done
    if ! grep -Eq ' sessions_created=1( |$)' <<<"$summary" || ! grep -Eq ' sessions_refused=0( |$)' <<<"$summary" ||
        grep -Eq ' datagrams_in=0( |$)' <<<"$summary"; then
        echo "the summary does not count one association: $summary"
        return
    fi
    if [[ ${2:-} == verbose ]] && ! grep -Eq '^dropped .*: malformed=[0-9]+ .*not_open=[0-9]+' "$out"; then
        echo "--verbose printed no drop counters when the association closed"
    fi
}

# hello_fragments TRACE: how many distinct fragments of the cookie-bearing
# ClientHello (message_seq 1) a --verbose trace received.
hello_fragments() {
    grep -Eo '^<- .*' "$1" | grep -Eo 'ClientHello \(msg 1, frag [0-9]+\+[0-9]+/[0-9]+\)' | sort -u | wc -l
}

# ---------------------------------------------------------------------------
# (a) openssl s_client -> echo_server

s_client_case() {
    local backend=$1 name=$2 host=$3 server_args=$4 client_args=$5 check=${6:-}
    next_case
    local sout="$CASE.server" cout="$CASE.client" cerr="$CASE.client.err"
    # shellcheck disable=SC2086 # the argument strings are word lists
    if ! start_echo_server "$backend" "$sout" "$host" $server_args; then
        fail "$name" "echo_server did not start" "$sout"
        return
    fi
    local token="dtlspp-interop-a$case_number-$RANDOM"
    # -quiet prints only application data; -no_ign_eof (after -quiet) makes
    # the end of our input close the association.
    # shellcheck disable=SC2086
    if ! line_client "$cout" "$cerr" "$token" openssl s_client -dtls1_2 -connect "$host:$ECHO_PORT" \
        -quiet -no_ign_eof $client_args; then
        fail "$name" "the line did not come back (s_client status $CLIENT_STATUS)" "$cerr" "$cout" "$sout"
        stop "$ECHO_PID"
        return
    fi
    if ((CLIENT_STATUS != 0)); then
        fail "$name" "echo received, but s_client exited with status $CLIENT_STATUS" "$cerr" "$sout"
        stop "$ECHO_PID"
        return
    fi
    wait_exit "$ECHO_PID" >/dev/null # --exit-after 1: it ends after the close
    local problem
    problem=$(summary_problem "$sout" "$([[ $server_args == *--verbose* ]] && echo verbose)")
    if [[ -n $problem ]]; then
        fail "$name" "$problem" "$sout"
        return
    fi
    case $check in
    psk)
        if ! grep -Eq '^open .*PSK' "$sout"; then
            fail "$name" "the association did not use a PSK cipher suite" "$sout"
            return
        fi
        ;;
    mtu=*)
        local limit=${check#mtu=} biggest
        biggest=$(largest "$sout" "->")
        if ((biggest == 0 || biggest > limit)); then
            fail "$name" "echo_server sent a $biggest-byte datagram with --mtu $limit" "$sout"
            return
        fi
        ;;
    fragments=*)
        local expected=${check#fragments=} seen
        seen=$(hello_fragments "$sout")
        if ((seen != expected)); then
            fail "$name" "the cookie-bearing ClientHello came in $seen fragments, not $expected" "$sout"
            return
        fi
        ;;
    esac
    pass "$name"
}

# ---------------------------------------------------------------------------
# (b) echo_client -> openssl s_server
#
# s_server has no echo mode usable here (-rev answers whole lines, reversed,
# and our client sends bytes without a newline), but with -quiet it prints
# exactly the application data it receives and sends whatever it reads on
# standard input: start_peer_server's FIFO loop joins the two into an echo.
# s_server ignores end of input with -quiet and leaves after -naccept 1
# connection.

s_server_case() {
    local backend=$1 name=$2 server_args=$3 client_args=$4 check=${5:-}
    next_case
    local sout="$CASE.server" serr="$CASE.server.err" cout="$CASE.client"
    # shellcheck disable=SC2086
    if ! start_peer_server loop "$sout" "$serr" openssl s_server -dtls1_2 -accept "127.0.0.1:@PORT@" \
        -quiet -naccept 1 $server_args; then
        fail "$name" "openssl s_server did not start" "$serr"
        return
    fi
    local status
    # shellcheck disable=SC2086
    timeout "$PROCESS_LIMIT" "$ECHO_CLIENT" --backend "$backend" --connect "127.0.0.1:$PEER_PORT" --count 3 \
        $client_args </dev/null >"$cout" 2>&1
    status=$?
    stop "$PEER_PID"
    if ((status != 0)); then
        fail "$name" "echo_client exited with status $status" "$cout" "$serr"
        return
    fi
    if ! grep -q ' 3/3 echoes' "$cout"; then
        fail "$name" "echo_client did not report 3/3 echoes" "$cout" "$serr"
        return
    fi
    case $check in
    psk)
        if ! grep -Eq 'connected to .* with .*PSK' "$cout"; then
            fail "$name" "the association did not use a PSK cipher suite" "$cout"
            return
        fi
        ;;
    mtu=*)
        local limit=${check#mtu=} sent received
        sent=$(largest "$cout" "->")
        received=$(largest "$cout" "<-")
        if ((sent == 0 || sent > limit || received > limit)); then
            fail "$name" "datagrams of $sent (sent) and $received (received) bytes with an MTU of $limit" "$cout"
            return
        fi
        ;;
    esac
    pass "$name"
}

# ---------------------------------------------------------------------------
# (c) gnutls-cli --udp -> echo_server
#
# gnutls-cli is run with certificates only: with a PSK, gnutls-cli 3.7
# crashes after the handshake while printing the session (it calls
# gnutls_psk_server_get_username on its client session), whatever the
# server. PSK with GnuTLS is covered by (d).

gnutls_cli_case() {
    local backend=$1 name=$2
    next_case
    local sout="$CASE.server" cout="$CASE.client" cerr="$CASE.client.err"
    if ! start_echo_server "$backend" "$sout" 127.0.0.1 \
        --cert server-ecdsa.pem --key server-ecdsa.key; then
        fail "$name" "echo_server did not start" "$sout"
        return
    fi
    local token="dtlspp-interop-c$case_number-$RANDOM"
    # The server is verified against ca.pem and its IP address SAN.
    if ! line_client "$cout" "$cerr" "$token" gnutls-cli --udp --port "$ECHO_PORT" \
        --x509cafile ca.pem 127.0.0.1; then
        fail "$name" "the line did not come back (gnutls-cli status $CLIENT_STATUS)" "$cerr" "$cout" "$sout"
        stop "$ECHO_PID"
        return
    fi
    if ((CLIENT_STATUS != 0)) || ! grep -q 'certificate is trusted' "$cout"; then
        fail "$name" "gnutls-cli status $CLIENT_STATUS, or it did not report a trusted certificate" \
            "$cout" "$cerr" "$sout"
        stop "$ECHO_PID"
        return
    fi
    wait_exit "$ECHO_PID" >/dev/null
    local problem
    problem=$(summary_problem "$sout")
    if [[ -n $problem ]]; then
        fail "$name" "$problem" "$sout"
        return
    fi
    pass "$name"
}

# ---------------------------------------------------------------------------
# (d) echo_client -> gnutls-serv --udp --echo

gnutls_serv_case() {
    local backend=$1 name=$2 server_args=$3 client_args=$4 check=${5:-}
    next_case
    local sout="$CASE.server" serr="$CASE.server.err" cout="$CASE.client"
    # shellcheck disable=SC2086
    if ! start_peer_server plain "$sout" "$serr" gnutls-serv --udp --echo --port @PORT@ $server_args; then
        fail "$name" "gnutls-serv did not start" "$sout" "$serr"
        return
    fi
    local status
    # shellcheck disable=SC2086
    timeout "$PROCESS_LIMIT" "$ECHO_CLIENT" --backend "$backend" --connect "127.0.0.1:$PEER_PORT" --count 3 \
        $client_args </dev/null >"$cout" 2>&1
    status=$?
    stop "$PEER_PID"
    if ((status != 0)) || ! grep -q ' 3/3 echoes' "$cout"; then
        fail "$name" "echo_client exited with status $status" "$cout" "$sout" "$serr"
        return
    fi
    if [[ $check == psk ]] && ! grep -Eq 'connected to .* with .*PSK' "$cout"; then
        fail "$name" "the association did not use a PSK cipher suite" "$cout"
        return
    fi
    pass "$name"
}

# ---------------------------------------------------------------------------
# (e) echo_client -> echo_server with a Connection ID, the client moving to a
# new port after two echoes (a NAT rebinding): the server must follow it
# there. Only where the build's stack negotiates CIDs: a first, short run
# (--count 0) reads the client's "connection id:" line, and a stack without
# them is skipped with the reason that line gives.

# DTLS versions between the example programs: SERVER_DTLS and CLIENT_DTLS
# are --dtls values; both must print WANT ("DTLS 1.3") on their open /
# connected lines.
dtls_version_case() {
    local backend=$1 name=$2 server_dtls=$3 client_dtls=$4 want=$5
    next_case
    local sout="$CASE.server" cout="$CASE.client"
    if ! start_echo_server "$backend" "$sout" 127.0.0.1 --cert server-ecdsa.pem --key server-ecdsa.key \
        --dtls "$server_dtls"; then
        fail "$name" "echo_server did not start" "$sout"
        return
    fi
    timeout "$PROCESS_LIMIT" "$ECHO_CLIENT" --backend "$backend" --connect "127.0.0.1:$ECHO_PORT" --ca ca.pem \
        --server-name localhost --dtls "$client_dtls" --count 3 </dev/null >"$cout" 2>&1
    local status=$?
    wait_exit "$ECHO_PID" >/dev/null
    if ((status != 0)) || ! grep -q ' 3/3 echoes' "$cout"; then
        fail "$name" "echo_client exited with status $status, or not all 3 echoes came back" "$cout" "$sout"
        return
    fi
    if ! grep -Eq "connected to .* with $want " "$cout" || ! grep -Eq "^open .* $want " "$sout"; then
        fail "$name" "a side did not print '$want' on its connected / open line" "$cout" "$sout"
        return
    fi
    pass "$name"
}

cid_rebind_case() {
    local backend=$1 name=$2
    shift 2
    next_case
    local pout="$CASE.probe.server" pcout="$CASE.probe.client" sout="$CASE.server" cout="$CASE.client"
    local x509="--cert server-ecdsa.pem --key server-ecdsa.key --connection-id 8 $*"
    # shellcheck disable=SC2086
    if ! start_echo_server "$backend" "$pout" 127.0.0.1 $x509; then
        fail "$name" "echo_server did not start" "$pout"
        return
    fi
    timeout "$PROCESS_LIMIT" "$ECHO_CLIENT" --backend "$backend" --connect "127.0.0.1:$ECHO_PORT" --ca ca.pem \
        --connection-id 8 --count 0 "$@" </dev/null >"$pcout" 2>&1
    local status=$?
    wait_exit "$ECHO_PID" >/dev/null
    local line
    line=$(grep -Eo 'connection id: .*' "$pcout" | head -n 1)
    if ((status != 0)) || [[ -z $line ]]; then
        fail "$name" "the probe run failed (status $status) or printed no 'connection id:' line" "$pcout" "$pout"
        return
    fi
    if [[ $line == *"not negotiated"* ]]; then
        skip "$name" "${line#connection id: }"
        return
    fi
    # shellcheck disable=SC2086
    if ! start_echo_server "$backend" "$sout" 127.0.0.1 $x509; then
        fail "$name" "echo_server did not start" "$sout"
        return
    fi
    timeout "$PROCESS_LIMIT" "$ECHO_CLIENT" --backend "$backend" --connect "127.0.0.1:$ECHO_PORT" --ca ca.pem \
        --connection-id 8 --rebind-after 2 --count 5 "$@" </dev/null >"$cout" 2>&1
    status=$?
    wait_exit "$ECHO_PID" >/dev/null # --exit-after 1: it ends after the close
    if ((status != 0)) || ! grep -q ' 5/5 echoes' "$cout"; then
        fail "$name" "echo_client exited with status $status, or not all 5 echoes came back" "$cout" "$sout"
        return
    fi
    if ! grep -Eq '^echo_client: rebound from 127\.0\.0\.1:[0-9]+ to 127\.0\.0\.1:[0-9]+$' "$cout"; then
        fail "$name" "echo_client printed no 'rebound from ... to ...' line" "$cout"
        return
    fi
    if ! grep -Eq 'connection id: ours 8 bytes [0-9a-f]{16}, peer.s 8 bytes [0-9a-f]{16}' "$cout" ||
        ! grep -Eq '^open .*connection id: ours 8 bytes [0-9a-f]{16}, peer.s 8 bytes [0-9a-f]{16}' "$sout"; then
        fail "$name" "a side did not report two 8-byte Connection IDs" "$cout" "$sout"
        return
    fi
    # The server follows the client from the port it left to the new one.
    local from to
    from=$(sed -n 's/^echo_client: rebound from \(.*\) to .*$/\1/p' "$cout")
    to=$(sed -n 's/^echo_client: rebound from .* to \(.*\)$/\1/p' "$cout")
    if ! grep -Fxq "echo_server: $from moved to $to (Connection ID)" "$sout"; then
        fail "$name" "echo_server printed no 'echo_server: $from moved to $to (Connection ID)'" "$sout" "$cout"
        return
    fi
    if ! grep -Eq '^echo_server: counters .* connection_id_moves=1( |$)' "$sout" ||
        ! grep -Eq '^echo_server: counters .* sessions_created=1( |$)' "$sout"; then
        fail "$name" "the counters do not show one association and one move" "$sout"
        return
    fi
    pass "$name"
}

# ---------------------------------------------------------------------------
# Which backends the example programs were built with. Both programs pick
# the backend before anything else and say "--backend: 'NAME' is not built
# in" when they lack it; with it, they go on to check their other options
# (--size 0 and an unusable --listen are refused) without any network I/O.
# `--help` cannot tell: it is answered before the backend is chosen.

backend_built() {
    local backend=$1 client server
    client=$(timeout 10 "$ECHO_CLIENT" --backend "$backend" --size 0 2>&1)
    server=$(timeout 10 "$ECHO_SERVER" --backend "$backend" --listen not-an-address 2>&1)
    if [[ $client == *"is not built in"* || $server == *"is not built in"* ]]; then
        return 1
    fi
    if [[ $client == *"--size:"* && $server == *"--listen:"* ]]; then
        return 0
    fi
    echo "interop.sh: cannot tell whether backend '$backend' is built:" >&2
    printf '  echo_client said: %s\n  echo_server said: %s\n' "$client" "$server" >&2
    return 2
}

have() { command -v "$1" >/dev/null 2>&1; }

run_backend() {
    local b=$1
    local x509_server="--cert server-ecdsa.pem --key server-ecdsa.key"
    local psk="$PSK_ID:$PSK_KEY"

    if have openssl; then
        # Verification on: -verify_return_error fails the handshake on any
        # certificate problem, and the name must match.
        local verify="-CAfile ca.pem -verify_return_error -verify_hostname localhost"
        s_client_case "$b" "[$b] s_client -> echo_server, X.509 (IPv4)" 127.0.0.1 "$x509_server" "$verify"
        s_client_case "$b" "[$b] s_client -> echo_server, X.509 (IPv6)" "[::1]" "$x509_server" "$verify"
        s_client_case "$b" "[$b] s_client -> echo_server, mutual X.509" 127.0.0.1 \
            "$x509_server --ca ca.pem" "$verify -cert client.pem -key client.key"
        s_client_case "$b" "[$b] s_client -> echo_server, PSK" 127.0.0.1 "--psk $psk" \
            "-psk_identity $PSK_ID -psk $PSK_KEY" psk
        # Fragmented ClientHellos. s_client's -mtu is the link MTU: -mtu 256
        # leaves 228 bytes a datagram, 203 of them for a fragment's body, so
        # its cookie-bearing hello (212 bytes) goes as 203 + 9; -mtu 400
        # leaves 347. A long server name makes the hello longer than that.
        # echo_server reassembles the hello before any stack sees it
        # (mbedTLS 2.28 refuses a fragmented ClientHello, OpenSSL's
        # DTLSv1_listen reads only the first fragment); the check counts the
        # fragments of the cookie-bearing hello in its trace, so a case whose
        # hello went whole fails rather than passing untested.
        local long_name
        long_name=$(printf '%s.' "$(printf 'f%.0s' {1..60})" "$(printf 'r%.0s' {1..60})" \
            "$(printf 'a%.0s' {1..60})")interop.dtlspp.example
        s_client_case "$b" "[$b] s_client -> echo_server, fragmented ClientHello" 127.0.0.1 \
            "$x509_server --verbose" \
            "$verify -mtu 256 -servername fragmented-client-hello.interop.dtlspp.example" fragments=2
        s_client_case "$b" "[$b] s_client -mtu 256 -> echo_server, ClientHello in 2 fragments" 127.0.0.1 \
            "$x509_server --verbose" "$verify -mtu 256" fragments=2
        s_client_case "$b" "[$b] s_client -mtu 256 -> echo_server, ClientHello in 3 fragments" 127.0.0.1 \
            "$x509_server --verbose" "$verify -mtu 256 -servername $long_name" fragments=3
        s_client_case "$b" "[$b] s_client -mtu 400 -> echo_server, ClientHello in 2 fragments" 127.0.0.1 \
            "$x509_server --verbose" "$verify -mtu 400 -servername $long_name" fragments=2
        s_client_case "$b" "[$b] s_client -mtu 400 -> echo_server, ClientHello whole" 127.0.0.1 \
            "$x509_server --verbose" "$verify -mtu 400" fragments=1
        # RSA-4096 leaf + intermediate: the Certificate message spans several
        # datagrams. s_client's -mtu is the link MTU: 540 - 28 = 512 payload.
        s_client_case "$b" "[$b] s_client -> echo_server, RSA-4096 chain, MTU 512" 127.0.0.1 \
            "--cert server-rsa4096-chain.pem --key server-rsa4096.key --mtu 512 --verbose" \
            "$verify -mtu 540" mtu=512

        s_server_case "$b" "[$b] echo_client -> s_server, X.509" \
            "-cert server-ecdsa.pem -key server-ecdsa.key" "--ca ca.pem"
        s_server_case "$b" "[$b] echo_client -> s_server, mutual X.509" \
            "-cert server-ecdsa.pem -key server-ecdsa.key -Verify 1 -CAfile ca.pem -verify_return_error" \
            "--ca ca.pem --cert client.pem --key client.key"
        s_server_case "$b" "[$b] echo_client -> s_server, PSK" \
            "-nocert -psk_identity $PSK_ID -psk $PSK_KEY" "--psk $psk" psk
        s_server_case "$b" "[$b] echo_client -> s_server, RSA-4096 chain, MTU 512" \
            "-cert server-rsa4096.pem -key server-rsa4096.key -cert_chain intermediate.pem -mtu 540" \
            "--ca ca.pem --mtu 512 --verbose" mtu=512
    else
        skip "[$b] openssl cases" "no openssl command"
    fi

    if have gnutls-cli; then
        gnutls_cli_case "$b" "[$b] gnutls-cli -> echo_server, X.509"
    else
        skip "[$b] gnutls-cli case" "no gnutls-cli command"
    fi

    if have gnutls-serv; then
        gnutls_serv_case "$b" "[$b] echo_client -> gnutls-serv, X.509" \
            "--x509certfile server-ecdsa.pem --x509keyfile server-ecdsa.key" "--ca ca.pem"
        printf '%s:%s\n' "$PSK_ID" "$PSK_KEY" >"$WORK/psk-passwd"
        gnutls_serv_case "$b" "[$b] echo_client -> gnutls-serv, PSK" \
            "--pskpasswd @PSKFILE@ --priority NORMAL:+ECDHE-PSK:+PSK" "--psk $psk" psk
    else
        skip "[$b] gnutls-serv cases" "no gnutls-serv command"
    fi

    cid_rebind_case "$b" "[$b] echo_client -> echo_server, Connection ID, rebind after 2 echoes"
    if [[ $b == wolfssl ]]; then
        # DTLS 1.3 (RFC 9147): only wolfSSL has it.
        dtls_version_case "$b" "[$b] echo_client --dtls 1.3 -> echo_server --dtls 1.3" 1.3 1.3 "DTLS 1.3"
        dtls_version_case "$b" "[$b] echo_client --dtls 1.2-1.3 -> echo_server --dtls 1.2-1.3" 1.2-1.3 1.2-1.3 "DTLS 1.3"
        dtls_version_case "$b" "[$b] echo_client --dtls 1.2-1.3 -> echo_server --dtls 1.2: settles on 1.2" 1.2 1.2-1.3 "DTLS 1.2"
        dtls_version_case "$b" "[$b] echo_client --dtls 1.2 -> echo_server --dtls 1.2-1.3: settles on 1.2" 1.2-1.3 1.2 "DTLS 1.2"
        cid_rebind_case "$b" "[$b] echo_client -> echo_server, DTLS 1.3, Connection ID, rebind after 2 echoes" --dtls 1.3
    fi
}

for backend in "${BACKENDS[@]}"; do
    backend_built "$backend"
    case $? in
    0) run_backend "$backend" ;;
    1) skip "[$backend] every case" "the example programs were built without this backend" ;;
    *) fail "[$backend] backend probe" "unexpected answer from the example programs" ;;
    esac
done

echo "$passed passed, $failed failed"
if ((failed > 0)); then exit 1; fi
if ((passed == 0)); then exit 77; fi
exit 0
