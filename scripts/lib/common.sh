# Shared by scripts/demo, scripts/test and scripts/bench: install what is
# missing (Debian 12 packages), then configure a build directory.

dtlspp_packages=(meson ninja-build pkg-config g++ libssl-dev libmbedtls-dev libboost-test-dev
                 libasio-dev python3 openssl gnutls-bin tshark)

ensure_packages() {
  local missing=()
  for p in "${dtlspp_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "Installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # tshark asks whether non-root users may capture; the default (no) is fine.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# configure DIR [meson options...]: sets up or reconfigures DIR. Meson's
# output is shown only when it fails.
configure() {
  local dir=$1 log status=0
  shift
  [ -f "$dir/build.ninja" ] && set -- --reconfigure "$@"
  log=$(mktemp)
  meson setup --wrap-mode=nodownload "$dir" "$@" >"$log" 2>&1 || status=$?
  [ "$status" -eq 0 ] || { cat "$log" >&2; echo "meson setup $dir failed" >&2; }
  rm -f "$log"
  return "$status"
}
