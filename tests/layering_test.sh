#!/usr/bin/env bash
# Layers by their #include lines, and no downcasts (HACKING.md "Layout and layering"): each part of the tree may include only
# the parts below it, so that a dependency the design forbids fails the build's tests rather
# than growing unseen. Run by ctest; prints every violation.
#
#   include/strata   public API: only itself
#   lib/util         the base: public API and itself
#   engine           lib/{io,meta,store,stream}: public API, util, engine parts; never remote/
#   remote tier      lib/remote: public API, util, its own parts; never engine internals
#   EC2 layer        lib/{compute,control}: public API, util, its own parts; never engine internals;
#                    compute/compute_impl.h only inside lib/compute
#   nbd-server       the NBD library (budget, exports, handshake, server, tls, transmission):
#                    the engine's public API (not strata/compute.h), util, its own headers;
#                    the strata-nbd program's files add the EC2 layer (control/, compute.h)
#   examples         the public API (and serve_nbd.cc the NBD library's headers)
#   tools            public API, util, the EC2 layer (control/), its own headers
#
# usage: layering_test.sh SOURCE_DIR
set -euo pipefail
shopt -s nullglob
cd "$1"
status=0
violation() { echo "layering: $1 includes \"$2\" ($3)"; status=1; }
check() {  # FILE ALLOWED_REGEX WHY
  local file=$1 allowed=$2 why=$3 dep
  while read -r dep; do
    [[ $dep =~ $allowed ]] || violation "$file" "$dep" "$why"
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$file")
}
for f in include/strata/*.h; do check "$f" '^strata/' "the public API includes only itself"; done
for f in lib/util/*.h lib/util/*.cc; do check "$f" '^(strata|util)/' "util is the base"; done
for part in io meta store stream; do
  for f in lib/$part/*.h lib/$part/*.cc; do
    check "$f" '^(strata|util|io|meta|store|stream)/' "the engine knows no object store or EC2"
  done
done
for f in lib/remote/*.h lib/remote/*.cc; do
  check "$f" '^(strata|util|remote)/' "the remote tier uses the engine's public API only"
done
for part in compute control kms; do
  for f in lib/$part/*.h lib/$part/*.cc; do
    check "$f" '^(strata|util|compute|control|kms)/' "the EC2 layer uses the engine's public API only"
    if [[ $part == control ]] && grep -q '^#include "compute/compute_impl.h"' "$f"; then
      violation "$f" compute/compute_impl.h "compute's private header stays in lib/compute"
    fi
  done
done
nbd_library='^nbd-server/(budget|exports|handshake|protocol|server|tls|transmission)\.(h|cc)$'
for f in nbd-server/*.h nbd-server/*.cc; do
  if [[ $f =~ $nbd_library ]]; then
    check "$f" '^(strata/|util/|[a-z_]+\.h$)' "the NBD library is on the engine alone"
    grep -q '^#include "strata/compute.h"' "$f" &&
      violation "$f" strata/compute.h "the NBD library knows no EC2 layer (ExportResolver)"
    [[ $f == *.h ]] && grep -q '^#include "compute_exports.h"' "$f" &&
      violation "$f" compute_exports.h "the NBD library knows no EC2 layer (ExportResolver)"
  else
    check "$f" '^(strata/|util/|control/|[a-z_]+\.h$)' "the NBD server is on the public API"
  fi
done
for f in examples/*.cc; do
  check "$f" '^(strata/|exports\.h$|server\.h$)' "an example uses what an embedder has"
done
for f in tools/*.h tools/*.cc; do
  check "$f" '^(strata/|util/|control/|[a-z_]+\.h$)' "the CLI is on the public API"
done
# No downcasts (HACKING.md): a part that needs more than an interface gives asks its owner by id.
while read -r hit; do
  echo "layering: $hit (a downcast: ask the owner by id instead)"
  status=1
done < <(grep -n 'dynamic_cast<' include/strata/*.h lib/*/*.h lib/*/*.cc nbd-server/*.cc tools/*.cc || true)
[[ $status == 0 ]] && echo "layering: every #include is within its layer; no downcasts"
exit $status
