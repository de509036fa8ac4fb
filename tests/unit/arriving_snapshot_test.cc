// Snapshots still arriving (Pool::FillSnapshot, AttachBlockSource): a clone of an empty snapshot
// whose blocks a BlockSource supplies on first touch reads, writes and snapshots as if the
// snapshot had been whole from the start; fills are durable and never overwrite what the clone
// wrote. The source here fills from an image in memory, on its own thread, as the remote
// hydrator fills from S3 (tests/integration covers that one against Ceph RGW).
#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "strata/pool.h"

#include "testutil/test_util.h"
#include "util/submit_all.h"

namespace strata {
namespace {

constexpr uint32_t kChunk = 64 << 10;
constexpr uint64_t kBlock = 512 << 10;
constexpr uint64_t kSize = 8 * kBlock + 3 * kChunk;  // the last block is short

using Bytes = std::vector<std::byte>;

class ImageSource final : public BlockSource {
 public:
  ImageSource(Pool* pool, std::string snapshot_id, Bytes image)
      : pool_(pool),
        snapshot_id_(std::move(snapshot_id)),
        image_(std::move(image)),
        present_((image_.size() + kBlock - 1) / kBlock) {
    // What arrived before (a restart): the base's own blocks, listed before it is attached.
    auto listed = pool_->ListSnapshotBlocks(snapshot_id_, kBlock, 0, present_.size());
    EXPECT_TRUE(listed.ok()) << listed.status().ToString();
    for (uint64_t b : listed->blocks) {
      present_[b] = true;
    }
  }
  ~ImageSource() override {
    for (std::thread& t : threads_) {
      t.join();
    }
  }
  bool Present(uint64_t offset, uint64_t length) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t b = offset / kBlock; b * kBlock < offset + length; b++) {
      if (!present_[b]) {
        return false;
      }
    }
    return true;
  }
  void Ensure(uint64_t offset, uint64_t length, std::function<void(const Status&)> done) override {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.emplace_back([this, offset, length, done] { done(Fill(offset, length)); });
  }
  double Progress() override {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<double>(std::count(present_.begin(), present_.end(), true)) /
           static_cast<double>(present_.size());
  }
  std::atomic<int> fetches{0};
  std::atomic<bool> fail{false};

 private:
  Status Fill(uint64_t offset, uint64_t length) {
    std::lock_guard<std::mutex> serial(fill_mu_);
    for (uint64_t b = offset / kBlock; b * kBlock < offset + length; b++) {
      if (Present(b * kBlock, 1)) {
        continue;
      }
      if (fail) {
        return Status::IOError("remote unreachable", EIO);
      }
      const uint64_t n = std::min<uint64_t>(kBlock, image_.size() - b * kBlock);
      STRATA_RETURN_IF_ERROR(pool_->FillSnapshot(
          snapshot_id_, b * kBlock, std::span<const std::byte>(image_.data() + b * kBlock, n)));
      fetches++;
      std::lock_guard<std::mutex> lock(mu_);
      present_[b] = true;
    }
    return Status::OK();
  }

  Pool* pool_;
  std::string snapshot_id_;
  Bytes image_;
  std::mutex mu_;
  std::mutex fill_mu_;
  std::vector<bool> present_;
  std::vector<std::thread> threads_;
};

class ArrivingSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PoolOptions o;
    o.chunk_size_bytes = kChunk;
    ASSERT_TRUE(Pool::Create(dir_.path(), o).ok());
    Reopen();
    VolumeSpec spec{kSize, "", "unlimited", ""};
    spec.importing = true;
    auto importing = pool_->CreateVolume(spec);
    ASSERT_TRUE(importing.ok());
    auto base = pool_->SealImport(importing->volume_id, "arriving", "");
    ASSERT_TRUE(base.ok());
    base_ = base->snapshot_id;
    image_ = test::RandomBytes(kSize, 7);
    std::fill_n(image_.begin() + 3 * kBlock, kBlock, std::byte{0});  // one block of zeros
    Attach();
  }
  void Reopen() {
    source_.reset();
    pool_.reset();
    PoolOptions o;
    auto pool = Pool::Open(dir_.path(), o);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = std::move(*pool);
  }
  void Attach() {
    source_ = std::make_shared<ImageSource>(pool_.get(), base_, image_);
    ASSERT_TRUE(pool_->AttachBlockSource(base_, source_).ok());
  }
  std::string Clone() {
    auto clone = pool_->CreateVolume(VolumeSpec{0, "", "unlimited", base_});
    EXPECT_TRUE(clone.ok()) << clone.status().ToString();
    return clone->volume_id;
  }
  Bytes ReadAll(const std::shared_ptr<Volume>& v) {
    Bytes out(kSize);
    EXPECT_TRUE(v->Read(0, out).ok());
    return out;
  }

  test::TempDir dir_;
  std::unique_ptr<Pool> pool_;
  std::string base_;
  Bytes image_;
  std::shared_ptr<ImageSource> source_;
};

TEST_F(ArrivingSnapshotTest, AReadFetchesOnlyWhatItTouches) {
  auto v = *pool_->OpenVolume(Clone());
  Bytes got(4096);
  ASSERT_TRUE(v->Read(5 * kBlock + 8192, got).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), image_.begin() + 5 * kBlock + 8192));
  EXPECT_EQ(source_->fetches, 1);
  EXPECT_EQ(ReadAll(v), image_);
  EXPECT_EQ(source_->fetches, 9);
  EXPECT_EQ(source_->Progress(), 1.0);
  EXPECT_EQ(ReadAll(v), image_);  // nothing fetched twice
  EXPECT_EQ(source_->fetches, 9);
}

TEST_F(ArrivingSnapshotTest, WritesLandAndStayAndSnapshotsAreWhole) {
  const std::string id = Clone();
  auto v = *pool_->OpenVolume(id);
  Bytes mine = test::RandomBytes(6000, 8);
  ASSERT_TRUE(v->Write(2 * kBlock + 100, mine, false).ok());  // a partial chunk of a cold block
  ASSERT_TRUE(v->Trim(6 * kBlock, kBlock).ok());
  Bytes want = image_;
  std::copy(mine.begin(), mine.end(), want.begin() + 2 * kBlock + 100);
  std::fill_n(want.begin() + 6 * kBlock, kBlock, std::byte{0});
  auto snap = pool_->CreateSnapshots({id}, "during");
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(pool_->ListSnapshotBlocks(snap->front().snapshot_id, kBlock, 0, 100).status().code(),
            Status::Code::kBusy);  // block lists would miss what has not arrived
  EXPECT_EQ(ReadAll(*pool_->OpenSnapshot(snap->front().snapshot_id)), want);
  EXPECT_EQ(ReadAll(v), want);  // the late fills did not overwrite the write or the trim
  auto changed = pool_->ChangedExtents(*v, base_, 0, kSize);  // through the wrapper too
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_FALSE(changed->empty());
  EXPECT_TRUE(pool_->ListSnapshotBlocks(snap->front().snapshot_id, kBlock, 0, 100).ok());
  // A second clone reads the base's blocks without fetching them again.
  const int fetched = source_->fetches;
  EXPECT_EQ(ReadAll(*pool_->OpenVolume(Clone())), image_);
  EXPECT_EQ(source_->fetches, fetched);
}

// A snapshot whose size is not a whole number of chunks, cloned and grown: a write just past the
// snapshot's end, in the chunk it shares with the snapshot's last bytes, first makes that chunk
// present (its copy-on-write reads them). Found by the crash simulator (seed 34984986).
TEST_F(ArrivingSnapshotTest, AWritePastTheEndOfAGrownCloneKeepsTheSnapshotsLastBytes) {
  constexpr uint64_t kOdd = 2 * kBlock + kChunk + 4096;
  VolumeSpec spec{kOdd, "", "unlimited", ""};
  spec.importing = true;
  auto importing = pool_->CreateVolume(spec);
  ASSERT_TRUE(importing.ok());
  auto odd = pool_->SealImport(importing->volume_id, "odd", "");
  ASSERT_TRUE(odd.ok());
  const Bytes image = test::RandomBytes(kOdd, 9);
  auto source = std::make_shared<ImageSource>(pool_.get(), odd->snapshot_id, image);
  ASSERT_TRUE(pool_->AttachBlockSource(odd->snapshot_id, source).ok());
  auto clone = pool_->CreateVolume(VolumeSpec{0, "", "unlimited", odd->snapshot_id});
  ASSERT_TRUE(clone.ok());
  ASSERT_TRUE(pool_->ResizeVolume(clone->volume_id, kOdd + 2 * kChunk).ok());
  auto v = *pool_->OpenVolume(clone->volume_id);
  const Bytes mine = test::RandomBytes(4096, 10);
  ASSERT_TRUE(v->Write(kOdd + 4096, mine, false).ok());
  Bytes got(kOdd + 2 * kChunk);
  ASSERT_TRUE(v->Read(0, got).ok());
  EXPECT_TRUE(std::equal(image.begin(), image.end(), got.begin())) << "the snapshot's bytes";
  EXPECT_TRUE(std::equal(mine.begin(), mine.end(), got.begin() + kOdd + 4096));
  EXPECT_TRUE(std::all_of(got.begin() + kOdd, got.begin() + kOdd + 4096,
                          [](std::byte b) { return b == std::byte{0}; }));
}

TEST_F(ArrivingSnapshotTest, AsyncRequestsWaitForTheirBlocksAndErrorsReachThem) {
  auto v = *pool_->OpenVolume(Clone());
  auto loop = *pool_->CreateEventLoop(64);
  Bytes a(kBlock), b(kBlock);
  std::vector<IoRequest> reads(2);
  reads[0].offset_bytes = 0;
  reads[1].offset_bytes = 4 * kBlock;
  reads[0].data = a.data();
  reads[1].data = b.data();
  for (IoRequest& r : reads) {
    r.kind = IoRequest::Kind::kRead;
    r.length_bytes = kBlock;
  }
  ASSERT_TRUE(SubmitAll(v.get(), loop.get(), &reads).ok());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), image_.begin()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), image_.begin() + 4 * kBlock));
  source_->fail = true;
  reads.resize(1);
  reads[0].offset_bytes = 7 * kBlock;
  Status s = SubmitAll(v.get(), loop.get(), &reads);
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  Bytes hot(kBlock);
  EXPECT_TRUE(v->Read(0, hot).ok());  // what arrived is served
}

TEST_F(ArrivingSnapshotTest, FillsAreDurableAndIdempotent) {
  const std::string id = Clone();
  {
    auto v = *pool_->OpenVolume(id);
    Bytes got(kBlock);
    ASSERT_TRUE(v->Read(kBlock, got).ok());
    ASSERT_TRUE(pool_->Flush().ok());
  }
  Reopen();
  Attach();
  auto v = *pool_->OpenVolume(id);
  EXPECT_EQ(ReadAll(v), image_);
  EXPECT_EQ(source_->fetches, 8);  // block 1 arrived before the restart
  // Filling again changes nothing; a fill of a snapshot with a live volume is refused.
  Bytes other = test::RandomBytes(kBlock, 9);
  ASSERT_TRUE(pool_->FillSnapshot(base_, 0, other).ok());
  EXPECT_EQ(ReadAll(v), image_);
  auto snap = pool_->CreateSnapshots({id}, "");
  EXPECT_EQ(pool_->FillSnapshot(snap->front().snapshot_id, 0, other).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(pool_->FillSnapshot(base_, 100, other).code(), Status::Code::kInvalidArgument);
  auto report = pool_->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
}

}  // namespace
}  // namespace strata
