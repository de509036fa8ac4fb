// The pool check (Pool::Check), one part per invariant. It reads a quiet pool: the caller holds
// the commit mutex and the pool mutex, the reclaimer is idle and the overlay is committed, so
// the records in memory and the map in LMDB are one state. It only reads; it reports at most
// kMaxProblems problems and never stops at the first.
#ifndef STRATA_STORE_POOL_CHECK_H_
#define STRATA_STORE_POOL_CHECK_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "strata/pool.h"

#include "store/pool_impl.h"

namespace strata {

// What the check reads (all owned by PoolImpl, under the locks named above).
struct PoolCheckView {
  const std::map<std::string, VolumeRecord>& volumes;
  const std::map<std::string, SnapshotRecord>& snapshots;
  const std::map<uint64_t, LineageState>& lineages;
  MetaStore* meta;
  const ChunkAllocator& alloc;
  uint64_t chunk_size_bytes;
  uint32_t all_units;  // the `present` mask of a whole chunk
  bool overlay_empty;
};

class PoolCheck {
 public:
  static constexpr size_t kMaxProblems = 100;

  explicit PoolCheck(const PoolCheckView& view) : view_(view) {}
  CheckReport Run();

 private:
  enum Kind : uint8_t { kData, kTombstone, kPartial };
  void Problem(std::string text);
  // Records refer to each other: every clone has its source, every volume its lineage, every
  // snapshot an epoch its lineage has reached. Sets bounds_ for the map scan.
  void CheckRecords();
  // Every version lies within its lineage's epochs and size; partial versions name units inside
  // the chunk; each physical chunk is mapped at most once and below the frontier.
  void ScanVersions();
  // No dead version (each is seen by a live epoch: a pin, or the head while the volume exists);
  // a partial version is its head's newest, over a whole data version.
  void CheckLiveness();
  void CheckVersionLive(size_t i, const LineageState& lineage);
  // The change index holds exactly one record per version.
  void CheckChangeIndex();
  // Mapped, free and pending chunks partition [0, frontier); nothing is left uncommitted.
  void CheckSpace();

  const PoolCheckView view_;
  CheckReport report_;
  // Per lineage: the newest epoch a version may be born at, and the size it may not pass (0: no
  // bound known, for a lineage some clone reads through).
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> bounds_;
  std::vector<MapKey> keys_;  // every version, in map order
  std::vector<Kind> kinds_;
  std::vector<uint8_t> chunk_state_;  // per physical chunk: 0 unseen, 1 mapped, 2 free
};

}  // namespace strata

#endif  // STRATA_STORE_POOL_CHECK_H_
