// SimEnv: an in-memory, seeded, fault-injecting Env for crash tests (leveldb's
// FaultInjectionTestEnv, TigerBeetle's simulated storage).
//
// It models a disk with a volatile write cache. Every write, punch and truncate is visible to
// reads at once but stays *unsynced* until a Sync of its file. Crash() decides, by the seed, the
// fate of every unsynced operation: dropped, applied, or (writes) torn into an arbitrary subset of
// its 512-byte sectors; then the files hold exactly what "reached the platter". Power failure can
// also be scheduled after N more mutating operations, after which every operation fails with EIO
// (nothing more reaches the disk) until Crash() powers the disk on again.
#ifndef STRATA_IO_SIM_ENV_H_
#define STRATA_IO_SIM_ENV_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "strata/env.h"

#include "util/mutex.h"

namespace strata {

class SimEnv final : public Env {
 public:
  explicit SimEnv(uint64_t seed);
  ~SimEnv() override;

  Result<FileId> OpenFile(const std::string& path, bool create, bool direct) override;
  Status CloseFile(FileId file) override;
  Result<uint64_t> FileSize(FileId file) override;
  Result<uint64_t> AllocatedBytes(FileId file) override;
  Status Truncate(FileId file, uint64_t size_bytes) override;
  Status Sync(FileId file) override;
  Status PunchHole(FileId file, uint64_t offset_bytes, uint64_t length_bytes) override;
  Status ReadSync(FileId file, void* buf, size_t length_bytes, uint64_t offset_bytes) override;
  Status WriteSync(FileId file, const void* buf, size_t length_bytes,
                   uint64_t offset_bytes) override;
  Result<std::unique_ptr<IoEngine>> NewEngine(uint32_t queue_depth) override;
  // Its own files, else the host's (the pool directory and LMDB's files are real).
  Result<bool> FileExists(const std::string& path) override;
  // A lock table in memory: a second lock of a path this SimEnv holds is Busy, and while
  // SetLockFailure is on every lock fails with EIO.
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;
  void SetLockFailure(bool fail);
  // The host's clocks plus whatever AdvanceClock added: a test moves time forward (QoS credits
  // refill, the filler sees the pool idle, a remote's leases and markers expire) without sleeping.
  uint64_t MonotonicNs() override;
  int64_t WallClockMs() override;
  void AdvanceClock(uint64_t ns);
  // Stepped: pools on this Env start no background threads (BackgroundThreads() is false); the
  // simulator runs their work with PoolImpl::StepBackground. Set before a pool opens. A remote
  // whose Env this is (RemoteTuning::env) uploads on its caller's thread.
  void SetSteppedBackground(bool stepped) { stepped_background_ = stepped; }
  bool BackgroundThreads() override { return !stepped_background_; }

  // The disk loses power after `ops` more mutating operations (-1: never).
  void SetPowerFailAfter(int64_t ops);
  // The next `count` Syncs fail with EIO (and sync nothing).
  void FailNextSyncs(int count);
  // While set, writes that touch an unallocated page (a hole) fail with ENOSPC.
  void SetNoSpace(bool no_space);
  // Decides the fate of every unsynced operation, then powers the disk on again.
  // REQUIRES: no file is open (the Pool using this Env has been destroyed).
  void Crash();
  uint64_t unsynced_ops() const;

  // Runs one IoOp synchronously (used by the engine). Returns bytes or -errno.
  int32_t Execute(IoOp* op);

 private:
  struct File;
  struct Pending;
  int32_t DoRead(File* f, char* buf, uint64_t len, uint64_t off) REQUIRES(mu_);
  int32_t DoWrite(File* f, const char* buf, uint64_t len, uint64_t off) REQUIRES(mu_);
  int32_t DoSync(File* f) REQUIRES(mu_);
  int32_t DoPunch(File* f, uint64_t off, uint64_t len) REQUIRES(mu_);
  bool ConsumeMutation() REQUIRES(mu_);  // false when the disk has no power
  File* Lookup(FileId id) REQUIRES(mu_);

  mutable Mutex mu_;
  std::mt19937_64 rng_ GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<File>> files_ GUARDED_BY(mu_);
  std::vector<File*> open_ GUARDED_BY(mu_);  // FileId -> file (null when closed)
  int64_t power_fail_after_ GUARDED_BY(mu_) = -1;
  bool dead_ GUARDED_BY(mu_) = false;
  int fail_syncs_ GUARDED_BY(mu_) = 0;
  bool no_space_ GUARDED_BY(mu_) = false;
  std::set<std::string> locked_ GUARDED_BY(mu_);  // paths LockFile holds
  bool fail_locks_ GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> clock_skew_ns_{0};
  bool stepped_background_ = false;
};

}  // namespace strata

#endif  // STRATA_IO_SIM_ENV_H_
