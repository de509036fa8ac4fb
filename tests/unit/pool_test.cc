// Pool lifecycle and every bad input of issue #2: each gets a clear error and loses nothing.
#include "strata/pool.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>
#include <lmdb.h>

#include "io/sim_env.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

using test::AllZero;
using test::RandomBytes;
using test::TempDir;

std::unique_ptr<Pool> MustOpen(const std::string& dir, const PoolOptions& options) {
  auto pool = Pool::Open(dir, options);
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  return pool.ok() ? std::move(*pool) : nullptr;
}

// "unlimited": the only type that reaches 64 TiB without provisioned IOPS (gp3 stops at 16 TiB).
std::shared_ptr<Volume> MakeVolume(Pool* pool, uint64_t size) {
  auto info = pool->CreateVolume(VolumeSpec{size, "", "unlimited", ""});
  EXPECT_TRUE(info.ok()) << info.status().ToString();
  return *pool->OpenVolume(info->volume_id);
}

TEST(PoolTest, MissingPoolIsNotFound) {
  TempDir dir;
  auto pool = Pool::Open(dir.Sub("nothing"), PoolOptions{});
  EXPECT_EQ(pool.status().code(), Status::Code::kNotFound);
  auto empty = Pool::Open(dir.path(), PoolOptions{});  // a directory with no pool in it
  EXPECT_EQ(empty.status().code(), Status::Code::kNotFound);
  EXPECT_NE(empty.status().message().find("strata pool create"), std::string::npos);
}

TEST(PoolTest, CreateTwiceIsRefused) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  EXPECT_EQ(Pool::Create(dir.path(), PoolOptions{}).code(), Status::Code::kAlreadyExists);
}

TEST(PoolTest, BadChunkSizeIsRefused) {
  TempDir dir;
  for (uint32_t size : {0u, 512u, 2048u, 65537u, 2u << 20}) {
    PoolOptions o;
    o.chunk_size_bytes = size;
    EXPECT_EQ(Pool::Create(dir.Sub(std::to_string(size)), o).code(),
              Status::Code::kInvalidArgument);
  }
}

TEST(PoolTest, SecondOpenIsBusyNamingTheHolder) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  auto first = MustOpen(dir.path(), PoolOptions{});
  auto second = Pool::Open(dir.path(), PoolOptions{});
  ASSERT_EQ(second.status().code(), Status::Code::kBusy);
  EXPECT_NE(second.status().message().find(std::to_string(getpid())), std::string::npos)
      << second.status().ToString();
  first.reset();
  EXPECT_TRUE(Pool::Open(dir.path(), PoolOptions{}).ok());  // released on close
}

// The directory lock goes through the Env: the simulator holds it in memory, and a failing
// lock is a clean error that changes nothing.
TEST(PoolTest, DirectoryLockGoesThroughTheEnv) {
  TempDir dir;
  SimEnv sim(3);
  PoolOptions options;
  options.env = &sim;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  {
    auto first = MustOpen(dir.path(), options);
    auto second = Pool::Open(dir.path(), options);
    EXPECT_EQ(second.status().code(), Status::Code::kBusy) << second.status().ToString();
    EXPECT_NE(second.status().message().find("in use by another process"), std::string::npos);
  }
  sim.SetLockFailure(true);
  auto failed = Pool::Open(dir.path(), options);
  EXPECT_EQ(failed.status().code(), Status::Code::kIOError) << failed.status().ToString();
  sim.SetLockFailure(false);
  auto pool = MustOpen(dir.path(), options);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->Check()->problems.empty());
}

// Data-file discovery is bounded: files past the 1,024 a pool can have are never indexed.
TEST(PoolTest, StrayDataFilesPastTheLimitAreIgnored) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  {
    auto pool = MustOpen(dir.path(), PoolOptions{});
    auto volume = MakeVolume(pool.get(), 1 << 20);
    ASSERT_TRUE(volume->Write(0, RandomBytes(65536, 5), /*fua=*/true).ok());
  }
  for (int i = 1; i < 1100; i++) {
    char name[32];
    std::snprintf(name, sizeof(name), "/data.%04d", i);
    std::ofstream(dir.path() + name).put('x');
  }
  auto pool = MustOpen(dir.path(), PoolOptions{});
  ASSERT_NE(pool, nullptr);
  auto check = pool->Check();
  ASSERT_TRUE(check.ok()) << check.status().ToString();
  EXPECT_TRUE(check->problems.empty());
  auto volume = pool->OpenVolume(pool->ListVolumes().front().volume_id);
  ASSERT_TRUE(volume.ok());
  std::vector<std::byte> got(65536);
  ASSERT_TRUE((*volume)->Read(0, got).ok());
  EXPECT_EQ(got, RandomBytes(65536, 5));
}

TEST(PoolTest, GarbageMetadataIsCorruption) {
  TempDir dir;
  std::filesystem::create_directories(dir.Sub("meta"));
  std::ofstream(dir.Sub("meta/data.mdb")) << std::string(100000, 'x');
  auto pool = Pool::Open(dir.path(), PoolOptions{});
  EXPECT_EQ(pool.status().code(), Status::Code::kCorruption) << pool.status().ToString();
}

TEST(PoolTest, ForeignLmdbIsCorruption) {
  TempDir dir;
  std::filesystem::create_directories(dir.Sub("meta"));
  MDB_env* env;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_open(env, dir.Sub("meta").c_str(), 0, 0644), 0);
  MDB_txn* txn;
  MDB_dbi dbi;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  ASSERT_EQ(mdb_dbi_open(txn, nullptr, 0, &dbi), 0);
  MDB_val k{3, const_cast<char*>("foo")}, v{3, const_cast<char*>("bar")};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  auto pool = Pool::Open(dir.path(), PoolOptions{});
  EXPECT_EQ(pool.status().code(), Status::Code::kCorruption) << pool.status().ToString();
}

TEST(PoolTest, InvalidSizesAndUnknownIds) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  auto pool = MustOpen(dir.path(), PoolOptions{});
  for (uint64_t size : {uint64_t{0}, uint64_t{1000}, kMaxVolumeBytes + 512}) {
    EXPECT_EQ(pool->CreateVolume(VolumeSpec{size, "", "gp3", ""}).status().code(),
              Status::Code::kInvalidArgument);
  }
  EXPECT_EQ(pool->DescribeVolume("vol-00000000000000000").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(pool->DeleteVolume("vol-00000000000000000").code(), Status::Code::kNotFound);
  EXPECT_EQ(pool->OpenVolume("nope").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(pool->ResizeVolume("nope", 1 << 20).status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(pool->ListVolumes().empty());
}

TEST(PoolTest, HugeThinVolumeUsesNoSpace) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  auto pool = MustOpen(dir.path(), PoolOptions{});
  auto vol = MakeVolume(pool.get(), kMaxVolumeBytes);
  auto data = RandomBytes(4096, 1);
  ASSERT_TRUE(vol->Write(kMaxVolumeBytes - 4096, data, true).ok());
  std::vector<std::byte> back(4096);
  ASSERT_TRUE(vol->Read(kMaxVolumeBytes - 4096, back).ok());
  EXPECT_EQ(back, data);
  EXPECT_EQ(pool->Info().used_bytes, 64u << 10);
  EXPECT_LT(pool->Info().data_file_bytes, 1u << 20);
}

TEST(PoolTest, BlockStatusCostsMappedChunksNotVolumeSize) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  auto pool = MustOpen(dir.path(), PoolOptions{});
  auto vol = MakeVolume(pool.get(), kMaxVolumeBytes);  // 2^30 chunks of 64 KiB
  auto data = RandomBytes(65536, 13);
  for (uint64_t off : {uint64_t{0}, uint64_t{1} << 40, kMaxVolumeBytes - 65536}) {
    ASSERT_TRUE(vol->Write(off, data, false).ok());
  }
  ASSERT_TRUE(pool->Flush().ok());
  ASSERT_TRUE(vol->Write(2ull << 40, data, false).ok());  // one more, still in the overlay
  ASSERT_TRUE(vol->Trim(1ull << 40, 65536).ok());         // committed chunk trimmed in the overlay
  auto extents = vol->BlockStatus(0, kMaxVolumeBytes);
  ASSERT_TRUE(extents.ok()) << extents.status().ToString();
  std::vector<Extent> want = {{0, 65536, false},
                              {65536, (2ull << 40) - 65536, true},
                              {2ull << 40, 65536, false},
                              {(2ull << 40) + 65536, kMaxVolumeBytes - (2ull << 40) - 131072, true},
                              {kMaxVolumeBytes - 65536, 65536, false}};
  ASSERT_EQ(extents->size(), want.size());
  for (size_t i = 0; i < want.size(); i++) {
    EXPECT_EQ((*extents)[i].offset_bytes, want[i].offset_bytes) << i;
    EXPECT_EQ((*extents)[i].length_bytes, want[i].length_bytes) << i;
    EXPECT_EQ((*extents)[i].hole, want[i].hole) << i;
  }
}

TEST(PoolTest, BlockStatusReturnsAPrefixPastItsBound) {
  TempDir dir;
  PoolOptions options;
  options.chunk_size_bytes = 4096;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  const uint64_t mapped = kMaxBlockStatusChunks + 100;
  auto vol = MakeVolume(pool.get(), 2 * mapped * 4096);
  ASSERT_TRUE(vol->Write(0, std::vector<std::byte>(mapped * 4096, std::byte{7}), false).ok());
  auto extents = vol->BlockStatus(0, vol->size_bytes());
  ASSERT_TRUE(extents.ok());
  ASSERT_EQ(extents->size(), 1u);
  EXPECT_FALSE((*extents)[0].hole);
  EXPECT_EQ((*extents)[0].length_bytes, kMaxBlockStatusChunks * 4096);
  auto rest = vol->BlockStatus(kMaxBlockStatusChunks * 4096,
                               vol->size_bytes() - kMaxBlockStatusChunks * 4096);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].length_bytes, 100u * 4096);
  EXPECT_TRUE((*rest)[1].hole);
}

// The overlay is bounded: past 65,536 uncommitted mappings a commit runs without a flush and
// without waiting for the timer (here: there is no timer).
TEST(PoolTest, LargeOverlayIsCommittedWithoutAFlush) {
  TempDir dir;
  PoolOptions options;
  options.chunk_size_bytes = 4096;
  options.commit_interval_ms = 0;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  const uint64_t chunks = 65536 + 16;
  auto vol = MakeVolume(pool.get(), chunks * 4096);
  ASSERT_TRUE(vol->Write(0, std::vector<std::byte>(chunks * 4096, std::byte{3}), false).ok());
  uint64_t pending = pool->Info().pending_map_changes;
  for (int i = 0; i < 200 && pending >= 65536; i++) {
    usleep(20000);
    pending = pool->Info().pending_map_changes;
  }
  EXPECT_LT(pending, 65536u) << "the overlay passed its bound and nothing committed it";
}

TEST(PoolTest, NamesResolveWhenUnique) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  auto pool = MustOpen(dir.path(), PoolOptions{});
  auto a = pool->CreateVolume(VolumeSpec{1 << 20, "web", "gp3", ""});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(pool->DescribeVolume("web")->volume_id, a->volume_id);
  ASSERT_TRUE(pool->CreateVolume(VolumeSpec{1 << 20, "web", "gp3", ""}).ok());
  EXPECT_EQ(pool->DescribeVolume("web").status().code(), Status::Code::kInvalidArgument);
}

// The layer hook (the EC2 layer's only way into the engine): named tables that persist with the
// engine's commits, the engine's own tables out of reach, holds with the layer's reason.
TEST(PoolTest, LayerHookTablesPersistAndAreBounded) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  {
    auto pool = MustOpen(dir.path(), PoolOptions{});
    for (const char* bad : {"", "Images", "9lives", "a-b", "volumes", "map", "lineages", "pool",
                            "abcdefghijklmnopqrstuvwxyz0123456"}) {
      EXPECT_EQ(pool->OpenRecordTable(bad).code(), Status::Code::kInvalidArgument) << bad;
    }
    EXPECT_EQ(pool->ReadRecords("notes").status().code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(pool->CommitRecords({{"notes", "k", "v"}}).code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(pool->CommitRecords({{"volumes", "vol-1", "{}"}}).code(),
              Status::Code::kInvalidArgument);
    EXPECT_EQ(pool->ReadRecords("snapshots").status().code(), Status::Code::kInvalidArgument);
    ASSERT_TRUE(pool->OpenRecordTable("notes").ok());
    ASSERT_TRUE(pool->OpenRecordTable("notes").ok());  // again: a no-op
    ASSERT_TRUE(pool->CommitRecords({{"notes", "b", "2"}, {"notes", "a", "1"}}).ok());
    auto infos = pool->CreateVolumes(
        {VolumeSpec{1 << 20, "", "gp3", ""}}, [](const std::vector<VolumeInfo>& v) {
          return std::vector<RecordChange>{{"notes", "owner", v.front().volume_id}};
        });
    ASSERT_TRUE(infos.ok()) << infos.status().ToString();
    // A hold keeps the volume, with the layer's reason; released, the delete goes through.
    const std::string vol = infos->front().volume_id;
    ASSERT_TRUE(pool->AddHold(vol, "x-1", "is kept by x-1: release it first").ok());
    EXPECT_EQ(pool->AddHold("vol-0000000000000dead", "x-1", "r").code(), Status::Code::kNotFound);
    Status held = pool->DeleteVolume(vol);
    EXPECT_EQ(held.code(), Status::Code::kBusy);
    EXPECT_NE(held.ToString().find("is kept by x-1: release it first"), std::string::npos)
        << held.ToString();
    pool->ReleaseHold(vol, "x-1");
    EXPECT_FALSE(pool->VolumeInUse(vol));
    ASSERT_TRUE(pool->CommitRecords({{"notes", "b", std::nullopt}}).ok());
    for (int i = 1; i < 16; i++) {
      ASSERT_TRUE(pool->OpenRecordTable("t" + std::to_string(i)).ok()) << i;
    }
    EXPECT_EQ(pool->OpenRecordTable("one_too_many").code(), Status::Code::kInvalidArgument);
    ASSERT_TRUE(pool->DeleteVolume(vol).ok());
  }
  auto pool = MustOpen(dir.path(), PoolOptions{});
  EXPECT_EQ(pool->ReadRecords("notes").status().code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(pool->OpenRecordTable("notes").ok());
  auto records = pool->ReadRecords("notes");
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0], std::make_pair(std::string("a"), std::string("1")));
  EXPECT_EQ((*records)[1].first, "owner");
  EXPECT_TRUE(pool->Check()->problems.empty());
}

TEST(PoolTest, GrowOnlineNeverShrink) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  auto pool = MustOpen(dir.path(), PoolOptions{});
  auto vol = MakeVolume(pool.get(), 1 << 20);
  auto data = RandomBytes(8192, 2);
  EXPECT_EQ(vol->Write(1 << 20, data, false).code(), Status::Code::kOutOfRange);
  ASSERT_TRUE(pool->ResizeVolume(vol->id(), 2 << 20).ok());
  EXPECT_EQ(vol->size_bytes(), 2u << 20);  // the open handle sees it at once
  ASSERT_TRUE(vol->Write(1 << 20, data, false).ok());
  EXPECT_EQ(pool->ResizeVolume(vol->id(), 1 << 20).status().code(), Status::Code::kInvalidArgument);
  vol.reset();
  pool.reset();
  pool = MustOpen(dir.path(), PoolOptions{});
  EXPECT_EQ(pool->DescribeVolume(pool->ListVolumes()[0].volume_id)->size_bytes, 2u << 20);
}

TEST(PoolTest, DeleteReclaimsSpaceAndNeverLeaksData) {
  TempDir dir;
  ASSERT_TRUE(Pool::Create(dir.path(), PoolOptions{}).ok());
  auto pool = MustOpen(dir.path(), PoolOptions{});
  auto vol = MakeVolume(pool.get(), 16 << 20);
  ASSERT_TRUE(vol->Write(0, RandomBytes(8 << 20, 3), false).ok());
  ASSERT_TRUE(pool->Flush().ok());
  EXPECT_GE(pool->Info().data_file_bytes, 8u << 20);
  std::string id = vol->id();
  EXPECT_EQ(pool->DeleteVolume(id).code(), Status::Code::kBusy);  // still open
  vol.reset();
  ASSERT_TRUE(pool->DeleteVolume(id).ok());
  EXPECT_EQ(pool->Info().used_bytes, 0u);
  EXPECT_LT(pool->Info().data_file_bytes, 1u << 20) << "freed chunks were not punched";
  // A new volume reuses the chunks: partial writes must not expose the old bytes around them.
  auto fresh = MakeVolume(pool.get(), 16 << 20);
  ASSERT_TRUE(fresh->Write(4096, RandomBytes(512, 4), false).ok());
  std::vector<std::byte> all(16 << 20);
  ASSERT_TRUE(fresh->Read(0, all).ok());
  std::memset(all.data() + 4096, 0, 512);
  EXPECT_TRUE(AllZero(all));
  auto report = pool->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
}

TEST(PoolTest, FullPoolFailsCleanlyAndRecovers) {
  TempDir dir;
  PoolOptions options;
  options.chunk_size_bytes = 65536;
  options.capacity_bytes = 16 * 65536;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  auto vol = MakeVolume(pool.get(), 4 << 20);
  auto data = RandomBytes(16 * 65536, 5);
  ASSERT_TRUE(vol->Write(0, data, false).ok());
  auto more = RandomBytes(4096, 6);
  Status s = vol->Write(2 << 20, more, false);
  EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
  // Overwrites of allocated chunks still work; nothing was corrupted.
  ASSERT_TRUE(vol->Write(0, more, false).ok());
  std::memcpy(data.data(), more.data(), more.size());
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE(vol->Read(0, back).ok());
  EXPECT_EQ(back, data);
  // Free space: the write works again (after the free is committed).
  ASSERT_TRUE(vol->Trim(0, 65536).ok());
  ASSERT_TRUE(vol->Flush().ok());
  ASSERT_TRUE(vol->Write(2 << 20, more, false).ok());
  auto report = pool->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
}

TEST(PoolTest, MetadataMapGrowsWhenFull) {
  TempDir dir;
  PoolOptions options;
  options.chunk_size_bytes = 4096;
  options.meta_map_bytes = 256 << 10;  // tiny: must grow several times
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  auto vol = MakeVolume(pool.get(), 64 << 20);
  auto data = RandomBytes(32 << 20, 7);  // 8192 chunks = 8192 versions + changes
  ASSERT_TRUE(vol->Write(0, data, false).ok());
  ASSERT_TRUE(pool->Flush().ok());
  EXPECT_GT(pool->Info().meta_bytes, 256u << 10);
  vol.reset();
  pool.reset();
  pool = MustOpen(dir.path(), options);
  vol = *pool->OpenVolume(pool->ListVolumes()[0].volume_id);
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE(vol->Read(0, back).ok());
  EXPECT_EQ(back, data);
}

TEST(PoolTest, MetadataAtItsLimitFailsFlushCleanly) {
  TempDir dir;
  PoolOptions options;
  options.chunk_size_bytes = 4096;
  options.meta_map_bytes = 256 << 10;
  options.max_meta_bytes = 256 << 10;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  auto vol = MakeVolume(pool.get(), 64 << 20);
  auto first = RandomBytes(64 << 10, 8);
  ASSERT_TRUE(vol->Write(0, first, false).ok());
  ASSERT_TRUE(pool->Flush().ok());
  ASSERT_TRUE(vol->Write(1 << 20, RandomBytes(32 << 20, 9), false).ok());
  Status s = pool->Flush();
  EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("metadata"), std::string::npos) << s.ToString();
  vol.reset();
  pool.reset();
  options.max_meta_bytes = 1ull << 30;
  pool = MustOpen(dir.path(), options);
  vol = *pool->OpenVolume(pool->ListVolumes()[0].volume_id);
  std::vector<std::byte> back(first.size());
  ASSERT_TRUE(vol->Read(0, back).ok());
  EXPECT_EQ(back, first);  // what was committed is intact
  auto report = pool->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
}

TEST(PoolTest, FailedSyncLatchesThePool) {
  TempDir dir;
  SimEnv sim(1);
  PoolOptions options;
  options.env = &sim;
  options.commit_interval_ms = 0;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  auto vol = MakeVolume(pool.get(), 1 << 20);
  auto data = RandomBytes(8192, 10);
  ASSERT_TRUE(vol->Write(0, data, false).ok());
  sim.FailNextSyncs(1);
  Status s = vol->Flush();
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  // No silent retry: the next flush and every write fail too, naming the latch.
  EXPECT_EQ(vol->Flush().code(), Status::Code::kIOError);
  s = vol->Write(0, data, false);
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_NE(s.message().find("latched"), std::string::npos) << s.ToString();
  EXPECT_FALSE(pool->Info().latched_error.empty());
  std::vector<std::byte> back(8192);
  EXPECT_TRUE(vol->Read(0, back).ok());  // reads still served
  vol.reset();
  pool.reset();
  pool = MustOpen(dir.path(), options);  // reopening clears the latch
  vol = *pool->OpenVolume(pool->ListVolumes()[0].volume_id);
  EXPECT_TRUE(vol->Write(0, data, false).ok());
  EXPECT_TRUE(vol->Flush().ok());
}

TEST(PoolTest, HostFileSystemFullIsNoSpace) {
  TempDir dir;
  SimEnv sim(2);
  PoolOptions options;
  options.env = &sim;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  auto vol = MakeVolume(pool.get(), 4 << 20);
  auto data = RandomBytes(65536, 11);
  ASSERT_TRUE(vol->Write(0, data, false).ok());
  sim.SetNoSpace(true);
  Status s = vol->Write(1 << 20, data, false);
  EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
  sim.SetNoSpace(false);
  ASSERT_TRUE(vol->Write(1 << 20, data, false).ok());
  std::vector<std::byte> back(65536);
  ASSERT_TRUE(vol->Read(0, back).ok());
  EXPECT_EQ(back, data);
  auto report = pool->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
}

// A real small file system that fills up (tmpfs also refuses O_DIRECT: the buffered fallback).
TEST(PoolTest, RealTmpfsFullIsNoSpaceAndRecovers) {
  TempDir dir;
  if (geteuid() != 0 || mount("tmpfs", dir.path().c_str(), "tmpfs", 0, "size=8m") != 0) {
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  }
  {
    ASSERT_TRUE(Pool::Create(dir.Sub("pool"), PoolOptions{}).ok());
    auto pool = MustOpen(dir.Sub("pool"), PoolOptions{});
    auto vol = MakeVolume(pool.get(), 64 << 20);
    Status s;
    uint64_t written = 0;
    auto data = RandomBytes(1 << 20, 12);
    while (s.ok() && written < (64u << 20)) {
      s = vol->Write(written, data, false);
      written += s.ok() ? data.size() : 0;
    }
    EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
    EXPECT_GT(written, 0u);
    ASSERT_TRUE(vol->Trim(0, written).ok());
    Status flushed = vol->Flush();
    ASSERT_TRUE(flushed.ok()) << flushed.ToString() << " written " << written << " data file "
                              << pool->Info().data_file_bytes;
    EXPECT_TRUE(vol->Write(0, data, false).ok());
    EXPECT_TRUE(vol->Flush().ok());
  }
  umount(dir.path().c_str());
}

// Before: a write right after a TRIM on a full pool failed with ENOSPC until the next timed
// commit (up to a second later) or a FLUSH.
TEST(PoolTest, TrimmedSpaceIsUsableAtOnceOnAFullPool) {
  TempDir dir;
  PoolOptions options;
  options.chunk_size_bytes = 65536;
  options.capacity_bytes = 16 * 65536;
  options.commit_interval_ms = 60'000;  // no timed commit during the test
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  auto vol = MakeVolume(pool.get(), 4 << 20);
  auto data = RandomBytes(16 * 65536, 5);
  ASSERT_TRUE(vol->Write(0, data, false).ok());
  auto more = RandomBytes(65536, 6);
  EXPECT_EQ(vol->Write(2 << 20, more, false).code(), Status::Code::kNoSpace);
  ASSERT_TRUE(vol->Trim(0, 2 * 65536).ok());
  const auto start = std::chrono::steady_clock::now();
  Status s = vol->Write(2 << 20, more, false);  // no FLUSH in between
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::printf("[ figures ] write after trim on a full pool: %.2f ms (one commit)\n", ms);
  std::vector<std::byte> back(65536);
  ASSERT_TRUE(vol->Read(2 << 20, back).ok());
  EXPECT_EQ(back, more);
  ASSERT_TRUE(vol->Read(0, back).ok());
  EXPECT_TRUE(AllZero(back));
  // With nothing trimmed, a full pool still says so at once.
  EXPECT_EQ(vol->Write(3 << 20, RandomBytes(2 * 65536, 7), false).code(), Status::Code::kNoSpace);
  auto report = pool->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
}

TEST(PoolTest, TrimAndZeroCostMappedChunksNotRangeLength) {
  TempDir dir;
  PoolOptions options;
  options.chunk_size_bytes = 4096;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  auto vol = MakeVolume(pool.get(), 64ull << 40);  // 16 G chunks
  auto data = RandomBytes(4096, 8);
  for (uint64_t at : {uint64_t{0}, uint64_t{1} << 40, (uint64_t{64} << 40) - 4096}) {
    ASSERT_TRUE(vol->Write(at, data, false).ok());
  }
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(vol->Trim(0, 32ull << 40).ok());
  ASSERT_TRUE(vol->WriteZeroes(32ull << 40, 32ull << 40, /*no_hole=*/false, false).ok());
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ figures ] trim + write-zeroes over 64 TiB (3 chunks mapped): %.4f s\n", secs);
  EXPECT_LT(secs, 2.0);
  std::vector<std::byte> back(4096);
  for (uint64_t at : {uint64_t{0}, uint64_t{1} << 40, (uint64_t{64} << 40) - 4096}) {
    ASSERT_TRUE(vol->Read(at, back).ok());
    EXPECT_TRUE(AllZero(back)) << at;
  }
}

TEST(PoolTest, PoolDirectoryIsOwnerOnly) {
  TempDir dir;
  const std::string path = dir.Sub("pool");
  const mode_t old = umask(022);
  PoolOptions options;
  ASSERT_TRUE(Pool::Create(path, options).ok());
  umask(old);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((path + "/meta/data.mdb").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);
  // A pool made by an earlier build (0755) is closed to others when opened.
  ASSERT_EQ(chmod(path.c_str(), 0755), 0);
  auto pool = MustOpen(path, options);
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(PoolTest, NamesAndDescriptionsMustBePrintableUtf8) {
  TempDir dir;
  PoolOptions options;
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  for (const std::string& name : {std::string("bad\xff\xfe"), std::string("a\nb"),
                                  std::string("\xc0\xaf"), std::string("\x1b[2J")}) {
    auto r = pool->CreateVolume(VolumeSpec{1 << 20, name, "gp3", ""});
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << name;
  }
  auto ok = pool->CreateVolume(VolumeSpec{1 << 20, "données-ü", "gp3", ""});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  auto snap = pool->CreateSnapshot(ok->volume_id, "d\xff");
  EXPECT_EQ(snap.status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(pool->ListSnapshots().empty());
}

// BLOCK_STATUS's STATE_ZERO inside a chunk: units a write-zeroes wrote read as allocated zeros
// until something writes them again (before: the whole chunk was plain data).
TEST(PoolTest, ZeroedUnitsInsideAChunkShowAsZero) {
  TempDir dir;
  PoolOptions options;
  options.chunk_size_bytes = 65536;  // units of 4 KiB
  ASSERT_TRUE(Pool::Create(dir.path(), options).ok());
  auto pool = MustOpen(dir.path(), options);
  auto vol = MakeVolume(pool.get(), 1 << 20);
  ASSERT_TRUE(vol->Write(0, RandomBytes(65536, 9), false).ok());
  ASSERT_TRUE(vol->WriteZeroes(16384 + 512, 32768, /*no_hole=*/false, false).ok());
  auto expect = [&](std::vector<Extent> want) {
    auto got = vol->BlockStatus(0, 65536);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->size(), want.size());
    for (size_t i = 0; i < want.size(); i++) {
      EXPECT_EQ((*got)[i].offset_bytes, want[i].offset_bytes) << i;
      EXPECT_EQ((*got)[i].length_bytes, want[i].length_bytes) << i;
      EXPECT_EQ((*got)[i].hole, want[i].hole) << i;
      EXPECT_EQ((*got)[i].zero, want[i].zero) << i;
    }
  };
  // Units wholly zeroed: [20 KiB, 48 KiB); the edges were written in part.
  expect({{0, 20480, false, false}, {20480, 28672, false, true}, {49152, 16384, false, false}});
  ASSERT_TRUE(vol->Write(24576, RandomBytes(100, 10), false).ok());
  expect({{0, 20480, false, false},
          {20480, 4096, false, true},
          {24576, 4096, false, false},
          {28672, 20480, false, true},
          {49152, 16384, false, false}});
  std::vector<std::byte> back(20480);
  ASSERT_TRUE(vol->Read(28672, back).ok());
  EXPECT_TRUE(AllZero(back));
  // A snapshot shares the chunk: its zeros show too; the volume's next write copies the chunk
  // elsewhere, where nothing is known to be zero.
  auto snap = pool->CreateSnapshot(vol->id(), "");
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(vol->Write(0, RandomBytes(4096, 11), false).ok());
  auto frozen = pool->OpenSnapshot(snap->snapshot_id);
  ASSERT_TRUE(frozen.ok());
  auto snap_map = (*frozen)->BlockStatus(0, 65536);
  ASSERT_TRUE(snap_map.ok());
  EXPECT_EQ(snap_map->size(), 5u);
  expect({{0, 65536, false, false}});
}

}  // namespace
}  // namespace strata
