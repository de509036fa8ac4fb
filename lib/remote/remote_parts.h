// The parts of the remote tier (docs/remote-format.md), each owning its state:
//
//   Bucket     the bucket as every part reads it: its name, the object store, the sizes and the
//              clock (Env), manifests and tree nodes checked on the way in. Owns the store.
//   GcLease    one garbage collection at a time over a bucket (gc-lease), for lease_ms at most.
//   Push       one snapshot on its way into the bucket: the known blocks, the pack being
//              filled, the sealed packs, the push's marker. One per PushSnapshot call.
//   Collector  one garbage collection under a GcLease: mark what manifests and restores reach,
//              plan the sweep, delete while the lease holds.
//   Restore    one eager restore of a snapshot into a new volume (and pulls).
//
// RemoteImpl (remote_store.cc) is only the facade that makes a part per call. Lazy restores are
// hydration.cc, reading through SnapshotReader (remote_restore.cc).
#ifndef STRATA_REMOTE_REMOTE_PARTS_H_
#define STRATA_REMOTE_REMOTE_PARTS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/env.h"
#include "strata/pool.h"
#include "strata/remote.h"

#include "remote/object_store.h"
#include "remote/remote_format.h"
#include "remote/remote_internal.h"
#include "util/aligned_buffer.h"

namespace strata::remote {

constexpr uint32_t kRemoteBlockBytes = 512 << 10;  // EBS's block size
constexpr size_t kMaxTags = 50;                    // per snapshot, as EC2
// The largest manifest, marker, lease or record read from a remote (ours are a few KiB: 50
// tags and a description at most).
constexpr size_t kMaxManifestBytes = 1 << 20;
// The manifest's "format": 2 since blocks may be pieced (a reader of format 1 would refuse their
// trees' nodes), 3 since they may span packs (kFlagSpans: a reader of format 2 would refuse
// those refs as damaged). Manifests of formats 1 and 2 are read too; records stay at 1.
constexpr uint32_t kManifestFormat = 3;

unsigned Cores();                    // threads for hashing, compression and checks (1..16)
uint32_t DepthFor(uint64_t blocks);  // the tree's depth over `blocks` blocks
uint64_t SpanOf(uint32_t level);     // blocks under one node of `level`
std::string HashKey(const Hash& h);  // a hash as a map key
std::string StringField(const nlohmann::json& j, const char* key);  // "" when absent
uint64_t UintField(const nlohmann::json& j, const char* key);       // 0 when absent
int64_t IntField(const nlohmann::json& j, const char* key);         // 0 when absent
// A manifest (or record) as stored: one JSON line, then its SHA-256 in hex.
std::string EncodeManifest(const nlohmann::json& j);
// Checks the digest and the sizes a restore would trust. Corruption names `what`.
Result<nlohmann::json> DecodeManifest(const std::string& bytes, const std::string& what);
RemoteSnapshotInfo InfoOf(const nlohmann::json& manifest, const std::string& state);
// The manifest's "block_ids" of an encrypted snapshot (a plaintext one's are "sha256").
constexpr char kKeyedBlockIds[] = "hmac-sha256";
// A block as stored in its pack, checked (length, zstd, XXH3, its name under `namer`) into
// `raw`. Nothing that fails a check is ever returned as data.
Status DecodeBlock(const std::string& stored, const BlockRef& ref, const BlockNamer& namer,
                   const std::string& what, std::vector<std::byte>* raw);
// The same into `out`, which is ref.raw bytes (REQUIRES; a ref that fails its checks is
// Corruption before `out` is looked at): what fills a run buffer without a copy per block.
Status DecodeBlockInto(std::string_view stored, const BlockRef& ref, const BlockNamer& namer,
                       const std::string& what, std::span<std::byte> out);
// One piece of a pieced block: a zstd frame decompressed into `out` (the piece's raw bytes,
// REQUIRES: at most kPieceBytes), and its SHA-256 checked against `sha256` (from a piece table
// whose list the caller checked against the block's name).
Status DecodePieceInto(std::string_view stored, const Hash& sha256, const std::string& what,
                       std::span<std::byte> out);
// The namer for a snapshot whose manifest says `encryption` (its envelope, "" = plaintext),
// given the caller's block-id key. Errors: NotSupported (an encrypted snapshot without the key:
// what is needed is named), InvalidArgument (a key for a plaintext snapshot, or a key of the
// wrong size).
Result<std::unique_ptr<BlockNamer>> NamerFor(const std::string& what, const std::string& encryption,
                                             const std::string& block_id_key);

class Bucket {
 public:
  Bucket(RemoteSpec spec, std::unique_ptr<ObjectStore> store, RemoteTuning tuning);
  Bucket(const Bucket&) = delete;
  Bucket& operator=(const Bucket&) = delete;

  const RemoteSpec& spec() const { return spec_; }
  ObjectStore* store() const { return store_.get(); }
  const RemoteTuning& tuning() const { return tuning_; }
  // Wall-clock milliseconds (markers and leases are compared across hosts), from the Env.
  int64_t NowMs() const { return env_->WallClockMs(); }
  Env* env() const { return env_; }
  std::string Name() const { return "remote " + spec_.name + " (" + store_->Describe() + ")"; }

  // NotFound names the snapshot; Corruption a damaged manifest.
  Result<nlohmann::json> GetManifest(const std::string& snapshot_id);
  // The node, checked against its name and decoded.
  Result<Node> GetNode(const Hash& hash);
  // The nodes, fetched together (one round of GETs), each checked and decoded, in order.
  // REQUIRES: hashes.size() <= kMaxNodesAtOnce.
  static constexpr size_t kMaxNodesAtOnce = 32;  // ~3 MiB of responses at kMaxNodeBytes each
  Result<std::vector<Node>> GetNodes(const std::vector<Hash>& hashes);
  // Stores unless the key exists (AlreadyExists is success: content-addressed).
  Status PutIfAbsent(const std::string& key, const std::string& bytes);
  // PutIfAbsent of each (key, bytes), together: one round of PUTs, with `also` when given (a
  // request of the caller's, whose failure fails the round).
  Status PutAllIfAbsent(const std::vector<std::pair<std::string, std::string>>& objects,
                        S3Request* also = nullptr);
  // Every key under `prefix`, with its size, page by page.
  Result<std::vector<std::pair<std::string, uint64_t>>> ListAll(const std::string& prefix);
  // Depth-first over the tree below `node` (of `level`, its first block `first`).
  Status WalkNodes(uint32_t level, const Hash& node, uint64_t first,
                   const std::function<Status(uint64_t, const BlockRef&)>& on_block,
                   const std::function<void(const Hash&)>& on_node);

 private:
  const RemoteSpec spec_;
  const std::unique_ptr<ObjectStore> store_;
  const RemoteTuning tuning_;
  Env* const env_;
};

// A push announces itself (pending/ID) before it looks at the GC lease; a GC takes the lease
// before it looks for pushes. Whichever comes second sees the other (S3 is strongly consistent).
// Busy while a GC holds an unexpired lease.
Status CheckNoGc(Bucket* bucket);

class GcLease {
 public:
  // Busy while another GC holds an unexpired lease (an expired one is taken over).
  static Result<GcLease> Take(Bucket* bucket);
  int64_t until_ms() const { return until_ms_; }
  bool Holds() const { return bucket_->NowMs() < until_ms_; }
  Status Release();

 private:
  GcLease(Bucket* bucket, int64_t until_ms) : bucket_(bucket), until_ms_(until_ms) {}
  Bucket* bucket_;
  int64_t until_ms_;
};

// A block read from the snapshot, on its way into a pack.
// One block of a push batch. A batch's blocks are reused for the next batch: their buffers are
// sized once (no page faults, no zeroing per block).
struct PendingBlock {
  uint64_t index = 0;
  // The block as read: raw_bytes of a kRemoteBlockBytes buffer kept for the next batch. Aligned,
  // so that the volume reads into it in place.
  AlignedBuffer raw;
  size_t raw_bytes = 0;
  std::unique_ptr<char[]> compressed;  // zstd's output, compressed_capacity bytes
  size_t compressed_capacity = 0;
  size_t compressed_bytes = 0;  // with kFlagZstd in flags; otherwise the block goes as raw
  // What goes into the pack: the compressed bytes, or the raw ones when zstd saved nothing.
  std::string_view stored() const {
    return flags != 0 ? std::string_view(compressed.get(), compressed_bytes)
                      : std::string_view(reinterpret_cast<const char*>(raw.get()), raw_bytes);
  }
  bool zero = false;
  Hash sha{};
  PieceTable pieces;  // a pieced block's (zeros for a whole one); a spanning one's borrowed
  uint64_t xxh3 = 0;
  uint32_t flags = 0;
};

class Push {
 public:
  // What a push changes in the block map: block index -> its new place, or nullopt (a hole).
  using Changes = std::map<uint64_t, std::optional<BlockRef>>;

  Push(Bucket* bucket, Pool* pool) : bucket_(bucket), pool_(pool) {}
  ~Push();
  // Remote::PushSnapshot.
  Result<PushStats> Run(const std::string& snapshot_id,
                        const std::map<std::string, std::string>& tags,
                        const RemoteEncryption& encryption, const RemoteProgress& progress);

 private:
  Status Pushing(const SnapshotInfo& snap, const RemoteProgress& progress, PushStats* stats);
  Status ReadCarriedOrphans(const std::string& snapshot_id);
  std::string CachePath() const;
  Status LoadKnownBlocks(const std::string& cache_path);
  // The newest older snapshot of the same volume that the remote holds, if any.
  Result<std::optional<nlohmann::json>> FindParent(const SnapshotInfo& snap);
  Status ReadBatch(Volume* volume, EventLoop* loop, uint64_t size,
                   std::vector<PendingBlock>* batch);
  void Prepare(std::vector<PendingBlock>* batch);
  // The parent's leaves numbered `leaves` (sorted): leaf number -> node (absent: an empty
  // subtree). Nodes are read a level at a time, kMaxNodesAtOnce per round, and kept in
  // parent_nodes_ (bounded) for the next batch and the tree's update.
  Result<std::map<uint64_t, const Node*>> ParentLeaves(const std::vector<uint64_t>& leaves);
  // The parent's entry for a block (its pieces' hashes and places) when the parent stores it
  // pieced, checked against its name; nullptr when not (or its index is not at hand).
  const IndexEntry* ParentEntry(const BlockRef& ref);
  // For each block of the batch the remote does not hold: when some of its pieces are as in the
  // parent's block there, they are referenced where the parent has them, and only the others
  // are stored (kFlagSpans).
  Status BorrowFromParent(std::vector<PendingBlock>* batch, PushStats* stats);
  // Tree nodes by id: from parent_nodes_ when there, else one round of GETs.
  Result<std::vector<Node>> GetNodes(const std::vector<Hash>& hashes);
  Status AddToPack(PendingBlock* block, PushStats* stats);
  Status SealPack();
  // Hands the sealed packs to the uploader thread, so that reading and hashing go on while they
  // travel. First, once the group before is up, one round: the marker naming the new packs and
  // the ones not indexed yet, and those packs' indexes.
  Status UploadPacks(PushStats* stats);
  // Waits for the group in flight, if any, and takes in its results: its status, its packs that
  // are up (now unindexed_) and their buffers.
  Status JoinUpload();
  // Writes the indexes of unindexed_ (a pack counts once its index exists), in one round with
  // the marker when `next` names packs about to go (it then names those and unindexed_'s).
  Status WriteIndexes(const std::vector<Hash>* next, PushStats* stats);
  Status StoreBlocksOverlapped(const SnapshotInfo& snap, const std::vector<uint64_t>& blocks,
                               Changes* changes, PushStats* stats, const RemoteProgress& progress);
  // Applies changes (block index -> new ref, or nullopt for a hole) below a node; returns its new
  // hash, or nullopt when the node is left empty.
  Result<std::optional<Hash>> Update(uint32_t level, std::optional<Hash> node, uint64_t first,
                                     Changes::const_iterator begin, Changes::const_iterator end,
                                     PushStats* stats);
  // A node's child that changes reach, and what it becomes.
  struct ChildUpdate {
    uint32_t slot = 0;
    uint64_t first = 0;       // its first block
    std::optional<Hash> old;  // absent: a new subtree
    Changes::const_iterator begin, end;
    std::optional<Hash> updated;  // set by UpdateChildren; absent: left empty
  };
  // Update of each child (of level `level`). Leaves go kMaxNodesAtOnce at a time, each window
  // one round of GETs and one of PUTs: a round trip per leaf cost an 8 GiB incremental push
  // ~100 ms.
  Status UpdateChildren(uint32_t level, std::vector<ChildUpdate>* children, PushStats* stats);
  // The node's new hash (nullopt: empty); its encoding joins `puts` unless it is `old`.
  static Result<std::optional<Hash>> SealNode(
      const Node& n, const std::optional<Hash>& old,
      std::vector<std::pair<std::string, std::string>>* puts);
  // The parent's root, grown to `depth` when the volume grew.
  Result<std::optional<Hash>> ParentRoot(const nlohmann::json& parent, uint32_t depth);
  // Reads, hashes and stores the listed blocks of the snapshot; records their new refs.
  // Joins the last upload before it returns, whatever happened.
  Status StoreBlocks(const SnapshotInfo& snap, const std::vector<uint64_t>& blocks,
                     Changes* changes, PushStats* stats, const RemoteProgress& progress);
  // Blocks whose content may differ from the parent's (all blocks with data without a parent).
  Result<std::vector<uint64_t>> BlocksToRead(const SnapshotInfo& snap,
                                             const std::optional<nlohmann::json>& parent);
  // The push's marker (pending/ID): who pushes, its heartbeat, and the packs it is uploading
  // (in_flight) or that an earlier, killed run of it may have left without an index (orphans).
  // MarkerBytes makes `in_flight` the push's in-flight set; WriteMarker also stores it.
  std::string MarkerBytes(const std::vector<Hash>& in_flight);
  Status WriteMarker(const std::vector<Hash>& in_flight);
  Status HeartbeatIfDue();
  // Ends a push: packs that may be left without an index go to orphans/ for GC, then the marker.
  Status SettleMarker(const std::string& snapshot_id);

  struct SealedPack {
    Hash id;
    std::string bytes;
    std::vector<IndexEntry> entries;
  };
  // A pack that is up and whose index is not written yet.
  struct UnindexedPack {
    Hash id;
    size_t bytes = 0;
    std::string index;  // its encoding
  };
  // Packs on their way, owned by the uploader thread until JoinUpload.
  struct UploadGroup {
    std::vector<SealedPack> packs;
    size_t done = 0;  // packs up, in order up to a failure
    Status status;
  };
  static void Upload(ObjectStore* store, UploadGroup* group);
  Bucket* const bucket_;
  Pool* const pool_;
  std::unique_ptr<BlockNamer> namer_;      // set by Run: how this snapshot's blocks are named
  std::string encryption_;                 // the snapshot's envelope ("" = plaintext)
  std::map<std::string, BlockRef> known_;  // block name and kind -> where the remote holds it
  // The pack being filled, and sealed packs waiting for upload. A pack is sealed once it holds
  // pack_target_ bytes: RemoteTuning::pack_target_bytes, less for a push of few blocks.
  static constexpr size_t kMinPackBytes = 4 << 20;
  size_t pack_target_ = 0;
  std::string pack_;
  std::vector<IndexEntry> pack_entries_;
  std::vector<SealedPack> sealed_;
  // At most one group uploads while the next fills: memory stays at two groups and a batch.
  // The group in flight (null: none), and its thread (none when uploaded inline).
  std::unique_ptr<UploadGroup> uploading_;
  std::vector<std::string> spare_packs_;  // buffers of uploaded packs, refilled (no page faults)
  std::vector<UnindexedPack> unindexed_;  // up; indexed with the next group's marker, or at the end
  std::thread uploader_;
  // Blocks of this push waiting in a pack not yet sealed: known_'s key -> block indexes.
  std::map<std::string, std::vector<uint64_t>> pending_index_;
  int64_t data_delta_ = 0;  // data blocks the push added (removed) against its parent
  std::map<std::string, std::string> index_cache_;  // index key -> its bytes (LoadKnownBlocks)
  // The parent's tree (no root: none, or nothing to borrow), the nodes of it read so far, and
  // the indexes of its packs decoded so far (pack -> entries by offset). Both bounded: cleared
  // when full.
  std::optional<Hash> parent_root_;
  uint32_t parent_depth_ = 0;
  std::map<Hash, Node> parent_nodes_;
  std::map<Hash, std::vector<IndexEntry>> parent_indexes_;
  size_t parent_index_entries_ = 0;
  nlohmann::json marker_;           // the marker's fixed fields
  std::set<Hash> carried_orphans_;  // from the marker of a killed run of this push
  std::vector<Hash> in_flight_;     // packs being uploaded now
  int64_t last_heartbeat_ms_ = 0;
  std::map<std::string, std::string> tags_;  // of the snapshot being pushed
};

class Collector {
 public:
  // REQUIRES: `lease` is held (taken by the caller, released by it).
  Collector(Bucket* bucket, const GcLease* lease) : bucket_(bucket), lease_(lease) {}
  // Mark and sweep (Remote::CollectGarbage), every delete made while the lease holds.
  Status Run(GcStats* stats);

 private:
  // What goes: indexes, then nodes and packs (with its sizes).
  struct Sweep {
    std::vector<std::string> indexes;  // index keys whose packs go
    std::vector<Hash> packs;           // packs that go (indexed and orphaned)
    std::vector<std::string> keys;     // nodes, then packs
  };
  // Reads the markers and orphan lists: true when a live push is under way. Else `orphans` gets
  // the packs dead pushes may have left and `settled` the keys to delete once they are swept.
  Result<bool> ReadPushLeftovers(std::set<Hash>* orphans, std::vector<std::string>* settled);
  Status Mark(const nlohmann::json& manifest, std::set<Hash>* nodes, std::set<Hash>* packs);
  // The packs spanning blocks borrow pieces from: `spanning` maps a pack to the offsets of the
  // spanning blocks reached there; its index names their pieces' packs.
  Status MarkBorrowed(const std::map<Hash, std::set<uint64_t>>& spanning, std::set<Hash>* packs);
  Status MarkRestores(std::set<Hash>* nodes, std::set<Hash>* packs,
                      std::vector<std::string>* settled);
  Status MarkManifests(std::set<Hash>* keep_nodes, std::set<Hash>* keep_packs);
  Status PlanSweep(const std::set<Hash>& keep_nodes, const std::set<Hash>& keep_packs,
                   std::set<Hash> orphans, Sweep* sweep, GcStats* stats);
  void AddPackSizes(Sweep* sweep, GcStats* stats);
  Status DeleteUnderLease(const Sweep& sweep, std::vector<std::string> settled);

  Bucket* const bucket_;
  const GcLease* const lease_;
  // Per pack holding spanning blocks, read once: each spanning block's offset -> the packs its
  // borrowed pieces lie in.
  std::map<Hash, std::map<uint64_t, std::vector<Hash>>> borrowed_;
};

class Restore {
 public:
  Restore(Bucket* bucket, Pool* pool) : bucket_(bucket), pool_(pool) {}
  // Remote::RestoreVolume and Remote::PullSnapshot.
  Result<RestoreStats> Volume(const std::string& snapshot_id, const VolumeSpec& spec,
                              const RemoteEncryption& encryption, const RemoteProgress& progress);
  Result<SnapshotInfo> Pull(const std::string& snapshot_id, const RemoteEncryption& encryption,
                            const RemoteProgress& progress);

 private:
  Status FetchAll(const nlohmann::json& manifest, strata::Volume* volume,
                  const RemoteProgress& progress, RestoreStats* stats);
  Status FetchBlocks(strata::Volume* volume, EventLoop* loop, uint32_t block_size,
                     std::vector<std::pair<uint64_t, BlockRef>>* refs, RestoreStats* stats);

  Bucket* const bucket_;
  Pool* const pool_;
  std::unique_ptr<BlockNamer> namer_;  // set by Volume: how the manifest's blocks are named
  AlignedBuffer buffer_;  // a batch's blocks, decoded side by side (written in place); reused
  size_t buffer_bytes_ = 0;
  // The piece tables of the packs whose blocks span (read through their index).
  const std::shared_ptr<PieceIndexCache> pieces_ = NewPieceIndexCache();
};

// Range GETs of the blocks at once, adjacent blocks of one pack in one GET (up to 16 MiB); each
// block decompressed and checked into out[i], or its error (naming the block and the pack) in
// status[i]. A spanning block is fetched piece by piece, through its pack's index (`pieces`
// caches them). brought[i]: the bytes block i's GETs brought (with a spanning block's borrowed
// pieces). REQUIRES: out[i] is refs[i].second.raw bytes, and each ref passed CheckRef.
void FetchBlocksInto(ObjectStore* store, const std::string& name, const BlockNamer& namer,
                     PieceIndexCache* pieces,
                     const std::vector<std::pair<uint64_t, BlockRef>>& refs,
                     const std::vector<std::span<std::byte>>& out, std::vector<Status>* status,
                     std::vector<uint64_t>* brought);

}  // namespace strata::remote

#endif  // STRATA_REMOTE_REMOTE_PARTS_H_
