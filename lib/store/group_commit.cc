#include "store/group_commit.h"

#include <chrono>

namespace strata {

GroupCommitter::GroupCommitter(uint32_t interval_ms, CommitFn commit)
    : interval_ms_(interval_ms), commit_(std::move(commit)) {}

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
  const auto interval = std::chrono::milliseconds(interval_ms_);
  for (;;) {
    // Until a flush or a wake asks, or (with an interval) the interval passed.
    const auto deadline = std::chrono::steady_clock::now() + interval;
    while (!stop_ && !commit_soon_ && waiters_.empty()) {
      if (interval_ms_ == 0) {
        cv_.Wait();
      } else if (!cv_.WaitUntil(deadline)) {
        break;
      }
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
