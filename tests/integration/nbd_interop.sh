#!/usr/bin/env bash
# Real NBD clients against strata-nbd over a unix socket and over TCP: nbdinfo, qemu-img,
# qemu-io (pattern writes/reads, unaligned, FUA), nbdcopy with 4 connections, fio's nbd engine
# with verify, nbdfuse + mkfs.ext4 + e2fsck, read-only refusal, SIGTERM and restart.
#
# usage: nbd_interop.sh BUILD_DIR        (exit 77 = skipped: a client is not installed)
set -euo pipefail
build=$1
strata=$build/tools/strata
server=$build/nbd-server/strata-nbd
for tool in nbdinfo nbdcopy qemu-img qemu-io fio; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

work=$(mktemp -d)
pid=
cleanup() {
  [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
  mountpoint -q "$work/mnt" 2>/dev/null && fusermount3 -u "$work/mnt" || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- server log"; cat "$work/log" 2>/dev/null; exit 1; }
pass() { echo "ok: $*"; }

pool=$work/pool
"$strata" --pool "$pool" pool create --chunk-size 64KiB >/dev/null
vol=$("$strata" --pool "$pool" create-volume --size 256MiB --name disk | sed -n 's/.*"VolumeId": "\(vol-[0-9a-f]*\)".*/\1/p')
[[ "$vol" =~ ^vol-[0-9a-f]{17}$ ]] || fail "create-volume printed no id"

start() {  # start [extra flags]
  "$server" --pool "$pool" --socket "$work/sock" --listen 127.0.0.1:0 "$@" 2>"$work/log" &
  pid=$!
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on tcp 127.0.0.1:\([0-9]*\).*/\1/p' "$work/log")
    [[ -S "$work/sock" && -n "$port" ]] && break
    sleep 0.05
  done
  [[ -n "$port" ]] || fail "server did not start"
  unix="nbd+unix:///$vol?socket=$work/sock"
  tcp="nbd://127.0.0.1:$port/$vol"
}
stop() {
  kill -TERM "$pid"
  wait "$pid" || fail "strata-nbd exited $? on SIGTERM"
  pid=
}

start
for uri in "$unix" "$tcp"; do
  info=$(nbdinfo --json "$uri")
  grep -q '"export-size": 268435456' <<<"$info" || fail "nbdinfo size over $uri"
  grep -q '"can_multi_conn": true' <<<"$info" || fail "multi-conn not advertised"
  grep -q '"block_size_preferred": 65536' <<<"$info" || fail "preferred block size"
  grep -q 'base:allocation' <<<"$info" || fail "no base:allocation"
done
pass "nbdinfo --json over unix and tcp"
nbdinfo --list "nbd+unix:///?socket=$work/sock" | grep "$vol" >/dev/null || fail "nbdinfo --list"
nbdinfo --size "nbd+unix:///disk?socket=$work/sock" | grep -x 268435456 >/dev/null || fail "export by Name"
pass "LIST and export by Name"

for uri in "$unix" "$tcp"; do
  qemu-io -f raw \
    -c 'write -P 0x5a 0 64k' -c 'write -P 0x11 1 511' -c 'write -f -P 0x22 1048576 12288' \
    -c 'write -P 0x33 131071 3' -c 'write -z 196608 65536' \
    -c 'read -P 0x5a 0 1' -c 'read -P 0x11 1 511' -c 'read -P 0x5a 512 65024' \
    -c 'read -P 0x22 1048576 12288' -c 'read -P 0x33 131071 3' -c 'read -P 0 200000 4096' \
    "$uri" >"$work/qemu-io.out" || fail "qemu-io over $uri: $(cat "$work/qemu-io.out")"
  ! grep -qi "fail\|error\|mismatch" "$work/qemu-io.out" || fail "qemu-io: $(cat "$work/qemu-io.out")"
done
pass "qemu-io pattern writes and verified reads (unaligned, FUA, zeroes) over unix and tcp"

map=$(nbdinfo --map "$unix")
grep -Eq "^ *0 +[0-9]+ +0 +data" <<<"$map" || fail "map: first extent not data: $map"
grep -Eq "^ *196608 +[0-9]+ +3 +hole,zero" <<<"$map" || fail "map: zeroed chunk 3 is not a hole: $map"
grep -q "hole,zero" <<<"$map" || fail "map: no holes: $map"
pass "nbdinfo --map shows data and holes"

# A write-zeroes inside a chunk (it must write: the rest of the chunk holds data) shows as
# allocated zeros, so that nbdcopy and qemu-img convert can skip it.
qemu-io -f raw -c 'write -P 0x61 64M 64k' -c 'write -z 67125248 32k' "$unix" >/dev/null ||
  fail "qemu-io write-zeroes inside a chunk"
map=$(nbdinfo --map "$unix")
grep -Eq "^ *$((64 * 1048576 + 16384)) +32768 +2 +zero" <<<"$map" ||
  fail "map: zeroed units of a chunk are not STATE_ZERO: $map"
grep -Eq "^ *$((64 * 1048576 + 49152)) +16384 +0 +data" <<<"$map" || fail "map: after the zeros: $map"
pass "nbdinfo --map shows zeroed units inside a chunk as zero"

head -c 48M /dev/urandom >"$work/src.raw"
truncate -s 256M "$work/src.raw"
qemu-img convert -n -f raw -O raw "$work/src.raw" "$unix" || fail "qemu-img convert"
qemu-img compare -f raw -F raw "$work/src.raw" "$tcp" >/dev/null || fail "qemu-img compare"
qemu-img info "$unix" | grep "virtual size: 256 MiB" >/dev/null || fail "qemu-img info"
pass "qemu-img convert, compare, info"

nbdcopy -C 4 "$tcp" "$work/copy.raw" || fail "nbdcopy out"
cmp "$work/src.raw" "$work/copy.raw" || fail "nbdcopy round trip differs"
head -c 32M /dev/urandom >"$work/src2.raw"
truncate -s 256M "$work/src2.raw"
nbdcopy -C 4 "$work/src2.raw" "$unix" || fail "nbdcopy in"
qemu-img compare -f raw -F raw "$work/src2.raw" "$unix" >/dev/null || fail "nbdcopy in differs"
pass "nbdcopy round trip with 4 connections"

# Every byte written: nbdcopy keeps 64 reads in flight on one connection (all of the server's
# slots, so it stops parsing) and asks BLOCK_STATUS for the next 128 MiB window meanwhile. A reply
# batch used to be resent when a slot's release resumed parsing: the stream broke at 256 MiB.
full=$("$strata" --pool "$pool" create-volume --size 512MiB --name full | sed -n 's/.*"VolumeId": "\(vol-[0-9a-f]*\)".*/\1/p')
head -c 512M /dev/urandom >"$work/full.raw"
nbdcopy -C 1 "$work/full.raw" "nbd+unix:///$full?socket=$work/sock" || fail "nbdcopy of a full volume in"
nbdcopy -C 1 "nbd+unix:///$full?socket=$work/sock" "$work/full.copy" || fail "nbdcopy of a full volume out"
cmp "$work/full.raw" "$work/full.copy" || fail "full-volume round trip differs"
rm -f "$work/full.raw" "$work/full.copy"
"$strata" --pool "$pool" delete-volume --volume-id "$full" >/dev/null || fail "delete the full volume"
pass "nbdcopy of a fully written volume, one connection, reads and block status interleaved"

fio --name=verify --ioengine=nbd --uri="$unix" --rw=randwrite --bs=4k --size=64M --iodepth=32 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 >"$work/fio.out" 2>&1 || fail "fio: $(tail "$work/fio.out")"
grep -q "err= 0" "$work/fio.out" || fail "fio reported errors"
pass "fio --ioengine=nbd with verify=crc32c"

if [[ -e /dev/fuse ]] && command -v nbdfuse >/dev/null && command -v mkfs.ext4 >/dev/null; then
  mkdir -p "$work/mnt"
  nbdfuse "$work/mnt" "$unix" &
  fuse_pid=$!
  for _ in $(seq 100); do [[ -e "$work/mnt/nbd" ]] && break; sleep 0.05; done
  mkfs.ext4 -q -F "$work/mnt/nbd" || fail "mkfs.ext4 through nbdfuse"
  e2fsck -fn "$work/mnt/nbd" >/dev/null || fail "e2fsck through nbdfuse"
  fusermount3 -u "$work/mnt"
  wait "$fuse_pid" || true
  pass "nbdfuse + mkfs.ext4 + e2fsck"
else
  echo "skip: nbdfuse (no /dev/fuse or tools)"
fi

# The CLI while the server holds the pool: through the control socket, same JSON and errors.
[[ "$(stat -c %a "$pool/control.sock")" == 600 ]] || fail "control socket is not mode 0600"
new=$("$strata" --pool "$pool" create-volume --size 64MiB --name second |
  sed -n 's/.*"VolumeId": "\(vol-[0-9a-f]*\)".*/\1/p')
[[ -n "$new" ]] || fail "create-volume through the control socket"
nbdinfo --size "nbd+unix:///second?socket=$work/sock" | grep -x 67108864 >/dev/null || fail "new volume not exported at once"
"$strata" --pool "$pool" describe-volumes | grep "$new" >/dev/null || fail "describe-volumes through the server"
"$strata" --pool "$pool" pool info | grep '"VolumeCount": 2' >/dev/null || fail "pool info through the server"
err=$("$strata" --pool "$pool" describe-volumes --volume-ids vol-00000000000000000 2>&1 >/dev/null) && fail "unknown id accepted"
[[ "$err" == "strata: error: InvalidVolume.NotFound: volume vol-00000000000000000 does not exist" ]] || fail "error differs: $err"
qemu-io -f raw -c 'sleep 3000' "nbd+unix:///second?socket=$work/sock" &
holder=$!
sleep 1
err=$("$strata" --pool "$pool" delete-volume --volume-id "$new" 2>&1) && fail "deleted a volume in use"
grep -q "in use" <<<"$err" || fail "delete of an attached volume: $err"
wait "$holder"
"$strata" --pool "$pool" delete-volume --volume-id "$new" || fail "delete after detach"
"$strata" --pool "$pool" pool check >/dev/null || fail "pool check through the server"
pass "CLI through the control socket: create (exported at once), describe, errors, in-use delete refused"

qemu-io -f raw -c 'write -P 0x77 8M 1M' "$unix" >/dev/null || fail "write before restart"
stop
[[ ! -e "$pool/control.sock" ]] || fail "control socket left behind"
"$strata" --pool "$pool" pool check >/dev/null || fail "pool check after SIGTERM"
start
qemu-io -f raw -r -c 'read -P 0x77 8M 1M' "$tcp" | grep "read 1048576/1048576" >/dev/null || fail "data lost across restart"
pass "SIGTERM exits 0; data survives a restart"
stop

# kill -9 of the server: what a FLUSH (or FUA) acknowledged survives.
start
qemu-io -f raw -c 'write -P 0x99 16M 2M' -c 'flush' -c 'write -f -P 0x98 20M 64k' "$unix" >/dev/null ||
  fail "write + flush before kill -9"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
start
qemu-io -f raw -r -c 'read -P 0x99 16M 2M' -c 'read -P 0x98 20M 64k' "$unix" >"$work/k9.out" ||
  fail "read after kill -9"
grep -q "read 2097152/2097152" "$work/k9.out" && grep -q "read 65536/65536" "$work/k9.out" ||
  fail "flushed data lost after kill -9: $(cat "$work/k9.out")"
"$strata" --pool "$pool" pool check >/dev/null || fail "pool check after kill -9"
pass "kill -9 of the server keeps every flushed and FUA write"
stop

start --read-only
nbdinfo --json "$unix" | grep '"is_read_only": true' >/dev/null || fail "read-only not advertised"
out=$(qemu-io -f raw -c 'write -P 1 0 4k' "$unix" 2>&1 || true)
grep -qi "permission\|not permitted\|read-only\|Operation not" <<<"$out" || fail "write to read-only export: $out"
qemu-io -f raw -r -c 'read -P 0x77 8M 1M' "$unix" >/dev/null || fail "read on read-only export"
pass "read-only export refuses writes, serves reads"
stop
echo "all NBD interop checks passed"
