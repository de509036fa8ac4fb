#!/usr/bin/env bash
# Snapshots in S3 against what a user would pick instead, on one Ceph RGW (tools/rgw.sh), in
# interleaved rounds (as bench/nbd.sh): each round runs every case and its peer back to back, in
# alternating order, and the table gives the median of the per-round ratios.
#
#   bench/remote.sh [SIZES_MIB] [DIR] [ROUNDS]   (default "2048 8192", /var/tmp, 3 rounds; about
#                                                 20 min for the defaults; needs restic,
#                                                 s3cmd, fio, qemu-io, nbdcopy; S3_* from
#                                                 tools/rgw.sh start, else it starts RGW;
#                                                 DIR needs about 4.5 times the largest size
#                                                 free, the bucket 3.5 times)
#
# Each size: a volume of 50 % random, 25 % zeros and 25 % repeats of the random part (dedup finds
# them; restic's chunker does too), and the same bytes as a raw file; a snapshot, 1 % of its
# 512 KiB blocks changed (one 4 KiB write each), a second snapshot. Each round, into fresh
# prefixes of one bucket:
#   push        strata copy-snapshot, full                 vs restic backup (full; it always
#                                                              encrypts) and vs s3cmd put of as
#                                                              many random bytes as the push
#                                                              uploaded (what RGW takes here)
#   push-enc    the same volume encrypted (AES-256-XTS, KMS) vs restic backup (full)
#   incremental copy-snapshot of the second snapshot       / the full push
#   restore     create-volume --remote --wait (lazy, the background pass at unlimited rate)
#                                                          vs s3cmd get of the raw file
#   lazy        create-volume --remote --initialization-rate 0: its time, the first cold 4 KiB
#               read (qemu-io's timing), 4 KiB random reads at QD32 for 5 s (fio, nbd engine)
#   peak RSS of the pushing and the restoring process.
# A round's objects are deleted when it ends (and freed at once on tools/rgw.sh's RGW).
# STRATA_BENCH_RECORD=1 replaces the results block in bench/README.md with this run's table,
# the commit and the RGW recipe. Every run warns when that block is older than lib/remote.
# Every round's figures go to stderr after the run; STRATA_BENCH_ROUNDS=FILE also keeps them.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-2048 8192}
dir=${2:-/var/tmp}
rounds=${3:-3}
readme=bench/README.md
begin_mark='<!-- bench/remote.sh results: begin -->'

# A figure older than the code it measures is a claim nobody re-checked: say so first.
recorded=$(sed -n "s|^$begin_mark commit \([0-9a-f]*\).*|\1|p" "$readme" | head -1)
if [[ -n "$recorded" ]] && git cat-file -e "$recorded^{commit}" 2>/dev/null; then
  newer=$(git rev-list --count "$recorded..HEAD" -- lib/remote bench/remote.sh)
  if ((newer > 0)); then
    echo "warning: $readme's remote figures were measured at $recorded; $newer commit(s) since" \
      "changed lib/remote or this bench" >&2
  fi
else
  echo "warning: $readme has no recorded bench/remote.sh figures for a commit of this tree" >&2
fi

if [[ -z "${S3_ENDPOINT:-}" ]]; then
  rgw_env=$(tools/rgw.sh start)
  eval "$rgw_env"
fi
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
strata=$PWD/build/tools/strata
server=$PWD/build/nbd-server/strata-nbd
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
results=$work/results
: >"$results"
now() { python3 -c "import time; print(time.monotonic())"; }
# Waits (at most 60 s) until the local Ceph daemons idle (under 10 % of a core over a second), so
# that no timed step pays for the deferred work of the step before it: BlueStore settling what a
# push wrote, a round's deletes. The 1 % incremental push, right after the 6 GiB encrypted one,
# measured 0.63 s against 0.45 s on an idle RGW (session 23). An RGW elsewhere is not waited for.
cpu_ticks() {
  local p t=0
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
settle() {
  local pids before i
  pids=$(pgrep -x 'radosgw|ceph-osd' | tr '\n' ' ' || true)
  [[ -n "$pids" ]] || return 0
  for i in $(seq 60); do
    # shellcheck disable=SC2086  # one pid per word
    before=$(cpu_ticks $pids)
    sleep 1
    # shellcheck disable=SC2086
    (($(cpu_ticks $pids) - before < 10)) && return 0
  done
  echo "warning: the RGW was still busy after 60 s" >&2
}
# Runs the command on a settled RGW; records SIZE ROUND KEY SECONDS.
timed() {
  local key=$1
  shift
  local t0 t1
  settle
  t0=$(now)
  "$@"
  t1=$(now)
  echo "$size $round $key $(python3 -c "print(f'{$t1 - $t0:.3f}')")" >>"$results"
}
note() { echo "$size $round $1 $2" >>"$results"; }
rss_kib() { grep "Maximum resident" "$1" | awk '{print $6}'; }
field() { sed -n "s/.*\"$1\": \"*\([^\",]*\)\"*.*/\1/p" | head -1; }
serve() {  # POOL [server options]: a strata-nbd on $work/sock
  local p=$1
  shift
  rm -f "$work/sock"
  "$server" --pool "$p" --socket "$work/sock" --no-volume-limits --kms-root-key "$work/root.key" \
    "$@" 2>>"$work/log" &
  pid=$!
  while [[ ! -S $work/sock ]]; do sleep 0.05; done
}
unserve() { kill "$pid"; wait "$pid" || true; pid=; }

head -c 32 /dev/urandom >"$work/root.key"
chmod 600 "$work/root.key"
export STRATA_KMS_ROOT_KEY=$work/root.key  # the CLI opening a pool with a KMS needs its key

# ---- per size: the pool, its two snapshots (plaintext and encrypted), and the raw files
prepare() {
  local quarter=$((size / 4)) pool=$work/pool-$size
  head -c "$((2 * quarter))M" /dev/urandom >"$work/img1.raw"
  truncate -s "$((3 * quarter))M" "$work/img1.raw"
  head -c "$((quarter))M" "$work/img1.raw" >>"$work/img1.raw"
  "$strata" --pool "$pool" pool create >/dev/null
  vol=$("$strata" --pool "$pool" create-volume --size "${size}MiB" --volume-type unlimited |
    field VolumeId)
  evol=$("$strata" --pool "$pool" create-volume --size "${size}MiB" --volume-type unlimited \
    --encrypted | field VolumeId)
  serve "$pool"
  nbdcopy "$work/img1.raw" "nbd+unix:///$vol?socket=$work/sock"
  nbdcopy "$work/img1.raw" "nbd+unix:///$evol?socket=$work/sock"
  unserve
  s1=$("$strata" --pool "$pool" create-snapshot --volume-id "$vol" | field SnapshotId)
  es1=$("$strata" --pool "$pool" create-snapshot --volume-id "$evol" | field SnapshotId)
  local changes=$((size * 2 / 100)) cmds=() i  # 512 KiB blocks: 1 % of them
  for i in $(seq 0 $((changes - 1))); do
    cmds+=(-c "write -P $((i % 250 + 1)) $(((i * 97 % (size * 2)) * 524288)) 4k")
  done
  serve "$pool"
  qemu-io -f raw "${cmds[@]}" "nbd+unix:///$vol?socket=$work/sock" >/dev/null
  unserve
  cp --sparse=always "$work/img1.raw" "$work/img2.raw"
  qemu-io -f raw "${cmds[@]}" "$work/img2.raw" >/dev/null
  s2=$("$strata" --pool "$pool" create-snapshot --volume-id "$vol" | field SnapshotId)
  s3 put "$work/img2.raw" "s3://$bucket/raw-$size/img.raw" >/dev/null 2>&1
  sync
}

# ---- one round of one size
push_round() {
  local pool=$work/pool-$size r=$size-$round
  "$strata" --pool "$pool" remote add "p$r" --url "s3://$bucket/strata-$r" \
    --endpoint-url "$S3_ENDPOINT" >/dev/null
  "$strata" --pool "$pool" remote add "e$r" --url "s3://$bucket/strata-enc-$r" \
    --endpoint-url "$S3_ENDPOINT" >/dev/null
  export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="s3:$S3_ENDPOINT/$bucket/restic-$r"
  restic init >/dev/null 2>&1
  local strata_push=(timed push /usr/bin/time -v -o "$work/push.time" "$strata" --pool "$pool"
    copy-snapshot --source-snapshot-id "$s1" --destination-remote "p$r")
  local restic_full=(timed restic-full restic backup --quiet "$work/img1.raw")
  if ((round % 2)); then
    "${strata_push[@]}" >"$work/push.json"
    "${restic_full[@]}" >/dev/null
  else
    "${restic_full[@]}" >/dev/null
    "${strata_push[@]}" >"$work/push.json"
  fi
  note push-rss-kib "$(rss_kib "$work/push.time")"
  local uploaded
  uploaded=$(field BytesUploaded <"$work/push.json")
  note push-bytes "$uploaded"
  head -c "$uploaded" "$work/img1.raw" >"$work/put.raw"  # the random half: incompressible
  timed s3put s3 put "$work/put.raw" "s3://$bucket/put-$r" >/dev/null 2>&1
  rm -f "$work/put.raw"
  timed push-enc "$strata" --pool "$pool" copy-snapshot --source-snapshot-id "$es1" \
    --destination-remote "e$r" >/dev/null
  timed incremental "$strata" --pool "$pool" copy-snapshot --source-snapshot-id "$s2" \
    --destination-remote "p$r" >"$work/inc.json"
  note inc-blocks "$(field BlocksUploaded <"$work/inc.json")"
  timed restic-inc restic backup --quiet "$work/img2.raw" >/dev/null
}

# A round writes about 2.5 times the volume's size into the bucket (two pushes, restic's
# repository, the s3cmd put): deleted before the next, and freed at once when the RGW is
# tools/rgw.sh's (its OSD holds 40 GiB; RGW itself frees deleted objects after minutes).
free_round() {
  local r=$size-$round p
  for p in "strata-$r" "strata-enc-$r" "restic-$r" "put-$r"; do
    s3 del --recursive --force "s3://$bucket/$p" >/dev/null 2>&1
  done
  tools/rgw.sh gc 2>/dev/null || true
}

restore_round() {
  local r=$size-$round
  local lazy_pool=$work/lazy-$r full_pool=$work/full-$r p
  for p in "$lazy_pool" "$full_pool"; do
    "$strata" --pool "$p" pool create >/dev/null
    "$strata" --pool "$p" remote add bench --url "s3://$bucket/strata-$r" \
      --endpoint-url "$S3_ENDPOINT" >/dev/null
  done
  local full=(timed restore /usr/bin/time -v -o "$work/restore.time" "$strata" --pool "$full_pool"
    create-volume --snapshot-id "$s2" --remote bench --volume-type unlimited --wait)
  local get=(timed s3get s3 get --force "s3://$bucket/raw-$size/img.raw" "$work/get.raw")
  sync
  if ((round % 2)); then  # (each copy deleted at once: at 8 GiB two would not fit beside the rest)
    "${full[@]}" >/dev/null && rm -rf "$full_pool"
    "${get[@]}" >/dev/null 2>&1 && rm -f "$work/get.raw"
  else
    "${get[@]}" >/dev/null 2>&1 && rm -f "$work/get.raw"
    "${full[@]}" >/dev/null && rm -rf "$full_pool"
  fi
  note restore-rss-kib "$(rss_kib "$work/restore.time")"
  local t0 t1 lazy
  settle
  t0=$(now)
  lazy=$("$strata" --pool "$lazy_pool" create-volume --snapshot-id "$s2" --remote bench \
    --volume-type unlimited --initialization-rate 0 | field VolumeId)
  t1=$(now)
  note lazy-create "$(python3 -c "print(f'{$t1 - $t0:.3f}')")"
  serve "$lazy_pool"
  local uri="nbd+unix:///$lazy?socket=$work/sock"
  local at=$(((RANDOM * 32768 + RANDOM) % (size * 128) * 4096))  # in the random half
  note cold-read-ms "$(qemu-io -f raw -c "read $at 4k" "$uri" |
    sed -n 's/.* and \([0-9.]*\) ops\/sec.*/\1/p' | python3 -c "print(f'{1000 / float(input()):.2f}')")"
  note cold-iops "$(fio --name=r --ioengine=nbd --uri="$uri" --rw=randread --bs=4k --iodepth=32 \
    --runtime=5 --time_based --output-format=terse 2>/dev/null | awk -F';' '/^3;/ {print $8; exit}')"
  unserve
  rm -rf "$lazy_pool"
}

for size in $sizes; do
  round=0
  echo "== $size MiB: preparing" >&2
  prepare
  for round in $(seq "$rounds"); do
    echo "== $size MiB, round $round" >&2
    push_round
    restore_round
    free_round
  done
  rm -f "$work/img1.raw" "$work/img2.raw"
  rm -rf "$work/pool-$size"
  s3 del "s3://$bucket/raw-$size/img.raw" >/dev/null 2>&1
done

table=$(python3 - "$results" "$rounds" <<'PY'
import collections, statistics, sys
res, rounds = sys.argv[1], int(sys.argv[2])
v = collections.defaultdict(dict)  # (size, key) -> round -> value
for line in open(res):
    size, r, key, value = line.split()
    v[(int(size), key)][int(r)] = float(value)
sizes = sorted({s for s, _ in v})
def med(size, key, f=lambda x: x):
    xs = [f(x) for x in v[(size, key)].values()]
    return statistics.median(xs) if xs else float("nan")
def ratio(size, num, den):  # the median of per-round ratios
    xs = [v[(size, num)][r] / v[(size, den)][r] for r in v[(size, num)] if r in v[(size, den)]]
    return statistics.median(xs) if xs else float("nan")
cols = " | ".join(f"{s // 1024} GiB" if s % 1024 == 0 else f"{s} MiB" for s in sizes)
print(f"| median of {rounds} rounds | {cols} | goal |")
print("|---|" + "---|" * len(sizes) + "---|")
def row(name, cells, goal):
    print(f"| {name} | " + " | ".join(cells) + f" | {goal} |")
row("full push, s", [f"{med(s, 'push'):.2f}" for s in sizes], "")
row("full push ÷ restic backup (throughput)", [f"**{ratio(s, 'restic-full', 'push'):.2f}×**" for s in sizes], "≥ 2×")
row("encrypted full push ÷ restic backup", [f"**{ratio(s, 'restic-full', 'push-enc'):.2f}×**" for s in sizes], "≥ 2× (restic always encrypts)")
row("full push ÷ s3cmd put of the bytes it uploaded", [f"{ratio(s, 's3put', 'push'):.2f}×" for s in sizes], "the physical limit")
row("incremental (1 %) ÷ full push, time", [f"**{ratio(s, 'incremental', 'push'):.3f}**" for s in sizes], "≤ 0.03 at 8 GiB")
row("restic's incremental ÷ its full", [f"{ratio(s, 'restic-inc', 'restic-full'):.2f}" for s in sizes], "")
row("full restore (--wait), s", [f"{med(s, 'restore'):.2f}" for s in sizes], "")
row("full restore ÷ s3cmd get (throughput)", [f"**{ratio(s, 's3get', 'restore'):.2f}×**" for s in sizes], "≥ 1.2×")
row("lazy create-volume, s", [f"{med(s, 'lazy-create'):.2f}" for s in sizes], "≤ 0.5")
row("first cold 4 KiB read, ms", [f"{med(s, 'cold-read-ms'):.1f}" for s in sizes], "≤ 50")
row("cold 4 KiB random reads QD32, IOPS", [f"{med(s, 'cold-iops'):.0f}" for s in sizes], "≥ 860")
row("peak RSS push / restore, MiB", [f"{med(s, 'push-rss-kib') / 1024:.0f} / {med(s, 'restore-rss-kib') / 1024:.0f}" for s in sizes], "≤ 256")
row("bytes uploaded by the full push, MiB", [f"{med(s, 'push-bytes') / 1048576:.0f}" for s in sizes], "")
PY
)
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- lib include tools nbd-server bench || echo "+changes")
# Every round's figures (SIZE ROUND KEY VALUE), beside the medians: one run's spread is what
# says whether a ratio near its goal is above it.
echo "per round:" >&2
sort -k3,3 -k1,1n -k2,2n "$results" | column -t >&2
[[ -n "${STRATA_BENCH_ROUNDS:-}" ]] && cp "$results" "$STRATA_BENCH_ROUNDS"
echo
echo "commit $commit, $(date -u +%Y-%m-%d), RGW at $S3_ENDPOINT"
echo "$table"
if [[ "${STRATA_BENCH_RECORD:-}" == 1 ]]; then
  block=$(printf '%s commit %s, %s\n\n%s\n\nRGW: tools/rgw.sh (one BlueStore OSD on a sparse file, on the same 2 cores as\nthe client). Sizes: %s MiB, %s rounds each.\n<!-- bench/remote.sh results: end -->' \
    "$begin_mark" "$commit" "$(date -u +%Y-%m-%d)" "$table" "$sizes" "$rounds")
  python3 - "$readme" "$block" <<'PY'
import sys
path, block = sys.argv[1], sys.argv[2]
text = open(path).read()
b, e = "<!-- bench/remote.sh results: begin -->", "<!-- bench/remote.sh results: end -->"
if b in text and e in text:
    text = text[:text.index(b)] + block + text[text.index(e) + len(e):]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
  echo "recorded in $readme" >&2
fi
