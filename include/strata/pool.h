// Pool: the embedding entry point. A pool is one directory holding an LMDB environment (all
// metadata) and sparse chunk files (all data). See docs/design.md.
//
// Caveats (LMDB's, and ours):
//  * One process holds a pool at a time: Open() of a pool held by another process fails with
//    Busy naming that process. Within a process, open a directory once.
//  * Do not use a Pool after fork().
//  * Destroy every Volume before its Pool. Destroying the Pool commits what is pending (a clean
//    shutdown); a crash loses at most what no FLUSH/FUA covered (docs/durability.md).
#ifndef STRATA_POOL_H_
#define STRATA_POOL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "strata/cipher.h"
#include "strata/env.h"
#include "strata/export.h"
#include "strata/status.h"
#include "strata/volume.h"

namespace strata {

struct PoolOptions {
  // Chunk size, fixed at creation: a power of two from 4 KiB to 1 MiB. Default 64 KiB.
  uint32_t chunk_size_bytes = 64 * 1024;
  // Upper bound on data stored (chunks in use * chunk size); 0 = the host file system's limit.
  // Persisted at creation; Open() may override it when non-zero.
  uint64_t capacity_bytes = 0;
  // Initial LMDB map size; it grows by doubling when full, up to max_meta_bytes.
  uint64_t meta_map_bytes = 64ull << 20;
  uint64_t max_meta_bytes = 1ull << 40;
  // Try O_DIRECT for data files (falls back to buffered I/O where the file system refuses it).
  bool direct_io = true;
  // Background commit period in ms when changes are pending; 0 = commit only on Flush/FUA and
  // control operations (the crash simulator uses 0 to be deterministic).
  uint32_t commit_interval_ms = 1000;
  // I/O seam; null = Env::Default(). Not owned; must outlive the pool.
  Env* env = nullptr;
  // Enforce each volume's EBS performance model (docs/volume-types.md) on its requests: over the
  // limit they are delayed, never failed. Off by default in the library; strata-nbd turns it on
  // unless given --no-volume-limits.
  bool enforce_volume_limits = false;
  // Count CloudWatch-named metrics per volume (Pool::DescribeVolumeMetrics); off costs nothing.
  bool collect_metrics = true;
  // Sub-chunk copy-on-write: the first write of whole units (4 KiB at 64 KiB chunks) to a chunk a
  // snapshot shares writes only those units; a background thread copies the rest from the
  // snapshot's version afterwards. Off: the rest is copied only when something needs the chunk
  // whole (a snapshot, a delete, a read or write spanning both kinds of units). Tests use off to
  // see partial chunks; docs/design.md §2.3.
  bool background_fill = true;
};

struct VolumeSpec {
  uint64_t size_bytes = 0;  // REQUIRES: > 0, multiple of 512, <= kMaxVolumeBytes
  std::string name;         // optional; shown as the Name tag
  // gp2, gp3, io1, io2, st1, sc1, standard or unlimited, with EBS's size, IOPS and throughput
  // rules (docs/volume-types.md). iops/throughput 0: the type's default.
  std::string volume_type = "gp3";
  // Optional: the new volume is an instant copy-on-write clone of this snapshot (no data is
  // copied). size_bytes may then be 0 (the snapshot's size) or larger, never smaller.
  std::string snapshot_id;
  // A volume being filled by an import: not listed, not found by name, and deleted at the next
  // open if neither SealImport nor PublishImport ran (a crash or a refused stream leaves nothing
  // visible).
  bool importing = false;
  uint32_t iops = 0;
  uint32_t throughput_mibps = 0;
  // Optional: the id to give the volume ("vol-" + 17 hex digits, not taken), for a layer that
  // must name it before it exists (an encrypted volume's key is bound to its id). Empty: a new one.
  std::string volume_id = {};
  // Non-empty: the volume's data is ciphertext, and this is the layer's envelope of its key (text
  // of at most kMaxEncryptionBytes, opaque to the engine, kept in the volume's record and inherited
  // by its snapshots and their clones). A clone keeps its snapshot's: leave it empty, or equal.
  std::string encryption = {};
};

constexpr size_t kMaxEncryptionBytes = 4096;

// How a volume or snapshot is opened (Pool::OpenVolume, Pool::OpenSnapshot).
struct OpenOptions {
  // An encrypted volume's (VolumeInfo::encryption non-empty) reads are decrypted and writes
  // encrypted with this. REQUIRED for one, unless `ciphertext`; refused for a plaintext one.
  std::shared_ptr<BlockCipher> cipher;
  // An encrypted volume as it is stored: reads return ciphertext (holes as zeros), writes store
  // what they are given. For copies that never need the key (streams, the remote tier).
  bool ciphertext = false;
};

// A change of a volume's size, type, IOPS or throughput (EC2 ModifyVolume), applied live.
struct VolumeModification {
  std::optional<uint64_t> size_bytes;  // grow only
  std::optional<std::string> name;     // the volume's name (its Name tag); "" removes it
  std::optional<std::string> volume_type;
  std::optional<uint32_t> iops;              // 0: the new type's default
  std::optional<uint32_t> throughput_mibps;  // 0: the new type's default
};

// CloudWatch AWS/EBS metrics of one volume since the pool was opened (docs/volume-types.md).
struct VolumeMetrics {
  uint64_t read_ops = 0, write_ops = 0, read_bytes = 0, write_bytes = 0;
  double total_read_time_s = 0, total_write_time_s = 0;  // sums of request latencies
  double idle_time_s = 0;                                // time with no request in flight
  double uptime_s = 0;                                   // since counting began
  uint64_t queue_length = 0;                             // requests in flight now
  double burst_balance_percent = 100;  // gp2 I/O credits, st1/sc1 throughput credits
  double throughput_percentage = 0;    // io1/io2/gp3: the last whole minute vs provisioned IOPS
  uint64_t consumed_read_write_ops =
      0;  // I/O units: 256 KiB (SSD) / 1 MiB (HDD), sequential merged
};

struct VolumeInfo {
  std::string volume_id;  // "vol-" + 17 hex digits
  std::string name;
  uint64_t size_bytes = 0;
  std::string volume_type;
  std::string state;           // "available"
  int64_t create_time_ms = 0;  // Unix epoch, ms
  uint64_t lineage = 0;        // internal map namespace (docs/design.md)
  uint64_t head_epoch = 0;
  std::string snapshot_id;        // the snapshot a clone was created from; empty otherwise
  uint32_t iops = 0;              // provisioned: gp3, io1, io2 (0 for the other types)
  uint32_t throughput_mibps = 0;  // provisioned: gp3 (0 for the other types)
  std::string encryption;         // VolumeSpec::encryption; empty: plaintext
};

// A snapshot: a frozen, crash-consistent point in time of a volume (docs/design.md §2).
struct SnapshotInfo {
  std::string snapshot_id;  // "snap-" + 17 hex digits
  std::string volume_id;    // the volume it was taken of (which may since have been deleted)
  uint64_t volume_size_bytes = 0;
  std::string description;
  std::string state;  // "completed"
  int64_t start_time_ms = 0;
  // Set by an import: the id the snapshot had in the pool it was exported from.
  std::string source_snapshot_id;
  uint64_t lineage = 0;  // internal: the map namespace and epoch it freezes
  uint64_t epoch = 0;
  std::string encryption;  // its volume's (VolumeSpec::encryption); empty: plaintext
};

// Space a snapshot holds (as of the last commit).
struct SnapshotSpace {
  uint64_t unique_bytes = 0;  // held by this snapshot alone: freed if it is deleted
  uint64_t shared_bytes = 0;  // data it sees that other snapshots or the volume also see
};

// One page of a block listing (EBS direct APIs' ListSnapshotBlocks / ListChangedBlocks).
struct BlockList {
  uint32_t block_size_bytes = 0;
  uint64_t volume_size_bytes = 0;
  std::vector<uint64_t> blocks;        // block indexes, ascending
  std::optional<uint64_t> next_block;  // start of the next page; nullopt on the last page
};

constexpr size_t kMaxBlockListResults = 10000;

// One extent of a changed-block map (ChangedExtents): [offset, offset + length) differs, or may
// differ, from a snapshot (changed), or certainly does not.
struct ChangeExtent {
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
  bool changed = false;
};

struct PoolInfo {
  std::string path;
  uint32_t chunk_size_bytes = 0;
  uint64_t capacity_bytes = 0;   // 0 = unlimited
  uint64_t used_bytes = 0;       // chunks in use * chunk size
  uint64_t data_file_bytes = 0;  // host space the data files really occupy
  uint64_t meta_bytes = 0;       // LMDB pages in use
  uint64_t volume_count = 0;
  uint64_t snapshot_count = 0;
  uint64_t reclaim_pending = 0;      // deleted snapshot epochs whose space is still being reclaimed
  uint64_t free_chunks = 0;          // below the frontier, reusable
  uint64_t frontier_chunks = 0;      // chunk numbers ever handed out
  uint64_t pending_map_changes = 0;  // map changes not committed yet (the overlay)
  uint64_t partial_chunks = 0;       // copied on write in part; the rest is still to be filled
  std::string io_engine;             // "io_uring" or "sync" (or "sim")
  bool direct_io = false;
  std::string latched_error;  // empty unless a fatal I/O error latched the pool
  std::string read_only;      // empty unless Pool::SetReadOnly: why the pool refuses changes
};

struct CheckReport {
  uint64_t versions = 0;     // map entries checked
  uint64_t data_chunks = 0;  // physical chunks referenced
  uint64_t volumes = 0;
  std::vector<std::string> problems;  // empty when every invariant holds
};

constexpr uint64_t kMaxVolumeBytes = 64ull << 40;  // 64 TiB (io2 Block Express)
constexpr size_t kMaxVolumeNameBytes = 256;        // as an EC2 tag value (the Name tag)

// Where the content of a snapshot that is still arriving comes from (a lazily restored remote
// snapshot, lib/remote/hydration.cc). While one is attached (Pool::AttachBlockSource), every
// volume and snapshot whose data reads through to that snapshot asks it to make a range present
// (Pool::FillSnapshot) before reading or changing it. Thread-safe.
class STRATA_EXPORT BlockSource {
 public:
  virtual ~BlockSource() = default;
  // True when all of [offset, offset + length) of the snapshot is present: no fetch needed.
  virtual bool Present(uint64_t offset_bytes, uint64_t length_bytes) = 0;
  // Makes the range present, then runs `done` (on any thread, possibly before Ensure returns).
  // An error (EIO: the remote cannot be reached after bounded retries, or a block is damaged)
  // fails the request that needed the range; nothing wrong is ever made present.
  virtual void Ensure(uint64_t offset_bytes, uint64_t length_bytes,
                      std::function<void(const Status&)> done) = 0;
  // The fraction present, in [0, 1] (for progress and status).
  virtual double Progress() = 0;
};

// One change to a layer's record table (Pool::CommitRecords): `value` nullopt deletes `key`.
struct RecordChange {
  std::string table;
  std::string key;
  std::optional<std::string> value;
};

class STRATA_EXPORT Pool {
 public:
  virtual ~Pool() = default;

  // Creates a new, empty pool in `dir` (created if missing; must not already hold a pool).
  // Errors: AlreadyExists, InvalidArgument (chunk size), IOError.
  static Status Create(const std::string& dir, const PoolOptions& options);
  // Opens an existing pool, recovering from a crash if needed.
  // Errors: NotFound (no pool there), Busy (held by another process), Corruption (foreign or
  // damaged metadata), IOError.
  static Result<std::unique_ptr<Pool>> Open(const std::string& dir, const PoolOptions& options);

  // Creates a thin volume; durable on return. Errors: InvalidArgument, AlreadyExists (name).
  virtual Result<VolumeInfo> CreateVolume(const VolumeSpec& spec) = 0;
  // Looks a volume up by id, or by Name when that name is unique. Errors: NotFound.
  virtual Result<VolumeInfo> DescribeVolume(const std::string& id_or_name) = 0;
  virtual std::vector<VolumeInfo> ListVolumes() = 0;
  // Deletes a volume and frees its space (punched once the delete is durable). Durable on
  // return. Errors: NotFound, Busy (the volume is open).
  virtual Status DeleteVolume(const std::string& volume_id) = 0;
  // Grows a volume online (open handles see the new size at once). Errors: NotFound,
  // InvalidArgument (shrinking, or a size that is not a multiple of 512 / too big).
  virtual Result<VolumeInfo> ResizeVolume(const std::string& volume_id, uint64_t new_size) {
    VolumeModification m;
    m.size_bytes = new_size;
    return ModifyVolume(volume_id, m);
  }
  // Changes size, type, IOPS, throughput and name live (open handles see the new limits at
  // once; the old name stops finding the volume); durable on return. Errors: NotFound,
  // InvalidArgument (EBS's rules, shrinking, a name that is not text).
  virtual Result<VolumeInfo> ModifyVolume(const std::string& volume_id,
                                          const VolumeModification& modification) = 0;
  // Errors: NotFound.
  virtual Result<VolumeMetrics> DescribeVolumeMetrics(const std::string& volume_id) = 0;
  // Opens a volume for I/O. Any number of handles may be open at once; they share one state.
  // Errors: NotFound; NotSupported (an encrypted volume without a cipher, or a plaintext one with
  // one: see OpenOptions).
  virtual Result<std::shared_ptr<Volume>> OpenVolume(const std::string& volume_id,
                                                     const OpenOptions& options) = 0;
  Result<std::shared_ptr<Volume>> OpenVolume(const std::string& volume_id) {
    return OpenVolume(volume_id, OpenOptions{});
  }

  // ---- Snapshots (docs/design.md §2). ----

  // Takes one crash-consistent snapshot of each volume (ids or unique names) at a single point
  // in time: every write acknowledged before the call is in, none that starts after it returns.
  // Writes are held back only while the writes already in flight drain. Durable on return; O(1)
  // in volume size and snapshot count. Errors: NotFound, InvalidArgument (duplicate ids),
  // IOError (the pool latches: the epoch bump is already visible to writers).
  virtual Result<std::vector<SnapshotInfo>> CreateSnapshots(const std::vector<std::string>& volumes,
                                                            const std::string& description) = 0;
  Result<SnapshotInfo> CreateSnapshot(const std::string& volume, const std::string& description) {
    STRATA_ASSIGN_OR_RETURN(auto snaps, CreateSnapshots({volume}, description));
    return snaps.front();
  }
  virtual Result<SnapshotInfo> DescribeSnapshot(const std::string& snapshot_id) = 0;
  virtual std::vector<SnapshotInfo> ListSnapshots() = 0;  // oldest first
  // Cost O(chunks changed between this snapshot and its neighbours) + O(chunks it maps).
  virtual Result<SnapshotSpace> SnapshotSpaceUsage(const std::string& snapshot_id) = 0;
  // Deletes any snapshot; the others and every volume (clones included) are untouched. The record
  // is gone durably on return; its unique space is reclaimed in the background (PoolInfo::
  // reclaim_pending), in small steps that never hold the pool mutex long.
  // Errors: NotFound, Busy (open, e.g. exported over NBD).
  virtual Status DeleteSnapshot(const std::string& snapshot_id) = 0;
  // Opens a snapshot read-only (writes fail with ReadOnly). Errors: NotFound; NotSupported as
  // for OpenVolume.
  virtual Result<std::shared_ptr<Volume>> OpenSnapshot(const std::string& snapshot_id,
                                                       const OpenOptions& options) = 0;
  Result<std::shared_ptr<Volume>> OpenSnapshot(const std::string& snapshot_id) {
    return OpenSnapshot(snapshot_id, OpenOptions{});
  }
  // Blocks of `block_size_bytes` (the chunk size or a multiple of it) holding data in the snapshot,
  // from start_block, at most max_results (<= kMaxBlockListResults). Cost: O(chunks mapped).
  virtual Result<BlockList> ListSnapshotBlocks(const std::string& snapshot_id,
                                               uint32_t block_size_bytes, uint64_t start_block,
                                               size_t max_results) = 0;
  // Blocks that may differ between two snapshots of one volume (first older than second), or
  // between a snapshot and a later snapshot of a volume cloned from it (at any depth), from the
  // change index: cost O(chunks changed between them), never O(volume size).
  // Errors: NotFound, InvalidArgument (other volume, wrong order, bad block size).
  virtual Result<BlockList> ListChangedBlocks(const std::string& first_snapshot_id,
                                              const std::string& second_snapshot_id,
                                              uint32_t block_size_bytes, uint64_t start_block,
                                              size_t max_results) = 0;
  // Ends an import: snapshots the importing volume (recording the id the stream was exported
  // as) and deletes the volume, both durable on return. Errors: NotFound, InvalidArgument (not an
  // importing volume), and those of CreateSnapshots / DeleteVolume.
  // With `keep_source_id` the snapshot takes source_snapshot_id as its own id when the pool has
  // no snapshot of that id (a remote pull: snapshot ids are global), else a new one.
  virtual Result<SnapshotInfo> SealImport(const std::string& volume_id,
                                          const std::string& description,
                                          const std::string& source_snapshot_id,
                                          bool keep_source_id = false) = 0;
  // Ends an import the other way: the importing volume becomes an ordinary volume ("available"),
  // durably on return. Flush the volume first: only its state changes. Errors: NotFound,
  // InvalidArgument (not an importing volume), IOError.
  virtual Result<VolumeInfo> PublishImport(const std::string& volume_id) = 0;
  // Writes content into a snapshot where it has none: each chunk of [offset, offset +
  // data.size()) that the snapshot's own lineage has no version of gets `data`'s bytes as a
  // version at the snapshot's epoch; chunks that have one are left alone (a fill is idempotent).
  // Every volume and snapshot reading through to the snapshot sees it at once; durable with the
  // next commit (Flush). REQUIRES: offset chunk-aligned; data a whole number of chunks, or ending
  // at the snapshot's end. Only for snapshots being restored (their volume gone, nothing else
  // writes to their lineage). Errors: NotFound, InvalidArgument, NoSpace, IOError.
  virtual Status FillSnapshot(const std::string& snapshot_id, uint64_t offset_bytes,
                              std::span<const std::byte> data) = 0;
  // Attaches (or, with null, detaches) the source of a snapshot still arriving. In memory only:
  // the process that restores attaches it after every open. Volumes and snapshots opened after
  // the call (or already open through a handle made while it was attached) use it.
  virtual Status AttachBlockSource(const std::string& snapshot_id,
                                   std::shared_ptr<BlockSource> source) = 0;
  // The source attached to the snapshot that `volume_or_snapshot_id` reads through to, if any.
  virtual std::shared_ptr<BlockSource> SourceOf(const std::string& volume_or_snapshot_id) = 0;
  // What of [offset, offset + length) of `volume` (an open volume, at its head including writes
  // not committed yet, or an open snapshot) changed since snapshot `since_snapshot_id`: extents
  // in order, merged, covering the range, at chunk granularity. The snapshot must be of the same
  // volume (older), or of one it was cloned from. Cost O(versions in the range).
  // Errors: NotFound, InvalidArgument (unrelated or newer snapshot), OutOfRange.
  virtual Result<std::vector<ChangeExtent>> ChangedExtents(const Volume& volume,
                                                           const std::string& since_snapshot_id,
                                                           uint64_t offset_bytes,
                                                           uint64_t length_bytes) = 0;
  // Blocks until every deleted snapshot's and volume's space has been reclaimed (tests, benches).
  virtual Status WaitForReclaim() = 0;

  // An event loop whose engine carries this pool's I/O (Volume::Submit needs one). Owned by the
  // caller; destroy it before the pool.
  virtual Result<std::unique_ptr<EventLoop>> CreateEventLoop(uint32_t queue_depth) = 0;

  // Commits every pending change durably. Errors: IOError (latched), NoSpace (metadata).
  virtual Status Flush() = 0;
  // From now on, for the life of this open, every change fails with ReadOnly(`why`) before it
  // changes anything: volumes open read-only (their NBD exports say so) and every control
  // operation that would commit metadata is refused. Work the pool began before (crash recovery,
  // reclaiming deleted data, hydrating a lazily restored snapshot) goes on: it changes nothing
  // anyone can see. For a layer that finds the pool unsafe to change: the EC2 layer of a pool
  // whose KMS root key was not given (docs/kms.md). `why` must be non-empty.
  virtual void SetReadOnly(const std::string& why) = 0;
  virtual PoolInfo Info() = 0;
  // Verifies every metadata invariant and the space accounting against the map.
  virtual Result<CheckReport> Check() = 0;

  // ---- The hook for a layer above the engine ----
  // Strata's EC2 layer (strata/compute.h: images, instances, tags, security groups, key pairs)
  // is built on these alone; the engine never reads what a layer stores. A layer keeps its
  // records in named tables stored durably beside the engine's own metadata, and keeps volumes
  // and snapshots it depends on from deletion with holds.

  // Opens a record table, creating it if absent. Names: 1-32 of [a-z0-9_], starting with a
  // letter, not one of the engine's own tables (docs/on-disk-format.md); at most 16 per pool.
  // Errors: InvalidArgument (name, or too many tables), IOError.
  virtual Status OpenRecordTable(const std::string& table) = 0;
  // Every record of an opened table, (key, value) in key order. Errors: InvalidArgument (not
  // opened), IOError.
  virtual Result<std::vector<std::pair<std::string, std::string>>> ReadRecords(
      const std::string& table) = 0;
  // Applies `changes` (to opened tables) in one durable commit, all or nothing.
  virtual Status CommitRecords(std::vector<RecordChange> changes) = 0;
  // Creates every volume and commits the records `records_for` builds from their infos (ids
  // assigned) in the same durable commit: all or nothing. `records_for` may be empty.
  using RecordsFor = std::function<std::vector<RecordChange>(const std::vector<VolumeInfo>&)>;
  virtual Result<std::vector<VolumeInfo>> CreateVolumes(const std::vector<VolumeSpec>& specs,
                                                        const RecordsFor& records_for) = 0;
  // While `holder` holds `id` (a volume or snapshot), deleting `id` fails with Busy and the text
  // "volume|snapshot ID " + `reason` (e.g. "is in use by ami-1: deregister the image first").
  // Atomic with deletion: NotFound when `id` does not exist or is being deleted, so a layer that
  // takes the hold before it records a reference (an attachment) can never refer to a deleted
  // volume. Holds live in memory: a layer adds them again after each open.
  [[nodiscard]] virtual Status AddHold(const std::string& id, const std::string& holder,
                                       const std::string& reason) = 0;
  virtual void ReleaseHold(const std::string& id, const std::string& holder) = 0;
  // True while any handle of the volume is open (an NBD client, a library user).
  virtual bool VolumeInUse(const std::string& volume_id) = 0;
};

}  // namespace strata

#endif  // STRATA_POOL_H_
