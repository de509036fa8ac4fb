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
#include <array>
#include <atomic>
#include <bit>
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

// The unit a lazy restore tracks and fills: a remote piece (64 KiB), or the pool's chunk when
// that is larger (a fill is whole chunks), at most the remote's block.
uint32_t UnitFor(uint32_t chunk_bytes) {
  return static_cast<uint32_t>(std::clamp<uint64_t>(chunk_bytes, remote::kPieceBytes, kBlock));
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
        unit_(UnitFor(pool->Info().chunk_size_bytes)),
        units_per_block_(static_cast<uint32_t>(kBlock / unit_)),
        blocks_((record_.volume_bytes + kBlock - 1) / kBlock),
        units_((record_.volume_bytes + unit_ - 1) / unit_),
        claimed_(blocks_, 0),
        present_words_((units_ + 63) / 64),
        present_(new std::atomic<uint64_t>[present_words_]()) {
    // A block's units are bits of one byte, and of one word of present_.
    STRATA_CHECK(units_per_block_ >= 1 && units_per_block_ <= 8 && 64 % units_per_block_ == 0);
  }
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
  struct Demand {
    size_t outstanding = 0;
    Status status;
    std::function<void(const Status&)> done;
  };
  // Units of one block to fetch: bit i is the block's unit i.
  struct Want {
    uint64_t block = 0;
    uint8_t units = 0;
  };
  using Calls = std::vector<std::pair<std::function<void(const Status&)>, Status>>;

  double ProgressLocked() const REQUIRES(mu_) {
    if (complete_ || record_.data_blocks == 0) {
      return 1.0;  // (an all-zero snapshot has nothing to fetch: its holes read right)
    }
    return std::min(1.0, static_cast<double>(fetched_) /
                             static_cast<double>(record_.data_blocks * units_per_block_));
  }
  // Two workers: while one waits for the network, the other writes what it fetched. A third
  // fetches only what readers wait for: a read that misses waits for one range GET, not for a
  // background batch of 32 already on the wire.
  static constexpr int kWorkers = 3;
  static constexpr int kDemandWorker = 2;
  void Main(int worker);

  // The units of block b: that exist, that are here, that nobody has or fetches.
  uint8_t FullMask(uint64_t b) const {
    const uint64_t n = std::min<uint64_t>(units_per_block_, units_ - b * units_per_block_);
    return static_cast<uint8_t>((1u << n) - 1);
  }
  uint8_t PresentMask(uint64_t b) const {
    const uint64_t u = b * units_per_block_;
    const uint64_t word = present_[u / 64].load(std::memory_order_acquire);
    return static_cast<uint8_t>((word >> (u % 64)) & ((1u << units_per_block_) - 1));
  }
  uint8_t MissingLocked(uint64_t b) const REQUIRES(mu_) {
    return static_cast<uint8_t>(FullMask(b) & ~PresentMask(b) & ~claimed_[b]);
  }
  void ClaimLocked(std::vector<Want>* batch, uint64_t b, uint8_t units) REQUIRES(mu_) {
    claimed_[b] |= units;
    batch->push_back(Want{b, units});
  }
  // Set (release) after the units' fill is published, so a reader that sees the bits (acquire)
  // finds the fill.
  void MarkPresentLocked(uint64_t b, uint8_t units) REQUIRES(mu_) {
    const uint64_t u = b * units_per_block_;
    present_[u / 64].fetch_or(uint64_t{units} << (u % 64), std::memory_order_release);
  }
  // A reader is sequential when its miss begins where an earlier miss (with its read-ahead)
  // ended: a random reader whose neighbour happens to be here pays no read-ahead.
  bool SequentialLocked(uint64_t unit) const REQUIRES(mu_) {
    return std::find(recent_ends_.begin(), recent_ends_.end(), unit) != recent_ends_.end();
  }
  // The next blocks to fetch: asked for first (with read-ahead), then (if `background`) the
  // background pass.
  // Returns true when the batch is readers' (urgent) work: a batch is one kind or the other.
  bool PickLocked(bool background, std::vector<Want>* batch) REQUIRES(mu_);
  void PickUrgentLocked(Want want, size_t limit, std::vector<Want>* batch) REQUIRES(mu_);
  bool BackgroundAllowedLocked(int64_t now) REQUIRES(mu_);
  // Fetches, checks and fills the batch; then settles each block. No lock held.
  // `timeout_ms`: the whole batch fails past it, retries included (0: only the attempts bound
  // it), for a reader opened into `reader` on first use.
  void FetchBatch(std::vector<Want> batch, std::unique_ptr<remote::SnapshotReader>* reader,
                  uint32_t timeout_ms, int worker);
  struct Fetched;
  // The batch's refs (from the leaves), each want grown to what its fetch will bring.
  void Plan(remote::SnapshotReader* reader, std::vector<Want>* batch, Fetched* f);
  // Whole blocks, and ranges of pieces, at once into the worker's buffer, checked.
  void FetchInto(remote::SnapshotReader* reader, int worker, const std::vector<Want>& batch,
                 Fetched* f);
  // What arrived into the snapshot: each want's units (runs of whole blocks in one fill).
  void FillFetched(const std::vector<Want>& batch, Fetched* f);
  // Fills `units` of block b from `bytes`, which begin at the block's unit `from`: one fill
  // per run of consecutive units.
  Status FillUnits(uint64_t b, uint8_t units, uint32_t from, std::span<const std::byte> bytes);
  // `sizes` laid out one after another in the worker's buffer (grown when short).
  std::vector<std::span<std::byte>> SliceBuffer(int worker, const std::vector<size_t>& sizes);
  void SettleLocked(const Want& want, const Status& s, Calls* calls) REQUIRES(mu_);
  void NoteOutcomeLocked(const Status& first_error) REQUIRES(mu_);
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
  // The piece tables every reader found: a pack's index is fetched once, not per reader.
  const std::shared_ptr<remote::PieceIndexCache> pieces_ = remote::NewPieceIndexCache();
  // Each worker's fetch buffer, kept between batches (no page faults or zeroing per block):
  // at most batch_blocks (and read-ahead) blocks of 512 KiB.
  AlignedBuffer buffers_[kWorkers];  // (aligned: the volume writes from them in place)
  size_t buffer_bytes_[kWorkers] = {};
  std::unique_ptr<remote::ObjectStore> marker_store_;  // the worker's only
  int64_t marker_ms_ = 0;                              // last heartbeat written (steady)

  const uint32_t unit_;             // bytes a unit: what is tracked, fetched alone and filled
  const uint32_t units_per_block_;  // 1 .. 8
  const uint64_t blocks_;           // the snapshot's, in remote blocks
  const uint64_t units_;            // the snapshot's, in units
  Mutex mu_;
  CondVar cv_{&mu_};                              // something to fetch, or stop
  std::vector<uint8_t> claimed_ GUARDED_BY(mu_);  // per block: its units being fetched
  // Units present, readable without mu_: every request of a restoring volume asks Present, and
  // a unit once present stays so.
  const size_t present_words_;
  std::unique_ptr<std::atomic<uint64_t>[]> present_;
  std::deque<Want> urgent_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, std::vector<std::shared_ptr<Demand>>> waiting_
      GUARDED_BY(mu_);  // by unit
  // Units just past recent misses (and their read-ahead); none at first.
  std::array<uint64_t, 64> recent_ends_ GUARDED_BY(mu_) = [] {
    std::array<uint64_t, 64> none;
    none.fill(UINT64_MAX);
    return none;
  }();
  size_t recent_next_ GUARDED_BY(mu_) = 0;
  uint64_t cursor_ GUARDED_BY(mu_) =
      0;  // the background pass: every block below is present or in flight
  size_t in_flight_ GUARDED_BY(mu_) = 0;
  uint64_t fetched_ GUARDED_BY(mu_) = 0;  // data units here
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
    STRATA_ASSIGN_OR_RETURN(BlockList list, pool_->ListSnapshotBlocks(record_.snapshot_id, unit_,
                                                                      start, kMaxBlockListResults));
    MutexLock lock(&mu_);  // (not attached yet: nobody else looks)
    for (uint64_t u : list.blocks) {
      const uint64_t b = u / units_per_block_;
      const auto bit = static_cast<uint8_t>(1u << (u % units_per_block_));
      if (u < units_ && (PresentMask(b) & bit) == 0) {
        MarkPresentLocked(b, bit);
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
    for (auto& [unit, demands] : waiting_) {
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
      std::min<uint64_t>(units_, (offset_bytes + length_bytes + unit_ - 1) / unit_);
  for (uint64_t u = offset_bytes / unit_; u < end; u++) {
    if ((present_[u / 64].load(std::memory_order_acquire) & (uint64_t{1} << (u % 64))) == 0) {
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
          std::min<uint64_t>(units_, (offset_bytes + length_bytes + unit_ - 1) / unit_);
      Want want;  // the missing units of one block, queued together
      for (uint64_t u = offset_bytes / unit_; u < end; u++) {
        const uint64_t b = u / units_per_block_;
        const auto bit = static_cast<uint8_t>(1u << (u % units_per_block_));
        if (PresentMask(b) & bit) {
          continue;
        }
        if (want.units != 0 && want.block != b) {
          urgent_.push_back(want);
          want = Want{};
        }
        auto& list = waiting_[u];
        if (list.empty() && (claimed_[b] & bit) == 0) {
          want.block = b;
          want.units |= bit;
        }
        list.push_back(demand);
        demand->outstanding++;
      }
      if (want.units != 0) {
        urgent_.push_back(want);
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

void Hydrator::PickUrgentLocked(Want want, size_t limit, std::vector<Want>* batch) {
  want.units &= MissingLocked(want.block);
  if (want.units == 0) {
    return;  // here, or claimed since it was asked for
  }
  const auto first = static_cast<uint32_t>(std::countr_zero(want.units));
  const uint64_t first_unit = want.block * units_per_block_ + first;
  // Read-ahead only for a sequential reader: a random one would pay 9 blocks for each unit.
  if (!SequentialLocked(first_unit)) {
    // A miss of more than one unit (a file system's 128 KiB read-ahead, a copy) is a bulk
    // reader: it takes the rest of the block, one GET where a unit at a time would be several.
    // (A second miss in a block taking the rest too cost random readers at 8 GiB 847 against
    // 932 IOPS, and gained a boot on demand nothing measurable: not done.)
    const bool bulk = std::popcount(want.units) > 1;
    ClaimLocked(batch, want.block, bulk ? MissingLocked(want.block) : want.units);
    const auto last = static_cast<uint32_t>(7 - std::countl_zero(want.units));
    recent_ends_[recent_next_++ % recent_ends_.size()] =
        bulk ? (want.block + 1) * units_per_block_ : want.block * units_per_block_ + last + 1;
    return;
  }
  ClaimLocked(batch, want.block,
              static_cast<uint8_t>(MissingLocked(want.block) & ~((1u << first) - 1)));
  uint64_t b = want.block + 1;
  for (; b < std::min<uint64_t>(blocks_, want.block + 1 + options_.readahead_blocks) &&
         batch->size() < limit;
       b++) {
    const uint8_t missing = MissingLocked(b);
    if (missing != FullMask(b)) {
      break;  // read-ahead stops at what is here
    }
    ClaimLocked(batch, b, missing);
  }
  recent_ends_[recent_next_++ % recent_ends_.size()] = b * units_per_block_;
}

bool Hydrator::PickLocked(bool background, std::vector<Want>* batch) {
  const size_t limit = std::max<uint32_t>(1, options_.batch_blocks);
  while (!urgent_.empty() && batch->size() < limit) {
    const Want want = urgent_.front();
    urgent_.pop_front();
    PickUrgentLocked(want, limit, batch);
  }
  if (!batch->empty() || !background || !BackgroundAllowedLocked(NowMs(env_))) {
    return !batch->empty();
  }
  // At a rate, a batch is what the tokens pay for (at least one block): no bursts.
  const size_t background_limit =
      record_.rate_mibps > 0
          ? std::clamp<size_t>(static_cast<size_t>(tokens_ / static_cast<double>(kBlock)), 1, limit)
          : limit;
  for (; cursor_ < blocks_ && batch->size() < background_limit; cursor_++) {
    if (const uint8_t missing = MissingLocked(cursor_); missing != 0) {
      ClaimLocked(batch, cursor_, missing);
    }
  }
  return false;
}

void Hydrator::Main(int worker) {
  CancelScope cancel([this] { return stopping_.load(std::memory_order_relaxed); });
  MutexLock lock(&mu_);
  bool completed_here = false;  // the worker that saw it complete reports it, once
  while (!stop_ && !complete_) {
    std::vector<Want> batch;
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
    const size_t wants = batch.size();
    lock.Unlock();
    if (worker == 0) {
      Heartbeat(/*last=*/false);
    }
    FetchBatch(std::move(batch), urgent ? &urgent_readers_[worker] : &readers_[worker],
               urgent ? options_.fetch_timeout_ms : 0, worker);
    lock.Lock();
    in_flight_ -= wants;
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
  while (cursor_ < blocks_ && PresentMask(cursor_) == FullMask(cursor_)) {
    cursor_++;  // (on demand only, readers may have touched everything)
  }
  if (cursor_ < blocks_ || in_flight_ > 0 || !urgent_.empty()) {
    return false;
  }
  for (uint64_t b = 0; b < blocks_; b++) {
    if (PresentMask(b) != FullMask(b)) {
      cursor_ = b;  // a failed fetch: once more
      return false;
    }
  }
  complete_ = true;
  complete_fast_.store(true, std::memory_order_release);
  return true;
}

void Hydrator::SettleLocked(const Want& want, const Status& s, Calls* calls) {
  STRATA_CHECK((claimed_[want.block] & want.units) == want.units);  // ours to settle
  claimed_[want.block] &= static_cast<uint8_t>(~want.units);
  if (s.ok()) {
    MarkPresentLocked(want.block, want.units);
  } else {
    cursor_ = std::min(cursor_, want.block);
  }
  for (uint32_t i = 0; i < units_per_block_; i++) {
    if ((want.units & (1u << i)) == 0) {
      continue;
    }
    auto it = waiting_.find(want.block * units_per_block_ + i);
    if (it == waiting_.end()) {
      continue;
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
}

std::vector<std::span<std::byte>> Hydrator::SliceBuffer(int worker,
                                                        const std::vector<size_t>& sizes) {
  size_t total = 0;
  for (size_t n : sizes) {
    total += n;  // (each at most a checked block's raw length)
  }
  if (buffer_bytes_[worker] < total) {
    buffers_[worker] = AllocateAligned(total);  // (uninitialised: every byte is decoded into)
    buffer_bytes_[worker] = total;
  }
  std::vector<std::span<std::byte>> out(sizes.size());
  for (size_t i = 0, at = 0; i < sizes.size(); at += sizes[i], i++) {
    out[i] = std::span<std::byte>(buffers_[worker].get() + at, sizes[i]);
  }
  return out;
}

// A batch on its way: for each want, its ref (if the block holds data), how it is fetched, and
// how it went.
struct Hydrator::Fetched {
  enum Kind : uint8_t { kZero, kWhole, kPieces };
  std::vector<Kind> kind;
  std::vector<remote::BlockRef> ref;
  std::vector<uint32_t> from;  // the first unit its bytes begin at
  std::vector<Status> status;
  std::vector<std::span<std::byte>> data;  // its bytes (from unit `from`), in the worker's buffer
  uint64_t bytes = 0;                      // stored bytes fetched
  uint64_t filled = 0;                     // data units filled
};

void Hydrator::Plan(remote::SnapshotReader* reader, std::vector<Want>* batch, Fetched* f) {
  const size_t n = batch->size();
  f->kind.assign(n, Fetched::kZero);
  f->ref.assign(n, remote::BlockRef());
  f->from.assign(n, 0);
  f->status.assign(n, Status::OK());
  std::vector<uint8_t> grow(n, 0);  // units each want could take as well
  for (size_t i = 0; i < n;) {
    const uint64_t leaf = (*batch)[i].block / remote::kFanout;
    auto blocks = reader->Leaf(leaf);
    for (; i < n && (*batch)[i].block / remote::kFanout == leaf; i++) {
      const Want& w = (*batch)[i];
      const std::string what = "remote " + record_.remote + ": block " + std::to_string(w.block) +
                               " of " + record_.snapshot_id;
      if (!blocks.ok()) {
        f->status[i] = blocks.status();
        continue;
      }
      auto ref = std::find_if(blocks->begin(), blocks->end(),
                              [&](const auto& r) { return r.first == w.block; });
      if (ref == blocks->end()) {
        grow[i] = 0xFF;  // all zeros: every unit of it reads as the snapshot's hole
        continue;
      }
      f->ref[i] = ref->second;
      f->status[i] = remote::CheckRef(ref->second, what);
      const uint64_t expected = std::min(kBlock, record_.volume_bytes - w.block * kBlock);
      if (f->status[i].ok() && ref->second.raw != expected) {
        f->status[i] =
            Status::Corruption(what + ": its length (" + std::to_string(ref->second.raw) +
                               ") is not the snapshot's block size there");
      }
      if (!f->status[i].ok()) {
        continue;
      }
      const bool whole = !remote::IsPieced(ref->second) || w.units == FullMask(w.block);
      f->kind[i] = whole ? Fetched::kWhole : Fetched::kPieces;
      // A whole block brings every unit; a range of pieces brings those between its ends.
      const auto lo = static_cast<uint32_t>(std::countr_zero(w.units));
      const auto hi = static_cast<uint32_t>(7 - std::countl_zero(w.units));
      grow[i] = whole ? 0xFF : static_cast<uint8_t>(((2u << hi) - 1) & ~((1u << lo) - 1));
      f->from[i] = whole ? 0 : lo;
    }
  }
  MutexLock lock(&mu_);  // claims what the fetches bring anyway
  for (size_t i = 0; i < n; i++) {
    Want& w = (*batch)[i];
    const auto more = static_cast<uint8_t>(MissingLocked(w.block) & grow[i]);
    claimed_[w.block] |= more;
    w.units |= more;
  }
}
void Hydrator::FetchInto(remote::SnapshotReader* reader, int worker, const std::vector<Want>& batch,
                         Fetched* f) {
  const size_t n = batch.size();
  const uint32_t pieces_per_unit = unit_ / remote::kPieceBytes;
  std::vector<size_t> sizes(n, 0);
  std::vector<std::pair<uint32_t, uint32_t>> span(n);  // pieces [first, end) of a kPieces
  for (size_t i = 0; i < n; i++) {
    if (!f->status[i].ok() || f->kind[i] == Fetched::kZero) {
      continue;
    }
    const remote::BlockRef& ref = f->ref[i];
    if (f->kind[i] == Fetched::kWhole) {
      sizes[i] = ref.raw;
      continue;
    }
    const auto hi = static_cast<uint32_t>(7 - std::countl_zero(batch[i].units));
    span[i] = {f->from[i] * pieces_per_unit,
               std::min((hi + 1) * pieces_per_unit, remote::PieceCount(ref))};
    sizes[i] = std::min<size_t>(ref.raw, size_t{span[i].second} * remote::kPieceBytes) -
               size_t{span[i].first} * remote::kPieceBytes;
  }
  f->data = SliceBuffer(worker, sizes);
  const std::vector<std::span<std::byte>>& bytes = f->data;
  std::vector<std::pair<uint64_t, remote::BlockRef>> wholes;
  std::vector<std::span<std::byte>> whole_out;
  std::vector<size_t> whole_of, pieces_of;
  std::vector<remote::PieceFetch> pieces;
  for (size_t i = 0; i < n; i++) {
    if (!f->status[i].ok() || f->kind[i] == Fetched::kZero) {
      continue;
    }
    if (f->kind[i] == Fetched::kWhole) {
      wholes.emplace_back(batch[i].block, f->ref[i]);
      whole_out.push_back(bytes[i]);
      whole_of.push_back(i);
    } else {
      pieces.push_back(remote::PieceFetch{batch[i].block, f->ref[i], span[i].first, span[i].second,
                                          bytes[i], Status::OK(), 0});
      pieces_of.push_back(i);
    }
  }
  std::vector<Status> got;
  std::vector<uint64_t> brought;
  reader->FetchTogether(wholes, whole_out, &got, &brought, &pieces);
  for (size_t w = 0; w < wholes.size(); w++) {
    f->status[whole_of[w]] = got[w];
    f->bytes += brought[w];
  }
  for (size_t p = 0; p < pieces.size(); p++) {
    f->status[pieces_of[p]] = pieces[p].status;
    f->bytes += pieces[p].status.ok() ? pieces[p].stored_bytes : 0;
  }
}

void Hydrator::FillFetched(const std::vector<Want>& batch, Fetched* f) {
  const size_t n = batch.size();
  const std::vector<std::span<std::byte>>& bytes = f->data;
  // Runs of consecutive whole blocks go into the snapshot in one fill (one write per run of
  // consecutive chunks, one publication); they lie side by side in the worker's buffer.
  const auto full_whole = [&](size_t i) {
    return f->status[i].ok() && f->kind[i] == Fetched::kWhole &&
           batch[i].units == FullMask(batch[i].block);
  };
  for (size_t i = 0; i < n;) {
    if (!f->status[i].ok() || f->kind[i] == Fetched::kZero) {
      i++;
      continue;
    }
    size_t end = i + 1;
    size_t run_bytes = bytes[i].size();
    while (full_whole(i) && end < n && full_whole(end) &&
           batch[end].block == batch[end - 1].block + 1 && bytes[end - 1].size() == kBlock) {
      run_bytes += bytes[end].size();
      end++;
    }
    const Status s =
        full_whole(i) ? pool_->FillSnapshot(record_.snapshot_id, batch[i].block * kBlock,
                                            std::span<const std::byte>(bytes[i].data(), run_bytes))
                      : FillUnits(batch[i].block, batch[i].units, f->from[i], bytes[i]);
    for (size_t j = i; j < end; j++) {
      f->status[j] = s;
      f->filled += s.ok() ? std::popcount(batch[j].units) : 0;
    }
    i = end;
  }
}

Status Hydrator::FillUnits(uint64_t b, uint8_t units, uint32_t from,
                           std::span<const std::byte> bytes) {
  for (uint32_t u = 0; u < units_per_block_;) {
    if ((units & (1u << u)) == 0) {
      u++;
      continue;
    }
    uint32_t e = u;
    while (e < units_per_block_ && (units & (1u << e)) != 0) {
      e++;
    }
    STRATA_CHECK(u >= from);  // (Plan claims no unit before the bytes begin)
    const size_t begin = size_t{u - from} * unit_;
    if (begin >= bytes.size()) {
      return Status::Corruption("remote " + record_.remote + ": block " + std::to_string(b) +
                                " of " + record_.snapshot_id + " is shorter than the volume");
    }
    const size_t length = std::min<size_t>(size_t{e - u} * unit_, bytes.size() - begin);
    STRATA_RETURN_IF_ERROR(pool_->FillSnapshot(record_.snapshot_id, b * kBlock + size_t{u} * unit_,
                                               bytes.subspan(begin, length)));
    u = e;
  }
  return Status::OK();
}

void Hydrator::NoteOutcomeLocked(const Status& first_error) {
  if (!first_error.ok()) {
    backoff_ms_ = std::clamp<int64_t>(backoff_ms_ * 2, 500, kMaxBackoffMs);
    paused_until_ms_ = NowMs(env_) + backoff_ms_;
    damaged_ = first_error.code() == Status::Code::kCorruption;
    if (last_error_ != first_error.ToString()) {
      last_error_ = first_error.ToString();
      Say("restore of " + record_.snapshot_id + " from remote " + record_.remote + ": " +
          last_error_ + " (retrying in the background)");
    }
    return;
  }
  if (!last_error_.empty()) {
    Say("restore of " + record_.snapshot_id + " from remote " + record_.remote +
        ": the remote answers again");
  }
  backoff_ms_ = 0;
  last_error_.clear();
  damaged_ = false;
}

void Hydrator::FetchBatch(std::vector<Want> batch,
                          std::unique_ptr<remote::SnapshotReader>* reader_slot, uint32_t timeout_ms,
                          int worker) {
  Status opened = Status::OK();
  std::unique_ptr<remote::SnapshotReader>& reader = *reader_slot;
  if (!reader) {
    auto spec = FindRemote(pool_->Info().path, record_.remote);
    auto store = spec.ok() ? factory_(*spec, options_.fetch_attempts, timeout_ms)
                           : Result<std::unique_ptr<remote::ObjectStore>>(spec.status());
    auto opening = store.ok() ? remote::SnapshotReader::OpenWithManifest(
                                    record_.remote, std::move(*store), record_.snapshot_id,
                                    record_.manifest, pieces_)
                              : Result<std::unique_ptr<remote::SnapshotReader>>(store.status());
    opened = opening.status();
    if (opening.ok()) {
      reader = std::move(*opening);
    }
  }
  Fetched f;
  if (opened.ok()) {
    Plan(reader.get(), &batch, &f);
    FetchInto(reader.get(), worker, batch, &f);
    FillFetched(batch, &f);
  }
  Calls calls;
  {
    MutexLock lock(&mu_);
    Status first_error = opened;
    for (size_t i = 0; i < batch.size(); i++) {
      const Status& s = opened.ok() ? f.status[i] : opened;
      if (!s.ok() && first_error.ok()) {
        first_error = s;
      }
      SettleLocked(batch[i], s, &calls);
    }
    fetched_ += f.filled;
    bytes_ += f.bytes;
    tokens_ -= static_cast<double>(f.bytes);
    NoteOutcomeLocked(first_error);
  }
  // The readers go on at once: what was filled is visible (a read is right whether or not the
  // fill is durable yet, and a write's flush commits the fill with it).
  for (auto& [fn, s] : calls) {  // a reader sees EIO (or ENOSPC), whatever the remote said
    fn(s.ok() || s.code() == Status::Code::kNoSpace ? s : Status::IOError(s.message(), EIO));
  }
  // Then durable: after a crash, nothing that arrived before this point is fetched again.
  if (Status flushed = f.filled > 0 ? pool_->Flush() : Status::OK(); !flushed.ok()) {
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
  const uint64_t fetched_blocks = (fetched_ + units_per_block_ - 1) / units_per_block_;
  st.fetched_blocks = std::min(fetched_blocks, record_.data_blocks);
  st.bytes_fetched = bytes_;
  st.progress = ProgressLocked();
  st.complete = complete_;
  st.last_error = last_error_;
  st.damaged = damaged_;
  const double secs = static_cast<double>(NowMs(env_) - started_ms_) / 1000.0;
  const double per_s =
      secs > 0.5 ? static_cast<double>(fetched_ - fetched_at_start_) / units_per_block_ / secs : 0;
  if (complete_) {
    st.eta_seconds = 0;
  } else if (per_s > 0) {
    st.eta_seconds =
        static_cast<int64_t>(static_cast<double>(record_.data_blocks - st.fetched_blocks) / per_s);
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
