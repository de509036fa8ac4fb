#include "control/control.h"

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>

#include "control/handlers.h"
#include "util/units.h"

namespace strata {

namespace control {

uint64_t GiBCeil(uint64_t bytes) { return (bytes + (1ull << 30) - 1) >> 30; }

Result<std::string> StringArg(const nlohmann::json& args, const char* name) {
  if (!args.contains(name) || !args[name].is_string() || args[name].get<std::string>().empty()) {
    return Status::InvalidArgument(std::string("missing --") + name);
  }
  return args[name].get<std::string>();
}

std::string OptionalStringArg(const nlohmann::json& args, const char* name) {
  return args.contains(name) && args[name].is_string() ? args[name].get<std::string>() : "";
}

Result<std::vector<std::string>> StringListArg(const nlohmann::json& args, const char* name) {
  std::vector<std::string> out;
  if (!args.contains(name) || args[name].is_null()) {
    return out;
  }
  if (!args[name].is_array()) {
    return Status::InvalidArgument(std::string("--") + name + " must be a list");
  }
  for (const auto& v : args[name]) {
    if (!v.is_string()) {
      return Status::InvalidArgument(std::string("--") + name + " must be a list of strings");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<uint64_t> IntegerArg(const nlohmann::json& args, const char* name, uint64_t fallback) {
  if (!args.contains(name) || args[name].is_null() ||
      (args[name].is_string() && args[name].get<std::string>().empty())) {
    return fallback;
  }
  if (args[name].is_number_unsigned()) {
    return args[name].get<uint64_t>();
  }
  if (args[name].is_string()) {
    const std::string text = args[name].get<std::string>();
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (errno == 0 && end != nullptr && *end == '\0' && text[0] != '-') {
      return static_cast<uint64_t>(v);
    }
  }
  return Status::InvalidArgument(std::string("--") + name + " must be a non-negative integer");
}

}  // namespace control

namespace {

using control::GiBCeil;
using control::StringArg;
using nlohmann::json;

Result<uint64_t> SizeArg(const json& args, const char* name) {
  STRATA_ASSIGN_OR_RETURN(std::string text, StringArg(args, name));
  return ParseSize(text, 1ull << 30);  // a bare number is GiB, as EBS
}

Result<json> CreateVolume(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  VolumeSpec spec;
  spec.snapshot_id = control::OptionalStringArg(args, "snapshot-id");
  if (spec.snapshot_id.empty() || !control::OptionalStringArg(args, "size").empty()) {
    STRATA_ASSIGN_OR_RETURN(spec.size_bytes, SizeArg(args, "size"));
  }
  if (args.contains("name") && args["name"].is_string()) {
    spec.name = args["name"].get<std::string>();
  }
  if (args.contains("volume-type") && args["volume-type"].is_string()) {
    spec.volume_type = args["volume-type"].get<std::string>();
  }
  static const char* kTypes[] = {"gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"};
  bool known = false;
  for (const char* t : kTypes) {
    known = known || spec.volume_type == t;
  }
  if (!known) {
    return Status::InvalidArgument("unknown volume type '" + spec.volume_type +
                                   "' (gp2, gp3, io1, io2, st1, sc1, standard)");
  }
  STRATA_ASSIGN_OR_RETURN(Tags tags, control::TagSpecTags(args, "volume"));
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool->CreateVolume(spec));
  if (!tags.empty()) {
    STRATA_RETURN_IF_ERROR(compute->CreateTags({info.volume_id}, tags));
  }
  return VolumeJson(compute, info);
}

Result<json> DescribeVolumes(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "volume-ids"));
  json volumes = json::array();
  if (!ids.empty()) {
    for (const std::string& id : ids) {
      STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool->DescribeVolume(id));
      volumes.push_back(VolumeJson(compute, info));
    }
  } else {
    for (const VolumeInfo& info : pool->ListVolumes()) {
      volumes.push_back(VolumeJson(compute, info));
    }
  }
  STRATA_ASSIGN_OR_RETURN(
      volumes,
      control::ApplyFilters(
          args, volumes,
          [](const json& item, const std::string& name) -> std::optional<std::vector<std::string>> {
            static const std::map<std::string, std::string> kPaths = {
                {"volume-id", "VolumeId"},
                {"status", "State"},
                {"state", "State"},
                {"volume-type", "VolumeType"},
                {"snapshot-id", "SnapshotId"}};
            if (auto it = kPaths.find(name); it != kPaths.end()) {
              return std::vector<std::string>{item[it->second].get<std::string>()};
            }
            if (name == "size") {
              return std::vector<std::string>{std::to_string(item["Size"].get<uint64_t>())};
            }
            if (name == "attachment.instance-id" || name == "attachment.device") {
              std::vector<std::string> out;
              for (const json& a : item["Attachments"]) {
                out.push_back(
                    a[name == "attachment.device" ? "Device" : "InstanceId"].get<std::string>());
              }
              return out;
            }
            return std::nullopt;
          }));
  return json{{"Volumes", volumes}};
}

Result<json> DeleteVolume(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(std::string id, StringArg(args, "volume-id"));
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool->DescribeVolume(id));
  STRATA_RETURN_IF_ERROR(pool->DeleteVolume(info.volume_id));
  return json::object();
}

Result<json> ModifyVolume(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(std::string id, StringArg(args, "volume-id"));
  STRATA_ASSIGN_OR_RETURN(uint64_t size, SizeArg(args, "size"));
  STRATA_ASSIGN_OR_RETURN(VolumeInfo before, pool->DescribeVolume(id));
  STRATA_ASSIGN_OR_RETURN(VolumeInfo after, pool->ResizeVolume(before.volume_id, size));
  return json{{"VolumeModification",
               {{"VolumeId", after.volume_id},
                {"ModificationState", "completed"},
                {"TargetSize", GiBCeil(after.size_bytes)},
                {"TargetSizeBytes", after.size_bytes},
                {"OriginalSize", GiBCeil(before.size_bytes)},
                {"OriginalSizeBytes", before.size_bytes},
                {"TargetVolumeType", after.volume_type},
                {"Progress", 100}}}};
}

Result<json> PoolInfoCommand(Compute* compute, const json&) {
  Pool* pool = compute->pool();
  PoolInfo i = pool->Info();
  return json{{"Pool",
               {{"Path", i.path},
                {"ChunkSizeBytes", i.chunk_size_bytes},
                {"CapacityBytes", i.capacity_bytes},
                {"UsedBytes", i.used_bytes},
                {"DataFileBytes", i.data_file_bytes},
                {"MetadataBytes", i.meta_bytes},
                {"VolumeCount", i.volume_count},
                {"SnapshotCount", i.snapshot_count},
                {"ReclaimPending", i.reclaim_pending},
                {"FreeChunks", i.free_chunks},
                {"FrontierChunks", i.frontier_chunks},
                {"PendingMapChanges", i.pending_map_changes},
                {"IoEngine", i.io_engine},
                {"DirectIo", i.direct_io},
                {"LatchedError", i.latched_error}}}};
}

Result<json> PoolCheckCommand(Compute* compute, const json&) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(CheckReport r, pool->Check());
  json out = {{"Check",
               {{"Ok", r.problems.empty()},
                {"Volumes", r.volumes},
                {"Versions", r.versions},
                {"DataChunks", r.data_chunks},
                {"Problems", r.problems}}}};
  if (!r.problems.empty()) {
    return Status::Corruption("pool check found " + std::to_string(r.problems.size()) +
                              " problem(s); first: " + r.problems[0]);
  }
  return out;
}

}  // namespace

std::string IsoTime(int64_t unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

json VolumeJson(Compute* compute, const VolumeInfo& info) {
  Tags tags = compute->TagsOf(info.volume_id);
  if (!info.name.empty() && tags.count("Name") == 0) {
    tags["Name"] = info.name;  // --name at creation: the Name tag (and the export's name)
  }
  json attachments = json::array();
  auto attachment = compute->AttachmentOf(info.volume_id);
  if (attachment) {
    attachments.push_back({{"VolumeId", info.volume_id},
                           {"InstanceId", attachment->first},
                           {"Device", attachment->second.device_name},
                           {"State", "attached"},
                           {"AttachTime", IsoTime(attachment->second.attach_time_ms)},
                           {"DeleteOnTermination", attachment->second.delete_on_termination}});
  }
  return json{{"VolumeId", info.volume_id},
              {"Size", GiBCeil(info.size_bytes)},
              {"SizeBytes", info.size_bytes},
              {"State", attachment ? "in-use" : info.state},
              {"VolumeType", info.volume_type},
              {"SnapshotId", info.snapshot_id},
              {"CreateTime", IsoTime(info.create_time_ms)},
              {"AvailabilityZone", "local"},
              {"Encrypted", false},
              {"MultiAttachEnabled", false},
              {"Attachments", attachments},
              {"Tags", control::TagsJson(tags)}};
}

Result<json> ExecuteControl(Compute* compute, const json& request) {
  static const control::HandlerTable kHandlers = [] {
    control::HandlerTable table = {
        {"create-volume", CreateVolume}, {"describe-volumes", DescribeVolumes},
        {"delete-volume", DeleteVolume}, {"modify-volume", ModifyVolume},
        {"pool-info", PoolInfoCommand},  {"pool-check", PoolCheckCommand},
    };
    control::AddSnapshotHandlers(&table);
    control::AddStreamHandlers(&table);
    control::AddComputeHandlers(&table);
    return table;
  }();
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string()) {
    return Status::InvalidArgument("control request without a command");
  }
  auto it = kHandlers.find(request["command"].get<std::string>());
  if (it == kHandlers.end()) {
    return Status::InvalidArgument("unknown command '" + request["command"].get<std::string>() +
                                   "'");
  }
  json args = request.contains("args") ? request["args"] : json::object();
  if (!args.is_object()) {
    return Status::InvalidArgument("control request args must be an object");
  }
  return it->second(compute, args);
}

}  // namespace strata
