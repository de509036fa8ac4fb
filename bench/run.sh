#!/usr/bin/env bash
# Library benchmark vs the hardware limit, in one run, on one file system.
#
#   bench/run.sh [DIR]     (DIR: where the raw file and pools go; default /var/tmp)
#
# 1. fio's io_uring engine with O_DIRECT on a raw file, at its best settings (batched submission,
#    registered files and buffers: with fio's defaults fio itself is the CPU bottleneck here): 4 KiB randread and randwrite at QD1 and
#    QD32 on a filled 1 GiB file, and randwrite at QD1/QD32 into a fresh sparse 64 GiB file (first
#    writes into holes): the hardware limit Strata is compared with.
# 2. build/bench/volume_bench: the same cases through the Strata library (async API, io_uring);
#    the same cases with Strata's own io_uring loop straight on a raw file (the limit without the
#    store: fio is CPU-bound on 2 vCPUs); map lookup and group commit at 1 GiB and 64 GiB mapped.
# 3. A table of every figure and its ratio. Needs fio and python3 (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp}
out=$(mktemp -d)
trap 'rm -rf "$out" "$dir/strata-bench-raw" "$dir/strata-bench-thin"' EXIT

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target volume_bench >/dev/null

raw="$dir/strata-bench-raw"
fio --name=fill --filename="$raw" --size=1G --rw=write --bs=1M --direct=1 --ioengine=io_uring \
    --iodepth=8 >/dev/null
run_fio() {  # name rw qd file size
  fio --name="$1" --filename="$4" --size="$5" --rw="$2" --bs=4k --direct=1 --ioengine=io_uring \
      --iodepth="$3" --time_based --runtime=5 --ramp_time=1 --norandommap --randrepeat=0 \
      --iodepth_batch_submit="$3" --iodepth_batch_complete_min=1 --fixedbufs --registerfiles \
      --output-format=json >"$out/fio-$1.json"
}
for qd in 1 32; do
  run_fio "randread-$qd" randread "$qd" "$raw" 1G
  run_fio "overwrite-$qd" randwrite "$qd" "$raw" 1G
  rm -f "$dir/strata-bench-thin"
  run_fio "firstwrite-$qd" randwrite "$qd" "$dir/strata-bench-thin" 64G
done

STRATA_BENCH_DIR="$dir" build/bench/volume_bench --benchmark_format=json \
  --benchmark_out="$out/strata.json" --benchmark_out_format=json >/dev/null

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def fio_iops(name):
    j = json.load(open(os.path.join(out, f"fio-{name}.json")))
    job = j["jobs"][0]
    return job["read"]["iops"] + job["write"]["iops"]
bench = {b["name"]: b for b in json.load(open(os.path.join(out, "strata.json")))["benchmarks"]}
def strata(prefix):
    for name, b in bench.items():
        if name.startswith(prefix):
            return b
    raise KeyError(prefix)
print("| case | raw file, fio | raw file, Strata's engine | Strata volume | vs fio | vs engine | target |")
print("|---|---|---|---|---|---|---|")
for case, target in (("randread", 0.8), ("overwrite", 0.8), ("firstwrite", 0.5)):
    for qd in (1, 32):
        fio = fio_iops(f"{case}-{qd}")
        raw = strata(f"BM_RawFile/{case}/{qd}/")["IOPS"]
        s = strata(f"BM_Volume/{case}/{qd}/")["IOPS"]
        print(f"| 4 KiB {case} QD{qd} | {fio/1000:.1f}k | {raw/1000:.1f}k | {s/1000:.1f}k "
              f"| {s/fio:.2f} | {s/raw:.2f} | >= {target} |")
print()
print("| metadata cost | 1 GiB mapped | 64 GiB mapped | ratio 64/1 |")
print("|---|---|---|---|")
for name, label, unit in (("BM_MapLookup", "read path per 4 KiB (no data I/O)", "us"),
                          ("BM_GroupCommit", "commit of 256 new mappings", "us")):
    a, b = strata(f"{name}/1/"), strata(f"{name}/64/")
    def us(x):
        t = x["real_time"]
        return t / 1000 if x["time_unit"] == "ns" else t
    print(f"| {label} | {us(a):.1f} us | {us(b):.1f} us | {us(b)/us(a):.2f} |")
PY
