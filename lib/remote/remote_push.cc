// Push: blocks (512 KiB, or the chunk size when larger) are read from the snapshot in batches,
// hashed (SHA-256) and, unless the remote holds the content already, zstd-compressed into packs
// of ~16 MiB. A pack is uploaded, then its index: a pack counts once its index exists. The
// snapshot's block map is a tree of content-addressed nodes (1,024 entries each); an
// incremental push rewrites only the nodes on the paths of changed blocks. The manifest goes
// last, with If-None-Match: it is what lists the snapshot.
#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xxhash.h>
#include <zstd.h>

#include "strata/event_loop.h"
#include "strata/remote.h"

#include "remote/remote_format.h"
#include "remote/remote_parts.h"
#include "remote/s3_client.h"
#include "util/check.h"
#include "util/coding.h"
#include "util/json_text.h"
#include "util/parallel.h"
#include "util/submit_all.h"

namespace strata::remote {

using nlohmann::json;

// The pack indexes this pool has read before, kept in POOL/remote-cache/ (one file per remote
// address): a push then fetches only the indexes added since (the listing of index/ stays, one
// request per 1,000 packs), and forgets those the listing no longer has (freed by a GC). A cache
// that fails its checksum is ignored and rebuilt: it is only ever a copy.
namespace {
constexpr char kCacheMagic[8] = {'S', 'T', 'R', 'T', 'R', 'I', 'D', 'C'};
constexpr size_t kMaxCacheBytes = 1ull << 30;

std::map<std::string, std::string> LoadIndexCache(Env* env, const std::string& path) {
  std::map<std::string, std::string> out;
  Result<std::string> read = env->ReadSmallFile(path, kMaxCacheBytes);
  if (!read.ok()) {
    return out;  // none yet, too large or unreadable: rebuilt from the listing
  }
  const std::string& bytes = *read;
  if (bytes.size() < 16 || std::memcmp(bytes.data(), kCacheMagic, 8) != 0 ||
      GetLittleEndian64(bytes.data() + bytes.size() - 8) !=
          XXH3_64bits(bytes.data(), bytes.size() - 8)) {
    return out;
  }
  for (size_t at = 8; at + 8 < bytes.size();) {
    if (at + 8 > bytes.size() - 8) {
      return {};
    }
    const uint32_t key_len = GetLittleEndian32(bytes.data() + at);
    const uint32_t len = GetLittleEndian32(bytes.data() + at + 4);
    at += 8;
    if (key_len > bytes.size() - 8 - at || len > bytes.size() - 8 - at - key_len) {
      return {};
    }
    out.emplace(bytes.substr(at, key_len), bytes.substr(at + key_len, len));
    at += key_len + len;
  }
  return out;
}

// known_'s key: a block's name and its kind. A whole block's name is the SHA-256 of its bytes,
// a pieced one's the SHA-256 of its pieces' hashes: a whole block of those 32 × n bytes has the
// same name, and must never stand in for the pieced one.
std::string KnownKey(const Hash& name, bool pieced) { return HashKey(name) + (pieced ? 'p' : 'w'); }

void SaveIndexCache(Env* env, const std::string& path,
                    const std::map<std::string, std::string>& cache) {
  std::string bytes(kCacheMagic, 8);
  for (const auto& [key, index] : cache) {
    char lens[8];
    PutLittleEndian32(lens, static_cast<uint32_t>(key.size()));
    PutLittleEndian32(lens + 4, static_cast<uint32_t>(index.size()));
    bytes.append(lens, 8);
    bytes += key;
    bytes += index;
  }
  char sum[8];
  PutLittleEndian64(sum, XXH3_64bits(bytes.data(), bytes.size()));
  bytes.append(sum, 8);
  const size_t slash = path.rfind('/');
  Status saved = env->CreateOwnerOnlyDir(path.substr(0, slash));
  if (saved.ok()) {
    saved = env->ReplaceFile(path, bytes);
  }
  (void)saved;  // a cache that cannot be written is only slower next time
}
}  // namespace

Status Push::LoadKnownBlocks(const std::string& cache_path) {
  known_.clear();
  std::map<std::string, std::string> cached = LoadIndexCache(bucket_->env(), cache_path), now;
  Status listed = bucket_->store()->ForEachPage(remote::kIndexPrefix, [&](const auto& page) {
    std::vector<S3Request> gets;
    gets.reserve(page.objects.size());
    for (const auto& [key, size] : page.objects) {
      if (auto it = cached.find(key); it != cached.end()) {
        now.emplace(key, std::move(it->second));
      } else {
        gets.emplace_back().key = key;
      }
    }
    std::vector<S3Request*> batch;
    for (S3Request& r : gets) {
      batch.push_back(&r);
    }
    bucket_->store()->Run(batch);
    for (S3Request& r : gets) {
      if (r.status.code() == Status::Code::kNotFound) {
        continue;  // deleted by a GC since the listing
      }
      STRATA_RETURN_IF_ERROR(r.status);
      now.emplace(r.key, std::move(r.response));
    }
    return Status::OK();
  });
  STRATA_RETURN_IF_ERROR(listed);
  for (const auto& [key, index] : now) {
    STRATA_ASSIGN_OR_RETURN(std::vector<IndexEntry> entries, remote::DecodeIndex(index, key));
    for (const IndexEntry& e : entries) {
      known_.emplace(KnownKey(e.ref.sha256, IsPieced(e.ref)), e.ref);
    }
  }
  index_cache_ = std::move(now);
  return Status::OK();
}

Result<std::optional<json>> Push::FindParent(const SnapshotInfo& snap) {
  std::vector<SnapshotInfo> older;
  for (const SnapshotInfo& s : pool_->ListSnapshots()) {
    if (s.volume_id == snap.volume_id && s.snapshot_id != snap.snapshot_id &&
        s.start_time_ms <= snap.start_time_ms && s.epoch < snap.epoch) {
      older.push_back(s);
    }
  }
  std::sort(older.begin(), older.end(),
            [](const SnapshotInfo& a, const SnapshotInfo& b) { return a.epoch > b.epoch; });
  for (const SnapshotInfo& s : older) {
    auto m = bucket_->GetManifest(s.snapshot_id);
    if (m.ok() && StringField(*m, "encryption") != encryption_) {
      continue;  // another lineage's blocks: named and encrypted under another key
    }
    if (m.ok()) {
      return std::optional<json>(*m);
    }
    if (m.status().code() != Status::Code::kNotFound) {
      return m.status();
    }
  }
  return std::optional<json>();
}

// Reads each block of the batch (all at once on the loop: the disk sees a deep queue).
Status Push::ReadBatch(Volume* volume, EventLoop* loop, uint64_t size,
                       std::vector<PendingBlock>* batch) {
  std::vector<IoRequest> reads(batch->size());
  for (size_t i = 0; i < batch->size(); i++) {
    PendingBlock& b = (*batch)[i];
    const uint64_t offset = b.index * kRemoteBlockBytes;
    b.raw_bytes = static_cast<size_t>(std::min<uint64_t>(kRemoteBlockBytes, size - offset));
    if (b.raw == nullptr) {
      b.raw = AllocateAligned(kRemoteBlockBytes);
    }
    reads[i].kind = IoRequest::Kind::kRead;
    reads[i].offset_bytes = offset;
    reads[i].length_bytes = b.raw_bytes;
    reads[i].data = b.raw.get();
  }
  return SubmitAll(volume, loop, &reads);
}

namespace {

// zstd at level 1 with a thread's context, reused: ZSTD_compress would make one per call.
size_t CompressFrame(const std::byte* src, size_t bytes, char* dst, size_t capacity) {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(),
                                                                       ZSTD_freeCCtx);
  STRATA_CHECK(cctx != nullptr);  // (allocation failure)
  return ZSTD_compressCCtx(cctx.get(), dst, capacity, src, bytes, 1);
}

// A plaintext block as pieces (kFlagPieces): each kPieceBytes its own zstd frame (even when
// it does not shrink: the frames delimit the pieces) and its own SHA-256; the block is named by
// the list. REQUIRES: b->compressed holds the pieces' bounds.
void PreparePieced(PendingBlock* b, const BlockNamer& namer) {
  const auto raw_bytes = static_cast<uint32_t>(b->raw_bytes);
  BlockRef shape;
  shape.raw = raw_bytes;
  shape.flags = kFlagZstd | kFlagPieces;
  b->pieces = PieceTable();
  b->compressed_bytes = 0;
  const uint32_t count = PieceCount(shape);
  for (uint32_t p = 0; p < count; p++) {
    const std::byte* piece = b->raw.get() + size_t{p} * kPieceBytes;
    const uint32_t n = PieceRaw(shape, p);
    const size_t put = CompressFrame(piece, n, b->compressed.get() + b->compressed_bytes,
                                     b->compressed_capacity - b->compressed_bytes);
    STRATA_CHECK(!ZSTD_isError(put));  // (the buffer holds every piece's bound)
    b->pieces.stored[p] = static_cast<uint32_t>(put);
    b->pieces.sha256[p] = Sha256(piece, n);
    b->compressed_bytes += put;
  }
  b->sha = PiecedName(namer, b->pieces, count);
  b->flags = shape.flags;
}

}  // namespace

// Zero check, identity, checksum and compression, one block per thread. An encrypted snapshot's
// blocks (ciphertext) go whole and as they are: zstd would not shrink them, and they are never
// read in pieces (encrypted snapshots restore whole).
void Push::Prepare(std::vector<PendingBlock>* batch) {
  const BlockNamer* namer = namer_.get();
  const bool pieced = encryption_.empty() && bucket_->tuning().pieced_blocks;
  const bool compress = encryption_.empty();
  ParallelFor(batch->size(), Cores(), [batch, namer, pieced, compress](size_t i) {
    PendingBlock& b = (*batch)[i];
    const std::byte* raw = b.raw.get();
    b.zero = std::all_of(raw, raw + b.raw_bytes, [](std::byte x) { return x == std::byte{0}; });
    if (b.zero) {
      return;
    }
    b.xxh3 = XXH3_64bits(raw, b.raw_bytes);
    b.compressed_bytes = 0;
    b.flags = 0;
    b.pieces = PieceTable();
    if (!compress) {
      b.sha = namer->Of(raw, b.raw_bytes);
      return;
    }
    const size_t bound = size_t{kMaxPieces} * ZSTD_COMPRESSBOUND(kPieceBytes);
    if (b.compressed_capacity < bound) {
      b.compressed.reset(new char[bound]);  // (uninitialised: zstd writes what it uses)
      b.compressed_capacity = bound;
    }
    if (pieced) {
      PreparePieced(&b, *namer);
      return;
    }
    b.sha = namer->Of(raw, b.raw_bytes);  // a whole block, as format version 1 wrote them
    const size_t n = CompressFrame(raw, b.raw_bytes, b.compressed.get(), bound);
    const bool smaller = !ZSTD_isError(n) && n < b.raw_bytes;
    b.compressed_bytes = smaller ? n : 0;
    b.flags = smaller ? remote::kFlagZstd : 0;  // incompressible: stored as it is
  });
}

namespace {
// Bounds on what a push keeps of its parent: nodes (a leaf is up to ~96 KiB: ~12 MiB) and
// decoded index entries (~400 bytes each: ~7 MiB).
constexpr size_t kMaxParentNodes = 128;
constexpr size_t kMaxParentIndexEntries = 16 << 10;

// Leaves under one node of `level`: 1,024^level.
uint64_t LeavesUnder(uint32_t level) { return level == 0 ? 1 : SpanOf(level - 1); }
}  // namespace

Result<std::vector<Node>> Push::GetNodes(const std::vector<Hash>& hashes) {
  std::vector<Hash> missing;
  for (const Hash& h : hashes) {
    if (!parent_nodes_.contains(h)) {
      missing.push_back(h);
    }
  }
  std::vector<Node> fetched;
  if (!missing.empty()) {
    STRATA_ASSIGN_OR_RETURN(fetched, bucket_->GetNodes(missing));
  }
  std::vector<Node> out;
  for (size_t i = 0, next = 0; i < hashes.size(); i++) {
    auto it = parent_nodes_.find(hashes[i]);
    out.push_back(it != parent_nodes_.end() ? it->second : std::move(fetched[next++]));
  }
  return out;
}

Result<std::map<uint64_t, const Node*>> Push::ParentLeaves(const std::vector<uint64_t>& leaves) {
  std::map<uint64_t, const Node*> out;
  if (!parent_root_) {
    return out;
  }
  if (parent_nodes_.size() > kMaxParentNodes) {
    parent_nodes_.clear();  // (before any pointer into it is handed out)
  }
  std::map<uint64_t, Hash> at = {{0, *parent_root_}};  // node number at `level` -> its id
  for (uint32_t level = parent_depth_;; level--) {
    std::vector<Hash> missing;
    for (const auto& [number, id] : at) {
      if (!parent_nodes_.contains(id)) {
        missing.push_back(id);
      }
    }
    for (size_t first = 0; first < missing.size(); first += Bucket::kMaxNodesAtOnce) {
      const size_t count = std::min(Bucket::kMaxNodesAtOnce, missing.size() - first);
      const std::vector<Hash> ids(missing.begin() + first, missing.begin() + first + count);
      STRATA_ASSIGN_OR_RETURN(std::vector<Node> got, bucket_->GetNodes(ids));
      for (size_t i = 0; i < count; i++) {
        if (got[i].level != level) {
          return Status::Corruption(bucket_->Name() + ": tree node " + remote::HexOf(ids[i]) +
                                    " at the wrong level");
        }
        parent_nodes_.emplace(ids[i], std::move(got[i]));
      }
    }
    if (level == 0) {
      break;
    }
    std::map<uint64_t, Hash> below;
    for (uint64_t leaf : leaves) {
      auto node = at.find(leaf / LeavesUnder(level));
      if (node == at.end()) {
        continue;  // an empty subtree, or past the parent's volume
      }
      const auto slot = static_cast<uint32_t>((leaf / LeavesUnder(level - 1)) % kFanout);
      const auto& children = parent_nodes_.at(node->second).children;
      auto child = std::lower_bound(children.begin(), children.end(), slot,
                                    [](const auto& c, uint32_t s) { return c.first < s; });
      if (child != children.end() && child->first == slot) {
        below.emplace(leaf / LeavesUnder(level - 1), child->second);
      }
    }
    at = std::move(below);
  }
  for (const auto& [leaf, id] : at) {
    out.emplace(leaf, &parent_nodes_.at(id));
  }
  return out;
}

const IndexEntry* Push::ParentEntry(const BlockRef& ref) {
  if (!IsPieced(ref)) {
    return nullptr;
  }
  auto decoded = parent_indexes_.find(ref.pack);
  if (decoded == parent_indexes_.end()) {
    auto bytes = index_cache_.find(remote::IndexKey(ref.pack));
    if (bytes == index_cache_.end()) {
      return nullptr;  // (not listed: cannot be, the parent's manifest reaches it)
    }
    Result<std::vector<IndexEntry>> entries = remote::DecodeIndex(bytes->second, bytes->first);
    if (!entries.ok()) {
      return nullptr;  // (LoadKnownBlocks decoded it: cannot be)
    }
    if (parent_index_entries_ + entries->size() > kMaxParentIndexEntries) {
      parent_indexes_.clear();
      parent_index_entries_ = 0;
    }
    parent_index_entries_ += entries->size();
    SortByOffset(&*entries);
    decoded = parent_indexes_.emplace(ref.pack, std::move(*entries)).first;
  }
  // Borrowed pieces must be what the new block's name says: the table must name the parent's
  // block, as a reader checks it.
  return ListedEntry(decoded->second, ref, *namer_);
}

namespace {

// Makes `b` span: the pieces it shares with `parent` (same hash, same place) are referenced
// there, and only its own stay in b->compressed, back to back. Returns the pieces borrowed (0:
// `b` is left as it was, because sharing would spare less than `min_bytes`).
uint32_t Borrow(PendingBlock* b, const IndexEntry& parent, uint64_t min_bytes) {
  BlockRef shape;
  shape.raw = static_cast<uint32_t>(b->raw_bytes);
  shape.flags = b->flags;
  const uint32_t count = PieceCount(shape);
  uint32_t borrowed = 0;
  uint64_t spared = 0;
  std::array<bool, kMaxPieces> same{};
  for (uint32_t p = 0; p < count; p++) {
    same[p] = b->pieces.sha256[p] == parent.pieces.sha256[p];
    borrowed += same[p] ? 1 : 0;
    spared += same[p] ? b->pieces.stored[p] : 0;
  }
  if (borrowed == 0 || borrowed == count || spared < min_bytes) {
    return 0;  // (all of them: then the names were equal, and it was deduplicated)
  }
  char* data = b->compressed.get();
  size_t own = 0, at = 0;
  for (uint32_t p = 0; p < count; p++) {
    const uint32_t n = b->pieces.stored[p];
    if (same[p]) {
      b->pieces.stored[p] = parent.pieces.stored[p];
      b->pieces.borrowed.emplace_back(p, PlaceOf(parent.ref, parent.pieces, p));
    } else {
      std::memmove(data + own, data + at, n);
      own += n;
    }
    at += n;
  }
  b->compressed_bytes = own;
  b->flags |= kFlagSpans;
  return borrowed;
}

}  // namespace

Status Push::BorrowFromParent(std::vector<PendingBlock>* batch, PushStats* stats) {
  std::vector<uint64_t> leaves;
  for (const PendingBlock& b : *batch) {
    if (!b.zero && (b.flags & kFlagPieces) && !known_.contains(KnownKey(b.sha, true))) {
      leaves.push_back(b.index / kFanout);
    }
  }
  if (!parent_root_ || leaves.empty()) {
    return Status::OK();
  }
  std::sort(leaves.begin(), leaves.end());
  leaves.erase(std::unique(leaves.begin(), leaves.end()), leaves.end());
  STRATA_ASSIGN_OR_RETURN(auto found, ParentLeaves(leaves));
  for (PendingBlock& b : *batch) {
    auto leaf = b.zero || !(b.flags & kFlagPieces) ? found.end() : found.find(b.index / kFanout);
    if (leaf == found.end() || known_.contains(KnownKey(b.sha, true))) {
      continue;
    }
    const auto slot = static_cast<uint32_t>(b.index % kFanout);
    const auto& blocks = leaf->second->blocks;
    auto ref = std::lower_bound(blocks.begin(), blocks.end(), slot,
                                [](const auto& e, uint32_t s) { return e.first < s; });
    if (ref == blocks.end() || ref->first != slot || ref->second.raw != b.raw_bytes) {
      continue;
    }
    if (const IndexEntry* parent = ParentEntry(ref->second)) {
      stats->pieces_borrowed += Borrow(&b, *parent, bucket_->tuning().min_borrow_bytes);
    }
  }
  return Status::OK();
}

Status Push::AddToPack(PendingBlock* b, PushStats* stats) {
  BlockRef ref;
  ref.sha256 = b->sha;
  ref.offset = pack_.size();
  const std::string_view stored = b->stored();
  ref.stored = static_cast<uint32_t>(stored.size());
  ref.raw = static_cast<uint32_t>(b->raw_bytes);
  ref.flags = b->flags;
  ref.xxh3 = b->xxh3;
  if (pack_.empty()) {
    pack_.reserve(pack_target_ + kRemoteBlockBytes);  // one allocation
  }
  pack_ += stored;
  pack_entries_.push_back(IndexEntry{ref, b->pieces});
  stats->blocks_uploaded++;
  if (pack_.size() >= pack_target_ || pack_entries_.size() >= bucket_->tuning().pack_max_blocks) {
    STRATA_RETURN_IF_ERROR(SealPack());
  }
  // A full group goes (after the one in flight); so does the push's first pack, which starts
  // the uploads before a whole group is read.
  if (sealed_.size() >= bucket_->tuning().packs_per_upload ||
      (!sealed_.empty() && uploading_ == nullptr)) {
    return UploadPacks(stats);
  }
  return Status::OK();
}

Status Push::SealPack() {
  if (pack_entries_.empty()) {
    return Status::OK();
  }
  SealedPack p;
  p.id = remote::Sha256(pack_.data(), pack_.size());
  p.bytes = std::move(pack_);
  p.entries = std::move(pack_entries_);
  for (IndexEntry& e : p.entries) {
    e.ref.pack = p.id;
    // Later blocks of this push with this content reuse it.
    known_.emplace(KnownKey(e.ref.sha256, IsPieced(e.ref)), e.ref);
  }
  pack_.clear();
  if (!spare_packs_.empty()) {
    pack_ = std::move(spare_packs_.back());
    spare_packs_.pop_back();
  }
  pack_entries_.clear();
  sealed_.push_back(std::move(p));
  return Status::OK();
}

Push::~Push() {
  if (uploader_.joinable()) {
    uploader_.join();  // (an error path that did not join: the group's results are dropped)
  }
}

// The group's packs at once. Runs on the uploader thread and touches nothing but the group and
// the store (which no other thread uses meanwhile: JoinUpload comes before any other request).
void Push::Upload(ObjectStore* store, UploadGroup* group) {
  std::vector<SealedPack>& packs = group->packs;
  std::vector<S3Request> puts(packs.size());
  std::vector<S3Request*> batch;
  for (size_t i = 0; i < packs.size(); i++) {
    puts[i].method = S3Request::Method::kPut;
    puts[i].key = remote::PackKey(packs[i].id);
    puts[i].body = packs[i].bytes.data();
    puts[i].body_bytes = packs[i].bytes.size();
    puts[i].payload_sha256_hex = remote::HexOf(packs[i].id);  // a pack is named by its SHA-256
    puts[i].headers = {{"If-None-Match", "*"}};
    batch.push_back(&puts[i]);
  }
  store->Run(batch);
  for (; group->done < packs.size(); group->done++) {
    const Status& s = puts[group->done].status;
    if (!s.ok() && s.code() != Status::Code::kAlreadyExists) {
      group->status = s;
      return;
    }
  }
}

Status Push::JoinUpload() {
  if (uploading_ == nullptr) {
    return Status::OK();
  }
  if (uploader_.joinable()) {
    uploader_.join();  // (an upload done inline has no thread)
  }
  std::unique_ptr<UploadGroup> group = std::move(uploading_);
  STRATA_CHECK(group->done <= group->packs.size());
  for (size_t i = 0; i < group->done; i++) {
    const SealedPack& p = group->packs[i];
    unindexed_.push_back(UnindexedPack{p.id, p.bytes.size(), remote::EncodeIndex(p.entries)});
  }
  for (SealedPack& p : group->packs) {
    if (spare_packs_.size() < bucket_->tuning().packs_per_upload) {
      p.bytes.clear();  // (keeps its capacity)
      spare_packs_.push_back(std::move(p.bytes));
    }
  }
  return group->status;
}

Status Push::WriteIndexes(const std::vector<Hash>* next, PushStats* stats) {
  std::vector<std::pair<std::string, std::string>> indexes;
  for (UnindexedPack& u : unindexed_) {
    indexes.emplace_back(remote::IndexKey(u.id), std::move(u.index));
  }
  S3Request marker;
  std::string marker_bytes;
  if (next != nullptr) {
    std::vector<Hash> named = *next;
    for (const UnindexedPack& u : unindexed_) {
      named.push_back(u.id);
    }
    marker_bytes = MarkerBytes(named);
    marker.method = S3Request::Method::kPut;
    marker.key = remote::PendingKey(StringField(marker_, "snapshot_id"));
    marker.body = marker_bytes.data();
    marker.body_bytes = marker_bytes.size();
  }
  STRATA_RETURN_IF_ERROR(bucket_->PutAllIfAbsent(indexes, next ? &marker : nullptr));
  for (size_t i = 0; i < indexes.size(); i++) {
    stats->bytes_uploaded += unindexed_[i].bytes + indexes[i].second.size();
    stats->packs++;
    index_cache_[indexes[i].first] = std::move(indexes[i].second);
  }
  unindexed_.clear();
  return Status::OK();
}

Status Push::UploadPacks(PushStats* stats) {
  if (sealed_.empty()) {
    return Status::OK();
  }
  STRATA_RETURN_IF_ERROR(JoinUpload());
  std::vector<Hash> ids;
  for (const SealedPack& p : sealed_) {
    ids.push_back(p.id);
  }
  // A kill from the marker's landing on leaves these packs named for GC.
  STRATA_RETURN_IF_ERROR(WriteIndexes(&ids, stats));
  uploading_ = std::make_unique<UploadGroup>();
  uploading_->packs = std::move(sealed_);
  sealed_.clear();
  if (!bucket_->env()->BackgroundThreads()) {    // the simulator: one thread, repeatable seeds
    Upload(bucket_->store(), uploading_.get());  // (JoinUpload takes its results)
    return Status::OK();
  }
  uploader_ = std::thread(&Push::Upload, bucket_->store(), uploading_.get());
  return Status::OK();
}

using Changes = Push::Changes;

namespace {

Changes::const_iterator changes_end_of(Changes::const_iterator it, Changes::const_iterator end,
                                       uint64_t limit) {
  while (it != end && it->first < limit) {
    ++it;
  }
  return it;
}

// Applies a leaf's changes; the data-block count moves by what the leaf gained or lost.
void ApplyToLeaf(Node* leaf, uint64_t first, Changes::const_iterator begin,
                 Changes::const_iterator end, int64_t* data_delta) {
  std::map<uint32_t, BlockRef> slots(leaf->blocks.begin(), leaf->blocks.end());
  *data_delta -= static_cast<int64_t>(slots.size());
  for (auto it = begin; it != end; ++it) {
    const auto slot = static_cast<uint32_t>(it->first - first);
    if (it->second) {
      slots[slot] = *it->second;
    } else {
      slots.erase(slot);
    }
  }
  leaf->blocks.assign(slots.begin(), slots.end());
  *data_delta += static_cast<int64_t>(slots.size());
}

}  // namespace

Result<std::optional<Hash>> Push::SealNode(const Node& n, const std::optional<Hash>& old,
                                           std::vector<std::pair<std::string, std::string>>* puts) {
  if (n.blocks.empty() && n.children.empty()) {
    return std::optional<Hash>();
  }
  std::string bytes = remote::EncodeNode(n);
  const Hash hash = remote::Sha256(bytes.data(), bytes.size());
  if (!old || hash != *old) {
    puts->emplace_back(remote::NodeKey(hash), std::move(bytes));
  }
  return std::optional<Hash>(hash);
}

Result<std::optional<Hash>> Push::Update(uint32_t level, std::optional<Hash> node, uint64_t first,
                                         Changes::const_iterator begin, Changes::const_iterator end,
                                         PushStats* stats) {
  Node n;
  n.level = level;
  if (node) {
    STRATA_ASSIGN_OR_RETURN(std::vector<Node> got, GetNodes({*node}));
    n = std::move(got[0]);
    if (n.level != level) {
      return Status::Corruption(bucket_->Name() + ": tree node " + remote::HexOf(*node) +
                                " at the wrong level");
    }
  }
  if (level == 0) {
    ApplyToLeaf(&n, first, begin, end, &data_delta_);
  } else {
    std::map<uint32_t, Hash> children(n.children.begin(), n.children.end());
    const uint64_t span = SpanOf(level - 1);
    std::vector<ChildUpdate> reached;
    for (auto it = begin; it != end;) {
      ChildUpdate c;
      c.slot = static_cast<uint32_t>((it->first - first) / span);
      c.first = first + c.slot * span;
      c.begin = it;
      c.end = it = changes_end_of(it, end, c.first + span);
      auto old = children.find(c.slot);
      c.old = old != children.end() ? std::optional<Hash>(old->second) : std::nullopt;
      reached.push_back(c);
    }
    STRATA_RETURN_IF_ERROR(UpdateChildren(level - 1, &reached, stats));
    for (const ChildUpdate& c : reached) {
      if (c.updated) {
        children[c.slot] = *c.updated;
      } else {
        children.erase(c.slot);
      }
    }
    n.children.assign(children.begin(), children.end());
  }
  std::vector<std::pair<std::string, std::string>> puts;
  STRATA_ASSIGN_OR_RETURN(std::optional<Hash> hash, SealNode(n, node, &puts));
  STRATA_RETURN_IF_ERROR(bucket_->PutAllIfAbsent(puts));
  for (const auto& [key, bytes] : puts) {
    stats->bytes_uploaded += bytes.size();
  }
  return hash;
}

Status Push::UpdateChildren(uint32_t level, std::vector<ChildUpdate>* children, PushStats* stats) {
  if (level > 0) {  // inner nodes: one per 512 GiB of volume, one at a time
    for (ChildUpdate& c : *children) {
      STRATA_ASSIGN_OR_RETURN(c.updated, Update(level, c.old, c.first, c.begin, c.end, stats));
    }
    return Status::OK();
  }
  for (size_t at = 0; at < children->size(); at += Bucket::kMaxNodesAtOnce) {
    const size_t count = std::min(Bucket::kMaxNodesAtOnce, children->size() - at);
    std::vector<Hash> olds;
    for (size_t i = at; i < at + count; i++) {
      if ((*children)[i].old) {
        olds.push_back(*(*children)[i].old);
      }
    }
    STRATA_ASSIGN_OR_RETURN(std::vector<Node> fetched, GetNodes(olds));
    std::vector<std::pair<std::string, std::string>> puts;
    for (size_t i = at, next = 0; i < at + count; i++) {
      ChildUpdate& c = (*children)[i];
      Node leaf;  // level 0
      if (c.old) {
        leaf = std::move(fetched[next++]);
        if (leaf.level != 0) {
          return Status::Corruption(bucket_->Name() + ": tree node " + remote::HexOf(*c.old) +
                                    " at the wrong level");
        }
      }
      ApplyToLeaf(&leaf, c.first, c.begin, c.end, &data_delta_);
      STRATA_ASSIGN_OR_RETURN(c.updated, SealNode(leaf, c.old, &puts));
    }
    STRATA_RETURN_IF_ERROR(bucket_->PutAllIfAbsent(puts));
    for (const auto& [key, bytes] : puts) {
      stats->bytes_uploaded += bytes.size();
    }
  }
  return Status::OK();
}

// Blocks whose content may differ from the parent's (all blocks with data without a parent).
Result<std::vector<uint64_t>> Push::BlocksToRead(const SnapshotInfo& snap,
                                                 const std::optional<json>& parent) {
  std::vector<uint64_t> out;
  uint64_t start = 0;
  for (;;) {
    Result<BlockList> page =
        parent ? pool_->ListChangedBlocks((*parent)["snapshot_id"].get<std::string>(),
                                          snap.snapshot_id, kRemoteBlockBytes, start,
                                          kMaxBlockListResults)
               : pool_->ListSnapshotBlocks(snap.snapshot_id, kRemoteBlockBytes, start,
                                           kMaxBlockListResults);
    STRATA_RETURN_IF_ERROR(page.status());
    out.insert(out.end(), page->blocks.begin(), page->blocks.end());
    if (!page->next_block) {
      return out;
    }
    start = *page->next_block;
  }
}

Status Push::StoreBlocks(const SnapshotInfo& snap, const std::vector<uint64_t>& blocks,
                         Changes* changes, PushStats* stats, const RemoteProgress& progress) {
  Status s = StoreBlocksOverlapped(snap, blocks, changes, stats, progress);
  Status joined = JoinUpload();
  STRATA_RETURN_IF_ERROR(s);
  STRATA_RETURN_IF_ERROR(joined);
  return WriteIndexes(nullptr, stats);
}

Status Push::StoreBlocksOverlapped(const SnapshotInfo& snap, const std::vector<uint64_t>& blocks,
                                   Changes* changes, PushStats* stats,
                                   const RemoteProgress& progress) {
  OpenOptions as_stored;  // an encrypted snapshot goes as its ciphertext, never its plaintext
  as_stored.ciphertext = !snap.encryption.empty();
  STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Volume> volume,
                          pool_->OpenSnapshot(snap.snapshot_id, as_stored));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop,
                          pool_->CreateEventLoop(2 * bucket_->tuning().batch_blocks));
  // A short push cuts smaller packs, so that its uploads start early and overlap its reading;
  // a long one full ones, since RGW spends ~7 ms of CPU per request whatever its size.
  pack_target_ = std::min(bucket_->tuning().pack_target_bytes,
                          std::max<size_t>(kMinPackBytes, blocks.size() * kRemoteBlockBytes / 8));
  std::vector<PendingBlock> batch;
  for (size_t first = 0; first < blocks.size(); first += bucket_->tuning().batch_blocks) {
    batch.resize(std::min(bucket_->tuning().batch_blocks, blocks.size() - first));
    for (size_t i = 0; i < batch.size(); i++) {
      batch[i].index = blocks[first + i];
    }
    STRATA_RETURN_IF_ERROR(HeartbeatIfDue());
    STRATA_RETURN_IF_ERROR(ReadBatch(volume.get(), loop.get(), volume->size_bytes(), &batch));
    Prepare(&batch);
    STRATA_RETURN_IF_ERROR(BorrowFromParent(&batch, stats));
    for (PendingBlock& b : batch) {
      stats->blocks_read++;
      if (b.zero) {
        stats->zero_blocks++;
        (*changes)[b.index] = std::nullopt;
        continue;
      }
      const std::string key = KnownKey(b.sha, (b.flags & kFlagPieces) != 0);
      auto known = known_.find(key);
      if (known != known_.end() && known->second.raw == b.raw_bytes) {
        stats->blocks_deduplicated++;
        (*changes)[b.index] = known->second;
        continue;
      }
      (*changes)[b.index] = std::nullopt;  // its ref is set once its pack is sealed
      auto& waiting = pending_index_[key];
      waiting.push_back(b.index);
      if (waiting.size() > 1) {
        stats->blocks_deduplicated++;  // the same content earlier in this push
        continue;
      }
      STRATA_RETURN_IF_ERROR(AddToPack(&b, stats));
    }
    if (progress) {
      progress(std::min(blocks.size(), first + batch.size()) * kRemoteBlockBytes,
               blocks.size() * kRemoteBlockBytes);
    }
  }
  STRATA_RETURN_IF_ERROR(SealPack());
  STRATA_RETURN_IF_ERROR(UploadPacks(stats));
  for (const auto& [key, indexes] : pending_index_) {  // now every new block has its pack
    const BlockRef& ref = known_.at(key);
    for (uint64_t index : indexes) {
      (*changes)[index] = ref;
    }
  }
  pending_index_.clear();
  return Status::OK();
}

Result<PushStats> Push::Run(const std::string& snapshot_id,
                            const std::map<std::string, std::string>& tags,
                            const RemoteEncryption& encryption, const RemoteProgress& progress) {
  PushStats stats;
  if (tags.size() > kMaxTags) {
    return Status::InvalidArgument("a snapshot has at most 50 tags");
  }
  tags_ = tags;
  STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool_->DescribeSnapshot(snapshot_id));
  STRATA_ASSIGN_OR_RETURN(
      namer_, NamerFor("snapshot " + snapshot_id, snap.encryption, encryption.block_id_key));
  encryption_ = snap.encryption;
  if (pool_->Info().chunk_size_bytes > kRemoteBlockBytes) {
    return Status::NotSupported("pools with chunks over 512 KiB cannot push to a remote yet");
  }
  auto existing = bucket_->GetManifest(snapshot_id);
  if (existing.ok()) {
    stats.snapshot = InfoOf(*existing, "completed");
    stats.already_there = true;
    return stats;
  }
  if (existing.status().code() != Status::Code::kNotFound) {
    return existing.status();
  }
  STRATA_RETURN_IF_ERROR(ReadCarriedOrphans(snapshot_id));
  marker_ = json{{"snapshot_id", snapshot_id},          {"volume_id", snap.volume_id},
                 {"description", snap.description},     {"volume_size", snap.volume_size_bytes},
                 {"start_time_ms", snap.start_time_ms}, {"pushed_since_ms", bucket_->NowMs()}};
  STRATA_RETURN_IF_ERROR(WriteMarker({}));
  Status s = Pushing(snap, progress, &stats);
  Status settled = SettleMarker(snapshot_id);
  STRATA_RETURN_IF_ERROR(s);
  STRATA_RETURN_IF_ERROR(settled);
  STRATA_CHECK(in_flight_.empty() && carried_orphans_.empty() && sealed_.empty() &&
               unindexed_.empty());
  return stats;
}

// The packs a killed run of this push was uploading, or carried: named again in this run's
// marker until it settles, so that GC can judge them.
Status Push::ReadCarriedOrphans(const std::string& snapshot_id) {
  carried_orphans_.clear();
  in_flight_.clear();
  auto earlier = bucket_->store()->Get(remote::PendingKey(snapshot_id));
  if (earlier.status().code() == Status::Code::kNotFound) {
    return Status::OK();
  }
  STRATA_RETURN_IF_ERROR(earlier.status());
  json j = json::parse(*earlier, nullptr, false);
  for (const char* field : {"in_flight", "orphans"}) {
    auto it = j.is_object() ? j.find(field) : j.end();
    for (size_t i = 0; it != j.end() && it->is_array() && i < it->size(); i++) {
      Hash h;
      if ((*it)[i].is_string() && remote::ParseHex((*it)[i].get<std::string>(), &h)) {
        carried_orphans_.insert(h);
      }
    }
  }
  return Status::OK();
}

std::string Push::CachePath() const {
  const std::string address = bucket_->spec().endpoint_url + " " + bucket_->spec().url;
  return pool_->Info().path + "/remote-cache/" +
         remote::HexOf(remote::Sha256(address.data(), address.size())).substr(0, 32) + ".idx";
}

Status Push::WriteMarker(const std::vector<Hash>& in_flight) {
  const std::string bytes = MarkerBytes(in_flight);
  return bucket_->store()->Put(remote::PendingKey(StringField(marker_, "snapshot_id")),
                               bytes.data(), bytes.size());
}

std::string Push::MarkerBytes(const std::vector<Hash>& in_flight) {
  in_flight_ = in_flight;
  json m = marker_;
  m["heartbeat_ms"] = bucket_->NowMs();
  m["in_flight"] = json::array();
  for (const Hash& h : in_flight_) {
    m["in_flight"].push_back(remote::HexOf(h));
  }
  m["orphans"] = json::array();
  for (const Hash& h : carried_orphans_) {
    m["orphans"].push_back(remote::HexOf(h));
  }
  last_heartbeat_ms_ = bucket_->NowMs();
  return DumpJson(m);
}

// A push that reads for long without uploading (every block already in the remote) still shows
// that it is alive: GC treats a marker silent for pending_stale_ms as a dead push's.
Status Push::HeartbeatIfDue() {
  if (bucket_->NowMs() - last_heartbeat_ms_ < bucket_->tuning().pending_stale_ms / 8) {
    return Status::OK();
  }
  // The store serves one thread at a time: the upload in flight ends first (a heartbeat is due
  // every pending_stale_ms / 8, minutes apart).
  STRATA_RETURN_IF_ERROR(JoinUpload());
  return WriteMarker(in_flight_);
}

Status Push::SettleMarker(const std::string& snapshot_id) {
  std::set<Hash> left = carried_orphans_;
  left.insert(in_flight_.begin(), in_flight_.end());
  for (auto it = left.begin(); it != left.end();) {
    // A pack whose index this push wrote (or saw) is an ordinary pack: the sweep judges it.
    it = index_cache_.count(remote::IndexKey(*it)) ? left.erase(it) : std::next(it);
  }
  if (!left.empty()) {
    json j = {{"packs", json::array()}};
    for (const Hash& h : left) {
      j["packs"].push_back(remote::HexOf(h));
    }
    const std::string bytes = DumpJson(j);
    const std::string key =
        std::string(remote::kOrphansPrefix) + snapshot_id + "-" + std::to_string(bucket_->NowMs());
    STRATA_RETURN_IF_ERROR(bucket_->store()->Put(key, bytes.data(), bytes.size()));
  }
  carried_orphans_.clear();
  in_flight_.clear();
  return bucket_->store()->Delete(remote::PendingKey(snapshot_id));
}

Result<std::optional<Hash>> Push::ParentRoot(const json& parent, uint32_t depth) {
  std::optional<Hash> root;
  Hash h;
  const std::string hex = StringField(parent, "root");
  if (!hex.empty() && remote::ParseHex(hex, &h)) {
    root = h;
  }
  for (auto level = static_cast<uint32_t>(UintField(parent, "depth")); level < depth && root;
       level++) {  // the volume grew: a taller tree
    Node up;
    up.level = level + 1;
    up.children.emplace_back(0, *root);
    const std::string bytes = remote::EncodeNode(up);
    root = remote::Sha256(bytes.data(), bytes.size());
    STRATA_RETURN_IF_ERROR(bucket_->PutIfAbsent(remote::NodeKey(*root), bytes));
  }
  return root;
}

Status Push::Pushing(const SnapshotInfo& snap, const RemoteProgress& progress, PushStats* stats) {
  STRATA_RETURN_IF_ERROR(CheckNoGc(bucket_));
  const std::string cache_path = CachePath();
  STRATA_RETURN_IF_ERROR(LoadKnownBlocks(cache_path));
  STRATA_ASSIGN_OR_RETURN(std::optional<json> parent, FindParent(snap));
  data_delta_ = 0;
  STRATA_ASSIGN_OR_RETURN(std::vector<uint64_t> blocks, BlocksToRead(snap, parent));
  parent_root_.reset();
  Hash parent_root;
  if (parent && encryption_.empty() && bucket_->tuning().pieced_blocks &&
      bucket_->tuning().borrow_pieces &&
      remote::ParseHex(StringField(*parent, "root"), &parent_root)) {
    parent_root_ = parent_root;  // (an encrypted block is whole: nothing to borrow)
    parent_depth_ = static_cast<uint32_t>(UintField(*parent, "depth"));
  }
  Changes changes;
  STRATA_RETURN_IF_ERROR(StoreBlocks(snap, blocks, &changes, stats, progress));
  const uint64_t block_count = (snap.volume_size_bytes + kRemoteBlockBytes - 1) / kRemoteBlockBytes;
  const uint32_t depth = DepthFor(block_count);
  std::optional<Hash> root;
  uint64_t data_blocks = 0;
  if (parent) {
    STRATA_ASSIGN_OR_RETURN(root, ParentRoot(*parent, depth));
    data_blocks = UintField(*parent, "data_blocks");
  }
  STRATA_ASSIGN_OR_RETURN(root, Update(depth, root, 0, changes.cbegin(), changes.cend(), stats));
  // Every block of the snapshot that has data is in the tree: the count cannot go negative.
  STRATA_CHECK(static_cast<int64_t>(data_blocks) + data_delta_ >= 0);
  data_blocks = static_cast<uint64_t>(static_cast<int64_t>(data_blocks) + data_delta_);
  json manifest = {{"format", kManifestFormat},
                   {"snapshot_id", snap.snapshot_id},
                   {"volume_id", snap.volume_id},
                   {"description", snap.description},
                   {"start_time_ms", snap.start_time_ms},
                   {"volume_size", snap.volume_size_bytes},
                   {"block_size", kRemoteBlockBytes},
                   {"depth", depth},
                   {"root", root ? remote::HexOf(*root) : std::string()},
                   {"data_blocks", data_blocks},
                   {"parent_snapshot_id", parent ? StringField(*parent, "snapshot_id") : ""},
                   {"tags", tags_}};
  if (!encryption_.empty()) {
    manifest["encryption"] = encryption_;
    manifest["block_ids"] = kKeyedBlockIds;
  }
  const std::string bytes = EncodeManifest(manifest);
  // The manifest goes last: every pack it reaches is indexed, every node stored.
  STRATA_CHECK(sealed_.empty() && pack_entries_.empty() && pending_index_.empty());
  Status s = bucket_->store()->Put(remote::ManifestKey(snap.snapshot_id), bytes.data(),
                                   bytes.size(), true);
  if (s.code() == Status::Code::kAlreadyExists) {
    s = Status::OK();  // another host pushed the same snapshot meanwhile
  }
  STRATA_RETURN_IF_ERROR(s);
  stats->bytes_uploaded += bytes.size();
  stats->snapshot = InfoOf(manifest, "completed");
  SaveIndexCache(bucket_->env(), cache_path, index_cache_);
  return Status::OK();
}

}  // namespace strata::remote
