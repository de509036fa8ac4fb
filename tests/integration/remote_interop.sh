#!/usr/bin/env bash
# Snapshots in S3 against a real Ceph RGW: two pools as two hosts share one remote. An ext4 file
# system is pushed from pool A and restored in pool B, then checked with e2fsck and debugfs; an
# incremental push reads and sends only what changed; a second volume sharing 90 % of the first
# is deduplicated; deletes free storage and every other snapshot still restores; wrong
# credentials, a missing bucket, a server that is down, a damaged pack, a kill -9 mid-push and
# two pools pushing at once each end as they must.
#
# usage: remote_interop.sh BUILD_DIR   (needs S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY: tools/rgw.sh;
#                                       exit 77 = skipped: no server or a client tool missing)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools nbdcopy qemu-io mkfs.ext4 e2fsck debugfs s3cmd
s3_test_bucket strata-remote
num() { sed -n "s/.*\"$1\": \\([0-9]*\\).*/\\1/p" | head -1; }
objects() { s3 ls --recursive "s3://$bucket/" | wc -l; }
bucket_bytes() { s3 du "s3://$bucket/" | awk '{print $1}'; }
A=$work/a
B=$work/b

pool=$A cli pool create --chunk-size 64KiB >/dev/null
pool=$B cli pool create --chunk-size 16KiB >/dev/null  # another chunk size: blocks are 512 KiB
for p in "$A" "$B"; do
  pool=$p cli remote add shared --url "s3://$bucket/team" --endpoint-url "$S3_ENDPOINT" >/dev/null
done
pool=$A cli remote list | grep -q "s3://$bucket/team" || fail "remote list"
pass "remote add / list on two pools"

# An ext4 file system with files, written into a volume of pool A through strata-nbd.
mkdir -p "$work/tree/docs"
head -c 3M /dev/urandom >"$work/tree/random.bin"
seq 1 200000 >"$work/tree/docs/numbers.txt"
mkfs.ext4 -q -F -b 4096 -d "$work/tree" "$work/fs.img" 256M
pool=$A
vol=$(cli create-volume --size 256MiB --name data --volume-type unlimited | field VolumeId)
start --no-volume-limits
nbdcopy "$work/fs.img" "$(uri "$vol")" || fail "nbdcopy into the volume"
s1=$(cli create-snapshot --volume-id "$vol" --description "ext4" | field SnapshotId)
cli create-tags --resources "$s1" --tags Key=team,Value=storage >/dev/null || fail "create-tags"
out=$(cli copy-snapshot --source-snapshot-id "$s1" --destination-remote shared)
[[ "$(field SnapshotId <<<"$out")" == "$s1" ]] || fail "copy-snapshot: $out"
pool=$B cli describe-snapshots --remote shared --snapshot-ids "$s1" | tr -d ' \n' |
  grep -q '"Tags":\[{"Key":"team","Value":"storage"}\]' || fail "the snapshot's tags did not go along"
full_bytes=$(num BytesUploaded <<<"$out")
pass "copy-snapshot $s1 through strata-nbd ($full_bytes bytes)"
again=$(cli copy-snapshot --source-snapshot-id "$s1" --destination-remote shared)
grep -q '"AlreadyInRemote": true' <<<"$again" || fail "a second push was not a no-op: $again"

# Incremental: 1 % of the blocks change.
qemu-io -f raw -c 'write -P 0x5a 8M 1M' -c 'write -P 0x5b 100M 1536k' "$(uri "$vol")" >/dev/null ||
  fail "qemu-io"
s2=$(cli create-snapshot --volume-id "$vol" | field SnapshotId)
out=$(cli copy-snapshot --source-snapshot-id "$s2" --destination-remote shared)
grep -q "\"ParentSnapshotId\": \"$s1\"" <<<"$out" || fail "incremental push had no parent: $out"
read_blocks=$(num BlocksRead <<<"$out")
inc_bytes=$(num BytesUploaded <<<"$out")
((read_blocks <= 6)) || fail "incremental push read $read_blocks blocks: $out"
((inc_bytes * 20 < full_bytes)) || fail "incremental push sent $inc_bytes of $full_bytes: $out"
pass "incremental push read $read_blocks blocks, sent $inc_bytes bytes (full: $full_bytes)"
nbdcopy "$(uri "$s2")" "$work/s2.raw" || fail "nbdcopy of $s2"
stop_server

# Pool B restores it: e2fsck and debugfs on what came back.
pool=$B
list=$(cli describe-snapshots --remote shared)
grep -q "\"SnapshotId\": \"$s2\"" <<<"$list" || fail "pool B does not see $s2: $list"
grep -q '"State": "completed"' <<<"$list" || fail "state: $list"
restored=$(cli create-volume --snapshot-id "$s2" --remote shared --name copy | field VolumeId)
start --no-volume-limits
nbdcopy "$(uri "$restored")" "$work/b.raw" || fail "nbdcopy of the restored volume"
stop_server
cmp "$work/s2.raw" "$work/b.raw" || fail "the restored volume differs from $s2"
e2fsck -fn "$work/b.raw" >"$work/fsck" 2>&1 || fail "e2fsck: $(cat "$work/fsck")"
debugfs -R "cat /docs/numbers.txt" "$work/b.raw" 2>/dev/null | cmp - "$work/tree/docs/numbers.txt" ||
  fail "debugfs: numbers.txt differs"
debugfs -R "cat /random.bin" "$work/b.raw" 2>/dev/null | cmp - "$work/tree/random.bin" ||
  fail "debugfs: random.bin differs"
pass "pool B restored $s2: byte-identical, e2fsck clean, files read back with debugfs"

# Images: copy-image pushes the image and its snapshots; another pool launches it.
pool=$A
ami=$(cli import-image --input "$work/fs.img" --name web-image | field ImageId)
out=$(cli copy-image --source-image-id "$ami" --destination-remote shared)
grep -q "\"ImageId\": \"$ami\"" <<<"$out" || fail "copy-image: $out"
pool=$B
cli describe-images --remote shared | grep -q "\"ImageId\": \"$ami\"" || fail "describe-images --remote"
run=$(cli run-instances --image-id "$ami" --remote shared --count 2)
instance=$(field InstanceId <<<"$run")
local_ami=$(field ImageId <<<"$run")
[[ -n "$instance" && "$local_ami" =~ ^ami- && "$local_ami" != "$ami" ]] || fail "run-instances --remote: $run"
cli run-instances --image-id "$ami" --remote shared >/dev/null || fail "a second launch"
[[ $(cli describe-images | grep -c '"ImageId"') == 1 ]] || fail "the remote image was pulled twice"
start --no-volume-limits
nbdcopy "$(uri "$instance/xvda")" "$work/root.raw" || fail "nbdcopy of $instance/xvda"
stop_server
cmp "$work/fs.img" "$work/root.raw" || fail "the instance's root differs from the image"
root_snap=$(pool=$A cli describe-images --image-ids "$ami" | field SnapshotId)
cli describe-snapshots --snapshot-ids "$root_snap" | grep -q "\"SnapshotId\": \"$root_snap\"" ||
  fail "the pulled snapshot does not keep its id $root_snap (snapshot ids are global)"
refused "in use by remote image $ami" delete-snapshot --snapshot-id "$root_snap" --remote shared
cli deregister-image --image-id "$ami" --remote shared >/dev/null || fail "deregister-image --remote"
cli describe-images --remote shared | grep -q "$ami" && fail "$ami still listed"
pass "copy-image, then run-instances --remote on pool B: the root device is the image, pulled once"

# Dedup across volumes: a second volume shares 90 % of its data with the first.
pool=$A
head -c 40M /dev/urandom >"$work/base.raw"
cp "$work/base.raw" "$work/other.raw"
dd if=/dev/urandom of="$work/other.raw" bs=1M count=4 seek=10 conv=notrunc 2>/dev/null
v3=$(cli create-volume --size 64MiB --volume-type unlimited | field VolumeId)
v4=$(cli create-volume --size 64MiB --volume-type unlimited | field VolumeId)
start --no-volume-limits
nbdcopy "$work/base.raw" "$(uri "$v3")" && nbdcopy "$work/other.raw" "$(uri "$v4")" || fail "nbdcopy"
s3a=$(cli create-snapshot --volume-id "$v3" | field SnapshotId)
s4=$(cli create-snapshot --volume-id "$v4" | field SnapshotId)
base_bytes=$(cli copy-snapshot --source-snapshot-id "$s3a" --destination-remote shared | num BytesUploaded)
out=$(cli copy-snapshot --source-snapshot-id "$s4" --destination-remote shared)
other_bytes=$(num BytesUploaded <<<"$out")
# 4 MiB of 40 MiB differ (random: incompressible): what goes is those 4 MiB and a little metadata,
# under 10 % of the 64 MiB volume.
((other_bytes * 10 < 64 * 1048576 && other_bytes < 4 * 1048576 + 256 * 1024)) ||
  fail "second volume sent $other_bytes bytes: $out"
pass "dedup across volumes: the 90 %-shared volume sent $other_bytes bytes ($((other_bytes * 1000 / (64 * 1048576))) per mille of the volume; $base_bytes for the first)"

# 4 KiB changed in a block of random bytes: the push sends its 64 KiB piece, and borrows the
# block's seven other pieces where the parent's block has them (restored on pool B below).
qemu-io -f raw -c 'write -P 0x3c 20488k 4k' "$(uri "$v4")" >/dev/null || fail "qemu-io"
cp "$work/other.raw" "$work/other2.raw"
head -c 4096 /dev/zero | tr '\0' '\074' |
  dd of="$work/other2.raw" bs=4096 seek=$((20488 / 4)) conv=notrunc 2>/dev/null
s4b=$(cli create-snapshot --volume-id "$v4" | field SnapshotId)
out=$(cli copy-snapshot --source-snapshot-id "$s4b" --destination-remote shared)
grep -q "\"ParentSnapshotId\": \"$s4\"" <<<"$out" || fail "no parent: $out"
[[ $(num PiecesBorrowed <<<"$out") == 7 ]] || fail "the changed block did not borrow 7 pieces: $out"
piece_bytes=$(num BytesUploaded <<<"$out")
((piece_bytes < 64 * 1024 + 64 * 1024)) || fail "a 4 KiB change sent $piece_bytes bytes: $out"
pass "a 4 KiB change sent $piece_bytes bytes (its 64 KiB piece; 7 pieces borrowed)"

# kill -9 in the middle of a push, then a rerun: nothing partial is listed, packs are reused.
head -c 256M /dev/urandom >"$work/big.raw"
v5=$(cli create-volume --size 256MiB --volume-type unlimited | field VolumeId)
nbdcopy "$work/big.raw" "$(uri "$v5")" || fail "nbdcopy"
s5=$(cli create-snapshot --volume-id "$v5" | field SnapshotId)
stop_server
indexes_before=$(s3 ls "s3://$bucket/team/index/" | wc -l)
"$strata" --pool "$pool" copy-snapshot --source-snapshot-id "$s5" --destination-remote shared \
  >/dev/null 2>&1 &
pusher=$!
for _ in $(seq 400); do
  (($(s3 ls "s3://$bucket/team/index/" | wc -l) > indexes_before)) && break
done
kill -9 "$pusher" 2>/dev/null || true
wait "$pusher" 2>/dev/null || true
listed=$(pool=$B cli describe-snapshots --remote shared)
grep -A8 "\"SnapshotId\": \"$s5\"" <<<"$listed" | grep -q '"State": "completed"' &&
  fail "a killed push is listed as completed: $listed"
out=$(cli copy-snapshot --source-snapshot-id "$s5" --destination-remote shared)
dedup=$(num BlocksDeduplicated <<<"$out")
((dedup > 0)) || fail "the rerun re-uploaded every pack: $out"
pool=$B cli create-volume --snapshot-id "$s5" --remote shared >/dev/null || fail "restore of $s5"
pass "kill -9 mid-push: not listed; the rerun reused $dedup blocks and completed"

# Two pools push overlapping data at once: both complete, both restore.
pool=$B
vb=$(cli create-volume --size 64MiB --volume-type unlimited | field VolumeId)
start --no-volume-limits
nbdcopy "$work/base.raw" "$(uri "$vb")" || fail "nbdcopy into pool B"
sb=$(cli create-snapshot --volume-id "$vb" | field SnapshotId)
stop_server
pool=$A
s3b=$(cli create-snapshot --volume-id "$v3" | field SnapshotId)
pool=$A cli copy-snapshot --source-snapshot-id "$s3b" --destination-remote shared >"$work/pa" 2>&1 &
pa=$!
pool=$B cli copy-snapshot --source-snapshot-id "$sb" --destination-remote shared >"$work/pb" 2>&1 ||
  fail "concurrent push from B: $(cat "$work/pb")"
wait "$pa" || fail "concurrent push from A: $(cat "$work/pa")"
pool=$B
for s in "$sb" "$s3b"; do
  v=$(cli create-volume --snapshot-id "$s" --remote shared | field VolumeId)
  start --no-volume-limits
  nbdcopy "$(uri "$v")" "$work/check.raw"
  stop_server
  cmp <(head -c 40M "$work/check.raw") "$work/base.raw" || fail "$s restored wrong"
done
pass "two pools pushing overlapping data at once: both complete and restore identical"
v=$(cli create-volume --snapshot-id "$s4b" --remote shared | field VolumeId)
start --no-volume-limits
nbdcopy "$(uri "$v")" "$work/check.raw"
stop_server
cmp <(head -c 40M "$work/check.raw") "$work/other2.raw" || fail "$s4b restored wrong"
pass "pool B restored $s4b, whose changed block spans two packs, byte for byte"

# Delete and GC: the bucket shrinks, and what remains still restores.
before=$(bucket_bytes)
for s in "$s4" "$s5"; do
  out=$(cli delete-snapshot --snapshot-id "$s" --remote shared)
  grep -q '"Deferred": false' <<<"$out" || fail "GC deferred: $out"
done
after=$(bucket_bytes)
((after < before)) || fail "the bucket did not shrink: $before -> $after"
v=$(cli create-volume --snapshot-id "$s3a" --remote shared | field VolumeId)
start --no-volume-limits
nbdcopy "$(uri "$v")" "$work/check.raw"
stop_server
cmp <(head -c 40M "$work/check.raw") "$work/base.raw" || fail "$s3a after GC"
cli describe-snapshots --remote shared | grep -q "\"SnapshotId\": \"$s4\"" && fail "$s4 still listed"
pass "delete-snapshot --remote freed $((before - after)) bytes; the others still restore"

# Pool B's lazy restores finish in its server's background pass; until then their markers keep
# what they need in the bucket, even for snapshots deleted there above.
pool=$B
start --no-volume-limits
for _ in $(seq 600); do
  cli describe-snapshots | grep -c '"State": "pending"' >/dev/null || break
  sleep 0.2
done
pending=$(cli describe-snapshots | grep -c '"State": "pending"' || true)
stop_server
((pending == 0)) || fail "pool B still restores $pending snapshots: $(cat "$work/log")"
pass "pool B's lazy restores completed in the background"

# Bad input and faults: each a one-line error, nothing half-made.
out=$(AWS_SECRET_ACCESS_KEY=wrong "$strata" --pool "$B" describe-snapshots --remote shared 2>&1) &&
  fail "wrong credentials worked"
[[ "$out" == *"HTTP 403"* && $(wc -l <<<"$out") == 1 ]] || fail "wrong credentials: $out"
cli remote add nobucket --url s3://strata-no-such-bucket --endpoint-url "$S3_ENDPOINT" >/dev/null
refused "does not exist" describe-snapshots --remote nobucket
cli remote add down --url "s3://$bucket" --endpoint-url http://127.0.0.1:1 >/dev/null
refused "127.0.0.1:1" describe-snapshots --remote down
for pack in $(s3 ls --recursive "s3://$bucket/team/packs/" | awk '{print $4}'); do
  s3 get --force "$pack" "$work/pack" >/dev/null  # one byte flipped in each pack
  printf '\xff' | dd of="$work/pack" bs=1 seek=100 conv=notrunc 2>/dev/null
  s3 put "$work/pack" "$pack" >/dev/null
done
# A pool that has none of it yet restores (--wait: every block checked before it returns).
pool=$work/c cli pool create >/dev/null
pool=$work/c cli remote add shared --url "s3://$bucket/team" --endpoint-url "$S3_ENDPOINT" >/dev/null
out=$(pool=$work/c cli create-volume --snapshot-id "$s3a" --remote shared --wait 2>&1) &&
  fail "a damaged pack restored"
[[ "$out" == *"packs/"* && "$out" == *"damaged"* && $(wc -l <<<"$out") == 1 ]] ||
  fail "damaged pack: $out"
[[ $(pool=$work/c cli describe-volumes | grep -c VolumeId || true) == 0 ]] ||
  fail "a failed restore left a volume"
pass "wrong credentials, missing bucket, server down, damaged pack: one-line errors, nothing left"
# Objects whose checksums match but whose fields have the wrong types (anyone with access to the
# bucket can write them): a clear error, never a crash.
signed() { printf '%s\n%s\n' "$1" "$(printf '%s' "$1" | sha256sum | cut -c1-64)"; }
signed '{"format":"x","snapshot_id":5,"volume_size":"big"}' >"$work/bad"
s3 put "$work/bad" "s3://$bucket/team/snapshots/snap-0bad0bad0bad0bad0" >/dev/null
refused "manifest fields missing or of the wrong type" describe-snapshots --remote shared
s3 del "s3://$bucket/team/snapshots/snap-0bad0bad0bad0bad0" >/dev/null
signed '{"format":1,"record":{"ImageId":"ami-0bad0bad0bad0bad0","BlockDeviceMappings":[{"Ebs":7}]}}' \
  >"$work/bad"
s3 put "$work/bad" "s3://$bucket/team/records/images/ami-0bad0bad0bad0bad0" >/dev/null
refused "image record is malformed" describe-images --remote shared
refused "image record is malformed" run-instances --image-id ami-0bad0bad0bad0bad0 --remote shared
pass "type-confused manifests and image records: a clear error"

# Everything deleted, then one GC: nothing is left of the packs, indexes, tree nodes, markers or
# orphan lists, whatever was killed or damaged above.
s3 del "s3://$bucket/team/records/images/ami-0bad0bad0bad0bad0" >/dev/null
for s in $(cli describe-snapshots --remote shared | grep -o '"SnapshotId": "snap-[0-9a-f]*"' |
  cut -d'"' -f4); do
  cli delete-snapshot --snapshot-id "$s" --remote shared >/dev/null || fail "delete $s"
done
out=$(cli remote gc shared) || fail "remote gc: $out"
grep -q '"Deferred": false' <<<"$out" || fail "remote gc deferred: $out"
left=$(s3 ls --recursive "s3://$bucket/team/" | grep -v "/team/records/" || true)
[[ -z "$left" ]] || fail "left in the bucket after every delete and a GC: $left"
pass "every snapshot deleted, one remote gc: the bucket holds nothing else"
echo "all remote checks passed"
