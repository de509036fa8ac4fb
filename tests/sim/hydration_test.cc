// Lazy restores (include/strata/hydration.h) over a simulated bucket: fast to start, each block
// fetched once and checked, durable across a restart, EIO (never a hang, never wrong data) while
// the remote is down or a pack is damaged, writes during hydration kept. The same paths run
// against Ceph RGW in tests/integration/hydration_interop.sh.
#include "strata/hydration.h"

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "strata/pool.h"
#include "strata/remote.h"

#include "remote/remote_format.h"
#include "remote/remote_internal.h"
#include "sim/sim_object_store.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint64_t kBlock = 512 << 10;
constexpr uint64_t kSize = 40 * kBlock + 4096;  // a short last block

using Bytes = std::vector<std::byte>;

class HydrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.name = "sim";
    spec_.url = "s3://sim";
    for (auto* dir : {&a_, &b_}) {
      ASSERT_TRUE(Pool::Create(dir->path(), PoolOptions()).ok());
    }
    ASSERT_TRUE(AddRemote(b_.path(), spec_).ok());
    auto a = Pool::Open(a_.path(), PoolOptions());
    ASSERT_TRUE(a.ok());
    // A volume of random blocks, a few zero blocks and a repeated one; pushed from pool A.
    image_ = test::RandomBytes(kSize, 11);
    std::fill_n(image_.begin() + 5 * kBlock, 3 * kBlock, std::byte{0});
    std::copy_n(image_.begin(), kBlock, image_.begin() + 20 * kBlock);
    auto vol = (*a)->CreateVolume(VolumeSpec{kSize, "", "unlimited", ""});
    ASSERT_TRUE(vol.ok());
    ASSERT_TRUE((*(*a)->OpenVolume(vol->volume_id))->Write(0, image_, true).ok());
    auto snap = (*a)->CreateSnapshots({vol->volume_id}, "image");
    ASSERT_TRUE(snap.ok());
    snapshot_id_ = snap->front().snapshot_id;
    auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 1));
    ASSERT_TRUE(remote->PushSnapshot(a->get(), snapshot_id_, {}, {}, nullptr).ok());
    OpenB(/*background=*/true);
  }
  void TearDown() override { CloseB(); }

  void OpenB(bool background) {
    auto pool = Pool::Open(b_.path(), PoolOptions());
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    HydrationOptions options;
    options.background = background;
    options.fetch_attempts = 2;
    options.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_ += line + "\n";
    };
    auto h = remote::StartHydrationsWith(pool_.get(), options,
                                         [this](const RemoteSpec&, uint32_t, uint32_t) {
                                           return Result<std::unique_ptr<remote::ObjectStore>>(
                                               std::make_unique<test::SimObjectStore>(&bucket_, 2));
                                         });
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    hydrations_ = std::move(*h);
  }
  void CloseB() {
    hydrations_.reset();
    pool_.reset();
  }
  std::string Clone() {
    auto v = pool_->CreateVolume(VolumeSpec{0, "", "unlimited", snapshot_id_});
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v->volume_id;
  }
  uint64_t Gets() {
    std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
    return bucket_.gets;
  }
  uint64_t BytesServed() {
    std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
    return bucket_.get_bytes;
  }

  test::TempDir a_, b_;
  RemoteSpec spec_;
  test::SimBucket bucket_;
  Bytes image_;
  std::string snapshot_id_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<Hydrations> hydrations_;
  std::mutex log_mu_;
  std::string log_;
};

TEST_F(HydrationTest, VolumesAreUsableAtOnceAndEveryBlockArrivesOnce) {
  auto begun = hydrations_->Begin(spec_, snapshot_id_, 0);  // on demand only
  ASSERT_TRUE(begun.ok()) << begun.status().ToString();
  EXPECT_EQ(begun->snapshot_id, snapshot_id_);
  auto v = *pool_->OpenVolume(Clone());
  Bytes got(4096);
  ASSERT_TRUE(v->Read(30 * kBlock + 12345, got).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), image_.begin() + 30 * kBlock + 12345));
  auto st = hydrations_->StatusOf(v->id());
  ASSERT_TRUE(st.has_value());
  EXPECT_FALSE(st->complete);
  EXPECT_GT(st->fetched_blocks, 0u);
  EXPECT_LT(st->progress, 1.0);
  // Three clones read everything: the bucket is read about once.
  const uint64_t before = bucket_.get_bytes;
  for (int i = 0; i < 3; i++) {
    Bytes all(kSize);
    auto clone = *pool_->OpenVolume(Clone());
    ASSERT_TRUE(clone->Read(0, all).ok());
    ASSERT_TRUE(all == image_);
  }
  EXPECT_LT(bucket_.get_bytes - before, kSize + kSize / 4) << "blocks fetched more than once";
  EXPECT_TRUE(hydrations_->Wait(snapshot_id_, 5000, nullptr).ok());
  EXPECT_FALSE(hydrations_->StatusOf(snapshot_id_).has_value() &&
               !hydrations_->StatusOf(snapshot_id_)->complete);
}

// An incremental push over many leaves of the block tree (depth 1): more leaves change than go
// in one round (Bucket::kMaxNodesAtOnce), one leaf is left empty and one is new. Every block
// restores as the second snapshot holds it, and the tree's rounds are few (one GET and one
// PUT round per 32 leaves; a round trip per leaf was ~80 rounds here).
TEST_F(HydrationTest, AnIncrementalPushRewritesManyLeavesInFewRounds) {
  constexpr uint64_t kLeafBlocks = 1024;
  constexpr uint64_t kLeaves = 40;
  const uint64_t size = (kLeaves + 1) * kLeafBlocks * kBlock;  // 20.5 GiB, sparse
  auto a = Pool::Open(a_.path(), PoolOptions());
  ASSERT_TRUE(a.ok());
  auto vol = (*a)->CreateVolume(VolumeSpec{size, "", "unlimited", ""});
  ASSERT_TRUE(vol.ok());
  auto v = *(*a)->OpenVolume(vol->volume_id);
  std::map<uint64_t, Bytes> want;  // block -> what the second snapshot holds there
  auto write = [&](uint64_t block, uint64_t seed) {
    want[block] = test::RandomBytes(kBlock, seed);
    ASSERT_TRUE(v->Write(block * kBlock, want[block], true).ok());
  };
  write(7, 500);
  for (uint64_t leaf = 0; leaf < kLeaves; leaf++) {
    write(leaf * kLeafBlocks + 5, 600 + leaf);
  }
  auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 1));
  auto first = (*a)->CreateSnapshots({vol->volume_id}, "first");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(remote->PushSnapshot(a->get(), first->front().snapshot_id, {}, {}, nullptr).ok());
  for (uint64_t leaf = 0; leaf < 36; leaf++) {  // two rounds of leaves
    write(leaf * kLeafBlocks + 5, 700 + leaf);
  }
  const uint64_t emptied = (kLeaves - 1) * kLeafBlocks + 5;
  ASSERT_TRUE(v->Trim(emptied * kBlock, kBlock).ok());
  want[emptied] = Bytes(kBlock);
  write(kLeaves * kLeafBlocks + 1, 800);  // a leaf the first snapshot has not
  auto second = (*a)->CreateSnapshots({vol->volume_id}, "second");
  ASSERT_TRUE(second.ok());
  const uint64_t runs_before = bucket_.runs;
  auto pushed = remote->PushSnapshot(a->get(), second->front().snapshot_id, {}, {}, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(pushed->blocks_uploaded, 37u);
  EXPECT_LT(bucket_.runs - runs_before, 30u) << "the tree's nodes went one round trip each";
  EXPECT_EQ(pushed->snapshot.data_blocks, want.size() - 1) << "the emptied block is a hole";

  auto restored = remote->RestoreVolume(pool_.get(), second->front().snapshot_id,
                                        VolumeSpec{0, "", "unlimited", ""}, {}, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(restored->volume.size_bytes, size);
  auto got_volume = *pool_->OpenVolume(restored->volume.volume_id);
  for (const auto& [block, bytes] : want) {
    Bytes got(kBlock);
    ASSERT_TRUE(got_volume->Read(block * kBlock, got).ok());
    EXPECT_TRUE(got == bytes) << "block " << block;
  }
  EXPECT_EQ(restored->blocks, want.size() - 1) << "the emptied block is a hole";
}

// A snapshot past one leaf of the block tree (1,024 blocks, 512 MiB) and past one level of it
// (512 GiB, sparse): each block read lazily is its own, not another leaf's.
TEST_F(HydrationTest, BlocksBeyondTheFirstLeafAndLevelAreTheirOwn) {
  constexpr uint64_t kLeafBlocks = 1024;
  const std::vector<uint64_t> blocks = {3, kLeafBlocks + 3, 2 * kLeafBlocks + 1,
                                        kLeafBlocks * kLeafBlocks + 3};
  const uint64_t size = (kLeafBlocks * kLeafBlocks + 8) * kBlock;
  std::string big;
  {
    auto a = Pool::Open(a_.path(), PoolOptions());
    ASSERT_TRUE(a.ok());
    auto vol = (*a)->CreateVolume(VolumeSpec{size, "", "unlimited", ""});
    ASSERT_TRUE(vol.ok());
    auto v = *(*a)->OpenVolume(vol->volume_id);
    for (size_t i = 0; i < blocks.size(); i++) {
      ASSERT_TRUE(v->Write(blocks[i] * kBlock, test::RandomBytes(kBlock, 40 + i), true).ok());
    }
    auto snap = (*a)->CreateSnapshots({vol->volume_id}, "big");
    ASSERT_TRUE(snap.ok());
    big = snap->front().snapshot_id;
    auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 1));
    ASSERT_TRUE(remote->PushSnapshot(a->get(), big, {}, {}, nullptr).ok());
  }
  ASSERT_TRUE(hydrations_->Begin(spec_, big, 0).ok());  // on demand only
  auto clone = pool_->CreateVolume(VolumeSpec{0, "", "unlimited", big});
  ASSERT_TRUE(clone.ok());
  auto v = *pool_->OpenVolume(clone->volume_id);
  for (size_t i = 0; i < blocks.size(); i++) {
    Bytes got(kBlock);
    ASSERT_TRUE(v->Read(blocks[i] * kBlock, got).ok());
    EXPECT_TRUE(got == test::RandomBytes(kBlock, 40 + i)) << "block " << blocks[i];
    ASSERT_TRUE(v->Read((blocks[i] + 1) * kBlock, got).ok());
    EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](std::byte b) { return b == std::byte{0}; }))
        << "block " << blocks[i] + 1 << " is a hole";
  }
  // The eager restore walks the same tree.
  auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 3));
  auto restored =
      remote->RestoreVolume(pool_.get(), big, VolumeSpec{0, "", "unlimited", ""}, {}, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  auto eager = *pool_->OpenVolume(restored->volume.volume_id);
  for (size_t i = 0; i < blocks.size(); i++) {
    Bytes got(kBlock);
    ASSERT_TRUE(eager->Read(blocks[i] * kBlock, got).ok());
    EXPECT_TRUE(got == test::RandomBytes(kBlock, 40 + i)) << "block " << blocks[i];
  }
}

TEST_F(HydrationTest, BackgroundFinishesAndWritesDuringItStay) {
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, -1).ok());
  const std::string id = Clone();
  auto v = *pool_->OpenVolume(id);
  Bytes mine = test::RandomBytes(10000, 12);
  ASSERT_TRUE(v->Write(33 * kBlock + 777, mine, false).ok());
  ASSERT_TRUE(v->Trim(10 * kBlock, kBlock).ok());
  auto snap = pool_->CreateSnapshots({id}, "during");
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(hydrations_->Wait(snapshot_id_, 5000, nullptr).ok());
  Bytes want = image_;
  std::copy(mine.begin(), mine.end(), want.begin() + 33 * kBlock + 777);
  std::fill_n(want.begin() + 10 * kBlock, kBlock, std::byte{0});
  Bytes all(kSize);
  ASSERT_TRUE(v->Read(0, all).ok());
  EXPECT_TRUE(all == want);
  ASSERT_TRUE((*pool_->OpenSnapshot(snap->front().snapshot_id))->Read(0, all).ok());
  EXPECT_TRUE(all == want);
  EXPECT_TRUE(pool_->ListSnapshotBlocks(snap->front().snapshot_id, kBlock, 0, 100).ok());
  EXPECT_TRUE(hydrations_->StatusOf(id)->complete);
  CloseB();
  OpenB(/*background=*/true);
  EXPECT_EQ(pool_->SourceOf(id), nullptr);  // complete: nothing to resume
}

// The background pass fetches blocks that lie side by side in a pack with one range GET: the
// push wrote them in volume order, so 37 data blocks take a few GETs (plus manifest and nodes),
// not 37, and every byte is right.
TEST_F(HydrationTest, AdjacentBlocksOfAPackComeInOneGet) {
  CloseB();
  OpenB(/*background=*/true);
  const uint64_t gets_before = Gets();
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, -1).ok());
  ASSERT_TRUE(hydrations_->Wait(snapshot_id_, 5000, nullptr).ok());
  EXPECT_LE(Gets() - gets_before, 12u) << "blocks of one pack were fetched one GET each";
  Bytes all(kSize);
  ASSERT_TRUE((*pool_->OpenVolume(Clone()))->Read(0, all).ok());
  EXPECT_TRUE(all == image_);
}

// Blocks that compress to almost nothing (one non-zero byte each) still fill packs of a bounded
// count (RemoteTuning::pack_max_blocks, kMaxPackBlocks by default): 32 MiB of them, uncapped,
// had an index past what any reader takes. Every block restores.
TEST_F(HydrationTest, APackHoldsABoundedNumberOfBlocks) {
  constexpr uint64_t kBlocks = 24;
  auto a = Pool::Open(a_.path(), PoolOptions());
  ASSERT_TRUE(a.ok());
  auto vol = (*a)->CreateVolume(VolumeSpec{kBlocks * kBlock, "", "unlimited", ""});
  ASSERT_TRUE(vol.ok());
  Bytes image(kBlocks * kBlock);
  for (uint64_t i = 0; i < kBlocks; i++) {
    image[i * kBlock + i * 4099] = std::byte{static_cast<uint8_t>(i + 1)};
  }
  ASSERT_TRUE((*(*a)->OpenVolume(vol->volume_id))->Write(0, image, true).ok());
  auto snap = (*a)->CreateSnapshots({vol->volume_id}, "sparse bytes");
  ASSERT_TRUE(snap.ok());
  std::set<std::string> keys_before;
  for (const auto& [key, bytes] : bucket_.objects) {
    keys_before.insert(key);
  }
  remote::RemoteTuning tuning;
  tuning.pack_max_blocks = 5;
  auto remote =
      remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 1), tuning);
  auto pushed = remote->PushSnapshot(a->get(), snap->front().snapshot_id, {}, {}, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(pushed->blocks_uploaded, kBlocks);
  uint64_t packs = 0, blocks = 0;
  for (const auto& [key, bytes] : bucket_.objects) {
    if (key.starts_with(remote::kIndexPrefix) && !keys_before.contains(key)) {
      auto entries = remote::DecodeIndex(bytes, key);
      ASSERT_TRUE(entries.ok()) << entries.status().ToString();
      EXPECT_LE(entries->size(), 5u) << key;
      packs++;
      blocks += entries->size();
    }
  }
  EXPECT_EQ(packs, (kBlocks + 4) / 5);
  EXPECT_EQ(blocks, kBlocks);
  auto restored = remote->RestoreVolume(pool_.get(), snap->front().snapshot_id,
                                        VolumeSpec{0, "", "unlimited", ""}, {}, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  Bytes got(kBlocks * kBlock);
  ASSERT_TRUE((*pool_->OpenVolume(restored->volume.volume_id))->Read(0, got).ok());
  EXPECT_TRUE(got == image);
}

// A cold 4 KiB read fetches the 64 KiB piece it falls in (and its pack's index, once), not the
// whole 512 KiB block: random reads of a large volume pay for what they read. Another piece of
// the same pack then costs one GET, and the data is right.
TEST_F(HydrationTest, AColdSmallReadFetchesOnlyItsPiece) {
  CloseB();
  OpenB(/*background=*/false);
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, 0).ok());
  auto v = *pool_->OpenVolume(Clone());
  const uint64_t bytes_before = bucket_.get_bytes;
  Bytes got(4096);
  ASSERT_TRUE(v->Read(30 * kBlock + 3 * remote::kPieceBytes + 100, got).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(),
                         image_.begin() + 30 * kBlock + 3 * remote::kPieceBytes + 100));
  // The piece (64 KiB of random data), the pack's index (~12 KiB) and the leaf (~4 KiB).
  EXPECT_LT(bucket_.get_bytes - bytes_before, 100u << 10) << "more than the piece was fetched";
  // (Another worker may take this read, with its own reader: then the leaf, ~4 KiB, again.)
  const uint64_t again_before = bucket_.get_bytes;
  ASSERT_TRUE(v->Read(31 * kBlock + 6 * remote::kPieceBytes, got).ok());
  EXPECT_TRUE(
      std::equal(got.begin(), got.end(), image_.begin() + 31 * kBlock + 6 * remote::kPieceBytes));
  EXPECT_LT(bucket_.get_bytes - again_before, (64u + 8u) << 10)
      << "the pack's index (~12 KiB) was fetched again";
  // The rest of the block arrives when read, and every byte of it is right.
  Bytes block(kBlock);
  ASSERT_TRUE(v->Read(30 * kBlock, block).ok());
  EXPECT_TRUE(std::equal(block.begin(), block.end(), image_.begin() + 30 * kBlock));
  auto st = hydrations_->StatusOf(snapshot_id_);
  ASSERT_TRUE(st.has_value());
  EXPECT_GT(st->progress, 0.0);
  EXPECT_LT(st->progress, 0.1);
}

// Read-ahead is for readers that go on where they stopped: one whose next miss begins where its
// last ended gets the rest of the block and 8 blocks more in the same batch; a random read next
// to data that happens to be here gets only its piece; a bulk read (more than a piece) the rest
// of its block.
TEST_F(HydrationTest, ReadAheadFollowsSequentialReadersOnly) {
  CloseB();
  OpenB(/*background=*/false);
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, 0).ok());
  auto v = *pool_->OpenVolume(Clone());
  Bytes block(kBlock), got(4096);
  ASSERT_TRUE(v->Read(10 * kBlock, block).ok());  // block 10 is here now
  uint64_t before = bucket_.get_bytes;
  ASSERT_TRUE(v->Read(11 * kBlock + 3 * remote::kPieceBytes, got).ok());
  EXPECT_LT(bucket_.get_bytes - before, 80u << 10) << "a random read paid for read-ahead";
  // A miss of more than one unit (a 128 KiB read) brings the rest of its block.
  Bytes bulk(2 * remote::kPieceBytes);
  ASSERT_TRUE(v->Read(14 * kBlock + remote::kPieceBytes, bulk).ok());
  before = Gets();
  ASSERT_TRUE(v->Read(14 * kBlock, block).ok());
  EXPECT_EQ(Gets(), before) << "a bulk miss did not bring the rest of its block";
  EXPECT_TRUE(std::equal(block.begin(), block.end(), image_.begin() + 14 * kBlock));
  // Sequential: 4 KiB at the start of block 21, then the next piece.
  ASSERT_TRUE(v->Read(21 * kBlock, got).ok());
  ASSERT_TRUE(v->Read(21 * kBlock + remote::kPieceBytes, got).ok());
  EXPECT_TRUE(
      std::equal(got.begin(), got.end(), image_.begin() + 21 * kBlock + remote::kPieceBytes));
  before = Gets();
  ASSERT_TRUE(v->Read(25 * kBlock, block).ok());  // within the read-ahead: here already
  EXPECT_EQ(Gets(), before) << "a sequential reader got no read-ahead";
  EXPECT_TRUE(std::equal(block.begin(), block.end(), image_.begin() + 25 * kBlock));
}

// A pack index someone else rewrote, self-consistent (its trailer recomputed) but with a piece
// hash that is not the block's: a read that needs that piece alone fails with EIO naming the
// index, and never returns its bytes; the whole block, checked against its name piece by piece,
// still restores.
TEST_F(HydrationTest, AHostilePieceTableIsEioNeverWrongData) {
  {
    std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
    for (auto& [key, bytes] : bucket_.objects) {
      if (key.starts_with("index/")) {
        auto entries = remote::DecodeIndex(bytes, key);
        ASSERT_TRUE(entries.ok());
        for (remote::IndexEntry& e : *entries) {
          e.pieces.sha256[2][0] ^= 1;
        }
        bytes = remote::EncodeIndex(*entries);
      }
    }
  }
  CloseB();
  OpenB(/*background=*/false);
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, 0).ok());
  auto v = *pool_->OpenVolume(Clone());
  Bytes got(4096);
  Status s = v->Read(12 * kBlock + 2 * remote::kPieceBytes, got);
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    EXPECT_NE(log_.find("does not match its name"), std::string::npos) << log_;
  }
  Bytes block(kBlock);
  ASSERT_TRUE(v->Read(12 * kBlock, block).ok());
  EXPECT_TRUE(std::equal(block.begin(), block.end(), image_.begin() + 12 * kBlock));
}

// A bucket written before blocks were pieced (format version 1: whole blocks) restores lazily
// as it did: a small read fetches its whole block, and the rest of the block is then here.
TEST_F(HydrationTest, WholeBlocksOfOlderBucketsRestoreLazily) {
  CloseB();
  {
    std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
    bucket_.objects.clear();
  }
  {
    auto a = Pool::Open(a_.path(), PoolOptions());
    ASSERT_TRUE(a.ok());
    remote::RemoteTuning whole;
    whole.pieced_blocks = false;
    auto remote =
        remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 1), whole);
    ASSERT_TRUE(remote->PushSnapshot(a->get(), snapshot_id_, {}, {}, nullptr).ok());
  }
  OpenB(/*background=*/false);
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, 0).ok());
  auto v = *pool_->OpenVolume(Clone());
  Bytes got(4096);
  ASSERT_TRUE(v->Read(7 * kBlock + 100, got).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), image_.begin() + 7 * kBlock + 100));
  const uint64_t gets_before = Gets();
  Bytes block(kBlock);
  ASSERT_TRUE(v->Read(7 * kBlock, block).ok());
  EXPECT_TRUE(std::equal(block.begin(), block.end(), image_.begin() + 7 * kBlock));
  EXPECT_EQ(Gets(), gets_before) << "the whole block had come with the first read";
  Bytes all(kSize);
  ASSERT_TRUE(v->Read(0, all).ok());
  EXPECT_TRUE(all == image_);
}

TEST_F(HydrationTest, ARestartResumesAndFetchesNothingTwice) {
  CloseB();
  OpenB(/*background=*/false);
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, -1).ok());
  const std::string id = Clone();
  Bytes first(8 * kBlock);
  ASSERT_TRUE((*pool_->OpenVolume(id))->Read(0, first).ok());
  CloseB();  // as a kill would, after the fetched blocks were flushed
  const uint64_t gets_before = Gets();
  OpenB(/*background=*/false);
  ASSERT_TRUE((*pool_->OpenVolume(id))->Read(0, first).ok());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), image_.begin()));
  EXPECT_LE(Gets() - gets_before, 3u)
      << "blocks already here were fetched again";  // manifest, nodes
  CloseB();
  OpenB(/*background=*/true);  // the background pass resumes by itself
  ASSERT_TRUE(hydrations_->Wait(snapshot_id_, 5000, nullptr).ok());
  Bytes all(kSize);
  ASSERT_TRUE((*pool_->OpenVolume(id))->Read(0, all).ok());
  EXPECT_TRUE(all == image_);
}

TEST_F(HydrationTest, RemoteDownMeansEioForMissingBlocksAndResumesWhenBack) {
  CloseB();
  OpenB(/*background=*/false);
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, -1).ok());
  auto v = *pool_->OpenVolume(Clone());
  Bytes here(kBlock);
  ASSERT_TRUE(v->Read(0, here).ok());
  {
    std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
    bucket_.down = true;
  }
  const auto start = std::chrono::steady_clock::now();
  Bytes missing(kBlock);
  Status s = v->Read(35 * kBlock, missing);
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  EXPECT_EQ(s.sys_errno(), EIO);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_TRUE(v->Read(0, here).ok());  // what arrived is served
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    EXPECT_NE(log_.find("connection refused"), std::string::npos) << log_;
  }
  {
    std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
    bucket_.down = false;
  }
  ASSERT_TRUE(v->Read(35 * kBlock, missing).ok());
  EXPECT_TRUE(std::equal(missing.begin(), missing.end(), image_.begin() + 35 * kBlock));
}

TEST_F(HydrationTest, ADamagedPackIsEioNamingItNeverWrongData) {
  {
    std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
    for (auto& [key, bytes] : bucket_.objects) {
      if (key.starts_with("packs/")) {
        bytes[bytes.size() / 2] ^= 0x40;
      }
    }
  }
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, 0).ok());
  auto v = *pool_->OpenVolume(Clone());
  Bytes all(kSize);
  Status s = v->Read(0, all);
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  std::lock_guard<std::mutex> lock(log_mu_);
  EXPECT_NE(log_.find("packs/"), std::string::npos) << log_;
  EXPECT_NE(log_.find("damaged"), std::string::npos) << log_;
}

// A snapshot someone else wrote into the bucket can be self-consistent (every id the SHA-256 of
// its object, every trailer right) and still claim blocks of 4 GiB. The lazy and the eager path
// both refuse it at the ref, before anything is sized by it: before the bound, the lazy path
// allocated every claim (32 of them: bad_alloc, and the server died again at each restart).
TEST_F(HydrationTest, ASelfConsistentSnapshotClaimingHugeBlocksIsRefusedNotAllocated) {
  {
    std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
    std::string& manifest = bucket_.objects.at(remote::ManifestKey(snapshot_id_));
    const std::string line = manifest.substr(0, manifest.find('\n'));
    nlohmann::json m = nlohmann::json::parse(line);
    remote::Hash root;
    ASSERT_TRUE(remote::ParseHex(m["root"].get<std::string>(), &root));
    ASSERT_EQ(m["depth"].get<int>(), 0);  // the root is the one leaf
    const std::string& leaf_bytes = bucket_.objects.at(remote::NodeKey(root));
    // (decoded by hand: the decoder refuses what this test writes, as it should)
    remote::Node leaf;
    auto decoded = remote::DecodeNode(leaf_bytes, "leaf");
    ASSERT_TRUE(decoded.ok());
    leaf = *decoded;
    for (auto& [slot, ref] : leaf.blocks) {
      ref.raw = 0xFFFFFFFFu;  // 4 GiB, with the stored length, checksums and ids untouched
    }
    const std::string hostile = remote::EncodeNode(leaf);
    const remote::Hash id = remote::Sha256(hostile.data(), hostile.size());
    bucket_.objects[remote::NodeKey(id)] = hostile;
    m["root"] = remote::HexOf(id);
    const std::string new_line = m.dump();
    manifest =
        new_line + "\n" + remote::HexOf(remote::Sha256(new_line.data(), new_line.size())) + "\n";
  }
  // Lazy: the reads fail with EIO and say why; the process lives and serves what it has.
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, 0).ok());
  auto v = *pool_->OpenVolume(Clone());
  Bytes all(kSize);
  Status s = v->Read(0, all);
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    EXPECT_NE(log_.find("out of bounds"), std::string::npos) << log_;
  }
  // Eager: Corruption, and nothing half-restored is left.
  auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 5));
  const size_t volumes = pool_->ListVolumes().size();
  auto restored = remote->RestoreVolume(pool_.get(), snapshot_id_,
                                        VolumeSpec{0, "", "unlimited", ""}, {}, nullptr);
  EXPECT_EQ(restored.status().code(), Status::Code::kCorruption) << restored.status().ToString();
  EXPECT_NE(restored.status().ToString().find("out of bounds"), std::string::npos);
  EXPECT_EQ(pool_->ListVolumes().size(), volumes);
}

// A restore under way keeps what it needs in the remote (its marker) even when the snapshot
// is deleted there meanwhile; once it completes, a GC frees everything.
TEST_F(HydrationTest, ADeleteInTheRemoteDoesNotBreakARestoreUnderWay) {
  CloseB();
  OpenB(/*background=*/false);
  ASSERT_TRUE(hydrations_->Begin(spec_, snapshot_id_, -1).ok());
  auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 3));
  auto gc = remote->DeleteSnapshot(snapshot_id_);
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_EQ(gc->packs_deleted, 0u);
  CloseB();
  OpenB(/*background=*/true);  // and a restart: the record holds the manifest
  ASSERT_TRUE(hydrations_->Wait(snapshot_id_, 5000, nullptr).ok());
  Bytes all(kSize);
  ASSERT_TRUE((*pool_->OpenVolume(Clone()))->Read(0, all).ok());
  EXPECT_TRUE(all == image_);
  auto freed = remote->CollectGarbage();
  ASSERT_TRUE(freed.ok()) << freed.status().ToString();
  EXPECT_GT(freed->packs_deleted, 0u);
  std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
  EXPECT_TRUE(bucket_.objects.empty()) << bucket_.objects.begin()->first;
}

// An incremental push of 4 KiB changes sends the changed 64 KiB pieces, not their 512 KiB
// blocks: the other pieces are borrowed where the parent's blocks have them (spanning blocks).
// Every reader follows them: lazy pieces, lazy whole blocks, the eager restore; and a GC after
// the parent is deleted keeps the packs they borrow from, until the child goes too.
// Pushes a child of the fixture's snapshot in which a piece in the middle of blocks 2, 13 and
// 33 changed (spanning blocks: each borrows its other seven pieces); `want` is its image.
void PushChangedChild(const std::string& dir, const RemoteSpec& spec, test::SimBucket* bucket,
                      const std::string& parent_id, Bytes* want, std::string* child) {
  auto a = Pool::Open(dir, PoolOptions());
  ASSERT_TRUE(a.ok());
  auto parent = (*a)->DescribeSnapshot(parent_id);
  ASSERT_TRUE(parent.ok());
  auto v = *(*a)->OpenVolume(parent->volume_id);
  for (uint64_t block : {2, 13, 33}) {
    const Bytes mine = test::RandomBytes(4096, 70 + block);
    const uint64_t at = block * kBlock + 3 * (64 << 10) + 8192;
    ASSERT_TRUE(v->Write(at, mine, true).ok());
    std::copy(mine.begin(), mine.end(), want->begin() + static_cast<ptrdiff_t>(at));
  }
  auto snap = (*a)->CreateSnapshots({parent->volume_id}, "child");
  ASSERT_TRUE(snap.ok());
  *child = snap->front().snapshot_id;
  auto remote = remote::OpenRemoteOn(spec, std::make_unique<test::SimObjectStore>(bucket, 1));
  auto pushed = remote->PushSnapshot(a->get(), *child, {}, {}, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(pushed->blocks_uploaded, 3u);
  EXPECT_EQ(pushed->pieces_borrowed, 3u * 7);
  // Three pieces of random bytes, the index, one leaf and the manifest; whole blocks were 1.5
  // MiB.
  EXPECT_LT(pushed->bytes_uploaded, 3u * (64 << 10) + (32 << 10));
}

TEST_F(HydrationTest, AnIncrementalPushSendsChangedPiecesAndReadersFollowThem) {
  std::string child;
  Bytes want = image_;
  ASSERT_NO_FATAL_FAILURE(
      PushChangedChild(a_.path(), spec_, &bucket_, snapshot_id_, &want, &child));
  ASSERT_TRUE(hydrations_->Begin(spec_, child, 0).ok());  // on demand only
  auto clone = pool_->CreateVolume(VolumeSpec{0, "", "unlimited", child});
  ASSERT_TRUE(clone.ok());
  auto v = *pool_->OpenVolume(clone->volume_id);
  for (uint64_t at : {2 * kBlock + 100 * 1024, 13 * kBlock + 3 * (64 << 10) + 8192,
                      33 * kBlock + 7 * (64 << 10)}) {  // borrowed, own, borrowed (last piece)
    Bytes got(4096);
    ASSERT_TRUE(v->Read(at, got).ok());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin() + static_cast<ptrdiff_t>(at)))
        << at;
  }
  // A reader of the whole of block 33: its pack's index, then its borrowed pieces on both sides
  // of the changed one with one GET (across the parent's old version of that piece), and its
  // own piece with another.
  {
    auto reader = remote::SnapshotReader::OpenOn(
        "sim", std::make_unique<test::SimObjectStore>(&bucket_, 4), child);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    auto leaf = (*reader)->Leaf(0);
    ASSERT_TRUE(leaf.ok());
    auto ref =
        std::find_if(leaf->begin(), leaf->end(), [](const auto& r) { return r.first == 33; });
    ASSERT_NE(ref, leaf->end());
    EXPECT_TRUE(remote::Spans(ref->second));
    Bytes block(kBlock);
    std::vector<Status> status;
    const uint64_t gets_before = Gets();
    (*reader)->Fetch({*ref}, {std::span<std::byte>(block)}, &status);
    ASSERT_TRUE(status.at(0).ok()) << status[0].ToString();
    EXPECT_TRUE(std::equal(block.begin(), block.end(), want.begin() + 33 * kBlock));
    EXPECT_EQ(Gets() - gets_before, 3u);
    // With the whole blocks beside it (32 and 34, in the parent's pack on either side of the
    // parent's block 33): the parent's pack is one GET from block 32 to 34, the changed piece
    // another (the index is read already); not two GETs for the whole blocks and two for 33.
    auto next =
        std::find_if(leaf->begin(), leaf->end(), [](const auto& r) { return r.first == 34; });
    ASSERT_TRUE(ref != leaf->begin() && next != leaf->end());
    ASSERT_EQ(std::prev(ref)->first, 32u);
    ASSERT_EQ(std::prev(ref)->second.pack, next->second.pack);
    Bytes three(3 * kBlock);
    std::vector<std::span<std::byte>> outs;
    for (size_t k = 0; k < 3; k++) {
      outs.emplace_back(three.data() + k * kBlock, kBlock);
    }
    const uint64_t gets_three = Gets();
    (*reader)->Fetch({*std::prev(ref), *ref, *next}, outs, &status);
    for (const Status& s : status) {
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    EXPECT_TRUE(std::equal(three.begin(), three.end(), want.begin() + 32 * kBlock));
    EXPECT_EQ(Gets() - gets_three, 2u);
  }
  Bytes all(kSize);
  ASSERT_TRUE(v->Read(0, all).ok());  // whole blocks, the spanning ones piece by piece
  EXPECT_TRUE(all == want);
  auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 3));
  auto restore_child = [&]() {
    auto restored =
        remote->RestoreVolume(pool_.get(), child, VolumeSpec{0, "", "unlimited", ""}, {}, nullptr);
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    Bytes eager(kSize);
    ASSERT_TRUE((*pool_->OpenVolume(restored->volume.volume_id))->Read(0, eager).ok());
    EXPECT_TRUE(eager == want);
    ASSERT_TRUE(pool_->DeleteVolume(restored->volume.volume_id).ok());
  };
  restore_child();
  EXPECT_TRUE(hydrations_->Wait(child, 5000, nullptr).ok());
}

// What a restore says it fetched is what its GETs brought: a spanning block's borrowed pieces
// count, not only the bytes stored in its own pack (which a whole-block count would take).
TEST_F(HydrationTest, BytesFetchedCountWhatASpanningBlockBrings) {
  std::string child;
  Bytes want = image_;
  ASSERT_NO_FATAL_FAILURE(
      PushChangedChild(a_.path(), spec_, &bucket_, snapshot_id_, &want, &child));
  const uint64_t served_before = BytesServed();
  ASSERT_TRUE(hydrations_->Begin(spec_, child, -1).ok());  // the background pass, unlimited
  ASSERT_TRUE(hydrations_->Wait(child, 10000, nullptr).ok());
  auto st = hydrations_->StatusOf(child);
  ASSERT_TRUE(st.has_value());
  // 36 blocks of random bytes hold data (3 are zeros, 1 repeats another) and arrive whole,
  // stored at least at their size; the three spanning ones' borrowed pieces are 2.6 of them.
  EXPECT_GE(st->bytes_fetched, 36 * kBlock);
  EXPECT_LE(st->bytes_fetched, BytesServed() - served_before);  // with indexes, tree, manifest
  auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 3));
  auto restored =
      remote->RestoreVolume(pool_.get(), child, VolumeSpec{0, "", "unlimited", ""}, {}, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_GE(restored->bytes_downloaded, 36 * kBlock);
}

// A GC after the parent is deleted keeps the packs a child's spanning blocks borrow from, even
// when the child references no whole block there (every block of the parent changed); they go
// with the child.
TEST_F(HydrationTest, PacksBorrowedFromOutliveTheirSnapshot) {
  auto a = Pool::Open(a_.path(), PoolOptions());
  ASSERT_TRUE(a.ok());
  auto vol = (*a)->CreateVolume(VolumeSpec{2 * kBlock, "", "unlimited", ""});
  ASSERT_TRUE(vol.ok());
  auto v = *(*a)->OpenVolume(vol->volume_id);
  Bytes want = test::RandomBytes(2 * kBlock, 80);
  ASSERT_TRUE(v->Write(0, want, true).ok());
  auto remote = remote::OpenRemoteOn(spec_, std::make_unique<test::SimObjectStore>(&bucket_, 1));
  std::vector<std::string> snaps;
  for (int round = 0; round < 2; round++) {
    if (round == 1) {
      for (uint64_t block : {0, 1}) {
        const Bytes mine = test::RandomBytes(4096, 90 + block);
        ASSERT_TRUE(v->Write(block * kBlock + 4096, mine, true).ok());
        std::copy(mine.begin(), mine.end(), want.begin() + block * kBlock + 4096);
      }
    }
    auto snap = (*a)->CreateSnapshots({vol->volume_id}, "round");
    ASSERT_TRUE(snap.ok());
    snaps.push_back(snap->front().snapshot_id);
    auto pushed = remote->PushSnapshot(a->get(), snaps.back(), {}, {}, nullptr);
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
    EXPECT_EQ(pushed->pieces_borrowed, round == 0 ? 0u : 2u * 7);
  }
  ASSERT_TRUE(remote->DeleteSnapshot(snapshot_id_).ok());  // the fixture's: other packs
  auto gc = remote->DeleteSnapshot(snaps[0]);
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_EQ(gc->packs_deleted, 0u) << "a pack the child borrows from went with its snapshot";
  auto restored =
      remote->RestoreVolume(pool_.get(), snaps[1], VolumeSpec{0, "", "unlimited", ""}, {}, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  Bytes got(2 * kBlock);
  ASSERT_TRUE((*pool_->OpenVolume(restored->volume.volume_id))->Read(0, got).ok());
  EXPECT_TRUE(got == want);
  gc = remote->DeleteSnapshot(snaps[1]);
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_EQ(gc->packs_deleted, 2u);  // the child's, and the parent's it borrowed from
  std::lock_guard<std::recursive_mutex> lock(bucket_.mu);
  EXPECT_TRUE(bucket_.objects.empty()) << bucket_.objects.begin()->first;
}

// A damaged POOL/hydrations.json (a field of the wrong type) is a clear error at start, never an
// exception, and never silently dropped (the restores it lists would read as zeros).
TEST_F(HydrationTest, ADamagedRecordFileIsAClearError) {
  CloseB();
  {
    std::ofstream out(b_.path() + "/hydrations.json");
    out << R"({"hydrations": [{"snapshot_id": "snap-0123456789abcdef0", "remote": "sim",)"
        << R"( "rate_mibps": "fast", "data_blocks": 1, "volume_bytes": 1, "manifest": "",)"
        << R"( "marker": "", "tree": ""}]})";
  }
  auto pool = Pool::Open(b_.path(), PoolOptions());
  ASSERT_TRUE(pool.ok());
  auto h = remote::StartHydrationsWith(
      pool->get(), HydrationOptions(), [](const RemoteSpec&, uint32_t, uint32_t) {
        return Result<std::unique_ptr<remote::ObjectStore>>(Status::NotFound("unused"));
      });
  EXPECT_EQ(h.status().code(), Status::Code::kCorruption) << h.status().ToString();
  EXPECT_NE(h.status().message().find("hydrations.json"), std::string::npos);
}

TEST_F(HydrationTest, AMissingRemoteSnapshotIsAClearErrorAndLeavesNothing) {
  auto begun = hydrations_->Begin(spec_, "snap-0123456789abcdef0", -1);
  EXPECT_EQ(begun.status().code(), Status::Code::kNotFound) << begun.status().ToString();
  EXPECT_TRUE(pool_->ListSnapshots().empty());
  EXPECT_TRUE(hydrations_->List().empty());
}

}  // namespace
}  // namespace strata
