#!/usr/bin/env bash
# Makes X.509 and PSK credentials for TLS tests and benchmarks with GnuTLS's certtool and
# psktool (Debian gnutls-bin), in the layouts qemu, nbdkit, libnbd and strata-nbd read:
#
#   DIR/server/   ca-cert.pem server-cert.pem server-key.pem   (strata-nbd --tls-certificates)
#   DIR/client/   ca-cert.pem client-cert.pem client-key.pem   (libnbd tls-certificates=,
#                                                                qemu tls-creds-x509 dir=)
#   DIR/other-ca/   the same client files under a CA the server does not know
#   DIR/expired/    a client certificate of the right CA that expired in 2020
#   DIR/self-signed/  a client certificate that signs itself
#   DIR/psk/keys.psk  "alice:HEXKEY" (psktool); DIR/wrong-psk/keys.psk  alice with another key;
#   DIR/unknown-psk/keys.psk  bob, whom the server does not know
#
#   tools/test-pki.sh DIR
set -euo pipefail
dir=$1
mkdir -p "$dir"/{ca,server,client,other-ca,expired,self-signed,psk,wrong-psk,unknown-psk}
cd "$dir"
q() { "$@" >/dev/null 2>&1 || { echo "test-pki.sh: $1 failed" >&2; "$@"; exit 1; }; }

ca() {  # ca NAME -> NAME/ca-key.pem NAME/ca-cert.pem
  printf 'cn = Strata test CA %s\nca\ncert_signing_key\nexpiration_days = 365\n' "$1" >"$1/ca.info"
  q certtool --generate-privkey --outfile "$1/ca-key.pem"
  q certtool --generate-self-signed --load-privkey "$1/ca-key.pem" --template "$1/ca.info" \
    --outfile "$1/ca-cert.pem"
}
signed() {  # signed CA_DIR OUT_DIR ROLE TEMPLATE_EXTRA
  local role=$3
  printf 'organization = Strata test\ncn = %s\n%s\nencryption_key\nsigning_key\n%s\n' \
    "$([[ $role == server ]] && echo localhost || echo client)" \
    "$([[ $role == server ]] && printf 'dns_name = localhost\nip_address = 127.0.0.1\ntls_www_server' || echo tls_www_client)" \
    "$4" >"$2/$role.info"
  q certtool --generate-privkey --outfile "$2/$role-key.pem"
  q certtool --generate-certificate --load-ca-certificate "$1/ca-cert.pem" \
    --load-ca-privkey "$1/ca-key.pem" --load-privkey "$2/$role-key.pem" \
    --template "$2/$role.info" --outfile "$2/$role-cert.pem"
}

ca ca
signed ca server server "expiration_days = 365"
cp ca/ca-cert.pem server/
signed ca client client "expiration_days = 365"
cp ca/ca-cert.pem client/
ca other-ca
signed other-ca other-ca client "expiration_days = 365"
cp ca/ca-cert.pem expired/
signed ca expired client \
  "$(printf 'activation_date = "2019-01-01 00:00:00"\nexpiration_date = "2020-01-01 00:00:00"')"
# self-signed: a client certificate with no CA behind it (trusting the right server CA)
printf 'cn = client\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 365\n' \
  >self-signed/client.info
q certtool --generate-privkey --outfile self-signed/client-key.pem
q certtool --generate-self-signed --load-privkey self-signed/client-key.pem \
  --template self-signed/client.info --outfile self-signed/client-cert.pem
cp ca/ca-cert.pem self-signed/
# (other-ca/ keeps its own CA as ca-cert.pem: the server's certificate fails there too)
q psktool -u alice -p psk/keys.psk
q psktool -u alice -p wrong-psk/keys.psk
q psktool -u bob -p unknown-psk/keys.psk
