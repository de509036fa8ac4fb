// Seeded crash simulator (TigerBeetle's VOPR in miniature).
//
// Random operations run against a pool whose data files live in a SimEnv (a disk with a volatile
// write cache) while a reference model tracks, for every 512-byte sector of every volume, which
// contents a read may return now and which a read may return after a crash. At a random point,
// or when a scheduled power failure makes an operation fail, the pool is dropped without a clean
// shutdown, the SimEnv drops or tears every unsynced write, the pool is reopened, and every
// sector and every pool invariant is checked. The durability contract under test is
// docs/durability.md: flushed (or FUA) data survives; unflushed data reads as old or new; nothing
// else ever appears.
//
// Half the seeds make their new volumes encrypted (an XtsCipher under a key of the seed's, the
// envelope in the volume's record): the same model then holds for the plaintext read through the
// cipher, torn writes and streams of ciphertext included.
//
// STRATA_SIM_SEEDS=N runs N seeds (default 850, each with 12 crash cycles: 10,200 crash points);
// STRATA_SIM_SEED=S runs the one seed S (printed on every failure).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>

#include <gtest/gtest.h>
#include <xxhash.h>

#include "strata/pool.h"
#include "strata/stream.h"

#include "io/sim_env.h"
#include "kms/xts.h"
#include "store/pool_impl.h"
#include "testutil/string_stream.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint32_t kSector = 512;

uint64_t HashSector(const std::byte* p) { return XXH3_64bits(p, kSector); }

uint64_t ZeroHash() {
  static const uint64_t h = [] {
    std::byte zeros[kSector] = {};
    return HashSector(zeros);
  }();
  return h;
}

void AddUnique(std::vector<uint64_t>* v, uint64_t h) {
  if (std::find(v->begin(), v->end(), h) == v->end()) {
    v->push_back(h);
  }
}

// What each sector of a volume may read as, now and after a crash.
struct ModelVolume {
  struct Sector {
    std::vector<uint64_t> now;
    std::vector<uint64_t> after_crash;
  };
  uint64_t size_bytes = 0;
  std::vector<Sector> sectors;
  bool maybe_deleted = false;  // a failed delete: may or may not have happened

  void Resize(uint64_t size) {
    size_bytes = size;
    sectors.resize(size / kSector, Sector{{ZeroHash()}, {ZeroHash()}});
  }
  // A write of `hashes` at sector `first`: acknowledged (ok) or failed (may have happened).
  void Written(uint64_t first, const std::vector<uint64_t>& hashes, bool ok, bool fua) {
    for (size_t i = 0; i < hashes.size(); i++) {
      Sector& s = sectors[first + i];
      if (ok) {
        s.now = {hashes[i]};
      } else {
        AddUnique(&s.now, hashes[i]);
      }
      if (ok && fua) {
        s.after_crash = {hashes[i]};
      } else {
        AddUnique(&s.after_crash, hashes[i]);
      }
    }
  }
  void Flushed() {
    for (Sector& s : sectors) {
      s.after_crash = s.now;
    }
  }
};

bool Tracing() {
  static const bool on = std::getenv("STRATA_SIM_TRACE") != nullptr;
  return on;
}
// Where a test collects the trace (SameSeedSameTraceTwice); null: not collected.
std::string* g_trace = nullptr;
#define SIM_TRACE(...)                                \
  do {                                                \
    if (Tracing()) {                                  \
      std::fprintf(stderr, __VA_ARGS__);              \
    }                                                 \
    if (g_trace != nullptr) {                         \
      char line[512];                                 \
      std::snprintf(line, sizeof(line), __VA_ARGS__); \
      g_trace->append(line);                          \
    }                                                 \
  } while (0)

using test::StringSink;
using test::StringSource;

// A snapshot: what each sector may read as (immutable once taken, and durable).
// The source of a snapshot still arriving (a lazy restore, include/strata/pool.h): fills blocks
// of 4 chunks from an image in memory, synchronously, as the remote hydrator does from S3. What
// is present after a crash is what the snapshot's own block list says.
class SimImageSource final : public BlockSource {
 public:
  SimImageSource(Pool* pool, std::string id, const std::vector<std::byte>* image, uint32_t block)
      : pool_(pool),
        id_(std::move(id)),
        image_(image),
        block_(block),
        present_((image->size() + block - 1) / block) {
    for (uint64_t start = 0;;) {
      auto list = pool_->ListSnapshotBlocks(id_, block_, start, kMaxBlockListResults);
      EXPECT_TRUE(list.ok()) << list.status().ToString();
      if (!list.ok()) {
        return;
      }
      for (uint64_t b : list->blocks) {
        present_[b] = true;
      }
      if (!list->next_block) {
        return;
      }
      start = *list->next_block;
    }
  }
  bool Present(uint64_t offset, uint64_t length) override {
    for (uint64_t b = offset / block_; b * block_ < offset + length && b < present_.size(); b++) {
      if (!present_[b]) {
        return false;
      }
    }
    return true;
  }
  void Ensure(uint64_t offset, uint64_t length, std::function<void(const Status&)> done) override {
    for (uint64_t b = offset / block_; b * block_ < offset + length && b < present_.size(); b++) {
      if (present_[b]) {
        continue;
      }
      const uint64_t n = std::min<uint64_t>(block_, image_->size() - b * block_);
      Status s = pool_->FillSnapshot(id_, b * block_,
                                     std::span<const std::byte>(image_->data() + b * block_, n));
      SIM_TRACE("fill %s block %lu -> %s\n", id_.c_str(), b, s.ToString().c_str());
      if (!s.ok()) {
        return done(s);
      }
      present_[b] = true;
    }
    done(Status::OK());
  }
  double Progress() override {
    return static_cast<double>(std::count(present_.begin(), present_.end(), true)) /
           static_cast<double>(present_.size());
  }

 private:
  Pool* pool_;
  std::string id_;
  const std::vector<std::byte>* image_;
  uint32_t block_;
  std::vector<bool> present_;
};

struct ModelSnapshot {
  std::string volume_id;
  ModelVolume content;
  bool maybe_deleted = false;
};

class Simulation {
 public:
  // `power_cuts`: crashes may strike inside an operation, and the pool may be capped (else
  // crashes come only between operations, in an uncapped pool: see SameSeedSameTraceTwice).
  explicit Simulation(uint64_t seed, bool power_cuts = true)
      : seed_(seed), power_cuts_(power_cuts), rng_(seed), env_(seed ^ 0x5eed) {
    const uint32_t chunk_sizes[] = {4096, 16384, 65536};
    options_.chunk_size_bytes = chunk_sizes[rng_() % 3];
    options_.commit_interval_ms = 0;  // deterministic: commits only on flush/FUA/control ops
    options_.env = &env_;
    // No thread of the pool's own does background work: the reclaimer, background fills and
    // timer commits run when this simulation steps them (Background()), so a seed replays.
    env_.SetSteppedBackground(true);
    options_.meta_map_bytes = 1 << 20;  // small: exercises map growth
    // Off, partial chunks stay until something needs them whole; on, background fills run when
    // stepped (the filler thread takes only fills a request waits for, while it waits).
    options_.background_fill = rng_() % 2 == 0;
    if (rng_() % 2 == 0) {
      std::vector<std::byte> key = test::RandomBytes(kms::XtsCipher::kKeyBytes, seed);
      auto cipher = kms::XtsCipher::Create(
          kms::Secret(std::string(reinterpret_cast<const char*>(key.data()), key.size())));
      STRATA_CHECK(cipher.ok());
      cipher_ = std::move(*cipher);
    }
    if (rng_() % 4 == 0 && power_cuts_) {  // (replays: see SameSeedSameTraceTwice)
      options_.capacity_bytes = uint64_t{options_.chunk_size_bytes} * (8 + rng_() % 64);
    }
  }

  void Run(int cycles) {
    ASSERT_TRUE(Pool::Create(dir_.path(), options_).ok());
    Reopen();
    // Before any power failure is scheduled: it is set up whole. (Not in a capped pool: a read
    // that must fill then fails with NoSpace, which the model does not follow.)
    if (rng_() % 2 == 0 && options_.capacity_bytes == 0) {
      MakeArriving();
    }
    for (int cycle = 0; cycle < cycles && !::testing::Test::HasFailure(); cycle++) {
      int ops = 1 + static_cast<int>(rng_() % 40);
      if (rng_() % 3 == 0) {
        const int64_t after = static_cast<int64_t>(rng_() % 30);
        env_.SetPowerFailAfter(power_cuts_ ? after : -1);  // crash inside an operation
      }
      for (int i = 0; i < ops && !::testing::Test::HasFailure(); i++) {
        if (!Step()) {
          break;  // the disk lost power: crash now
        }
      }
      Crash();
    }
  }

 private:
  void Reopen() {
    auto pool = Pool::Open(dir_.path(), options_);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = std::move(*pool);
    volumes_.clear();
    AttachSources();  // before any volume is opened: they read through to the sources
    for (const VolumeInfo& info : pool_->ListVolumes()) {
      auto vol = pool_->OpenVolume(info.volume_id, Keyed(info.encryption));
      ASSERT_TRUE(vol.ok());
      volumes_[info.volume_id] = *vol;
    }
    // Reclaim left over from before the crash runs now, not interleaved with later steps: a
    // seed replays exactly. It may itself lose power: then it resumes after the next crash.
    Status s = pool_->WaitForReclaim();
    SIM_TRACE("reopen: reclaim -> %s\n", s.ToString().c_str());
  }

  // A snapshot still arriving: an empty snapshot (an import sealed at once) whose content is an
  // image of random and zero runs, filled by a SimImageSource on first touch. The model knows it
  // whole from the start: what a crash loses of the fills is filled again.
  void MakeArriving() {
    const uint64_t size = kSector * (64 + rng_() % 2048);
    std::vector<std::byte> image = test::RandomBytes(size, rng_());
    for (uint64_t at = 0; at < size; at += 8192) {
      if (rng_() % 3 == 0) {
        std::fill_n(image.begin() + static_cast<ptrdiff_t>(at), std::min<uint64_t>(8192, size - at),
                    std::byte{0});
      }
    }
    VolumeSpec spec{size, "", "gp3", ""};
    spec.importing = true;
    auto importing = pool_->CreateVolume(spec);
    ASSERT_TRUE(importing.ok()) << importing.status().ToString();
    auto sealed = pool_->SealImport(importing->volume_id, "arriving", "");
    ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
    const std::string id = sealed->snapshot_id;
    ModelSnapshot m{importing->volume_id, ModelVolume(), false};
    m.content.Resize(size);
    for (uint64_t i = 0; i < size / kSector; i++) {
      const uint64_t h = HashSector(image.data() + i * kSector);
      m.content.sectors[i] = ModelVolume::Sector{{h}, {h}};
    }
    snapshots_[id] = m;
    snap_order_.push_back(id);
    arriving_[id] = std::move(image);
    AttachSources();
    SIM_TRACE("arriving snapshot %s, %lu bytes\n", id.c_str(), size);
  }

  void AttachSources() {
    for (const auto& [id, image] : arriving_) {
      auto source =
          std::make_shared<SimImageSource>(pool_.get(), id, &image, 4 * options_.chunk_size_bytes);
      ASSERT_TRUE(pool_->AttachBlockSource(id, source).ok());
    }
  }

  // One random operation; false when it failed because the disk lost power.
  bool Step() {
    uint64_t dice = rng_() % 100;
    if (model_.empty() || dice < 4) {
      return CreateVolume();
    }
    // Pick by creation order, not by (random) id, so that a seed replays exactly.
    const std::string id = order_[rng_() % order_.size()];
    ModelVolume& m = model_[id];
    if (dice < 50) return Write(id, &m);
    if (dice < 60) return Zero(id, &m);
    if (dice < 67) return Flush();
    if (dice < 78) return Read(id, &m);
    if (dice < 84) return Snapshot(id);
    if (dice < 88) return DeleteSnapshot();
    if (dice < 90) return ReadSnapshot();
    if (dice < 91) return ExportImport();
    if (dice < 94) return Resize(id, &m);
    if (dice < 97) return Background();
    return Delete(id);
  }

  // One turn of a background part, chosen by the seed: what a thread would do at some moment.
  // (A timer commit makes nothing the model must keep: only flushes and FUA do.)
  bool Background() {
    using Which = PoolImpl::Background;
    const Which which[] = {Which::kReclaim, Which::kFill, Which::kCommit};
    const char* names[] = {"reclaim", "fill", "commit"};
    const size_t pick = rng_() % 3;
    Result<std::string> did = static_cast<PoolImpl*>(pool_.get())->StepBackground(which[pick]);
    SIM_TRACE("step %s -> %s %s\n", names[pick], did.status().ToString().c_str(),
              did.ok() ? did->c_str() : "");
    return did.ok() || did.status().code() == Status::Code::kNoSpace;
  }

  // A new volume: empty, or (half the time, when there are snapshots) a clone of one.
  bool CreateVolume() {
    if (model_.size() >= 4) {
      return true;
    }
    uint64_t size = kSector * (1 + rng_() % 2048);
    std::string from;
    if (!snap_order_.empty() && rng_() % 2 == 0) {
      from = snap_order_[rng_() % snap_order_.size()];
      size = 0;
    }
    VolumeSpec spec{size, "", "gp3", from};
    spec.encryption = cipher_ != nullptr && from.empty() ? "sim" : "";  // clones: the snapshot's
    auto info = pool_->CreateVolume(spec);
    SIM_TRACE("create %lu from '%s' -> %s %s\n", size, from.c_str(),
              info.ok() ? info->volume_id.c_str() : "", info.status().ToString().c_str());
    if (!info.ok()) {
      return false;
    }
    if (from.empty()) {
      model_[info->volume_id].Resize(size);
    } else {
      model_[info->volume_id] = snapshots_[from].content;  // durable: it was committed
    }
    order_.push_back(info->volume_id);
    volumes_[info->volume_id] = *pool_->OpenVolume(info->volume_id, Keyed(info->encryption));
    return true;
  }

  void Range(const ModelVolume& m, uint64_t* first, uint64_t* count) {
    uint64_t n = m.sectors.size();
    *first = rng_() % n;
    uint64_t max = std::min<uint64_t>(n - *first, rng_() % 4 == 0 ? 1024 : 64);
    *count = 1 + rng_() % max;
    if (rng_() % 3 == 0 && *first / 8 * 8 + 8 <= n) {  // whole 4 KiB units: sub-chunk CoW
      *first = *first / 8 * 8;
      *count = std::max<uint64_t>(8, std::min<uint64_t>(*count, n - *first) / 8 * 8);
    }
  }

  bool Write(const std::string& id, ModelVolume* m) {
    uint64_t first, count;
    Range(*m, &first, &count);
    std::vector<std::byte> data = test::RandomBytes(count * kSector, rng_());
    // Some sectors repeat a neighbour volume's pattern byte so foreign data would be detectable.
    std::vector<uint64_t> hashes(count);
    for (uint64_t i = 0; i < count; i++) {
      hashes[i] = HashSector(data.data() + i * kSector);
    }
    bool fua = rng_() % 8 == 0;
    Status s = volumes_[id]->Write(first * kSector, data, fua);
    SIM_TRACE("write %s sectors [%lu,+%lu) fua=%d -> %s\n", id.c_str(), first, count, fua,
              s.ToString().c_str());
    m->Written(first, hashes, s.ok(), fua);
    if (!s.ok() && s.code() != Status::Code::kNoSpace) {
      return false;
    }
    return true;
  }

  bool Zero(const std::string& id, ModelVolume* m) {
    uint64_t first, count;
    Range(*m, &first, &count);
    Status s;
    int kind = static_cast<int>(rng_() % 3);
    if (kind == 0) {
      s = volumes_[id]->Trim(first * kSector, count * kSector);
    } else {
      s = volumes_[id]->WriteZeroes(first * kSector, count * kSector, kind == 2, false);
    }
    SIM_TRACE("zero(kind %d) %s sectors [%lu,+%lu) -> %s\n", kind, id.c_str(), first, count,
              s.ToString().c_str());
    m->Written(first, std::vector<uint64_t>(count, ZeroHash()), s.ok(), false);
    return s.ok() || s.code() == Status::Code::kNoSpace;
  }

  bool Flush() {
    Status s = pool_->Flush();
    SIM_TRACE("flush -> %s\n", s.ToString().c_str());
    if (s.ok()) {
      ModelAllFlushed();
    }
    return s.ok();
  }

  void ModelAllFlushed() {
    for (auto& [id, m] : model_) {
      m.Flushed();
    }
  }

  bool Read(const std::string& id, ModelVolume* m) {
    uint64_t first, count;
    Range(*m, &first, &count);
    std::vector<std::byte> out(count * kSector);
    Status s = volumes_[id]->Read(first * kSector, out);
    SIM_TRACE("read %s [%lu,+%lu) -> %s\n", id.c_str(), first, count, s.ToString().c_str());
    if (!s.ok()) {
      return false;
    }
    Verify(id, m, first, out, /*after_crash=*/false);
    return true;
  }

  // A snapshot commits the pool: every volume's acknowledged writes become durable.
  bool Snapshot(const std::string& id) {
    auto snap = pool_->CreateSnapshot(id, "");
    SIM_TRACE("snapshot %s -> %s %s\n", id.c_str(), snap.ok() ? snap->snapshot_id.c_str() : "",
              snap.status().ToString().c_str());
    if (!snap.ok()) {
      return false;  // the data sync failed, so its record was not committed either
    }
    ModelAllFlushed();
    snapshots_[snap->snapshot_id] = ModelSnapshot{id, model_[id], false};
    snap_order_.push_back(snap->snapshot_id);
    return true;
  }

  bool DeleteSnapshot() {
    if (snap_order_.empty()) {
      return true;
    }
    const std::string id = snap_order_[rng_() % snap_order_.size()];
    if (arriving_.count(id) != 0) {
      return true;  // (the restore layer refuses this while volumes read through to it)
    }
    Status s = pool_->DeleteSnapshot(id);
    SIM_TRACE("delete snapshot %s -> %s\n", id.c_str(), s.ToString().c_str());
    if (!s.ok()) {
      snapshots_[id].maybe_deleted = true;
      return false;
    }
    snapshots_.erase(id);
    snap_order_.erase(std::find(snap_order_.begin(), snap_order_.end(), id));
    return Reclaim();
  }

  // Runs the reclaimer to completion now (deterministic replay); it may lose power.
  bool Reclaim() {
    Status s = pool_->WaitForReclaim();
    SIM_TRACE("reclaim -> %s\n", s.ToString().c_str());
    return s.ok();
  }

  // Exports a snapshot (incrementally from an older snapshot of its volume, half the time) and
  // imports the stream back into the same pool: a new snapshot with the same content. A power
  // failure inside leaves either nothing or (if it struck after the seal) the whole snapshot.
  bool ExportImport() {
    if (snap_order_.empty()) {
      return true;
    }
    const std::string id = snap_order_[rng_() % snap_order_.size()];
    if (std::shared_ptr<BlockSource> source = pool_->SourceOf(id);
        source && source->Progress() < 1.0) {
      return true;  // block lists wait for the restore (Busy)
    }
    ExportOptions o;
    o.snapshot_id = id;
    o.threads = 1;
    for (const std::string& older : snap_order_) {
      if (older == id) {
        break;
      }
      if (snapshots_[older].volume_id == snapshots_[id].volume_id && rng_() % 2 == 0) {
        o.base_snapshot_id = older;
      }
    }
    StringSink sink;
    Status s = ExportSnapshot(pool_.get(), o, &sink).status();
    SIM_TRACE("export %s base '%s' -> %s (%zu bytes)\n", id.c_str(), o.base_snapshot_id.c_str(),
              s.ToString().c_str(), sink.bytes.size());
    if (!s.ok()) {
      return false;  // the disk lost power under its reads
    }
    StringSource source(std::move(sink.bytes));
    ImportOptions io;
    io.threads = 1;
    auto imported = ImportSnapshot(pool_.get(), io, &source);
    SIM_TRACE("import -> %s %s\n", imported.ok() ? imported->snapshot.snapshot_id.c_str() : "",
              imported.status().ToString().c_str());
    ModelSnapshot copy = snapshots_[id];
    copy.maybe_deleted = false;
    if (!imported.ok()) {
      pending_import_ = copy;  // may exist after the crash, with this content
      return false;
    }
    EXPECT_EQ(imported->snapshot.source_snapshot_id, id) << "seed " << seed_;
    copy.volume_id = imported->snapshot.volume_id;  // its own (deleted) import volume
    snapshots_[imported->snapshot.snapshot_id] = copy;
    snap_order_.push_back(imported->snapshot.snapshot_id);
    ModelAllFlushed();  // the seal committed the pool
    return true;
  }

  bool ReadSnapshot() {
    if (snap_order_.empty()) {
      return true;
    }
    const std::string id = snap_order_[rng_() % snap_order_.size()];
    return VerifySnapshot(id, &snapshots_[id]);
  }

  bool VerifySnapshot(const std::string& id, ModelSnapshot* m) {
    auto info = pool_->DescribeSnapshot(id);
    auto handle = info.ok() ? pool_->OpenSnapshot(id, Keyed(info->encryption))
                            : Result<std::shared_ptr<Volume>>(info.status());
    if (!handle.ok()) {
      ADD_FAILURE() << "seed " << seed_ << ": snapshot " << id << ": "
                    << handle.status().ToString();
      return false;
    }
    std::vector<std::byte> all(m->content.size_bytes);
    Status s = (*handle)->Read(0, all);
    SIM_TRACE("read snapshot %s -> %s\n", id.c_str(), s.ToString().c_str());
    if (!s.ok()) {
      return false;
    }
    Verify(id, &m->content, 0, all, /*after_crash=*/false);
    return true;
  }

  bool Resize(const std::string& id, ModelVolume* m) {
    uint64_t size = m->size_bytes + kSector * (rng_() % 512);
    auto info = pool_->ResizeVolume(id, size);
    SIM_TRACE("resize %s %lu -> %s\n", id.c_str(), size, info.status().ToString().c_str());
    if (!info.ok()) {
      return false;
    }
    m->Resize(size);
    return true;
  }

  bool Delete(const std::string& id) {
    volumes_.erase(id);
    Status s = pool_->DeleteVolume(id);
    SIM_TRACE("delete %s -> %s\n", id.c_str(), s.ToString().c_str());
    if (!s.ok()) {
      model_[id].maybe_deleted = true;
      return false;
    }
    model_.erase(id);
    order_.erase(std::find(order_.begin(), order_.end(), id));
    return Reclaim();
  }

  void Verify(const std::string& id, ModelVolume* m, uint64_t first,
              const std::vector<std::byte>& data, bool after_crash) {
    for (uint64_t i = 0; i * kSector < data.size(); i++) {
      uint64_t h = HashSector(data.data() + i * kSector);
      ModelVolume::Sector& s = m->sectors[first + i];
      const auto& allowed = after_crash ? s.after_crash : s.now;
      if (std::find(allowed.begin(), allowed.end(), h) == allowed.end()) {
        ADD_FAILURE() << "seed " << seed_ << ": volume " << id << " sector " << first + i
                      << (after_crash ? " after crash" : "") << " holds content it never had"
                      << (h == ZeroHash() ? " (zeros)" : "");
        return;
      }
      s.now = {h};  // reads are deterministic: what was seen is what is there
      if (after_crash) {
        s.after_crash = {h};
      }
    }
  }

  void Crash() {
    SIM_TRACE("crash (%lu unsynced ops)\n", env_.unsynced_ops());
    env_.SetPowerFailAfter(0);  // no clean shutdown: the final commit cannot reach the disk
    volumes_.clear();
    pool_.reset();
    env_.Crash();
    Reopen();
    if (::testing::Test::HasFailure()) {
      return;
    }
    CheckAfterCrash();
  }

  void CheckAfterCrash() {
    std::map<std::string, VolumeInfo> present;
    for (const VolumeInfo& info : pool_->ListVolumes()) {
      present[info.volume_id] = info;
    }
    ASSERT_EQ(order_.size(), model_.size()) << "seed " << seed_;
    ASSERT_EQ(snap_order_.size(), snapshots_.size()) << "seed " << seed_;
    // In creation order, not by (random) id: a seed replays the same reads, fills and trace.
    for (const std::string& id : std::vector<std::string>(order_)) {
      ModelVolume& m = model_.at(id);
      auto p = present.find(id);
      if (p == present.end()) {
        EXPECT_TRUE(m.maybe_deleted)
            << "seed " << seed_ << ": volume " << id << " vanished after a crash";
        order_.erase(std::find(order_.begin(), order_.end(), id));
        model_.erase(id);
        continue;
      }
      EXPECT_EQ(p->second.size_bytes, m.size_bytes) << "seed " << seed_;
      m.maybe_deleted = false;
      std::vector<std::byte> all(m.size_bytes);
      Status s = volumes_[id]->Read(0, all);
      EXPECT_TRUE(s.ok()) << "seed " << seed_ << ": " << s.ToString();
      Verify(id, &m, 0, all, /*after_crash=*/true);
      present.erase(p);
    }
    EXPECT_TRUE(present.empty()) << "seed " << seed_ << ": unexpected volume after crash";
    std::set<std::string> snaps;
    for (const SnapshotInfo& info : pool_->ListSnapshots()) {
      snaps.insert(info.snapshot_id);
    }
    for (const std::string& id : std::vector<std::string>(snap_order_)) {
      ModelSnapshot& m = snapshots_.at(id);
      if (snaps.erase(id) == 0) {
        EXPECT_TRUE(m.maybe_deleted)
            << "seed " << seed_ << ": snapshot " << id << " vanished after a crash";
        snap_order_.erase(std::find(snap_order_.begin(), snap_order_.end(), id));
        snapshots_.erase(id);
        continue;
      }
      m.maybe_deleted = false;
      VerifySnapshot(id, &m);
    }
    if (pending_import_ && snaps.size() == 1) {  // an import sealed just before the power failed
      const std::string id = *snaps.begin();
      snaps.clear();
      pending_import_->volume_id = pool_->DescribeSnapshot(id)->volume_id;
      snapshots_[id] = *pending_import_;
      snap_order_.push_back(id);
      VerifySnapshot(id, &snapshots_[id]);
    }
    pending_import_.reset();
    EXPECT_TRUE(snaps.empty()) << "seed " << seed_ << ": unexpected snapshot after crash";
    CheckDiffs();
    auto report = pool_->Check();
    ASSERT_TRUE(report.ok()) << "seed " << seed_ << ": " << report.status().ToString();
    for (const std::string& problem : report->problems) {
      ADD_FAILURE() << "seed " << seed_ << ": pool check: " << problem;
    }
  }

  // Between consecutive snapshots of one volume, every chunk whose content certainly differs is
  // in the changed-block list (committed with the mappings, so right after any crash).
  void CheckDiffs() {
    const uint32_t chunk = options_.chunk_size_bytes;
    const ModelSnapshot* prev = nullptr;
    std::string prev_id;
    std::map<std::string, std::pair<std::string, const ModelSnapshot*>> last_of_volume;
    for (const std::string& id : snap_order_) {
      const ModelSnapshot& cur = snapshots_[id];
      auto& last = last_of_volume[cur.volume_id];
      prev = last.second;
      prev_id = last.first;
      last = {id, &cur};
      if (prev == nullptr) {
        continue;
      }
      auto diff = pool_->ListChangedBlocks(prev_id, id, chunk, 0, kMaxBlockListResults);
      ASSERT_TRUE(diff.ok()) << "seed " << seed_ << ": " << diff.status().ToString();
      std::set<uint64_t> listed(diff->blocks.begin(), diff->blocks.end());
      const auto& a = prev->content.sectors;
      const auto& b = cur.content.sectors;
      for (uint64_t sector = 0; sector < b.size(); sector++) {
        const uint64_t before =
            sector < a.size() && a[sector].now.size() == 1 ? a[sector].now[0] : ZeroHash();
        const bool certain = sector >= a.size() || a[sector].now.size() == 1;
        if (certain && b[sector].now.size() == 1 && b[sector].now[0] != before &&
            listed.count(sector * kSector / chunk) == 0) {
          ADD_FAILURE() << "seed " << seed_ << ": sector " << sector << " differs between "
                        << prev_id << " and " << id << " but its chunk is not listed";
          return;
        }
      }
    }
  }

  // How a volume or snapshot with this envelope opens: through the seed's cipher when encrypted.
  OpenOptions Keyed(const std::string& encryption) const {
    OpenOptions o;
    if (!encryption.empty()) {
      o.cipher = cipher_;
    }
    return o;
  }

  uint64_t seed_;
  bool power_cuts_;
  std::shared_ptr<BlockCipher> cipher_;  // null: this seed's volumes are plaintext
  std::mt19937_64 rng_;
  SimEnv env_;
  test::TempDir dir_;
  PoolOptions options_;
  std::unique_ptr<Pool> pool_;
  std::map<std::string, std::shared_ptr<Volume>> volumes_;
  std::map<std::string, ModelVolume> model_;
  std::vector<std::string> order_;  // volume ids in creation order
  std::map<std::string, ModelSnapshot> snapshots_;
  std::vector<std::string> snap_order_;          // snapshot ids in creation order
  std::optional<ModelSnapshot> pending_import_;  // an import that failed: it may have sealed
  std::map<std::string, std::vector<std::byte>> arriving_;  // snapshots still arriving: content
};

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}

TEST(CrashSimulation, RandomOperationsSurviveCrashes) {
  const char* one = std::getenv("STRATA_SIM_SEED");
  if (one != nullptr) {
    Simulation(std::strtoull(one, nullptr, 10)).Run(EnvInt("STRATA_SIM_CYCLES", 12));
    return;
  }
  const int seeds = EnvInt("STRATA_SIM_SEEDS", 850);
  const uint64_t base = std::random_device{}();
  for (int i = 0; i < seeds && !::testing::Test::HasFailure(); i++) {
    uint64_t seed = base + static_cast<uint64_t>(i);
    SCOPED_TRACE("reproduce with STRATA_SIM_SEED=" + std::to_string(seed));
    Simulation(seed).Run(EnvInt("STRATA_SIM_CYCLES", 12));
  }
}

// Ids are random (as EC2's are): the trace names them by order of appearance instead.
std::string NormalizeIds(const std::string& trace) {
  static const std::regex id("(vol|snap)-[0-9a-f]{8,17}");
  std::map<std::string, std::string> names;
  std::string out;
  auto last = trace.cbegin();
  for (std::sregex_iterator it(trace.begin(), trace.end(), id), end; it != end; ++it) {
    out.append(last, trace.cbegin() + it->position());
    auto [name, fresh] = names.emplace(it->str(), "");
    if (fresh) {
      name->second = (*it)[1].str() + "#" + std::to_string(names.size());
    }
    out += name->second;
    last = trace.cbegin() + it->position() + it->length();
  }
  out.append(last, trace.cend());
  return out;
}

// Every background part is stepped from the seed: a seed's trace (every operation, step, crash
// and result) is the same on a second run. Without power cuts inside an operation: a fill that
// a request waits for runs on the filler thread, so when the power fails mid-operation, which of
// the operation's I/Os fails first (the fill's read or the request's sync) is not fixed, and
// neither is its error text (the outcome is: the operation fails, and the model holds). Crashes
// between operations still come at seeded points. And in an uncapped pool: in a capped one a
// write was seen to find the pool full in one run and not in the other (not yet explained).
TEST(CrashSimulation, SameSeedSameTraceTwice) {
  const uint64_t base = std::random_device{}();
  for (uint64_t i = 0; i < 6 && !::testing::Test::HasFailure(); i++) {
    const uint64_t seed = base + i;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::string first, second;
    g_trace = &first;
    Simulation(seed, /*power_cuts=*/false).Run(6);
    g_trace = &second;
    Simulation(seed, /*power_cuts=*/false).Run(6);
    g_trace = nullptr;
    ASSERT_NE(first.find("write "), std::string::npos) << "the trace recorded no write";
    const std::string a = NormalizeIds(first), b = NormalizeIds(second);
    if (a != b) {
      size_t at = 0;
      while (at < a.size() && at < b.size() && a[at] == b[at]) {
        at++;
      }
      const size_t from = a.rfind('\n', at) == std::string::npos ? 0 : a.rfind('\n', at) + 1;
      FAIL() << "the second run diverged at byte " << at
             << ":\n  first:  " << a.substr(from, a.find('\n', at) - from)
             << "\n  second: " << b.substr(from, b.find('\n', at) - from);
    }
  }
}

}  // namespace
}  // namespace strata
