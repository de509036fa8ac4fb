#!/usr/bin/env bash
# The README's first command as a new user runs it: tools/quickstart.sh in a copy of the tree
# (its build/ the tests' own, so nothing is compiled twice) with a scratch pool. It checks its
# packages, builds the two binaries, serves the volume; nbdinfo reads it; SIGINT stops it
# cleanly and strata pool check passes. A second run keeps the pool and rebuilds nothing.
#
# usage: quickstart_test.sh BUILD_DIR   (exit 77 = skipped: nbdinfo missing, or a sanitizer build)
set -euo pipefail
build=$(cd "$1" && pwd)
source "$(dirname "$0")/common.sh"
src=$(cd "$(dirname "$0")/../.." && pwd)
require_tools nbdinfo git
if grep -q "^STRATA_SANITIZE:BOOL=ON" "$build/CMakeCache.txt"; then
  echo "SKIP: a sanitizer build (the Release build runs the quickstart)"
  exit 77
fi
clone=$work/clone
mkdir "$clone"
(cd "$src" && git ls-files -z | xargs -0 cp --parents -t "$clone")  # the tree as it is now
ln -s "$build" "$clone/build"
run() {  # run N: the quickstart in the background until its socket serves
  STRATA_SOCKET=$work/qs.sock "$clone/tools/quickstart.sh" "$work/demo-pool" >"$work/qs.$1" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do
    [[ -S "$work/qs.sock" ]] && nbdinfo --size "nbd+unix:///demo?socket=$work/qs.sock" \
      >"$work/size" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || fail "quickstart exited: $(tail -20 "$work/qs.$1")"
    sleep 0.1
  done
  fail "quickstart did not serve within 120 s: $(tail -20 "$work/qs.$1")"
}
run 1
[[ $(cat "$work/size") == 1073741824 ]] || fail "the demo volume is $(cat "$work/size") bytes"
grep -q "quickstart: building strata and strata-nbd" "$work/qs.1" || fail "no build step shown"
kill -INT "$pid"
wait "$pid" || fail "strata-nbd did not exit 0 on SIGINT: $(tail -5 "$work/qs.1")"
pid=
"$strata" --pool "$work/demo-pool" pool check >/dev/null || fail "pool check after SIGINT"
pass "quickstart served the 1 GiB volume (nbdinfo), stopped on SIGINT, pool check clean"
run 2
grep -q "Building CXX" "$work/qs.2" && fail "the second run rebuilt: $(grep "Building CXX" "$work/qs.2" | head -3)"
kill -INT "$pid"
wait "$pid" || fail "second run: no clean exit"
pid=
pass "a second run rebuilt nothing and served the same pool"
echo "quickstart_test: all passed"
