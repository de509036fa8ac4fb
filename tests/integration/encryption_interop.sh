#!/usr/bin/env bash
# Encrypted EBS volumes (docs/security.md "Encryption at rest") driven by the real AWS CLI over
# strata-nbd --api-listen, and read and written by real NBD clients:
#   aws kms create-key + alias -> aws ec2 create-volume --encrypted --kms-key-id alias/... ->
#   qemu-img/nbdcopy over NBD, nbdfuse + mkfs.ext4 + e2fsck; no plaintext in the pool's files;
#   snapshots encrypted (KmsKeyId, DataEncryptionKeyId); a clone under the same key (instant)
#   and under another key (a re-encrypting copy) read the same bytes; encryption by default and
#   the default key (alias/aws/ebs); a disabled key fails the next open with EC2's reason while
#   an open connection keeps working, and works again once enabled; a pool opened without the
#   root key is read-only, refuses encrypted exports, saying why, and serves the rest read-only;
#   an exported stream carries
#   ciphertext and imports back encrypted.
#
# usage: encryption_interop.sh BUILD_DIR   (exit 77 = skipped)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
require_tools python3 qemu-img nbdcopy nbdinfo
/usr/bin/python3 -c "import nbd" 2>/dev/null || { echo "SKIP: python3-libnbd not installed"; exit 77; }
cli pool create --capacity 2GiB >/dev/null
aws_endpoint_setup
# Whether any file of the pool holds a piece of the pattern written below.
pool_leaks() { grep -rlaF "PLAINTEXT-PATT" "$pool" >/dev/null 2>&1; }

head -c 32 /dev/urandom >"$work/root.key"
chmod 600 "$work/root.key"
start --api-listen "127.0.0.1:$port" --kms-root-key "$work/root.key"
key=$(kms create-key --description "team a volumes" --query KeyMetadata.KeyId --output text)
kms create-alias --alias-name alias/team-a --target-key-id "$key"
other=$(kms create-key --description "team b volumes" --query KeyMetadata.KeyId --output text)
arn=arn:aws:kms:us-east-1:000000000000:key/$key

# ---- an encrypted volume, written and read over NBD
vol=$(ec2 create-volume --size 1 --availability-zone us-east-1a --encrypted \
  --kms-key-id alias/team-a --query VolumeId --output text)
[[ $(ec2 describe-volumes --volume-ids "$vol" --query 'Volumes[0].[Encrypted,KmsKeyId]' \
  --output text) == "True"$'\t'"$arn" ]] || fail "describe-volumes: Encrypted, KmsKeyId"
[[ $(ec2 describe-volumes --filters Name=encrypted,Values=true --query 'length(Volumes)' \
  --output text) == 1 ]] || fail "the encrypted filter"
ec2_refused InvalidParameterDependency create-volume --size 1 --availability-zone us-east-1a \
  --kms-key-id alias/team-a
ec2_refused InvalidParameterValue create-volume --size 1 --availability-zone us-east-1a \
  --encrypted --kms-key-id alias/nope
python3 -c "import sys; sys.stdout.buffer.write(b'PLAINTEXT-PATTERN-' * 233017)" >"$work/data"
qemu-img convert -n -f raw -O raw "$work/data" "$(uri "$vol")" || fail "qemu-img write"
nbdcopy "$(uri "$vol")" "$work/back" || fail "nbdcopy read"
cmp -n "$(stat -c %s "$work/data")" "$work/data" "$work/back" || fail "read back differs"
nbdinfo --list "nbd+unix:///?socket=$work/sock" | grep "description: volume, encrypted" >/dev/null ||
  fail "the export list does not say encrypted"
pass "create-volume --encrypted --kms-key-id alias/...: qemu-img writes, nbdcopy reads it back"

if [[ -e /dev/fuse ]] && command -v nbdfuse >/dev/null && command -v mkfs.ext4 >/dev/null; then
  fsvol=$(ec2 create-volume --size 1 --availability-zone us-east-1a --encrypted \
    --query VolumeId --output text)
  mkdir -p "$work/mnt"
  nbdfuse "$work/mnt" "$(uri "$fsvol")" &
  fuse_pid=$!
  for _ in $(seq 100); do [[ -e "$work/mnt/nbd" ]] && break; sleep 0.05; done
  mkfs.ext4 -q -F "$work/mnt/nbd" || fail "mkfs.ext4 through nbdfuse"
  e2fsck -fn "$work/mnt/nbd" >/dev/null || fail "e2fsck through nbdfuse"
  fusermount3 -u "$work/mnt"
  wait "$fuse_pid" || true
  pass "nbdfuse + mkfs.ext4 + e2fsck on an encrypted volume (the default key)"
else
  echo "skip: nbdfuse (no /dev/fuse or tools)"
fi
[[ $(kms list-aliases --query "Aliases[?AliasName=='alias/aws/ebs'] | length(@)" --output text) == \
  1 ]] || fail "alias/aws/ebs was not made"

# ---- snapshots and clones
snap=$(ec2 create-snapshot --volume-id "$vol" --query SnapshotId --output text)
[[ $(ec2 describe-snapshots --snapshot-ids "$snap" --query \
  'Snapshots[0].[Encrypted,KmsKeyId,length(DataEncryptionKeyId)]' --output text) == \
  "True"$'\t'"$arn"$'\t'"36" ]] || fail "describe-snapshots: Encrypted, KmsKeyId, DataEncryptionKeyId"
same=$(ec2 create-volume --snapshot-id "$snap" --availability-zone us-east-1a \
  --query VolumeId --output text)
moved=$(ec2 create-volume --snapshot-id "$snap" --availability-zone us-east-1a --encrypted \
  --kms-key-id "$other" --query VolumeId --output text)
[[ $(ec2 describe-volumes --volume-ids "$same" --query 'Volumes[0].[Encrypted,KmsKeyId]' \
  --output text) == "True"$'\t'"$arn" ]] || fail "a clone keeps its snapshot's key"
[[ $(ec2 describe-volumes --volume-ids "$moved" --query 'Volumes[0].KmsKeyId' --output text) == \
  "arn:aws:kms:us-east-1:000000000000:key/$other" ]] || fail "a copy under another key"
ec2_refused InvalidParameterCombination create-volume --snapshot-id "$snap" \
  --availability-zone us-east-1a --no-encrypted
for v in "$same" "$moved"; do
  nbdcopy "$(uri "$v")" "$work/clone" || fail "nbdcopy of $v"
  cmp -n "$(stat -c %s "$work/data")" "$work/data" "$work/clone" || fail "$v differs"
done
pass "snapshot encrypted; a clone (same key) and a copy under another key read the same bytes"

# ---- encryption by default
[[ $(ec2 get-ebs-encryption-by-default --query EbsEncryptionByDefault --output text) == False ]] ||
  fail "encryption by default starts off"
ec2 enable-ebs-encryption-by-default >/dev/null
ec2 modify-ebs-default-kms-key-id --kms-key-id alias/team-a >/dev/null
[[ $(ec2 get-ebs-default-kms-key-id --query KmsKeyId --output text) == "$arn" ]] ||
  fail "get-ebs-default-kms-key-id"
dflt=$(ec2 create-volume --size 1 --availability-zone us-east-1a --query VolumeId --output text)
[[ $(ec2 describe-volumes --volume-ids "$dflt" --query 'Volumes[0].[Encrypted,KmsKeyId]' \
  --output text) == "True"$'\t'"$arn" ]] || fail "encryption by default"
ec2 reset-ebs-default-kms-key-id >/dev/null
ec2 disable-ebs-encryption-by-default >/dev/null
[[ $(ec2 create-volume --size 1 --availability-zone us-east-1a --query Encrypted --output text) == \
  False ]] || fail "disabled encryption by default"
pass "enable/disable/get-ebs-encryption-by-default, modify/get/reset-ebs-default-kms-key-id"

# ---- an image of the encrypted snapshot launches encrypted volumes
ami=$(ec2 register-image --name enc-image --root-device-name /dev/xvda --block-device-mappings \
  "DeviceName=/dev/xvda,Ebs={SnapshotId=$snap,Encrypted=true}" --query ImageId --output text)
iid=$(ec2 run-instances --image-id "$ami" --instance-type t3.micro --count 1 --block-device-mappings \
  "DeviceName=/dev/xvda,Ebs={Encrypted=true,KmsKeyId=alias/team-a}" \
  --query 'Instances[0].InstanceId' --output text)
root=$(ec2 describe-instances --instance-ids "$iid" \
  --query 'Reservations[0].Instances[0].BlockDeviceMappings[0].Ebs.VolumeId' --output text)
[[ $(ec2 describe-volumes --volume-ids "$root" --query 'Volumes[0].[Encrypted,KmsKeyId]' \
  --output text) == "True"$'\t'"$arn" ]] || fail "the instance's root volume is not encrypted"
nbdcopy "$(uri "$iid/xvda")" "$work/inst" || fail "nbdcopy of $iid/xvda"
cmp -n "$(stat -c %s "$work/data")" "$work/data" "$work/inst" || fail "the instance's disk differs"
plainvol=$(ec2 create-volume --size 1 --availability-zone us-east-1a --no-encrypted \
  --query VolumeId --output text)
# (another pattern: the pool's files are searched for the encrypted volumes' pattern)
python3 -c "import sys; sys.stdout.buffer.write(b'PUBLIC-IMAGE-DATA-' * 233017)" >"$work/pdata"
qemu-img convert -n -f raw -O raw "$work/pdata" "$(uri "$plainvol")" || fail "qemu-img write"
plainsnap=$(ec2 create-snapshot --volume-id "$plainvol" --query SnapshotId --output text)
ec2_refused UnsupportedOperation register-image --name plain-enc --root-device-name /dev/xvda \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={SnapshotId=$plainsnap,Encrypted=true}"
ec2_refused InvalidParameterCombination run-instances --image-id "$ami" --instance-type t3.micro \
  --count 1 --block-device-mappings "DeviceName=/dev/xvda,Ebs={Encrypted=false}"
pass "an image of an encrypted snapshot (mapping Encrypted=true) launches an encrypted root volume"

# ---- encrypting and re-keying at launch (a staged copy through both keys, then clones)
snapshots() { ec2 describe-snapshots --query 'length(Snapshots)' --output text; }
other_arn=arn:aws:kms:us-east-1:000000000000:key/$other
before=$(snapshots)
# the image of the encrypted snapshot, launched twice under another key
rekeyed=$(ec2 run-instances --image-id "$ami" --instance-type t3.micro --count 2 \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={Encrypted=true,KmsKeyId=$other}" \
  --query 'Instances[*].InstanceId' --output text | tr '\t' ' ')
# a plaintext image launched with Encrypted=true (the default key), and with encryption by default
plainami=$(ec2 register-image --name plain-image --root-device-name /dev/xvda \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={SnapshotId=$plainsnap}" \
  --query ImageId --output text)
asked=$(ec2 run-instances --image-id "$plainami" --instance-type t3.micro --count 1 \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={Encrypted=true}" \
  "DeviceName=/dev/sdf,Ebs={VolumeSize=1,Encrypted=true,KmsKeyId=$other}" \
  --query 'Instances[0].InstanceId' --output text)
empty=$(ec2 describe-volumes --filters "Name=attachment.instance-id,Values=$asked" \
  "Name=attachment.device,Values=/dev/sdf" --query 'Volumes[0].[Encrypted,KmsKeyId]' --output text)
[[ $empty == "True"$'\t'"$other_arn" ]] || fail "a new empty volume at launch: $empty"
ec2 enable-ebs-encryption-by-default >/dev/null
bydefault=$(ec2 run-instances --image-id "$plainami" --instance-type t3.micro --count 1 \
  --query 'Instances[0].InstanceId' --output text)
ec2 disable-ebs-encryption-by-default >/dev/null
plain_iid=$(ec2 run-instances --image-id "$plainami" --instance-type t3.micro --count 1 \
  --query 'Instances[0].InstanceId' --output text)
for i in $rekeyed $asked $bydefault $plain_iid; do
  vol_i=$(ec2 describe-instances --instance-ids "$i" \
    --query 'Reservations[0].Instances[0].BlockDeviceMappings[0].Ebs.VolumeId' --output text)
  got=$(ec2 describe-volumes --volume-ids "$vol_i" --query 'Volumes[0].[Encrypted,KmsKeyId]' \
    --output text)
  case $i in
    "$plain_iid") [[ $got == False* ]] || fail "$i: a plaintext launch came out $got" ;;
    "$asked" | "$bydefault") [[ $got == True* ]] || fail "$i: not encrypted at launch: $got" ;;
    *) [[ $got == "True"$'\t'"$other_arn" ]] || fail "$i: not re-keyed at launch: $got" ;;
  esac
  want=$work/data
  [[ " $rekeyed " == *" $i "* ]] || want=$work/pdata
  nbdcopy "$(uri "$i/xvda")" "$work/launched" || fail "nbdcopy of $i/xvda"
  cmp -n "$(stat -c %s "$want")" "$want" "$work/launched" || fail "$i's disk differs from the image's"
done
[[ $(snapshots) == "$before" ]] || fail "a staged snapshot was left behind"
if pool_leaks; then fail "plaintext in the pool's files after launches"; fi
ec2 terminate-instances --instance-ids $rekeyed $asked $bydefault $plain_iid >/dev/null
pass "run-instances re-keys (KmsKeyId) and encrypts (Encrypted=true, by default) at launch"

# ---- register-image with a new empty volume mapped Encrypted (EC2 takes that): each launch
# encrypts it under the key
dataami=$(ec2 register-image --name enc-data-image --root-device-name /dev/xvda \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={SnapshotId=$plainsnap}" \
  "DeviceName=/dev/sdg,Ebs={VolumeSize=1,Encrypted=true,KmsKeyId=alias/team-a}" \
  --query ImageId --output text)
di=$(ec2 run-instances --image-id "$dataami" --instance-type t3.micro --count 1 \
  --query 'Instances[0].InstanceId' --output text)
got=$(ec2 describe-volumes --filters "Name=attachment.instance-id,Values=$di" \
  "Name=attachment.device,Values=/dev/sdg" --query 'Volumes[0].[Encrypted,KmsKeyId]' --output text)
[[ $got == "True"$'\t'"$arn" ]] || fail "an image's empty volume mapped Encrypted: $got"
ec2 terminate-instances --instance-ids "$di" >/dev/null
pass "register-image: a new empty volume mapped Encrypted/KmsKeyId is encrypted at each launch"

# ---- EBS direct: an encrypted upload (StartSnapshot Encrypted, KmsKeyArn), read back in plaintext
/usr/bin/python3 -c "import boto3" 2>/dev/null || { echo "SKIP: python3-boto3 not installed"; exit 77; }
direct=$(/usr/bin/python3 - "$endpoint" "$arn" <<'EOF'
import base64, hashlib, sys, boto3
ebs = boto3.client("ebs", endpoint_url=sys.argv[1], region_name="us-east-1")
B = 524288
block = (b"PLAINTEXT-PATTERN-" * (B // 18 + 1))[:B]
s = ebs.start_snapshot(VolumeSize=1, Encrypted=True, KmsKeyArn=sys.argv[2])
assert s["KmsKeyArn"] == sys.argv[2], s
ck = base64.b64encode(hashlib.sha256(block).digest()).decode()
ebs.put_snapshot_block(SnapshotId=s["SnapshotId"], BlockIndex=3, BlockData=block, DataLength=B,
                       Checksum=ck, ChecksumAlgorithm="SHA256")
done = ebs.complete_snapshot(SnapshotId=s["SnapshotId"], ChangedBlocksCount=1)
assert done["Status"] == "completed", done
listed = ebs.list_snapshot_blocks(SnapshotId=s["SnapshotId"])
token = [b["BlockToken"] for b in listed["Blocks"] if b["BlockIndex"] == 3][0]
got = ebs.get_snapshot_block(SnapshotId=s["SnapshotId"], BlockIndex=3, BlockToken=token)
assert got["BlockData"].read() == block, "the block read back differs"
print(s["SnapshotId"])
EOF
) || fail "EBS direct encrypted upload: $direct"
[[ $(ec2 describe-snapshots --snapshot-ids "$direct" --query 'Snapshots[0].[Encrypted,KmsKeyId]' \
  --output text) == "True"$'\t'"$arn" ]] || fail "the uploaded snapshot is not encrypted"
pass "EBS direct StartSnapshot Encrypted/KmsKeyArn: stored encrypted, GetSnapshotBlock plaintext"

# ---- a disabled key: the next open fails; an open connection keeps working
cat >"$work/hold.py" <<EOF
import os, time
import nbd
h = nbd.NBD()
h.connect_uri("$(uri "$vol")")
first = h.pread(4096, 0)
open("$work/held", "w").close()
while not os.path.exists("$work/go"):
    time.sleep(0.05)
assert h.pread(4096, 0) == first
h.pwrite(first, 8192)
assert h.pread(4096, 8192) == first
print("held-ok")
EOF
# (Debian's python3, whose libnbd module python3-libnbd installs, not another on the PATH)
/usr/bin/python3 "$work/hold.py" >"$work/hold.out" 2>&1 &
hold=$!
for _ in $(seq 200); do [[ -e $work/held ]] && break; sleep 0.05; done
kms disable-key --key-id "$key"
if out=$(nbdinfo "$(uri "$vol")" 2>&1); then fail "an export with a disabled key opened"; fi
ec2_refused Client.InvalidKMSKey.InvalidState run-instances --image-id "$ami" \
  --instance-type t3.micro --count 1
grep -q "InvalidKMSKey.InvalidState" "$work/log" || fail "no EC2 reason in the log: $out"
touch "$work/go"
wait "$hold" || fail "the open connection failed: $(cat "$work/hold.out")"
grep -q held-ok "$work/hold.out" || fail "open connection: $(cat "$work/hold.out")"
kms enable-key --key-id "$key"
nbdinfo "$(uri "$vol")" >/dev/null || fail "re-enabled key: the export does not open"
pass "a disabled key fails the next attach and launch (InvalidKMSKey.InvalidState); open ones keep working"

# ---- nothing in the clear; a stream stays ciphertext and imports back encrypted
cli export-snapshot --snapshot-id "$snap" --outfile "$work/snap.stream" >/dev/null ||
  fail "export-snapshot"
if grep -qaF "PLAINTEXT-PATT" "$work/snap.stream"; then fail "the stream holds plaintext"; fi
imported=$(cli import-snapshot --input "$work/snap.stream" | field SnapshotId)
[[ $(ec2 describe-snapshots --snapshot-ids "$imported" --query 'Snapshots[0].KmsKeyId' \
  --output text) == "$arn" ]] || fail "the imported snapshot lost its key"
nbdcopy "$(uri "$imported")" "$work/imp" || fail "nbdcopy of the imported snapshot"
cmp -n "$(stat -c %s "$work/data")" "$work/data" "$work/imp" || fail "imported snapshot differs"
stop_server
if pool_leaks; then fail "plaintext in the pool's files"; fi
pass "no plaintext in the pool's files or a stream; the stream imports back encrypted"

# ---- a remote (Ceph RGW): copy-snapshot stores ciphertext under keyed block names; a second
# pool restores it only with the KMS key (here the first server's KMS, reached as its peer)
if [[ -n "${S3_ENDPOINT:-}" ]] && command -v s3cmd >/dev/null; then
  printf '[peer]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$work/peer.creds"
  s3_test_bucket strata-encrypted  # (the S3 keys are now the environment's: the servers' remote)
  export AWS_SHARED_CREDENTIALS_FILE=$work/peer.creds
  cli remote add shared --url "s3://$bucket/enc" --endpoint-url "$S3_ENDPOINT" >/dev/null
  start --api-listen "127.0.0.1:$port" --kms-root-key "$work/root.key"
  out=$(cli copy-snapshot --source-snapshot-id "$snap" --destination-remote shared) ||
    fail "copy-snapshot of an encrypted snapshot"
  mkdir -p "$work/objects"
  s3 get --recursive "s3://$bucket/" "$work/objects/" >/dev/null || fail "s3cmd get"
  [[ $(find "$work/objects" -type f | wc -l) -gt 3 ]] || fail "nothing was stored"
  if grep -rlaF "PLAINTEXT-PATT" "$work/objects" >/dev/null; then
    fail "the remote's objects hold plaintext"
  fi
  listed=$(cli describe-snapshots --remote shared --snapshot-ids "$snap" | tr -d ' \n')
  [[ "$listed" == *'"Encrypted":true'* && "$listed" == *"\"KmsKeyId\":\"$arn\""* ]] ||
    fail "describe-snapshots --remote: Encrypted, KmsKeyId: $listed"
  pass "copy-snapshot to RGW: ciphertext only (s3cmd get of every object), listed encrypted"

  B=$work/b
  pool=$B cli pool create --capacity 2GiB >/dev/null
  pool=$B cli remote add shared --url "s3://$bucket/enc" --endpoint-url "$S3_ENDPOINT" >/dev/null
  head -c 32 /dev/urandom >"$work/root-b.key"
  chmod 600 "$work/root-b.key"
  start_b() {
    rm -f "$work/sockb" "$B/control.sock"
    "$server" --pool "$B" --socket "$work/sockb" --kms-root-key "$work/root-b.key" "$@" \
      2>"$work/logb" &
    pid_b=$!
    for _ in $(seq 400); do [[ -S "$work/sockb" ]] && return 0; sleep 0.05; done
    fail "server B did not start"
  }
  stop_b() { kill -TERM "$pid_b"; wait "$pid_b" || true; }
  # Without the key (B's own KMS holds no such key, and no peer): refused, saying what it needs.
  start_b
  if out=$(pool=$B cli create-volume --snapshot-id "$snap" --remote shared 2>&1); then
    fail "restored without the KMS key: $out"
  fi
  [[ "$out" == *"$arn"*"needs that key"* ]] || fail "the refusal does not name the key: $out"
  [[ $(pool=$B cli describe-volumes | grep -c '"VolumeId"') == 0 ]] ||
    fail "a refused restore left a volume"
  stop_b
  pass "restore on a second pool without the KMS key: refused, naming the key it needs"
  # A hostile peer KMS (one that stalls, one whose data key is 5 bytes, one that never ends its
  # reply): each restore fails in bounded time, leaves no volume, and B keeps serving.
  for mode in stall shortkey endless; do
    rm -f "$work/hostile.port"
    python3 "$(dirname "$0")/hostile_kms.py" "$mode" "$work/hostile.port" &
    hostile=$!
    for _ in $(seq 100); do [[ -s "$work/hostile.port" ]] && break; sleep 0.05; done
    start_b --kms-peer-url "http://127.0.0.1:$(cat "$work/hostile.port")" --kms-timeout-ms 2000
    began=$(date +%s)
    if out=$(timeout 60 "$strata" --pool "$B" create-volume --snapshot-id "$snap" \
      --remote shared 2>&1); then
      fail "restored through a $mode peer KMS: $out"
    fi
    (($(date +%s) - began < 30)) || fail "a $mode peer KMS held the restore $(($(date +%s) - began)) s"
    [[ "$out" == *"InvalidKMSKey"* ]] || fail "a $mode peer KMS: no clear error: $out"
    [[ $(pool=$B cli describe-volumes | grep -c '"VolumeId"') == 0 ]] ||
      fail "a $mode peer KMS left a volume"
    pool=$B cli describe-volumes >/dev/null || fail "server B stopped answering after a $mode peer"
    kill "$hostile" 2>/dev/null || true
    wait "$hostile" 2>/dev/null || true
    stop_b
  done
  pass "a hostile peer KMS (stall, 5-byte key, endless reply): refused in bounded time, B serves on"
  # With the key: the first server's KMS as B's peer; the data key is re-wrapped under B's
  # default key (alias/aws/ebs) and the ciphertext lands unchanged.
  start_b --kms-peer-url "$endpoint" --kms-peer-profile peer
  restored=$(pool=$B cli create-volume --snapshot-id "$snap" --remote shared | field VolumeId)
  [[ -n "$restored" ]] || fail "restore with the key"
  pool=$B cli describe-volumes --volume-ids "$restored" | tr -d ' \n' |
    grep '"Encrypted":true' >/dev/null || fail "the restored volume is not encrypted"
  nbdcopy "nbd+unix:///$restored?socket=$work/sockb" "$work/restored" || fail "nbdcopy on B"
  cmp -n "$(stat -c %s "$work/data")" "$work/data" "$work/restored" ||
    fail "the restored volume differs"
  stop_b
  if grep -rlaF "PLAINTEXT-PATT" "$B" >/dev/null; then fail "plaintext in pool B's files"; fi
  stop_server
  unset AWS_SHARED_CREDENTIALS_FILE
  pass "restore on a second pool with the key (peer KMS): byte-identical, still encrypted"
else
  echo "skip: the remote part (S3_ENDPOINT not set: tools/rgw.sh start)"
fi

# ---- without the root key the pool opens read-only: encrypted exports refused, saying why; the
# rest served read-only; no change is made, by the CLI or through the server
plain=$(STRATA_KMS_ROOT_KEY=$work/root.key cli create-volume --size 1 --no-encrypted |
  field VolumeId)
refused "the pool is open read-only" create-volume --size 1 --no-encrypted
start
grep -q "the pool is open read-only: its KMS holds keys" "$work/log" ||
  fail "the server does not say it is read-only: $(cat "$work/log")"
if nbdinfo "$(uri "$vol")" >/dev/null 2>&1; then fail "served without the KMS"; fi
grep -q "no KMS" "$work/log" || fail "no reason given: $(cat "$work/log")"
/usr/bin/python3 - "$(uri "$plain")" <<'EOF' || fail "a plaintext export was writable, or not served"
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
assert h.is_read_only(), "the export does not say read-only"
h.pread(4096, 0)
try:
    h.pwrite(b"x" * 4096, 0)
except nbd.Error:
    sys.exit(0)
sys.exit("a write was accepted")
EOF
refused "the pool is open read-only" create-volume --size 1 --no-encrypted
refused "the pool is open read-only" delete-volume --volume-id "$plain"
stop_server
start --kms-root-key "$work/root.key"
nbdinfo "$(uri "$vol")" >/dev/null || fail "the encrypted volume with the key again"
stop_server
pass "without the root key: read-only, encrypted exports refused, saying why; writable with it"
