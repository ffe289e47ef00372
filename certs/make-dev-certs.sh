#!/usr/bin/env bash
# Makes a development CA and a server certificate signed by it, in this script's own folder:
#
#   dev-ca.crt / dev-ca.key   the CA your test clients trust (swaks --tls-ca-path, curl --cacert)
#   server.crt / server.key   for mailtrail's listener: localhost, 127.0.0.1, ::1 + any extra names
#
# Usage: certs/make-dev-certs.sh [--force] [extra-name ...]
#   extra names are DNS names (mail.dev.example, *.dev.example) or IP addresses (10.0.0.5, fd00::5)
#   --force   replace existing files (otherwise existing ones are kept and the script does nothing)
#
# Needs only the openssl CLI (1.1.1 or 3.x). EC P-256 keys, valid 825 days (the longest validity
# Apple platforms accept for a server certificate). For development and tests only.
set -euo pipefail

DAYS=825
force=0
extra=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help)
      sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*) echo "unknown option: $arg (try --help)" >&2; exit 2 ;;
    *) extra+=("$arg") ;;
  esac
done

command -v openssl >/dev/null 2>&1 || { echo "openssl not found: install it (e.g. apt-get install openssl)" >&2; exit 1; }

cd "$(dirname "$0")"
umask 077 # keys readable by their owner only

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in ${extra[@]+"${extra[@]}"}; do
  if [[ "$name" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || "$name" == *:* ]]; then
    san+=",IP:$name"
  elif [[ "$name" =~ ^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
    san+=",DNS:$name"
  else
    echo "not a host name or IP address: $name" >&2
    exit 2
  fi
done

if [[ $force -eq 0 && -f dev-ca.crt && -f dev-ca.key && -f server.crt && -f server.key ]]; then
  echo "certs: dev-ca.crt and server.crt already exist; nothing to do (use --force to replace them)."
  if [[ ${#extra[@]} -gt 0 ]]; then
    echo "certs: note that extra names only take effect with --force." >&2
  fi
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# openssl is chatty on stderr even when it works: show its output only when it fails
run() {
  local out
  if ! out="$("$@" 2>&1)"; then
    echo "$out" >&2
    echo "certs: openssl failed: $*" >&2
    exit 1
  fi
}

cat >"$tmp/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $san
EOF

ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

# A new CA only if there is none (or --force): keeps clients that already trust it working.
if [[ $force -eq 1 || ! -f dev-ca.crt || ! -f dev-ca.key ]]; then
  run openssl req -x509 "${ec[@]}" -config "$tmp/openssl.cnf" -extensions v3_ca -days "$DAYS" \
    -subj "/CN=mailtrail development CA $(date -u +%Y-%m-%d)" \
    -set_serial "0x1$(openssl rand -hex 15)" \
    -keyout "$tmp/dev-ca.key" -out "$tmp/dev-ca.crt"
  mv "$tmp/dev-ca.key" dev-ca.key
  mv "$tmp/dev-ca.crt" dev-ca.crt
  echo "certs: made dev-ca.crt / dev-ca.key"
fi

run openssl req -new "${ec[@]}" -config "$tmp/openssl.cnf" -subj "/CN=localhost" \
  -keyout "$tmp/server.key" -out "$tmp/server.csr"
run openssl x509 -req -in "$tmp/server.csr" -CA dev-ca.crt -CAkey dev-ca.key \
  -set_serial "0x1$(openssl rand -hex 15)" -days "$DAYS" -sha256 \
  -extfile "$tmp/openssl.cnf" -extensions v3_server -out "$tmp/server.crt"
mv "$tmp/server.key" server.key
mv "$tmp/server.crt" server.crt
chmod 644 dev-ca.crt server.crt

echo "certs: made server.crt / server.key for ${san//,/, }"
echo "certs: valid $DAYS days; trust dev-ca.crt in your test clients (see certs/README.md)."
