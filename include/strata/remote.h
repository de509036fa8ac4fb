// Snapshots in S3-compatible object storage (docs/remote-format.md): pushed incrementally and
// deduplicated by content across every volume, snapshot and pool that shares the remote, listed
// and restored by any host, deleted with their storage freed when nothing else needs it.
//
// The remote layer reads snapshots and writes volumes through the public Pool and Volume API
// only. A remote is a name for s3://BUCKET[/PREFIX] at an endpoint; the names of a pool live in
// POOL/remotes.json (no secret: credentials are resolved by the process doing the I/O, as the
// AWS CLI resolves them).
#ifndef STRATA_REMOTE_H_
#define STRATA_REMOTE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "strata/export.h"
#include "strata/pool.h"
#include "strata/status.h"

namespace strata {

struct RemoteSpec {
  std::string name;          // 1..64 of [A-Za-z0-9._-]
  std::string url;           // s3://BUCKET[/PREFIX]
  std::string endpoint_url;  // "" = AWS (https://s3.REGION.amazonaws.com)
  std::string region = "us-east-1";
};

// The remotes of the pool in `pool_dir` (POOL/remotes.json, written atomically, mode 0600).
// Errors: AlreadyExists, NotFound, InvalidArgument (a name, URL or endpoint that does not parse).
STRATA_EXPORT Status AddRemote(const std::string& pool_dir, const RemoteSpec& spec);
STRATA_EXPORT Result<std::vector<RemoteSpec>> ListRemotes(const std::string& pool_dir);
STRATA_EXPORT Result<RemoteSpec> FindRemote(const std::string& pool_dir, const std::string& name);
STRATA_EXPORT Status RemoveRemote(const std::string& pool_dir, const std::string& name);

struct RemoteSnapshotInfo {
  std::string snapshot_id;
  std::string volume_id;
  std::string description;
  std::string state;  // "completed", or "pending" while a push is under way
  int64_t start_time_ms = 0;
  uint64_t volume_size_bytes = 0;
  uint32_t block_size_bytes = 0;
  uint64_t data_blocks = 0;                 // blocks holding data (zero blocks are not stored)
  std::string parent_snapshot_id;           // the snapshot its manifest was built on ("" = none)
  std::map<std::string, std::string> tags;  // as pushed (EC2 tags of the local snapshot)
  std::string encryption;  // the envelope of an encrypted snapshot (VolumeInfo::encryption)
};

struct PushStats {
  RemoteSnapshotInfo snapshot;
  bool already_there = false;  // the remote held the snapshot: nothing was sent
  uint64_t blocks_read = 0;    // blocks read from the pool (changed since the parent, or all)
  uint64_t blocks_uploaded = 0;
  uint64_t blocks_deduplicated = 0;  // found in the remote already, by content
  // Pieces (64 KiB) of changed blocks that were as in the parent's block there: referenced
  // where the parent's block has them, not sent (the block spans packs).
  uint64_t pieces_borrowed = 0;
  uint64_t zero_blocks = 0;
  uint64_t bytes_uploaded = 0;  // packs, indexes, tree nodes and the manifest
  uint64_t packs = 0;
};

struct RestoreStats {
  VolumeInfo volume;
  uint64_t blocks = 0;
  uint64_t bytes_downloaded = 0;
};

struct GcStats {
  uint64_t packs_deleted = 0;    // packs no snapshot references any more
  uint64_t orphans_deleted = 0;  // packs a dead push left without an index
  uint64_t nodes_deleted = 0;
  uint64_t bytes_freed = 0;
  bool deferred = false;  // a push was under way: nothing was freed (the next GC will)
};

using RemoteProgress = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

// What an encrypted snapshot's remote copy takes from the layer that holds its KMS key
// (docs/remote-format.md "Encrypted snapshots"). Its blocks go as the pool stores them
// (ciphertext), named by HMAC-SHA256 under `block_id_key`, and its manifest carries its envelope.
// A plaintext snapshot takes an empty one.
struct RemoteEncryption {
  // 32 bytes, derived by the caller from the lineage's data key; "" for a plaintext snapshot.
  // Without it an encrypted snapshot is refused (NotSupported, saying what is needed).
  std::string block_id_key;
  // Restore and pull: the new volume's envelope, when the caller re-wrapped the lineage's data
  // key for this pool's KMS; "" keeps the manifest's.
  std::string envelope;
};

class STRATA_EXPORT Remote {
 public:
  // Resolves credentials (environment, then the shared credentials file) and checks that the
  // bucket exists. Errors: NotFound (credentials, bucket), IOError (EACCES: refused credentials;
  // EIO: the server cannot be reached), each naming the remote.
  static Result<std::unique_ptr<Remote>> Open(const RemoteSpec& spec);
  virtual ~Remote() = default;

  // Pushes a local snapshot under its own id. Only blocks the remote does not hold are sent;
  // when an older snapshot of the same volume is in the remote, only the blocks changed since
  // it are read. Resumable: packs completed by an interrupted push are reused. The snapshot is
  // listed only once everything it needs is stored.
  // `tags` (at most 50, EC2's limit) go into the manifest and come back in its listing.
  virtual Result<PushStats> PushSnapshot(Pool* pool, const std::string& snapshot_id,
                                         const std::map<std::string, std::string>& tags,
                                         const RemoteEncryption& encryption,
                                         const RemoteProgress& progress) = 0;
  virtual Result<std::vector<RemoteSnapshotInfo>> ListSnapshots() = 0;
  virtual Result<RemoteSnapshotInfo> DescribeSnapshot(const std::string& snapshot_id) = 0;
  // A new volume in `pool` with the snapshot's content (every block fetched and checked before
  // it returns; the volume stays hidden until then, and a crash leaves nothing visible). `spec`
  // gives the volume's name, type and size (0: the snapshot's). An encrypted snapshot restores
  // its ciphertext into a volume with its envelope (or `encryption.envelope`), every block's
  // name checked under the key.
  virtual Result<RestoreStats> RestoreVolume(Pool* pool, const std::string& snapshot_id,
                                             const VolumeSpec& spec,
                                             const RemoteEncryption& encryption,
                                             const RemoteProgress& progress) = 0;
  // Deletes the snapshot, then collects garbage (below).
  virtual Result<GcStats> DeleteSnapshot(const std::string& snapshot_id) = 0;
  // Under the remote's GC lease (Busy while another host holds it): deletes every pack and tree
  // node that no snapshot reaches, and the packs pushes that died (kill -9) left behind. While
  // a push is under way nothing is freed (`deferred`). Never deletes what any snapshot needs.
  virtual Result<GcStats> CollectGarbage() = 0;
  // Makes the remote snapshot a snapshot of `pool` under the same id (restored into a hidden
  // importing volume, then sealed; SourceSnapshotId is the remote id too). One pulled before
  // (local id or source id equal) is returned as it is.
  virtual Result<SnapshotInfo> PullSnapshot(Pool* pool, const std::string& snapshot_id,
                                            const RemoteEncryption& encryption,
                                            const RemoteProgress& progress) = 0;

  // Small JSON documents kept beside the snapshots under records/KIND/ID (the EC2 layer keeps its
  // images there). Written once: AlreadyExists if the record exists. `kind` and `id` are 1..128
  // of [A-Za-z0-9._-].
  virtual Status PutRecord(const std::string& kind, const std::string& id,
                           const std::string& json_text) = 0;
  virtual Result<std::string> GetRecord(const std::string& kind, const std::string& id) = 0;
  virtual Result<std::vector<std::string>> ListRecords(const std::string& kind) = 0;
  virtual Status DeleteRecord(const std::string& kind, const std::string& id) = 0;
};

}  // namespace strata

#endif  // STRATA_REMOTE_H_
