// An IoEngine whose operations run synchronously at Submit and complete on the next Run().
// Base of SyncEngine (pread/pwrite: the fallback when io_uring is refused) and of SimEnv's engine.
#ifndef STRATA_IO_INLINE_ENGINE_H_
#define STRATA_IO_INLINE_ENGINE_H_

#include <poll.h>

#include <vector>

#include "strata/env.h"

namespace strata {

class InlineEngine : public IoEngine {
 public:
  InlineEngine();
  ~InlineEngine() override;
  void Submit(IoOp* op) override;
  int Run(int timeout_ms) override;
  void Wake() override;
  uint32_t in_flight() const override {
    return static_cast<uint32_t>(completed_.size() + waiting_.size());
  }

 protected:
  // Performs `op` completely; returns its result (length_bytes or -errno).
  virtual int32_t Execute(IoOp* op) = 0;

 private:
  // Socket ops run non-blocking; one that would block waits here for poll() readiness.
  bool TrySocketOp(IoOp* op);
  void PollSockets(int timeout_ms);
  int wake_fd_;
  std::vector<IoOp*> waiting_;
  std::vector<struct pollfd> poll_fds_;
  std::vector<IoOp*> completed_;
  std::vector<IoOp*> running_;
};

}  // namespace strata

#endif  // STRATA_IO_INLINE_ENGINE_H_
