// ComputeImpl: images, instances and tags over a Pool's layer hook (strata/pool.h).
// docs/compute.md explains the records, the holds and the crash protocol of each multi-step
// operation.
#ifndef STRATA_COMPUTE_COMPUTE_IMPL_H_
#define STRATA_COMPUTE_COMPUTE_IMPL_H_

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/compute.h"
#include "strata/pool.h"

#include "compute/compute_records.h"
#include "compute/scratch_volume.h"
#include "kms/kms_crypto.h"
#include "util/clock.h"
#include "util/ids.h"
#include "util/mutex.h"

namespace strata {

// EC2's error for a KMS key it cannot use at an attach or a launch (an instance's StateReason):
// Busy, with `why` after EC2's text.
inline Status InvalidKmsKeyState(const std::string& why) {
  return Status::Busy(
      "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state: " + why);
}

// An instance's durable record: its info plus the EBS volumes a termination still has to delete
// (a crash between the terminate commit and the deletes finishes them at the next open).
// The EC2 layer's record tables in the pool (docs/on-disk-format.md).
constexpr const char* kImagesTable = "images";
constexpr const char* kInstancesTable = "instances";
constexpr const char* kTagsTable = "tags";
constexpr const char* kSecurityTable = "security";            // security groups and key pairs
constexpr const char* kModificationsTable = "modifications";  // each volume's last one
constexpr const char* kAttributesTable = "attributes";        // ResourceAttributes, by id
constexpr const char* kSettingsTable = "settings";            // account settings (encryption)

// What deleting a volume or snapshot held by `holder` (an image or instance id) says.
inline std::string HoldReason(const std::string& holder) {
  return holder.starts_with("ami-")
             ? "is in use by " + holder + ": deregister the image first"
             : "is attached to " + holder + ": detach it or terminate the instance first";
}

class ComputeImpl final : public Compute {
 public:
  ComputeImpl(Pool* pool, const ComputeOptions& options);
  Status Load();

  Pool* pool() override { return pool_; }
  Kms* kms() override { return kms_.get(); }
  void set_kms(std::unique_ptr<Kms> kms) { kms_ = std::move(kms); }

  Result<ImageInfo> RegisterImage(const ImageSpec& spec) override;
  Result<ImageInfo> DescribeImage(const std::string& image_id) override;
  std::vector<ImageInfo> ListImages() override;
  Status DeregisterImage(const std::string& image_id) override;
  bool RecentlyDeregistered(const std::string& image_id) override;
  Result<ImageInfo> CreateImage(const std::string& instance_id, const std::string& name,
                                const std::string& description) override;

  Result<std::vector<InstanceInfo>> RunInstances(const RunSpec& spec) override;
  Result<InstanceInfo> DescribeInstance(const std::string& instance_id) override;
  std::vector<InstanceInfo> ListInstances() override;
  Result<std::vector<StateChange>> StopInstances(const std::vector<std::string>& ids) override;
  Result<std::vector<StateChange>> StartInstances(const std::vector<std::string>& ids) override;
  Result<std::vector<StateChange>> RebootInstances(const std::vector<std::string>& ids) override;
  Result<std::vector<StateChange>> TerminateInstances(const std::vector<std::string>& ids) override;
  Status SetTerminationProtection(const std::string& instance_id, bool on) override;
  Status SetUserData(const std::string& instance_id, const std::string& user_data) override;
  Status SetCpuCredits(const std::string& instance_id, const std::string& credits) override;
  Status SetDeleteOnTermination(const std::string& instance_id, const std::string& device_name,
                                bool on) override;
  Result<InstanceDevice> AttachVolume(const std::string& volume_id, const std::string& instance_id,
                                      const std::string& device_name) override;
  Result<std::pair<std::string, InstanceDevice>> DetachVolume(
      const std::string& volume_id) override;
  std::optional<std::pair<std::string, InstanceDevice>> AttachmentOf(
      const std::string& volume_id) override;

  Result<std::vector<SnapshotInfo>> CreateSnapshots(const std::vector<std::string>& volumes,
                                                    const std::string& description) override;

  Status CreateTags(const std::vector<std::string>& ids, const Tags& tags) override;
  Status DeleteTags(const std::vector<std::string>& ids,
                    const std::map<std::string, std::optional<std::string>>& tags) override;
  Tags TagsOf(const std::string& id) override;
  Result<ResourceAttributes> AttributesOf(const std::string& id) override;
  Status SetAttributes(const std::string& id, const ResourceAttributes& attributes) override;
  Status SetImageDescription(const std::string& image_id, const std::string& description) override;

  Result<VolumeInfo> CreateVolume(const VolumeSpec& spec, std::optional<bool> encrypted,
                                  const std::string& kms_key_id) override EXCLUDES(mu_);
  Result<std::shared_ptr<Volume>> OpenVolume(const std::string& volume_id) override;
  Result<std::shared_ptr<Volume>> OpenSnapshot(const std::string& snapshot_id) override;
  bool EncryptionByDefault() override EXCLUDES(mu_);
  Status SetEncryptionByDefault(bool on) override EXCLUDES(mu_);
  Result<std::string> DefaultKmsKey() override EXCLUDES(mu_);
  Result<std::string> SetDefaultKmsKey(const std::string& ref) override EXCLUDES(mu_);

  Result<std::shared_ptr<Volume>> OpenExport(const std::string& name) override;
  std::vector<ExportEntry> ListExports() override;
  std::vector<std::string> CheckReferences() override EXCLUDES(mu_);

  Result<SecurityGroupInfo> CreateSecurityGroup(const std::string& name,
                                                const std::string& description,
                                                const Tags& tags) override;
  Result<SecurityGroupInfo> DescribeSecurityGroup(const std::string& group_id) override;
  std::vector<SecurityGroupInfo> ListSecurityGroups() override;
  Status DeleteSecurityGroup(const std::string& group_id) override;
  Result<std::vector<SecurityGroupRule>> AuthorizeRules(
      const std::string& group_id, bool egress, std::vector<SecurityGroupRule> rules) override;
  Result<std::vector<SecurityGroupRule>> RevokeRules(
      const std::string& group_id, bool egress,
      const std::vector<SecurityGroupRule>& rules) override;
  Status ModifyRules(const std::string& group_id,
                     const std::vector<SecurityGroupRule>& rules) override;
  Status UpdateRuleDescriptions(const std::string& group_id, bool egress,
                                const std::vector<SecurityGroupRule>& rules) override;
  Status SetInstanceSecurityGroups(const std::string& instance_id,
                                   const std::vector<std::string>& group_ids) override;
  Status AdmitExport(const std::string& name, const ExportPeer& peer) override;

  Result<std::pair<KeyPairInfo, std::string>> CreateKeyPair(const std::string& name,
                                                            const std::string& type) override;
  Result<KeyPairInfo> ImportKeyPair(const std::string& name,
                                    const std::string& certificate_pem) override;
  std::vector<KeyPairInfo> ListKeyPairs() override;
  Status DeleteKeyPair(const std::string& name) override;
  std::optional<std::vector<uint8_t>> KeyPairPsk(const std::string& name) override;
  std::optional<std::string> KeyPairOfCertificate(const std::string& fingerprint) override;
  Result<VolumeModificationInfo> ModifyVolume(const std::string& volume,
                                              const VolumeModification& m) override;
  Result<std::vector<VolumeModificationInfo>> DescribeVolumeModifications(
      const std::vector<std::string>& volume_ids) override;
  Result<std::pair<AccessKeyInfo, std::string>> CreateAccessKey() override;
  std::vector<AccessKeyInfo> ListAccessKeys() override;
  Status DeleteAccessKey(const std::string& access_key_id) override;
  std::optional<std::string> AccessKeySecret(const std::string& access_key_id) override;
  Result<std::string> KeyPairCaCertificate() override;

 private:
  // ---- key pairs (compute_keypairs.cc); all REQUIRE mu_ ----
  Status LoadKeyPairLocked(const std::string& id, const std::string& text) REQUIRES(mu_);
  // The pool's CA certificate and key (PEM), made on first use in POOL/keypair-ca (0700).
  Result<std::pair<std::string, std::string>> CaLocked() REQUIRES(mu_);
  Result<std::pair<std::string, std::string>> IssueLocked(const std::string& name) REQUIRES(mu_);
  Status StoreKeyPairLocked(KeyPairInfo info, const std::string& material) REQUIRES(mu_);
  Status CheckNewKeyNameLocked(const std::string& name) REQUIRES(mu_);

  // ---- security groups (compute_security.cc); all REQUIRE mu_ ----
  Status LoadSecurityLocked() REQUIRES(mu_);
  RecordChange GroupRecordOf(const SecurityGroupInfo& g) const;
  Result<SecurityGroupInfo*> FindGroupLocked(const std::string& group_id) REQUIRES(mu_);
  // The default VPC's "default" group, as every AWS account has; made once, at the first open.
  void AddDefaultGroupLocked(std::vector<RecordChange>* records) REQUIRES(mu_);
  // InvalidArgument past the per-instance bound, NotFound for a group that does not exist.
  Status CheckGroupsLocked(const std::vector<std::string>& group_ids) REQUIRES(mu_);

  // ---- encryption (compute_encryption.cc) ----
  Status LoadSettingsLocked() REQUIRES(mu_);
  Status SaveSettingsLocked(bool by_default, const std::string& default_key) REQUIRES(mu_);
  // The KMS key `ref` names ("" = the default key), which must be enabled.
  Result<KmsKeyInfo> UsableKmsKey(const std::string& ref) EXCLUDES(mu_);
  // `wanted` ("" or alias/aws/ebs: the AWS managed key, made on first use) if it exists and is
  // enabled. Never takes mu_.
  Result<KmsKeyInfo> UsableKeyNamed(const std::string& wanted);
  // A new data key for volume `volume_id` under `key`, as the envelope its record keeps.
  Result<std::string> NewEnvelope(const std::string& volume_id, const KmsKeyInfo& key);
  // The lineage's data key of `envelope`, unwrapped by this pool's KMS, or by the peer KMS when
  // this one does not hold the KMS key. `*here` says which. Never takes mu_.
  Result<kms::Secret> UnwrapDataKey(const std::string& id, const std::string& envelope, bool* here);
  Result<RemoteEncryption> RemoteEncryptionToPush(const std::string& snapshot_id) override;
  Result<RemoteEncryption> RemoteEncryptionToRestore(const std::string& snapshot_id,
                                                     const std::string& envelope) override;
  // The cipher of an envelope: its data key, unwrapped by the KMS. `id` names the volume or
  // snapshot in errors. Never takes mu_ (exports open under it).
  Result<std::shared_ptr<BlockCipher>> CipherFor(const std::string& id,
                                                 const std::string& envelope);
  // A new encrypted volume filled from `snapshot_id` through both keys: a clone under another
  // key, or an encrypted one of a plaintext snapshot (EBS re-encrypts the same way).
  Result<VolumeInfo> CopyToNewKey(VolumeSpec spec, const KmsKeyInfo& key) EXCLUDES(mu_);

  // ---- volume modifications (compute_volumes.cc) ----
  Status LoadModificationsLocked(std::vector<RecordChange>* stale) REQUIRES(mu_);

  // ---- all REQUIRE mu_ ----
  Result<InstanceRecord*> FindInstanceLocked(const std::string& instance_id) REQUIRES(mu_);
  std::optional<std::pair<std::string, InstanceDevice>> AttachmentOfLocked(
      const std::string& volume_id) const REQUIRES(mu_);
  Status ValidateImageLocked(const ImageSpec& spec) REQUIRES(mu_);
  // RunInstances in parts: what a launch of `spec` checks and resolves once; one instance's
  // record and devices (its EBS volumes appended to `volumes`, in device order); the one commit
  // of every volume, record and tag, and the holds after it.
  // A snapshot a launch needs under another key than its own (or encrypted when it is not):
  // copied once through both keys into a staged snapshot, which the launch then clones.
  struct Rekey {
    std::string snapshot_id;
    std::string key_arn;
    bool operator<(const Rekey& o) const {
      return snapshot_id != o.snapshot_id ? snapshot_id < o.snapshot_id : key_arn < o.key_arn;
    }
  };
  using Staged = std::map<Rekey, std::string>;  // -> the staged snapshot's id
  struct LaunchPlan {
    const ImageInfo* image = nullptr;
    const InstanceType* type = nullptr;
    std::vector<BlockDeviceMapping> mappings;  // the image's with the launch's changes
    // Per mapping: the KMS key (ARN) a new empty volume is encrypted under ("" = plaintext).
    std::vector<std::string> new_volume_keys;
    std::set<Rekey> rekeys;  // snapshots to stage before the launch can be committed
    bool store_root = false;
    int64_t now_ms = 0;
  };
  Result<LaunchPlan> PlanLaunchLocked(const RunSpec& spec, const Staged& staged) REQUIRES(mu_);
  // Resolves each EBS mapping's encryption: a clone of its snapshot as it is, a staged re-keyed
  // copy (mappings to snapshots in `staged` are pointed at their copy), or a new encrypted empty
  // volume. Refuses what EC2 refuses, and a key that is not usable now.
  Status PlanLaunchEncryptionLocked(const Staged& staged, LaunchPlan* plan) REQUIRES(mu_);
  // The staged snapshots of `rekeys`, made off the mutex (each a full copy); on failure none.
  Status StageRekeyed(const std::set<Rekey>& rekeys, Staged* staged) EXCLUDES(mu_);
  Result<std::vector<InstanceInfo>> LaunchLocked(const RunSpec& spec, LaunchPlan plan)
      REQUIRES(mu_);
  // The key a launch encrypts under: `ref`, else the default key. Errors as UsableKmsKey.
  Result<KmsKeyInfo> LaunchKeyLocked(const std::string& ref) REQUIRES(mu_);
  // What a mapping's Encrypted/KmsKeyId ask, against its snapshot: the snapshot's envelope, or an
  // error when the mapping asks what a clone of it cannot be.
  Result<std::string> CheckMappingEncryptionLocked(const BlockDeviceMapping& m) REQUIRES(mu_);
  Result<InstanceRecord> PlanInstanceLocked(const RunSpec& spec, const LaunchPlan& plan,
                                            std::vector<VolumeSpec>* volumes) REQUIRES(mu_);
  Status CommitLaunchLocked(const RunSpec& spec, const std::vector<VolumeSpec>& specs,
                            const std::vector<std::pair<size_t, size_t>>& slots,
                            std::vector<InstanceRecord>* recs) REQUIRES(mu_);
  // An image's or a launch's mappings: device names, instance store, EBS sizes and types.
  Status ValidateMappingsLocked(const std::vector<BlockDeviceMapping>& mappings,
                                const std::string& root_device_name) REQUIRES(mu_);
  Result<ImageInfo> RegisterImageLocked(const ImageSpec& spec, const std::string& source_instance)
      REQUIRES(mu_);
  // The record and tag changes for `rec` (written with every state change).
  RecordChange InstanceRecordOf(const InstanceRecord& rec) const;
  RecordChange TagRecordOf(const std::string& id) const REQUIRES(mu_);
  // Busy if any device of the instance is open (an NBD client still attached).
  Status CheckDevicesIdleLocked(const InstanceRecord& rec) REQUIRES(mu_);
  void DropScratchLocked(const InstanceRecord& rec) REQUIRES(mu_);
  // Terminates: wipes instance store, queues the DeleteOnTermination volumes, detaches the rest
  // (one commit), then deletes the queued volumes.
  Status TerminateOneLocked(InstanceRecord* rec, const std::string& reason) REQUIRES(mu_);
  // Deletes the volumes a termination queued, then rewrites the record without them.
  Status FinishTerminationLocked(InstanceRecord* rec) REQUIRES(mu_);
  Status ResourceExistsLocked(const std::string& id) REQUIRES(mu_);
  Tags TagsOfLocked(const std::string& id) const REQUIRES(mu_);
  // Loads the attributes table; those of resources gone are dropped (records in `stale`).
  Status LoadAttributesLocked(std::vector<RecordChange>* stale) REQUIRES(mu_);
  Result<std::shared_ptr<Volume>> OpenInstanceDeviceLocked(const std::string& name) REQUIRES(mu_);
  // Instance-store root: a scratch volume filled with the snapshot's data.
  Result<std::shared_ptr<ScratchVolume>> SeedScratch(const std::string& id, uint64_t size_bytes,
                                                     const std::string& snapshot_id);

  Pool* const pool_;
  const ComputeOptions options_;
  const std::string scratch_dir_;
  std::unique_ptr<Kms> kms_;  // set by Open, before any other thread; thread-safe itself
  Mutex mu_;                  // one control operation at a time; guards everything below
  std::map<std::string, ImageInfo> images_ GUARDED_BY(mu_);
  std::map<std::string, InstanceRecord> instances_ GUARDED_BY(mu_);
  std::map<std::string, Tags> tags_ GUARDED_BY(mu_);
  std::deque<std::string> deregistered_ GUARDED_BY(mu_);  // newest last; at most 1,024
  std::map<std::string, ResourceAttributes> attributes_ GUARDED_BY(mu_);  // none: the defaults
  // By id (their tags are in tags_).
  std::map<std::string, SecurityGroupInfo> groups_ GUARDED_BY(mu_);
  std::map<std::string, StoredKeyPair> key_pairs_ GUARDED_BY(mu_);               // by name
  std::map<std::string, StoredAccessKey> access_keys_ GUARDED_BY(mu_);           // by id
  std::map<std::string, VolumeModificationInfo> modifications_ GUARDED_BY(mu_);  // by volume
  // Instance-store volumes of running instances, by "i-…/device": created at launch (a seeded
  // root) or on first open, dropped (wiped) at stop and terminate.
  std::map<std::string, std::shared_ptr<ScratchVolume>> scratch_ GUARDED_BY(mu_);
  bool encryption_by_default_ GUARDED_BY(mu_) = false;
  std::string default_kms_key_ GUARDED_BY(mu_);  // a key ARN; "": alias/aws/ebs
};

// Copies every data extent of `from` into `to` (holes stay holes). REQUIRES: `to` no smaller.
Status CopyVolumeData(Volume* from, Volume* to);

// "/dev/xvda" -> "xvda": the device part of an INSTANCE-ID/DEVICE export name.
std::string DeviceShortName(const std::string& device_name);
const InstanceType* FindInstanceType(const std::string& name);

}  // namespace strata

#endif  // STRATA_COMPUTE_COMPUTE_IMPL_H_
