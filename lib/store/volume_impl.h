// VolumeImpl: the data path. A request is cut into pieces, one per logical chunk; each piece
// locks its chunk (ChunkMap: queued when busy), resolves its mapping through the chunk map without
// the pool mutex, issues its I/O through the submitting loop's engine, and publishes new mappings
// to the overlay. Only a piece that allocates, or touches a partial version, takes the pool mutex.
// docs/design.md §4.
#ifndef STRATA_STORE_VOLUME_IMPL_H_
#define STRATA_STORE_VOLUME_IMPL_H_

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "strata/cipher.h"
#include "strata/pool.h"
#include "strata/volume.h"

#include "meta/meta_store.h"
#include "store/pool_impl.h"
#include "store/qos.h"

namespace strata {

class PoolImpl;
class VolumeImpl;

namespace internal {

// The synchronous calls' requests (VolumeImpl and EncryptedHandle build the same ones).
inline IoRequest ReadRequest(uint64_t offset_bytes, std::span<std::byte> out) {
  IoRequest r;
  r.kind = IoRequest::Kind::kRead;
  r.offset_bytes = offset_bytes;
  r.length_bytes = out.size();
  r.data = out.data();
  return r;
}
inline IoRequest WriteRequest(uint64_t offset_bytes, std::span<const std::byte> data, bool fua) {
  IoRequest r;
  r.kind = IoRequest::Kind::kWrite;
  r.flags = fua ? IoRequest::kFua : 0;
  r.offset_bytes = offset_bytes;
  r.length_bytes = data.size();
  r.data = const_cast<std::byte*>(data.data());  // only read from for writes
  return r;
}
inline IoRequest ZeroRequest(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole, bool fua) {
  IoRequest r;
  r.kind = IoRequest::Kind::kWriteZeroes;
  r.flags = (no_hole ? IoRequest::kNoHole : 0) | (fua ? IoRequest::kFua : 0);
  r.offset_bytes = offset_bytes;
  r.length_bytes = length_bytes;
  return r;
}
inline IoRequest TrimRequest(uint64_t offset_bytes, uint64_t length_bytes) {
  IoRequest r;
  r.kind = IoRequest::Kind::kTrim;
  r.offset_bytes = offset_bytes;
  r.length_bytes = length_bytes;
  return r;
}

constexpr uint32_t kMaxPiecesInFlight = 16;  // per request
constexpr uint8_t kMaxCommitWaits = 3;       // a write on a full pool waits for pending frees
constexpr uint32_t kMaxUnitsPerChunk = 32;   // sub-chunk units (partial versions, zero hints)

struct RequestState;

struct Piece {
  enum class Step : uint8_t { kIdle, kRead, kRmwRead, kCowRead, kWrite };
  RequestState* request = nullptr;
  uint64_t chunk = 0;            // logical chunk index
  uint64_t epoch = 0;            // the volume's head (or the snapshot's epoch) when it started
  uint32_t offset_in_chunk = 0;  // bytes
  uint32_t length = 0;           // bytes
  std::byte* data = nullptr;     // read destination or write source for this piece
  Step step = Step::kIdle;
  bool exclusive = false;
  bool allocated = false;       // target was granted for this write
  bool clean = false;           // the granted chunk reads as zeros
  bool has_source = false;      // copy-on-write from source_phys
  uint64_t replaces_birth = 0;  // a head-only tombstone born then: erased when this publishes
  bool partial_new = false;     // copy-on-write of these units only: publishes a partial version
  uint8_t commit_waits = 0;     // commits waited for to free trimmed chunks (full pool)
  uint32_t units = 0;           // units of a partial version this write makes present
  uint64_t target_phys = 0;
  uint64_t source_phys = 0;
  void* bounce = nullptr;
  uint32_t bounce_bytes = 0;
  uint32_t cover_offset = 0;  // aligned range of the chunk the I/O covers
  uint32_t cover_length = 0;
  IoOp op;
};

struct RequestState {
  VolumeImpl* volume = nullptr;
  BlockCipher* cipher = nullptr;  // an encrypted volume's handle: user data goes through it
  EventLoop* loop = nullptr;
  IoRequest* request = nullptr;
  uint64_t lineage = 0;
  uint64_t volume_size = 0;
  uint64_t next_offset = 0;
  uint64_t end_offset = 0;
  uint32_t active = 0;
  uint32_t busy_mask = 0;  // bit i: pieces[i] in use
  static_assert(kMaxPiecesInFlight <= 32, "busy_mask has a bit for every piece in flight");
  bool counted = false;  // a read or write the volume's governor counts
  uint64_t submit_ns = 0;
  uint64_t counted_ops = 0;
  Status error;
  Piece pieces[kMaxPiecesInFlight];
};

}  // namespace internal

// A volume (writable, at its lineage's head) or a snapshot (read-only, at a frozen epoch).
class VolumeImpl final : public Volume {
 public:
  // A volume; `floor_epoch`: see set_floor_locked. `governor` admits and counts its reads and
  // writes while it is active (limits enforced or metrics collected); a modify-volume reaches
  // open handles through it.
  // `chain`: PoolImpl::ChainLocked(info.lineage).
  VolumeImpl(PoolImpl* pool, const VolumeInfo& info, LineageChain chain, uint64_t floor_epoch,
             std::shared_ptr<VolumeGovernor> governor);
  // A snapshot: reads at its epoch; every mutation fails with ReadOnly.
  VolumeImpl(PoolImpl* pool, const SnapshotInfo& snapshot, LineageChain chain);
  ~VolumeImpl() override = default;

  // A snapshot, or any volume of a pool set read-only (Pool::SetReadOnly).
  bool read_only() const override;
  bool is_snapshot() const { return read_only_; }
  uint64_t lineage() const { return lineage_; }
  uint64_t head_epoch() const { return head_epoch_.load(std::memory_order_acquire); }

  // ---- Snapshot support; all REQUIRE the pool mutex. ----
  // Stops the process unless this thread holds the pool mutex; tells the analysis it does (the
  // pool calling these holds its own mutex, which the analysis cannot tie to pool_->mu()).
  void AssertPoolHeld() const ASSERT_CAPABILITY(pool_->mu()) { pool_->mu().AssertHeld(); }
  // While set, new mutations wait: their pieces are queued and retried when it is lifted (no
  // polling; a snapshot holds it for one I/O latency). The drain protocol
  // (EnterMutation): a mutation counts itself in, then looks at the barrier; the drainer sets the
  // barrier, then waits for the count to reach zero (both sequentially consistent: one of the two
  // sees the other). The last one out signals under the pool mutex, so the wait cannot miss it.
  void set_barrier_locked(bool on) REQUIRES(pool_->mu());
  uint32_t mutations_in_flight_locked() const REQUIRES(pool_->mu()) {
    return mutations_in_flight_.load();
  }
  // Takes effect for pieces that start afterwards (CreateSnapshots drains the others first).
  void set_head_epoch_locked(uint64_t epoch) REQUIRES(pool_->mu()) {
    head_epoch_.store(epoch, std::memory_order_release);
  }
  // The largest live snapshot epoch below the head (0: none). A version born after it belongs to
  // the head alone and is overwritten in place; older ones are copied on write.
  // Changed only while the volume is drained, so a mutation reads one value throughout.
  void set_floor_locked(uint64_t epoch) REQUIRES(pool_->mu()) {
    floor_epoch_.store(epoch, std::memory_order_release);
  }

  const std::string& id() const override { return id_; }
  uint64_t size_bytes() const override { return size_bytes_.load(std::memory_order_acquire); }
  uint32_t chunk_size_bytes() const override { return chunk_size_; }
  void SetSize(uint64_t size_bytes) { size_bytes_.store(size_bytes, std::memory_order_release); }

  // As stored (an encrypted volume's ciphertext: OpenOptions::ciphertext).
  Status Read(uint64_t offset_bytes, std::span<std::byte> out) override;
  Status Write(uint64_t offset_bytes, std::span<const std::byte> data, bool fua) override;
  Status WriteZeroes(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole, bool fua) override;
  Status Trim(uint64_t offset_bytes, uint64_t length_bytes) override;
  Status Flush() override;
  Result<std::vector<Extent>> BlockStatus(uint64_t offset_bytes, uint64_t length_bytes) override;
  void Submit(EventLoop* loop, IoRequest* request) override {
    SubmitThrough(nullptr, loop, request);
  }

  // Any request, its user data decrypted after reads and encrypted before writes with `cipher`
  // (null: as stored). Units a write covers only in part are decrypted, patched and encrypted
  // under the chunk's exclusive lock, so that concurrent writes to other bytes of a unit are kept.
  // Units a write-zeroes covers whole stay zeros on the media: holes (BlockCipher::Decrypt).
  void SubmitThrough(BlockCipher* cipher, EventLoop* loop, IoRequest* request);
  Status RunSync(BlockCipher* cipher, IoRequest* request);

 private:
  using Piece = internal::Piece;
  using RequestState = internal::RequestState;
  // kQueued: waiting for its chunk (the holder's unlock posts the retry to the piece's loop), for
  // a snapshot's barrier to lift, or for a partial chunk's fill: whoever ends the wait posts it.
  // Nothing polls.
  enum class Next { kDone, kIo, kQueued };

  // Counts a read or write and returns when its volume's limits let it start.
  uint64_t Govern(RequestState* state, uint64_t now_ns);
  Status Validate(const IoRequest& request) const;
  void Complete(EventLoop* loop, IoRequest* request, const Status& status);
  void Pump(RequestState* state);
  // Trim / write-zeroes: moves next_offset to the next chunk with a version. False when none is
  // left (or on an error, set in the state).
  bool SkipUnmapped(RequestState* state);
  void PieceFinished(Piece* piece, const Status& status);
  Next StartPiece(Piece* piece);
  Next StartRead(Piece* piece);
  // The prologue of every mutation, without the pool mutex: refuses on a latched pool, counts the
  // piece in (EnterMutation) and takes its chunk exclusively. kIo: go on.
  // *found: the chunk's version at the piece's epoch (looked up with the lock taken).
  Next LockForMutation(Piece* piece, Result<std::optional<Version>>* found);
  // False: a snapshot's barrier is up, and the piece is queued for a retry when it comes down.
  bool EnterMutation(Piece* piece);
  void LeaveMutation();
  void LeaveMutationLocked() REQUIRES(pool_->mu());
  // Takes the piece's chunk and finds its version at p->epoch (its own lineage in the same visit
  // to the chunk map's shard, then a clone's sources), or queues the piece's retry. False: queued.
  bool LockAndFind(Piece* piece, bool exclusive, Result<std::optional<Version>>* found);
  static void RetryPiece(void* piece);  // a queued piece's retry, posted by the unlock
  // Whether a write may go in place with no pool state at all: the chunk's version is whole and
  // the head's alone.
  bool InPlaceNoPlan(const std::optional<Version>& current) const;
  Next StartWrite(Piece* piece);
  Next StartZero(Piece* piece);
  Status DeallocateLocked(Piece* piece, const Version& current) REQUIRES(pool_->mu());
  // A chunk for a write that needs a new one (copy-on-write, first write), allocated before the
  // pool mutex is taken; nullopt when the write goes in place (or the pool is full: the plan
  // then says so). Without the pool mutex: the floor only falls while this mutation is in
  // flight (a snapshot drains it before the floor rises), so the plan may still find that the
  // write goes in place (then the chunk is returned), and never needs a chunk this missed.
  std::optional<ChunkAllocator::Grant> AllocateBeforePlan(const Piece* piece,
                                                          const std::optional<Version>& current);
  // Sets *wait_fill when the piece needs a partial version made whole first. `early`: a chunk
  // from AllocateBeforePlan, taken when the plan needs one (else left for the caller to return);
  // without one the plan allocates itself.
  Status PlanWriteLocked(Piece* piece, const std::optional<Version>& current,
                         std::optional<ChunkAllocator::Grant>* early, bool* wait_fill)
      REQUIRES(pool_->mu());
  // Where a read of a partial version goes: itself, its predecessor, or nowhere yet (mixed
  // units: the filler is urged and the piece retries). REQUIRES: pool mutex.
  Result<std::optional<Version>> ResolvePartialLocked(Piece* piece, const Version& partial)
      REQUIRES(pool_->mu());
  // Publishes the units an in-place write added to a partial version. REQUIRES: pool mutex.
  Status MarkUnitsPresentLocked(Piece* piece) REQUIRES(pool_->mu());
  Next WaitForFillLocked(Piece* piece) REQUIRES(pool_->mu());
  bool MayWaitForCommitLocked(const Piece* piece, const Status& status) const REQUIRES(pool_->mu());
  void ReleaseForCommitLocked(Piece* piece) REQUIRES(pool_->mu());
  Next WaitForCommit(Piece* piece);
  void IssueWrite(Piece* piece);
  void Issue(Piece* piece, Piece::Step step, IoOp::Kind kind, uint64_t phys, uint32_t offset,
             uint32_t length, void* buf);
  static void OnIo(IoOp* op);
  void Continue(Piece* piece);
  void ReleaseBounce(Piece* piece);
  // A write-zeroes or trim piece: its bytes come from ZeroSource, and whole units of it are left
  // zeros on the media (holes) rather than encrypted.
  static bool Zeroing(const Piece* piece);
  // An encrypted volume's data: the logical unit at `offset_in_chunk` of the piece's chunk.
  uint64_t UnitAt(const Piece* piece, uint32_t offset_in_chunk) const;
  // Encrypts [at, at + length) of the piece's chunk in place in `buf` (which holds that range),
  // except units a write-zeroes covers whole (left zeros: holes). REQUIRES: a cipher; aligned.
  Status Seal(Piece* piece, std::byte* buf, uint32_t at, uint32_t length);
  // The aligned cover of the piece's own bytes: [*at, *at + *length) of its chunk.
  static void DataCover(const Piece* piece, uint32_t* at, uint32_t* length);
  // A write that cannot be issued (the cipher failed): completes the piece as a failed write.
  void FailWrite(Piece* piece, const Status& status);
  // Aligned writes of at least this many bytes are encrypted on the pool's cipher worker.
  static constexpr uint32_t kSealElsewhereBytes = 32 << 10;
  bool SealElsewhere(Piece* piece);
  // A read-modify-write or copy-on-write's old data is in: merges the piece's bytes into it.
  Status MergeInto(Piece* piece);
  // Releases the piece's chunk (and its count as a mutation).
  void Unlock(Piece* piece);
  void UnlockLocked(Piece* piece) REQUIRES(pool_->mu());

  PoolImpl* pool_;
  const std::string id_;
  const uint64_t lineage_;
  const bool read_only_;
  const LineageChain chain_;  // where lookups go: this lineage, then a clone's sources
  std::atomic<uint64_t> head_epoch_;
  std::atomic<uint64_t> floor_epoch_{0};
  std::atomic<bool> barrier_{false};
  // Pieces held back by the barrier (at most the pieces in flight). A leaf mutex: lifting the
  // barrier clears it first, then takes this, so a piece that saw it up is queued here before
  // the lift looks, or sees it down and retries at once.
  Mutex barrier_mu_;
  std::vector<ChunkMap::Waiter> barrier_waiters_ GUARDED_BY(barrier_mu_);
  std::atomic<uint32_t> mutations_in_flight_{0};  // pieces counted in by EnterMutation
  std::atomic<uint64_t> size_bytes_;
  const uint32_t chunk_size_;
  const std::shared_ptr<VolumeGovernor> governor_;  // null for snapshots
};

// An encrypted volume or snapshot opened with its cipher (Pool::OpenVolume with
// OpenOptions::cipher): the shared VolumeImpl, every request going through the cipher. Handles
// opened as ciphertext share the same VolumeImpl and see what is stored.
class EncryptedHandle final : public Volume {
 public:
  EncryptedHandle(std::shared_ptr<VolumeImpl> inner, std::shared_ptr<BlockCipher> cipher)
      : inner_(std::move(inner)), cipher_(std::move(cipher)) {}

  const std::string& id() const override { return inner_->id(); }
  uint64_t size_bytes() const override { return inner_->size_bytes(); }
  uint32_t chunk_size_bytes() const override { return inner_->chunk_size_bytes(); }
  bool read_only() const override { return inner_->read_only(); }
  Status Read(uint64_t offset_bytes, std::span<std::byte> out) override {
    IoRequest r = internal::ReadRequest(offset_bytes, out);
    return inner_->RunSync(cipher_.get(), &r);
  }
  Status Write(uint64_t offset_bytes, std::span<const std::byte> data, bool fua) override {
    IoRequest r = internal::WriteRequest(offset_bytes, data, fua);
    return inner_->RunSync(cipher_.get(), &r);
  }
  Status WriteZeroes(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole,
                     bool fua) override {
    IoRequest r = internal::ZeroRequest(offset_bytes, length_bytes, no_hole, fua);
    return inner_->RunSync(cipher_.get(), &r);
  }
  Status Trim(uint64_t offset_bytes, uint64_t length_bytes) override {
    IoRequest r = internal::TrimRequest(offset_bytes, length_bytes);
    return inner_->RunSync(cipher_.get(), &r);
  }
  Status Flush() override { return inner_->Flush(); }
  Result<std::vector<Extent>> BlockStatus(uint64_t offset_bytes, uint64_t length_bytes) override {
    return inner_->BlockStatus(offset_bytes, length_bytes);
  }
  void Submit(EventLoop* loop, IoRequest* request) override {
    inner_->SubmitThrough(cipher_.get(), loop, request);
  }

 private:
  const std::shared_ptr<VolumeImpl> inner_;
  const std::shared_ptr<BlockCipher> cipher_;
};

}  // namespace strata

#endif  // STRATA_STORE_VOLUME_IMPL_H_
