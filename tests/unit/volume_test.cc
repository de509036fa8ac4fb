// Volume I/O through the library on the real disk (io_uring or its fallback).
#include <cstring>

#include <gtest/gtest.h>

#include "strata/pool.h"

#include "testutil/test_util.h"

namespace strata {
namespace {

using test::AllZero;
using test::RandomBytes;
using test::TempDir;

class VolumeTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    options_.chunk_size_bytes = GetParam();
    ASSERT_TRUE(Pool::Create(dir_.path(), options_).ok());
    auto pool = Pool::Open(dir_.path(), options_);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = std::move(*pool);
    auto info = pool_->CreateVolume(VolumeSpec{16 << 20, "test", "gp3", ""});
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    auto vol = pool_->OpenVolume(info->volume_id);
    ASSERT_TRUE(vol.ok());
    vol_ = *vol;
  }
  void TearDown() override {
    vol_.reset();
    pool_.reset();
  }
  std::vector<std::byte> ReadAt(uint64_t off, size_t len) {
    std::vector<std::byte> out(len, std::byte{0xEE});
    Status s = vol_->Read(off, out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  TempDir dir_;
  PoolOptions options_;
  std::unique_ptr<Pool> pool_;
  std::shared_ptr<Volume> vol_;
};

TEST_P(VolumeTest, NewVolumeReadsZeros) {
  EXPECT_TRUE(AllZero(ReadAt(0, 1 << 20)));
  EXPECT_TRUE(AllZero(ReadAt(12345, 777)));
}

TEST_P(VolumeTest, WriteReadAlignedAndUnaligned) {
  struct Case {
    uint64_t off;
    size_t len;
  } cases[] = {{0, 4096},
               {512, 512},
               {1, 1},
               {4095, 2},
               {65536 - 100, 300},
               {3 << 20, 1 << 20},
               {(5 << 20) + 7, 200000},
               {(16 << 20) - 512, 512}};
  std::vector<std::byte> model(16 << 20);  // reference: the whole volume
  uint64_t seed = 1;
  for (const Case& c : cases) {
    auto data = RandomBytes(c.len, seed++);
    ASSERT_TRUE(vol_->Write(c.off, data, false).ok());
    std::memcpy(model.data() + c.off, data.data(), c.len);
    EXPECT_EQ(ReadAt(c.off, c.len), data) << "offset " << c.off;
  }
  EXPECT_EQ(ReadAt(0, model.size()), model);
}

TEST_P(VolumeTest, OverwriteInPlaceKeepsNeighbours) {
  auto a = RandomBytes(256 << 10, 7);
  ASSERT_TRUE(vol_->Write(0, a, false).ok());
  auto b = RandomBytes(1000, 8);
  ASSERT_TRUE(vol_->Write(5000, b, false).ok());
  std::memcpy(a.data() + 5000, b.data(), b.size());
  EXPECT_EQ(ReadAt(0, a.size()), a);
}

TEST_P(VolumeTest, TrimAndZeroesReadZeroAndFreeSpace) {
  auto a = RandomBytes(4 << 20, 9);
  ASSERT_TRUE(vol_->Write(0, a, false).ok());
  ASSERT_TRUE(pool_->Flush().ok());
  uint64_t used_before = pool_->Info().used_bytes;
  EXPECT_EQ(used_before, 4u << 20);
  ASSERT_TRUE(vol_->Trim(1 << 20, 2 << 20).ok());
  ASSERT_TRUE(vol_->WriteZeroes(100, 200, false, false).ok());
  std::memset(a.data() + (1 << 20), 0, 2 << 20);
  std::memset(a.data() + 100, 0, 200);
  EXPECT_EQ(ReadAt(0, a.size()), a);
  ASSERT_TRUE(pool_->Flush().ok());
  EXPECT_EQ(pool_->Info().used_bytes, used_before - (2u << 20));
  auto report = pool_->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems[0];
}

TEST_P(VolumeTest, BlockStatusShowsHolesAndData) {
  const uint32_t chunk = GetParam();
  ASSERT_TRUE(vol_->Write(chunk * 2, RandomBytes(chunk, 3), false).ok());
  auto extents = vol_->BlockStatus(0, chunk * 4);
  ASSERT_TRUE(extents.ok());
  ASSERT_EQ(extents->size(), 3u);
  EXPECT_TRUE((*extents)[0].hole);
  EXPECT_EQ((*extents)[0].length_bytes, chunk * 2);
  EXPECT_FALSE((*extents)[1].hole);
  EXPECT_TRUE((*extents)[2].hole);
}

TEST_P(VolumeTest, OutOfRangeIsRefused) {
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(vol_->Read(16 << 20, buf).code(), Status::Code::kOutOfRange);
  EXPECT_EQ(vol_->Write((16 << 20) - 100, buf, false).code(), Status::Code::kOutOfRange);
  EXPECT_EQ(vol_->Trim(UINT64_MAX - 10, 100).code(), Status::Code::kOutOfRange);
}

TEST_P(VolumeTest, DataSurvivesReopen) {
  auto a = RandomBytes(3 << 20, 11);
  ASSERT_TRUE(vol_->Write(777, a, false).ok());
  std::string id = vol_->id();
  vol_.reset();
  pool_.reset();
  auto pool = Pool::Open(dir_.path(), options_);
  ASSERT_TRUE(pool.ok());
  pool_ = std::move(*pool);
  vol_ = *pool_->OpenVolume(id);
  EXPECT_EQ(ReadAt(777, a.size()), a);
}

INSTANTIATE_TEST_SUITE_P(ChunkSizes, VolumeTest, ::testing::Values(4096u, 65536u, 1u << 20));

}  // namespace
}  // namespace strata
