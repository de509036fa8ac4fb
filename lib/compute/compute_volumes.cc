// Volume modifications (EC2's ModifyVolume and DescribeVolumesModifications): the change itself
// is the pool's (Pool::ModifyVolume); this layer keeps each volume's last one, as EC2 does, in
// the "modifications" table (docs/on-disk-format.md §records).
//
// Crash: the volume's change and its record are two commits. A crash between them leaves the
// volume changed and its previous modification (or none) on record: the record is history, and
// the volume itself is the truth describe-volumes shows.
#include "compute/compute_impl.h"

namespace strata {

Status ComputeImpl::LoadModificationsLocked(std::vector<RecordChange>* stale) {
  STRATA_ASSIGN_OR_RETURN(auto records, pool_->ReadRecords(kModificationsTable));
  for (const auto& [id, text] : records) {
    STRATA_ASSIGN_OR_RETURN(VolumeModificationInfo m, ModificationCodec().Decode(id, text));
    if (!pool_->DescribeVolume(id).ok()) {  // deleted since: EC2 forgets it with the volume
      stale->push_back({kModificationsTable, id, std::nullopt});
      continue;
    }
    modifications_[id] = std::move(m);
  }
  return Status::OK();
}

Result<VolumeModificationInfo> ComputeImpl::ModifyVolume(const std::string& volume,
                                                         const VolumeModification& m) {
  if (m.name) {
    return Status::InvalidArgument("a volume's name is its Name tag: change it with create-tags");
  }
  if (!m.size_bytes && !m.volume_type && !m.iops && !m.throughput_mibps) {
    return Status::InvalidArgument(
        "a modification needs a new size, volume type, IOPS or throughput");
  }
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(VolumeInfo before, pool_->DescribeVolume(volume));
  VolumeModificationInfo mod;
  mod.volume_id = before.volume_id;
  mod.start_time_ms = WallClockMs();
  STRATA_ASSIGN_OR_RETURN(VolumeInfo after, pool_->ModifyVolume(before.volume_id, m));
  mod.end_time_ms = WallClockMs();
  mod.state = "completed";
  mod.original_size_bytes = before.size_bytes;
  mod.target_size_bytes = after.size_bytes;
  mod.original_volume_type = before.volume_type;
  mod.target_volume_type = after.volume_type;
  mod.original_iops = before.iops;
  mod.target_iops = after.iops;
  mod.original_throughput_mibps = before.throughput_mibps;
  mod.target_throughput_mibps = after.throughput_mibps;
  Status kept =
      pool_->CommitRecords({{kModificationsTable, mod.volume_id, ModificationCodec().Encode(mod)}});
  if (!kept.ok()) {
    return kept.WithContext("volume " + mod.volume_id +
                            " was modified, but its modification record was not kept");
  }
  modifications_[mod.volume_id] = mod;
  // As EC2's reply: the modification has started and is not yet done.
  mod.state = "modifying";
  mod.end_time_ms = 0;
  return mod;
}

Result<std::vector<VolumeModificationInfo>> ComputeImpl::DescribeVolumeModifications(
    const std::vector<std::string>& volume_ids) {
  MutexLock lock(&mu_);
  std::vector<VolumeModificationInfo> out;
  if (volume_ids.empty()) {
    for (const auto& [id, m] : modifications_) {
      if (pool_->DescribeVolume(id).ok()) {  // a volume deleted since is skipped
        out.push_back(m);
      }
    }
    return out;
  }
  for (const std::string& name : volume_ids) {
    STRATA_ASSIGN_OR_RETURN(VolumeInfo v, pool_->DescribeVolume(name));
    auto it = modifications_.find(v.volume_id);
    if (it == modifications_.end()) {
      return Status::NotFound("InvalidVolumeModification.NotFound: Modification for volume '" +
                              v.volume_id + "' does not exist.");
    }
    out.push_back(it->second);
  }
  return out;
}

}  // namespace strata
