// Space: where a pool's chunk data lives, as one part with its own locks: the chunk files
// (DataFiles), which physical chunks are free (ChunkAllocator) and which units of a chunk are
// known zeros (ZeroHints). docs/design.md §7 shows it beside the chunk map.
//
// Thread-safety: every method may be called from any thread. Its mutexes are leaves: they may be
// taken under the pool mutex, never the other way round, and no I/O runs under them (the data
// files' truncates and opens run under DataFiles' own lock, punches and syncs under none). So a
// first write allocates its chunk without the pool mutex.
//
// The commit protocol (docs/durability.md) is the one ChunkAllocator documents, in three calls:
// TakeForCommit under the pool mutex together with the overlay's cut (a chunk freed in memory
// had its unmapping put in the overlay before, so one commit carries both), then Committed or
// Uncommitted, then PunchFreed outside every lock.
#ifndef STRATA_STORE_SPACE_H_
#define STRATA_STORE_SPACE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/env.h"

#include "store/allocator.h"
#include "store/data_files.h"
#include "store/zero_hints.h"
#include "util/mutex.h"

namespace strata {

class Space {
 public:
  Space(Env* env, std::string dir, uint32_t chunk_size_bytes, bool want_direct_io);
  Space(const Space&) = delete;
  Space& operator=(const Space&) = delete;

  // At open, before any thread: opens the data files the committed frontier reaches and makes
  // every chunk below it that `used` does not mark free; punches those (contiguous runs) and
  // syncs, so that after an open every free chunk is clean. `capacity_chunks`: 0 = unlimited.
  // Errors: Corruption (a frontier past 1 PiB), IOError.
  Status Open(uint64_t frontier, uint64_t capacity_chunks, const std::vector<bool>& used)
      EXCLUDES(mu_);

  // ---- Chunks ----
  // A chunk to write (its data file made to cover it, its zero hints dropped), or nullopt when
  // the pool is full or its file could not be extended. `prefer_dirty`: see ChunkAllocator.
  std::optional<ChunkAllocator::Grant> Allocate(bool prefer_dirty = false) EXCLUDES(mu_);
  // A granted chunk that will not be mapped: free again, content unknown.
  void ReturnUnmapped(uint64_t phys) EXCLUDES(mu_);
  // A mapped chunk was unmapped in memory (the caller holds the pool mutex, under which the
  // unmapping entered the overlay): reusable after the next durable commit.
  // `by_trim`: a trim or write-zeroes unmapped it (ChunkAllocator::FreeAfterCommit).
  void FreeAfterCommit(uint64_t phys, bool by_trim) EXCLUDES(mu_);
  // Whether chunks freed in memory wait for a commit (a full pool may then wait for it).
  bool FreesPending() const EXCLUDES(mu_);
  // Whether `phys` was ever handed out (below the frontier): the map's check on every put.
  bool HandedOut(uint64_t phys) const { return phys < frontier_.load(std::memory_order_acquire); }

  // ---- The commit protocol ----
  struct CommitCut {
    std::vector<uint64_t> freed;    // pending frees this commit makes durable
    std::vector<uint64_t> trimmed;  // the subset freed by trims
    std::vector<uint64_t> punched;  // punched chunks this commit's data sync covers
    uint64_t frontier = 0;          // the frontier to record in the header
  };
  CommitCut TakeForCommit() EXCLUDES(mu_);
  // The commit failed without changing anything (no room for metadata): all back as it was.
  void Uncommitted(const CommitCut& cut) EXCLUDES(mu_);
  // The commit is durable: punched chunks become clean; of the freed ones, up to
  // `warm_reserve` dirty chunks are kept unpunched (sub-chunk copy-on-write overwrites them,
  // docs/design.md §2.3). Returns the freed chunks to punch now (PunchFreed).
  std::vector<uint64_t> Committed(CommitCut cut, size_t warm_reserve) EXCLUDES(mu_);
  // Punches each run of contiguous chunks once; they become clean after the next data sync
  // (a failed punch leaves its chunks dirty).
  void PunchFreed(std::vector<uint64_t> chunks) EXCLUDES(mu_);
  // When the host file system is full: punches chunks freed by trims before their commit, so
  // that the commit has room (every state a crash can leave reads them as zeros anyway).
  bool PunchTrimmedEarly(const std::vector<uint64_t>& trimmed);
  // Syncs every data file: what makes data durable before the metadata that points to it.
  Status Sync();

  // ---- Known-zero units (BLOCK_STATUS's STATE_ZERO inside a chunk; ZeroHints) ----
  // A hint only: every write to a chunk's bytes clears its units (or Allocate drops them all), so
  // a hint is never stale. A pool with none, the usual case, takes no lock here.
  void AddZeroUnits(uint64_t phys, uint32_t units) EXCLUDES(zero_mu_);
  void ClearZeroUnits(uint64_t phys, uint32_t units) EXCLUDES(zero_mu_);
  uint32_t ZeroUnits(uint64_t phys) const EXCLUDES(zero_mu_);

  // ---- Where a chunk lives; accounting ----
  FileId FileOf(uint64_t phys) const { return files_.FileOf(phys); }
  uint64_t OffsetOf(uint64_t phys) const { return files_.OffsetOf(phys); }
  std::vector<FileId> Files() const { return files_.Files(); }
  bool direct_io() const { return files_.direct_io(); }
  struct Usage {
    uint64_t used_chunks = 0;  // in use or pending
    uint64_t free_chunks = 0;
    uint64_t frontier = 0;
  };
  Usage usage() const EXCLUDES(mu_);
  // For the pool check (under the pool mutex, on a quiet pool): the allocator as it stands.
  ChunkAllocator AllocatorCopy() const EXCLUDES(mu_);

 private:
  Env* const env_;
  const uint32_t chunk_size_;
  DataFiles files_;   // thread-safe on its own (its own leaf lock)
  mutable Mutex mu_;  // never held with zero_mu_
  std::optional<ChunkAllocator> alloc_ GUARDED_BY(mu_);  // made by Open
  std::atomic<uint64_t> frontier_{0};                    // alloc_'s, for lock-free checks
  mutable Mutex zero_mu_;
  ZeroHints zero_hints_ GUARDED_BY(zero_mu_);
  std::atomic<bool> zero_hints_any_{false};  // never cleared: set before a hint is added
};

}  // namespace strata

#endif  // STRATA_STORE_SPACE_H_
