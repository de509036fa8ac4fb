// ZeroHints: which units of a physical chunk a write-zeroes wrote as zeros (BLOCK_STATUS's
// STATE_ZERO inside a chunk). Hints only: in memory, bounded (past kMaxZeroHints a chunk simply
// shows as data), cleared for units any later write touches. Not thread-safe: the pool keeps it
// under a mutex of its own.
#ifndef STRATA_STORE_ZERO_HINTS_H_
#define STRATA_STORE_ZERO_HINTS_H_

#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace strata {

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

#endif  // STRATA_STORE_ZERO_HINTS_H_
