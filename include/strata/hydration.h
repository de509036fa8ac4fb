// Lazy restores from a remote (EBS's "lazy loading" of a volume created from a snapshot):
// Begin makes a remote snapshot a local snapshot of the same id at once, with no data; volumes
// cloned from it are usable immediately. Each block arrives on first touch (a range GET with
// read-ahead; concurrent readers of a block wait for one fetch) and in the background in volume
// order, many requests in flight, at an optional rate. What arrived is durable: after a crash
// or a restart, Start resumes every restore recorded in POOL/hydrations.json and fetches only
// what is missing. All the volumes and instances cloned from one restored snapshot share its
// blocks: each is fetched once (Fast Snapshot Restore, without the credit bucket).
//
// The remote unreachable, stalled or trickling: blocks already here are served; a read of a
// missing block fails with EIO within HydrationOptions::fetch_timeout_ms (never a hang), and
// the background pass
// retries by itself with backoff. A block whose checksum or hash does not match fails the read
// with EIO and a log line naming the block and the pack; it is never served.
#ifndef STRATA_HYDRATION_H_
#define STRATA_HYDRATION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/env.h"
#include "strata/export.h"
#include "strata/pool.h"
#include "strata/remote.h"
#include "strata/status.h"

namespace strata {

struct HydrationOptions {
  bool background = true;             // fetch what nobody asked for too (else on demand only)
  uint32_t fetch_attempts = 4;        // per request before a read of a missing block fails (EIO)
  uint32_t fetch_timeout_ms = 15000;  // a read of a missing block fails (EIO) past this
  uint32_t readahead_blocks = 8;      // blocks fetched after a sequential read on demand (512 KiB)
  uint32_t batch_blocks = 32;         // requests in flight per worker (two, and one for readers)
  // Log lines (damaged blocks, the remote unreachable or back); null: stderr.
  std::function<void(const std::string&)> log;
  // Clocks (rate limits, back-off, heartbeats) and the pool's restore records file; null:
  // Env::Default(). Not owned; must outlive the Hydrations.
  Env* env = nullptr;
};

struct HydrationStatus {
  std::string snapshot_id;
  std::string remote;
  double rate_mibps = -1;    // the background rate; < 0: unlimited, 0: on demand only
  uint64_t data_blocks = 0;  // blocks of the snapshot that hold data (512 KiB each)
  // Of those, here: their data here, in blocks (a block partly here, from reads that needed only
  // some of its 64 KiB pieces, counts in part; rounded up).
  uint64_t fetched_blocks = 0;
  uint64_t bytes_fetched = 0;  // by this process (compressed, as transferred)
  double progress = 0;         // fetched / data blocks, 0..1
  int64_t eta_seconds = -1;    // at the recent rate; -1 unknown
  bool complete = false;
  std::string last_error;  // the last failure, "" after a success
  bool damaged = false;    // the last failure was a damaged object (retrying will not help)
};

class STRATA_EXPORT Hydrations {
 public:
  // Resumes every restore recorded for the pool. One per pool-holding process; destroy it before
  // the pool. A restore whose remote cannot be opened is kept (and listed with its error).
  static Result<std::unique_ptr<Hydrations>> Start(Pool* pool, const HydrationOptions& options);
  // The Hydrations Start made for `pool` while it lives, or null.
  static Hydrations* Of(Pool* pool);
  virtual ~Hydrations() = default;

  // The remote snapshot as a snapshot of the pool under the same id, at once; its blocks arrive
  // lazily. `rate_mibps` < 0: unlimited; 0: on demand only. A snapshot the pool holds already
  // (this id, or pulled under it) is returned as it is. Errors: those of the remote (NotFound,
  // IOError naming it), NoSpace.
  virtual Result<SnapshotInfo> Begin(const RemoteSpec& spec, const std::string& snapshot_id,
                                     double rate_mibps) = 0;
  // The restore that a volume or snapshot reads through to, if one is under way.
  virtual std::optional<HydrationStatus> StatusOf(const std::string& volume_or_snapshot_id) = 0;
  virtual std::vector<HydrationStatus> List() = 0;
  // Gives a restore up: stops it, deletes its snapshot (Busy while a volume or image still reads
  // through to it), its record and its marker in the remote. What arrived is freed.
  virtual Status Abort(const std::string& snapshot_id) = 0;
  // Waits until the restore of `snapshot_id` is complete (OK at once if none is under way),
  // calling `progress` now and then. Errors: Corruption at once when an object is damaged;
  // IOError when the remote stays unreachable for `give_up_ms`.
  virtual Status Wait(const std::string& snapshot_id, int64_t give_up_ms,
                      const std::function<void(const HydrationStatus&)>& progress) = 0;
};

}  // namespace strata

#endif  // STRATA_HYDRATION_H_
