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

namespace {

constexpr uint64_t kMaxGetBytes = 16 << 20;

// One range GET: the pack's bytes [first, end), holding the blocks `members` (indexes into the
// refs) side by side in offset order.
struct RangeGet {
  uint64_t first = 0, end = 0;
  std::vector<size_t> members;
};

// Blocks adjacent in one pack share a GET, up to kMaxGetBytes.
std::vector<RangeGet> PlanRangeGets(const std::vector<std::pair<uint64_t, BlockRef>>& refs) {
  std::vector<size_t> order(refs.size());
  for (size_t i = 0; i < order.size(); i++) {
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&refs](size_t a, size_t b) {
    const BlockRef &x = refs[a].second, &y = refs[b].second;
    return std::tie(x.pack, x.offset) < std::tie(y.pack, y.offset);
  });
  std::vector<RangeGet> plan;
  for (size_t i : order) {
    const BlockRef& ref = refs[i].second;
    if (!plan.empty()) {
      RangeGet& last = plan.back();
      if (refs[last.members.back()].second.pack == ref.pack && ref.offset == last.end &&
          ref.offset + ref.stored - last.first <= kMaxGetBytes) {
        last.end = ref.offset + ref.stored;
        last.members.push_back(i);
        continue;
      }
    }
    plan.push_back(RangeGet{ref.offset, ref.offset + ref.stored, {i}});
  }
  return plan;
}

// Whole blocks' range GETs: blocks adjacent in one pack share one.
struct BlockGets {
  std::vector<RangeGet> plan;
  std::vector<S3Request> gets;  // one per plan entry
};

BlockGets PlanBlockGets(const std::vector<std::pair<uint64_t, BlockRef>>& refs) {
  BlockGets b;
  b.plan = PlanRangeGets(refs);
  b.gets.resize(b.plan.size());
  for (size_t g = 0; g < b.plan.size(); g++) {
    b.gets[g].key = remote::PackKey(refs[b.plan[g].members.front()].second.pack);
    b.gets[g].headers = {{"Range", "bytes=" + std::to_string(b.plan[g].first) + "-" +
                                       std::to_string(b.plan[g].end - 1)}};
    b.gets[g].max_response_bytes = b.plan[g].end - b.plan[g].first;
    b.gets[g].exact_response = true;
  }
  return b;
}

// Each block of the GETs that ran, decompressed and checked into out[i] (status[i]).
void DecodeBlockGets(const BlockGets& b, const std::string& name, const BlockNamer& namer,
                     const std::vector<std::pair<uint64_t, BlockRef>>& refs,
                     const std::vector<std::span<std::byte>>& out, std::vector<Status>* status) {
  status->assign(refs.size(), Status::OK());
  std::vector<std::pair<size_t, size_t>> work;  // (get, member)
  for (size_t g = 0; g < b.plan.size(); g++) {
    for (size_t m = 0; m < b.plan[g].members.size(); m++) {
      work.emplace_back(g, m);
    }
  }
  ParallelFor(work.size(), Cores(), [&](size_t w) {
    const auto [g, m] = work[w];
    const size_t i = b.plan[g].members[m];
    const BlockRef& ref = refs[i].second;
    const std::string what =
        name + ": block " + std::to_string(refs[i].first) + " in " + b.gets[g].key;
    if (!b.gets[g].status.ok()) {
      (*status)[i] = b.gets[g].status.WithContext(what);
      return;
    }
    const std::string& got = b.gets[g].response;
    const uint64_t at = ref.offset - b.plan[g].first;
    // A short response makes the blocks past its end short reads (Corruption), never data.
    const std::string_view stored =
        at >= got.size()
            ? std::string_view()
            : std::string_view(got).substr(at, std::min<uint64_t>(ref.stored, got.size() - at));
    (*status)[i] = DecodeBlockInto(stored, ref, namer, what, out[i]);
  });
}

}  // namespace

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

// The pieces' range GETs. A fetch's pieces that lie in one pack at most kMaxGapBytes apart share
// one (a block's own pieces are back to back; a spanning block's borrowed ones on either side of
// a changed piece lie around that piece's old version, read for nothing: RGW spends more CPU on a
// request than on 64 KiB). None for a fetch already failed.
constexpr uint64_t kMaxGapBytes = 128 << 10;
struct PieceSlice {
  size_t get = 0;   // which GET brings the piece
  uint64_t at = 0;  // where in its response
};
struct PieceGets {
  std::vector<PieceTable> tables;                          // per fetch
  std::vector<std::array<PieceSlice, kMaxPieces>> slices;  // per fetch, per piece
  std::vector<S3Request> gets;
};

// Plans the GETs of fetch `i`'s pieces, whose table is p->tables[i].
void PlanFetchGets(size_t i, PieceFetch* f, PieceGets* p) {
  const PieceTable& t = p->tables[i];
  std::vector<std::pair<PiecePlace, uint32_t>> wanted;  // by place
  for (uint32_t n = f->first; n < f->end; n++) {
    wanted.emplace_back(PlaceOf(f->ref, t, n), n);
  }
  std::sort(wanted.begin(), wanted.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first.pack, a.first.offset) < std::tie(b.first.pack, b.first.offset);
  });
  for (size_t k = 0; k < wanted.size();) {
    const PiecePlace& first = wanted[k].first;
    uint64_t end = first.offset + t.stored[wanted[k].second];
    size_t j = k + 1;
    for (; j < wanted.size() && wanted[j].first.pack == first.pack &&
           wanted[j].first.offset >= end && wanted[j].first.offset - end <= kMaxGapBytes;
         j++) {
      end = wanted[j].first.offset + t.stored[wanted[j].second];
    }
    S3Request& get = p->gets.emplace_back();
    get.key = PackKey(first.pack);
    get.headers = {
        {"Range", "bytes=" + std::to_string(first.offset) + "-" + std::to_string(end - 1)}};
    get.max_response_bytes = end - first.offset;
    get.exact_response = true;
    f->stored_bytes += end - first.offset;
    for (; k < j; k++) {
      p->slices[i][wanted[k].second] = {p->gets.size() - 1, wanted[k].first.offset - first.offset};
    }
  }
}

// Pieces are fetched only once their table is checked against the block's name, and each piece
// only once its place lies within a pack (DecodeIndex): a hostile index can fail a read, never
// feed it. Fetches the piece tables still missing (one round of GETs), then plans the pieces'
// GETs.
PieceGets PlanPieceGets(ObjectStore* store, const std::string& name, const BlockNamer& namer,
                        PieceIndexCache* cache, std::vector<PieceFetch>* fetches) {
  LoadPieceTables(store, name, cache, fetches);
  PieceGets p;
  p.tables.resize(fetches->size());
  p.slices.resize(fetches->size());
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
    PlanFetchGets(i, &f, &p);
  }
  return p;
}

// Fetch `i`'s pieces from their GETs, each decompressed and checked against its hash.
Status DecodeFetch(const PieceGets& p, size_t i, const std::string& what, const PieceFetch& f) {
  for (uint32_t n = f.first; n < f.end; n++) {
    const PieceSlice& slice = p.slices[i][n];
    const S3Request& get = p.gets[slice.get];
    if (!get.status.ok()) {
      return get.status.WithContext(what + " in " + get.key);
    }
    const uint32_t bytes = p.tables[i].stored[n];
    if (get.response.size() < slice.at || get.response.size() - slice.at < bytes) {
      return Status::Corruption(what + " in " + get.key +
                                ": short read (damaged or truncated pack)");
    }
    STRATA_RETURN_IF_ERROR(
        DecodePieceInto(std::string_view(get.response).substr(slice.at, bytes),
                        p.tables[i].sha256[n], what + " in " + get.key,
                        f.out.subspan(size_t{n - f.first} * kPieceBytes, PieceRaw(f.ref, n))));
  }
  return Status::OK();
}

// Each fetch's pieces from its GETs.
void DecodePieceGets(const PieceGets& p, const std::string& name,
                     std::vector<PieceFetch>* fetches) {
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
  BlockGets blocks = PlanBlockGets(whole);
  PieceGets piece_gets = PlanPieceGets(store, name, namer, cache, pieces);
  std::vector<S3Request*> batch;
  for (S3Request& get : blocks.gets) {
    batch.push_back(&get);
  }
  for (S3Request& get : piece_gets.gets) {
    batch.push_back(&get);
  }
  store->Run(batch);
  std::vector<Status> whole_status;
  DecodeBlockGets(blocks, name, namer, whole, whole_out, &whole_status);
  DecodePieceGets(piece_gets, name, pieces);
  status->assign(refs.size(), Status::OK());
  brought->assign(refs.size(), 0);
  for (size_t w = 0; w < whole.size(); w++) {
    (*brought)[whole_of[w]] = whole_status[w].ok() ? whole[w].second.stored : 0;
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
