// EventLoop: one thread's I/O loop. Owns one IoEngine; runs completions, posted work and retries.
#ifndef STRATA_EVENT_LOOP_H_
#define STRATA_EVENT_LOOP_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "strata/env.h"
#include "strata/export.h"
#include "strata/status.h"

namespace strata {

class STRATA_EXPORT EventLoop {
 public:
  // Creates a loop whose engine comes from `env` (Env::Default() when null).
  static Result<std::unique_ptr<EventLoop>> Create(Env* env, uint32_t queue_depth = 256);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  IoEngine* engine() { return engine_.get(); }

  // Thread-safe: `fn` runs on the loop's thread during a later RunOnce().
  void Post(std::function<void()> fn);
  // Loop thread only: `fn` runs on the next turn. Used to retry work that found a chunk busy.
  void Defer(std::function<void()> fn);
  // Loop thread only: `fn` runs on the first turn at least `delay_ns` from now on the Env's clock
  // (Env::MonotonicNs: a simulator's clock moves timers too; the loop wakes for it, at
  // millisecond resolution). Used to delay requests over a volume's limits.
  void RunAfter(uint64_t delay_ns, std::function<void()> fn);
  // Runs one turn: waits up to `timeout_ms` (shorter when work is deferred or a timer is due)
  // for completions or posts, then runs them and the due timers. Loop thread only.
  void RunOnce(int timeout_ms);
  // Runs turns until `done()` is true. Loop thread only.
  void RunUntil(const std::function<bool()>& done);

  // Free list of chunk-sized aligned buffers for bounce I/O (no allocation in steady state).
  void* TakeBuffer(size_t size_bytes);
  void GiveBuffer(void* buf, size_t size_bytes);

 private:
  EventLoop(Env* env, std::unique_ptr<IoEngine> engine);
  Env* env_;  // the clock of the timers
  std::unique_ptr<IoEngine> engine_;
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;  // GUARDED_BY(posted_mu_)
  std::vector<std::function<void()>> deferred_;
  std::vector<std::function<void()>> running_;
  struct Timer {
    uint64_t due_ns;
    uint64_t seq;  // FIFO among equal deadlines
    std::function<void()> fn;
    bool operator>(const Timer& o) const {
      return due_ns != o.due_ns ? due_ns > o.due_ns : seq > o.seq;
    }
  };
  std::vector<Timer> timers_;  // min-heap on (due_ns, seq)
  uint64_t timer_seq_ = 0;
  std::vector<std::pair<size_t, std::vector<void*>>> buffers_;
};

}  // namespace strata

#endif  // STRATA_EVENT_LOOP_H_
