#include "control/verbs.h"

#include <map>
#include <set>
#include <string>
#include <utility>

#include "util/check.h"

namespace strata::control {

namespace {

using K = VerbArg::Kind;

// Arguments several verbs share.
const VerbArg kTagSpecs = {"--tag-specifications", "tag-specifications", K::kList,
                           "ResourceType=TYPE,Tags=[{Key=k,Value=v},...] (one per type)"};
const VerbArg kFilters = {"--filters", "filters", K::kList,
                          "Name=NAME,Values=V1,V2 ... (tag:KEY, state, ...)"};
const VerbArg kRemote = {"--remote", "remote", K::kText, "act on the snapshots of this remote"};
const VerbArg kDescription = {"--description", "description", K::kText, "free text (255 bytes)"};
const VerbArg kBlockSize = {"--block-size", "block-size", K::kText,
                            "bytes: the chunk size (default) or a multiple"};
const VerbArg kMaxResults = {"--max-results", "max-results", K::kText,
                             "blocks per page, 1..10000 (10000)"};
const VerbArg kNextToken = {"--next-token", "next-token", K::kText,
                            "NextToken of the previous page"};
const VerbArg kInitializationRate = {
    "--initialization-rate", "initialization-rate", K::kText,
    "with --remote: background restore rate in MiB/s (EC2's VolumeInitializationRate; default "
    "unlimited; 0: blocks arrive only when read)"};

VerbArg Required(VerbArg arg) {
  arg.required = true;
  return arg;
}

std::vector<Verb> VolumeVerbs() {
  return {
      {"pool create",
       "pool-create",
       "create a pool in --pool DIR",
       {{"--chunk-size", "chunk-size", K::kText, "4KiB..1MiB, power of two (64KiB)"},
        {"--capacity", "capacity", K::kText, "upper bound on stored data (default none)"}}},
      {"pool info", "pool-info", "space, engine and counters", {}},
      {"pool check", "pool-check", "verify every metadata invariant and the space accounting", {}},
      {"create-volume",
       "create-volume",
       "create a thin volume",
       {{"--size", "size", K::kText,
         "GiB (as EBS) or with a unit: 256MiB, 2GiB (default with --snapshot-id: the snapshot's "
         "size)"},
        {"--snapshot-id", "snapshot-id", K::kText, "an instant copy-on-write clone of a snapshot"},
        {"--name", "name", K::kText, "the Name tag"},
        {"--volume-type", "volume-type", K::kText,
         "gp2|gp3|io1|io2|st1|sc1|standard|unlimited (gp3); docs/volume-types.md"},
        {"--iops", "iops", K::kText, "provisioned IOPS (gp3 3000-80000, io1, io2: required)"},
        {"--throughput", "throughput", K::kText, "gp3 MiB/s, 125-2000 (125)"},
        kInitializationRate,
        {"--wait", "wait", K::kFlag,
         "with --remote: return once every block of the snapshot is here"},
        {"--availability-zone", "availability-zone", K::kText,
         "the pool's zone (us-east-1a); any other is refused"},
        {"--encrypted", "encrypted", K::kFlag,
         "AES-256-XTS under a data key from the KMS (default: encryption by default)"},
        {"--no-encrypted", "encrypted", K::kFlag, "plaintext (not for an encrypted snapshot)",
         false, false},
        {"--kms-key-id", "kms-key-id", K::kText,
         "the KMS key (id, ARN, alias/...): needs --encrypted (default alias/aws/ebs)"},
        kTagSpecs,
        kRemote},
       {"size", "snapshot-id"}},
      {"describe-volumes",
       "describe-volumes",
       "list volumes",
       {{"--volume-ids", "volume-ids", K::kList, "ids (or unique names) to show"}, kFilters}},
      {"delete-volume",
       "delete-volume",
       "delete a volume and free its space",
       {Required({"--volume-id", "volume-id", K::kText, "volume id"})}},
      {"modify-volume",
       "modify-volume",
       "grow a volume or change its type, IOPS, throughput, live",
       {Required({"--volume-id", "volume-id", K::kText, "volume id"}),
        {"--size", "size", K::kText, "new size, GiB or with a unit"},
        {"--volume-type", "volume-type", K::kText, "new type"},
        {"--iops", "iops", K::kText, "new provisioned IOPS"},
        {"--throughput", "throughput", K::kText, "new gp3 throughput, MiB/s"}}},
      {"describe-volumes-modifications",
       "describe-volumes-modifications",
       "each volume's last modification",
       {{"--volume-ids", "volume-ids", K::kList, "ids (default: every modified volume)"},
        kFilters}},
      {"describe-volume-status",
       "describe-volume-status",
       "status and CloudWatch AWS/EBS metrics of volumes",
       {{"--volume-ids", "volume-ids", K::kList, "ids (default: all)"}, kFilters}},
  };
}

// Snapshots: the EC2 verbs, the EBS direct APIs' block listings, portable streams.
std::vector<Verb> SnapshotVerbs() {
  return {
      {"create-snapshot",
       "create-snapshot",
       "crash-consistent snapshot of a volume",
       {Required({"--volume-id", "volume-id", K::kText, "volume id or unique name"}), kDescription,
        kTagSpecs}},
      {"create-snapshots",
       "create-snapshots",
       "one crash-consistent point in time across several volumes",
       {{"--volume-ids", "volume-ids", K::kList, "volume ids or unique names"},
        {"--instance-specification", "instance-specification", K::kText,
         "InstanceId=i-…[,ExcludeBootVolume=true][,ExcludeDataVolumeIds=vol-…]: its EBS volumes"},
        kDescription,
        kTagSpecs},
       {"volume-ids", "instance-specification"}},
      {"describe-snapshots",
       "describe-snapshots",
       "list snapshots (named ones with their space accounting)",
       {{"--snapshot-ids", "snapshot-ids", K::kList, "ids to show, with space accounting"},
        {"--volume-ids", "volume-ids", K::kList, "only snapshots of these volumes"},
        {"--owner-ids", "owner-ids", K::kList, "self (or 000000000000): every snapshot here"},
        kFilters,
        kRemote}},
      {"delete-snapshot",
       "delete-snapshot",
       "delete any snapshot; space is reclaimed in the background",
       {Required({"--snapshot-id", "snapshot-id", K::kText, "snapshot id"}), kRemote}},
      {"list-snapshot-blocks",
       "list-snapshot-blocks",
       "blocks holding data",
       {Required({"--snapshot-id", "snapshot-id", K::kText, "snapshot id"}), kBlockSize,
        kMaxResults, kNextToken}},
      {"list-changed-blocks",
       "list-changed-blocks",
       "blocks that differ between two snapshots of a volume",
       {{"--first-snapshot-id", "first-snapshot-id", K::kText, "the older snapshot"},
        Required({"--second-snapshot-id", "second-snapshot-id", K::kText, "the newer snapshot"}),
        kBlockSize,
        kMaxResults,
        kNextToken}},
      {"get-snapshot-block",
       "get-snapshot-block",
       "read one block into a file",
       {Required({"--snapshot-id", "snapshot-id", K::kText, "snapshot id"}),
        Required({"--block-index", "block-index", K::kText, "block index"}), kBlockSize,
        Required({"--outfile", "outfile", K::kPath, "where the block's bytes go"})}},
      {"export-snapshot",
       "export-snapshot",
       "write a snapshot as a portable stream",
       {Required({"--snapshot-id", "snapshot-id", K::kText, "snapshot id"}),
        {"--base-snapshot-id", "base-snapshot-id", K::kText,
         "incremental: only what changed since it"},
        Required({"--outfile", "output-file", K::kPath, "FILE, or - for stdout"}),
        {"--compression-level", "compression-level", K::kText, "zstd level 1..19 (1)"}}},
      {"import-snapshot",
       "import-snapshot",
       "create a snapshot from a stream",
       {Required({"--input", "input-file", K::kPath, "FILE, or - for stdin"})}},
  };
}

// Images and instances (docs/compute.md).
std::vector<Verb> ComputeVerbs() {
  const VerbArg image_name = Required({"--name", "name", K::kText, "unique image name"});
  const VerbArg root_name = {"--root-device-name", "root-device-name", K::kText, "(/dev/xvda)"};
  const VerbArg instance_ids =
      Required({"--instance-ids", "instance-ids", K::kList, "instance ids"});
  return {
      {"register-image",
       "register-image",
       "register an image (AMI) from snapshots",
       {image_name,
        kDescription,
        root_name,
        {"--root-device-type", "root-device-type", K::kText,
         "ebs (default) or instance-store: the root is filled from its snapshot at launch into "
         "instance store"},
        Required({"--block-device-mappings", "block-device-mappings", K::kList,
                  "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-…,VolumeSize=8,VolumeType=gp3,"
                  "DeleteOnTermination=true} or DeviceName=/dev/sdb,VirtualName=ephemeral0"}),
        kTagSpecs}},
      {"describe-images",
       "describe-images",
       "list images",
       {{"--image-ids", "image-ids", K::kList, "ids to show"},
        {"--owners", "owners", K::kList, "self (or 000000000000): every image here"},
        {"--executable-users", "executable-users", K::kList, "self: every image here"},
        {"--include-deprecated", "include-deprecated", K::kFlag,
         "(the owner sees its deprecated images either way)"},
        kFilters,
        kRemote}},
      {"deregister-image",
       "deregister-image",
       "deregister an image (snapshots stay)",
       {Required({"--image-id", "image-id", K::kText, "image id"}), kRemote}},
      {"create-image",
       "create-image",
       "snapshot every EBS volume of an instance at one point; register them",
       {Required({"--instance-id", "instance-id", K::kText, "instance id"}),
        image_name,
        kDescription,
        {"--no-reboot", "no-reboot", K::kFlag,
         "accepted; snapshots are crash-consistent with or without a reboot"},
        kTagSpecs}},
      {"import-image",
       "import-image",
       "a raw disk image file into a snapshot and an image",
       {Required({"--input", "input-file", K::kPath, "raw disk image FILE"}),
        image_name,
        kDescription,
        root_name,
        {"--root-device-type", "root-device-type", K::kText, "ebs or instance-store"},
        kTagSpecs}},
      {"run-instances",
       "run-instances",
       "launch instances from an image",
       {Required({"--image-id", "image-id", K::kText, "image id"}),
        {"--count", "count", K::kText, "how many: N, or MIN:MAX as EC2 (all or none: MAX) (1)"},
        {"--instance-type", "instance-type", K::kText,
         "t3.micro (default), m5d.large, ... (describe-instance-types)"},
        {"--disable-api-termination", "disable-api-termination", K::kFlag,
         "termination protection"},
        kInitializationRate,
        {"--security-group-ids", "security-group-ids", K::kList,
         "security groups guarding the instance's exports (docs/security.md)"},
        {"--key-name", "key-name", K::kText, "a key pair its clients must prove over TLS"},
        {"--user-data", "user-data", K::kText,
         "base64, at most 16 KiB decoded (kept for tools: no guest reads it)"},
        {"--cpu-credits", "cpu-credits", K::kText, "t* types: standard or unlimited"},
        {"--block-device-mappings", "block-device-mappings", K::kList,
         "DeviceName=/dev/xvda,Ebs={VolumeSize=N,VolumeType=T,...} (over the image's), "
         "DeviceName=D,NoDevice=\"\", DeviceName=D,VirtualName=ephemeral0"},
        kTagSpecs,
        kRemote}},
      {"describe-instances",
       "describe-instances",
       "list instances",
       {{"--instance-ids", "instance-ids", K::kList, "ids to show"}, kFilters}},
      {"stop-instances",
       "stop-instances",
       "stop instances (EC2 storage semantics)",
       {instance_ids}},
      {"start-instances",
       "start-instances",
       "start instances (EC2 storage semantics)",
       {instance_ids}},
      {"reboot-instances",
       "reboot-instances",
       "reboot instances (EC2 storage semantics)",
       {instance_ids}},
      {"terminate-instances",
       "terminate-instances",
       "terminate instances (EC2 storage semantics)",
       {instance_ids}},
      {"modify-instance-attribute",
       "modify-instance-attribute",
       "termination protection, security groups, DeleteOnTermination or user data",
       {Required({"--instance-id", "instance-id", K::kText, "instance id"}),
        {"--disable-api-termination", "disable-api-termination", K::kFlag, "protect"},
        {"--no-disable-api-termination", "disable-api-termination", K::kFlag, "unprotect", false,
         false},
        {"--groups", "groups", K::kList, "security group ids (replace the instance's)"},
        {"--block-device-mappings", "block-device-mappings", K::kList,
         "DeviceName=D,Ebs={DeleteOnTermination=true|false} ..."},
        {"--user-data", "user-data", K::kText, "base64 (a stopped instance's)"}},
       {"disable-api-termination", "groups", "block-device-mappings", "user-data"}},
      {"attach-volume",
       "attach-volume",
       "attach a volume to an instance",
       {Required({"--volume-id", "volume-id", K::kText, "volume id"}),
        Required({"--instance-id", "instance-id", K::kText, "instance id"}),
        Required({"--device", "device", K::kText, "/dev/sdf"})}},
      {"detach-volume",
       "detach-volume",
       "detach a volume (it becomes available)",
       {Required({"--volume-id", "volume-id", K::kText, "volume id"}),
        {"--instance-id", "instance-id", K::kText, "the instance it must be attached to"},
        {"--device", "device", K::kText, "the device it must be attached at"},
        {"--force", "force", K::kFlag, "(accepted: a detach never waits on a guest)"}}},
      {"create-tags",
       "create-tags",
       "add or overwrite tags",
       {Required({"--resources", "resources", K::kList, "ids: vol-, snap-, ami-, i-"}),
        Required({"--tags", "tags", K::kList, "Key=k,Value=v ..."})}},
      {"delete-tags",
       "delete-tags",
       "remove tags (all, without --tags)",
       {Required({"--resources", "resources", K::kList, "ids"}),
        {"--tags", "tags", K::kList, "Key=k[,Value=v] ..."}}},
      {"describe-tags",
       "describe-tags",
       "every tag of every resource",
       {{"--filters", "filters", K::kList,
         "Name=key|value|resource-id|resource-type,Values=V1,V2 ..."}}},
      {"describe-availability-zones",
       "describe-availability-zones",
       "the pool's zone: its region plus 'a'",
       {{"--zone-names", "zone-names", K::kList, "names to show"},
        {"--zone-ids", "zone-ids", K::kList, "ids to show"},
        {"--all-availability-zones", "all-availability-zones", K::kFlag, "(one zone either way)"},
        kFilters}},
      {"describe-regions",
       "describe-regions",
       "the pool's region",
       {{"--region-names", "region-names", K::kList, "names to show"},
        {"--all-regions", "all-regions", K::kFlag, "(one region either way)"},
        kFilters}},
      {"describe-vpcs",
       "describe-vpcs",
       "the default VPC (a record for tools; Strata does no networking)",
       {{"--vpc-ids", "vpc-ids", K::kList, "ids to show"}, kFilters}},
      {"describe-subnets",
       "describe-subnets",
       "the default subnet of the pool's zone (a record for tools)",
       {{"--subnet-ids", "subnet-ids", K::kList, "ids to show"}, kFilters}},
      {"describe-vpc-attribute",
       "describe-vpc-attribute",
       "the default VPC's DNS attributes (a record for tools)",
       {Required({"--vpc-id", "vpc-id", K::kText, "the default VPC's id"}),
        Required({"--attribute", "attribute", K::kText,
                  "enableDnsSupport|enableDnsHostnames|enableNetworkAddressUsageMetrics"})}},
      {"describe-network-interfaces",
       "describe-network-interfaces",
       "none: Strata's instances are reached through NBD exports",
       {{"--network-interface-ids", "network-interface-ids", K::kList, "ids to show"}, kFilters}},
      {"describe-route-tables",
       "describe-route-tables",
       "the default VPC's main route table (a record for tools)",
       {{"--route-table-ids", "route-table-ids", K::kList, "ids to show"}, kFilters}},
      {"describe-account-attributes",
       "describe-account-attributes",
       "the account's attributes (default-vpc, supported-platforms, ...)",
       {{"--attribute-names", "attribute-names", K::kList, "names to show"}}},
      {"describe-instance-types",
       "describe-instance-types",
       "instance types and their instance store",
       {{"--instance-types", "instance-types", K::kList, "types to show"}, kFilters}},
  };
}

// Key pairs and security groups (docs/security.md).
std::vector<Verb> SecurityVerbs() {
  const VerbArg key_name = Required({"--key-name", "key-name", K::kText, "unique name"});
  const VerbArg group_id = Required({"--group-id", "group-id", K::kText, "sg-…"});
  const VerbArg permissions = {"--ip-permissions", "ip-permissions", K::kList,
                               "IpProtocol=tcp,FromPort=N,ToPort=M,IpRanges=[{CidrIp=C,"
                               "Description=D}] ... (EC2's form; several rules at once)"};
  const std::vector<VerbArg> rule = {
      group_id,
      {"--protocol", "protocol", K::kText, "tcp (default), udp, icmp, icmpv6 or -1 (all)"},
      {"--port", "port", K::kText, "a port or range: 10809, 10800-10899"},
      {"--cidr", "cidr", K::kText, "addresses: 10.0.0.0/8, 127.0.0.1/32"},
      {"--description", "description", K::kText, "the rule's description"},
      permissions};
  std::vector<VerbArg> revoke = rule;
  revoke.push_back({"--security-group-rule-ids", "security-group-rule-ids", K::kList,
                    "sgr-... ids of the rules to remove"});
  const std::vector<VerbArg> descriptions = {
      group_id,
      permissions,
      {"--security-group-rule-descriptions", "security-group-rule-descriptions", K::kList,
       "SecurityGroupRuleId=sgr-...,Description=D ..."}};
  return {
      {"create-key-pair",
       "create-key-pair",
       "a TLS identity; KeyMaterial once",
       {key_name,
        {"--key-type", "key-type", K::kText, "x509 (client certificate, default) or psk"}}},
      {"import-key-pair",
       "import-key-pair",
       "a client certificate you hold",
       {key_name, Required({"--public-key-material", "public-key-material", K::kFileText,
                            "FILE (or fileb://FILE): the X.509 certificate, PEM"})}},
      {"describe-key-pairs",
       "describe-key-pairs",
       "key pairs",
       {{"--key-names", "key-names", K::kList, "names to show"},
        {"--key-pair-ids", "key-pair-ids", K::kList, "ids to show"},
        kFilters}},
      {"create-access-key",
       "create-access-key",
       "credentials for the EC2 API endpoint (strata-nbd --api-listen); the secret is shown once",
       {}},
      {"list-access-keys", "list-access-keys", "the pool's access keys (no secrets)", {}},
      {"delete-access-key",
       "delete-access-key",
       "revoke an access key at once",
       {Required({"--access-key-id", "access-key-id", K::kText, "AKIA..."})}},
      {"delete-key-pair",
       "delete-key-pair",
       "forget a key pair",
       {Required({"--key-name", "key-name", K::kText, "name"})}},
      {"create-security-group",
       "create-security-group",
       "a group of inbound rules (and EC2's default outbound one)",
       {Required({"--group-name", "group-name", K::kText, "unique name"}),
        Required({"--description", "description", K::kText, "free text"}),
        {"--vpc-id", "vpc-id", K::kText, "the default VPC (the only one)"},
        kTagSpecs}},
      {"describe-security-groups",
       "describe-security-groups",
       "groups and their rules",
       {{"--group-ids", "group-ids", K::kList, "ids to show"},
        {"--group-names", "group-names", K::kList, "names to show"},
        kFilters}},
      {"delete-security-group", "delete-security-group", "delete an unused group", {group_id}},
      {"authorize-security-group-ingress",
       "authorize-security-group-ingress",
       "add inbound rules (they admit NBD clients)",
       rule,
       {"cidr", "ip-permissions"}},
      {"revoke-security-group-ingress",
       "revoke-security-group-ingress",
       "remove inbound rules",
       revoke,
       {"cidr", "ip-permissions", "security-group-rule-ids"}},
      {"authorize-security-group-egress",
       "authorize-security-group-egress",
       "add outbound rules (kept for tools: exports make no connections)",
       rule,
       {"cidr", "ip-permissions"}},
      {"revoke-security-group-egress",
       "revoke-security-group-egress",
       "remove outbound rules",
       revoke,
       {"cidr", "ip-permissions", "security-group-rule-ids"}},
      {"update-security-group-rule-descriptions-ingress",
       "update-security-group-rule-descriptions-ingress",
       "set inbound rules' descriptions",
       descriptions,
       {"ip-permissions", "security-group-rule-descriptions"}},
      {"update-security-group-rule-descriptions-egress",
       "update-security-group-rule-descriptions-egress",
       "set outbound rules' descriptions",
       descriptions,
       {"ip-permissions", "security-group-rule-descriptions"}},
      {"modify-security-group-rules",
       "modify-security-group-rules",
       "change rules in place, by id",
       {group_id,
        Required({"--security-group-rules", "security-group-rules", K::kList,
                  "SecurityGroupRuleId=sgr-...,SecurityGroupRule={IpProtocol=tcp,FromPort=N,"
                  "ToPort=M,CidrIpv4=C,Description=D} ..."})}},
      {"describe-security-group-rules",
       "describe-security-group-rules",
       "every rule of every group, with its id",
       {{"--security-group-rule-ids", "security-group-rule-ids", K::kList, "ids to show"},
        {"--filters", "filters", K::kList, "Name=group-id|security-group-rule-id,Values=..."}}},
  };
}

// EC2's attribute calls and instance status (docs/ec2-api.md "Attributes").
std::vector<Verb> AttributeVerbs() {
  const VerbArg attribute = {"--attribute", "attribute", K::kText, "the attribute's name"};
  const VerbArg image_id = Required({"--image-id", "image-id", K::kText, "ami-..."});
  const VerbArg snapshot_id = Required({"--snapshot-id", "snapshot-id", K::kText, "snap-..."});
  const VerbArg volume_id = Required({"--volume-id", "volume-id", K::kText, "vol-..."});
  const VerbArg operation = {"--operation-type", "operation-type", K::kText, "add or remove"};
  const VerbArg users = {"--user-ids", "user-ids", K::kList, "12-digit account ids"};
  return {
      {"describe-image-attribute",
       "describe-image-attribute",
       "an image's description, launchPermission, blockDeviceMapping, productCodes, ...",
       {image_id, Required(attribute)}},
      {"modify-image-attribute",
       "modify-image-attribute",
       "an image's description or launch permissions (recorded; a pool is one account)",
       {image_id,
        attribute,
        {"--description", "description", K::kList, "Value=TEXT"},
        {"--launch-permission", "launch-permission", K::kList,
         "Add=[{UserId=...},{Group=all}],Remove=[...]"},
        operation,
        users,
        {"--user-groups", "user-groups", K::kList, "all"},
        {"--value", "value", K::kText, "with --attribute description: the text"}}},
      {"enable-image-deprecation",
       "enable-image-deprecation",
       "when the image is deprecated (recorded; shown as DeprecationTime)",
       {image_id, Required({"--deprecate-at", "deprecate-at", K::kText, "2027-01-01T00:00:00Z"})}},
      {"disable-image-deprecation",
       "disable-image-deprecation",
       "cancel an image's deprecation time",
       {image_id}},
      {"describe-snapshot-attribute",
       "describe-snapshot-attribute",
       "a snapshot's createVolumePermission or productCodes",
       {snapshot_id, Required(attribute)}},
      {"modify-snapshot-attribute",
       "modify-snapshot-attribute",
       "a snapshot's create-volume permissions (recorded; a pool is one account)",
       {snapshot_id,
        attribute,
        {"--create-volume-permission", "create-volume-permission", K::kList,
         "Add=[{UserId=...},{Group=all}],Remove=[...]"},
        operation,
        users,
        {"--group-names", "group-names", K::kList, "all"}}},
      {"reset-snapshot-attribute",
       "reset-snapshot-attribute",
       "clear a snapshot's create-volume permissions",
       {snapshot_id, Required(attribute)}},
      {"describe-instance-attribute",
       "describe-instance-attribute",
       "an instance's instanceType, blockDeviceMapping, groupSet, disableApiTermination, ...",
       {Required({"--instance-id", "instance-id", K::kText, "i-..."}), Required(attribute)}},
      {"describe-instance-status",
       "describe-instance-status",
       "status checks of running instances (all with --include-all-instances)",
       {{"--instance-ids", "instance-ids", K::kList, "ids to show"},
        {"--include-all-instances", "include-all-instances", K::kFlag, "not only running ones"},
        kFilters}},
      {"describe-instance-credit-specifications",
       "describe-instance-credit-specifications",
       "CPU credits of burstable (t*) instances",
       {{"--instance-ids", "instance-ids", K::kList, "ids to show"}, kFilters}},
      {"modify-instance-credit-specification",
       "modify-instance-credit-specification",
       "CPU credits of burstable instances",
       {Required({"--instance-credit-specifications", "instance-credit-specifications", K::kList,
                  "InstanceId=i-...,CpuCredits=standard|unlimited ..."})}},
      {"get-instance-uefi-data",
       "get-instance-uefi-data",
       "none: instances boot legacy BIOS",
       {Required({"--instance-id", "instance-id", K::kText, "i-..."})}},
      {"describe-volume-attribute",
       "describe-volume-attribute",
       "a volume's autoEnableIO or productCodes",
       {volume_id, Required(attribute)}},
      {"modify-volume-attribute",
       "modify-volume-attribute",
       "a volume's autoEnableIO",
       {volume_id, Required({"--auto-enable-io", "auto-enable-io", K::kList, "Value=true|false"})}},
      {"enable-ebs-encryption-by-default",
       "enable-ebs-encryption-by-default",
       "new volumes are encrypted unless asked otherwise (docs/security.md)",
       {}},
      {"disable-ebs-encryption-by-default",
       "disable-ebs-encryption-by-default",
       "new volumes are plaintext unless --encrypted",
       {}},
      {"get-ebs-encryption-by-default",
       "get-ebs-encryption-by-default",
       "whether encryption by default is on",
       {}},
      {"get-ebs-default-kms-key-id",
       "get-ebs-default-kms-key-id",
       "the KMS key encrypted volumes use without --kms-key-id",
       {}},
      {"modify-ebs-default-kms-key-id",
       "modify-ebs-default-kms-key-id",
       "set the default KMS key",
       {Required({"--kms-key-id", "kms-key-id", K::kText, "key id, ARN, alias/..."})}},
      {"reset-ebs-default-kms-key-id",
       "reset-ebs-default-kms-key-id",
       "the default KMS key back to alias/aws/ebs",
       {}},
  };
}

// Remotes: snapshots in S3-compatible object storage (docs/remote-format.md).
std::vector<Verb> RemoteVerbs() {
  const VerbArg name = Required({"name", "name", K::kText, "the remote's name"});
  return {
      {"remote add",
       "remote-add",
       "name a bucket (and prefix) at an endpoint",
       {name,
        Required({"--url", "url", K::kText, "s3://BUCKET[/PREFIX]"}),
        {"--endpoint-url", "endpoint-url", K::kText, "http(s)://HOST[:PORT] (default: AWS)"},
        {"--region", "region", K::kText, "(us-east-1)"}}},
      {"remote list", "remote-list", "the pool's remotes", {}},
      {"remote remove", "remote-remove", "forget a remote (its data stays)", {name}},
      {"remote gc",
       "remote-gc",
       "free what no snapshot in the remote needs (and what killed pushes left)",
       {Required({"name", "remote", K::kText, "the remote's name"})}},
      {"copy-snapshot",
       "copy-snapshot",
       "push a snapshot to a remote",
       {Required({"--source-snapshot-id", "source-snapshot-id", K::kText, "snapshot id"}),
        Required({"--destination-remote", "destination-remote", K::kText, "remote name"})}},
      {"copy-image",
       "copy-image",
       "push an image and its snapshots to a remote",
       {Required({"--source-image-id", "source-image-id", K::kText, "image id"}),
        Required({"--destination-remote", "destination-remote", K::kText, "remote name"})}},
  };
}

// The KMS (docs/kms.md): `aws kms`'s verbs and flags; each argument's key is the field of the
// KMS request it fills (kms_control.cc sends the request through the KMS's JSON API), so the
// replies are the AWS CLI's.
std::vector<Verb> KmsVerbs() {
  const VerbArg key = Required({"--key-id", "KeyId", K::kText, "key id, key ARN, alias/NAME"});
  const VerbArg context = {"--encryption-context", "EncryptionContext", K::kText,
                           "k=v,k2=v2 (or a JSON object): authenticated, never stored"};
  const VerbArg alias = Required({"--alias-name", "AliasName", K::kText, "alias/NAME"});
  const VerbArg target = Required({"--target-key-id", "TargetKeyId", K::kText, "key id or ARN"});
  const std::vector<VerbArg> data_key = {
      key,
      context,
      {"--key-spec", "KeySpec", K::kText, "AES_256 or AES_128"},
      {"--number-of-bytes", "NumberOfBytes", K::kText, "1..1024"}};
  return {
      {"kms create-key",
       "kms-create-key",
       "a symmetric key (AES-256-GCM)",
       {{"--description", "Description", K::kText, "free text"},
        {"--tags", "Tags", K::kList, "TagKey=k,TagValue=v ..."}}},
      {"kms describe-key", "kms-describe-key", "a key's metadata", {key}},
      {"kms list-keys",
       "kms-list-keys",
       "every key",
       {{"--limit", "Limit", K::kText, "1..1000"}, {"--marker", "Marker", K::kText, "NextMarker"}}},
      {"kms enable-key", "kms-enable-key", "let a key be used again", {key}},
      {"kms disable-key", "kms-disable-key", "refuse every use of a key", {key}},
      {"kms schedule-key-deletion",
       "kms-schedule-key-deletion",
       "destroy a key after 7..30 days: what it encrypted is then lost for good",
       {key,
        {"--pending-window-in-days", "PendingWindowInDays", K::kText, "7..30 (30)"},
        {"--confirm", "confirm", K::kFlag,
         "yes: everything encrypted under the key becomes unrecoverable when the window ends"}}},
      {"kms cancel-key-deletion", "kms-cancel-key-deletion", "keep a key (left disabled)", {key}},
      {"kms enable-key-rotation",
       "kms-enable-key-rotation",
       "rotate automatically (older material still decrypts)",
       {key, {"--rotation-period-in-days", "RotationPeriodInDays", K::kText, "90..2560 (365)"}}},
      {"kms disable-key-rotation", "kms-disable-key-rotation", "stop rotating", {key}},
      {"kms get-key-rotation-status", "kms-get-key-rotation-status", "rotation and period", {key}},
      {"kms rotate-key-on-demand", "kms-rotate-key-on-demand", "new key material now", {key}},
      {"kms create-alias", "kms-create-alias", "name a key", {alias, target}},
      {"kms update-alias", "kms-update-alias", "point an alias at another key", {alias, target}},
      {"kms delete-alias", "kms-delete-alias", "forget an alias", {alias}},
      {"kms list-aliases",
       "kms-list-aliases",
       "every alias, or a key's",
       {{"--key-id", "KeyId", K::kText, "only this key's"},
        {"--limit", "Limit", K::kText, "1..1000"},
        {"--marker", "Marker", K::kText, "NextMarker"}}},
      {"kms encrypt",
       "kms-encrypt",
       "encrypt up to 4 KiB",
       {key, Required({"--plaintext", "Plaintext", K::kFileBase64, "fileb://FILE"}), context}},
      {"kms decrypt",
       "kms-decrypt",
       "decrypt a CiphertextBlob (Plaintext comes back base64)",
       {Required({"--ciphertext-blob", "CiphertextBlob", K::kFileBase64, "fileb://FILE"}),
        context,
        {"--key-id", "KeyId", K::kText, "refuse a blob of another key"}}},
      {"kms re-encrypt",
       "kms-re-encrypt",
       "decrypt and encrypt under another key, inside the KMS",
       {Required({"--ciphertext-blob", "CiphertextBlob", K::kFileBase64, "fileb://FILE"}),
        Required({"--destination-key-id", "DestinationKeyId", K::kText, "key"}),
        {"--source-encryption-context", "SourceEncryptionContext", K::kText, "k=v,..."},
        {"--destination-encryption-context", "DestinationEncryptionContext", K::kText, "k=v,..."},
        {"--source-key-id", "SourceKeyId", K::kText, "refuse a blob of another key"}}},
      {"kms generate-data-key", "kms-generate-data-key", "a data key, and its blob", data_key},
      {"kms generate-data-key-without-plaintext", "kms-generate-data-key-without-plaintext",
       "a data key's blob only", data_key},
  };
}

}  // namespace

namespace {

// The table's own rules, checked once when it is built (the CLI parser, the request checker and
// the EC2 model all trust them): verbs and commands unique, arguments unique per verb with their
// keys non-empty, and every one_of key an argument of its verb.
void CheckVerbTable(const std::vector<Verb>& verbs) {
  std::set<std::string> paths, commands;
  for (const Verb& v : verbs) {
    STRATA_CHECK(v.path != nullptr && v.command != nullptr && v.help != nullptr);
    STRATA_CHECK(paths.insert(v.path).second && commands.insert(v.command).second);
    std::set<std::string> keys, flags;
    std::set<std::pair<std::string, bool>> switches;  // (key, value) of kFlag arguments
    for (const VerbArg& a : v.args) {
      STRATA_CHECK(a.key != nullptr && a.key[0] != '\0' && a.flag != nullptr);
      STRATA_CHECK(flags.insert(a.flag).second);
      // A key has one argument, but for a --X / --no-X pair of flags sending opposite values.
      const bool pair = a.kind == VerbArg::Kind::kFlag && switches.count({a.key, !a.flag_value});
      STRATA_CHECK(keys.insert(a.key).second || pair);
      STRATA_CHECK(a.kind != VerbArg::Kind::kFlag || switches.insert({a.key, a.flag_value}).second);
    }
    for (const char* key : v.one_of) {
      STRATA_CHECK(keys.count(key) == 1);
    }
  }
}

}  // namespace

const std::vector<Verb>& Verbs() {
  static const std::vector<Verb> verbs = [] {
    std::vector<Verb> all;
    for (auto part : {VolumeVerbs, SnapshotVerbs, ComputeVerbs, SecurityVerbs, AttributeVerbs,
                      RemoteVerbs, KmsVerbs}) {
      for (Verb& v : part()) {
        all.push_back(std::move(v));
      }
    }
    CheckVerbTable(all);
    return all;
  }();
  return verbs;
}

const Verb* VerbOfCommand(const std::string& command) {
  static const std::map<std::string, const Verb*> by_command = [] {
    std::map<std::string, const Verb*> m;
    for (const Verb& v : Verbs()) {
      m.emplace(v.command, &v);
    }
    return m;
  }();
  auto it = by_command.find(command);
  return it == by_command.end() ? nullptr : it->second;
}

Status CheckVerbArgs(const std::string& command, const nlohmann::json& args) {
  const Verb* verb = VerbOfCommand(command);
  if (verb == nullptr || !args.is_object()) {
    return Status::OK();
  }
  for (const auto& item : args.items()) {
    bool known = false;
    for (const VerbArg& a : verb->args) {
      known = known || item.key() == a.key;
    }
    if (!known) {
      return Status::InvalidArgument(command + " has no argument '" + item.key() + "'");
    }
  }
  return Status::OK();
}

}  // namespace strata::control
