// Cancellation of work done for a caller who may go away or a server that is stopping.
//
// Whoever runs a request on a thread on someone's behalf (strata-nbd's control thread for its
// CLI client) installs a CancelScope for the length of it. Loops that wait on the outside world
// (the S3 client's transfers, listings of a remote) call CancelScope::Cancelled() at every turn
// and stop with Status::Shutdown: so a remote that stalls or paginates without end cannot keep a
// thread after its caller left or the server was told to stop. Scopes nest; any one of them
// saying "cancelled" is enough. A thread with no scope is never cancelled.
#ifndef STRATA_UTIL_CANCEL_H_
#define STRATA_UTIL_CANCEL_H_

#include <functional>
#include <utility>

namespace strata {

class CancelScope {
 public:
  // `cancelled` is called from the scope's thread, often (keep it cheap: an atomic load, a
  // poll(2) with no timeout).
  explicit CancelScope(std::function<bool()> cancelled)
      : cancelled_(std::move(cancelled)), outer_(current_) {
    current_ = this;
  }
  ~CancelScope() { current_ = outer_; }
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

  // True when any scope on this thread says its work is no longer wanted.
  static bool Cancelled() {
    for (const CancelScope* s = current_; s != nullptr; s = s->outer_) {
      if (s->cancelled_ && s->cancelled_()) {
        return true;
      }
    }
    return false;
  }

 private:
  std::function<bool()> cancelled_;
  CancelScope* outer_;
  static inline thread_local CancelScope* current_ = nullptr;
};

}  // namespace strata

#endif  // STRATA_UTIL_CANCEL_H_
