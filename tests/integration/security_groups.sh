#!/usr/bin/env bash
# Security groups guarding an instance's NBD exports over TCP (docs/security.md), with nbdinfo
# and qemu-img from 127.0.0.1 and a small NBD client (python3) that binds its source address in
# the loopback range (127.0.0.2), as the issue asks. A group with no rules admits nothing; a rule
# admits its CIDR on its ports; changes apply to the next connection; refusals are ERR_POLICY
# with a log line naming the address and the groups; LIST shows a peer only what it may open;
# the unix socket (this host, mode 0600) is not subject to address rules.
#
# usage: security_groups.sh BUILD_DIR   (exit 77 = skipped)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools nbdinfo qemu-img python3
cli pool create >/dev/null
head -c 4M /dev/urandom >"$work/root.img"
ami=$(cli import-image --input "$work/root.img" --name web | field ImageId)
sg=$(cli create-security-group --group-name web --description "web servers" | field GroupId)
[[ $sg == sg-* ]] || fail "create-security-group: $sg"
inst=$(cli run-instances --image-id "$ami" --security-group-ids "$sg" | field InstanceId)
vol=$(cli describe-instances --instance-ids "$inst" | field VolumeId)
cli describe-instances --instance-ids "$inst" | grep -q "\"GroupId\": \"$sg\"" ||
  fail "describe-instances does not show the group"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start --listen "127.0.0.1:$port" --no-volume-limits
tcp() { echo "nbd://127.0.0.1:$port/$1"; }
# nbd_go SOURCE EXPORT: prints "ok <first 16 bytes hex>" or "refused <NBD error> <message>".
nbd_go() {
  python3 - "$1" "$port" "$2" <<'EOF'
import socket, struct, sys
source, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket()
s.settimeout(10)
s.bind((source, 0))
s.connect(("127.0.0.1", port))
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise SystemExit("server closed")
        b += c
    return b
recv(18)
s.sendall(struct.pack(">I", 3))
s.sendall(b"IHAVEOPT" + struct.pack(">II", 7, 4 + len(name) + 2) + struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
while True:
    _, _, rtype, length = struct.unpack(">QIII", recv(20))
    body = recv(length)
    if rtype == 1:
        break
    if rtype & 0x80000000:
        print("refused", hex(rtype), body.decode(errors="replace"))
        sys.exit(0)
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 1, 0, 16))  # READ 16 bytes at 0
magic, err, cookie = struct.unpack(">IIQ", recv(16))
print("ok" if err == 0 else "error", recv(16).hex())
EOF
}
want_head=$(head -c 16 "$work/root.img" | xxd -p)

# No rules: nothing is admitted over TCP, by instance device or by volume id.
out=$(nbd_go 127.0.0.1 "$inst/xvda")
[[ $out == "refused 0x80000002"* ]] || fail "a group with no rules admitted 127.0.0.1: $out"
[[ $out == *"$sg"* && $out == *"admits 127.0.0.1 to tcp port $port"* ]] ||
  fail "the refusal does not name the group, address and port: $out"
if nbdinfo "$(tcp "$vol")" >"$work/out" 2>&1; then fail "the root volume by its id was admitted"; fi
grep -q "refused.*no inbound rule.*$sg" "$work/log" || fail "no log line for the refusal"
if nbdinfo --list "$(tcp "")" 2>/dev/null | grep -q "$inst"; then
  fail "LIST showed the instance's export to a peer it does not admit"
fi
nbdinfo "nbd+unix:///$inst/xvda?socket=$work/sock" >/dev/null || fail "the unix socket was refused"
pass "no rules: 127.0.0.1 refused (ERR_POLICY, logged, not listed); the unix socket admitted"

# A rule for 127.0.0.1/32 on the port: 127.0.0.1 in, 127.0.0.2 out.
cli authorize-security-group-ingress --group-id "$sg" --protocol tcp --port "$port" \
  --cidr 127.0.0.1/32 >/dev/null
out=$(nbd_go 127.0.0.1 "$inst/xvda")
[[ $out == "ok $want_head" ]] || fail "127.0.0.1/32 did not admit 127.0.0.1: $out"
qemu-img info "$(tcp "$inst/xvda")" >/dev/null || fail "qemu-img from 127.0.0.1"
nbdinfo --list "$(tcp "")" | grep -q "$inst" || fail "LIST hides the export from an admitted peer"
out=$(nbd_go 127.0.0.2 "$inst/xvda")
[[ $out == "refused 0x80000002"*"127.0.0.2"* ]] || fail "127.0.0.2 was admitted by 127.0.0.1/32: $out"
pass "a 127.0.0.1/32 rule admits 127.0.0.1 (python, qemu-img, LIST) and refuses 127.0.0.2"

# The wider rule admits 127.0.0.2; a rule on other ports does not; revoking applies at once.
cli authorize-security-group-ingress --group-id "$sg" --port 1-100 --cidr 127.0.0.0/8 >/dev/null
out=$(nbd_go 127.0.0.2 "$inst/xvda")
[[ $out == refused* ]] || fail "a rule for ports 1-100 admitted port $port: $out"
cli authorize-security-group-ingress --group-id "$sg" --port "$port" --cidr 127.0.0.0/8 >/dev/null
out=$(nbd_go 127.0.0.2 "$inst/xvda")
[[ $out == "ok $want_head" ]] || fail "127.0.0.0/8 did not admit 127.0.0.2: $out"
cli revoke-security-group-ingress --group-id "$sg" --port "$port" --cidr 127.0.0.0/8 >/dev/null
out=$(nbd_go 127.0.0.2 "$inst/xvda")
[[ $out == refused* ]] || fail "a revoked rule still admitted 127.0.0.2: $out"
pass "127.0.0.0/8 admits 127.0.0.2 on the port, not on others; revoking applies to the next connection"

# Groups in use cannot be deleted; modify-instance-attribute --groups replaces them.
refused "DependencyViolation" delete-security-group --group-id "$sg"
open=$(cli create-security-group --group-name open --description "anyone on loopback" | field GroupId)
cli authorize-security-group-ingress --group-id "$open" --protocol -1 --cidr 127.0.0.0/8 >/dev/null
cli modify-instance-attribute --instance-id "$inst" --groups "$open" >/dev/null
out=$(nbd_go 127.0.0.2 "$inst/xvda")
[[ $out == "ok $want_head" ]] || fail "the new group (all protocols, 127/8) did not admit: $out"
cli delete-security-group --group-id "$sg" >/dev/null || fail "delete of the unused group"
cli describe-security-groups --group-ids "$open" | grep -q '"IpProtocol": "-1"' ||
  fail "describe-security-groups does not show the rule"
refused "not a CIDR" authorize-security-group-ingress --group-id "$open" --port 1 --cidr 10.0.0.300/8
refused "does not exist" authorize-security-group-ingress --group-id sg-00000000000000000 \
  --port 1 --cidr 10.0.0.0/8
stop_server
pass "a group in use is not deleted; --groups replaces the instance's; bad rules are refused"
echo "all security group checks passed"
