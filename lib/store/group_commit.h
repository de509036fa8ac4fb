// GroupCommitter: the pool's commit thread (docs/design.md "group commit"). Flushes queue with
// Request; the thread takes every queued flush, runs one commit for all of them, and answers each
// (on its event loop, or on the commit thread when it has none). It also commits on a timer
// (`interval_ms`; 0: only when asked) and when woken (the overlay reached its bound).
//
// Thread-safety: every method from any thread. Its mutex is a leaf: Request and Wake may be
// called with the pool mutex held.
#ifndef STRATA_STORE_GROUP_COMMIT_H_
#define STRATA_STORE_GROUP_COMMIT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>

#include "strata/env.h"
#include "strata/event_loop.h"
#include "strata/status.h"

#include "util/mutex.h"

namespace strata {

class GroupCommitter {
 public:
  // Runs one commit; `asked`: some flush waits for it (else: a timer or a wake, which may find
  // nothing to commit). Called on the commit thread only.
  using CommitFn = std::function<Status(bool asked)>;

  // The interval is timed on `env`'s clock (Env::MonotonicNs; a simulator's AdvanceClock is
  // seen within kClockSliceMs). `env` outlives the committer.
  GroupCommitter(Env* env, uint32_t interval_ms, CommitFn commit);
  static constexpr int64_t kClockSliceMs = 100;
  ~GroupCommitter();  // Stop()
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  void Start();
  // Answers every queued flush with one last commit, then ends the thread. Idempotent.
  void Stop() EXCLUDES(mu_);
  // `done` runs once a commit that started after this call has finished, with its status.
  void Request(EventLoop* loop, std::function<void(const Status&)> done) EXCLUDES(mu_);
  // Commits soon, without waiting for the timer.
  void Wake() EXCLUDES(mu_);

 private:
  struct Waiter {
    EventLoop* loop;
    std::function<void(const Status&)> done;
  };
  void Main() EXCLUDES(mu_);

  Env* const env_;
  const uint32_t interval_ms_;
  const CommitFn commit_;
  Mutex mu_;
  CondVar cv_{&mu_};
  std::deque<Waiter> waiters_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  bool commit_soon_ GUARDED_BY(mu_) = false;  // woken: the overlay reached its bound
  std::thread thread_;
};

}  // namespace strata

#endif  // STRATA_STORE_GROUP_COMMIT_H_
