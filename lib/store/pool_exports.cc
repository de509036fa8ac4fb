#include <map>

#include "strata/exports.h"

namespace strata {

Result<std::string> ResolvePoolExport(Pool* pool, const std::string& name) {
  if (name.starts_with("snap-")) {
    STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool->DescribeSnapshot(name));
    return snap.snapshot_id;
  }
  if (name.empty()) {
    std::vector<VolumeInfo> all = pool->ListVolumes();
    if (all.size() != 1) {
      return Status::NotFound("no default export: the pool has " + std::to_string(all.size()) +
                              " volumes; name one");
    }
    return all[0].volume_id;
  }
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool->DescribeVolume(name));
  return info.volume_id;
}

Result<std::shared_ptr<Volume>> OpenPoolExport(Pool* pool, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(std::string id, ResolvePoolExport(pool, name));
  return id.starts_with("snap-") ? pool->OpenSnapshot(id) : pool->OpenVolume(id);
}

std::vector<ExportEntry> ListPoolExports(Pool* pool) {
  std::vector<ExportEntry> out;
  const std::vector<VolumeInfo> volumes = pool->ListVolumes();
  std::map<std::string, int> name_count;
  for (const VolumeInfo& v : volumes) {
    out.push_back({v.volume_id, (v.name.empty() ? "volume" : "volume " + v.name) +
                                    (v.encryption.empty() ? "" : ", encrypted")});
    name_count[v.name]++;
  }
  for (const VolumeInfo& v : volumes) {  // a unique Name opens its volume too
    if (!v.name.empty() && name_count[v.name] == 1 && !v.name.starts_with("snap-")) {
      out.push_back({v.name, "volume " + v.volume_id + " by its Name"});
    }
  }
  for (const SnapshotInfo& s : pool->ListSnapshots()) {
    out.push_back({s.snapshot_id, "snapshot of " + s.volume_id + " (read-only" +
                                      (s.encryption.empty() ? ")" : ", encrypted)")});
  }
  return out;
}

}  // namespace strata
