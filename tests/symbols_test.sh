#!/usr/bin/env bash
# What the shared libraries export (issue 31: layers the linker enforces). Both build with hidden
# visibility; a symbol of a strata:: type or function may be exported only if its name is public:
# it appears in include/strata. An internal class (PoolImpl, MetaStore, RemoteImpl, ...) that
# became linkable from outside fails here, by name. (std:: template instantiations the compiler
# emits as weak symbols are not ours to hide and are not checked.)
#
# usage: symbols_test.sh BUILD_DIR SOURCE_DIR   (exit 77: no shared libraries built)
set -euo pipefail
build=$1 src=$2
command -v nm >/dev/null || { echo "SKIP: nm not installed"; exit 77; }
public=$(grep -ohE '\b[A-Za-z_][A-Za-z0-9_]*\b' "$src"/include/strata/*.h | sort -u)
status=0
for lib in libstrata.so libstrata_ec2.so; do
  path=$build/lib/$lib
  [[ -f $path ]] || { echo "SKIP: $path not built"; exit 77; }
  count=0
  while read -r name; do
    count=$((count + 1))
    if ! grep -qx "$name" <<<"$public"; then
      echo "symbols: $lib exports strata::$name, which no public header declares"
      status=1
    fi
  done < <(nm -D --defined-only -C "$path" | awk '$2 ~ /^[TWVRDBiu]$/' | cut -d' ' -f3- |
           sed -nE 's/^((typeinfo|typeinfo name|vtable|VTT|guard variable) for )?strata::([A-Za-z_][A-Za-z0-9_]*).*/\3/p' |
           sort -u)
  echo "symbols: $lib exports $count public strata:: names"
done
exit $status
