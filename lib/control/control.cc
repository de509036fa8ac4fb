#include "control/control.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>

#include "strata/hydration.h"
#include "strata/volume_types.h"

#include "control/handlers.h"
#include "control/verbs.h"
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

Result<std::optional<uint32_t>> OptionalU32Arg(const json& args, const char* name);

Result<json> CreateVolume(Compute* compute, const json& args) {
  const std::string zone = control::OptionalStringArg(args, "availability-zone");
  if (!zone.empty() && zone != control::kZone) {
    return Status::InvalidArgument("InvalidParameterValue: the availability zone '" + zone +
                                   "' does not exist in this pool (its zone is " + control::kZone +
                                   ")");
  }
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
  STRATA_ASSIGN_OR_RETURN(auto iops, OptionalU32Arg(args, "iops"));
  STRATA_ASSIGN_OR_RETURN(auto throughput, OptionalU32Arg(args, "throughput"));
  spec.iops = iops.value_or(0);
  spec.throughput_mibps = throughput.value_or(0);
  STRATA_ASSIGN_OR_RETURN(Tags tags, control::TagSpecTags(args, "volume"));
  if (auto name = tags.find("Name"); name != tags.end()) {  // the Name tag is the name
    if (!spec.name.empty() && spec.name != name->second) {
      return Status::InvalidArgument("InvalidParameterValue: --name '" + spec.name +
                                     "' and the Name tag '" + name->second + "' differ");
    }
    spec.name = name->second;
    tags.erase(name);
  }
  std::optional<bool> encrypted;  // absent: encryption by default decides
  if (args.contains("encrypted")) {
    const json& e = args["encrypted"];
    if (!e.is_boolean() && e != "true" && e != "false") {
      return Status::InvalidArgument("InvalidParameterValue: Encrypted must be true or false");
    }
    encrypted = e == true || e == "true";
  }
  const std::string kms_key_id = control::OptionalStringArg(args, "kms-key-id");
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, compute->CreateVolume(spec, encrypted, kms_key_id));
  if (!tags.empty()) {
    STRATA_RETURN_IF_ERROR(compute->CreateTags({info.volume_id}, tags));
  }
  json out = VolumeJson(compute, info);
  out["State"] = "creating";  // as EC2 answers; the volume is available already (describe)
  return out;
}

// EC2's DescribeVolumes filters, each to where its values are in an item ("": never here).
const std::map<std::string, std::string>& VolumeFilterPaths() {
  static const auto* kPaths = new std::map<std::string, std::string>{
      {"attachment.attach-time", "Attachments[]/AttachTime"},
      {"attachment.delete-on-termination", "Attachments[]/DeleteOnTermination"},
      {"attachment.device", "Attachments[]/Device"},
      {"attachment.instance-id", "Attachments[]/InstanceId"},
      {"attachment.status", "Attachments[]/State"},
      {"availability-zone", "AvailabilityZone"},
      {"availability-zone-id", "AvailabilityZoneId"},
      {"create-time", "CreateTime"},
      {"encrypted", "Encrypted"},
      {"fast-restored", "FastRestored"},
      {"multi-attach-enabled", "MultiAttachEnabled"},
      {"operator.managed", ""},
      {"operator.principal", ""},
      {"size", "Size"},
      {"snapshot-id", "SnapshotId"},
      {"status", "State"},
      {"state", "State"},  // (Strata's own short name, kept)
      {"volume-id", "VolumeId"},
      {"volume-type", "VolumeType"}};
  return *kPaths;
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
  STRATA_ASSIGN_OR_RETURN(volumes,
                          control::ApplyPathFilters(args, std::move(volumes), VolumeFilterPaths()));
  return json{{"Volumes", volumes}};
}

Result<json> DeleteVolume(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(std::string id, StringArg(args, "volume-id"));
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool->DescribeVolume(id));
  STRATA_RETURN_IF_ERROR(pool->DeleteVolume(info.volume_id));
  return json::object();
}

// An optional unsigned 32-bit argument (IOPS, MiB/s). Errors: not a number, too big.
Result<std::optional<uint32_t>> OptionalU32Arg(const json& args, const char* name) {
  if (!args.contains(name) || args[name].is_null() ||
      (args[name].is_string() && args[name].get<std::string>().empty())) {
    return std::optional<uint32_t>();
  }
  STRATA_ASSIGN_OR_RETURN(uint64_t v, control::IntegerArg(args, name, 0));
  if (v > UINT32_MAX) {
    return Status::InvalidArgument(std::string("--") + name + " is too large");
  }
  return std::optional<uint32_t>(static_cast<uint32_t>(v));
}

// EC2's VolumeModification shape (sizes in GiB, as EC2, and in bytes, as Strata keeps them).
json ModificationJson(const VolumeModificationInfo& m) {
  json out = {{"VolumeId", m.volume_id},
              {"ModificationState", m.state},
              {"TargetSize", GiBCeil(m.target_size_bytes)},
              {"TargetSizeBytes", m.target_size_bytes},
              {"OriginalSize", GiBCeil(m.original_size_bytes)},
              {"OriginalSizeBytes", m.original_size_bytes},
              {"TargetVolumeType", m.target_volume_type},
              {"OriginalVolumeType", m.original_volume_type},
              {"StartTime", IsoTime(m.start_time_ms)},
              {"Progress", m.state == "completed" ? 100 : 0}};
  if (m.end_time_ms != 0) {
    out["EndTime"] = IsoTime(m.end_time_ms);
  }
  if (m.target_iops != 0 || m.original_iops != 0) {
    out["TargetIops"] = m.target_iops;
    out["OriginalIops"] = m.original_iops;
  }
  if (m.target_throughput_mibps != 0 || m.original_throughput_mibps != 0) {
    out["TargetThroughput"] = m.target_throughput_mibps;
    out["OriginalThroughput"] = m.original_throughput_mibps;
  }
  return out;
}

// EC2 ModifyVolume. Strata applies a modification at once (limits change live; there is no data
// to move); the reply says "modifying" as EC2's does, and describe-volumes-modifications shows it
// "completed".
Result<json> ModifyVolume(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, StringArg(args, "volume-id"));
  VolumeModification m;
  if (!control::OptionalStringArg(args, "size").empty()) {
    STRATA_ASSIGN_OR_RETURN(uint64_t size, SizeArg(args, "size"));
    m.size_bytes = size;
  }
  if (const std::string type = control::OptionalStringArg(args, "volume-type"); !type.empty()) {
    m.volume_type = type;
  }
  STRATA_ASSIGN_OR_RETURN(m.iops, OptionalU32Arg(args, "iops"));
  STRATA_ASSIGN_OR_RETURN(m.throughput_mibps, OptionalU32Arg(args, "throughput"));
  if (!m.size_bytes && !m.volume_type && !m.iops && !m.throughput_mibps) {
    return Status::InvalidArgument(
        "modify-volume needs --size, --volume-type, --iops or --throughput");
  }
  STRATA_ASSIGN_OR_RETURN(VolumeModificationInfo done, compute->ModifyVolume(id, m));
  return json{{"VolumeModification", ModificationJson(done)}};
}

Result<json> DescribeVolumesModifications(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "volume-ids"));
  STRATA_ASSIGN_OR_RETURN(std::vector<VolumeModificationInfo> mods,
                          compute->DescribeVolumeModifications(ids));
  json items = json::array();
  for (const VolumeModificationInfo& m : mods) {
    items.push_back(ModificationJson(m));
  }
  static const std::map<std::string, std::string> kModificationPaths = {
      {"modification-state", "ModificationState"},
      {"original-iops", "OriginalIops"},
      {"original-multi-attach-enabled", "OriginalMultiAttachEnabled"},
      {"original-size", "OriginalSize"},
      {"original-volume-type", "OriginalVolumeType"},
      {"start-time", "StartTime"},
      {"target-iops", "TargetIops"},
      {"target-multi-attach-enabled", "TargetMultiAttachEnabled"},
      {"target-size", "TargetSize"},
      {"target-volume-type", "TargetVolumeType"},
      {"volume-id", "VolumeId"}};
  STRATA_ASSIGN_OR_RETURN(items,
                          control::ApplyPathFilters(args, std::move(items), kModificationPaths));
  return json{{"VolumesModifications", items}};
}

// EBS's InitializationStatusDetails for a volume created from a snapshot still arriving from a
// remote (docs/remote-format.md, lazy restore).
void AddInitializationStatus(Pool* pool, const std::string& volume_id, json* item) {
  Hydrations* h = Hydrations::Of(pool);
  std::optional<HydrationStatus> st = h ? h->StatusOf(volume_id) : std::nullopt;
  if (!st) {
    return;
  }
  json details = {{"InitializationType", st->rate_mibps > 0 ? "provisioned-rate" : "default"},
                  {"Progress", static_cast<int>(st->progress * 100)},
                  {"SnapshotId", st->snapshot_id},
                  {"Remote", st->remote},
                  {"BytesFetched", st->bytes_fetched}};
  if (st->eta_seconds >= 0) {
    details["EstimatedTimeToCompleteInSeconds"] = st->eta_seconds;
  }
  if (!st->last_error.empty()) {
    details["LastError"] = st->last_error;
  }
  (*item)["InitializationStatusDetails"] = details;
  (*item)["VolumeStatus"]["Details"].push_back(
      {{"Name", "initialization-state"}, {"Status", st->complete ? "completed" : "initializing"}});
}

// describe-volume-status: EC2's status items, plus each volume's CloudWatch AWS/EBS metrics.
Result<json> DescribeVolumeStatus(Compute* compute, const json& args) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "volume-ids"));
  if (ids.empty()) {
    for (const VolumeInfo& v : pool->ListVolumes()) {
      ids.push_back(v.volume_id);
    }
  }
  json items = json::array();
  for (const std::string& id : ids) {
    STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool->DescribeVolume(id));
    STRATA_ASSIGN_OR_RETURN(VolumeMetrics m, pool->DescribeVolumeMetrics(info.volume_id));
    json item = {{"VolumeId", info.volume_id},
                 {"AvailabilityZone", control::kZone},
                 {"VolumeStatus", {{"Status", "ok"}, {"Details", json::array()}}},
                 {"Actions", json::array()},
                 {"Events", json::array()},
                 {"Metrics", MetricsJson(m)}};
    AddInitializationStatus(pool, info.volume_id, &item);
    items.push_back(item);
  }
  // (EC2's filters; no volume here has events or actions: those match nothing)
  static const std::map<std::string, std::string> kPaths = {
      {"action.code", ""},
      {"action.description", ""},
      {"action.event-id", ""},
      {"availability-zone", "AvailabilityZone"},
      {"event.description", ""},
      {"event.event-id", ""},
      {"event.event-type", ""},
      {"event.not-after", ""},
      {"event.not-before", ""},
      {"volume-status.details-name", "VolumeStatus/Details[]/Name"},
      {"volume-status.details-status", "VolumeStatus/Details[]/Status"},
      {"volume-status.status", "VolumeStatus/Status"}};
  STRATA_ASSIGN_OR_RETURN(items, control::ApplyPathFilters(args, std::move(items), kPaths));
  return json{{"VolumeStatuses", items}};
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
                {"PartialChunks", i.partial_chunks},
                {"IoEngine", i.io_engine},
                {"DirectIo", i.direct_io},
                {"LatchedError", i.latched_error},
                {"ReadOnly", i.read_only}}}};
}

Result<json> PoolCheckCommand(Compute* compute, const json&) {
  Pool* pool = compute->pool();
  STRATA_ASSIGN_OR_RETURN(CheckReport r, pool->Check());
  for (std::string& problem : compute->CheckReferences()) {  // the EC2 layer's references
    r.problems.push_back(std::move(problem));
  }
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
  const Tags tags = compute->TagsOf(info.volume_id);  // Name: the volume's name (one truth)
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
  json out = {{"VolumeId", info.volume_id},
              {"Size", GiBCeil(info.size_bytes)},
              {"SizeBytes", info.size_bytes},
              {"State", attachment ? "in-use" : info.state},
              {"VolumeType", info.volume_type},
              {"SnapshotId", info.snapshot_id},
              {"CreateTime", IsoTime(info.create_time_ms)},
              {"AvailabilityZone", control::kZone},
              {"Encrypted", !info.encryption.empty()},
              {"FastRestored", false},
              {"MultiAttachEnabled", false},
              {"Attachments", attachments},
              {"Tags", control::TagsJson(tags)}};
  // As EC2 shows them: Iops for every type with an IOPS model (gp2: its baseline), Throughput
  // for gp3.
  const uint32_t iops =
      BaselineIops({info.volume_type, info.iops, info.throughput_mibps}, info.size_bytes);
  if (iops != 0) {
    out["Iops"] = iops;
  }
  if (info.throughput_mibps != 0) {
    out["Throughput"] = info.throughput_mibps;
  }
  if (!info.encryption.empty()) {
    out["KmsKeyId"] = DescribeEncryption(info.encryption).kms_key_arn;
  }
  return out;
}

json MetricsJson(const VolumeMetrics& m) {
  return json{{"VolumeReadOps", m.read_ops},
              {"VolumeWriteOps", m.write_ops},
              {"VolumeReadBytes", m.read_bytes},
              {"VolumeWriteBytes", m.write_bytes},
              {"VolumeTotalReadTime", m.total_read_time_s},
              {"VolumeTotalWriteTime", m.total_write_time_s},
              {"VolumeIdleTime", m.idle_time_s},
              {"VolumeQueueLength", m.queue_length},
              {"BurstBalance", m.burst_balance_percent},
              {"VolumeThroughputPercentage", m.throughput_percentage},
              {"VolumeConsumedReadWriteOps", m.consumed_read_write_ops},
              {"PeriodSeconds", m.uptime_s}};
}

Result<json> ExecuteControl(Compute* compute, const json& request) {
  static const control::HandlerTable kHandlers = [] {
    control::HandlerTable table = {
        {"create-volume", CreateVolume},
        {"describe-volumes", DescribeVolumes},
        {"delete-volume", DeleteVolume},
        {"modify-volume", ModifyVolume},
        {"describe-volumes-modifications", DescribeVolumesModifications},
        {"pool-info", PoolInfoCommand},
        {"pool-check", PoolCheckCommand},
        {"describe-volume-status", DescribeVolumeStatus},
    };
    control::AddSnapshotHandlers(&table);
    control::AddStreamHandlers(&table);
    control::AddComputeHandlers(&table);
    control::AddSecurityHandlers(&table);
    control::AddNetworkHandlers(&table);
    control::AddAttributeHandlers(&table);
    control::AddKmsHandlers(&table);
    control::AddRemoteHandlers(&table);
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
  STRATA_RETURN_IF_ERROR(control::CheckVerbArgs(it->first, args));
  // A handler reads JSON a client sent: a value of an unexpected type makes nlohmann throw.
  // No exception leaves a request; the client gets an error and the server goes on.
  try {
    return it->second(compute, args);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("malformed request: ") + e.what());
  }
}

}  // namespace strata
