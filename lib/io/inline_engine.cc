#include "io/inline_engine.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "util/check.h"

namespace strata {

InlineEngine::InlineEngine() : wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  STRATA_CHECK(wake_fd_ >= 0);
}

InlineEngine::~InlineEngine() { close(wake_fd_); }

void InlineEngine::Submit(IoOp* op) {
  if (op->kind == IoOp::Kind::kRecv || op->kind == IoOp::Kind::kSendMsg) {
    if (!TrySocketOp(op)) {
      waiting_.push_back(op);
      return;
    }
  } else {
    op->result = Execute(op);
  }
  completed_.push_back(op);
}

bool InlineEngine::TrySocketOp(IoOp* op) {
  ssize_t n = op->kind == IoOp::Kind::kRecv
                  ? recv(op->file, op->buf, op->length_bytes, MSG_DONTWAIT)
                  : sendmsg(op->file, static_cast<msghdr*>(op->buf), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return false;
  }
  op->result = n < 0 ? -errno : static_cast<int32_t>(n);
  return true;
}

void InlineEngine::PollSockets(int timeout_ms) {
  std::vector<pollfd>& fds = poll_fds_;  // reused: no allocation per turn
  fds.clear();
  fds.push_back(pollfd{wake_fd_, POLLIN, 0});
  for (IoOp* op : waiting_) {
    fds.push_back(
        pollfd{op->file, static_cast<short>(op->kind == IoOp::Kind::kRecv ? POLLIN : POLLOUT), 0});
  }
  if (poll(fds.data(), fds.size(), timeout_ms) <= 0) {
    return;
  }
  if (fds[0].revents != 0) {
    uint64_t value;
    [[maybe_unused]] ssize_t n = read(wake_fd_, &value, sizeof(value));
  }
  size_t kept = 0;
  for (size_t i = 0; i < waiting_.size(); i++) {
    if (fds[i + 1].revents != 0 && TrySocketOp(waiting_[i])) {
      completed_.push_back(waiting_[i]);
    } else {
      waiting_[kept++] = waiting_[i];
    }
  }
  waiting_.resize(kept);
}

int InlineEngine::Run(int timeout_ms) {
  if (completed_.empty()) {
    PollSockets(timeout_ms);
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
