// Snapshots, clones and the reclamation of dead versions (docs/design.md §2).
//
// A lineage's *live* epochs are its pins (snapshot epochs, and the epochs its clones read
// through to) and, while its volume exists, its head. A version is dead when no live epoch lies
// in [birth, next birth); dead versions are erased and their chunks freed by the reclaimer
// thread, one deleted epoch at a time, in small batches under the pool mutex.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

#include "store/pool_impl.h"
#include "store/records.h"
#include "store/sourced_volume.h"
#include "store/volume_impl.h"
#include "util/check.h"
#include "util/clock.h"
#include "util/text.h"

namespace strata {

namespace {

constexpr size_t kReclaimBatch = 256;              // versions examined per hold of the pool mutex
constexpr uint64_t kReclaimBatchesPerCommit = 16;  // erasures per commit: 4,096 at most
constexpr uint32_t kMaxBlockSize = 64u << 20;

// Removes one reference to `epoch`; true when that was the last one.
bool DropPin(LineageState* state, uint64_t epoch) {
  auto it = state->pins.find(epoch);
  STRATA_CHECK(it != state->pins.end() && it->second > 0);
  if (--it->second > 0) {
    return false;
  }
  state->pins.erase(it);
  return true;
}

}  // namespace

// ---------------------------------------------------------------- records

void PoolImpl::AddLineageRecord(CommitBatch* batch, uint64_t lineage,
                                const LineageState& state) const {
  batch->records.push_back(
      {kLineagesTable, std::to_string(lineage), LineageCodec().Encode({lineage, state})});
}

// Loads lineage and snapshot records (after the volume records) and derives the pins.
// A format-1 pool has no lineage records: each volume's is synthesized (no parent).
Status PoolImpl::LoadLineagesAndSnapshots() {
  STRATA_ASSIGN_OR_RETURN(auto lineage_records, meta_->ReadRecords(kLineagesTable));
  for (const auto& [key, text] : lineage_records) {
    STRATA_ASSIGN_OR_RETURN(LineageRecord record, LineageCodec().Decode(key, text));
    const uint64_t lineage = record.lineage;
    LineageState& st = record.state;
    if (lineage >= header_.next_lineage) {
      return Status::Corruption("lineage record " + key + " is past the pool's next lineage");
    }
    if (!st.volume_id.empty() && volumes_.count(st.volume_id) == 0) {
      return Status::Corruption("lineage " + key + " names missing volume " + st.volume_id);
    }
    lineages_[lineage] = std::move(st);
  }
  for (const auto& [id, rec] : volumes_) {
    LineageState& st = lineages_[rec.info.lineage];  // created here for a format-1 pool
    if (st.volume_id.empty()) {
      st.volume_id = id;
    } else if (st.volume_id != id) {
      return Status::Corruption("volume " + id + " shares a lineage with " + st.volume_id);
    }
  }
  STRATA_ASSIGN_OR_RETURN(auto snapshot_records, meta_->ReadRecords(kSnapshotsTable));
  for (const auto& [id, text] : snapshot_records) {
    STRATA_ASSIGN_OR_RETURN(SnapshotInfo info, SnapshotCodec().Decode(id, text));
    auto lin = lineages_.find(info.lineage);
    if (lin == lineages_.end()) {
      return Status::Corruption("snapshot " + id + " of unknown lineage");
    }
    lin->second.pins[info.epoch]++;
    snapshots_[id].info = info;
  }
  for (auto& [lineage, st] : lineages_) {
    if (st.parent == 0) {
      continue;
    }
    auto parent = lineages_.find(st.parent);
    if (parent == lineages_.end() || st.parent == lineage) {
      return Status::Corruption("clone lineage " + std::to_string(lineage) + " has no source");
    }
    parent->second.pins[st.parent_epoch]++;
  }
  // A lineage nobody can see that was not erased yet (a crash after its last epoch died): let
  // the reclaimer erase it.
  for (auto& [lineage, st] : lineages_) {
    if (st.volume_id.empty() && st.pins.empty() && st.reclaim.empty()) {
      st.reclaim.push_back(st.frozen_head);
    }
  }
  return Status::OK();
}

// ---------------------------------------------------------------- liveness

bool PoolImpl::EpochLiveLocked(uint64_t lineage, uint64_t epoch) {
  const LineageState& st = lineages_.at(lineage);
  if (st.pins.count(epoch) != 0) {
    return true;
  }
  auto v = st.volume_id.empty() ? volumes_.end() : volumes_.find(st.volume_id);
  return v != volumes_.end() && v->second.info.head_epoch == epoch;
}

uint64_t PoolImpl::FloorLocked(uint64_t lineage, uint64_t head) {
  const LineageState& st = lineages_.at(lineage);
  auto it = st.pins.lower_bound(head);
  const uint64_t floor = it == st.pins.begin() ? 0 : std::prev(it)->first;
  STRATA_CHECK(floor < head || head == 0);  // a pin is a frozen epoch: always below the head
  return floor;
}

void PoolImpl::DrainLocked(const std::vector<std::shared_ptr<VolumeImpl>>& volumes,
                           const std::vector<uint64_t>& closed) {
  // Partial versions are filled before the barrier, while writes go on (copying whole chunks
  // meanwhile): the barrier then only waits for the writes in flight, one I/O latency. A closed
  // volume's partial versions outlive the handle that wrote them: filled too.
  std::vector<uint64_t> lineages = closed;
  for (const auto& v : volumes) {
    lineages.push_back(v->lineage());
  }
  for (uint64_t lineage : lineages) {
    no_new_partials_[lineage]++;
  }
  for (uint64_t lineage : lineages) {
    WaitNoPartialsLocked(lineage);
  }
  for (const auto& v : volumes) {
    v->AssertPoolHeld();
    v->set_barrier_locked(true);
  }
  for (const auto& v : volumes) {
    v->AssertPoolHeld();
    while (v->mutations_in_flight_locked() != 0) {
      drain_cv_.Wait();
    }
  }
  // No version of an epoch about to freeze (or whose predecessor may die) stays partial: the
  // writes just drained may have made a few more.
  for (uint64_t lineage : lineages) {
    WaitNoPartialsLocked(lineage);
  }
  for (uint64_t lineage : lineages) {  // the barrier holds new writes until the caller lifts it
    if (--no_new_partials_[lineage] == 0) {
      no_new_partials_.erase(lineage);
    }
  }
}

bool PoolImpl::ReclaimPendingLocked() const {
  return std::any_of(lineages_.begin(), lineages_.end(),
                     [](const auto& l) { return !l.second.reclaim.empty(); });
}

void PoolImpl::WakeReclaimer() { reclaim_cv_.SignalAll(); }

// ---------------------------------------------------------------- create / describe / open

Result<std::vector<SnapshotInfo>> PoolImpl::CreateSnapshots(const std::vector<std::string>& volumes,
                                                            const std::string& description) {
  return TakeSnapshots(volumes, description, "", "");
}

Result<SnapshotInfo> PoolImpl::SealImport(const std::string& volume_id,
                                          const std::string& description,
                                          const std::string& source_snapshot_id,
                                          bool keep_source_id) {
  {
    MutexLock lock(&mu_);
    auto it = volumes_.find(volume_id);
    if (it == volumes_.end()) {
      return Status::NotFound("volume " + volume_id + " does not exist");
    }
    if (it->second.info.state != "importing") {
      return Status::InvalidArgument("volume " + volume_id + " is not being imported");
    }
  }
  STRATA_ASSIGN_OR_RETURN(auto snaps, TakeSnapshots({volume_id}, description, source_snapshot_id,
                                                    keep_source_id ? source_snapshot_id : ""));
  // A crash here leaves the snapshot and an importing volume, which the next open deletes.
  STRATA_RETURN_IF_ERROR(DeleteVolume(volume_id));
  return snaps.front();
}

Result<VolumeInfo> PoolImpl::PublishImport(const std::string& volume_id) {
  STRATA_RETURN_IF_ERROR(Writable());
  MutexLock commit(&commit_mu_);
  VolumeInfo info;
  {
    MutexLock lock(&mu_);
    auto it = volumes_.find(volume_id);
    if (it == volumes_.end() || it->second.deleting) {
      return Status::NotFound("volume " + volume_id + " does not exist");
    }
    if (it->second.info.state != "importing") {
      return Status::InvalidArgument("volume " + volume_id + " is not being imported");
    }
    info = it->second.info;
  }
  info.state = "available";
  CommitBatch batch;
  batch.records.push_back({kVolumesTable, volume_id, VolumeCodec().Encode(info)});
  STRATA_RETURN_IF_ERROR(CommitLocked(std::move(batch)));
  MutexLock lock(&mu_);
  auto it = volumes_.find(volume_id);
  it->second.info.state = "available";
  return it->second.info;
}

Result<std::vector<SnapshotInfo>> PoolImpl::TakeSnapshots(const std::vector<std::string>& volumes,
                                                          const std::string& description,
                                                          const std::string& source_snapshot_id,
                                                          const std::string& wanted_id) {
  STRATA_RETURN_IF_ERROR(Writable());
  if (volumes.empty()) {
    return Status::InvalidArgument("no volume to snapshot");
  }
  STRATA_RETURN_IF_ERROR(ValidateText("snapshot description", description, 255));
  STRATA_RETURN_IF_ERROR(ValidateText("source snapshot id", source_snapshot_id, 255));
  MutexLock commit(&commit_mu_);
  MutexLock lock(&mu_);
  if (!latched_.ok()) {
    return latched_;
  }
  std::vector<VolumeRecord*> recs;
  std::vector<std::shared_ptr<VolumeImpl>> open;
  std::vector<uint64_t> closed;
  for (const std::string& v : volumes) {
    STRATA_ASSIGN_OR_RETURN(VolumeRecord * rec, FindLocked(v));
    if (rec->deleting) {
      return Status::NotFound("volume " + v + " is being deleted");
    }
    if (std::find(recs.begin(), recs.end(), rec) != recs.end()) {
      return Status::InvalidArgument("volume " + rec->info.volume_id + " named twice");
    }
    recs.push_back(rec);
    if (auto handle = rec->open.lock()) {
      open.push_back(std::move(handle));
    } else {
      closed.push_back(rec->info.lineage);
    }
  }
  // One point in time for all: no mutation of any of them in flight, none starting.
  DrainLocked(open, closed);
  // A volume opened while the drain waited (mu_ is released then) is drained as well.
  for (bool more = true; more;) {
    std::vector<std::shared_ptr<VolumeImpl>> opened;
    for (VolumeRecord* rec : recs) {
      auto handle = rec->open.lock();
      if (handle && std::find(open.begin(), open.end(), handle) == open.end()) {
        opened.push_back(std::move(handle));
      }
    }
    more = !opened.empty();
    if (more) {
      DrainLocked(opened, {});
      open.insert(open.end(), opened.begin(), opened.end());
    }
  }
  CommitBatch batch;
  std::vector<SnapshotInfo> out;
  const int64_t now = env_->WallClockMs();
  for (VolumeRecord* rec : recs) {
    SnapshotInfo si;
    // A wanted id must have the shape of the ids this pool makes (snap- and 17 hex digits).
    const bool well_formed =
        wanted_id.size() == 22 && wanted_id.compare(0, 5, "snap-") == 0 &&
        wanted_id.find_first_not_of("0123456789abcdef", 5) == std::string::npos;
    si.snapshot_id = well_formed && recs.size() == 1 ? wanted_id : "";
    while (si.snapshot_id.empty() || snapshots_.count(si.snapshot_id) != 0) {
      si.snapshot_id = NewId("snap");
    }
    si.volume_id = rec->info.volume_id;
    si.volume_size_bytes = rec->info.size_bytes;
    si.description = description;
    si.state = "completed";
    si.start_time_ms = now;
    si.source_snapshot_id = source_snapshot_id;
    si.lineage = rec->info.lineage;
    si.epoch = rec->info.head_epoch;
    si.encryption = rec->info.encryption;
    rec->info.head_epoch++;  // O(1): the head moves on, the old epoch is frozen
    STRATA_CHECK(si.epoch > 0 && rec->info.head_epoch > si.epoch);
    uint32_t& pins = lineages_.at(si.lineage).pins[si.epoch];
    STRATA_CHECK(pins < UINT32_MAX);
    pins++;
    snapshots_[si.snapshot_id].info = si;
    batch.records.push_back({kVolumesTable, si.volume_id, VolumeCodec().Encode(rec->info)});
    batch.records.push_back({kSnapshotsTable, si.snapshot_id, SnapshotCodec().Encode(si)});
    out.push_back(si);
  }
  for (const auto& handle : open) {
    handle->AssertPoolHeld();
    STRATA_CHECK(handle->mutations_in_flight_locked() == 0);  // drained: no write sees two heads
    handle->set_head_epoch_locked(handle->head_epoch() + 1);
    handle->set_floor_locked(handle->head_epoch() - 1);
    handle->set_barrier_locked(false);
  }
  lock.Unlock();
  // Writers already use the new head; if this commit fails a later one must not make their
  // versions durable under the old head record, so the pool latches.
  Status s = CommitLocked(std::move(batch));
  if (!s.ok()) {
    Latch(s);
    return s;
  }
  return out;
}

Result<SnapshotRecord*> PoolImpl::FindSnapshotLocked(const std::string& snapshot_id) {
  auto it = snapshots_.find(snapshot_id);
  if (it == snapshots_.end()) {
    return Status::NotFound("snapshot " + snapshot_id + " does not exist");
  }
  return &it->second;
}

Result<SnapshotInfo> PoolImpl::DescribeSnapshot(const std::string& snapshot_id) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(snapshot_id));
  return rec->info;
}

std::vector<SnapshotInfo> PoolImpl::ListSnapshots() {
  MutexLock lock(&mu_);
  std::vector<SnapshotInfo> out;
  for (const auto& [id, rec] : snapshots_) {
    out.push_back(rec.info);
  }
  std::sort(out.begin(), out.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return std::tie(a.start_time_ms, a.lineage, a.epoch) <
           std::tie(b.start_time_ms, b.lineage, b.epoch);
  });
  return out;
}

Result<std::shared_ptr<Volume>> PoolImpl::OpenSnapshot(const std::string& snapshot_id,
                                                       const OpenOptions& options) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(snapshot_id));
  std::shared_ptr<VolumeImpl> snap = rec->open.lock();
  if (snap == nullptr) {
    snap = std::make_shared<VolumeImpl>(this, rec->info, ChainLocked(rec->info.lineage));
  }
  STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Volume> handle,
                          HandleFor(snapshot_id, rec->info.encryption, snap, options));
  rec->open = snap;
  return WithSourceLocked(rec->info.lineage, std::move(handle));
}

// For CreateVolume from a snapshot: the clone's size and source. REQUIRES: mu_, commit_mu_.
Status PoolImpl::CloneSourceLocked(const std::string& snapshot_id, VolumeInfo* info,
                                   LineageState* state) {
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(snapshot_id));
  if (info->size_bytes == 0) {
    info->size_bytes = rec->info.volume_size_bytes;
  } else if (info->size_bytes < rec->info.volume_size_bytes) {
    return Status::InvalidArgument("a volume from " + snapshot_id + " needs at least " +
                                   std::to_string(rec->info.volume_size_bytes) + " bytes");
  }
  info->snapshot_id = snapshot_id;
  info->encryption = rec->info.encryption;
  state->parent = rec->info.lineage;
  state->parent_epoch = rec->info.epoch;
  return Status::OK();
}

// ---------------------------------------------------------------- snapshots still arriving

std::pair<std::shared_ptr<BlockSource>, uint64_t> PoolImpl::SourceForLineageLocked(
    uint64_t lineage) {
  for (size_t depth = 0; lineage != 0 && !sources_.empty() && depth < 4096; depth++) {
    if (auto it = sources_.find(lineage); it != sources_.end()) {
      return it->second;
    }
    auto state = lineages_.find(lineage);
    lineage = state == lineages_.end() ? 0 : state->second.parent;
  }
  return {nullptr, 0};
}

std::shared_ptr<Volume> PoolImpl::WithSourceLocked(uint64_t lineage,
                                                   std::shared_ptr<Volume> volume) {
  auto [source, bytes] = SourceForLineageLocked(lineage);
  if (!source) {
    return volume;
  }
  return std::make_shared<SourcedVolume>(std::move(volume), std::move(source), bytes);
}

Status PoolImpl::CheckCompleteLocked(const SnapshotInfo& info) {
  auto [source, bytes] = SourceForLineageLocked(info.lineage);
  if (source && source->Progress() < 1.0) {
    return Status::Busy("snapshot " + info.snapshot_id +
                        " reads through to a snapshot still being restored (" +
                        std::to_string(static_cast<int>(source->Progress() * 100)) +
                        " % there); its block lists are ready once the restore is");
  }
  return Status::OK();
}

Status PoolImpl::AttachBlockSource(const std::string& snapshot_id,
                                   std::shared_ptr<BlockSource> source) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(snapshot_id));
  if (!source) {
    sources_.erase(rec->info.lineage);
    return Status::OK();
  }
  if (!lineages_.at(rec->info.lineage).volume_id.empty()) {
    return Status::InvalidArgument("snapshot " + snapshot_id +
                                   " has a volume writing to its lineage: it is not arriving");
  }
  sources_[rec->info.lineage] = {std::move(source), rec->info.volume_size_bytes};
  return Status::OK();
}

std::shared_ptr<BlockSource> PoolImpl::SourceOf(const std::string& volume_or_snapshot_id) {
  MutexLock lock(&mu_);
  uint64_t lineage = 0;
  if (auto v = volumes_.find(volume_or_snapshot_id); v != volumes_.end()) {
    lineage = v->second.info.lineage;
  } else if (auto s = snapshots_.find(volume_or_snapshot_id); s != snapshots_.end()) {
    lineage = s->second.info.lineage;
  }
  return SourceForLineageLocked(lineage).first;
}

Status PoolImpl::FillSnapshot(const std::string& snapshot_id, uint64_t offset_bytes,
                              std::span<const std::byte> data) {
  MutexLock serial(&fill_mu_);  // one fill at a time: no chunk locks needed
  uint64_t lineage = 0, epoch = 0, size = 0;
  // The chunks to write (those the lineage has no version of) and where.
  std::vector<std::pair<uint64_t, uint64_t>> planned;  // (chunk, phys)
  {
    MutexLock lock(&mu_);
    STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(snapshot_id));
    lineage = rec->info.lineage;
    epoch = rec->info.epoch;
    size = rec->info.volume_size_bytes;
    if (!lineages_.at(lineage).volume_id.empty()) {
      return Status::InvalidArgument("snapshot " + snapshot_id +
                                     " has a volume writing to its lineage: it cannot be filled");
    }
    if (!latched_.ok()) {
      return latched_;
    }
    if (offset_bytes % chunk_size_ != 0 || offset_bytes > size ||
        data.size() > size - offset_bytes ||
        (data.size() % chunk_size_ != 0 && offset_bytes + data.size() != size)) {
      return Status::InvalidArgument("a fill covers whole chunks of the snapshot");
    }
    STRATA_RETURN_IF_ERROR(PlanFillLocked(lineage, epoch, offset_bytes, data.size(), &planned));
  }
  Status s = WriteFill(offset_bytes, data, planned);
  // Published together, in one critical section: a commit takes all of the fill or none of it,
  // so after a crash a block is either wholly here or wholly missing (and fetched again).
  MutexLock lock(&mu_);
  for (const auto& [chunk, phys] : planned) {
    if (s.ok()) {
      PutVersionLocked(MapKey{lineage, chunk, epoch}, MapValue{phys, 0, 0});
    } else {
      space_->ReturnUnmapped(phys);
    }
  }
  return s;
}

Status PoolImpl::PlanFillLocked(uint64_t lineage, uint64_t epoch, uint64_t offset_bytes,
                                size_t length_bytes,
                                std::vector<std::pair<uint64_t, uint64_t>>* planned) {
  for (size_t at = 0; at < length_bytes; at += chunk_size_) {
    const uint64_t chunk = (offset_bytes + at) / chunk_size_;
    auto existing = NewestOwnLocked(lineage, chunk, epoch);
    Status s = existing.status();
    if (s.ok() && *existing) {
      continue;  // filled before: a fill is idempotent
    }
    std::optional<ChunkAllocator::Grant> grant;
    if (s.ok() && !(grant = space_->Allocate())) {
      s = Status::NoSpace("pool is full: a restored block has no room");
    }
    if (!s.ok()) {
      for (const auto& [c, phys] : *planned) {
        space_->ReturnUnmapped(phys);
      }
      planned->clear();
      return s;
    }
    planned->emplace_back(chunk, grant->phys);
  }
  return Status::OK();
}

// The planned chunks' bytes (the last one padded with zeros), synchronously.
Status PoolImpl::WriteFill(uint64_t offset_bytes, std::span<const std::byte> data,
                           const std::vector<std::pair<uint64_t, uint64_t>>& planned) {
  constexpr size_t kMaxRunChunks = 64;  // one write covers at most this many chunks
  AlignedBuffer buf = AllocateAligned(kMaxRunChunks * chunk_size_);
  std::byte* bytes = buf.get();
  for (size_t i = 0; i < planned.size();) {
    // A run: consecutive chunks on consecutive physical chunks of one file (the allocator hands
    // them out in order), written at once.
    size_t n = 1;
    while (i + n < planned.size() && n < kMaxRunChunks &&
           planned[i + n].first == planned[i].first + n &&
           planned[i + n].second == planned[i].second + n &&
           space_->FileOf(planned[i + n].second) == space_->FileOf(planned[i].second)) {
      n++;
    }
    for (size_t k = 0; k < n; k++) {
      const uint64_t at = planned[i + k].first * chunk_size_ - offset_bytes;
      const size_t len = std::min<size_t>(chunk_size_, data.size() - at);
      std::memcpy(bytes + k * chunk_size_, data.data() + at, len);
      std::memset(bytes + k * chunk_size_ + len, 0, chunk_size_ - len);
    }
    const uint64_t phys = planned[i].second;
    STRATA_RETURN_IF_ERROR(
        env_->WriteSync(space_->FileOf(phys), bytes, n * chunk_size_, space_->OffsetOf(phys)));
    i += n;
  }
  return Status::OK();
}

// ---------------------------------------------------------------- delete

Status PoolImpl::DeleteSnapshot(const std::string& snapshot_id) {
  STRATA_RETURN_IF_ERROR(Writable());
  MutexLock commit(&commit_mu_);
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(snapshot_id));
  STRATA_RETURN_IF_ERROR(HoldStatusLocked(snapshot_id, "snapshot"));
  if (!rec->open.expired()) {
    return Status::Busy("snapshot " + snapshot_id + " is in use (open or exported)");
  }
  if (!latched_.ok()) {
    return latched_;
  }
  const uint64_t lineage = rec->info.lineage;
  const uint64_t epoch = rec->info.epoch;
  LineageState next = lineages_.at(lineage);
  if (DropPin(&next, epoch)) {
    next.reclaim.push_back(epoch);  // no snapshot or clone sees this epoch any more
  }
  CommitBatch batch;
  batch.records.push_back({kSnapshotsTable, snapshot_id, std::nullopt});
  AddLineageRecord(&batch, lineage, next);
  lock.Unlock();
  STRATA_RETURN_IF_ERROR(CommitLocked(std::move(batch)));  // on failure nothing changed
  lock.Lock();
  snapshots_.erase(snapshot_id);
  lineages_[lineage] = std::move(next);
  RefreshFloorLocked(lineage);
  WakeReclaimer();
  return Status::OK();
}

// After a pin went: lowers the open volume's floor. Writes planned with the old floor copy on
// write; they drain first, so the reclaimer (which commits before it scans) sees all of them and
// no later write can make a dead version it would miss. REQUIRES: commit_mu_, mu_ (in lock).
void PoolImpl::RefreshFloorLocked(uint64_t lineage) {
  const std::string volume_id = lineages_.at(lineage).volume_id;
  auto v = volume_id.empty() ? volumes_.end() : volumes_.find(volume_id);
  if (v == volumes_.end()) {
    return;
  }
  if (auto handle = v->second.open.lock()) {
    DrainLocked({handle}, {});
    handle->AssertPoolHeld();
    handle->set_floor_locked(FloorLocked(lineage, v->second.info.head_epoch));
    handle->set_barrier_locked(false);
  } else {
    WaitNoPartialsLocked(lineage);  // a closed volume's partial versions still read through
  }
}

// ---------------------------------------------------------------- reclaim

// REQUIRES: commit_mu_ held; no volume open on the lineage (it has none, or it is being deleted).
Status PoolImpl::EraseLineage(uint64_t lineage) {
  CommitBatch batch;
  std::vector<uint64_t> phys;
  uint64_t parent = 0;
  LineageState parent_next;
  {
    MutexLock lock(&mu_);
    const LineageState& st = lineages_.at(lineage);
    if (!st.volume_id.empty()) {
      batch.records.push_back({kVolumesTable, st.volume_id, std::nullopt});
    }
    batch.records.push_back({kLineagesTable, std::to_string(lineage), std::nullopt});
    batch.erase_lineages.push_back(lineage);
    parent = st.parent;
    if (parent != 0) {
      parent_next = lineages_.at(parent);
      // A clone point is a frozen epoch (below the source's head): unpinned, it is dead.
      if (DropPin(&parent_next, st.parent_epoch)) {
        parent_next.reclaim.push_back(st.parent_epoch);
      }
      AddLineageRecord(&batch, parent, parent_next);
    }
  }
  STRATA_RETURN_IF_ERROR(CollectLineageChunks(lineage, &phys));
  STRATA_RETURN_IF_ERROR(CommitLocked(std::move(batch)));
  {
    MutexLock lock(&mu_);
    map_->DropLineage(lineage);
    const std::string volume_id = lineages_.at(lineage).volume_id;
    if (!volume_id.empty()) {
      volumes_.erase(volume_id);
    }
    lineages_.erase(lineage);
    if (parent != 0) {
      lineages_[parent] = std::move(parent_next);
      RefreshFloorLocked(parent);  // the clone point may have been the source's floor
    }
  }
  space_->PunchFreed(
      std::move(phys));  // durably unmapped: punched now, clean after the next data sync
  WakeReclaimer();
  return Status::OK();
}

// The live epochs around `epoch` (itself excluded): pins, and the head while the volume exists.
// REQUIRES: mu_.
PoolImpl::Neighbours PoolImpl::LiveNeighboursLocked(uint64_t lineage, uint64_t epoch) {
  const LineageState& st = lineages_.at(lineage);
  Neighbours n;
  auto v = st.volume_id.empty() ? volumes_.end() : volumes_.find(st.volume_id);
  n.any_live = !st.pins.empty() || v != volumes_.end();
  auto after = st.pins.upper_bound(epoch);
  auto below = st.pins.lower_bound(epoch);
  if (below != st.pins.begin()) {
    n.prev = std::prev(below)->first;
  }
  if (after != st.pins.end()) {
    n.next = after->first;
  } else if (v != volumes_.end() && v->second.info.head_epoch > epoch) {
    n.next = v->second.info.head_epoch;
  }
  STRATA_CHECK(n.prev < epoch && (!n.next || *n.next > epoch));
  return n;
}

// The version that dies with `epoch` by the change record `change`, if any. REQUIRES: mu_.
//  * with a next live epoch: the version visible at `epoch`, born after prev (the change, in
//    (epoch, next], replaced it);
//  * without one: the change's own version, every one born in (prev, epoch] being dead.
// A version already erased is not found again, so the rule is idempotent.
Result<std::optional<Version>> PoolImpl::DyingVersionLocked(uint64_t lineage, uint64_t epoch,
                                                            const Neighbours& n,
                                                            const MapKey& change) {
  const uint64_t at = n.next ? epoch : change.birth;
  STRATA_ASSIGN_OR_RETURN(std::optional<Version> v, NewestOwnLocked(lineage, change.chunk, at));
  if (!v || v->birth <= n.prev || (!n.next && v->birth != change.birth)) {
    return std::optional<Version>();  // alive at prev, or already reclaimed
  }
  // A dying version was born after the live epoch below and is seen by no live epoch: born at or
  // before the dead one (with a next live epoch, which sees the change that replaced it).
  STRATA_CHECK(v->birth > n.prev && v->birth <= epoch);
  return v;
}

// Reclaims one epoch that stopped being live. Idempotent: after a crash it runs again and finds
// the versions it already erased gone. Cost O(changes between its live neighbours).
Status PoolImpl::ReclaimEpoch(uint64_t lineage, uint64_t epoch) {
  {
    MutexLock commit(&commit_mu_);
    STRATA_RETURN_IF_ERROR(CommitLocked({}));  // every version up to the head is in LMDB
  }
  Neighbours n;
  {
    MutexLock lock(&mu_);
    STRATA_CHECK(!EpochLiveLocked(lineage, epoch));  // only a dead epoch is reclaimed
    n = LiveNeighboursLocked(lineage, epoch);
  }
  if (!n.any_live) {
    MutexLock commit(&commit_mu_);
    return EraseLineage(lineage);
  }
  auto [from_birth, to_birth] = n.ChangeWindow(epoch);
  uint64_t from_chunk = 0;
  uint64_t batches = 0;
  for (bool more = true; more;) {
    std::vector<MapKey> changes;
    STRATA_RETURN_IF_ERROR(
        meta_->ScanChanges(lineage, from_birth, from_chunk, to_birth, [&changes](const MapKey& k) {
          changes.push_back(k);
          return changes.size() < kReclaimBatch;
        }));
    more = changes.size() == kReclaimBatch;
    if (more) {
      from_birth = changes.back().birth;
      from_chunk = changes.back().chunk + 1;  // chunk numbers stay far below 2^64
    }
    {
      MutexLock lock(&mu_);
      if (stop_reclaim_) {
        return Status::Shutdown("pool closing; reclaim resumes at the next open");
      }
      for (const MapKey& change : changes) {
        STRATA_ASSIGN_OR_RETURN(std::optional<Version> v,
                                DyingVersionLocked(lineage, epoch, n, change));
        if (v) {
          EraseVersionLocked(MapKey{lineage, change.chunk, v->birth});
          if (!v->value.tombstone()) {
            space_->FreeAfterCommit(v->value.phys, /*by_trim=*/false);
          }
        }
      }
    }
    std::this_thread::yield();  // foreground I/O gets the pool mutex between batches
    if (more && ++batches % kReclaimBatchesPerCommit == 0) {
      // A commit copies and then drops the overlay under the pool mutex: keep it small.
      MutexLock commit(&commit_mu_);
      STRATA_RETURN_IF_ERROR(CommitLocked({}));
    }
  }
  MutexLock commit(&commit_mu_);
  CommitBatch batch;
  {
    MutexLock lock(&mu_);
    LineageState st = lineages_.at(lineage);
    st.reclaim.erase(std::remove(st.reclaim.begin(), st.reclaim.end(), epoch), st.reclaim.end());
    AddLineageRecord(&batch, lineage, st);
  }
  STRATA_RETURN_IF_ERROR(CommitLocked(std::move(batch)));  // the erasures and the record together
  MutexLock lock(&mu_);
  auto& reclaim = lineages_.at(lineage).reclaim;
  reclaim.erase(std::remove(reclaim.begin(), reclaim.end(), epoch), reclaim.end());
  return Status::OK();
}

void PoolImpl::ReclaimerMain() {
  MutexLock lock(&mu_);
  for (;;) {
    if (reclaim_error_.ok()) {
      while (!stop_reclaim_ && !ReclaimPendingLocked()) {
        reclaim_cv_.Wait();
      }
    } else if (!stop_reclaim_) {  // retry a failure (a full disk, say) now and then, not in a loop
      reclaim_cv_.WaitFor(std::chrono::seconds(1));
    }
    if (stop_reclaim_) {
      return;
    }
    ReclaimOnceLocked();
  }
}

bool PoolImpl::ReclaimOnceLocked() {
  if (!latched_.ok() || !ReclaimPendingLocked()) {
    reclaim_error_ = latched_;
    reclaim_cv_.SignalAll();
    return false;
  }
  STRATA_CHECK(!reclaim_busy_);  // one reclaimer: its thread, or the simulator's steps
  auto it = std::find_if(lineages_.begin(), lineages_.end(),
                         [](const auto& l) { return !l.second.reclaim.empty(); });
  const uint64_t lineage = it->first;
  const uint64_t epoch = it->second.reclaim.front();
  reclaim_busy_ = true;
  mu_.Unlock();
  Status s = ReclaimEpoch(lineage, epoch);
  mu_.Lock();
  reclaim_busy_ = false;
  reclaim_error_ = s;
  if (!s.ok() && s.code() != Status::Code::kShutdown) {
    std::fprintf(stderr, "strata: reclaiming space failed (will retry): %s\n",
                 s.ToString().c_str());
  }
  reclaim_cv_.SignalAll();
  return true;
}

Status PoolImpl::WaitForReclaim() {
  MutexLock lock(&mu_);
  while ((ReclaimPendingLocked() || reclaim_busy_) && reclaim_error_.ok() && latched_.ok()) {
    if (!reclaimer_.joinable() && !reclaim_busy_) {  // stepped: the waiter reclaims
      ReclaimOnceLocked();
      continue;
    }
    reclaim_cv_.Wait();
  }
  return latched_.ok() ? reclaim_error_ : latched_;
}

// ---------------------------------------------------------------- space and block lists

Status PoolImpl::ForEachDeadVersion(uint64_t lineage, uint64_t epoch,
                                    const std::function<void(const MapKey&, const MapValue&)>& fn) {
  Neighbours n;
  {
    MutexLock lock(&mu_);
    n = LiveNeighboursLocked(lineage, epoch);
  }
  const auto [from_birth, to_birth] = n.ChangeWindow(epoch);
  std::vector<MapKey> changes;
  STRATA_RETURN_IF_ERROR(
      meta_->ScanChanges(lineage, from_birth, 0, to_birth, [&changes](const MapKey& k) {
        changes.push_back(k);
        return true;
      }));
  // Nothing is erased here, so count a chunk's dying version once: at its first change.
  std::sort(changes.begin(), changes.end());  // (chunk, birth) order
  MutexLock lock(&mu_);
  uint64_t last_chunk = UINT64_MAX;
  for (const MapKey& c : changes) {
    if (n.next && c.chunk == last_chunk) {
      continue;
    }
    last_chunk = c.chunk;
    STRATA_ASSIGN_OR_RETURN(std::optional<Version> v, DyingVersionLocked(lineage, epoch, n, c));
    if (v) {
      fn(MapKey{lineage, c.chunk, v->birth}, v->value);
    }
  }
  return Status::OK();
}

Result<SnapshotSpace> PoolImpl::SnapshotSpaceUsage(const std::string& snapshot_id) {
  STRATA_RETURN_IF_ERROR(Flush());  // the accounting reads committed change records
  SnapshotInfo info;
  {
    MutexLock lock(&mu_);
    STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(snapshot_id));
    info = rec->info;
  }
  SnapshotSpace space;
  uint64_t unique_chunks = 0;
  // As if deleted: the versions that would die. A snapshot that clones also pin is not freed.
  bool pinned_by_others = false;
  {
    MutexLock lock(&mu_);
    pinned_by_others = lineages_.at(info.lineage).pins.at(info.epoch) > 1;
  }
  if (!pinned_by_others) {
    // ForEachDeadVersion treats `epoch` as gone: its pins other than this one are none.
    STRATA_RETURN_IF_ERROR(ForEachDeadVersion(
        info.lineage, info.epoch,
        [&](const MapKey&, const MapValue& v) { unique_chunks += v.tombstone() ? 0 : 1; }));
  }
  uint64_t visible_chunks = 0;
  const uint64_t end_chunk = (info.volume_size_bytes + chunk_size_ - 1) / chunk_size_;
  for (uint64_t from = 0; from < end_chunk;) {
    std::vector<std::pair<uint64_t, Version>> mapped;
    MutexLock lock(&mu_);
    STRATA_RETURN_IF_ERROR(MappedChunksLocked(info.lineage, from, end_chunk, info.epoch,
                                              kMaxBlockStatusChunks, &mapped, &from));
    for (const auto& [chunk, v] : mapped) {
      visible_chunks += v.value.tombstone() ? 0 : 1;
    }
  }
  space.unique_bytes = unique_chunks * chunk_size_;
  space.shared_bytes = (visible_chunks - std::min(visible_chunks, unique_chunks)) * chunk_size_;
  return space;
}

namespace {

Status ValidateBlockList(uint32_t chunk_size, uint32_t block_size, size_t max_results) {
  if (block_size == 0 || block_size % chunk_size != 0 || block_size > kMaxBlockSize) {
    return Status::InvalidArgument("block size " + std::to_string(block_size) +
                                   " must be a multiple of the pool's chunk size (" +
                                   std::to_string(chunk_size) + ") up to 64 MiB");
  }
  if (max_results == 0 || max_results > kMaxBlockListResults) {
    return Status::InvalidArgument("max results must be 1 to " +
                                   std::to_string(kMaxBlockListResults));
  }
  return Status::OK();
}

// Keeps the first max_results blocks; the one after them, if any, starts the next page.
void Paginate(BlockList* list, size_t max_results) {
  if (list->blocks.size() > max_results) {
    list->next_block = list->blocks[max_results];
    list->blocks.resize(max_results);
  }
}

}  // namespace

Result<BlockList> PoolImpl::ListSnapshotBlocks(const std::string& snapshot_id,
                                               uint32_t block_size_bytes, uint64_t start_block,
                                               size_t max_results) {
  STRATA_RETURN_IF_ERROR(ValidateBlockList(chunk_size_, block_size_bytes, max_results));
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(snapshot_id));
  const SnapshotInfo& info = rec->info;
  STRATA_RETURN_IF_ERROR(CheckCompleteLocked(info));
  const uint64_t per_block = block_size_bytes / chunk_size_;
  BlockList list;
  list.block_size_bytes = block_size_bytes;
  list.volume_size_bytes = info.volume_size_bytes;
  const uint64_t end_chunk = (info.volume_size_bytes + chunk_size_ - 1) / chunk_size_;
  if (start_block > end_chunk / per_block) {
    return list;
  }
  for (uint64_t from = start_block * per_block;
       from < end_chunk && list.blocks.size() <= max_results;) {
    std::vector<std::pair<uint64_t, Version>> mapped;
    STRATA_RETURN_IF_ERROR(MappedChunksLocked(info.lineage, from, end_chunk, info.epoch,
                                              kMaxBlockStatusChunks, &mapped, &from));
    for (const auto& [chunk, v] : mapped) {
      uint64_t block = chunk / per_block;
      if (!v.value.tombstone() && (list.blocks.empty() || list.blocks.back() != block)) {
        list.blocks.push_back(block);
      }
    }
  }
  Paginate(&list, max_results);
  return list;
}

Result<BlockList> PoolImpl::ListChangedBlocks(const std::string& first_snapshot_id,
                                              const std::string& second_snapshot_id,
                                              uint32_t block_size_bytes, uint64_t start_block,
                                              size_t max_results) {
  if (first_snapshot_id.empty()) {
    return ListSnapshotBlocks(second_snapshot_id, block_size_bytes, start_block, max_results);
  }
  STRATA_RETURN_IF_ERROR(ValidateBlockList(chunk_size_, block_size_bytes, max_results));
  SnapshotInfo first, second;
  {
    MutexLock lock(&mu_);
    STRATA_ASSIGN_OR_RETURN(SnapshotRecord * a, FindSnapshotLocked(first_snapshot_id));
    STRATA_ASSIGN_OR_RETURN(SnapshotRecord * b, FindSnapshotLocked(second_snapshot_id));
    first = a->info;
    second = b->info;
  }
  std::vector<ChangeRange> ranges;
  {
    MutexLock lock(&mu_);
    STRATA_ASSIGN_OR_RETURN(ranges, ChangeRangesLocked(first, second.lineage, second.epoch, false));
  }
  // Snapshots are committed when taken, so their change records are all in LMDB.
  const uint64_t per_block = block_size_bytes / chunk_size_;
  std::vector<uint64_t> blocks;
  for (const ChangeRange& r : ranges) {
    STRATA_RETURN_IF_ERROR(meta_->ScanChanges(r.lineage, r.from + 1, 0, r.to, [&](const MapKey& k) {
      if (k.chunk / per_block >= start_block) {
        blocks.push_back(k.chunk / per_block);
      }
      return true;
    }));
  }
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  BlockList list;
  list.block_size_bytes = block_size_bytes;
  list.volume_size_bytes = second.volume_size_bytes;
  list.blocks = std::move(blocks);
  Paginate(&list, max_results);
  return list;
}

// The point (lineage, epoch) may be of a clone (or a clone of a clone...) of the snapshot's volume
// taken after it: then everything its lineage changed since the clone point differs too. Walks up
// from the point to the snapshot's lineage, collecting (lineage, from, to] change ranges.
// `same_allowed`: the point may be the snapshot's own epoch (a volume's head right after it).
Result<std::vector<PoolImpl::ChangeRange>> PoolImpl::ChangeRangesLocked(const SnapshotInfo& first,
                                                                        uint64_t lineage,
                                                                        uint64_t epoch,
                                                                        bool same_allowed) {
  std::vector<ChangeRange> ranges;
  uint64_t upper = epoch;
  while (lineage != first.lineage) {
    ranges.push_back({lineage, 0, upper});
    const LineageState& st = lineages_.at(lineage);
    if (st.parent == 0) {
      return Status::InvalidArgument("snapshot " + first.snapshot_id +
                                     " is not of this volume or of one it was cloned from");
    }
    lineage = st.parent;
    upper = st.parent_epoch;
  }
  // Same volume: strictly older. Across a clone: at or before the clone point.
  if ((ranges.empty() && !same_allowed) ? first.epoch >= upper : first.epoch > upper) {
    return Status::InvalidArgument("snapshot " + first.snapshot_id + " is not older");
  }
  ranges.push_back({lineage, first.epoch, upper});
  return ranges;
}

// Per range, the chunks with a version born in (from, to]: committed versions in the chunk range
// (one cursor walk), corrected by the overlay (uncommitted writes add, erasures remove).
Result<std::vector<ChangeExtent>> PoolImpl::ChangedExtents(const Volume& volume,
                                                           const std::string& since_snapshot_id,
                                                           uint64_t offset_bytes,
                                                           uint64_t length_bytes) {
  // The pool's own handle by the id (one shared handle per volume or snapshot, alive while the
  // caller holds `volume`), not a downcast of what the caller passed: a wrapper (a restore's
  // SourcedVolume) and the handle share the id, and a volume of another layer has no handle.
  std::shared_ptr<VolumeImpl> v;
  {
    MutexLock lock(&mu_);
    auto vol = volumes_.find(volume.id());
    auto snap = snapshots_.find(volume.id());
    v = vol != volumes_.end()      ? vol->second.open.lock()
        : snap != snapshots_.end() ? snap->second.open.lock()
                                   : nullptr;
  }
  if (v == nullptr) {
    return Status::InvalidArgument(volume.id() + " is not an open volume or snapshot of this pool");
  }
  const uint64_t size = v->size_bytes();
  if (length_bytes == 0 || offset_bytes >= size || length_bytes > size - offset_bytes) {
    return Status::OutOfRange("changed-extent range outside the volume");
  }
  const uint64_t end = offset_bytes + length_bytes;
  const uint64_t first_chunk = offset_bytes / chunk_size_;
  const uint64_t end_chunk = (end + chunk_size_ - 1) / chunk_size_;
  if (end_chunk - first_chunk > kMaxBlockStatusChunks) {
    return Status::InvalidArgument("changed-extent range longer than 65,536 chunks");
  }
  std::vector<ChangeRange> ranges;
  {
    MutexLock lock(&mu_);
    STRATA_ASSIGN_OR_RETURN(SnapshotRecord * rec, FindSnapshotLocked(since_snapshot_id));
    STRATA_ASSIGN_OR_RETURN(
        ranges, ChangeRangesLocked(rec->info, v->lineage(), v->head_epoch(), !v->is_snapshot()));
  }
  std::set<MapKey> born;  // versions born in a range, committed
  for (const ChangeRange& r : ranges) {
    STRATA_RETURN_IF_ERROR(meta_->ScanLineageRange(r.lineage, first_chunk, end_chunk,
                                                   [&](const MapKey& k, const MapValue&) {
                                                     if (k.birth > r.from && k.birth <= r.to) {
                                                       born.insert(k);
                                                     }
                                                     return true;
                                                   }));
  }
  std::vector<bool> changed(end_chunk - first_chunk, false);
  {
    MutexLock lock(&mu_);
    for (const ChangeRange& r : ranges) {
      for (const auto& [key, entry] : map_->PendingInRange(r.lineage, first_chunk, end_chunk)) {
        if (key.birth > r.from && key.birth <= r.to) {
          if (entry.erased) {
            born.erase(key);
          } else {
            born.insert(key);
          }
        }
      }
    }
  }
  for (const MapKey& k : born) {
    changed[k.chunk - first_chunk] = true;
  }
  std::vector<ChangeExtent> out;
  for (uint64_t c = first_chunk; c < end_chunk; c++) {
    const uint64_t from = std::max(offset_bytes, c * chunk_size_);
    const uint64_t to = std::min(end, (c + 1) * chunk_size_);
    const bool dirty = changed[c - first_chunk];
    if (!out.empty() && out.back().changed == dirty) {
      out.back().length_bytes += to - from;
    } else {
      out.push_back(ChangeExtent{from, to - from, dirty});
    }
  }
  return out;
}

}  // namespace strata
