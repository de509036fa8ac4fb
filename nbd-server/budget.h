// Bounds on what clients can make the server hold, shared by every connection's thread.
//
// ByteBudget: bytes of request buffers, taken when a request is admitted and given back when its
// reply has gone out. A connection whose next request does not fit stops reading its socket
// (TCP and unix sockets then push back on the client) until bytes come back.
//
// LogLimiter: a log that a flood of bad clients cannot grow without bound. At most `burst` lines
// per key per window; the rest are counted and reported with the next line that gets through.
#ifndef STRATA_NBD_BUDGET_H_
#define STRATA_NBD_BUDGET_H_

#include <atomic>
#include <cstdarg>
#include <cstdint>

#include "util/check.h"
#include "util/mutex.h"

namespace strata::nbd {

class ByteBudget {
 public:
  explicit ByteBudget(uint64_t limit_bytes) : limit_(limit_bytes) {}
  ByteBudget(const ByteBudget&) = delete;
  ByteBudget& operator=(const ByteBudget&) = delete;

  // Takes `bytes` if they fit under the limit. Thread-safe.
  bool TryTake(uint64_t bytes) {
    uint64_t used = used_.load(std::memory_order_relaxed);
    do {
      if (used > limit_ || bytes > limit_ - used) {
        return false;
      }
    } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    return true;
  }
  // Takes `bytes` past the limit (a bounded exception the caller accounts for).
  void TakeAnyway(uint64_t bytes) { used_.fetch_add(bytes, std::memory_order_relaxed); }
  void Give(uint64_t bytes) {
    uint64_t before = used_.fetch_sub(bytes, std::memory_order_relaxed);
    STRATA_CHECK(before >= bytes);  // never more given back than taken
  }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

// The server's shared budgets (owned by Server; tests and the fuzzer make their own).
struct Budgets {
  // Buffers of requests admitted and not yet answered, across every connection.
  ByteBudget* in_flight = nullptr;
  // Small buffers idle connections keep for reuse (no allocation per request in steady state).
  ByteBudget* retained = nullptr;
};

enum class LogKey : uint8_t { kRefused, kHandshake, kEvicted, kTimeout, kConnection, kCount };

class LogLimiter {
 public:
  static constexpr uint32_t kBurst = 10;  // lines per key per window
  static constexpr uint64_t kWindowMs = 10'000;

  // printf-style; one line to stderr with the "strata-nbd: " prefix, unless over the limit.
  // Strings from clients must be escaped by the caller (util/text.h).
  void Log(LogKey key, const char* format, ...) __attribute__((format(printf, 3, 4)));
  uint64_t suppressed() const;

 private:
  struct Window {
    uint64_t start_ms = 0;
    uint32_t lines = 0;
    uint64_t dropped = 0;  // in this key's current window, not yet reported
  };
  mutable Mutex mu_;
  Window windows_[static_cast<size_t>(LogKey::kCount)] GUARDED_BY(mu_);
  uint64_t suppressed_total_ GUARDED_BY(mu_) = 0;
};

// One limiter for the process: every connection's thread logs through it.
LogLimiter& ServerLog();

}  // namespace strata::nbd

#endif  // STRATA_NBD_BUDGET_H_
