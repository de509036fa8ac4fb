#!/usr/bin/env bash
# The installed package, used as an embedder would (README "Embedding"): `cmake --install` of the
# build into a scratch prefix, then examples/embed.cc built against it four ways, each run: CMake
# find_package with strata::strata (libstrata.so) and strata::strata_static (libstrata.a), and
# pkg-config (shared; static with the package's Requires.private). Nothing comes from the source
# tree but the example itself.
#
# usage: install_test.sh BUILD_DIR   (exit 77 = skipped: a sanitizer build's library would need
#                                     the example built with the same flags)
set -euo pipefail
build=$(cd "$1" && pwd)
source "$(dirname "$0")/common.sh"
src=$(cd "$(dirname "$0")/../.." && pwd)
if grep -q "^STRATA_SANITIZE:BOOL=ON" "$build/CMakeCache.txt"; then
  echo "SKIP: a sanitizer build (the Release build checks the installed package)"
  exit 77
fi
require_tools pkg-config g++
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || fail "cmake --install"
for f in include/strata/strata.h lib/libstrata.a lib/libstrata.so lib/cmake/strata/strataConfig.cmake \
  lib/pkgconfig/strata.pc bin/strata bin/strata-nbd; do
  [[ -e "$prefix/$f" ]] || fail "the install has no $f"
done
readlink "$prefix/lib/libstrata.so" | grep -q "^libstrata.so.[0-9]" || fail "libstrata.so has no soname link"
mkdir "$work/example"
cp "$src/examples/embed.cc" "$src/examples/CMakeLists.txt" "$work/example/"  # (no source tree)
cmake -S "$work/example" -B "$work/example/build" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "find_package(strata)"; }
cmake --build "$work/example/build" -j2 >"$work/build.log" 2>&1 ||
  { tail -20 "$work/build.log"; fail "building against the package"; }
"$work/example/build/embed" "$work/p1" || fail "embed (strata::strata)"
"$work/example/build/embed_static" "$work/p2" || fail "embed_static (strata::strata_static)"
! ldd "$work/example/build/embed_static" | grep -q libstrata || fail "embed_static loads libstrata.so"
pass "find_package(strata): strata::strata and strata::strata_static build and run"

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
g++ -std=c++20 "$work/example/embed.cc" -o "$work/embed_pc" $(pkg-config --cflags --libs strata) \
  -Wl,-rpath,"$(pkg-config --variable=libdir strata)" || fail "pkg-config --cflags --libs strata"
"$work/embed_pc" "$work/p3" || fail "embed (pkg-config)"
# shellcheck disable=SC2046
g++ -std=c++20 "$work/example/embed.cc" -o "$work/embed_pcs" $(pkg-config --cflags strata) \
  -L"$(pkg-config --variable=libdir strata)" -Wl,-Bstatic -lstrata -Wl,-Bdynamic \
  $(pkg-config --libs $(pkg-config --print-requires-private strata)) -pthread ||
  fail "static link with pkg-config's Requires.private"
"$work/embed_pcs" "$work/p4" || fail "embed (pkg-config, static)"
pass "pkg-config strata: shared and static builds run"
echo "all install checks passed"
