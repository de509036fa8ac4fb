#!/usr/bin/env bash
# A throw-away one-node Ceph (mon, mgr, one OSD on a sparse file) with the RADOS Gateway on
# 127.0.0.1: the real S3 server the object-store tests run against. Debian packages only; nothing
# is written outside STATE_DIR (no /etc/ceph, no /var/lib/ceph, no systemd).
#
#   tools/rgw.sh install             install the daemons (tools/deps.sh ensure test)
#   tools/rgw.sh start [STATE_DIR]   create (first time) or restart; prints eval-able S3_* lines
#   tools/rgw.sh stop  [STATE_DIR]   stop what it started (recorded PIDs only)
#   tools/rgw.sh stop-gateway        stop only radosgw (start brings it back in ~2 s)
#   tools/rgw.sh purge [STATE_DIR]   stop and delete STATE_DIR
#   tools/rgw.sh gc    [STATE_DIR]   free deleted objects' space now, not after RGW's GC delay
#   tools/rgw.sh s3cfg FILE          an s3cmd configuration for it (or for $S3_ENDPOINT) in FILE
#
# STATE_DIR defaults to $STRATA_RGW_STATE, else /tmp/strata-rgw. The S3 port is $RGW_PORT
# (7480). Printed: S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION. The access key is a test
# user's, made for this throw-away cluster; it guards nothing else.
# Takes ~20 s the first time, ~12 s to restart, ~0.5 GB of memory. The OSD is a sparse 40 GiB
# file in STATE_DIR: it uses only what is stored.
set -euo pipefail
cmd=${1:-start}
state=${2:-${STRATA_RGW_STATE:-/tmp/strata-rgw}}
rgw_port=${RGW_PORT:-7480}
mon_port=${RGW_MON_PORT:-6789}
access_key=strata-test-access
secret_key=strata-test-secret-key-for-a-throwaway-cluster

say() { echo "[rgw.sh $(date +%T)] $*" >&2; }
print_env() {
  echo "S3_ENDPOINT=http://127.0.0.1:$rgw_port"
  echo "S3_ACCESS_KEY=$access_key"
  echo "S3_SECRET_KEY=$secret_key"
  echo "S3_REGION=us-east-1"
}
running() { [[ -f "$state/$1.pid" ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
daemon() {  # daemon NAME COMMAND...: run in the foreground mode, in the background
  local name=$1
  shift
  nohup "$@" >"$state/log/$name.out" 2>&1 &
  echo $! >"$state/$name.pid"
}
ceph_cli() { ceph -c "$state/ceph.conf" --connect-timeout 20 "$@"; }
stop_all() {
  for name in rgw osd mgr mon; do
    if running "$name"; then
      local pid
      pid=$(cat "$state/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$state/$name.pid"
  done
}

case "$cmd" in
install)
  "$(dirname "$0")/deps.sh" ensure test >&2  # (the daemons are in the test set)
  exit 0
  ;;
stop) stop_all; exit 0 ;;
s3cfg)
  # For this RGW, or for the server S3_ENDPOINT / S3_ACCESS_KEY / S3_SECRET_KEY name (http only).
  host=${S3_ENDPOINT:-http://127.0.0.1:$rgw_port}
  cat >"${2:?usage: $0 s3cfg FILE}" <<CFG
[default]
access_key = ${S3_ACCESS_KEY:-$access_key}
secret_key = ${S3_SECRET_KEY:-$secret_key}
host_base = ${host#http://}
host_bucket = ${host#http://}
use_https = False
signature_v2 = False
CFG
  exit 0
  ;;
purge) stop_all; rm -rf "$state"; exit 0 ;;
stop-gateway)  # the S3 endpoint only (tests of a remote that goes away); start brings it back
  if running rgw; then
    pid=$(cat "$state/rgw.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$state/rgw.pid"
  exit 0
  ;;
gc)  # (benchmarks that write tens of GiB per round into the 40 GiB OSD, between rounds)
  running rgw || { echo "no RGW of tools/rgw.sh is running in $state" >&2; exit 1; }
  timeout 600 radosgw-admin -c "$state/ceph.conf" -n client.admin gc process --include-all >&2
  exit 0
  ;;
start) ;;
*) echo "usage: $0 install|start|stop|stop-gateway|purge|gc [STATE_DIR] | s3cfg FILE" >&2; exit 2 ;;
esac

command -v radosgw >/dev/null || { echo "radosgw is not installed: run '$0 install'" >&2; exit 1; }
mkdir -p "$state"/{log,run,mon,osd,mgr,rgw}
state=$(cd "$state" && pwd)

fresh=0
if [[ ! -f "$state/ceph.conf" ]]; then
  fresh=1
  fsid=$(cat /proc/sys/kernel/random/uuid)
  # One OSD, so one copy and few placement groups; RGW creates eight pools. msgr v1 only:
  # radosgw 16.2 failed to authenticate against a v2 monitor address with auth none.
  cat >"$state/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $state/run
admin socket = $state/run/\$name.asok
log file = $state/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon warn on msgr2 not enabled = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = bluestore
osd memory target = 1073741824
bluestore cache autotune = false
bluestore cache size = 268435456
osd op num shards = 2
osd op num threads per shard = 1
ms async op threads = 1
[mon]
mon data = $state/mon/\$name
[mgr]
mgr data = $state/mgr/\$name
[osd]
osd data = $state/osd/\$name
bluestore block create = true
bluestore block size = 42949672960
bluestore fsck on mkfs = false
[client.rgw.strata]
# tcp_nodelay: without it beast's Nagle holds the last segment of a response until the client's
# delayed ACK (40 ms), so a small GET took 45 ms instead of 3 (Ceph's docs recommend it on).
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw data = $state/rgw
rgw thread pool size = 64
rgw enable usage log = false
# Deleted objects are freed within minutes, not the default two hours: test runs and benchmarks
# delete their buckets, and the OSD (a 40 GiB sparse file) must not fill up.
rgw gc obj min wait = 60
rgw gc processor period = 60
CONF
  say "creating the monitor"
  monmaptool --create --add a "127.0.0.1:$mon_port" --fsid "$fsid" "$state/monmap" >/dev/null
  ceph-authtool --create-keyring "$state/mon.keyring" --gen-key -n mon. --cap mon 'allow *' \
    >/dev/null
  ceph-mon -c "$state/ceph.conf" --mkfs -i a --monmap "$state/monmap" --keyring "$state/mon.keyring"
fi

mon_answers() {  # mon_answers SECONDS: the monitor answers `ceph -s` within about SECONDS
  local end=$((SECONDS + $1))
  while ((SECONDS < end)); do
    timeout 15 ceph -c "$state/ceph.conf" --connect-timeout 5 -s >/dev/null 2>&1 && return 0
    sleep 0.3
  done
  return 1
}
running mon || daemon mon ceph-mon -c "$state/ceph.conf" -i a -f
if ! mon_answers 40; then
  # A monitor left running by an earlier start that no longer answers (once on CI, after a full
  # test run, it refused every command with EPERM): restart the daemons on the same data.
  say "the monitor does not answer; restarting the daemons"
  tail -5 "$state/log/mon.a.log" >&2 || true
  stop_all
  daemon mon ceph-mon -c "$state/ceph.conf" -i a -f
  mon_answers 60 || {
    tail -20 "$state/log/mon.a.log" >&2 || true
    echo "the Ceph monitor did not come up (logs in $state/log)" >&2
    exit 1
  }
fi
running mgr || daemon mgr ceph-mgr -c "$state/ceph.conf" -i x -f

if [[ $fresh == 1 ]]; then
  uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(ceph_cli osd new "$uuid")
  [[ $id == 0 ]] || { echo "unexpected OSD id $id" >&2; exit 1; }
  mkdir -p "$state/osd/osd.0"
  say "creating the OSD"
  ceph-osd -c "$state/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" >"$state/log/osd-mkfs.out" 2>&1
fi
running osd || daemon osd ceph-osd -c "$state/ceph.conf" -i 0 -f
for _ in $(seq 200); do
  ceph_cli osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && break
  sleep 0.3
done

running rgw || daemon rgw radosgw -c "$state/ceph.conf" -n client.rgw.strata -f
for _ in $(seq 300); do
  curl -s -o /dev/null "http://127.0.0.1:$rgw_port/" && break
  running rgw || { tail -20 "$state/log/client.rgw.strata.log" >&2; exit 1; }
  sleep 0.3
done
curl -s -o /dev/null "http://127.0.0.1:$rgw_port/" || { echo "RGW did not come up" >&2; exit 1; }
if ! radosgw-admin -c "$state/ceph.conf" user info --uid=strata-test >/dev/null 2>&1; then
  radosgw-admin -c "$state/ceph.conf" user create --uid=strata-test --display-name=strata-test \
    --access-key="$access_key" --secret-key="$secret_key" >/dev/null
fi
say "RGW serving on 127.0.0.1:$rgw_port"
print_env
