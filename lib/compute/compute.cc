// Compute: records, loading, images, tags and exports. Instances: compute_instances.cc.
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "strata/volume_types.h"

#include "compute/compute_impl.h"
#include "util/check.h"
#include "util/clock.h"
#include "util/json_text.h"
#include "util/text.h"

namespace strata {

using nlohmann::json;

// ---------------------------------------------------------------- instance types

const std::vector<InstanceType>& InstanceTypes() {
  constexpr uint64_t kGB = 1000ull * 1000 * 1000;  // EC2 quotes instance store in decimal GB
  static const std::vector<InstanceType> kTypes = {
      {"t3.nano", 0, 0},
      {"t3.micro", 0, 0},
      {"t3.small", 0, 0},
      {"t3.medium", 0, 0},
      {"t3.large", 0, 0},
      {"m5.large", 0, 0},
      {"m5.xlarge", 0, 0},
      {"c5.large", 0, 0},
      {"m5d.large", 1, 75 * kGB},
      {"m5d.xlarge", 1, 150 * kGB},
      {"m5d.2xlarge", 1, 300 * kGB},
      {"c5d.large", 1, 50 * kGB},
      {"c5d.xlarge", 1, 100 * kGB},
      {"c5d.2xlarge", 1, 200 * kGB},
      {"i3.large", 1, 475 * kGB},
      {"i3.xlarge", 1, 950 * kGB},
      {"i3.2xlarge", 1, 1900 * kGB},
      {"i3.4xlarge", 2, 1900 * kGB},
  };
  return kTypes;
}

const InstanceType* FindInstanceType(const std::string& name) {
  for (const InstanceType& t : InstanceTypes()) {
    if (name == t.name) {
      return &t;
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------- records

std::string DeviceShortName(const std::string& device_name) {
  return device_name.starts_with("/dev/") ? device_name.substr(5) : device_name;
}

Status ValidateTags(const Tags& tags) {
  for (const auto& [key, value] : tags) {
    if (key.empty() || key.size() > 128 || value.size() > 256) {
      return Status::InvalidArgument("tag keys are 1 to 128 characters, values at most 256");
    }
    if (key.starts_with("aws:")) {
      return Status::InvalidArgument("tag keys starting with 'aws:' are reserved");
    }
    STRATA_RETURN_IF_ERROR(ValidateText("tag key", key, 128));
    STRATA_RETURN_IF_ERROR(ValidateText("tag value", value, 256));
  }
  return Status::OK();
}

// ---------------------------------------------------------------- open

// A pool whose KMS holds keys opens read-only without its root key (docs/kms.md): a change could
// need a key this process cannot unwrap (encryption by default, a re-keyed launch), and the
// issue's contract is that such a copy of a pool changes nothing.
constexpr const char* kNoRootKeyReason =
    "its KMS holds keys and this process was not given the KMS root key (--kms-root-key FILE, "
    "the systemd credential strata-kms-root-key, or --kms-root-key-from-kms); encrypted volumes "
    "are refused and the others are served read-only";

Result<std::unique_ptr<Compute>> Compute::Open(Pool* pool, const ComputeOptions& options) {
  if (pool == nullptr) {
    return Status::InvalidArgument("Compute needs an open pool");
  }
  for (const char* table : {kImagesTable, kInstancesTable, kTagsTable, kSecurityTable,
                            kModificationsTable, kAttributesTable, kSettingsTable}) {
    STRATA_RETURN_IF_ERROR(pool->OpenRecordTable(table));
  }
  ComputeOptions kept = options;
  kept.kms_root_key.clear();  // the root key lives on only inside the KMS's derived keys
  auto compute = std::make_unique<ComputeImpl>(pool, kept);
  if (!options.kms_root_key.empty()) {
    auto kms = Kms::Open(pool, options.kms_root_key);
    if (!kms.ok()) {
      return kms.status().WithContext("KMS");
    }
    compute->set_kms(std::move(*kms));
  }
  STRATA_RETURN_IF_ERROR(compute->Load());
  if (options.kms_root_key.empty()) {
    STRATA_ASSIGN_OR_RETURN(bool has_kms, PoolHasKms(pool));
    if (has_kms) {  // after Load: its crash repairs change nothing a user made
      pool->SetReadOnly(kNoRootKeyReason);
    }
  }
  return std::unique_ptr<Compute>(std::move(compute));
}

ComputeImpl::ComputeImpl(Pool* pool, const ComputeOptions& options)
    : pool_(pool), options_(options), scratch_dir_(pool->Info().path + "/scratch") {}

Status ComputeImpl::Load() {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(auto image_records, pool_->ReadRecords(kImagesTable));
  for (const auto& [id, text] : image_records) {
    STRATA_ASSIGN_OR_RETURN(ImageInfo image, ImageCodec().Decode(id, text));
    for (const BlockDeviceMapping& m : image.mappings) {
      if (!m.snapshot_id.empty()) {
        (void)pool_->AddHold(m.snapshot_id, id, HoldReason(id));  // (a lost one: Check says)
      }
    }
    images_[id] = std::move(image);
  }
  STRATA_RETURN_IF_ERROR(LoadSecurityLocked());
  STRATA_RETURN_IF_ERROR(LoadSettingsLocked());
  STRATA_ASSIGN_OR_RETURN(auto tag_records, pool_->ReadRecords(kTagsTable));
  for (const auto& [id, text] : tag_records) {
    STRATA_ASSIGN_OR_RETURN(tags_[id], DecodeTags(id, text));
  }
  STRATA_ASSIGN_OR_RETURN(auto instance_records, pool_->ReadRecords(kInstancesTable));
  for (const auto& [id, text] : instance_records) {
    STRATA_ASSIGN_OR_RETURN(InstanceRecord rec, InstanceCodec().Decode(id, text));
    for (const InstanceDevice& d : rec.info.devices) {
      if (!d.instance_store()) {
        (void)pool_->AddHold(d.volume_id, id, HoldReason(id));  // (a lost one: Check says)
      }
    }
    instances_[id] = std::move(rec);
  }
  for (auto& [id, rec] : instances_) {
    STRATA_RETURN_IF_ERROR(FinishTerminationLocked(&rec));
    const bool up = rec.info.state == "running" || rec.info.state == "pending";
    if (up && rec.info.root_device_type == "instance-store") {
      // Its root lived in the memory of a process that is gone: as EC2 does when an
      // instance-store-backed instance's host fails, the instance is terminated.
      STRATA_RETURN_IF_ERROR(
          TerminateOneLocked(&rec,
                             "Server.InternalError: the instance-store root device was "
                             "lost when the process holding the pool exited"));
    }
  }
  // Tags of resources deleted behind our back (through the Pool API) are dropped. A volume's
  // Name tag kept here by an earlier release becomes its name in the pool (one truth).
  std::vector<RecordChange> stale;
  for (auto it = tags_.begin(); it != tags_.end();) {
    if (!ResourceExistsLocked(it->first).ok()) {
      stale.push_back({kTagsTable, it->first, std::nullopt});
      it = tags_.erase(it);
      continue;
    }
    if (it->first.starts_with("vol-") && it->second.count("Name") != 0) {
      VolumeModification rename;
      rename.name = it->second["Name"];
      STRATA_RETURN_IF_ERROR(pool_->ModifyVolume(it->first, rename).status());
      it->second.erase("Name");
      stale.push_back(TagRecordOf(it->first));
    }
    ++it;
  }
  STRATA_RETURN_IF_ERROR(LoadModificationsLocked(&stale));
  STRATA_RETURN_IF_ERROR(LoadAttributesLocked(&stale));
  AddDefaultGroupLocked(&stale);
  return stale.empty() ? Status::OK() : pool_->CommitRecords(std::move(stale));
}

RecordChange ComputeImpl::InstanceRecordOf(const InstanceRecord& rec) const {
  return {kInstancesTable, rec.info.instance_id, InstanceCodec().Encode(rec)};
}

RecordChange ComputeImpl::TagRecordOf(const std::string& id) const {
  auto it = tags_.find(id);
  if (it == tags_.end() || it->second.empty()) {
    return {kTagsTable, id, std::nullopt};
  }
  return {kTagsTable, id, EncodeTags(it->second)};
}

Status ComputeImpl::ResourceExistsLocked(const std::string& id) {
  if (id.starts_with("vol-")) {
    return pool_->DescribeVolume(id).status();
  }
  if (id.starts_with("snap-")) {
    return pool_->DescribeSnapshot(id).status();
  }
  if (id.starts_with("ami-")) {
    return images_.count(id) != 0 ? Status::OK()
                                  : Status::NotFound("image " + id + " does not exist");
  }
  if (id.starts_with("i-")) {
    return instances_.count(id) != 0 ? Status::OK()
                                     : Status::NotFound("instance " + id + " does not exist");
  }
  if (id.starts_with("sg-")) {
    return groups_.count(id) != 0 ? Status::OK()
                                  : Status::NotFound("security group " + id + " does not exist");
  }
  return Status::InvalidArgument("'" + id + "' is not a resource id (vol-, snap-, ami-, i-, sg-)");
}

// ---------------------------------------------------------------- images

Status ComputeImpl::ValidateImageLocked(const ImageSpec& spec) {
  if (spec.name.size() < 3 || spec.name.size() > 128) {
    return Status::InvalidArgument("image name must be 3 to 128 characters");
  }
  STRATA_RETURN_IF_ERROR(ValidateText("image name", spec.name, 128));
  STRATA_RETURN_IF_ERROR(ValidateText("image description", spec.description, 255));
  STRATA_RETURN_IF_ERROR(ValidateText("root device name", spec.root_device_name, 64));
  STRATA_RETURN_IF_ERROR(ValidateTags(spec.tags));
  for (const auto& [id, image] : images_) {
    if (image.name == spec.name) {
      return Status::AlreadyExists("InvalidAMIName.Duplicate: AMI name " + spec.name +
                                   " is already in use by AMI " + id);
    }
  }
  if (spec.root_device_type != "ebs" && spec.root_device_type != "instance-store") {
    return Status::InvalidArgument("root device type must be ebs or instance-store");
  }
  for (const BlockDeviceMapping& m : spec.mappings) {
    if (m.virtual_name.empty()) {
      STRATA_RETURN_IF_ERROR(CheckMappingEncryptionLocked(m).status());
    }
  }
  return ValidateMappingsLocked(spec.mappings, spec.root_device_name);
}

Status ComputeImpl::ValidateMappingsLocked(const std::vector<BlockDeviceMapping>& mappings,
                                           const std::string& root_device_name) {
  if (mappings.empty() || mappings.size() > 64) {
    return Status::InvalidArgument("an image needs 1 to 64 block device mappings");
  }
  std::set<std::string> devices;
  bool root_found = false;
  for (const BlockDeviceMapping& m : mappings) {
    STRATA_RETURN_IF_ERROR(ValidateText("device name", m.device_name, 64));
    if (!m.device_name.starts_with("/dev/") || m.device_name.size() < 6 ||
        m.device_name.find('/', 5) != std::string::npos) {
      return Status::InvalidArgument("device name '" + m.device_name + "' must look like /dev/sdb");
    }
    if (!devices.insert(DeviceShortName(m.device_name)).second) {
      return Status::InvalidArgument("device " + m.device_name + " is mapped twice");
    }
    const bool root = m.device_name == root_device_name;
    root_found = root_found || root;
    if (!m.virtual_name.empty()) {
      int n = -1;
      if (std::sscanf(m.virtual_name.c_str(), "ephemeral%d", &n) != 1 || n < 0 || n > 23 ||
          m.virtual_name != "ephemeral" + std::to_string(n)) {
        return Status::InvalidArgument("virtual name '" + m.virtual_name +
                                       "' must be ephemeral0..ephemeral23");
      }
      if (root || !m.snapshot_id.empty()) {
        return Status::InvalidArgument("instance-store mapping " + m.device_name +
                                       " cannot be the root or have a snapshot");
      }
      continue;
    }
    if (m.snapshot_id.empty() && m.volume_size_gib == 0) {
      return Status::InvalidArgument("EBS mapping " + m.device_name +
                                     " needs a SnapshotId or a VolumeSize");
    }
    if (root && m.snapshot_id.empty()) {
      return Status::InvalidArgument("the root device " + m.device_name + " needs a SnapshotId");
    }
    if (root && (m.volume_type == "st1" || m.volume_type == "sc1")) {
      return Status::InvalidArgument("InvalidParameterValue: " + m.volume_type +
                                     " volumes cannot be boot volumes");
    }
    uint64_t size_bytes = m.volume_size_gib << 30;
    if (!m.snapshot_id.empty()) {
      STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool_->DescribeSnapshot(m.snapshot_id));
      size_bytes = std::max(size_bytes, snap.volume_size_bytes);
      if (m.volume_size_gib != 0 && (m.volume_size_gib << 30) < snap.volume_size_bytes) {
        return Status::InvalidArgument(
            "VolumeSize " + std::to_string(m.volume_size_gib) + " GiB of " + m.device_name +
            " is smaller than snapshot " + m.snapshot_id + " (" +
            std::to_string((snap.volume_size_bytes + (1ull << 30) - 1) >> 30) + " GiB)");
      }
    }
    if (m.volume_size_gib > (kMaxVolumeBytes >> 30)) {
      return Status::InvalidArgument("VolumeSize of " + m.device_name + " is over 64 TiB");
    }
    // The same type rules as create-volume, now rather than at every launch.
    Status perf = ValidatePerf({m.volume_type, m.iops, m.throughput_mibps}, size_bytes).status();
    if (!perf.ok()) {
      return perf.WithContext("mapping " + m.device_name);
    }
  }
  if (!root_found) {
    return Status::InvalidArgument("no block device mapping for the root device " +
                                   root_device_name);
  }
  return Status::OK();
}

Result<ImageInfo> ComputeImpl::RegisterImageLocked(const ImageSpec& spec,
                                                   const std::string& source_instance) {
  STRATA_RETURN_IF_ERROR(ValidateImageLocked(spec));
  ImageInfo image;
  do {
    image.image_id = NewResourceId("ami");
  } while (images_.count(image.image_id) != 0);
  image.name = spec.name;
  image.description = spec.description;
  image.state = "available";
  image.root_device_name = spec.root_device_name;
  image.root_device_type = spec.root_device_type;
  image.creation_time_ms = WallClockMs();
  image.mappings = spec.mappings;
  image.source_instance_id = source_instance;
  if (!spec.tags.empty()) {
    tags_[image.image_id] = spec.tags;
  }
  Status s = pool_->CommitRecords(
      {{kImagesTable, image.image_id, ImageCodec().Encode(image)}, TagRecordOf(image.image_id)});
  if (!s.ok()) {
    tags_.erase(image.image_id);
    return s;
  }
  for (const BlockDeviceMapping& m : image.mappings) {
    if (!m.snapshot_id.empty()) {
      // (registered above with its snapshots found; one deleted meanwhile: Check says)
      (void)pool_->AddHold(m.snapshot_id, image.image_id, HoldReason(image.image_id));
    }
  }
  images_[image.image_id] = image;
  image.tags = spec.tags;
  return image;
}

Result<ImageInfo> ComputeImpl::RegisterImage(const ImageSpec& spec) {
  MutexLock lock(&mu_);
  return RegisterImageLocked(spec, "");
}

bool ComputeImpl::RecentlyDeregistered(const std::string& image_id) {
  MutexLock lock(&mu_);
  return std::find(deregistered_.begin(), deregistered_.end(), image_id) != deregistered_.end();
}

Result<ImageInfo> ComputeImpl::DescribeImage(const std::string& image_id) {
  MutexLock lock(&mu_);
  auto it = images_.find(image_id);
  if (it == images_.end()) {
    return Status::NotFound("image " + image_id + " does not exist");
  }
  ImageInfo image = it->second;
  image.tags = TagsOfLocked(image_id);
  return image;
}

std::vector<ImageInfo> ComputeImpl::ListImages() {
  MutexLock lock(&mu_);
  std::vector<ImageInfo> out;
  for (const auto& [id, image] : images_) {
    out.push_back(image);
    out.back().tags = TagsOfLocked(id);
  }
  std::sort(out.begin(), out.end(), [](const ImageInfo& a, const ImageInfo& b) {
    return a.creation_time_ms < b.creation_time_ms;
  });
  return out;
}

Status ComputeImpl::DeregisterImage(const std::string& image_id) {
  MutexLock lock(&mu_);
  auto it = images_.find(image_id);
  if (it == images_.end()) {
    return Status::NotFound("image " + image_id + " does not exist");
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({{kImagesTable, image_id, std::nullopt},
                                               {kTagsTable, image_id, std::nullopt},
                                               {kAttributesTable, image_id, std::nullopt}}));
  attributes_.erase(image_id);
  deregistered_.push_back(image_id);
  if (deregistered_.size() > 1024) {
    deregistered_.pop_front();
  }
  for (const BlockDeviceMapping& m : it->second.mappings) {
    if (!m.snapshot_id.empty()) {
      pool_->ReleaseHold(m.snapshot_id, image_id);
    }
  }
  images_.erase(it);
  tags_.erase(image_id);
  return Status::OK();
}

// ---------------------------------------------------------------- snapshots

Result<std::vector<SnapshotInfo>> ComputeImpl::CreateSnapshots(
    const std::vector<std::string>& volumes, const std::string& description) {
  std::vector<std::string> ids;
  {
    MutexLock lock(&mu_);
    for (const std::string& name : volumes) {
      size_t slash = name.find('/');
      if (slash == std::string::npos) {
        ids.push_back(name);
        continue;
      }
      STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(name.substr(0, slash)));
      const std::string device = name.substr(slash + 1);
      auto d = std::find_if(
          rec->info.devices.begin(), rec->info.devices.end(),
          [&](const InstanceDevice& x) { return DeviceShortName(x.device_name) == device; });
      if (d == rec->info.devices.end()) {
        return Status::NotFound("instance " + rec->info.instance_id + " has no device " + device);
      }
      if (d->instance_store()) {
        return Status::NotSupported("instance store volume " + name +
                                    " does not support snapshots: only EBS volumes do");
      }
      ids.push_back(d->volume_id);
    }
  }
  return pool_->CreateSnapshots(ids, description);
}

// ---------------------------------------------------------------- tags

Status ComputeImpl::CreateTags(const std::vector<std::string>& ids, const Tags& tags) {
  MutexLock lock(&mu_);
  if (ids.empty() || tags.empty()) {
    return Status::InvalidArgument("create-tags needs --resources and --tags");
  }
  STRATA_RETURN_IF_ERROR(ValidateTags(tags));
  std::map<std::string, Tags> next;
  for (const std::string& id : ids) {
    STRATA_RETURN_IF_ERROR(ResourceExistsLocked(id));
    Tags merged = TagsOfLocked(id);
    for (const auto& [key, value] : tags) {
      merged[key] = value;
    }
    if (merged.size() > kMaxTagsPerResource) {
      return Status::InvalidArgument(id + " would have more than 50 tags");
    }
    next[id] = std::move(merged);
  }
  // A volume's Name tag is its name in the pool, by which it is found and exported: one truth,
  // kept there (renamed first: a crash between the two leaves a retry to finish the rest).
  for (auto& [id, t] : next) {
    if (id.starts_with("vol-") && tags.count("Name") != 0) {
      VolumeModification rename;
      rename.name = tags.at("Name");
      STRATA_RETURN_IF_ERROR(pool_->ModifyVolume(id, rename).status());
    }
    if (id.starts_with("vol-")) {
      t.erase("Name");
    }
  }
  std::vector<RecordChange> records;
  for (const auto& [id, t] : next) {
    records.push_back({kTagsTable, id, t.empty() ? std::nullopt : std::optional(EncodeTags(t))});
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(std::move(records)));
  for (auto& [id, t] : next) {
    tags_[id] = std::move(t);
  }
  return Status::OK();
}

Status ComputeImpl::DeleteTags(const std::vector<std::string>& ids,
                               const std::map<std::string, std::optional<std::string>>& tags) {
  MutexLock lock(&mu_);
  std::map<std::string, Tags> next;
  for (const std::string& id : ids) {
    STRATA_RETURN_IF_ERROR(ResourceExistsLocked(id));
    Tags t = TagsOfLocked(id);
    if (tags.empty()) {
      t.clear();  // as EC2: no --tags deletes every tag
    }
    for (const auto& [key, value] : tags) {
      auto it = t.find(key);
      if (it != t.end() && (!value || *value == it->second)) {
        t.erase(it);
      }
    }
    if (id.starts_with("vol-") && TagsOfLocked(id).count("Name") != 0 && t.count("Name") == 0) {
      VolumeModification unname;  // the Name tag is the volume's name (CreateTags)
      unname.name = "";
      STRATA_RETURN_IF_ERROR(pool_->ModifyVolume(id, unname).status());
    }
    if (id.starts_with("vol-")) {
      t.erase("Name");  // (kept as the volume's name, above)
    }
    next[id] = std::move(t);
  }
  std::vector<RecordChange> records;
  for (const auto& [id, t] : next) {
    records.push_back({kTagsTable, id, t.empty() ? std::nullopt : std::optional(EncodeTags(t))});
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(std::move(records)));
  for (auto& [id, t] : next) {
    if (t.empty()) {
      tags_.erase(id);
    } else {
      tags_[id] = std::move(t);
    }
  }
  return Status::OK();
}

Tags ComputeImpl::TagsOf(const std::string& id) {
  MutexLock lock(&mu_);
  return TagsOfLocked(id);
}

Tags ComputeImpl::TagsOfLocked(const std::string& id) const {
  auto it = tags_.find(id);
  Tags tags = it == tags_.end() ? Tags{} : it->second;
  if (id.starts_with("vol-")) {  // its Name tag is its name in the pool (CreateTags)
    auto volume = pool_->DescribeVolume(id);
    if (volume.ok() && !volume->name.empty()) {
      tags["Name"] = volume->name;
    }
  }
  return tags;
}

// ---------------------------------------------------------------- exports

Result<std::shared_ptr<Volume>> ComputeImpl::OpenExport(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    MutexLock lock(&mu_);
    return OpenInstanceDeviceLocked(name);
  }
  if (name.starts_with("ami-")) {
    MutexLock lock(&mu_);
    auto it = images_.find(name);
    if (it == images_.end()) {
      return Status::NotFound("image " + name + " does not exist");
    }
    for (const BlockDeviceMapping& m : it->second.mappings) {
      if (m.device_name == it->second.root_device_name) {
        return OpenSnapshot(m.snapshot_id);  // the root device's content, read-only
      }
    }
    return Status::Corruption("image " + name + " has no root mapping");
  }
  // Volumes and snapshots: the engine's names, opened here with their keys.
  STRATA_ASSIGN_OR_RETURN(std::string id, ResolvePoolExport(pool_, name));
  return id.starts_with("snap-") ? OpenSnapshot(id) : OpenVolume(id);
}

Result<std::shared_ptr<Volume>> ComputeImpl::OpenInstanceDeviceLocked(const std::string& name) {
  const size_t slash = name.find('/');
  const std::string instance_id = name.substr(0, slash);
  const std::string device = name.substr(slash + 1);
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  if (rec->info.state != "running" && rec->info.state != "pending") {
    return Status::NotFound("instance " + instance_id + " is " + rec->info.state +
                            ": its devices are not served");
  }
  for (const InstanceDevice& d : rec->info.devices) {
    if (DeviceShortName(d.device_name) != device) {
      continue;
    }
    if (!d.instance_store()) {
      return OpenVolume(d.volume_id);
    }
    const std::string key = instance_id + "/" + device;
    auto it = scratch_.find(key);
    if (it == scratch_.end()) {  // empty until first used: creating it costs nothing before
      STRATA_ASSIGN_OR_RETURN(auto volume, ScratchVolume::Create(scratch_dir_, key, d.size_bytes));
      it = scratch_.emplace(key, std::move(volume)).first;
    }
    return std::shared_ptr<Volume>(it->second);
  }
  return Status::NotFound("instance " + instance_id + " has no device " + device);
}

std::vector<ExportEntry> ComputeImpl::ListExports() {
  std::vector<ExportEntry> out = ListPoolExports(pool_);
  // A volume Name shaped like an image id or a device path opens those instead (OpenExport).
  std::erase_if(out, [](const ExportEntry& e) {
    return e.name.starts_with("ami-") || e.name.find('/') != std::string::npos;
  });
  MutexLock lock(&mu_);
  for (const auto& [id, image] : images_) {
    out.push_back({id, "image " + image.name + " (root device, read-only)"});
  }
  for (const auto& [id, rec] : instances_) {
    if (rec.info.state != "running") {
      continue;
    }
    for (const InstanceDevice& d : rec.info.devices) {
      out.push_back({id + "/" + DeviceShortName(d.device_name),
                     "device " + d.device_name + " of " + id + ": " +
                         (d.instance_store() ? "instance store" : d.volume_id)});
    }
  }
  return out;
}

// ---------------------------------------------------------------- instance-store seeding

Result<std::shared_ptr<ScratchVolume>> ComputeImpl::SeedScratch(const std::string& id,
                                                                uint64_t size_bytes,
                                                                const std::string& snapshot_id) {
  STRATA_ASSIGN_OR_RETURN(auto scratch, ScratchVolume::Create(scratch_dir_, id, size_bytes));
  STRATA_ASSIGN_OR_RETURN(auto snap, OpenSnapshot(snapshot_id));  // an encrypted one: its key
  STRATA_RETURN_IF_ERROR(CopyVolumeData(snap.get(), scratch.get()));
  return scratch;
}

Status CopyVolumeData(Volume* from, Volume* to) {
  constexpr uint64_t kCopyBytes = 4u << 20;
  std::vector<std::byte> buf(kCopyBytes);
  uint64_t pos = 0;
  const uint64_t end = from->size_bytes();
  STRATA_CHECK(to->size_bytes() >= end);
  while (pos < end) {  // only the data extents are copied; holes stay holes
    STRATA_ASSIGN_OR_RETURN(auto extents, from->BlockStatus(pos, end - pos));
    STRATA_CHECK(!extents.empty());
    for (const Extent& e : extents) {
      for (uint64_t at = e.offset_bytes; !e.hole && at < e.offset_bytes + e.length_bytes;
           at += kCopyBytes) {
        const uint64_t n = std::min(kCopyBytes, e.offset_bytes + e.length_bytes - at);
        std::span<std::byte> piece(buf.data(), n);
        STRATA_RETURN_IF_ERROR(from->Read(at, piece));
        STRATA_RETURN_IF_ERROR(to->Write(at, piece, false));
      }
      pos = e.offset_bytes + e.length_bytes;
    }
  }
  return to->Flush();
}

std::vector<std::string> ComputeImpl::CheckReferences() {
  MutexLock lock(&mu_);
  std::vector<std::string> problems;
  for (const auto& [id, rec] : instances_) {
    for (const InstanceDevice& d : rec.info.devices) {
      if (!d.instance_store() && !pool_->DescribeVolume(d.volume_id).ok()) {
        problems.push_back("instance " + id + " device " + d.device_name +
                           " is attached to volume " + d.volume_id + ", which does not exist");
      }
    }
  }
  for (const auto& [id, image] : images_) {
    for (const BlockDeviceMapping& m : image.mappings) {
      if (!m.snapshot_id.empty() && !pool_->DescribeSnapshot(m.snapshot_id).ok()) {
        problems.push_back("image " + id + " maps " + m.device_name + " to snapshot " +
                           m.snapshot_id + ", which does not exist");
      }
    }
  }
  return problems;
}

}  // namespace strata
