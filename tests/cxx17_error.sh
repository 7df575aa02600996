#!/usr/bin/env bash
# Every public header, compiled as C++17, stops at once with the one message
# that names C++20 (include/dtlspp/version.hpp), not with errors from deep
# inside the library.
# Usage: cxx17_error.sh INCLUDE_DIR COMPILER [COMPILER ARGS...]
set -uo pipefail
include=$1
shift
here=$(dirname "$0")
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
bad=0
count=0
for header in $(bash "$here/list_headers.sh" "$include"); do
  count=$((count + 1))
  printf '#include <%s>\nint main() {}\n' "$header" > "$src/t.cpp"
  if out=$("$@" -std=c++17 -fsyntax-only -I "$include" "$src/t.cpp" 2>&1); then
    echo "FAIL $header: compiled as C++17"
    bad=$((bad + 1))
    continue
  fi
  errors=$(grep -c 'error:' <<<"$out")
  if ! grep -q 'dtlspp needs C++20' <<<"$out" || [ "$errors" -gt 2 ]; then
    echo "FAIL $header: $errors error lines, first ones:"
    head -8 <<<"$out"
    bad=$((bad + 1))
  fi
done
echo "$count headers, $bad without the C++20 message alone"
[ "$count" -gt 0 ] && [ "$bad" -eq 0 ]
