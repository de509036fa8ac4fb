// Compute: the EC2 side of a pool, where it touches storage (docs/compute.md).
//
// Images (AMIs) are registered from snapshots; instances are launched from images, each EBS
// mapping becoming an instant copy-on-write clone of its snapshot and each instance-store mapping
// a volatile volume that lives in this process only. Images, instances and tags are durable in the
// pool's metadata; instance-store data never is.
//
// Thread-safe. One Compute per open Pool; destroy it before the Pool.
#ifndef STRATA_COMPUTE_H_
#define STRATA_COMPUTE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/export.h"
#include "strata/exports.h"
#include "strata/kms.h"
#include "strata/pool.h"
#include "strata/remote.h"
#include "strata/status.h"
#include "strata/volume.h"

namespace strata {

using Tags = std::map<std::string, std::string>;

// One block device mapping of an image (EC2's BlockDeviceMapping).
struct BlockDeviceMapping {
  std::string device_name;   // "/dev/xvda", "/dev/sdb"
  std::string virtual_name;  // "ephemeral0".."ephemeral23": an instance-store device; "" = EBS
  // EBS: the volume is a clone of snapshot_id ("" = a new empty volume of volume_size_gib).
  std::string snapshot_id;
  uint64_t volume_size_gib = 0;  // 0 = the snapshot's size
  std::string volume_type = "gp3";
  uint32_t iops = 0;              // gp3, io1, io2 (docs/volume-types.md); 0: the type's default
  uint32_t throughput_mibps = 0;  // gp3
  std::optional<bool> delete_on_termination;  // default: true for the root device, else false
  // EC2's Ebs.Encrypted / Ebs.KmsKeyId, of a launch or a registration. At launch: a volume under
  // its snapshot's key is a clone; under another key, or encrypted from a plaintext snapshot, a
  // clone of a staged re-encrypting copy; false for an encrypted snapshot is refused; a new empty
  // volume gets a data key of its own. A registration keeps them for a new empty volume (each
  // launch encrypts it), and refuses what would encrypt or re-key a snapshot (docs/ec2-api.md).
  // A launch's own values replace the image's.
  std::optional<bool> encrypted;
  std::string kms_key_id;
};

struct ImageSpec {
  std::string name;  // required, unique, 3..128 bytes
  std::string description;
  std::string root_device_name = "/dev/xvda";
  std::vector<BlockDeviceMapping> mappings;
  // "ebs" (default) or "instance-store": the root device is then a volatile volume filled from
  // the root mapping's snapshot at launch, and the instance cannot be stopped.
  std::string root_device_type = "ebs";
  Tags tags;
};

struct ImageInfo {
  std::string image_id;  // "ami-" + 17 hex digits
  std::string name;
  std::string description;
  std::string state;  // "available"
  std::string root_device_name;
  std::string root_device_type;
  int64_t creation_time_ms = 0;
  std::vector<BlockDeviceMapping> mappings;
  std::string source_instance_id;  // create-image
  Tags tags;
};

// One device of an instance.
struct InstanceDevice {
  std::string device_name;
  std::string volume_id;         // EBS; "" for instance store
  std::string virtual_name;      // instance store: "ephemeral0"; "" for EBS
  uint64_t size_bytes = 0;       // instance store
  std::string seed_snapshot_id;  // instance-store root: filled from this snapshot at launch
  bool delete_on_termination = false;
  int64_t attach_time_ms = 0;
  bool instance_store() const { return volume_id.empty(); }
};

struct InstanceInfo {
  std::string instance_id;  // "i-" + 17 hex digits
  std::string image_id;
  std::string instance_type;
  // pending, running, stopping, stopped, shutting-down, terminated
  std::string state;
  std::string state_reason;  // why the last transition happened, when not asked for
  int64_t launch_time_ms = 0;
  std::string root_device_name;
  std::string root_device_type;  // "ebs" or "instance-store"
  bool disable_api_termination = false;
  std::vector<InstanceDevice> devices;
  std::vector<std::string> security_group_ids;
  std::string key_name;
  // The launch it came from: one reservation per run-instances, its instances numbered from 0.
  // (Instances launched before reservations were kept have "" and index 0: each its own.)
  std::string reservation_id;  // "r-" + 17 hex digits
  uint32_t ami_launch_index = 0;
  // EC2's user data, base64 as the API carries it (at most 16 KiB decoded; "": none). Kept and
  // returned for tools; Strata runs no guest to read it.
  std::string user_data;
  std::string cpu_credits;  // burstable types: "standard" or "unlimited"; "": the type's default
  Tags tags;
};

// One rule of a security group: EC2's IpPermission with one IP range. Inbound rules admit NBD
// clients to instances' exports (tcp and -1 rules; the others never match an NBD connection but
// are kept, as EC2 keeps them). Outbound rules are kept and reported only: an export only accepts
// connections, so there is nothing outbound to guard.
struct SecurityGroupRule {
  // "tcp", "udp", "icmp", "icmpv6", "-1" (every protocol), or another IP protocol's number
  std::string protocol = "tcp";
  int32_t from_port = 0;  // tcp/udp: a port range; icmp: type and code (-1: any); else 0..65535
  int32_t to_port = 0;
  std::string cidr;         // "10.0.0.0/8", "127.0.0.1/32", "::1/128"
  std::string description;  // free text (255 bytes); not part of the rule's identity
  std::string rule_id;      // "sgr-" + 17 hex digits, given when the rule is added
  // The same permission: protocol, ports and range (what EC2 matches a revoke against).
  bool SamePermission(const SecurityGroupRule& o) const {
    return protocol == o.protocol && from_port == o.from_port && to_port == o.to_port &&
           cidr == o.cidr;
  }
  bool operator==(const SecurityGroupRule&) const = default;
};

// What EC2 keeps beside a resource other than its tags: who else may launch an image
// (launchPermission) or create volumes from a snapshot (createVolumePermission), and a volume's
// autoEnableIO. A pool is one account: permissions are recorded and reported, and grant nothing.
struct ResourceAttributes {
  std::vector<std::string> user_ids;  // 12-digit account ids
  std::vector<std::string> groups;    // "all": public
  bool auto_enable_io = false;        // volumes (Strata never suspends a volume's I/O)
  std::string deprecation_time;       // images: when EC2 would stop listing it, ISO 8601 UTC
  bool operator==(const ResourceAttributes&) const = default;
};

struct SecurityGroupInfo {
  std::string group_id;  // "sg-" + 17 hex digits
  std::string group_name;
  std::string description;
  std::vector<SecurityGroupRule> ingress;  // none: admits nothing
  std::vector<SecurityGroupRule> egress;   // a new group has EC2's default: -1 to 0.0.0.0/0
  Tags tags;
};

// Who is connecting to an export, as the NBD server sees it.
struct ExportPeer {
  std::string address;      // the TCP source address; "" over the unix socket
  uint16_t local_port = 0;  // the TCP port it connected to
  std::string key_name;     // the key pair it proved over TLS ("" if none)
};

// A key pair: EC2's way into an instance, here a TLS identity (docs/security.md "Key pairs").
struct KeyPairInfo {
  std::string key_pair_id;  // "key-" + 17 hex digits
  std::string key_name;
  std::string key_type;     // "x509" (a client certificate) or "psk" (a pre-shared key)
  std::string fingerprint;  // SHA-256 of the certificate (DER) or of the key, hex
  int64_t create_time_ms = 0;
  Tags tags;
};

struct AccessKeyInfo {
  std::string access_key_id;
  int64_t create_time_ms = 0;
};

// A volume's last modification (EC2's VolumeModification). Strata applies one at once (limits
// change live; no data moves), so a kept modification is "completed" with both times;
// ModifyVolume's own reply says "modifying", as EC2's does.
struct VolumeModificationInfo {
  std::string volume_id;
  std::string state;  // "modifying" (ModifyVolume's reply) or "completed"
  uint64_t original_size_bytes = 0, target_size_bytes = 0;
  std::string original_volume_type, target_volume_type;
  uint32_t original_iops = 0, target_iops = 0;
  uint32_t original_throughput_mibps = 0, target_throughput_mibps = 0;
  int64_t start_time_ms = 0, end_time_ms = 0;
};

// A launch's change to its image's block device mappings (EC2's RunInstances
// BlockDeviceMappings, Terraform's root_block_device / ebs_block_device /
// ephemeral_block_device): a device the image maps takes the fields given here over the
// image's; NoDevice removes it (never the root); another device is added.
struct LaunchMapping {
  std::string device_name;
  bool no_device = false;
  std::string virtual_name;                // "ephemeral0".. : an instance-store device
  std::optional<std::string> snapshot_id;  // for a device the image maps: its own, or absent
  std::optional<uint64_t> volume_size_gib;
  std::optional<std::string> volume_type;  // a new type drops the image's iops and throughput
  std::optional<uint32_t> iops;
  std::optional<uint32_t> throughput_mibps;
  std::optional<bool> delete_on_termination;
  std::optional<bool> encrypted;  // as BlockDeviceMapping::encrypted
  std::string kms_key_id;
};

struct RunSpec {
  std::string image_id;
  uint32_t count = 1;  // 1..kMaxRunCount
  std::string instance_type = "t3.micro";
  bool disable_api_termination = false;
  Tags tags;                                    // on each instance
  Tags volume_tags;                             // on each EBS volume launched
  std::vector<std::string> security_group_ids;  // none: the instance's exports are unguarded
  std::string key_name;  // a key pair the instance's clients must prove over TLS ("": none)
  std::vector<LaunchMapping> mappings;  // changes to the image's mappings (none: the image's)
  std::string user_data;                // base64, as InstanceInfo::user_data
  std::string cpu_credits;              // as InstanceInfo::cpu_credits
};

struct StateChange {
  std::string instance_id;
  std::string previous_state;
  std::string current_state;
};

// An instance type's storage (a small table of EC2's, docs/compute.md).
struct InstanceType {
  const char* name;
  uint32_t instance_store_count;  // NVMe instance-store volumes
  uint64_t instance_store_bytes;  // each
};
STRATA_EXPORT const std::vector<InstanceType>& InstanceTypes();

constexpr uint32_t kMaxRunCount = 1000;

// EC2's rules for tags: keys 1 to 128 bytes without the aws: prefix, values up to 256, valid
// UTF-8 without control characters. Errors: InvalidArgument naming the rule.
STRATA_EXPORT Status ValidateTags(const Tags& tags);
constexpr size_t kMaxTagsPerResource = 50;  // as EC2

// What a volume's or snapshot's key envelope (VolumeInfo::encryption) says, as EC2 shows it.
struct EncryptionInfo {
  bool encrypted = false;
  std::string kms_key_arn;  // KmsKeyId
  std::string data_key_id;  // DataEncryptionKeyId: the lineage's data key
};
STRATA_EXPORT EncryptionInfo DescribeEncryption(const std::string& envelope);

struct ComputeOptions {
  // False when the process is short-lived (the CLI running on an idle pool): launching anything
  // whose data would live only in instance store is then refused, since it would vanish when
  // the process exits.
  bool hosts_instance_store = true;
  // The KMS root key (LoadKmsRootKey, include/strata/kms.h): with it the pool's KMS is opened
  // and served (Compute::kms); "" = no KMS in this process (its calls are refused, saying why).
  std::string kms_root_key;
  // Another KMS (KmsPeer): a remote snapshot encrypted under one of its keys restores here, its
  // data key re-wrapped under this pool's default EBS key.
  KmsPeer kms_peer;
};

class STRATA_EXPORT Compute {
 public:
  // Loads images, instances and tags, and makes their holds on snapshots and volumes. Instances
  // whose root was in instance store are terminated: no process held the pool, so that store is
  // gone. Finishes any interrupted termination. Errors: Corruption, and the pool's.
  static Result<std::unique_ptr<Compute>> Open(Pool* pool, const ComputeOptions& options);
  virtual ~Compute() = default;
  virtual Pool* pool() = 0;
  // The pool's KMS, or nullptr when no root key was given (ComputeOptions::kms_root_key).
  virtual Kms* kms() = 0;

  // ---- Images ----
  // Errors: InvalidArgument (bad mapping, no root mapping, duplicate name), NotFound (snapshot).
  virtual Result<ImageInfo> RegisterImage(const ImageSpec& spec) = 0;
  virtual Result<ImageInfo> DescribeImage(const std::string& image_id) = 0;
  virtual std::vector<ImageInfo> ListImages() = 0;
  // Its snapshots become deletable again. Errors: NotFound, Busy (exported over NBD).
  virtual Status DeregisterImage(const std::string& image_id) = 0;
  // Whether this process deregistered the image lately (the last 1,024): EC2's DescribeImages
  // answers such an id with no images, not InvalidAMIID.NotFound, for a while, and tools that
  // deregister wait for exactly that. Not kept across restarts.
  virtual bool RecentlyDeregistered(const std::string& image_id) = 0;
  // One crash-consistent snapshot of all the instance's EBS volumes, registered as an image.
  // Errors: NotFound, NotSupported (instance-store root), InvalidArgument (name).
  virtual Result<ImageInfo> CreateImage(const std::string& instance_id, const std::string& name,
                                        const std::string& description) = 0;

  // ---- Instances ----
  // Launches spec.count instances: every EBS volume of every instance is created in one durable
  // commit (all or nothing) as a clone of its snapshot. Errors: NotFound (image), InvalidArgument
  // (type, count), NotSupported (instance-store image on a type without instance store, or in a
  // process that cannot host it).
  virtual Result<std::vector<InstanceInfo>> RunInstances(const RunSpec& spec) = 0;
  virtual Result<InstanceInfo> DescribeInstance(const std::string& instance_id) = 0;
  virtual std::vector<InstanceInfo> ListInstances() = 0;
  // Instance store is wiped, EBS kept. Errors: NotFound, NotSupported (instance-store root),
  // Busy (a device still connected over NBD), InvalidArgument (state).
  virtual Result<std::vector<StateChange>> StopInstances(const std::vector<std::string>& ids) = 0;
  virtual Result<std::vector<StateChange>> StartInstances(const std::vector<std::string>& ids) = 0;
  virtual Result<std::vector<StateChange>> RebootInstances(const std::vector<std::string>& ids) = 0;
  // Deletes the DeleteOnTermination volumes, detaches the others (they become available).
  // Errors: NotFound, InvalidArgument (termination protection: nothing is changed), Busy.
  virtual Result<std::vector<StateChange>> TerminateInstances(
      const std::vector<std::string>& ids) = 0;
  virtual Status SetTerminationProtection(const std::string& instance_id, bool on) = 0;
  // Whether terminating the instance deletes the EBS volume at `device_name` (EC2's
  // modify-instance-attribute --block-device-mappings ...DeleteOnTermination). Errors: NotFound
  // (the instance, or no EBS volume at that device).
  // EC2's user data of a stopped instance (base64). Errors: NotFound, InvalidArgument (not
  // base64, over 16 KiB), ReadOnly (IncorrectInstanceState: not stopped).
  virtual Status SetUserData(const std::string& instance_id, const std::string& user_data) = 0;
  // "standard" or "unlimited", for a burstable (t*) type. Errors: NotFound, InvalidArgument.
  virtual Status SetCpuCredits(const std::string& instance_id, const std::string& credits) = 0;
  virtual Status SetDeleteOnTermination(const std::string& instance_id,
                                        const std::string& device_name, bool on) = 0;
  // Errors: NotFound, InvalidArgument (device in use, volume attached, instance terminated).
  virtual Result<InstanceDevice> AttachVolume(const std::string& volume_id,
                                              const std::string& instance_id,
                                              const std::string& device_name) = 0;
  // Errors: NotFound, InvalidArgument (the root device of a running instance), Busy.
  virtual Result<std::pair<std::string, InstanceDevice>> DetachVolume(
      const std::string& volume_id) = 0;
  // The instance a volume is attached to and its device, if any.
  virtual std::optional<std::pair<std::string, InstanceDevice>> AttachmentOf(
      const std::string& volume_id) = 0;

  // ---- Encryption at rest (docs/security.md "Encryption at rest") ----
  // Creates a volume as EC2's CreateVolume does. Encrypted when `encrypted` is true, or when it
  // is nullopt and encryption by default is on: a new 64-byte data key from the KMS
  // (GenerateDataKeyWithoutPlaintext, context aws:ebs:id = the volume's id) under `kms_key_id`
  // (key id, key ARN, alias or alias ARN; "" = the default key), kept wrapped in the volume's
  // record. A clone of an encrypted snapshot shares its lineage's data key and is encrypted
  // whatever was asked; one under another key, or an encrypted one of a plaintext snapshot, is a
  // full copy through both keys (as EBS re-encrypts), not an instant clone.
  // Errors: InvalidArgument (KmsKeyId without Encrypted; a key that does not exist),
  // NotSupported (no KMS in this process), Busy (the key is disabled), the pool's.
  virtual Result<VolumeInfo> CreateVolume(const VolumeSpec& spec, std::optional<bool> encrypted,
                                          const std::string& kms_key_id) = 0;
  // Opens a volume or snapshot for I/O; an encrypted one through its data key, which the KMS
  // unwraps now (a disabled or deleted key fails here: "Client.InvalidKMSKey.InvalidState";
  // handles already open keep working). The plaintext key lives only in the handle.
  virtual Result<std::shared_ptr<Volume>> OpenVolume(const std::string& volume_id) = 0;
  virtual Result<std::shared_ptr<Volume>> OpenSnapshot(const std::string& snapshot_id) = 0;
  // What copying an encrypted snapshot to a remote takes (RemoteEncryption, strata/remote.h):
  // the key its block names are made with, derived from its lineage's data key, which the KMS
  // unwraps now. Empty for a plaintext snapshot. Errors: as OpenSnapshot.
  virtual Result<RemoteEncryption> RemoteEncryptionToPush(const std::string& snapshot_id) = 0;
  // What restoring a remote snapshot with `envelope` (RemoteSnapshotInfo::encryption) takes:
  // that key, and the envelope its volume gets here: the same one when this pool's KMS holds the
  // KMS key, else the data key decrypted by the peer KMS (ComputeOptions::kms_peer) and wrapped
  // again under this pool's default EBS key. Errors: NotSupported (neither KMS holds the key:
  // the message names it), Busy (the key is disabled), the peer's.
  virtual Result<RemoteEncryption> RemoteEncryptionToRestore(const std::string& snapshot_id,
                                                             const std::string& envelope) = 0;

  // EC2's account settings: encryption by default and the default KMS key (an ARN; the AWS
  // managed alias/aws/ebs key, made on first use, unless one was set). Durable.
  virtual bool EncryptionByDefault() = 0;
  virtual Status SetEncryptionByDefault(bool on) = 0;
  virtual Result<std::string> DefaultKmsKey() = 0;
  // `ref` "" resets to alias/aws/ebs. Returns the new default's ARN. Errors: the KMS's.
  virtual Result<std::string> SetDefaultKmsKey(const std::string& ref) = 0;

  // ---- Snapshots, as EC2 sees them ----
  // Pool::CreateSnapshots, refusing instance-store volumes and accepting INSTANCE/DEVICE names.
  virtual Result<std::vector<SnapshotInfo>> CreateSnapshots(const std::vector<std::string>& volumes,
                                                            const std::string& description) = 0;

  // ---- Security groups (docs/security.md) ----
  // Errors: InvalidArgument (name, description), AlreadyExists (name).
  virtual Result<SecurityGroupInfo> CreateSecurityGroup(const std::string& name,
                                                        const std::string& description,
                                                        const Tags& tags) = 0;
  virtual Result<SecurityGroupInfo> DescribeSecurityGroup(const std::string& group_id) = 0;
  virtual std::vector<SecurityGroupInfo> ListSecurityGroups() = 0;
  // Errors: NotFound, Busy (an instance that is not terminated uses it).
  virtual Status DeleteSecurityGroup(const std::string& group_id) = 0;
  // Adds `rules` to a group's inbound (egress false) or outbound rules, all or none, and returns
  // them with their ids. Errors: NotFound (the group), InvalidArgument (protocol, ports, CIDR,
  // description, more than 60 rules), AlreadyExists (a permission the group has, or one given
  // twice).
  virtual Result<std::vector<SecurityGroupRule>> AuthorizeRules(
      const std::string& group_id, bool egress, std::vector<SecurityGroupRule> rules) = 0;
  // Removes rules, each matched by its rule_id when it has one, else by SamePermission; all or
  // none. Returns the rules removed. Errors: NotFound (the group, or a rule it does not have).
  virtual Result<std::vector<SecurityGroupRule>> RevokeRules(
      const std::string& group_id, bool egress, const std::vector<SecurityGroupRule>& rules) = 0;
  // Replaces what each rule is (protocol, ports, range, description), found by its rule_id in
  // either direction; all or none. Errors: as AuthorizeRules, NotFound (no such rule id).
  virtual Status ModifyRules(const std::string& group_id,
                             const std::vector<SecurityGroupRule>& rules) = 0;
  // Sets the description of each rule matched as RevokeRules matches. Errors: as RevokeRules.
  virtual Status UpdateRuleDescriptions(const std::string& group_id, bool egress,
                                        const std::vector<SecurityGroupRule>& rules) = 0;
  // EC2's modify-instance-attribute --groups. Errors: NotFound, InvalidArgument (none given).
  virtual Status SetInstanceSecurityGroups(const std::string& instance_id,
                                           const std::vector<std::string>& group_ids) = 0;
  // Whether `peer` may connect to the export `name`: an instance's device, or a volume attached
  // to an instance, is guarded by the instance's groups (a TCP peer needs a rule admitting its
  // address and the port; the unix socket is this host, guarded by its file mode instead).
  // Anything else is admitted. An instance launched with a key pair also needs the peer to have
  // proved that key pair over TLS (any transport). Errors: PermissionDenied saying why.
  virtual Status AdmitExport(const std::string& name, const ExportPeer& peer) = 0;

  // ---- Key pairs (docs/security.md) ----
  // A new key pair and its KeyMaterial, which is shown once and never stored: for "x509" the
  // PEM of a client certificate signed by the pool's CA and its private key; for "psk" one
  // psktool line NAME:HEXKEY (the key is kept: the server needs it). Errors: InvalidArgument
  // (name, type), AlreadyExists.
  virtual Result<std::pair<KeyPairInfo, std::string>> CreateKeyPair(const std::string& name,
                                                                    const std::string& type) = 0;
  // A key pair from a client certificate (PEM) whose private key the caller keeps.
  // Errors: InvalidArgument (not one X.509 certificate), AlreadyExists.
  virtual Result<KeyPairInfo> ImportKeyPair(const std::string& name,
                                            const std::string& certificate_pem) = 0;
  virtual std::vector<KeyPairInfo> ListKeyPairs() = 0;
  // Instances launched with it keep requiring it (as EC2). Errors: NotFound.
  virtual Status DeleteKeyPair(const std::string& name) = 0;
  // For the TLS server: the key of PSK key pair `name`, or the name of the key pair whose
  // certificate has this SHA-256 fingerprint (hex).
  virtual std::optional<std::vector<uint8_t>> KeyPairPsk(const std::string& name) = 0;
  virtual std::optional<std::string> KeyPairOfCertificate(const std::string& fingerprint) = 0;
  // The pool's CA (PEM) that signs created x509 key pairs; made on first use.
  virtual Result<std::string> KeyPairCaCertificate() = 0;

  // ---- Volume modifications (EC2's ModifyVolume) ----
  // Changes a volume's size, type, IOPS or throughput (Pool::ModifyVolume; not its name, which
  // is its Name tag) and keeps the change as the volume's last modification. Errors: the pool's;
  // InvalidArgument for a name change or an empty modification.
  virtual Result<VolumeModificationInfo> ModifyVolume(const std::string& volume,
                                                      const VolumeModification& m) = 0;
  // The last modification of each volume named, or of every volume that has one if none is
  // named. Errors: NotFound (no such volume, or a volume never modified).
  virtual Result<std::vector<VolumeModificationInfo>> DescribeVolumeModifications(
      const std::vector<std::string>& volume_ids) = 0;

  // ---- Access keys (the EC2 API endpoint's SigV4 credentials; docs/security.md) ----
  // A new access key: its id ("AKIA" + 16 of A-Z2-7) and secret (40 characters), shown once.
  // The secret is kept in the pool (owner-only files): SigV4 verification needs it.
  virtual Result<std::pair<AccessKeyInfo, std::string>> CreateAccessKey() = 0;
  virtual std::vector<AccessKeyInfo> ListAccessKeys() = 0;
  virtual Status DeleteAccessKey(const std::string& access_key_id) = 0;  // Errors: NotFound
  // The secret of an access key, for verifying a request signed with it.
  virtual std::optional<std::string> AccessKeySecret(const std::string& access_key_id) = 0;

  // ---- Attributes (images, snapshots, volumes) ----
  // Errors: NotFound (no such image, snapshot or volume).
  virtual Result<ResourceAttributes> AttributesOf(const std::string& id) = 0;
  // Replaces them. Errors: NotFound, InvalidArgument (a user id that is not 12 digits, a group
  // other than "all", permissions on a volume, autoEnableIO on an image or snapshot, a
  // deprecation time not on an image or not YYYY-MM-DDTHH:MM:SS.mmmZ).
  virtual Status SetAttributes(const std::string& id, const ResourceAttributes& attributes) = 0;
  // EC2's modify-image-attribute --description. Errors: NotFound, InvalidArgument (text).
  virtual Status SetImageDescription(const std::string& image_id,
                                     const std::string& description) = 0;

  // ---- Tags (any resource id: vol-, snap-, ami-, i-) ----
  virtual Status CreateTags(const std::vector<std::string>& ids, const Tags& tags) = 0;
  // `tags` values: nullopt deletes the key whatever its value; a value deletes only that pair.
  virtual Status DeleteTags(const std::vector<std::string>& ids,
                            const std::map<std::string, std::optional<std::string>>& tags) = 0;
  virtual Tags TagsOf(const std::string& id) = 0;

  // ---- Exports ----
  // Opens what an NBD export name names: a volume id or unique Name, a snapshot or image id
  // (read-only), or INSTANCE-ID/DEVICE (e.g. i-0abc…/xvda) of a running instance.
  virtual Result<std::shared_ptr<Volume>> OpenExport(const std::string& name) = 0;
  // Every name OpenExport opens: ListPoolExports (strata/exports.h) without the Names OpenExport
  // routes elsewhere, then images and running instances' devices.
  virtual std::vector<ExportEntry> ListExports() = 0;

  // ---- Consistency ----
  // The EC2 layer's invariants against the pool (strata pool check adds them to the pool's):
  // every EBS device of an instance names a volume that exists, every image's snapshots exist.
  // One line per problem; empty when all hold.
  virtual std::vector<std::string> CheckReferences() = 0;
};

}  // namespace strata

#endif  // STRATA_COMPUTE_H_
