// Eager restores and pulls, and the reader lazy restores (hydration.cc) fetch through.
#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
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

Status Restore::FetchBlocks(strata::Volume* volume, EventLoop* loop, uint32_t block_size,
                            std::vector<std::pair<uint64_t, BlockRef>>* refs, RestoreStats* stats) {
  size_t total = 0;
  for (const auto& [index, ref] : *refs) {
    STRATA_RETURN_IF_ERROR(CheckRef(ref, bucket_->Name() + ": block " + std::to_string(index)));
    total += ref.raw;  // (at most fetch_batch blocks of kMaxBlockBytes)
  }
  if (buffer_bytes_ < total) {
    buffer_ = AllocateAligned(total);  // (uninitialised: every byte is decoded into)
    buffer_bytes_ = total;
  }
  std::vector<std::span<std::byte>> raw(refs->size());
  for (size_t i = 0, at = 0; i < refs->size(); at += raw[i].size(), i++) {
    raw[i] = std::span<std::byte>(buffer_.get() + at, (*refs)[i].second.raw);
  }
  std::vector<Status> checked;
  std::vector<uint64_t> brought;
  FetchBlocksInto(bucket_->store(), bucket_->Name(), *namer_, pieces_.get(), *refs, raw, &checked,
                  &brought);
  for (const Status& s : checked) {
    STRATA_RETURN_IF_ERROR(s);  // nothing of a damaged batch is written
  }
  std::vector<IoRequest> writes(refs->size());
  for (size_t i = 0; i < refs->size(); i++) {
    writes[i].kind = IoRequest::Kind::kWrite;
    writes[i].offset_bytes = (*refs)[i].first * block_size;
    writes[i].length_bytes = raw[i].size();
    writes[i].data = raw[i].data();
  }
  STRATA_RETURN_IF_ERROR(SubmitAll(volume, loop, &writes));
  stats->blocks += refs->size();
  for (uint64_t bytes : brought) {
    stats->bytes_downloaded += bytes;
  }
  refs->clear();
  return Status::OK();
}

Result<RestoreStats> Restore::Volume(const std::string& snapshot_id, const VolumeSpec& spec,
                                     const RemoteEncryption& encryption,
                                     const RemoteProgress& progress) {
  STRATA_ASSIGN_OR_RETURN(json m, bucket_->GetManifest(snapshot_id));
  const std::string manifest_envelope = StringField(m, "encryption");
  STRATA_ASSIGN_OR_RETURN(namer_, NamerFor(bucket_->Name() + ": snapshot " + snapshot_id,
                                           manifest_envelope, encryption.block_id_key));
  const uint64_t size = UintField(m, "volume_size");
  const uint64_t block_size = UintField(m, "block_size");
  if (block_size == 0 || block_size > (64u << 20) || size == 0) {  // before anything is created
    return Status::Corruption(bucket_->Name() + ": manifest of " + snapshot_id +
                              " has impossible sizes");
  }
  VolumeSpec create = spec;
  create.size_bytes = std::max(spec.size_bytes, size);
  create.snapshot_id.clear();
  create.importing = true;  // hidden, and gone after a crash, until every block is in
  // The ciphertext lands as it left: the new volume holds the lineage's data key (wrapped for
  // this pool's KMS when the caller re-wrapped it) and is written as stored.
  create.encryption = encryption.envelope.empty() ? manifest_envelope : encryption.envelope;
  OpenOptions as_stored;
  as_stored.ciphertext = !create.encryption.empty();
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool_->CreateVolume(create));
  RestoreStats stats;
  Status s = [&]() -> Status {
    STRATA_ASSIGN_OR_RETURN(std::shared_ptr<strata::Volume> volume,
                            pool_->OpenVolume(info.volume_id, as_stored));
    STRATA_RETURN_IF_ERROR(FetchAll(m, volume.get(), progress, &stats));
    STRATA_RETURN_IF_ERROR(volume->Flush());
    if (!spec.importing) {  // (a pull seals the volume into a snapshot instead)
      STRATA_ASSIGN_OR_RETURN(info, pool_->PublishImport(info.volume_id));
    }
    return Status::OK();
  }();
  if (!s.ok()) {
    Status cleanup = pool_->DeleteVolume(info.volume_id);  // nothing half-restored stays
    (void)cleanup;
    return s;
  }
  stats.volume = info;  // (an importing volume is hidden from DescribeVolume)
  return stats;
}

// Every block the manifest's tree names, in batches of fetch_batch, into `volume`.
Status Restore::FetchAll(const json& m, strata::Volume* volume, const RemoteProgress& progress,
                         RestoreStats* stats) {
  const uint64_t size = UintField(m, "volume_size");
  const auto block_size = static_cast<uint32_t>(UintField(m, "block_size"));
  const std::string snapshot_id = StringField(m, "snapshot_id");
  STRATA_CHECK(block_size > 0 && block_size <= (64u << 20) && size > 0);  // (Volume checked)
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop,
                          pool_->CreateEventLoop(2 * bucket_->tuning().fetch_batch));
  const uint64_t total = UintField(m, "data_blocks");
  std::vector<std::pair<uint64_t, BlockRef>> refs;
  Hash root;
  if (!StringField(m, "root").empty()) {
    if (!remote::ParseHex(StringField(m, "root"), &root)) {
      return Status::Corruption(bucket_->Name() + ": manifest of " + snapshot_id + ": bad root");
    }
    auto on_block = [&](uint64_t index, const BlockRef& ref) -> Status {
      if (index * uint64_t{block_size} >= size || ref.raw > block_size) {
        return Status::Corruption(bucket_->Name() + ": block " + std::to_string(index) +
                                  " lies outside the volume");
      }
      refs.emplace_back(index, ref);
      if (refs.size() < bucket_->tuning().fetch_batch) {
        return Status::OK();
      }
      Status fetched = FetchBlocks(volume, loop.get(), block_size, &refs, stats);
      if (progress) {
        progress(stats->blocks * block_size, total * block_size);
      }
      return fetched;
    };
    const auto depth = static_cast<uint32_t>(UintField(m, "depth"));
    STRATA_RETURN_IF_ERROR(bucket_->WalkNodes(depth, root, 0, on_block, nullptr));
  }
  return FetchBlocks(volume, loop.get(), block_size, &refs, stats);
}

Result<SnapshotInfo> Restore::Pull(const std::string& snapshot_id,
                                   const RemoteEncryption& encryption,
                                   const RemoteProgress& progress) {
  for (const SnapshotInfo& s : pool_->ListSnapshots()) {
    if (s.snapshot_id == snapshot_id || s.source_snapshot_id == snapshot_id) {
      return s;  // pulled (or pushed from here) before
    }
  }
  STRATA_ASSIGN_OR_RETURN(json m, bucket_->GetManifest(snapshot_id));
  VolumeSpec spec;
  spec.importing = true;           // hidden until sealed; deleted at open if a crash interrupts
  spec.volume_type = "unlimited";  // internal: any size, never throttled
  STRATA_ASSIGN_OR_RETURN(RestoreStats restored, Volume(snapshot_id, spec, encryption, progress));
  auto sealed =
      pool_->SealImport(restored.volume.volume_id, StringField(m, "description"), snapshot_id,
                        /*keep_source_id=*/true);  // snapshot ids are global
  if (!sealed.ok()) {
    Status cleanup = pool_->DeleteVolume(restored.volume.volume_id);
    (void)cleanup;
  }
  return sealed;
}

// ---------------------------------------------------------------- reading for lazy restores

// Pack id -> its entries by offset. Evicted whole when full: a restore reads packs roughly in
// volume order, and a refill costs one GET per pack.
class PieceIndexCache {
 public:
  // Sorted by offset: the decoded index itself, never a second copy of it (an index can be
  // 64 MiB, the most a GET may bring).
  using Entries = std::vector<IndexEntry>;
  std::shared_ptr<const Entries> Find(const Hash& pack) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = packs_.find(pack);
    return it == packs_.end() ? nullptr : it->second;
  }
  void Add(const Hash& pack, std::shared_ptr<const Entries> entries) {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_ + entries->size() > kMaxEntries) {
      packs_.clear();
      entries_ = 0;
    }
    entries_ += entries->size();
    packs_[pack] = std::move(entries);
  }

 private:
  // ~400 bytes each (and a spanning block's borrowed places): at most ~25 MiB (a pack of
  // incompressible data has ~64 entries).
  static constexpr size_t kMaxEntries = 64 << 10;
  std::mutex mu_;
  std::map<Hash, std::shared_ptr<const Entries>> packs_;
  size_t entries_ = 0;
};

std::shared_ptr<PieceIndexCache> NewPieceIndexCache() {
  return std::make_shared<PieceIndexCache>();
}

namespace {

// The index of each pack the fetches need that `cache` lacks, fetched at once, checked, and
// added; a pack whose index fails has its fetches failed.
void LoadPieceTables(ObjectStore* store, const std::string& name, PieceIndexCache* cache,
                     std::vector<PieceFetch>* fetches) {
  std::map<Hash, S3Request> gets;
  for (const PieceFetch& f : *fetches) {
    if (!cache->Find(f.ref.pack) && !gets.contains(f.ref.pack)) {
      gets[f.ref.pack].key = IndexKey(f.ref.pack);
    }
  }
  std::vector<S3Request*> batch;
  for (auto& [pack, get] : gets) {
    batch.push_back(&get);
  }
  store->Run(batch);
  std::map<Hash, Status> failed;
  for (auto& [pack, get] : gets) {
    if (!get.status.ok()) {  // (unreachable, or gone: what the store said, not damage)
      failed[pack] = get.status.WithContext(name + ": " + get.key);
      continue;
    }
    Result<std::vector<IndexEntry>> decoded = DecodeIndex(get.response, get.key);
    std::string().swap(get.response);  // (its bytes are decoded: not held twice)
    if (!decoded.ok()) {
      failed[pack] = decoded.status().WithContext(name);
      continue;
    }
    auto entries = std::make_shared<PieceIndexCache::Entries>(std::move(*decoded));
    SortByOffset(entries.get());
    cache->Add(pack, std::move(entries));
  }
  for (PieceFetch& f : *fetches) {
    if (auto it = failed.find(f.ref.pack); it != failed.end()) {
      f.status = it->second;
    }
  }
}

// The fetch's piece table, from its pack's index, checked against the block's name.
Result<PieceTable> PieceTableOf(PieceIndexCache* cache, const BlockNamer& namer,
                                const PieceFetch& f, const std::string& what) {
  std::shared_ptr<const PieceIndexCache::Entries> entries = cache->Find(f.ref.pack);
  const IndexEntry* listed = entries ? ListedEntry(*entries, f.ref, namer) : nullptr;
  if (listed == nullptr) {
    return Status::Corruption(what +
                              ": its pack's index does not list it, or its piece table does not "
                              "match its name (damaged index)");
  }
  return listed->pieces;
}

// The range GETs of a fetch: every stored range it wants (whole blocks, pieces), in (pack,
// offset) order; ranges of one pack at most kMaxGapBytes apart, or overlapping (two blocks of the
// same bytes), share one GET of up to kMaxGetBytes. So the whole blocks of a batch that a push
// wrote side by side are one GET, and so are a spanning block's borrowed pieces with the parent's
// whole blocks beside them (the parent's old version of a changed piece between them is read for
// nothing: RGW spends more CPU on a request than on 64 KiB). None for a fetch already failed.
constexpr uint64_t kMaxGetBytes = 16 << 20;
constexpr uint64_t kMaxGapBytes = 128 << 10;
struct Slice {
  size_t get = 0;   // which GET brings the range
  uint64_t at = 0;  // where in its response
};
struct FetchGets {
  std::vector<S3Request> gets;
  std::vector<Slice> wholes;                          // per whole block
  std::vector<uint64_t> whole_bytes;                  // what each whole block added to its GET
  std::vector<PieceTable> tables;                     // per piece fetch
  std::vector<std::array<Slice, kMaxPieces>> slices;  // per piece fetch, per piece
};
constexpr uint32_t kWholeBlock = ~uint32_t{0};
struct WantedRange {
  PiecePlace place;
  uint64_t bytes = 0;
  size_t of = 0;                 // the whole block, or the piece fetch
  uint32_t piece = kWholeBlock;  // or the fetch's piece
};

// Merges the wanted ranges into GETs (as above); each range's Slice, and the bytes it added to its
// GET (the gap before it included) counted to its block or fetch.
void PlanRangeGets(std::vector<WantedRange> wanted, FetchGets* p,
                   std::vector<PieceFetch>* fetches) {
  std::sort(wanted.begin(), wanted.end(), [](const WantedRange& a, const WantedRange& b) {
    return std::tie(a.place.pack, a.place.offset) < std::tie(b.place.pack, b.place.offset);
  });
  uint64_t first = 0, end = 0;
  for (size_t k = 0; k < wanted.size(); k++) {
    const WantedRange& w = wanted[k];
    const bool joins = k > 0 && w.place.pack == wanted[k - 1].place.pack &&
                       w.place.offset <= end + kMaxGapBytes &&
                       std::max(end, w.place.offset + w.bytes) - first <= kMaxGetBytes;
    if (!joins) {
      if (k > 0) {
        p->gets.back().headers = {
            {"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(end - 1)}};
        p->gets.back().max_response_bytes = end - first;
      }
      S3Request& get = p->gets.emplace_back();
      get.key = PackKey(w.place.pack);
      get.exact_response = true;
      first = end = w.place.offset;
    }
    const uint64_t added = std::max(end, w.place.offset + w.bytes) - end;
    end += added;
    const Slice slice{p->gets.size() - 1, w.place.offset - first};
    if (w.piece == kWholeBlock) {
      p->wholes[w.of] = slice;
      p->whole_bytes[w.of] = added;
    } else {
      p->slices[w.of][w.piece] = slice;
      (*fetches)[w.of].stored_bytes += added;
    }
  }
  if (!wanted.empty()) {
    p->gets.back().headers = {
        {"Range", "bytes=" + std::to_string(first) + "-" + std::to_string(end - 1)}};
    p->gets.back().max_response_bytes = end - first;
  }
}

// Pieces are fetched only once their table is checked against the block's name, and each piece
// only once its place lies within a pack (DecodeIndex): a hostile index can fail a read, never
// feed it. Fetches the piece tables still missing (one round of GETs), then plans the GETs of
// the whole blocks and of the pieces together.
FetchGets PlanFetchGets(ObjectStore* store, const std::string& name, const BlockNamer& namer,
                        PieceIndexCache* cache,
                        const std::vector<std::pair<uint64_t, BlockRef>>& wholes,
                        std::vector<PieceFetch>* fetches) {
  LoadPieceTables(store, name, cache, fetches);
  FetchGets p;
  p.wholes.resize(wholes.size());
  p.whole_bytes.resize(wholes.size());
  p.tables.resize(fetches->size());
  p.slices.resize(fetches->size());
  std::vector<WantedRange> wanted;
  for (size_t w = 0; w < wholes.size(); w++) {
    const BlockRef& ref = wholes[w].second;
    wanted.push_back(WantedRange{PiecePlace{ref.pack, ref.offset}, ref.stored, w, kWholeBlock});
  }
  for (size_t i = 0; i < fetches->size(); i++) {
    PieceFetch& f = (*fetches)[i];
    STRATA_CHECK(IsPieced(f.ref) && f.first < f.end && f.end <= PieceCount(f.ref));
    if (!f.status.ok()) {
      continue;
    }
    Result<PieceTable> table =
        PieceTableOf(cache, namer, f,
                     name + ": block " + std::to_string(f.block) + " in " + PackKey(f.ref.pack));
    if (!table.ok()) {
      f.status = table.status();
      continue;
    }
    p.tables[i] = *table;
    for (uint32_t n = f.first; n < f.end; n++) {
      wanted.push_back(WantedRange{PlaceOf(f.ref, p.tables[i], n), p.tables[i].stored[n], i, n});
    }
  }
  PlanRangeGets(std::move(wanted), &p, fetches);
  return p;
}

// The stored bytes of a range from its GET; an error (the GET's, or Corruption for a short
// response: a damaged or truncated pack) names `what`.
Result<std::string_view> SliceOf(const FetchGets& p, const Slice& slice, uint64_t bytes,
                                 const std::string& what) {
  const S3Request& get = p.gets[slice.get];
  if (!get.status.ok()) {
    return get.status.WithContext(what + " in " + get.key);
  }
  if (get.response.size() < slice.at || get.response.size() - slice.at < bytes) {
    return Status::Corruption(what + " in " + get.key + ": short read (damaged or truncated pack)");
  }
  return std::string_view(get.response).substr(slice.at, bytes);
}

// Fetch `i`'s pieces from their GETs, each decompressed and checked against its hash.
Status DecodeFetch(const FetchGets& p, size_t i, const std::string& what, const PieceFetch& f) {
  for (uint32_t n = f.first; n < f.end; n++) {
    STRATA_ASSIGN_OR_RETURN(std::string_view stored,
                            SliceOf(p, p.slices[i][n], p.tables[i].stored[n], what));
    STRATA_RETURN_IF_ERROR(DecodePieceInto(
        stored, p.tables[i].sha256[n], what + " in " + p.gets[p.slices[i][n].get].key,
        f.out.subspan(size_t{n - f.first} * kPieceBytes, PieceRaw(f.ref, n))));
  }
  return Status::OK();
}

// Each whole block decompressed and checked into out[w] (status[w]); each fetch's pieces.
void DecodeFetchGets(const FetchGets& p, const std::string& name, const BlockNamer& namer,
                     const std::vector<std::pair<uint64_t, BlockRef>>& wholes,
                     const std::vector<std::span<std::byte>>& out, std::vector<Status>* status,
                     std::vector<PieceFetch>* fetches) {
  status->assign(wholes.size(), Status::OK());
  ParallelFor(wholes.size(), Cores(), [&](size_t w) {
    const BlockRef& ref = wholes[w].second;
    const std::string what = name + ": block " + std::to_string(wholes[w].first);
    Result<std::string_view> stored = SliceOf(p, p.wholes[w], ref.stored, what);
    (*status)[w] = stored.ok()
                       ? DecodeBlockInto(*stored, ref, namer,
                                         what + " in " + p.gets[p.wholes[w].get].key, out[w])
                       : stored.status();
  });
  ParallelFor(fetches->size(), Cores(), [&](size_t i) {
    PieceFetch& f = (*fetches)[i];
    if (f.status.ok()) {
      f.status = DecodeFetch(p, i, name + ": block " + std::to_string(f.block), f);
    }
  });
}

// Whole blocks and pieces in one round of GETs: a reader waits for one round trip, not one per
// kind (after the piece tables, when a pack's is not here yet).
void FetchTogetherInto(ObjectStore* store, const std::string& name, const BlockNamer& namer,
                       PieceIndexCache* cache,
                       const std::vector<std::pair<uint64_t, BlockRef>>& refs,
                       const std::vector<std::span<std::byte>>& out, std::vector<Status>* status,
                       std::vector<uint64_t>* brought, std::vector<PieceFetch>* pieces) {
  STRATA_CHECK(out.size() == refs.size());
  // A spanning block is read as all its pieces, through its pack's index: its range in its pack
  // holds only its own.
  std::vector<std::pair<uint64_t, BlockRef>> whole;
  std::vector<std::span<std::byte>> whole_out;
  std::vector<size_t> whole_of, spanning_of;
  const size_t asked = pieces->size();
  for (size_t i = 0; i < refs.size(); i++) {
    if (Spans(refs[i].second)) {
      pieces->push_back(PieceFetch{refs[i].first, refs[i].second, 0, PieceCount(refs[i].second),
                                   out[i], Status::OK(), 0});
      spanning_of.push_back(i);
    } else {
      whole.push_back(refs[i]);
      whole_out.push_back(out[i]);
      whole_of.push_back(i);
    }
  }
  FetchGets gets = PlanFetchGets(store, name, namer, cache, whole, pieces);
  std::vector<S3Request*> batch;
  for (S3Request& get : gets.gets) {
    batch.push_back(&get);
  }
  store->Run(batch);
  std::vector<Status> whole_status;
  DecodeFetchGets(gets, name, namer, whole, whole_out, &whole_status, pieces);
  status->assign(refs.size(), Status::OK());
  brought->assign(refs.size(), 0);
  for (size_t w = 0; w < whole.size(); w++) {
    (*brought)[whole_of[w]] = whole_status[w].ok() ? gets.whole_bytes[w] : 0;
    (*status)[whole_of[w]] = std::move(whole_status[w]);
  }
  for (size_t k = 0; k < spanning_of.size(); k++) {
    PieceFetch& f = (*pieces)[asked + k];
    (*brought)[spanning_of[k]] = f.status.ok() ? f.stored_bytes : 0;
    (*status)[spanning_of[k]] = std::move(f.status);
  }
  pieces->resize(asked);
}

class SnapshotReaderImpl final : public SnapshotReader {
 public:
  SnapshotReaderImpl(std::string name, std::unique_ptr<remote::ObjectStore> store, json manifest,
                     std::string bytes, std::shared_ptr<PieceIndexCache> pieces)
      : name_(std::move(name)),
        store_(std::move(store)),
        manifest_(std::move(manifest)),
        bytes_(std::move(bytes)),
        pieces_(pieces ? std::move(pieces) : NewPieceIndexCache()) {}

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

  void FetchTogether(const std::vector<std::pair<uint64_t, BlockRef>>& refs,
                     const std::vector<std::span<std::byte>>& out, std::vector<Status>* status,
                     std::vector<uint64_t>* brought, std::vector<PieceFetch>* pieces) override {
    FetchTogetherInto(store_.get(), name_, plaintext_names_, pieces_.get(), refs, out, status,
                      brought, pieces);
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
  const BlockNamer
      plaintext_names_;  // a lazy restore is of a plaintext snapshot (OpenWithManifest)
  std::unique_ptr<remote::ObjectStore> store_;
  json manifest_;
  std::string bytes_;
  std::map<Hash, Node> nodes_;
  const std::shared_ptr<PieceIndexCache> pieces_;
};

}  // namespace

// A background batch of 32 blocks that a push wrote in volume order is a GET or two, not 32:
// RGW spends most of its CPU per request.
void FetchBlocksInto(ObjectStore* store, const std::string& name, const BlockNamer& namer,
                     PieceIndexCache* pieces,
                     const std::vector<std::pair<uint64_t, BlockRef>>& refs,
                     const std::vector<std::span<std::byte>>& out, std::vector<Status>* status,
                     std::vector<uint64_t>* brought) {
  std::vector<PieceFetch> none;
  FetchTogetherInto(store, name, namer, pieces, refs, out, status, brought, &none);
}

Result<std::unique_ptr<remote::SnapshotReader>> SnapshotReader::OpenOn(
    const std::string& name, std::unique_ptr<ObjectStore> store, const std::string& snapshot_id) {
  const std::string what = "remote " + name + " (" + store->Describe() + ")";
  auto bytes = store->Get(ManifestKey(snapshot_id), kMaxManifestBytes);
  if (bytes.status().code() == Status::Code::kNotFound) {
    return Status::NotFound(what + " holds no snapshot " + snapshot_id);
  }
  STRATA_RETURN_IF_ERROR(bytes.status().WithContext(what));
  return OpenWithManifest(name, std::move(store), snapshot_id, *bytes);
}

Result<std::unique_ptr<remote::SnapshotReader>> SnapshotReader::OpenWithManifest(
    const std::string& name, std::unique_ptr<ObjectStore> store, const std::string& snapshot_id,
    const std::string& manifest_bytes, std::shared_ptr<PieceIndexCache> pieces) {
  const std::string what = "remote " + name + " (" + store->Describe() + ")";
  STRATA_ASSIGN_OR_RETURN(json m, DecodeManifest(manifest_bytes, ManifestKey(snapshot_id)));
  if (StringField(m, "snapshot_id") != snapshot_id) {
    return Status::Corruption(what + ": the manifest of " + snapshot_id + " names another one");
  }
  if (!StringField(m, "encryption").empty()) {  // its names need a key this reader never has
    return Status::NotSupported(what + ": snapshot " + snapshot_id +
                                " is encrypted, and encrypted snapshots restore eagerly, not "
                                "lazily (the EC2 layer does so by itself)");
  }
  return std::unique_ptr<SnapshotReader>(new SnapshotReaderImpl(
      what, std::move(store), std::move(m), manifest_bytes, std::move(pieces)));
}

}  // namespace strata::remote
