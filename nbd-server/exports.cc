#include "exports.h"

#include <map>

namespace strata::nbd {

Result<std::shared_ptr<Volume>> PoolExports::Open(const std::string& name) {
  if (name.starts_with("snap-")) {
    return pool_->OpenSnapshot(name);
  }
  if (name.empty()) {
    std::vector<VolumeInfo> all = pool_->ListVolumes();
    if (all.size() != 1) {
      return Status::NotFound("no default export: the pool has " + std::to_string(all.size()) +
                              " volumes; name one");
    }
    return pool_->OpenVolume(all[0].volume_id);
  }
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool_->DescribeVolume(name));
  return pool_->OpenVolume(info.volume_id);
}

std::vector<ExportResolver::Entry> PoolExports::List() {
  std::vector<Entry> out;
  const std::vector<VolumeInfo> volumes = pool_->ListVolumes();
  std::map<std::string, int> name_count;
  for (const VolumeInfo& v : volumes) {
    out.push_back({v.volume_id, v.name.empty() ? "volume" : "volume " + v.name});
    name_count[v.name]++;
  }
  for (const VolumeInfo& v : volumes) {  // a unique Name opens its volume too
    if (!v.name.empty() && name_count[v.name] == 1 && !v.name.starts_with("snap-")) {
      out.push_back({v.name, "volume " + v.volume_id + " by its Name"});
    }
  }
  for (const SnapshotInfo& s : pool_->ListSnapshots()) {
    out.push_back({s.snapshot_id, "snapshot of " + s.volume_id + " (read-only)"});
  }
  return out;
}

}  // namespace strata::nbd
