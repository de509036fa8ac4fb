#include "store/pool_impl.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstring>
#include <future>
#include <random>
#include <set>

#include "store/pool_check.h"
#include "store/records.h"
#include "store/volume_impl.h"
#include "store/volume_types.h"
#include "util/check.h"
#include "util/clock.h"
#include "util/ids.h"
#include "util/text.h"

namespace strata {

namespace {

// The pool directory's lock: one process holds a pool at a time.
Result<std::unique_ptr<Env::FileLock>> LockPoolDir(Env* env, const std::string& dir) {
  auto lock = env->LockFile(dir + "/LOCK");
  if (!lock.ok() && lock.status().code() == Status::Code::kBusy) {
    return Status::Busy("pool " + dir + " is " + lock.status().message());
  }
  return lock;
}

bool ValidChunkSize(uint32_t size) {
  return size >= 4096 && size <= (1u << 20) && (size & (size - 1)) == 0;
}

}  // namespace

// ---------------------------------------------------------------- create / open / recover

Status Pool::Create(const std::string& dir, const PoolOptions& options) {
  if (!ValidChunkSize(options.chunk_size_bytes)) {
    return Status::InvalidArgument("chunk size must be a power of two from 4 KiB to 1 MiB, not " +
                                   std::to_string(options.chunk_size_bytes));
  }
  Env* env = options.env != nullptr ? options.env : Env::Default();
  // The pool directory holds every volume's bytes: only its owner may enter it.
  STRATA_RETURN_IF_ERROR(env->CreateOwnerOnlyDir(dir));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Env::FileLock> lock, LockPoolDir(env, dir));
  STRATA_ASSIGN_OR_RETURN(bool exists, env->FileExists(dir + "/meta/data.mdb"));
  if (exists) {
    return Status::AlreadyExists("a pool already exists in " + dir);
  }
  auto meta = MetaStore::Open(dir + "/meta", /*create=*/true, options.meta_map_bytes,
                              options.max_meta_bytes);
  if (!meta.ok()) {
    return meta.status();
  }
  CommitBatch batch;
  PoolHeader h;
  h.format_version = MetaStore::kFormatVersion;
  h.chunk_size_bytes = options.chunk_size_bytes;
  h.capacity_bytes = options.capacity_bytes;
  std::random_device rd;
  char uuid[40];
  std::snprintf(uuid, sizeof(uuid), "%08x-%04x-%04x-%04x-%08x%04x", rd(), rd() & 0xffff,
                rd() & 0xffff, rd() & 0xffff, rd(), rd() & 0xffff);
  h.pool_uuid = uuid;
  batch.header = h;
  return (*meta)->Commit(batch);
}

Result<std::unique_ptr<Pool>> Pool::Open(const std::string& dir, const PoolOptions& options) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<PoolImpl> pool, PoolImpl::OpenImpl(dir, options));
  return std::unique_ptr<Pool>(std::move(pool));
}

Result<std::unique_ptr<PoolImpl>> PoolImpl::OpenImpl(const std::string& dir,
                                                     const PoolOptions& options) {
  Env* env = options.env != nullptr ? options.env : Env::Default();
  STRATA_ASSIGN_OR_RETURN(bool exists, env->FileExists(dir));
  if (!exists) {
    return Status::NotFound("no pool at " + dir + " (create one with 'strata pool create')");
  }
  STRATA_RETURN_IF_ERROR(env->CreateOwnerOnlyDir(dir));  // pools made by earlier builds were 0755
  std::unique_ptr<PoolImpl> pool(new PoolImpl());
  pool->dir_ = dir;
  pool->options_ = options;
  pool->env_ = env;
  STRATA_ASSIGN_OR_RETURN(pool->dir_lock_, LockPoolDir(env, dir));
  auto meta = MetaStore::Open(dir + "/meta", /*create=*/false, options.meta_map_bytes,
                              options.max_meta_bytes);
  if (!meta.ok()) {
    if (meta.status().code() == Status::Code::kNotFound) {
      return Status::NotFound("no pool at " + dir + " (create one with 'strata pool create')");
    }
    return meta.status().WithContext("pool " + dir);
  }
  pool->meta_ = std::move(*meta);
  pool->map_ = std::make_unique<ChunkMap>(pool->meta_.get());
  auto header = pool->meta_->ReadHeader();
  if (!header.ok()) {
    return header.status().WithContext("pool " + dir);
  }
  if (!ValidChunkSize(header->chunk_size_bytes)) {
    return Status::Corruption("pool " + dir + ": invalid chunk size in header");
  }
  pool->chunk_size_ = header->chunk_size_bytes;
  pool->space_ = std::make_unique<Space>(pool->env_, dir, pool->chunk_size_, options.direct_io);
  pool->unit_bytes_ = std::max<uint32_t>(kIoAlign, pool->chunk_size_ / kMaxUnitsPerChunk);
  STRATA_CHECK(pool->units_per_chunk() >= 1 && pool->units_per_chunk() <= kMaxUnitsPerChunk);
  {
    MutexLock lock(&pool->mu_);  // (no other thread yet: taken for the lock rules' sake)
    pool->header_ = *header;
    if (options.capacity_bytes != 0) {
      pool->header_.capacity_bytes = options.capacity_bytes;
    }
  }
  auto engine = pool->env_->NewEngine(1);  // which engine this Env gives (for pool info)
  pool->engine_name_ = engine.ok() ? (*engine)->name() : "unavailable";
  {
    MutexLock lock(&pool->mu_);  // (no other thread yet: Recover's I/O may run under it)
    STRATA_RETURN_IF_ERROR(pool->Recover());
  }
  STRATA_RETURN_IF_ERROR(pool->FillAllAtOpen());
  // Ops beyond the ring's size wait in the engine's backlog; most fills are 2-3 ops.
  STRATA_ASSIGN_OR_RETURN(pool->filler_loop_, EventLoop::Create(pool->env_, 4 * kFillDepth));
  pool->committer_ = std::make_unique<GroupCommitter>(
      pool->env_, options.commit_interval_ms,
      [p = pool.get()](bool asked) { return p->CommitForCommitter(asked); });
  pool->committer_->Start();
  pool->stepped_background_ = !pool->env_->BackgroundThreads();
  if (!pool->stepped_background_) {  // (else the simulator steps it: StepBackground)
    pool->reclaimer_ = std::thread([p = pool.get()] { p->ReclaimerMain(); });
    pool->cipher_worker_ = std::make_unique<CipherWorker>();
  }
  pool->filler_ = std::thread([p = pool.get()] { p->FillerMain(); });
  // An import a crash interrupted: nothing of it may stay.
  std::vector<std::string> unfinished;
  {
    MutexLock lock(&pool->mu_);
    for (const auto& [id, rec] : pool->volumes_) {
      if (rec.info.state == "importing") {
        unfinished.push_back(id);
      }
    }
  }
  for (const std::string& id : unfinished) {
    STRATA_RETURN_IF_ERROR(pool->DeleteVolume(id));
  }
  return pool;
}

PoolImpl::~PoolImpl() {
  cipher_worker_.reset();  // (idle: no volume is open, so no write is in flight)
  {                        // partial versions left are filled after the next open
    MutexLock lock(&mu_);
    stop_fill_ = true;
    WakeFillerLocked();
  }
  if (filler_.joinable()) {
    filler_.join();  // after the fills in flight complete
  }
  if (reclaimer_.joinable()) {
    {
      MutexLock lock(&mu_);
      stop_reclaim_ = true;
    }
    reclaim_cv_.SignalAll();
    reclaimer_.join();
  }
  if (committer_ != nullptr) {
    committer_->Stop();
    MutexLock lock(&commit_mu_);
    if (HasPendingWork()) {
      Status s = CommitLocked({});  // clean shutdown; on error the pool is latched and logged
      if (!s.ok()) {
        std::fprintf(stderr, "strata: final commit of %s failed: %s\n", dir_.c_str(),
                     s.ToString().c_str());
      }
    }
  }
  idle_loops_.clear();
  space_.reset();     // closes the data files
  dir_lock_.reset();  // last: another process may take the pool once this returns
}

// Rebuilds the allocator from the committed map; truncates data past the committed frontier
// (uncommitted allocations may have reached the disk before a crash) and punches every free
// chunk below it, so every free chunk reads as zeros.
Status PoolImpl::Recover() {
  auto records = meta_->ReadRecords(kVolumesTable);
  if (!records.ok()) {
    return records.status();
  }
  std::set<uint64_t> volume_lineages;
  for (const auto& [id, json] : *records) {
    STRATA_ASSIGN_OR_RETURN(VolumeInfo info, VolumeCodec().Decode(id, json));
    if (!volume_lineages.insert(info.lineage).second || info.lineage >= header_.next_lineage) {
      return Status::Corruption("volume " + id + " has a duplicate or future lineage");
    }
    VolumeRecord& rec = volumes_[id];
    rec.info = info;
    ConfigureGovernorLocked(&rec);
  }
  STRATA_RETURN_IF_ERROR(LoadLineagesAndSnapshots());
  header_.format_version = MetaStore::kFormatVersion;  // written with the next commit
  const uint64_t frontier = header_.frontier_chunks;
  std::vector<bool> used(frontier, false);
  Status s = meta_->ForEachVersion([&](const MapKey& k, const MapValue& v) -> Status {
    mu_.AssertHeld();  // (called back on this thread, under the lock)
    if (lineages_.count(k.lineage) == 0) {
      return Status::Corruption("map entry of unknown lineage " + std::to_string(k.lineage));
    }
    if (v.tombstone()) {
      return Status::OK();
    }
    if (v.phys >= frontier || used[v.phys]) {
      return Status::Corruption("physical chunk " + std::to_string(v.phys) +
                                " is past the frontier or mapped twice");
    }
    if (v.partial() && (v.present & ~all_units()) != 0) {
      return Status::Corruption("partial version of chunk " + std::to_string(k.chunk) +
                                " names units past the chunk");
    }
    if (v.partial()) {
      AddPartialLocked(k.lineage, k.chunk);  // filled once the filler starts
    }
    used[v.phys] = true;
    return Status::OK();
  });
  STRATA_RETURN_IF_ERROR(s);
  return space_->Open(frontier, header_.capacity_bytes / chunk_size_, used);
}

// ---------------------------------------------------------------- data-path services

Result<std::optional<Version>> PoolImpl::NewestLocked(uint64_t lineage, uint64_t chunk,
                                                      uint64_t max_birth) {
  for (bool inherited = false;; inherited = true) {
    STRATA_ASSIGN_OR_RETURN(std::optional<Version> v, NewestOwnLocked(lineage, chunk, max_birth));
    if (v) {
      v->inherited = inherited;
      return v;
    }
    auto it = lineages_.find(lineage);
    if (it == lineages_.end() || it->second.parent == 0) {
      return v;
    }
    max_birth = it->second.parent_epoch;  // a clone reads through to its source's clone point
    lineage = it->second.parent;
  }
}

Result<std::optional<Version>> PoolImpl::NewestOwnLocked(uint64_t lineage, uint64_t chunk,
                                                         uint64_t max_birth) {
  return map_->NewestOwn(lineage, chunk, max_birth);
}

Result<std::optional<Version>> PoolImpl::NewestInChain(const LineageChain& chain, uint64_t chunk,
                                                       uint64_t max_birth, size_t from) {
  STRATA_CHECK(!chain.empty() && chain[0].second == UINT64_MAX);
  for (size_t i = from; i < chain.size(); i++) {
    const uint64_t cap = i == 0 ? max_birth : chain[i].second;
    STRATA_ASSIGN_OR_RETURN(std::optional<Version> v, map_->NewestOwn(chain[i].first, chunk, cap));
    if (v) {
      STRATA_CHECK(v->birth <= cap);
      v->inherited = i > 0;
      return v;
    }
  }
  return std::optional<Version>();
}

LineageChain PoolImpl::ChainLocked(uint64_t lineage) {
  LineageChain chain{{lineage, UINT64_MAX}};
  for (auto it = lineages_.find(lineage); it != lineages_.end() && it->second.parent != 0;
       it = lineages_.find(it->second.parent)) {
    STRATA_CHECK(chain.size() < 4096);  // clones of clones: bounded, and never a cycle
    chain.emplace_back(it->second.parent, it->second.parent_epoch);
  }
  return chain;
}

Status PoolImpl::MappedChunksLocked(uint64_t lineage, uint64_t first, uint64_t end,
                                    uint64_t max_birth, size_t max_chunks,
                                    std::vector<std::pair<uint64_t, Version>>* out,
                                    uint64_t* end_out) {
  std::map<uint64_t, Version> found;
  uint64_t stop = end;
  STRATA_RETURN_IF_ERROR(
      meta_->ScanNewest(lineage, first, end, max_birth, [&](uint64_t chunk, const Version& v) {
        if (found.size() == max_chunks) {
          stop = chunk;  // everything before `chunk` is complete
          return false;
        }
        found.emplace(chunk, v);
        return true;
      }));
  // Chunks the overlay touches are resolved exactly (it may add, replace or erase versions).
  for (const auto& [key, entry] : map_->PendingInRange(lineage, first, stop)) {
    if (key.birth > max_birth) {
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(std::optional<Version> v, NewestLocked(lineage, key.chunk, max_birth));
    if (v) {
      found[key.chunk] = *v;
    } else {
      found.erase(key.chunk);
    }
  }
  // A clone shows its source's chunks wherever it has no version of its own.
  auto lin = lineages_.find(lineage);
  if (lin != lineages_.end() && lin->second.parent != 0 && first < stop) {
    std::vector<std::pair<uint64_t, Version>> inherited;
    uint64_t parent_stop;
    STRATA_RETURN_IF_ERROR(MappedChunksLocked(lin->second.parent, first, stop,
                                              lin->second.parent_epoch, max_chunks, &inherited,
                                              &parent_stop));
    stop = parent_stop;
    for (auto& [chunk, v] : inherited) {
      v.inherited = true;
      found.emplace(chunk, v);  // no-op where the clone has its own version
    }
    found.erase(found.lower_bound(stop), found.end());
  }
  if (found.size() > max_chunks) {  // the overlay added chunks: cut at the bound again
    auto cut = std::next(found.begin(), static_cast<long>(max_chunks));
    stop = cut->first;
    found.erase(cut, found.end());
  }
  out->assign(found.begin(), found.end());
  *end_out = stop;
  return Status::OK();
}

void PoolImpl::PutVersionLocked(const MapKey& key, const MapValue& value) {
  STRATA_CHECK(key.birth > 0 && key.lineage > 0);
  STRATA_CHECK(value.tombstone() || space_->HandedOut(value.phys));
  STRATA_CHECK(!value.partial() || (value.present != 0 && value.present != all_units()));
  if (map_->Put(key, value) == kOverlayCommitEntries) {
    WakeCommitter();  // a large overlay is committed without waiting for the timer
  }
}

void PoolImpl::EraseVersionLocked(const MapKey& key) {
  STRATA_CHECK(key.birth > 0 && key.lineage > 0);
  map_->Erase(key);
}

// ---------------------------------------------------------------- commit pipeline

void PoolImpl::WakeCommitter() { committer_->Wake(); }

void PoolImpl::RequestCommit(EventLoop* loop, std::function<void(const Status&)> done) {
  committer_->Request(loop, std::move(done));
}

bool PoolImpl::HasPendingWork() {
  MutexLock lock(&mu_);
  return map_->size() > 0 || space_->FreesPending();
}

// The committer's commit: a timer or a wake commits only when there is something to commit.
Status PoolImpl::CommitForCommitter(bool asked) {
  if (!asked && !HasPendingWork()) {
    return Status::OK();
  }
  MutexLock commit(&commit_mu_);
  return CommitLocked({});
}

void PoolImpl::Latch(const Status& status) {
  MutexLock lock(&mu_);
  LatchLocked(status);
}

void PoolImpl::LatchLocked(const Status& status) {
  if (latched_.ok()) {
    latched_ = Status(
        Status::Code::kIOError,
        "pool latched after a failed data I/O, sync or commit; reopen it: " + status.ToString(),
        status.sys_errno() != 0 ? status.sys_errno() : EIO);
    latched_flag_.store(true, std::memory_order_release);
    for (const auto& [key, waiter] : fill_waiters_) {
      PostWaiter(waiter);  // no fill comes now: their retries see the latch
    }
    fill_waiters_.clear();
    std::fprintf(stderr, "strata: %s\n", latched_.ToString().c_str());
  }
}

Status PoolImpl::CommitLocked(CommitBatch batch) {
  std::vector<std::pair<MapKey, uint64_t>> written;
  Space::CommitCut cut;
  {
    MutexLock lock(&mu_);
    if (!latched_.ok()) {
      return latched_;
    }
    // Frees first, then the overlay, all under mu_ (which every overlay writer holds): a chunk
    // freed here had its unmapping put in the overlay before, so this commit carries both.
    cut = space_->TakeForCommit();
    map_->CollectPending(&batch.map_changes, &written);
    STRATA_CHECK(written.size() == map_->size());  // all of it, under mu_: a consistent cut
    STRATA_CHECK(cut.frontier >= header_.frontier_chunks);  // the frontier only grows
    header_.frontier_chunks = cut.frontier;
    batch.header = header_;
  }
  Status s = CommitOnce(batch);
  if (s.code() == Status::Code::kNoSpace && s.sys_errno() != 0 &&
      space_->PunchTrimmedEarly(cut.trimmed)) {
    s = CommitOnce(batch);  // the host file system had no room for the commit: try once more
  }
  if (!s.ok()) {
    if (s.code() == Status::Code::kNoSpace) {  // no room for metadata: nothing changed
      space_->Uncommitted(cut);
      return s;
    }
    Latch(s);
    return s;
  }
  {
    MutexLock lock(&mu_);
    map_->DropCommitted(written);
  }
  // Keep a reserve of freed chunks unpunched for partial versions to overwrite
  // (docs/design.md §2.3); the rest go back to the host file system.
  space_->PunchFreed(
      space_->Committed(std::move(cut), units_per_chunk() > 1 ? kWarmReserveChunks : 0));
  return Status::OK();
}

// Data before metadata: a mapping may only become durable after the data it points to.
Status PoolImpl::CommitOnce(const CommitBatch& batch) {
  STRATA_RETURN_IF_ERROR(space_->Sync());
  return meta_->Commit(batch);
}

Status PoolImpl::Flush() {
  std::promise<Status> promise;
  RequestCommit(nullptr, [&promise](const Status& s) { promise.set_value(s); });
  return promise.get_future().get();
}

// ---------------------------------------------------------------- volumes

Status PoolImpl::ValidateSize(uint64_t size_bytes) const {
  if (size_bytes == 0 || size_bytes % 512 != 0) {
    return Status::InvalidArgument("volume size must be a positive multiple of 512 bytes, not " +
                                   std::to_string(size_bytes));
  }
  if (size_bytes > kMaxVolumeBytes) {
    return Status::InvalidArgument("volume size " + std::to_string(size_bytes) +
                                   " bytes exceeds the 64 TiB maximum");
  }
  return Status::OK();
}

// "PREFIX-" + 17 hex digits, the shape of EC2 ids.
std::string PoolImpl::NewId(const char* prefix) { return NewResourceId(prefix); }

Result<VolumeRecord*> PoolImpl::FindLocked(const std::string& id_or_name) {
  auto it = volumes_.find(id_or_name);
  if (it != volumes_.end()) {
    return &it->second;
  }
  VolumeRecord* match = nullptr;
  int matches = 0;
  for (auto& [id, rec] : volumes_) {
    if (!rec.info.name.empty() && rec.info.name == id_or_name && rec.info.state != "importing") {
      match = &rec;
      matches++;
    }
  }
  if (matches == 1) {
    return match;
  }
  if (matches > 1) {
    return Status::InvalidArgument("volume name '" + id_or_name + "' is ambiguous (" +
                                   std::to_string(matches) + " volumes); use the volume id");
  }
  return Status::NotFound("volume " + id_or_name + " does not exist");
}

Status PoolImpl::ValidateSpec(const VolumeSpec& spec) const {
  if (spec.snapshot_id.empty() || spec.size_bytes != 0) {
    STRATA_RETURN_IF_ERROR(ValidateSize(spec.size_bytes));
  }
  if (!spec.volume_id.empty() &&
      (spec.volume_id.size() != 21 || spec.volume_id.compare(0, 4, "vol-") != 0 ||
       spec.volume_id.find_first_not_of("0123456789abcdef", 4) != std::string::npos)) {
    return Status::InvalidArgument("volume id " + spec.volume_id +
                                   " is not vol- and 17 hex digits");
  }
  STRATA_RETURN_IF_ERROR(ValidateText("encryption envelope", spec.encryption, kMaxEncryptionBytes));
  return ValidateText("volume name", spec.name, kMaxVolumeNameBytes);
}

Result<VolumeInfo> PoolImpl::CreateVolume(const VolumeSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(auto infos, CreateVolumes({spec}, nullptr));
  return infos.front();
}

Result<std::vector<VolumeInfo>> PoolImpl::CreateVolumes(const std::vector<VolumeSpec>& specs,
                                                        const RecordsFor& records_for) {
  STRATA_RETURN_IF_ERROR(Writable());
  for (const VolumeSpec& spec : specs) {
    STRATA_RETURN_IF_ERROR(ValidateSpec(spec));
  }
  MutexLock commit(&commit_mu_);
  std::vector<VolumeInfo> infos(specs.size());
  std::vector<LineageState> lineages(specs.size());
  CommitBatch batch;
  {
    MutexLock lock(&mu_);
    const uint64_t next_lineage = header_.next_lineage;
    for (size_t i = 0; i < specs.size(); i++) {
      VolumeInfo& info = infos[i];
      info.size_bytes = specs[i].size_bytes;
      if (!specs[i].snapshot_id.empty()) {
        Status s = CloneSourceLocked(specs[i].snapshot_id, &info, &lineages[i]);
        if (!s.ok()) {
          header_.next_lineage = next_lineage;  // nothing was committed
          return s;
        }
      }
      auto taken = [&](const std::string& id) {
        mu_.AssertHeld();  // (the lambda runs here, under the lock; the analysis cannot see it)
        return volumes_.count(id) != 0 ||
               std::any_of(infos.begin(), infos.begin() + i,
                           [&](const VolumeInfo& o) { return o.volume_id == id; });
      };
      if (!specs[i].volume_id.empty() && taken(specs[i].volume_id)) {
        header_.next_lineage = next_lineage;  // nothing was committed
        return Status::AlreadyExists("volume " + specs[i].volume_id + " exists");
      }
      info.volume_id = specs[i].volume_id;
      while (info.volume_id.empty() || taken(info.volume_id)) {
        info.volume_id = NewId("vol");
      }
      if (!specs[i].encryption.empty() && info.encryption != specs[i].encryption) {
        if (!info.snapshot_id.empty()) {  // a clone shares its snapshot's ciphertext and key
          header_.next_lineage = next_lineage;
          return Status::InvalidArgument("a clone of " + info.snapshot_id +
                                         " keeps its encryption: re-encrypting is a copy");
        }
        info.encryption = specs[i].encryption;
      }
      info.name = specs[i].name;
      info.volume_type = specs[i].volume_type.empty() ? "gp3" : specs[i].volume_type;
      auto perf = ValidatePerf({info.volume_type, specs[i].iops, specs[i].throughput_mibps},
                               info.size_bytes);
      if (!perf.ok()) {
        header_.next_lineage = next_lineage;  // nothing was committed
        return perf.status();
      }
      info.iops = perf->iops;
      info.throughput_mibps = perf->throughput_mibps;
      info.state = specs[i].importing ? "importing" : "available";
      info.create_time_ms = env_->WallClockMs();
      info.lineage = header_.next_lineage++;
      info.head_epoch = 1;
      lineages[i].volume_id = info.volume_id;
      batch.records.push_back({kVolumesTable, info.volume_id, VolumeCodec().Encode(info)});
      AddLineageRecord(&batch, info.lineage, lineages[i]);
    }
  }
  if (records_for) {
    std::vector<RecordChange> changes = records_for(infos);
    STRATA_RETURN_IF_ERROR(CheckLayerTables(changes));
    for (auto& r : changes) {
      batch.records.push_back(std::move(r));
    }
  }
  STRATA_RETURN_IF_ERROR(CommitLocked(std::move(batch)));
  MutexLock lock(&mu_);
  for (size_t i = 0; i < specs.size(); i++) {
    VolumeRecord& rec = volumes_[infos[i].volume_id];
    rec.info = infos[i];
    ConfigureGovernorLocked(&rec);
    if (lineages[i].parent != 0) {
      lineages_.at(lineages[i].parent).pins[lineages[i].parent_epoch]++;  // read through
    }
    lineages_[infos[i].lineage] = std::move(lineages[i]);
  }
  return infos;
}

// A layer reads and writes its own, opened tables only: the engine's records are its state
// alone, and a bad table name must be refused here, since inside a commit it would latch the pool.
Status PoolImpl::CheckLayerTables(const std::vector<RecordChange>& changes) {
  for (const RecordChange& c : changes) {
    if (c.table == kVolumesTable || c.table == kSnapshotsTable || c.table == kLineagesTable) {
      return Status::InvalidArgument("record table '" + c.table + "' is the engine's own");
    }
    if (!meta_->HasTable(c.table)) {
      return Status::InvalidArgument("record table '" + c.table + "' is not open");
    }
  }
  return Status::OK();
}

Result<std::vector<std::pair<std::string, std::string>>> PoolImpl::ReadRecords(
    const std::string& table) {
  STRATA_RETURN_IF_ERROR(CheckLayerTables({{table, "", std::nullopt}}));
  return meta_->ReadRecords(table);
}

Status PoolImpl::CommitRecords(std::vector<RecordChange> changes) {
  STRATA_RETURN_IF_ERROR(Writable());
  STRATA_RETURN_IF_ERROR(CheckLayerTables(changes));
  MutexLock commit(&commit_mu_);
  CommitBatch batch;
  batch.records = std::move(changes);
  return CommitLocked(std::move(batch));
}

Status PoolImpl::AddHold(const std::string& id, const std::string& holder,
                         const std::string& reason) {
  MutexLock lock(&mu_);
  auto volume = volumes_.find(id);
  const bool live =
      (volume != volumes_.end() && !volume->second.deleting) || snapshots_.count(id) > 0;
  if (!live) {
    return Status::NotFound((id.starts_with("snap-") ? "snapshot " : "volume ") + id +
                            " does not exist");
  }
  holds_[id][holder] = reason;
  return Status::OK();
}

void PoolImpl::ReleaseHold(const std::string& id, const std::string& holder) {
  MutexLock lock(&mu_);
  auto it = holds_.find(id);
  if (it != holds_.end() && it->second.erase(holder) == 1 && it->second.empty()) {
    holds_.erase(it);
  }
}

Status PoolImpl::HoldStatusLocked(const std::string& id, const char* what) const {
  auto it = holds_.find(id);
  if (it == holds_.end()) {
    return Status::OK();
  }
  return Status::Busy(std::string(what) + " " + id + " " + it->second.begin()->second);
}

bool PoolImpl::VolumeInUse(const std::string& volume_id) {
  MutexLock lock(&mu_);
  auto it = volumes_.find(volume_id);
  return it != volumes_.end() && !it->second.open.expired();
}

Result<VolumeInfo> PoolImpl::DescribeVolume(const std::string& id_or_name) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(VolumeRecord * rec, FindLocked(id_or_name));
  return rec->info;
}

std::vector<VolumeInfo> PoolImpl::ListVolumes() {
  MutexLock lock(&mu_);
  std::vector<VolumeInfo> out;
  for (const auto& [id, rec] : volumes_) {
    if (rec.info.state != "importing") {  // hidden until sealed
      out.push_back(rec.info);
    }
  }
  std::sort(out.begin(), out.end(), [](const VolumeInfo& a, const VolumeInfo& b) {
    return a.create_time_ms < b.create_time_ms;
  });
  return out;
}

// Every physical chunk the lineage maps: its committed versions (scanned by key range, without
// the pool mutex) as changed by its overlay entries (chunks the overlay unmapped are already
// pending free). REQUIRES: commit_mu_ held and the volume closed, so neither can change.
Status PoolImpl::CollectLineageChunks(uint64_t lineage, std::vector<uint64_t>* phys) {
  std::map<MapKey, OverlayEntry> overlay;
  {
    MutexLock lock(&mu_);
    for (auto& [key, entry] : map_->PendingInRange(lineage, 0, UINT64_MAX)) {
      overlay.emplace(key, entry);
    }
  }
  for (const auto& [key, e] : overlay) {
    if (!e.erased && !e.value.tombstone()) {
      phys->push_back(e.value.phys);
    }
  }
  return meta_->ForEachVersionOfLineage(lineage, [&](const MapKey& k, const MapValue& v) {
    if (!v.tombstone() && overlay.count(k) == 0) {
      phys->push_back(v.phys);
    }
    return Status::OK();
  });
}

// Commits the delete first and changes memory only once it is durable, so that a failed delete
// (no room for metadata on a full file system) changes nothing. Without snapshots or clones the
// lineage goes at once; otherwise the head epoch is queued for the reclaimer.
Status PoolImpl::DeleteVolume(const std::string& volume_id) {
  STRATA_RETURN_IF_ERROR(Writable());
  MutexLock commit(&commit_mu_);
  uint64_t lineage;
  bool erase;
  LineageState next;
  {
    MutexLock lock(&mu_);
    auto it = volumes_.find(volume_id);
    if (it == volumes_.end()) {
      return Status::NotFound("volume " + volume_id + " does not exist");
    }
    STRATA_RETURN_IF_ERROR(HoldStatusLocked(volume_id, "volume"));
    if (!it->second.open.expired()) {
      return Status::Busy("volume " + volume_id + " is in use (open or attached)");
    }
    if (!latched_.ok()) {
      return latched_;
    }
    lineage = it->second.info.lineage;
    it->second.deleting = true;  // no one can open it now: its map cannot change
    // The filler must be done with the lineage before its chunks can be freed and reused.
    WaitNoPartialsLocked(lineage);
    if (!latched_.ok()) {
      it->second.deleting = false;
      return latched_;
    }
    next = lineages_.at(lineage);
    // Erased at once only when the reclaimer has nothing queued on it (it may be working on it).
    erase = next.pins.empty() && next.reclaim.empty();
    next.volume_id.clear();
    next.frozen_head = it->second.info.head_epoch;
    next.reclaim.push_back(next.frozen_head);
  }
  Status s;
  if (erase) {
    s = EraseLineage(lineage);
  } else {
    CommitBatch batch;
    batch.records.push_back({kVolumesTable, volume_id, std::nullopt});
    AddLineageRecord(&batch, lineage, next);
    s = CommitLocked(std::move(batch));
  }
  MutexLock lock(&mu_);
  if (!s.ok()) {
    volumes_[volume_id].deleting = false;
    return s;
  }
  if (!erase) {
    volumes_.erase(volume_id);
    lineages_[lineage] = std::move(next);
    WakeReclaimer();
  }
  return Status::OK();
}

void PoolImpl::ConfigureGovernorLocked(VolumeRecord* rec) {
  if (rec->governor == nullptr) {
    rec->governor = std::make_shared<VolumeGovernor>(env_->MonotonicNs());
  }
  const VolumeInfo& v = rec->info;
  const PerfModel model = ModelFor({v.volume_type, v.iops, v.throughput_mibps}, v.size_bytes);
  rec->governor->limiter.Configure(model, env_->MonotonicNs());
  rec->governor->provisioned_iops.store(model.provisioned_iops, std::memory_order_relaxed);
  rec->governor->enforce.store(options_.enforce_volume_limits && model.limited,
                               std::memory_order_release);
  rec->governor->count.store(options_.collect_metrics, std::memory_order_release);
}

Result<VolumeInfo> PoolImpl::ModifyVolume(const std::string& volume_id,
                                          const VolumeModification& m) {
  STRATA_RETURN_IF_ERROR(Writable());
  MutexLock commit(&commit_mu_);
  VolumeInfo info;
  {
    MutexLock lock(&mu_);
    auto it = volumes_.find(volume_id);
    if (it == volumes_.end()) {
      return Status::NotFound("volume " + volume_id + " does not exist");
    }
    info = it->second.info;
  }
  const VolumeInfo before = info;
  if (m.name) {
    STRATA_RETURN_IF_ERROR(ValidateText("volume name", *m.name, kMaxVolumeNameBytes));
    info.name = *m.name;
  }
  if (m.size_bytes) {
    STRATA_RETURN_IF_ERROR(ValidateSize(*m.size_bytes));
    if (*m.size_bytes < info.size_bytes) {
      return Status::InvalidArgument("volumes cannot shrink (" + std::to_string(info.size_bytes) +
                                     " -> " + std::to_string(*m.size_bytes) + " bytes)");
    }
    info.size_bytes = *m.size_bytes;
  }
  VolumePerf perf{info.volume_type, info.iops, info.throughput_mibps};
  if (m.volume_type && *m.volume_type != info.volume_type) {
    perf = {*m.volume_type, 0, 0};  // the new type's defaults unless given
  }
  perf.iops = m.iops.value_or(perf.iops);
  perf.throughput_mibps = m.throughput_mibps.value_or(perf.throughput_mibps);
  STRATA_ASSIGN_OR_RETURN(VolumePerf valid, ValidatePerf(perf, info.size_bytes));
  info.volume_type = valid.volume_type;
  info.iops = valid.iops;
  info.throughput_mibps = valid.throughput_mibps;
  if (info.size_bytes == before.size_bytes && info.volume_type == before.volume_type &&
      info.iops == before.iops && info.throughput_mibps == before.throughput_mibps &&
      info.name == before.name) {
    return info;
  }
  CommitBatch batch;
  batch.records.push_back({kVolumesTable, volume_id, VolumeCodec().Encode(info)});
  STRATA_RETURN_IF_ERROR(CommitLocked(std::move(batch)));
  MutexLock lock(&mu_);
  auto it = volumes_.find(volume_id);
  it->second.info = info;
  ConfigureGovernorLocked(&it->second);
  if (auto open = it->second.open.lock()) {
    open->SetSize(info.size_bytes);
  }
  return it->second.info;
}

std::shared_ptr<VolumeGovernor> PoolImpl::GovernorForTesting(const std::string& volume_id) {
  MutexLock lock(&mu_);
  auto it = volumes_.find(volume_id);
  return it == volumes_.end() ? nullptr : it->second.governor;
}

Result<VolumeMetrics> PoolImpl::DescribeVolumeMetrics(const std::string& volume_id) {
  std::shared_ptr<VolumeGovernor> g;
  {
    MutexLock lock(&mu_);
    STRATA_ASSIGN_OR_RETURN(VolumeRecord * rec, FindLocked(volume_id));
    g = rec->governor;
  }
  const uint64_t now = env_->MonotonicNs();
  return g->counters.Read(now, g->limiter.BurstBalancePercent(now),
                          g->provisioned_iops.load(std::memory_order_relaxed));
}

Result<std::shared_ptr<Volume>> PoolImpl::HandleFor(const std::string& id,
                                                    const std::string& encryption,
                                                    std::shared_ptr<VolumeImpl> impl,
                                                    const OpenOptions& options) {
  if (encryption.empty() && options.cipher != nullptr) {
    return Status::NotSupported(id + " is not encrypted: it is opened without a cipher");
  }
  if (!encryption.empty() && options.cipher == nullptr && !options.ciphertext) {
    return Status::NotSupported(id +
                                " is encrypted: it opens only with its key (through the EC2 "
                                "layer, which holds the KMS), or as ciphertext");
  }
  if (options.cipher == nullptr) {
    return std::shared_ptr<Volume>(std::move(impl));
  }
  return std::shared_ptr<Volume>(
      std::make_shared<EncryptedHandle>(std::move(impl), options.cipher));
}

Result<std::shared_ptr<Volume>> PoolImpl::OpenVolume(const std::string& volume_id,
                                                     const OpenOptions& options) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(VolumeRecord * rec, FindLocked(volume_id));
  if (rec->deleting) {
    return Status::NotFound("volume " + volume_id + " is being deleted");
  }
  std::shared_ptr<VolumeImpl> volume = rec->open.lock();
  if (volume == nullptr) {
    volume = std::make_shared<VolumeImpl>(this, rec->info, ChainLocked(rec->info.lineage),
                                          FloorLocked(rec->info.lineage, rec->info.head_epoch),
                                          rec->governor);
  }
  STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Volume> handle,
                          HandleFor(volume_id, rec->info.encryption, volume, options));
  rec->open = volume;
  return WithSourceLocked(rec->info.lineage, std::move(handle));
}

Result<std::unique_ptr<EventLoop>> PoolImpl::AcquireLoop() {
  {
    MutexLock lock(&loops_mu_);
    if (!idle_loops_.empty()) {
      auto loop = std::move(idle_loops_.back());
      idle_loops_.pop_back();
      return loop;
    }
  }
  return EventLoop::Create(env_, 64);
}

void PoolImpl::ReleaseLoop(std::unique_ptr<EventLoop> loop) {
  MutexLock lock(&loops_mu_);
  if (idle_loops_.size() < 16) {
    idle_loops_.push_back(std::move(loop));
  }
}

// ---------------------------------------------------------------- read-only

void PoolImpl::SetReadOnly(const std::string& why) {
  STRATA_CHECK(!why.empty());
  MutexLock lock(&mu_);
  read_only_why_ = why;
  read_only_flag_.store(true, std::memory_order_release);
}

Status PoolImpl::Writable() {
  if (!read_only()) {
    return Status::OK();
  }
  MutexLock lock(&mu_);
  return Status::ReadOnly("the pool is open read-only: " + read_only_why_);
}

// ---------------------------------------------------------------- info and check

PoolInfo PoolImpl::Info() {
  PoolInfo info;
  info.path = dir_;
  info.chunk_size_bytes = chunk_size_;
  info.direct_io = space_->direct_io();
  info.meta_bytes = meta_->used_bytes();
  MutexLock lock(&mu_);
  info.capacity_bytes = header_.capacity_bytes;
  const Space::Usage usage = space_->usage();
  info.used_bytes = usage.used_chunks * chunk_size_;
  info.free_chunks = usage.free_chunks;
  info.frontier_chunks = usage.frontier;
  info.volume_count = volumes_.size();
  info.snapshot_count = snapshots_.size();
  for (const auto& [lineage, st] : lineages_) {
    info.reclaim_pending += st.reclaim.size();
  }
  info.pending_map_changes = map_->size();
  info.partial_chunks = partials_.size();
  info.io_engine = engine_name_;
  info.latched_error = latched_.ok() ? "" : latched_.ToString();
  info.read_only = read_only_why_;
  lock.Unlock();  // fstat is a system call: never under the pool mutex
  for (FileId f : space_->Files()) {
    auto bytes = env_->AllocatedBytes(f);
    info.data_file_bytes += bytes.ok() ? *bytes : 0;
  }
  return info;
}

// Checks a quiet pool: reclaim finished, everything committed. The reclaimer erases versions
// into the overlay without the commit mutex, so it must be idle; it only gets new work from a
// delete, which needs the commit mutex held here.
Result<CheckReport> PoolImpl::Check() {
  for (;;) {
    STRATA_RETURN_IF_ERROR(WaitForReclaim());
    MutexLock commit(&commit_mu_);  // no commit changes LMDB while we read it
    STRATA_RETURN_IF_ERROR(CommitLocked({}));
    MutexLock lock(&mu_);
    if (ReclaimPendingLocked() || reclaim_busy_) {
      continue;  // a delete slipped in before the commit mutex: wait for its reclaim too
    }
    const ChunkAllocator alloc = space_->AllocatorCopy();
    return PoolCheck({volumes_, snapshots_, lineages_, meta_.get(), alloc, chunk_size_, all_units(),
                      map_->size() == 0})
        .Run();
  }
}

}  // namespace strata
