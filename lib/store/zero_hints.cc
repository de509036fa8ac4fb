#include "store/zero_hints.h"

#include "util/check.h"

namespace strata {

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
