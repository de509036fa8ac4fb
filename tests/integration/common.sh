# Sourced by the integration scripts (snapshot_interop.sh, instance_interop.sh, volume_types.sh):
# a scratch directory with a pool path, strata-nbd started and stopped on it, and the helpers
# every script uses. The caller sets `build` (the build directory) first.
strata=$build/tools/strata
server=$build/nbd-server/strata-nbd
work=$(mktemp -d)
pool=$work/pool
pid=
cleanup() {
  [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Exits 77 (skipped) unless every named tool is installed.
require_tools() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
  done
}
fail() { echo "FAIL: $*"; echo "--- server log"; cat "$work/log" 2>/dev/null; exit 1; }
pass() { echo "ok: $*"; }
cli() { "$strata" --pool "$pool" "$@"; }
# The first "KEY": "value" of the JSON on stdin.
field() { sed -n "s/.*\"$1\": \"\\([^\"]*\\)\".*/\\1/p" | head -1; }
uri() { echo "nbd+unix:///$1?socket=$work/sock"; }
# Fails unless the CLI command fails with `reason` in its message.
refused() {
  local reason=$1
  shift
  local out
  if out=$(cli "$@" 2>&1); then fail "'$*' succeeded; expected: $reason"; fi
  [[ "$out" == *"$reason"* ]] || fail "'$*' failed without '$reason': $out"
}
# Starts strata-nbd on $pool at $work/sock with extra flags; returns once it accepts.
start() {
  rm -f "$work/sock" "$pool/control.sock"  # a killed server leaves them behind
  "$server" --pool "$pool" --socket "$work/sock" "$@" 2>"$work/log" &
  pid=$!
  for _ in $(seq 400); do
    [[ -S "$work/sock" ]] && return 0
    sleep 0.05
  done
  fail "server did not start"
}
stop_server() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}
# (Checks pipe into grep without -q: grep then reads all its input, so under pipefail the writer
# never dies of SIGPIPE after an early match.)

# The object-store tests: skips (77) without an S3 server, exports its credentials the AWS CLI
# way, makes a fresh bucket "$bucket" named PREFIX-RANDOM (removed with everything on exit) and
# an s3cmd wrapper `s3` for it.
s3_test_bucket() {
  [[ -n "${S3_ENDPOINT:-}" ]] || { echo "SKIP: S3_ENDPOINT not set (tools/rgw.sh start)"; exit 77; }
  export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
  unset AWS_SESSION_TOKEN AWS_PROFILE
  bucket=$1-$RANDOM$RANDOM
  "$(dirname "${BASH_SOURCE[0]}")/../../tools/rgw.sh" s3cfg "$work/s3cfg"
  s3 mb "s3://$bucket" >/dev/null
  trap 's3 rb --recursive --force "s3://$bucket" >/dev/null 2>&1 || true; cleanup' EXIT
}
s3() { s3cmd -c "$work/s3cfg" "$@"; }
