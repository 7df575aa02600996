#!/usr/bin/env bash
# Regenerates the test PKI in this directory using only the openssl CLI.
# The keys are for tests only and are committed on purpose, so test runs do
# not depend on key generation. Re-running replaces every file.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

server_san="DNS:localhost, IP:127.0.0.1, IP:::1"

# Extension profiles. authorityKeyIdentifier lets chain builders pick the
# right issuer quickly; pathlen:0 keeps the intermediate from signing CAs.
cat > "$work/extensions.cnf" <<EOF
# openssl req insists on a distinguished_name section even with -subj.
[ req ]
distinguished_name = empty_name
prompt = no

[ empty_name ]

[ root_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ intermediate_ca ]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ server_rsa ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = ${server_san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ server_ec ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${server_san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ server_localhost_only ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ server_wrong_host ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:not-localhost.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ client ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

# Runs a command silently (openssl is chatty on success) but shows its
# output if it fails, so a broken run says why.
quietly() {
    local output
    if ! output="$("$@" 2>&1)"; then
        printf '%s\n' "$output" >&2
        return 1
    fi
}

make_ec_key() {
    quietly openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

make_rsa_key() {
    quietly openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$1"
}

# Every certificate gets fixed validity dates instead of "now": the files
# then do not depend on when they were generated, and a machine whose clock
# lags the generating one never sees "not yet valid". OpenSSL 3.0's req and
# x509 commands always start at "now", whereas `openssl ca` accepts
# -startdate/-enddate, so all signing goes through a throwaway minimal CA
# database.
valid_from=20250101000000Z
valid_until=21250101000000Z  # 100 years

# issue NAME CN ISSUER PROFILE [START END]: a CSR from NAME.key, signed by
# ISSUER.pem/.key into NAME.pem. ISSUER "self" makes a self-signed root.
issue() {
    local name="$1" common_name="$2" issuer="$3" profile="$4"
    local start="${5:-$valid_from}" end="${6:-$valid_until}"
    local ca_dir="$work/ca"
    rm -rf "$ca_dir"
    mkdir "$ca_dir"
    : > "$ca_dir/index.txt"
    # Random 128-bit serials never collide between runs or issuers.
    openssl rand -hex 16 > "$ca_dir/serial"
    cat > "$ca_dir/ca.cnf" <<EOF
[ ca ]
default_ca = test_ca

[ test_ca ]
database = $ca_dir/index.txt
new_certs_dir = $ca_dir
serial = $ca_dir/serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none

[ any_name ]
organizationName = optional
commonName = supplied
EOF
    openssl req -new -sha256 -key "$name.key" -subj "/O=dtlspp tests/CN=$common_name" \
        -config "$work/extensions.cnf" -out "$work/$name.csr"
    local signer=()
    if [[ "$issuer" == self ]]; then
        signer=(-selfsign -keyfile "$name.key")
    else
        signer=(-cert "$issuer.pem" -keyfile "$issuer.key")
    fi
    quietly openssl ca -batch -notext -config "$ca_dir/ca.cnf" "${signer[@]}" \
        -startdate "$start" -enddate "$end" -preserveDN \
        -extfile "$work/extensions.cnf" -extensions "$profile" \
        -in "$work/$name.csr" -out "$name.pem"
}

# Roots.
make_ec_key ca.key
issue ca "dtlspp test root CA" self root_ca
make_ec_key other-ca.key
issue other-ca "dtlspp unrelated root CA" self root_ca

# Intermediate under the main root.
make_ec_key intermediate.key
issue intermediate "dtlspp test intermediate CA" ca intermediate_ca

# Leaves.
make_rsa_key server-rsa4096.key 4096
issue server-rsa4096 localhost intermediate server_rsa
cat server-rsa4096.pem intermediate.pem > server-rsa4096-chain.pem

make_ec_key server-ecdsa.key
issue server-ecdsa localhost ca server_ec

make_rsa_key server-rsa2048.key 2048
issue server-rsa2048 localhost ca server_rsa

make_ec_key client.key
issue client dtlspp-client ca client

make_ec_key server-other.key
issue server-other localhost other-ca server_localhost_only

make_ec_key server-expired.key
issue server-expired localhost ca server_ec 20200101000000Z 20210101000000Z

make_ec_key server-wronghost.key
issue server-wronghost not-localhost.example ca server_wrong_host

# Git records no permission bits beyond "executable", so match what a
# checkout produces; these keys protect nothing.
chmod 644 ./*.key

# Self-check: every chain must verify, and the failure cases must fail for
# the intended reason, otherwise the tests built on them prove nothing.
expect_valid() {
    openssl verify "$@" > /dev/null
}

expect_failure() {
    local reason="$1"
    shift
    local output
    if output="$(openssl verify "$@" 2>&1)"; then
        echo "generate.sh: expected verification to fail ($reason): $*" >&2
        exit 1
    fi
    if ! grep -qi "$reason" <<< "$output"; then
        echo "generate.sh: unexpected failure for $*: $output" >&2
        exit 1
    fi
}

expect_valid -CAfile ca.pem intermediate.pem
expect_valid -CAfile ca.pem -untrusted intermediate.pem server-rsa4096.pem
expect_valid -CAfile ca.pem -untrusted intermediate.pem -purpose sslserver server-rsa4096.pem
expect_valid -CAfile ca.pem -purpose sslserver -verify_ip 127.0.0.1 server-ecdsa.pem
expect_valid -CAfile ca.pem -purpose sslserver -verify_ip ::1 server-ecdsa.pem
expect_valid -CAfile ca.pem -purpose sslserver -verify_hostname localhost server-rsa2048.pem
expect_valid -CAfile ca.pem -purpose sslclient client.pem
expect_valid -CAfile other-ca.pem server-other.pem
expect_valid -CAfile ca.pem server-wronghost.pem
expect_failure "certificate has expired" -CAfile ca.pem server-expired.pem
expect_failure "unable to get local issuer certificate" -CAfile ca.pem server-other.pem
expect_failure "unable to get local issuer certificate" -CAfile ca.pem server-rsa4096.pem
expect_failure "hostname mismatch" -CAfile ca.pem -verify_hostname localhost server-wronghost.pem

echo "generate.sh: test PKI regenerated and verified"
