#include "store/group_commit.h"

#include <algorithm>
#include <chrono>

namespace strata {

GroupCommitter::GroupCommitter(Env* env, uint32_t interval_ms, CommitFn commit)
    : env_(env), interval_ms_(interval_ms), commit_(std::move(commit)) {}

GroupCommitter::~GroupCommitter() { Stop(); }

void GroupCommitter::Start() {
  thread_ = std::thread([this] { Main(); });
}

void GroupCommitter::Stop() {
  if (!thread_.joinable()) {
    return;
  }
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

void GroupCommitter::Request(EventLoop* loop, std::function<void(const Status&)> done) {
  {
    MutexLock lock(&mu_);
    waiters_.push_back(Waiter{loop, std::move(done)});
  }
  cv_.Signal();
}

void GroupCommitter::Wake() {
  {
    MutexLock lock(&mu_);
    commit_soon_ = true;
  }
  cv_.Signal();
}

void GroupCommitter::Main() {
  MutexLock lock(&mu_);
  const uint64_t interval_ns = uint64_t{interval_ms_} * 1'000'000;
  for (;;) {
    // Until a flush or a wake asks, or (with an interval) the interval passed on the Env's clock.
    const uint64_t deadline = env_->MonotonicNs() + interval_ns;
    while (!stop_ && !commit_soon_ && waiters_.empty()) {
      if (interval_ms_ == 0) {
        cv_.Wait();
        continue;
      }
      const uint64_t now = env_->MonotonicNs();
      if (now >= deadline) {
        break;
      }
      const int64_t left_ms = static_cast<int64_t>((deadline - now + 999'999) / 1'000'000);
      cv_.WaitFor(std::chrono::milliseconds(std::min(left_ms, kClockSliceMs)));
    }
    if (stop_ && waiters_.empty()) {
      return;
    }
    std::deque<Waiter> batch;
    batch.swap(waiters_);
    commit_soon_ = false;
    lock.Unlock();
    const Status status = commit_(!batch.empty());
    // Every flush that arrived before this commit started is answered by it (group commit).
    for (Waiter& w : batch) {
      if (w.loop == nullptr) {
        w.done(status);
      } else {
        w.loop->Post([done = std::move(w.done), status] { done(status); });
      }
    }
    lock.Lock();
  }
}

}  // namespace strata
