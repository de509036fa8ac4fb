#!/usr/bin/env bash
# The package list has one home, tools/deps.sh: .ci/run, tools/quickstart.sh, tools/test.sh and
# tools/rgw.sh call it, and no other tracked file lists Debian packages (an apt-get line that installs,
# or three of the list's -dev packages together, as a README's copy would).
#
# usage: deps_test.sh BUILD_DIR   (exit 77 = skipped: not a git checkout)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
fail() { echo "FAIL: $*"; exit 1; }
cd "$src"
git rev-parse --git-dir >/dev/null 2>&1 || { echo "SKIP: not a git checkout"; exit 77; }
grep -q '^tools/deps.sh install test' .ci/run || fail ".ci/run does not install through tools/deps.sh"
grep -q 'tools/deps.sh ensure build' tools/quickstart.sh || fail "quickstart does not check its packages"
grep -q 'tools/deps.sh ensure test' tools/test.sh || fail "test.sh does not check its packages"
grep -q 'deps.sh" ensure test' tools/rgw.sh || fail "rgw.sh install does not use tools/deps.sh"
mapfile -t dev < <(tools/deps.sh list test | grep -- '-dev$')
((${#dev[@]} >= 10)) || fail "tools/deps.sh lists only ${#dev[@]} -dev packages"
while IFS= read -r -d '' f; do
  [[ "$f" == tools/deps.sh || ! -f "$f" ]] && continue
  if grep -nE '(apt-get|apt) +(-[a-z -]+ +)?install +[a-z0-9]' "$f" | grep -v 'tools/deps.sh'; then
    fail "$f installs packages itself (the list belongs in tools/deps.sh)"
  fi
  n=$(grep -owF -f <(printf '%s\n' "${dev[@]}") -- "$f" | sort -u | wc -l || true)
  ((n < 3)) || fail "$f names $n of tools/deps.sh's packages: a second list"
done < <(git ls-files -z)
echo "ok: tools/deps.sh is the only package list, and every entry point uses it"
echo "deps_test: all passed"
