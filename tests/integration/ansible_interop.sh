#!/usr/bin/env bash
# Infrastructure code written for AWS, unchanged: Debian's `ansible` (the amazon.aws collection)
# against strata-nbd --api-listen. up.yml makes a key pair, a security group with rules, two
# volumes (encrypted: false; one grown to io1 with IOPS), an encrypted one under a KMS key
# (encrypted: true, kms_key_id: alias/...), a snapshot, an image registered from
# it, two instances launched from the image (one with the key pair), and attaches a volume; it
# reads tags, zones and the caller, and every *_info module. It runs twice: the first run changes, the second reports
# changed=0. Between runs the disks are read and written over NBD (qemu-img, nbdinfo).
# down.yml detaches, stops, starts and terminates the instances, deletes the key pair and the
# group, deregisters the image with its snapshots and deletes the volumes; twice, the second
# with changed=0. The pool checks clean at the end.
#
# usage: ansible_interop.sh BUILD_DIR   (exit 77 = skipped)
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
require_tools ansible-playbook qemu-img nbdinfo python3
[[ -d /usr/lib/python3/dist-packages/ansible_collections/amazon/aws ]] ||
  { echo "SKIP: the amazon.aws collection (Debian's ansible) is not installed"; exit 77; }
cli pool create --capacity 16GiB >/dev/null
keys=$(cli create-access-key)
export AWS_ACCESS_KEY_ID=$(echo "$keys" | field AccessKeyId)
export AWS_SECRET_ACCESS_KEY=$(echo "$keys" | field SecretAccessKey)
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
# Debian's ansible runs its modules with Debian's python3 (python3-boto3), in a scratch home.
export ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 ANSIBLE_LOCALHOST_WARNING=false
export ANSIBLE_INVENTORY_UNPARSED_WARNING=false ANSIBLE_NOCOLOR=true HOME=$work
export ANSIBLE_LOCAL_TEMP=$work/ansible-tmp ANSIBLE_REMOTE_TEMP=$work/ansible-tmp
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
head -c 32 /dev/urandom >"$work/root.key"
chmod 600 "$work/root.key"
start --api-listen "127.0.0.1:$port" --no-volume-limits --kms-root-key "$work/root.key"
export STRATA_ENDPOINT=http://127.0.0.1:$port
kms_key=$(cli kms create-key --description "ansible volumes" | field KeyId)
cli kms create-alias --alias-name alias/ansible-volumes --target-key-id "$kms_key" >/dev/null

# Runs a playbook; prints its recap's changed count. Fails on any failed or unreachable task.
playbook() {
  local name=$1
  shift
  local log=$work/$name-$RANDOM.log
  if ! ansible-playbook "$here/ansible/$name" "$@" >"$log" 2>&1; then
    cat "$log"
    fail "ansible-playbook $name $* failed"
  fi
  local recap
  recap=$(grep -A1 '^PLAY RECAP' "$log" | tail -1)
  [[ $recap == *"failed=0"* && $recap == *"unreachable=0"* ]] || { cat "$log"; fail "$name: $recap"; }
  sed -n 's/.*changed=\([0-9]*\).*/\1/p' <<<"$recap"
}
# The volume id whose Name tag is $1.
volume_named() {
  cli describe-volumes --filters "Name=tag:Name,Values=$1" | field VolumeId
}

# ---- the volumes first, so that the image and the instance carry data written over NBD
playbook up.yml --tags volumes >/dev/null
root=$(volume_named ansible-root)
data=$(volume_named ansible-data)
[[ $root == vol-* && $data == vol-* ]] || fail "the volumes up.yml --tags volumes made: '$root' '$data'"
head -c 1M /dev/urandom >"$work/root.bin"
head -c 1M /dev/urandom >"$work/data.bin"
qemu-img convert -n -f raw -O raw "$work/root.bin" "$(uri "$root")" || fail "write $root over NBD"
qemu-img convert -n -f raw -O raw "$work/data.bin" "$(uri "$data")" || fail "write $data over NBD"
pass "ec2_vol made two volumes (encrypted: false); 1 MiB written into each over NBD"
secret=$(volume_named ansible-secret)
[[ $(cli describe-volumes --volume-ids "$secret" --query 'Volumes[0].[Encrypted,KmsKeyId]' \
  --output text) == "True"$'\t'"arn:aws:kms:us-east-1:000000000000:key/$kms_key" ]] ||
  fail "ec2_vol encrypted: true, kms_key_id: $(cli describe-volumes --volume-ids "$secret")"
qemu-img convert -n -f raw -O raw "$work/data.bin" "$(uri "$secret")" || fail "write $secret"
qemu-img dd -f raw -O raw bs=64k count=16 if="$(uri "$secret")" of="$work/secret.bin" >/dev/null
cmp "$work/data.bin" "$work/secret.bin" || fail "the encrypted volume read back differs"
pass "ec2_vol encrypted: true, kms_key_id: alias/...: encrypted under that key, read and written over NBD"

# ---- converge: the first run changes, the second changes nothing
changed1=$(playbook up.yml)
[[ $changed1 -gt 0 ]] || fail "the first full run of up.yml changed nothing"
changed2=$(playbook up.yml)
[[ $changed2 == 0 ]] || fail "the second run of up.yml changed $changed2 (expected 0)"
pass "up.yml: first run changed=$changed1, second run changed=0"

instance=$(cli describe-instances --filters Name=tag:Name,Values=ansible-vm | field InstanceId)
[[ $instance == i-* ]] || fail "the instance up.yml launched"
[[ $(cli describe-volumes --volume-ids "$data" --query 'Volumes[0].[Size,VolumeType,Iops,Attachments[0].InstanceId]' \
  --output text) == "4"$'\t'"io1"$'\t'"200"$'\t'"$instance" ]] || fail "the data volume: $(cli describe-volumes --volume-ids "$data")"
# The first MiB of export $1, into file $2.
first_mib() { qemu-img dd -f raw -O raw bs=64k count=16 if="$(uri "$1")" of="$2" >/dev/null; }
# The instance's root disk is a clone of the image's snapshot of ansible-root: the data is there.
first_mib "$instance/xvda" "$work/root-disk.bin" || fail "read $instance/xvda"
cmp "$work/root.bin" "$work/root-disk.bin" || fail "the instance's root disk lacks the data"
[[ $(nbdinfo --size "$(uri "$data")") == $((4 << 30)) ]] || fail "nbdinfo: the data volume is not 4 GiB"
first_mib "$data" "$work/data-now.bin"
cmp "$work/data.bin" "$work/data-now.bin" || fail "the attached data volume lost its data"
head -c 1M /dev/urandom >"$work/more.bin"
qemu-img convert -n -f raw -O raw "$work/more.bin" "$(uri "$data")" || fail "write the attached volume"
first_mib "$data" "$work/more-now.bin"
cmp "$work/more.bin" "$work/more-now.bin" || fail "read back the write to the attached volume"
keyed=$(cli describe-instances --filters Name=tag:Name,Values=ansible-keyed | field InstanceId)
[[ $keyed == i-* ]] || fail "the instance launched with the key pair"
nbdinfo --size "$(uri "$keyed/xvda")" >/dev/null 2>&1 && fail "the keyed instance's disk opened without the key"
grep "launched with key pair 'ansible-key'" "$work/log" >/dev/null ||
  fail "the refusal's log line does not name the key pair"
pass "the image's instance boots from the data written before; the grown volume reads and writes over NBD; the keyed instance's disk needs its key"

# ---- lifecycle and teardown, twice
changed3=$(playbook down.yml)
[[ $changed3 -gt 0 ]] || fail "down.yml changed nothing"
changed4=$(playbook down.yml)
[[ $changed4 == 0 ]] || fail "the second run of down.yml changed $changed4 (expected 0)"
pass "down.yml: first run changed=$changed3, second run changed=0"
[[ $(cli describe-instances --instance-ids "$instance" --query 'Reservations[0].Instances[0].State.Name' \
  --output text) == terminated ]] || fail "the instance is not terminated"
for what in volumes snapshots images security-groups key-pairs; do
  count=$(cli "describe-$what" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(sum(len(v) for v in j.values() if isinstance(v, list)))')
  expected=0
  [[ $what == security-groups ]] && expected=1  # the default group
  [[ $count == "$expected" ]] || fail "describe-$what after down.yml: $count left"
done
cli pool check >"$work/check" || { cat "$work/check"; fail "pool check"; }
pass "nothing left but the default security group; pool check clean"
echo "ansible_interop: all passed"
