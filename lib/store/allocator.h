// ChunkAllocator: physical chunk bookkeeping (docs/design.md §3). Not thread-safe: the pool
// mutex guards it.
//
// Every chunk number below the frontier is in exactly one state:
//   in use      (mapped, or granted to a write in flight)
//   pending     (unmapped in memory; the unmapping is not durable yet: never reused)
//   punched     (free; its punch-hole is not yet covered by a data-file sync)
//   clean       (free; reads as zeros for sure)
//   dirty       (free; content unknown: reuse for a partial write must write the whole chunk;
//               a reserve of freed chunks is kept dirty, unpunched, for sub-chunk copy-on-write)
#ifndef STRATA_STORE_ALLOCATOR_H_
#define STRATA_STORE_ALLOCATOR_H_

#include <cstdint>
#include <optional>
#include <vector>

namespace strata {

class ChunkAllocator {
 public:
  struct Grant {
    uint64_t phys;
    bool clean;  // reads as zeros: a partial write need not write the rest of the chunk
  };

  // `dirty_free`: free chunks below `frontier` after recovery (content unknown).
  ChunkAllocator(uint64_t frontier, uint64_t capacity_chunks, std::vector<uint64_t> dirty_free);

  // A chunk to write, or nullopt when `capacity_chunks` are in use (NoSpace). `prefer_dirty`
  // (the write covers the whole chunk, or is a partial version): a dirty chunk first, whose
  // blocks the data file already holds. Otherwise clean, new, then dirty.
  std::optional<Grant> Allocate(bool prefer_dirty = false);
  // A granted chunk that will not be mapped (its write failed): free again, content unknown.
  void ReturnUnmapped(uint64_t phys);
  // A mapped chunk was unmapped in memory; it becomes reusable after a durable commit.
  // `reads_as_zero_anyway`: the unmapping came from a trim or write-zeroes, so every state a
  // crash can leave reads the chunk as zeros whether or not it is punched early (used when the
  // host file system is full and the commit itself needs the space).
  void FreeAfterCommit(uint64_t phys, bool reads_as_zero_anyway);

  // Commit protocol: at commit start take both lists; after the data sync and the metadata
  // commit, give back `punched` as clean; punch `pending` and give it back as punched (or dirty
  // when punching failed). On a failed commit, give both back untouched.
  // `trimmed` receives the subset freed by trims (see FreeAfterCommit).
  std::vector<uint64_t> TakePending(std::vector<uint64_t>* trimmed);
  std::vector<uint64_t> TakePunched();
  void AddClean(const std::vector<uint64_t>& chunks);
  void AddPunched(const std::vector<uint64_t>& chunks);
  void AddDirty(const std::vector<uint64_t>& chunks);
  void RestorePending(const std::vector<uint64_t>& chunks, const std::vector<uint64_t>& trimmed);

  uint64_t frontier() const { return frontier_; }
  uint64_t capacity_chunks() const { return capacity_chunks_; }
  void set_capacity_chunks(uint64_t c) { capacity_chunks_ = c; }
  uint64_t dirty_chunks() const { return dirty_.size(); }
  uint64_t free_chunks() const { return clean_.size() + dirty_.size() + punched_.size(); }
  uint64_t pending_chunks() const { return pending_.size(); }
  // Chunks in use or pending (what the pool stores).
  uint64_t used_chunks() const { return frontier_ - free_chunks(); }
  // For checks: every free chunk number.
  std::vector<uint64_t> AllFree() const;

 private:
  void CheckInvariants(const std::vector<uint64_t>& moved) const;
  static constexpr uint64_t kMaxFrontier = uint64_t{1} << 40;  // chunk numbers stay far below
  uint64_t frontier_;
  uint64_t capacity_chunks_;  // 0 = unlimited
  std::vector<uint64_t> clean_;
  std::vector<uint64_t> dirty_;
  std::vector<uint64_t> punched_;
  std::vector<uint64_t> pending_;
  std::vector<uint64_t> pending_trimmed_;  // subset of pending_
};

}  // namespace strata

#endif  // STRATA_STORE_ALLOCATOR_H_
