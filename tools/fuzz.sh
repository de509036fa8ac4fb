#!/usr/bin/env bash
# Fuzzes every parser that takes outside input (libFuzzer, clang, ASan + UBSan): the NBD handshake
# and requests (plaintext and over TLS), snapshot streams, control-socket requests, the AWS shorthand,
# the EC2 API endpoint's SigV4 header and Query parameters, and hostile remote content (trees,
# manifests, indexes and packs read by the lazy and eager restores).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]   (SECONDS per target, default 30; CI runs 30 each;
#                                          longer runs e.g. tools/fuzz.sh 3600 stream_fuzz)
#
# Each target starts from tests/fuzz/corpus/NAME (copied: the committed seeds stay as they are).
# A crash leaves crash-* files in the current directory; replay one with
# build-fuzz/tests/TARGET FILE. Exits non-zero if any target found a problem.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(nbd_fuzz nbd_tls_fuzz stream_fuzz control_fuzz shorthand_fuzz ec2_query_fuzz remote_fuzz kms_fuzz)
fi
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DSTRATA_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >/dev/null
status=0
for target in "${targets[@]}"; do
  corpus=$(mktemp -d)
  cp tests/fuzz/corpus/"${target%_fuzz}"/* "$corpus/"
  echo "== $target, $seconds s"
  if ! build-fuzz/tests/"$target" -max_total_time="$seconds" -max_len=16384 -timeout=10 \
      -rss_limit_mb=4096 -print_final_stats=1 "$corpus" >"$corpus.log" 2>&1; then
    status=1
  fi
  grep -vE '^strata(-nbd)?:' "$corpus.log" | tail -n 8
  rm -rf "$corpus" "$corpus.log"
done
exit $status
