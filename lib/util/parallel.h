// A bounded fork-join over an index range: the calling thread and up to `threads` - 1 others
// take indexes until none is left. For CPU work on batches (compression, hashing).
#ifndef STRATA_UTIL_PARALLEL_H_
#define STRATA_UTIL_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

namespace strata {

inline void ParallelFor(size_t n, unsigned threads, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      fn(i);
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < std::min<size_t>(threads, n); t++) {
    pool.emplace_back(work);
  }
  work();
  for (auto& t : pool) {
    t.join();
  }
}

}  // namespace strata

#endif  // STRATA_UTIL_PARALLEL_H_
