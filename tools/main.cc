// strata: the command-line interface. AWS CLI verbs, EC2-shaped JSON answers.
//
// Exit codes: 0 success; 1 the operation failed (one line on stderr names the problem, nothing
// was changed); 2 the command line is malformed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "strata/compute.h"
#include "strata/hydration.h"
#include "strata/pool.h"

#include "control/control.h"
#include "control/control_socket.h"
#include "output.h"
#include "util/text.h"
#include "util/units.h"

namespace {

using nlohmann::json;
using strata::Status;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

std::string DefaultPoolDir() {
  if (const char* env = std::getenv("STRATA_POOL"); env != nullptr && env[0] != '\0') {
    return env;
  }
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && xdg[0] != '\0') {
    return std::string(xdg) + "/strata/pool";
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.local/share/strata/pool";
}

// Error lines may quote what a user or a stream supplied: shown escaped, as one line.
int FailWith(const std::string& message) {
  std::fprintf(stderr, "strata: error: %s\n", strata::EscapeText(message, 4096).c_str());
  return kExitFailed;
}

int Fail(const Status& s) { return FailWith(s.ToString()); }

// This process exits after one request: it cannot hold instance-store data for anyone.
strata::ComputeOptions LocalComputeOptions() {
  strata::ComputeOptions options;
  options.hosts_instance_store = false;
  return options;
}

int CreatePool(const std::string& dir, const std::string& chunk_text,
               const std::string& capacity_text) {
  strata::PoolOptions options;
  auto chunk = strata::ParseSize(chunk_text, 1);
  if (!chunk.ok()) {
    return Fail(chunk.status().WithContext("--chunk-size"));
  }
  if (*chunk > UINT32_MAX) {
    return Fail(Status::InvalidArgument("--chunk-size: at most 1 MiB"));
  }
  options.chunk_size_bytes = static_cast<uint32_t>(*chunk);
  if (!capacity_text.empty()) {
    auto capacity = strata::ParseSize(capacity_text, 1ull << 30);
    if (!capacity.ok()) {
      return Fail(capacity.status().WithContext("--capacity"));
    }
    options.capacity_bytes = *capacity;
  }
  Status s = strata::Pool::Create(dir, options);
  if (!s.ok()) {
    return Fail(s);
  }
  auto pool = strata::Pool::Open(dir, options);
  if (!pool.ok()) {
    return Fail(pool.status());
  }
  auto compute = strata::Compute::Open(pool->get(), LocalComputeOptions());
  if (!compute.ok()) {
    return Fail(compute.status());
  }
  // The CA that signs x509 key pairs (docs/security.md "Key pairs"), made with the pool.
  if (auto ca = (*compute)->KeyPairCaCertificate(); !ca.ok()) {
    return Fail(ca.status());
  }
  auto info = strata::ExecuteControl(compute->get(), json{{"command", "pool-info"}});
  if (!info.ok()) {
    return Fail(info.status());
  }
  std::cout << info->dump(2) << "\n";
  return 0;
}

// Runs a control request: through the control socket when strata-nbd holds the pool, else on
// the pool opened by this process. Output and errors are the same either way.
int RunRequest(const std::string& dir, const json& request, const std::string& output,
               bool reply_to_stderr = false) {
  std::ostream& out = reply_to_stderr ? std::cerr : std::cout;
  auto remote = strata::CallControl(dir, request);
  if (remote.ok()) {
    if (!(*remote)["ok"].get<bool>()) {
      const json& error = (*remote)["error"];
      return FailWith(error.is_string() ? error.get<std::string>() : "malformed error reply");
    }
    strata::PrintReply((*remote)["result"], output, out);
    return 0;
  }
  if (remote.status().code() != strata::Status::Code::kNotFound) {
    return Fail(remote.status());
  }
  strata::PoolOptions options;
  auto pool = strata::Pool::Open(dir, options);
  if (!pool.ok()) {
    return Fail(pool.status());
  }
  auto compute = strata::Compute::Open(pool->get(), LocalComputeOptions());
  if (!compute.ok()) {
    return Fail(compute.status());
  }
  // Restores from remotes under way: their volumes read (and new ones start) here too. Only
  // create-volume --wait fetches in the background: this process ends with its request.
  strata::HydrationOptions hydration;
  hydration.background = request.contains("args") && request["args"].value("wait", false);
  hydration.log = [](const std::string&) {};  // failures reach the user in the reply
  auto hydrations = strata::Hydrations::Start(pool->get(), hydration);
  if (!hydrations.ok()) {
    return Fail(hydrations.status());
  }
  // Run here: stream and remote transfers get a progress bar and may use stdin/stdout. The bar
  // ends its line before the reply is printed.
  auto reply = [&] {
    strata::ProgressBar bar(request.value("command", ""));
    return strata::ExecuteStreamCommand(
        compute->get(), request,
        [&bar](uint64_t done, uint64_t total) { bar.Update(done, total); });
  }();
  if (!reply.ok()) {
    return Fail(reply.status());
  }
  strata::PrintReply(*reply, output, out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"strata: EBS-style volumes, snapshots and images on one host"};
  app.require_subcommand(1);
  app.fallthrough();
  std::string pool_dir = DefaultPoolDir();
  std::string output = "json";
  app.add_option(
      "--pool", pool_dir,
      "pool directory (default $STRATA_POOL, else " + std::string("~/.local/share/strata/pool)"));
  app.add_option("--output", output, "json, table or text")
      ->check(CLI::IsMember({"json", "table", "text"}));

  json request;
  auto* pool_cmd = app.add_subcommand("pool", "create, inspect and check a pool");
  pool_cmd->require_subcommand(1);
  std::string chunk_size = "64KiB", capacity;
  auto* pool_create = pool_cmd->add_subcommand("create", "create a pool in --pool DIR");
  pool_create->add_option("--chunk-size", chunk_size, "4KiB..1MiB, power of two (64KiB)");
  pool_create->add_option("--capacity", capacity, "upper bound on stored data (default none)");
  pool_cmd->add_subcommand("info", "space, engine and counters");
  pool_cmd->add_subcommand("check", "verify every metadata invariant and the space accounting");

  std::string size, name, volume_type = "gp3", volume_id;
  std::vector<std::string> volume_ids;
  std::string snapshot_id, description;
  auto* create = app.add_subcommand("create-volume", "create a thin volume");
  create->add_option("--size", size,
                     "GiB (as EBS) or with a unit: 256MiB, 2GiB (default with --snapshot-id: "
                     "the snapshot's size)");
  create->add_option("--snapshot-id", snapshot_id, "an instant copy-on-write clone of a snapshot");
  create->add_option("--name", name, "the Name tag");
  create->add_option("--volume-type", volume_type,
                     "gp2|gp3|io1|io2|st1|sc1|standard|unlimited (gp3); docs/volume-types.md");
  std::string iops, throughput;
  create->add_option("--iops", iops, "provisioned IOPS (gp3 3000-80000, io1, io2: required)");
  create->add_option("--throughput", throughput, "gp3 MiB/s, 125-2000 (125)");
  std::string initialization_rate;
  bool wait_restore = false;
  create->add_option("--initialization-rate", initialization_rate,
                     "with --remote: background restore rate in MiB/s (default unlimited; 0: "
                     "blocks arrive only when read)");
  create->add_flag("--wait", wait_restore,
                   "with --remote: return once every block of the snapshot is here");
  std::vector<std::string> tag_specs, filters;
  auto add_tag_specs = [&](CLI::App* cmd) {
    cmd->add_option("--tag-specifications", tag_specs,
                    "ResourceType=TYPE,Tags=[{Key=k,Value=v},...] (one per type)");
  };
  auto add_filters = [&](CLI::App* cmd) {
    cmd->add_option("--filters", filters, "Name=NAME,Values=V1,V2 ... (tag:KEY, state, ...)");
  };
  add_tag_specs(create);
  auto* describe = app.add_subcommand("describe-volumes", "list volumes");
  describe->add_option("--volume-ids", volume_ids, "ids (or unique names) to show");
  add_filters(describe);
  auto* del = app.add_subcommand("delete-volume", "delete a volume and free its space");
  del->add_option("--volume-id", volume_id, "volume id")->required();
  auto* modify = app.add_subcommand("modify-volume",
                                    "grow a volume or change its type, IOPS, throughput, live");
  modify->add_option("--volume-id", volume_id, "volume id")->required();
  modify->add_option("--size", size, "new size, GiB or with a unit");
  std::string new_type;
  modify->add_option("--volume-type", new_type, "new type");
  modify->add_option("--iops", iops, "new provisioned IOPS");
  modify->add_option("--throughput", throughput, "new gp3 throughput, MiB/s");
  auto* volume_status = app.add_subcommand("describe-volume-status",
                                           "status and CloudWatch AWS/EBS metrics of volumes");
  volume_status->add_option("--volume-ids", volume_ids, "ids (default: all)");

  // Snapshots: the EC2 verbs, and the EBS direct APIs' block listings.
  std::vector<std::string> snapshot_ids;
  std::string first_snapshot, second_snapshot, block_size, max_results, next_token, block_index,
      outfile;
  auto* snap = app.add_subcommand("create-snapshot", "crash-consistent snapshot of a volume");
  snap->add_option("--volume-id", volume_id, "volume id or unique name")->required();
  snap->add_option("--description", description, "free text (255 bytes)");
  add_tag_specs(snap);
  auto* snaps = app.add_subcommand("create-snapshots",
                                   "one crash-consistent point in time across several volumes");
  snaps->add_option("--volume-ids", volume_ids, "volume ids or unique names")->required();
  snaps->add_option("--description", description, "free text (255 bytes)");
  add_tag_specs(snaps);
  auto* describe_snaps = app.add_subcommand(
      "describe-snapshots", "list snapshots (named ones with their space accounting)");
  describe_snaps->add_option("--snapshot-ids", snapshot_ids, "ids to show, with space accounting");
  describe_snaps->add_option("--volume-ids", volume_ids, "only snapshots of these volumes");
  add_filters(describe_snaps);
  auto* del_snap = app.add_subcommand("delete-snapshot",
                                      "delete any snapshot; space is reclaimed "
                                      "in the background");
  del_snap->add_option("--snapshot-id", snapshot_id, "snapshot id")->required();
  auto add_page = [&](CLI::App* cmd) {
    cmd->add_option("--block-size", block_size, "bytes: the chunk size (default) or a multiple");
    cmd->add_option("--max-results", max_results, "blocks per page, 1..10000 (10000)");
    cmd->add_option("--next-token", next_token, "NextToken of the previous page");
  };
  auto* list_blocks = app.add_subcommand("list-snapshot-blocks", "blocks holding data");
  list_blocks->add_option("--snapshot-id", snapshot_id, "snapshot id")->required();
  add_page(list_blocks);
  auto* list_changed = app.add_subcommand("list-changed-blocks",
                                          "blocks that differ between two snapshots of a volume");
  list_changed->add_option("--first-snapshot-id", first_snapshot, "the older snapshot");
  list_changed->add_option("--second-snapshot-id", second_snapshot, "the newer snapshot")
      ->required();
  add_page(list_changed);
  auto* get_block = app.add_subcommand("get-snapshot-block", "read one block into a file");
  get_block->add_option("--snapshot-id", snapshot_id, "snapshot id")->required();
  get_block->add_option("--block-index", block_index, "block index")->required();
  get_block->add_option("--block-size", block_size, "bytes: the chunk size or a multiple");
  get_block->add_option("--outfile", outfile, "where the block's bytes go")->required();

  // Portable streams (docs/stream-format.md).
  std::string base_snapshot, stream_output, stream_input, level;
  auto* exp = app.add_subcommand("export-snapshot", "write a snapshot as a portable stream");
  exp->add_option("--snapshot-id", snapshot_id, "snapshot id")->required();
  exp->add_option("--base-snapshot-id", base_snapshot, "incremental: only what changed since it");
  exp->add_option("--output", stream_output, "FILE, or - for stdout")->required();
  exp->add_option("--compression-level", level, "zstd level 1..19 (1)");
  auto* imp = app.add_subcommand("import-snapshot", "create a snapshot from a stream");
  imp->add_option("--input", stream_input, "FILE, or - for stdin")->required();

  // Images and instances (docs/compute.md).
  std::vector<std::string> mappings, image_ids, instance_ids, resources, tags;
  std::string image_id, instance_id, root_device_name, root_device_type, instance_type, count,
      device, image_input;
  bool disable_termination = false, enable_termination = false, no_reboot = false;
  auto* reg = app.add_subcommand("register-image", "register an image (AMI) from snapshots");
  reg->add_option("--name", name, "unique image name")->required();
  reg->add_option("--description", description, "free text");
  reg->add_option("--root-device-name", root_device_name, "(/dev/xvda)");
  reg->add_option("--root-device-type", root_device_type,
                  "ebs (default) or instance-store: the root is filled from its snapshot at "
                  "launch into instance store");
  reg->add_option("--block-device-mappings", mappings,
                  "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-…,VolumeSize=8,VolumeType=gp3,"
                  "DeleteOnTermination=true} or DeviceName=/dev/sdb,VirtualName=ephemeral0")
      ->required();
  add_tag_specs(reg);
  auto* desc_images = app.add_subcommand("describe-images", "list images");
  desc_images->add_option("--image-ids", image_ids, "ids to show");
  add_filters(desc_images);
  auto* dereg = app.add_subcommand("deregister-image", "deregister an image (snapshots stay)");
  dereg->add_option("--image-id", image_id, "image id")->required();
  auto* create_image = app.add_subcommand(
      "create-image", "snapshot every EBS volume of an instance at one point; register them");
  create_image->add_option("--instance-id", instance_id, "instance id")->required();
  create_image->add_option("--name", name, "unique image name")->required();
  create_image->add_option("--description", description, "free text");
  create_image->add_flag("--no-reboot", no_reboot,
                         "accepted; snapshots are crash-consistent with or without a reboot");
  add_tag_specs(create_image);
  auto* import_image =
      app.add_subcommand("import-image", "a raw disk image file into a snapshot and an image");
  import_image->add_option("--input", image_input, "raw disk image FILE")->required();
  import_image->add_option("--name", name, "unique image name")->required();
  import_image->add_option("--description", description, "free text");
  import_image->add_option("--root-device-name", root_device_name, "(/dev/xvda)");
  import_image->add_option("--root-device-type", root_device_type, "ebs or instance-store");
  add_tag_specs(import_image);
  auto* run = app.add_subcommand("run-instances", "launch instances from an image");
  run->add_option("--image-id", image_id, "image id")->required();
  run->add_option("--count", count, "how many (1)");
  run->add_option("--instance-type", instance_type,
                  "t3.micro (default), m5d.large, ... (describe-instance-types)");
  run->add_flag("--disable-api-termination", disable_termination, "termination protection");
  run->add_option("--initialization-rate", initialization_rate,
                  "with --remote: the image's background restore rate in MiB/s (EC2's "
                  "VolumeInitializationRate; default unlimited; 0: blocks arrive when read)");
  add_tag_specs(run);
  auto* desc_instances = app.add_subcommand("describe-instances", "list instances");
  desc_instances->add_option("--instance-ids", instance_ids, "ids to show");
  add_filters(desc_instances);
  std::vector<std::pair<CLI::App*, const char*>> state_verbs;
  for (const char* verb :
       {"stop-instances", "start-instances", "reboot-instances", "terminate-instances"}) {
    auto* cmd = app.add_subcommand(verb, std::string(verb) + " (EC2 storage semantics)");
    cmd->add_option("--instance-ids", instance_ids, "instance ids")->required();
    state_verbs.emplace_back(cmd, verb);
  }
  auto* modify_attr =
      app.add_subcommand("modify-instance-attribute", "termination protection on or off");
  modify_attr->add_option("--instance-id", instance_id, "instance id")->required();
  modify_attr->add_flag("--disable-api-termination", disable_termination, "protect");
  modify_attr->add_flag("--no-disable-api-termination", enable_termination, "unprotect");
  std::vector<std::string> group_ids;
  modify_attr->add_option("--groups", group_ids, "security group ids (replace the instance's)");
  run->add_option("--security-group-ids", group_ids,
                  "security groups guarding the instance's exports (docs/security.md)");
  // Key pairs (docs/security.md): the TLS identity an instance's clients must prove.
  std::string key_name, key_type, key_material_file;
  std::vector<std::string> key_names;
  run->add_option("--key-name", key_name, "a key pair its clients must prove over TLS");
  auto* create_key = app.add_subcommand("create-key-pair", "a TLS identity; KeyMaterial once");
  create_key->add_option("--key-name", key_name, "unique name")->required();
  create_key->add_option("--key-type", key_type, "x509 (client certificate, default) or psk");
  auto* import_key = app.add_subcommand("import-key-pair", "a client certificate you hold");
  import_key->add_option("--key-name", key_name, "unique name")->required();
  import_key
      ->add_option("--public-key-material", key_material_file,
                   "FILE (or fileb://FILE): the X.509 certificate, PEM")
      ->required();
  auto* describe_keys = app.add_subcommand("describe-key-pairs", "key pairs");
  describe_keys->add_option("--key-names", key_names, "names to show");
  auto* delete_key = app.add_subcommand("delete-key-pair", "forget a key pair");
  delete_key->add_option("--key-name", key_name, "name")->required();
  // Security groups (docs/security.md): who may connect to an instance's exports.
  std::string group_name, group_id, protocol = "tcp", port, cidr;
  auto* create_sg = app.add_subcommand("create-security-group", "a group of inbound rules");
  create_sg->add_option("--group-name", group_name, "unique name")->required();
  create_sg->add_option("--description", description, "free text")->required();
  auto* describe_sg = app.add_subcommand("describe-security-groups", "groups and their rules");
  describe_sg->add_option("--group-ids", group_ids, "ids to show");
  auto* delete_sg = app.add_subcommand("delete-security-group", "delete an unused group");
  delete_sg->add_option("--group-id", group_id, "sg-…")->required();
  std::vector<std::pair<CLI::App*, const char*>> ingress_verbs;
  for (const char* verb : {"authorize-security-group-ingress", "revoke-security-group-ingress"}) {
    auto* cmd = app.add_subcommand(verb, "add or remove an inbound rule");
    cmd->add_option("--group-id", group_id, "sg-…")->required();
    cmd->add_option("--protocol", protocol, "tcp (default) or -1 (all)");
    cmd->add_option("--port", port, "a TCP port or range: 10809, 10800-10899");
    cmd->add_option("--cidr", cidr, "source addresses: 10.0.0.0/8, 127.0.0.1/32")->required();
    ingress_verbs.emplace_back(cmd, verb);
  }
  auto* attach = app.add_subcommand("attach-volume", "attach a volume to an instance");
  attach->add_option("--volume-id", volume_id, "volume id")->required();
  attach->add_option("--instance-id", instance_id, "instance id")->required();
  attach->add_option("--device", device, "/dev/sdf")->required();
  auto* detach = app.add_subcommand("detach-volume", "detach a volume (it becomes available)");
  detach->add_option("--volume-id", volume_id, "volume id")->required();
  auto* create_tags = app.add_subcommand("create-tags", "add or overwrite tags");
  create_tags->add_option("--resources", resources, "ids: vol-, snap-, ami-, i-")->required();
  create_tags->add_option("--tags", tags, "Key=k,Value=v ...")->required();
  auto* delete_tags = app.add_subcommand("delete-tags", "remove tags (all, without --tags)");
  delete_tags->add_option("--resources", resources, "ids")->required();
  delete_tags->add_option("--tags", tags, "Key=k[,Value=v] ...");
  auto* desc_types =
      app.add_subcommand("describe-instance-types", "instance types and their instance store");

  // Remotes: snapshots in S3-compatible object storage (docs/remote-format.md).
  std::string remote, remote_name, remote_url, endpoint_url, region;
  auto* remote_cmd = app.add_subcommand("remote", "S3 remotes that snapshots are copied to");
  remote_cmd->require_subcommand(1);
  auto* remote_add = remote_cmd->add_subcommand("add", "name a bucket (and prefix) at an endpoint");
  remote_add->add_option("name", remote_name, "the remote's name")->required();
  remote_add->add_option("--url", remote_url, "s3://BUCKET[/PREFIX]")->required();
  remote_add->add_option("--endpoint-url", endpoint_url, "http(s)://HOST[:PORT] (default: AWS)");
  remote_add->add_option("--region", region, "(us-east-1)");
  remote_cmd->add_subcommand("list", "the pool's remotes");
  auto* remote_remove = remote_cmd->add_subcommand("remove", "forget a remote (its data stays)");
  remote_remove->add_option("name", remote_name, "the remote's name")->required();
  auto* remote_gc = remote_cmd->add_subcommand(
      "gc", "free what no snapshot in the remote needs (and what killed pushes left)");
  remote_gc->add_option("name", remote_name, "the remote's name")->required();
  auto* copy_snap = app.add_subcommand("copy-snapshot", "push a snapshot to a remote");
  copy_snap->add_option("--source-snapshot-id", snapshot_id, "snapshot id")->required();
  copy_snap->add_option("--destination-remote", remote, "remote name")->required();
  auto* copy_image =
      app.add_subcommand("copy-image", "push an image and its snapshots to a remote");
  copy_image->add_option("--source-image-id", image_id, "image id")->required();
  copy_image->add_option("--destination-remote", remote, "remote name")->required();
  for (CLI::App* cmd : {describe_snaps, del_snap, create, desc_images, run, dereg}) {
    cmd->add_option("--remote", remote, "act on the snapshots of this remote");
  }

  // Every argument becomes JSON (the control request): refuse bytes that are not UTF-8 here,
  // with the argument's position, rather than deep inside.
  for (int i = 1; i < argc; i++) {
    if (!strata::IsValidUtf8(argv[i])) {
      std::fprintf(stderr, "strata: error: InvalidArgument: argument %d is not valid UTF-8\n", i);
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  if (pool_cmd->parsed()) {
    if (pool_create->parsed()) {
      return CreatePool(pool_dir, chunk_size, capacity);
    }
    request["command"] = pool_cmd->got_subcommand("info") ? "pool-info" : "pool-check";
  } else if (create->parsed()) {
    if (size.empty() && snapshot_id.empty()) {
      std::fprintf(stderr, "strata: error: create-volume needs --size or --snapshot-id\n");
      return kExitUsage;
    }
    request = {{"command", "create-volume"},
               {"args",
                {{"size", size},
                 {"name", name},
                 {"volume-type", volume_type},
                 {"iops", iops},
                 {"throughput", throughput},
                 {"snapshot-id", snapshot_id},
                 {"tag-specifications", tag_specs}}}};
    if (!initialization_rate.empty()) {
      request["args"]["initialization-rate"] = initialization_rate;
    }
    if (wait_restore) {
      request["args"]["wait"] = true;
    }
  } else if (describe->parsed()) {
    request = {{"command", "describe-volumes"},
               {"args", {{"volume-ids", volume_ids}, {"filters", filters}}}};
  } else if (del->parsed()) {
    request = {{"command", "delete-volume"}, {"args", {{"volume-id", volume_id}}}};
  } else if (modify->parsed()) {
    request = {{"command", "modify-volume"},
               {"args",
                {{"volume-id", volume_id},
                 {"size", size},
                 {"volume-type", new_type},
                 {"iops", iops},
                 {"throughput", throughput}}}};
  } else if (volume_status->parsed()) {
    request = {{"command", "describe-volume-status"}, {"args", {{"volume-ids", volume_ids}}}};
  } else if (snap->parsed()) {
    request = {{"command", "create-snapshot"},
               {"args",
                {{"volume-id", volume_id},
                 {"description", description},
                 {"tag-specifications", tag_specs}}}};
  } else if (snaps->parsed()) {
    request = {{"command", "create-snapshots"},
               {"args",
                {{"volume-ids", volume_ids},
                 {"description", description},
                 {"tag-specifications", tag_specs}}}};
  } else if (describe_snaps->parsed()) {
    request = {
        {"command", "describe-snapshots"},
        {"args",
         {{"snapshot-ids", snapshot_ids}, {"volume-ids", volume_ids}, {"filters", filters}}}};
  } else if (del_snap->parsed()) {
    request = {{"command", "delete-snapshot"}, {"args", {{"snapshot-id", snapshot_id}}}};
  } else if (list_blocks->parsed() || list_changed->parsed()) {
    request = {{"command", list_blocks->parsed() ? "list-snapshot-blocks" : "list-changed-blocks"},
               {"args",
                {{"snapshot-id", snapshot_id},
                 {"first-snapshot-id", first_snapshot},
                 {"second-snapshot-id", second_snapshot},
                 {"block-size", block_size},
                 {"max-results", max_results},
                 {"next-token", next_token}}}};
  } else if (get_block->parsed()) {
    std::error_code ec;
    std::string absolute = std::filesystem::absolute(outfile, ec).string();
    request = {{"command", "get-snapshot-block"},
               {"args",
                {{"snapshot-id", snapshot_id},
                 {"block-index", block_index},
                 {"block-size", block_size},
                 {"outfile", absolute}}}};
  }
  if (reg->parsed()) {
    request = {{"command", "register-image"},
               {"args",
                {{"name", name},
                 {"description", description},
                 {"root-device-name", root_device_name},
                 {"root-device-type", root_device_type},
                 {"block-device-mappings", mappings},
                 {"tag-specifications", tag_specs}}}};
  } else if (desc_images->parsed()) {
    request = {{"command", "describe-images"},
               {"args", {{"image-ids", image_ids}, {"filters", filters}}}};
  } else if (dereg->parsed()) {
    request = {{"command", "deregister-image"}, {"args", {{"image-id", image_id}}}};
  } else if (create_image->parsed()) {
    request = {{"command", "create-image"},
               {"args",
                {{"instance-id", instance_id},
                 {"name", name},
                 {"description", description},
                 {"no-reboot", no_reboot},
                 {"tag-specifications", tag_specs}}}};
  } else if (import_image->parsed()) {
    std::error_code ec;
    request = {{"command", "import-image"},
               {"args",
                {{"input-file", std::filesystem::absolute(image_input, ec).string()},
                 {"name", name},
                 {"description", description},
                 {"root-device-name", root_device_name},
                 {"root-device-type", root_device_type},
                 {"tag-specifications", tag_specs}}}};
  } else if (run->parsed()) {
    request = {{"command", "run-instances"},
               {"args",
                {{"image-id", image_id},
                 {"count", count},
                 {"instance-type", instance_type},
                 {"disable-api-termination", disable_termination},
                 {"security-group-ids", group_ids},
                 {"key-name", key_name},
                 {"tag-specifications", tag_specs}}}};
    if (!initialization_rate.empty()) {
      request["args"]["initialization-rate"] = initialization_rate;
    }
  } else if (desc_instances->parsed()) {
    request = {{"command", "describe-instances"},
               {"args", {{"instance-ids", instance_ids}, {"filters", filters}}}};
  } else if (modify_attr->parsed() && !group_ids.empty()) {
    request = {{"command", "modify-instance-attribute"},
               {"args", {{"instance-id", instance_id}, {"groups", group_ids}}}};
  } else if (create_key->parsed()) {
    request = {{"command", "create-key-pair"},
               {"args", {{"key-name", key_name}, {"key-type", key_type}}}};
  } else if (import_key->parsed()) {
    std::string path = key_material_file;
    if (path.starts_with("fileb://") || path.starts_with("file://")) {
      path = path.substr(path.find("//") + 2);
    }
    std::ifstream in(path, std::ios::binary);
    std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "strata: error: cannot read %s\n", path.c_str());
      return kExitUsage;
    }
    request = {{"command", "import-key-pair"},
               {"args", {{"key-name", key_name}, {"public-key-material", pem}}}};
  } else if (describe_keys->parsed()) {
    request = {{"command", "describe-key-pairs"}, {"args", {{"key-names", key_names}}}};
  } else if (delete_key->parsed()) {
    request = {{"command", "delete-key-pair"}, {"args", {{"key-name", key_name}}}};
  } else if (create_sg->parsed()) {
    request = {{"command", "create-security-group"},
               {"args", {{"group-name", group_name}, {"description", description}}}};
  } else if (describe_sg->parsed()) {
    request = {{"command", "describe-security-groups"}, {"args", {{"group-ids", group_ids}}}};
  } else if (delete_sg->parsed()) {
    request = {{"command", "delete-security-group"}, {"args", {{"group-id", group_id}}}};
  } else if (modify_attr->parsed()) {
    if (disable_termination == enable_termination) {
      std::fprintf(stderr,
                   "strata: error: give one of --disable-api-termination and "
                   "--no-disable-api-termination\n");
      return kExitUsage;
    }
    request = {
        {"command", "modify-instance-attribute"},
        {"args", {{"instance-id", instance_id}, {"disable-api-termination", disable_termination}}}};
  } else if (attach->parsed()) {
    request = {
        {"command", "attach-volume"},
        {"args", {{"volume-id", volume_id}, {"instance-id", instance_id}, {"device", device}}}};
  } else if (detach->parsed()) {
    request = {{"command", "detach-volume"}, {"args", {{"volume-id", volume_id}}}};
  } else if (create_tags->parsed() || delete_tags->parsed()) {
    request = {{"command", create_tags->parsed() ? "create-tags" : "delete-tags"},
               {"args", {{"resources", resources}, {"tags", tags}}}};
  } else if (desc_types->parsed()) {
    request = {{"command", "describe-instance-types"}};
  } else if (remote_cmd->parsed()) {
    if (remote_add->parsed()) {
      request = {{"command", "remote-add"},
                 {"args",
                  {{"name", remote_name},
                   {"url", remote_url},
                   {"endpoint-url", endpoint_url},
                   {"region", region}}}};
    } else if (remote_remove->parsed()) {
      request = {{"command", "remote-remove"}, {"args", {{"name", remote_name}}}};
    } else if (remote_gc->parsed()) {
      request = {{"command", "remote-gc"}, {"args", {{"remote", remote_name}}}};
    } else {
      request = {{"command", "remote-list"}};
    }
  } else if (copy_image->parsed()) {
    request = {{"command", "copy-image"},
               {"args", {{"source-image-id", image_id}, {"destination-remote", remote}}}};
  } else if (copy_snap->parsed()) {
    request = {{"command", "copy-snapshot"},
               {"args", {{"source-snapshot-id", snapshot_id}, {"destination-remote", remote}}}};
  }
  if (!remote.empty() && request.contains("args")) {
    request["args"]["remote"] = remote;
  }
  for (const auto& [cmd, verb] : ingress_verbs) {
    if (cmd->parsed()) {
      request = {
          {"command", verb},
          {"args",
           {{"group-id", group_id}, {"protocol", protocol}, {"port", port}, {"cidr", cidr}}}};
    }
  }
  for (const auto& [cmd, verb] : state_verbs) {
    if (cmd->parsed()) {
      request = {{"command", verb}, {"args", {{"instance-ids", instance_ids}}}};
    }
  }
  if (exp->parsed() || imp->parsed()) {
    auto absolute = [](const std::string& path) {
      std::error_code ec;
      return path == "-" ? path : std::filesystem::absolute(path, ec).string();
    };
    if (exp->parsed()) {
      request = {{"command", "export-snapshot"},
                 {"args",
                  {{"snapshot-id", snapshot_id},
                   {"base-snapshot-id", base_snapshot},
                   {"output-file", absolute(stream_output)},
                   {"compression-level", level}}}};
    } else {
      request = {{"command", "import-snapshot"},
                 {"args", {{"input-file", absolute(stream_input)}}}};
    }
    // With the stream on stdout, the reply goes to stderr.
    return RunRequest(pool_dir, request, output, exp->parsed() && stream_output == "-");
  }
  return RunRequest(pool_dir, request, output);
}
