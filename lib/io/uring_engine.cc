// io_uring engine. One ring per thread; the loop shape is liburing's echo-server: queue SQEs,
// submit_and_wait, drain every CQE, advance once, then run callbacks (never inside the drain).
#include "io/uring_engine.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <vector>

#include <liburing.h>

#include "util/check.h"

namespace strata {
namespace {

constexpr uint64_t kWakeTag = 1;  // user_data of the eventfd read; ops are pointers (aligned)

class UringEngine final : public IoEngine {
 public:
  UringEngine() = default;
  ~UringEngine() override {
    io_uring_queue_exit(&ring_);
    close(wake_fd_);
  }

  int Init(uint32_t queue_depth) {
    io_uring_params params{};
    params.flags = IORING_SETUP_COOP_TASKRUN;
    int rc = io_uring_queue_init_params(queue_depth, &ring_, &params);
    if (rc == -EINVAL) {
      params = io_uring_params{};
      rc = io_uring_queue_init_params(queue_depth, &ring_, &params);
    }
    if (rc < 0) {
      return rc;
    }
    wake_fd_ = eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      int err = -errno;
      io_uring_queue_exit(&ring_);
      return err;
    }
    ArmWake();
    return 0;
  }

  void Submit(IoOp* op) override {
    STRATA_DCHECK((reinterpret_cast<uintptr_t>(op) & 7) == 0);
    op->progress_bytes = 0;
    ++in_flight_;
    Queue(op);
  }

  int Run(int timeout_ms) override {
    SubmitAndWait(timeout_ms);
    Drain();
    // Callbacks run after the drain (TigerBeetle): they may submit more without recursion.
    running_.swap(completed_);
    for (IoOp* op : running_) {
      op->done(op);
    }
    int count = static_cast<int>(running_.size());
    running_.clear();
    return count;
  }

  void Wake() override {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
  }

  uint32_t in_flight() const override { return in_flight_; }
  const char* name() const override { return "io_uring"; }

 private:
  void Queue(IoOp* op) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    if (sqe == nullptr) {
      backlog_.push_back(op);  // ring full of unreaped work: queued for the next Run
      return;
    }
    char* buf = static_cast<char*>(op->buf) + op->progress_bytes;
    uint32_t len = op->length_bytes - op->progress_bytes;
    uint64_t off = op->offset_bytes + op->progress_bytes;
    switch (op->kind) {
      case IoOp::Kind::kRead:
        io_uring_prep_read(sqe, op->file, buf, len, off);
        break;
      case IoOp::Kind::kWrite:
        io_uring_prep_write(sqe, op->file, buf, len, off);
        break;
      case IoOp::Kind::kSync:
        io_uring_prep_fsync(sqe, op->file, IORING_FSYNC_DATASYNC);
        break;
      case IoOp::Kind::kRecv:
        io_uring_prep_recv(sqe, op->file, op->buf, op->length_bytes, 0);
        break;
      case IoOp::Kind::kSendMsg:
        io_uring_prep_sendmsg(sqe, op->file, static_cast<msghdr*>(op->buf), MSG_NOSIGNAL);
        break;
    }
    io_uring_sqe_set_data(sqe, op);
  }

  void ArmWake() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    STRATA_CHECK(sqe != nullptr);
    io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
    io_uring_sqe_set_data64(sqe, kWakeTag);
  }

  void SubmitAndWait(int timeout_ms) {
    while (!backlog_.empty() && io_uring_sq_space_left(&ring_) > 1) {
      IoOp* op = backlog_.front();
      backlog_.pop_front();
      Queue(op);
    }
    if (timeout_ms < 0) {
      io_uring_submit_and_wait(&ring_, 1);
      return;
    }
    __kernel_timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000LL};
    io_uring_cqe* cqe = nullptr;
    io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }

  void Drain() {
    unsigned head;
    unsigned count = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++count;
      if (cqe->user_data == kWakeTag) {
        rearm_wake_ = true;
        continue;
      }
      Complete(reinterpret_cast<IoOp*>(io_uring_cqe_get_data(cqe)), cqe->res);
    }
    io_uring_cq_advance(&ring_, count);
    if (rearm_wake_) {
      rearm_wake_ = false;
      ArmWake();
    }
  }

  // Short transfers and EAGAIN/EINTR are resubmitted for the remainder (liburing io_uring-cp).
  void Complete(IoOp* op, int res) {
    if (res == -EAGAIN || res == -EINTR) {
      Queue(op);
      return;
    }
    if (res < 0) {
      Finish(op, res);
      return;
    }
    if (op->kind == IoOp::Kind::kSync) {
      Finish(op, 0);
      return;
    }
    if (op->kind == IoOp::Kind::kRecv || op->kind == IoOp::Kind::kSendMsg) {
      Finish(op, res);  // sockets: the caller decides what a partial transfer means
      return;
    }
    if (res == 0) {
      if (op->kind == IoOp::Kind::kWrite) {
        Finish(op, -EIO);
        return;
      }
      // Past end of file: the rest reads as zeros.
      std::memset(static_cast<char*>(op->buf) + op->progress_bytes, 0,
                  op->length_bytes - op->progress_bytes);
      op->progress_bytes = op->length_bytes;
    } else {
      op->progress_bytes += static_cast<uint32_t>(res);
    }
    if (op->progress_bytes < op->length_bytes) {
      Queue(op);
      return;
    }
    Finish(op, static_cast<int32_t>(op->length_bytes));
  }

  void Finish(IoOp* op, int32_t result) {
    op->result = result;
    STRATA_CHECK(in_flight_ > 0);
    --in_flight_;
    completed_.push_back(op);
  }

  io_uring ring_{};
  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  bool rearm_wake_ = false;
  uint32_t in_flight_ = 0;
  std::deque<IoOp*> backlog_;
  std::vector<IoOp*> completed_;
  std::vector<IoOp*> running_;
};

}  // namespace

std::unique_ptr<IoEngine> NewUringEngine(uint32_t queue_depth, int* err) {
  auto engine = std::make_unique<UringEngine>();
  *err = engine->Init(queue_depth);
  if (*err < 0) {
    return nullptr;
  }
  return engine;
}

}  // namespace strata
