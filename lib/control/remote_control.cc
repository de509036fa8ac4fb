// Remote verbs (include/strata/remote.h): remote add/list/remove, copy-snapshot to a remote, and
// --remote on describe-snapshots, delete-snapshot and create-volume.
#include <chrono>

#include "strata/hydration.h"
#include "strata/remote.h"

#include "control/control.h"
#include "control/handlers.h"
#include "util/json_text.h"

namespace strata {

namespace {

using nlohmann::json;

std::string PoolDir(Compute* compute) { return compute->pool()->Info().path; }

Result<std::unique_ptr<Remote>> OpenNamed(Compute* compute, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(RemoteSpec spec, FindRemote(PoolDir(compute), name));
  return Remote::Open(spec);
}

json RemoteSnapshotJson(const RemoteSnapshotInfo& i, const std::string& remote) {
  json out{{"SnapshotId", i.snapshot_id},
           {"VolumeId", i.volume_id},
           {"VolumeSize", control::GiBCeil(i.volume_size_bytes)},
           {"VolumeSizeBytes", i.volume_size_bytes},
           {"StartTime", IsoTime(i.start_time_ms)},
           {"State", i.state},
           {"Progress", i.state == "completed" ? "100%" : "0%"},
           {"Description", i.description},
           {"OwnerId", "remote:" + remote},
           {"StorageTier", "standard"},
           {"DataBlocks", i.data_blocks},
           {"BlockSize", i.block_size_bytes},
           {"ParentSnapshotId", i.parent_snapshot_id},
           {"Tags", control::TagsJson(i.tags)}};
  const EncryptionInfo enc = DescribeEncryption(i.encryption);
  out["Encrypted"] = enc.encrypted;
  if (enc.encrypted) {
    out["KmsKeyId"] = enc.kms_key_arn;
    out["DataEncryptionKeyId"] = enc.data_key_id;
  }
  return out;
}

// An encrypted remote snapshot arrives whole, as a local snapshot of the same id (a lazy restore
// names blocks by plaintext hashes only), its data key wrapped for this pool's KMS; a plaintext
// one: nullopt, for the caller's own way.
Result<std::optional<SnapshotInfo>> PullIfEncrypted(Compute* compute, Remote* remote,
                                                    const std::string& id,
                                                    const RemoteProgress& progress) {
  STRATA_ASSIGN_OR_RETURN(RemoteSnapshotInfo info, remote->DescribeSnapshot(id));
  if (info.encryption.empty()) {
    return std::optional<SnapshotInfo>();
  }
  STRATA_ASSIGN_OR_RETURN(RemoteEncryption enc,
                          compute->RemoteEncryptionToRestore(id, info.encryption));
  STRATA_ASSIGN_OR_RETURN(SnapshotInfo pulled,
                          remote->PullSnapshot(compute->pool(), id, enc, progress));
  return std::optional<SnapshotInfo>(std::move(pulled));
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

Result<json> CopySnapshotWith(Compute* compute, const json& args, const RemoteProgress& progress) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "source-snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "destination-remote"));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote, OpenNamed(compute, name));
  const auto start = std::chrono::steady_clock::now();
  STRATA_ASSIGN_OR_RETURN(RemoteEncryption enc, compute->RemoteEncryptionToPush(id));
  STRATA_ASSIGN_OR_RETURN(
      PushStats s, remote->PushSnapshot(compute->pool(), id, compute->TagsOf(id), enc, progress));
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
              {"PiecesBorrowed", s.pieces_borrowed},
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

// An image record read from a remote (anyone with access to the bucket may have written it):
// every field this layer reads must have its type, so that reading it cannot throw.
Result<json> ParseImageRecord(const std::string& text, const std::string& remote) {
  json r = json::parse(text, nullptr, false);
  const auto typed = [](const json& o, const char* key, bool (json::*is)() const noexcept) {
    return !o.contains(key) || (o[key].*is)();
  };
  bool ok = r.is_object() && r.value("ImageId", json()).is_string() &&
            r.value("BlockDeviceMappings", json()).is_array();
  for (const char* key : {"Name", "Description", "RootDeviceName", "RootDeviceType"}) {
    ok = ok && typed(r, key, &json::is_string);
  }
  for (const json& m : ok ? r["BlockDeviceMappings"] : json::array()) {
    ok = ok && m.is_object() && typed(m, "DeviceName", &json::is_string) &&
         typed(m, "VirtualName", &json::is_string) && typed(m, "Ebs", &json::is_object);
    const json ebs = ok ? m.value("Ebs", json::object()) : json::object();
    ok = ok && typed(ebs, "SnapshotId", &json::is_string) &&
         typed(ebs, "VolumeType", &json::is_string) &&
         typed(ebs, "DeleteOnTermination", &json::is_boolean);
    for (const char* key : {"VolumeSize", "Iops", "Throughput"}) {
      ok = ok && typed(ebs, key, &json::is_number_unsigned) &&
           (!ebs.contains(key) || ebs[key].get<uint64_t>() <= UINT32_MAX);
    }
  }
  if (!ok) {
    return Status::Corruption("remote " + remote + ": an image record is malformed");
  }
  return r;
}

json GcJson(const GcStats& gc) {
  return json{{"PacksDeleted", gc.packs_deleted},
              {"OrphanPacksDeleted", gc.orphans_deleted},
              {"NodesDeleted", gc.nodes_deleted},
              {"BytesFreed", gc.bytes_freed},
              {"Deferred", gc.deferred}};
}

Result<json> DeleteRemoteSnapshot(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote,
                          OpenNamed(compute, control::OptionalStringArg(args, "remote")));
  // As in a pool: a snapshot an image maps cannot go while the image is registered.
  STRATA_ASSIGN_OR_RETURN(std::vector<std::string> images, remote->ListRecords("images"));
  for (const std::string& text : images) {
    STRATA_ASSIGN_OR_RETURN(json image,
                            ParseImageRecord(text, control::OptionalStringArg(args, "remote")));
    for (const json& m : image["BlockDeviceMappings"]) {
      if (m.value("Ebs", json::object()).value("SnapshotId", "") == id) {
        return Status::Busy("snapshot " + id + " is in use by remote image " +
                            image.value("ImageId", "") + " (deregister-image --remote first)");
      }
    }
  }
  STRATA_ASSIGN_OR_RETURN(GcStats gc, remote->DeleteSnapshot(id));
  return GcJson(gc);
}

Result<json> CollectRemoteGarbage(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "remote"));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote, OpenNamed(compute, name));
  STRATA_ASSIGN_OR_RETURN(GcStats gc, remote->CollectGarbage());
  return GcJson(gc);
}

Result<json> DeregisterRemoteImage(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "image-id"));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote,
                          OpenNamed(compute, control::OptionalStringArg(args, "remote")));
  STRATA_RETURN_IF_ERROR(remote->DeleteRecord("images", id));
  return json::object();
}

// --initialization-rate MiB/s: < 0 (absent) unlimited, 0 on demand only.
Result<double> RateArg(const json& args) {
  const std::string text = control::OptionalStringArg(args, "initialization-rate");
  if (text.empty()) {
    return -1.0;
  }
  char* end = nullptr;
  const double rate = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !(rate >= 0) || rate > 1e6) {
    return Status::InvalidArgument("--initialization-rate is MiB/s, 0 (on demand only) or more");
  }
  return rate;
}

// create-volume --remote: the remote snapshot becomes a local snapshot of the same id at once
// (its blocks arrive lazily: include/strata/hydration.h) and the volume is a clone of it. With
// --wait the call returns once every block is here.
Result<json> CreateVolumeLazily(Compute* compute, Hydrations* h, const json& args,
                                const RemoteProgress& progress) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(RemoteSpec spec,
                          FindRemote(PoolDir(compute), control::OptionalStringArg(args, "remote")));
  STRATA_ASSIGN_OR_RETURN(double rate, RateArg(args));
  const bool fresh = !compute->pool()->DescribeSnapshot(id).ok();
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote, Remote::Open(spec));
  STRATA_ASSIGN_OR_RETURN(std::optional<SnapshotInfo> whole,
                          fresh ? PullIfEncrypted(compute, remote.get(), id, progress)
                                : Result<std::optional<SnapshotInfo>>(std::nullopt));
  STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap,
                          whole ? Result<SnapshotInfo>(*whole) : h->Begin(spec, id, rate));
  json local = args;
  local.erase("remote");
  local.erase("initialization-rate");
  local.erase("wait");
  local["snapshot-id"] = snap.snapshot_id;
  STRATA_ASSIGN_OR_RETURN(json out,
                          ExecuteControl(compute, {{"command", "create-volume"}, {"args", local}}));
  if (args.value("wait", false)) {
    Status waited = h->Wait(id, 60'000, [&progress](const HydrationStatus& st) {
      if (progress) {
        progress(st.fetched_blocks * (512 << 10), st.data_blocks * (512 << 10));
      }
    });
    if (!waited.ok()) {  // the volume the caller waited for is not left behind, nor the restore
      Status cleanup = compute->pool()->DeleteVolume(out["VolumeId"].get<std::string>());
      if (cleanup.ok() && fresh) {
        cleanup = h->Abort(id);
      }
      (void)cleanup;
      return waited;
    }
  }
  out["SnapshotId"] = id;
  if (std::optional<HydrationStatus> st = h->StatusOf(id)) {
    out["InitializationProgress"] = static_cast<int>(st->progress * 100);
  }
  return out;
}

Result<json> CreateVolumeFromRemoteWith(Compute* compute, const json& args,
                                        const RemoteProgress& progress) {
  if (Hydrations* h = Hydrations::Of(compute->pool())) {
    return CreateVolumeLazily(compute, h, args, progress);
  }
  // No restore service in this process (a library user without Hydrations): copied eagerly.
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote,
                          OpenNamed(compute, control::OptionalStringArg(args, "remote")));
  VolumeSpec spec;
  spec.name = control::OptionalStringArg(args, "name");
  if (std::string type = control::OptionalStringArg(args, "volume-type"); !type.empty()) {
    spec.volume_type = type;
  }
  STRATA_ASSIGN_OR_RETURN(RemoteSnapshotInfo info, remote->DescribeSnapshot(id));
  STRATA_ASSIGN_OR_RETURN(RemoteEncryption enc,
                          compute->RemoteEncryptionToRestore(id, info.encryption));
  STRATA_ASSIGN_OR_RETURN(RestoreStats r,
                          remote->RestoreVolume(compute->pool(), id, spec, enc, progress));
  json out = VolumeJson(compute, r.volume);
  out["SnapshotId"] = id;
  out["BlocksRestored"] = r.blocks;
  out["BytesDownloaded"] = r.bytes_downloaded;
  return out;
}

// An image goes with every snapshot it maps, then its DescribeImages item as a record.
Result<json> CopyImage(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "source-image-id"));
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "destination-remote"));
  STRATA_ASSIGN_OR_RETURN(ImageInfo image, compute->DescribeImage(id));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote, OpenNamed(compute, name));
  json snapshots = json::array();
  for (const BlockDeviceMapping& m : image.mappings) {
    if (!m.snapshot_id.empty()) {
      STRATA_ASSIGN_OR_RETURN(RemoteEncryption enc, compute->RemoteEncryptionToPush(m.snapshot_id));
      STRATA_ASSIGN_OR_RETURN(PushStats pushed,
                              remote->PushSnapshot(compute->pool(), m.snapshot_id,
                                                   compute->TagsOf(m.snapshot_id), enc, nullptr));
      snapshots.push_back({{"SnapshotId", m.snapshot_id},
                           {"BytesUploaded", pushed.bytes_uploaded},
                           {"AlreadyInRemote", pushed.already_there}});
    }
  }
  const json item = control::ImageItemJson(compute->pool(), image);
  Status s = remote->PutRecord("images", id, DumpJson(item));
  if (!s.ok() && s.code() != Status::Code::kAlreadyExists) {
    return s;
  }
  return json{
      {"ImageId", id}, {"Remote", name}, {"AlreadyInRemote", !s.ok()}, {"Snapshots", snapshots}};
}

Result<json> DescribeRemoteImages(Compute* compute, const json& args) {
  const std::string name = control::OptionalStringArg(args, "remote");
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote, OpenNamed(compute, name));
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "image-ids"));
  std::vector<std::string> texts;
  if (ids.empty()) {
    STRATA_ASSIGN_OR_RETURN(texts, remote->ListRecords("images"));
  }
  for (const std::string& id : ids) {
    STRATA_ASSIGN_OR_RETURN(std::string text, remote->GetRecord("images", id));
    texts.push_back(text);
  }
  json items = json::array();
  for (const std::string& text : texts) {
    STRATA_ASSIGN_OR_RETURN(json item, ParseImageRecord(text, name));
    item["OwnerId"] = "remote:" + name;
    items.push_back(item);
  }
  return json{{"Images", items}};
}

// One mapping of a remote image's record, its snapshot pulled into this pool.
Result<BlockDeviceMapping> PullMapping(Compute* compute, Remote* remote,
                                       const RemoteSpec& remote_spec, const json& m,
                                       double rate_mibps) {
  BlockDeviceMapping out;
  out.device_name = m.value("DeviceName", "");
  out.virtual_name = m.value("VirtualName", "");
  uint64_t snapshot_bytes = 0;
  if (out.virtual_name.empty()) {
    const json ebs = m.value("Ebs", json::object());
    if (const std::string snap = ebs.value("SnapshotId", ""); !snap.empty()) {
      Hydrations* h = Hydrations::Of(compute->pool());
      // Lazily where a restore service runs: every instance clones the one arriving snapshot.
      // An encrypted one arrives whole.
      STRATA_ASSIGN_OR_RETURN(std::optional<SnapshotInfo> whole,
                              PullIfEncrypted(compute, remote, snap, nullptr));
      STRATA_ASSIGN_OR_RETURN(SnapshotInfo pulled,
                              whole ? Result<SnapshotInfo>(*whole)
                              : h   ? h->Begin(remote_spec, snap, rate_mibps)
                                    : remote->PullSnapshot(compute->pool(), snap, {}, nullptr));
      out.snapshot_id = pulled.snapshot_id;
      snapshot_bytes = pulled.volume_size_bytes;
    }
    out.volume_size_gib = ebs.value("VolumeSize", uint64_t{0});
    if (out.volume_size_gib == control::GiBCeil(snapshot_bytes)) {
      out.volume_size_gib = 0;  // DescribeImages shows the snapshot's size in GiB: keep it exact
    }
    out.volume_type = ebs.value("VolumeType", std::string("gp3"));
    out.iops = ebs.value("Iops", uint32_t{0});
    out.throughput_mibps = ebs.value("Throughput", uint32_t{0});
    out.delete_on_termination = ebs.value("DeleteOnTermination", false);
  }
  return out;
}

// The local image pulled from a remote image (once: later launches find it by its tag, and
// the rate is the first launch's: the instances share the one restore).
Result<std::string> PullImage(Compute* compute, const std::string& remote_name,
                              const std::string& image_id, double rate_mibps) {
  for (const ImageInfo& image : compute->ListImages()) {
    auto tag = image.tags.find("strata:source-image-id");
    if (tag != image.tags.end() && tag->second == image_id) {
      return image.image_id;
    }
  }
  STRATA_ASSIGN_OR_RETURN(RemoteSpec remote_spec, FindRemote(PoolDir(compute), remote_name));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Remote> remote, Remote::Open(remote_spec));
  STRATA_ASSIGN_OR_RETURN(std::string text, remote->GetRecord("images", image_id));
  STRATA_ASSIGN_OR_RETURN(json record, ParseImageRecord(text, remote_name));
  ImageSpec spec;
  spec.name = record.value("Name", image_id);
  spec.description = record.value("Description", "");
  spec.root_device_name = record.value("RootDeviceName", std::string("/dev/xvda"));
  spec.root_device_type = record.value("RootDeviceType", std::string("ebs"));
  for (const json& m : record["BlockDeviceMappings"]) {
    STRATA_ASSIGN_OR_RETURN(BlockDeviceMapping mapping,
                            PullMapping(compute, remote.get(), remote_spec, m, rate_mibps));
    spec.mappings.push_back(mapping);
  }
  spec.tags = {{"strata:source-image-id", image_id}, {"strata:source-remote", remote_name}};
  STRATA_ASSIGN_OR_RETURN(ImageInfo local, compute->RegisterImage(spec));
  return local.image_id;
}

Result<json> CopySnapshot(Compute* compute, const json& args) {
  return CopySnapshotWith(compute, args, nullptr);
}

Result<json> CreateVolumeFromRemote(Compute* compute, const json& args) {
  return CreateVolumeFromRemoteWith(compute, args, nullptr);
}

}  // namespace

bool IsRemoteTransfer(const json& request) {
  if (!request.is_object() || !request.value("command", json()).is_string()) {
    return false;
  }
  const std::string command = request["command"].get<std::string>();
  const json args = request.value("args", json::object());
  return command == "copy-snapshot" || (command == "create-volume" && args.is_object() &&
                                        !control::OptionalStringArg(args, "remote").empty());
}

Result<json> ExecuteRemoteTransfer(Compute* compute, const json& request,
                                   const std::function<void(uint64_t, uint64_t)>& progress) {
  const json args = request.value("args", json::object());
  return request["command"].get<std::string>() == "copy-snapshot"
             ? CopySnapshotWith(compute, args, progress)
             : CreateVolumeFromRemoteWith(compute, args, progress);
}

namespace control {

// After the other handler tables: --remote picks the remote form of three existing verbs.
void AddRemoteHandlers(HandlerTable* table) {
  table->emplace("remote-add", AddRemoteCommand);
  table->emplace("remote-list", ListRemotesCommand);
  table->emplace("remote-remove", RemoveRemoteCommand);
  table->emplace("remote-gc", CollectRemoteGarbage);
  table->emplace("copy-snapshot", CopySnapshot);
  table->emplace("copy-image", CopyImage);
  for (const auto& [verb, remote] :
       std::vector<std::pair<std::string, Handler>>{{"describe-snapshots", DescribeRemoteSnapshots},
                                                    {"delete-snapshot", DeleteRemoteSnapshot},
                                                    {"create-volume", CreateVolumeFromRemote},
                                                    {"describe-images", DescribeRemoteImages},
                                                    {"deregister-image", DeregisterRemoteImage}}) {
    (*table)[verb] = WithRemote((*table)[verb], remote);
  }
  // run-instances of a remote image: the image and its snapshots are pulled once, then launched.
  const Handler run = (*table)["run-instances"];
  (*table)["run-instances"] =
      WithRemote(run, [run](Compute* compute, const json& args) -> Result<json> {
        STRATA_ASSIGN_OR_RETURN(std::string image_id, control::StringArg(args, "image-id"));
        STRATA_ASSIGN_OR_RETURN(double rate, RateArg(args));
        STRATA_ASSIGN_OR_RETURN(
            std::string local,
            PullImage(compute, control::OptionalStringArg(args, "remote"), image_id, rate));
        json local_args = args;
        local_args.erase("remote");
        local_args.erase("initialization-rate");
        local_args["image-id"] = local;
        return run(compute, local_args);
      });
}

}  // namespace control

}  // namespace strata
