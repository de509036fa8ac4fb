// export-snapshot and import-snapshot: portable snapshot streams (docs/stream-format.md).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "strata/stream.h"

#include "control/control.h"
#include "control/handlers.h"

namespace strata {

namespace {

using nlohmann::json;

json StatsJson(const StreamStats& s) {
  return json{{"SnapshotId", s.snapshot.snapshot_id},
              {"VolumeId", s.snapshot.volume_id},
              {"SourceSnapshotId", s.snapshot.source_snapshot_id},
              {"Records", s.records},
              {"DataChunks", s.data_chunks},
              {"ZeroChunks", s.zero_chunks},
              {"DataBytes", s.volume_bytes},
              {"StreamBytes", s.stream_bytes}};
}

// Opens `path` ("-": the given standard fd when allowed). Closes what it opened.
class StreamFile {
 public:
  Status Open(const std::string& path, bool for_write, bool allow_std) {
    if (path == "-") {
      if (!allow_std) {
        return Status::InvalidArgument(
            "'-' (stdin/stdout) works only while no strata-nbd holds the pool; give a file");
      }
      fd_ = for_write ? STDOUT_FILENO : STDIN_FILENO;
      return Status::OK();
    }
    if (path.empty() || path[0] != '/') {
      return Status::InvalidArgument("stream file must be an absolute path or '-'");
    }
    fd_ =
        open(path.c_str(), for_write ? (O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC) : O_RDONLY, 0644);
    if (fd_ < 0) {
      return Status::FromErrno("open " + path, errno);
    }
    owned_ = true;
    return Status::OK();
  }
  ~StreamFile() {
    if (owned_) {
      close(fd_);
    }
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  bool owned_ = false;
};

Result<json> RunStream(Pool* pool, const std::string& command, const json& args,
                       const StreamProgress& progress, bool allow_std) {
  StreamFile file;
  if (command == "export-snapshot") {
    ExportOptions o;
    STRATA_ASSIGN_OR_RETURN(o.snapshot_id, control::StringArg(args, "snapshot-id"));
    o.base_snapshot_id = control::OptionalStringArg(args, "base-snapshot-id");
    STRATA_ASSIGN_OR_RETURN(std::string path, control::StringArg(args, "output-file"));
    STRATA_ASSIGN_OR_RETURN(uint64_t level, control::IntegerArg(args, "compression-level", 1));
    if (level < 1 || level > 19) {
      return Status::InvalidArgument("--compression-level must be 1..19");
    }
    o.zstd_level = static_cast<int>(level);
    o.progress = progress;
    // Validate before creating (and truncating) the output file.
    STRATA_RETURN_IF_ERROR(pool->DescribeSnapshot(o.snapshot_id).status());
    STRATA_RETURN_IF_ERROR(file.Open(path, /*for_write=*/true, allow_std));
    FdSink sink(file.fd());
    STRATA_ASSIGN_OR_RETURN(StreamStats stats, ExportSnapshot(pool, o, &sink));
    return StatsJson(stats);
  }
  ImportOptions o;
  o.progress = progress;
  STRATA_ASSIGN_OR_RETURN(std::string path, control::StringArg(args, "input-file"));
  STRATA_RETURN_IF_ERROR(file.Open(path, /*for_write=*/false, allow_std));
  FdSource source(file.fd());
  STRATA_ASSIGN_OR_RETURN(StreamStats stats, ImportSnapshot(pool, o, &source));
  return StatsJson(stats);
}

}  // namespace

Result<json> ExecuteStreamCommand(Pool* pool, const json& request,
                                  const std::function<void(uint64_t, uint64_t)>& progress) {
  const std::string command = request.value("command", "");
  if (command != "export-snapshot" && command != "import-snapshot") {
    return ExecuteControl(pool, request);
  }
  json args = request.contains("args") ? request["args"] : json::object();
  return RunStream(pool, command, args, progress, /*allow_std=*/true);
}

namespace control {

void AddStreamHandlers(HandlerTable* table) {
  for (const char* command : {"export-snapshot", "import-snapshot"}) {
    table->emplace(command, [command](Pool* pool, const json& args) {
      return RunStream(pool, command, args, nullptr, /*allow_std=*/false);
    });
  }
}

}  // namespace control

}  // namespace strata
