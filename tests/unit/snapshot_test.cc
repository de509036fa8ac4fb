// Snapshots, clones, changed-block lists and space reclamation, checked against a byte model.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include "strata/pool.h"

#include "io/sim_env.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint32_t kChunk = 4096;

std::vector<std::byte> ReadAll(Volume* v) {
  std::vector<std::byte> out(v->size_bytes());
  EXPECT_TRUE(v->Read(0, out).ok());
  return out;
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void Open() {
    PoolOptions o;
    o.chunk_size_bytes = chunk_;
    o.commit_interval_ms = 0;
    o.background_fill = background_fill_;
    if (!created_) {
      ASSERT_TRUE(Pool::Create(dir_.path(), o).ok());
      created_ = true;
    }
    auto pool = Pool::Open(dir_.path(), o);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = std::move(*pool);
  }
  std::shared_ptr<Volume> NewVolume(uint64_t size, std::string* id) {
    auto info = pool_->CreateVolume(VolumeSpec{size, "", "gp3", ""});
    EXPECT_TRUE(info.ok());
    *id = info->volume_id;
    return *pool_->OpenVolume(*id);
  }
  void ExpectClean() {
    ASSERT_TRUE(pool_->WaitForReclaim().ok());
    auto report = pool_->Check();
    ASSERT_TRUE(report.ok());
    for (const auto& p : report->problems) {
      ADD_FAILURE() << p;
    }
  }

  test::TempDir dir_;
  uint32_t chunk_ = kChunk;
  bool background_fill_ = true;
  bool created_ = false;
  std::unique_ptr<Pool> pool_;
};

TEST_F(SnapshotTest, SnapshotFreezesContentAndCopiesOnWrite) {
  std::string id;
  auto vol = NewVolume(16 * kChunk, &id);
  auto a = test::RandomBytes(16 * kChunk, 1);
  ASSERT_TRUE(vol->Write(0, a, false).ok());
  auto s1 = pool_->CreateSnapshot(id, "first");
  ASSERT_TRUE(s1.ok()) << s1.status().ToString();
  EXPECT_EQ(s1->volume_id, id);
  EXPECT_EQ(s1->description, "first");
  EXPECT_EQ(s1->state, "completed");
  auto b = test::RandomBytes(kChunk + 100, 2);
  ASSERT_TRUE(vol->Write(3 * kChunk + 7, b, false).ok());  // partial chunks: CoW read-modify
  ASSERT_TRUE(vol->Trim(10 * kChunk, 2 * kChunk).ok());
  auto snap = pool_->OpenSnapshot(s1->snapshot_id);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(ReadAll(snap->get()), a);
  std::vector<std::byte> expect = a;
  std::memcpy(expect.data() + 3 * kChunk + 7, b.data(), b.size());
  std::memset(expect.data() + 10 * kChunk, 0, 2 * kChunk);
  EXPECT_EQ(ReadAll(vol.get()), expect);
  EXPECT_EQ((*snap)->Write(0, b, false).code(), Status::Code::kReadOnly);
  EXPECT_EQ((*snap)->Trim(0, kChunk).code(), Status::Code::kReadOnly);
  EXPECT_EQ(pool_->DeleteSnapshot(s1->snapshot_id).code(), Status::Code::kBusy);
  snap->reset();
  vol.reset();
  // Survives a reopen.
  pool_.reset();
  Open();
  snap = pool_->OpenSnapshot(s1->snapshot_id);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(ReadAll(snap->get()), a);
  vol = *pool_->OpenVolume(id);
  EXPECT_EQ(ReadAll(vol.get()), expect);
  ExpectClean();
}

TEST_F(SnapshotTest, DeleteAnySnapshotReclaimsOnlyItsSpace) {
  std::string id;
  auto vol = NewVolume(8 * kChunk, &id);
  std::vector<std::vector<std::byte>> images;
  std::vector<std::string> snaps;
  for (int i = 0; i < 5; i++) {
    auto data = test::RandomBytes(2 * kChunk, 10 + i);
    ASSERT_TRUE(vol->Write(static_cast<uint64_t>(i % 3) * kChunk, data, false).ok());
    images.push_back(ReadAll(vol.get()));
    snaps.push_back(pool_->CreateSnapshot(id, "")->snapshot_id);
  }
  for (int victim : {2, 0, 4}) {  // middle, oldest, newest
    ASSERT_TRUE(pool_->DeleteSnapshot(snaps[victim]).ok());
    EXPECT_EQ(pool_->DeleteSnapshot(snaps[victim]).code(), Status::Code::kNotFound);
    ExpectClean();
    for (int i = 0; i < 5; i++) {
      auto s = pool_->OpenSnapshot(snaps[i]);
      if (i == 0 || i == 2 || (i == 4 && victim == 4)) {
        continue;
      }
      ASSERT_TRUE(s.ok());
      EXPECT_EQ(ReadAll(s->get()), images[i]) << "snapshot " << i;
    }
    EXPECT_EQ(ReadAll(vol.get()), images.back());
  }
  ASSERT_TRUE(pool_->DeleteSnapshot(snaps[1]).ok());
  ASSERT_TRUE(pool_->DeleteSnapshot(snaps[3]).ok());
  ExpectClean();
  // Only the volume's own chunks remain: chunks 0..3 written.
  EXPECT_EQ(pool_->Info().used_bytes, 4 * kChunk);
  vol.reset();
  ASSERT_TRUE(pool_->DeleteVolume(id).ok());
  ExpectClean();
  EXPECT_EQ(pool_->Info().used_bytes, 0u);
}

TEST_F(SnapshotTest, ClonesShareUntilWrittenAndOutliveTheirSource) {
  std::string id;
  auto vol = NewVolume(8 * kChunk, &id);
  auto a = test::RandomBytes(8 * kChunk, 3);
  ASSERT_TRUE(vol->Write(0, a, false).ok());
  auto snap = pool_->CreateSnapshot(id, "base");
  ASSERT_TRUE(snap.ok());
  const uint64_t used = pool_->Info().used_bytes;
  VolumeSpec spec{0, "clone", "gp3", snap->snapshot_id};
  auto c1 = pool_->CreateVolume(spec);
  ASSERT_TRUE(c1.ok()) << c1.status().ToString();
  EXPECT_EQ(c1->size_bytes, 8 * kChunk);
  EXPECT_EQ(c1->snapshot_id, snap->snapshot_id);
  spec.size_bytes = 4 * kChunk;
  EXPECT_EQ(pool_->CreateVolume(spec).status().code(), Status::Code::kInvalidArgument);
  spec.size_bytes = 0;
  spec.snapshot_id = "snap-0000000000000000";
  EXPECT_EQ(pool_->CreateVolume(spec).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(pool_->Info().used_bytes, used);  // no data copied
  auto clone = *pool_->OpenVolume(c1->volume_id);
  EXPECT_EQ(ReadAll(clone.get()), a);
  auto b = test::RandomBytes(100, 4);
  ASSERT_TRUE(clone->Write(kChunk + 10, b, false).ok());
  ASSERT_TRUE(clone->Trim(5 * kChunk, kChunk).ok());
  std::vector<std::byte> expect = a;
  std::memcpy(expect.data() + kChunk + 10, b.data(), b.size());
  std::memset(expect.data() + 5 * kChunk, 0, kChunk);
  EXPECT_EQ(ReadAll(clone.get()), expect);
  EXPECT_EQ(ReadAll(vol.get()), a);
  auto extents = clone->BlockStatus(0, 8 * kChunk);
  ASSERT_TRUE(extents.ok());
  EXPECT_EQ(extents->size(), 3u);  // data, trimmed hole, data
  // The source volume and its snapshot go; the clone keeps reading through.
  vol.reset();
  ASSERT_TRUE(pool_->DeleteSnapshot(snap->snapshot_id).ok());
  ASSERT_TRUE(pool_->DeleteVolume(id).ok());
  ExpectClean();
  EXPECT_EQ(ReadAll(clone.get()), expect);
  clone.reset();
  pool_.reset();
  Open();
  clone = *pool_->OpenVolume(c1->volume_id);
  EXPECT_EQ(ReadAll(clone.get()), expect);
  clone.reset();
  ASSERT_TRUE(pool_->DeleteVolume(c1->volume_id).ok());
  ExpectClean();
  EXPECT_EQ(pool_->Info().used_bytes, 0u);
}

TEST_F(SnapshotTest, ChangedBlocksAreExactAndPaginated) {
  std::string id;
  auto vol = NewVolume(1024 * kChunk, &id);
  auto data = test::RandomBytes(kChunk, 5);
  for (uint64_t c : {1, 7, 100, 513}) {
    ASSERT_TRUE(vol->Write(c * kChunk, data, false).ok());
  }
  auto s1 = pool_->CreateSnapshot(id, "");
  for (uint64_t c : {7, 8, 900, 901, 902}) {
    ASSERT_TRUE(vol->Write(c * kChunk, data, false).ok());
  }
  ASSERT_TRUE(vol->Trim(100 * kChunk, kChunk).ok());
  auto s2 = pool_->CreateSnapshot(id, "");
  auto all = pool_->ListSnapshotBlocks(s2->snapshot_id, kChunk, 0, 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->blocks, (std::vector<uint64_t>{1, 7, 8, 513, 900, 901, 902}));
  EXPECT_FALSE(all->next_block.has_value());
  auto diff = pool_->ListChangedBlocks(s1->snapshot_id, s2->snapshot_id, kChunk, 0, 1000);
  ASSERT_TRUE(diff.ok());
  EXPECT_EQ(diff->blocks, (std::vector<uint64_t>{7, 8, 100, 900, 901, 902}));
  auto page = pool_->ListChangedBlocks(s1->snapshot_id, s2->snapshot_id, kChunk, 0, 2);
  EXPECT_EQ(page->blocks, (std::vector<uint64_t>{7, 8}));
  ASSERT_TRUE(page->next_block.has_value());
  page = pool_->ListChangedBlocks(s1->snapshot_id, s2->snapshot_id, kChunk, *page->next_block, 4);
  EXPECT_EQ(page->blocks, (std::vector<uint64_t>{100, 900, 901, 902}));
  EXPECT_FALSE(page->next_block.has_value());
  auto coarse = pool_->ListChangedBlocks(s1->snapshot_id, s2->snapshot_id, 128 * kChunk, 0, 10);
  EXPECT_EQ(coarse->blocks, (std::vector<uint64_t>{0, 7}));
  EXPECT_EQ(coarse->block_size_bytes, 128 * kChunk);
  EXPECT_EQ(
      pool_->ListChangedBlocks(s2->snapshot_id, s1->snapshot_id, kChunk, 0, 10).status().code(),
      Status::Code::kInvalidArgument);
  EXPECT_EQ(pool_->ListChangedBlocks(s1->snapshot_id, s2->snapshot_id, 1000, 0, 10).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(pool_->ListSnapshotBlocks("snap-nope", kChunk, 0, 10).status().code(),
            Status::Code::kNotFound);
  // Across a clone: a snapshot of a volume cloned from s1 differs from s1 where the clone wrote.
  auto clone = pool_->CreateVolume(VolumeSpec{0, "", "gp3", s1->snapshot_id});
  auto cv = *pool_->OpenVolume(clone->volume_id);
  ASSERT_TRUE(cv->Write(3 * kChunk, data, false).ok());
  auto s3 = pool_->CreateSnapshot(clone->volume_id, "");
  auto cross = pool_->ListChangedBlocks(s1->snapshot_id, s3->snapshot_id, kChunk, 0, 1000);
  ASSERT_TRUE(cross.ok()) << cross.status().ToString();
  EXPECT_EQ(cross->blocks, (std::vector<uint64_t>{3}));
  EXPECT_EQ(
      pool_->ListChangedBlocks(s2->snapshot_id, s3->snapshot_id, kChunk, 0, 10).status().code(),
      Status::Code::kInvalidArgument);  // s3's clone point is before s2
  auto space = pool_->SnapshotSpaceUsage(s1->snapshot_id);
  ASSERT_TRUE(space.ok());
  EXPECT_EQ(space->unique_bytes, 0u);  // a clone reads through it: nothing freed
  cv.reset();
  ASSERT_TRUE(pool_->DeleteSnapshot(s3->snapshot_id).ok());
  ASSERT_TRUE(pool_->DeleteVolume(clone->volume_id).ok());
  ASSERT_TRUE(pool_->WaitForReclaim().ok());  // the clone's lineage goes, and with it its pin
  space = pool_->SnapshotSpaceUsage(s1->snapshot_id);
  EXPECT_EQ(space->unique_bytes, 2 * kChunk);  // chunks 7 and 100 are s1's alone
  EXPECT_EQ(space->shared_bytes, 2 * kChunk);  // chunks 1 and 513
}

// The changed-extent map (qemu:dirty-bitmap) of a live volume includes uncommitted writes, and a
// chunk written and trimmed back to a hole since the snapshot is clean again.
TEST_F(SnapshotTest, ChangedExtentsSeeUncommittedWrites) {
  std::string id;
  auto vol = NewVolume(16 * kChunk, &id);
  auto data = test::RandomBytes(kChunk, 6);
  ASSERT_TRUE(vol->Write(0, data, false).ok());
  auto s1 = pool_->CreateSnapshot(id, "");
  ASSERT_TRUE(vol->Write(5 * kChunk + 10, test::RandomBytes(100, 7), false).ok());
  ASSERT_TRUE(vol->Write(9 * kChunk, data, false).ok());
  ASSERT_TRUE(vol->Trim(9 * kChunk, kChunk).ok());  // back to the hole it was in s1
  ASSERT_TRUE(vol->Trim(0, kChunk).ok());           // s1 had data here: changed
  auto map = pool_->ChangedExtents(*vol, s1->snapshot_id, 0, 16 * kChunk);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  std::vector<std::tuple<uint64_t, uint64_t, bool>> got;
  for (const ChangeExtent& e : *map) {
    got.emplace_back(e.offset_bytes / kChunk, e.length_bytes / kChunk, e.changed);
  }
  EXPECT_EQ(got, (std::vector<std::tuple<uint64_t, uint64_t, bool>>{
                     {0, 1, true}, {1, 4, false}, {5, 1, true}, {6, 10, false}}));
  auto snap = *pool_->OpenSnapshot(s1->snapshot_id);
  EXPECT_EQ(pool_->ChangedExtents(*snap, s1->snapshot_id, 0, kChunk).status().code(),
            Status::Code::kInvalidArgument);  // not older than itself
  EXPECT_EQ(pool_->ChangedExtents(*vol, "snap-nope", 0, kChunk).status().code(),
            Status::Code::kNotFound);
  EXPECT_EQ(pool_->ChangedExtents(*vol, s1->snapshot_id, 0, 17 * kChunk).status().code(),
            Status::Code::kOutOfRange);
}

TEST_F(SnapshotTest, MultiVolumeSnapshotAndBadInput) {
  std::string a, b;
  auto va = NewVolume(4 * kChunk, &a);
  auto vb = NewVolume(4 * kChunk, &b);
  auto snaps = pool_->CreateSnapshots({a, b}, "both");
  ASSERT_TRUE(snaps.ok());
  ASSERT_EQ(snaps->size(), 2u);
  EXPECT_EQ((*snaps)[0].start_time_ms, (*snaps)[1].start_time_ms);
  EXPECT_EQ(pool_->CreateSnapshots({a, a}, "").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(pool_->CreateSnapshots({a, "vol-nope"}, "").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(pool_->CreateSnapshots({}, "").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(pool_->ListSnapshots().size(), 2u);  // the failed calls took none
  EXPECT_EQ(pool_->DeleteSnapshot("snap-nope").code(), Status::Code::kNotFound);
  EXPECT_EQ(pool_->OpenSnapshot("snap-nope").status().code(), Status::Code::kNotFound);
}

// Writes acknowledged before CreateSnapshot starts are in the snapshot; the volume never stalls
// for long. A writer thread stamps each chunk with increasing sequence numbers.
TEST_F(SnapshotTest, SnapshotOfALiveVolumeHoldsEveryAcknowledgedWrite) {
  std::string id;
  auto vol = NewVolume(64 * kChunk, &id);
  std::atomic<uint64_t> acked{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::vector<std::byte> buf(kChunk);
    for (uint64_t seq = 1; !stop.load(); seq++) {
      std::memcpy(buf.data(), &seq, sizeof(seq));
      ASSERT_TRUE(vol->Write((seq % 64) * kChunk, buf, false).ok());
      acked.store(seq);
    }
  });
  std::vector<std::pair<uint64_t, std::string>> taken;
  for (int i = 0; i < 20; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    uint64_t before = acked.load();
    taken.emplace_back(before, pool_->CreateSnapshot(id, "")->snapshot_id);
  }
  stop = true;
  writer.join();
  for (const auto& [before, snap_id] : taken) {
    auto snap = *pool_->OpenSnapshot(snap_id);
    auto bytes = ReadAll(snap.get());
    for (uint64_t seq = before > 64 ? before - 63 : 1; seq <= before; seq++) {
      uint64_t got;
      std::memcpy(&got, bytes.data() + (seq % 64) * kChunk, sizeof(got));
      EXPECT_GE(got, seq) << "write " << seq << " acknowledged before " << snap_id;
    }
  }
  ExpectClean();
}

// Random operations against a byte model: every snapshot and volume, every diff, space
// accounting, then everything deleted leaves an empty pool.
// STRATA_SNAP_SEED=S runs seed S (default 12345) for STRATA_SNAP_STEPS steps (default 600).

// Sub-chunk copy-on-write at 64 KiB chunks (4 KiB units), the filler off so that partial chunks
// stay partial until something needs them whole.
class SubChunkTest : public SnapshotTest {
 protected:
  static constexpr uint32_t kBig = 65536;
  static constexpr uint32_t kUnit = 4096;
  void SetUp() override {
    chunk_ = kBig;
    background_fill_ = false;
    Open();
  }
  uint64_t Partials() { return pool_->Info().partial_chunks; }
  // Writes `data` at `offset` and the same into the byte model `expect`.
  void WriteModel(Volume* v, uint64_t offset, const std::vector<std::byte>& data,
                  std::vector<std::byte>* expect, bool fua = false) {
    ASSERT_TRUE(v->Write(offset, data, fua).ok());
    std::memcpy(expect->data() + offset, data.data(), data.size());
  }
  std::vector<std::byte> ReadRange(Volume* v, uint64_t off, size_t len) {
    std::vector<std::byte> out(len);
    EXPECT_TRUE(v->Read(off, out).ok());
    return out;
  }
  std::vector<std::byte> Slice(const std::vector<std::byte>& b, uint64_t off, size_t len) {
    return std::vector<std::byte>(b.begin() + static_cast<long>(off),
                                  b.begin() + static_cast<long>(off + len));
  }
};

TEST_F(SubChunkTest, FirstWriteCopiesOnlyItsUnitsAndReadsThrough) {
  std::string id;
  auto vol = NewVolume(8 * kBig, &id);
  auto a = test::RandomBytes(8 * kBig, 1);
  ASSERT_TRUE(vol->Write(0, a, false).ok());
  auto s1 = pool_->CreateSnapshot(id, "");
  ASSERT_TRUE(s1.ok());
  const uint64_t used_before = pool_->Info().used_bytes;
  auto b = test::RandomBytes(kUnit, 2);
  ASSERT_TRUE(vol->Write(kBig + 2 * kUnit, b, false).ok());  // unit 2 of chunk 1
  EXPECT_EQ(Partials(), 1u);
  EXPECT_EQ(pool_->Info().used_bytes, used_before + kBig);
  std::vector<std::byte> expect = a;
  std::memcpy(expect.data() + kBig + 2 * kUnit, b.data(), kUnit);
  // Reads of present units come from the new chunk, of absent ones from the snapshot's: no fill.
  EXPECT_EQ(ReadRange(vol.get(), kBig + 2 * kUnit, kUnit), b);
  EXPECT_EQ(ReadRange(vol.get(), kBig, 2 * kUnit), Slice(a, kBig, 2 * kUnit));
  EXPECT_EQ(ReadRange(vol.get(), kBig + 3 * kUnit + 100, 900),
            Slice(a, kBig + 3 * kUnit + 100, 900));
  EXPECT_EQ(Partials(), 1u);
  // More whole units go in place; the snapshot never changes.
  auto c = test::RandomBytes(2 * kUnit, 3);
  WriteModel(vol.get(), kBig + 5 * kUnit, c, &expect, true);
  EXPECT_EQ(Partials(), 1u);
  auto snap = pool_->OpenSnapshot(s1->snapshot_id);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(ReadAll(snap->get()), a);
  // A read spanning both kinds of units waits for the fill.
  EXPECT_EQ(ReadAll(vol.get()), expect);
  EXPECT_EQ(Partials(), 0u);
  EXPECT_EQ(ReadAll(snap->get()), a);
  snap->reset();
  ExpectClean();
}

TEST_F(SubChunkTest, WritingEveryUnitMakesTheChunkWholeWithoutAFill) {
  std::string id;
  auto vol = NewVolume(2 * kBig, &id);
  auto a = test::RandomBytes(2 * kBig, 4);
  ASSERT_TRUE(vol->Write(0, a, false).ok());
  ASSERT_TRUE(pool_->CreateSnapshot(id, "").ok());
  std::vector<std::byte> expect = a;
  for (uint32_t u = 0; u < kBig / kUnit; u++) {  // a sequential writer, 4 KiB at a time
    auto d = test::RandomBytes(kUnit, 10 + u);
    ASSERT_TRUE(vol->Write(uint64_t{u} * kUnit, d, false).ok());
    std::memcpy(expect.data() + u * kUnit, d.data(), kUnit);
    EXPECT_EQ(Partials(), u + 1 < kBig / kUnit ? 1u : 0u);
  }
  EXPECT_EQ(ReadAll(vol.get()), expect);
  ExpectClean();
}

TEST_F(SubChunkTest, UnalignedWritesTrimsAndZeroesOnAPartialChunk) {
  std::string id;
  auto vol = NewVolume(4 * kBig, &id);
  auto a = test::RandomBytes(4 * kBig, 5);
  ASSERT_TRUE(vol->Write(0, a, false).ok());
  auto s1 = pool_->CreateSnapshot(id, "");
  std::vector<std::byte> expect = a;
  for (uint64_t c = 0; c < 4; c++) {
    auto d = test::RandomBytes(kUnit, 20 + c);
    WriteModel(vol.get(), c * kBig + kUnit, d, &expect);
  }
  EXPECT_EQ(Partials(), 4u);
  // Unaligned, inside a present unit: in place, no fill.
  auto e = test::RandomBytes(100, 30);
  WriteModel(vol.get(), kUnit + 7, e, &expect);
  EXPECT_EQ(Partials(), 4u);
  // Unaligned, into an absent unit: the chunk is filled first.
  WriteModel(vol.get(), kBig + 3 * kUnit + 5, e, &expect);
  EXPECT_EQ(Partials(), 3u);
  // A whole-chunk trim drops the partial version (the snapshot's shows through no more).
  ASSERT_TRUE(vol->Trim(2 * kBig, kBig).ok());
  std::memset(expect.data() + 2 * kBig, 0, kBig);
  EXPECT_EQ(Partials(), 2u);
  // Write-zeroes of a partial range of units: in place, units become present.
  ASSERT_TRUE(vol->WriteZeroes(3 * kBig + 8 * kUnit, 2 * kUnit, false, false).ok());
  std::memset(expect.data() + 3 * kBig + 8 * kUnit, 0, 2 * kUnit);
  EXPECT_EQ(ReadAll(vol.get()), expect);
  auto snap = pool_->OpenSnapshot(s1->snapshot_id);
  EXPECT_EQ(ReadAll(snap->get()), a);
  snap->reset();
  ExpectClean();
}

TEST_F(SubChunkTest, SnapshotsDeletesAndReopenFillFirst) {
  std::string id;
  auto vol = NewVolume(4 * kBig, &id);
  auto a = test::RandomBytes(4 * kBig, 6);
  ASSERT_TRUE(vol->Write(0, a, false).ok());
  auto s1 = pool_->CreateSnapshot(id, "");
  std::vector<std::byte> expect = a;
  auto write_units = [&](uint64_t seed) {
    for (uint64_t c = 0; c < 4; c++) {
      auto d = test::RandomBytes(kUnit, seed + c);
      WriteModel(vol.get(), c * kBig + (seed % 16) * kUnit, d, &expect);
    }
  };
  write_units(40);
  EXPECT_EQ(Partials(), 4u);
  // A snapshot freezes whole versions only: it fills the volume's partial chunks first.
  auto s2 = pool_->CreateSnapshot(id, "");
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(Partials(), 0u);
  const std::vector<std::byte> at_s2 = expect;
  write_units(51);
  EXPECT_EQ(Partials(), 4u);
  // Deleting the snapshot the partial chunks read through to fills them before its space goes.
  ASSERT_TRUE(pool_->DeleteSnapshot(s2->snapshot_id).ok());
  EXPECT_EQ(Partials(), 0u);
  ASSERT_TRUE(pool_->WaitForReclaim().ok());
  EXPECT_EQ(ReadAll(vol.get()), expect);
  write_units(62);  // partial over s1's versions? no: those chunks are the head's now
  EXPECT_EQ(Partials(), 0u);
  // Partial chunks survive a flush and a close; the next open fills them before anything runs.
  auto s3 = pool_->CreateSnapshot(id, "");
  write_units(73);
  EXPECT_EQ(Partials(), 4u);
  ASSERT_TRUE(vol->Flush().ok());
  vol.reset();
  pool_.reset();
  Open();
  EXPECT_EQ(Partials(), 0u);
  {
    auto report = pool_->Check();
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->problems.empty()) << report->problems.front();
  }
  vol = *pool_->OpenVolume(id);
  EXPECT_EQ(ReadAll(vol.get()), expect);
  auto snap1 = pool_->OpenSnapshot(s1->snapshot_id);
  EXPECT_EQ(ReadAll(snap1->get()), a);
  snap1->reset();
  auto s4 = pool_->CreateSnapshot(id, "");
  write_units(84);
  vol.reset();
  EXPECT_EQ(Partials(), 4u);
  ASSERT_TRUE(pool_->DeleteVolume(id).ok());  // waits for the filler before freeing chunks
  EXPECT_EQ(Partials(), 0u);
  for (const auto& s : {s1, s3, s4}) {
    ASSERT_TRUE(pool_->DeleteSnapshot(s->snapshot_id).ok());
  }
  ExpectClean();
  EXPECT_EQ(pool_->Info().used_bytes, 0u);
}

TEST_F(SubChunkTest, ClonesCopyOnlyTheirUnitsFromTheSource) {
  std::string id;
  auto vol = NewVolume(2 * kBig, &id);
  auto a = test::RandomBytes(2 * kBig, 7);
  ASSERT_TRUE(vol->Write(0, a, false).ok());
  auto s1 = pool_->CreateSnapshot(id, "");
  auto clone = pool_->CreateVolume(VolumeSpec{0, "", "gp3", s1->snapshot_id});
  ASSERT_TRUE(clone.ok());
  auto cv = *pool_->OpenVolume(clone->volume_id);
  auto d = test::RandomBytes(kUnit, 8);
  ASSERT_TRUE(cv->Write(kBig + 15 * kUnit, d, false).ok());
  EXPECT_EQ(Partials(), 1u);
  std::vector<std::byte> expect = a;
  std::memcpy(expect.data() + kBig + 15 * kUnit, d.data(), kUnit);
  EXPECT_EQ(ReadRange(cv.get(), kBig, 15 * kUnit), Slice(a, kBig, 15 * kUnit));
  EXPECT_EQ(ReadAll(cv.get()), expect);
  EXPECT_EQ(ReadAll(vol.get()), a);
  ASSERT_TRUE(cv->Write(8 * kUnit, d, false).ok());
  cv.reset();
  EXPECT_EQ(Partials(), 1u);
  ASSERT_TRUE(pool_->DeleteVolume(clone->volume_id).ok());
  ASSERT_TRUE(pool_->DeleteSnapshot(s1->snapshot_id).ok());
  ExpectClean();
}

TEST_F(SubChunkTest, LiveSnapshotsWithPartialChunksHoldEveryAcknowledgedWrite) {
  background_fill_ = true;
  pool_.reset();
  Open();
  std::string id;
  constexpr uint64_t kUnits = 16 * kBig / kUnit;  // 256 units over 16 chunks
  auto vol = NewVolume(16 * kBig, &id);
  ASSERT_TRUE(vol->Write(0, test::RandomBytes(16 * kBig, 11), false).ok());
  std::atomic<uint64_t> acked{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::vector<std::byte> buf(kUnit);
    for (uint64_t seq = 1; !stop.load(); seq++) {
      std::memcpy(buf.data(), &seq, sizeof(seq));
      // Units in a scattered order, so most writes after a snapshot start a partial chunk.
      ASSERT_TRUE(vol->Write((seq * 37 % kUnits) * kUnit, buf, false).ok());
      acked.store(seq);
    }
  });
  std::vector<std::pair<uint64_t, std::string>> taken;
  for (int i = 0; i < 20; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    uint64_t before = acked.load();
    taken.emplace_back(before, pool_->CreateSnapshot(id, "")->snapshot_id);
    if (i % 3 == 2) {  // deleting the newest snapshot fills what reads through to it
      ASSERT_TRUE(pool_->DeleteSnapshot(taken[i - 1].second).ok());
    }
  }
  stop = true;
  writer.join();
  for (size_t i = 0; i < taken.size(); i++) {
    const auto& [before, snap_id] = taken[i];
    auto snap = pool_->OpenSnapshot(snap_id);
    if (!snap.ok()) {
      continue;  // deleted above
    }
    auto bytes = ReadAll(snap->get());
    for (uint64_t seq = before > kUnits ? before - kUnits + 1 : 1; seq <= before; seq++) {
      uint64_t got;
      std::memcpy(&got, bytes.data() + (seq * 37 % kUnits) * kUnit, sizeof(got));
      EXPECT_GE(got, seq) << "write " << seq << " acknowledged before " << snap_id;
    }
  }
  auto bytes = ReadAll(vol.get());
  const uint64_t last = acked.load();
  for (uint64_t seq = last > kUnits ? last - kUnits + 1 : 1; seq <= last; seq++) {
    uint64_t got;
    std::memcpy(&got, bytes.data() + (seq * 37 % kUnits) * kUnit, sizeof(got));
    EXPECT_EQ(got, seq);
  }
  ExpectClean();
}

TEST_F(SubChunkTest, BackgroundFillMakesEveryChunkWhole) {
  background_fill_ = true;
  pool_.reset();
  Open();
  std::string id;
  auto vol = NewVolume(64 * kBig, &id);
  auto a = test::RandomBytes(64 * kBig, 9);
  ASSERT_TRUE(vol->Write(0, a, false).ok());
  ASSERT_TRUE(pool_->CreateSnapshot(id, "").ok());
  std::vector<std::byte> expect = a;
  for (uint64_t c = 0; c < 64; c++) {
    auto d = test::RandomBytes(kUnit, 100 + c);
    WriteModel(vol.get(), c * kBig + (c % 16) * kUnit, d, &expect);
  }
  for (int i = 0; i < 2000 && Partials() != 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(Partials(), 0u);
  EXPECT_EQ(ReadAll(vol.get()), expect);
  ExpectClean();
}

// A snapshot of a volume no handle holds open fills its partial chunks too: they outlive the
// handle that wrote them (an NBD client gone, then create-snapshot), and a partial version the
// snapshot kept would be shared, which the next write into that chunk must never find (the
// remote simulator hit it now and then: the background fill had not run yet).
TEST(SubChunkClosedTest, ASnapshotOfAClosedVolumeFillsItsPartialChunks) {
  constexpr uint32_t kBig = 65536;
  test::TempDir dir;
  PoolOptions o;
  o.chunk_size_bytes = kBig;
  o.commit_interval_ms = 0;
  o.background_fill = false;  // filled only when a drain asks
  ASSERT_TRUE(Pool::Create(dir.path(), o).ok());
  auto pool = std::move(*Pool::Open(dir.path(), o));
  auto info = pool->CreateVolume(VolumeSpec{4 * kBig, "", "gp3", ""});
  ASSERT_TRUE(info.ok());
  std::vector<std::byte> expect = test::RandomBytes(4 * kBig, 31);
  auto unit = test::RandomBytes(4096, 32);
  {
    auto vol = *pool->OpenVolume(info->volume_id);
    ASSERT_TRUE(vol->Write(0, expect, false).ok());
    ASSERT_TRUE(pool->CreateSnapshot(info->volume_id, "").ok());
    ASSERT_TRUE(vol->Write(kBig + 3 * 4096, unit, false).ok());  // copy on write, in part
    std::memcpy(expect.data() + kBig + 3 * 4096, unit.data(), unit.size());
    ASSERT_EQ(pool->Info().partial_chunks, 1u);
  }  // the handle goes; the partial chunk stays
  auto snap = pool->CreateSnapshot(info->volume_id, "closed");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(pool->Info().partial_chunks, 0u);
  auto vol = *pool->OpenVolume(info->volume_id);
  ASSERT_TRUE(vol->Write(kBig + 5 * 4096, unit, false).ok());  // into the snapshot's chunk
  std::vector<std::byte> now = expect;
  std::memcpy(now.data() + kBig + 5 * 4096, unit.data(), unit.size());
  EXPECT_EQ(ReadAll(vol.get()), now);
  EXPECT_EQ(ReadAll(pool->OpenSnapshot(snap->snapshot_id)->get()), expect);
  auto report = pool->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
}

// A fill whose I/O fails latches the pool, as a failed sync does: the snapshot that waits for
// the fill fails instead of hanging, writes fail until the pool is reopened, and the reopened
// pool reads every acknowledged write.
TEST(SubChunkFaultTest, FailedFillLatchesThePoolAndLosesNothing) {
  constexpr uint32_t kBig = 65536;
  test::TempDir dir;
  SimEnv sim(5);
  PoolOptions o;
  o.env = &sim;
  o.chunk_size_bytes = kBig;
  o.commit_interval_ms = 0;
  o.background_fill = false;  // filled only when the snapshot's drain asks
  ASSERT_TRUE(Pool::Create(dir.path(), o).ok());
  auto pool = std::move(*Pool::Open(dir.path(), o));
  auto info = pool->CreateVolume(VolumeSpec{4 * kBig, "", "gp3", ""});
  ASSERT_TRUE(info.ok());
  auto vol = *pool->OpenVolume(info->volume_id);
  std::vector<std::byte> expect = test::RandomBytes(4 * kBig, 21);
  ASSERT_TRUE(vol->Write(0, expect, false).ok());
  ASSERT_TRUE(pool->CreateSnapshot(info->volume_id, "").ok());
  auto unit = test::RandomBytes(4096, 22);
  ASSERT_TRUE(vol->Write(kBig + 3 * 4096, unit, /*fua=*/true).ok());  // durable, partial
  std::memcpy(expect.data() + kBig + 3 * 4096, unit.data(), unit.size());
  ASSERT_EQ(pool->Info().partial_chunks, 1u);

  sim.SetPowerFailAfter(0);  // every I/O from now on fails: the fill's read first
  auto snap = pool->CreateSnapshot(info->volume_id, "");
  ASSERT_FALSE(snap.ok());
  EXPECT_EQ(snap.status().code(), Status::Code::kIOError) << snap.status().ToString();
  Status s = vol->Write(0, unit, false);
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_NE(s.message().find("latched"), std::string::npos) << s.ToString();

  vol.reset();
  pool.reset();
  sim.Crash();  // power back; unsynced state decided by the seed
  pool = std::move(*Pool::Open(dir.path(), o));
  vol = *pool->OpenVolume(info->volume_id);
  EXPECT_EQ(pool->Info().partial_chunks, 0u);  // filled at open
  EXPECT_EQ(ReadAll(vol.get()), expect);
  auto report = pool->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
}

// Pool::SetReadOnly (a KMS pool opened without its root key): every change is refused, saying
// why, before it changes anything; reads go on; the next open is writable and finds all as it was.
TEST_F(SnapshotTest, AReadOnlyPoolRefusesEveryChangeAndKeepsEverything) {
  std::string id;
  auto vol = NewVolume(8 * kChunk, &id);
  auto a = test::RandomBytes(8 * kChunk, 5);
  ASSERT_TRUE(vol->Write(0, a, true).ok());
  auto snap = pool_->CreateSnapshot(id, "before");
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(pool_->OpenRecordTable("layer").ok());
  pool_->SetReadOnly("no root key (test)");
  auto refused = [](const Status& s) {
    return s.code() == Status::Code::kReadOnly &&
           s.message().find("read-only: no root key (test)") != std::string::npos;
  };
  EXPECT_TRUE(vol->read_only());
  EXPECT_TRUE(refused(vol->Write(0, test::RandomBytes(kChunk, 6), false)));
  EXPECT_TRUE(refused(vol->Trim(0, kChunk)));
  EXPECT_TRUE(refused(vol->WriteZeroes(0, kChunk, false, false)));
  EXPECT_TRUE(vol->Flush().ok());  // nothing to make durable
  EXPECT_EQ(ReadAll(vol.get()), a);
  EXPECT_TRUE(refused(pool_->CreateVolume(VolumeSpec{kChunk, "", "gp3", ""}).status()));
  EXPECT_TRUE(refused(pool_->CreateSnapshot(id, "after").status()));
  EXPECT_TRUE(refused(pool_->DeleteSnapshot(snap->snapshot_id)));
  vol.reset();
  EXPECT_TRUE(refused(pool_->DeleteVolume(id)));
  VolumeModification grow;
  grow.size_bytes = 16 * kChunk;
  EXPECT_TRUE(refused(pool_->ModifyVolume(id, grow).status()));
  EXPECT_TRUE(refused(pool_->CommitRecords({{"layer", "k", std::string("v")}})));
  EXPECT_EQ(pool_->Info().read_only, "no root key (test)");
  auto reopened = pool_->OpenVolume(id);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->read_only());
  reopened->reset();
  pool_.reset();
  Open();  // a new open is writable and lost nothing
  EXPECT_TRUE(pool_->Info().read_only.empty());
  EXPECT_EQ(pool_->ListVolumes().size(), 1u);
  EXPECT_EQ(pool_->ListSnapshots().size(), 1u);
  vol = *pool_->OpenVolume(id);
  EXPECT_FALSE(vol->read_only());
  EXPECT_EQ(ReadAll(vol.get()), a);
  EXPECT_EQ(vol->size_bytes(), 8 * kChunk);
  ASSERT_TRUE(vol->Write(0, test::RandomBytes(kChunk, 7), false).ok());
  vol.reset();
  ExpectClean();
}

TEST_F(SnapshotTest, RandomOperationsMatchTheModel) {
  constexpr uint64_t kSize = 32 * kChunk;
  const char* seed_env = std::getenv("STRATA_SNAP_SEED");
  const char* steps_env = std::getenv("STRATA_SNAP_STEPS");
  const uint64_t seed = seed_env != nullptr ? std::strtoull(seed_env, nullptr, 10) : 12345;
  const int steps = steps_env != nullptr ? std::atoi(steps_env) : 600;
  SCOPED_TRACE("STRATA_SNAP_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Snap {
    std::string id, volume;
    std::vector<std::byte> bytes;
    std::set<uint64_t> written_since_prev;  // for diff checks against the previous snapshot
  };
  std::map<std::string, std::vector<std::byte>> volumes;  // id -> model bytes
  std::map<std::string, std::shared_ptr<Volume>> handles;
  std::vector<Snap> snaps;
  auto create = [&](const std::string& from) {
    auto info = pool_->CreateVolume(VolumeSpec{from.empty() ? kSize : 0, "", "gp3", from});
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    std::vector<std::byte> bytes(kSize);
    for (const Snap& s : snaps) {
      if (s.id == from) {
        bytes = s.bytes;
      }
    }
    volumes[info->volume_id] = bytes;
    handles[info->volume_id] = *pool_->OpenVolume(info->volume_id);
  };
  create("");
  for (int step = 0; step < steps; step++) {
    auto vit = std::next(volumes.begin(), static_cast<long>(rng() % volumes.size()));
    const std::string vid = vit->first;
    Volume* v = handles[vid].get();
    int op = static_cast<int>(rng() % 100);
    uint64_t off = rng() % kSize;
    uint64_t len = std::min<uint64_t>(kSize - off, 1 + rng() % (3 * kChunk));
    if (op < 45) {
      auto data = test::RandomBytes(len, rng());
      ASSERT_TRUE(v->Write(off, data, rng() % 4 == 0).ok());
      std::memcpy(vit->second.data() + off, data.data(), len);
    } else if (op < 55) {
      ASSERT_TRUE(v->Trim(off, len).ok());
      std::memset(vit->second.data() + off, 0, len);
    } else if (op < 70) {
      auto s = pool_->CreateSnapshot(vid, "");
      ASSERT_TRUE(s.ok());
      snaps.push_back(Snap{s->snapshot_id, vid, vit->second, {}});
    } else if (op < 80 && !snaps.empty()) {
      size_t i = rng() % snaps.size();
      ASSERT_TRUE(pool_->DeleteSnapshot(snaps[i].id).ok());
      snaps.erase(snaps.begin() + static_cast<long>(i));
    } else if (op < 85 && !snaps.empty() && volumes.size() < 6) {
      create(snaps[rng() % snaps.size()].id);
    } else if (op < 90 && volumes.size() > 1) {
      handles.erase(vid);
      ASSERT_TRUE(pool_->DeleteVolume(vid).ok());
      volumes.erase(vid);
    } else if (op < 93) {
      handles.clear();
      pool_.reset();
      Open();
      for (const auto& [id, bytes] : volumes) {
        handles[id] = *pool_->OpenVolume(id);
      }
    } else if (op < 97 && snaps.size() >= 2) {
      // Any two snapshots of one volume: every chunk whose bytes differ is listed.
      size_t i = rng() % snaps.size(), j = rng() % snaps.size();
      auto a = pool_->DescribeSnapshot(snaps[i].id), b = pool_->DescribeSnapshot(snaps[j].id);
      if (i != j && a->lineage == b->lineage) {
        if (a->epoch > b->epoch) {
          std::swap(i, j);
        }
        auto diff = pool_->ListChangedBlocks(snaps[i].id, snaps[j].id, kChunk, 0, 1000);
        ASSERT_TRUE(diff.ok());
        std::set<uint64_t> listed(diff->blocks.begin(), diff->blocks.end());
        for (uint64_t c = 0; c < kSize / kChunk; c++) {
          if (std::memcmp(snaps[i].bytes.data() + c * kChunk, snaps[j].bytes.data() + c * kChunk,
                          kChunk) != 0) {
            EXPECT_TRUE(listed.count(c)) << "chunk " << c << " differs but is not listed";
          }
        }
      }
    } else {
      ASSERT_TRUE(pool_->WaitForReclaim().ok());
    }
    if (step % 50 == 49) {
      for (const Snap& s : snaps) {
        auto h = pool_->OpenSnapshot(s.id);
        ASSERT_TRUE(h.ok());
        ASSERT_EQ(ReadAll(h->get()), s.bytes) << "snapshot " << s.id << " at step " << step;
      }
      for (const auto& [id, bytes] : volumes) {
        ASSERT_EQ(ReadAll(handles[id].get()), bytes) << "volume " << id << " at step " << step;
      }
      ExpectClean();
    }
  }
  handles.clear();
  for (const Snap& s : snaps) {
    ASSERT_TRUE(pool_->DeleteSnapshot(s.id).ok());
  }
  for (const auto& [id, bytes] : volumes) {
    ASSERT_TRUE(pool_->DeleteVolume(id).ok());
  }
  ExpectClean();
  EXPECT_EQ(pool_->Info().used_bytes, 0u);
  EXPECT_EQ(pool_->Info().reclaim_pending, 0u);
}

}  // namespace
}  // namespace strata
