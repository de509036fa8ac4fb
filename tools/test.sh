#!/usr/bin/env bash
# Installs what the tests need (tools/deps.sh ensure test: it says which Debian packages and why),
# builds Strata and runs every test (unit, crash simulator, kill -9, CLI, NBD interop, RGW).
# About 20 minutes on 2 cores from a fresh clone with the packages installed (build ~8, tests ~12).
#
#   tools/test.sh            Release build in build/, all tests
#   tools/test.sh --asan     Debug build with ASan + UBSan in build-asan/, all tests
#   STRATA_LONG=1 tools/test.sh   long soak: 20,000 crash-simulator seeds and 5,000 remote
#                                 simulator seeds (about 25 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh ensure test  # what the tests drive, Ceph RGW included (says what it installs)

build=build
flags=(-DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_TESTS=ON -DSTRATA_BUILD_BENCH=ON)
if [[ "${1:-}" == "--asan" ]]; then
  build=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DSTRATA_SANITIZE=ON -DSTRATA_BUILD_TESTS=ON -DSTRATA_BUILD_BENCH=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export STRATA_SIM_SEEDS=${STRATA_SIM_SEEDS:-120}
  export STRATA_REMOTE_SIM_SEEDS=${STRATA_REMOTE_SIM_SEEDS:-60}
fi
if [[ -n "${STRATA_LONG:-}" ]]; then
  export STRATA_SIM_SEEDS=${STRATA_SIM_SEEDS:-20000}
  export STRATA_REMOTE_SIM_SEEDS=${STRATA_REMOTE_SIM_SEEDS:-5000}
fi

# The object-store tests need a real S3 server: a local Ceph RGW (tools/rgw.sh; deps.sh installed
# it), started here unless S3_ENDPOINT names another. It keeps running afterwards (tools/rgw.sh
# stop ends it).
if [[ -z "${S3_ENDPOINT:-}" ]]; then
  rgw_env=$(tools/rgw.sh start)  # (a failed start stops here, not at an unset S3_ENDPOINT)
  eval "$rgw_env"
  export S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY S3_REGION
  echo "test.sh: object-store tests use Ceph RGW at $S3_ENDPOINT"
fi

cmake -S . -B "$build" "${flags[@]}"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure --timeout 900 -j"$(nproc)"
