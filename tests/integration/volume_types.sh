#!/usr/bin/env bash
# Volume types through the CLI and strata-nbd: EBS's validation errors, a provisioned-IOPS limit
# felt by a real client (qemu-io over NBD), modify-volume lifting it live, the CloudWatch-named
# metrics in describe-volume-status and in Prometheus text at --metrics-listen (curl), and
# --no-volume-limits.
#
# usage: volume_types.sh BUILD_DIR        (exit 77 = skipped: a client is not installed)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools qemu-io curl
now_ms() { echo $(($(date +%s%N) / 1000000)); }

cli pool create --chunk-size 64KiB >/dev/null
refused "io2 volumes need --iops" create-volume --size 8 --volume-type io2
refused "at most 50 IOPS per GiB" create-volume --size 8 --volume-type io1 --iops 1000
refused "gp3 IOPS must be 3000 to 80000" create-volume --size 8 --iops 100
refused "--iops is not supported for gp2" create-volume --size 8 --volume-type gp2 --iops 300
refused "must be 125 GiB to 16384 GiB" create-volume --size 8 --volume-type st1
refused "unknown volume type" create-volume --size 8 --volume-type gp9
[[ $(cli describe-volumes | grep -c VolumeId || true) == 0 ]] || fail "a refused volume exists"
pass "EBS's validation errors; nothing created"

slow=$(cli create-volume --size 8 --volume-type io1 --iops 100 --name slow | field VolumeId)
# The yardstick for "at full speed": the same writes to a volume without limits, timed next to
# each check. A fixed bound failed under ASan with the suite's integration tests beside it
# (120 unlimited writes: 1,893 ms); 100 IOPS adds at least 1,190 ms to whatever the machine costs.
cli create-volume --size 8 --volume-type unlimited --name fast >/dev/null
cli describe-volumes --volume-ids slow | grep '"Iops": 100' >/dev/null || fail "Iops not shown"

port=$((20000 + RANDOM % 20000))

start --metrics-listen "127.0.0.1:$port"
# 120 random 4 KiB writes at 100 IOPS: at least ~1.15 s through NBD.
cmds=()
for i in $(seq 0 119); do cmds+=(-c "write -P 0x11 $((i * 131072)) 4k"); done
time_writes() {  # EXPORT: the 120 writes' milliseconds, qemu-io's start included
  local t0
  t0=$(now_ms)
  qemu-io -f raw "${cmds[@]}" "$(uri "$1")" >/dev/null || fail "qemu-io writes to $1"
  echo $(($(now_ms) - t0))
}
best_of_two() {  # EXPORT: its best of two runs and fast's, interleaved ("TOOK REF")
  local a b c d
  a=$(time_writes "$1") c=$(time_writes fast) b=$(time_writes "$1") d=$(time_writes fast)
  echo $((a < b ? a : b)) $((c < d ? c : d))
}
took=$(time_writes slow)
((took > 1100)) || fail "120 writes at 100 IOPS took only $took ms"
pass "io1 at 100 IOPS holds a real client back (120 writes: $took ms)"

status=$(cli describe-volume-status --volume-ids "$slow")
grep '"VolumeWriteOps": 120' >/dev/null <<<"$status" || fail "VolumeWriteOps: $status"
grep '"VolumeWriteBytes": 491520' >/dev/null <<<"$status" || fail "VolumeWriteBytes: $status"
metrics=$(curl -sf "http://127.0.0.1:$port/metrics") || fail "no /metrics on port $port"
grep "^VolumeWriteOps{.*volume_id=\"$slow\".*} 120" >/dev/null <<<"$metrics" ||
  fail "Prometheus VolumeWriteOps: $(grep VolumeWriteOps <<<"$metrics")"
for name in VolumeReadOps VolumeReadBytes VolumeWriteBytes VolumeTotalReadTime \
  VolumeTotalWriteTime VolumeIdleTime VolumeQueueLength BurstBalance \
  VolumeThroughputPercentage VolumeConsumedReadWriteOps; do
  grep "^$name{" >/dev/null <<<"$metrics" || fail "no $name in /metrics"
done
pass "CloudWatch-named metrics in describe-volume-status and at /metrics"

refused "at most 500 IOPS per GiB" modify-volume --volume-id "$slow" --volume-type gp3 --iops 16000
# As EC2's: the reply says "modifying"; the kept modification says "completed".
cli modify-volume --volume-id "$slow" --volume-type gp3 --iops 4000 --throughput 1000 |
  grep '"ModificationState": "modifying"' >/dev/null || fail "modify-volume"
cli describe-volumes-modifications --volume-ids "$slow" | grep '"ModificationState": "completed"' >/dev/null ||
  fail "describe-volumes-modifications"
read -r took ref < <(best_of_two slow)
((took < ref + 600)) || fail "still slow after modify-volume: $took ms (unlimited: $ref ms)"
refused "gp3 throughput may be at most 0.25 MiB/s per IOPS" \
  modify-volume --volume-id "$slow" --iops 3000 --throughput 1000
pass "modify-volume lifts the limit live ($took ms; unlimited: $ref ms)"

cli modify-volume --volume-id "$slow" --volume-type io1 --iops 100 >/dev/null
stop_server
start --metrics-listen "127.0.0.1:$port" --no-volume-limits
read -r took ref < <(best_of_two slow)
((took < ref + 600)) || fail "--no-volume-limits still limits: $took ms (unlimited: $ref ms)"
stop_server
pass "--no-volume-limits serves an io1 100-IOPS volume at full speed ($took ms; unlimited: $ref ms)"
