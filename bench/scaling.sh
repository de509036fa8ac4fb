#!/usr/bin/env bash
# The data path's thread scaling (issue 31): build/bench/scaling_bench with no data I/O (NullEnv:
# the data path's own CPU and locks, what must scale with cores), on tmpfs and on disk; 1, 2, 4
# and 8 threads, each on its own volume. (On 2 cores, tmpfs and disk are bound by the kernel's
# own work: one submitting thread plus io_uring's workers already keep both cores busy.)
#
#   bench/scaling.sh [DISK_DIR] [SECONDS_PER_CASE] [ROUNDS]   (defaults: /var/tmp 2 5)
#
# Prints one table per file system: the median IOPS of interleaved rounds and the ratio to one
# thread. Compare two commits by running it at each, back to back, on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
disk=${1:-/var/tmp}
seconds=${2:-2}
rounds=${3:-5}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_BENCH=ON >/dev/null
cmake --build build -j"$(nproc)" --target scaling_bench >/dev/null
echo "commit $(git rev-parse --short HEAD), $(nproc) cores"
for dir in null /dev/shm "$disk"; do
  echo
  if [[ $dir == null ]]; then
    echo "### no data I/O (NullEnv; LMDB on /dev/shm)"
  else
    echo "### $dir ($(df --output=fstype "$dir" | tail -1))"
  fi
  build/bench/scaling_bench "$dir" "$seconds" "$rounds" 8
done
