// Partial versions and the filler (docs/design.md §2.3): a first write of whole units to a chunk
// a snapshot shares writes only those units to a fresh chunk; the filler later copies the rest
// from the predecessor and makes the version whole.
#include <algorithm>
#include <thread>

#include "store/pool_impl.h"
#include "store/qos.h"
#include "util/check.h"

namespace strata {

void PoolImpl::AddPartialLocked(uint64_t lineage, uint64_t chunk) {
  if (partials_.emplace(std::make_pair(lineage, chunk), false).second &&
      options_.background_fill) {  // else only urged or drained ones are filled: no queue
    // (stepped: queued for StepBackground, never taken by the filler thread)
    fill_order_.emplace_back(lineage, chunk);
    // The filler is woken for the first partial version, then polls while writes arrive
    // (kFillIdleNs): waking it on every first write would cost a futex wake per write.
    if (partials_.size() == 1) {
      WakeFillerLocked();
    }
  }
}

void PoolImpl::DropPartialLocked(uint64_t lineage, uint64_t chunk) {
  auto it = partials_.find({lineage, chunk});
  if (it == partials_.end()) {
    return;
  }
  if (it->second) {
    STRATA_CHECK(urgent_partials_ > 0);
    urgent_partials_--;
  }
  partials_.erase(it);
  auto [first, last] = fill_waiters_.equal_range({lineage, chunk});
  for (auto w = first; w != last; ++w) {
    PostWaiter(w->second);
  }
  fill_waiters_.erase(first, last);
  if (drain_waiters_.count(lineage) != 0) {
    drain_cv_.SignalAll();  // a drain waits for this lineage's partial versions
  }
}

void PoolImpl::UrgeFillLocked(uint64_t lineage, uint64_t chunk) {
  auto it = partials_.find({lineage, chunk});
  if (it != partials_.end() && !it->second) {
    it->second = true;
    urgent_partials_++;
    WakeFillerLocked();
  }
}

void PoolImpl::WaitForFillLocked(uint64_t lineage, uint64_t chunk, const ChunkMap::Waiter& waiter) {
  if (partials_.count({lineage, chunk}) == 0 || !latched_.ok()) {
    PostWaiter(waiter);  // nothing to wait for (or nobody will fill it): retry now
    return;
  }
  fill_waiters_.emplace(std::make_pair(lineage, chunk), waiter);
  UrgeFillLocked(lineage, chunk);
}

bool PoolImpl::FillWantedLocked() const {
  return !partials_.empty() && (BackgroundFillLocked() || FillNeededLocked());
}

bool PoolImpl::LineageHasPartialsLocked(uint64_t lineage) const {
  auto it = partials_.lower_bound({lineage, 0});
  return it != partials_.end() && it->first.first == lineage;
}

void PoolImpl::WaitNoPartialsLocked(uint64_t lineage) {
  if (!LineageHasPartialsLocked(lineage)) {
    return;
  }
  drain_waiters_[lineage]++;
  WakeFillerLocked();
  while (LineageHasPartialsLocked(lineage) && latched_.ok() && !stop_fill_) {
    drain_cv_.Wait();
  }
  if (--drain_waiters_[lineage] == 0) {
    drain_waiters_.erase(lineage);
  }
}

// Fills the partial versions the last run left (at most kMaxPartialChunks) before the reclaimer
// starts: a crash after a snapshot delete committed but before its drain filled them would
// otherwise let the reclaimer free the version they read through to.
Status PoolImpl::FillAllAtOpen() {
  MutexLock lock(&mu_);
  while (!partials_.empty()) {
    const auto [lineage, chunk] = partials_.begin()->first;
    STRATA_RETURN_IF_ERROR(FillLocked(lineage, chunk));
  }
  return Status::OK();
}

Result<std::optional<PoolImpl::FillPlan>> PoolImpl::PlanFillLocked(uint64_t lineage,
                                                                   uint64_t chunk) {
  STRATA_ASSIGN_OR_RETURN(std::optional<Version> v, NewestOwnLocked(lineage, chunk, UINT64_MAX));
  if (!v || !v->value.partial()) {
    DropPartialLocked(lineage, chunk);  // made whole by writes, or trimmed away
    return std::optional<FillPlan>();
  }
  STRATA_ASSIGN_OR_RETURN(std::optional<Version> pred, NewestLocked(lineage, chunk, v->birth - 1));
  // Invariant: a partial version lies over a whole data version (made only over one, and every
  // epoch change fills it before the predecessor can go).
  STRATA_CHECK(pred && !pred->value.tombstone() && !pred->value.partial());
  STRATA_CHECK(v->value.present != all_units());
  return std::optional<FillPlan>(
      FillPlan{MapKey{lineage, chunk, v->birth}, v->value, pred->value.phys});
}

template <typename Fn>
void PoolImpl::ForEachAbsentRun(uint32_t present, Fn fn) const {
  for (uint32_t u = 0; u < units_per_chunk();) {
    if ((present >> u) & 1) {
      u++;
      continue;
    }
    uint32_t end = u;
    while (end < units_per_chunk() && ((present >> end) & 1) == 0) {
      end++;
    }
    fn(u, end - u);
    u = end;
  }
}

void PoolImpl::FinishFillLocked(const FillPlan& plan) {
  // Data first, then the mapping: the next commit syncs the data files before it writes this.
  PutVersionLocked(plan.key, MapValue{plan.value.phys, 0, 0});
  DropPartialLocked(plan.key.lineage, plan.key.chunk);
}

Status PoolImpl::FillLocked(uint64_t lineage, uint64_t chunk) {
  STRATA_ASSIGN_OR_RETURN(std::optional<FillPlan> plan, PlanFillLocked(lineage, chunk));
  if (!plan) {
    return Status::OK();
  }
  const FileId target_file = space_->FileOf(plan->value.phys);
  const uint64_t target_offset = space_->OffsetOf(plan->value.phys);
  mu_.Unlock();
  AlignedBuffer buf = AllocateAligned(chunk_size_);
  Status s = env_->ReadSync(space_->FileOf(plan->source), buf.get(), chunk_size_,
                            space_->OffsetOf(plan->source));
  // Only the absent units are written: the present ones hold newer data.
  ForEachAbsentRun(plan->value.present, [&](uint32_t first, uint32_t count) {
    const uint64_t at = uint64_t{first} * unit_bytes_;
    if (s.ok()) {
      s = env_->WriteSync(target_file, buf.get() + at, count * unit_bytes_, target_offset + at);
    }
  });
  mu_.Lock();
  STRATA_RETURN_IF_ERROR(s);
  FinishFillLocked(*plan);
  return Status::OK();
}

// A partial chunk to fill now, its chunk locked exclusively; urgent ones first, then those of
// lineages a drain waits for, then (background fill) the oldest. Chunks a request holds are
// skipped. REQUIRES: mu_.
std::optional<std::pair<uint64_t, uint64_t>> PoolImpl::PickFillLocked(bool background) {
  auto take = [this](const std::pair<uint64_t, uint64_t>& key) {
    mu_.AssertHeld();
    return map_->TryLock(key.first, key.second, /*exclusive=*/true);
  };
  if (urgent_partials_ > 0) {
    for (const auto& [key, urgent] : partials_) {
      if (urgent && take(key)) {
        return key;
      }
    }
  }
  for (const auto& waiter : drain_waiters_) {
    for (auto p = partials_.lower_bound({waiter.first, 0});
         p != partials_.end() && p->first.first == waiter.first; ++p) {
      if (take(p->first)) {
        return p->first;
      }
    }
  }
  if (!background) {
    return std::nullopt;
  }
  if (fill_order_.empty()) {  // every queued entry was stale or skipped: queue what is left
    for (const auto& e : partials_) {
      fill_order_.push_back(e.first);
    }
  }
  for (size_t tries = 0; tries < 64 && !fill_order_.empty(); tries++) {
    const auto key = fill_order_.front();
    fill_order_.pop_front();
    if (partials_.count(key) == 0) {
      continue;  // filled or dropped since
    }
    if (take(key)) {
      return key;
    }
    fill_order_.push_back(key);  // a request or a fill in flight holds it: later
  }
  return std::nullopt;
}

bool PoolImpl::FillNeededLocked() const {
  if (urgent_partials_ > 0) {
    return true;
  }
  for (const auto& waiter : drain_waiters_) {
    if (LineageHasPartialsLocked(waiter.first)) {
      return true;
    }
  }
  return false;
}

// ---- the filler: one thread, fills in flight on its own io_uring

struct PoolImpl::FillJob {
  PoolImpl* pool = nullptr;
  IoEngine* engine = nullptr;  // of the loop the fill runs on (the filler's, or a step's)
  FillPlan plan;
  void* buf = nullptr;  // one chunk, aligned; kept across fills
  // The read of the predecessor, then one write per run of absent units (at most 16 of 32).
  IoOp ops[1 + 16];
  uint32_t writes_pending = 0;
  int32_t error = 0;  // the first failed op's -errno
  bool busy = false;
};

void PoolImpl::WakeFillerLocked() {
  fill_cv_.SignalAll();
  if (filler_loop_ != nullptr) {
    filler_loop_->engine()->Wake();  // it runs its ring while fills are in flight
  }
}

// Completions run on the filler's thread (inside RunOnce, without mu_).
void PoolImpl::OnFillIo(IoOp* op) {
  auto* job = static_cast<FillJob*>(op->ctx);
  PoolImpl* pool = job->pool;
  if (op->result < 0 && job->error == 0) {
    job->error = op->result;
  }
  if (op == &job->ops[0] && job->error == 0) {  // the predecessor is read: write what is absent
    const FileId file = pool->space_->FileOf(job->plan.value.phys);
    const uint64_t offset = pool->space_->OffsetOf(job->plan.value.phys);
    uint32_t n = 0;
    pool->ForEachAbsentRun(job->plan.value.present, [&](uint32_t first, uint32_t count) {
      IoOp& w = job->ops[1 + n++];
      w = IoOp{};
      w.kind = IoOp::Kind::kWrite;
      w.file = file;
      w.buf = static_cast<std::byte*>(job->buf) + uint64_t{first} * pool->unit_bytes_;
      w.length_bytes = count * pool->unit_bytes_;
      w.offset_bytes = offset + uint64_t{first} * pool->unit_bytes_;
      w.done = &PoolImpl::OnFillIo;
      w.ctx = job;
    });
    job->writes_pending = n;
    for (uint32_t i = 0; i < n; i++) {
      job->engine->Submit(&job->ops[1 + i]);
    }
    return;
  }
  if (op != &job->ops[0] && --job->writes_pending > 0) {
    return;
  }
  Status failed;
  {
    MutexLock lock(&pool->mu_);
    if (job->error == 0) {
      pool->FinishFillLocked(job->plan);
    } else {
      failed = Status::FromErrno("filling a partial chunk", job->error);
    }
    pool->map_->Unlock(job->plan.key.lineage, job->plan.key.chunk, /*exclusive=*/true);
    pool->fills_in_flight_--;
    job->busy = false;
  }
  if (!failed.ok()) {
    pool->Latch(failed);  // a data I/O failed: the pool stops taking writes, as after a failed sync
    MutexLock lock(&pool->mu_);
    pool->drain_cv_.SignalAll();
  }
}

// Background fills yield to foreground writes: while the pool took mutations in the last
// kFillIdleNs none start, unless kFillEagerAbove partial chunks are outstanding (the cap comes
// next: first writes would copy whole chunks again), and then only kFillDepthBusy at a time.
// Urgent fills and drains never wait.
int PoolImpl::StartFillsLocked(EventLoop* loop, std::vector<FillJob>& jobs, bool* starved,
                               bool idle) {
  *starved = false;
  if (stop_fill_ || !latched_.ok() || partials_.empty()) {
    return -1;
  }
  const bool needed = FillNeededLocked();
  size_t limit = needed ? kFillDepth : 0;
  bool background = false;
  int wait_ms = -1;
  if (idle ? options_.background_fill : BackgroundFillLocked()) {
    const uint64_t now = env_->MonotonicNs();
    if (const uint64_t seen = mutations_seen_.load(std::memory_order_relaxed); seen != fill_mark_) {
      fill_mark_ = seen;
      fill_mark_ns_ = now;
    }
    if (idle || now - fill_mark_ns_ >= kFillIdleNs) {
      background = true;
      limit = kFillDepth;
    } else {
      wait_ms = static_cast<int>((fill_mark_ns_ + kFillIdleNs - now + 999'999) / 1'000'000);
      if (partials_.size() >= kFillEagerAbove) {
        background = true;
        limit = std::max(limit, kFillDepthBusy);
      }
    }
  }
  while (fills_in_flight_ < limit) {
    std::optional<std::pair<uint64_t, uint64_t>> pick = PickFillLocked(background);
    if (!pick) {
      *starved = !partials_.empty();
      break;
    }
    const auto [lineage, chunk] = *pick;
    Result<std::optional<FillPlan>> plan = PlanFillLocked(lineage, chunk);
    if (!plan.ok() || !*plan) {
      map_->Unlock(lineage, chunk, /*exclusive=*/true);
      if (!plan.ok()) {
        LatchLocked(plan.status());  // a metadata read failed: as a failed commit
        drain_cv_.SignalAll();
        return -1;
      }
      continue;
    }
    auto job = std::find_if(jobs.begin(), jobs.end(), [](const FillJob& j) { return !j.busy; });
    STRATA_CHECK(job != jobs.end());
    job->busy = true;
    job->engine = loop->engine();
    job->plan = **plan;
    job->error = 0;
    job->writes_pending = 0;
    job->ops[0] = IoOp{};
    job->ops[0].kind = IoOp::Kind::kRead;
    job->ops[0].file = space_->FileOf(job->plan.source);
    job->ops[0].buf = job->buf;
    job->ops[0].length_bytes = chunk_size_;
    job->ops[0].offset_bytes = space_->OffsetOf(job->plan.source);
    job->ops[0].done = &PoolImpl::OnFillIo;
    job->ops[0].ctx = &*job;
    fills_in_flight_++;
    loop->engine()->Submit(&job->ops[0]);  // queued: the ring is entered outside mu_
  }
  return wait_ms;
}

std::vector<PoolImpl::FillJob> PoolImpl::MakeFillJobs(std::vector<AlignedBuffer>* buffers) {
  std::vector<FillJob> jobs(kFillDepth);
  for (FillJob& job : jobs) {
    buffers->push_back(AllocateAligned(chunk_size_));
    job.pool = this;
    job.buf = buffers->back().get();
  }
  return jobs;
}

void PoolImpl::FillerMain() {
  EventLoop* loop = filler_loop_.get();
  std::vector<AlignedBuffer> buffers;
  std::vector<FillJob> jobs = MakeFillJobs(&buffers);
  MutexLock lock(&mu_);
  for (;;) {
    if (stop_fill_ && fills_in_flight_ == 0) {
      break;
    }
    bool starved = false;
    const int wait_ms = StartFillsLocked(loop, jobs, &starved);
    if (fills_in_flight_ == 0) {
      if (starved) {  // what is wanted is held by requests: they finish within an I/O
        lock.Unlock();
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        lock.Lock();
      } else if (wait_ms >= 0) {
        fill_cv_.WaitFor(std::chrono::milliseconds(wait_ms));
      } else {
        while (!stop_fill_ && !(FillWantedLocked() && latched_.ok())) {
          fill_cv_.Wait();
        }
      }
      continue;
    }
    lock.Unlock();
    loop->RunOnce(starved || wait_ms >= 0 ? 1 : -1);  // completions, or a WakeFillerLocked()
    lock.Lock();
  }
}

Result<std::string> PoolImpl::StepBackground(Background which) {
  STRATA_CHECK(stepped_background_ && !reclaimer_.joinable());
  switch (which) {
    case Background::kReclaim: {
      MutexLock lock(&mu_);
      if (reclaim_busy_ || !ReclaimOnceLocked()) {  // (busy: a WaitForReclaim reclaims)
        return std::string();
      }
      STRATA_RETURN_IF_ERROR(reclaim_error_);
      return std::string("reclaimed an epoch");
    }
    case Background::kFill:
      return StepFill();
    case Background::kCommit: {
      MutexLock commit(&commit_mu_);
      if (!HasPendingWork()) {
        return std::string();
      }
      STRATA_RETURN_IF_ERROR(CommitLocked({}));
      return std::string("committed");
    }
  }
  return Status::InvalidArgument("no such background part");
}

// The fills the policy allows now (background ones as if the pool were idle), run to the end.
Result<std::string> PoolImpl::StepFill() {
  std::vector<AlignedBuffer> buffers;
  std::vector<FillJob> jobs = MakeFillJobs(&buffers);
  // Its own loop: the filler thread (there for fills something waits for) runs filler_loop_.
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> own, EventLoop::Create(env_, 4 * kFillDepth));
  EventLoop* loop = own.get();
  MutexLock lock(&mu_);
  bool starved = false;
  StartFillsLocked(loop, jobs, &starved, /*idle=*/true);
  // Its own fills only (the filler thread's, if any, complete on its loop).
  auto own_in_flight = [&jobs]() REQUIRES(mu_) {
    return std::count_if(jobs.begin(), jobs.end(), [](const FillJob& j) { return j.busy; });
  };
  const auto started = own_in_flight();
  while (own_in_flight() > 0) {
    lock.Unlock();
    loop->RunOnce(1);
    lock.Lock();
  }
  STRATA_RETURN_IF_ERROR(latched_);
  return started == 0 ? std::string() : "filled " + std::to_string(started) + " chunks";
}

}  // namespace strata
