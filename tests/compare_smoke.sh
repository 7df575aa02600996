#!/usr/bin/env bash
# Smoke test for examples/dtls_compare: a tiny grid (no loss, two seeds, two
# messages) must give one CSV row per backend pair built in, each with every
# handshake completed and every echo back; --trace must show the handshake;
# a bad flag must fail with status 2. Takes well under a second per pair:
# runs with OpenSSL are on real time, but nothing is lost, so no timer fires.
#   compare_smoke.sh PATH/TO/dtls_compare CERT_DIR
# A Windows build (dtls_compare.exe) runs under ${WINE:-wine}; the CR of its
# CR LF line ends is stripped.
set -euo pipefail
tool=$1
certs=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
cmd=("$tool")
[[ $tool == *.exe ]] && cmd=("${WINE:-wine}" "$tool")

backends=$("${cmd[@]}" --list-backends | tr -d '\r')
expected=()
for c in $backends; do
  for s in $backends; do expected+=("$c-$s"); done
done
# wolfSSL with itself once more, on DTLS 1.3.
[[ " $backends " == *" wolfssl "* ]] && expected+=("wolfssl-wolfssl-dtls13")

csv=$(timeout 60 "${cmd[@]}" --certs "$certs" --loss 0 --seeds 2 --messages 2 --csv --quiet | tr -d '\r') ||
  fail "dtls_compare exited with status $?"
echo "$csv"
header=$(head -n 1 <<<"$csv")
[[ $header == pair,client,server,* ]] || fail "unexpected CSV header: $header"
# Column positions from the header, so adding a column does not break this.
col() { tr ',' '\n' <<<"$header" | grep -nx "$1" | cut -d: -f1; }
ok_col=$(col ok); runs_col=$(col runs); echoed_col=$(col echoed); sent_col=$(col messages_sent)
[ "$(tail -n +2 <<<"$csv" | wc -l)" -eq ${#expected[@]} ] ||
  fail "expected ${#expected[@]} rows (${expected[*]})"
for pair in "${expected[@]}"; do
  row=$(grep "^$pair," <<<"$csv") || fail "no row for $pair"
  IFS=, read -ra f <<<"$row"
  [ "${f[ok_col-1]}" = "${f[runs_col-1]}" ] || fail "$pair: ${f[ok_col-1]}/${f[runs_col-1]} handshakes completed"
  [ "${f[sent_col-1]}" -gt 0 ] || fail "$pair: no message sent"
  [ "${f[echoed_col-1]}" = "${f[sent_col-1]}" ] || fail "$pair: ${f[echoed_col-1]}/${f[sent_col-1]} echoes"
done

first=${expected[0]}
trace=$(timeout 60 "${cmd[@]}" --certs "$certs" --pairs "$first" --loss 0 --seeds 1 --messages 1 --trace --quiet |
        tr -d '\r')
for message in ClientHello HelloVerifyRequest ServerHello Certificate ServerKeyExchange ServerHelloDone \
               ClientKeyExchange ChangeCipherSpec ApplicationData "handshake complete"; do
  grep -q "$message" <<<"$trace" || fail "--trace output lacks $message"
done

# --rebind: the client's address changes halfway. A pair's association
# survives exactly when it negotiated a Connection ID, and OpenSSL (3.0) has
# none; every handshake still completes.
csv=$(timeout 60 "${cmd[@]}" --certs "$certs" --loss 0 --seeds 1 --messages 4 --rebind --csv --quiet |
      tr -d '\r') ||
  fail "dtls_compare --rebind exited with status $?"
echo "$csv"
header=$(head -n 1 <<<"$csv")
ok_col=$(col ok); runs_col=$(col runs); cid_col=$(col runs_with_connection_id); survived_col=$(col survived_rebind)
after_col=$(col sent_after_rebind)
if [ -z "$cid_col" ] || [ -z "$survived_col" ]; then fail "--rebind: no CID columns in $header"; fi
for pair in "${expected[@]}"; do
  row=$(grep "^$pair," <<<"$csv") || fail "--rebind: no row for $pair"
  IFS=, read -ra f <<<"$row"
  [ "${f[ok_col-1]}" = "${f[runs_col-1]}" ] || fail "$pair --rebind: ${f[ok_col-1]}/${f[runs_col-1]} handshakes"
  [ "${f[after_col-1]}" -gt 0 ] || fail "$pair --rebind: nothing sent after the rebind"
  [ "${f[survived_col-1]}" = "${f[cid_col-1]}" ] ||
    fail "$pair --rebind: ${f[survived_col-1]} survived, ${f[cid_col-1]} had a Connection ID"
  if [[ $pair == *openssl* ]]; then
    [ "${f[cid_col-1]}" = 0 ] || fail "$pair --rebind: a Connection ID with OpenSSL"
  fi
  echo "rebind $pair: connection id ${f[cid_col-1]}/${f[ok_col-1]}, survived ${f[survived_col-1]}/${f[ok_col-1]}"
done

status=0
"${cmd[@]}" --certs "$certs" --loss 101 >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "--loss 101: expected status 2, got $status"
echo "PASS: ${#expected[@]} pairs"
