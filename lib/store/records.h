// The engine's metadata records (docs/on-disk-format.md §records): one codec per record type,
// each a list of fields (util/record_codec.h) that both encodes and decodes it.
#ifndef STRATA_STORE_RECORDS_H_
#define STRATA_STORE_RECORDS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strata/pool.h"

#include "util/record_codec.h"

namespace strata {

// A lineage: one history of chunk versions, a volume's map namespace and its place in a clone tree
// (docs/design.md §2). Durable part: its record; `pins` is rebuilt at open from the snapshot
// records and the clones' parent pointers.
struct LineageState {
  uint64_t parent = 0;                // a clone's source lineage; 0: none
  uint64_t parent_epoch = 0;          // the source epoch the clone reads through to
  std::string volume_id;              // the volume writing at its head; empty once deleted
  uint64_t frozen_head = 0;           // the head epoch when the volume was deleted
  std::map<uint64_t, uint32_t> pins;  // frozen live epochs -> snapshots and clones using them
  std::vector<uint64_t> reclaim;      // epochs no longer live whose space is not reclaimed yet
};

// A lineage as stored (its number is the key; pins are derived at load, not stored).
struct LineageRecord {
  uint64_t lineage = 0;
  LineageState state;
};

const RecordCodec<VolumeInfo>& VolumeCodec();
const RecordCodec<SnapshotInfo>& SnapshotCodec();
const RecordCodec<LineageRecord>& LineageCodec();

}  // namespace strata

#endif  // STRATA_STORE_RECORDS_H_
