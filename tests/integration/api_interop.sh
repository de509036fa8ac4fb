#!/usr/bin/env bash
# The EC2 Query API endpoint (strata-nbd --api-listen; docs/ec2-api.md) driven by the real AWS
# CLI v2 (Debian's awscli) and boto3, with NBD served throughout: access keys, volumes with
# tags and zones, waiters, snapshots, filters, --query, pagination, --dry-run; the replies equal
# the strata CLI's own JSON field by field (so every XML element name matches the AWS model the
# AWS CLI parses with); EC2's error codes; unsigned, wrongly signed, expired and unknown-key
# requests refused with AuthFailure and nothing changed; malformed and oversized requests; 1,000
# requests from 100 concurrent connections.
#
# usage: api_interop.sh BUILD_DIR   (exit 77 = skipped)
set -euo pipefail
build=$1
source "$(dirname "$0")/common.sh"
py=/usr/bin/python3   # with Debian's boto3 and botocore (python3-boto3)
require_tools nbdinfo python3 curl
cli pool create --capacity 8GiB >/dev/null
aws_endpoint_setup
[[ $AWS_ACCESS_KEY_ID == AKIA* && ${#AWS_SECRET_ACCESS_KEY} == 40 ]] || fail "create-access-key: $keys"
cli list-access-keys | grep "$AWS_ACCESS_KEY_ID" >/dev/null || fail "list-access-keys"
cli list-access-keys | grep SecretAccessKey >/dev/null && fail "list-access-keys shows a secret"
start --api-listen "127.0.0.1:$port" --no-volume-limits

# ---- volumes: create, wait, describe equal to the strata CLI's JSON, write over NBD
vol=$(ec2 create-volume --size 1 --availability-zone us-east-1a --volume-type gp3 \
  --tag-specifications 'ResourceType=volume,Tags=[{Key=Name,Value=data1},{Key=env,Value=dev}]' \
  --query VolumeId --output text)
[[ $vol == vol-* ]] || fail "create-volume: $vol"
ec2 wait volume-available --volume-ids "$vol" || fail "wait volume-available"
python3 - "$(ec2 describe-volumes --volume-ids "$vol")" "$(cli describe-volumes --volume-ids "$vol")" <<'EOF' || fail "describe-volumes differs from the strata CLI"
import json, sys
aws, ours = (json.loads(a)["Volumes"][0] for a in sys.argv[1:3])
# Strata's own extensions are not in EC2's model (the XML cannot carry them).
for extra in ("SizeBytes",):
    ours.pop(extra, None)
aws["CreateTime"] = aws["CreateTime"][:23]  # 2026-...T04:35:13.426000+00:00 vs ...426Z
ours["CreateTime"] = ours["CreateTime"][:23]
if aws != ours:
    print("aws:  ", json.dumps(aws, sort_keys=True)); print("ours: ", json.dumps(ours, sort_keys=True))
    sys.exit(1)
EOF
pass "create-volume, wait volume-available, describe-volumes equal to the CLI's"
head -c 1M /dev/urandom >"$work/data"
nbdcopy "$work/data" "$(uri "$vol")" 2>/dev/null || qemu-img convert -n -f raw -O raw "$work/data" "$(uri "$vol")" ||
  fail "write over NBD"
[[ $(ec2 describe-volumes --filters Name=tag:Name,Values=data1 --query 'Volumes[0].VolumeId' --output text) == "$vol" ]] ||
  fail "tag:Name filter"
[[ $(ec2 describe-volumes --filters Name=tag:Name,Values=nope --query 'length(Volumes)' --output text) == 0 ]] ||
  fail "a filter that matches nothing"
ec2_refused InvalidParameterValue create-volume --size 1 --availability-zone us-west-2a
ec2_refused InvalidVolume.NotFound describe-volumes --volume-ids vol-00000000000000000
ec2_refused DryRunOperation create-volume --size 1 --availability-zone us-east-1a --dry-run
# Encrypted=false, as Ansible's ec2_vol and Terraform always send it, is accepted; encryption
# asked of a server without a KMS (this one has no --kms-root-key) is refused with EC2's codes,
# never answered with a plaintext volume (encryption_interop.sh has the KMS)
plain=$(ec2 create-volume --size 1 --availability-zone us-east-1a --no-encrypted --query VolumeId --output text)
[[ $plain == vol-* ]] || fail "create-volume --no-encrypted: $plain"
ec2 delete-volume --volume-id "$plain"
ec2_refused UnsupportedOperation create-volume --size 1 --availability-zone us-east-1a --encrypted
ec2_refused InvalidParameterDependency create-volume --size 1 --availability-zone us-east-1a --kms-key-id alias/x
ec2_refused InvalidKeyPair.NotFound describe-key-pairs --key-names no-such-key
# The default VPC and subnet a fresh account has (records for tools; no networking)
[[ $(ec2 describe-vpcs --filters Name=isDefault,Values=true --query 'Vpcs[0].[VpcId,CidrBlock,IsDefault]' \
  --output text) == "vpc-0de7a017000000001"$'\t'"172.31.0.0/16"$'\t'"True" ]] || fail "describe-vpcs (default)"
[[ $(ec2 describe-subnets --filters Name=vpc-id,Values=vpc-0de7a017000000001 Name=default-for-az,Values=true \
  --query 'Subnets[0].[SubnetId,AvailabilityZone,CidrBlock]' --output text) == \
  "subnet-0de7a017000000001"$'\t'"us-east-1a"$'\t'"172.31.0.0/20" ]] || fail "describe-subnets (default)"
[[ $(ec2 describe-account-attributes --attribute-names default-vpc \
  --query 'AccountAttributes[0].AttributeValues[0].AttributeValue' --output text) == vpc-0de7a017000000001 ]] ||
  fail "describe-account-attributes default-vpc"
ec2_refused InvalidVpcID.NotFound describe-vpcs --vpc-ids vpc-00000000000000000
ec2_refused InvalidSubnetID.NotFound describe-subnets --subnet-ids subnet-00000000000000000
ec2_refused InvalidParameterValue describe-vpcs --filters Name=colour,Values=blue
# Who is calling, as Terraform's provider (sts:GetCallerIdentity at start) and Ansible (before a
# group delete) ask it, on the same listener, each signed for its own service
[[ $("$aws_cli" --endpoint-url "$endpoint" sts get-caller-identity --query '[Account,Arn,UserId]' \
  --output text) == "000000000000"$'\t'"arn:aws:iam::000000000000:user/strata"$'\t'"$AWS_ACCESS_KEY_ID" ]] ||
  fail "sts get-caller-identity"
[[ $("$aws_cli" --endpoint-url "$endpoint" iam get-user --query User.UserName --output text) == strata ]] ||
  fail "iam get-user"
out=$("$aws_cli" --endpoint-url "$endpoint" iam get-user --user-name nobody 2>&1) &&
  fail "iam get-user of another user succeeded"
[[ $out == *NoSuchEntity* ]] || fail "iam get-user of another user: $out"
python3 -c 'import boto3, sys; assert boto3.client("sts", endpoint_url=sys.argv[1], region_name="us-east-1").get_caller_identity()["Account"] == "000000000000"' \
  "$endpoint" || fail "boto3 sts"
# ClientToken: a retried create answers the first one's volume, and makes no second
first=$(ec2 create-volume --size 1 --availability-zone us-east-1a --client-token retry-1 --query VolumeId --output text)
again=$(ec2 create-volume --size 1 --availability-zone us-east-1a --client-token retry-1 --query VolumeId --output text)
[[ $first == vol-* && $first == "$again" ]] || fail "a retried create-volume made $first and $again"
ec2_refused IdempotentParameterMismatch create-volume --size 2 --availability-zone us-east-1a --client-token retry-1
ec2 delete-volume --volume-id "$first"
[[ $(cli describe-volumes --output json | grep -c '"VolumeId"') == 1 ]] || fail "--dry-run or a retry created a volume"
pass "filters, --query, EC2 errors, --dry-run changes nothing"

# ---- snapshots and tags
snap=$(ec2 create-snapshot --volume-id "$vol" --description nightly \
  --tag-specifications 'ResourceType=snapshot,Tags=[{Key=k,Value=v}]' --query SnapshotId --output text)
ec2 wait snapshot-completed --snapshot-ids "$snap" || fail "wait snapshot-completed"
[[ $(ec2 describe-snapshots --snapshot-ids "$snap" --query 'Snapshots[0].[State,Description,VolumeSize,OwnerId]' --output text) == $'completed\tnightly\t1\t000000000000' ]] ||
  fail "describe-snapshots: $(ec2 describe-snapshots --snapshot-ids "$snap")"
ec2 create-tags --resources "$vol" "$snap" --tags Key=team,Value=storage
[[ $(ec2 describe-tags --filters Name=key,Values=team --query 'length(Tags)' --output text) == 2 ]] ||
  fail "describe-tags after create-tags: $(ec2 describe-tags)"
ec2 delete-tags --resources "$snap" --tags Key=team
[[ $(ec2 describe-tags --filters Name=key,Values=team --query 'Tags[0].ResourceId' --output text) == "$vol" ]] ||
  fail "delete-tags"
ec2_refused InvalidVolume.NotFound create-snapshot --volume-id vol-00000000000000000
[[ $(ec2 describe-availability-zones --query 'AvailabilityZones[0].ZoneName' --output text) == us-east-1a ]] ||
  fail "describe-availability-zones"
pass "create-snapshot, wait snapshot-completed, tags, availability zones"

# ---- pagination: 7 volumes by pages of 3 (the AWS CLI follows NextToken)
for i in 1 2 3 4 5; do ec2 create-volume --size 1 --availability-zone us-east-1a >/dev/null; done
[[ $(ec2 describe-volumes --page-size 3 --query 'Volumes[].VolumeId' --output text | wc -w) == 6 ]] ||
  fail "paged describe-volumes: $(ec2 describe-volumes --page-size 3 --query 'Volumes[].VolumeId' --output text)"
# (--max-items with --output text also prints the query applied to NextToken: "None")
[[ $(ec2 describe-volumes --max-items 4 --query 'Volumes[].VolumeId' --output text | grep -o vol- | wc -l) == 4 ]] ||
  fail "--max-items: $(ec2 describe-volumes --max-items 4 --query 'Volumes[].VolumeId' --output text)"
pass "pagination (MaxResults/NextToken)"

# ---- boto3: a client with its own model and paginator
$py - "$endpoint" "$vol" <<'EOF' || fail "boto3"
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1")
vols = [v for page in ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 2})
        for v in page["Volumes"]]
assert len(vols) == 6, vols
v = ec2.describe_volumes(VolumeIds=[sys.argv[2]])["Volumes"][0]
assert v["Size"] == 1 and v["State"] == "available" and v["AvailabilityZone"] == "us-east-1a", v
assert {"Key": "Name", "Value": "data1"} in v["Tags"], v
try:
    ec2.delete_volume(VolumeId="vol-00000000000000000")
    raise SystemExit("deleting a missing volume succeeded")
except ec2.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidVolume.NotFound", e.response
EOF
pass "boto3 paginator and error codes"

# ---- one truth: the Name tag is the volume's name, by which NBD exports it
ec2 create-tags --resources "$vol" --tags Key=Name,Value=renamed
nbdinfo --size "$(uri renamed)" >/dev/null || fail "the new Name does not export the volume"
nbdinfo --size "$(uri data1)" >/dev/null 2>&1 && fail "the old Name still exports the volume"
[[ $(cli describe-volumes --volume-ids renamed | field VolumeId) == "$vol" ]] ||
  fail "strata describe-volumes by the new Name"
ec2 create-tags --resources "$vol" --tags Key=Name,Value=data1
pass "create-tags Name renames the export"

# ---- images and instances: register from a snapshot, launch three in one reservation, waiters
img=$(ec2 register-image --name api-img --root-device-name /dev/xvda --architecture x86_64 \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={SnapshotId=$snap,DeleteOnTermination=true}" \
  --query ImageId --output text)
[[ $(ec2 describe-images --owners self --image-ids "$img" --query 'Images[0].[Name,State,Architecture,OwnerId]' --output text) == $'api-img\tavailable\tx86_64\t000000000000' ]] ||
  fail "describe-images --owners self"
[[ $(ec2 describe-images --owners amazon --query 'length(Images)' --output text) == 0 ]] || fail "--owners amazon"
ec2_refused InvalidParameterValue register-image --name arm --architecture arm64 --root-device-name /dev/xvda \
  --block-device-mappings "DeviceName=/dev/xvda,Ebs={SnapshotId=$snap}"
ec2_refused InvalidSnapshot.InUse delete-snapshot --snapshot-id "$snap"
run=$(ec2 run-instances --image-id "$img" --count 3 --instance-type t3.micro --output json)
[[ $(echo "$run" | grep -c '"InstanceId"') == 3 && $(echo "$run" | grep -c '"ReservationId"') == 1 ]] ||
  fail "run-instances --count 3: not one reservation of three: $run"
echo "$run" | grep '"Name": "pending"' >/dev/null || fail "run-instances does not answer pending"
mapfile -t insts < <(echo "$run" | sed -n 's/.*"InstanceId": "\(i-[0-9a-f]*\)".*/\1/p')
ec2 wait instance-running --instance-ids "${insts[@]}" || fail "wait instance-running"
python3 - "$(ec2 describe-instances --instance-ids "${insts[0]}")" "$(cli describe-instances --instance-ids "${insts[0]}")" <<'EOF' || fail "describe-instances differs from the strata CLI"
import json, sys
aws, ours = (json.loads(a)["Reservations"][0] for a in sys.argv[1:3])
for r in (aws, ours):
    for i in r["Instances"]:
        for extra in ("InstanceStoreVolumes", "NbdExports", "DisableApiTermination"):
            i.pop(extra, None)  # Strata's own (EC2 shows the last by DescribeInstanceAttribute)
        i["LaunchTime"] = i["LaunchTime"][:19]
        for m in i["BlockDeviceMappings"]:
            m["Ebs"]["AttachTime"] = m["Ebs"]["AttachTime"][:19]
if aws != ours:
    print("aws:  ", json.dumps(aws, sort_keys=True)); print("ours: ", json.dumps(ours, sort_keys=True))
    sys.exit(1)
EOF
nbdinfo --size "$(uri "${insts[0]}/xvda")" >/dev/null || fail "the instance's root over NBD"
[[ $(ec2 create-snapshots --instance-specification "InstanceId=${insts[0]}" --query 'Snapshots[].State' --output text) == pending ]] ||
  fail "create-snapshots --instance-specification"
ec2_refused InvalidParameterValue create-snapshots --instance-specification "InstanceId=${insts[0]},ExcludeBootVolume=true"
[[ $(ec2 describe-volume-status --volume-ids "$vol" --query 'VolumeStatuses[0].VolumeStatus.Status' --output text) == ok ]] ||
  fail "describe-volume-status"
[[ $(ec2 stop-instances --instance-ids "${insts[0]}" --query 'StoppingInstances[0].CurrentState.Name' --output text) == stopping ]] ||
  fail "stop-instances does not answer stopping"
ec2 wait instance-stopped --instance-ids "${insts[0]}" || fail "wait instance-stopped"
ec2 start-instances --instance-ids "${insts[0]}" >/dev/null
ec2 modify-instance-attribute --instance-id "${insts[1]}" --disable-api-termination
ec2_refused OperationNotPermitted terminate-instances --instance-ids "${insts[1]}"
ec2 modify-instance-attribute --instance-id "${insts[1]}" --no-disable-api-termination
[[ $(ec2 terminate-instances --instance-ids "${insts[@]}" --query 'TerminatingInstances[].CurrentState.Name' --output text) == $'shutting-down\tshutting-down\tshutting-down' ]] ||
  fail "terminate-instances does not answer shutting-down"
ec2 wait instance-terminated --instance-ids "${insts[@]}" || fail "wait instance-terminated"
ec2_refused IncorrectInstanceState start-instances --instance-ids "${insts[0]}"
[[ $(ec2 describe-instance-types --query 'InstanceTypes[?InstanceType==`m5d.large`].InstanceStorageInfo.TotalSizeInGB' --output text) == 75 ]] ||
  fail "describe-instance-types"
ec2 deregister-image --image-id "$img"
pass "register-image, run-instances --count 3 (one reservation), waiters running/stopped/terminated, termination protection"

# ---- key pairs and security groups
[[ $(ec2 create-key-pair --key-name ops --key-type psk --query KeyName --output text) == ops ]] || fail "create-key-pair"
[[ $(ec2 describe-key-pairs --key-names ops --query 'KeyPairs[0].KeyType' --output text) == psk ]] || fail "describe-key-pairs"
ec2 delete-key-pair --key-name ops
sg=$(ec2 create-security-group --group-name web --description "web tier" --query GroupId --output text)
ec2 authorize-security-group-ingress --group-id "$sg" --protocol tcp --port 10809-10810 --cidr 10.0.0.0/8 >/dev/null
[[ $(ec2 describe-security-groups --group-ids "$sg" --query 'SecurityGroups[0].IpPermissions[0].[IpProtocol,FromPort,ToPort,IpRanges[0].CidrIp]' --output text) == $'tcp\t10809\t10810\t10.0.0.0/8' ]] ||
  fail "describe-security-groups after authorize: $(ec2 describe-security-groups --group-ids "$sg")"
ec2 revoke-security-group-ingress --group-id "$sg" --protocol tcp --port 10809-10810 --cidr 10.0.0.0/8 >/dev/null
# Filters and names as Ansible's ec2_security_group looks a group up, in the default VPC
[[ $(ec2 describe-security-groups --filters Name=group-name,Values=web Name=vpc-id,Values=vpc-0de7a017000000001 \
  --query 'SecurityGroups[0].[GroupId,VpcId,IpPermissionsEgress[0].IpRanges[0].CidrIp]' --output text) == \
  "$sg"$'\t'"vpc-0de7a017000000001"$'\t'"0.0.0.0/0" ]] || fail "describe-security-groups by filters"
[[ $(ec2 describe-security-groups --group-names web --query 'SecurityGroups[0].GroupId' --output text) == "$sg" ]] ||
  fail "describe-security-groups --group-names"
ec2_refused InvalidGroup.NotFound describe-security-groups --group-names no-such-group
[[ $(ec2 describe-security-groups --group-ids "$sg" --query 'length(SecurityGroups[0].IpPermissions)' --output text) == 0 ]] ||
  fail "revoke-security-group-ingress"
ec2 delete-security-group --group-id "$sg"
# --output text follows the AWS CLI's rules: the same replies print the same lines
ec2 create-security-group --group-name txt --description "text rules" >/dev/null
for verb in describe-tags describe-availability-zones describe-security-groups; do
  diff <(ec2 "$verb" --output text) <(cli --output text "$verb") >"$work/diff" ||
    fail "strata --output text $verb differs from the AWS CLI's: $(cat "$work/diff")"
done
# --query is JMESPath in both, applied before --output
for query in 'SecurityGroups[].GroupName' "SecurityGroups[?GroupName=='txt'].[GroupId,Description]" \
  'length(SecurityGroups)' 'SecurityGroups[0].{n:GroupName,d:Description}'; do
  diff <(ec2 describe-security-groups --query "$query" --output text) \
    <(cli --output text describe-security-groups --query "$query") >"$work/diff" ||
    fail "strata --query '$query' --output text differs from the AWS CLI's: $(cat "$work/diff")"
  python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))' \
    "$(ec2 describe-security-groups --query "$query")" "$(cli describe-security-groups --query "$query")" ||
    fail "strata --query '$query' answers other JSON than the AWS CLI"
done
pass "key pairs and security groups; --output text and --query equal to the AWS CLI's"

# ---- Terraform's AWS provider's calls, in its order (boto3; tests/integration/terraform_order.py)
$py "$(dirname "$0")/terraform_order.py" "$endpoint" "$snap" || fail "Terraform's calls in order"
pass "Terraform's calls in the provider's order: data sources, volume, snapshot, image, group and rules, instance, attachment, destroy"

# ---- EBS direct APIs: a raw image uploaded as a snapshot (as coldsnap does), read back as a
# volume over NBD byte for byte; block listings, changed blocks, tokens, checksums
head -c 3M /dev/urandom >"$work/raw"
up=$($py - "$endpoint" "$work/raw" <<'EOF'
import base64, hashlib, sys, boto3
ebs = boto3.client("ebs", endpoint_url=sys.argv[1], region_name="us-east-1")
data = open(sys.argv[2], "rb").read()
B = 524288
s = ebs.start_snapshot(VolumeSize=1, Description="raw upload", Tags=[{"Key": "src", "Value": "raw"}],
                       ClientToken="upload-1")
assert s["Status"] == "pending" and s["BlockSize"] == B, s
again = ebs.start_snapshot(VolumeSize=1, Description="raw upload",
                           Tags=[{"Key": "src", "Value": "raw"}], ClientToken="upload-1")
assert again["SnapshotId"] == s["SnapshotId"], again  # a retry: the same upload
try:  # the same token with other parameters: EBS's ConflictException, not the first upload
    ebs.start_snapshot(VolumeSize=1, ClientToken="upload-1")
    raise AssertionError("a reused ClientToken with other parameters was accepted")
except ebs.exceptions.ConflictException:
    pass
sid = s["SnapshotId"]
sums = []
for i in range(len(data) // B):
    block = data[i * B:(i + 1) * B]
    digest = hashlib.sha256(block).digest()
    sums.append(digest)
    ck = base64.b64encode(digest).decode()
    r = ebs.put_snapshot_block(SnapshotId=sid, BlockIndex=i, BlockData=block, DataLength=B,
                               Checksum=ck, ChecksumAlgorithm="SHA256")
    assert r["Checksum"] == ck, r
try:  # a block whose checksum does not match is refused
    ebs.put_snapshot_block(SnapshotId=sid, BlockIndex=9, BlockData=data[:B], DataLength=B,
                           Checksum=base64.b64encode(b"x" * 32).decode(), ChecksumAlgorithm="SHA256")
    raise SystemExit("a block with a wrong checksum was accepted")
except ebs.exceptions.ValidationException:
    pass
try:
    ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=99)
    raise SystemExit("a wrong ChangedBlocksCount was accepted")
except ebs.exceptions.ValidationException:
    pass
aggregate = base64.b64encode(hashlib.sha256(b"".join(sums)).digest()).decode()
assert ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=len(sums), Checksum=aggregate,
                             ChecksumAlgorithm="SHA256",
                             ChecksumAggregationMethod="LINEAR")["Status"] == "completed"
blocks = ebs.list_snapshot_blocks(SnapshotId=sid)
assert [b["BlockIndex"] for b in blocks["Blocks"]] == list(range(len(sums))), blocks
assert blocks["VolumeSize"] == 1 and blocks["BlockSize"] == B, blocks
b = blocks["Blocks"][1]
got = ebs.get_snapshot_block(SnapshotId=sid, BlockIndex=1, BlockToken=b["BlockToken"])
body = got["BlockData"].read()
assert body == data[B:2 * B] and got["Checksum"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
try:  # a token names one block of one snapshot
    ebs.get_snapshot_block(SnapshotId=sid, BlockIndex=2, BlockToken=b["BlockToken"])
    raise SystemExit("a block token of block 1 read block 2")
except ebs.exceptions.ValidationException:
    pass
import json, urllib.request, urllib.error, botocore.auth, botocore.awsrequest
for body in ('{"VolumeSize": 1, "Timeout": "soon"}', '{"VolumeSize": 1, "Tags": [{"Key": 5}]}',
             '{"VolumeSize": -1}', 'not json', '{"VolumeSize": 1, "Encrypted": true}'):
    req = botocore.awsrequest.AWSRequest(method="POST", url=sys.argv[1] + "/snapshots", data=body)
    botocore.auth.SigV4Auth(ebs._request_signer._credentials, "ebs", "us-east-1").add_auth(req)
    try:
        urllib.request.urlopen(urllib.request.Request(req.url, data=body.encode(), headers=dict(req.headers)))
        raise SystemExit("a malformed StartSnapshot was accepted: " + body)
    except urllib.error.HTTPError as e:
        assert e.code == 400 and e.headers["x-amzn-ErrorType"] == "ValidationException", (body, e.code)
print(sid)
EOF
) || fail "EBS direct APIs upload"
[[ $up == snap-* ]] || fail "upload: $up"
[[ $(ec2 describe-snapshots --snapshot-ids "$up" --query 'Snapshots[0].[State,Description]' --output text) == $'completed\traw upload' ]] ||
  fail "the uploaded snapshot is not listed as completed"
from_up=$(ec2 create-volume --snapshot-id "$up" --availability-zone us-east-1a --query VolumeId --output text)
nbdcopy "$(uri "$from_up")" "$work/back" || fail "read the uploaded snapshot's volume over NBD"
cmp -n 3145728 "$work/raw" "$work/back" || fail "the uploaded image differs over NBD"
cmp -n $((1024 * 1024 * 1024 - 3145728)) -i 3145728 /dev/zero "$work/back" || fail "past the upload is not zero"
head -c 1M /dev/urandom | nbdcopy - "$(uri "$from_up")" || fail "write the new volume"
snap2=$(ec2 create-snapshot --volume-id "$from_up" --query SnapshotId --output text)
[[ $("$aws_cli" --endpoint-url "$endpoint" ebs list-changed-blocks --first-snapshot-id "$up" \
  --second-snapshot-id "$snap2" --query 'ChangedBlocks[].BlockIndex' --output text) == $'0\t1' ]] ||
  fail "aws ebs list-changed-blocks: $("$aws_cli" --endpoint-url "$endpoint" ebs list-changed-blocks --first-snapshot-id "$up" --second-snapshot-id "$snap2")"
code=$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/snapshots/$up/blocks")
[[ $code == 403 ]] || fail "an unsigned EBS request: HTTP $code"
pass "EBS direct APIs: upload, checksums, tokens, list-changed-blocks; the image over NBD byte for byte"

# ---- authentication: nothing unsigned, wrongly signed, expired or by an unknown key
before=$(cli describe-volumes | grep -c '"VolumeId"')
code=$(curl -s -o "$work/reply" -w '%{http_code}' -d 'Action=CreateVolume&Version=2016-11-15&Size=1&AvailabilityZone=us-east-1a' "$endpoint/")
[[ $code == 401 ]] && grep '<Code>AuthFailure</Code>' "$work/reply" >/dev/null || fail "unsigned: $code $(cat "$work/reply")"
AWS_SECRET_ACCESS_KEY=wrong${AWS_SECRET_ACCESS_KEY:5} ec2_refused AuthFailure create-volume --size 1 --availability-zone us-east-1a
AWS_ACCESS_KEY_ID=AKIAAAAAAAAAAAAAAAAA ec2_refused AuthFailure create-volume --size 1 --availability-zone us-east-1a
$py - "$endpoint" <<'EOF' || fail "expired signature"
import datetime, sys, urllib.request, urllib.error
import botocore.auth, botocore.awsrequest, botocore.credentials, os
body = "Action=CreateVolume&Version=2016-11-15&Size=1&AvailabilityZone=us-east-1a"
req = botocore.awsrequest.AWSRequest(method="POST", url=sys.argv[1] + "/", data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
creds = botocore.credentials.Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
class TwentyMinutesAgo(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
botocore.auth.datetime.datetime = TwentyMinutesAgo  # (botocore signs with datetime.utcnow())
botocore.auth.SigV4Auth(creds, "ec2", "us-east-1").add_auth(req)
assert "X-Amz-Date" in req.headers
try:
    urllib.request.urlopen(urllib.request.Request(req.url, data=body.encode(), headers=dict(req.headers)))
    raise SystemExit("an expired request succeeded")
except urllib.error.HTTPError as e:
    text = e.read().decode()
    assert e.code == 401 and "RequestExpired" in text, (e.code, text)
EOF
[[ $(cli describe-volumes | grep -c '"VolumeId"') == "$before" ]] || fail "a refused request changed the pool"
cli delete-access-key --access-key-id "$AWS_ACCESS_KEY_ID"
ec2_refused AuthFailure describe-volumes  # revoked at once, server running
keys=$(cli create-access-key)
export AWS_ACCESS_KEY_ID=$(echo "$keys" | field AccessKeyId) AWS_SECRET_ACCESS_KEY=$(echo "$keys" | field SecretAccessKey)
pass "unsigned, wrong secret, unknown key, expired, revoked: AuthFailure, nothing changed"

# ---- bad input: unknown action and parameter, malformed form, oversized body; load
ec2_signed() {  # a signed raw POST body: prints "HTTP_CODE BODY"
  $py - "$endpoint" "$1" <<'EOF'
import sys, os, urllib.request, urllib.error
import botocore.auth, botocore.awsrequest, botocore.credentials
body = sys.argv[2]
req = botocore.awsrequest.AWSRequest(method="POST", url=sys.argv[1] + "/", data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
botocore.auth.SigV4Auth(botocore.credentials.Credentials(os.environ["AWS_ACCESS_KEY_ID"],
    os.environ["AWS_SECRET_ACCESS_KEY"]), "ec2", "us-east-1").add_auth(req)
try:
    r = urllib.request.urlopen(urllib.request.Request(req.url, data=body.encode(), headers=dict(req.headers)))
    print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
EOF
}
[[ $(ec2_signed 'Action=RunWarpDrive&Version=2016-11-15') == "400 "*"<Code>InvalidAction</Code>"* ]] || fail "unknown action"
[[ $(ec2_signed 'Action=DescribeVolumes&Version=2016-11-15&Colour=blue') == "400 "*"<Code>UnknownParameter</Code>"* ]] ||
  fail "unknown parameter"
[[ $(ec2_signed 'Action=DescribeVolumes&Version=2016-11-15&VolumeId.1=%ZZ&&==') == 400* ]] || fail "malformed form"
code=$(head -c 2M /dev/zero | tr '\0' a | curl -s -o /dev/null -w '%{http_code}' --data-binary @- "$endpoint/")
[[ $code == 413 ]] || fail "a 2 MiB body: HTTP $code"
$py - "$endpoint" "$vol" <<'EOF' || fail "1,000 concurrent requests"
import sys, boto3, botocore.config
from concurrent.futures import ThreadPoolExecutor
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   config=botocore.config.Config(max_pool_connections=100, retries={"max_attempts": 1}))
def one(_):
    return len(ec2.describe_volumes(VolumeIds=[sys.argv[2]])["Volumes"])
with ThreadPoolExecutor(100) as pool:
    answers = list(pool.map(one, range(1000)))
assert answers == [1] * 1000, answers
EOF
nbdinfo --size "$(uri "$vol")" >/dev/null || fail "NBD after the API load"
pass "unknown action and parameter, malformed form, 2 MiB body (413), 1,000 requests from 100 threads; NBD serves"

# ---- modify-volume answers "modifying" as EC2; the modification is kept (after a restart too)
[[ $(ec2 modify-volume --volume-id "$vol" --size 8 --iops 4000 --query VolumeModification.ModificationState --output text) == modifying ]] ||
  fail "modify-volume's reply"
plain=$(ec2 create-volume --size 1 --availability-zone us-east-1a --query VolumeId --output text)
ec2_refused InvalidVolumeModification.NotFound describe-volumes-modifications --volume-ids "$plain"
ec2 delete-volume --volume-id "$plain"
mods=$(ec2 describe-volumes-modifications --volume-ids "$vol" \
  --query 'VolumesModifications[0].[ModificationState,OriginalSize,TargetSize,TargetIops,Progress]' --output text)
[[ $mods == "completed"$'\t'"1"$'\t'"8"$'\t'"4000"$'\t'"100" ]] || fail "describe-volumes-modifications: $mods"
[[ $(ec2 describe-volumes-modifications --filters Name=modification-state,Values=modifying \
  --query 'length(VolumesModifications)' --output text) == 0 ]] || fail "modification-state filter"
ec2_refused UnsupportedOperation copy-snapshot --source-region us-east-1 --source-snapshot-id snap-00000000000000000
pass "modify-volume, describe-volumes-modifications; CopySnapshot between regions refused clearly"

ec2 delete-volume --volume-id "$vol"
ec2 wait volume-deleted --volume-ids "$vol" || fail "wait volume-deleted"
# A ClientToken is recorded with the pool: a retry after a restart answers the first volume.
kept=$(ec2 create-volume --size 1 --availability-zone us-east-1a --client-token across-restart \
  --query VolumeId --output text)
stop_server
start --api-listen "127.0.0.1:$port" --no-volume-limits
[[ $(ec2 create-volume --size 1 --availability-zone us-east-1a --client-token across-restart \
  --query VolumeId --output text) == "$kept" ]] || fail "a retry after a restart made another volume"
ec2_refused IdempotentParameterMismatch create-volume --size 3 --availability-zone us-east-1a \
  --client-token across-restart
ec2 delete-volume --volume-id "$kept"
pass "a ClientToken retried after a restart answers the first create"
stop_server

# ---- HTTPS with the server's TLS certificate; plaintext only on loopback
if "$server" --pool "$pool" --socket "$work/sock2" --api-listen "0.0.0.0:$port" 2>"$work/refused"; then
  fail "a non-loopback plaintext API listener was allowed"
fi
grep "needs HTTPS" "$work/refused" >/dev/null || fail "refusal without reason: $(cat "$work/refused")"
if command -v certtool >/dev/null; then
  "$(dirname "$0")/../../tools/test-pki.sh" "$work/pki"
  start --api-listen "127.0.0.1:$port" --tls-certificates "$work/pki/server"
  [[ $("$aws_cli" --endpoint-url "https://127.0.0.1:$port" --ca-bundle "$work/pki/server/ca-cert.pem" \
    ec2 describe-snapshots --snapshot-ids "$snap" --query 'Snapshots[0].State' --output text) == completed ]] ||
    fail "describe-snapshots over HTTPS"
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then fail "plain HTTP answered on the HTTPS listener"; fi
  if "$aws_cli" --endpoint-url "https://127.0.0.1:$port" ec2 describe-volumes >/dev/null 2>&1; then
    fail "HTTPS with a CA the client does not trust was accepted"
  fi
  stop_server
  pass "HTTPS with the server's certificate; plain HTTP and an untrusted CA refused; non-loopback plaintext refused"
fi
echo "api_interop: all passed"
