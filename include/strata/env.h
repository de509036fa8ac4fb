// Env: the seam between Strata and the operating system (leveldb's Env).
//
// Everything Strata does to data files goes through an Env: opening, sizing, syncing and punching
// files synchronously, and reading and writing them asynchronously through an IoEngine. The
// default Env is POSIX with io_uring; tests put a SimEnv (fault injection, see sim_env.h) in its
// place so that crashes can drop or tear unsynced writes.
#ifndef STRATA_ENV_H_
#define STRATA_ENV_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "strata/export.h"
#include "strata/status.h"

namespace strata {

// A file opened through an Env. Valid until CloseFile.
using FileId = int32_t;

// One asynchronous operation. The caller owns it and keeps it alive until `done` runs.
// kRecv and kSendMsg work on sockets (`file` is the socket fd): they complete with however many
// bytes moved (0 on kRecv = peer closed) and are not resubmitted for the remainder.
struct IoOp {
  enum class Kind : uint8_t { kRead, kWrite, kSync, kRecv, kSendMsg };
  Kind kind = Kind::kRead;
  FileId file = -1;
  void* buf = nullptr;        // REQUIRES for kRead/kWrite on O_DIRECT files: 4 KiB aligned
  uint32_t length_bytes = 0;  // REQUIRES: multiple of 4 KiB on O_DIRECT files
  uint64_t offset_bytes = 0;  // REQUIRES: multiple of 4 KiB on O_DIRECT files
  // Set before `done` runs: length_bytes on success (short transfers are resubmitted inside the
  // engine; a read past the end of file returns zeros), or a negative errno.
  int32_t result = 0;
  void (*done)(IoOp* op) = nullptr;  // runs on the thread that runs the engine
  void* ctx = nullptr;               // for the owner of the op
  uint32_t progress_bytes = 0;       // engine-internal: bytes already transferred
};

// Runs IoOps for one thread. Not thread-safe except Wake().
class STRATA_EXPORT IoEngine {
 public:
  virtual ~IoEngine() = default;
  // Queues `op`; it completes in a later Run(). REQUIRES: op outlives its completion.
  virtual void Submit(IoOp* op) = 0;
  // Submits what is queued, waits up to `timeout_ms` (-1: forever) for a completion or a Wake(),
  // then runs the `done` callbacks of every completed op. Returns the number completed.
  virtual int Run(int timeout_ms) = 0;
  // Thread-safe: makes a blocked Run() return soon.
  virtual void Wake() = 0;
  // Ops submitted and not yet completed.
  virtual uint32_t in_flight() const = 0;
  // "io_uring", "sync" or "sim".
  virtual const char* name() const = 0;
};

class STRATA_EXPORT Env {
 public:
  virtual ~Env() = default;

  // The process-wide POSIX Env (io_uring engines, falling back to pread/pwrite when io_uring is
  // refused with EPERM/ENOSYS, or when STRATA_IO_ENGINE=sync). Never deleted.
  static Env* Default();

  // Opens (and with `create`, creates) a file for reading and writing. With `direct`, tries
  // O_DIRECT and silently falls back to buffered I/O where the file system refuses it.
  virtual Result<FileId> OpenFile(const std::string& path, bool create, bool direct) = 0;
  virtual Status CloseFile(FileId file) = 0;
  virtual Result<uint64_t> FileSize(FileId file) = 0;
  // Bytes the file really occupies on the host (st_blocks * 512).
  virtual Result<uint64_t> AllocatedBytes(FileId file) = 0;
  virtual Status Truncate(FileId file, uint64_t size_bytes) = 0;
  // fdatasync: every completed write to `file` is durable when this returns OK.
  virtual Status Sync(FileId file) = 0;
  // Deallocates the range; it reads as zeros afterwards. Durable after the next Sync.
  virtual Status PunchHole(FileId file, uint64_t offset_bytes, uint64_t length_bytes) = 0;
  // Synchronous I/O for open-time and tool code (not the data path).
  virtual Status ReadSync(FileId file, void* buf, size_t length_bytes, uint64_t offset_bytes) = 0;
  virtual Status WriteSync(FileId file, const void* buf, size_t length_bytes,
                           uint64_t offset_bytes) = 0;
  // A new engine for the calling thread, with room for `queue_depth` ops in flight.
  virtual Result<std::unique_ptr<IoEngine>> NewEngine(uint32_t queue_depth) = 0;

  // ---- The pool directory and the clock. Defaults: POSIX and the system clocks, so an Env
  // written before these existed keeps working; the simulator overrides them. ----

  // Whether anything exists at `path`. Errors: IOError (anything but "no such file").
  virtual Result<bool> FileExists(const std::string& path);
  // Makes `path` a directory only its owner may enter (it will hold every volume's bytes):
  // created with mode 0700 if absent (missing parents too, 0700); an existing one loses its group
  // and other permissions. Errors: IOError.
  virtual Status CreateOwnerOnlyDir(const std::string& path);
  // Takes an exclusive lock on the file `path` (created if absent) for as long as the returned
  // handle lives, and writes this process's id into it. Errors: Busy ("in use by another
  // process (pid N) ...").
  class FileLock {
   public:
    virtual ~FileLock() = default;
  };
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path);
  // A small file whole (caches and state files beside the pool, not volume data). Errors:
  // NotFound; InvalidArgument when it is larger than `max_bytes` (nothing is read then); IOError.
  virtual Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes);
  // Replaces the small file `path` whole, mode 0600: PATH.tmp written and synced, renamed over
  // PATH, the directory synced. A crash leaves the old content or the new, never a mix. Errors:
  // IOError (the directory must exist).
  virtual Status ReplaceFile(const std::string& path, const std::string& bytes);
  // Whether reads and writes of `file` bypass the page cache (O_DIRECT took).
  virtual bool DirectIo(FileId file);
  // Whether a pool runs its background work (the reclaimer, background fills) on threads of its
  // own. False: that work runs only when stepped (the crash simulator drives each from its seed
  // through the pool's internal StepBackground, so that a seed replays the same trace); work a
  // request waits for (a fill it needs) still runs while it waits.
  virtual bool BackgroundThreads();
  // The wall clock in milliseconds since the Unix epoch (times shown to people).
  virtual int64_t WallClockMs();
  // A monotonic clock in nanoseconds for rates, timeouts and idle detection (QoS credits, the
  // background filler's idle wait); only differences between readings mean anything.
  virtual uint64_t MonotonicNs();
};

}  // namespace strata

#endif  // STRATA_ENV_H_
