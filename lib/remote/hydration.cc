// Lazy restores (include/strata/hydration.h, docs/remote-format.md "Lazy restore").
//
// A restore is an empty local snapshot with the remote's id (an importing volume sealed at
// once) and a Hydrator attached to it as its BlockSource. The pool asks the Hydrator for every
// range a volume or snapshot reading through to it touches; the Hydrator's one worker thread
// fetches what is missing (on demand first, with read-ahead, then the rest in volume order at
// the configured rate), checks each block, and writes it into the snapshot (Pool::FillSnapshot)
// followed by a pool flush: what arrived survives a crash and is never fetched again.
//
// POOL/hydrations.json lists the restores under way ({snapshot_id, remote, rate, data_blocks}),
// replaced atomically. It is written before the snapshot exists (a crash in between leaves a
// record without its snapshot, dropped at the next Start) and after the snapshot is complete.
#include "strata/hydration.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <span>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "remote/remote_internal.h"
#include "util/aligned_buffer.h"
#include "util/cancel.h"
#include "util/ids.h"
#include "util/json_text.h"
#include "util/mutex.h"

namespace strata {

namespace {

using nlohmann::json;

constexpr uint64_t kBlock = 512 << 10;  // the remote's block
constexpr int64_t kMaxBackoffMs = 30'000;
// The restore records file (a few hundred bytes per restore, each with its manifest of up to
// 1 MiB): larger is not ours.
constexpr size_t kMaxRecordsBytes = 256 << 20;

Env* EnvOf(const HydrationOptions& options) { return options.env ? options.env : Env::Default(); }
// Monotonic milliseconds on the Env's clock (rates, back-off, heartbeats).
int64_t NowMs(Env* env) { return static_cast<int64_t>(env->MonotonicNs() / 1'000'000); }

// Opens the remote's store for a restore (tests put a simulated bucket here).
// `attempts` per request; `timeout_ms` bounds one Run, retries included (0: no bound but the
// attempts').
using StoreFactory = std::function<Result<std::unique_ptr<remote::ObjectStore>>(
    const RemoteSpec&, uint32_t attempts, uint32_t timeout_ms)>;

struct Record {
  std::string snapshot_id;
  std::string remote;
  double rate_mibps = -1;
  uint64_t data_blocks = 0;
  uint64_t volume_bytes = 0;
  std::string manifest;  // as read at Begin: the restore needs no manifest in the remote after
  std::string marker;    // restoring/SNAPID-RESTORER in the remote: GC keeps the tree for us
  std::string tree;      // the marker's {"root", "depth"}
};

constexpr int64_t kMarkerHeartbeatMs = 5 * 60 * 1000;  // GC takes 1 h of silence for death

// Writes (refreshes) the restore marker: the tree and a fresh heartbeat.
Status PutMarker(Env* env, remote::ObjectStore* store, const Record& r) {
  json j = json::parse(r.tree, nullptr, false);
  if (!j.is_object()) {
    return Status::Corruption("restore record of " + r.snapshot_id + ": bad tree");
  }
  j["heartbeat_ms"] = env->WallClockMs();
  const std::string bytes = DumpJson(j);
  return store->Put(r.marker, bytes.data(), bytes.size());
}

class Hydrator final : public BlockSource {
 public:
  using Log = std::function<void(const std::string&)>;
  Hydrator(Pool* pool, Record record, const HydrationOptions& options, StoreFactory factory,
           std::function<void(const std::string&)> on_complete)
      : pool_(pool),
        record_(std::move(record)),
        options_(options),
        env_(EnvOf(options)),
        factory_(std::move(factory)),
        on_complete_(std::move(on_complete)),
        blocks_((record_.volume_bytes + kBlock - 1) / kBlock),
        state_(blocks_, kMissing),
        present_words_((blocks_ + 63) / 64),
        present_(new std::atomic<uint64_t>[present_words_]()) {}
  ~Hydrator() override { Stop(); }

  // What arrived before (the snapshot's own blocks). REQUIRES: not attached yet.
  Status Init();
  void StartWorker() {
    for (int w = 0; w < kWorkers; w++) {
      workers_.emplace_back([this, w] { Main(w); });
    }
  }
  // Stops fetching; requests waiting, and any later, fail (what arrived stays).
  void Stop();

  bool Present(uint64_t offset_bytes, uint64_t length_bytes) override;
  void Ensure(uint64_t offset_bytes, uint64_t length_bytes,
              std::function<void(const Status&)> done) override;
  double Progress() override {
    MutexLock lock(&mu_);
    return ProgressLocked();
  }
  HydrationStatus Describe();
  const Record& record() const { return record_; }

 private:
  enum : uint8_t { kMissing = 0, kInFlight = 1, kPresent = 2 };
  struct Demand {
    size_t outstanding = 0;
    Status status;
    std::function<void(const Status&)> done;
  };
  using Calls = std::vector<std::pair<std::function<void(const Status&)>, Status>>;

  double ProgressLocked() const REQUIRES(mu_) {
    if (complete_ || record_.data_blocks == 0) {
      return 1.0;  // (an all-zero snapshot has nothing to fetch: its holes read right)
    }
    return std::min(1.0, static_cast<double>(fetched_) / static_cast<double>(record_.data_blocks));
  }
  // Two workers: while one waits for the network, the other writes what it fetched. A third
  // fetches only what readers wait for: a read that misses waits for one range GET, not for a
  // background batch of 32 already on the wire.
  static constexpr int kWorkers = 3;
  static constexpr int kDemandWorker = 2;
  void Main(int worker);
  // The next blocks to fetch: asked for first (with read-ahead), then (if `background`) the
  // background pass.
  // Returns true when the batch is readers' (urgent) work: a batch is one kind or the other.
  bool PickLocked(bool background, std::vector<uint64_t>* batch) REQUIRES(mu_);
  bool BackgroundAllowedLocked(int64_t now) REQUIRES(mu_);
  // Fetches, checks and fills the batch; then settles each block. No lock held.
  // `timeout_ms`: the whole batch fails past it, retries included (0: only the attempts bound
  // it), for a reader opened into `reader` on first use.
  void FetchBatch(const std::vector<uint64_t>& batch,
                  std::unique_ptr<remote::SnapshotReader>* reader, uint32_t timeout_ms, int worker);
  // Slices of the worker's buffer, one per ref, laid out in order: consecutive full blocks are
  // one contiguous run, filled with one write. A ref whose sizes are not the format's is
  // Corruption in `status`, and gets no slice.
  std::vector<std::span<std::byte>> SliceBuffer(
      int worker, const std::vector<std::pair<uint64_t, remote::BlockRef>>& refs,
      std::vector<Status>* status);
  void SettleLocked(uint64_t block, const Status& s, Calls* calls) REQUIRES(mu_);
  // Keeps the restore marker fresh (GC keeps the tree meanwhile); `last` deletes it.
  void Heartbeat(bool last);
  bool CheckCompleteLocked() REQUIRES(mu_);
  void Say(const std::string& line) {
    if (options_.log) {
      options_.log(line);
    } else {
      std::fprintf(stderr, "strata: %s\n", line.c_str());
    }
  }

  Pool* pool_;
  const Record record_;
  const HydrationOptions options_;
  Env* const env_;  // (options_.env or the default)
  StoreFactory factory_;
  std::function<void(const std::string&)> on_complete_;
  // One per worker and kind of work, its own: readers wait on urgent batches, so those fail
  // within fetch_timeout_ms; a background batch is bounded by its attempts only.
  std::unique_ptr<remote::SnapshotReader> readers_[kWorkers];
  std::unique_ptr<remote::SnapshotReader> urgent_readers_[kWorkers];
  // Each worker's fetch buffer, kept between batches (no page faults or zeroing per block):
  // at most batch_blocks (and read-ahead) blocks of 512 KiB.
  AlignedBuffer buffers_[kWorkers];  // (aligned: the volume writes from them in place)
  size_t buffer_bytes_[kWorkers] = {};
  std::unique_ptr<remote::ObjectStore> marker_store_;  // the worker's only
  int64_t marker_ms_ = 0;                              // last heartbeat written (steady)

  const uint64_t blocks_;  // the snapshot's, in remote blocks (state_ has as many)
  Mutex mu_;
  CondVar cv_{&mu_};                            // something to fetch, or stop
  std::vector<uint8_t> state_ GUARDED_BY(mu_);  // per block
  // kPresent of state_, readable without mu_: every request of a restoring volume asks Present,
  // and a block once present stays so. Set (release) after the block's fill is published, so a
  // reader that sees the bit (acquire) finds the fill.
  const size_t present_words_;
  std::unique_ptr<std::atomic<uint64_t>[]> present_;
  void MarkPresentLocked(uint64_t block) REQUIRES(mu_) {
    state_[block] = kPresent;
    present_[block / 64].fetch_or(uint64_t{1} << (block % 64), std::memory_order_release);
  }
  std::deque<uint64_t> urgent_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, std::vector<std::shared_ptr<Demand>>> waiting_ GUARDED_BY(mu_);
  uint64_t cursor_ GUARDED_BY(mu_) =
      0;  // the background pass: every block below is present or in flight
  size_t in_flight_ GUARDED_BY(mu_) = 0;
  uint64_t fetched_ GUARDED_BY(mu_) = 0;  // data blocks here
  uint64_t bytes_ GUARDED_BY(mu_) = 0;
  int64_t paused_until_ms_ GUARDED_BY(mu_) = 0;  // the background pass waits after a failure
  int64_t backoff_ms_ GUARDED_BY(mu_) = 0;
  double tokens_ GUARDED_BY(mu_) = 0;  // bytes the background pass may fetch now (rate limit)
  int64_t tokens_ms_ GUARDED_BY(mu_) = NowMs(env_);
  int64_t started_ms_ GUARDED_BY(mu_) = NowMs(env_);
  uint64_t fetched_at_start_ GUARDED_BY(mu_) = 0;
  bool complete_ GUARDED_BY(mu_) = false;
  std::atomic<bool> complete_fast_{false};  // complete_, read without mu_
  bool stop_ GUARDED_BY(mu_) = false;
  std::atomic<bool> stopping_{false};  // stop_, read by the workers' CancelScope without mu_
  std::string last_error_ GUARDED_BY(mu_);
  bool damaged_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

Status Hydrator::Init() {
  for (uint64_t start = 0;;) {
    STRATA_ASSIGN_OR_RETURN(BlockList list, pool_->ListSnapshotBlocks(record_.snapshot_id, kBlock,
                                                                      start, kMaxBlockListResults));
    MutexLock lock(&mu_);  // (not attached yet: nobody else looks)
    for (uint64_t b : list.blocks) {
      if (b < state_.size() && state_[b] != kPresent) {
        MarkPresentLocked(b);
        fetched_++;
      }
    }
    if (!list.next_block) {
      break;
    }
    start = *list.next_block;
  }
  MutexLock lock(&mu_);
  fetched_at_start_ = fetched_;
  return Status::OK();
}

void Hydrator::Stop() {
  Calls calls;
  {
    MutexLock lock(&mu_);
    if (stop_) {
      return;
    }
    stop_ = true;
    stopping_.store(true);  // fetches on the wire end at their next turn (util/cancel.h)
    for (auto& [block, demands] : waiting_) {
      for (auto& d : demands) {
        if (d->done) {
          calls.emplace_back(std::move(d->done),
                             Status::IOError("the restore of " + record_.snapshot_id +
                                                 " stopped (the process is shutting down)",
                                             EIO));
        }
      }
    }
    waiting_.clear();
  }
  cv_.SignalAll();
  for (std::thread& t : workers_) {
    t.join();
  }
  workers_.clear();
  for (auto& [fn, s] : calls) {
    fn(s);
  }
}

bool Hydrator::Present(uint64_t offset_bytes, uint64_t length_bytes) {
  if (complete_fast_.load(std::memory_order_acquire)) {
    return true;  // every request of a restored volume asks: no lock once complete
  }
  const uint64_t end =
      std::min<uint64_t>(blocks_, (offset_bytes + length_bytes + kBlock - 1) / kBlock);
  for (uint64_t b = offset_bytes / kBlock; b < end; b++) {
    if ((present_[b / 64].load(std::memory_order_acquire) & (uint64_t{1} << (b % 64))) == 0) {
      return false;  // (a stale answer only sends the request through Ensure, which knows)
    }
  }
  return true;
}

void Hydrator::Ensure(uint64_t offset_bytes, uint64_t length_bytes,
                      std::function<void(const Status&)> done) {
  auto demand = std::make_shared<Demand>();
  {
    MutexLock lock(&mu_);
    if (stop_) {
      demand->status = Status::IOError("the restore of " + record_.snapshot_id + " stopped", EIO);
    } else if (!complete_) {
      const uint64_t end =
          std::min<uint64_t>(blocks_, (offset_bytes + length_bytes + kBlock - 1) / kBlock);
      for (uint64_t b = offset_bytes / kBlock; b < end; b++) {
        if (state_[b] == kPresent) {
          continue;
        }
        auto& list = waiting_[b];
        if (list.empty() && state_[b] == kMissing) {
          urgent_.push_back(b);
        }
        list.push_back(demand);
        demand->outstanding++;
      }
    }
    if (demand->outstanding > 0) {
      demand->done = std::move(done);
      cv_.SignalAll();
      return;
    }
  }
  done(demand->status);
}

bool Hydrator::BackgroundAllowedLocked(int64_t now) {
  if (!options_.background || record_.rate_mibps == 0 || now < paused_until_ms_) {
    return false;
  }
  if (record_.rate_mibps < 0) {
    return true;
  }
  const double per_ms = record_.rate_mibps * 1048576.0 / 1000.0;
  tokens_ = std::min(tokens_ + static_cast<double>(now - tokens_ms_) * per_ms, per_ms * 1000.0);
  tokens_ms_ = now;
  return tokens_ > 0;
}

bool Hydrator::PickLocked(bool background, std::vector<uint64_t>* batch) {
  const size_t limit = std::max<uint32_t>(1, options_.batch_blocks);
  while (!urgent_.empty() && batch->size() < limit) {
    const uint64_t b = urgent_.front();
    urgent_.pop_front();
    // Read-ahead only for a sequential reader (the block before is here or coming): a random
    // reader would pay 9 blocks for each one it asked for.
    const bool sequential = b > 0 && state_[b - 1] != kMissing;
    const uint64_t ahead = sequential ? options_.readahead_blocks : 0;
    for (uint64_t r = b;
         r < std::min<uint64_t>(state_.size(), b + 1 + ahead) && batch->size() < limit; r++) {
      if (state_[r] == kMissing) {
        state_[r] = kInFlight;
        batch->push_back(r);
      } else if (r == b) {
        continue;
      } else {
        break;  // read-ahead stops at what is here
      }
    }
  }
  if (!batch->empty() || !background || !BackgroundAllowedLocked(NowMs(env_))) {
    return !batch->empty();
  }
  // At a rate, a batch is what the tokens pay for (at least one block): no bursts.
  const size_t background_limit =
      record_.rate_mibps > 0
          ? std::clamp<size_t>(static_cast<size_t>(tokens_ / static_cast<double>(kBlock)), 1, limit)
          : limit;
  for (; cursor_ < state_.size() && batch->size() < background_limit; cursor_++) {
    if (state_[cursor_] == kMissing) {
      state_[cursor_] = kInFlight;
      batch->push_back(cursor_);
    }
  }
  return false;
}

void Hydrator::Main(int worker) {
  CancelScope cancel([this] { return stopping_.load(std::memory_order_relaxed); });
  MutexLock lock(&mu_);
  bool completed_here = false;  // the worker that saw it complete reports it, once
  while (!stop_ && !complete_) {
    std::vector<uint64_t> batch;
    const bool urgent = PickLocked(worker != kDemandWorker, &batch);
    if (batch.empty()) {
      if (CheckCompleteLocked()) {
        completed_here = true;
        break;
      }
      cv_.WaitFor(std::chrono::milliseconds(100));
      continue;
    }
    in_flight_ += batch.size();
    lock.Unlock();
    if (worker == 0) {
      Heartbeat(/*last=*/false);
    }
    FetchBatch(batch, urgent ? &urgent_readers_[worker] : &readers_[worker],
               urgent ? options_.fetch_timeout_ms : 0, worker);
    lock.Lock();
    in_flight_ -= batch.size();
    cv_.SignalAll();  // (the other worker may be waiting for this batch to see completion)
  }
  const bool done = completed_here;
  lock.Unlock();
  if (done) {
    Heartbeat(/*last=*/true);
  }
  if (done && on_complete_) {
    on_complete_(record_.snapshot_id);
  }
}

void Hydrator::Heartbeat(bool last) {
  if (record_.marker.empty() || (!last && NowMs(env_) - marker_ms_ < kMarkerHeartbeatMs)) {
    return;
  }
  if (!marker_store_) {
    auto spec = FindRemote(pool_->Info().path, record_.remote);
    auto store = spec.ok() ? factory_(*spec, options_.fetch_attempts, options_.fetch_timeout_ms)
                           : Result<std::unique_ptr<remote::ObjectStore>>(spec.status());
    if (!store.ok()) {
      return;  // the fetches report the remote's trouble; the next batch tries again
    }
    marker_store_ = std::move(*store);
  }
  Status s =
      last ? marker_store_->Delete(record_.marker) : PutMarker(env_, marker_store_.get(), record_);
  if (s.ok()) {
    marker_ms_ = NowMs(env_);
  }
}

bool Hydrator::CheckCompleteLocked() {
  // Complete once the background pass has looked at every block (zero ones included) and
  // nothing is missing: on-demand-only restores complete only when everything was touched.
  while (cursor_ < state_.size() && state_[cursor_] == kPresent) {
    cursor_++;  // (on demand only, readers may have touched everything)
  }
  if (cursor_ < state_.size() || in_flight_ > 0 || !urgent_.empty()) {
    return false;
  }
  auto missing =
      std::find_if(state_.begin(), state_.end(), [](uint8_t s) { return s != kPresent; });
  if (missing != state_.end()) {
    cursor_ = static_cast<uint64_t>(missing - state_.begin());  // a failed fetch: once more
    return false;
  }
  complete_ = true;
  complete_fast_.store(true, std::memory_order_release);
  return true;
}

void Hydrator::SettleLocked(uint64_t block, const Status& s, Calls* calls) {
  if (s.ok()) {
    MarkPresentLocked(block);
  } else {
    state_[block] = kMissing;
  }
  if (!s.ok()) {
    cursor_ = std::min(cursor_, block);
  }
  auto it = waiting_.find(block);
  if (it == waiting_.end()) {
    return;
  }
  for (auto& d : it->second) {
    if (!s.ok() && d->status.ok()) {
      d->status = s;
    }
    if (--d->outstanding == 0 && d->done) {
      calls->emplace_back(std::move(d->done), d->status);
    }
  }
  waiting_.erase(it);
}

std::vector<std::span<std::byte>> Hydrator::SliceBuffer(
    int worker, const std::vector<std::pair<uint64_t, remote::BlockRef>>& refs,
    std::vector<Status>* status) {
  status->assign(refs.size(), Status::OK());
  size_t total = 0;
  for (size_t i = 0; i < refs.size(); i++) {
    const remote::BlockRef& ref = refs[i].second;
    const std::string what = "remote " + record_.remote + ": block " +
                             std::to_string(refs[i].first) + " of " + record_.snapshot_id;
    (*status)[i] = remote::CheckRef(ref, what);
    if ((*status)[i].ok() && ref.raw > kBlock) {
      (*status)[i] = Status::Corruption(what + ": larger than the snapshot's block size");
    }
    total += (*status)[i].ok() ? ref.raw : 0;
  }
  if (buffer_bytes_[worker] < total) {
    buffers_[worker] = AllocateAligned(total);  // (uninitialised: every byte is decoded into)
    buffer_bytes_[worker] = total;
  }
  std::vector<std::span<std::byte>> out(refs.size());
  size_t at = 0;
  for (size_t i = 0; i < refs.size(); i++) {
    if ((*status)[i].ok()) {
      out[i] = std::span<std::byte>(buffers_[worker].get() + at, refs[i].second.raw);
      at += refs[i].second.raw;
    }
  }
  return out;
}

void Hydrator::FetchBatch(const std::vector<uint64_t>& batch,
                          std::unique_ptr<remote::SnapshotReader>* reader_slot, uint32_t timeout_ms,
                          int worker) {
  std::map<uint64_t, Status> result;  // block -> how it went
  Status opened = Status::OK();
  std::unique_ptr<remote::SnapshotReader>& reader_ = *reader_slot;
  if (!reader_) {
    auto spec = FindRemote(pool_->Info().path, record_.remote);
    auto store = spec.ok() ? factory_(*spec, options_.fetch_attempts, timeout_ms)
                           : Result<std::unique_ptr<remote::ObjectStore>>(spec.status());
    auto reader =
        store.ok() ? remote::SnapshotReader::OpenWithManifest(record_.remote, std::move(*store),
                                                              record_.snapshot_id, record_.manifest)
                   : Result<std::unique_ptr<remote::SnapshotReader>>(store.status());
    opened = reader.status();
    if (reader.ok()) {
      reader_ = std::move(*reader);
    }
  }
  std::vector<std::pair<uint64_t, remote::BlockRef>> refs;
  for (size_t i = 0; i < batch.size() && opened.ok();) {
    const uint64_t leaf = batch[i] / remote::kFanout;
    auto blocks = reader_->Leaf(leaf);
    for (; i < batch.size() && batch[i] / remote::kFanout == leaf; i++) {
      if (!blocks.ok()) {
        result[batch[i]] = blocks.status();
        continue;
      }
      auto ref = std::find_if(blocks->begin(), blocks->end(),
                              [&](const auto& r) { return r.first == batch[i]; });
      if (ref == blocks->end()) {
        result[batch[i]] = Status::OK();  // all zeros: the snapshot's hole reads as such
      } else {
        refs.push_back(*ref);
      }
    }
  }
  std::vector<Status> fetched;
  std::vector<std::span<std::byte>> raw;  // each fetched block's bytes, in the worker's buffer
  if (opened.ok()) {
    std::vector<Status> sized;
    std::vector<std::span<std::byte>> out = SliceBuffer(worker, refs, &sized);
    std::vector<std::pair<uint64_t, remote::BlockRef>> good;
    std::vector<std::span<std::byte>> good_out;
    for (size_t i = 0; i < refs.size(); i++) {
      if (sized[i].ok()) {
        good.push_back(refs[i]);
        good_out.push_back(out[i]);
      }
    }
    std::vector<Status> got;
    reader_->Fetch(good, good_out, &got);
    fetched = std::move(sized);
    for (size_t i = 0, g = 0; i < refs.size(); i++) {
      if (fetched[i].ok()) {
        fetched[i] = got[g++];
      }
    }
    raw = std::move(out);
  }
  uint64_t bytes = 0, filled = 0;
  // Runs of consecutive fetched blocks go into the snapshot in one fill (one write per run of
  // consecutive chunks, one publication); they lie side by side in the worker's buffer.
  for (size_t i = 0; i < refs.size();) {
    size_t end = i;
    size_t run_bytes = 0;
    while (end < refs.size() && fetched[end].ok() &&
           (end == i || refs[end].first == refs[end - 1].first + 1) &&
           (end == i || raw[end - 1].size() == kBlock)) {
      run_bytes += raw[end].size();
      end++;
    }
    Status s = end > i ? pool_->FillSnapshot(record_.snapshot_id, refs[i].first * kBlock,
                                             std::span<const std::byte>(raw[i].data(), run_bytes))
                       : fetched[i];
    end = std::max(end, i + 1);
    for (size_t j = i; j < end; j++) {
      result[refs[j].first] = s;
      bytes += s.ok() ? refs[j].second.stored : 0;
      filled += s.ok();
    }
    i = end;
  }
  Calls calls;
  {
    MutexLock lock(&mu_);
    Status first_error = opened;
    for (uint64_t b : batch) {
      Status s = opened.ok() ? result[b] : opened;
      if (!s.ok() && first_error.ok()) {
        first_error = s;
      }
      const bool data =
          std::any_of(refs.begin(), refs.end(), [b](const auto& r) { return r.first == b; });
      fetched_ += s.ok() && data;
      SettleLocked(b, s, &calls);
    }
    bytes_ += bytes;
    tokens_ -= static_cast<double>(bytes);
    if (!first_error.ok()) {
      backoff_ms_ = std::clamp<int64_t>(backoff_ms_ * 2, 500, kMaxBackoffMs);
      paused_until_ms_ = NowMs(env_) + backoff_ms_;
      damaged_ = first_error.code() == Status::Code::kCorruption;
      if (last_error_ != first_error.ToString()) {
        last_error_ = first_error.ToString();
        Say("restore of " + record_.snapshot_id + " from remote " + record_.remote + ": " +
            last_error_ + " (retrying in the background)");
      }
    } else {
      if (!last_error_.empty()) {
        Say("restore of " + record_.snapshot_id + " from remote " + record_.remote +
            ": the remote answers again");
      }
      backoff_ms_ = 0;
      last_error_.clear();
      damaged_ = false;
    }
  }
  // The readers go on at once: what was filled is visible (a read is right whether or not the
  // fill is durable yet, and a write's flush commits the fill with it).
  for (auto& [fn, s] : calls) {  // a reader sees EIO (or ENOSPC), whatever the remote said
    fn(s.ok() || s.code() == Status::Code::kNoSpace ? s : Status::IOError(s.message(), EIO));
  }
  // Then durable: after a crash, nothing that arrived before this point is fetched again.
  if (Status flushed = filled > 0 ? pool_->Flush() : Status::OK(); !flushed.ok()) {
    Say("restore of " + record_.snapshot_id + ": " + flushed.ToString());
  }
}

HydrationStatus Hydrator::Describe() {
  MutexLock lock(&mu_);
  HydrationStatus st;
  st.snapshot_id = record_.snapshot_id;
  st.remote = record_.remote;
  st.rate_mibps = record_.rate_mibps;
  st.data_blocks = record_.data_blocks;
  st.fetched_blocks = std::min(fetched_, record_.data_blocks);
  st.bytes_fetched = bytes_;
  st.progress = ProgressLocked();
  st.complete = complete_;
  st.last_error = last_error_;
  st.damaged = damaged_;
  const double secs = static_cast<double>(NowMs(env_) - started_ms_) / 1000.0;
  const double per_s = secs > 0.5 ? static_cast<double>(fetched_ - fetched_at_start_) / secs : 0;
  if (complete_) {
    st.eta_seconds = 0;
  } else if (per_s > 0) {
    st.eta_seconds = static_cast<int64_t>(
        static_cast<double>(record_.data_blocks - std::min(fetched_, record_.data_blocks)) / per_s);
  }
  return st;
}

// ---------------------------------------------------------------- the pool's restores

Mutex registry_mu;  // guards Registry()
std::map<Pool*, Hydrations*>& Registry() {
  static auto* registry = new std::map<Pool*, Hydrations*>();
  return *registry;
}

class HydrationsImpl final : public Hydrations {
 public:
  HydrationsImpl(Pool* pool, HydrationOptions options, StoreFactory factory)
      : pool_(pool), options_(std::move(options)), factory_(std::move(factory)) {}
  ~HydrationsImpl() override {
    {
      MutexLock lock(&registry_mu);
      Registry().erase(pool_);
    }
    std::map<std::string, std::shared_ptr<Hydrator>> running;
    {
      MutexLock lock(&mu_);
      running.swap(running_);
    }
    for (auto& [id, h] : running) {
      h->Stop();  // attached still: a read that needs a missing block fails, never reads zeros
    }
  }

  Status Load();
  Result<SnapshotInfo> Begin(const RemoteSpec& spec, const std::string& snapshot_id,
                             double rate_mibps) override;
  std::optional<HydrationStatus> StatusOf(const std::string& id) override;
  std::vector<HydrationStatus> List() override;
  Status Abort(const std::string& snapshot_id) override;
  Status Wait(const std::string& snapshot_id, int64_t give_up_ms,
              const std::function<void(const HydrationStatus&)>& progress) override;

 private:
  std::string Path() const { return pool_->Info().path + "/hydrations.json"; }
  Result<std::vector<Record>> ReadRecords();
  Status WriteRecords(const std::vector<Record>& records);
  Status Run(const Record& record) REQUIRES(mu_);  // attaches and starts
  void Completed(const std::string& snapshot_id);

  Pool* pool_;
  const HydrationOptions options_;
  StoreFactory factory_;
  Mutex mu_;  // the records file and running_
  std::map<std::string, std::shared_ptr<Hydrator>> running_ GUARDED_BY(mu_);
};

Result<std::vector<Record>> HydrationsImpl::ReadRecords() {
  std::vector<Record> out;
  Result<std::string> text = EnvOf(options_)->ReadSmallFile(Path(), kMaxRecordsBytes);
  if (text.status().code() == Status::Code::kNotFound) {
    return out;
  }
  STRATA_RETURN_IF_ERROR(text.status());
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("hydrations") || !j["hydrations"].is_array()) {
    return Status::Corruption(Path() + " is not a list of restores");
  }
  for (const json& r : j["hydrations"]) {
    // Every field checked for its type: a damaged file is a clear error, never an exception.
    auto str = [&r](const char* k) { return r.value(k, json()).is_string(); };
    auto num = [&r](const char* k) { return r.value(k, json()).is_number(); };
    auto uns = [&r](const char* k) { return r.value(k, json()).is_number_unsigned(); };
    if (!r.is_object() || !str("snapshot_id") || !str("remote") || !num("rate_mibps") ||
        !uns("data_blocks") || !uns("volume_bytes") || !str("manifest") || !str("marker") ||
        !str("tree")) {
      return Status::Corruption(Path() + " has a malformed restore");
    }
    out.push_back(Record{r["snapshot_id"].get<std::string>(), r["remote"].get<std::string>(),
                         r["rate_mibps"].get<double>(), r["data_blocks"].get<uint64_t>(),
                         r["volume_bytes"].get<uint64_t>(), r["manifest"].get<std::string>(),
                         r["marker"].get<std::string>(), r["tree"].get<std::string>()});
  }
  return out;
}

Status HydrationsImpl::WriteRecords(const std::vector<Record>& records) {
  json list = json::array();
  for (const Record& r : records) {
    list.push_back({{"snapshot_id", r.snapshot_id},
                    {"remote", r.remote},
                    {"rate_mibps", r.rate_mibps},
                    {"data_blocks", r.data_blocks},
                    {"volume_bytes", r.volume_bytes},
                    {"manifest", r.manifest},
                    {"marker", r.marker},
                    {"tree", r.tree}});
  }
  return EnvOf(options_)->ReplaceFile(Path(), DumpJson(json{{"hydrations", list}}, 2) + "\n");
}

Status HydrationsImpl::Run(const Record& record) {
  auto hydrator = std::make_shared<Hydrator>(
      pool_, record, options_, factory_,
      [this](const std::string& id) { Completed(id); });  // on the worker, as it ends
  STRATA_RETURN_IF_ERROR(hydrator->Init());
  STRATA_RETURN_IF_ERROR(pool_->AttachBlockSource(record.snapshot_id, hydrator));
  hydrator->StartWorker();
  running_[record.snapshot_id] = std::move(hydrator);
  return Status::OK();
}

Status HydrationsImpl::Load() {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(std::vector<Record> records, ReadRecords());
  std::vector<Record> kept;
  for (const Record& r : records) {
    if (!pool_->DescribeSnapshot(r.snapshot_id).ok()) {
      continue;  // a crash between the record and the snapshot (or the snapshot was deleted)
    }
    kept.push_back(r);
    STRATA_RETURN_IF_ERROR(Run(r));
  }
  return kept.size() == records.size() ? Status::OK() : WriteRecords(kept);
}

Result<SnapshotInfo> HydrationsImpl::Begin(const RemoteSpec& spec, const std::string& snapshot_id,
                                           double rate_mibps) {
  for (const SnapshotInfo& s : pool_->ListSnapshots()) {
    if (s.snapshot_id == snapshot_id || s.source_snapshot_id == snapshot_id) {
      return s;  // here already (or arriving)
    }
  }
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<remote::ObjectStore> store,
                          factory_(spec, options_.fetch_attempts, 0));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<remote::SnapshotReader> reader,
                          remote::SnapshotReader::OpenOn(spec.name, std::move(store), snapshot_id));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<remote::ObjectStore> marker_store,
                          factory_(spec, options_.fetch_attempts, 0));
  Record record{snapshot_id,
                spec.name,
                rate_mibps,
                reader->data_blocks(),
                reader->volume_bytes(),
                reader->manifest_bytes(),
                std::string(remote::kRestoringPrefix) + snapshot_id + "-" + RandomIdTail(),
                reader->TreeJson()};
  // The marker before anything else, then the manifest once more: a GC that deleted the
  // snapshot before it saw the marker has deleted the manifest first (docs/remote-format.md).
  STRATA_RETURN_IF_ERROR(
      PutMarker(EnvOf(options_), marker_store.get(), record).WithContext("remote " + spec.name));
  if (auto again = marker_store->Head(remote::ManifestKey(snapshot_id)); !again.ok()) {
    (void)marker_store->Delete(record.marker);
    return again.status().code() == Status::Code::kNotFound
               ? Status::NotFound("remote " + spec.name + " holds no snapshot " + snapshot_id +
                                  " (deleted just now)")
               : again.status();
  }
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(std::vector<Record> records, ReadRecords());
  records.push_back(record);
  STRATA_RETURN_IF_ERROR(WriteRecords(records));  // first: a crash after it leaves no orphan
  VolumeSpec vs;
  vs.size_bytes = (record.volume_bytes + 511) / 512 * 512;
  vs.volume_type = "unlimited";
  vs.importing = true;
  auto sealed = [&]() -> Result<SnapshotInfo> {
    STRATA_ASSIGN_OR_RETURN(VolumeInfo importing, pool_->CreateVolume(vs));
    auto snap = pool_->SealImport(importing.volume_id, reader->description(), snapshot_id,
                                  /*keep_source_id=*/true);
    if (!snap.ok()) {
      (void)pool_->DeleteVolume(importing.volume_id);
    }
    return snap;
  }();
  if (sealed.ok() && sealed->snapshot_id != snapshot_id) {  // taken meanwhile
    (void)pool_->DeleteSnapshot(sealed->snapshot_id);
    sealed = Status::AlreadyExists("snapshot " + snapshot_id + " appeared meanwhile");
  }
  if (sealed.ok()) {
    Status s = Run(record);
    if (s.ok()) {
      return sealed;
    }
    sealed = s;
  }
  records.pop_back();
  Status undone = WriteRecords(records);
  (void)undone;
  (void)marker_store->Delete(record.marker);
  return sealed.status();
}

void HydrationsImpl::Completed(const std::string& snapshot_id) {
  MutexLock lock(&mu_);
  auto records = ReadRecords();
  if (!records.ok()) {
    return;
  }
  std::erase_if(*records, [&](const Record& r) { return r.snapshot_id == snapshot_id; });
  // The source stays attached in this process (complete: it answers Present at once) so that
  // the restore's figures stay visible; the next start has no record and attaches nothing.
  (void)WriteRecords(*records);
}

Status HydrationsImpl::Abort(const std::string& snapshot_id) {
  std::shared_ptr<Hydrator> h;
  {
    MutexLock lock(&mu_);
    auto it = running_.find(snapshot_id);
    if (it == running_.end()) {
      return Status::NotFound("no restore of " + snapshot_id + " is under way");
    }
    h = it->second;
  }
  h->Stop();
  STRATA_RETURN_IF_ERROR(pool_->AttachBlockSource(snapshot_id, nullptr));
  Status deleted = pool_->DeleteSnapshot(snapshot_id);
  if (!deleted.ok() && deleted.code() != Status::Code::kNotFound) {
    (void)pool_->AttachBlockSource(snapshot_id, h);  // still read through: keep it (stopped)
    return deleted;
  }
  MutexLock lock(&mu_);
  running_.erase(snapshot_id);
  STRATA_ASSIGN_OR_RETURN(std::vector<Record> records, ReadRecords());
  std::erase_if(records, [&](const Record& r) { return r.snapshot_id == snapshot_id; });
  STRATA_RETURN_IF_ERROR(WriteRecords(records));
  auto spec = FindRemote(pool_->Info().path, h->record().remote);
  auto store = spec.ok() ? factory_(*spec, options_.fetch_attempts, 0)
                         : Result<std::unique_ptr<remote::ObjectStore>>(spec.status());
  if (store.ok()) {
    (void)(*store)->Delete(h->record().marker);  // else it ages out in an hour
  }
  return Status::OK();
}

std::optional<HydrationStatus> HydrationsImpl::StatusOf(const std::string& id) {
  std::shared_ptr<BlockSource> source = pool_->SourceOf(id);
  MutexLock lock(&mu_);
  for (const auto& [snap, h] : running_) {
    if (snap == id || (source && h.get() == source.get())) {
      return h->Describe();
    }
  }
  return std::nullopt;
}

std::vector<HydrationStatus> HydrationsImpl::List() {
  MutexLock lock(&mu_);
  std::vector<HydrationStatus> out;
  for (const auto& [snap, h] : running_) {
    out.push_back(h->Describe());
  }
  return out;
}

Status HydrationsImpl::Wait(const std::string& snapshot_id, int64_t give_up_ms,
                            const std::function<void(const HydrationStatus&)>& progress) {
  int64_t failing_since = 0;
  for (;;) {
    std::optional<HydrationStatus> st = StatusOf(snapshot_id);
    if (!st || st->complete) {
      return Status::OK();
    }
    if (CancelScope::Cancelled()) {  // the caller left, or the server is stopping
      return Status::Shutdown("restore of " + snapshot_id +
                              ": no longer waited for (it goes on in the background)");
    }
    if (progress) {
      progress(*st);
    }
    if (st->damaged) {
      return Status::Corruption("restore of " + snapshot_id + ": " + st->last_error);
    }
    if (st->last_error.empty()) {
      failing_since = 0;
    } else if (failing_since == 0) {
      failing_since = NowMs(EnvOf(options_));
    } else if (NowMs(EnvOf(options_)) - failing_since > give_up_ms) {
      return Status::IOError("restore of " + snapshot_id + ": " + st->last_error, EIO);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

Result<std::unique_ptr<Hydrations>> remote::StartHydrationsWith(Pool* pool,
                                                                const HydrationOptions& options,
                                                                StoreFactory factory) {
  auto h = std::make_unique<HydrationsImpl>(pool, options, std::move(factory));
  {
    MutexLock lock(&registry_mu);
    if (Registry().count(pool) != 0) {
      return Status::AlreadyExists("the pool's restores are run by another Hydrations");
    }
    Registry()[pool] = h.get();
  }
  STRATA_RETURN_IF_ERROR(h->Load());
  return std::unique_ptr<Hydrations>(std::move(h));
}

Result<std::unique_ptr<Hydrations>> Hydrations::Start(Pool* pool, const HydrationOptions& options) {
  return remote::StartHydrationsWith(
      pool, options, [](const RemoteSpec& spec, uint32_t attempts, uint32_t timeout_ms) {
        return remote::OpenObjectStore(spec, attempts, timeout_ms);
      });
}

Hydrations* Hydrations::Of(Pool* pool) {
  MutexLock lock(&registry_mu);
  auto it = Registry().find(pool);
  return it == Registry().end() ? nullptr : it->second;
}

}  // namespace strata
