#!/usr/bin/env bash
# Snapshots with real clients: the CLI through strata-nbd's control socket takes and lists them;
# qemu-img, qemu-io, nbdcopy and nbdinfo read the read-only snapshot exports and the clones; the
# changed-block list is checked against what qemu-io wrote; a kill -9 after create-snapshot loses
# nothing.
#
# usage: snapshot_interop.sh BUILD_DIR        (exit 77 = skipped: a client is not installed)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools nbdinfo nbdcopy qemu-img qemu-io

cli pool create --chunk-size 64KiB >/dev/null
vol=$(cli create-volume --size 64MiB --name disk | field VolumeId)

start
# Content: 24 MiB of random data with holes, written by nbdcopy.
head -c 24M /dev/urandom >"$work/v1.raw"
truncate -s 64M "$work/v1.raw"
nbdcopy "$work/v1.raw" "$(uri "$vol")" || fail "nbdcopy into the volume"
s1=$(cli create-snapshot --volume-id "$vol" --description "first" | field SnapshotId)
[[ "$s1" =~ ^snap-[0-9a-f]{17}$ ]] || fail "create-snapshot printed no id"
pass "create-snapshot through the control socket ($s1)"

# Change the volume: two 64 KiB chunks and one trimmed chunk.
qemu-io -f raw -c 'write -P 0x77 1048576 4096' -c 'write -P 0x78 33554432 65536' \
  -c 'discard 2097152 65536' "$(uri "$vol")" >/dev/null || fail "qemu-io writes after the snapshot"
cp "$work/v1.raw" "$work/v2.raw"
qemu-io -f raw -c 'write -P 0x77 1048576 4096' -c 'write -P 0x78 33554432 65536' \
  -c 'write -z 2097152 65536' "$work/v2.raw" >/dev/null
s2=$(cli create-snapshot --volume-id disk | field SnapshotId)

qemu-img compare -f raw -F raw "$work/v1.raw" "$(uri "$s1")" >/dev/null ||
  fail "snapshot $s1 differs from what was written before it"
qemu-img compare -f raw -F raw "$work/v2.raw" "$(uri "$s2")" >/dev/null || fail "snapshot $s2"
qemu-img compare -f raw -F raw "$work/v2.raw" "$(uri "$vol")" >/dev/null || fail "volume"
pass "qemu-img compare: each snapshot export holds its point in time"

info=$(nbdinfo --json "$(uri "$s1")")
grep -q '"is_read_only": true' <<<"$info" || fail "snapshot export is not read-only: $info"
grep -q '"export-size": 67108864' <<<"$info" || fail "snapshot export size"
qemu-io -f raw -c 'write 0 4096' "$(uri "$s1")" >"$work/err" 2>&1 || true
grep -Eqi "read-only|not permitted|permission denied" "$work/err" || fail "write to a snapshot: $(cat "$work/err")"
qemu-img compare -f raw -F raw "$work/v1.raw" "$(uri "$s1")" >/dev/null || fail "a write reached a snapshot"
nbdinfo --map "$(uri "$s1")" | grep "hole,zero" >/dev/null || fail "snapshot map shows no holes"
nbdinfo --list "nbd+unix:///?socket=$work/sock" | grep "$s1" >/dev/null || fail "LIST lacks the snapshot"
pass "snapshot exports are read-only, listed, with base:allocation holes"

nbdcopy -C 4 "$(uri "$s1")" "$work/s1.copy" || fail "nbdcopy of the snapshot export"
cmp "$work/v1.raw" "$work/s1.copy" || fail "nbdcopy of $s1 differs"
pass "nbdcopy of a snapshot export"

changed=$(cli list-changed-blocks --first-snapshot-id "$s1" --second-snapshot-id "$s2")
idx=$(grep -o '"BlockIndex": [0-9]*' <<<"$changed" | awk '{print $2}' | tr '\n' ' ')
[[ "$idx" == "16 32 512 " ]] || fail "list-changed-blocks gave '$idx': $changed"
coarse=$(cli list-changed-blocks --first-snapshot-id "$s1" --second-snapshot-id "$s2" \
  --block-size 524288 --max-results 1)
grep -q '"NextToken": "4"' <<<"$coarse" || fail "pagination at 512 KiB: $coarse"
grep -q '"BlockSize": 524288' <<<"$coarse" || fail "block size: $coarse"
cli list-snapshot-blocks --snapshot-id "$s1" | grep '"BlockIndex": 383' >/dev/null || fail "list-snapshot-blocks"
cli get-snapshot-block --snapshot-id "$s2" --block-index 512 --outfile "$work/block" >/dev/null
cmp "$work/block" <(dd if="$work/v2.raw" bs=64K skip=512 count=1 status=none) ||
  fail "get-snapshot-block bytes"
pass "list-changed-blocks, list-snapshot-blocks, get-snapshot-block"

# The same changes as qemu's dirty-bitmap meta context, on the volume and on the later snapshot.
for export in "$vol" "$s2"; do
  dirty=$(nbdinfo --map="qemu:dirty-bitmap:$s1" "$(uri "$export")" | awk '$3 == 1 {print $1 "+" $2}' | tr '\n' ' ')
  [[ "$dirty" == "1048576+65536 2097152+65536 33554432+65536 " ]] ||
    fail "qemu:dirty-bitmap:$s1 on $export: '$dirty'"
done
nbdinfo --list --json "nbd+unix:///?socket=$work/sock" | grep "qemu:dirty-bitmap:$s1" >/dev/null ||
  fail "LIST_META_CONTEXT does not offer the dirty bitmap"
pass "qemu:dirty-bitmap:SNAPSHOT meta context on volume and snapshot exports"

# s1 alone holds chunks 16 and 32 (rewritten and trimmed since); chunk 512 was a hole in it.
desc=$(cli describe-snapshots --snapshot-ids "$s1")
grep -q '"UniqueBytes": 131072' <<<"$desc" || fail "unique bytes of $s1: $desc"
clone=$(cli create-volume --snapshot-id "$s1" --name clone | field VolumeId)
qemu-img compare -f raw -F raw "$work/v1.raw" "$(uri "$clone")" >/dev/null || fail "clone content"
qemu-io -f raw -c 'write -P 0x99 0 65536' "$(uri "$clone")" >/dev/null
qemu-img compare -f raw -F raw "$work/v1.raw" "$(uri "$s1")" >/dev/null ||
  fail "a write to the clone changed its snapshot"
pass "create-volume --snapshot-id: an instant clone, isolated from its source"

cli delete-snapshot --snapshot-id "$s2" >/dev/null || fail "delete-snapshot"
cli delete-snapshot --snapshot-id "$s2" 2>"$work/err" && fail "second delete succeeded"
grep -q "does not exist" "$work/err" || fail "second delete: $(cat "$work/err")"
cli describe-snapshots | grep "$s2" >/dev/null && fail "deleted snapshot still listed"
cli describe-snapshots --snapshot-ids "$s1" | grep '"UniqueBytes": 0' >/dev/null ||
  fail "a snapshot a clone reads through is not freed by its deletion"
pass "describe-snapshots space accounting and delete-snapshot"

# kill -9 right after a snapshot: it and the data before it survive.
s3=$(cli create-snapshot --volume-id "$vol" | field SnapshotId)
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
start
qemu-img compare -f raw -F raw "$work/v2.raw" "$(uri "$s3")" >/dev/null || fail "$s3 after kill -9"
qemu-img compare -f raw -F raw "$work/v1.raw" "$(uri "$s1")" >/dev/null || fail "$s1 after kill -9"
cli pool check >/dev/null || fail "pool check after kill -9"
pass "snapshots survive kill -9 of the server"

# Streams: a full export to a file through the server, an incremental one piped from this pool
# (idle) into another pool, and the imported snapshots compared over NBD.
s4=$(cli create-snapshot --volume-id "$vol" | field SnapshotId)  # = v2 content, s3's epoch + 1
cli export-snapshot --snapshot-id "$s1" --outfile "$work/s1.strm" >"$work/exp.json" ||
  fail "export-snapshot through the server"
grep -q '"StreamBytes"' "$work/exp.json" || fail "export stats: $(cat "$work/exp.json")"
kill -TERM "$pid"
wait "$pid" || fail "strata-nbd exit status"
pid=
pool2=$work/pool2
"$strata" --pool "$pool2" pool create --chunk-size 16KiB >/dev/null
"$strata" --pool "$pool2" import-snapshot --input "$work/s1.strm" >"$work/imp1.json" ||
  fail "import-snapshot of a full stream: $(cat "$work/imp1.json")"
cli export-snapshot --snapshot-id "$s4" --base-snapshot-id "$s1" --outfile - 2>"$work/exp2.json" |
  "$strata" --pool "$pool2" import-snapshot --input - >"$work/imp2.json" ||
  fail "export | import of an incremental stream: $(cat "$work/exp2.json" "$work/imp2.json")"
i1=$(field SnapshotId <"$work/imp1.json")
i2=$(field SnapshotId <"$work/imp2.json")
grep -q "\"SourceSnapshotId\": \"$s4\"" "$work/imp2.json" || fail "import records its source id"
head -c 100 "$work/s1.strm" | "$strata" --pool "$pool2" import-snapshot --input - 2>"$work/err" &&
  fail "a truncated stream was imported"
grep -q "truncated" "$work/err" || fail "truncated stream error: $(cat "$work/err")"
"$server" --pool "$pool2" --socket "$work/sock2" 2>"$work/log2" &
pid=$!
for _ in $(seq 400); do [[ -S "$work/sock2" ]] && break; sleep 0.05; done
qemu-img compare -f raw -F raw "$work/v1.raw" "nbd+unix:///$i1?socket=$work/sock2" >/dev/null ||
  fail "imported full snapshot differs"
qemu-img compare -f raw -F raw "$work/v2.raw" "nbd+unix:///$i2?socket=$work/sock2" >/dev/null ||
  fail "imported incremental snapshot differs"
[[ $("$strata" --pool "$pool2" describe-volumes | grep -c VolumeId || true) == 0 ]] ||
  fail "an import left a volume behind"
pass "export-snapshot / import-snapshot: full via file, incremental via a pipe, other chunk size"

kill -TERM "$pid"
wait "$pid" || fail "strata-nbd exit status"
pid=
echo "all snapshot interop checks passed"
