#!/usr/bin/env bash
# The installed package, used as an embedder would (README "Embedding"): `cmake --install` of the
# build into a scratch prefix, then the examples built against it and run. examples/embed.cc (the
# engine alone) four ways: CMake find_package with strata::strata (libstrata.so) and
# strata::strata_static (libstrata.a), and pkg-config (shared; static with the package's
# Requires.private). examples/launch.cc (the EC2 layer) with strata::ec2 and strata::ec2_static,
# and pkg-config strata-ec2. Nothing comes from the source tree but the examples themselves.
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
for f in include/strata/strata.h include/strata/compute.h lib/libstrata.a lib/libstrata.so \
  lib/libstrata_remote.a lib/libstrata_remote.so lib/libstrata_ec2.a lib/libstrata_ec2.so \
  lib/cmake/strata/strataConfig.cmake lib/pkgconfig/strata.pc lib/pkgconfig/strata-remote.pc \
  lib/pkgconfig/strata-ec2.pc bin/strata bin/strata-nbd; do
  [[ -e "$prefix/$f" ]] || fail "the install has no $f"
done
# The service and the man pages install with the binaries, the unit naming the installed binary.
for f in lib/systemd/system/strata-nbd@.service lib/systemd/system/strata-nbd@.socket \
  share/man/man1/strata.1 share/man/man1/strata-nbd.1; do
  [[ -s "$prefix/$f" ]] || fail "the install has no $f"
done
grep -q "^ExecStart=$prefix/bin/strata-nbd --pool" "$prefix/lib/systemd/system/strata-nbd@.service" ||
  fail "strata-nbd@.service does not run the installed binary: $(grep ExecStart= "$prefix/lib/systemd/system/strata-nbd@.service")"
if command -v systemd-analyze >/dev/null; then
  units=$work/units
  mkdir -p "$units"  # (an instance of each template, as systemctl would start it)
  cp "$prefix/lib/systemd/system/strata-nbd@.service" "$units/strata-nbd@pool1.service"
  cp "$prefix/lib/systemd/system/strata-nbd@.socket" "$units/strata-nbd@pool1.socket"
  SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
    "$units/strata-nbd@pool1.socket" "$units/strata-nbd@pool1.service" >"$work/verify.log" 2>&1 ||
    { cat "$work/verify.log"; fail "systemd-analyze verify"; }
  ! grep -v "^$" "$work/verify.log" | grep -vi "network.target\|multi-user.target" | grep . ||
    fail "systemd-analyze verify warned: $(cat "$work/verify.log")"
fi
if command -v man >/dev/null; then
  for page in strata strata-nbd; do
    MANWIDTH=80 man -l "$prefix/share/man/man1/$page.1" 2>"$work/man.err" | grep -q "^NAME" ||
      fail "man -l $page.1: $(cat "$work/man.err")"
  done
fi
# The binaries run from the prefix alone (the engine is linked in statically).
env -u LD_LIBRARY_PATH "$prefix/bin/strata" --pool "$work/p0" pool create >/dev/null ||
  fail "the installed strata does not run"
env -u LD_LIBRARY_PATH "$prefix/bin/strata-nbd" --help >/dev/null || fail "the installed strata-nbd"
pass "systemd units (verified, ExecStart in the prefix) and man pages installed; binaries run from the prefix"
readlink "$prefix/lib/libstrata.so" | grep -q "^libstrata.so.[0-9]" || fail "libstrata.so has no soname link"
readlink "$prefix/lib/libstrata_ec2.so" | grep -q "^libstrata_ec2.so.[0-9]" ||
  fail "libstrata_ec2.so has no soname link"
readlink "$prefix/lib/libstrata_remote.so" | grep -q "^libstrata_remote.so.[0-9]" ||
  fail "libstrata_remote.so has no soname link"
# The layering rule, checked on what is installed: the engine needs nothing of the layers above
# it, nor their libraries (S3's HTTP, TLS and XML).
undefined=$(nm -D --undefined-only "$prefix/lib/libstrata.so")
! grep -q "Compute\|Remote" <<<"$undefined" || fail "libstrata.so needs symbols of a higher layer"
needed=$(readelf -d "$prefix/lib/libstrata.so")
! grep -q "libcurl\|libcrypto\|libssl\|pugixml\|gnutls" <<<"$needed" ||
  fail "libstrata.so links an object-store or EC2 library: $(grep NEEDED <<<"$needed")"
needed=$(readelf -d "$prefix/lib/libstrata_remote.so")
grep -q "libstrata.so" <<<"$needed" || fail "libstrata_remote.so is not on libstrata.so"
! grep -q "libstrata_ec2\|gnutls" <<<"$needed" || fail "libstrata_remote.so links the EC2 layer"
pass "three layers as installed: libstrata (no curl, OpenSSL, pugixml), libstrata_remote, libstrata_ec2"
mkdir "$work/example"
cp "$src/examples/embed.cc" "$src/examples/launch.cc" "$src/examples/CMakeLists.txt" \
  "$work/example/"  # (no source tree)
cmake -S "$work/example" -B "$work/example/build" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "find_package(strata)"; }
cmake --build "$work/example/build" -j2 >"$work/build.log" 2>&1 ||
  { tail -20 "$work/build.log"; fail "building against the package"; }
"$work/example/build/embed" "$work/p1" || fail "embed (strata::strata)"
"$work/example/build/embed_static" "$work/p2" || fail "embed_static (strata::strata_static)"
libs=$(ldd "$work/example/build/embed_static")
! grep -q libstrata <<<"$libs" || fail "embed_static loads libstrata.so"
pass "find_package(strata): strata::strata and strata::strata_static build and run"
"$work/example/build/launch" "$work/p5" || fail "launch (strata::ec2)"
"$work/example/build/launch_static" "$work/p6" || fail "launch_static (strata::ec2_static)"
# (ldd's output is taken whole first: grep -q stopping early would fail the pipe under pipefail)
libs=$(ldd "$work/example/build/launch")
grep -q "libstrata_ec2.so" <<<"$libs" || fail "launch does not load libstrata_ec2.so"
libs=$(ldd "$work/example/build/launch_static")
! grep -q libstrata <<<"$libs" || fail "launch_static loads a libstrata .so"
pass "find_package(strata): strata::ec2 and strata::ec2_static build and run"

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
g++ -std=c++20 "$work/example/launch.cc" -o "$work/launch_pc" $(pkg-config --cflags --libs strata-ec2) \
  -Wl,-rpath,"$(pkg-config --variable=libdir strata-ec2)" || fail "pkg-config --cflags --libs strata-ec2"
"$work/launch_pc" "$work/p7" || fail "launch (pkg-config strata-ec2)"
pass "pkg-config strata-ec2: the EC2 layer builds and runs"
echo "all install checks passed"
