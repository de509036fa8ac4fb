// PoolImpl: owns the metadata store, the data files, the allocator, the in-memory overlay of
// uncommitted map changes and the commit thread. docs/design.md explains each piece.
#ifndef STRATA_STORE_POOL_IMPL_H_
#define STRATA_STORE_POOL_IMPL_H_

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "strata/pool.h"

#include "meta/meta_store.h"
#include "store/allocator.h"

namespace strata {

class VolumeImpl;

constexpr uint64_t kDataFileBytes = 1ull << 40;  // address space of one chunk file
constexpr size_t kMaxDataFiles = 1024;           // 1 PiB of chunk addresses
constexpr size_t kLockStripes = 4096;            // chunk lock stripes (power of two)
constexpr size_t kOverlayCommitEntries = 65536;  // overlay size that triggers a commit
constexpr uint32_t kIoAlign = 4096;              // unit of every data-file I/O (O_DIRECT-safe)
// Data files are kept this far (sparse) past the frontier: a first write then fills a hole
// instead of extending the file, which ext4 serializes for O_DIRECT.
constexpr uint64_t kFileSizeAheadBytes = 1ull << 30;

struct OverlayEntry {
  MapValue value;
  bool erased = false;  // the committed version with this key is deleted
  uint64_t gen = 0;     // bumped on every change; a commit drops only what it wrote
};

// A volume's durable record (JSON in the `volumes` table).
struct VolumeRecord {
  VolumeInfo info;
  bool deleting = false;           // a delete is committing: not openable
  std::weak_ptr<VolumeImpl> open;  // the shared handle while any user holds it
};

class PoolImpl final : public Pool {
 public:
  static Result<std::unique_ptr<PoolImpl>> OpenImpl(const std::string& dir,
                                                    const PoolOptions& options);
  ~PoolImpl() override;

  Result<VolumeInfo> CreateVolume(const VolumeSpec& spec) override;
  Result<VolumeInfo> DescribeVolume(const std::string& id_or_name) override;
  std::vector<VolumeInfo> ListVolumes() override;
  Status DeleteVolume(const std::string& volume_id) override;
  Result<VolumeInfo> ResizeVolume(const std::string& volume_id, uint64_t new_size) override;
  Result<std::shared_ptr<Volume>> OpenVolume(const std::string& volume_id) override;
  Status Flush() override;
  PoolInfo Info() override;
  Result<CheckReport> Check() override;

  // ---- Data-path services for VolumeImpl. "Locked" means REQUIRES: mu_ held. ----
  std::mutex& mu() { return mu_; }
  uint32_t chunk_size() const { return chunk_size_; }
  // Newest version of (lineage, chunk) with birth <= max_birth, overlay over LMDB.
  Result<std::optional<Version>> NewestLocked(uint64_t lineage, uint64_t chunk, uint64_t max_birth);
  // Newest version (birth <= max_birth) of every chunk in [first, end) that has one, in chunk
  // order, overlay over LMDB; at most `max_chunks` of them (the scan then stops early and
  // *end_out says where). Cost O(versions in the range).
  Status MappedChunksLocked(uint64_t lineage, uint64_t first, uint64_t end, uint64_t max_birth,
                            size_t max_chunks, std::vector<std::pair<uint64_t, Version>>* out,
                            uint64_t* end_out);
  bool TryLockChunkLocked(uint64_t lineage, uint64_t chunk, bool exclusive);
  void UnlockChunkLocked(uint64_t lineage, uint64_t chunk, bool exclusive);
  std::optional<ChunkAllocator::Grant> AllocateLocked();
  void ReturnUnmappedLocked(uint64_t phys) { alloc_->ReturnUnmapped(phys); }
  // Frees a chunk unmapped by a trim or write-zeroes (reusable after the next commit).
  void FreeTrimmedLocked(uint64_t phys) { alloc_->FreeAfterCommit(phys, true); }
  void PutVersionLocked(const MapKey& key, const MapValue& value);
  void EraseVersionLocked(const MapKey& key);
  const Status& latched_locked() const { return latched_; }
  // Where a physical chunk lives. Thread-safe.
  FileId FileOf(uint64_t phys) const;
  uint64_t OffsetOf(uint64_t phys) const { return (phys % chunks_per_file_) * chunk_size_; }
  // Queues a group commit; `done` runs on `loop`'s thread (or the commit thread if loop is null).
  void RequestCommit(EventLoop* loop, std::function<void(const Status&)> done);
  // A loop for a synchronous call, and back.
  Result<std::unique_ptr<EventLoop>> AcquireLoop();
  void ReleaseLoop(std::unique_ptr<EventLoop> loop);
  Env* env() const { return env_; }

 private:
  struct Waiter {
    EventLoop* loop;
    std::function<void(const Status&)> done;
  };

  PoolImpl() = default;
  Status Recover();
  Status OpenDataFilesThrough(uint64_t frontier);
  Status EnsureFileLocked(uint64_t phys);
  // Runs one commit of the overlay plus `extra`. REQUIRES: commit_mu_ held.
  Status CommitLocked(CommitBatch extra);
  Status CommitOnce(const CommitBatch& batch);
  void WakeCommitter();
  // When the host file system is full: punches trimmed chunks whose free is not yet committed, so
  // that the commit which frees them has room to be written.
  bool PunchTrimmedEarly(const std::vector<uint64_t>& trimmed);
  Status SyncDataFiles();
  void PunchFreed(const std::vector<uint64_t>& chunks);
  void Latch(const Status& status);
  void CommitterMain();
  bool HasPendingWork();
  Status CollectLineageChunks(uint64_t lineage, std::vector<uint64_t>* phys);
  Result<VolumeRecord*> FindLocked(const std::string& id_or_name);
  Status ValidateSize(uint64_t size_bytes) const;
  std::string NewVolumeId();
  void CheckMapLocked(CheckReport* report);

  std::string dir_;
  PoolOptions options_;
  Env* env_ = nullptr;
  int lock_fd_ = -1;
  uint32_t chunk_size_ = 0;
  uint64_t chunks_per_file_ = 0;
  bool direct_io_ = false;
  std::string engine_name_;
  std::unique_ptr<MetaStore> meta_;

  std::mutex mu_;  // guards everything below down to the commit section
  PoolHeader header_;
  std::unique_ptr<ChunkAllocator> alloc_;
  std::map<MapKey, OverlayEntry> overlay_;
  uint64_t gen_ = 0;
  std::map<std::string, VolumeRecord> volumes_;
  std::vector<int32_t> stripes_;  // >0 readers, -1 writer, 0 free
  Status latched_;
  std::array<std::atomic<FileId>, kMaxDataFiles> files_;
  std::array<uint64_t, kMaxDataFiles> file_sizes_{};  // logical sizes we set (sparse)
  size_t file_count_ = 0;

  std::mutex commit_mu_;  // one commit at a time (the commit thread or a control op)

  std::mutex waiters_mu_;
  std::condition_variable waiters_cv_;
  std::deque<Waiter> waiters_;  // GUARDED_BY(waiters_mu_)
  bool stop_ = false;           // GUARDED_BY(waiters_mu_)
  bool commit_soon_ = false;    // GUARDED_BY(waiters_mu_): the overlay reached its bound
  std::thread committer_;

  std::mutex loops_mu_;
  std::vector<std::unique_ptr<EventLoop>> idle_loops_;
};

}  // namespace strata

#endif  // STRATA_STORE_POOL_IMPL_H_
