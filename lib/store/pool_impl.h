// PoolImpl: owns the metadata store, the data files, the allocator, the in-memory overlay of
// uncommitted map changes and the commit thread. docs/design.md explains each piece.
#ifndef STRATA_STORE_POOL_IMPL_H_
#define STRATA_STORE_POOL_IMPL_H_

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "strata/pool.h"

#include "meta/meta_store.h"
#include "store/chunk_map.h"
#include "store/cipher_worker.h"
#include "store/group_commit.h"
#include "store/qos.h"
#include "store/records.h"
#include "store/space.h"
#include "util/aligned_buffer.h"
#include "util/mutex.h"

namespace strata {

class VolumeImpl;

constexpr size_t kOverlayCommitEntries = 65536;  // overlay size that triggers a commit
constexpr uint32_t kIoAlign = 4096;              // unit of every data-file I/O (O_DIRECT-safe)
static_assert(kIoAlign == kBufferAlign, "AllocateAligned's buffers are the data files' I/O unit");

// A lineage and the lineages it reads through to, each with the newest birth it sees there:
// (lineage, UINT64_MAX), then a clone's (source lineage, clone point), and so on. Fixed when a
// lineage is made, so a volume handle keeps its own copy and resolves chunks without the pool.
using LineageChain = std::vector<std::pair<uint64_t, uint64_t>>;

// A volume's durable record (JSON in the `volumes` table).
struct VolumeRecord {
  VolumeInfo info;
  bool deleting = false;           // a delete is committing: not openable
  std::weak_ptr<VolumeImpl> open;  // the shared handle while any user holds it
  // Limits and counters: made at load or creation, kept while the volume exists.
  std::shared_ptr<VolumeGovernor> governor;
};

struct SnapshotRecord {
  SnapshotInfo info;
  std::weak_ptr<VolumeImpl> open;  // the read-only handle while any user holds it
};

class PoolImpl final : public Pool {
 public:
  static Result<std::unique_ptr<PoolImpl>> OpenImpl(const std::string& dir,
                                                    const PoolOptions& options);
  ~PoolImpl() override;
  CipherWorker* cipher_worker() const { return cipher_worker_.get(); }

  Result<VolumeInfo> CreateVolume(const VolumeSpec& spec) override;
  Result<VolumeInfo> DescribeVolume(const std::string& id_or_name) EXCLUDES(mu_) override;
  std::vector<VolumeInfo> ListVolumes() EXCLUDES(mu_) override;
  Status DeleteVolume(const std::string& volume_id) EXCLUDES(commit_mu_, mu_) override;
  Result<VolumeInfo> ModifyVolume(const std::string& volume_id,
                                  const VolumeModification& modification)
      EXCLUDES(commit_mu_, mu_) override;
  Result<VolumeMetrics> DescribeVolumeMetrics(const std::string& volume_id) EXCLUDES(mu_) override;
  using Pool::OpenSnapshot;
  using Pool::OpenVolume;
  Result<std::shared_ptr<Volume>> OpenVolume(const std::string& volume_id,
                                             const OpenOptions& options) EXCLUDES(mu_) override;
  Status Flush() override;
  void SetReadOnly(const std::string& why) EXCLUDES(mu_) override;
  // For the data path: set once by SetReadOnly, never cleared.
  bool read_only() const { return read_only_flag_.load(std::memory_order_acquire); }
  // OK, or ReadOnly saying why (SetReadOnly): checked first by every control operation that
  // changes metadata.
  Status Writable() EXCLUDES(mu_);
  Result<std::unique_ptr<EventLoop>> CreateEventLoop(uint32_t queue_depth) override {
    return EventLoop::Create(env_, queue_depth);
  }
  PoolInfo Info() EXCLUDES(mu_) override;
  Result<CheckReport> Check() EXCLUDES(commit_mu_, mu_) override;

  Result<std::vector<SnapshotInfo>> CreateSnapshots(const std::vector<std::string>& volumes,
                                                    const std::string& description) override;
  Result<SnapshotInfo> DescribeSnapshot(const std::string& snapshot_id) EXCLUDES(mu_) override;
  std::vector<SnapshotInfo> ListSnapshots() EXCLUDES(mu_) override;
  Result<SnapshotSpace> SnapshotSpaceUsage(const std::string& snapshot_id) EXCLUDES(mu_) override;
  Status DeleteSnapshot(const std::string& snapshot_id) EXCLUDES(commit_mu_, mu_) override;
  Result<std::shared_ptr<Volume>> OpenSnapshot(const std::string& snapshot_id,
                                               const OpenOptions& options) EXCLUDES(mu_) override;
  Result<BlockList> ListSnapshotBlocks(const std::string& snapshot_id, uint32_t block_size_bytes,
                                       uint64_t start_block, size_t max_results)
      EXCLUDES(mu_) override;
  Result<BlockList> ListChangedBlocks(const std::string& first_snapshot_id,
                                      const std::string& second_snapshot_id,
                                      uint32_t block_size_bytes, uint64_t start_block,
                                      size_t max_results) EXCLUDES(mu_) override;
  Status WaitForReclaim() EXCLUDES(mu_) override;

  // ---- Stepped background (Env::BackgroundThreads() false: the crash simulator) ----
  enum class Background { kReclaim, kFill, kCommit };
  // One turn of that background part, now, on the calling thread: the reclaimer reclaims one
  // dead epoch; the filler starts the fills its policy allows (background ones as if the pool
  // were idle) and runs them to completion; the committer commits what is pending, as its
  // timer would. Returns what it did ("" if nothing) or its error.
  // REQUIRES: the pool's Env runs no background threads.
  Result<std::string> StepBackground(Background which) EXCLUDES(mu_, commit_mu_);
  Result<std::vector<ChangeExtent>> ChangedExtents(const Volume& volume,
                                                   const std::string& since_snapshot_id,
                                                   uint64_t offset_bytes, uint64_t length_bytes)
      EXCLUDES(mu_) override;
  Result<VolumeInfo> PublishImport(const std::string& volume_id) EXCLUDES(commit_mu_, mu_) override;
  Status FillSnapshot(const std::string& snapshot_id, uint64_t offset_bytes,
                      std::span<const std::byte> data) EXCLUDES(fill_mu_, mu_) override;
  Status AttachBlockSource(const std::string& snapshot_id, std::shared_ptr<BlockSource> source)
      EXCLUDES(mu_) override;
  std::shared_ptr<BlockSource> SourceOf(const std::string& volume_or_snapshot_id)
      EXCLUDES(mu_) override;
  Result<SnapshotInfo> SealImport(const std::string& volume_id, const std::string& description,
                                  const std::string& source_snapshot_id, bool keep_source_id)
      EXCLUDES(mu_) override;

  // ---- Data-path services for VolumeImpl. "Locked" means REQUIRES: mu_ held. ----
  Mutex& mu() RETURN_CAPABILITY(mu_) { return mu_; }
  uint32_t chunk_size() const { return chunk_size_; }
  // Newest version of (lineage, chunk) with birth <= max_birth, overlay over LMDB; for a clone,
  // when its own lineage has none, the source's version at the clone point (inherited = true).
  Result<std::optional<Version>> NewestLocked(uint64_t lineage, uint64_t chunk, uint64_t max_birth)
      REQUIRES(mu_);
  // The same along a chain made by ChainLocked, without the pool mutex: the data path's lookup
  // (the caller holds the chunk's lock, so no request changes the chunk meanwhile).
  // `from`: the first chain entry to look in (1: the caller has looked in its own lineage).
  Result<std::optional<Version>> NewestInChain(const LineageChain& chain, uint64_t chunk,
                                               uint64_t max_birth, size_t from = 0);
  LineageChain ChainLocked(uint64_t lineage) REQUIRES(mu_);
  ChunkMap& chunk_map() { return *map_; }
  // The same within `lineage` alone.
  Result<std::optional<Version>> NewestOwnLocked(uint64_t lineage, uint64_t chunk,
                                                 uint64_t max_birth) REQUIRES(mu_);
  // Wakes CreateSnapshots/DeleteSnapshot waiting for a volume's writes in flight to drain.
  void NotifyDrainedLocked() REQUIRES(mu_) { drain_cv_.SignalAll(); }
  void NoteMutation() { mutations_seen_.fetch_add(1, std::memory_order_relaxed); }
  // Whether the pool latched an error (then latched_locked() says which). Lock-free.
  bool latched() const { return latched_flag_.load(std::memory_order_acquire); }
  // Newest version (birth <= max_birth) of every chunk in [first, end) that has one, in chunk
  // order, overlay over LMDB; at most `max_chunks` of them (the scan then stops early and
  // *end_out says where). Cost O(versions in the range).
  Status MappedChunksLocked(uint64_t lineage, uint64_t first, uint64_t end, uint64_t max_birth,
                            size_t max_chunks, std::vector<std::pair<uint64_t, Version>>* out,
                            uint64_t* end_out) REQUIRES(mu_);
  // ---- Sub-chunk copy-on-write (docs/design.md §2.3). ----
  // The unit of a partial version: max(4 KiB, chunk / 32); `units_per_chunk` of them, each a bit
  // of MapValue::present (so at most 32: the kMaxUnitsPerChunk below).
  static constexpr uint32_t kMaxUnitsPerChunk = 32;
  static_assert(kMaxUnitsPerChunk == 8 * sizeof(MapValue::present), "one bit of present a unit");
  uint32_t unit_bytes() const { return unit_bytes_; }
  uint32_t units_per_chunk() const { return chunk_size_ / unit_bytes_; }
  uint32_t all_units() const {
    return units_per_chunk() == kMaxUnitsPerChunk ? UINT32_MAX : (1u << units_per_chunk()) - 1;
  }
  // Whether a new partial version may be made: bounded, so that a snapshot's drain (which fills
  // them all) stays short.
  bool MayAddPartialLocked(uint64_t lineage) const REQUIRES(mu_) {
    return units_per_chunk() > 1 && partials_.size() < kMaxPartialChunks &&
           no_new_partials_.count(lineage) == 0;
  }
  // A partial version of (lineage, chunk) was published / became whole or went away.
  void AddPartialLocked(uint64_t lineage, uint64_t chunk) REQUIRES(mu_);
  void DropPartialLocked(uint64_t lineage, uint64_t chunk) REQUIRES(mu_);
  // A request needs (lineage, chunk) whole before it can go on: fill it next.
  void UrgeFillLocked(uint64_t lineage, uint64_t chunk) REQUIRES(mu_);
  // The same, and `waiter` is posted when the chunk stops being partial (filled, made whole by
  // writes, trimmed) or the pool latches; at once if it is not partial now.
  void WaitForFillLocked(uint64_t lineage, uint64_t chunk, const ChunkMap::Waiter& waiter)
      REQUIRES(mu_);
  // Where chunk data lives: the data files, the allocator and the known-zero hints, one part
  // with its own leaf locks (store/space.h). Made at open, before any thread.
  Space& space() { return *space_; }
  void PutVersionLocked(const MapKey& key, const MapValue& value) REQUIRES(mu_);
  void EraseVersionLocked(const MapKey& key) REQUIRES(mu_);
  const Status& latched_locked() const REQUIRES(mu_) { return latched_; }
  // Queues a group commit; `done` runs on `loop`'s thread (or the commit thread if loop is null).
  void RequestCommit(EventLoop* loop, std::function<void(const Status&)> done);
  // A loop for a synchronous call, and back.
  Result<std::unique_ptr<EventLoop>> AcquireLoop() EXCLUDES(loops_mu_);
  void ReleaseLoop(std::unique_ptr<EventLoop> loop) EXCLUDES(loops_mu_);
  Env* env() const { return env_; }

  // ---- The layer hook (include/strata/pool.h) ----
  Status OpenRecordTable(const std::string& table) override { return meta_->OpenLayerTable(table); }
  Result<std::vector<std::pair<std::string, std::string>>> ReadRecords(
      const std::string& table) override;
  Status CommitRecords(std::vector<RecordChange> changes) EXCLUDES(commit_mu_) override;
  Result<std::vector<VolumeInfo>> CreateVolumes(const std::vector<VolumeSpec>& specs,
                                                const RecordsFor& records_for)
      EXCLUDES(commit_mu_, mu_) override;
  Status AddHold(const std::string& id, const std::string& holder, const std::string& reason)
      EXCLUDES(mu_) override;
  void ReleaseHold(const std::string& id, const std::string& holder) EXCLUDES(mu_) override;
  bool VolumeInUse(const std::string& volume_id) EXCLUDES(mu_) override;
  // Benchmarks and tests: the volume's limiter and counters (null if no such volume).
  std::shared_ptr<VolumeGovernor> GovernorForTesting(const std::string& volume_id) EXCLUDES(mu_);

 private:
  PoolImpl() = default;
  Status Recover() REQUIRES(mu_);
  // Runs one commit of the overlay plus `extra`. REQUIRES: commit_mu_ held.
  Status CommitLocked(CommitBatch extra) REQUIRES(commit_mu_) EXCLUDES(mu_);
  Status CommitOnce(const CommitBatch& batch);
  void WakeCommitter();
  void Latch(const Status& status) EXCLUDES(mu_);
  void LatchLocked(const Status& status) REQUIRES(mu_);  // REQUIRES: mu_
  Status CommitForCommitter(bool asked) EXCLUDES(commit_mu_, mu_);
  bool HasPendingWork() EXCLUDES(mu_);
  Status CollectLineageChunks(uint64_t lineage, std::vector<uint64_t>* phys) EXCLUDES(mu_);
  Result<VolumeRecord*> FindLocked(const std::string& id_or_name) REQUIRES(mu_);
  Status ValidateSize(uint64_t size_bytes) const;
  Status ValidateSpec(const VolumeSpec& spec) const;
  Status CheckLayerTables(const std::vector<RecordChange>& changes);
  // (Re)applies the record's type, IOPS, throughput and size to its governor. REQUIRES: mu_.
  void ConfigureGovernorLocked(VolumeRecord* rec) REQUIRES(mu_);
  // OK, or Busy naming who holds `id` (`what`: "snapshot" or "volume"). REQUIRES: mu_.
  Status HoldStatusLocked(const std::string& id, const char* what) const REQUIRES(mu_);
  std::string NewId(const char* prefix);
  // An open's handle: the shared VolumeImpl, or an EncryptedHandle on it (OpenOptions).
  // Errors: NotSupported (a cipher missing, or given for a plaintext volume).
  static Result<std::shared_ptr<Volume>> HandleFor(const std::string& id,
                                                   const std::string& encryption,
                                                   std::shared_ptr<VolumeImpl> impl,
                                                   const OpenOptions& options);

  // ---- snapshots and lineages (pool_snapshots.cc) ----
  Status LoadLineagesAndSnapshots() REQUIRES(mu_);
  // The change ranges (lineage, from, to] between a snapshot and a later point (lineage, epoch)
  // of the same volume or of a clone of it. REQUIRES: mu_.
  struct ChangeRange {
    uint64_t lineage, from, to;
  };
  Result<std::vector<ChangeRange>> ChangeRangesLocked(const SnapshotInfo& first, uint64_t lineage,
                                                      uint64_t epoch, bool same_allowed)
      REQUIRES(mu_);
  // `wanted_id`: the id to give the (one) snapshot when it is well formed and free; "" = new.
  Result<std::vector<SnapshotInfo>> TakeSnapshots(const std::vector<std::string>& volumes,
                                                  const std::string& description,
                                                  const std::string& source_snapshot_id,
                                                  const std::string& wanted_id)
      EXCLUDES(commit_mu_, mu_);
  void AddLineageRecord(CommitBatch* batch, uint64_t lineage, const LineageState& state) const;
  // Live epochs of a lineage: its pins and, while its volume exists, its head.
  bool EpochLiveLocked(uint64_t lineage, uint64_t epoch) REQUIRES(mu_);
  // The largest live frozen epoch below `head` (0: none): versions born after it are the
  // volume's alone and are overwritten in place.
  uint64_t FloorLocked(uint64_t lineage, uint64_t head) REQUIRES(mu_);
  // Drops one reference to (lineage, epoch); queues the epoch for reclaim when it dies.
  void UnpinLocked(uint64_t lineage, uint64_t epoch, CommitBatch* batch) REQUIRES(mu_);
  void RefreshFloorLocked(uint64_t lineage) REQUIRES(mu_);
  // Holds new mutations of `volumes` back and waits for those in flight; fills the partial
  // versions of their lineages and of `closed` (lineages of volumes no handle holds open).
  // REQUIRES: mu_ (in lock). mu_ is released while it waits.
  void DrainLocked(const std::vector<std::shared_ptr<VolumeImpl>>& volumes,
                   const std::vector<uint64_t>& closed) REQUIRES(mu_);
  Result<SnapshotRecord*> FindSnapshotLocked(const std::string& snapshot_id) REQUIRES(mu_);
  // The block source the data of `lineage` reads through to (its own or an ancestor's), and the
  // size of the snapshot it fills. REQUIRES: mu_.
  std::pair<std::shared_ptr<BlockSource>, uint64_t> SourceForLineageLocked(uint64_t lineage)
      REQUIRES(mu_);
  // Wraps a handle in a SourcedVolume when its data reads through to a source. REQUIRES: mu_.
  std::shared_ptr<Volume> WithSourceLocked(uint64_t lineage, std::shared_ptr<Volume> volume)
      REQUIRES(mu_);
  // FillSnapshot's steps: allocate the chunks the lineage lacks (REQUIRES: mu_), write them.
  Status PlanFillLocked(uint64_t lineage, uint64_t epoch, uint64_t offset_bytes,
                        size_t length_bytes, std::vector<std::pair<uint64_t, uint64_t>>* planned)
      REQUIRES(mu_);
  Status WriteFill(uint64_t offset_bytes, std::span<const std::byte> data,
                   const std::vector<std::pair<uint64_t, uint64_t>>& planned);
  // Busy when the snapshot's data reads through to a snapshot still arriving. REQUIRES: mu_.
  Status CheckCompleteLocked(const SnapshotInfo& info) REQUIRES(mu_);
  Status CloneSourceLocked(const std::string& snapshot_id, VolumeInfo* info, LineageState* state)
      REQUIRES(mu_);
  // Deletes a lineage nobody can see any more: map, change index, record; frees its chunks.
  // REQUIRES: commit_mu_.
  Status EraseLineage(uint64_t lineage) REQUIRES(commit_mu_) EXCLUDES(mu_);
  Status ReclaimEpoch(uint64_t lineage, uint64_t epoch) EXCLUDES(commit_mu_, mu_);
  struct Neighbours {
    uint64_t prev = 0;             // the newest live epoch below (0: none)
    std::optional<uint64_t> next;  // the oldest live epoch above
    bool any_live = false;         // the lineage has a live epoch at all
    // The change records (first birth, last birth) a reclaim of `epoch` examines: (epoch, next],
    // or without a next (prev, epoch].
    std::pair<uint64_t, uint64_t> ChangeWindow(uint64_t epoch) const {
      return next ? std::make_pair(epoch + 1, *next) : std::make_pair(prev + 1, epoch);
    }
  };
  Neighbours LiveNeighboursLocked(uint64_t lineage, uint64_t epoch) REQUIRES(mu_);
  Result<std::optional<Version>> DyingVersionLocked(uint64_t lineage, uint64_t epoch,
                                                    const Neighbours& n, const MapKey& change)
      REQUIRES(mu_);
  // Data versions that die when `epoch` stops being live, given its live neighbours.
  Status ForEachDeadVersion(uint64_t lineage, uint64_t epoch,
                            const std::function<void(const MapKey&, const MapValue&)>& fn)
      EXCLUDES(mu_);
  void ReclaimerMain();
  // Reclaims one dead epoch if any waits (and the pool is not latched): what one turn of the
  // reclaimer does. False when there was nothing to do. REQUIRES: mu_ (released during the I/O).
  bool ReclaimOnceLocked() REQUIRES(mu_);
  // One fill: read the predecessor's chunk, write the units the partial version lacks.
  struct FillPlan {
    MapKey key;       // the partial version
    MapValue value;   // its value (phys, present units)
    uint64_t source;  // the predecessor's physical chunk
  };
  struct FillJob;  // a fill in flight on the filler's ring (pool_fill.cc)
  // kFillDepth jobs, each with a chunk-sized aligned buffer owned by `buffers`.
  std::vector<FillJob> MakeFillJobs(std::vector<AlignedBuffer>* buffers);
  Result<std::string> StepFill() EXCLUDES(mu_);
  void FillerMain();
  // What filling (lineage, chunk) takes; nullopt (and the entry dropped) when it is whole
  // already. REQUIRES: mu_ and the chunk's exclusive lock.
  Result<std::optional<FillPlan>> PlanFillLocked(uint64_t lineage, uint64_t chunk) REQUIRES(mu_);
  // Calls fn(first unit, unit count) for each run of units `present` lacks.
  template <typename Fn>
  void ForEachAbsentRun(uint32_t present, Fn fn) const;
  // The fill's data is written: the version becomes whole. REQUIRES: mu_ and the chunk lock.
  void FinishFillLocked(const FillPlan& plan) REQUIRES(mu_);
  // Copies the units a partial version lacks from its predecessor and makes it whole, with
  // synchronous I/O (at open, before the filler runs).
  // REQUIRES: mu_ (in lock, released during the I/O) and the chunk's exclusive lock.
  Status FillLocked(uint64_t lineage, uint64_t chunk) REQUIRES(mu_);
  // Starts as many fills as the policy allows now on the filler's loop; returns how long to
  // wait before the policy may allow more (-1: until woken), and sets *starved when every
  // wanted chunk was held (by a request or a fill in flight). REQUIRES: mu_.
  // `idle`: treat the pool as idle (a stepped filler).
  int StartFillsLocked(EventLoop* loop, std::vector<FillJob>& jobs, bool* starved,
                       bool idle = false) REQUIRES(mu_);
  static void OnFillIo(IoOp* op);
  void WakeFillerLocked() REQUIRES(mu_);  // something changed that the filler waits for
  bool LineageHasPartialsLocked(uint64_t lineage) const REQUIRES(mu_);
  bool FillWantedLocked() const REQUIRES(mu_);  // the filler has something to do now
  // Whether the filler thread fills what nobody waits for (background_fill, and not stepped).
  bool BackgroundFillLocked() const REQUIRES(mu_) {
    return options_.background_fill && !stepped_background_;
  }
  bool FillNeededLocked() const REQUIRES(mu_);  // something waits for a fill (urged, or a drain)
  std::optional<std::pair<uint64_t, uint64_t>> PickFillLocked(bool background) REQUIRES(mu_);
  Status FillAllAtOpen()
      EXCLUDES(mu_);  // before any thread starts: nothing may stay partial across a crash
  // Waits until no partial version of `lineage` is left (the filler fills them first).
  // REQUIRES: mu_ (in lock).
  void WaitNoPartialsLocked(uint64_t lineage) REQUIRES(mu_);
  void WakeReclaimer();
  bool ReclaimPendingLocked() const REQUIRES(mu_);

  std::string dir_;
  PoolOptions options_;
  Env* env_ = nullptr;
  std::unique_ptr<Env::FileLock> dir_lock_;  // held from open to destruction
  uint32_t chunk_size_ = 0;
  std::string engine_name_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<Space> space_;  // made at open, before any thread

  Mutex mu_;  // guards what is marked GUARDED_BY(mu_)
  PoolHeader header_ GUARDED_BY(mu_);
  // The overlay and the chunk locks (made at open, before any thread). Its overlay is changed only
  // under mu_ (ChunkMap's contract); it is read and locked without it.
  std::unique_ptr<ChunkMap> map_;
  std::map<std::string, VolumeRecord> volumes_ GUARDED_BY(mu_);
  std::map<std::string, SnapshotRecord> snapshots_ GUARDED_BY(mu_);
  std::map<uint64_t, LineageState> lineages_ GUARDED_BY(mu_);
  // Sources of snapshots still arriving (AttachBlockSource): lineage -> (source, snapshot size).
  std::map<uint64_t, std::pair<std::shared_ptr<BlockSource>, uint64_t>> sources_ GUARDED_BY(mu_);
  // id -> holder -> the reason a delete of id gives (a layer's holds: Pool::AddHold)
  std::map<std::string, std::map<std::string, std::string>> holds_ GUARDED_BY(mu_);
  CondVar drain_cv_{&mu_};                     // a volume's mutations in flight reached zero
  CondVar reclaim_cv_{&mu_};                   // reclaim work queued, or done
  bool reclaim_busy_ GUARDED_BY(mu_) = false;  // the reclaimer is working on an epoch
  bool stop_reclaim_ GUARDED_BY(mu_) = false;
  Status reclaim_error_ GUARDED_BY(mu_);  // the last reclaim failure (retried on the next wake)
  std::thread reclaimer_;
  // Partial versions to fill (docs/design.md §2.3): (lineage, chunk) -> urgent. The filler takes
  // urgent ones first, then the lineages a drain waits for, then the oldest.
  static constexpr size_t kMaxPartialChunks = 1024;
  static constexpr size_t kFillEagerAbove = 512;
  static constexpr size_t kWarmReserveChunks = 2 * kMaxPartialChunks;
  // Fills in flight on the filler's ring: when something waits for them or the pool is idle,
  // and while writes arrive with kFillEagerAbove partial chunks outstanding.
  static constexpr size_t kFillDepth = 32;
  static constexpr size_t kFillDepthBusy = 4;
  static constexpr uint64_t kFillIdleNs = 2'000'000;  // no mutation for this long: idle
  // Mutation pieces started: the filler backs off while it grows.
  std::atomic<uint64_t> mutations_seen_{0};
  uint64_t fill_mark_ = 0;     // mutations_seen_ when the filler last looked (filler only)
  uint64_t fill_mark_ns_ = 0;  // when it changed (filler only)
  size_t fills_in_flight_ GUARDED_BY(mu_) = 0;
  // The Env runs no background threads: no reclaimer thread, and background fills only when the
  // simulator steps them (StepBackground). The filler thread still takes fills something waits
  // for (a read of a partial chunk, a snapshot's drain): the request that waits sees them done.
  bool stepped_background_ = false;
  uint32_t unit_bytes_ = 0;
  std::map<std::pair<uint64_t, uint64_t>, bool> partials_ GUARDED_BY(mu_);
  // Pieces waiting for a partial chunk to be filled (at most the pieces in flight), woken by
  // DropPartialLocked or a latch.
  std::multimap<std::pair<uint64_t, uint64_t>, ChunkMap::Waiter> fill_waiters_ GUARDED_BY(mu_);
  static void PostWaiter(const ChunkMap::Waiter& w) {
    w.loop->Post([w] { w.fn(w.arg); });
  }
  size_t urgent_partials_ GUARDED_BY(mu_) =
      0;  // entries of partials_ marked urgent: FillNeededLocked is O(1)
  std::deque<std::pair<uint64_t, uint64_t>> fill_order_
      GUARDED_BY(mu_);                                            // may hold entries already filled
  std::map<uint64_t, uint32_t> drain_waiters_ GUARDED_BY(mu_);    // lineage -> drains waiting on it
  std::map<uint64_t, uint32_t> no_new_partials_ GUARDED_BY(mu_);  // lineage -> drains under way
  bool stop_fill_ GUARDED_BY(mu_) = false;
  CondVar fill_cv_{&mu_};  // a partial version was added or urged
  // The filler's loop and ring, made at open (a pool without a filler is refused); only the
  // filler thread runs it, any thread may Wake() its engine.
  std::unique_ptr<EventLoop> filler_loop_;
  std::thread filler_;
  // Encrypts large writes of encrypted volumes off the loops' threads; made at open unless the
  // Env steps the background (the simulator), then null and writes encrypt inline.
  std::unique_ptr<CipherWorker> cipher_worker_;
  Status latched_ GUARDED_BY(mu_);
  std::atomic<bool> latched_flag_{false};      // !latched_.ok(), for the lock-free data path
  std::string read_only_why_ GUARDED_BY(mu_);  // SetReadOnly's reason; empty: writable
  std::atomic<bool> read_only_flag_{false};    // !read_only_why_.empty(), for the data path

  Mutex commit_mu_ ACQUIRED_BEFORE(mu_);  // one commit at a time (commit thread or control op)
  Mutex fill_mu_ ACQUIRED_BEFORE(mu_);    // one FillSnapshot at a time

  std::unique_ptr<GroupCommitter> committer_;  // made at open

  Mutex loops_mu_;
  std::vector<std::unique_ptr<EventLoop>> idle_loops_ GUARDED_BY(loops_mu_);
};

}  // namespace strata

#endif  // STRATA_STORE_POOL_IMPL_H_
