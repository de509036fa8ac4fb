#!/usr/bin/env bash
# Lazy restores from Ceph RGW (include/strata/hydration.h, docs/remote-format.md "Lazy
# restore"), driven with real clients: create-volume --remote returns at once; debugfs reads the
# restored ext4 file system through nbdfuse while the background pass is still running; qemu-io
# writes during it and they survive a server restart; with RGW stopped, hydrated blocks are
# served and missing ones fail with EIO in bounded time, and the restore finishes once RGW is
# back (then e2fsck is clean); three instances of one remote image fetch it about once.
#
# usage: hydration_interop.sh BUILD_DIR   (needs S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY:
#                                          tools/rgw.sh; exit 77 = skipped)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools nbdcopy qemu-io mkfs.ext4 e2fsck debugfs s3cmd
s3_test_bucket strata-hydrate
rgw=$(cd "$(dirname "$0")/../../tools" && pwd)/rgw.sh
num() { sed -n "s/.*\"$1\": \\([0-9]*\\).*/\\1/p" | head -1; }
now_ms() { date +%s%3N; }
progress_of() { cli describe-volume-status --volume-ids "$1" | num Progress; }
for p in a b c; do
  pool=$work/$p cli pool create >/dev/null
  pool=$work/$p cli remote add shared --url "s3://$bucket" --endpoint-url "$S3_ENDPOINT" >/dev/null
done

# Pool A: an ext4 file system (files, 48 MiB of random data) on a 512 MiB volume, pushed; and an
# image of it, copied.
mkdir -p "$work/tree/docs"
head -c 48M /dev/urandom >"$work/tree/random.bin"
seq 1 300000 >"$work/tree/docs/numbers.txt"
mkfs.ext4 -q -F -b 4096 -d "$work/tree" "$work/fs.img" 512M
pool=$work/a
vol=$(cli create-volume --size 512MiB --volume-type unlimited | field VolumeId)
start --no-volume-limits
nbdcopy "$work/fs.img" "$(uri "$vol")" || fail "nbdcopy into pool A"
stop_server
snap=$(cli create-snapshot --volume-id "$vol" | field SnapshotId)
# (the image's snapshot holds the same bytes: deduplicated, it adds only metadata; `stored` is
# what the data takes in the bucket)
stored=$(cli copy-snapshot --source-snapshot-id "$snap" --destination-remote shared |
  num BytesUploaded)
ami=$(cli import-image --input "$work/fs.img" --name web | field ImageId)
cli copy-image --source-image-id "$ami" --destination-remote shared >/dev/null

# Pool B: the volume is there at once; a first read fetches its block.
pool=$work/b
t0=$(now_ms)
v=$(cli create-volume --snapshot-id "$snap" --remote shared --initialization-rate 2 |
  field VolumeId)
t1=$(now_ms)
((t1 - t0 < 3000)) || fail "create-volume --remote took $((t1 - t0)) ms"
start --no-volume-limits
t2=$(now_ms)
qemu-io -f raw -c "read 300M 4k" "$(uri "$v")" >/dev/null || fail "first read"
t3=$(now_ms)
qemu-io -f raw -c "read 300M 4k" "$(uri "$v")" >/dev/null || fail "second read"
t4=$(now_ms)
pass "create-volume of a 512 MiB remote snapshot: $((t1 - t0)) ms (CLI included); first 4 KiB read $((t3 - t2)) ms, once here $((t4 - t3)) ms (qemu-io start included)"

# Files read back while the background pass (2 MiB/s) is still going.
if [[ -e /dev/fuse ]] && command -v nbdfuse >/dev/null; then
  mkdir -p "$work/mnt"
  nbdfuse -r "$work/mnt" "$(uri "$v")" &
  fuse_pid=$!
  for _ in $(seq 100); do [[ -e "$work/mnt/nbd" ]] && break; sleep 0.05; done
  debugfs -R "cat /docs/numbers.txt" "$work/mnt/nbd" 2>/dev/null |
    cmp - "$work/tree/docs/numbers.txt" || fail "debugfs through nbdfuse: numbers.txt differs"
  fusermount3 -u "$work/mnt"
  wait "$fuse_pid" || true
  how="through nbdfuse"
else
  qemu-img convert -f raw -O raw "$(uri "$v")" "$work/b.raw"  # (no FUSE here: a copy)
  debugfs -R "cat /docs/numbers.txt" "$work/b.raw" 2>/dev/null |
    cmp - "$work/tree/docs/numbers.txt" || fail "debugfs: numbers.txt differs"
  how="from a copy (no /dev/fuse)"
fi
p=$(progress_of "$v")
[[ -n "$p" ]] && ((p < 100)) || fail "the restore was not under way while reading (progress '$p')"
pass "debugfs read /docs/numbers.txt $how while the restore was at $p %"

# Writes during the restore stay (flushed: the durability contract), across a kill -9 of the
# server; the restore resumes without fetching again what had arrived.
qemu-io -f raw -c "write -P 0x77 200M 1M" -c flush "$(uri "$v")" >/dev/null || fail "qemu-io write"
before_kill=$(cli describe-volume-status --volume-ids "$v" | num BytesFetched)
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
start --no-volume-limits
qemu-io -f raw -c "read -P 0x77 200M 1M" "$(uri "$v")" >/dev/null || fail "the write was lost"
pass "qemu-io wrote during the restore; after a kill -9 mid-way the write is there"

# RGW goes away: what is here is served, what is not fails with EIO in bounded time.
if [[ "$S3_ENDPOINT" == "http://127.0.0.1:7480" && -f /tmp/strata-rgw/rgw.pid ]]; then
  "$rgw" stop-gateway
  t0=$(now_ms)
  # The last MiB of random.bin: data, far from where the background pass is.
  cold=$(($(debugfs -R "bmap /random.bin 12000" "$work/fs.img" 2>/dev/null) * 4096))
  ((cold > 0)) || fail "debugfs bmap"
  out=$(qemu-io -f raw -c "read $cold 64k" "$(uri "$v")" 2>&1) &&
    fail "read a missing block at $cold with RGW down: $out"
  t1=$(now_ms)
  [[ "$out" == *"Input/output error"* ]] || fail "not EIO: $out"
  ((t1 - t0 < 30000)) || fail "EIO took $((t1 - t0)) ms"
  qemu-io -f raw -c "read -P 0x77 200M 1M" "$(uri "$v")" >/dev/null ||
    fail "blocks already here were not served with RGW down"
  rgw_env=$("$rgw" start) || fail "tools/rgw.sh start did not bring RGW back"
  eval "$rgw_env"
  pass "RGW down: EIO after $((t1 - t0)) ms for a missing block, hydrated blocks served"
else
  echo "skip: RGW stop/start (S3_ENDPOINT is not this host's tools/rgw.sh)"
fi

# The restore finishes by itself; the file system is whole, the write kept.
# (describe-volume-status shows the restore until it completes, then "completed" or nothing.)
restoring() {
  cli describe-volume-status --volume-ids "$v" | grep -c '"Status": "initializing"' >/dev/null
}
for _ in $(seq 900); do
  restoring || break
  sleep 0.2
done
restoring && fail "the restore did not finish: $(cli describe-volume-status --volume-ids "$v")"
nbdcopy "$(uri "$v")" "$work/b.raw" || fail "nbdcopy of the restored volume"
# Every byte is the image's but the MiB qemu-io wrote, which is all 0x77.
cmp <(head -c 200M "$work/b.raw") <(head -c 200M "$work/fs.img") || fail "restored data differs"
cmp <(tail -c +$((201 * 1048576 + 1)) "$work/b.raw") \
  <(tail -c +$((201 * 1048576 + 1)) "$work/fs.img") || fail "restored data after the write differs"
cmp <(dd if="$work/b.raw" bs=1M skip=200 count=1 2>/dev/null) \
  <(head -c 1M /dev/zero | tr '\0' '\167') || fail "the write is not there"
after_kill=$(cli describe-volume-status --volume-ids "$v" | num BytesFetched)
stop_server
((before_kill + after_kill <= stored * 21 / 20)) ||
  fail "fetched $before_kill + $after_kill bytes around the kill; the data is $stored"
pass "the restore finished after RGW came back: every byte right, the write kept; $before_kill + $after_kill bytes fetched around the kill -9 ($(((before_kill + after_kill) * 100 / stored)) % of the data)"

# Three instances of one remote image on pool C: the image is fetched about once.
pool=$work/c
cli run-instances --image-id "$ami" --remote shared --count 3 >"$work/run.json" ||
  fail "run-instances --remote"
start --no-volume-limits
n=0
for i in $(grep -o '"InstanceId": "i-[0-9a-f]*"' "$work/run.json" | cut -d'"' -f4 | sort -u); do
  nbdcopy "$(uri "$i/xvda")" "$work/root.raw" || fail "nbdcopy of $i"
  cmp "$work/root.raw" "$work/fs.img" || fail "$i's root differs from the image"
  n=$((n + 1))
done
((n == 3)) || fail "$n instances"
fetched=$(cli describe-volume-status | num BytesFetched)
stop_server
[[ -n "$fetched" ]] || fail "describe-volume-status shows no BytesFetched"
((fetched <= stored * 5 / 4)) || fail "3 instances fetched $fetched bytes; the image is $stored"
e2fsck -fn "$work/root.raw" >/dev/null || fail "e2fsck of an instance's root"
pass "three instances of one remote image fetched $fetched bytes ($((fetched * 100 / stored)) % of the image as stored); e2fsck clean"
echo "all hydration checks passed"
