#!/usr/bin/env bash
# The main job: build Strata, create a pool in ./demo-pool with one volume, and show it.
# (Serving the volume over NBD arrives with strata-nbd.)
#
#   tools/quickstart.sh [POOL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
pool=${1:-$PWD/demo-pool}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
strata=build/tools/strata

if [[ ! -d "$pool/meta" ]]; then
  "$strata" --pool "$pool" pool create --chunk-size 64KiB >/dev/null
fi
if ! "$strata" --pool "$pool" describe-volumes --volume-ids demo >/dev/null 2>&1; then
  "$strata" --pool "$pool" create-volume --size 1GiB --name demo >/dev/null
fi
"$strata" --pool "$pool" describe-volumes --volume-ids demo
"$strata" --pool "$pool" pool info --output table
echo
echo "Pool: $pool    CLI: $strata --pool $pool describe-volumes"
