#!/usr/bin/env bash
# Boot from a remote image, against the same boot from a local one (issue 15's boot figure).
#
# A Linux root file system (this machine's /etc, /usr/bin, /usr/sbin and /usr/lib, up to
# ROOT_MIB) is made into ext4, imported as an image in pool A and pushed with copy-image to Ceph
# RGW (tools/rgw.sh). "Boot" is what a guest's first minutes do to its root device: mount it,
# then read every file (find -type f | xargs cat), through the kernel: nbdfuse exposes the NBD
# export as a file, a loop device mounts it read-only. Each boot is on a fresh server, fuse
# mount and loop device, so no cache above strata-nbd survives between them:
#   local    an instance of the image in pool A (all blocks here)
#   lazy     run-instances --remote in a fresh pool, booted at once, background pass at full rate
#   demand   the same with --initialization-rate 0: only what the boot reads is fetched
#   whole    for scale, the whole image restored in a fresh pool (create-volume --wait, no reader)
# ROUNDS interleaved rounds, the order of the cases rotating; prints the median seconds and the
# median of the per-round ratios to local (issue 33's target: lazy <= 1.5x).
#
#   bench/boot.sh [ROOT_MIB] [DIR] [ROUNDS]   (default 1024 MiB of files in /var/tmp, 3 rounds;
#                         root, /dev/fuse and loop devices; S3_* from tools/rgw.sh start, else
#                         it starts RGW)
set -euo pipefail
cd "$(dirname "$0")/.."
root_mib=${1:-1024}
dir=${2:-/var/tmp}
rounds=${3:-3}
if [[ -z "${S3_ENDPOINT:-}" ]]; then
  rgw_env=$(tools/rgw.sh start)
  eval "$rgw_env"
fi
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
strata=build/tools/strata
server=build/nbd-server/strata-nbd
work=$(mktemp -d "$dir/strata-boot-bench.XXXXXX")
bucket=strata-boot-$RANDOM
tools/rgw.sh s3cfg "$work/s3cfg"
s3() { s3cmd -c "$work/s3cfg" "$@"; }
pid=
unmount_all() {
  umount "$work/root" 2>/dev/null || true
  fusermount3 -u "$work/fuse" 2>/dev/null || true
}
cleanup() {
  unmount_all
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  [[ -n "${KEEP:-}" ]] || s3 rb --recursive --force "s3://$bucket" >/dev/null 2>&1 || true
  [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT
s3 mb "s3://$bucket" >/dev/null
secs() { python3 -c "import time; print(time.monotonic())"; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
field() { sed -n "s/.*\"$1\": \"\\([^\"]*\\)\".*/\\1/p" | head -1; }

# The root file system: directories of a real Debian root, files up to root_mib in all.
mkdir -p "$work/tree"
budget=$((root_mib * 1024 * 1024))
for d in /etc /usr/bin /usr/sbin /usr/lib; do
  find "$d" -xdev -type f -readable -size -64M -printf '%s %p\n' 2>/dev/null
done | awk -v budget="$budget" 'sum + $1 <= budget { sum += $1; print substr($0, index($0, " ") + 1) }' \
  >"$work/files"
tar -cf - --no-recursion -T "$work/files" 2>/dev/null | tar -xf - -C "$work/tree"
files=$(wc -l <"$work/files")
used_mib=$(du -sm "$work/tree" | cut -f1)
img_mib=$(((used_mib * 3 / 2 / 256 + 1) * 256))
mkfs.ext4 -q -F -b 4096 -d "$work/tree" "$work/root.img" "${img_mib}M"
rm -rf "$work/tree"

new_pool() {  # POOL: an empty pool with the bucket as remote "bench"
  rm -rf "$1"
  $strata --pool "$1" pool create >/dev/null
  $strata --pool "$1" remote add bench --url "s3://$bucket/strata" \
    --endpoint-url "$S3_ENDPOINT" >/dev/null
}
new_pool "$work/a"
ami=$($strata --pool "$work/a" import-image --input "$work/root.img" --name root | field ImageId)
$strata --pool "$work/a" copy-image --source-image-id "$ami" --destination-remote bench >/dev/null
rm -f "$work/root.img"
mkdir -p "$work/fuse" "$work/root"

# boot POOL EXPORT: seconds to mount the export's file system and read every file in it.
boot() {
  # (their stdout is not the caller's $(...): it would wait for them)
  $server --pool "$1" --socket "$work/sock" --no-volume-limits >/dev/null 2>"$work/server.log" &
  pid=$!
  while [[ ! -S $work/sock ]]; do sleep 0.05; done
  local t0 t1
  t0=$(secs)
  nbdfuse -r "$work/fuse" "nbd+unix:///$2?socket=$work/sock" >/dev/null &
  while [[ ! -e $work/fuse/nbd ]]; do sleep 0.01; done
  mount -o loop,ro,noload "$work/fuse/nbd" "$work/root"
  find "$work/root" -type f -print0 2>>"$work/errors" |
    xargs -0 -P 4 -n 64 cat 2>>"$work/errors" >/dev/null || true
  t1=$(secs)
  $strata --pool "$1" describe-volume-status >"$work/status.json"  # (asks the server)
  if [[ -s $work/errors ]]; then
    echo "boot of $2 read errors:" >&2; head -5 "$work/errors" >&2
    unmount_all; kill "$pid"; exit 1
  fi
  unmount_all
  kill "$pid"; wait "$pid" || true; pid=
  rm -f "$work/sock"
  elapsed "$t0" "$t1"
}
instance() {
  $strata --pool "$1" run-instances --image-id "$ami" "${@:2}" | field InstanceId
}

snap=$($strata --pool "$work/a" describe-images | field SnapshotId)
results=$work/results  # lines: ROUND CASE SECONDS
case_local() { boot "$work/a" "$(instance "$work/a")/xvda"; }
case_lazy() {
  new_pool "$work/b"
  boot "$work/b" "$(instance "$work/b" --remote bench)/xvda"
}
case_demand() {
  new_pool "$work/c"
  boot "$work/c" "$(instance "$work/c" --remote bench --initialization-rate 0)/xvda"
  fetched=$(sed -n 's/.*"BytesFetched": \([0-9]*\).*/\1/p' "$work/status.json" | head -1)
}
case_whole() {  # a boot that reads everything cannot beat this by much
  new_pool "$work/d"
  local t0
  t0=$(secs)
  $strata --pool "$work/d" create-volume --snapshot-id "$snap" --remote bench --wait >/dev/null
  elapsed "$t0" "$(secs)"
}
cases=(local lazy demand whole)
fetched=0
for round in $(seq "$rounds"); do
  for i in "${!cases[@]}"; do
    c=${cases[$(((i + round - 1) % ${#cases[@]}))]}
    [[ $c == demand ]] && { case_demand >"$work/out"; echo "$round $c $(cat "$work/out")"; continue; }
    echo "$round $c $("case_$c")"
  done >>"$results"
done

echo "root file system: $files files, $used_mib MiB, on a $img_mib MiB image; RGW at $S3_ENDPOINT"
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), median of $rounds interleaved rounds"
python3 - "$results" <<'PY'
import collections, statistics, sys
v = collections.defaultdict(dict)  # case -> round -> seconds
for line in open(sys.argv[1]):
    r, case, secs = line.split()
    v[case][int(r)] = float(secs)
names = {"local": "local instance", "lazy": "remote image, lazy (background pass at full rate)",
         "demand": "remote image, on demand only (rate 0)",
         "whole": "(the whole image restored: create-volume --wait)"}
print(f"{'boot (mount + read every file)':<52} {'seconds':>9} {'x local':>8}")
for case in ["local", "lazy", "demand", "whole"]:
    ratios = [v[case][r] / v["local"][r] for r in v[case]]
    print(f"{names[case]:<52} {statistics.median(v[case].values()):9.2f} "
          f"{statistics.median(ratios):8.2f}")
PY
echo "on demand: $((${fetched:-0} / 1048576)) MiB fetched (compressed) for $used_mib MiB of files (target: lazy <= 1.5x local)"
