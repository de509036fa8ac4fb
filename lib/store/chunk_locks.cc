#include "store/chunk_locks.h"

#include "util/check.h"

namespace strata {

size_t ChunkLocks::StripeOf(uint64_t lineage, uint64_t chunk) {
  uint64_t h = (lineage * 0x9E3779B97F4A7C15ull) ^ (chunk * 0xC2B2AE3D27D4EB4Full);
  return static_cast<size_t>((h ^ (h >> 29)) & (kLockStripes - 1));
}

bool ChunkLocks::TryLock(uint64_t lineage, uint64_t chunk, bool exclusive) {
  int32_t& s = stripes_[StripeOf(lineage, chunk)];
  if (exclusive) {
    if (s != 0) {
      return false;
    }
    s = -1;
    return true;
  }
  if (s < 0) {
    return false;
  }
  STRATA_CHECK(s < INT32_MAX);
  s++;
  return true;
}

void ChunkLocks::Unlock(uint64_t lineage, uint64_t chunk, bool exclusive) {
  int32_t& s = stripes_[StripeOf(lineage, chunk)];
  if (exclusive) {
    STRATA_CHECK(s == -1);
    s = 0;
  } else {
    STRATA_CHECK(s > 0);
    s--;
  }
}

void ZeroHints::Add(uint64_t phys, uint32_t units) {
  if (units == 0) {
    return;
  }
  auto it = units_.find(phys);
  if (it != units_.end()) {
    it->second |= units;
  } else if (units_.size() < kMaxZeroHints) {  // full: the chunk shows as plain data
    units_.emplace(phys, units);
  }
}

void ZeroHints::ClearSlow(uint64_t phys, uint32_t units) {
  auto it = units_.find(phys);
  if (it != units_.end() && (it->second &= ~units) == 0) {
    units_.erase(it);
  }
}

}  // namespace strata
