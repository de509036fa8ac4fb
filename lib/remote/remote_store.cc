// The remote: push, list, restore and delete snapshots in S3 (docs/remote-format.md).
//
// Push: blocks (512 KiB, or the chunk size when larger) are read from the snapshot in batches,
// hashed (SHA-256) and, unless the remote holds the content already, zstd-compressed into packs
// of ~16 MiB. A pack is uploaded, then its index: a pack counts once its index exists. The
// snapshot's block map is a tree of content-addressed nodes (1,024 entries each); an
// incremental push rewrites only the nodes on the paths of changed blocks. The manifest goes
// last, with If-None-Match: it is what lists the snapshot.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>
#include <xxhash.h>
#include <zstd.h>

#include "strata/event_loop.h"
#include "strata/remote.h"

#include "remote/remote_format.h"
#include "remote/remote_internal.h"
#include "remote/s3_client.h"
#include "util/check.h"
#include "util/coding.h"
#include "util/json_text.h"
#include "util/parallel.h"
#include "util/submit_all.h"

namespace strata {

namespace {

using nlohmann::json;
using remote::BlockRef;
using remote::Hash;
using remote::Node;
using remote::S3Client;
using remote::S3Request;

constexpr uint32_t kRemoteBlockBytes = 512 << 10;  // EBS's block size
constexpr size_t kMaxTags = 50;                    // per snapshot, as EC2
// The largest manifest, marker, lease or record read from a remote (ours are a few KiB: 50
// tags and a description at most).
constexpr size_t kMaxManifestBytes = 1 << 20;

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string HashKey(const Hash& h) { return std::string(h.begin(), h.end()); }

unsigned Cores() { return std::clamp(std::thread::hardware_concurrency(), 1u, 16u); }

// Levels above the leaves that a tree over `blocks` blocks needs (0: one leaf is enough).
uint32_t DepthFor(uint64_t blocks) {
  uint32_t depth = 0;
  for (uint64_t span = remote::kFanout; span < blocks; span *= remote::kFanout) {
    depth++;
  }
  return depth;
}

// Fields of JSON read from the remote, which anyone with access to the bucket may have written:
// a field of the wrong type reads as absent, never as an exception.
std::string StringField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
uint64_t UintField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}
int64_t IntField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// The manifest: one JSON line, a newline, and the SHA-256 of that line in hex.
std::string EncodeManifest(const json& j) {
  const std::string line = DumpJson(j);
  return line + "\n" + remote::HexOf(remote::Sha256(line.data(), line.size())) + "\n";
}

Result<json> DecodeManifest(const std::string& bytes, const std::string& what) {
  const size_t nl = bytes.find('\n');
  remote::Hash want;
  if (nl == std::string::npos || bytes.size() != nl + 66 ||
      !remote::ParseHex(bytes.substr(nl + 1, 64), &want) ||
      remote::Sha256(bytes.data(), nl) != want) {
    return Status::Corruption("remote object " + what + ": damaged manifest (checksum)");
  }
  json j = json::parse(bytes.substr(0, nl), nullptr, false);
  if (j.is_discarded() || !j.is_object() || UintField(j, "format") != 1 ||
      !j.value("snapshot_id", json()).is_string() ||
      !j.value("volume_size", json()).is_number_unsigned() ||
      !j.value("block_size", json()).is_number_unsigned() ||
      !j.value("depth", json()).is_number_unsigned() || !j.value("root", json()).is_string()) {
    return Status::Corruption("remote object " + what +
                              ": manifest fields missing or of the wrong type");
  }
  // Sizes the format allows, and a depth that matches them: tree walks trust both.
  const uint64_t size = j["volume_size"].get<uint64_t>();
  const uint64_t block = j["block_size"].get<uint64_t>();
  if (block != kRemoteBlockBytes || size == 0 || size > kMaxVolumeBytes ||
      j["depth"].get<uint64_t>() != DepthFor((size + block - 1) / block)) {
    return Status::Corruption("remote object " + what + ": manifest sizes or depth are impossible");
  }
  return j;
}

RemoteSnapshotInfo InfoOf(const json& m, const std::string& state) {
  RemoteSnapshotInfo i;
  i.snapshot_id = StringField(m, "snapshot_id");
  i.volume_id = StringField(m, "volume_id");
  i.description = StringField(m, "description");
  i.state = state;
  i.start_time_ms = IntField(m, "start_time_ms");
  i.volume_size_bytes = UintField(m, "volume_size");
  i.block_size_bytes = static_cast<uint32_t>(UintField(m, "block_size"));
  i.data_blocks = UintField(m, "data_blocks");
  i.parent_snapshot_id = StringField(m, "parent_snapshot_id");
  auto tags = m.find("tags");
  if (tags != m.end() && tags->is_object()) {
    for (auto it = tags->begin(); it != tags->end() && i.tags.size() < kMaxTags; ++it) {
      if (it.value().is_string()) {
        i.tags.emplace(it.key(), it.value().get<std::string>());
      }
    }
  }
  return i;
}

// A block as stored in its pack, checked (length, zstd, XXH3, SHA-256) into `raw`. Nothing
// that fails a check is ever returned as data.
Status DecodeBlock(const std::string& stored, const BlockRef& ref, const std::string& what,
                   std::vector<std::byte>* raw) {
  STRATA_RETURN_IF_ERROR(remote::CheckRef(ref, what));  // (decoders check; this is the last line)
  raw->resize(ref.raw);
  if (stored.size() != ref.stored) {
    return Status::Corruption(what + ": short read (damaged or truncated pack)");
  }
  if (ref.flags & remote::kFlagZstd) {
    size_t n = ZSTD_decompress(raw->data(), raw->size(), stored.data(), stored.size());
    if (ZSTD_isError(n) || n != ref.raw) {
      return Status::Corruption(what + ": does not decompress (damaged pack)");
    }
  } else if (stored.size() == ref.raw) {
    std::memcpy(raw->data(), stored.data(), ref.raw);
  } else {
    return Status::Corruption(what + ": stored and raw lengths disagree (damaged index)");
  }
  if (XXH3_64bits(raw->data(), raw->size()) != ref.xxh3 ||
      remote::Sha256(raw->data(), raw->size()) != ref.sha256) {
    return Status::Corruption(what + ": checksum mismatch (damaged pack)");
  }
  return Status::OK();
}

uint64_t SpanOf(uint32_t level) {
  uint64_t span = remote::kFanout;
  for (uint32_t i = 0; i < level; i++) {
    span *= remote::kFanout;
  }
  return span;  // blocks under one node of `level`
}

// A block read from the snapshot, on its way into a pack.
struct PendingBlock {
  uint64_t index = 0;
  std::vector<std::byte> raw;
  std::string stored;
  bool zero = false;
  Hash sha{};
  uint64_t xxh3 = 0;
  uint32_t flags = 0;
};

class RemoteImpl final : public Remote {
 public:
  RemoteImpl(RemoteSpec spec, std::unique_ptr<remote::ObjectStore> store,
             remote::RemoteTuning tuning)
      : spec_(std::move(spec)), store_(std::move(store)), tuning_(std::move(tuning)) {}
  // What a push changes in the block map: block index -> its new place, or nullopt (a hole).
  using Changes = std::map<uint64_t, std::optional<BlockRef>>;

  Result<PushStats> PushSnapshot(Pool* pool, const std::string& snapshot_id,
                                 const std::map<std::string, std::string>& tags,
                                 const RemoteProgress& progress) override;
  Result<std::vector<RemoteSnapshotInfo>> ListSnapshots() override;
  Result<RemoteSnapshotInfo> DescribeSnapshot(const std::string& snapshot_id) override;
  Result<RestoreStats> RestoreVolume(Pool* pool, const std::string& snapshot_id,
                                     const VolumeSpec& spec,
                                     const RemoteProgress& progress) override;
  Result<GcStats> DeleteSnapshot(const std::string& snapshot_id) override;
  Result<GcStats> CollectGarbage() override;
  Result<SnapshotInfo> PullSnapshot(Pool* pool, const std::string& snapshot_id,
                                    const RemoteProgress& progress) override;
  Status PutRecord(const std::string& kind, const std::string& id,
                   const std::string& json_text) override;
  Result<std::string> GetRecord(const std::string& kind, const std::string& id) override;
  Result<std::vector<std::string>> ListRecords(const std::string& kind) override;
  Status DeleteRecord(const std::string& kind, const std::string& id) override;

 private:
  int64_t NowMs() const { return tuning_.now_ms ? tuning_.now_ms() : SystemNowMs(); }
  std::string Name() const { return "remote " + spec_.name + " (" + store_->Describe() + ")"; }
  Result<json> GetManifest(const std::string& snapshot_id);
  Result<Node> GetNode(const Hash& hash);
  Status PutIfAbsent(const std::string& key, const std::string& bytes);
  Status LoadKnownBlocks(const std::string& cache_path);
  Status CheckNoGc();
  // The newest older snapshot of the same volume that the remote holds, if any.
  Result<std::optional<json>> FindParent(Pool* pool, const SnapshotInfo& snap);
  Status ReadBatch(Volume* volume, EventLoop* loop, uint64_t size,
                   std::vector<PendingBlock>* batch);
  void Prepare(std::vector<PendingBlock>* batch);
  Status AddToPack(PendingBlock* block, PushStats* stats);
  Status SealPack();
  Status UploadPacks(PushStats* stats);
  // Applies changes (block index -> new ref, or nullopt for a hole) below a node; returns its new
  // hash, or nullopt when the node is left empty.
  Result<std::optional<Hash>> Update(uint32_t level, std::optional<Hash> node, uint64_t first,
                                     Changes::const_iterator begin, Changes::const_iterator end,
                                     PushStats* stats);
  // Reads, hashes and stores the listed blocks of the snapshot; records their new refs.
  Status StoreBlocks(Pool* pool, const SnapshotInfo& snap, const std::vector<uint64_t>& blocks,
                     Changes* changes, PushStats* stats, const RemoteProgress& progress);
  Result<std::vector<uint64_t>> BlocksToRead(Pool* pool, const SnapshotInfo& snap,
                                             const std::optional<json>& parent);
  Status ForEachBlock(const json& manifest,
                      const std::function<Status(uint64_t, const BlockRef&)>& fn);
  Status WalkNodes(uint32_t level, const Hash& node, uint64_t first,
                   const std::function<Status(uint64_t, const BlockRef&)>& on_block,
                   const std::function<void(const Hash&)>& on_node);
  Status FetchBlocks(Volume* volume, EventLoop* loop, uint32_t block_size,
                     std::vector<std::pair<uint64_t, BlockRef>>* refs, RestoreStats* stats);

  RemoteSpec spec_;
  std::unique_ptr<remote::ObjectStore> store_;
  remote::RemoteTuning tuning_;
  std::map<std::string, BlockRef> known_;  // sha256 -> where the remote holds it
  // The pack being filled, and sealed packs waiting for upload.
  std::string pack_;
  std::vector<BlockRef> pack_refs_;
  struct SealedPack {
    Hash id;
    std::string bytes;
    std::vector<BlockRef> refs;
  };
  std::vector<SealedPack> sealed_;
  // Blocks of this push waiting in a pack not yet sealed: sha256 -> block indexes.
  std::map<std::string, std::vector<uint64_t>> pending_index_;
  int64_t data_delta_ = 0;  // data blocks the push added (removed) against its parent
  std::map<std::string, std::string> index_cache_;  // index key -> its bytes (see LoadKnownBlocks)
  std::string CachePath(Pool* pool) const {
    const std::string address = spec_.endpoint_url + " " + spec_.url;
    return pool->Info().path + "/remote-cache/" +
           remote::HexOf(remote::Sha256(address.data(), address.size())).substr(0, 32) + ".idx";
  }
  Status PushLocked(Pool* pool, const SnapshotInfo& snap, const RemoteProgress& progress,
                    PushStats* stats);
  // The push's marker (pending/ID): who pushes, its heartbeat, and the packs it is uploading
  // (in_flight) or that an earlier, killed run of it may have left without an index (orphans).
  Status WriteMarker(const std::vector<Hash>& in_flight);
  Status HeartbeatIfDue();
  // Ends a push: packs that may be left without an index go to orphans/ for GC, then the marker.
  Status SettleMarker(const std::string& snapshot_id);
  Result<int64_t> TakeLease();
  Status ReleaseLease();
  Result<std::vector<std::pair<std::string, uint64_t>>> ListAll(const std::string& prefix);
  // Reads the markers and orphan lists: true when a live push is under way. Else `orphans` gets
  // the packs dead pushes may have left and `settled` the keys to delete once they are swept.
  Result<bool> ReadPushLeftovers(std::set<Hash>* orphans, std::vector<std::string>* settled);
  Status Mark(const json& manifest, std::set<Hash>* nodes, std::set<Hash>* packs);
  Status MarkRestores(std::set<Hash>* nodes, std::set<Hash>* packs,
                      std::vector<std::string>* settled);
  Status CollectLocked(int64_t lease_until_ms, GcStats* stats);
  // GC's parts: what the manifests reach (restores are marked by MarkRestores), what goes (with
  // its sizes), and the deletes themselves, each made only while the lease still holds.
  struct Sweep {
    std::vector<std::string> indexes;  // index keys whose packs go
    std::vector<Hash> packs;           // packs that go (indexed and orphaned)
    std::vector<std::string> keys;     // nodes, then packs
  };
  Status MarkManifests(std::set<Hash>* keep_nodes, std::set<Hash>* keep_packs);
  Status PlanSweep(const std::set<Hash>& keep_nodes, const std::set<Hash>& keep_packs,
                   std::set<Hash> orphans, Sweep* sweep, GcStats* stats);
  void AddPackSizes(Sweep* sweep, GcStats* stats);
  Status DeleteUnderLease(int64_t lease_until_ms, const Sweep& sweep,
                          std::vector<std::string> settled);

  json marker_;                     // the marker's fixed fields while a push runs
  std::set<Hash> carried_orphans_;  // from the marker of a killed run of this push
  std::vector<Hash> in_flight_;     // packs being uploaded now
  int64_t last_heartbeat_ms_ = 0;
  std::map<std::string, std::string> tags_;  // of the snapshot being pushed
};

// ---------------------------------------------------------------- small pieces

Status RemoteImpl::PutIfAbsent(const std::string& key, const std::string& bytes) {
  Status s = store_->Put(key, bytes.data(), bytes.size(), /*if_absent=*/true);
  return s.code() == Status::Code::kAlreadyExists ? Status::OK() : s;  // content-addressed
}

Result<json> RemoteImpl::GetManifest(const std::string& snapshot_id) {
  auto bytes = store_->Get(remote::ManifestKey(snapshot_id), kMaxManifestBytes);
  if (bytes.status().code() == Status::Code::kNotFound) {
    return Status::NotFound(Name() + " holds no snapshot " + snapshot_id);
  }
  STRATA_RETURN_IF_ERROR(bytes.status());
  return DecodeManifest(*bytes, remote::ManifestKey(snapshot_id));
}

Result<Node> RemoteImpl::GetNode(const Hash& hash) {
  const std::string key = remote::NodeKey(hash);
  STRATA_ASSIGN_OR_RETURN(std::string bytes, store_->Get(key, remote::kMaxNodeBytes));
  if (remote::Sha256(bytes.data(), bytes.size()) != hash) {
    return Status::Corruption(Name() + ": object " + key + " does not match its name (damaged)");
  }
  return remote::DecodeNode(bytes, key);
}

// The pack indexes this pool has read before, kept in POOL/remote-cache/ (one file per remote
// address): a push then fetches only the indexes added since (the listing of index/ stays, one
// request per 1,000 packs), and forgets those the listing no longer has (freed by a GC). A cache
// that fails its checksum is ignored and rebuilt: it is only ever a copy.
namespace {
constexpr char kCacheMagic[8] = {'S', 'T', 'R', 'T', 'R', 'I', 'D', 'C'};
constexpr size_t kMaxCacheBytes = 1ull << 30;

std::map<std::string, std::string> LoadIndexCache(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 16 || bytes.size() > kMaxCacheBytes ||
      std::memcmp(bytes.data(), kCacheMagic, 8) != 0 ||
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

void SaveIndexCache(const std::string& path, const std::map<std::string, std::string>& cache) {
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
  const std::string temp = path + ".tmp";
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      return;  // a cache that cannot be written is only slower next time
    }
  }
  std::filesystem::rename(temp, path, ec);
}
}  // namespace

Status RemoteImpl::LoadKnownBlocks(const std::string& cache_path) {
  known_.clear();
  std::map<std::string, std::string> cached = LoadIndexCache(cache_path), now;
  Status listed = store_->ForEachPage(remote::kIndexPrefix, [&](const auto& page) {
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
    store_->Run(batch);
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
    STRATA_ASSIGN_OR_RETURN(std::vector<BlockRef> refs, remote::DecodeIndex(index, key));
    for (const BlockRef& ref : refs) {
      known_.emplace(HashKey(ref.sha256), ref);
    }
  }
  index_cache_ = std::move(now);
  return Status::OK();
}

// A push announces itself (pending/ID) before it looks at the GC lease; a GC takes the lease
// before it looks for pushes. Whichever comes second sees the other (S3 is strongly consistent).
Status RemoteImpl::CheckNoGc() {
  auto lease = store_->Get(remote::kGcLeaseKey, kMaxManifestBytes);
  if (lease.status().code() == Status::Code::kNotFound) {
    return Status::OK();
  }
  STRATA_RETURN_IF_ERROR(lease.status());
  json j = json::parse(*lease, nullptr, false);
  const int64_t until = IntField(j, "until_ms");
  if (until > NowMs()) {
    return Status::Busy(Name() + " is collecting garbage (lease held until " +
                        std::to_string((until - NowMs()) / 1000) + " s from now); retry then");
  }
  return Status::OK();
}

// ---------------------------------------------------------------- push

Result<std::optional<json>> RemoteImpl::FindParent(Pool* pool, const SnapshotInfo& snap) {
  std::vector<SnapshotInfo> older;
  for (const SnapshotInfo& s : pool->ListSnapshots()) {
    if (s.volume_id == snap.volume_id && s.snapshot_id != snap.snapshot_id &&
        s.start_time_ms <= snap.start_time_ms && s.epoch < snap.epoch) {
      older.push_back(s);
    }
  }
  std::sort(older.begin(), older.end(),
            [](const SnapshotInfo& a, const SnapshotInfo& b) { return a.epoch > b.epoch; });
  for (const SnapshotInfo& s : older) {
    auto m = GetManifest(s.snapshot_id);
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
Status RemoteImpl::ReadBatch(Volume* volume, EventLoop* loop, uint64_t size,
                             std::vector<PendingBlock>* batch) {
  std::vector<IoRequest> reads(batch->size());
  for (size_t i = 0; i < batch->size(); i++) {
    PendingBlock& b = (*batch)[i];
    const uint64_t offset = b.index * kRemoteBlockBytes;
    b.raw.resize(static_cast<size_t>(std::min<uint64_t>(kRemoteBlockBytes, size - offset)));
    reads[i].kind = IoRequest::Kind::kRead;
    reads[i].offset_bytes = offset;
    reads[i].length_bytes = b.raw.size();
    reads[i].data = b.raw.data();
  }
  return SubmitAll(volume, loop, &reads);
}

// Zero check, identity, checksum and compression, one block per thread.
void RemoteImpl::Prepare(std::vector<PendingBlock>* batch) {
  ParallelFor(batch->size(), Cores(), [batch](size_t i) {
    PendingBlock& b = (*batch)[i];
    b.zero = std::all_of(b.raw.begin(), b.raw.end(), [](std::byte x) { return x == std::byte{0}; });
    if (b.zero) {
      return;
    }
    b.sha = remote::Sha256(b.raw.data(), b.raw.size());
    b.xxh3 = XXH3_64bits(b.raw.data(), b.raw.size());
    b.stored.resize(ZSTD_compressBound(b.raw.size()));
    const size_t n = ZSTD_compress(b.stored.data(), b.stored.size(), b.raw.data(), b.raw.size(), 1);
    if (ZSTD_isError(n) || n >= b.raw.size()) {  // incompressible: stored as it is
      b.stored.assign(reinterpret_cast<const char*>(b.raw.data()), b.raw.size());
      b.flags = 0;
    } else {
      b.stored.resize(n);
      b.flags = remote::kFlagZstd;
    }
  });
}

Status RemoteImpl::AddToPack(PendingBlock* b, PushStats* stats) {
  BlockRef ref;
  ref.sha256 = b->sha;
  ref.offset = pack_.size();
  ref.stored = static_cast<uint32_t>(b->stored.size());
  ref.raw = static_cast<uint32_t>(b->raw.size());
  ref.flags = b->flags;
  ref.xxh3 = b->xxh3;
  pack_ += b->stored;
  pack_refs_.push_back(ref);
  stats->blocks_uploaded++;
  if (pack_.size() >= tuning_.pack_target_bytes) {
    STRATA_RETURN_IF_ERROR(SealPack());
  }
  if (sealed_.size() >= tuning_.packs_per_upload) {
    return UploadPacks(stats);
  }
  return Status::OK();
}

Status RemoteImpl::SealPack() {
  if (pack_refs_.empty()) {
    return Status::OK();
  }
  SealedPack p;
  p.id = remote::Sha256(pack_.data(), pack_.size());
  p.bytes = std::move(pack_);
  p.refs = std::move(pack_refs_);
  for (BlockRef& r : p.refs) {
    r.pack = p.id;
    known_.emplace(HashKey(r.sha256), r);  // later blocks of this push with this content reuse it
  }
  pack_.clear();
  pack_refs_.clear();
  sealed_.push_back(std::move(p));
  return Status::OK();
}

// The sealed packs at once, then their indexes: a pack counts only once its index exists.
Status RemoteImpl::UploadPacks(PushStats* stats) {
  if (sealed_.empty()) {
    return Status::OK();
  }
  std::vector<Hash> ids;
  for (const SealedPack& p : sealed_) {
    ids.push_back(p.id);
  }
  STRATA_RETURN_IF_ERROR(WriteMarker(ids));  // a kill from here on leaves them named for GC
  std::vector<S3Request> puts(sealed_.size());
  std::vector<S3Request*> batch;
  for (size_t i = 0; i < sealed_.size(); i++) {
    puts[i].method = S3Request::Method::kPut;
    puts[i].key = remote::PackKey(sealed_[i].id);
    puts[i].body = sealed_[i].bytes.data();
    puts[i].body_bytes = sealed_[i].bytes.size();
    puts[i].headers = {{"If-None-Match", "*"}};
    batch.push_back(&puts[i]);
  }
  store_->Run(batch);
  std::vector<std::string> indexes(sealed_.size());
  for (size_t i = 0; i < sealed_.size(); i++) {
    if (!puts[i].status.ok() && puts[i].status.code() != Status::Code::kAlreadyExists) {
      return puts[i].status;
    }
    stats->bytes_uploaded += sealed_[i].bytes.size();
    indexes[i] = remote::EncodeIndex(sealed_[i].refs);
    puts[i].key = remote::IndexKey(sealed_[i].id);
    puts[i].body = indexes[i].data();
    puts[i].body_bytes = indexes[i].size();
  }
  store_->Run(batch);
  for (size_t i = 0; i < sealed_.size(); i++) {
    if (!puts[i].status.ok() && puts[i].status.code() != Status::Code::kAlreadyExists) {
      return puts[i].status;
    }
    stats->bytes_uploaded += indexes[i].size();
    stats->packs++;
    index_cache_[remote::IndexKey(sealed_[i].id)] = std::move(indexes[i]);
  }
  sealed_.clear();
  return Status::OK();
}

using Changes = RemoteImpl::Changes;

Changes::const_iterator changes_end_of(Changes::const_iterator it, Changes::const_iterator end,
                                       uint64_t limit) {
  while (it != end && it->first < limit) {
    ++it;
  }
  return it;
}

Result<std::optional<Hash>> RemoteImpl::Update(uint32_t level, std::optional<Hash> node,
                                               uint64_t first, Changes::const_iterator begin,
                                               Changes::const_iterator end, PushStats* stats) {
  Node n;
  n.level = level;
  if (node) {
    STRATA_ASSIGN_OR_RETURN(n, GetNode(*node));
    if (n.level != level) {
      return Status::Corruption(Name() + ": tree node " + remote::HexOf(*node) +
                                " at the wrong level");
    }
  }
  if (level == 0) {
    std::map<uint32_t, BlockRef> slots(n.blocks.begin(), n.blocks.end());
    data_delta_ -= static_cast<int64_t>(slots.size());
    for (auto it = begin; it != end; ++it) {
      const auto slot = static_cast<uint32_t>(it->first - first);
      if (it->second) {
        slots[slot] = *it->second;
      } else {
        slots.erase(slot);
      }
    }
    n.blocks.assign(slots.begin(), slots.end());
    data_delta_ += static_cast<int64_t>(slots.size());
  } else {
    std::map<uint32_t, Hash> children(n.children.begin(), n.children.end());
    const uint64_t span = SpanOf(level - 1);
    for (auto it = begin; it != end;) {
      const auto slot = static_cast<uint32_t>((it->first - first) / span);
      const uint64_t child_first = first + slot * span;
      auto stop = changes_end_of(it, end, child_first + span);
      auto child = children.count(slot) ? std::optional<Hash>(children[slot]) : std::nullopt;
      STRATA_ASSIGN_OR_RETURN(std::optional<Hash> updated,
                              Update(level - 1, child, child_first, it, stop, stats));
      if (updated) {
        children[slot] = *updated;
      } else {
        children.erase(slot);
      }
      it = stop;
    }
    n.children.assign(children.begin(), children.end());
  }
  if (n.blocks.empty() && n.children.empty()) {
    return std::optional<Hash>();
  }
  const std::string bytes = remote::EncodeNode(n);
  const Hash hash = remote::Sha256(bytes.data(), bytes.size());
  if (!node || hash != *node) {
    STRATA_RETURN_IF_ERROR(PutIfAbsent(remote::NodeKey(hash), bytes));
    stats->bytes_uploaded += bytes.size();
  }
  return std::optional<Hash>(hash);
}

// Blocks whose content may differ from the parent's (all blocks with data without a parent).
Result<std::vector<uint64_t>> RemoteImpl::BlocksToRead(Pool* pool, const SnapshotInfo& snap,
                                                       const std::optional<json>& parent) {
  std::vector<uint64_t> out;
  uint64_t start = 0;
  for (;;) {
    Result<BlockList> page =
        parent
            ? pool->ListChangedBlocks((*parent)["snapshot_id"].get<std::string>(), snap.snapshot_id,
                                      kRemoteBlockBytes, start, kMaxBlockListResults)
            : pool->ListSnapshotBlocks(snap.snapshot_id, kRemoteBlockBytes, start,
                                       kMaxBlockListResults);
    STRATA_RETURN_IF_ERROR(page.status());
    out.insert(out.end(), page->blocks.begin(), page->blocks.end());
    if (!page->next_block) {
      return out;
    }
    start = *page->next_block;
  }
}

Status RemoteImpl::StoreBlocks(Pool* pool, const SnapshotInfo& snap,
                               const std::vector<uint64_t>& blocks, Changes* changes,
                               PushStats* stats, const RemoteProgress& progress) {
  STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Volume> volume, pool->OpenSnapshot(snap.snapshot_id));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop,
                          pool->CreateEventLoop(2 * tuning_.batch_blocks));
  for (size_t first = 0; first < blocks.size(); first += tuning_.batch_blocks) {
    std::vector<PendingBlock> batch(std::min(tuning_.batch_blocks, blocks.size() - first));
    for (size_t i = 0; i < batch.size(); i++) {
      batch[i].index = blocks[first + i];
    }
    STRATA_RETURN_IF_ERROR(HeartbeatIfDue());
    STRATA_RETURN_IF_ERROR(ReadBatch(volume.get(), loop.get(), volume->size_bytes(), &batch));
    Prepare(&batch);
    for (PendingBlock& b : batch) {
      stats->blocks_read++;
      if (b.zero) {
        stats->zero_blocks++;
        (*changes)[b.index] = std::nullopt;
        continue;
      }
      auto known = known_.find(HashKey(b.sha));
      if (known != known_.end() && known->second.raw == b.raw.size()) {
        stats->blocks_deduplicated++;
        (*changes)[b.index] = known->second;
        continue;
      }
      (*changes)[b.index] = std::nullopt;  // its ref is set once its pack is sealed
      auto& waiting = pending_index_[HashKey(b.sha)];
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
  for (const auto& [sha, indexes] : pending_index_) {  // now every new block has its pack
    const BlockRef& ref = known_.at(sha);
    for (uint64_t index : indexes) {
      (*changes)[index] = ref;
    }
  }
  pending_index_.clear();
  return Status::OK();
}

Result<PushStats> RemoteImpl::PushSnapshot(Pool* pool, const std::string& snapshot_id,
                                           const std::map<std::string, std::string>& tags,
                                           const RemoteProgress& progress) {
  PushStats stats;
  if (tags.size() > kMaxTags) {
    return Status::InvalidArgument("a snapshot has at most 50 tags");
  }
  tags_ = tags;
  STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool->DescribeSnapshot(snapshot_id));
  if (pool->Info().chunk_size_bytes > kRemoteBlockBytes) {
    return Status::NotSupported("pools with chunks over 512 KiB cannot push to a remote yet");
  }
  auto existing = GetManifest(snapshot_id);
  if (existing.ok()) {
    stats.snapshot = InfoOf(*existing, "completed");
    stats.already_there = true;
    return stats;
  }
  if (existing.status().code() != Status::Code::kNotFound) {
    return existing.status();
  }
  carried_orphans_.clear();
  in_flight_.clear();
  auto earlier = store_->Get(remote::PendingKey(snapshot_id));  // a killed run of this push?
  if (earlier.ok()) {
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
  } else if (earlier.status().code() != Status::Code::kNotFound) {
    return earlier.status();
  }
  marker_ = json{{"snapshot_id", snapshot_id},          {"volume_id", snap.volume_id},
                 {"description", snap.description},     {"volume_size", snap.volume_size_bytes},
                 {"start_time_ms", snap.start_time_ms}, {"pushed_since_ms", NowMs()}};
  STRATA_RETURN_IF_ERROR(WriteMarker({}));
  Status s = PushLocked(pool, snap, progress, &stats);
  Status settled = SettleMarker(snapshot_id);
  STRATA_RETURN_IF_ERROR(s);
  STRATA_RETURN_IF_ERROR(settled);
  return stats;
}

Status RemoteImpl::WriteMarker(const std::vector<Hash>& in_flight) {
  in_flight_ = in_flight;
  json m = marker_;
  m["heartbeat_ms"] = NowMs();
  m["in_flight"] = json::array();
  for (const Hash& h : in_flight_) {
    m["in_flight"].push_back(remote::HexOf(h));
  }
  m["orphans"] = json::array();
  for (const Hash& h : carried_orphans_) {
    m["orphans"].push_back(remote::HexOf(h));
  }
  const std::string bytes = DumpJson(m);
  STRATA_RETURN_IF_ERROR(store_->Put(remote::PendingKey(StringField(marker_, "snapshot_id")),
                                     bytes.data(), bytes.size()));
  last_heartbeat_ms_ = NowMs();
  return Status::OK();
}

// A push that reads for long without uploading (every block already in the remote) still shows
// that it is alive: GC treats a marker silent for pending_stale_ms as a dead push's.
Status RemoteImpl::HeartbeatIfDue() {
  if (NowMs() - last_heartbeat_ms_ < tuning_.pending_stale_ms / 8) {
    return Status::OK();
  }
  return WriteMarker(in_flight_);
}

Status RemoteImpl::SettleMarker(const std::string& snapshot_id) {
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
        std::string(remote::kOrphansPrefix) + snapshot_id + "-" + std::to_string(NowMs());
    STRATA_RETURN_IF_ERROR(store_->Put(key, bytes.data(), bytes.size()));
  }
  carried_orphans_.clear();
  in_flight_.clear();
  return store_->Delete(remote::PendingKey(snapshot_id));
}

Status RemoteImpl::PushLocked(Pool* pool, const SnapshotInfo& snap, const RemoteProgress& progress,
                              PushStats* stats) {
  STRATA_RETURN_IF_ERROR(CheckNoGc());
  const std::string cache_path = CachePath(pool);
  STRATA_RETURN_IF_ERROR(LoadKnownBlocks(cache_path));
  STRATA_ASSIGN_OR_RETURN(std::optional<json> parent, FindParent(pool, snap));
  data_delta_ = 0;
  STRATA_ASSIGN_OR_RETURN(std::vector<uint64_t> blocks, BlocksToRead(pool, snap, parent));
  Changes changes;
  STRATA_RETURN_IF_ERROR(StoreBlocks(pool, snap, blocks, &changes, stats, progress));
  const uint64_t block_count = (snap.volume_size_bytes + kRemoteBlockBytes - 1) / kRemoteBlockBytes;
  const uint32_t depth = DepthFor(block_count);
  std::optional<Hash> root;
  uint64_t data_blocks = 0;
  if (parent) {
    Hash h;
    const std::string hex = (*parent)["root"].get<std::string>();
    if (!hex.empty() && remote::ParseHex(hex, &h)) {
      root = h;
    }
    uint32_t parent_depth = (*parent)["depth"].get<uint32_t>();
    for (; parent_depth < depth && root; parent_depth++) {  // the volume grew: a taller tree
      Node up;
      up.level = parent_depth + 1;
      up.children.emplace_back(0, *root);
      const std::string bytes = remote::EncodeNode(up);
      root = remote::Sha256(bytes.data(), bytes.size());
      STRATA_RETURN_IF_ERROR(PutIfAbsent(remote::NodeKey(*root), bytes));
    }
    data_blocks = UintField(*parent, "data_blocks");
  }
  STRATA_ASSIGN_OR_RETURN(root, Update(depth, root, 0, changes.cbegin(), changes.cend(), stats));
  data_blocks = static_cast<uint64_t>(static_cast<int64_t>(data_blocks) + data_delta_);
  json manifest = {
      {"format", 1},
      {"snapshot_id", snap.snapshot_id},
      {"volume_id", snap.volume_id},
      {"description", snap.description},
      {"start_time_ms", snap.start_time_ms},
      {"volume_size", snap.volume_size_bytes},
      {"block_size", kRemoteBlockBytes},
      {"depth", depth},
      {"root", root ? remote::HexOf(*root) : std::string()},
      {"data_blocks", data_blocks},
      {"parent_snapshot_id", parent ? (*parent)["snapshot_id"].get<std::string>() : ""},
      {"tags", tags_}};
  const std::string bytes = EncodeManifest(manifest);
  Status s = store_->Put(remote::ManifestKey(snap.snapshot_id), bytes.data(), bytes.size(), true);
  if (s.code() == Status::Code::kAlreadyExists) {
    s = Status::OK();  // another host pushed the same snapshot meanwhile
  }
  STRATA_RETURN_IF_ERROR(s);
  stats->bytes_uploaded += bytes.size();
  stats->snapshot = InfoOf(manifest, "completed");
  SaveIndexCache(cache_path, index_cache_);
  return Status::OK();
}

// ---------------------------------------------------------------- list and describe

Result<std::vector<RemoteSnapshotInfo>> RemoteImpl::ListSnapshots() {
  std::vector<RemoteSnapshotInfo> out;
  std::set<std::string> seen;
  for (const char* prefix : {remote::kManifestPrefix, remote::kPendingPrefix}) {
    const bool pending = std::string(prefix) == remote::kPendingPrefix;
    Status listed = store_->ForEachPage(prefix, [&](const auto& page) {
      std::vector<S3Request> gets(page.objects.size());
      std::vector<S3Request*> batch;
      for (size_t i = 0; i < gets.size(); i++) {
        gets[i].key = page.objects[i].first;
        // (a push's marker names the packs it carries from killed runs: the default cap)
        gets[i].max_response_bytes = pending ? 0 : kMaxManifestBytes;
        batch.push_back(&gets[i]);
      }
      store_->Run(batch);
      for (S3Request& r : gets) {
        if (r.status.code() == Status::Code::kNotFound) {
          continue;  // finished or deleted since the listing
        }
        STRATA_RETURN_IF_ERROR(r.status);
        if (pending) {
          json j = json::parse(r.response, nullptr, false);
          if (j.is_object() && NowMs() - IntField(j, "heartbeat_ms") < tuning_.pending_stale_ms &&
              seen.insert(StringField(j, "snapshot_id")).second) {
            out.push_back(InfoOf(j, "pending"));
          }
          continue;
        }
        STRATA_ASSIGN_OR_RETURN(json m, DecodeManifest(r.response, r.key));
        out.push_back(InfoOf(m, "completed"));
        seen.insert(out.back().snapshot_id);
      }
      return Status::OK();
    });
    STRATA_RETURN_IF_ERROR(listed);
  }
  return out;
}

Result<RemoteSnapshotInfo> RemoteImpl::DescribeSnapshot(const std::string& snapshot_id) {
  STRATA_ASSIGN_OR_RETURN(json m, GetManifest(snapshot_id));
  return InfoOf(m, "completed");
}

// ---------------------------------------------------------------- tree walks and restore

Status RemoteImpl::WalkNodes(uint32_t level, const Hash& hash, uint64_t first,
                             const std::function<Status(uint64_t, const BlockRef&)>& on_block,
                             const std::function<void(const Hash&)>& on_node) {
  STRATA_ASSIGN_OR_RETURN(Node n, GetNode(hash));
  if (n.level != level) {
    return Status::Corruption(Name() + ": tree node " + remote::HexOf(hash) +
                              " at the wrong level");
  }
  if (on_node) {
    on_node(hash);
  }
  for (const auto& [slot, ref] : n.blocks) {
    if (on_block) {
      STRATA_RETURN_IF_ERROR(on_block(first + slot, ref));
    }
  }
  for (const auto& [slot, child] : n.children) {
    STRATA_RETURN_IF_ERROR(
        WalkNodes(level - 1, child, first + slot * SpanOf(level - 1), on_block, on_node));
  }
  return Status::OK();
}

// Fetches the blocks (range GETs, many at once), checks each against its checksum and its
// SHA-256, and writes it into the volume.
Status RemoteImpl::FetchBlocks(Volume* volume, EventLoop* loop, uint32_t block_size,
                               std::vector<std::pair<uint64_t, BlockRef>>* refs,
                               RestoreStats* stats) {
  std::vector<S3Request> gets(refs->size());
  std::vector<S3Request*> batch;
  for (size_t i = 0; i < refs->size(); i++) {
    const BlockRef& ref = (*refs)[i].second;
    gets[i].key = remote::PackKey(ref.pack);
    gets[i].headers = {{"Range", "bytes=" + std::to_string(ref.offset) + "-" +
                                     std::to_string(ref.offset + ref.stored - 1)}};
    gets[i].max_response_bytes = ref.stored;
    batch.push_back(&gets[i]);
  }
  store_->Run(batch);
  std::vector<std::vector<std::byte>> raw(refs->size());
  std::vector<Status> checked(refs->size());
  for (const S3Request& r : gets) {
    STRATA_RETURN_IF_ERROR(r.status);
  }
  ParallelFor(refs->size(), Cores(), [&](size_t i) {
    const auto& [index, ref] = (*refs)[i];
    checked[i] =
        DecodeBlock(gets[i].response, ref,
                    Name() + ": block " + std::to_string(index) + " in " + gets[i].key, &raw[i]);
  });
  for (size_t i = 0; i < refs->size(); i++) {
    STRATA_RETURN_IF_ERROR(checked[i]);  // nothing of a damaged batch is written
  }
  std::vector<IoRequest> writes(refs->size());
  for (size_t i = 0; i < refs->size(); i++) {
    writes[i].kind = IoRequest::Kind::kWrite;
    writes[i].offset_bytes = (*refs)[i].first * block_size;
    writes[i].length_bytes = raw[i].size();
    writes[i].data = raw[i].data();
  }
  STRATA_RETURN_IF_ERROR(SubmitAll(volume, loop, &writes));
  for (const auto& [index, ref] : *refs) {
    stats->blocks++;
    stats->bytes_downloaded += ref.stored;
  }
  refs->clear();
  return Status::OK();
}

Result<RestoreStats> RemoteImpl::RestoreVolume(Pool* pool, const std::string& snapshot_id,
                                               const VolumeSpec& spec,
                                               const RemoteProgress& progress) {
  STRATA_ASSIGN_OR_RETURN(json m, GetManifest(snapshot_id));
  const uint64_t size = m["volume_size"].get<uint64_t>();
  const uint32_t block_size = m["block_size"].get<uint32_t>();
  if (block_size == 0 || block_size > (64u << 20) || (size == 0)) {
    return Status::Corruption(Name() + ": manifest of " + snapshot_id + " has impossible sizes");
  }
  VolumeSpec create = spec;
  create.size_bytes = std::max(spec.size_bytes, size);
  create.snapshot_id.clear();
  create.importing = true;  // hidden, and gone after a crash, until every block is in
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool->CreateVolume(create));
  RestoreStats stats;
  Status s = [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Volume> volume, pool->OpenVolume(info.volume_id));
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop,
                            pool->CreateEventLoop(2 * tuning_.fetch_batch));
    const uint64_t total = UintField(m, "data_blocks");
    std::vector<std::pair<uint64_t, BlockRef>> refs;
    Hash root;
    if (!m["root"].get<std::string>().empty()) {
      if (!remote::ParseHex(m["root"].get<std::string>(), &root)) {
        return Status::Corruption(Name() + ": manifest of " + snapshot_id + ": bad root");
      }
      auto on_block = [&](uint64_t index, const BlockRef& ref) -> Status {
        if (index * uint64_t{block_size} >= size || ref.raw > block_size) {
          return Status::Corruption(Name() + ": block " + std::to_string(index) +
                                    " lies outside the volume");
        }
        refs.emplace_back(index, ref);
        if (refs.size() < tuning_.fetch_batch) {
          return Status::OK();
        }
        Status fetched = FetchBlocks(volume.get(), loop.get(), block_size, &refs, &stats);
        if (progress) {
          progress(stats.blocks * block_size, total * block_size);
        }
        return fetched;
      };
      STRATA_RETURN_IF_ERROR(WalkNodes(m["depth"].get<uint32_t>(), root, 0, on_block, nullptr));
    }
    STRATA_RETURN_IF_ERROR(FetchBlocks(volume.get(), loop.get(), block_size, &refs, &stats));
    STRATA_RETURN_IF_ERROR(volume->Flush());
    if (!spec.importing) {  // (a pull seals the volume into a snapshot instead)
      STRATA_ASSIGN_OR_RETURN(info, pool->PublishImport(info.volume_id));
    }
    return Status::OK();
  }();
  if (!s.ok()) {
    Status cleanup = pool->DeleteVolume(info.volume_id);  // nothing half-restored stays
    (void)cleanup;
    return s;
  }
  stats.volume = info;  // (an importing volume is hidden from DescribeVolume)
  return stats;
}

// ---------------------------------------------------------------- delete and garbage collection

Result<int64_t> RemoteImpl::TakeLease() {
  const int64_t until = NowMs() + tuning_.lease_ms;
  const std::string lease = DumpJson(json{{"until_ms", until}});
  Status took = store_->Put(remote::kGcLeaseKey, lease.data(), lease.size(), true);
  if (took.code() == Status::Code::kAlreadyExists) {
    STRATA_RETURN_IF_ERROR(CheckNoGc());  // Busy while it is held; an expired one is replaced
    STRATA_RETURN_IF_ERROR(store_->Put(remote::kGcLeaseKey, lease.data(), lease.size()));
  } else {
    STRATA_RETURN_IF_ERROR(took);
  }
  return until;
}

Status RemoteImpl::ReleaseLease() { return store_->Delete(remote::kGcLeaseKey); }

Result<std::vector<std::pair<std::string, uint64_t>>> RemoteImpl::ListAll(
    const std::string& prefix) {
  std::vector<std::pair<std::string, uint64_t>> out;
  STRATA_RETURN_IF_ERROR(store_->ForEachPage(prefix, [&out](const auto& page) {
    out.insert(out.end(), page.objects.begin(), page.objects.end());
    return Status::OK();
  }));
  return out;
}

Result<GcStats> RemoteImpl::DeleteSnapshot(const std::string& snapshot_id) {
  GcStats stats;
  STRATA_RETURN_IF_ERROR(GetManifest(snapshot_id).status());  // NotFound names it
  // The lease first, then the look for pushes under way (CheckNoGc explains the order).
  STRATA_ASSIGN_OR_RETURN(int64_t until, TakeLease());
  Status s = store_->Delete(remote::ManifestKey(snapshot_id));
  if (s.ok()) {
    s = CollectLocked(until, &stats);
  }
  Status released = ReleaseLease();
  STRATA_RETURN_IF_ERROR(s);
  STRATA_RETURN_IF_ERROR(released);
  return stats;
}

Result<GcStats> RemoteImpl::CollectGarbage() {
  GcStats stats;
  STRATA_ASSIGN_OR_RETURN(int64_t until, TakeLease());
  Status s = CollectLocked(until, &stats);
  Status released = ReleaseLease();
  STRATA_RETURN_IF_ERROR(s);
  STRATA_RETURN_IF_ERROR(released);
  return stats;
}

Result<bool> RemoteImpl::ReadPushLeftovers(std::set<Hash>* orphans,
                                           std::vector<std::string>* settled) {
  auto add_packs = [orphans](const json& j, const char* field) {
    auto it = j.is_object() ? j.find(field) : j.end();
    for (size_t i = 0; it != j.end() && it->is_array() && i < it->size(); i++) {
      Hash h;
      if ((*it)[i].is_string() && remote::ParseHex((*it)[i].get<std::string>(), &h)) {
        orphans->insert(h);
      }
    }
  };
  for (const char* prefix : {remote::kPendingPrefix, remote::kOrphansPrefix}) {
    const bool markers = std::string(prefix) == remote::kPendingPrefix;
    STRATA_ASSIGN_OR_RETURN(auto keys, ListAll(prefix));
    for (const auto& [key, size] : keys) {
      auto bytes = store_->Get(key);  // (a GC's journal names every pack it dooms: the default cap)
      if (bytes.status().code() == Status::Code::kNotFound) {
        continue;  // a push finished since the listing
      }
      STRATA_RETURN_IF_ERROR(bytes.status());
      json j = json::parse(*bytes, nullptr, false);
      if (markers && NowMs() - IntField(j, "heartbeat_ms") < tuning_.pending_stale_ms) {
        return true;  // alive: it may be reusing any pack
      }
      add_packs(j, markers ? "in_flight" : "packs");
      add_packs(j, "orphans");
      settled->push_back(key);
    }
  }
  return false;
}

// Adds what the manifest's tree reaches. A node already marked is not walked again: nodes are
// content-addressed, so its subtree is marked too (the mark is O(distinct nodes)).
Status RemoteImpl::Mark(const json& manifest, std::set<Hash>* nodes, std::set<Hash>* packs) {
  Hash root;
  if (StringField(manifest, "root").empty()) {
    return Status::OK();
  }
  if (!remote::ParseHex(StringField(manifest, "root"), &root)) {
    return Status::Corruption(Name() + ": manifest of " + StringField(manifest, "snapshot_id") +
                              ": bad root");
  }
  std::vector<std::pair<uint32_t, Hash>> stack = {{UintField(manifest, "depth"), root}};
  while (!stack.empty()) {
    auto [level, hash] = stack.back();
    stack.pop_back();
    if (!nodes->insert(hash).second) {
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(Node n, GetNode(hash));
    if (n.level != level || (level == 0 && !n.children.empty())) {
      return Status::Corruption(Name() + ": tree node " + remote::HexOf(hash) +
                                " at the wrong level");
    }
    for (const auto& [slot, ref] : n.blocks) {
      packs->insert(ref.pack);
    }
    for (const auto& [slot, child] : n.children) {
      stack.emplace_back(level - 1, child);
    }
  }
  return Status::OK();
}

// Lazy restores under way elsewhere keep their trees (their snapshot may be deleted meanwhile);
// markers whose heartbeat stopped are dropped with the other leftovers.
Status RemoteImpl::MarkRestores(std::set<Hash>* nodes, std::set<Hash>* packs,
                                std::vector<std::string>* settled) {
  STRATA_ASSIGN_OR_RETURN(auto markers, ListAll(remote::kRestoringPrefix));
  for (const auto& [key, size] : markers) {
    auto bytes = store_->Get(key, kMaxManifestBytes);
    if (bytes.status().code() == Status::Code::kNotFound) {
      continue;  // finished since the listing
    }
    STRATA_RETURN_IF_ERROR(bytes.status());
    json j = json::parse(*bytes, nullptr, false);
    if (!j.is_object() || NowMs() - IntField(j, "heartbeat_ms") >= tuning_.pending_stale_ms) {
      settled->push_back(key);
      continue;
    }
    Status marked = Mark(j, nodes, packs);
    if (marked.code() == Status::Code::kNotFound) {
      settled->push_back(key);  // its tree is gone already: that restore cannot finish
      continue;
    }
    STRATA_RETURN_IF_ERROR(marked);
  }
  return Status::OK();
}

// Mark and sweep, under the lease: whatever no manifest reaches goes, indexes before their packs
// (a push never picks a pack again once its index is gone). Only metadata is listed: snapshots/,
// index/, nodes/, pending/ and orphans/, never packs/.
Status RemoteImpl::CollectLocked(int64_t lease_until_ms, GcStats* stats) {
  STRATA_CHECK(lease_until_ms > 0);  // the caller took the lease
  std::set<Hash> orphans;
  std::vector<std::string> settled;
  STRATA_ASSIGN_OR_RETURN(bool push_alive, ReadPushLeftovers(&orphans, &settled));
  if (push_alive) {
    stats->deferred = true;  // a push may be reusing any pack: free them another time
    return Status::OK();
  }
  std::set<Hash> keep_nodes, keep_packs;
  STRATA_RETURN_IF_ERROR(MarkRestores(&keep_nodes, &keep_packs, &settled));
  STRATA_RETURN_IF_ERROR(MarkManifests(&keep_nodes, &keep_packs));
  Sweep sweep;
  STRATA_RETURN_IF_ERROR(PlanSweep(keep_nodes, keep_packs, std::move(orphans), &sweep, stats));
  // What the sweep turns on, always checked: nothing a live manifest or restore reaches goes.
  for (const Hash& h : sweep.packs) {
    STRATA_CHECK(keep_packs.count(h) == 0);
  }
  AddPackSizes(&sweep, stats);
  return DeleteUnderLease(lease_until_ms, sweep, std::move(settled));
}

Status RemoteImpl::MarkManifests(std::set<Hash>* keep_nodes, std::set<Hash>* keep_packs) {
  STRATA_ASSIGN_OR_RETURN(auto manifests, ListAll(remote::kManifestPrefix));
  for (const auto& [key, size] : manifests) {
    auto m = GetManifest(key.substr(std::strlen(remote::kManifestPrefix)));
    if (m.status().code() == Status::Code::kNotFound) {
      continue;  // (no push runs, and deletes hold the lease: cannot happen, but harmless)
    }
    STRATA_RETURN_IF_ERROR(m.status());
    STRATA_RETURN_IF_ERROR(Mark(*m, keep_nodes, keep_packs));
  }
  return Status::OK();
}

// Indexes whose packs nothing keeps, orphaned packs (a dead push's, never indexed) that nothing
// keeps either, and unreached nodes. Only metadata is listed: index/ and nodes/.
Status RemoteImpl::PlanSweep(const std::set<Hash>& keep_nodes, const std::set<Hash>& keep_packs,
                             std::set<Hash> orphans, Sweep* sweep, GcStats* stats) {
  STRATA_ASSIGN_OR_RETURN(auto index_keys, ListAll(remote::kIndexPrefix));
  for (const auto& [key, size] : index_keys) {
    Hash h;
    if (!remote::ParseHex(key.substr(std::strlen(remote::kIndexPrefix)), &h)) {
      continue;  // not ours
    }
    orphans.erase(h);  // indexed: judged by the mark below, not as an orphan
    if (!keep_packs.count(h)) {
      sweep->indexes.push_back(key);
      sweep->packs.push_back(h);
    }
  }
  std::erase_if(orphans, [&](const Hash& h) { return keep_packs.count(h) != 0; });
  stats->orphans_deleted = orphans.size();
  stats->packs_deleted = sweep->packs.size();
  sweep->packs.insert(sweep->packs.end(), orphans.begin(), orphans.end());
  STRATA_ASSIGN_OR_RETURN(auto node_keys, ListAll(remote::kNodePrefix));
  for (const auto& [key, size] : node_keys) {
    Hash h;
    const size_t slash = key.rfind('/');
    if (remote::ParseHex(key.substr(slash + 1), &h) && !keep_nodes.count(h)) {
      sweep->keys.push_back(key);
      stats->nodes_deleted++;
      stats->bytes_freed += size;
    }
  }
  return Status::OK();
}

// Packs are never listed (there may be millions): a HEAD each tells its size.
void RemoteImpl::AddPackSizes(Sweep* sweep, GcStats* stats) {
  std::vector<S3Request> heads(sweep->packs.size());
  std::vector<S3Request*> batch;
  for (size_t i = 0; i < heads.size(); i++) {
    heads[i].method = S3Request::Method::kHead;
    heads[i].key = remote::PackKey(sweep->packs[i]);
    batch.push_back(&heads[i]);
  }
  store_->Run(batch);
  for (const S3Request& r : heads) {
    auto it = r.response_headers.find("content-length");
    if (r.status.ok() && it != r.response_headers.end()) {
      stats->bytes_freed += std::strtoull(it->second.c_str(), nullptr, 10);
    }
    sweep->keys.push_back(r.key);
  }
}

// Every delete is made while the lease holds: checked before each batch (a GC that outlives it
// stops; a journal names the packs it had doomed, for the next GC).
Status RemoteImpl::DeleteUnderLease(int64_t lease_until_ms, const Sweep& sweep,
                                    std::vector<std::string> settled) {
  bool deleted = false;
  auto lease_holds = [&] {
    return NowMs() < lease_until_ms ? Status::OK()
                                    : Status::Busy(Name() +
                                                   ": garbage collection outlived its "
                                                   "lease; " +
                                                   (deleted ? "it stopped (the next "
                                                              "collection finishes)"
                                                            : "nothing was deleted"));
  };
  STRATA_RETURN_IF_ERROR(lease_holds());
  if (!sweep.packs.empty()) {
    // A journal first: a GC killed after it dropped an index but before the pack leaves the pack
    // named here, for the next GC (an index-less pack is invisible to the index/ listing).
    json journal = {{"packs", json::array()}};
    for (const Hash& h : sweep.packs) {
      journal["packs"].push_back(remote::HexOf(h));
    }
    const std::string bytes = DumpJson(journal);
    const std::string key = std::string(remote::kOrphansPrefix) + "gc-" + std::to_string(NowMs());
    STRATA_RETURN_IF_ERROR(store_->Put(key, bytes.data(), bytes.size()));
    settled.push_back(key);
  }
  const std::vector<std::string>* batches[] = {&sweep.indexes, &sweep.keys, &settled};
  for (const std::vector<std::string>* keys : batches) {
    STRATA_RETURN_IF_ERROR(lease_holds());
    deleted = true;
    STRATA_RETURN_IF_ERROR(store_->DeleteMany(*keys));
  }
  return Status::OK();
}

// ---------------------------------------------------------------- pull and records

Result<SnapshotInfo> RemoteImpl::PullSnapshot(Pool* pool, const std::string& snapshot_id,
                                              const RemoteProgress& progress) {
  for (const SnapshotInfo& s : pool->ListSnapshots()) {
    if (s.snapshot_id == snapshot_id || s.source_snapshot_id == snapshot_id) {
      return s;  // pulled (or pushed from here) before
    }
  }
  STRATA_ASSIGN_OR_RETURN(json m, GetManifest(snapshot_id));
  VolumeSpec spec;
  spec.importing = true;           // hidden until sealed; deleted at open if a crash interrupts
  spec.volume_type = "unlimited";  // internal: any size, never throttled
  STRATA_ASSIGN_OR_RETURN(RestoreStats restored, RestoreVolume(pool, snapshot_id, spec, progress));
  auto sealed =
      pool->SealImport(restored.volume.volume_id, StringField(m, "description"), snapshot_id,
                       /*keep_source_id=*/true);  // snapshot ids are global
  if (!sealed.ok()) {
    Status cleanup = pool->DeleteVolume(restored.volume.volume_id);
    (void)cleanup;
  }
  return sealed;
}

namespace {
bool ValidRecordName(const std::string& s) {
  return !s.empty() && s.size() <= 128 &&
         s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
             std::string::npos;
}
std::string RecordKey(const std::string& kind, const std::string& id) {
  return "records/" + kind + "/" + id;
}
}  // namespace

Status RemoteImpl::PutRecord(const std::string& kind, const std::string& id,
                             const std::string& json_text) {
  if (!ValidRecordName(kind) || !ValidRecordName(id)) {
    return Status::InvalidArgument("a remote record is named by 1 to 128 of A-Z a-z 0-9 . _ -");
  }
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded()) {
    return Status::InvalidArgument("a remote record is JSON");
  }
  const std::string bytes = EncodeManifest(json{{"format", 1}, {"record", j}});
  return store_->Put(RecordKey(kind, id), bytes.data(), bytes.size(), /*if_absent=*/true);
}

Result<std::string> RemoteImpl::GetRecord(const std::string& kind, const std::string& id) {
  if (!ValidRecordName(kind) || !ValidRecordName(id)) {
    return Status::InvalidArgument("a remote record is named by 1 to 128 of A-Z a-z 0-9 . _ -");
  }
  auto bytes = store_->Get(RecordKey(kind, id), kMaxManifestBytes);
  if (bytes.status().code() == Status::Code::kNotFound) {
    return Status::NotFound(Name() + " holds no " + kind + " " + id);
  }
  STRATA_RETURN_IF_ERROR(bytes.status());
  const size_t nl = bytes->find('\n');
  Hash want;
  if (nl == std::string::npos || bytes->size() != nl + 66 ||
      !remote::ParseHex(bytes->substr(nl + 1, 64), &want) ||
      remote::Sha256(bytes->data(), nl) != want) {
    return Status::Corruption(Name() + ": record " + RecordKey(kind, id) + " is damaged");
  }
  json j = json::parse(bytes->substr(0, nl), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("record")) {
    return Status::Corruption(Name() + ": record " + RecordKey(kind, id) + " is malformed");
  }
  return DumpJson(j["record"]);
}

Result<std::vector<std::string>> RemoteImpl::ListRecords(const std::string& kind) {
  if (!ValidRecordName(kind)) {
    return Status::InvalidArgument("a remote record kind is 1 to 128 of A-Z a-z 0-9 . _ -");
  }
  std::vector<std::string> out;
  const std::string prefix = "records/" + kind + "/";
  Status listed = store_->ForEachPage(prefix, [&](const auto& page) {
    for (const auto& [key, size] : page.objects) {
      auto record = GetRecord(kind, key.substr(prefix.size()));
      if (record.status().code() == Status::Code::kNotFound) {
        continue;  // deleted since the listing
      }
      STRATA_RETURN_IF_ERROR(record.status());
      out.push_back(*record);
    }
    return Status::OK();
  });
  STRATA_RETURN_IF_ERROR(listed);
  return out;
}

Status RemoteImpl::DeleteRecord(const std::string& kind, const std::string& id) {
  STRATA_RETURN_IF_ERROR(GetRecord(kind, id).status());  // NotFound names it
  return store_->Delete(RecordKey(kind, id));
}

}  // namespace

// ---------------------------------------------------------------- reading for lazy restores

namespace {

class SnapshotReaderImpl final : public remote::SnapshotReader {
 public:
  SnapshotReaderImpl(std::string name, std::unique_ptr<remote::ObjectStore> store, json manifest,
                     std::string bytes)
      : name_(std::move(name)),
        store_(std::move(store)),
        manifest_(std::move(manifest)),
        bytes_(std::move(bytes)) {}

  const std::string& manifest_bytes() const override { return bytes_; }
  std::string TreeJson() const override {
    return DumpJson(json{{"root", StringField(manifest_, "root")},
                         {"depth", UintField(manifest_, "depth")},
                         {"snapshot_id", StringField(manifest_, "snapshot_id")}});
  }

  uint64_t volume_bytes() const override { return UintField(manifest_, "volume_size"); }
  uint64_t data_blocks() const override { return UintField(manifest_, "data_blocks"); }
  std::string description() const override { return StringField(manifest_, "description"); }

  Result<std::vector<std::pair<uint64_t, BlockRef>>> Leaf(uint64_t leaf) override {
    std::vector<std::pair<uint64_t, BlockRef>> out;
    Hash hash;
    const std::string root = StringField(manifest_, "root");
    if (root.empty()) {
      return out;
    }
    if (!remote::ParseHex(root, &hash)) {
      return Status::Corruption(name_ + ": manifest has a bad root");
    }
    const auto depth = static_cast<uint32_t>(UintField(manifest_, "depth"));
    for (uint32_t level = depth;; level--) {
      STRATA_ASSIGN_OR_RETURN(const Node* n, NodeOf(hash, level));
      if (level == 0) {
        for (const auto& [slot, ref] : n->blocks) {
          out.emplace_back(leaf * remote::kFanout + slot, ref);
        }
        return out;
      }
      // SpanOf counts blocks: the leaf's first block picks the child at every level.
      const auto slot =
          static_cast<uint32_t>((leaf * remote::kFanout / SpanOf(level - 1)) % remote::kFanout);
      auto child = std::find_if(n->children.begin(), n->children.end(),
                                [slot](const auto& c) { return c.first == slot; });
      if (child == n->children.end()) {
        return out;  // an empty subtree: all zeros
      }
      hash = child->second;
    }
  }

  void Fetch(const std::vector<std::pair<uint64_t, BlockRef>>& refs,
             std::vector<std::vector<std::byte>>* raw, std::vector<Status>* status) override {
    std::vector<S3Request> gets(refs.size());
    std::vector<S3Request*> batch;
    for (size_t i = 0; i < refs.size(); i++) {
      const BlockRef& ref = refs[i].second;
      gets[i].key = remote::PackKey(ref.pack);
      gets[i].headers = {{"Range", "bytes=" + std::to_string(ref.offset) + "-" +
                                       std::to_string(ref.offset + ref.stored - 1)}};
      gets[i].max_response_bytes = ref.stored;
      batch.push_back(&gets[i]);
    }
    store_->Run(batch);
    raw->assign(refs.size(), {});
    status->assign(refs.size(), Status::OK());
    ParallelFor(refs.size(), Cores(), [&](size_t i) {
      const std::string what =
          name_ + ": block " + std::to_string(refs[i].first) + " in " + gets[i].key;
      (*status)[i] = gets[i].status.ok()
                         ? DecodeBlock(gets[i].response, refs[i].second, what, &(*raw)[i])
                         : gets[i].status.WithContext(what);
    });
  }

 private:
  // Tree nodes by id, checked; inner nodes and recent leaves stay cached (bounded).
  Result<const Node*> NodeOf(const Hash& hash, uint32_t level) {
    if (auto it = nodes_.find(hash); it != nodes_.end()) {
      return &it->second;
    }
    const std::string key = remote::NodeKey(hash);
    STRATA_ASSIGN_OR_RETURN(std::string bytes, store_->Get(key, remote::kMaxNodeBytes));
    if (remote::Sha256(bytes.data(), bytes.size()) != hash) {
      return Status::Corruption(name_ + ": object " + key + " does not match its name (damaged)");
    }
    STRATA_ASSIGN_OR_RETURN(Node n, remote::DecodeNode(bytes, key));
    if (n.level != level) {
      return Status::Corruption(name_ + ": tree node " + key + " at the wrong level");
    }
    if (nodes_.size() >= kMaxCachedNodes) {
      nodes_.clear();  // simple and bounded: a walk in volume order refills what it needs
    }
    return &nodes_.emplace(hash, std::move(n)).first->second;
  }

  static constexpr size_t kMaxCachedNodes = 256;  // leaves are up to ~96 KiB: ~24 MiB
  std::string name_;
  std::unique_ptr<remote::ObjectStore> store_;
  json manifest_;
  std::string bytes_;
  std::map<Hash, Node> nodes_;
};

}  // namespace

Result<std::unique_ptr<remote::SnapshotReader>> remote::SnapshotReader::OpenOn(
    const std::string& name, std::unique_ptr<ObjectStore> store, const std::string& snapshot_id) {
  const std::string what = "remote " + name + " (" + store->Describe() + ")";
  auto bytes = store->Get(ManifestKey(snapshot_id), kMaxManifestBytes);
  if (bytes.status().code() == Status::Code::kNotFound) {
    return Status::NotFound(what + " holds no snapshot " + snapshot_id);
  }
  STRATA_RETURN_IF_ERROR(bytes.status().WithContext(what));
  return OpenWithManifest(name, std::move(store), snapshot_id, *bytes);
}

Result<std::unique_ptr<remote::SnapshotReader>> remote::SnapshotReader::OpenWithManifest(
    const std::string& name, std::unique_ptr<ObjectStore> store, const std::string& snapshot_id,
    const std::string& manifest_bytes) {
  const std::string what = "remote " + name + " (" + store->Describe() + ")";
  STRATA_ASSIGN_OR_RETURN(json m, DecodeManifest(manifest_bytes, ManifestKey(snapshot_id)));
  if (StringField(m, "snapshot_id") != snapshot_id) {
    return Status::Corruption(what + ": the manifest of " + snapshot_id + " names another one");
  }
  return std::unique_ptr<SnapshotReader>(
      new SnapshotReaderImpl(what, std::move(store), std::move(m), manifest_bytes));
}

namespace {
// The S3 client for a remote: its location from the spec, credentials as the AWS CLI finds them.
Result<std::unique_ptr<S3Client>> OpenClient(const RemoteSpec& spec, uint32_t max_attempts,
                                             uint32_t operation_timeout_ms = 0) {
  remote::S3Location location;
  STRATA_RETURN_IF_ERROR(remote::ParseS3Url(spec.url, &location));
  location.region = spec.region.empty() ? "us-east-1" : spec.region;
  location.endpoint = spec.endpoint_url.empty() ? "https://s3." + location.region + ".amazonaws.com"
                                                : spec.endpoint_url;
  while (!location.endpoint.empty() && location.endpoint.back() == '/') {
    location.endpoint.pop_back();
  }
  STRATA_ASSIGN_OR_RETURN(sigv4::AwsCredentials credentials, remote::ResolveCredentials());
  remote::S3Options options;
  options.max_attempts = std::max<uint32_t>(1, max_attempts);
  options.operation_timeout_ms = operation_timeout_ms;
  return S3Client::Create(location, credentials, options);
}
}  // namespace

Result<std::unique_ptr<remote::ObjectStore>> remote::OpenObjectStore(
    const RemoteSpec& spec, uint32_t max_attempts, uint32_t operation_timeout_ms) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<S3Client> client,
                          OpenClient(spec, max_attempts, operation_timeout_ms));
  return std::unique_ptr<ObjectStore>(std::move(client));
}

Result<std::unique_ptr<Remote>> Remote::Open(const RemoteSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<S3Client> client,
                          OpenClient(spec, remote::S3Options().max_attempts));
  Status s = client->CheckBucket();
  if (!s.ok()) {
    return s.WithContext("remote " + spec.name);
  }
  return remote::OpenRemoteOn(spec, std::move(client));
}

std::unique_ptr<Remote> remote::OpenRemoteOn(const RemoteSpec& spec,
                                             std::unique_ptr<ObjectStore> store,
                                             const RemoteTuning& tuning) {
  return std::make_unique<RemoteImpl>(spec, std::move(store), tuning);
}

}  // namespace strata
