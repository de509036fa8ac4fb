// Remote verbs (include/strata/remote.h): remote add/list/remove, copy-snapshot to a remote, and
// --remote on describe-snapshots, delete-snapshot and create-volume.
#include <chrono>

#include "strata/remote.h"

#include "control/control.h"
#include "control/handlers.h"

namespace strata {

namespace {

using nlohmann::json;

std::string PoolDir(Compute* compute) { return compute->pool()->Info().path; }

Result<std::unique_ptr<Remote>> OpenNamed(Compute* compute, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(RemoteSpec spec, FindRemote(PoolDir(compute), name));
  return Remote::Open(spec);
}

json RemoteSnapshotJson(const RemoteSnapshotInfo& i, const std::string& remote) {
  return json{{"SnapshotId", i.snapshot_id},
              {"VolumeId", i.volume_id},
              {"VolumeSize", control::GiBCeil(i.volume_size_bytes)},
              {"VolumeSizeBytes", i.volume_size_bytes},
              {"StartTime", IsoTime(i.start_time_ms)},
              {"State", i.state},
              {"Progress", i.state == "completed" ? "100%" : "0%"},
              {"Description", i.description},
              {"OwnerId", "remote:" + remote},
              {"Encrypted", false},
              {"StorageTier", "standard"},
              {"DataBlocks", i.data_blocks},
              {"BlockSize", i.block_size_bytes},
              {"ParentSnapshotId", i.parent_snapshot_id},
              {"Tags", json::array()}};
}

Result<json> AddRemoteCommand(Compute* compute, const json& args) {
  RemoteSpec spec;
  STRATA_ASSIGN_OR_RETURN(spec.name, control::StringArg(args, "name"));
  STRATA_ASSIGN_OR_RETURN(spec.url, control::StringArg(args, "url"));
  spec.endpoint_url = control::OptionalStringArg(args, "endpoint-url");
  if (std::string region = control::OptionalStringArg(args, "region"); !region.empty()) {
    spec.region = region;
  }
  STRATA_RETURN_IF_ERROR(AddRemote(PoolDir(compute), spec));
  return json{{"Remote",
               {{"Name", spec.name},
                {"Url", spec.url},
                {"EndpointUrl", spec.endpoint_url},
                {"Region", spec.region}}}};
}

Result<json> ListRemotesCommand(Compute* compute, const json&) {
  STRATA_ASSIGN_OR_RETURN(std::vector<RemoteSpec> remotes, ListRemotes(PoolDir(compute)));
  json out = json::array();
  for (const RemoteSpec& r : remotes) {
    out.push_back(
        {{"Name", r.name}, {"Url", r.url}, {"EndpointUrl", r.endpoint_url}, {"Region", r.region}});
  }
  return json{{"Remotes", out}};
}

Result<json> RemoveRemoteCommand(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "name"));
  STRATA_RETURN_IF_ERROR(RemoveRemote(PoolDir(compute), name));
  return json::object();
}

Result<json> CopySnapshot(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "source-snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "destination-remote"));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote, OpenNamed(compute, name));
  const auto start = std::chrono::steady_clock::now();
  STRATA_ASSIGN_OR_RETURN(PushStats s, remote->PushSnapshot(compute->pool(), id, nullptr));
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return json{{"SnapshotId", s.snapshot.snapshot_id},
              {"State", "completed"},
              {"Remote", name},
              {"AlreadyInRemote", s.already_there},
              {"ParentSnapshotId", s.snapshot.parent_snapshot_id},
              {"BlocksRead", s.blocks_read},
              {"BlocksUploaded", s.blocks_uploaded},
              {"BlocksDeduplicated", s.blocks_deduplicated},
              {"ZeroBlocks", s.zero_blocks},
              {"BytesUploaded", s.bytes_uploaded},
              {"Packs", s.packs},
              {"Seconds", secs}};
}

control::Handler WithRemote(control::Handler local, control::Handler remote) {
  return [local, remote](Compute* compute, const json& args) {
    return control::OptionalStringArg(args, "remote").empty() ? local(compute, args)
                                                              : remote(compute, args);
  };
}

Result<json> DescribeRemoteSnapshots(Compute* compute, const json& args) {
  const std::string name = control::OptionalStringArg(args, "remote");
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote, OpenNamed(compute, name));
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "snapshot-ids"));
  json out = json::array();
  if (!ids.empty()) {
    for (const std::string& id : ids) {
      STRATA_ASSIGN_OR_RETURN(RemoteSnapshotInfo info, remote->DescribeSnapshot(id));
      out.push_back(RemoteSnapshotJson(info, name));
    }
  } else {
    STRATA_ASSIGN_OR_RETURN(std::vector<RemoteSnapshotInfo> all, remote->ListSnapshots());
    for (const RemoteSnapshotInfo& info : all) {
      out.push_back(RemoteSnapshotJson(info, name));
    }
  }
  return json{{"Snapshots", out}};
}

Result<json> DeleteRemoteSnapshot(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote,
                          OpenNamed(compute, control::OptionalStringArg(args, "remote")));
  STRATA_ASSIGN_OR_RETURN(GcStats gc, remote->DeleteSnapshot(id));
  return json{{"PacksDeleted", gc.packs_deleted},
              {"NodesDeleted", gc.nodes_deleted},
              {"BytesFreed", gc.bytes_freed},
              {"Deferred", gc.deferred}};
}

Result<json> CreateVolumeFromRemote(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote,
                          OpenNamed(compute, control::OptionalStringArg(args, "remote")));
  VolumeSpec spec;
  spec.name = control::OptionalStringArg(args, "name");
  if (std::string type = control::OptionalStringArg(args, "volume-type"); !type.empty()) {
    spec.volume_type = type;
  }
  STRATA_ASSIGN_OR_RETURN(RestoreStats r,
                          remote->RestoreVolume(compute->pool(), id, spec, nullptr));
  json out = VolumeJson(compute, r.volume);
  out["SnapshotId"] = id;
  out["BlocksRestored"] = r.blocks;
  out["BytesDownloaded"] = r.bytes_downloaded;
  return out;
}

}  // namespace

namespace control {

// After the other handler tables: --remote picks the remote form of three existing verbs.
void AddRemoteHandlers(HandlerTable* table) {
  table->emplace("remote-add", AddRemoteCommand);
  table->emplace("remote-list", ListRemotesCommand);
  table->emplace("remote-remove", RemoveRemoteCommand);
  table->emplace("copy-snapshot", CopySnapshot);
  for (const auto& [verb, remote] :
       std::vector<std::pair<std::string, Handler>>{{"describe-snapshots", DescribeRemoteSnapshots},
                                                    {"delete-snapshot", DeleteRemoteSnapshot},
                                                    {"create-volume", CreateVolumeFromRemote}}) {
    (*table)[verb] = WithRemote((*table)[verb], remote);
  }
}

}  // namespace control

}  // namespace strata
