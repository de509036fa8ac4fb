#!/usr/bin/env bash
# Builds Strata and runs every test (unit, crash simulator, kill -9, CLI, NBD interop).
#
#   tools/test.sh            Release build in build/, all tests
#   tools/test.sh --asan     Debug build with ASan + UBSan in build-asan/, all tests
#   STRATA_LONG=1 tools/test.sh   long soak: 20,000 crash-simulator seeds and 5,000 remote
#                                 simulator seeds (about 25 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
flags=(-DCMAKE_BUILD_TYPE=Release)
if [[ "${1:-}" == "--asan" ]]; then
  build=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DSTRATA_SANITIZE=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export STRATA_SIM_SEEDS=${STRATA_SIM_SEEDS:-120}
  export STRATA_REMOTE_SIM_SEEDS=${STRATA_REMOTE_SIM_SEEDS:-60}
fi
if [[ -n "${STRATA_LONG:-}" ]]; then
  export STRATA_SIM_SEEDS=${STRATA_SIM_SEEDS:-20000}
  export STRATA_REMOTE_SIM_SEEDS=${STRATA_REMOTE_SIM_SEEDS:-5000}
fi

# The object-store tests need a real S3 server: a local Ceph RGW (tools/rgw.sh), started here
# when it is installed and no S3_ENDPOINT is given. It keeps running afterwards (tools/rgw.sh
# stop ends it).
if [[ -z "${S3_ENDPOINT:-}" ]] && command -v radosgw >/dev/null; then
  eval "$(tools/rgw.sh start)"
  export S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY S3_REGION
  echo "test.sh: object-store tests use Ceph RGW at $S3_ENDPOINT"
elif [[ -z "${S3_ENDPOINT:-}" ]]; then
  if [[ -n "${CI:-}" ]]; then
    echo "test.sh: radosgw is not installed; CI must run the object-store tests" >&2
    exit 1
  fi
  echo "test.sh: radosgw is not installed (tools/rgw.sh install): object-store tests are skipped"
fi

cmake -S . -B "$build" "${flags[@]}"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure --timeout 900 -j"$(nproc)"
