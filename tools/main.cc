// strata: the command-line interface. AWS CLI verbs, EC2-shaped JSON answers.
//
// Exit codes: 0 success; 1 the operation failed (one line on stderr names the problem, nothing
// was changed); 2 the command line is malformed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "strata/pool.h"

#include "control/control.h"
#include "control/control_socket.h"
#include "output.h"
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

int Fail(const Status& s) {
  std::fprintf(stderr, "strata: error: %s\n", s.ToString().c_str());
  return kExitFailed;
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
  auto info = strata::ExecuteControl(pool->get(), json{{"command", "pool-info"}});
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
      std::fprintf(stderr, "strata: error: %s\n", (*remote)["error"].get<std::string>().c_str());
      return kExitFailed;
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
  // Run here: stream commands get a progress bar and may use stdin/stdout.
  strata::ProgressBar bar(request.value("command", ""));
  auto reply = strata::ExecuteStreamCommand(
      pool->get(), request, [&bar](uint64_t done, uint64_t total) { bar.Update(done, total); });
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
  create->add_option("--volume-type", volume_type, "gp2|gp3|io1|io2|st1|sc1|standard (gp3)");
  auto* describe = app.add_subcommand("describe-volumes", "list volumes");
  describe->add_option("--volume-ids", volume_ids, "ids (or unique names) to show");
  auto* del = app.add_subcommand("delete-volume", "delete a volume and free its space");
  del->add_option("--volume-id", volume_id, "volume id")->required();
  auto* modify = app.add_subcommand("modify-volume", "grow a volume online");
  modify->add_option("--volume-id", volume_id, "volume id")->required();
  modify->add_option("--size", size, "new size, GiB or with a unit")->required();

  // Snapshots: the EC2 verbs, and the EBS direct APIs' block listings.
  std::vector<std::string> snapshot_ids;
  std::string first_snapshot, second_snapshot, block_size, max_results, next_token, block_index,
      outfile;
  auto* snap = app.add_subcommand("create-snapshot", "crash-consistent snapshot of a volume");
  snap->add_option("--volume-id", volume_id, "volume id or unique name")->required();
  snap->add_option("--description", description, "free text (255 bytes)");
  auto* snaps = app.add_subcommand("create-snapshots",
                                   "one crash-consistent point in time across several volumes");
  snaps->add_option("--volume-ids", volume_ids, "volume ids or unique names")->required();
  snaps->add_option("--description", description, "free text (255 bytes)");
  auto* describe_snaps = app.add_subcommand(
      "describe-snapshots", "list snapshots (named ones with their space accounting)");
  describe_snaps->add_option("--snapshot-ids", snapshot_ids, "ids to show, with space accounting");
  describe_snaps->add_option("--volume-ids", volume_ids, "only snapshots of these volumes");
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
                 {"snapshot-id", snapshot_id}}}};
  } else if (describe->parsed()) {
    request = {{"command", "describe-volumes"}, {"args", {{"volume-ids", volume_ids}}}};
  } else if (del->parsed()) {
    request = {{"command", "delete-volume"}, {"args", {{"volume-id", volume_id}}}};
  } else if (modify->parsed()) {
    request = {{"command", "modify-volume"}, {"args", {{"volume-id", volume_id}, {"size", size}}}};
  } else if (snap->parsed()) {
    request = {{"command", "create-snapshot"},
               {"args", {{"volume-id", volume_id}, {"description", description}}}};
  } else if (snaps->parsed()) {
    request = {{"command", "create-snapshots"},
               {"args", {{"volume-ids", volume_ids}, {"description", description}}}};
  } else if (describe_snaps->parsed()) {
    request = {{"command", "describe-snapshots"},
               {"args", {{"snapshot-ids", snapshot_ids}, {"volume-ids", volume_ids}}}};
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
