#include "budget.h"

#include <time.h>

#include <cstdio>

#include "util/clock.h"

namespace strata::nbd {

void LogLimiter::Log(LogKey key, const char* format, ...) {
  uint64_t dropped = 0;
  {
    MutexLock lock(&mu_);
    Window& w = windows_[static_cast<size_t>(key)];
    const uint64_t now = MonotonicNowNs() / 1'000'000;
    if (now - w.start_ms >= kWindowMs) {
      dropped = w.dropped;
      w = Window{now, 0, 0};
    }
    if (w.lines >= kBurst) {
      w.dropped++;
      suppressed_total_++;
      return;
    }
    w.lines++;
  }
  char line[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof(line), format, args);
  va_end(args);
  if (dropped > 0) {
    std::fprintf(stderr, "strata-nbd: %s (and %llu more like it in the last %llu s)\n", line,
                 static_cast<unsigned long long>(dropped),
                 static_cast<unsigned long long>(kWindowMs / 1000));
  } else {
    std::fprintf(stderr, "strata-nbd: %s\n", line);
  }
}

uint64_t LogLimiter::suppressed() const {
  MutexLock lock(&mu_);
  return suppressed_total_;
}

LogLimiter& ServerLog() {
  static LogLimiter* log = new LogLimiter();  // never destroyed: threads may log at exit
  return *log;
}

}  // namespace strata::nbd
