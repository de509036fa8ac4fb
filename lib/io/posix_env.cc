// The POSIX Env: files are plain fds; engines are io_uring (UringEngine) or pread/pwrite.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "strata/env.h"

#include "io/inline_engine.h"
#include "io/uring_engine.h"
#include "util/atomic_file.h"

namespace strata {
namespace {

Status Errno(const char* what, int err) { return Status::FromErrno(what, err); }

// Fallback engine when io_uring is unavailable: the op runs at Submit, in full.
class SyncEngine final : public InlineEngine {
 public:
  const char* name() const override { return "sync"; }

 protected:
  int32_t Execute(IoOp* op) override {
    if (op->kind == IoOp::Kind::kSync) {
      return fdatasync(op->file) == 0 ? 0 : -errno;
    }
    auto* p = static_cast<char*>(op->buf);
    uint32_t done = 0;
    while (done < op->length_bytes) {
      ssize_t n =
          op->kind == IoOp::Kind::kRead
              ? pread(op->file, p + done, op->length_bytes - done, op->offset_bytes + done)
              : pwrite(op->file, p + done, op->length_bytes - done, op->offset_bytes + done);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0) {
        return -errno;
      }
      if (n == 0) {
        if (op->kind == IoOp::Kind::kWrite) {
          return -EIO;
        }
        std::memset(p + done, 0, op->length_bytes - done);  // past end of file reads as zeros
        break;
      }
      done += static_cast<uint32_t>(n);
    }
    return static_cast<int32_t>(op->length_bytes);
  }
};

class PosixEnv final : public Env {
 public:
  Result<FileId> OpenFile(const std::string& path, bool create, bool direct) override {
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
    int fd = direct ? open(path.c_str(), flags | O_DIRECT, 0600) : -1;
    if (fd < 0 && (!direct || errno == EINVAL)) {
      fd = open(path.c_str(), flags, 0600);  // no O_DIRECT here (tmpfs, ...): buffered
    }
    if (fd < 0) {
      return Errno(("open " + path).c_str(), errno);
    }
    return fd;
  }
  Status CloseFile(FileId file) override {
    return close(file) == 0 ? Status::OK() : Errno("close", errno);
  }
  Result<uint64_t> FileSize(FileId file) override {
    struct stat st;
    if (fstat(file, &st) != 0) {
      return Errno("fstat", errno);
    }
    return static_cast<uint64_t>(st.st_size);
  }
  Result<uint64_t> AllocatedBytes(FileId file) override {
    struct stat st;
    if (fstat(file, &st) != 0) {
      return Errno("fstat", errno);
    }
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }
  Status Truncate(FileId file, uint64_t size_bytes) override {
    return ftruncate(file, static_cast<off_t>(size_bytes)) == 0 ? Status::OK()
                                                                : Errno("ftruncate", errno);
  }
  Status Sync(FileId file) override {
    return fdatasync(file) == 0 ? Status::OK() : Errno("fdatasync", errno);
  }
  Status PunchHole(FileId file, uint64_t offset_bytes, uint64_t length_bytes) override {
    int rc = fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                       static_cast<off_t>(offset_bytes), static_cast<off_t>(length_bytes));
    return rc == 0 ? Status::OK() : Errno("fallocate(PUNCH_HOLE)", errno);
  }
  Status ReadSync(FileId file, void* buf, size_t length_bytes, uint64_t offset_bytes) override {
    return RunSync(IoOp::Kind::kRead, file, buf, length_bytes, offset_bytes);
  }
  Status WriteSync(FileId file, const void* buf, size_t length_bytes,
                   uint64_t offset_bytes) override {
    return RunSync(IoOp::Kind::kWrite, file, const_cast<void*>(buf), length_bytes, offset_bytes);
  }
  bool DirectIo(FileId file) override {
    int flags = fcntl(file, F_GETFL);
    return flags >= 0 && (flags & O_DIRECT) != 0;
  }
  Result<std::unique_ptr<IoEngine>> NewEngine(uint32_t queue_depth) override {
    const char* forced = std::getenv("STRATA_IO_ENGINE");
    if (forced == nullptr || std::strcmp(forced, "sync") != 0) {
      int err = 0;
      std::unique_ptr<IoEngine> uring = NewUringEngine(queue_depth, &err);
      if (uring) {
        return uring;
      }
      if (err != -EPERM && err != -ENOSYS && err != -EACCES) {
        return Status::FromErrno("io_uring_queue_init", err);
      }
    }
    return std::unique_ptr<IoEngine>(new SyncEngine());
  }

 private:
  Status RunSync(IoOp::Kind kind, FileId file, void* buf, size_t len, uint64_t off) {
    SyncEngine engine;
    IoOp op;
    op.kind = kind;
    op.file = file;
    op.buf = buf;
    op.length_bytes = static_cast<uint32_t>(len);
    op.offset_bytes = off;
    op.done = [](IoOp*) {};
    engine.Submit(&op);
    engine.Run(0);
    return op.result < 0
               ? Status::FromErrno(kind == IoOp::Kind::kRead ? "pread" : "pwrite", op.result)
               : Status::OK();
  }
};

}  // namespace

// ---- Env's POSIX defaults ----

Result<bool> Env::FileExists(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    return true;
  }
  if (errno == ENOENT || errno == ENOTDIR) {
    return false;
  }
  return Errno(("stat " + path).c_str(), errno);
}

Status Env::CreateOwnerOnlyDir(const std::string& path) {
  // Missing parents first, each made 0700 (existing ones are left as they are): the default
  // pool path ~/.local/share/strata/pool may be the first thing under ~/.local.
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    if (mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) {
      return Errno(("mkdir " + parent).c_str(), errno);
    }
  }
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return Errno(("mkdir " + path).c_str(), errno);
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return Errno(("stat " + path).c_str(), errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::IOError(path + " is not a directory", ENOTDIR);
  }
  if ((st.st_mode & 077) != 0 && chmod(path.c_str(), st.st_mode & 0700) != 0) {
    return Errno(("chmod 0700 " + path).c_str(), errno);
  }
  return Status::OK();
}

namespace {

class PosixFileLock final : public Env::FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { close(fd_); }  // (closing the descriptor releases the flock)

 private:
  const int fd_;
};

}  // namespace

Result<std::unique_ptr<Env::FileLock>> Env::LockFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Errno(("open " + path).c_str(), errno);
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    [[maybe_unused]] ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
    close(fd);
    std::string holder = pid[0] != 0 ? std::string(" (pid ") + pid + ")" : "";
    return Status::Busy("in use by another process" + holder + " (lock " + path + ")");
  }
  std::string me = std::to_string(getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, me.data(), me.size(), 0) < 0) {
    Status s = Errno(("write " + path).c_str(), errno);
    close(fd);
    return s;
  }
  return std::unique_ptr<FileLock>(new PosixFileLock(fd));
}

Result<std::string> Env::ReadSmallFile(const std::string& path, size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? Status::NotFound(path + " does not exist")
                           : Errno(("open " + path).c_str(), errno);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    Status s = Errno(("stat " + path).c_str(), errno);
    close(fd);
    return s;
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    close(fd);
    return Status::InvalidArgument(path + " is larger than " + std::to_string(max_bytes) +
                                   " bytes");
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {  // (shrunk meanwhile: what was there)
      bytes.resize(done);
      break;
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  return bytes;
}

Status Env::ReplaceFile(const std::string& path, const std::string& bytes) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  return WriteFileAtomically(dir, path, bytes);
}

bool Env::DirectIo(FileId) { return false; }

bool Env::BackgroundThreads() { return true; }

int64_t Env::WallClockMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

uint64_t Env::MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

Env* Env::Default() {
  static Env* env = new PosixEnv();
  return env;
}

}  // namespace strata
