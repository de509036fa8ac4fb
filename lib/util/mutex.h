// Mutex, MutexLock and CondVar: std::mutex and std::condition_variable with the annotations
// Clang's thread-safety analysis needs (libstdc++'s own carry none), and AssertHeld(), which
// checks at run time what a REQUIRES states to the compiler (always on: a caller that breaks a
// lock rule stops the process instead of corrupting state).
#ifndef STRATA_UTIL_MUTEX_H_
#define STRATA_UTIL_MUTEX_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "util/check.h"
#include "util/thread_annotations.h"

namespace strata {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() {
    mu_.lock();
    owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  void Unlock() RELEASE() {
    owner_.store(std::thread::id(), std::memory_order_relaxed);
    mu_.unlock();
  }
  // Stops the process unless the calling thread holds the mutex.
  void AssertHeld() const ASSERT_CAPABILITY(this) {
    STRATA_CHECK(owner_.load(std::memory_order_relaxed) == std::this_thread::get_id());
  }

 private:
  friend class CondVar;
  std::mutex mu_;
  std::atomic<std::thread::id> owner_{};
};

// Holds a Mutex for its scope. Unlock() lets it go early (for I/O that must not run under it),
// Lock() takes it again; the destructor releases it only if held.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() {
    if (held_) {
      mu_->Unlock();
    }
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void Unlock() RELEASE() {
    STRATA_CHECK(held_);
    held_ = false;
    mu_->Unlock();
  }
  void Lock() ACQUIRE() {
    STRATA_CHECK(!held_);
    mu_->Lock();
    held_ = true;
  }

 private:
  Mutex* const mu_;
  bool held_ = true;
};

// A condition variable tied to one Mutex, which every wait requires held.
class CondVar {
 public:
  explicit CondVar(Mutex* mu) : mu_(mu) {}
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Each wait REQUIRES the mutex (checked at run time: the analysis cannot tie a CondVar's mutex
  // to the caller's name for it).
  void Wait() {
    WhileReleased([this](std::unique_lock<std::mutex>& lock) {
      cv_.wait(lock);
      return true;
    });
  }
  // Waits until notified or `deadline` passed; false once it has.
  bool WaitUntil(std::chrono::steady_clock::time_point deadline) {
    return WhileReleased([&](std::unique_lock<std::mutex>& lock) {
      return cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    });
  }
  // Waits until notified or `timeout` passed; false on timeout.
  template <typename Rep, typename Period>
  bool WaitFor(std::chrono::duration<Rep, Period> timeout) {
    return WaitUntil(std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  // Runs `wait` on the held mutex, which it releases while waiting; keeps AssertHeld true.
  template <typename Fn>
  bool WhileReleased(Fn wait) {
    mu_->AssertHeld();
    std::unique_lock<std::mutex> lock(mu_->mu_, std::adopt_lock);
    mu_->owner_.store(std::thread::id(), std::memory_order_relaxed);
    const bool result = wait(lock);
    mu_->owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    lock.release();
    return result;
  }

  Mutex* const mu_;
  std::condition_variable cv_;
};

}  // namespace strata

#endif  // STRATA_UTIL_MUTEX_H_
