// MetaStore: the only code that touches LMDB. Typed access to the pool header, volume records
// and the epoch-versioned chunk map (docs/on-disk-format.md has every table, field by field).
#ifndef STRATA_META_META_STORE_H_
#define STRATA_META_META_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <lmdb.h>

#include "strata/pool.h"
#include "strata/status.h"

#include "util/mutex.h"

namespace strata {

struct MapKey {
  uint64_t lineage = 0;
  uint64_t chunk = 0;
  uint64_t birth = 0;
  auto operator<=>(const MapKey&) const = default;
};

struct MapValue {
  static constexpr uint32_t kTombstone = 1;  // reads as zeros; hides older versions
  // Sub-chunk copy-on-write: only the units set in `present` were written to `phys`; the others
  // read through to the predecessor (the newest older version, always a whole one). Only ever
  // the head's own version; filled in the background and before any epoch change
  // (docs/design.md §2.3).
  static constexpr uint32_t kPartial = 2;
  uint64_t phys = 0;  // physical chunk (unused for tombstones)
  uint32_t flags = 0;
  uint32_t present = 0;  // with kPartial: bit i = unit i of the chunk is in `phys`
  bool tombstone() const { return (flags & kTombstone) != 0; }
  bool partial() const { return (flags & kPartial) != 0; }
  bool operator==(const MapValue&) const = default;
};

struct Version {
  uint64_t birth = 0;
  MapValue value;
  bool inherited = false;  // found in a clone's source lineage, not its own: never overwritten
};

struct PoolHeader {
  uint32_t format_version = 0;
  uint32_t chunk_size_bytes = 0;
  uint64_t capacity_bytes = 0;
  uint64_t frontier_chunks = 0;  // first physical chunk never handed out
  uint64_t next_lineage = 1;
  std::string pool_uuid;
};

// The engine's record tables (docs/on-disk-format.md). A layer above the engine adds its own
// by name (OpenLayerTable); records of both travel in a CommitBatch as RecordChange.
constexpr const char* kVolumesTable = "volumes";
constexpr const char* kSnapshotsTable = "snapshots";
constexpr const char* kLineagesTable = "lineages";

// One group commit: applied in one LMDB write transaction, synced before Commit returns.
struct CommitBatch {
  using Record = RecordChange;
  struct MapChange {
    MapKey key;
    MapValue value;
    bool erase = false;
  };
  std::vector<MapChange> map_changes;
  std::vector<Record> records;           // applied in order, after the map changes
  std::vector<uint64_t> erase_lineages;  // every map and change entry of these, after map_changes
  std::optional<PoolHeader> header;
};

class MetaStore {
 public:
  // 2: snapshots, lineages; 3: images, instances, tags; 4: partial map values
  static constexpr uint32_t kFormatVersion = 4;
  static constexpr uint32_t kOldestReadableFormat = 1;  // upgraded in place on first commit
  static constexpr unsigned kMaxReaders = 1024;

  // Opens (with `create`, creates) the LMDB environment in `dir`.
  // Errors: NotFound (no environment and !create), Corruption (not an LMDB file), IOError.
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& dir, bool create,
                                                 uint64_t map_bytes, uint64_t max_map_bytes);
  ~MetaStore();

  // Errors: NotFound (empty environment: not a pool), Corruption (foreign or damaged header).
  Result<PoolHeader> ReadHeader();
  // Every record of a table (the engine's or an opened layer table): (key, value), in key order.
  // Errors: InvalidArgument (no such table), IOError.
  Result<std::vector<std::pair<std::string, std::string>>> ReadRecords(const std::string& table);
  // Opens a layer's record table, creating it if absent (Pool::OpenRecordTable states the rules).
  // Thread-safe; opening an open table again is a no-op.
  Status OpenLayerTable(const std::string& table);
  static constexpr size_t kMaxLayerTables = 16;
  bool HasTable(const std::string& table) {
    MutexLock lock(&tables_mu_);
    return tables_.count(table) != 0;
  }

  // Newest version of (lineage, chunk) with birth <= max_birth, from committed state.
  // Thread-safe (pooled read transactions, kReadSlots of them; no I/O wait under their mutexes).
  Result<std::optional<Version>> FindVersion(uint64_t lineage, uint64_t chunk, uint64_t max_birth);
  // For each chunk in [first_chunk, end_chunk) of `lineage` that has a version born at or before
  // max_birth, in chunk order, calls fn(chunk, newest such version); stops when fn returns
  // false. Cost: O(versions in the range), not O(range).
  Status ScanNewest(uint64_t lineage, uint64_t first_chunk, uint64_t end_chunk, uint64_t max_birth,
                    const std::function<bool(uint64_t, const Version&)>& fn);
  // Walks the map entries of `lineage` with first_chunk <= chunk < end_chunk in key order; fn
  // returns false to stop. Committed state only. Cost: O(entries visited).
  Status ScanLineageRange(uint64_t lineage, uint64_t first_chunk, uint64_t end_chunk,
                          const std::function<bool(const MapKey&, const MapValue&)>& fn);
  // Calls fn for every map entry of `lineage` in key order: O(its entries), not O(map).
  Status ForEachVersionOfLineage(uint64_t lineage,
                                 const std::function<Status(const MapKey&, const MapValue&)>& fn);
  // Calls fn for every map entry in key order (recovery and check). Stops on a non-OK status.
  Status ForEachVersion(const std::function<Status(const MapKey&, const MapValue&)>& fn);
  Status ForEachChange(const std::function<Status(const MapKey&)>& fn);  // (lineage, chunk, birth)
  // Calls fn(key) for every change record of `lineage` with first_birth <= birth <= last_birth
  // and (birth, chunk) >= (first_birth, first_chunk), in (birth, chunk) order; stops when fn
  // returns false. Committed state only. Cost: O(records visited).
  Status ScanChanges(uint64_t lineage, uint64_t first_birth, uint64_t first_chunk,
                     uint64_t last_birth, const std::function<bool(const MapKey&)>& fn);
  // Applies `batch` atomically and durably; grows the map (doubling) when full.
  // Errors: NoSpace (map at max_map_bytes), IOError.
  Status Commit(const CommitBatch& batch);

  uint64_t used_bytes();
  uint64_t map_bytes() const { return map_bytes_; }

 private:
  MetaStore() = default;
  Status OpenTables(bool create);
  Status ApplyBatch(MDB_txn* txn, const CommitBatch& batch);
  Status ApplyHeader(MDB_txn* txn, const PoolHeader& h);
  Status Grow();
  Status ScanTable(MDB_dbi dbi, const std::function<Status(const MDB_val&, const MDB_val&)>& fn);
  Status EraseLineageInTxn(MDB_txn* txn, uint64_t lineage);

  MDB_env* env_ = nullptr;
  MDB_dbi pool_dbi_ = 0;
  MDB_dbi volumes_dbi_ = 0;
  MDB_dbi map_dbi_ = 0;
  MDB_dbi changes_dbi_ = 0;
  MDB_dbi snapshots_dbi_ = 0;
  MDB_dbi lineages_dbi_ = 0;
  // Record tables by name: the engine's, opened at Open, and the layers', opened on request.
  // Handles are stable once opened (LMDB keeps them for the environment's life).
  Mutex tables_mu_;
  std::map<std::string, MDB_dbi> tables_ GUARDED_BY(tables_mu_);
  size_t layer_tables_ GUARDED_BY(tables_mu_) = 0;
  Result<MDB_dbi> RecordDbi(const std::string& table);
  uint64_t map_bytes_ = 0;
  uint64_t max_map_bytes_ = 0;
  // Pooled read transactions for FindVersion, one per slot: a thread uses the slot its first
  // lookup was given, so lookups on different threads (the data path of different volumes) do
  // not wait for each other. Grow holds every slot (no read transaction may be active).
  static constexpr size_t kReadSlots = 8;
  struct alignas(64) ReadSlot {  // a cache line each: threads on different slots share none
    Mutex mu;
    MDB_txn* txn GUARDED_BY(mu) = nullptr;
    MDB_cursor* cursor GUARDED_BY(mu) = nullptr;
  };
  ReadSlot& SlotForThisThread();
  Status OpenReadSlots();
  ReadSlot read_slots_[kReadSlots];
};

Status LmdbStatus(const char* what, int rc);

}  // namespace strata

#endif  // STRATA_META_META_STORE_H_
