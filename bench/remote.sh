#!/usr/bin/env bash
# Snapshots to S3 against what a user would pick instead, in one run, on one Ceph RGW
# (tools/rgw.sh): strata copy-snapshot (full and 1 % incremental) against restic backup of the
# same bytes as a raw file, and strata's restore against s3cmd get of the same bytes. Prints
# each figure and its ratio; also the peak RSS of the pushing and restoring processes.
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
  eval "$(tools/rgw.sh start)"
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

# Restore into another pool, against s3cmd get of the same bytes as one object.
pool2=$work/pool2
$strata --pool "$pool2" pool create >/dev/null
$strata --pool "$pool2" remote add bench --url "s3://$bucket/strata" --endpoint-url "$S3_ENDPOINT" >/dev/null
sync
t0=$(secs)
/usr/bin/time -v -o "$work/restore.time" $strata --pool "$pool2" create-volume \
  --snapshot-id "$s2" --remote bench --volume-type unlimited >/dev/null
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
printf '%-44s %9s %12s\n' "strata create-volume --remote (restore)" "$restore" "$(ratio "$mib" "$restore")"
printf '%-44s %9s %12s\n' "s3cmd get (one object, same bytes)" "$s3get" "$(ratio "$mib" "$s3get")"
echo "full push throughput / restic's: $(ratio "$restic_full" "$push")x (target >= 1.5)"
echo "incremental / full push time: $(ratio "$inc" "$push") (target <= 0.05); restic's: $(ratio "$restic_inc" "$restic_full")"
echo "restore throughput / s3cmd get's: $(ratio "$s3get" "$restore")x (target >= 0.8)"
echo "peak RSS: push $(rss_mib "$work/push.time") MiB, restore $(rss_mib "$work/restore.time") MiB"
grep -E '"(BlocksRead|BlocksUploaded|BlocksDeduplicated|ZeroBlocks|BytesUploaded)"' "$work/push.json" | tr -d ' ,' | tr '\n' ' '
echo
grep -E '"(BlocksRead|BlocksUploaded|BytesUploaded)"' "$work/inc.json" | tr -d ' ,' | tr '\n' ' '
echo
