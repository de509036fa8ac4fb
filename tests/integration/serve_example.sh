#!/usr/bin/env bash
# examples/serve_nbd.cc, the NBD server on the engine alone (PoolExports, no EC2 layer), driven by
# real clients: nbdinfo lists the volume by id and by Name and the snapshot; qemu-io writes a
# pattern through the Name and reads it back through the id; the snapshot export is read-only and
# holds what the volume had when it was taken; SIGTERM stops the server with exit 0.
#
# usage: serve_example.sh BUILD_DIR   (exit 77 = skipped: needs nbdinfo and qemu-io)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools nbdinfo qemu-io
example=$build/nbd-server/serve_nbd_example
cli pool create >/dev/null
vol=$(cli create-volume --size 64MiB --name data | field VolumeId)
start --no-volume-limits  # strata-nbd first, to write what the snapshot keeps
qemu-io -f raw -c "write -P 0x11 0 1M" "$(uri "$vol")" >/dev/null
stop_server
snap=$(cli create-snapshot --volume-id "$vol" | field SnapshotId)

"$example" "$pool" "$work/sock" 2>"$work/log" &
pid=$!
for _ in $(seq 200); do [[ -S "$work/sock" ]] && break; sleep 0.05; done
[[ -S "$work/sock" ]] || fail "serve_nbd_example did not start"
nbdinfo --list "nbd+unix:///?socket=$work/sock" >"$work/list"
for name in "$vol" data "$snap"; do
  grep "uri: nbd+unix:///$name?" "$work/list" >/dev/null || fail "LIST lacks $name: $(cat "$work/list")"
done
pass "LIST names the volume by id and by Name, and its snapshot"
qemu-io -f raw -c "write -P 0x22 0 1M" "$(uri data)" >/dev/null || fail "write by Name"
qemu-io -f raw -c "read -P 0x22 0 1M" "$(uri "$vol")" >"$work/out" || fail "read back by id"
grep "read 1048576/1048576" "$work/out" >/dev/null || fail "read: $(cat "$work/out")"
qemu-io -f raw -r -c "read -P 0x11 0 1M" "$(uri "$snap")" >"$work/out" || fail "snapshot read"
if qemu-io -f raw -c "write -P 0x33 0 4k" "$(uri "$snap")" >"$work/out" 2>&1; then
  grep -i "error\|denied\|read-only" "$work/out" >/dev/null || fail "a write to the snapshot went through"
fi
pass "written through the Name, read back through the id; the snapshot holds the old bytes, read-only"
kill -TERM "$pid"
wait "$pid" || fail "serve_nbd_example exited $? on SIGTERM"
pid=
pass "SIGTERM: clean exit"
echo "all serve example checks passed"
