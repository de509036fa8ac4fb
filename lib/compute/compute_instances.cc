// Compute: instances (launch, lifecycle, attachments) and create-image.
#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "compute/compute_impl.h"
#include "util/check.h"
#include "util/clock.h"
#include "util/json_text.h"

namespace strata {

using nlohmann::json;

namespace {

bool Up(const InstanceInfo& info) { return info.state == "running" || info.state == "pending"; }

Status IncorrectState(const InstanceInfo& info, const char* action) {
  return Status::InvalidArgument("IncorrectInstanceState: instance " + info.instance_id + " is " +
                                 info.state + " and cannot be " + action);
}

}  // namespace

Result<InstanceRecord*> ComputeImpl::FindInstanceLocked(const std::string& instance_id) {
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) {
    return Status::NotFound("instance " + instance_id + " does not exist");
  }
  return &it->second;
}

// ---------------------------------------------------------------- launch

namespace {

// Applies one launch mapping to an EBS mapping of the image (EC2: the launch's fields win; the
// snapshot stays the image's).
Status OverrideEbs(const LaunchMapping& l, BlockDeviceMapping* m) {
  if (!m->virtual_name.empty() || !l.virtual_name.empty()) {
    return Status::InvalidArgument("InvalidBlockDeviceMapping: " + l.device_name +
                                   " is mapped to instance store by the image or the launch; "
                                   "EBS settings do not apply");
  }
  if (l.snapshot_id && *l.snapshot_id != m->snapshot_id) {
    return Status::InvalidArgument("InvalidBlockDeviceMapping: the image maps " + l.device_name +
                                   " to " +
                                   (m->snapshot_id.empty() ? "a new volume" : m->snapshot_id) +
                                   "; a launch cannot name another snapshot for it");
  }
  if (l.volume_type && *l.volume_type != m->volume_type) {
    m->volume_type = *l.volume_type;
    m->iops = 0;  // (the new type's defaults unless given)
    m->throughput_mibps = 0;
  }
  m->volume_size_gib = l.volume_size_gib.value_or(m->volume_size_gib);
  m->iops = l.iops.value_or(m->iops);
  m->throughput_mibps = l.throughput_mibps.value_or(m->throughput_mibps);
  if (l.delete_on_termination) {
    m->delete_on_termination = l.delete_on_termination;
  }
  if (l.encrypted.has_value() || !l.kms_key_id.empty()) {  // else the image's, if it has one
    m->encrypted = l.encrypted;
    m->kms_key_id = l.kms_key_id;
  }
  return Status::OK();
}

// EC2's limit: 16 KiB of user data, which the API carries in base64.
Status ValidateUserData(const std::string& b64) {
  static constexpr size_t kMaxDecoded = 16384;
  const bool alphabet = std::all_of(b64.begin(), b64.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=';
  });
  const size_t pad = b64.ends_with("==") ? 2 : b64.ends_with("=") ? 1 : 0;
  if (!alphabet || b64.size() % 4 != 0 || b64.find('=') < b64.size() - pad) {
    return Status::InvalidArgument("InvalidParameterValue: User data must be base64 encoded");
  }
  if (b64.size() / 4 * 3 - pad > kMaxDecoded) {
    return Status::InvalidArgument("InvalidParameterValue: User data is limited to 16384 bytes");
  }
  return Status::OK();
}

Status ValidateCpuCredits(const std::string& type, const std::string& credits) {
  if (credits.empty()) {
    return Status::OK();
  }
  if (credits != "standard" && credits != "unlimited") {
    return Status::InvalidArgument("InvalidParameterValue: CpuCredits is standard or unlimited");
  }
  if (!type.starts_with("t")) {
    return Status::InvalidArgument("InvalidParameterCombination: " + type +
                                   " is not a burstable (T) instance type");
  }
  return Status::OK();
}

BlockDeviceMapping NewMapping(const LaunchMapping& l) {
  BlockDeviceMapping m;
  m.device_name = l.device_name;
  m.virtual_name = l.virtual_name;
  m.snapshot_id = l.snapshot_id.value_or("");
  m.volume_size_gib = l.volume_size_gib.value_or(0);
  m.volume_type = l.volume_type.value_or("gp3");
  m.iops = l.iops.value_or(0);
  m.throughput_mibps = l.throughput_mibps.value_or(0);
  m.delete_on_termination = l.delete_on_termination;
  m.encrypted = l.encrypted;
  m.kms_key_id = l.kms_key_id;
  return m;
}

// The image's mappings with the launch's changes applied.
Result<std::vector<BlockDeviceMapping>> LaunchMappings(const ImageInfo& image,
                                                       const std::vector<LaunchMapping>& launch) {
  std::vector<BlockDeviceMapping> out = image.mappings;
  for (const LaunchMapping& l : launch) {
    auto it = std::find_if(out.begin(), out.end(), [&l](const BlockDeviceMapping& m) {
      return DeviceShortName(m.device_name) == DeviceShortName(l.device_name);
    });
    if (l.no_device) {
      if (l.device_name == image.root_device_name) {
        return Status::InvalidArgument(
            "InvalidBlockDeviceMapping: NoDevice cannot remove the "
            "root device " +
            l.device_name);
      }
      if (it != out.end()) {
        out.erase(it);
      }
    } else if (it != out.end()) {
      STRATA_RETURN_IF_ERROR(OverrideEbs(l, &*it));
    } else {
      out.push_back(NewMapping(l));
    }
  }
  return out;
}

}  // namespace

Result<ComputeImpl::LaunchPlan> ComputeImpl::PlanLaunchLocked(const RunSpec& spec,
                                                              const Staged& staged) {
  if (spec.count == 0 || spec.count > kMaxRunCount) {
    return Status::InvalidArgument("--count must be 1 to " + std::to_string(kMaxRunCount));
  }
  STRATA_RETURN_IF_ERROR(ValidateTags(spec.tags));
  STRATA_RETURN_IF_ERROR(ValidateTags(spec.volume_tags));
  STRATA_RETURN_IF_ERROR(CheckGroupsLocked(spec.security_group_ids));
  if (!spec.key_name.empty() && key_pairs_.count(spec.key_name) == 0) {
    return Status::NotFound("key pair '" + spec.key_name + "' does not exist");
  }
  auto image_it = images_.find(spec.image_id);
  if (image_it == images_.end()) {
    return Status::NotFound("image " + spec.image_id + " does not exist");
  }
  LaunchPlan plan;
  plan.image = &image_it->second;
  plan.type = FindInstanceType(spec.instance_type);
  if (plan.type == nullptr) {
    return Status::InvalidArgument("unknown instance type '" + spec.instance_type +
                                   "' (strata describe-instance-types lists them)");
  }
  STRATA_RETURN_IF_ERROR(ValidateUserData(spec.user_data));
  STRATA_RETURN_IF_ERROR(ValidateCpuCredits(spec.instance_type, spec.cpu_credits));
  STRATA_ASSIGN_OR_RETURN(plan.mappings, LaunchMappings(*plan.image, spec.mappings));
  if (!spec.mappings.empty()) {
    STRATA_RETURN_IF_ERROR(ValidateMappingsLocked(plan.mappings, plan.image->root_device_name));
  }
  plan.store_root = plan.image->root_device_type == "instance-store";
  if (plan.store_root && plan.type->instance_store_count == 0) {
    return Status::NotSupported("instance type " + spec.instance_type +
                                " has no instance store; instance-store-backed image " +
                                plan.image->image_id + " needs one (m5d, c5d, i3)");
  }
  if (plan.store_root && !options_.hosts_instance_store) {
    return Status::NotSupported(
        "an instance-store root lives in the strata-nbd process: start strata-nbd on this pool "
        "and launch through it");
  }
  STRATA_RETURN_IF_ERROR(PlanLaunchEncryptionLocked(staged, &plan));
  return plan;
}

// Each EBS volume a launch makes, as EC2 encrypts it: the mapping's Encrypted/KmsKeyId, else
// its snapshot's key, else (encryption by default) the default key. A clone keeps its snapshot's
// key; another key, or encrypting a plaintext snapshot, needs a staged re-keyed copy; an empty
// volume gets a new data key. Every key must be usable now (EC2 fails such a launch with
// Client.InvalidKMSKey.InvalidState).
Status ComputeImpl::PlanLaunchEncryptionLocked(const Staged& staged, LaunchPlan* plan) {
  plan->new_volume_keys.assign(plan->mappings.size(), "");
  for (size_t i = 0; i < plan->mappings.size(); i++) {
    BlockDeviceMapping& m = plan->mappings[i];
    if (!m.virtual_name.empty() ||
        (plan->store_root && m.device_name == plan->image->root_device_name)) {
      continue;  // instance store (an instance-store root too): encrypted under a key of its own
    }
    if (!m.kms_key_id.empty() && m.encrypted != true) {
      return Status::InvalidArgument(
          "InvalidParameterDependency: The parameter KmsKeyId requires the parameter Encrypted "
          "to be set.");
    }
    EncryptionInfo have;
    if (!m.snapshot_id.empty()) {
      STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool_->DescribeSnapshot(m.snapshot_id));
      have = DescribeEncryption(snap.encryption);
    }
    if (m.encrypted == false && have.encrypted) {
      return Status::InvalidArgument("InvalidParameterCombination: " + m.device_name + " maps " +
                                     m.snapshot_id + ", which is encrypted: its volume is too");
    }
    if (!have.encrypted && !m.encrypted.value_or(false) && !encryption_by_default_) {
      continue;  // plaintext, as its snapshot
    }
    auto key = LaunchKeyLocked(!m.kms_key_id.empty() ? m.kms_key_id : have.kms_key_arn);
    if (!key.ok()) {
      const bool own = m.kms_key_id.empty() && have.encrypted;  // the snapshot's key is gone
      return own || key.status().code() == Status::Code::kBusy
                 ? InvalidKmsKeyState(key.status().message())
                 : key.status();
    }
    if (m.snapshot_id.empty()) {
      plan->new_volume_keys[i] = key->arn;
    } else if (!have.encrypted || key->arn != have.kms_key_arn) {
      auto it = staged.find(Rekey{m.snapshot_id, key->arn});
      if (it == staged.end()) {
        plan->rekeys.insert(Rekey{m.snapshot_id, key->arn});
      } else {
        m.snapshot_id = it->second;  // the copy under the key: cloned as it is
      }
    }
  }
  return Status::OK();
}

Result<std::string> ComputeImpl::CheckMappingEncryptionLocked(const BlockDeviceMapping& m) {
  std::string envelope;
  if (!m.snapshot_id.empty()) {
    STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool_->DescribeSnapshot(m.snapshot_id));
    envelope = snap.encryption;
  }
  if (!m.kms_key_id.empty() && m.encrypted != true) {
    return Status::InvalidArgument(
        "InvalidParameterDependency: The parameter KmsKeyId requires the parameter Encrypted to "
        "be set.");
  }
  const EncryptionInfo e = DescribeEncryption(envelope);
  if (m.snapshot_id.empty() && m.encrypted == true) {
    // A new empty volume, as EC2's RegisterImage takes it: each launch gives it a data key of
    // its own under the key, which must be usable now as at every launch.
    STRATA_RETURN_IF_ERROR(LaunchKeyLocked(m.kms_key_id).status());
    return envelope;
  }
  if (m.encrypted == false && e.encrypted) {
    return Status::InvalidArgument("InvalidParameterCombination: " + m.device_name + " maps " +
                                   m.snapshot_id + ", which is encrypted: its volume is too");
  }
  bool same_key = m.kms_key_id.empty();
  if (!same_key && kms_ != nullptr) {
    auto key = kms_->DescribeKey(m.kms_key_id);
    same_key = key.ok() && key->arn == e.kms_key_arn;
  }
  if (m.encrypted == true && (!e.encrypted || !same_key)) {
    return Status::NotSupported(
        "UnsupportedOperation: " + m.device_name + ": encrypting " +
        (m.snapshot_id.empty() ? std::string("a new volume") : m.snapshot_id) +
        (e.encrypted ? " under another key" : "") +
        " at launch or registration is not supported yet; an image of encrypted snapshots "
        "launches encrypted volumes, and create-volume --encrypted makes one");
  }
  return envelope;
}

Result<InstanceRecord> ComputeImpl::PlanInstanceLocked(const RunSpec& spec, const LaunchPlan& plan,
                                                       std::vector<VolumeSpec>* volumes) {
  InstanceRecord rec;
  InstanceInfo& info = rec.info;
  do {
    info.instance_id = NewResourceId("i");
  } while (instances_.count(info.instance_id) != 0);
  info.image_id = plan.image->image_id;
  info.instance_type = plan.type->name;
  info.state = "running";
  info.launch_time_ms = plan.now_ms;
  info.root_device_name = plan.image->root_device_name;
  info.root_device_type = plan.image->root_device_type;
  info.disable_api_termination = spec.disable_api_termination;
  info.security_group_ids = spec.security_group_ids;
  info.key_name = spec.key_name;
  info.user_data = spec.user_data;
  info.cpu_credits = spec.cpu_credits;
  for (size_t i = 0; i < plan.mappings.size(); i++) {
    const BlockDeviceMapping& m = plan.mappings[i];
    const bool root = m.device_name == plan.image->root_device_name;
    InstanceDevice d;
    d.device_name = m.device_name;
    d.attach_time_ms = plan.now_ms;
    d.delete_on_termination = m.delete_on_termination.value_or(root);
    if (!m.virtual_name.empty()) {
      if (std::stoul(m.virtual_name.substr(9)) >= plan.type->instance_store_count) {
        continue;  // as EC2: mappings past the type's instance-store count are ignored
      }
      d.virtual_name = m.virtual_name;
      d.size_bytes = plan.type->instance_store_bytes / 512 * 512;
      d.delete_on_termination = true;
    } else if (root && plan.store_root) {
      STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool_->DescribeSnapshot(m.snapshot_id));
      d.size_bytes = snap.volume_size_bytes;
      d.seed_snapshot_id = m.snapshot_id;
      d.delete_on_termination = true;
    } else {  // an EBS volume: made with the others in one commit; its id comes then
      VolumeSpec v;
      v.size_bytes = m.volume_size_gib << 30;
      v.snapshot_id = m.snapshot_id;
      v.volume_type = m.volume_type;
      v.iops = m.iops;
      v.throughput_mibps = m.throughput_mibps;
      if (!plan.new_volume_keys[i].empty()) {  // a new empty volume, encrypted: its own data key
        v.volume_id = NewResourceId("vol");
        KmsKeyInfo key;
        key.arn = plan.new_volume_keys[i];
        STRATA_ASSIGN_OR_RETURN(v.encryption, NewEnvelope(v.volume_id, key));
      }
      volumes->push_back(std::move(v));
    }
    info.devices.push_back(std::move(d));
  }
  return rec;
}

// A launch whose volumes need another key than their snapshots' stages a re-keyed copy of each
// such snapshot first (a full copy through both keys, as EC2 re-encrypts at launch), off the
// mutex, then plans again and clones the copies; the staged snapshots go after the commit (the
// clones keep their data). A crash meanwhile leaves a staged snapshot, described as such.
Result<std::vector<InstanceInfo>> ComputeImpl::RunInstances(const RunSpec& spec) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(LaunchPlan plan, PlanLaunchLocked(spec, {}));
  if (plan.rekeys.empty()) {
    return LaunchLocked(spec, std::move(plan));
  }
  const std::set<Rekey> rekeys = plan.rekeys;
  lock.Unlock();
  Staged staged;
  Status s = StageRekeyed(rekeys, &staged);
  lock.Lock();
  Result<std::vector<InstanceInfo>> out = Status::Busy("the launch's snapshots changed meanwhile");
  if (!s.ok()) {
    out = s;
  } else if (auto replanned = PlanLaunchLocked(spec, staged); !replanned.ok()) {
    out = replanned.status();
  } else if (replanned->rekeys.empty()) {
    out = LaunchLocked(spec, std::move(*replanned));
  }
  lock.Unlock();
  for (const auto& [rekey, id] : staged) {
    (void)pool_->DeleteSnapshot(id);  // (its clones keep their data; a failed delete leaks one)
  }
  lock.Lock();
  return out;
}

Status ComputeImpl::StageRekeyed(const std::set<Rekey>& rekeys, Staged* staged) {
  for (const Rekey& r : rekeys) {
    auto key = UsableKeyNamed(r.key_arn);
    VolumeSpec spec;
    spec.snapshot_id = r.snapshot_id;
    spec.volume_type = "unlimited";  // internal: never throttled
    spec.importing = true;           // hidden until sealed, gone after a crash
    auto copy = key.ok() ? CopyToNewKey(spec, *key) : Result<VolumeInfo>(key.status());
    auto sealed = copy.ok() ? pool_->SealImport(
                                  copy->volume_id,
                                  "staged for a launch: " + r.snapshot_id + " under " + r.key_arn,
                                  r.snapshot_id, /*keep_source_id=*/false)
                            : Result<SnapshotInfo>(copy.status());
    if (!sealed.ok()) {
      if (copy.ok()) {
        (void)pool_->DeleteVolume(copy->volume_id);
      }
      for (const auto& [done, id] : *staged) {
        (void)pool_->DeleteSnapshot(id);
      }
      staged->clear();
      return sealed.status();
    }
    (*staged)[r] = sealed->snapshot_id;
  }
  return Status::OK();
}

Result<std::vector<InstanceInfo>> ComputeImpl::LaunchLocked(const RunSpec& spec, LaunchPlan plan) {
  plan.now_ms = WallClockMs();
  const std::string reservation_id = NewResourceId("r");
  std::vector<InstanceRecord> recs;
  std::vector<VolumeSpec> specs;
  std::vector<std::pair<size_t, size_t>> slots;  // spec i -> (instance, device)
  for (uint32_t i = 0; i < spec.count; i++) {
    STRATA_ASSIGN_OR_RETURN(InstanceRecord rec, PlanInstanceLocked(spec, plan, &specs));
    rec.info.reservation_id = reservation_id;
    rec.info.ami_launch_index = i;
    for (size_t d = 0; d < rec.info.devices.size(); d++) {  // its EBS devices, in spec order
      const InstanceDevice& device = rec.info.devices[d];
      if (device.virtual_name.empty() && device.seed_snapshot_id.empty()) {
        slots.emplace_back(i, d);
      }
    }
    recs.push_back(std::move(rec));
  }
  STRATA_CHECK(slots.size() == specs.size());  // one volume spec per EBS device planned
  // Instance-store roots are filled before anything is committed: a failure leaves nothing.
  std::map<std::string, std::shared_ptr<ScratchVolume>> seeded;
  for (const InstanceRecord& rec : recs) {
    for (const InstanceDevice& d : rec.info.devices) {
      if (!d.seed_snapshot_id.empty()) {
        const std::string key = rec.info.instance_id + "/" + DeviceShortName(d.device_name);
        STRATA_ASSIGN_OR_RETURN(seeded[key], SeedScratch(key, d.size_bytes, d.seed_snapshot_id));
      }
    }
  }
  STRATA_RETURN_IF_ERROR(CommitLaunchLocked(spec, specs, slots, &recs));
  std::vector<InstanceInfo> out;
  for (InstanceRecord& rec : recs) {
    out.push_back(rec.info);
    out.back().tags = spec.tags;
    instances_[rec.info.instance_id] = std::move(rec);
  }
  for (auto& [key, volume] : seeded) {
    scratch_[key] = std::move(volume);
  }
  return out;
}

Status ComputeImpl::CommitLaunchLocked(const RunSpec& spec, const std::vector<VolumeSpec>& specs,
                                       const std::vector<std::pair<size_t, size_t>>& slots,
                                       std::vector<InstanceRecord>* recs) {
  std::map<std::string, Tags> new_tags;
  auto records_for = [&](const std::vector<VolumeInfo>& volumes) {
    std::vector<RecordChange> out;
    for (size_t i = 0; i < volumes.size(); i++) {
      (*recs)[slots[i].first].info.devices[slots[i].second].volume_id = volumes[i].volume_id;
      if (!spec.volume_tags.empty()) {
        new_tags[volumes[i].volume_id] = spec.volume_tags;
      }
    }
    for (const InstanceRecord& rec : *recs) {
      out.push_back(InstanceRecordOf(rec));
      if (!spec.tags.empty()) {
        new_tags[rec.info.instance_id] = spec.tags;
      }
    }
    for (const auto& [id, t] : new_tags) {
      out.push_back({kTagsTable, id, DumpJson(json(t))});
    }
    return out;
  };
  STRATA_RETURN_IF_ERROR(pool_->CreateVolumes(specs, records_for).status());
  for (const InstanceRecord& rec : *recs) {
    for (const InstanceDevice& d : rec.info.devices) {
      if (!d.instance_store()) {  // (made just now in the same commit: they exist)
        (void)pool_->AddHold(d.volume_id, rec.info.instance_id, HoldReason(rec.info.instance_id));
      }
    }
  }
  for (auto& [id, t] : new_tags) {
    tags_[id] = std::move(t);
  }
  return Status::OK();
}

Result<InstanceInfo> ComputeImpl::DescribeInstance(const std::string& instance_id) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  InstanceInfo info = rec->info;
  info.tags = TagsOfLocked(instance_id);
  return info;
}

std::vector<InstanceInfo> ComputeImpl::ListInstances() {
  MutexLock lock(&mu_);
  std::vector<InstanceInfo> out;
  for (const auto& [id, rec] : instances_) {
    out.push_back(rec.info);
    out.back().tags = TagsOfLocked(id);
  }
  std::sort(out.begin(), out.end(), [](const InstanceInfo& a, const InstanceInfo& b) {
    return a.launch_time_ms != b.launch_time_ms ? a.launch_time_ms < b.launch_time_ms
                                                : a.instance_id < b.instance_id;
  });
  return out;
}

// ---------------------------------------------------------------- lifecycle

Status ComputeImpl::CheckDevicesIdleLocked(const InstanceRecord& rec) {
  for (const InstanceDevice& d : rec.info.devices) {
    const std::string key = rec.info.instance_id + "/" + DeviceShortName(d.device_name);
    auto it = scratch_.find(key);
    const bool open = d.instance_store() ? (it != scratch_.end() && it->second.use_count() > 1)
                                         : pool_->VolumeInUse(d.volume_id);
    if (open) {
      return Status::Busy("device " + d.device_name + " of " + rec.info.instance_id +
                          " is still open (an NBD client is attached): shut the VM down first");
    }
  }
  return Status::OK();
}

void ComputeImpl::DropScratchLocked(const InstanceRecord& rec) {
  const std::string prefix = rec.info.instance_id + "/";
  for (auto it = scratch_.lower_bound(prefix);
       it != scratch_.end() && it->first.starts_with(prefix);) {
    it = scratch_.erase(it);  // closing the unlinked file frees its space: the data is gone
  }
}

Result<std::vector<StateChange>> ComputeImpl::StopInstances(const std::vector<std::string>& ids) {
  MutexLock lock(&mu_);
  std::vector<InstanceRecord*> recs;
  for (const std::string& id : ids) {  // validate all before changing any
    STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(id));
    if (rec->info.root_device_type == "instance-store") {
      return Status::NotSupported("UnsupportedOperation: instance " + id +
                                  " has an instance-store root device and cannot be stopped");
    }
    if (rec->info.state != "stopped" && !Up(rec->info)) {
      return IncorrectState(rec->info, "stopped");
    }
    STRATA_RETURN_IF_ERROR(CheckDevicesIdleLocked(*rec));
    recs.push_back(rec);
  }
  std::vector<StateChange> out;
  for (InstanceRecord* rec : recs) {
    STRATA_CHECK(rec->info.state == "stopped" || Up(rec->info));  // (validated above)
    InstanceRecord next = *rec;
    next.info.state = "stopped";
    next.info.state_reason = "Client.UserInitiatedShutdown: User initiated shutdown";
    STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
    DropScratchLocked(*rec);  // instance store is wiped at stop, EBS kept
    out.push_back({rec->info.instance_id, rec->info.state, "stopped"});
    *rec = std::move(next);
  }
  return out;
}

Result<std::vector<StateChange>> ComputeImpl::StartInstances(const std::vector<std::string>& ids) {
  MutexLock lock(&mu_);
  std::vector<InstanceRecord*> recs;
  for (const std::string& id : ids) {
    STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(id));
    if (rec->info.state != "stopped" && !Up(rec->info)) {
      return IncorrectState(rec->info, "started");
    }
    recs.push_back(rec);
  }
  std::vector<StateChange> out;
  for (InstanceRecord* rec : recs) {
    STRATA_CHECK(rec->info.state == "stopped" || Up(rec->info));  // (validated above)
    InstanceRecord next = *rec;
    next.info.state = "running";
    next.info.state_reason.clear();
    STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
    out.push_back({rec->info.instance_id, rec->info.state, "running"});
    *rec = std::move(next);
  }
  return out;
}

Result<std::vector<StateChange>> ComputeImpl::RebootInstances(const std::vector<std::string>& ids) {
  MutexLock lock(&mu_);
  std::vector<StateChange> out;
  for (const std::string& id : ids) {
    STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(id));
    if (!Up(rec->info)) {
      return IncorrectState(rec->info, "rebooted");
    }
  }
  for (const std::string& id : ids) {  // a reboot keeps EBS and instance store alike
    out.push_back({id, "running", "running"});
  }
  return out;
}

Result<std::vector<StateChange>> ComputeImpl::TerminateInstances(
    const std::vector<std::string>& ids) {
  MutexLock lock(&mu_);
  std::vector<InstanceRecord*> recs;
  for (const std::string& id : ids) {
    STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(id));
    if (rec->info.disable_api_termination) {
      return Status::InvalidArgument(
          "OperationNotPermitted: The instance '" + id +
          "' may not be terminated. Modify its 'disableApiTermination' instance attribute and "
          "try again.");
    }
    STRATA_RETURN_IF_ERROR(CheckDevicesIdleLocked(*rec));
    recs.push_back(rec);
  }
  std::vector<StateChange> out;
  for (InstanceRecord* rec : recs) {
    const std::string before = rec->info.state;
    if (before != "terminated") {
      STRATA_RETURN_IF_ERROR(
          TerminateOneLocked(rec, "Client.UserInitiatedShutdown: User initiated shutdown"));
    }
    out.push_back({rec->info.instance_id, before, "terminated"});
  }
  return out;
}

Status ComputeImpl::TerminateOneLocked(InstanceRecord* rec, const std::string& reason) {
  STRATA_CHECK(rec->info.state != "terminated");  // terminated is final: entered once
  InstanceRecord next = *rec;
  next.info.state = "terminated";
  next.info.state_reason = reason;
  next.info.devices.clear();
  for (const InstanceDevice& d : rec->info.devices) {
    if (!d.instance_store() && d.delete_on_termination) {
      next.pending_deletes.push_back(d.volume_id);
    }
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
  DropScratchLocked(*rec);
  for (const InstanceDevice& d : rec->info.devices) {
    if (!d.instance_store()) {
      pool_->ReleaseHold(d.volume_id, rec->info.instance_id);  // the others become available
    }
  }
  *rec = std::move(next);
  return FinishTerminationLocked(rec);
}

Status ComputeImpl::FinishTerminationLocked(InstanceRecord* rec) {
  if (rec->pending_deletes.empty()) {
    return Status::OK();
  }
  std::vector<std::string> left;
  std::vector<RecordChange> records;
  for (const std::string& volume_id : rec->pending_deletes) {
    Status s = pool_->DeleteVolume(volume_id);
    if (!s.ok() && s.code() != Status::Code::kNotFound) {
      left.push_back(volume_id);  // retried at the next open
      continue;
    }
    if (tags_.erase(volume_id) != 0) {
      records.push_back({kTagsTable, volume_id, std::nullopt});
    }
  }
  rec->pending_deletes = left;
  records.push_back(InstanceRecordOf(*rec));
  return pool_->CommitRecords(std::move(records));
}

Status ComputeImpl::SetTerminationProtection(const std::string& instance_id, bool on) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  InstanceRecord next = *rec;
  next.info.disable_api_termination = on;
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
  *rec = std::move(next);
  return Status::OK();
}

Status ComputeImpl::SetUserData(const std::string& instance_id, const std::string& user_data) {
  STRATA_RETURN_IF_ERROR(ValidateUserData(user_data));
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  if (rec->info.state != "stopped") {
    return Status::ReadOnly("IncorrectInstanceState: the instance " + instance_id + " is " +
                            rec->info.state + "; its user data changes only while it is stopped");
  }
  InstanceRecord next = *rec;
  next.info.user_data = user_data;
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
  *rec = std::move(next);
  return Status::OK();
}

Status ComputeImpl::SetCpuCredits(const std::string& instance_id, const std::string& credits) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  STRATA_RETURN_IF_ERROR(ValidateCpuCredits(rec->info.instance_type, credits));
  if (credits.empty()) {
    return Status::InvalidArgument("InvalidParameterValue: CpuCredits is standard or unlimited");
  }
  InstanceRecord next = *rec;
  next.info.cpu_credits = credits;
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
  *rec = std::move(next);
  return Status::OK();
}

Status ComputeImpl::SetDeleteOnTermination(const std::string& instance_id,
                                           const std::string& device_name, bool on) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  InstanceRecord next = *rec;
  auto it = std::find_if(next.info.devices.begin(), next.info.devices.end(),
                         [&device_name](const InstanceDevice& d) {
                           return DeviceShortName(d.device_name) == DeviceShortName(device_name);
                         });
  if (it == next.info.devices.end() || it->instance_store()) {
    return Status::NotFound("InvalidInstanceAttributeValue: no EBS volume is attached to " +
                            instance_id + " at " + device_name);
  }
  it->delete_on_termination = on;
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
  *rec = std::move(next);
  return Status::OK();
}

// ---------------------------------------------------------------- attachments

std::optional<std::pair<std::string, InstanceDevice>> ComputeImpl::AttachmentOf(
    const std::string& volume_id) {
  MutexLock lock(&mu_);
  return AttachmentOfLocked(volume_id);
}

std::optional<std::pair<std::string, InstanceDevice>> ComputeImpl::AttachmentOfLocked(
    const std::string& volume_id) const {
  for (const auto& [id, rec] : instances_) {
    for (const InstanceDevice& d : rec.info.devices) {
      if (d.volume_id == volume_id) {
        return std::make_pair(id, d);
      }
    }
  }
  return std::nullopt;
}

Result<InstanceDevice> ComputeImpl::AttachVolume(const std::string& volume_id,
                                                 const std::string& instance_id,
                                                 const std::string& device_name) {
  STRATA_ASSIGN_OR_RETURN(VolumeInfo volume, pool_->DescribeVolume(volume_id));
  MutexLock lock(&mu_);
  if (auto a = AttachmentOfLocked(volume.volume_id)) {
    return Status::InvalidArgument("VolumeInUse: " + volume.volume_id + " is already attached to " +
                                   a->first + " as " + a->second.device_name);
  }
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  if (!Up(rec->info) && rec->info.state != "stopped") {
    return IncorrectState(rec->info, "attached to");
  }
  if (!device_name.starts_with("/dev/") || device_name.size() < 6 ||
      device_name.find('/', 5) != std::string::npos) {
    return Status::InvalidArgument("device name '" + device_name + "' must look like /dev/sdf");
  }
  for (const InstanceDevice& d : rec->info.devices) {
    if (DeviceShortName(d.device_name) == DeviceShortName(device_name)) {
      return Status::InvalidArgument("InvalidParameterValue: device " + device_name +
                                     " is already in use on " + instance_id);
    }
  }
  InstanceDevice d;
  d.device_name = device_name;
  d.volume_id = volume.volume_id;
  d.attach_time_ms = WallClockMs();
  InstanceRecord next = *rec;
  next.info.devices.push_back(d);
  // The hold first: it fails if a delete of the volume got there before, and once it is taken
  // no delete can (Pool::AddHold is atomic with DeleteVolume). Then the record.
  STRATA_RETURN_IF_ERROR(pool_->AddHold(volume.volume_id, instance_id, HoldReason(instance_id)));
  if (Status s = pool_->CommitRecords({InstanceRecordOf(next)}); !s.ok()) {
    pool_->ReleaseHold(volume.volume_id, instance_id);
    return s;
  }
  *rec = std::move(next);
  return d;
}

Result<std::pair<std::string, InstanceDevice>> ComputeImpl::DetachVolume(
    const std::string& volume_id) {
  MutexLock lock(&mu_);
  auto attachment = AttachmentOfLocked(volume_id);
  if (!attachment) {
    STRATA_RETURN_IF_ERROR(pool_->DescribeVolume(volume_id).status());
    return Status::InvalidArgument("IncorrectState: volume " + volume_id + " is not attached");
  }
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(attachment->first));
  if (attachment->second.device_name == rec->info.root_device_name && Up(rec->info)) {
    return Status::InvalidArgument("IncorrectState: " + volume_id +
                                   " is the root device of running instance " +
                                   rec->info.instance_id + "; stop the instance first");
  }
  if (pool_->VolumeInUse(volume_id)) {
    return Status::Busy("volume " + volume_id +
                        " is still open (an NBD client is attached): disconnect it first");
  }
  InstanceRecord next = *rec;
  std::erase_if(next.info.devices,
                [&](const InstanceDevice& d) { return d.volume_id == volume_id; });
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
  pool_->ReleaseHold(volume_id, rec->info.instance_id);
  *rec = std::move(next);
  return *attachment;
}

// ---------------------------------------------------------------- create-image

Result<ImageInfo> ComputeImpl::CreateImage(const std::string& instance_id, const std::string& name,
                                           const std::string& description) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  if (rec->info.root_device_type != "ebs") {
    return Status::NotSupported("UnsupportedOperation: instance " + instance_id +
                                " has an instance-store root; only EBS-backed instances can be "
                                "imaged");
  }
  if (rec->info.state == "terminated") {
    return IncorrectState(rec->info, "imaged");
  }
  ImageSpec spec;
  spec.name = name;
  spec.description = description;
  spec.root_device_name = rec->info.root_device_name;
  std::vector<std::string> volume_ids;
  for (const InstanceDevice& d : rec->info.devices) {
    if (!d.instance_store()) {
      volume_ids.push_back(d.volume_id);
    }
  }
  if (spec.name.size() < 3 || spec.name.size() > 128 ||
      std::any_of(images_.begin(), images_.end(),
                  [&](const auto& e) { return e.second.name == name; })) {
    return ValidateImageLocked(spec);  // the same error register-image gives, before snapshots
  }
  // One crash-consistent point in time across every EBS volume of the instance.
  STRATA_ASSIGN_OR_RETURN(
      auto snaps, pool_->CreateSnapshots(
                      volume_ids, "Created by CreateImage(" + instance_id + ") for " + name));
  for (const InstanceDevice& d : rec->info.devices) {
    BlockDeviceMapping m;
    m.device_name = d.device_name;
    if (d.instance_store()) {
      m.virtual_name = d.virtual_name;
    } else {
      auto s = std::find_if(snaps.begin(), snaps.end(),
                            [&](const SnapshotInfo& x) { return x.volume_id == d.volume_id; });
      STRATA_CHECK(s != snaps.end());
      STRATA_ASSIGN_OR_RETURN(VolumeInfo v, pool_->DescribeVolume(d.volume_id));
      m.snapshot_id = s->snapshot_id;
      // Whole GiB as EBS sizes go; otherwise 0: the snapshot's own size.
      m.volume_size_gib = s->volume_size_bytes % (1ull << 30) == 0 ? s->volume_size_bytes >> 30 : 0;
      m.volume_type = v.volume_type;
      m.iops = v.iops;
      m.throughput_mibps = v.throughput_mibps;
      m.delete_on_termination = d.delete_on_termination;
    }
    if (!m.virtual_name.empty() || !m.snapshot_id.empty()) {
      spec.mappings.push_back(std::move(m));
    }
  }
  return RegisterImageLocked(spec, instance_id);
}

}  // namespace strata
