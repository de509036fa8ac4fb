#!/usr/bin/env bash
# TLS on NBD against plaintext and against the peers' TLS, in one run, on one file system, with
# fio's nbd engine (libnbd) over unix sockets: strata-nbd plaintext, strata-nbd --tls=require,
# nbdkit --tls=require (file plugin) and qemu-nbd --tls-creds (raw, its best mode in
# bench/nbd.sh), all on X.509 credentials from tools/test-pki.sh. Cases: 4 KiB random reads at
# QD32 and 1 MiB sequential reads at QD8 on a filled 1 GiB volume. Prints each figure and the
# ratios the security issue sets targets for (TLS / plaintext: 4 KiB >= 0.85, 1 MiB >= 0.7; and
# ahead of both peers over TLS).
#
#   bench/tls.sh [DIR] [SECONDS]   (default /var/tmp, 5 s per job; about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp}
secs=${2:-5}
work=$(mktemp -d "$dir/strata-tls-bench.XXXXXX")
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill -- -"$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cmake --build build -j"$(nproc)" --target strata_cli strata-nbd >/dev/null
tools/test-pki.sh "$work/pki"
head -c 1G /dev/urandom >"$work/data.raw"

start() {  # name -> sets uri
  local sock=$work/$1.sock
  rm -f "$sock"
  local tls="&tls-certificates=$work/pki/client"
  case $1 in
    strata | strata-tls)
      rm -rf "$work/pool"
      build/tools/strata --pool "$work/pool" pool create >/dev/null
      build/tools/strata --pool "$work/pool" create-volume --size 1GiB --name vol \
        --volume-type unlimited >/dev/null
      if [[ $1 == strata ]]; then
        setsid build/nbd-server/strata-nbd --pool "$work/pool" --socket "$sock" 2>/dev/null &
        tls=
      else
        setsid build/nbd-server/strata-nbd --pool "$work/pool" --socket "$sock" \
          --tls-certificates "$work/pki/server" 2>/dev/null &
      fi
      ;;
    nbdkit-tls)
      cp "$work/data.raw" "$work/vol.raw"
      setsid nbdkit -f -U "$sock" --tls=require --tls-certificates "$work/pki/server" \
        file file="$work/vol.raw" &
      ;;
    qemu-tls)
      cp "$work/data.raw" "$work/vol.raw"
      setsid qemu-nbd -f raw --cache=none --aio=threads -e 4 -t -x vol -k "$sock" \
        --object "tls-creds-x509,id=tls0,endpoint=server,dir=$work/pki/server" \
        --tls-creds tls0 "$work/vol.raw" &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 200); do [[ -S "$sock" ]] && break; sleep 0.05; done
  uri="nbd$([[ -n $tls ]] && echo s)+unix:///vol?socket=$sock$tls"
  if [[ $1 == strata* ]]; then
    nbdcopy "$work/data.raw" "$uri"
  fi
}
stop() {
  kill -- -"$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
fio_job() {  # rw bs depth -> "IOPS MiB/s"
  fio --name=j --ioengine=nbd --uri="$uri" --rw="$1" --bs="$2" --iodepth="$3" \
    --runtime="$secs" --time_based --output-format=json 2>/dev/null |
    python3 -c "import json,sys; r=json.load(sys.stdin)['jobs'][0]['read']; print(f\"{r['iops']:.0f} {r['bw_bytes']/1048576:.0f}\")"
}

declare -A rand seq
for s in strata strata-tls nbdkit-tls qemu-tls; do
  start "$s"
  rand[$s]=$(fio_job randread 4k 32 | cut -d' ' -f1)
  seq[$s]=$(fio_job read 1M 8 | cut -d' ' -f2)
  stop
done
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
printf '%-24s %16s %16s\n' "server" "4k randread IOPS" "1M read MiB/s"
for s in strata strata-tls nbdkit-tls qemu-tls; do
  printf '%-24s %16s %16s\n' "$s" "${rand[$s]}" "${seq[$s]}"
done
echo "strata TLS / plaintext: 4 KiB $(ratio "${rand[strata-tls]}" "${rand[strata]}") (target >= 0.85)," \
  "1 MiB $(ratio "${seq[strata-tls]}" "${seq[strata]}") (target >= 0.7)"
echo "strata TLS / nbdkit TLS: 4 KiB $(ratio "${rand[strata-tls]}" "${rand[nbdkit-tls]}")," \
  "1 MiB $(ratio "${seq[strata-tls]}" "${seq[nbdkit-tls]}")"
echo "strata TLS / qemu-nbd TLS: 4 KiB $(ratio "${rand[strata-tls]}" "${rand[qemu-tls]}")," \
  "1 MiB $(ratio "${seq[strata-tls]}" "${seq[qemu-tls]}")"
