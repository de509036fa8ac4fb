// The monotonic clock, for timeouts and rates (never for wall-clock times).
#ifndef STRATA_UTIL_CLOCK_H_
#define STRATA_UTIL_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace strata {

inline uint64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace strata

#endif  // STRATA_UTIL_CLOCK_H_
