#include "store/allocator.h"

#include <utility>

#include "util/check.h"

namespace strata {

ChunkAllocator::ChunkAllocator(uint64_t frontier, uint64_t capacity_chunks,
                               std::vector<uint64_t> dirty_free)
    : frontier_(frontier), capacity_chunks_(capacity_chunks), dirty_(std::move(dirty_free)) {
  STRATA_CHECK(dirty_.size() <= frontier_);
}

std::optional<ChunkAllocator::Grant> ChunkAllocator::Allocate(bool prefer_dirty) {
  if (capacity_chunks_ != 0 && used_chunks() >= capacity_chunks_) {
    return std::nullopt;
  }
  auto take = [](std::vector<uint64_t>* list, bool clean) {
    uint64_t phys = list->back();
    list->pop_back();
    return Grant{phys, clean};
  };
  // A dirty chunk costs a whole-chunk write to any write that does not cover it all (zeros
  // around the data), so only writes that write it all, or partial versions, prefer one. The
  // others take a clean chunk, then grow the data file, and reuse a dirty one last. Recovery
  // punches every free chunk, so after an open they are all clean.
  if (prefer_dirty && !dirty_.empty()) {
    return take(&dirty_, false);
  }
  if (!clean_.empty()) {
    return take(&clean_, true);
  }
  if (frontier_ < kMaxFrontier || dirty_.empty()) {
    return Grant{frontier_++, true};
  }
  return take(&dirty_, false);
}

void ChunkAllocator::ReturnUnmapped(uint64_t phys) {
  STRATA_CHECK(phys < frontier_);
  dirty_.push_back(phys);
  STRATA_CHECK(free_chunks() + pending_.size() <= frontier_);
}

void ChunkAllocator::FreeAfterCommit(uint64_t phys, bool reads_as_zero_anyway) {
  STRATA_CHECK(phys < frontier_);
  pending_.push_back(phys);
  if (reads_as_zero_anyway) {
    pending_trimmed_.push_back(phys);
  }
}

std::vector<uint64_t> ChunkAllocator::TakePending(std::vector<uint64_t>* trimmed) {
  *trimmed = std::exchange(pending_trimmed_, {});
  return std::exchange(pending_, {});
}
std::vector<uint64_t> ChunkAllocator::TakePunched() { return std::exchange(punched_, {}); }

// Always on, O(1) per chunk moved: every chunk a transition names is below the frontier, no
// more chunks are free or pending than exist, and the trimmed ones are among the pending.
void ChunkAllocator::CheckInvariants(const std::vector<uint64_t>& moved) const {
  for (uint64_t c : moved) {
    STRATA_CHECK(c < frontier_);
  }
  STRATA_CHECK(free_chunks() + pending_.size() <= frontier_);
  STRATA_CHECK(pending_trimmed_.size() <= pending_.size());
}

void ChunkAllocator::AddClean(const std::vector<uint64_t>& chunks) {
  clean_.insert(clean_.end(), chunks.begin(), chunks.end());
  CheckInvariants(chunks);
}
void ChunkAllocator::AddPunched(const std::vector<uint64_t>& chunks) {
  punched_.insert(punched_.end(), chunks.begin(), chunks.end());
  CheckInvariants(chunks);
}
void ChunkAllocator::AddDirty(const std::vector<uint64_t>& chunks) {
  dirty_.insert(dirty_.end(), chunks.begin(), chunks.end());
  CheckInvariants(chunks);
}
void ChunkAllocator::RestorePending(const std::vector<uint64_t>& chunks,
                                    const std::vector<uint64_t>& trimmed) {
  pending_.insert(pending_.end(), chunks.begin(), chunks.end());
  pending_trimmed_.insert(pending_trimmed_.end(), trimmed.begin(), trimmed.end());
  CheckInvariants(chunks);
}

std::vector<uint64_t> ChunkAllocator::AllFree() const {
  std::vector<uint64_t> out(clean_);
  out.insert(out.end(), dirty_.begin(), dirty_.end());
  out.insert(out.end(), punched_.begin(), punched_.end());
  return out;
}

}  // namespace strata
