// MetaStore on its own: the header, the epoch-versioned map and its change index, record tables,
// map growth and its bound, and what survives a reopen. Each lookup's contract is checked against
// a brute-force answer over the same versions.
#include "meta/meta_store.h"

#include <map>
#include <random>

#include <gtest/gtest.h>

#include "testutil/test_util.h"

namespace strata {
namespace {

using test::TempDir;

std::unique_ptr<MetaStore> MustOpen(const std::string& dir, bool create,
                                    uint64_t map_bytes = 1 << 20, uint64_t max_bytes = 1ull << 30) {
  auto store = MetaStore::Open(dir, create, map_bytes, max_bytes);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(*store) : nullptr;
}

PoolHeader Header() {
  PoolHeader h;
  h.format_version = MetaStore::kFormatVersion;
  h.chunk_size_bytes = 65536;
  h.capacity_bytes = 1 << 30;
  h.frontier_chunks = 7;
  h.next_lineage = 3;
  h.pool_uuid = "uuid-1";
  return h;
}

TEST(MetaStoreTest, HeaderRoundTripsAndAMissingOneIsNotFound) {
  TempDir dir;
  auto store = MustOpen(dir.Sub("m"), true);
  EXPECT_EQ(store->ReadHeader().status().code(), Status::Code::kNotFound);
  CommitBatch batch;
  batch.header = Header();
  ASSERT_TRUE(store->Commit(batch).ok());
  store.reset();
  store = MustOpen(dir.Sub("m"), false);
  auto h = store->ReadHeader();
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->frontier_chunks, 7u);
  EXPECT_EQ(h->next_lineage, 3u);
  EXPECT_EQ(h->pool_uuid, "uuid-1");
  EXPECT_EQ(MetaStore::Open(dir.Sub("absent"), false, 1 << 20, 1 << 30).status().code(),
            Status::Code::kNotFound);
}

// FindVersion, ScanNewest and ScanChanges against brute force over a random history.
TEST(MetaStoreTest, LookupsMatchBruteForce) {
  TempDir dir;
  auto store = MustOpen(dir.Sub("m"), true);
  std::mt19937_64 rng(42);
  std::map<MapKey, MapValue> model;
  for (int round = 0; round < 20; round++) {
    CommitBatch batch;
    for (int i = 0; i < 50; i++) {
      MapKey key{1 + rng() % 3, rng() % 40, 1 + rng() % 30};
      MapValue value{rng() % 1000, rng() % 5 == 0 ? MapValue::kTombstone : 0u, 0};
      bool erase = rng() % 6 == 0;
      batch.map_changes.push_back({key, value, erase});
      if (erase) {
        model.erase(key);
      } else {
        model[key] = value;
      }
    }
    ASSERT_TRUE(store->Commit(batch).ok());
  }
  auto newest = [&](uint64_t lineage, uint64_t chunk, uint64_t max_birth) {
    std::optional<std::pair<uint64_t, MapValue>> best;
    for (auto& [k, v] : model) {
      if (k.lineage == lineage && k.chunk == chunk && k.birth <= max_birth) {
        best = std::make_pair(k.birth, v);
      }
    }
    return best;
  };
  for (uint64_t lineage = 1; lineage <= 4; lineage++) {
    for (uint64_t chunk = 0; chunk < 41; chunk++) {
      for (uint64_t max_birth : {0ull, 5ull, 15ull, 31ull}) {
        auto got = store->FindVersion(lineage, chunk, max_birth);
        ASSERT_TRUE(got.ok());
        auto want = newest(lineage, chunk, max_birth);
        ASSERT_EQ(got->has_value(), want.has_value())
            << lineage << "/" << chunk << "@" << max_birth;
        if (want) {
          EXPECT_EQ((*got)->birth, want->first);
          EXPECT_EQ((*got)->value.phys, want->second.phys);
          EXPECT_EQ((*got)->value.flags, want->second.flags);
        }
      }
    }
    std::vector<uint64_t> scanned;
    ASSERT_TRUE(store
                    ->ScanNewest(lineage, 5, 30, 15,
                                 [&](uint64_t chunk, const Version& v) {
                                   auto want = newest(lineage, chunk, 15);
                                   EXPECT_TRUE(want && want->first == v.birth) << chunk;
                                   scanned.push_back(chunk);
                                   return true;
                                 })
                    .ok());
    std::vector<uint64_t> expected;
    for (uint64_t chunk = 5; chunk < 30; chunk++) {
      if (newest(lineage, chunk, 15)) {
        expected.push_back(chunk);
      }
    }
    EXPECT_EQ(scanned, expected) << "lineage " << lineage;
    size_t changes = 0;
    ASSERT_TRUE(store
                    ->ScanChanges(lineage, 10, 0, 20,
                                  [&](const MapKey& k) {
                                    EXPECT_TRUE(model.count(k)) << "a change without a version";
                                    EXPECT_TRUE(k.birth >= 10 && k.birth <= 20);
                                    changes++;
                                    return true;
                                  })
                    .ok());
    size_t want_changes = 0;
    for (auto& [k, v] : model) {
      want_changes += k.lineage == lineage && k.birth >= 10 && k.birth <= 20;
    }
    EXPECT_EQ(changes, want_changes) << "lineage " << lineage;
  }
  // Erasing a lineage removes its versions and changes, and nothing else.
  CommitBatch erase;
  erase.erase_lineages = {2};
  ASSERT_TRUE(store->Commit(erase).ok());
  size_t left = 0;
  ASSERT_TRUE(store
                  ->ForEachVersion([&](const MapKey& k, const MapValue&) {
                    EXPECT_NE(k.lineage, 2u);
                    left++;
                    return Status::OK();
                  })
                  .ok());
  size_t want_left = 0;
  for (auto& [k, v] : model) {
    want_left += k.lineage != 2;
  }
  EXPECT_EQ(left, want_left);
}

TEST(MetaStoreTest, MapGrowsUpToItsBoundThenNoSpaceAndStaysUsable) {
  TempDir dir;
  auto store = MustOpen(dir.Sub("m"), true, 64 << 10, 512 << 10);
  uint64_t chunk = 0;
  Status s;
  for (int round = 0; round < 200 && s.ok(); round++) {
    CommitBatch batch;
    for (int i = 0; i < 200; i++, chunk++) {
      batch.map_changes.push_back({MapKey{1, chunk, 1}, MapValue{chunk, 0, 0}, false});
    }
    s = store->Commit(batch);
  }
  EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
  EXPECT_GT(store->map_bytes(), 64u << 10) << "the map grew before giving up";
  EXPECT_LE(store->map_bytes(), 512u << 10);
  // A failed commit applies nothing; a small erase still fits and the store reads on.
  CommitBatch small;
  small.erase_lineages = {1};
  EXPECT_TRUE(store->Commit(small).ok());
  EXPECT_FALSE(store->FindVersion(1, 0, 1)->has_value());
}

TEST(MetaStoreTest, RecordTablesPersistAndUnknownOnesAreRefused) {
  TempDir dir;
  {
    auto store = MustOpen(dir.Sub("m"), true);
    EXPECT_EQ(store->ReadRecords("notes").status().code(), Status::Code::kInvalidArgument);
    ASSERT_TRUE(store->OpenLayerTable("notes").ok());
    CommitBatch batch;
    batch.records = {{kVolumesTable, "vol-1", "{}"}, {"notes", "k", "v"}};
    ASSERT_TRUE(store->Commit(batch).ok());
    CommitBatch bad;
    bad.records = {{"unopened", "k", "v"}};
    EXPECT_EQ(store->Commit(bad).code(), Status::Code::kInvalidArgument);
  }
  auto store = MustOpen(dir.Sub("m"), false);
  EXPECT_EQ(store->ReadRecords(kVolumesTable)->size(), 1u);
  ASSERT_TRUE(store->OpenLayerTable("notes").ok());
  EXPECT_EQ(store->ReadRecords("notes")->front().second, "v");
}

}  // namespace
}  // namespace strata
