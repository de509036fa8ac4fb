#!/usr/bin/env bash
# strata-nbd against the NBD servers a user would pick instead, in one run, on one file system,
# with fio's nbd engine over unix sockets. Prints a table of every figure and its ratio.
#
#   bench/nbd.sh [DIR] [SECONDS]    (DIR: scratch on the file system to test, default /var/tmp;
#                                    SECONDS per job, default 5; about 15 minutes in all)
#
# Servers: strata-nbd; qemu-nbd on raw and on qcow2 (--cache=none --aio=threads -e 4, its best
# mode in ../shared/research/perf-baseline.md); nbdkit file; nbd-server; nbdkit memory (the
# protocol ceiling); and fio's io_uring engine on the raw file (the hardware limit, no NBD).
# Cases: 4 KiB randread / randwrite / 70-30 at QD32 on a filled 1 GiB volume, 4 KiB randwrite
# on a fresh thin volume, 1 MiB sequential read and write at QD8, randread with 2 connections.
# "srv us/IO": CPU time of the server's whole process tree (threads and forked children) per
# completed I/O. Needs fio, qemu-utils, nbdkit, nbd-server, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp}
secs=${2:-5}
work=$(mktemp -d "$dir/strata-nbd-bench.XXXXXX")
results=${STRATA_BENCH_RESULTS:-$dir/strata-nbd-bench-results}  # kept: raw fio JSON per job
rm -rf "$results"
mkdir -p "$results"
servers=${STRATA_BENCH_SERVERS:-strata qemu-raw qemu-qcow2 nbdkit-file nbd-server mem}
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill -- -"$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "results (fio JSON per job): $results" >&2

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target strata_cli strata-nbd >/dev/null
size=1G

session_cpu_ticks() {  # utime+stime(+children) of every process in session $1
  local total=0
  for stat in /proc/[0-9]*/stat; do
    read -r -a f <"$stat" 2>/dev/null || continue
    # fields after the command: f[5] is the session id when comm has no spaces
    [[ "${f[5]}" == "$1" ]] || continue
    total=$((total + f[13] + f[14] + f[15] + f[16]))
  done
  echo "$total"
}

start_server() {  # name
  local sock=$work/$1.sock
  rm -f "$sock"
  case $1 in
    strata)
      rm -rf "$work/pool"
      build/tools/strata --pool "$work/pool" pool create >/dev/null
      build/tools/strata --pool "$work/pool" create-volume --size 1GiB --name vol \
        --volume-type unlimited >/dev/null  # the peers have no limits either
      setsid build/nbd-server/strata-nbd --pool "$work/pool" --socket "$sock" 2>/dev/null &
      ;;
    qemu-raw)
      rm -f "$work/vol.raw"; truncate -s $size "$work/vol.raw"
      setsid qemu-nbd -f raw --cache=none --aio=threads -e 4 -t -x vol -k "$sock" "$work/vol.raw" &
      ;;
    qemu-qcow2)
      rm -f "$work/vol.qcow2"; qemu-img create -q -f qcow2 "$work/vol.qcow2" $size
      setsid qemu-nbd -f qcow2 --cache=none --aio=threads -e 4 -t -x vol -k "$sock" "$work/vol.qcow2" &
      ;;
    nbdkit-file)
      rm -f "$work/vol.raw"; truncate -s $size "$work/vol.raw"
      setsid nbdkit -f -U "$sock" file file="$work/vol.raw" &
      ;;
    nbd-server)
      rm -f "$work/vol.raw"; truncate -s $size "$work/vol.raw"
      printf '[generic]\nunixsock = %s\n[vol]\nexportname = %s\nflush = true\nfua = true\ntrim = true\n' \
        "$sock" "$work/vol.raw" >"$work/nbd-server.conf"
      # Daemon mode (it forks per client; -d would serve a single connection): it calls
      # setsid itself, so its pid is its session id.
      nbd-server -C "$work/nbd-server.conf" -p "$work/nbd-server.pid" 2>/dev/null
      for _ in $(seq 100); do [[ -s "$work/nbd-server.pid" ]] && break; sleep 0.05; done
      server_pid=$(cat "$work/nbd-server.pid")
      for _ in $(seq 200); do [[ -S "$sock" ]] && break; sleep 0.05; done
      uri="nbd+unix:///vol?socket=$sock"
      return
      ;;
    mem)
      setsid nbdkit -f -U "$sock" memory size=$size &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 200); do [[ -S "$sock" ]] && break; sleep 0.05; done
  uri="nbd+unix:///vol?socket=$sock"
}

stop_server() {
  kill -- -"$server_pid" 2>/dev/null || kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
  server_pid=
}

drop_caches() {  # servers that use the page cache start every job cold, as in the baseline
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

run_job() {  # server case rw bs qd jobs [extra]
  local name=$1 case=$2 rw=$3 bs=$4 qd=$5 jobs=$6
  local before after
  drop_caches
  before=$(session_cpu_ticks "$server_pid")
  fio --name="$case" --ioengine=nbd --uri="$uri" --rw="$rw" --rwmixread=70 --bs="$bs" \
      --iodepth="$qd" --numjobs="$jobs" --group_reporting --size=$size --time_based \
      --runtime="$secs" --ramp_time=1 --norandommap --randrepeat=0 --output-format=json \
      >"$results/$name.$case.json" 2>/dev/null || echo "fio failed: $name $case" >&2
  after=$(session_cpu_ticks "$server_pid")
  echo $((after - before)) >"$results/$name.$case.cpu"
}

for server in $servers; do
  echo "== $server" >&2
  start_server "$server"
  run_job "$server" thin-randwrite randwrite 4k 32 1
  fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size=$size \
      >/dev/null 2>&1 || echo "fill failed: $server" >&2
  run_job "$server" randread randread 4k 32 1
  run_job "$server" randwrite randwrite 4k 32 1
  run_job "$server" randrw randrw 4k 32 1
  run_job "$server" seqread read 1M 8 1
  run_job "$server" seqwrite write 1M 8 1
  run_job "$server" randread-2conn randread 4k 32 2
  stop_server
done

echo "== raw file (fio io_uring, O_DIRECT)" >&2
raw=$work/raw.file
fio --name=fill --filename="$raw" --size=$size --rw=write --bs=1M --direct=1 --ioengine=io_uring \
    --iodepth=8 >/dev/null
for spec in "randread randread 4k 32 1" "randwrite randwrite 4k 32 1" "randrw randrw 4k 32 1" \
            "seqread read 1M 8 1" "seqwrite write 1M 8 1" "randread-2conn randread 4k 32 2"; do
  set -- $spec
  fio --name="$1" --filename="$raw" --size=$size --rw="$2" --rwmixread=70 --bs="$3" --direct=1 \
      --ioengine=io_uring --iodepth="$4" --numjobs="$5" --group_reporting --time_based \
      --runtime="$secs" --ramp_time=1 --norandommap --randrepeat=0 --iodepth_batch_submit="$4" \
      --iodepth_batch_complete_min=1 --output-format=json >"$results/raw.$1.json"
  echo 0 >"$results/raw.$1.cpu"
done
rm -f "$raw" "$raw.thin"  # the thin case needs a fresh sparse file
fio --name=thin-randwrite --filename="$raw.thin" --size=$size --rw=randwrite --bs=4k --direct=1 \
    --ioengine=io_uring --iodepth=32 --time_based --runtime="$secs" --ramp_time=1 --norandommap \
    --randrepeat=0 --iodepth_batch_submit=32 --iodepth_batch_complete_min=1 \
    --output-format=json >"$results/raw.thin-randwrite.json"
echo 0 >"$results/raw.thin-randwrite.cpu"

python3 - "$results" "$(getconf CLK_TCK)" <<'PY'
import json, os, sys
res, hz = sys.argv[1], int(sys.argv[2])
servers = ["strata", "qemu-raw", "qemu-qcow2", "nbdkit-file", "nbd-server", "mem", "raw"]
cases = [("randread", "4k randread QD32"), ("randwrite", "4k randwrite QD32"),
         ("randrw", "4k 70/30 QD32"), ("thin-randwrite", "4k randwrite, fresh thin"),
         ("seqread", "1M read QD8 (MiB/s)"), ("seqwrite", "1M write QD8 (MiB/s)"),
         ("randread-2conn", "4k randread, 2 conns")]
def load(server, case):
    p = os.path.join(res, f"{server}.{case}.json")
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return None
    text = open(p).read()
    try:  # fio's nbd engine prints a banner line before the JSON
        j = json.loads(text[text.index("{"):])["jobs"][0]
    except Exception:
        return None
    ios = j["read"]["total_ios"] + j["write"]["total_ios"]
    iops = j["read"]["iops"] + j["write"]["iops"]
    mibs = (j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 2**20
    ticks = int(open(os.path.join(res, f"{server}.{case}.cpu")).read() or 0)
    cpu_us = ticks / hz * 1e6 / ios if ios else 0
    return iops, mibs, cpu_us
print("| case | " + " | ".join(servers) + " | strata / qemu-raw | strata / mem | strata / raw |")
print("|---|" + "---|" * (len(servers) + 3))
for case, label in cases:
    cells, val = [], {}
    for s in servers:
        r = load(s, case)
        if r is None:
            cells.append("–")
            continue
        seq = case.startswith("seq")
        v = r[1] if seq else r[0]
        val[s] = v
        fig = f"{v:.0f}" if seq else f"{v/1000:.1f}k"
        if s != "raw":
            fig += f" ({r[2]:.0f} us)"
        cells.append(fig)
    def ratio(a, b):
        return f"{val[a]/val[b]:.2f}" if a in val and b in val and val[b] else "–"
    print(f"| {label} | " + " | ".join(cells) +
          f" | {ratio('strata','qemu-raw')} | {ratio('strata','mem')} | {ratio('strata','raw')} |")
print()
print("Cells: IOPS (or MiB/s) and, in brackets, server CPU µs per I/O. raw = fio io_uring on the")
print("raw file, no NBD (thin-randwrite: a sparse file). mem = nbdkit memory, the protocol ceiling.")
PY
