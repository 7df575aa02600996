# Shared by scripts/demo, scripts/test and scripts/bench: install what is
# missing (Debian 12 packages), then configure a build directory.

dtlspp_packages=(meson ninja-build pkg-config g++ patch libssl-dev libmbedtls-dev libboost-test-dev
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

# The wolfSSL backend (GPLv3 or commercial: docs/backends.md) is built only
# when asked for. The test and fuzz scripts ask for it whenever its release
# tarball is at hand or can be fetched from Debian's source package
# (scripts/fetch-subprojects wolfssl), since the suite tests every backend
# it can build; DTLSPP_WOLFSSL=0 leaves it out. Prints the meson option.
wolfssl_option() {
  [ "${DTLSPP_WOLFSSL:-1}" = 0 ] && return 0
  if bash scripts/fetch-subprojects wolfssl >/dev/null 2>&1; then
    echo "-Dwolfssl=enabled"
  else
    echo "note: wolfSSL's tarball is not in subprojects/packagecache/ and could not be fetched" \
      "(run scripts/fetch-subprojects wolfssl as root): building without the wolfSSL backend" >&2
  fi
}
