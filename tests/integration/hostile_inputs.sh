#!/usr/bin/env bash
# What a hostile or broken remote, an unauthenticated HTTP client and an oversized control reply
# can do to strata-nbd (issue 28): nothing that kills, wedges or exhausts it. The remote is
# tests/integration/hostile_s3.py, an in-memory S3 on loopback whose faults are switched per
# case; the HTTP clients are raw sockets. Each case reports what the server held and how long a
# legitimate client waited.
#
# usage: hostile_inputs.sh BUILD_DIR   (exit 77 = skipped: a client tool missing)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools qemu-io python3 curl
py=python3
here=$(dirname "$0")

# RSS high-water mark of the server, in MiB.
hwm() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status"; }
alive() { kill -0 "$pid" 2>/dev/null || fail "strata-nbd died"; }
now_ms() { date +%s%3N; }

"$py" "$here/hostile_s3.py" "$work/s3port" &
s3pid=$!
trap 'kill $s3pid 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do [[ -s "$work/s3port" ]] && break; sleep 0.05; done
s3="http://127.0.0.1:$(cat "$work/s3port")"
mode() { curl -sf "$s3/__mode/$1" >/dev/null || fail "hostile_s3 mode $1"; }
export AWS_ACCESS_KEY_ID=hostile AWS_SECRET_ACCESS_KEY=hostile-secret
unset AWS_SESSION_TOKEN AWS_PROFILE

# Pool A pushes a snapshot while the remote is honest; pool B (this test's server) restores.
B=$pool
pool=$work/a
cli pool create >/dev/null
cli remote add h --url s3://hostile --endpoint-url "$s3" >/dev/null
vol=$(cli create-volume --size 64MiB --volume-type unlimited | field VolumeId)
start --no-volume-limits
head -c 4M /dev/urandom >"$work/random"  # incompressible: a block is 512 KiB on the wire
qemu-io -f raw -c 'write -P 0x61 0 8M' -c 'write -P 0x62 32M 4M' -c "write -s $work/random 48M 4M" \
  "$(uri "$vol")" >/dev/null || fail "qemu-io write"
snap=$(cli create-snapshot --volume-id "$vol" | field SnapshotId)
cli copy-snapshot --source-snapshot-id "$snap" --destination-remote h >/dev/null || fail "push"
stop_server
pool=$B
cli pool create >/dev/null
cli remote add h --url s3://hostile --endpoint-url "$s3" >/dev/null
start --no-volume-limits
pass "a snapshot pushed to the (for now honest) test remote from another pool"

# ---- listings that never end, repeat or overflow: a clear error at once, every time
for m in loop-list empty-loop huge-page; do
  mode "$m"
  t0=$(now_ms)
  lists=()
  for i in $(seq 16); do  # (17 took every control thread before; 16 at once is the bound)
    (cli describe-snapshots --remote h >"$work/list.$i" 2>&1 && echo ok >>"$work/list.$i") &
    lists+=($!)
  done
  for j in "${lists[@]}"; do wait "$j" || true; done
  t1=$(now_ms)
  for i in $(seq 16); do
    grep -q "^ok" "$work/list.$i" && fail "$m: a listing succeeded: $(cat "$work/list.$i")"
    grep -Eq "repeats|out of order|more keys than asked" "$work/list.$i" ||
      fail "$m: unclear error: $(cat "$work/list.$i")"
  done
  alive
  t2=$(now_ms)
  cli describe-volumes >/dev/null || fail "$m: a later command was not served"
  t3=$(now_ms)
  pass "$m: 16 listings refused in $((t1 - t0)) ms; the next command served in $((t3 - t2)) ms; RSS peak $(hwm) MiB"
done
mode honest

# ---- pack GETs that stall, trickle or never end: a lazy read fails with EIO in bounded time
lazy=$(cli create-volume --snapshot-id "$snap" --remote h --initialization-rate 0 | field VolumeId)
[[ -n "$lazy" ]] || fail "lazy restore"
for m in stall trickle endless-body; do
  mode "$m"
  t0=$(now_ms)
  if qemu-io -r -f raw -c "read 48M 4k" "$(uri "$lazy")" >"$work/read.out" 2>&1 &&
    ! grep -q "Input/output error\|failed" "$work/read.out"; then
    fail "$m: the read succeeded: $(cat "$work/read.out")"
  fi
  t1=$(now_ms)
  ((t1 - t0 < 25000)) || fail "$m: the read took $((t1 - t0)) ms (documented: 15 s)"
  alive
  ((($(hwm)) < 400)) || fail "$m: RSS peak $(hwm) MiB"
  pass "$m: the read failed with EIO after $((t1 - t0)) ms; server alive, RSS peak $(hwm) MiB"
done
mode honest
qemu-io -r -f raw -c "read -P 0x62 32M 4k" "$(uri "$lazy")" >/dev/null ||
  fail "the read after the remote recovered"
pass "the remote back: the same read returns the right bytes"

# ---- a CLI that leaves, and SIGTERM, while a restore waits on a stalled remote
mode stall
for i in 1 2 3; do
  timeout 2 "$strata" --pool "$pool" create-volume --snapshot-id "$snap" --remote h --wait \
    >/dev/null 2>&1 || true
done
alive
t0=$(now_ms)
kill -TERM "$pid"
wait "$pid" || true
t1=$(now_ms)
pid=
((t1 - t0 < 3000)) || fail "SIGTERM took $((t1 - t0)) ms with stalled fetches under way"
pass "three CLIs left mid-restore; SIGTERM then stopped the server in $((t1 - t0)) ms"
mode honest
start --no-volume-limits

# ---- a control reply of any size: 1,000 instances with long tags, through strata-nbd
own=$(cli create-volume --size 1 | field VolumeId)
own_snap=$(cli create-snapshot --volume-id "$own" | field SnapshotId)
image=$(cli register-image --name big --block-device-mappings \
  "DeviceName=/dev/xvda,Ebs={SnapshotId=$own_snap}" | field ImageId)
tags=""
for i in $(seq 10); do tags+="{Key=k$i,Value=$(printf 'v%.0s' $(seq 200))},"; done
out=$(cli run-instances --image-id "$image" --count 1000 \
  --tag-specifications "ResourceType=instance,Tags=[${tags%,}]" 2>&1) ||
  fail "run-instances --count 1000 exited $?: ${out:0:300}"
n=$(cli describe-instances | grep -c '"InstanceId"')
((n == 1000)) || fail "describe-instances listed $n instances"
bytes=$(cli describe-instances | wc -c)
pass "run-instances --count 1000 with 2 KiB of tags each, and describe-instances ($bytes bytes), through the control socket"
# ---- smaller items: files a volume's bytes go to are the owner's; bad UTF-8 never stored as
# U+FFFD; the start-up log is bounded
cli export-snapshot --snapshot-id "$own_snap" --outfile "$work/exported.stream" >/dev/null ||
  fail "export-snapshot"
cli get-snapshot-block --snapshot-id "$own_snap" --block-index 0 --outfile "$work/block0" \
  >/dev/null || fail "get-snapshot-block"
for f in exported.stream block0; do
  [[ $(stat -c %a "$work/$f") == 600 ]] || fail "$f is mode $(stat -c %a "$work/$f")"
done
refused "not valid UTF-8" create-tags --resources "$own" --tags "Key=k,Value=$(printf 'bad\xff')"
cli describe-tags | grep -q '"Key": "k"' && fail "a tag of invalid UTF-8 was stored"
for i in $(seq 20); do cli create-volume --size 1 >/dev/null; done
stop_server
start --no-volume-limits
stop_server
exports=$(grep -c "^strata-nbd: export " "$work/log")
((exports == 16)) || fail "the start-up log named $exports exports"
grep -Eq "and [0-9]{4} more writable exports" "$work/log" || fail "no count of the rest: $(tail -3 "$work/log")"
pass "export-snapshot and get-snapshot-block write 0600 files; invalid UTF-8 refused; start-up log: 16 exports and a count"

# ---- the server's memory is not for other processes of its user: no core dump, no ptrace, no
# /proc/PID/environ (PR_SET_DUMPABLE 0)
if command -v setpriv >/dev/null && [[ $(id -u) == 0 ]]; then
  as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  nobody=$(mktemp -d /tmp/strata-nobody.XXXXXX)  # ($work is root's alone)
  chmod 0755 "$nobody" && chown 65534:65534 "$nobody"
  "${as_nobody[@]}" "$strata" --pool "$nobody/pool" pool create >/dev/null
  "${as_nobody[@]}" "$server" --pool "$nobody/pool" --socket "$nobody/sock" 2>/dev/null &
  nobody_pid=$!
  for _ in $(seq 100); do [[ -S "$nobody/sock" ]] && break; sleep 0.05; done
  [[ -S "$nobody/sock" ]] || fail "strata-nbd as nobody did not start"
  if "${as_nobody[@]}" cat "/proc/$nobody_pid/environ" >/dev/null 2>&1; then
    kill "$nobody_pid"; fail "another process of the server's user read its /proc/PID/environ"
  fi
  kill -TERM "$nobody_pid"; wait "$nobody_pid" || true
  rm -rf "$nobody"
  pass "strata-nbd is not dumpable: its own user cannot read /proc/PID/environ"
fi

# ---- unauthenticated HTTP clients against the API listener (tests/integration/api_hostile.py)
keys=$(cli create-access-key)
export AWS_ACCESS_KEY_ID=$(echo "$keys" | field AccessKeyId) AWS_SECRET_ACCESS_KEY=$(echo "$keys" | field SecretAccessKey)
api_port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start --no-volume-limits --api-listen "127.0.0.1:$api_port"
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$api_port/" && break; sleep 0.05; done
SLOWLORIS_READY=$work/slow.ready SLOWLORIS_HOLD_S=5 \
  "$py" "$here/api_hostile.py" "http://127.0.0.1:$api_port" "$pid" >"$work/api.out" 2>&1 &
client=$!
for _ in $(seq 600); do [[ -e "$work/slow.ready" ]] && break; sleep 0.1; done
[[ -e "$work/slow.ready" ]] || fail "api_hostile.py: $(cat "$work/api.out")"
sed 's/^/  /' "$work/api.out"
t0=$(now_ms)
kill -TERM "$pid"
wait "$pid" || true
t1=$(now_ms)
pid=
((t1 - t0 <= 2000)) || fail "SIGTERM took $((t1 - t0)) ms under slowloris"
wait "$client" || fail "api_hostile.py: $(cat "$work/api.out")"
pass "unauthenticated HTTP clients bounded; SIGTERM under 48 slowloris connections: $((t1 - t0)) ms"
echo "hostile_inputs: all passed"
