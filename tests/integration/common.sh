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
# The AWS CLI (Debian's v2: a pip-installed v1 may shadow it on PATH) against this pool's
# --api-listen: a new access key of the pool in the environment and nothing of the user's own AWS
# set-up, a free loopback port in $port and its URL in $endpoint, and `ec2`/`kms` wrappers with
# `ec2_refused`/`kms_refused CODE ARGS...` (the call fails with that EC2 or KMS error code).
# REQUIRES: the pool exists. Exits 77 (skipped) without the AWS CLI.
aws_endpoint_setup() {
  aws_cli=/usr/bin/aws
  [[ -x $aws_cli ]] || { echo "SKIP: awscli not installed"; exit 77; }
  keys=$(cli create-access-key)
  export AWS_ACCESS_KEY_ID=$(echo "$keys" | field AccessKeyId)
  export AWS_SECRET_ACCESS_KEY=$(echo "$keys" | field SecretAccessKey)
  export AWS_DEFAULT_REGION=us-east-1 AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true
  unset AWS_SESSION_TOKEN AWS_PROFILE
  export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  endpoint=http://127.0.0.1:$port
}
ec2() { "$aws_cli" --endpoint-url "$endpoint" ec2 "$@"; }
kms() { "$aws_cli" --endpoint-url "$endpoint" kms "$@"; }
aws_refused() {  # SERVICE CODE ARGS...
  local service=$1 code=$2 out
  shift 2
  if out=$("$service" "$@" 2>&1); then fail "aws $service $* succeeded; expected $code"; fi
  [[ "$out" == *"($code)"* ]] || fail "aws $service $* failed without ($code): $out"
}
ec2_refused() { aws_refused ec2 "$@"; }
kms_refused() { aws_refused kms "$@"; }

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
