#!/usr/bin/env bash
# The main job: install what building needs (tools/deps.sh: Debian packages, asking for none it
# has), build strata and strata-nbd only, create a pool in ./demo-pool with a 1 GiB volume named
# "demo", and serve it over NBD on a local unix socket (foreground; Ctrl-C stops it cleanly).
# A second run rebuilds nothing and keeps the pool.
#
#   tools/quickstart.sh [POOL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
pool=${1:-$PWD/demo-pool}
sock=${STRATA_SOCKET:-$(dirname "$pool")/demo-nbd.sock}

tools/deps.sh ensure build
if [[ ! -f build/CMakeCache.txt ]]; then  # (tools/test.sh turns the tests on in the same tree)
  echo "quickstart: configuring build/ (Release; tests and benchmarks off)"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_BENCH=OFF
fi
echo "quickstart: building strata and strata-nbd"
cmake --build build -j"$(nproc)" --target strata_cli strata-nbd
strata=build/tools/strata

if [[ ! -d "$pool/meta" ]]; then
  "$strata" --pool "$pool" pool create --chunk-size 64KiB >/dev/null
fi
if ! "$strata" --pool "$pool" describe-volumes --volume-ids demo >/dev/null 2>&1; then
  "$strata" --pool "$pool" create-volume --size 1GiB --name demo >/dev/null
fi
"$strata" --pool "$pool" --output text describe-volumes --volume-ids demo
vol=$("$strata" --pool "$pool" describe-volumes --volume-ids demo |
  sed -n 's/.*"VolumeId": "\(vol-[0-9a-f]*\)".*/\1/p')

cat <<MSG

Serving $vol (name "demo") from pool $pool on unix socket $sock.
Attach it with any NBD client, for example:
  nbdinfo 'nbd+unix:///$vol?socket=$sock'
  qemu-io -f raw -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' 'nbd+unix:///demo?socket=$sock'
  nbdfuse /mnt/demo 'nbd+unix:///demo?socket=$sock'        # then mkfs.ext4 /mnt/demo/nbd
  qemu-system-x86_64 -drive file='nbd+unix:///demo?socket=$sock',format=raw ...
  nbd-client -unix $sock -N demo /dev/nbd0                   # with the nbd kernel module
The volume is gp3: like EBS it runs at 3,000 IOPS and 125 MiB/s (docs/volume-types.md).
'strata modify-volume --volume-id $vol --volume-type unlimited' lifts that, live.
Ctrl-C stops the server (in-flight requests finish, everything is committed).

MSG
exec build/nbd-server/strata-nbd --pool "$pool" --socket "$sock"
