// ChunkMap on its own, over a real MetaStore: chunk locks (shared and exclusive exclude each
// other, a busy chunk queues its retry and the unlock posts it to the waiter's loop), and lookups
// of the overlay over the committed map through a commit and its drop, from many threads at once.
#include "store/chunk_map.h"

#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "testutil/test_util.h"

namespace strata {
namespace {

using test::TempDir;

struct Fixture {
  TempDir dir;
  std::unique_ptr<MetaStore> meta;
  std::unique_ptr<ChunkMap> map;
  Fixture() {
    auto store = MetaStore::Open(dir.Sub("m"), true, 1 << 20, 1ull << 30);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    meta = std::move(*store);
    map = std::make_unique<ChunkMap>(meta.get());
  }
  // What a pool commit does: collect, write to LMDB, drop what was written.
  void Commit() {
    CommitBatch batch;
    std::vector<std::pair<MapKey, uint64_t>> written;
    map->CollectPending(&batch.map_changes, &written);
    ASSERT_TRUE(meta->Commit(batch).ok());
    map->DropCommitted(written);
  }
};

TEST(ChunkMapTest, SharedAndExclusiveExcludeEachOther) {
  Fixture f;
  ChunkMap& locks = *f.map;
  EXPECT_TRUE(locks.TryLock(1, 7, false));
  EXPECT_TRUE(locks.TryLock(1, 7, false));
  EXPECT_FALSE(locks.TryLock(1, 7, true)) << "readers hold it";
  locks.Unlock(1, 7, false);
  locks.Unlock(1, 7, false);
  EXPECT_TRUE(locks.TryLock(1, 7, true));
  EXPECT_FALSE(locks.TryLock(1, 7, false)) << "a writer holds it";
  EXPECT_FALSE(locks.TryLock(1, 7, true));
  locks.Unlock(1, 7, true);
  // Many distinct chunks at once: a conflict is only ever a shared stripe, and every lock comes
  // back (each stripe ends free: an exclusive lock of every chunk succeeds again).
  const size_t stripes = ChunkMap::kShardsPerLineage * ChunkMap::kStripesPerShard;  // a lineage's
  std::vector<uint64_t> held;
  for (uint64_t chunk = 0; chunk < 2 * stripes; chunk++) {
    if (locks.TryLock(2, chunk, true)) {
      held.push_back(chunk);
    }
  }
  EXPECT_GT(held.size(), stripes / 2);
  EXPECT_LE(held.size(), stripes);
  for (uint64_t chunk : held) {
    locks.Unlock(2, chunk, true);
  }
  for (uint64_t chunk : held) {
    EXPECT_TRUE(locks.TryLock(2, chunk, true));
    locks.Unlock(2, chunk, true);
  }
}

TEST(ChunkMapTest, UnlockingWhatIsNotHeldStopsTheProcess) {
  Fixture f;
  EXPECT_DEATH(f.map->Unlock(1, 1, true), "");
  EXPECT_DEATH(f.map->Unlock(1, 1, false), "");
}

TEST(ChunkMapTest, ABusyChunkQueuesItsRetryAndTheUnlockPostsIt) {
  Fixture f;
  auto loop = EventLoop::Create(nullptr, 8);
  ASSERT_TRUE(loop.ok());
  ASSERT_TRUE(f.map->TryLock(3, 9, true));
  int retried = 0;
  const ChunkMap::Waiter waiter{loop->get(), [](void* n) { ++*static_cast<int*>(n); }, &retried};
  EXPECT_FALSE(f.map->LockOrQueue(3, 9, false, waiter));
  Result<std::optional<Version>> found = std::optional<Version>();
  EXPECT_FALSE(f.map->LockAndFindOwn(3, 9, true, 5, waiter, &found));
  (*loop)->RunOnce(0);
  EXPECT_EQ(retried, 0) << "nothing is polled: the waiters sleep until the unlock";
  // The unlock comes from another thread, as a request on another loop would.
  std::thread([&] { f.map->Unlock(3, 9, true); }).join();
  (*loop)->RunOnce(1000);
  EXPECT_EQ(retried, 2) << "every waiter of the stripe retries";
  f.map->Put(MapKey{3, 9, 4}, MapValue{1, 0, 0});
  ASSERT_TRUE(f.map->LockAndFindOwn(3, 9, true, 5, waiter, &found)) << "free now";
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->birth, 4u) << "taken and looked up in one visit";
  f.map->Unlock(3, 9, true);
  (*loop)->RunOnce(0);
  EXPECT_EQ(retried, 2) << "an unlock with no waiter posts nothing";
}

TEST(ChunkMapTest, TheOverlayHidesAndAddsOverTheCommittedMapThroughACommit) {
  Fixture f;
  auto newest = [&](uint64_t chunk, uint64_t max_birth) {
    auto v = f.map->NewestOwn(1, chunk, max_birth);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() && *v ? (*v)->birth : 0;
  };
  f.map->Put(MapKey{1, 5, 2}, MapValue{10, 0, 0});
  f.map->Put(MapKey{1, 5, 4}, MapValue{11, 0, 0});
  EXPECT_EQ(f.map->size(), 2u);
  EXPECT_EQ(newest(5, 3), 2u);
  EXPECT_EQ(newest(5, 9), 4u);
  f.Commit();
  EXPECT_EQ(f.map->size(), 0u);
  EXPECT_EQ(newest(5, 9), 4u) << "from LMDB now";
  f.map->Erase(MapKey{1, 5, 4});
  EXPECT_EQ(newest(5, 9), 2u) << "the overlay's erase hides the committed version";
  f.map->Put(MapKey{1, 6, 3}, MapValue{12, 0, 0});
  auto pending = f.map->PendingInRange(1, 0, 100);
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_TRUE(pending[0].first < pending[1].first) << "in key order across shards";
  f.Commit();
  EXPECT_EQ(newest(5, 9), 2u);
  EXPECT_EQ(newest(6, 9), 3u);
  f.map->Put(MapKey{2, 1, 1}, MapValue{13, 0, 0});
  f.map->DropLineage(2);
  EXPECT_EQ(f.map->size(), 0u);
}

// Readers on several threads look chunks up while one writer puts new versions and commits them:
// every lookup sees a version at least as new as the last one it saw (never a committed version
// lost between the overlay's drop and the LMDB read).
TEST(ChunkMapTest, LookupsStayMonotonicWhileCommitsDropTheOverlay) {
  Fixture f;
  constexpr uint64_t kChunks = 64, kRounds = 200;
  for (uint64_t c = 0; c < kChunks; c++) {
    f.map->Put(MapKey{1, c, 1}, MapValue{c, 0, 0});
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> lookups{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; t++) {
    readers.emplace_back([&] {
      std::vector<uint64_t> seen(kChunks, 1);
      while (!stop.load()) {
        for (uint64_t c = 0; c < kChunks; c++) {
          auto v = f.map->NewestOwn(1, c, UINT64_MAX);
          ASSERT_TRUE(v.ok() && v->has_value());
          ASSERT_GE((*v)->birth, seen[c]);
          seen[c] = (*v)->birth;
          lookups++;
        }
      }
    });
  }
  for (uint64_t round = 2; round <= kRounds; round++) {
    for (uint64_t c = round % 4; c < kChunks; c += 4) {
      f.map->Put(MapKey{1, c, round}, MapValue{c, 0, 0});
    }
    if (round % 8 == 0) {
      f.Commit();
    }
  }
  stop = true;
  for (std::thread& t : readers) {
    t.join();
  }
  EXPECT_GT(lookups.load(), 0u);
}

}  // namespace
}  // namespace strata
