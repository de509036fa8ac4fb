// QueueDriver: keeps `qd` requests of one kind and size in flight on one volume and one loop, at
// random aligned offsets within a span, for the benchmarks that drive Volume::Submit directly.
#ifndef STRATA_BENCH_IO_DRIVER_H_
#define STRATA_BENCH_IO_DRIVER_H_

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "strata/event_loop.h"
#include "strata/volume.h"

namespace strata {

class QueueDriver {
 public:
  QueueDriver(Volume* volume, EventLoop* loop, IoRequest::Kind kind, uint32_t qd, uint32_t bytes,
              uint64_t span_bytes, uint64_t seed)
      : volume_(volume), loop_(loop), bytes_(bytes), span_(span_bytes), rng_(seed), slots_(qd) {
    for (Slot& s : slots_) {
      s.buf = std::aligned_alloc(4096, bytes);
      std::memset(s.buf, 0x5a, bytes);
      s.r.kind = kind;
      s.r.length_bytes = bytes;
      s.r.data = static_cast<std::byte*>(s.buf);
      s.r.user = this;
      s.r.callback = [](IoRequest* r, const Status& st) {
        auto* d = static_cast<QueueDriver*>(r->user);
        d->in_flight_--;
        d->done_++;
        d->ok_ = d->ok_ && st.ok();
        if (d->issued_ < d->target_) {
          d->Issue(r);
        }
      };
    }
  }
  ~QueueDriver() {
    for (Slot& s : slots_) {
      std::free(s.buf);
    }
  }
  QueueDriver(const QueueDriver&) = delete;
  QueueDriver& operator=(const QueueDriver&) = delete;

  // Runs until `count` more requests completed. False if any failed.
  bool Run(uint64_t count) {
    target_ = issued_ + count;
    Fill();
    while (in_flight_ > 0) {
      loop_->RunOnce(-1);
    }
    return ok_;
  }
  // Keeps the queue full for `seconds`, then drains it; returns completions in that time.
  uint64_t RunFor(double seconds) {
    const uint64_t before = done_;
    target_ = UINT64_MAX;
    Fill();
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      loop_->RunOnce(1);
    }
    const uint64_t in_time = done_ - before;
    target_ = issued_;
    while (in_flight_ > 0) {
      loop_->RunOnce(1);
    }
    return in_time;
  }
  bool ok() const { return ok_; }

 private:
  struct Slot {
    IoRequest r;
    void* buf = nullptr;
  };
  // REQUIRES: nothing in flight (every slot idle).
  void Fill() {
    for (Slot& s : slots_) {
      if (issued_ < target_) {
        Issue(&s.r);
      }
    }
  }
  void Issue(IoRequest* r) {
    r->offset_bytes = (rng_() % (span_ / bytes_)) * bytes_;
    issued_++;
    in_flight_++;
    volume_->Submit(loop_, r);
  }

  Volume* volume_;
  EventLoop* loop_;
  uint32_t bytes_;
  uint64_t span_;
  std::mt19937_64 rng_;
  std::vector<Slot> slots_;
  uint64_t issued_ = 0, target_ = 0, in_flight_ = 0, done_ = 0;
  bool ok_ = true;
};

}  // namespace strata

#endif  // STRATA_BENCH_IO_DRIVER_H_
