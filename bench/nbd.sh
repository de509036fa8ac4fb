#!/usr/bin/env bash
# strata-nbd against the raw file and the NBD servers a user would pick instead, measured in
# interleaved rounds so that the disk's drift (tens of percent over minutes here) cancels out:
# each round runs every case on every target back to back (raw file, strata, qemu-nbd, ...), and
# the table shows the median of the per-round ratios, which one run can be trusted for.
#
#   bench/nbd.sh [DIR] [SECONDS] [ROUNDS]   (DIR: scratch on the file system to test, default
#                                            /var/tmp; SECONDS per job, default 5; ROUNDS,
#                                            default 3; about 17 minutes with the defaults)
#
# Targets, all serving a filled 2 GiB volume over a unix socket to fio's nbd engine, all started
# at once and filled before the first round:
#   raw          fio io_uring O_DIRECT on a raw file: the hardware limit (no NBD);
#   strata       strata-nbd --no-volume-limits (the EBS limits are on by default);
#   qemu-nbd     --cache=none --aio=io_uring (durable writes, as strata's);
#   nbdkit-file, nbd-server: page-cache servers, not durable-write peers (listed for reference);
#   strata-enc   strata-nbd serving an encrypted volume (AES-256-XTS, docs/security.md);
#   qemu-luks    qemu-nbd serving a LUKS image (aes-256-xts-plain64, --cache=none io_uring): the
#                encrypting peer (dm-crypt needs device-mapper). Not in the default targets.
# Cases: 4 KiB randread / randwrite / 70-30 at QD32; 1 MiB sequential read and write at QD8;
# 4 KiB randread on 2 connections (multi-conn) and over TCP loopback (strata and qemu-nbd); 4 KiB
# randread at QD1, whose ratio is the latency a server adds to each request.
# "us/IO": CPU time of the server's whole process tree per completed I/O.
# STRATA_BENCH_CASES picks cases by name (randread randwrite randrw seqread seqwrite
# randread-2conn randread-tcp randread-qd1; default: all). STRATA_BENCH_TARGETS picks targets
# (default: all five). The target strata-base is the same
# server from another build (STRATA_BENCH_BASELINE=DIR, e.g. a worktree of an older commit built
# with -DCMAKE_BUILD_TYPE=Release): "strata ×strata-base" is a change's before/after ratio. STRATA_BENCH_PIN=SERVER_CPUS:FIO_CPUS
# (e.g. 1:0) runs every server on SERVER_CPUS and every fio, the raw file's too, on FIO_CPUS;
# unset, the scheduler places them (on 2 vCPUs it puts client and server on one). Needs fio,
# qemu-utils, nbdkit, nbd-server, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp}
secs=${2:-5}
rounds=${3:-3}
size=2G
server_pin=() fio_pin=()
if [[ -n "${STRATA_BENCH_PIN:-}" ]]; then
  [[ $STRATA_BENCH_PIN == ?*:?* ]] || { echo "STRATA_BENCH_PIN: want SERVER_CPUS:FIO_CPUS, e.g. 1:0" >&2; exit 2; }
  for cpus in "${STRATA_BENCH_PIN%%:*}" "${STRATA_BENCH_PIN#*:}"; do  # refused before any setup
    taskset -c "$cpus" true || { echo "STRATA_BENCH_PIN: bad CPU list '$cpus'" >&2; exit 2; }
  done
  server_pin=(taskset -c "${STRATA_BENCH_PIN%%:*}")
  fio_pin=(taskset -c "${STRATA_BENCH_PIN#*:}")
fi
work=$(mktemp -d "$dir/strata-nbd-bench.XXXXXX")
results=${STRATA_BENCH_RESULTS:-$dir/strata-nbd-bench-results}  # kept: raw fio JSON per job
rm -rf "$results"
mkdir -p "$results"
targets=${STRATA_BENCH_TARGETS:-raw strata qemu-nbd nbdkit-file nbd-server}
declare -A pid uri tcp_uri
cleanup() {
  for t in "${!pid[@]}"; do kill -- -"${pid[$t]}" 2>/dev/null || kill "${pid[$t]}" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
echo "results (fio JSON per job): $results" >&2

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target strata_cli strata-nbd >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

session_cpu_ticks() {  # utime+stime(+children) of every process in session $1
  local total=0
  for stat in /proc/[0-9]*/stat; do
    read -r -a f <"$stat" 2>/dev/null || continue
    [[ "${f[5]}" == "$1" ]] || continue  # the session id, when comm has no spaces
    total=$((total + f[13] + f[14] + f[15] + f[16]))
  done
  echo "$total"
}

wait_socket() { for _ in $(seq 200); do [[ -S "$1" ]] && return; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }

start_target() {  # name
  local t=$1 sock=$work/$1.sock port
  case $t in
    raw)
      fio --name=fill --filename="$work/raw.file" --size=$size --rw=write --bs=1M --direct=1 \
        --ioengine=io_uring --iodepth=8 >/dev/null
      return
      ;;
    strata | strata-base | strata-enc)
      local bin=build enc=()
      if [[ $t == strata-base ]]; then
        bin=${STRATA_BENCH_BASELINE:?strata-base: set STRATA_BENCH_BASELINE to another build dir}
      fi
      if [[ $t == strata-enc ]]; then  # an encrypted volume (AES-256-XTS), its key from the KMS
        head -c 32 /dev/urandom >"$work/root.key"
        chmod 600 "$work/root.key"
        enc=(--kms-root-key "$work/root.key")
      fi
      "$bin/tools/strata" --pool "$work/$t.pool" pool create >/dev/null
      "$bin/tools/strata" --pool "$work/$t.pool" "${enc[@]}" create-volume --size 2GiB --name vol \
        ${enc:+--encrypted} >/dev/null
      port=$(free_port)
      setsid "${server_pin[@]}" "$bin/nbd-server/strata-nbd" --pool "$work/$t.pool" \
        --socket "$sock" --listen "127.0.0.1:$port" --no-volume-limits "${enc[@]}" 2>/dev/null &
      tcp_uri[$t]="nbd://127.0.0.1:$port/vol"
      ;;
    qemu-nbd)
      truncate -s $size "$work/qemu.raw"
      port=$(free_port)
      setsid "${server_pin[@]}" qemu-nbd -f raw --cache=none --aio=io_uring -e 4 -t -x vol -k "$sock" "$work/qemu.raw" &
      pid[$t]=$!
      # (qemu-nbd serves one address; a second process on the same file serves TCP, started
      # only for the TCP case so that the two never write at once.)
      tcp_uri[$t]="nbd://127.0.0.1:$port/vol"
      echo "$port" >"$work/qemu.port"
      ;;
    qemu-luks)  # qemu's own LUKS (aes-256-xts-plain64, AES-NI): the encrypted peer here
      # (dm-crypt through qemu-nbd needs device-mapper, which this kernel may lack)
      qemu-img create -f luks --object secret,id=s0,data=strata-bench -o key-secret=s0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,iter-time=10 \
        "$work/qemu.luks" $size >/dev/null
      setsid "${server_pin[@]}" qemu-nbd --object secret,id=s0,data=strata-bench --image-opts \
        "driver=luks,key-secret=s0,file.driver=file,file.filename=$work/qemu.luks,file.aio=io_uring,cache.direct=on" \
        -e 4 -t -x vol -k "$sock" &
      ;;
    nbdkit-file)
      truncate -s $size "$work/nbdkit.raw"
      setsid "${server_pin[@]}" nbdkit -f -U "$sock" file file="$work/nbdkit.raw" &
      ;;
    nbd-server)
      truncate -s $size "$work/nbd-server.raw"
      printf '[generic]\nunixsock = %s\n[vol]\nexportname = %s\nflush = true\nfua = true\ntrim = true\n' \
        "$sock" "$work/nbd-server.raw" >"$work/nbd-server.conf"
      # Daemon mode (it forks per client): it calls setsid itself, so its pid is its session.
      "${server_pin[@]}" nbd-server -C "$work/nbd-server.conf" -p "$work/nbd-server.pid" 2>/dev/null
      for _ in $(seq 100); do [[ -s "$work/nbd-server.pid" ]] && break; sleep 0.05; done
      pid[$t]=$(cat "$work/nbd-server.pid")
      ;;
  esac
  [[ -n "${pid[$t]:-}" ]] || pid[$t]=$!
  wait_socket "$sock"
  uri[$t]="nbd+unix:///vol?socket=$sock"
  fio --name=fill --ioengine=nbd --uri="${uri[$t]}" --rw=write --bs=1M --iodepth=8 --size=$size \
    >/dev/null 2>&1 || echo "fill failed: $t" >&2
}

drop_caches() {  # page-cache servers start every job cold
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

# One fio job of `case` on target `t` in round `r`: its JSON and the server's CPU ticks.
run_job() {  # t case r rw bs qd jobs transport
  local t=$1 case=$2 r=$3 rw=$4 bs=$5 qd=$6 jobs=$7 transport=$8 out before after
  out=$results/$t.$case.$r
  drop_caches
  local common=(--name="$case" --rw="$rw" --rwmixread=70 --bs="$bs" --iodepth="$qd"
    --numjobs="$jobs" --group_reporting --size=$size --time_based --runtime="$secs"
    --ramp_time=1 --norandommap --randrepeat=0 --output-format=json)
  if [[ $t == raw ]]; then
    "${fio_pin[@]}" fio "${common[@]}" --filename="$work/raw.file" --direct=1 --ioengine=io_uring \
      --iodepth_batch_submit="$qd" --iodepth_batch_complete_min=1 >"$out.json" 2>/dev/null ||
      echo "fio failed: $t $case" >&2
    echo 0 >"$out.cpu"
    return
  fi
  local target_uri=${uri[$t]} session=${pid[$t]} tcp_pid=
  if [[ $transport == tcp ]]; then
    target_uri=${tcp_uri[$t]}
    if [[ $t == qemu-nbd ]]; then  # its TCP twin, on the same file, while the unix one idles
      setsid "${server_pin[@]}" qemu-nbd -f raw --cache=none --aio=io_uring -e 4 -t -x vol -b 127.0.0.1 \
        -p "$(cat "$work/qemu.port")" "$work/qemu.raw" &
      tcp_pid=$!
      session=$tcp_pid
      sleep 0.3
    fi
  fi
  before=$(session_cpu_ticks "$session")
  "${fio_pin[@]}" fio "${common[@]}" --ioengine=nbd --uri="$target_uri" >"$out.json" 2>/dev/null ||
    echo "fio failed: $t $case" >&2
  after=$(session_cpu_ticks "$session")
  echo $((after - before)) >"$out.cpu"
  if [[ -n $tcp_pid ]]; then kill -- -"$tcp_pid" 2>/dev/null || true; wait "$tcp_pid" 2>/dev/null || true; fi
}

for t in $targets; do
  echo "== start and fill $t" >&2
  start_target "$t"
done

cases=("randread randread 4k 32 1 unix" "randwrite randwrite 4k 32 1 unix"
  "randrw randrw 4k 32 1 unix" "seqread read 1M 8 1 unix" "seqwrite write 1M 8 1 unix"
  "randread-2conn randread 4k 32 2 unix" "randread-tcp randread 4k 32 1 tcp"
  "randread-qd1 randread 4k 1 1 unix")
for r in $(seq "$rounds"); do
  for spec in "${cases[@]}"; do
    set -- $spec
    if [[ -n "${STRATA_BENCH_CASES:-}" && " $STRATA_BENCH_CASES " != *" $1 "* ]]; then continue; fi
    echo "== round $r: $1" >&2
    for t in $targets; do
      if [[ $6 == tcp && $t != raw && -z "${tcp_uri[$t]:-}" ]]; then continue; fi
      run_job "$t" "$1" "$r" "$2" "$3" "$4" "$5" "$6"
    done
  done
done

python3 - "$results" "$(getconf CLK_TCK)" "$rounds" $targets <<'PY'
import json, os, statistics, sys
res, hz, rounds, targets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
cases = [("randread", "4k randread QD32"), ("randwrite", "4k randwrite QD32"),
         ("randrw", "4k 70/30 QD32"), ("seqread", "1M read QD8 MiB/s"),
         ("seqwrite", "1M write QD8 MiB/s"), ("randread-2conn", "4k randread, 2 conns"),
         ("randread-tcp", "4k randread, TCP"), ("randread-qd1", "4k randread QD1")]
def load(t, case, r):
    p = os.path.join(res, f"{t}.{case}.{r}.json")
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return None
    text = open(p).read()
    try:  # fio's nbd engine prints a banner line before the JSON
        j = json.loads(text[text.index("{"):])["jobs"][0]
    except Exception:
        return None
    ios = j["read"]["total_ios"] + j["write"]["total_ios"]
    seq = case.startswith("seq")
    v = (j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 2**20 if seq else \
        j["read"]["iops"] + j["write"]["iops"]
    ticks = int(open(os.path.join(res, f"{t}.{case}.{r}.cpu")).read() or 0)
    return v, (ticks / hz * 1e6 / ios if ios else 0)
def fig(v, seq):
    return f"{v:.0f}" if seq else f"{v/1000:.1f}k"
def med_ratio(case, a, b):
    rs = []
    for r in range(1, rounds + 1):
        x, y = load(a, case, r), load(b, case, r)
        if x and y and y[0]:
            rs.append(x[0] / y[0])
    return f"{statistics.median(rs):.2f}" if rs else "–"
peers = [t for t in targets if t not in ("raw", "strata")]
head = ["case"] + [f"{t} ({rounds} runs)" for t in targets]
head += ["strata ×raw"] + [f"strata ×{p}" for p in peers]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for case, label in cases:
    seq = case.startswith("seq")
    row = [label]
    for t in targets:
        runs = [load(t, case, r) for r in range(1, rounds + 1)]
        runs = [x for x in runs if x]
        if not runs:
            row.append("–")
            continue
        cell = " ".join(fig(v, seq) for v, _ in runs)
        if t != "raw":
            cell += f" ({statistics.median(c for _, c in runs):.0f} us)"
        row.append(cell)
    row.append(med_ratio(case, "strata", "raw"))
    row += [med_ratio(case, "strata", p) for p in peers]
    print("| " + " | ".join(row) + " |")
print()
print("Cells: each round's IOPS (or MiB/s), then the median server CPU µs per I/O. Ratios: the")
print("median of the per-round ratios (each round runs every target back to back). raw = fio")
print("io_uring O_DIRECT on a raw file, no NBD; its TCP and 2-conn rows are its plain QD32 job")
print("(2 jobs for 2 conns). nbdkit-file and nbd-server write into the page cache: not durable.")
PY
