#!/usr/bin/env bash
# Snapshot stream throughput against its limits, in one run (bench/README.md has the results):
#   export-snapshot of a 1 GiB snapshot   vs  zstd -1 of the same bytes (1 thread and all cores;
#   (to a file it fsyncs, and to /dev/null)     zstd writes to the page cache, no fsync)
#                                         vs  nbdcopy of the snapshot's NBD export to a file
#   import-snapshot of that stream        vs  zstd -d of the zstd file
#
#   bench/stream.sh [DIR]     (DIR: where pools and files go; default /var/tmp)
#
# The data: 1 GiB made of /usr's files (tar), about 3:1 compressible, like a system disk.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp}/strata-stream-bench
rm -rf "$dir"
mkdir -p "$dir"
pid=
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target strata_cli strata-nbd >/dev/null
strata=build/tools/strata
pool=$dir/pool
secs() { python3 -c 'import sys,time; print(time.time())'; }
timed() {  # timed NAME CMD...: seconds into $dir/NAME.t
  local t0 t1
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  t0=$(secs)
  "${@:2}"
  t1=$(secs)
  python3 -c "print($t1 - $t0)" >"$dir/$1.t"
}

tar -cf - /usr/lib /usr/share 2>/dev/null | head -c 1G >"$dir/image.raw" || true
truncate -s 1G "$dir/image.raw"
"$strata" --pool "$pool" pool create >/dev/null
vol=$("$strata" --pool "$pool" create-volume --size 1GiB | sed -n 's/.*"VolumeId": "\(vol-[0-9a-f]*\)".*/\1/p')
build/nbd-server/strata-nbd --pool "$pool" --socket "$dir/sock" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [[ -S "$dir/sock" ]] && break; sleep 0.05; done
nbdcopy "$dir/image.raw" "nbd+unix:///$vol?socket=$dir/sock"
snap=$("$strata" --pool "$pool" create-snapshot --volume-id "$vol" | sed -n 's/.*"SnapshotId": "\(snap-[0-9a-f]*\)".*/\1/p')

timed export "$strata" --pool "$pool" export-snapshot --snapshot-id "$snap" --outfile "$dir/s.strm" >/dev/null
timed export_null "$strata" --pool "$pool" export-snapshot --snapshot-id "$snap" --outfile /dev/null >/dev/null
timed nbdcopy nbdcopy "nbd+unix:///$snap?socket=$dir/sock" "$dir/copy.raw"
timed zstd1 zstd -q -1 -T1 -f "$dir/image.raw" -o "$dir/image.zst"
timed zstdN zstd -q -1 -T0 -f "$dir/image.raw" -o "$dir/image.zst"
timed unzstd zstd -q -d -f "$dir/image.zst" -o "$dir/unz.raw"
kill -TERM "$pid"; wait "$pid" || true; pid=
"$strata" --pool "$dir/pool2" pool create >/dev/null
timed import "$strata" --pool "$dir/pool2" import-snapshot --input "$dir/s.strm" >/dev/null

python3 - "$dir" <<'PY'
import os, sys
d = sys.argv[1]
t = {n: float(open(os.path.join(d, n + ".t")).read()) for n in
     ("export", "export_null", "nbdcopy", "zstd1", "zstdN", "unzstd", "import")}
mib = 1024
size = lambda f: os.path.getsize(os.path.join(d, f)) / 2**20
print(f"stream {size('s.strm'):.0f} MiB, zstd -1 file {size('image.zst'):.0f} MiB, from 1024 MiB")
print("| operation | MiB/s | vs zstd -1 (1 thread) | vs zstd -1 -T0 | vs nbdcopy |")
print("|---|---|---|---|---|")
for name, label in (("export", "export-snapshot to a file (fsynced)"),
                    ("export_null", "export-snapshot to /dev/null"),
                    ("import", "import-snapshot (durable)"),
                    ("zstd1", "zstd -1 -T1"), ("zstdN", "zstd -1 -T0"), ("unzstd", "zstd -d"),
                    ("nbdcopy", "nbdcopy of the export")):
    rate = mib / t[name]
    print(f"| {label} | {rate:.0f} | {t['zstd1'] / t[name]:.2f} | {t['zstdN'] / t[name]:.2f} |"
          f" {t['nbdcopy'] / t[name]:.2f} |")
PY
