// How the remote layer is put together, for tests: a Remote over any ObjectStore, with its sizes
// and its clock chosen by the caller. Remote::Open is this with an S3Client and the defaults.
#ifndef STRATA_REMOTE_REMOTE_INTERNAL_H_
#define STRATA_REMOTE_REMOTE_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "strata/env.h"
#include "strata/hydration.h"
#include "strata/remote.h"

#include "remote/object_store.h"
#include "remote/remote_format.h"

namespace strata::remote {

struct RemoteTuning {
  // A pack is sealed once it holds this much (a push of few blocks cuts smaller ones). Large:
  // RGW spends ~7 ms of CPU per request, so 16 MiB packs made an 8 GiB push 8 % slower.
  size_t pack_target_bytes = 32 << 20;
  size_t pack_max_blocks = kMaxPackBlocks;  // a pack is also sealed once it holds this many
  size_t packs_per_upload = 2;              // sealed packs uploaded together (one group in flight)
  // Blocks read, hashed and compressed together: 32 keep a push's peak RSS (two groups of
  // packs and a batch of blocks with their compressed copies) at ~232 MiB, under 256.
  size_t batch_blocks = 32;
  size_t fetch_batch = 32;  // range GETs in flight on restore
  // Plaintext blocks go in pieces (kFlagPieces), so that a lazy reader fetches only the pieces a
  // miss covers. False writes whole blocks, as format version 1 did (tests of old buckets).
  bool pieced_blocks = true;
  // A changed block sends only the pieces that differ from the parent's block there; the others
  // are referenced where the parent has them (kFlagSpans). False sends every changed block whole.
  bool borrow_pieces = true;
  // ... when that spares at least this much upload: a piece that compresses to almost nothing is
  // cheaper sent again than read from another pack (a range GET more for every reader).
  uint64_t min_borrow_bytes = 16 << 10;
  // A push marker whose heartbeat is older than this belongs to a push that died.
  int64_t pending_stale_ms = 3600 * 1000;
  int64_t lease_ms = 10 * 60 * 1000;  // how long a GC may hold the lease
  // Its WallClockMs times markers and leases (compared across hosts); the simulator moves it.
  // Null: Env::Default().
  Env* env = nullptr;
};

std::unique_ptr<Remote> OpenRemoteOn(const RemoteSpec& spec, std::unique_ptr<ObjectStore> store,
                                     const RemoteTuning& tuning = RemoteTuning());

// An S3 client for the remote (credentials resolved as the AWS CLI does); `max_attempts` per
// request for retryable failures; `operation_timeout_ms` bounds each Run, retries included
// (S3Options; 0: only the attempts' own bounds).
Result<std::unique_ptr<ObjectStore>> OpenObjectStore(const RemoteSpec& spec,
                                                     uint32_t max_attempts = 5,
                                                     uint32_t operation_timeout_ms = 0);

// The piece tables of the packs a lazy restore has read, shared by its readers: a miss in a pack
// seen before costs one range GET, not two. Thread-safe; bounded (a few tens of MiB).
class PieceIndexCache;
std::shared_ptr<PieceIndexCache> NewPieceIndexCache();

// Some pieces of one pieced block (a lazy read's miss), fetched with one range GET.
struct PieceFetch {
  uint64_t block = 0;           // the volume's block (for messages)
  BlockRef ref;                 // pieced, and passed CheckRef
  uint32_t first = 0, end = 0;  // its pieces [first, end): first < end <= PieceCount(ref)
  std::span<std::byte> out;     // their uncompressed bytes, from piece `first` on
  Status status;                // how it went
  uint64_t stored_bytes = 0;    // what its GET brought
};

// One remote snapshot, read a leaf and a block at a time, every object checked: what a lazy
// restore (hydration.cc) needs. Not thread-safe: one caller at a time.
class SnapshotReader {
 public:
  // Reads and checks the manifest. Errors: NotFound, Corruption, IOError, naming the remote.
  static Result<std::unique_ptr<SnapshotReader>> OpenOn(const std::string& name,
                                                        std::unique_ptr<ObjectStore> store,
                                                        const std::string& snapshot_id);
  // The same from a manifest read before (kept by the restore: the remote snapshot may be
  // deleted meanwhile; its restore marker keeps the tree and packs).
  // `pieces`: shared with other readers of the snapshot (null: the reader's own).
  static Result<std::unique_ptr<SnapshotReader>> OpenWithManifest(
      const std::string& name, std::unique_ptr<ObjectStore> store, const std::string& snapshot_id,
      const std::string& manifest_bytes, std::shared_ptr<PieceIndexCache> pieces = nullptr);
  virtual const std::string& manifest_bytes() const = 0;
  // {"root", "depth"} of the snapshot's tree, for a restore marker.
  virtual std::string TreeJson() const = 0;
  virtual ~SnapshotReader() = default;
  virtual uint64_t volume_bytes() const = 0;
  virtual uint64_t data_blocks() const = 0;
  virtual std::string description() const = 0;
  // The stored blocks of leaf `leaf` (blocks [leaf * 1,024, ...)): block index -> where it is.
  // A block not listed is all zeros.
  virtual Result<std::vector<std::pair<uint64_t, BlockRef>>> Leaf(uint64_t leaf) = 0;
  // Whole blocks and pieces of blocks at once, in one round of range GETs (after the piece
  // tables still missing: each pack's index, cached).
  // Whole blocks: each decompressed and checked into out[i], or its error (naming the block
  // and the pack) in status[i]. REQUIRES: out[i] is refs[i].second.raw bytes, a size the
  // caller checked (CheckRef, and its block size) before it allocated.
  // Pieces: each block's piece table checked against the block's name, then each piece
  // decompressed and checked against its SHA-256 into its `out`. REQUIRES: each fetch as
  // PieceFetch says, `out` sized to its pieces. A failure (naming the block and the object) is
  // in its `status`.
  // brought[i]: the bytes whole block i's GETs brought (its own stored bytes, and a spanning
  // block's borrowed pieces too), 0 when it failed; a piece fetch's are its `stored_bytes`.
  // Nothing that fails a check is ever left in an output as if it were data.
  virtual void FetchTogether(const std::vector<std::pair<uint64_t, BlockRef>>& refs,
                             const std::vector<std::span<std::byte>>& out,
                             std::vector<Status>* status, std::vector<uint64_t>* brought,
                             std::vector<PieceFetch>* pieces) = 0;
  void Fetch(const std::vector<std::pair<uint64_t, BlockRef>>& refs,
             const std::vector<std::span<std::byte>>& out, std::vector<Status>* status) {
    std::vector<uint64_t> brought;
    std::vector<PieceFetch> none;
    FetchTogether(refs, out, status, &brought, &none);
  }
  void FetchPieces(std::vector<PieceFetch>* fetches) {
    std::vector<Status> none;
    std::vector<uint64_t> brought;
    FetchTogether({}, {}, &none, &brought, fetches);
  }
};

// Hydrations::Start over stores made by `factory` (tests: a simulated bucket).
Result<std::unique_ptr<Hydrations>> StartHydrationsWith(
    Pool* pool, const HydrationOptions& options,
    std::function<Result<std::unique_ptr<ObjectStore>>(const RemoteSpec&, uint32_t attempts,
                                                       uint32_t timeout_ms)>
        factory);

}  // namespace strata::remote

#endif  // STRATA_REMOTE_REMOTE_INTERNAL_H_
