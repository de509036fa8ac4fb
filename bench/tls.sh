#!/usr/bin/env bash
# TLS on NBD against plaintext and against the peers' TLS, in one run, on one file system, with
# nbdcopy (libnbd) over unix sockets reading the whole volume to null: (fio's nbd engine cannot
# take TLS credentials: libnbd refuses tls-certificates= in a URI unless the program allows
# local files, and fio does not): strata-nbd plaintext, strata-nbd --tls=require,
# nbdkit --tls=require (file plugin) and qemu-nbd --tls-creds (raw, its best mode in
# bench/nbd.sh), all on X.509 credentials from tools/test-pki.sh. Cases: 4 KiB reads at QD32
# and 1 MiB reads at QD8 over one connection, on a filled 1 GiB volume (sequential: nbdcopy's
# order; each request costs the server what a random one would, the data being in page cache). Prints each figure and the
# ratios the security issue sets targets for (TLS / plaintext: 4 KiB >= 0.85, 1 MiB >= 0.7; and
# ahead of both peers over TLS).
#
#   bench/tls.sh [DIR] [RUNS]   (default /var/tmp, 1 run; about 1 minute per run)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp}
runs=${2:-1}
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
  uri="nbd+unix:///vol?socket=$sock"
  [[ -z $tls ]] || uri="nbds+unix:///vol?socket=$sock$tls"
  if [[ $1 == strata* ]]; then
    nbdcopy "$work/data.raw" "$uri"
  fi
}
stop() {
  kill -- -"$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
copy_time() {  # request-size requests -> seconds to read the whole volume
  local t0 t1
  t0=$(date +%s.%N)
  nbdcopy --connections=1 --request-size="$1" --requests="$2" "$uri" null:
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
declare -A rand seq
for run in $(seq "$runs"); do
  for s in strata strata-tls nbdkit-tls qemu-tls; do
    start "$s"
    rand[$s]=$(python3 -c "print(round(262144 / $(copy_time 4096 32)))")
    seq[$s]=$(python3 -c "print(round(1024 / $(copy_time 1048576 8)))")
    stop
  done
  echo "run $run"
  printf '%-24s %16s %16s\n' "server" "4 KiB read IOPS" "1 MiB read MiB/s"
  for s in strata strata-tls nbdkit-tls qemu-tls; do
    printf '%-24s %16s %16s\n' "$s" "${rand[$s]}" "${seq[$s]}"
  done
  echo "strata TLS / plaintext: 4 KiB $(ratio "${rand[strata-tls]}" "${rand[strata]}") (target >= 0.85)," \
    "1 MiB $(ratio "${seq[strata-tls]}" "${seq[strata]}") (target >= 0.7)"
  echo "strata TLS / nbdkit TLS: 4 KiB $(ratio "${rand[strata-tls]}" "${rand[nbdkit-tls]}")," \
    "1 MiB $(ratio "${seq[strata-tls]}" "${seq[nbdkit-tls]}")"
  echo "strata TLS / qemu-nbd TLS: 4 KiB $(ratio "${rand[strata-tls]}" "${rand[qemu-tls]}")," \
    "1 MiB $(ratio "${seq[strata-tls]}" "${seq[qemu-tls]}")"
done
