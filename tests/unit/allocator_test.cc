// ChunkAllocator on its own: a seeded random walk through every transition of the commit
// protocol, checked after each step against a model in which every chunk below the frontier is in
// exactly one state (docs/design.md §3). A chunk in use or pending is never granted, a grant
// marked clean was clean or new, and the capacity bound holds.
#include "store/allocator.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "store/zero_hints.h"

namespace strata {
namespace {

enum class State { kInUse, kPending, kPunched, kClean, kDirty };

class AllocatorModel {
 public:
  AllocatorModel(uint64_t frontier, uint64_t capacity, std::vector<uint64_t> dirty)
      : alloc_(frontier, capacity, dirty), capacity_(capacity) {
    for (uint64_t c = 0; c < frontier; c++) {
      state_[c] = State::kInUse;
    }
    for (uint64_t c : dirty) {
      state_[c] = State::kDirty;
    }
  }

  void Allocate(bool prefer_dirty) {
    const uint64_t in_use = Count(State::kInUse) + Count(State::kPending);
    auto grant = alloc_.Allocate(prefer_dirty);
    if (capacity_ != 0 && in_use >= capacity_) {
      ASSERT_FALSE(grant.has_value()) << "granted past the capacity";
      return;
    }
    ASSERT_TRUE(grant.has_value());
    auto it = state_.find(grant->phys);
    if (it == state_.end()) {
      ASSERT_TRUE(grant->clean) << "a new chunk reads as zeros";
    } else {
      ASSERT_NE(it->second, State::kInUse) << grant->phys;
      ASSERT_NE(it->second, State::kPending) << grant->phys << ": freed, not yet committed";
      if (grant->clean) {
        ASSERT_EQ(it->second, State::kClean) << grant->phys;
      }
    }
    state_[grant->phys] = State::kInUse;
    granted_.push_back(grant->phys);
  }
  void ReturnOrFree(std::mt19937_64& rng) {
    if (granted_.empty()) {
      return;
    }
    size_t i = rng() % granted_.size();
    uint64_t phys = granted_[i];
    granted_.erase(granted_.begin() + static_cast<std::ptrdiff_t>(i));
    if (rng() % 3 == 0) {
      alloc_.ReturnUnmapped(phys);
      state_[phys] = State::kDirty;
    } else {
      alloc_.FreeAfterCommit(phys, rng() % 2 == 0);
      state_[phys] = State::kPending;
    }
  }
  // One commit: punched become clean; pending are punched (or fail to be: dirty), or the whole
  // commit fails and both lists go back.
  void Commit(std::mt19937_64& rng) {
    std::vector<uint64_t> trimmed;
    std::vector<uint64_t> pending = alloc_.TakePending(&trimmed);
    std::vector<uint64_t> punched = alloc_.TakePunched();
    for (uint64_t c : pending) {
      ASSERT_EQ(state_[c], State::kPending) << c;
    }
    for (uint64_t c : trimmed) {
      ASSERT_TRUE(std::count(pending.begin(), pending.end(), c)) << "trimmed is a subset";
    }
    for (uint64_t c : punched) {
      ASSERT_EQ(state_[c], State::kPunched) << c;
    }
    switch (rng() % 4) {
      case 0:  // the commit failed
        alloc_.RestorePending(pending, trimmed);
        alloc_.AddPunched(punched);
        return;
      case 1:  // punching failed
        alloc_.AddClean(punched);
        alloc_.AddDirty(pending);
        Set(punched, State::kClean);
        Set(pending, State::kDirty);
        return;
      default:
        alloc_.AddClean(punched);
        alloc_.AddPunched(pending);
        Set(punched, State::kClean);
        Set(pending, State::kPunched);
    }
  }
  void Check() {
    EXPECT_EQ(alloc_.frontier(), state_.empty() ? 0 : state_.rbegin()->first + 1);
    EXPECT_EQ(alloc_.free_chunks(),
              Count(State::kClean) + Count(State::kDirty) + Count(State::kPunched));
    EXPECT_EQ(alloc_.pending_chunks(), Count(State::kPending));
    EXPECT_EQ(alloc_.dirty_chunks(), Count(State::kDirty));
    std::vector<uint64_t> free = alloc_.AllFree();
    std::set<uint64_t> unique(free.begin(), free.end());
    EXPECT_EQ(unique.size(), free.size()) << "a chunk is free twice";
    for (uint64_t c : free) {
      State s = state_[c];
      EXPECT_TRUE(s == State::kClean || s == State::kDirty || s == State::kPunched) << c;
    }
  }

 private:
  uint64_t Count(State s) const {
    return static_cast<uint64_t>(
        std::count_if(state_.begin(), state_.end(), [s](auto& e) { return e.second == s; }));
  }
  void Set(const std::vector<uint64_t>& chunks, State s) {
    for (uint64_t c : chunks) {
      state_[c] = s;
    }
  }

  ChunkAllocator alloc_;
  const uint64_t capacity_;
  std::map<uint64_t, State> state_;
  std::vector<uint64_t> granted_;
};

TEST(AllocatorTest, RandomTransitionsKeepEveryChunkInOneState) {
  for (uint64_t seed = 1; seed <= 200; seed++) {
    std::mt19937_64 rng(seed);
    const uint64_t frontier = rng() % 64;
    std::vector<uint64_t> dirty;
    for (uint64_t c = 0; c < frontier; c++) {
      if (rng() % 3 == 0) {
        dirty.push_back(c);
      }
    }
    const uint64_t capacity = rng() % 2 == 0 ? 0 : frontier + rng() % 64 + 1;
    AllocatorModel model(frontier, capacity, dirty);
    for (int step = 0; step < 400; step++) {
      switch (rng() % 4) {
        case 0:
        case 1:
          model.Allocate(rng() % 2 == 0);
          break;
        case 2:
          model.ReturnOrFree(rng);
          break;
        default:
          model.Commit(rng);
      }
      if (::testing::Test::HasFatalFailure()) {
        FAIL() << "seed " << seed << " step " << step;
      }
      model.Check();
    }
  }
}

TEST(AllocatorTest, CapacityRefusesAndFreesMakeRoomAgain) {
  ChunkAllocator alloc(0, 2, {});
  auto a = alloc.Allocate();
  auto b = alloc.Allocate();
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(alloc.Allocate().has_value());
  alloc.FreeAfterCommit(a->phys, false);
  EXPECT_FALSE(alloc.Allocate().has_value()) << "pending chunks still count";
  std::vector<uint64_t> trimmed;
  alloc.AddPunched(alloc.TakePending(&trimmed));
  // Once the free is committed the capacity has room again (the punched chunk itself is reused
  // only after a sync makes it clean; until then a new chunk is granted).
  auto c = alloc.Allocate();
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->clean);
  EXPECT_EQ(alloc.used_chunks(), 2u);
  EXPECT_FALSE(alloc.Allocate().has_value());
  alloc.AddClean(alloc.TakePunched());
  alloc.FreeAfterCommit(c->phys, false);
  alloc.AddPunched(alloc.TakePending(&trimmed));
  auto d = alloc.Allocate();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->phys, a->phys) << "a clean chunk is reused before the file grows";
}

// The bounded zero hints.
TEST(ZeroHintsTest, AddClearAndBound) {
  ZeroHints hints;
  hints.Add(5, 0b0110);
  hints.Add(5, 0b1000);
  EXPECT_EQ(hints.Get(5), 0b1110u);
  hints.Clear(5, 0b0010);
  EXPECT_EQ(hints.Get(5), 0b1100u);
  hints.Clear(5, UINT32_MAX);
  EXPECT_EQ(hints.Get(5), 0u);
  EXPECT_EQ(hints.size(), 0u) << "an empty hint is dropped";
  for (uint64_t p = 0; p < ZeroHints::kMaxZeroHints + 10; p++) {
    hints.Add(p, 1);
  }
  EXPECT_EQ(hints.size(), ZeroHints::kMaxZeroHints) << "bounded: past it a chunk shows as data";
  EXPECT_EQ(hints.Get(ZeroHints::kMaxZeroHints + 5), 0u);
}

}  // namespace
}  // namespace strata
