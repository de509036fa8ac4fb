#include "store/chunk_map.h"

#include <algorithm>

#include "util/check.h"

namespace strata {

uint64_t ChunkMap::Hash(uint64_t lineage, uint64_t chunk) {
  uint64_t h = (lineage * 0x9E3779B97F4A7C15ull) ^ (chunk * 0xC2B2AE3D27D4EB4Full);
  return h ^ (h >> 29);
}

bool ChunkMap::TryTake(int32_t* stripe, bool exclusive) {
  if (exclusive) {
    if (*stripe != 0) {
      return false;
    }
    *stripe = -1;
    return true;
  }
  if (*stripe < 0) {
    return false;
  }
  STRATA_CHECK(*stripe < INT32_MAX);
  ++*stripe;
  return true;
}

bool ChunkMap::TryLock(uint64_t lineage, uint64_t chunk, bool exclusive) {
  Shard& shard = ShardOf(lineage, chunk);
  MutexLock lock(&shard.mu);
  return TryTake(&shard.stripes[StripeOf(lineage, chunk)], exclusive);
}

bool ChunkMap::TakeOrQueueHeld(Shard& shard, size_t stripe, bool exclusive, const Waiter& waiter) {
  STRATA_CHECK(waiter.loop != nullptr && waiter.fn != nullptr);
  if (TryTake(&shard.stripes[stripe], exclusive)) {
    return true;
  }
  // Held: the holder's Unlock (under this mutex, so it cannot be missed) posts the retry.
  shard.waiters.push_back(Queued{stripe, waiter});
  return false;
}

bool ChunkMap::LockOrQueue(uint64_t lineage, uint64_t chunk, bool exclusive, const Waiter& waiter) {
  Shard& shard = ShardOf(lineage, chunk);
  MutexLock lock(&shard.mu);
  return TakeOrQueueHeld(shard, StripeOf(lineage, chunk), exclusive, waiter);
}

bool ChunkMap::LockAndFindOwn(uint64_t lineage, uint64_t chunk, bool exclusive, uint64_t max_birth,
                              const Waiter& waiter, Result<std::optional<Version>>* found) {
  Shard& shard = ShardOf(lineage, chunk);
  MutexLock lock(&shard.mu);
  if (!TakeOrQueueHeld(shard, StripeOf(lineage, chunk), exclusive, waiter)) {
    return false;
  }
  *found = NewestOwnHeld(shard, lineage, chunk, max_birth);
  return true;
}

void ChunkMap::Unlock(uint64_t lineage, uint64_t chunk, bool exclusive) {
  Shard& shard = ShardOf(lineage, chunk);
  const size_t stripe = StripeOf(lineage, chunk);
  std::vector<Waiter> wake;  // (no allocation unless someone waits)
  {
    MutexLock lock(&shard.mu);
    int32_t& s = shard.stripes[stripe];
    if (exclusive) {
      STRATA_CHECK(s == -1);
      s = 0;
    } else {
      STRATA_CHECK(s > 0);
      s--;
    }
    if (s == 0 && !shard.waiters.empty()) {
      // Every waiter of the stripe retries: readers may all get it, or one writer.
      auto moved = std::stable_partition(shard.waiters.begin(), shard.waiters.end(),
                                         [stripe](const Queued& q) { return q.stripe != stripe; });
      for (auto it = moved; it != shard.waiters.end(); ++it) {
        wake.push_back(it->waiter);
      }
      shard.waiters.erase(moved, shard.waiters.end());
    }
  }
  for (const Waiter& w : wake) {
    w.loop->Post([fn = w.fn, arg = w.arg] { fn(arg); });
  }
}

Result<std::optional<Version>> ChunkMap::NewestOwn(uint64_t lineage, uint64_t chunk,
                                                   uint64_t max_birth) {
  Shard& shard = ShardOf(lineage, chunk);
  MutexLock lock(&shard.mu);
  return NewestOwnHeld(shard, lineage, chunk, max_birth);
}

Result<std::optional<Version>> ChunkMap::NewestOwnHeld(Shard& shard, uint64_t lineage,
                                                       uint64_t chunk, uint64_t max_birth) {
  uint64_t upper = max_birth;
  while (upper > 0) {
    const OverlayEntry* pending = nullptr;
    uint64_t pending_birth = 0;
    auto it = shard.overlay.upper_bound(MapKey{lineage, chunk, upper});
    if (it != shard.overlay.begin()) {
      --it;
      if (it->first.lineage == lineage && it->first.chunk == chunk) {
        pending = &it->second;
        pending_birth = it->first.birth;
      }
    }
    STRATA_ASSIGN_OR_RETURN(std::optional<Version> committed,
                            meta_->FindVersion(lineage, chunk, upper));
    if (pending != nullptr && (!committed || pending_birth >= committed->birth)) {
      if (!pending->erased) {
        return std::optional<Version>(Version{pending_birth, pending->value});
      }
      upper = pending_birth - 1;  // the committed version with this key is deleted: look older
      continue;
    }
    STRATA_CHECK(!committed || committed->birth <= max_birth);
    return committed;
  }
  return std::optional<Version>();
}

size_t ChunkMap::Put(const MapKey& key, const MapValue& value) {
  Shard& shard = ShardOf(key.lineage, key.chunk);
  MutexLock lock(&shard.mu);
  auto [it, added] = shard.overlay.try_emplace(key);
  it->second.value = value;
  it->second.erased = false;
  it->second.gen = gen_.fetch_add(1, std::memory_order_relaxed) + 1;
  return added ? size_.fetch_add(1, std::memory_order_relaxed) + 1 : size();
}

void ChunkMap::Erase(const MapKey& key) {
  Shard& shard = ShardOf(key.lineage, key.chunk);
  MutexLock lock(&shard.mu);
  auto [it, added] = shard.overlay.try_emplace(key);
  it->second.value = MapValue{};
  it->second.erased = true;
  it->second.gen = gen_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (added) {
    size_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ChunkMap::CollectPending(std::vector<CommitBatch::MapChange>* changes,
                              std::vector<std::pair<MapKey, uint64_t>>* written) {
  const size_t first = changes->size();
  changes->reserve(first + size());
  for (Shard& shard : shards_) {
    MutexLock lock(&shard.mu);
    for (const auto& [key, e] : shard.overlay) {
      changes->push_back(CommitBatch::MapChange{key, e.value, e.erased});
      written->emplace_back(key, e.gen);
    }
  }
  // LMDB writes in key order touch each page once.
  std::sort(changes->begin() + static_cast<long>(first), changes->end(),
            [](const CommitBatch::MapChange& a, const CommitBatch::MapChange& b) {
              return a.key < b.key;
            });
}

void ChunkMap::DropCommitted(const std::vector<std::pair<MapKey, uint64_t>>& written) {
  for (const auto& [key, gen] : written) {
    Shard& shard = ShardOf(key.lineage, key.chunk);
    MutexLock lock(&shard.mu);
    auto it = shard.overlay.find(key);
    if (it != shard.overlay.end() && it->second.gen == gen) {
      shard.overlay.erase(it);
      STRATA_CHECK(size_.fetch_sub(1, std::memory_order_relaxed) > 0);
    }
  }
}

std::vector<std::pair<MapKey, OverlayEntry>> ChunkMap::PendingInRange(uint64_t lineage,
                                                                      uint64_t first_chunk,
                                                                      uint64_t end_chunk) {
  std::vector<std::pair<MapKey, OverlayEntry>> out;
  for (Shard& shard : shards_) {
    MutexLock lock(&shard.mu);
    for (auto it = shard.overlay.lower_bound(MapKey{lineage, first_chunk, 0});
         it != shard.overlay.end() && it->first.lineage == lineage && it->first.chunk < end_chunk;
         ++it) {
      out.push_back(*it);
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

void ChunkMap::DropLineage(uint64_t lineage) {
  for (Shard& shard : shards_) {
    MutexLock lock(&shard.mu);
    auto it = shard.overlay.lower_bound(MapKey{lineage, 0, 0});
    while (it != shard.overlay.end() && it->first.lineage == lineage) {
      it = shard.overlay.erase(it);
      STRATA_CHECK(size_.fetch_sub(1, std::memory_order_relaxed) > 0);
    }
  }
}

}  // namespace strata
