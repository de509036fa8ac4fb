#include "store/allocator.h"

#include <utility>

#include "util/check.h"

namespace strata {

ChunkAllocator::ChunkAllocator(uint64_t frontier, uint64_t capacity_chunks,
                               std::vector<uint64_t> dirty_free)
    : frontier_(frontier), capacity_chunks_(capacity_chunks), dirty_(std::move(dirty_free)) {
  STRATA_CHECK(dirty_.size() <= frontier_);
}

std::optional<ChunkAllocator::Grant> ChunkAllocator::Allocate() {
  if (capacity_chunks_ != 0 && used_chunks() >= capacity_chunks_) {
    return std::nullopt;
  }
  if (!clean_.empty()) {
    uint64_t phys = clean_.back();
    clean_.pop_back();
    return Grant{phys, true};
  }
  // Reuse before growing the data file. Dirty chunks are rare (a write that failed); recovery
  // punches every free chunk, so after an open they are all clean.
  if (!dirty_.empty()) {
    uint64_t phys = dirty_.back();
    dirty_.pop_back();
    return Grant{phys, false};
  }
  return Grant{frontier_++, true};
}

void ChunkAllocator::ReturnUnmapped(uint64_t phys) {
  STRATA_CHECK(phys < frontier_);
  dirty_.push_back(phys);
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

void ChunkAllocator::AddClean(const std::vector<uint64_t>& chunks) {
  clean_.insert(clean_.end(), chunks.begin(), chunks.end());
}
void ChunkAllocator::AddPunched(const std::vector<uint64_t>& chunks) {
  punched_.insert(punched_.end(), chunks.begin(), chunks.end());
}
void ChunkAllocator::AddDirty(const std::vector<uint64_t>& chunks) {
  dirty_.insert(dirty_.end(), chunks.begin(), chunks.end());
}
void ChunkAllocator::RestorePending(const std::vector<uint64_t>& chunks,
                                    const std::vector<uint64_t>& trimmed) {
  pending_.insert(pending_.end(), chunks.begin(), chunks.end());
  pending_trimmed_.insert(pending_trimmed_.end(), trimmed.begin(), trimmed.end());
}

std::vector<uint64_t> ChunkAllocator::AllFree() const {
  std::vector<uint64_t> out(clean_);
  out.insert(out.end(), dirty_.begin(), dirty_.end());
  out.insert(out.end(), punched_.begin(), punched_.end());
  return out;
}

}  // namespace strata
