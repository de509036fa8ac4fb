"""The calls Terraform's AWS provider makes for storage, in its order, with boto3 (Terraform is
not a Debian package): the provider's start, each resource's create and the read that follows
it, a refresh, and the delete, reading the reply fields the provider reads (the inventory in
docs/ec2-api.md). Run by api_interop.sh against its server:

  terraform_order.py ENDPOINT SNAPSHOT_ID
"""
import sys
import time

import boto3
import botocore.exceptions

endpoint, snapshot_id = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1")
ec2 = boto3.client("ec2", **kw)
sts = boto3.client("sts", **kw)
iam = boto3.client("iam", **kw)


def refused(code, fn, **params):
    try:
        fn(**params)
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == code, (code, e.response["Error"])
        return
    raise AssertionError(f"{fn.__name__} succeeded; expected {code}")


# ---- provider start, and the data sources
me = sts.get_caller_identity()
assert me["Account"] == "000000000000" and me["Arn"].startswith("arn:aws:iam::"), me
assert iam.list_account_aliases()["AccountAliases"] == []
zones = ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])
assert [z["ZoneName"] for z in zones["AvailabilityZones"]] == ["us-east-1a"], zones
vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
assert len(vpc) == 1 and vpc[0]["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"] == "associated"
vpc_id = vpc[0]["VpcId"]
for attribute, key, value in (("enableDnsHostnames", "EnableDnsHostnames", True),
                              ("enableDnsSupport", "EnableDnsSupport", True),
                              ("enableNetworkAddressUsageMetrics",
                               "EnableNetworkAddressUsageMetrics", False)):
    assert ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute)[key]["Value"] is value
main = ec2.describe_route_tables(Filters=[{"Name": "association.main", "Values": ["true"]},
                                          {"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]
assert len(main) == 1, main
subnet = ec2.describe_subnets(Filters=[{"Name": "availabilityZone", "Values": ["us-east-1a"]},
                                       {"Name": "defaultForAz", "Values": ["true"]}])["Subnets"]
assert len(subnet) == 1 and subnet[0]["VpcId"] == vpc_id, subnet
subnet_id = subnet[0]["SubnetId"]
refused("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=["vpc-00000000000000000"])
refused("InvalidSubnetID.NotFound", ec2.describe_subnets, SubnetIds=["subnet-00000000000000000"])

# ---- aws_ebs_volume: create (Encrypted always sent), wait available, read
vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, VolumeType="gp3", Encrypted=False,
                        TagSpecifications=[{"ResourceType": "volume",
                                            "Tags": [{"Key": "Name", "Value": "tf-data"}]}])
vol_id = vol["VolumeId"]
ec2.get_waiter("volume_available").wait(VolumeIds=[vol_id], WaiterConfig={"Delay": 1})
v = ec2.describe_volumes(VolumeIds=[vol_id])["Volumes"][0]
for field in ("Encrypted", "MultiAttachEnabled", "Iops", "Throughput", "SnapshotId", "Size"):
    assert field in v, (field, v)
assert ec2.describe_volume_attribute(VolumeId=vol_id, Attribute="autoEnableIO")["AutoEnableIO"]["Value"] is False
ec2.modify_volume_attribute(VolumeId=vol_id, AutoEnableIO={"Value": True})
assert ec2.describe_volume_attribute(VolumeId=vol_id, Attribute="autoEnableIO")["AutoEnableIO"]["Value"] is True

# ---- aws_ebs_snapshot: create, wait completed, read; createVolumePermission
snap = ec2.create_snapshot(VolumeId=vol_id, Description="tf",
                           TagSpecifications=[{"ResourceType": "snapshot",
                                               "Tags": [{"Key": "Name", "Value": "tf-snap"}]}])
assert "Tags" in snap, snap
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap["SnapshotId"]], WaiterConfig={"Delay": 1})
ec2.modify_snapshot_attribute(SnapshotId=snap["SnapshotId"], Attribute="createVolumePermission",
                              OperationType="add", UserIds=["123456789012"])
perms = ec2.describe_snapshot_attribute(SnapshotId=snap["SnapshotId"],
                                        Attribute="createVolumePermission")["CreateVolumePermissions"]
assert perms == [{"UserId": "123456789012"}], perms
ec2.reset_snapshot_attribute(SnapshotId=snap["SnapshotId"], Attribute="createVolumePermission")
assert ec2.describe_snapshot_attribute(SnapshotId=snap["SnapshotId"], Attribute="createVolumePermission")["CreateVolumePermissions"] == []

# ---- aws_ami (register from a snapshot, with the parameters the provider always sends)
img = ec2.register_image(Name="tf-ami", Architecture="x86_64", RootDeviceName="/dev/xvda",
                         VirtualizationType="hvm", EnaSupport=True, SriovNetSupport="simple",
                         BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                                               "Ebs": {"SnapshotId": snapshot_id,
                                                       "DeleteOnTermination": True,
                                                       "VolumeType": "gp3", "Encrypted": False}}])
image_id = img["ImageId"]
ec2.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig={"Delay": 1})
image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
assert image["RootDeviceName"] == "/dev/xvda" and image["BlockDeviceMappings"], image
refused("InvalidAMIName.Duplicate", ec2.register_image, Name="tf-ami", RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot_id}}])
ec2.modify_image_attribute(ImageId=image_id, Description={"Value": "changed"})
assert ec2.describe_image_attribute(ImageId=image_id, Attribute="description")["Description"]["Value"] == "changed"
ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
lp = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
assert lp == [{"Group": "all"}], lp
ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Remove": [{"Group": "all"}]})
assert ec2.describe_image_attribute(ImageId=image_id, Attribute="productCodes")["ProductCodes"] == []
bdm = ec2.describe_image_attribute(ImageId=image_id, Attribute="blockDeviceMapping")["BlockDeviceMappings"]
assert bdm[0]["Ebs"]["SnapshotId"] == snapshot_id, bdm
refused("InvalidParameterValue", ec2.describe_image_attribute, ImageId=image_id, Attribute="colour")
# deprecation_time
assert ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt="2036-01-01T00:00:00Z")["Return"]
assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["DeprecationTime"] == "2036-01-01T00:00:00.000Z"
refused("InvalidParameterValue", ec2.enable_image_deprecation, ImageId=image_id,
        DeprecateAt="2001-01-01T00:00:00Z")
ec2.disable_image_deprecation(ImageId=image_id)
assert "DeprecationTime" not in ec2.describe_images(ImageIds=[image_id], IncludeDeprecated=True)["Images"][0]
assert ec2.describe_images(ExecutableUsers=["123456789012"])["Images"] == []  # shared with nobody

# ---- aws_key_pair (import) and aws_security_group with its rules
refused("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=["tf-key"])
sg = ec2.create_security_group(GroupName="tf-sg", Description="tf", VpcId=vpc_id,
                               TagSpecifications=[{"ResourceType": "security-group",
                                                   "Tags": [{"Key": "Name", "Value": "tf-sg"}]}])
sg_id = sg["GroupId"]
group = ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"][0]
egress = group["IpPermissionsEgress"]
assert egress[0]["IpProtocol"] == "-1" and egress[0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}], egress
ec2.revoke_security_group_egress(GroupId=sg_id, IpPermissions=egress)  # Terraform's create does
assert ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"][0]["IpPermissionsEgress"] == []
refused("InvalidPermission.NotFound", ec2.revoke_security_group_egress, GroupId=sg_id, IpPermissions=egress)
rules = ec2.authorize_security_group_ingress(GroupId=sg_id, IpPermissions=[
    {"IpProtocol": "tcp", "FromPort": 10809, "ToPort": 10809,
     "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "nbd"}, {"CidrIp": "192.168.0.0/16"}],
     "Ipv6Ranges": [{"CidrIpv6": "fd00::/8"}]},
    {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
assert rules["Return"] and len(rules["SecurityGroupRules"]) == 4, rules
rule_ids = [r["SecurityGroupRuleId"] for r in rules["SecurityGroupRules"]]
refused("InvalidPermission.Duplicate", ec2.authorize_security_group_ingress, GroupId=sg_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 10809, "ToPort": 10809,
                        "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
# aws_vpc_security_group_ingress_rule reads its rule back by id
got = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule_ids[0]])["SecurityGroupRules"]
assert got[0]["CidrIpv4"] == "10.0.0.0/8" and got[0]["Description"] == "nbd" and not got[0]["IsEgress"], got
ec2.modify_security_group_rules(GroupId=sg_id, SecurityGroupRules=[
    {"SecurityGroupRuleId": rule_ids[0],
     "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 10809, "ToPort": 10810,
                           "CidrIpv4": "10.0.0.0/8", "Description": "nbd range"}}])
got = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule_ids[0]])["SecurityGroupRules"]
assert (got[0]["ToPort"], got[0]["Description"]) == (10810, "nbd range"), got
by_group = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg_id]}])
assert len(by_group["SecurityGroupRules"]) == 4, by_group
refused("InvalidSecurityGroupRuleId.NotFound", ec2.describe_security_group_rules,
        SecurityGroupRuleIds=["sgr-00000000000000000"])
perms = ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"][0]["IpPermissions"]
tcp = [p for p in perms if p["IpProtocol"] == "tcp" and p["ToPort"] == 10809][0]
assert len(tcp["IpRanges"]) == 1 and tcp["Ipv6Ranges"] == [{"CidrIpv6": "fd00::/8"}], perms
ec2.update_security_group_rule_descriptions_ingress(GroupId=sg_id, SecurityGroupRuleDescriptions=[
    {"SecurityGroupRuleId": rule_ids[1], "Description": "lan"}])
ec2.authorize_security_group_egress(GroupId=sg_id, IpPermissions=[
    {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
ec2.revoke_security_group_ingress(GroupId=sg_id, SecurityGroupRuleIds=[rule_ids[3]])
assert len(ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg_id]}])["SecurityGroupRules"]) == 4
filtered = ec2.describe_security_groups(Filters=[{"Name": "ip-permission.ipv6-cidr", "Values": ["fd00::/8"]}])
assert [g["GroupId"] for g in filtered["SecurityGroups"]] == [sg_id], filtered
refused("InvalidVpcID.NotFound", ec2.create_security_group, GroupName="x", Description="x",
        VpcId="vpc-00000000000000000")
default = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
assert len(default) == 1 and default[0]["VpcId"] == vpc_id, default
refused("CannotDelete", ec2.delete_security_group, GroupId=default[0]["GroupId"])

# ---- aws_instance: RunInstances as the provider sends it, then its reads
# root_block_device (grown, another type, kept on termination), one ebs_block_device, one
# ephemeral_block_device, user_data and credit_specification
run = ec2.run_instances(ImageId=image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                        BlockDeviceMappings=[
                            {"DeviceName": "/dev/xvda",
                             "Ebs": {"VolumeSize": 4, "VolumeType": "io1", "Iops": 200,
                                     "DeleteOnTermination": False, "Encrypted": False}},
                            {"DeviceName": "/dev/sdf",
                             "Ebs": {"VolumeSize": 2, "VolumeType": "gp2", "DeleteOnTermination": True}},
                            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}],
                        UserData="#cloud-config\n", CreditSpecification={"CpuCredits": "standard"},
                        SubnetId=subnet_id, SecurityGroupIds=[sg_id], Monitoring={"Enabled": False},
                        DisableApiTermination=False, EbsOptimized=False,
                        HibernationOptions={"Configured": False},
                        Placement={"AvailabilityZone": ""},
                        TagSpecifications=[{"ResourceType": "instance",
                                            "Tags": [{"Key": "Name", "Value": "tf-vm"}]}])
inst = run["Instances"][0]
iid = inst["InstanceId"]
ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1})
i = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
assert i["SubnetId"] == subnet_id and i["VpcId"] == vpc_id and i["PrivateIpAddress"].startswith("172.31."), i
assert i["Placement"]["AvailabilityZone"] == "us-east-1a" and i["SecurityGroups"] == [{"GroupId": sg_id, "GroupName": "tf-sg"}], i
for field in ("MetadataOptions", "CpuOptions", "CapacityReservationSpecification", "HibernationOptions",
              "EnclaveOptions", "MaintenanceOptions", "Monitoring", "EbsOptimized", "SourceDestCheck"):
    assert field in i, (field, i)
for attribute, key in (("instanceType", "InstanceType"), ("disableApiTermination", "DisableApiTermination"),
                       ("instanceInitiatedShutdownBehavior", "InstanceInitiatedShutdownBehavior"),
                       ("disableApiStop", "DisableApiStop"), ("rootDeviceName", "RootDeviceName")):
    assert "Value" in ec2.describe_instance_attribute(InstanceId=iid, Attribute=attribute)[key], attribute
groups = ec2.describe_instance_attribute(InstanceId=iid, Attribute="groupSet")["Groups"]
assert groups == [{"GroupId": sg_id, "GroupName": "tf-sg"}], groups
bdm = ec2.describe_instance_attribute(InstanceId=iid, Attribute="blockDeviceMapping")["BlockDeviceMappings"]
assert bdm[0]["DeviceName"] == "/dev/xvda" and bdm[0]["Ebs"]["VolumeId"].startswith("vol-"), bdm
credits = ec2.describe_instance_credit_specifications(InstanceIds=[iid])["InstanceCreditSpecifications"]
assert credits == [{"InstanceId": iid, "CpuCredits": "standard"}], credits
done = ec2.modify_instance_credit_specification(InstanceCreditSpecifications=[
    {"InstanceId": iid, "CpuCredits": "unlimited"}, {"InstanceId": "i-00000000000000000", "CpuCredits": "unlimited"}])
assert done["SuccessfulInstanceCreditSpecifications"] == [{"InstanceId": iid}], done
assert done["UnsuccessfulInstanceCreditSpecifications"][0]["Error"]["Code"] == "InvalidInstanceID.NotFound", done
assert ec2.describe_instance_credit_specifications(InstanceIds=[iid])["InstanceCreditSpecifications"][0]["CpuCredits"] == "unlimited"
import base64
user_data = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
assert base64.b64decode(user_data) == b"#cloud-config\n", user_data
assert ec2.get_instance_uefi_data(InstanceId=iid)["InstanceId"] == iid
# the root as root_block_device asked, the added EBS device, the launch's DeleteOnTermination
devices = {m["DeviceName"]: m["Ebs"] for m in bdm}
assert set(devices) == {"/dev/xvda", "/dev/sdf"} and devices["/dev/xvda"]["DeleteOnTermination"] is False, bdm
root_volume = ec2.describe_volumes(VolumeIds=[devices["/dev/xvda"]["VolumeId"]])["Volumes"][0]
assert (root_volume["Size"], root_volume["VolumeType"], root_volume["Iops"]) == (4, "io1", 200), root_volume
assert ec2.describe_volumes(VolumeIds=[devices["/dev/sdf"]["VolumeId"]])["Volumes"][0]["Size"] == 2
ec2.modify_instance_attribute(InstanceId=iid, BlockDeviceMappings=[
    {"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": True}}])
bdm = ec2.describe_instance_attribute(InstanceId=iid, Attribute="blockDeviceMapping")["BlockDeviceMappings"]
assert [m["Ebs"]["DeleteOnTermination"] for m in bdm if m["DeviceName"] == "/dev/xvda"] == [True], bdm
refused("IncorrectInstanceState", ec2.modify_instance_attribute, InstanceId=iid, UserData={"Value": b"x"})
refused("InvalidBlockDeviceMapping", ec2.run_instances, ImageId=image_id, MinCount=1, MaxCount=1,
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "NoDevice": ""}])
refused("InvalidParameterCombination", ec2.run_instances, ImageId=image_id, MinCount=1, MaxCount=1,
        InstanceType="m5.large", CreditSpecification={"CpuCredits": "standard"})
status = ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"]
assert status[0]["InstanceStatus"]["Status"] == "ok" and status[0]["InstanceState"]["Name"] == "running", status
for name, values in (("subnet-id", [subnet_id]), ("vpc-id", [vpc_id]), ("instance.group-name", ["tf-sg"]),
                     ("private-ip-address", [i["PrivateIpAddress"]]), ("availability-zone", ["us-east-1a"]),
                     ("tag:Name", ["tf-vm"]), ("instance-state-code", ["16"])):
    found = ec2.describe_instances(Filters=[{"Name": name, "Values": values}])["Reservations"]
    assert iid in [x["InstanceId"] for r in found for x in r["Instances"]], (name, found)
assert ec2.describe_instances(Filters=[{"Name": "iam-instance-profile.arn", "Values": ["*"]}])["Reservations"] == []
refused("InvalidParameterValue", ec2.describe_instances, Filters=[{"Name": "colour", "Values": ["x"]}])
refused("UnsupportedOperation", ec2.run_instances, ImageId=image_id, MinCount=1, MaxCount=1,
        Monitoring={"Enabled": True})
refused("InvalidSubnetID.NotFound", ec2.run_instances, ImageId=image_id, MinCount=1, MaxCount=1,
        SubnetId="subnet-00000000000000000")
refused("UnsupportedOperation", ec2.run_instances, ImageId=image_id, MinCount=1, MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "PrivateIpAddress": "172.31.0.9"}])

# ---- aws_volume_attachment: attach, wait in-use, detach (with the instance id), wait available
ec2.attach_volume(VolumeId=vol_id, InstanceId=iid, Device="/dev/sdh")
ec2.get_waiter("volume_in_use").wait(VolumeIds=[vol_id], WaiterConfig={"Delay": 1})
refused("InvalidAttachment.NotFound", ec2.detach_volume, VolumeId=vol_id, InstanceId="i-00000000000000000")
refused("DependencyViolation", ec2.delete_security_group, GroupId=sg_id)
ec2.detach_volume(VolumeId=vol_id, InstanceId=iid, Device="/dev/sdh")
ec2.get_waiter("volume_available").wait(VolumeIds=[vol_id], WaiterConfig={"Delay": 1})

# ---- EC2's documented filters on every Describe (docs/ec2-api.md); an undocumented one is refused
def ids(reply, key, field):
    return [item[field] for item in reply[key]]


F = lambda name, *values: [{"Name": name, "Values": list(values)}]
assert ids(ec2.describe_volumes(Filters=F("encrypted", "false") + F("multi-attach-enabled", "false")
                                + F("volume-id", vol_id)), "Volumes", "VolumeId") == [vol_id]
assert ids(ec2.describe_volumes(Filters=F("attachment.instance-id", iid) + F("attachment.status", "attached")
                                + F("attachment.device", "/dev/xvda")), "Volumes", "VolumeId") == \
    [devices["/dev/xvda"]["VolumeId"]]
assert ec2.describe_volumes(Filters=F("operator.managed", "true"))["Volumes"] == []
assert ids(ec2.describe_snapshots(Filters=F("owner-id", "000000000000") + F("volume-size", "1")
                                  + F("snapshot-id", snap["SnapshotId"])), "Snapshots", "SnapshotId") == [snap["SnapshotId"]]
assert ids(ec2.describe_images(Filters=F("is-public", "false") + F("block-device-mapping.volume-type", "gp3")
                               + F("ena-support", "true")), "Images", "ImageId") == [image_id]
assert ids(ec2.describe_instance_types(InstanceTypes=["m5d.large"], Filters=F("instance-storage-supported", "true")),
           "InstanceTypes", "InstanceType") == ["m5d.large"]
assert ids(ec2.describe_instance_types(Filters=F("instance-storage-info.disk.count", "2")),
           "InstanceTypes", "InstanceType"), "no type with two instance-store disks"
assert ec2.describe_volume_status(Filters=F("volume-status.status", "impaired"))["VolumeStatuses"] == []
assert ec2.describe_regions(Filters=F("region-name", "us-east-1"))["Regions"][0]["RegionName"] == "us-east-1"
assert ec2.describe_instance_status(Filters=F("instance-status.reachability", "passed"))["InstanceStatuses"]
for call, key in ((ec2.describe_volumes, "Volumes"), (ec2.describe_snapshots, "Snapshots"),
                  (ec2.describe_images, "Images"), (ec2.describe_key_pairs, "KeyPairs"),
                  (ec2.describe_instance_types, "InstanceTypes"), (ec2.describe_volume_status, "VolumeStatuses"),
                  (ec2.describe_security_group_rules, "SecurityGroupRules"), (ec2.describe_regions, "Regions"),
                  (ec2.describe_route_tables, "RouteTables"), (ec2.describe_network_interfaces, "NetworkInterfaces"),
                  (ec2.describe_volumes_modifications, "VolumesModifications")):
    refused("InvalidParameterValue", call, Filters=F("colour", "blue"))
    call(Filters=F("tag-key", "no-such-key"))  # tag filters are every Describe's

# ---- EC2's Malformed codes for ids of the wrong shape, NotFound for well-formed ones
for code, call, params in (
        ("InvalidInstanceID.Malformed", ec2.describe_instances, {"InstanceIds": ["i-xyz"]}),
        ("InvalidInstanceID.NotFound", ec2.describe_instances, {"InstanceIds": ["i-0123456789abcdef0"]}),
        ("InvalidAMIID.Malformed", ec2.describe_images, {"ImageIds": ["ami-nope"]}),
        ("InvalidAMIID.NotFound", ec2.describe_images, {"ImageIds": ["ami-0123456789abcdef0"]}),
        ("InvalidVolumeID.Malformed", ec2.describe_volumes, {"VolumeIds": ["vol-1"]}),
        ("InvalidSnapshotID.Malformed", ec2.describe_snapshots, {"SnapshotIds": ["snap-zz"]}),
        ("InvalidSnapshot.NotFound", ec2.describe_snapshots, {"SnapshotIds": ["snap-0123456789abcdef0"]}),
        ("InvalidGroupId.Malformed", ec2.describe_security_groups, {"GroupIds": ["sg-"]}),
        ("InvalidGroup.NotFound", ec2.describe_security_groups, {"GroupIds": ["sg-0123456789abcdef0"]})):
    refused(code, call, **params)

# ---- destroy, in the provider's order
ec2.terminate_instances(InstanceIds=[iid])
ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1})
assert ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [sg_id]}])["NetworkInterfaces"] == []
ec2.delete_security_group(GroupId=sg_id)
refused("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=[sg_id])
ec2.deregister_image(ImageId=image_id)
assert ec2.describe_images(ImageIds=[image_id])["Images"] == []  # as EC2, for a while
ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
ec2.delete_volume(VolumeId=vol_id)
refused("InvalidVolume.NotFound", ec2.describe_volumes, VolumeIds=[vol_id])
print("terraform_order: all passed")
