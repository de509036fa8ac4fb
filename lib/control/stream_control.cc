// export-snapshot and import-snapshot: portable snapshot streams (docs/stream-format.md); and
// import-image, which reads a raw disk image the same way.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "strata/stream.h"

#include "control/control.h"
#include "control/handlers.h"
#include "control/verbs.h"

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
        open(path.c_str(), for_write ? (O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC) : O_RDONLY, 0600);
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

bool AllZero(const std::byte* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != std::byte{0}) {
      return false;
    }
  }
  return true;
}

// Copies the raw image on `fd` into `volume`, writing only its non-zero 64 KiB pieces (a cloud
// image is mostly holes: the volume stays thin).
Status CopyRawImage(int fd, uint64_t size_bytes, Volume* volume, const StreamProgress& progress) {
  constexpr size_t kBuf = 4u << 20, kPiece = 64u << 10;
  std::vector<std::byte> buf(kBuf);
  for (uint64_t at = 0; at < size_bytes;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kBuf, size_bytes - at));
    ssize_t n = pread(fd, buf.data(), want, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n == 0 ? Status::IOError("image file shrank while it was imported", EIO)
                    : Status::FromErrno("read image file", errno);
    }
    const size_t got = static_cast<size_t>(n);
    for (size_t run = 0; run < got;) {  // [run, end): consecutive non-zero pieces, one write
      const size_t piece = std::min(kPiece, got - run);
      if (AllZero(buf.data() + run, piece)) {
        run += piece;
        continue;
      }
      size_t end = run + piece;
      while (end < got && !AllZero(buf.data() + end, std::min(kPiece, got - end))) {
        end += std::min(kPiece, got - end);
      }
      STRATA_RETURN_IF_ERROR(volume->Write(at + run, {buf.data() + run, end - run}, false));
      run = end;
    }
    at += got;
    if (progress) {
      progress(at, size_bytes);
    }
  }
  return volume->Flush();
}

// import-image: a raw disk image into a volume, then a snapshot, registered as an image.
Result<json> ImportImage(Compute* compute, const json& args, const StreamProgress& progress,
                         bool allow_std) {
  Pool* pool = compute->pool();
  Result<std::string> path_arg = control::StringArg(args, "input-file");
  STRATA_RETURN_IF_ERROR(path_arg.status());
  const std::string path = *path_arg;
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "name"));
  if (path == "-") {
    return Status::InvalidArgument("import-image needs a file: its size sets the volume's");
  }
  StreamFile file;
  STRATA_RETURN_IF_ERROR(file.Open(path, /*for_write=*/false, allow_std));
  struct stat st;
  if (fstat(file.fd(), &st) != 0) {
    return Status::FromErrno("stat " + path, errno);
  }
  if (!S_ISREG(st.st_mode) || st.st_size == 0) {
    return Status::InvalidArgument(path + " is not a non-empty raw disk image file");
  }
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  VolumeSpec spec;
  spec.size_bytes = (file_bytes + 511) / 512 * 512;
  spec.importing = true;           // hidden, and deleted at the next open if we never finish
  spec.volume_type = "unlimited";  // internal and hidden: any size, never throttled
  STRATA_ASSIGN_OR_RETURN(VolumeInfo volume, pool->CreateVolume(spec));
  Status copied;
  {
    auto handle = pool->OpenVolume(volume.volume_id);
    copied = handle.ok() ? CopyRawImage(file.fd(), file_bytes, handle->get(), progress)
                         : handle.status();
  }
  if (!copied.ok()) {
    (void)pool->DeleteVolume(volume.volume_id);
    return copied;
  }
  const std::string description = control::OptionalStringArg(args, "description");
  STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap,
                          pool->SealImport(volume.volume_id, "Imported from " + path, ""));
  ImageSpec image;
  image.name = name;
  image.description = description;
  const std::string root = control::OptionalStringArg(args, "root-device-name");
  image.root_device_name = root.empty() ? "/dev/xvda" : root;
  const std::string type = control::OptionalStringArg(args, "root-device-type");
  image.root_device_type = type.empty() ? "ebs" : type;
  BlockDeviceMapping m;
  m.device_name = image.root_device_name;
  m.snapshot_id = snap.snapshot_id;
  m.delete_on_termination = true;
  image.mappings.push_back(m);
  STRATA_ASSIGN_OR_RETURN(image.tags, control::TagSpecTags(args, "image"));
  auto registered = compute->RegisterImage(image);
  if (!registered.ok()) {
    (void)pool->DeleteSnapshot(snap.snapshot_id);  // nothing half-imported stays behind
    return registered.status();
  }
  return json{{"ImageId", registered->image_id},
              {"SnapshotId", snap.snapshot_id},
              {"Status", "completed"},
              {"SizeBytes", spec.size_bytes}};
}

Result<json> RunStream(Compute* compute, const std::string& command, const json& args,
                       const StreamProgress& progress, bool allow_std) {
  Pool* pool = compute->pool();
  if (command == "import-image") {
    return ImportImage(compute, args, progress, allow_std);
  }
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
  Result<std::string> path = control::StringArg(args, "input-file");
  STRATA_RETURN_IF_ERROR(path.status());
  STRATA_RETURN_IF_ERROR(file.Open(*path, /*for_write=*/false, allow_std));
  FdSource source(file.fd());
  STRATA_ASSIGN_OR_RETURN(StreamStats stats, ImportSnapshot(pool, o, &source));
  return StatsJson(stats);
}

}  // namespace

Result<json> ExecuteStreamCommand(Compute* compute, const json& request,
                                  const std::function<void(uint64_t, uint64_t)>& progress) {
  const std::string command =
      request.is_object() && request.contains("command") && request["command"].is_string()
          ? request["command"].get<std::string>()
          : "";
  if (request.is_object() && request.contains("args")) {
    STRATA_RETURN_IF_ERROR(control::CheckVerbArgs(command, request["args"]));
  }
  if (IsRemoteTransfer(request)) {
    try {
      return ExecuteRemoteTransfer(compute, request, progress);
    } catch (const std::exception& e) {
      return Status::InvalidArgument(std::string("malformed request: ") + e.what());
    }
  }
  if (command != "export-snapshot" && command != "import-snapshot" && command != "import-image") {
    return ExecuteControl(compute, request);
  }
  json args = request.contains("args") ? request["args"] : json::object();
  try {
    return RunStream(compute, command, args, progress, /*allow_std=*/true);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("malformed request: ") + e.what());
  }
}

namespace control {

void AddStreamHandlers(HandlerTable* table) {
  for (const char* command : {"export-snapshot", "import-snapshot", "import-image"}) {
    table->emplace(command, [command](Compute* compute, const json& args) {
      return RunStream(compute, command, args, nullptr, /*allow_std=*/false);
    });
  }
}

}  // namespace control

}  // namespace strata
