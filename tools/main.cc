// strata: the command-line interface. AWS CLI verbs, EC2-shaped JSON answers.
//
// Exit codes: 0 success; 1 the operation failed (one line on stderr names the problem, nothing
// was changed); 2 the command line is malformed.
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "strata/compute.h"
#include "strata/hydration.h"
#include "strata/pool.h"

#include "control/control.h"
#include "control/control_socket.h"
#include "control/ec2_errors.h"
#include "control/handlers.h"
#include "control/kms_api.h"
#include "control/verbs.h"
#include "output.h"
#include "query.h"
#include "util/text.h"
#include "util/units.h"

namespace {

using nlohmann::json;
using strata::Result;
using strata::Status;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnknown = 3;  // strata-nbd took the request; whether it was done is unknown

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

// --kms-root-key (default $STRATA_KMS_ROOT_KEY): the KMS's root key when this process opens
// the pool itself (a running strata-nbd uses its own). Set once by main.
std::string kms_root_key_path;

// This process exits after one request: it cannot hold instance-store data for anyone. With a
// root key (or the systemd credential) the pool's KMS is opened too.
Result<strata::ComputeOptions> LocalComputeOptions(const std::string& dir) {
  strata::ComputeOptions options;
  options.hosts_instance_store = false;
  auto root_key = strata::LoadKmsRootKey(kms_root_key_path, dir);
  if (root_key.ok()) {
    options.kms_root_key = std::move(*root_key);
  } else if (!kms_root_key_path.empty() || root_key.status().code() != Status::Code::kNotFound) {
    return root_key.status();
  }
  return options;
}

Result<std::unique_ptr<strata::Compute>> OpenLocalCompute(strata::Pool* pool,
                                                          const std::string& dir) {
  STRATA_ASSIGN_OR_RETURN(strata::ComputeOptions options, LocalComputeOptions(dir));
  auto compute = strata::Compute::Open(pool, options);
  strata::control::WipeBytes(&options.kms_root_key);
  return compute;
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
  auto compute = OpenLocalCompute(pool->get(), dir);
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

// How a reply is shown: --output and --query (JMESPath, applied first, as the AWS CLI does).
struct OutputSpec {
  std::string format = "json";
  std::optional<std::string> query;
};

int Print(const json& reply, const OutputSpec& output, std::ostream& out) {
  if (!output.query) {
    strata::PrintReply(reply, output.format, out);
    return 0;
  }
  auto value = strata::JmesPathQuery(reply, *output.query);
  if (!value.ok()) {
    return FailWith(strata::control::Ec2ErrorText(value.status()));
  }
  strata::PrintReply(*value, output.format, out);
  return 0;
}

// The first string in `j` (keys included) that is not valid UTF-8, if any: JSON would carry it
// as U+FFFD, and a tag or a name would be stored changed.
std::optional<std::string> InvalidUtf8In(const json& j) {
  if (j.is_string()) {
    const auto& text = j.get_ref<const std::string&>();
    return strata::IsValidUtf8(text) ? std::nullopt : std::optional<std::string>(text);
  }
  for (auto it = j.begin(); j.is_structured() && it != j.end(); ++it) {
    if (j.is_object() && !strata::IsValidUtf8(it.key())) {
      return it.key();
    }
    if (auto bad = InvalidUtf8In(it.value())) {
      return bad;
    }
  }
  return std::nullopt;
}

// Runs a control request: through the control socket when strata-nbd holds the pool, else on
// the pool opened by this process. Output and errors are the same either way.
int RunRequest(const std::string& dir, const json& request, const OutputSpec& output,
               bool reply_to_stderr = false) {
  std::ostream& out = reply_to_stderr ? std::cerr : std::cout;
  if (auto bad = InvalidUtf8In(request)) {
    return FailWith("InvalidParameterValue: an argument is not valid UTF-8: " +
                    strata::EscapeText(*bad, 128));
  }
  auto remote = strata::CallControl(dir, request);
  if (remote.ok()) {
    if (!(*remote)["ok"].get<bool>()) {
      const json& error = (*remote)["error"];
      return FailWith(error.is_string() ? error.get<std::string>() : "malformed error reply");
    }
    return Print((*remote)["result"], output, out);
  }
  if (remote.status().sys_errno() == strata::kControlReplyLost) {
    Fail(remote.status());
    return kExitUnknown;
  }
  if (remote.status().code() != strata::Status::Code::kNotFound) {
    return Fail(remote.status());
  }
  strata::PoolOptions options;
  auto pool = strata::Pool::Open(dir, options);
  if (!pool.ok()) {
    return Fail(pool.status());
  }
  auto compute = OpenLocalCompute(pool->get(), dir);
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
    return FailWith(strata::control::Ec2ErrorText(reply.status()));  // as the socket answers
  }
  return Print(*reply, output, out);
}

// One verb's arguments as CLI11 fills them (addresses stable: CLI11 keeps pointers).
struct ArgValues {
  const strata::control::VerbArg* spec;
  CLI::Option* option = nullptr;
  std::string text = {};
  std::vector<std::string> list = {};
  bool flag = false;
};

struct VerbCommand {
  const strata::control::Verb* verb;
  CLI::App* app;
  std::deque<ArgValues> args = {};
};

// The subcommand for `path` ("create-volume", or "pool info": a group and its subcommand).
CLI::App* AddVerbCommand(CLI::App* app, const strata::control::Verb& verb,
                         std::map<std::string, CLI::App*>* groups) {
  const std::string path = verb.path;
  const size_t space = path.find(' ');
  if (space == std::string::npos) {
    return app->add_subcommand(path, verb.help);
  }
  const std::string group = path.substr(0, space);
  auto it = groups->find(group);
  if (it == groups->end()) {
    static const std::map<std::string, std::string> kGroupHelp = {
        {"pool", "create, inspect and check a pool"},
        {"remote", "S3 remotes that snapshots are copied to"},
        {"kms", "the pool's KMS: keys for encryption at rest (docs/kms.md)"}};
    auto help = kGroupHelp.find(group);
    CLI::App* sub = app->add_subcommand(group, help == kGroupHelp.end() ? "" : help->second);
    sub->require_subcommand(1);
    it = groups->emplace(group, sub).first;
  }
  return it->second->add_subcommand(path.substr(space + 1), verb.help);
}

void AddVerbArgs(VerbCommand* cmd) {
  using Kind = strata::control::VerbArg::Kind;
  for (const strata::control::VerbArg& spec : cmd->verb->args) {
    ArgValues& v = cmd->args.emplace_back(ArgValues{&spec});
    if (spec.kind == Kind::kFlag) {
      v.option = cmd->app->add_flag(spec.flag, v.flag, spec.help);
    } else if (spec.kind == Kind::kList) {
      v.option = cmd->app->add_option(spec.flag, v.list, spec.help);
    } else {
      v.option = cmd->app->add_option(spec.flag, v.text, spec.help);
    }
    if (spec.required) {
      v.option->required();
    }
  }
}

// A file's contents for a kFileText argument (the AWS CLI's file:// and fileb:// accepted).
Result<std::string> ReadArgFile(std::string path) {
  if (path.starts_with("fileb://") || path.starts_with("file://")) {
    path = path.substr(path.find("//") + 2);
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return Status::InvalidArgument("cannot read " + path);
  }
  return text;
}

// The control request's args from what was given. Errors: a usage error's text.
Result<json> RequestArgs(const VerbCommand& cmd) {
  using Kind = strata::control::VerbArg::Kind;
  json args = json::object();
  for (const ArgValues& v : cmd.args) {
    if (v.option->count() == 0) {
      continue;
    }
    const char* key = v.spec->key;
    switch (v.spec->kind) {
      case Kind::kText:
        args[key] = v.text;
        break;
      case Kind::kPath: {
        std::error_code ec;
        args[key] = v.text == "-" ? v.text : std::filesystem::absolute(v.text, ec).string();
        break;
      }
      case Kind::kFileText: {
        STRATA_ASSIGN_OR_RETURN(std::string text, ReadArgFile(v.text));
        args[key] = text;
        break;
      }
      case Kind::kFileBase64: {
        STRATA_ASSIGN_OR_RETURN(std::string bytes, ReadArgFile(v.text));
        args[key] = strata::control::KmsBase64Encode(bytes);
        strata::control::WipeBytes(&bytes);
        break;
      }
      case Kind::kList:
        args[key] = v.list;
        break;
      case Kind::kFlag:
        if (args.contains(key) && args[key] != v.spec->flag_value) {
          return Status::InvalidArgument(std::string("give only one of the flags that set ") + key);
        }
        args[key] = v.spec->flag_value;
        break;
    }
  }
  if (!cmd.verb->one_of.empty()) {
    std::string wanted;
    bool any = false;
    for (const char* key : cmd.verb->one_of) {
      any = any || args.contains(key);
      wanted += (wanted.empty() ? "--" : " or --") + std::string(key);
    }
    if (!any) {
      return Status::InvalidArgument(std::string(cmd.verb->path) + " needs " + wanted);
    }
  }
  return args;
}

// The one verb the command line named: checked only (--dry-run), made here (pool-create), or sent
// as a control request. The process's exit code.
int RunVerb(const VerbCommand& cmd, const std::string& pool_dir, const OutputSpec& output,
            bool dry_run) {
  auto args = RequestArgs(cmd);
  if (!args.ok()) {
    std::fprintf(stderr, "strata: error: %s\n",
                 strata::EscapeText(args.status().message(), 4096).c_str());
    return kExitUsage;
  }
  const std::string command = cmd.verb->command;
  if (dry_run) {
    strata::Status s = strata::control::CheckVerbArgs(command, *args);
    return FailWith(s.ok()
                        ? "DryRunOperation: Request would have succeeded, but DryRun flag is set."
                        : strata::control::Ec2ErrorText(s));
  }
  if (command == "pool-create") {
    return CreatePool(pool_dir, args->value("chunk-size", "64KiB"), args->value("capacity", ""));
  }
  // A stream written to stdout: the reply goes to stderr.
  const bool reply_to_stderr =
      command == "export-snapshot" && args->value("output-file", "") == "-";
  return RunRequest(pool_dir, json{{"command", command}, {"args", *args}}, output, reply_to_stderr);
}

}  // namespace

int main(int argc, char** argv) {
  // Key material (create-key-pair, create-access-key) and the pool's secrets pass through this
  // process: no core dump of it (docs/security.md).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  CLI::App app{"strata: EBS-style volumes, snapshots and images on one host"};
  app.require_subcommand(1);
  app.fallthrough();
  std::string pool_dir = DefaultPoolDir();
  OutputSpec output;
  app.add_option(
      "--pool", pool_dir,
      "pool directory (default $STRATA_POOL, else " + std::string("~/.local/share/strata/pool)"));
  // (No "table": the AWS CLI's table layout is not reproduced, so it is not offered.)
  if (const char* env = std::getenv("STRATA_KMS_ROOT_KEY"); env != nullptr) {
    kms_root_key_path = env;
  }
  app.add_option("--kms-root-key", kms_root_key_path,
                 "the KMS's root key file, when no strata-nbd holds the pool (default "
                 "$STRATA_KMS_ROOT_KEY, else the strata-kms-root-key systemd credential)");
  app.add_option("--output", output.format, "json, or text (the AWS CLI's text rules)")
      ->check(CLI::IsMember({"json", "text"}));
  app.add_option("--query", output.query,
                 "JMESPath expression applied to the reply before --output (needs jp(1))");
  // AWS CLI flags scripts always pass: the pool is one region's one zone, and --dry-run checks
  // a request without acting (EC2's DryRunOperation).
  std::string region = strata::control::kRegion;
  bool dry_run = false;
  app.add_option("--region", region, "the pool's region: us-east-1 (any other is refused)");
  app.add_flag("--dry-run", dry_run,
               "check the request and answer DryRunOperation; change nothing");
  // Every verb and its arguments come from the verb table the control plane checks requests
  // against (lib/control/verbs.cc).
  std::deque<VerbCommand> commands;
  std::map<std::string, CLI::App*> groups;
  for (const strata::control::Verb& verb : strata::control::Verbs()) {
    VerbCommand& cmd =
        commands.emplace_back(VerbCommand{&verb, AddVerbCommand(&app, verb, &groups)});
    AddVerbArgs(&cmd);
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
    if (e.get_exit_code() == 0) {  // --help
      return app.exit(e);
    }
    std::fprintf(stderr, "strata: error: %s (see strata --help)\n",
                 strata::EscapeText(e.what(), 4096).c_str());
    return kExitUsage;  // one line, as every other error
  }
  if (region != strata::control::kRegion) {
    std::fprintf(stderr, "strata: error: InvalidParameterValue: the pool is in region %s, not %s\n",
                 strata::control::kRegion, strata::EscapeText(region).c_str());
    return kExitFailed;
  }
  for (const VerbCommand& cmd : commands) {
    if (cmd.app->parsed()) {
      return RunVerb(cmd, pool_dir, output, dry_run);
    }
  }
  return kExitUsage;  // (CLI11 requires a subcommand: not reached)
}
