// Space: the data files, the allocator and the zero hints as one part with its own locks. What the
// pool relies on: grants are unique across threads that allocate without the pool mutex, a grant
// has a file that covers it, the commit protocol's cut/undo/commit keeps every chunk accounted,
// and a new grant never inherits a zero hint.
#include "store/space.h"

#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace strata {
namespace {

constexpr uint32_t kChunk = 65536;

class SpaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-space-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::unique_ptr<Space> OpenSpace(uint64_t capacity_chunks) {
    auto space = std::make_unique<Space>(Env::Default(), dir_, kChunk, /*want_direct_io=*/false);
    EXPECT_TRUE(space->Open(0, capacity_chunks, {}).ok());
    return space;
  }
  std::string dir_;
};

TEST_F(SpaceTest, GrantsAreUniqueAcrossThreadsAndCapacityHolds) {
  constexpr int kThreads = 4, kEach = 200;
  auto space = OpenSpace(kThreads * kEach - 10);
  std::vector<std::vector<uint64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; i++) {
        if (auto g = space->Allocate(i % 2 == 0)) {
          got[t].push_back(g->phys);
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  std::set<uint64_t> all;
  for (const auto& v : got) {
    for (uint64_t p : v) {
      EXPECT_TRUE(all.insert(p).second) << "chunk " << p << " granted twice";
      EXPECT_TRUE(space->HandedOut(p));
      EXPECT_GE(space->FileOf(p), 0);
    }
  }
  EXPECT_EQ(all.size(), size_t{kThreads * kEach - 10});  // the capacity, exactly
  EXPECT_FALSE(space->Allocate().has_value());
  EXPECT_EQ(space->usage().used_chunks, all.size());
}

TEST_F(SpaceTest, CommitProtocolAccountsForEveryChunk) {
  auto space = OpenSpace(0);
  std::vector<uint64_t> phys;
  for (int i = 0; i < 8; i++) {
    phys.push_back(space->Allocate()->phys);
  }
  space->FreeAfterCommit(phys[0], /*by_trim=*/true);
  space->FreeAfterCommit(phys[1], /*by_trim=*/false);
  space->ReturnUnmapped(phys[2]);  // a failed write: free at once
  EXPECT_TRUE(space->FreesPending());
  Space::CommitCut cut = space->TakeForCommit();
  EXPECT_EQ(cut.freed.size(), 2u);
  EXPECT_EQ(cut.trimmed, std::vector<uint64_t>{phys[0]});
  EXPECT_EQ(cut.frontier, 8u);
  EXPECT_FALSE(space->FreesPending());
  space->Uncommitted(cut);  // a commit with no room: nothing moved
  EXPECT_TRUE(space->FreesPending());
  EXPECT_EQ(space->usage().free_chunks, 1u);
  cut = space->TakeForCommit();
  std::vector<uint64_t> to_punch = space->Committed(std::move(cut), /*warm_reserve=*/0);
  EXPECT_EQ(to_punch.size(), 2u);
  space->PunchFreed(to_punch);
  EXPECT_EQ(space->usage().free_chunks, 3u);
  EXPECT_EQ(space->usage().used_chunks, 5u);
  EXPECT_EQ(space->AllocatorCopy().frontier(), 8u);
}

TEST_F(SpaceTest, AWarmReserveStaysDirtyAndIsPreferredByWholeWrites) {
  auto space = OpenSpace(0);
  const uint64_t a = space->Allocate()->phys;
  const uint64_t b = space->Allocate()->phys;
  space->FreeAfterCommit(a, false);
  space->FreeAfterCommit(b, false);
  std::vector<uint64_t> to_punch = space->Committed(space->TakeForCommit(), /*warm_reserve=*/1);
  ASSERT_EQ(to_punch.size(), 1u);  // one kept dirty, one to punch
  auto g = space->Allocate(/*prefer_dirty=*/true);
  ASSERT_TRUE(g.has_value());
  EXPECT_FALSE(g->clean);
  EXPECT_NE(g->phys, to_punch[0]);
}

TEST_F(SpaceTest, ANewGrantCarriesNoZeroHint) {
  auto space = OpenSpace(0);
  const uint64_t a = space->Allocate()->phys;
  EXPECT_EQ(space->ZeroUnits(a), 0u);
  space->AddZeroUnits(a, 0b1010);
  EXPECT_EQ(space->ZeroUnits(a), 0b1010u);
  space->ClearZeroUnits(a, 0b0010);
  EXPECT_EQ(space->ZeroUnits(a), 0b1000u);
  space->ReturnUnmapped(a);
  auto again = space->Allocate(/*prefer_dirty=*/true);
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->phys, a);  // the dirty chunk comes back
  EXPECT_EQ(space->ZeroUnits(a), 0u) << "a stale hint would call new data zeros";
}

}  // namespace
}  // namespace strata
