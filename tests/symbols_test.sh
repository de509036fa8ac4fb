#!/usr/bin/env bash
# What the shared libraries export (issue 31: layers the linker enforces). Both build with hidden
# visibility; a strata:: type or function may be exported only if its name is public: it appears
# in include/strata. An internal class (PoolImpl, MetaStore, RemoteImpl, ...) that became
# linkable from outside fails here, by name. (Instantiations of std:: templates that the
# compiler emits as weak symbols, with internal types among their arguments or return types,
# are not ours to hide and are not checked: a symbol is judged by its owner, the qualified name
# it defines.)
#
# usage: symbols_test.sh BUILD_DIR SOURCE_DIR   (exit 77: no shared libraries built)
set -euo pipefail
build=$1 src=$2
command -v nm >/dev/null || { echo "SKIP: nm not installed"; exit 77; }
for lib in libstrata.so libstrata_remote.so libstrata_ec2.so; do
  [[ -f $build/lib/$lib ]] || { echo "SKIP: $build/lib/$lib not built"; exit 77; }
done
python3 - "$build/lib" "$src/include/strata" <<'PY'
import glob, re, subprocess, sys

libdir, include = sys.argv[1], sys.argv[2]
public = set()
for header in glob.glob(include + "/*.h"):
    public.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", open(header).read()))


def owner(symbol):
    """The qualified name a demangled symbol defines: what precedes its own parameter list (the
    last top-level "(...)"), after a template function's return type (which ends at the last
    top-level space before it)."""
    for prefix in ("typeinfo name for ", "typeinfo for ", "vtable for ", "VTT for ",
                   "guard variable for "):
        if symbol.startswith(prefix):
            return symbol[len(prefix):]
    # (an operator's own angle brackets and arrows are not nesting)
    symbol = re.sub(r"operator(<=>|<<=|>>=|<<|>>|<=|>=|->\*|->|<|>)", "operator@", symbol)
    depth, params = 0, len(symbol)
    for i, c in enumerate(symbol):
        if c == "(" and depth == 0:
            params = i
        if c in "<([{":
            depth += 1
        elif c in ">)]}":
            depth -= 1
    depth, start = 0, 0
    for i, c in enumerate(symbol[:params]):
        if c in "<([{":
            depth += 1
        elif c in ">)]}":
            depth -= 1
        elif c == " " and depth == 0:
            start = i + 1
    return symbol[start:params]


status = 0
for lib in ("libstrata.so", "libstrata_remote.so", "libstrata_ec2.so"):
    out = subprocess.run(["nm", "-D", "-C", "--defined-only", f"{libdir}/{lib}"],
                         capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "TWVRDBiu":
            # (past nested namespaces: strata::remote::S3Client is judged as S3Client)
            m = re.match(r"strata::(?:[a-z][a-z0-9_]*::)*([A-Za-z_][A-Za-z0-9_]*)",
                         owner(parts[2]))
            if m:
                names.add(m.group(1))
    for name in sorted(names - public):
        print(f"symbols: {lib} exports strata::{name}, which no public header declares")
        status = 1
    print(f"symbols: {lib} exports {len(names & public)} public strata:: names")
sys.exit(status)
PY
