#include "store/cipher_worker.h"

#include <utility>

namespace strata {

CipherWorker::CipherWorker() : thread_([this] { Main(); }) {}

CipherWorker::~CipherWorker() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

bool CipherWorker::TrySubmit(std::function<void()> job) {
  {
    MutexLock lock(&mu_);
    if (stop_ || jobs_.size() >= kMaxQueued) {
      return false;
    }
    jobs_.push_back(std::move(job));
  }
  cv_.Signal();
  return true;
}

void CipherWorker::Main() {
  MutexLock lock(&mu_);
  while (true) {
    while (jobs_.empty() && !stop_) {
      cv_.Wait();
    }
    if (jobs_.empty()) {
      return;  // stopping, and nothing left to run
    }
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.Unlock();
    job();
    lock.Lock();
  }
}

}  // namespace strata
