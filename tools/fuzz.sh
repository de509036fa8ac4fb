#!/usr/bin/env bash
# Fuzzes the NBD handshake and request parsers (libFuzzer, clang, ASan + UBSan).
#
#   tools/fuzz.sh [SECONDS]     (default 60; CI runs 60, longer runs e.g. tools/fuzz.sh 3600)
#
# Starts from tests/fuzz/corpus (copied: the committed seeds stay as they are). A crash leaves
# crash-* files in the current directory; replay one with build-fuzz/tests/nbd_fuzz FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DSTRATA_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target nbd_fuzz >/dev/null
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp tests/fuzz/corpus/* "$corpus/"
build-fuzz/tests/nbd_fuzz -max_total_time="$seconds" -max_len=16384 -timeout=10 \
  -print_final_stats=1 "$corpus" 2>&1 | grep -vE '^strata(-nbd)?:' | tail -n 12
