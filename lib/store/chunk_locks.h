// ChunkLocks: per-chunk reader/writer locks that never block (docs/design.md §2). A request that
// finds its chunk held retries on its loop's next turn instead of waiting, so no thread ever
// sleeps on a chunk. Chunks hash onto kLockStripes stripes: two chunks may share one (a false
// conflict costs a retry, never correctness). Not thread-safe: the pool mutex guards it, as
// ChunkAllocator.
//
// ZeroHints: which units of a physical chunk a write-zeroes wrote as zeros (BLOCK_STATUS's
// STATE_ZERO inside a chunk). Hints only: in memory, bounded (past kMaxZeroHints a chunk simply
// shows as data), cleared for units any later write touches. Not thread-safe either.
#ifndef STRATA_STORE_CHUNK_LOCKS_H_
#define STRATA_STORE_CHUNK_LOCKS_H_

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace strata {

constexpr size_t kLockStripes = 4096;  // chunk lock stripes (power of two)
static_assert((kLockStripes & (kLockStripes - 1)) == 0, "StripeOf masks with kLockStripes - 1");

class ChunkLocks {
 public:
  ChunkLocks() : stripes_(kLockStripes, 0) {}
  // Takes (lineage, chunk) shared or exclusive; false (and nothing taken) when held otherwise.
  bool TryLock(uint64_t lineage, uint64_t chunk, bool exclusive);
  // REQUIRES: held as `exclusive` says (checked: a mismatch stops the process).
  void Unlock(uint64_t lineage, uint64_t chunk, bool exclusive);

 private:
  static size_t StripeOf(uint64_t lineage, uint64_t chunk);
  std::vector<int32_t> stripes_;  // >0 readers, -1 writer, 0 free
};

class ZeroHints {
 public:
  static constexpr size_t kMaxZeroHints = 65536;
  void Add(uint64_t phys, uint32_t units);
  void Clear(uint64_t phys, uint32_t units) {
    if (!units_.empty()) {
      ClearSlow(phys, units);
    }
  }
  uint32_t Get(uint64_t phys) const {
    if (units_.empty()) {
      return 0;
    }
    auto it = units_.find(phys);
    return it == units_.end() ? 0 : it->second;
  }
  size_t size() const { return units_.size(); }

 private:
  void ClearSlow(uint64_t phys, uint32_t units);
  std::unordered_map<uint64_t, uint32_t> units_;  // phys -> units known zero
};

}  // namespace strata

#endif  // STRATA_STORE_CHUNK_LOCKS_H_
