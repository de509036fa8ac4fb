// The objects of a remote (docs/remote-format.md): pack indexes and tree nodes, encoded with a
// magic, a version and an XXH3 trailer, and decoded with every field checked.
#ifndef STRATA_REMOTE_REMOTE_FORMAT_H_
#define STRATA_REMOTE_REMOTE_FORMAT_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "strata/status.h"

namespace strata::remote {

using Hash = std::array<uint8_t, 32>;  // SHA-256

constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kFanout = 1024;  // entries per tree node
constexpr uint32_t kFlagZstd = 1;   // the stored block is one zstd frame (else stored as is)
// Bounds every decoded block ref is checked against before it sizes anything (anyone who can
// write to the bucket writes refs): a block's raw length is at most the remote's block, its
// stored length at most zstd's bound for that (or the raw length itself), and it lies within a
// pack of at most kMaxPackBytes.
constexpr uint32_t kMaxBlockBytes = 512 << 10;
constexpr uint64_t kMaxPackBytes = uint64_t{1} << 32;
// A tree node's largest encoding: header, kFanout leaf entries (slot + ref), trailer.
constexpr size_t kMaxNodeBytes = 20 + size_t{kFanout} * (4 + 92) + 8;

std::string HexOf(const Hash& hash);
bool ParseHex(const std::string& hex, Hash* hash);
Hash Sha256(const void* data, size_t length);

// A block's identity (docs/remote-format.md "Blocks"). A plaintext snapshot's block is named by
// the SHA-256 of its bytes. An encrypted snapshot's block (its ciphertext) is named by
// HMAC-SHA256 under the lineage's block-id key: names that say nothing to whoever lacks the key,
// and that never match across keys, so dedup stays within a lineage.
class BlockNamer {
 public:
  static constexpr size_t kKeyBytes = 32;
  BlockNamer() = default;  // SHA-256
  // HMAC-SHA256 under `key` (kKeyBytes; checked by the caller, asserted here).
  explicit BlockNamer(const std::string& key);
  ~BlockNamer();
  BlockNamer(const BlockNamer&) = delete;
  BlockNamer& operator=(const BlockNamer&) = delete;

  bool keyed() const { return !key_.empty(); }
  Hash Of(const void* data, size_t length) const;

 private:
  std::string key_;  // wiped on destruction
};

// Where a block's bytes are: a range of a pack, and how to check them.
struct BlockRef {
  Hash sha256{};        // of the uncompressed block: its identity
  Hash pack{};          // the pack's id (SHA-256 of the pack's bytes)
  uint64_t offset = 0;  // in the pack
  uint32_t stored = 0;  // bytes in the pack
  uint32_t raw = 0;     // bytes uncompressed
  uint32_t flags = 0;   // kFlagZstd
  uint64_t xxh3 = 0;    // of the uncompressed block: a fast check before the SHA-256
};

// OK when `ref` keeps the bounds above; Corruption naming `what` otherwise.
Status CheckRef(const BlockRef& ref, const std::string& what);

std::string EncodeIndex(const std::vector<BlockRef>& blocks);
// Errors: Corruption naming `what` (the object's key).
Result<std::vector<BlockRef>> DecodeIndex(const std::string& bytes, const std::string& what);

// A tree node: a leaf maps slot -> block; an inner node maps slot -> child node.
struct Node {
  uint32_t level = 0;                                 // 0: leaf
  std::vector<std::pair<uint32_t, BlockRef>> blocks;  // leaf, by slot
  std::vector<std::pair<uint32_t, Hash>> children;    // inner, by slot
};

std::string EncodeNode(const Node& node);
Result<Node> DecodeNode(const std::string& bytes, const std::string& what);

// Object keys below the remote's prefix.
std::string PackKey(const Hash& pack);
std::string IndexKey(const Hash& pack);
std::string NodeKey(const Hash& node);
std::string ManifestKey(const std::string& snapshot_id);
std::string PendingKey(const std::string& snapshot_id);
constexpr char kIndexPrefix[] = "index/";
constexpr char kManifestPrefix[] = "snapshots/";
constexpr char kPendingPrefix[] = "pending/";
constexpr char kOrphansPrefix[] = "orphans/";  // packs a dead push may have left without index
constexpr char kNodePrefix[] = "nodes/";
// restoring/SNAPID-RESTORER: a lazy restore under way somewhere ({"root", "depth",
// "heartbeat_ms"}): GC keeps what that tree reaches while the heartbeat is fresh.
constexpr char kRestoringPrefix[] = "restoring/";
constexpr char kGcLeaseKey[] = "leases/gc";

}  // namespace strata::remote

#endif  // STRATA_REMOTE_REMOTE_FORMAT_H_
