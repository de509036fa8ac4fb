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

// Version 2 adds pieced blocks (kFlagPieces) and the pieces' table in the pack index; version
// 1 objects (whole blocks only) are still read. Tree nodes stay at version 2. A pack index is
// written at version 3 when one of its blocks spans packs (kFlagSpans): its piece tables then
// carry each piece's place.
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kSpanningIndexVersion = 3;
constexpr uint32_t kFanout = 1024;  // entries per tree node
constexpr uint32_t kFlagZstd = 1;   // the stored block is one zstd frame (else stored as is)
// With kFlagZstd: the block is stored as pieces of kPieceBytes (the last may be shorter), each
// its own zstd frame, back to back; its name covers the list of its pieces' SHA-256s, which the
// pack index holds, so that a reader can fetch and check one piece alone.
constexpr uint32_t kFlagPieces = 2;
constexpr uint32_t kPieceBytes = 64 << 10;
// With kFlagZstd | kFlagPieces: some of the block's pieces are borrowed, stored in other packs
// (an incremental push sends a changed piece, not its whole block; the others stay where the
// parent's block has them). The ref's range in its pack holds the block's own pieces; its pack's
// index (version 3) says where each piece is. The name is a pieced block's: the same content
// has the same name however it is stored.
constexpr uint32_t kFlagSpans = 4;
// Bounds every decoded block ref is checked against before it sizes anything (anyone who can
// write to the bucket writes refs): a block's raw length is at most the remote's block, its
// stored length at most zstd's bound for that (or the raw length itself), and it lies within a
// pack of at most kMaxPackBytes.
constexpr uint32_t kMaxBlockBytes = 512 << 10;
constexpr uint64_t kMaxPackBytes = uint64_t{1} << 32;
constexpr uint32_t kMaxPieces = kMaxBlockBytes / kPieceBytes;
// Blocks a writer puts in one pack. Without a cap, a pack of blocks that compress to ~100 bytes
// (one non-zero byte each) held 330 Ki of them in 32 MiB, an index of ~125 MiB: past the 64 MiB
// a reader takes. With it an index stays under 1.6 MiB. (Readers check no such cap: older
// writers' indexes may hold more, within the response bound.)
constexpr size_t kMaxPackBlocks = 4096;
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

bool IsPieced(const BlockRef& ref);  // kFlagPieces, spanning or not
bool Spans(const BlockRef& ref);     // kFlagSpans: read through its pack's index only
// A pieced block's pieces (0 for a whole block), and the uncompressed bytes of piece `piece`.
// REQUIRES (PieceRaw): CheckRef passed and piece < PieceCount(ref).
uint32_t PieceCount(const BlockRef& ref);
uint32_t PieceRaw(const BlockRef& ref, uint32_t piece);

// Where a piece is stored: a pack, and its offset there.
struct PiecePlace {
  Hash pack{};
  uint64_t offset = 0;
  bool operator==(const PiecePlace&) const = default;
};

// A pieced block's pieces: their stored lengths and the SHA-256 of each uncompressed piece
// (zeros past the block's pieces, and for a whole block), and a spanning block's borrowed ones.
// A block's own pieces are not listed there: they lie in its ref's pack, in piece order, back
// to back from its offset. (Listed apart so that a table without borrowed pieces costs what a
// version 2 one did: a reader may hold an index's worth of them, up to its 64 MiB.)
struct PieceTable {
  std::array<uint32_t, kMaxPieces> stored{};
  std::array<Hash, kMaxPieces> sha256{};
  std::vector<std::pair<uint32_t, PiecePlace>> borrowed;  // by piece, rising
};
// Where piece `piece` of block `ref` lies: listed when borrowed, else after the block's own
// pieces before it. REQUIRES: piece < PieceCount(ref); the table passed DecodeIndex's checks
// (or was made so by a push).
PiecePlace PlaceOf(const BlockRef& ref, const PieceTable& table, uint32_t piece);
// The name of a pieced block whose first `count` pieces hash to `table.sha256`: the namer over
// their concatenation.
Hash PiecedName(const BlockNamer& namer, const PieceTable& table, uint32_t count);

// One block of a pack index: where it is, and (pieced) its pieces.
struct IndexEntry {
  BlockRef ref;
  PieceTable pieces;
};

// Sorts an index's entries by offset (a push writes them so; a hostile index need not).
void SortByOffset(std::vector<IndexEntry>* entries);
// The entry of `entries` (sorted by offset) that lists block `ref`: at its place, with its name,
// lengths and flags, and (pieced) a piece table whose hashes name it under `namer`. nullptr when
// there is none: a piece is never fetched by a table that does not name its block.
const IndexEntry* ListedEntry(const std::vector<IndexEntry>& entries, const BlockRef& ref,
                              const BlockNamer& namer);

// Version 2 (every entry carries a piece table), or 3 when an entry spans (every piece table
// carries its places). Decoding takes versions 1 to 3 and checks every ref (CheckRef) and every
// piece table (each piece within zstd's bound and within a pack, the block's own pieces back to
// back from the ref's offset and summing to its stored length, borrowed ones only in a spanning
// block, zeros past the pieces); a version 1 or 2 table gets its places from its ref. The names
// are the reader's to check.
std::string EncodeIndex(const std::vector<IndexEntry>& blocks);
// Errors: Corruption naming `what` (the object's key).
Result<std::vector<IndexEntry>> DecodeIndex(const std::string& bytes, const std::string& what);

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
