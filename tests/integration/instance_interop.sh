#!/usr/bin/env bash
# Images and instances with real clients: an ext4 root file system is written through NBD,
# snapshotted, registered and launched twice; debugfs reads each instance's root through nbdcopy;
# a write in one instance is invisible in the other and in the image; stop/start keeps EBS and
# wipes instance store; a restart of strata-nbd keeps instances but not instance store;
# terminate deletes exactly the DeleteOnTermination volumes; refused operations say why.
#
# usage: instance_interop.sh BUILD_DIR        (exit 77 = skipped: a client is not installed)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools nbdinfo nbdcopy qemu-io mkfs.ext4 debugfs e2fsck
# Copies the export's file system out and runs debugfs -R "$2" on the copy.
fs_cmd() {
  rm -f "$work/fs.img"
  nbdcopy "$(uri "$1")" "$work/fs.img" || fail "nbdcopy of $1"
  debugfs -R "$2" "$work/fs.img" 2>/dev/null
}

cli pool create --chunk-size 64KiB >/dev/null
# Bad input, before anything exists: each refused with its reason, nothing created.
refused "the filter 'bogus' is invalid" describe-instances --filters Name=bogus,Values=1
refused "is not a non-empty raw disk image file" import-image --input /dev/null --name nothing
refused "missing '}'" register-image --name broken \
  --block-device-mappings 'DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1'
refused "image ami-00000000000000000 does not exist" run-instances --image-id ami-00000000000000000
refused "--count must be N or MIN:MAX" run-instances --image-id ami-00000000000000000 --count 0
refused "--count must be N or MIN:MAX" run-instances --image-id ami-00000000000000000 --count 3:2
[[ $(cli describe-snapshots | grep -c SnapshotId || true) == 0 ]] || fail "a refused import left a snapshot"

# ---- an ext4 root file system, written through NBD, snapshotted, registered
mkdir -p "$work/rootfs/etc"
echo "hello from the image" >"$work/rootfs/etc/motd"
head -c 3M /dev/urandom >"$work/rootfs/blob"
mkfs.ext4 -q -F -d "$work/rootfs" "$work/root.img" 64M || fail "mkfs.ext4 -d"
start
vol=$(cli create-volume --size 64MiB | field VolumeId)
nbdcopy "$work/root.img" "$(uri "$vol")" || fail "nbdcopy of the root file system"
snap=$(cli create-snapshot --volume-id "$vol" --description root | field SnapshotId)
ami=$(cli register-image --name web-server --root-device-name /dev/xvda \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={SnapshotId=$snap,VolumeType=gp3,DeleteOnTermination=true}" \
  "DeviceName=/dev/sdb,VirtualName=ephemeral0" \
  --tag-specifications 'ResourceType=image,Tags=[{Key=Name,Value=web}]' | field ImageId)
[[ "$ami" =~ ^ami-[0-9a-f]{17}$ ]] || fail "register-image printed no id"
cli describe-images --filters Name=name,Values=web-* | grep "\"$ami\"" >/dev/null || fail "describe-images filter"
refused "in use by $ami" delete-snapshot --snapshot-id "$snap"
pass "image $ami registered; its snapshot cannot be deleted"

# ---- two instances: copy-on-write clones, isolated from each other and from the image
out=$(cli run-instances --image-id "$ami" --count 2 --instance-type m5d.large \
  --tag-specifications 'ResourceType=instance,Tags=[{Key=Name,Value=web}]')
mapfile -t ids < <(echo "$out" | sed -n 's/.*"InstanceId": "\(i-[0-9a-f]*\)".*/\1/p')
[[ ${#ids[@]} == 2 ]] || fail "run-instances --count 2 printed ${#ids[@]} instances"
reservation=$(echo "$out" | field ReservationId)
[[ $reservation == r-* && $(echo "$out" | grep -c '"ReservationId"') == 1 ]] ||
  fail "run-instances --count 2: not one reservation: $out"
[[ $(cli describe-instances --instance-ids "${ids[@]}" | grep -c "\"ReservationId\": \"$reservation\"") == 1 ]] ||
  fail "describe-instances does not group the launch in $reservation"
echo "$out" | grep '"AmiLaunchIndex": 1' >/dev/null || fail "no AmiLaunchIndex 1: $out"
a=${ids[0]}
b=${ids[1]}
for i in "$a" "$b"; do
  [[ "$(fs_cmd "$i/xvda" "cat /etc/motd")" == "hello from the image" ]] ||
    fail "instance $i does not see the image's files"
done
nbdinfo --list "$(uri "")" | grep "$a/sdb" >/dev/null || fail "NBD LIST lacks $a/sdb"
pass "both instances boot the image's ext4 root over NBD ($a, $b)"

echo "written in instance a" >"$work/new.txt"
rm -f "$work/fs.img"
nbdcopy "$(uri "$a/xvda")" "$work/fs.img"
debugfs -w -R "write $work/new.txt /etc/new.txt" "$work/fs.img" >/dev/null 2>&1
nbdcopy "$work/fs.img" "$(uri "$a/xvda")" || fail "nbdcopy back into $a/xvda"
[[ "$(fs_cmd "$a/xvda" "cat /etc/new.txt")" == "written in instance a" ]] || fail "write in a lost"
e2fsck -fn "$work/fs.img" >/dev/null || fail "e2fsck of a's root"
for other in "$b/xvda" "$ami"; do
  listing=$(fs_cmd "$other" "ls /etc")
  [[ "$listing" == *motd* ]] || fail "cannot list /etc of $other"
  [[ "$listing" == *new.txt* ]] && fail "a's write is visible in $other"
done
pass "a write in one instance is invisible in the other and in the image"

# ---- instance store: wiped by stop, EBS kept
qemu-io -f raw -c 'write -P 0x5a 0 1M' "$(uri "$a/sdb")" >/dev/null || fail "write to instance store"
qemu-io -f raw -c 'read -P 0x5a 0 1M' "$(uri "$a/sdb")" | grep 'read 1048576' >/dev/null ||
  fail "instance store readback"
refused "does not support snapshots" create-snapshot --volume-id "$a/sdb"
cli stop-instances --instance-ids "$a" | grep '"stopping"' >/dev/null || fail "stop-instances answers stopping"
cli describe-instances --instance-ids "$a" | grep '"stopped"' >/dev/null || fail "stop-instances: not stopped"
nbdinfo "$(uri "$a/xvda")" >/dev/null 2>&1 && fail "a stopped instance's device is still served"
cli start-instances --instance-ids "$a" >/dev/null
qemu-io -f raw -c 'read -P 0 0 1M' "$(uri "$a/sdb")" | grep 'read 1048576' >/dev/null ||
  fail "instance store survived stop/start"
[[ "$(fs_cmd "$a/xvda" "cat /etc/new.txt")" == "written in instance a" ]] ||
  fail "EBS root lost at stop/start"
pass "stop/start wipes instance store and keeps EBS"

# ---- a restart of strata-nbd: instances survive, instance store does not
qemu-io -f raw -c 'write -P 0x6b 0 64k' "$(uri "$b/sdb")" >/dev/null
stop_server
start
cli describe-instances --filters Name=tag:Name,Values=web Name=instance-state-name,Values=running |
  grep -c '"InstanceId"' | grep -x 2 >/dev/null || fail "instances after restart"
qemu-io -f raw -c 'read -P 0 0 64k' "$(uri "$b/sdb")" | grep 'read 65536' >/dev/null ||
  fail "instance store survived a restart"
pass "restart keeps instances and EBS, drops instance store"

# ---- create-image from a running instance, launched again
ami2=$(cli create-image --instance-id "$a" --name web-v2 --no-reboot | field ImageId)
c=$(cli run-instances --image-id "$ami2" | field InstanceId)
[[ "$(fs_cmd "$c/xvda" "cat /etc/new.txt")" == "written in instance a" ]] ||
  fail "create-image lost a's write"
pass "create-image of $a launches with its data ($c)"

# ---- attachments, termination protection, DeleteOnTermination
extra=$(cli create-volume --size 16MiB | field VolumeId)
cli attach-volume --volume-id "$extra" --instance-id "$b" --device /dev/sdf | grep '"attaching"' >/dev/null ||
  fail "attach-volume"
cli describe-volumes --volume-ids "$extra" | grep '"in-use"' >/dev/null || fail "attached volume not in-use"
refused "is attached to $b" delete-volume --volume-id "$extra"
qemu-io -f raw -c 'write -P 0x42 0 4k' "$(uri "$b/sdf")" >/dev/null || fail "write via $b/sdf"
b_root=$(cli describe-instances --instance-ids "$b" | field VolumeId)
cli modify-instance-attribute --instance-id "$b" --disable-api-termination
refused "may not be terminated" terminate-instances --instance-ids "$b"
cli modify-instance-attribute --instance-id "$b" --no-disable-api-termination
cli terminate-instances --instance-ids "$b" | grep '"shutting-down"' >/dev/null || fail "terminate-instances answers shutting-down"
cli describe-instances --instance-ids "$b" | grep '"terminated"' >/dev/null || fail "terminate-instances: not terminated"
cli describe-volumes --volume-ids "$b_root" >/dev/null 2>&1 && fail "root volume outlived terminate"
cli describe-volumes --volume-ids "$extra" | grep '"available"' >/dev/null ||
  fail "attached volume not available after terminate"
qemu-io -f raw -c 'read -P 0x42 0 4k' "$(uri "$extra")" | grep 'read 4096' >/dev/null ||
  fail "data of the kept volume"
refused "IncorrectInstanceState" start-instances --instance-ids "$b"
pass "terminate deletes exactly the DeleteOnTermination volumes"

# ---- import-image of a raw disk image
imported=$(cli import-image --input "$work/root.img" --name imported | field ImageId)
d=$(cli run-instances --image-id "$imported" | field InstanceId)
[[ "$(fs_cmd "$d/xvda" "cat /etc/motd")" == "hello from the image" ]] ||
  fail "instance of the imported image"
pass "import-image of a raw ext4 disk boots ($imported)"

# ---- kill -9 while instances launch: every launch is all or nothing (one commit), so after the
# restart each new EBS volume is attached to a running instance and none is orphaned.
available_before=$(cli describe-volumes | grep -c '"State": "available"' || true)
(while [[ ! -e "$work/stop" ]]; do
  cli run-instances --image-id "$imported" --count 5 >/dev/null 2>&1 || true
done) &
launcher=$!
sleep 1
kill -9 "$pid"
touch "$work/stop"
wait "$launcher" || true
pid=
start
volumes=$(cli describe-volumes)
available=$(grep -c '"State": "available"' <<<"$volumes" || true)
in_use=$(grep -c '"State": "in-use"' <<<"$volumes" || true)
instances=$(cli describe-instances --filters Name=instance-state-name,Values=running)
running=$(grep -c '"InstanceId"' <<<"$instances" || true)
attached=$(grep -c '"VolumeId": "vol-' <<<"$instances" || true)
[[ $in_use == "$attached" ]] || fail "in-use volumes ($in_use) != volumes of running instances ($attached)"
[[ $available == "$available_before" ]] ||
  fail "orphan volumes after kill -9: $available available, $available_before before"
cli pool check >/dev/null || fail "pool check after kill -9 during launches"
pass "kill -9 during run-instances: $running instances, $in_use volumes in use, no orphan"

cli deregister-image --image-id "$ami" >/dev/null
cli terminate-instances --instance-ids "$a" "$c" "$d" >/dev/null
cli delete-snapshot --snapshot-id "$snap" >/dev/null || fail "delete-snapshot after deregister"
cli pool check >/dev/null || fail "pool check"
stop_server
pass "pool check after the whole lifecycle"
