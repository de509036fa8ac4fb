// The pool check on its own: a consistent state passes, and each invariant it owns is caught
// when that invariant alone is broken (a check that cannot fail would prove nothing in the crash
// simulator, which runs it after every crash).
#include "store/pool_check.h"

#include <gtest/gtest.h>

#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint64_t kChunk = 65536;

// A pool of one volume (lineage 1, head epoch 5, 4 chunks) with one snapshot at epoch 3, and a
// map the tests damage one way at a time. Physical chunks 0-2 are mapped, 3-7 free.
class PoolCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto meta = MetaStore::Open(dir_.Sub("meta"), true, 1 << 20, 1ull << 30);
    ASSERT_TRUE(meta.ok()) << meta.status().ToString();
    meta_ = std::move(*meta);
    VolumeRecord volume;
    volume.info.volume_id = "vol-1";
    volume.info.size_bytes = 4 * kChunk;
    volume.info.lineage = 1;
    volume.info.head_epoch = 5;
    volumes_["vol-1"] = std::move(volume);
    SnapshotRecord snapshot;
    snapshot.info.snapshot_id = "snap-1";
    snapshot.info.volume_size_bytes = 4 * kChunk;
    snapshot.info.lineage = 1;
    snapshot.info.epoch = 3;
    snapshots_["snap-1"] = std::move(snapshot);
    lineages_[1].volume_id = "vol-1";
    lineages_[1].pins[3] = 1;
    versions_ = {{{1, 0, 3}, {0, 0, 0}}, {{1, 0, 5}, {1, 0, 0}}, {{1, 1, 2}, {2, 0, 0}}};
  }

  CheckReport Check() {
    CommitBatch batch;
    for (const auto& [key, value] : versions_) {
      batch.map_changes.push_back({key, value, false});
    }
    EXPECT_TRUE(meta_->Commit(batch).ok());
    ChunkAllocator alloc(8, 8, free_);
    return PoolCheck({volumes_, snapshots_, lineages_, meta_.get(), alloc, kChunk, 0xffff,
                      overlay_empty_})
        .Run();
  }

  // The check reports `what` (and the test shows everything it reported otherwise).
  void ExpectProblem(const std::string& what) {
    CheckReport report = Check();
    std::string all;
    for (const std::string& p : report.problems) {
      all += p + "\n";
      if (p.find(what) != std::string::npos) {
        return;
      }
    }
    ADD_FAILURE() << "no problem mentions '" << what << "'; reported:\n" << all;
  }

  test::TempDir dir_;
  std::unique_ptr<MetaStore> meta_;
  std::map<std::string, VolumeRecord> volumes_;
  std::map<std::string, SnapshotRecord> snapshots_;
  std::map<uint64_t, LineageState> lineages_;
  std::map<MapKey, MapValue> versions_;
  std::vector<uint64_t> free_ = {3, 4, 5, 6, 7};
  bool overlay_empty_ = true;
};

TEST_F(PoolCheckTest, AConsistentPoolPasses) {
  CheckReport report = Check();
  EXPECT_TRUE(report.problems.empty()) << report.problems.front();
  EXPECT_EQ(report.versions, 3u);
  EXPECT_EQ(report.data_chunks, 3u);
  EXPECT_EQ(report.volumes, 1u);
}

TEST_F(PoolCheckTest, RecordsMustReferToEachOther) {
  lineages_[2].parent = 9;  // a clone whose source is gone
  ExpectProblem("clone lineage 2 has no source");
  snapshots_["snap-1"].info.epoch = 9;
  ExpectProblem("snapshot snap-1 has no lineage or a future epoch");
  lineages_.erase(1);
  ExpectProblem("volume vol-1 has no lineage");
}

TEST_F(PoolCheckTest, VersionsStayWithinTheirLineage) {
  versions_[{1, 2, 6}] = {3, 0, 0};
  free_ = {4, 5, 6, 7};
  ExpectProblem("version born at epoch 6 after the head of lineage 1");
}

TEST_F(PoolCheckTest, VersionsStayWithinTheVolumeAndKnownLineages) {
  versions_[{1, 4, 2}] = {3, MapValue::kTombstone, 0};  // chunk 4 of a 4-chunk volume
  ExpectProblem("version past the end of lineage 1");
  versions_[{7, 0, 1}] = {0, MapValue::kTombstone, 0};
  ExpectProblem("map entry for unknown lineage 7");
}

TEST_F(PoolCheckTest, APhysicalChunkIsMappedOnce) {
  versions_[{1, 2, 4}] = {0, 0, 0};
  ExpectProblem("physical chunk 0 mapped twice");
  versions_[{1, 3, 4}] = {8, 0, 0};
  ExpectProblem("physical chunk 8 past the frontier");
}

TEST_F(PoolCheckTest, NoVersionIsDead) {
  versions_[{1, 0, 4}] = {3, 0, 0};  // between the snapshot's epoch 3 and the head's 5: unseen
  free_ = {4, 5, 6, 7};
  ExpectProblem("dead version (lineage 1, chunk 0, born 4)");
}

TEST_F(PoolCheckTest, APartialVersionIsTheHeadsNewestOverAWholeOne) {
  versions_[{1, 1, 2}] = {2, MapValue::kPartial, 1};  // the oldest version of chunk 1
  ExpectProblem("partial version (lineage 1, chunk 1) is not the head's newest");
}

TEST_F(PoolCheckTest, APartialVersionNamesOnlyUnitsOfItsChunk) {
  versions_[{1, 0, 5}] = {1, MapValue::kPartial, 0x10000};
  ExpectProblem("partial version of chunk 0 names units past it");
}

TEST_F(PoolCheckTest, SpaceIsAccountedFor) {
  free_ = {3, 4, 5, 6};  // chunk 7 leaked
  ExpectProblem("space accounting: 3 mapped + 4 free + 0 pending != frontier 8");
  free_ = {2, 3, 4, 5, 6, 7};  // chunk 2 both mapped and free
  ExpectProblem("free chunk 2 is also mapped");
  free_ = {3, 4, 5, 6, 7};
  overlay_empty_ = false;
  ExpectProblem("uncommitted map changes remain");
}

TEST_F(PoolCheckTest, ProblemsAreBoundedNotTruncatedAtTheFirst) {
  for (uint64_t chunk = 10; chunk < 300; chunk++) {
    versions_[{1, chunk, 1}] = {0, MapValue::kTombstone, 0};
  }
  CheckReport report = Check();
  EXPECT_EQ(report.problems.size(), PoolCheck::kMaxProblems);
  EXPECT_EQ(report.versions, 293u);  // the scan went on past the bound
}

}  // namespace
}  // namespace strata
