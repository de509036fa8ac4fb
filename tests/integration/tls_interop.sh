#!/usr/bin/env bash
# TLS on NBD (nbd-server/tls.h, docs/security.md) with real clients: libnbd's nbdinfo and
# nbdcopy (nbds+unix:// with tls-certificates= and tls-psk-file=), qemu-img and qemu-io
# (tls-creds-x509, tls-creds-psk). Credentials from tools/test-pki.sh (certtool, psktool).
# Checks: data round trips under TLS, multi-conn included; with --tls=require a plaintext
# client learns nothing (no export name, no size); a wrong CA, an expired, a self-signed or a
# missing client certificate, a wrong PSK and an unknown PSK identity are refused with a log
# line saying why; garbage after STARTTLS ends only that connection; --tls=on serves both.
#
# usage: tls_interop.sh BUILD_DIR   (exit 77 = skipped)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools nbdinfo nbdcopy qemu-img qemu-io certtool psktool python3
"$(dirname "$0")/../../tools/test-pki.sh" "$work/pki"
pki=$work/pki
cli pool create >/dev/null
vol=$(cli create-volume --size 64MiB --volume-type unlimited | field VolumeId)
tls_uri() { echo "nbds+unix:///$vol?socket=$work/sock&tls-certificates=$pki/$1"; }
psk_uri() { echo "nbds+unix://${2:-alice}@/$vol?socket=$work/sock&tls-psk-file=$pki/$1/keys.psk"; }
qemu_x509() { echo "tls-creds-x509,id=tls0,endpoint=client,dir=$pki/$1"; }
qemu_opts() { echo "driver=nbd,server.type=unix,server.path=$work/sock,export=$vol,tls-creds=tls0,tls-hostname=localhost"; }
# Fails unless the client command fails, and the server logs `reason` for it.
client_refused() {
  local what=$1 reason=$2
  shift 2
  local before
  before=$(grep -c "" "$work/log" || true)
  if "$@" >"$work/out" 2>&1; then fail "$what: admitted"; fi
  if grep -q "export-size" "$work/out"; then fail "$what: the size leaked"; fi
  for _ in $(seq 50); do
    tail -n +"$((before + 1))" "$work/log" | grep -q -- "$reason" && return 0
    sleep 0.1
  done
  fail "$what: refused, but the server did not log '$reason'"
}

head -c 8M /dev/urandom >"$work/data"

# X.509, TLS required (the default once credentials are given).
start --tls-certificates "$pki/server" --no-volume-limits
grep -q "TLS required (X.509)" "$work/log" || fail "the start line does not say TLS is required"
nbdcopy "$work/data" "$(tls_uri client)" || fail "nbdcopy into the export over TLS"
nbdcopy --connections=4 "$(tls_uri client)" "$work/back" || fail "nbdcopy out, 4 connections"
cmp <(head -c 8M "$work/back") "$work/data" || fail "what came back over TLS differs"
nbdinfo "$(tls_uri client)" | grep "protocol:.*with TLS" >/dev/null || fail "nbdinfo: not TLS"
nbdinfo --list "nbds+unix:///?socket=$work/sock&tls-certificates=$pki/client" | grep "$vol" \
  >/dev/null || fail "LIST over TLS does not show the volume"
qemu-io --object "$(qemu_x509 client)" --image-opts "$(qemu_opts)" \
  -c "write -P 0x5a 1M 64k" -c "read -P 0x5a 1M 64k" -c "flush" >"$work/out" ||
  fail "qemu-io over TLS: $(cat "$work/out")"
qemu-io -f raw -c "write -P 0x5a 1M 64k" "$work/data" >/dev/null  # the reference follows
qemu-img info --object "$(qemu_x509 client)" --image-opts "$(qemu_opts)" | grep "64 MiB" \
  >/dev/null || fail "qemu-img info over TLS"
pass "X.509: nbdcopy (1 and 4 connections), nbdinfo, LIST, qemu-io and qemu-img work over TLS"

client_refused "a plaintext client" "TLS is required" nbdinfo "nbd+unix:///$vol?socket=$work/sock"
if nbdinfo --list "nbd+unix:///?socket=$work/sock" >"$work/out" 2>&1 ||
  grep -q "$vol" "$work/out"; then
  fail "a plaintext LIST showed exports"
fi
if out=$(qemu-img info "nbd+unix:///$vol?socket=$work/sock" 2>&1); then
  fail "qemu-img in plaintext was admitted"
fi
[[ "$out" == *TLS* ]] || fail "qemu-img's refusal does not mention TLS: $out"
pass "with --tls=require a plaintext client gets no export name or size (qemu-img: ${out##*: })"
# (qemu checks the server's certificate; libnbd does not over a unix socket, having no host name)
if out=$(qemu-img info --object "$(qemu_x509 other-ca)" --image-opts "$(qemu_opts)" 2>&1); then
  fail "a client trusting another CA accepted the server's certificate"
fi
pass "a client trusting another CA refuses the server (qemu-img: ${out##*: })"

# Garbage after STARTTLS ends that connection only.
python3 - "$work/sock" <<'EOF' || fail "garbage after STARTTLS: the server did not close"
import os, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(15)
s.connect(sys.argv[1])
s.recv(18)
s.sendall(struct.pack(">I", 3))                                   # fixed newstyle, no zeroes
s.sendall(b"IHAVEOPT" + struct.pack(">II", 5, 0))                 # STARTTLS
reply = s.recv(20)
assert struct.unpack(">QIII", reply)[2] == 1, reply               # ACK
try:
    s.sendall(os.urandom(4096))
    while s.recv(4096):
        pass
except ConnectionResetError:  # closed with our bytes unread
    pass
EOF
grep -q "TLS handshake \(failed\|timed out\)" "$work/log" || fail "no log line for the broken handshake"
nbdinfo "$(tls_uri client)" >/dev/null || fail "the server did not survive garbage after STARTTLS"
pass "garbage after STARTTLS: that connection closed with a log line; the server serves on"
stop_server

# Client certificates required.
start --tls-certificates "$pki/server" --tls-verify-peer --no-volume-limits
nbdcopy "$(tls_uri client)" "$work/back" || fail "a client with a good certificate"
cmp <(head -c 8M "$work/back") "$work/data" || fail "what came back differs"
mkdir -p "$work/no-cert" && cp "$pki/ca/ca-cert.pem" "$work/no-cert/"
client_refused "no client certificate" "TLS handshake failed" \
  nbdinfo "nbds+unix:///$vol?socket=$work/sock&tls-certificates=$work/no-cert"
client_refused "an expired client certificate" "expired" nbdinfo "$(tls_uri expired)"
client_refused "a self-signed client certificate" "TLS handshake failed" \
  nbdinfo "$(tls_uri self-signed)"
qemu-io --object "$(qemu_x509 client)" --image-opts "$(qemu_opts)" -c "read -P 0x5a 1M 64k" \
  >/dev/null || fail "qemu-io with a client certificate"
pass "--tls-verify-peer: a signed client certificate reads; none, expired, self-signed are refused"
stop_server

# PSK.
start --tls-psk "$pki/psk/keys.psk" --no-volume-limits
nbdcopy "$(psk_uri psk)" "$work/back" || fail "nbdcopy with the PSK"
cmp <(head -c 8M "$work/back") "$work/data" || fail "what came back over PSK differs"
client_refused "a wrong PSK" "TLS handshake failed" nbdinfo "$(psk_uri wrong-psk)"
client_refused "an unknown PSK identity" "PSK identity 'bob'" nbdinfo "$(psk_uri unknown-psk bob)"
qemu-img info --object "tls-creds-psk,id=tls0,endpoint=client,dir=$pki/psk,username=alice" \
  --image-opts "$(qemu_opts)" | grep "64 MiB" >/dev/null || fail "qemu-img with tls-creds-psk"
pass "PSK: nbdcopy and qemu-img with alice's key; a wrong key and an unknown identity refused"
stop_server

# --tls=on: both.
start --tls=on --tls-certificates "$pki/server" --no-volume-limits
nbdinfo "nbd+unix:///$vol?socket=$work/sock" | grep "without TLS" >/dev/null ||
  fail "--tls=on refused a plaintext client"
nbdinfo "$(tls_uri client)" | grep "with TLS" >/dev/null || fail "--tls=on: TLS client"
stop_server
pass "--tls=on serves plaintext and TLS clients"

# Key pairs: an instance launched with one admits only a client that proves it over TLS.
head -c 1M /dev/urandom >"$work/root.img"
ami=$(cli import-image --input "$work/root.img" --name web | field ImageId)
cli create-key-pair --key-name k1 >"$work/k1.json"
mkdir -p "$work/k1"
python3 - "$work/k1.json" "$work/k1" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["KeyMaterial"]
i = m.index("-----BEGIN", 10)  # the certificate, then its private key
open(sys.argv[2] + "/client-cert.pem", "w").write(m[:i])
open(sys.argv[2] + "/client-key.pem", "w").write(m[i:])
EOF
# ca-cert.pem: the server's CA (libnbd and qemu check the server) and the key pair's issuer
# (qemu checks its own certificate too)
{ cat "$pki/ca/ca-cert.pem"; python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["CaCertificate"], end="")' "$work/k1.json"; } >"$work/k1/ca-cert.pem"
material() { python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["KeyMaterial"])'; }
cli create-key-pair --key-name k2 --key-type psk | material >"$work/k2.psk"
grep -q "^k2:[0-9a-f]\{64\}$" "$work/k2.psk" || fail "a PSK key pair's material: $(cat "$work/k2.psk")"
i1=$(cli run-instances --image-id "$ami" --key-name k1 | field InstanceId)
i2=$(cli run-instances --image-id "$ami" --key-name k2 | field InstanceId)
cli describe-key-pairs | grep -q '"KeyType": "psk"' || fail "describe-key-pairs"
cli describe-instances --instance-ids "$i1" | grep -q '"KeyName": "k1"' || fail "KeyName"
start --tls-certificates "$pki/server" --no-volume-limits  # (no --tls-psk: key pairs suffice)
key_uri() { echo "nbds+unix:///$1/xvda?socket=$work/sock&tls-certificates=$2"; }
nbdcopy "$(key_uri "$i1" "$work/k1")" "$work/back" || fail "k1's certificate did not open $i1"
cmp "$work/back" "$work/root.img" || fail "$i1 read through k1 differs"
client_refused "a certificate of the server's CA, not k1" "launched with key pair 'k1'" \
  nbdinfo "$(key_uri "$i1" "$pki/client")"
nbdcopy "nbds+unix://k2@/$i2/xvda?socket=$work/sock&tls-psk-file=$work/k2.psk" "$work/back" ||
  fail "k2's PSK did not open $i2"
cmp "$work/back" "$work/root.img" || fail "$i2 read through k2 differs"
client_refused "k1 for an instance of k2" "this client proved 'k1'" \
  nbdinfo "$(key_uri "$i2" "$work/k1")"
qemu-img info --object "tls-creds-x509,id=tls0,endpoint=client,dir=$work/k1" --image-opts \
  "driver=nbd,server.type=unix,server.path=$work/sock,export=$i1/xvda,tls-creds=tls0,tls-hostname=localhost" \
  >/dev/null || fail "qemu-img with k1"
# A key pair made while the server runs (through its control socket) works at once.
cli create-key-pair --key-name k3 --key-type psk | material >"$work/k3.psk"
client_refused "k3 (a new key) for k2's instance" "this client proved 'k3'" \
  nbdinfo "nbds+unix://k3@/$i2/xvda?socket=$work/sock&tls-psk-file=$work/k3.psk"
i3=$(cli run-instances --image-id "$ami" --key-name k3 | field InstanceId)
nbdinfo "nbds+unix://k3@/$i3/xvda?socket=$work/sock&tls-psk-file=$work/k3.psk" >/dev/null ||
  fail "a key pair made while the server runs"
stop_server
pass "key pairs: k1 (certificate: nbdcopy, qemu-img), k2 and k3 (PSK, k3 made while serving) open their instances only"

# Bad credentials at start: a clear error, exit 2.
for args in "--tls-certificates $work/nowhere" "--tls-psk $pki/server/server.info" \
  "--tls=require" "--tls-verify-peer --tls-psk $pki/psk/keys.psk"; do
  # shellcheck disable=SC2086
  if "$server" --pool "$pool" --socket "$work/sock2" $args 2>"$work/err"; then
    fail "strata-nbd $args started"
  fi
  grep -q "error: " "$work/err" || fail "strata-nbd $args: no error line"
  echo "  strata-nbd $args: $(cat "$work/err")"
done
pass "bad TLS configuration stops strata-nbd with a clear error"

# Listeners: a non-loopback TCP address needs TLS required or --allow-insecure-tcp.
if "$server" --pool "$pool" --listen 0.0.0.0:0 2>"$work/err"; then
  fail "strata-nbd listened on 0.0.0.0 in plaintext"
fi
grep -q "allow-insecure-tcp" "$work/err" || fail "the refusal does not name --allow-insecure-tcp"
for args in "--allow-insecure-tcp" "--tls-certificates $pki/server"; do
  rm -f "$work/sock"
  # shellcheck disable=SC2086
  "$server" --pool "$pool" --listen 0.0.0.0:0 --socket "$work/sock" $args 2>"$work/log" &
  pid=$!
  # The unix socket is made first, the TCP listener (and its log line) after: wait for the line.
  for _ in $(seq 200); do grep -q "listening on tcp 0.0.0.0" "$work/log" && break; sleep 0.05; done
  grep -q "listening on tcp 0.0.0.0" "$work/log" || fail "0.0.0.0 with $args did not listen"
  stop_server
done
start --socket-mode 0660 --socket-group "$(id -gn)"
[[ $(stat -c %a "$work/sock") == 660 ]] || fail "--socket-mode 0660: $(stat -c %a "$work/sock")"
stop_server
if "$server" --pool "$pool" --socket "$work/sock" --socket-mode 0066 2>"$work/err"; then
  fail "--socket-mode 0066 accepted"
fi
pass "0.0.0.0 needs TLS or --allow-insecure-tcp; --socket-mode and --socket-group apply"
echo "all TLS checks passed"
