// Snapshot verbs of the control plane (EC2 CreateSnapshot(s), DescribeSnapshots, DeleteSnapshot;
// EBS direct APIs ListSnapshotBlocks, ListChangedBlocks, GetSnapshotBlock).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <vector>

#include <xxhash.h>

#include "strata/hydration.h"

#include "control/control.h"
#include "control/handlers.h"
#include "control/shorthand.h"

namespace strata {

namespace {

using nlohmann::json;

// Both verbs go through Compute: INSTANCE/DEVICE names work, and instance store is refused.
Result<json> SnapshotsTaken(Compute* compute, const json& args,
                            const std::vector<std::string>& volumes, bool one) {
  STRATA_ASSIGN_OR_RETURN(Tags tags, control::TagSpecTags(args, "snapshot"));
  STRATA_ASSIGN_OR_RETURN(auto snaps, compute->CreateSnapshots(volumes, control::OptionalStringArg(
                                                                            args, "description")));
  json out = json::array();
  for (const SnapshotInfo& s : snaps) {
    if (!tags.empty()) {
      STRATA_RETURN_IF_ERROR(compute->CreateTags({s.snapshot_id}, tags));
    }
    out.push_back(SnapshotJson(s, nullptr, tags));
    out.back()["State"] = "pending";  // as EC2 answers; the snapshot is complete already
  }
  return one ? out[0] : json{{"Snapshots", out}};
}

Result<json> CreateSnapshot(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string volume, control::StringArg(args, "volume-id"));
  return SnapshotsTaken(compute, args, {volume}, /*one=*/true);
}

// EC2's InstanceSpecification: the EBS volumes of an instance, less its root if asked, less
// the data volumes named.
Result<std::vector<std::string>> InstanceVolumes(Compute* compute, const std::string& text) {
  STRATA_ASSIGN_OR_RETURN(json spec, control::ParseShorthand(text));
  if (!spec.is_object() || !spec.contains("InstanceId") || !spec["InstanceId"].is_string()) {
    return Status::InvalidArgument(
        "InvalidParameterValue: --instance-specification needs InstanceId=i-…");
  }
  const json boot = spec.value("ExcludeBootVolume", json(false));
  const bool exclude_boot = boot == true || boot == "true";
  json excluded = spec.value("ExcludeDataVolumeIds", json::array());
  excluded = excluded.is_array() ? excluded : json::array({excluded});
  STRATA_ASSIGN_OR_RETURN(InstanceInfo info,
                          compute->DescribeInstance(spec["InstanceId"].get<std::string>()));
  std::vector<std::string> volumes;
  for (const InstanceDevice& d : info.devices) {
    const bool root = d.device_name == info.root_device_name;
    if (!d.instance_store() && !(root && exclude_boot) &&
        std::find(excluded.begin(), excluded.end(), json(d.volume_id)) == excluded.end()) {
      volumes.push_back(d.volume_id);
    }
  }
  if (volumes.empty()) {
    return Status::InvalidArgument("InvalidParameterValue: instance " + info.instance_id +
                                   " has no EBS volume left to snapshot");
  }
  return volumes;
}

Result<json> CreateSnapshots(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto volumes, control::StringListArg(args, "volume-ids"));
  const std::string instance = control::OptionalStringArg(args, "instance-specification");
  if (!instance.empty() && !volumes.empty()) {
    return Status::InvalidArgument("give --volume-ids or --instance-specification, not both");
  }
  if (!instance.empty()) {
    STRATA_ASSIGN_OR_RETURN(volumes, InstanceVolumes(compute, instance));
  }
  if (volumes.empty()) {
    return Status::InvalidArgument("missing --volume-ids or --instance-specification");
  }
  return SnapshotsTaken(compute, args, volumes, /*one=*/false);
}

// Space accounting costs a scan per snapshot, so it is computed for the snapshots named.
Result<json> DescribeSnapshots(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "snapshot-ids"));
  json out = json::array();
  STRATA_ASSIGN_OR_RETURN(bool mine, control::OwnersIncludeSelf(args, "owner-ids"));
  if (!mine) {
    return json{{"Snapshots", out}};
  }
  if (!ids.empty()) {
    for (const std::string& id : ids) {
      STRATA_ASSIGN_OR_RETURN(SnapshotInfo info, pool->DescribeSnapshot(id));
      STRATA_ASSIGN_OR_RETURN(SnapshotSpace space, pool->SnapshotSpaceUsage(id));
      out.push_back(SnapshotJson(info, &space, compute->TagsOf(id)));
    }
  } else {
    STRATA_ASSIGN_OR_RETURN(auto volumes, control::StringListArg(args, "volume-ids"));
    for (const SnapshotInfo& info : pool->ListSnapshots()) {
      if (volumes.empty() ||
          std::find(volumes.begin(), volumes.end(), info.volume_id) != volumes.end()) {
        out.push_back(SnapshotJson(info, nullptr, compute->TagsOf(info.snapshot_id)));
      }
    }
  }
  if (Hydrations* h = Hydrations::Of(pool)) {  // a snapshot still arriving is pending, as in EBS
    for (json& item : out) {
      std::optional<HydrationStatus> st = h->StatusOf(item["SnapshotId"].get<std::string>());
      if (st && st->snapshot_id == item["SnapshotId"] && !st->complete) {
        item["State"] = "pending";
        item["Progress"] = std::to_string(static_cast<int>(st->progress * 100)) + "%";
        item["RestoredFromRemote"] = st->remote;
      }
    }
  }
  static const std::map<std::string, std::string> kPaths = {
      {"description", "Description"}, {"encrypted", "Encrypted"}, {"owner-alias", ""},
      {"owner-id", "OwnerId"},        {"progress", "Progress"},   {"snapshot-id", "SnapshotId"},
      {"start-time", "StartTime"},    {"status", "State"},        {"storage-tier", "StorageTier"},
      {"transfer-type", ""},          {"volume-id", "VolumeId"},  {"volume-size", "VolumeSize"}};
  STRATA_ASSIGN_OR_RETURN(out, control::ApplyPathFilters(args, std::move(out), kPaths));
  return json{{"Snapshots", out}};
}

Result<json> DeleteSnapshot(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  if (Hydrations* h = Hydrations::Of(pool)) {
    std::optional<HydrationStatus> st = h->StatusOf(id);
    if (st && st->snapshot_id == id && !st->complete) {
      return Status::Busy("snapshot " + id + " is still being restored from remote " + st->remote +
                          " (" + std::to_string(static_cast<int>(st->progress * 100)) +
                          " %); volumes cloned from it read through to it");
    }
  }
  STRATA_RETURN_IF_ERROR(pool->DeleteSnapshot(id));
  return json::object();
}

struct Page {
  uint32_t block_size = 0;  // 0: the pool's chunk size
  uint64_t start_block = 0;
  size_t max_results = kMaxBlockListResults;
};

Result<Page> PageArgs(Pool* pool, const json& args) {
  Page page;
  STRATA_ASSIGN_OR_RETURN(uint64_t block_size,
                          control::IntegerArg(args, "block-size", pool->Info().chunk_size_bytes));
  STRATA_ASSIGN_OR_RETURN(page.start_block, control::IntegerArg(args, "next-token", 0));
  STRATA_ASSIGN_OR_RETURN(uint64_t max,
                          control::IntegerArg(args, "max-results", kMaxBlockListResults));
  if (block_size > UINT32_MAX) {
    return Status::InvalidArgument("--block-size too large");
  }
  page.block_size = static_cast<uint32_t>(block_size);
  page.max_results = static_cast<size_t>(max);
  return page;
}

json BlockListJson(const BlockList& list, const char* key) {
  json blocks = json::array();
  for (uint64_t b : list.blocks) {
    blocks.push_back({{"BlockIndex", b}});
  }
  json out = {{key, blocks},
              {"BlockSize", list.block_size_bytes},
              {"VolumeSize", control::GiBCeil(list.volume_size_bytes)},
              {"VolumeSizeBytes", list.volume_size_bytes}};
  if (list.next_block) {
    out["NextToken"] = std::to_string(*list.next_block);
  }
  return out;
}

Result<json> ListSnapshotBlocks(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(Page page, PageArgs(pool, args));
  STRATA_ASSIGN_OR_RETURN(
      BlockList list,
      pool->ListSnapshotBlocks(id, page.block_size, page.start_block, page.max_results));
  return BlockListJson(list, "Blocks");
}

Result<json> ListChangedBlocks(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(std::string second, control::StringArg(args, "second-snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(Page page, PageArgs(pool, args));
  STRATA_ASSIGN_OR_RETURN(
      BlockList list,
      pool->ListChangedBlocks(control::OptionalStringArg(args, "first-snapshot-id"), second,
                              page.block_size, page.start_block, page.max_results));
  return BlockListJson(list, "ChangedBlocks");
}

Status WriteFile(const std::string& path, const std::vector<std::byte>& data) {
  // A volume's bytes: readable by the owner only (as the pool's own files).
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::FromErrno("open " + path, errno);
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      close(fd);
      return Status::FromErrno("write " + path, err);
    }
    done += static_cast<size_t>(n);
  }
  return close(fd) == 0 ? Status::OK() : Status::FromErrno("close " + path, errno);
}

// Reads one block into --outfile (an absolute path: the server may run in another directory).
Result<json> GetSnapshotBlock(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(std::string outfile, control::StringArg(args, "outfile"));
  STRATA_ASSIGN_OR_RETURN(Page page, PageArgs(pool, args));
  if (args.contains("block-index") == false) {
    return Status::InvalidArgument("missing --block-index");
  }
  STRATA_ASSIGN_OR_RETURN(uint64_t index, control::IntegerArg(args, "block-index", 0));
  if (outfile[0] != '/') {
    return Status::InvalidArgument("--outfile must be an absolute path");
  }
  const uint32_t chunk = pool->Info().chunk_size_bytes;
  if (page.block_size == 0 || page.block_size % chunk != 0 || page.block_size > (64u << 20)) {
    return Status::InvalidArgument("--block-size must be a multiple of the chunk size (" +
                                   std::to_string(chunk) + ") up to 64 MiB");
  }
  STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Volume> snap, compute->OpenSnapshot(id));  // plaintext
  const uint64_t size = snap->size_bytes();
  if (index >= (size + page.block_size - 1) / page.block_size) {
    return Status::OutOfRange("block " + std::to_string(index) + " is past the end of " + id);
  }
  const uint64_t offset = index * page.block_size;
  std::vector<std::byte> data(std::min<uint64_t>(page.block_size, size - offset));
  STRATA_RETURN_IF_ERROR(snap->Read(offset, data));
  STRATA_RETURN_IF_ERROR(WriteFile(outfile, data));
  char checksum[17];
  std::snprintf(checksum, sizeof(checksum), "%016" PRIx64,
                static_cast<uint64_t>(XXH3_64bits(data.data(), data.size())));
  return json{{"DataLength", data.size()},
              {"Checksum", checksum},
              {"ChecksumAlgorithm", "XXH3_64"},
              {"OutFile", outfile}};
}

}  // namespace

json SnapshotJson(const SnapshotInfo& info, const SnapshotSpace* space, const Tags& tags) {
  json out = {{"SnapshotId", info.snapshot_id},
              {"VolumeId", info.volume_id},
              {"VolumeSize", control::GiBCeil(info.volume_size_bytes)},
              {"VolumeSizeBytes", info.volume_size_bytes},
              {"StartTime", IsoTime(info.start_time_ms)},
              {"State", info.state},
              {"Progress", "100%"},
              {"Description", info.description},
              {"OwnerId", control::kOwnerId},
              {"Encrypted", !info.encryption.empty()},
              {"StorageTier", "standard"},
              {"Tags", control::TagsJson(tags)}};
  if (!info.encryption.empty()) {
    const EncryptionInfo e = DescribeEncryption(info.encryption);
    out["KmsKeyId"] = e.kms_key_arn;
    out["DataEncryptionKeyId"] = e.data_key_id;
  }
  if (!info.source_snapshot_id.empty()) {
    out["SourceSnapshotId"] = info.source_snapshot_id;
  }
  if (space != nullptr) {
    out["UniqueBytes"] = space->unique_bytes;
    out["SharedBytes"] = space->shared_bytes;
  }
  return out;
}

namespace control {

void AddSnapshotHandlers(HandlerTable* table) {
  table->emplace("create-snapshot", CreateSnapshot);
  table->emplace("create-snapshots", CreateSnapshots);
  table->emplace("describe-snapshots", DescribeSnapshots);
  table->emplace("delete-snapshot", DeleteSnapshot);
  table->emplace("list-snapshot-blocks", ListSnapshotBlocks);
  table->emplace("list-changed-blocks", ListChangedBlocks);
  table->emplace("get-snapshot-block", GetSnapshotBlock);
}

}  // namespace control

}  // namespace strata
