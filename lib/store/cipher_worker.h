// CipherWorker: a thread that runs the encryption of large writes of encrypted volumes, so that
// a connection's loop goes on receiving and issuing requests while a write is being encrypted
// (AES-XTS costs ~0.3 ms of one core per MiB: on the loop's thread it would be added to every
// request's receive, here it overlaps it). One per pool, made at open when the Env runs
// background threads (the simulator's does not: its runs stay repeatable and encrypt inline).
//
// Bounded: at most kMaxQueued jobs wait; TrySubmit refuses more and the caller encrypts inline,
// so the queue never grows with the clients' depth and a job never waits behind an unbounded
// backlog.
#ifndef STRATA_STORE_CIPHER_WORKER_H_
#define STRATA_STORE_CIPHER_WORKER_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>

#include "util/mutex.h"

namespace strata {

class CipherWorker {
 public:
  static constexpr size_t kMaxQueued = 256;  // 16 MiB of 64 KiB pieces

  CipherWorker();
  // Runs every job already queued, then joins.
  ~CipherWorker();
  CipherWorker(const CipherWorker&) = delete;
  CipherWorker& operator=(const CipherWorker&) = delete;

  // Queues `job` to run on the worker's thread; false when kMaxQueued are waiting (the caller
  // runs it itself). Thread-safe.
  bool TrySubmit(std::function<void()> job) EXCLUDES(mu_);

 private:
  void Main() EXCLUDES(mu_);

  Mutex mu_;
  CondVar cv_{&mu_};
  std::deque<std::function<void()>> jobs_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: started once the rest exists
};

}  // namespace strata

#endif  // STRATA_STORE_CIPHER_WORKER_H_
