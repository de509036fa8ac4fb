#include "store/volume_impl.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "store/pool_impl.h"
#include "util/check.h"

namespace strata {

namespace {

// Zeros for write-zeroes pieces that must write (partial chunks, NO_HOLE): 1 MiB = max chunk.
const std::byte* ZeroSource() {
  static void* zeros = [] {
    void* p = std::aligned_alloc(kIoAlign, 1u << 20);
    std::memset(p, 0, 1u << 20);
    return p;
  }();
  return static_cast<const std::byte*>(zeros);
}

bool IsAligned(uint64_t v) { return v % kIoAlign == 0; }
bool PieceIsAligned(const internal::Piece& p) {
  return IsAligned(p.offset_in_chunk) && IsAligned(p.length) &&
         IsAligned(reinterpret_cast<uintptr_t>(p.data));
}

// The units of a partial version (`unit_bytes` each) that bytes [offset, offset + length) touch.
uint32_t UnitMask(uint32_t offset, uint32_t length, uint32_t unit_bytes) {
  const uint32_t first = offset / unit_bytes;
  const uint32_t last = (offset + length - 1) / unit_bytes;
  STRATA_CHECK(last < 32);
  return static_cast<uint32_t>(((uint64_t{1} << (last + 1)) - 1) & ~((uint64_t{1} << first) - 1));
}

// The units that bytes [offset, offset + length) cover entirely (0 when none).
uint32_t CoveredUnitMask(uint32_t offset, uint32_t length, uint32_t unit_bytes) {
  const uint32_t first = (offset + unit_bytes - 1) / unit_bytes;
  const uint32_t end = (offset + length) / unit_bytes;
  return first >= end ? 0 : UnitMask(first * unit_bytes, (end - first) * unit_bytes, unit_bytes);
}

// Request states are reused per thread: no allocation per request in steady state.
struct StateCache {
  std::vector<internal::RequestState*> states;
  ~StateCache() {
    for (internal::RequestState* s : states) {
      delete s;
    }
  }
};
thread_local StateCache state_cache;

internal::RequestState* NewState() {
  if (state_cache.states.empty()) {
    return new internal::RequestState();
  }
  internal::RequestState* s = state_cache.states.back();
  state_cache.states.pop_back();
  return s;
}

void FreeState(internal::RequestState* s) {
  s->error = Status::OK();
  if (state_cache.states.size() < 256) {
    state_cache.states.push_back(s);
  } else {
    delete s;
  }
}

// The known-zero units of each mapped chunk (ZeroHints); empty when no chunk has any.
std::vector<uint32_t> ZeroUnitsOf(PoolImpl* pool,
                                  const std::vector<std::pair<uint64_t, Version>>& mapped) {
  std::vector<uint32_t> zero_units;
  for (size_t i = 0; i < mapped.size(); i++) {
    const MapValue& v = mapped[i].second.value;
    const uint32_t units = v.tombstone() || v.partial() ? 0 : pool->space().ZeroUnits(v.phys);
    if (units != 0 && zero_units.empty()) {
      zero_units.resize(mapped.size());
    }
    if (units != 0) {
      zero_units[i] = units;
    }
  }
  return zero_units;
}

}  // namespace

VolumeImpl::VolumeImpl(PoolImpl* pool, const VolumeInfo& info, LineageChain chain,
                       uint64_t floor_epoch, std::shared_ptr<VolumeGovernor> governor)
    : pool_(pool),
      id_(info.volume_id),
      lineage_(info.lineage),
      read_only_(false),
      chain_(std::move(chain)),
      head_epoch_(info.head_epoch),
      floor_epoch_(floor_epoch),
      size_bytes_(info.size_bytes),
      chunk_size_(pool->chunk_size()),
      governor_(std::move(governor)) {}

VolumeImpl::VolumeImpl(PoolImpl* pool, const SnapshotInfo& snapshot, LineageChain chain)
    : pool_(pool),
      id_(snapshot.snapshot_id),
      lineage_(snapshot.lineage),
      read_only_(true),
      chain_(std::move(chain)),
      head_epoch_(snapshot.epoch),
      size_bytes_(snapshot.volume_size_bytes),
      chunk_size_(pool->chunk_size()) {}

// ---------------------------------------------------------------- synchronous API

Status VolumeImpl::RunSync(BlockCipher* cipher, IoRequest* request) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop, pool_->AcquireLoop());
  struct Outcome {
    bool done = false;
    Status status;
  } outcome;
  request->user = &outcome;
  request->callback = [](IoRequest* r, const Status& s) {
    auto* o = static_cast<Outcome*>(r->user);
    o->status = s;
    o->done = true;
  };
  SubmitThrough(cipher, loop.get(), request);
  loop->RunUntil([&outcome] { return outcome.done; });
  pool_->ReleaseLoop(std::move(loop));
  return outcome.status;
}

Status VolumeImpl::Read(uint64_t offset_bytes, std::span<std::byte> out) {
  IoRequest r = internal::ReadRequest(offset_bytes, out);
  return RunSync(nullptr, &r);
}

Status VolumeImpl::Write(uint64_t offset_bytes, std::span<const std::byte> data, bool fua) {
  IoRequest r = internal::WriteRequest(offset_bytes, data, fua);
  return RunSync(nullptr, &r);
}

Status VolumeImpl::WriteZeroes(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole,
                               bool fua) {
  IoRequest r = internal::ZeroRequest(offset_bytes, length_bytes, no_hole, fua);
  return RunSync(nullptr, &r);
}

Status VolumeImpl::Trim(uint64_t offset_bytes, uint64_t length_bytes) {
  IoRequest r = internal::TrimRequest(offset_bytes, length_bytes);
  return RunSync(nullptr, &r);
}

Status VolumeImpl::Flush() {
  IoRequest r;
  r.kind = IoRequest::Kind::kFlush;
  return RunSync(nullptr, &r);
}

Result<std::vector<Extent>> VolumeImpl::BlockStatus(uint64_t offset_bytes, uint64_t length_bytes) {
  const uint64_t size = size_bytes();
  if (length_bytes == 0 || offset_bytes >= size || length_bytes > size - offset_bytes) {
    return Status::OutOfRange("block status range [" + std::to_string(offset_bytes) + ", +" +
                              std::to_string(length_bytes) + ") is outside the volume");
  }
  const uint64_t end = offset_bytes + length_bytes;
  const uint64_t head = head_epoch_.load(std::memory_order_acquire);
  const uint64_t first_chunk = offset_bytes / chunk_size_;
  const uint64_t end_chunk = (end + chunk_size_ - 1) / chunk_size_;
  std::vector<std::pair<uint64_t, Version>> mapped;
  uint64_t stop_chunk;
  {
    MutexLock lock(&pool_->mu());
    STRATA_RETURN_IF_ERROR(pool_->MappedChunksLocked(lineage_, first_chunk, end_chunk, head,
                                                     kMaxBlockStatusChunks, &mapped, &stop_chunk));
  }
  const std::vector<uint32_t> zero_units = ZeroUnitsOf(pool_, mapped);
  // Walk the mapped chunks in order; the gaps between them are holes. Units a write-zeroes wrote
  // are data that reads as zeros.
  std::vector<Extent> out;
  auto add = [&out](uint64_t from, uint64_t to, bool hole, bool zero) {
    if (from >= to) {
      return;
    }
    if (!out.empty() && out.back().hole == hole && out.back().zero == zero) {
      out.back().length_bytes += to - from;
    } else {
      out.push_back(Extent{from, to - from, hole, zero});
    }
  };
  uint64_t stop = std::min(end, stop_chunk * chunk_size_);
  uint64_t pos = offset_bytes;
  const uint32_t unit = pool_->unit_bytes();
  for (size_t i = 0; i < mapped.size(); i++) {
    const uint64_t chunk = mapped[i].first;
    const Version& version = mapped[i].second;
    // At most kMaxBlockStatusChunks extents: past that, a prefix (the caller asks on).
    if (out.size() + 2 * internal::kMaxUnitsPerChunk + 2 > kMaxBlockStatusChunks) {
      stop = std::max(pos, std::min(stop, chunk * chunk_size_));
      break;
    }
    const uint64_t chunk_start = std::max(offset_bytes, chunk * chunk_size_);
    const uint64_t chunk_end = std::min(stop, (chunk + 1) * chunk_size_);
    add(pos, chunk_start, /*hole=*/true, false);
    const uint32_t zeros = zero_units.empty() ? 0 : zero_units[i];
    if (zeros == 0) {
      add(chunk_start, chunk_end, version.value.tombstone(), false);
    } else {
      for (uint64_t at = chunk_start; at < chunk_end;) {
        const uint64_t index = (at - chunk * chunk_size_) / unit;
        const uint64_t unit_end = std::min(chunk_end, chunk * chunk_size_ + (index + 1) * unit);
        add(at, unit_end, false, (zeros >> index) & 1);
        at = unit_end;
      }
    }
    pos = chunk_end;
  }
  add(pos, stop, /*hole=*/true, false);
  return out;
}

// ---------------------------------------------------------------- asynchronous API

Status VolumeImpl::Validate(const IoRequest& r) const {
  if (r.kind == IoRequest::Kind::kFlush) {
    return Status::OK();
  }
  const uint64_t size = size_bytes();
  if (r.offset_bytes > size || r.length_bytes > size - r.offset_bytes) {
    return Status::OutOfRange("I/O [" + std::to_string(r.offset_bytes) + ", +" +
                              std::to_string(r.length_bytes) + ") past the end of " + id_ + " (" +
                              std::to_string(size) + " bytes)");
  }
  if ((r.kind == IoRequest::Kind::kRead || r.kind == IoRequest::Kind::kWrite) &&
      r.data == nullptr && r.length_bytes > 0) {
    return Status::InvalidArgument("read/write without a buffer");
  }
  if (read_only_ && r.kind != IoRequest::Kind::kRead) {
    return Status::ReadOnly(id_ + " is a snapshot: read-only");
  }
  if (pool_->read_only() && r.kind != IoRequest::Kind::kRead && r.kind != IoRequest::Kind::kFlush) {
    return pool_->Writable();  // (a flush has nothing to make durable: it succeeds)
  }
  return Status::OK();
}

bool VolumeImpl::read_only() const { return read_only_ || pool_->read_only(); }

void VolumeImpl::Complete(EventLoop* loop, IoRequest* request, const Status& status) {
  // Never call back from inside Submit: the caller's stack may not expect re-entry.
  loop->Defer([request, status] { request->callback(request, status); });
}

void VolumeImpl::SubmitThrough(BlockCipher* cipher, EventLoop* loop, IoRequest* request) {
  STRATA_CHECK(request->callback != nullptr);
  Status s = Validate(*request);
  if (!s.ok()) {
    Complete(loop, request, s);
    return;
  }
  if (request->kind == IoRequest::Kind::kFlush) {
    pool_->RequestCommit(loop, [request](const Status& st) { request->callback(request, st); });
    return;
  }
  if (request->length_bytes == 0) {
    Complete(loop, request, Status::OK());
    return;
  }
  request->hole_bytes = 0;
  RequestState* state = NewState();
  state->volume = this;
  state->cipher = cipher;
  state->loop = loop;
  state->request = request;
  state->lineage = lineage_;
  state->volume_size = size_bytes();
  state->next_offset = request->offset_bytes;
  state->end_offset = request->offset_bytes + request->length_bytes;
  state->active = 0;
  state->busy_mask = 0;
  state->counted = false;
  const bool data =
      request->kind == IoRequest::Kind::kRead || request->kind == IoRequest::Kind::kWrite;
  if (data && governor_ != nullptr && governor_->active()) {  // off: two relaxed loads
    const uint64_t now = pool_->env()->MonotonicNs();
    const uint64_t start = Govern(state, now);
    if (start > now) {
      loop->RunAfter(start - now, [this, state] { Pump(state); });  // over the limit: delayed
      return;
    }
  }
  Pump(state);
}

uint64_t VolumeImpl::Govern(RequestState* state, uint64_t now_ns) {
  const IoRequest& r = *state->request;
  state->counted = governor_->count.load(std::memory_order_relaxed);
  state->submit_ns = now_ns;
  if (state->counted) {
    governor_->counters.Started(now_ns);
  }
  if (governor_->enforce.load(std::memory_order_relaxed)) {
    return governor_->limiter.Admit(now_ns, r.offset_bytes, r.length_bytes, &state->counted_ops);
  }
  state->counted_ops = (r.length_bytes + (256 << 10) - 1) >> 18;  // 256 KiB units, unmerged
  return now_ns;
}

// Starts pieces while there is room; finishes the request when everything is done.
// Pieces that complete without I/O are finished in this loop (no recursion).
void VolumeImpl::Pump(RequestState* state) {
  const IoRequest::Kind kind = state->request->kind;
  const bool zeroing = kind == IoRequest::Kind::kTrim || kind == IoRequest::Kind::kWriteZeroes;
  while (state->error.ok() && state->next_offset < state->end_offset &&
         state->active < internal::kMaxPiecesInFlight) {
    if (zeroing && !SkipUnmapped(state)) {
      break;  // nothing left that is mapped, or the map failed (state->error)
    }
    int slot = __builtin_ctz(~state->busy_mask);
    STRATA_CHECK(slot < static_cast<int>(internal::kMaxPiecesInFlight));
    state->busy_mask |= 1u << slot;
    state->active++;
    Piece* p = &state->pieces[slot];
    uint64_t pos = state->next_offset;
    uint64_t chunk = pos / chunk_size_;
    uint64_t piece_end = std::min(state->end_offset, (chunk + 1) * chunk_size_);
    *p = Piece{};
    p->request = state;
    p->chunk = chunk;
    p->offset_in_chunk = static_cast<uint32_t>(pos - chunk * chunk_size_);
    p->length = static_cast<uint32_t>(piece_end - pos);
    p->data = state->request->data == nullptr
                  ? nullptr
                  : state->request->data + (pos - state->request->offset_bytes);
    state->next_offset = piece_end;
    if (StartPiece(p) == Next::kDone) {
      state->busy_mask &= ~(1u << slot);
      state->active--;
    }
  }
  if (state->active > 0 || (state->error.ok() && state->next_offset < state->end_offset)) {
    return;
  }
  IoRequest* request = state->request;
  EventLoop* loop = state->loop;
  Status status = state->error;
  if (state->counted) {
    governor_->counters.Finished(request->kind == IoRequest::Kind::kWrite, request->length_bytes,
                                 state->counted_ops, state->submit_ns, pool_->env()->MonotonicNs());
  }
  FreeState(state);
  if (status.ok() && (request->flags & IoRequest::kFua) != 0) {
    pool_->RequestCommit(loop, [request](const Status& st) { request->callback(request, st); });
    return;
  }
  request->callback(request, status);
}

// A trim or write-zeroes changes nothing in a chunk that reads as zeros already (StartZero finds
// no version and is done): the request jumps to the next chunk that has one, so that its cost
// grows with the chunks mapped in its range, not with the range's length (an import's zero run
// over a 64 TiB volume). A write racing with the request may map a skipped chunk: the two were
// in flight together, so either order is allowed. False when nothing is left to do.
bool VolumeImpl::SkipUnmapped(RequestState* state) {
  const uint64_t first = state->next_offset / chunk_size_;
  const uint64_t end = (state->end_offset + chunk_size_ - 1) / chunk_size_;
  if (end - first < 2) {
    return true;  // one chunk: its piece looks the chunk up anyway
  }
  std::vector<std::pair<uint64_t, Version>> mapped;
  uint64_t stop = end;
  {
    MutexLock lock(&pool_->mu());
    Status s = pool_->MappedChunksLocked(lineage_, first, end, head_epoch(), 1, &mapped, &stop);
    if (!s.ok()) {
      state->error = s;
      return false;
    }
  }
  // Nothing mapped before mapped[0] (or before `stop` when nothing was found: the scan may stop
  // early, e.g. past an overlay erase).
  const uint64_t next = mapped.empty() ? stop : mapped[0].first;
  if (next >= end) {
    state->next_offset = state->end_offset;
    return false;
  }
  state->next_offset = std::max(state->next_offset, next * chunk_size_);
  return true;
}

void VolumeImpl::PieceFinished(Piece* piece, const Status& status) {
  RequestState* state = piece->request;
  if (!status.ok() && state->error.ok()) {
    state->error = status;
  }
  int slot = static_cast<int>(piece - state->pieces);
  STRATA_CHECK((state->busy_mask & (1u << slot)) != 0 && state->active > 0);  // finished once
  state->busy_mask &= ~(1u << slot);
  state->active--;
  Pump(state);
}

VolumeImpl::Next VolumeImpl::StartPiece(Piece* piece) {
  Next next;
  switch (piece->request->request->kind) {
    case IoRequest::Kind::kRead:
      next = StartRead(piece);
      break;
    case IoRequest::Kind::kWrite:
      next = StartWrite(piece);
      break;
    default:
      next = StartZero(piece);
      break;
  }
  return next == Next::kQueued ? Next::kIo : next;  // either way the piece is under way
}

void VolumeImpl::RetryPiece(void* arg) {
  auto* piece = static_cast<Piece*>(arg);
  VolumeImpl* volume = piece->request->volume;
  if (volume->StartPiece(piece) == Next::kDone) {
    volume->PieceFinished(piece, piece->request->error);
  }
}

bool VolumeImpl::LockAndFind(Piece* p, bool exclusive, Result<std::optional<Version>>* found) {
  const ChunkMap::Waiter waiter{p->request->loop, &VolumeImpl::RetryPiece, p};
  if (!pool_->chunk_map().LockAndFindOwn(lineage_, p->chunk, exclusive, p->epoch, waiter, found)) {
    return false;
  }
  if (found->ok() && !found->value() && chain_.size() > 1) {
    *found = pool_->NewestInChain(chain_, p->chunk, p->epoch, /*from=*/1);
  }
  return true;
}

bool VolumeImpl::EnterMutation(Piece* p) {
  mutations_in_flight_.fetch_add(1);
  if (!barrier_.load()) {
    return true;
  }
  LeaveMutation();  // a snapshot is draining this volume: wait outside, queued
  const ChunkMap::Waiter waiter{p->request->loop, &VolumeImpl::RetryPiece, p};
  MutexLock lock(&barrier_mu_);
  if (barrier_.load()) {
    barrier_waiters_.push_back(waiter);
  } else {
    waiter.loop->Post([waiter] { waiter.fn(waiter.arg); });  // lifted meanwhile: retry now
  }
  return false;
}

void VolumeImpl::set_barrier_locked(bool on) {
  barrier_.store(on);
  if (on) {
    return;
  }
  std::vector<ChunkMap::Waiter> waiters;
  {
    MutexLock lock(&barrier_mu_);
    waiters.swap(barrier_waiters_);
  }
  for (const ChunkMap::Waiter& w : waiters) {
    w.loop->Post([w] { w.fn(w.arg); });
  }
}

void VolumeImpl::LeaveMutation() {
  const uint32_t before = mutations_in_flight_.fetch_sub(1);
  STRATA_CHECK(before > 0);
  if (before == 1 && barrier_.load()) {
    MutexLock lock(&pool_->mu());
    pool_->NotifyDrainedLocked();
  }
}

void VolumeImpl::LeaveMutationLocked() {
  const uint32_t before = mutations_in_flight_.fetch_sub(1);
  STRATA_CHECK(before > 0);
  if (before == 1 && barrier_.load()) {
    pool_->NotifyDrainedLocked();
  }
}

void VolumeImpl::Unlock(Piece* piece) {
  pool_->chunk_map().Unlock(lineage_, piece->chunk, piece->exclusive);
  if (piece->exclusive) {
    LeaveMutation();
  }
}

void VolumeImpl::UnlockLocked(Piece* piece) {
  pool_->chunk_map().Unlock(lineage_, piece->chunk, piece->exclusive);
  if (piece->exclusive) {
    LeaveMutationLocked();
  }
}

// ---- reads

VolumeImpl::Next VolumeImpl::StartRead(Piece* p) {
  p->exclusive = false;
  p->epoch = head_epoch_.load(std::memory_order_relaxed);
  Result<std::optional<Version>> found = std::optional<Version>();
  if (!LockAndFind(p, /*exclusive=*/false, &found)) {
    return Next::kQueued;
  }
  if (!found.ok() || !*found || (*found)->value.tombstone()) {
    Unlock(p);
    if (!found.ok()) {
      p->request->error = found.status();
    } else {
      std::memset(p->data, 0, p->length);  // hole or trimmed: zeros, no I/O
      p->request->request->hole_bytes += p->length;
    }
    return Next::kDone;
  }
  std::optional<Version> v = *found;
  if (v->value.partial()) {  // rare: the filler's state is the pool's
    MutexLock lock(&pool_->mu());
    auto resolved = ResolvePartialLocked(p, *v);
    if (!resolved.ok() || !*resolved) {
      UnlockLocked(p);
      p->request->error = resolved.ok() ? p->request->error : resolved.status();
      return resolved.ok() ? Next::kQueued : Next::kDone;  // queued: retried once filled
    }
    v = *resolved;
  }
  p->target_phys = v->value.phys;
  if (PieceIsAligned(*p)) {
    Issue(p, Piece::Step::kRead, IoOp::Kind::kRead, p->target_phys, p->offset_in_chunk, p->length,
          p->data);
    return Next::kIo;
  }
  p->cover_offset = p->offset_in_chunk / kIoAlign * kIoAlign;
  uint32_t cover_end = (p->offset_in_chunk + p->length + kIoAlign - 1) / kIoAlign * kIoAlign;
  p->cover_length = cover_end - p->cover_offset;
  p->bounce_bytes = p->cover_length;
  p->bounce = p->request->loop->TakeBuffer(p->bounce_bytes);
  Issue(p, Piece::Step::kRead, IoOp::Kind::kRead, p->target_phys, p->cover_offset, p->cover_length,
        p->bounce);
  return Next::kIo;
}

Result<std::optional<Version>> VolumeImpl::ResolvePartialLocked(Piece* p, const Version& partial) {
  const uint32_t mask = UnitMask(p->offset_in_chunk, p->length, pool_->unit_bytes());
  const uint32_t have = partial.value.present & mask;
  if (have == mask) {
    return std::optional<Version>(partial);
  }
  if (have != 0) {
    if (!pool_->latched_locked().ok()) {
      return pool_->latched_locked();  // the filler stopped with the pool
    }
    pool_->WaitForFillLocked(lineage_, p->chunk, {p->request->loop, &VolumeImpl::RetryPiece, p});
    return std::optional<Version>();
  }
  STRATA_ASSIGN_OR_RETURN(std::optional<Version> pred,
                          pool_->NewestLocked(lineage_, p->chunk, partial.birth - 1));
  STRATA_CHECK(pred && !pred->value.tombstone() && !pred->value.partial());
  return pred;
}

// ---- writes

// Decides where the piece's bytes go (docs/design.md §2 write table). REQUIRES: pool mutex.
std::optional<ChunkAllocator::Grant> VolumeImpl::AllocateBeforePlan(
    const Piece* p, const std::optional<Version>& current) {
  const bool data_here = current && !current->value.tombstone();
  if (data_here && !current->inherited &&
      current->birth > floor_epoch_.load(std::memory_order_acquire)) {
    return std::nullopt;  // the head's own chunk: written in place
  }
  const bool full = p->offset_in_chunk == 0 && p->length == chunk_size_;
  return pool_->space().Allocate(/*prefer_dirty=*/full || data_here);
}

Status VolumeImpl::PlanWriteLocked(Piece* p, const std::optional<Version>& current,
                                   std::optional<ChunkAllocator::Grant>* early, bool* wait_fill) {
  const bool data_here = current && !current->value.tombstone();
  const uint32_t unit = pool_->unit_bytes();
  const bool unit_aligned = p->offset_in_chunk % unit == 0 && p->length % unit == 0;
  const uint32_t mask = UnitMask(p->offset_in_chunk, p->length, unit);
  const uint64_t floor = floor_epoch_.load(std::memory_order_acquire);
  if (data_here && !current->inherited && current->birth > floor) {
    p->target_phys = current->value.phys;  // owned by the head alone: overwrite in place
    pool_->space().ClearZeroUnits(p->target_phys, mask);  // these units change
    if (current->value.partial()) {
      if (unit_aligned) {
        p->units = mask;  // whole units: present once written
      } else {
        *wait_fill = (current->value.present & mask) != mask;  // edges would read absent units
      }
    }
    return Status::OK();
  }
  // Partial versions belong to the head alone: what is shared is whole.
  STRATA_CHECK(!data_here || !current->value.partial());
  if (current && current->value.tombstone() && !current->inherited && current->birth > floor &&
      current->birth != p->epoch) {
    p->replaces_birth = current->birth;  // seen by no snapshot: it must not outlive this write
  }
  const bool full = p->offset_in_chunk == 0 && p->length == chunk_size_;
  const bool sub_chunk = data_here && !full && unit_aligned && pool_->MayAddPartialLocked(lineage_);
  // A partial version writes a few units of its chunk, a copy-on-write or a full write all of it:
  // a chunk whose blocks the host file system already holds takes its fast overwrite path (no
  // block allocation, no exclusive inode lock).
  std::optional<ChunkAllocator::Grant> grant = std::exchange(*early, std::nullopt);
  if (!grant) {  // none allocated before the plan (or the pool was full then): try now
    grant = pool_->space().Allocate(/*prefer_dirty=*/full || data_here);
  }
  if (!grant) {
    return Status::NoSpace("pool is full: no free chunk for a write to " + id_);
  }
  p->allocated = true;
  p->target_phys = grant->phys;
  p->clean = grant->clean;
  if (sub_chunk) {
    p->partial_new = true;  // shared: copy on write the written units only, fill the rest later
    p->units = mask;
  } else if (data_here) {
    p->has_source = true;  // shared with an older epoch: copy-on-write of the whole chunk
    p->source_phys = current->value.phys;
  }
  return Status::OK();
}

VolumeImpl::Next VolumeImpl::LockForMutation(Piece* p, Result<std::optional<Version>>* found) {
  if (pool_->latched()) {
    MutexLock lock(&pool_->mu());
    p->request->error = pool_->latched_locked();
    return Next::kDone;
  }
  if (!EnterMutation(p)) {
    return Next::kQueued;  // a snapshot is draining this volume's writes
  }
  // The head cannot move now: a snapshot drains this mutation first.
  p->epoch = head_epoch_.load(std::memory_order_relaxed);
  if (!LockAndFind(p, /*exclusive=*/true, found)) {
    LeaveMutation();  // counted in again when the retry runs
    return Next::kQueued;
  }
  p->exclusive = true;
  pool_->NoteMutation();
  return Next::kIo;
}

bool VolumeImpl::InPlaceNoPlan(const std::optional<Version>& current) const {
  return current && !current->value.tombstone() && !current->value.partial() &&
         !current->inherited && current->birth > floor_epoch_.load(std::memory_order_acquire);
}

VolumeImpl::Next VolumeImpl::StartWrite(Piece* p) {
  Result<std::optional<Version>> current = std::optional<Version>();
  if (Next next = LockForMutation(p, &current); next != Next::kIo) {
    return next;
  }
  if (current.ok() && InPlaceNoPlan(*current)) {
    // The common case on a written volume: the chunk is the head's, whole. Nothing to allocate
    // or publish; the chunk lock keeps the version in place until the write is done.
    p->target_phys = (*current)->value.phys;
    pool_->space().ClearZeroUnits(p->target_phys,
                                  UnitMask(p->offset_in_chunk, p->length, pool_->unit_bytes()));
    IssueWrite(p);
    return Next::kIo;
  }
  std::optional<ChunkAllocator::Grant> early;
  if (current.ok()) {
    early = AllocateBeforePlan(p, *current);  // no allocation under the pool mutex
  }
  MutexLock lock(&pool_->mu());
  bool wait_fill = false;
  Status s = current.ok() ? PlanWriteLocked(p, *current, &early, &wait_fill) : current.status();
  if (early) {
    pool_->space().ReturnUnmapped(early->phys);  // the plan wrote in place after all
  }
  if (MayWaitForCommitLocked(p, s)) {
    ReleaseForCommitLocked(p);
    lock.Unlock();
    return WaitForCommit(p);
  }
  if (!s.ok()) {
    UnlockLocked(p);
    p->request->error = s;
    return Next::kDone;
  }
  if (wait_fill) {
    return WaitForFillLocked(p);
  }
  lock.Unlock();  // the chunk lock keeps the plan valid; no I/O under the pool mutex
  IssueWrite(p);
  return Next::kIo;
}

// An aligned piece's encryption on the pool's cipher worker (store/cipher_worker.h), then its
// write issued back on the piece's loop. False when there is no worker or its queue is full:
// the caller encrypts inline. The piece is the loop's again only once posted back.
bool VolumeImpl::SealElsewhere(Piece* p) {
  CipherWorker* worker = pool_->cipher_worker();
  if (worker == nullptr) {
    return false;
  }
  return worker->TrySubmit([this, p] {
    Status s = p->request->cipher->Encrypt(UnitAt(p, p->offset_in_chunk), p->data,
                                           static_cast<std::byte*>(p->bounce), p->length);
    p->request->loop->Post([this, p, s] {
      if (!s.ok()) {
        FailWrite(p, s);
        return;
      }
      Issue(p, Piece::Step::kWrite, IoOp::Kind::kWrite, p->target_phys, p->offset_in_chunk,
            p->length, p->bounce);
    });
  });
}

void VolumeImpl::IssueWrite(Piece* p) {
  EventLoop* loop = p->request->loop;
  const bool full = p->offset_in_chunk == 0 && p->length == chunk_size_;
  const bool in_place = !p->allocated;
  BlockCipher* cipher = p->request->cipher;
  if ((in_place || full || p->partial_new || (p->clean && !p->has_source)) && PieceIsAligned(*p)) {
    void* buf = p->data;
    if (cipher != nullptr && !Zeroing(p)) {  // zeros stay zeros on the media: holes
      p->bounce_bytes = p->length;
      p->bounce = loop->TakeBuffer(p->bounce_bytes);
      if (p->length >= kSealElsewhereBytes && SealElsewhere(p)) {
        return;  // the worker encrypts; the write is issued on this loop after
      }
      Status s = cipher->Encrypt(UnitAt(p, p->offset_in_chunk), p->data,
                                 static_cast<std::byte*>(p->bounce), p->length);
      if (!s.ok()) {
        FailWrite(p, s);
        return;
      }
      buf = p->bounce;
    }
    Issue(p, Piece::Step::kWrite, IoOp::Kind::kWrite, p->target_phys, p->offset_in_chunk, p->length,
          buf);
    return;
  }
  if (in_place || p->partial_new || (p->clean && !p->has_source)) {
    // Only the aligned cover of the piece is written. In place, the cover's edges are read
    // first; in a clean new chunk they are zeros; a partial version's cover is whole units.
    p->cover_offset = p->offset_in_chunk / kIoAlign * kIoAlign;
    uint32_t cover_end = (p->offset_in_chunk + p->length + kIoAlign - 1) / kIoAlign * kIoAlign;
    p->cover_length = cover_end - p->cover_offset;
    p->bounce_bytes = p->cover_length;
    p->bounce = loop->TakeBuffer(p->bounce_bytes);
    if (in_place) {
      Issue(p, Piece::Step::kRmwRead, IoOp::Kind::kRead, p->target_phys, p->cover_offset,
            p->cover_length, p->bounce);
      return;
    }
    std::memset(p->bounce, 0, p->bounce_bytes);
    std::memcpy(static_cast<std::byte*>(p->bounce) + (p->offset_in_chunk - p->cover_offset),
                p->data, p->length);
    if (Status s = cipher == nullptr ? Status::OK()
                                     : Seal(p, static_cast<std::byte*>(p->bounce), p->cover_offset,
                                            p->cover_length);
        !s.ok()) {
      FailWrite(p, s);
      return;
    }
    Issue(p, Piece::Step::kWrite, IoOp::Kind::kWrite, p->target_phys, p->cover_offset,
          p->cover_length, p->bounce);
    return;
  }
  // A whole new chunk: copy-on-write source, or zeros (dirty chunk or unaligned full piece).
  p->cover_offset = 0;
  p->cover_length = chunk_size_;
  p->bounce_bytes = chunk_size_;
  p->bounce = loop->TakeBuffer(p->bounce_bytes);
  if (p->has_source && !full) {
    Issue(p, Piece::Step::kCowRead, IoOp::Kind::kRead, p->source_phys, 0, chunk_size_, p->bounce);
    return;
  }
  std::memset(p->bounce, 0, p->bounce_bytes);
  std::memcpy(static_cast<std::byte*>(p->bounce) + p->offset_in_chunk, p->data, p->length);
  if (cipher != nullptr) {  // the rest of the chunk stays zeros: holes
    uint32_t at = 0;
    uint32_t length = 0;
    DataCover(p, &at, &length);
    if (Status s = Seal(p, static_cast<std::byte*>(p->bounce) + at, at, length); !s.ok()) {
      FailWrite(p, s);
      return;
    }
  }
  Issue(p, Piece::Step::kWrite, IoOp::Kind::kWrite, p->target_phys, 0, chunk_size_, p->bounce);
}

// ---- write-zeroes and trim

// A whole chunk zeroed or trimmed, deallocation allowed: its version goes. REQUIRES: pool mutex;
// the piece holds the chunk exclusively at its head.
Status VolumeImpl::DeallocateLocked(Piece* p, const Version& v) {
  const MapKey key{lineage_, p->chunk, p->epoch};
  if (v.inherited || v.birth <= floor_epoch_) {
    pool_->PutVersionLocked(key, MapValue{0, MapValue::kTombstone});  // shared: hide it
    return Status::OK();
  }
  // The version is the head's alone. If anything older shows through (a snapshot's version or a
  // clone source's), hide it with a tombstone; else forget the chunk.
  STRATA_ASSIGN_OR_RETURN(std::optional<Version> older,
                          pool_->NewestLocked(lineage_, p->chunk, v.birth - 1));
  pool_->EraseVersionLocked(MapKey{lineage_, p->chunk, v.birth});
  if (v.value.partial()) {
    pool_->DropPartialLocked(lineage_, p->chunk);
  }
  if (older) {
    pool_->PutVersionLocked(key, MapValue{0, MapValue::kTombstone});
  }
  pool_->space().FreeAfterCommit(v.value.phys, /*by_trim=*/true);
  return Status::OK();
}

VolumeImpl::Next VolumeImpl::StartZero(Piece* p) {
  const IoRequest& r = *p->request->request;
  const uint64_t chunk_start = p->chunk * chunk_size_;
  const bool whole =
      p->offset_in_chunk == 0 &&
      (p->length == chunk_size_ || chunk_start + p->length >= p->request->volume_size);
  const bool may_deallocate =
      r.kind == IoRequest::Kind::kTrim || (r.flags & IoRequest::kNoHole) == 0;
  Result<std::optional<Version>> current = std::optional<Version>();
  if (Next next = LockForMutation(p, &current); next != Next::kIo) {
    return next;
  }
  MutexLock lock(&pool_->mu());
  Status s = current.status();
  if (current.ok() && (!*current || (*current)->value.tombstone())) {
    UnlockLocked(p);  // already reads as zeros
    return Next::kDone;
  }
  if (current.ok() && whole && may_deallocate) {
    s = DeallocateLocked(p, **current);
    UnlockLocked(p);
    p->request->error = s.ok() ? p->request->error : s;
    return Next::kDone;
  }
  bool wait_fill = false;
  if (current.ok()) {
    p->data = const_cast<std::byte*>(ZeroSource()) + p->offset_in_chunk;
    std::optional<ChunkAllocator::Grant> none;  // rare (a partial zeroing): allocated under mu_
    s = PlanWriteLocked(p, *current, &none, &wait_fill);
  }
  if (MayWaitForCommitLocked(p, s)) {
    ReleaseForCommitLocked(p);
    lock.Unlock();
    return WaitForCommit(p);
  }
  if (!s.ok()) {
    UnlockLocked(p);
    p->request->error = s;
    return Next::kDone;
  }
  if (wait_fill) {
    return WaitForFillLocked(p);
  }
  // BLOCK_STATUS may call the units this piece zeroes entirely ZERO from now on (requests in
  // flight together have no order; once the write is done, hint and bytes agree).
  pool_->space().AddZeroUnits(p->target_phys,
                              CoveredUnitMask(p->offset_in_chunk, p->length, pool_->unit_bytes()));
  lock.Unlock();
  IssueWrite(p);
  return Next::kIo;
}

// A full pool with chunks freed by trims (or deletes) that are not committed yet: those cannot be
// reused before their commit (a crash would bring back mappings to them), so the piece asks for
// the commit now and retries, instead of failing with ENOSPC until the next timed commit.
// Bounded: a piece waits for at most kMaxCommitWaits commits.
bool VolumeImpl::MayWaitForCommitLocked(const Piece* p, const Status& s) const {
  return s.code() == Status::Code::kNoSpace && p->commit_waits < internal::kMaxCommitWaits &&
         pool_->space().FreesPending();
}

// The piece gives its chunk back before it waits. REQUIRES: pool mutex; the piece holds its chunk
// exclusively.
void VolumeImpl::ReleaseForCommitLocked(Piece* p) {
  UnlockLocked(p);
  p->exclusive = false;
  p->units = 0;
  p->replaces_birth = 0;
  p->commit_waits++;
}

// Asks for a commit and retries the piece after it. Without the pool mutex.
VolumeImpl::Next VolumeImpl::WaitForCommit(Piece* p) {
  pool_->RequestCommit(p->request->loop, [this, p](const Status& st) {
    if (!st.ok()) {
      PieceFinished(p, st);
    } else if (StartPiece(p) == Next::kDone) {
      PieceFinished(p, p->request->error);
    }
  });
  return Next::kIo;
}

// The piece is queued for the filler, urged to take its chunk next, and retried once the chunk
// is whole. REQUIRES: pool mutex; the piece holds its chunk exclusively.
VolumeImpl::Next VolumeImpl::WaitForFillLocked(Piece* p) {
  UnlockLocked(p);
  p->exclusive = false;
  p->units = 0;
  pool_->WaitForFillLocked(lineage_, p->chunk, {p->request->loop, &VolumeImpl::RetryPiece, p});
  return Next::kQueued;
}

Status VolumeImpl::MarkUnitsPresentLocked(Piece* p) {
  STRATA_ASSIGN_OR_RETURN(std::optional<Version> v,
                          pool_->NewestOwnLocked(lineage_, p->chunk, p->epoch));
  // The chunk lock was held since the plan: the version is the one written into.
  STRATA_CHECK(v && v->value.partial() && v->value.phys == p->target_phys);
  MapValue value = v->value;
  value.present |= p->units;
  if (value.present == pool_->all_units()) {
    value = MapValue{value.phys, 0, 0};  // every unit written: whole, nothing to fill
    pool_->DropPartialLocked(lineage_, p->chunk);
  }
  pool_->PutVersionLocked(MapKey{lineage_, p->chunk, v->birth}, value);
  return Status::OK();
}

// ---- I/O plumbing

void VolumeImpl::Issue(Piece* p, Piece::Step step, IoOp::Kind kind, uint64_t phys, uint32_t offset,
                       uint32_t length, void* buf) {
  STRATA_CHECK(offset + length <= chunk_size_);
  // A piece does one I/O, or a read of the old data (read-modify-write, copy-on-write) then
  // the write: no other sequence is valid.
  const bool first = p->step == Piece::Step::kIdle && step != Piece::Step::kIdle;
  const bool second = (p->step == Piece::Step::kRmwRead || p->step == Piece::Step::kCowRead) &&
                      step == Piece::Step::kWrite;
  STRATA_CHECK(first || second);
  p->step = step;
  p->op = IoOp{};
  p->op.kind = kind;
  p->op.file = pool_->space().FileOf(phys);
  p->op.buf = buf;
  p->op.length_bytes = length;
  p->op.offset_bytes = pool_->space().OffsetOf(phys) + offset;
  p->op.done = &VolumeImpl::OnIo;
  p->op.ctx = p;
  p->request->loop->engine()->Submit(&p->op);
}

void VolumeImpl::OnIo(IoOp* op) {
  auto* p = static_cast<Piece*>(op->ctx);
  p->request->volume->Continue(p);
}

void VolumeImpl::ReleaseBounce(Piece* p) {
  if (p->bounce != nullptr) {
    p->request->loop->GiveBuffer(p->bounce, p->bounce_bytes);
    p->bounce = nullptr;
  }
}

bool VolumeImpl::Zeroing(const Piece* p) {
  return p->request->request->kind != IoRequest::Kind::kWrite;  // write-zeroes or trim
}

uint64_t VolumeImpl::UnitAt(const Piece* p, uint32_t offset_in_chunk) const {
  static_assert(kIoAlign == BlockCipher::kUnitBytes, "every data-file I/O is whole cipher units");
  return (p->chunk * chunk_size_ + offset_in_chunk) / BlockCipher::kUnitBytes;
}

void VolumeImpl::DataCover(const Piece* p, uint32_t* at, uint32_t* length) {
  *at = p->offset_in_chunk / kIoAlign * kIoAlign;
  *length = (p->offset_in_chunk + p->length + kIoAlign - 1) / kIoAlign * kIoAlign - *at;
}

Status VolumeImpl::Seal(Piece* p, std::byte* buf, uint32_t at, uint32_t length) {
  STRATA_CHECK(IsAligned(at) && IsAligned(length));
  BlockCipher* cipher = p->request->cipher;
  const bool zeroing = Zeroing(p);
  const uint32_t end = at + length;
  uint32_t run = at;  // start of the units still to encrypt
  for (uint32_t u = at; u < end; u += kIoAlign) {
    const bool whole_zero =
        zeroing && u >= p->offset_in_chunk && u + kIoAlign <= p->offset_in_chunk + p->length;
    if (whole_zero) {
      if (u > run) {
        STRATA_RETURN_IF_ERROR(
            cipher->Encrypt(UnitAt(p, run), buf + (run - at), buf + (run - at), u - run));
      }
      run = u + kIoAlign;
    }
  }
  if (end > run) {
    STRATA_RETURN_IF_ERROR(
        cipher->Encrypt(UnitAt(p, run), buf + (run - at), buf + (run - at), end - run));
  }
  return Status::OK();
}

Status VolumeImpl::MergeInto(Piece* p) {
  BlockCipher* cipher = p->request->cipher;
  auto* bounce = static_cast<std::byte*>(p->bounce);
  uint32_t at = p->cover_offset;  // without a cipher: no more than the piece's own bytes
  uint32_t length = p->cover_length;
  if (cipher != nullptr) {
    DataCover(p, &at, &length);  // the units the piece touches: the rest stays as it is stored
    STRATA_CHECK(at >= p->cover_offset && at + length <= p->cover_offset + p->cover_length);
    std::byte* units = bounce + (at - p->cover_offset);
    STRATA_RETURN_IF_ERROR(cipher->Decrypt(UnitAt(p, at), units, units, length));
  }
  std::memcpy(bounce + (p->offset_in_chunk - p->cover_offset), p->data, p->length);
  return cipher == nullptr ? Status::OK() : Seal(p, bounce + (at - p->cover_offset), at, length);
}

void VolumeImpl::FailWrite(Piece* p, const Status& s) {
  // As if the write had been issued and failed: Continue then releases what the piece holds.
  STRATA_CHECK(p->step == Piece::Step::kIdle || p->step == Piece::Step::kRmwRead ||
               p->step == Piece::Step::kCowRead);
  (void)s;  // OpenSSL's failure has no errno: the write reports EIO
  p->step = Piece::Step::kWrite;
  p->op = IoOp{};
  p->op.kind = IoOp::Kind::kWrite;
  p->op.result = -EIO;
  p->request->loop->Defer([p] { p->request->volume->Continue(p); });
}

// Runs when a piece's I/O completes: the next step, or publication and release.
void VolumeImpl::Continue(Piece* p) {
  Status s;
  if (p->op.result < 0) {
    s = Status::FromErrno(
        "data " + std::string(p->op.kind == IoOp::Kind::kRead ? "read" : "write") + " of " + id_,
        p->op.result);
  } else if (p->step == Piece::Step::kRmwRead || p->step == Piece::Step::kCowRead) {
    s = MergeInto(p);
    if (s.ok()) {
      Issue(p, Piece::Step::kWrite, IoOp::Kind::kWrite, p->target_phys, p->cover_offset,
            p->cover_length, p->bounce);
      return;
    }
  } else if (p->step == Piece::Step::kRead && p->bounce != nullptr) {
    if (BlockCipher* cipher = p->request->cipher; cipher != nullptr) {
      s = cipher->Decrypt(UnitAt(p, p->cover_offset), static_cast<std::byte*>(p->bounce),
                          static_cast<std::byte*>(p->bounce), p->cover_length);
    }
    std::memcpy(p->data,
                static_cast<std::byte*>(p->bounce) + (p->offset_in_chunk - p->cover_offset),
                p->length);
  } else if (p->step == Piece::Step::kRead && p->request->cipher != nullptr) {
    s = p->request->cipher->Decrypt(UnitAt(p, p->offset_in_chunk), p->data, p->data, p->length);
  }
  ReleaseBounce(p);
  if (!p->allocated && (p->units == 0 || !s.ok())) {
    Unlock(p);  // a read, or a write in place: nothing to publish
    PieceFinished(p, s);
    return;
  }
  {
    MutexLock lock(&pool_->mu());
    STRATA_CHECK(p->exclusive && p->epoch == head_epoch_.load());  // published at its own head
    if (p->allocated) {
      if (s.ok()) {
        // Data first, then the mapping (docs/durability.md): the write has completed.
        pool_->PutVersionLocked(MapKey{lineage_, p->chunk, p->epoch},
                                p->partial_new
                                    ? MapValue{p->target_phys, MapValue::kPartial, p->units}
                                    : MapValue{p->target_phys, 0, 0});
        if (p->partial_new) {
          pool_->AddPartialLocked(lineage_, p->chunk);
        }
        if (p->replaces_birth != 0) {
          pool_->EraseVersionLocked(MapKey{lineage_, p->chunk, p->replaces_birth});
        }
      } else {
        pool_->space().ReturnUnmapped(p->target_phys);
      }
    } else if (p->units != 0 && s.ok()) {
      s = MarkUnitsPresentLocked(p);
    }
    UnlockLocked(p);
  }
  PieceFinished(p, s);
}

}  // namespace strata
