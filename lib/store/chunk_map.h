// ChunkMap: the volume map as the data path sees it. It owns the overlay (map changes made in
// memory and not yet committed to LMDB) and the chunk locks, and answers "which version of
// (lineage, chunk) is the newest at or before this birth" from the overlay over the committed map
// (MetaStore). docs/design.md §4 shows where it sits.
//
// Locking. Both are cut into kShards shards: every birth of one chunk, and its lock, live in one
// shard under that shard's mutex, so requests on different chunks rarely meet and never meet on a
// pool-wide lock. A lineage has a group of kShardsPerLineage shards (chosen by its number, so
// volumes made one after another get different groups) and its chunks hash within the group:
// threads serving different volumes then touch different mutexes and cache lines (measured in
// bench/scaling_bench: random shards for all chunks bounced every mutex between the cores). A
// lookup holds its shard's mutex across the overlay and the LMDB read, so a commit dropping what it
// wrote (DropCommitted, after the LMDB transaction is durable) is seen whole or not at all.
//
// Writers of the overlay (Put, Erase, DropCommitted, DropLineage) must be serialised by the
// caller: the pool mutex. That keeps a commit's CollectPending, taken under the pool mutex with
// the allocator's pending frees, a consistent cut of both. Lookups need no outside lock.
//
// Chunk locks are reader/writer locks that never block a thread: a request that finds its chunk
// held is queued, and the holder's Unlock posts its retry to the request's own loop.
#ifndef STRATA_STORE_CHUNK_MAP_H_
#define STRATA_STORE_CHUNK_MAP_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "strata/event_loop.h"
#include "strata/status.h"

#include "meta/meta_store.h"
#include "util/mutex.h"

namespace strata {

struct OverlayEntry {
  MapValue value;
  bool erased = false;  // the committed version with this key is deleted
  uint64_t gen = 0;     // bumped on every change; a commit drops only what it wrote
};

class ChunkMap {
 public:
  static constexpr size_t kShards = 64;  // power of two
  static constexpr size_t kShardsPerLineage = 8;
  static constexpr size_t kStripesPerShard = 512;  // chunk lock stripes: 4,096 per lineage
  static_assert((kShards & (kShards - 1)) == 0 && (kStripesPerShard & (kStripesPerShard - 1)) == 0,
                "shard and stripe indexes are masks");

  // `meta` is not owned and must outlive the map.
  explicit ChunkMap(MetaStore* meta) : meta_(meta) {}
  ChunkMap(const ChunkMap&) = delete;
  ChunkMap& operator=(const ChunkMap&) = delete;

  // Who to wake when a busy chunk frees: fn(arg) is posted to `loop` (no allocation until then).
  struct Waiter {
    EventLoop* loop = nullptr;
    void (*fn)(void*) = nullptr;
    void* arg = nullptr;
  };

  // ---- chunk locks. Thread-safe. Two chunks may share a stripe: a false conflict costs a wait
  // for the other request, never correctness. ----
  // Takes (lineage, chunk) shared or exclusive; false (and nothing taken) when held otherwise.
  bool TryLock(uint64_t lineage, uint64_t chunk, bool exclusive);
  // The same, but when the chunk is held `retry` is queued and posted to `loop` once the holder
  // unlocks (the retry then tries again). True: taken now; false: queued. The queue needs no
  // bound of its own: each waiter is a request piece, and those are bounded where requests enter
  // (kMaxPiecesInFlight per request, the NBD server's connection and queue limits).
  bool LockOrQueue(uint64_t lineage, uint64_t chunk, bool exclusive, const Waiter& waiter);
  // LockOrQueue and, when taken, NewestOwn(lineage, chunk, max_birth) into *found, in one visit
  // to the shard (the data path's common case).
  bool LockAndFindOwn(uint64_t lineage, uint64_t chunk, bool exclusive, uint64_t max_birth,
                      const Waiter& waiter, Result<std::optional<Version>>* found);
  // REQUIRES: held as `exclusive` says (checked: a mismatch stops the process).
  void Unlock(uint64_t lineage, uint64_t chunk, bool exclusive);

  // ---- versions ----
  // Newest version of (lineage, chunk) within `lineage` alone with birth <= max_birth, overlay
  // over LMDB. Thread-safe; no pool-wide lock is taken.
  Result<std::optional<Version>> NewestOwn(uint64_t lineage, uint64_t chunk, uint64_t max_birth);
  // Overlay changes. REQUIRES: the caller serialises them (the pool mutex). Put returns the
  // overlay's size afterwards.
  size_t Put(const MapKey& key, const MapValue& value);
  void Erase(const MapKey& key);
  size_t size() const { return size_.load(std::memory_order_relaxed); }
  // Every overlay entry, in key order, as map changes with the generation each was copied at.
  void CollectPending(std::vector<CommitBatch::MapChange>* changes,
                      std::vector<std::pair<MapKey, uint64_t>>* written);
  // After a durable commit: drops the entries not changed since CollectPending.
  void DropCommitted(const std::vector<std::pair<MapKey, uint64_t>>& written);
  // Overlay entries of `lineage` with first_chunk <= chunk < end_chunk, in key order.
  std::vector<std::pair<MapKey, OverlayEntry>> PendingInRange(uint64_t lineage,
                                                              uint64_t first_chunk,
                                                              uint64_t end_chunk);
  // Drops every overlay entry of `lineage` (a lineage being erased).
  void DropLineage(uint64_t lineage);

 private:
  struct Queued {
    size_t stripe;
    Waiter waiter;
  };
  struct alignas(64) Shard {
    Mutex mu;
    std::map<MapKey, OverlayEntry> overlay GUARDED_BY(mu);
    int32_t stripes[kStripesPerShard] GUARDED_BY(mu) = {};  // >0 readers, -1 writer, 0 free
    std::vector<Queued> waiters GUARDED_BY(mu);
  };
  static uint64_t Hash(uint64_t lineage, uint64_t chunk);
  Shard& ShardOf(uint64_t lineage, uint64_t chunk) {
    const size_t group = lineage % (kShards / kShardsPerLineage);
    return shards_[group * kShardsPerLineage + (Hash(lineage, chunk) & (kShardsPerLineage - 1))];
  }
  static size_t StripeOf(uint64_t lineage, uint64_t chunk) {
    return (Hash(lineage, chunk) >> 32) & (kStripesPerShard - 1);
  }
  static bool TryTake(int32_t* stripe, bool exclusive);
  // TryTake, or queue `waiter` on the stripe. REQUIRES: shard.mu.
  static bool TakeOrQueueHeld(Shard& shard, size_t stripe, bool exclusive, const Waiter& waiter)
      REQUIRES(shard.mu);
  Result<std::optional<Version>> NewestOwnHeld(Shard& shard, uint64_t lineage, uint64_t chunk,
                                               uint64_t max_birth) REQUIRES(shard.mu);

  MetaStore* const meta_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<size_t> size_{0};
  Shard shards_[kShards];
  static_assert(kShards % kShardsPerLineage == 0, "whole groups");
};

}  // namespace strata

#endif  // STRATA_STORE_CHUNK_MAP_H_
