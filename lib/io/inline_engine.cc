#include "io/inline_engine.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "util/check.h"

namespace strata {

InlineEngine::InlineEngine() : wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  STRATA_CHECK(wake_fd_ >= 0);
}

InlineEngine::~InlineEngine() { close(wake_fd_); }

void InlineEngine::Submit(IoOp* op) {
  op->result = Execute(op);
  completed_.push_back(op);
}

int InlineEngine::Run(int timeout_ms) {
  if (completed_.empty()) {
    pollfd pfd{wake_fd_, POLLIN, 0};
    int rc = poll(&pfd, 1, timeout_ms);
    if (rc > 0) {
      uint64_t value;
      [[maybe_unused]] ssize_t n = read(wake_fd_, &value, sizeof(value));
    }
  }
  // Callbacks may submit more ops; those complete on the next Run (no recursion).
  running_.swap(completed_);
  for (IoOp* op : running_) {
    op->done(op);
  }
  int count = static_cast<int>(running_.size());
  running_.clear();
  return count;
}

void InlineEngine::Wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

}  // namespace strata
