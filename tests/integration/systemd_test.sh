#!/usr/bin/env bash
# strata-nbd under socket activation, as systemd runs it (packaging/systemd/): started by
# systemd-socket-activate with the listening socket in LISTEN_FDS (unix, then TCP), no --socket or
# --listen given; a real client (nbdinfo, nbdcopy) is served on the inherited socket; READY=1
# reaches NOTIFY_SOCKET once the server accepts; SIGTERM ends it cleanly.
#
# usage: systemd_test.sh BUILD_DIR   (exit 77 = skipped)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools systemd-socket-activate nbdinfo nbdcopy python3
cli pool create >/dev/null
vol=$(cli create-volume --size 64MiB --volume-type unlimited | field VolumeId)
head -c 4M /dev/urandom >"$work/data"

# A NOTIFY_SOCKET listener: prints what the service says.
python3 - "$work/notify" >"$work/notified" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
try:
    while True:
        print(s.recv(4096).decode(), flush=True)
except socket.timeout:
    pass
EOF
notify_pid=$!
for _ in $(seq 100); do [[ -S "$work/notify" ]] && break; sleep 0.05; done

systemd-socket-activate -l "$work/sock" -E NOTIFY_SOCKET="$work/notify" \
  "$server" --pool "$pool" --no-volume-limits 2>"$work/log" &
pid=$!
for _ in $(seq 100); do [[ -S "$work/sock" ]] && break; sleep 0.05; done
nbdcopy "$work/data" "$(uri "$vol")" || fail "nbdcopy through the inherited unix socket"
nbdcopy "$(uri "$vol")" "$work/back" || fail "nbdcopy back"
cmp <(head -c 4M "$work/back") "$work/data" || fail "what came back differs"
grep -q "listening on inherited unix socket" "$work/log" || fail "no inherited-socket log line"
! grep -q "listening on tcp" "$work/log" || fail "a default TCP listener was opened too"
for _ in $(seq 100); do grep -q "READY=1" "$work/notified" && break; sleep 0.05; done
grep -q "READY=1" "$work/notified" || fail "no READY=1 on NOTIFY_SOCKET"
kill -TERM "$pid"
wait "$pid" || fail "strata-nbd did not stop cleanly on SIGTERM"
pid=
grep -q "STOPPING=1" "$work/notified" || fail "no STOPPING=1"
pass "socket activation (unix): served on the inherited socket, READY=1 and STOPPING=1 sent"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
systemd-socket-activate -l "127.0.0.1:$port" "$server" --pool "$pool" --no-volume-limits \
  2>"$work/log" &
pid=$!
for _ in $(seq 100); do
  nbdinfo "nbd://127.0.0.1:$port/$vol" >"$work/out" 2>/dev/null && break
  sleep 0.1
done
grep -q "export-size: 67108864" "$work/out" || fail "nbdinfo over the inherited TCP socket"
kill -TERM "$pid"
wait "$pid" || true
pid=
kill "$notify_pid" 2>/dev/null || true
pass "socket activation (TCP on loopback): served"
echo "all systemd checks passed"
