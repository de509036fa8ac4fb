#include "strata/event_loop.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>

#include "util/check.h"

namespace strata {

namespace {
// While work is deferred (a chunk was busy), the loop waits at most this long for completions
// before retrying it.
constexpr int kDeferredRetryMs = 1;
constexpr size_t kMaxCachedBuffersPerSize = 64;
}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::Create(Env* env, uint32_t queue_depth) {
  if (env == nullptr) {
    env = Env::Default();
  }
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<IoEngine> engine, env->NewEngine(queue_depth));
  return std::unique_ptr<EventLoop>(new EventLoop(env, std::move(engine)));
}

EventLoop::EventLoop(Env* env, std::unique_ptr<IoEngine> engine)
    : env_(env), engine_(std::move(engine)) {}

EventLoop::~EventLoop() {
  STRATA_CHECK(engine_->in_flight() == 0);
  for (auto& [size, list] : buffers_) {
    for (void* buf : list) {
      std::free(buf);
    }
  }
}

void EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  engine_->Wake();
}

void EventLoop::Defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }

void EventLoop::RunAfter(uint64_t delay_ns, std::function<void()> fn) {
  timers_.push_back(Timer{env_->MonotonicNs() + delay_ns, timer_seq_++, std::move(fn)});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
}

void EventLoop::RunOnce(int timeout_ms) {
  bool have_posted;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    have_posted = !posted_.empty();
  }
  if (have_posted || !deferred_.empty()) {
    timeout_ms = (timeout_ms < 0 || timeout_ms > kDeferredRetryMs) ? kDeferredRetryMs : timeout_ms;
    if (have_posted) {
      timeout_ms = 0;
    }
  }
  if (!timers_.empty()) {  // wake for the earliest timer, rounding up to whole milliseconds
    const uint64_t now = env_->MonotonicNs();
    const uint64_t due = timers_.front().due_ns;
    const int wait_ms = due <= now ? 0 : static_cast<int>((due - now + 999'999) / 1'000'000);
    timeout_ms = timeout_ms < 0 ? wait_ms : std::min(timeout_ms, wait_ms);
  }
  engine_->Run(timeout_ms);
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    running_.swap(posted_);
  }
  for (auto& fn : running_) {
    fn();
  }
  running_.clear();
  running_.swap(deferred_);
  for (auto& fn : running_) {
    fn();
  }
  running_.clear();
  const uint64_t now = timers_.empty() ? 0 : env_->MonotonicNs();
  while (!timers_.empty() && timers_.front().due_ns <= now) {
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<>());
    std::function<void()> fn = std::move(timers_.back().fn);
    timers_.pop_back();
    fn();
  }
}

void EventLoop::RunUntil(const std::function<bool()>& done) {
  while (!done()) {
    RunOnce(-1);
  }
}

void* EventLoop::TakeBuffer(size_t size_bytes) {
  for (auto& [size, list] : buffers_) {
    if (size == size_bytes && !list.empty()) {
      void* buf = list.back();
      list.pop_back();
      return buf;
    }
  }
  void* buf = std::aligned_alloc(4096, size_bytes);
  STRATA_CHECK(buf != nullptr);
  return buf;
}

void EventLoop::GiveBuffer(void* buf, size_t size_bytes) {
  for (auto& [size, list] : buffers_) {
    if (size == size_bytes) {
      if (list.size() < kMaxCachedBuffersPerSize) {
        list.push_back(buf);
        return;
      }
      std::free(buf);
      return;
    }
  }
  buffers_.emplace_back(size_bytes, std::vector<void*>{buf});
}

}  // namespace strata
