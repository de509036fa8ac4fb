#!/usr/bin/env bash
# Snapshots to S3 against what a user would pick instead, in one run, on one Ceph RGW
# (tools/rgw.sh): strata copy-snapshot (full and 1 % incremental) against restic backup of the
# same bytes as a raw file, and strata's restore (lazy: time to first byte, cold random reads;
# full: the background pass) against s3cmd get of the same bytes. Prints each figure and its
# ratio; also the peak RSS of the pushing and restoring processes.
#
#   bench/remote.sh [SIZE_MIB] [DIR]   (default 4096 MiB in /var/tmp; needs restic, s3cmd, and
#                                       S3_* from tools/rgw.sh start, else it starts RGW)
#
# The volume is mixed as the object-store issue asks: 50 % random, 25 % zeros, 25 % repeats of
# the random part (dedup finds them; restic's chunker does too).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-4096}
dir=${2:-/var/tmp}
if [[ -z "${S3_ENDPOINT:-}" ]]; then
  rgw_env=$(tools/rgw.sh start)
  eval "$rgw_env"
fi
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
strata=build/tools/strata
server=build/nbd-server/strata-nbd
work=$(mktemp -d "$dir/strata-remote-bench.XXXXXX")
bucket=strata-bench-$RANDOM
tools/rgw.sh s3cfg "$work/s3cfg"
s3() { s3cmd -c "$work/s3cfg" "$@"; }
pid=
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  s3 rb --recursive --force "s3://$bucket" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
s3 mb "s3://$bucket" >/dev/null
secs() { python3 -c "import time; print(time.monotonic())"; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
rss_mib() { grep "Maximum resident" "$1" | awk '{printf "%.0f", $6 / 1024}'; }

# The image: random, zeros, repeats.
quarter=$((size_mib / 4))
head -c "$((2 * quarter))M" /dev/urandom >"$work/img.raw"
truncate -s "$((3 * quarter))M" "$work/img.raw"
head -c "$((quarter))M" "$work/img.raw" >>"$work/img.raw"
pool=$work/pool
$strata --pool "$pool" pool create >/dev/null
$strata --pool "$pool" remote add bench --url "s3://$bucket/strata" --endpoint-url "$S3_ENDPOINT" >/dev/null
vol=$($strata --pool "$pool" create-volume --size "${size_mib}MiB" --volume-type unlimited |
  sed -n 's/.*"VolumeId": "\([^"]*\)".*/\1/p')
$server --pool "$pool" --socket "$work/sock" --no-volume-limits 2>"$work/log" &
pid=$!
while [[ ! -S $work/sock ]]; do sleep 0.05; done
nbdcopy "$work/img.raw" "nbd+unix:///$vol?socket=$work/sock"
kill "$pid"; wait "$pid" || true; pid=
s1=$($strata --pool "$pool" create-snapshot --volume-id "$vol" | sed -n 's/.*"SnapshotId": "\([^"]*\)".*/\1/p')
sync

t0=$(secs)
/usr/bin/time -v -o "$work/push.time" $strata --pool "$pool" copy-snapshot \
  --source-snapshot-id "$s1" --destination-remote bench >"$work/push.json"
t1=$(secs)
push=$(elapsed "$t0" "$t1")

export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="s3:$S3_ENDPOINT/$bucket/restic"
restic init >/dev/null 2>&1
t0=$(secs)
restic backup --quiet "$work/img.raw" >/dev/null
t1=$(secs)
restic_full=$(elapsed "$t0" "$t1")

# 1 % of the blocks change.
$server --pool "$pool" --socket "$work/sock" --no-volume-limits 2>"$work/log" &
pid=$!
while [[ ! -S $work/sock ]]; do sleep 0.05; done
changes=$((size_mib * 2 / 100))  # 512 KiB blocks: 1 % of them
cmds=()
for i in $(seq 0 $((changes - 1))); do
  cmds+=(-c "write -P $((i % 250 + 1)) $(((i * 97 % (size_mib * 2)) * 524288)) 4k")
done
qemu-io -f raw "${cmds[@]}" "nbd+unix:///$vol?socket=$work/sock" >/dev/null
kill "$pid"; wait "$pid" || true; pid=
qemu-io -f raw "${cmds[@]}" "$work/img.raw" >/dev/null
s2=$($strata --pool "$pool" create-snapshot --volume-id "$vol" | sed -n 's/.*"SnapshotId": "\([^"]*\)".*/\1/p')
t0=$(secs)
$strata --pool "$pool" copy-snapshot --source-snapshot-id "$s2" --destination-remote bench >"$work/inc.json"
t1=$(secs)
inc=$(elapsed "$t0" "$t1")
t0=$(secs)
restic backup --quiet "$work/img.raw" >/dev/null
t1=$(secs)
restic_inc=$(elapsed "$t0" "$t1")

# Restore into other pools. Lazily: create-volume returns at once; time to the first 4 KiB read
# at a random offset (a range GET) against the same read once the volume is hydrated; 4 KiB
# random reads at QD32 (fio, nbd engine) on a cold volume against a hydrated one. Fully:
# create-volume --wait (the background pass at unlimited rate) against s3cmd get of the same
# bytes as one object.
pool2=$work/pool2 pool3=$work/pool3
for p in "$pool2" "$pool3"; do
  $strata --pool "$p" pool create >/dev/null
  $strata --pool "$p" remote add bench --url "s3://$bucket/strata" --endpoint-url "$S3_ENDPOINT" >/dev/null
done
sync
t0=$(secs)
lazy=$($strata --pool "$pool2" create-volume --snapshot-id "$s2" --remote bench \
  --volume-type unlimited --initialization-rate 0 | sed -n 's/.*"VolumeId": "\([^"]*\)".*/\1/p')
t1=$(secs)
create_lazy=$(elapsed "$t0" "$t1")
$server --pool "$pool2" --socket "$work/sock" --no-volume-limits 2>"$work/log" &
pid=$!
while [[ ! -S $work/sock ]]; do sleep 0.05; done
uri2="nbd+unix:///$lazy?socket=$work/sock"
at=$(((RANDOM * 32768 + RANDOM) % (size_mib * 256) * 4096))
# qemu-io's own timing of the one read, in ms
first_read() {
  qemu-io -f raw -c "read $at 4k" "$uri2" |
    sed -n 's/.* and \([0-9.]*\) ops\/sec.*/\1/p' | python3 -c "print(f'{1000 / float(input()):.2f}')"
}
ttfb_cold=$(first_read)
ttfb_hot=$(first_read)
fio_iops() {
  fio --name=r --ioengine=nbd --uri="$uri2" --rw=randread --bs=4k --iodepth=32 --runtime="$1" \
    --time_based --output-format=terse 2>/dev/null | awk -F';' '/^3;/ {print $8; exit}'
}
cold_iops=$(fio_iops 5)
nbdcopy "$uri2" /dev/null  # hydrate everything on demand
hot_iops=$(fio_iops 5)
kill "$pid"; wait "$pid" || true; pid=
t0=$(secs)
/usr/bin/time -v -o "$work/restore.time" $strata --pool "$pool3" create-volume \
  --snapshot-id "$s2" --remote bench --volume-type unlimited --wait >/dev/null
t1=$(secs)
restore=$(elapsed "$t0" "$t1")
s3 put "$work/img.raw" "s3://$bucket/raw/img.raw" >/dev/null 2>&1
rm -f "$work/get.raw"
t0=$(secs)
s3 get "s3://$bucket/raw/img.raw" "$work/get.raw" >/dev/null 2>&1
t1=$(secs)
s3get=$(elapsed "$t0" "$t1")

mib=$size_mib
echo "volume: $mib MiB (50 % random, 25 % zeros, 25 % repeats); RGW at $S3_ENDPOINT"
printf '%-44s %9s %12s\n' "case" "seconds" "MiB/s"
printf '%-44s %9s %12s\n' "strata copy-snapshot (full)" "$push" "$(ratio "$mib" "$push")"
printf '%-44s %9s %12s\n' "restic backup (full)" "$restic_full" "$(ratio "$mib" "$restic_full")"
printf '%-44s %9s\n' "strata copy-snapshot (1 % changed)" "$inc"
printf '%-44s %9s\n' "restic backup (1 % changed, reads it all)" "$restic_inc"
printf '%-44s %9s\n' "strata create-volume --remote (lazy)" "$create_lazy"
printf '%-44s %9s %12s\n' "strata create-volume --remote --wait" "$restore" "$(ratio "$mib" "$restore")"
printf '%-44s %9s %12s\n' "s3cmd get (one object, same bytes)" "$s3get" "$(ratio "$mib" "$s3get")"
echo "full push throughput / restic's: $(ratio "$restic_full" "$push")x (target >= 1.5)"
echo "incremental / full push time: $(ratio "$inc" "$push") (target <= 0.05); restic's: $(ratio "$restic_inc" "$restic_full")"
echo "restore throughput / s3cmd get's: $(ratio "$s3get" "$restore")x (target >= 0.8)"
echo "first 4 KiB read of a cold block: $ttfb_cold ms; once here: $ttfb_hot ms: $(ratio "$ttfb_cold" "$ttfb_hot")x (qemu-io's own timing)"
echo "4 KiB random reads QD32: cold $cold_iops IOPS, hydrated $hot_iops IOPS: $(ratio "$cold_iops" "$hot_iops")x"
echo "peak RSS: push $(rss_mib "$work/push.time") MiB, restore $(rss_mib "$work/restore.time") MiB"
grep -E '"(BlocksRead|BlocksUploaded|BlocksDeduplicated|ZeroBlocks|BytesUploaded)"' "$work/push.json" | tr -d ' ,' | tr '\n' ' '
echo
grep -E '"(BlocksRead|BlocksUploaded|BytesUploaded)"' "$work/inc.json" | tr -d ' ,' | tr '\n' ' '
echo
