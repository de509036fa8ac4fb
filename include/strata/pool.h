// Pool: the embedding entry point. A pool is one directory holding an LMDB environment (all
// metadata) and sparse chunk files (all data). See docs/design.md.
//
// Caveats (LMDB's, and ours):
//  * One process holds a pool at a time: Open() of a pool held by another process fails with
//    Busy naming that process. Within a process, open a directory once.
//  * Do not use a Pool after fork().
//  * Destroy every Volume before its Pool. Destroying the Pool commits what is pending (a clean
//    shutdown); a crash loses at most what no FLUSH/FUA covered (docs/durability.md).
#ifndef STRATA_POOL_H_
#define STRATA_POOL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/env.h"
#include "strata/status.h"
#include "strata/volume.h"

namespace strata {

struct PoolOptions {
  // Chunk size, fixed at creation: a power of two from 4 KiB to 1 MiB. Default 64 KiB.
  uint32_t chunk_size_bytes = 64 * 1024;
  // Upper bound on data stored (chunks in use * chunk size); 0 = the host file system's limit.
  // Persisted at creation; Open() may override it when non-zero.
  uint64_t capacity_bytes = 0;
  // Initial LMDB map size; it grows by doubling when full, up to max_meta_bytes.
  uint64_t meta_map_bytes = 64ull << 20;
  uint64_t max_meta_bytes = 1ull << 40;
  // Try O_DIRECT for data files (falls back to buffered I/O where the file system refuses it).
  bool direct_io = true;
  // Background commit period in ms when changes are pending; 0 = commit only on Flush/FUA and
  // control operations (the crash simulator uses 0 to be deterministic).
  uint32_t commit_interval_ms = 1000;
  // I/O seam; null = Env::Default(). Not owned; must outlive the pool.
  Env* env = nullptr;
};

struct VolumeSpec {
  uint64_t size_bytes = 0;  // REQUIRES: > 0, multiple of 512, <= kMaxVolumeBytes
  std::string name;         // optional; shown as the Name tag
  std::string volume_type = "gp3";
};

struct VolumeInfo {
  std::string volume_id;  // "vol-" + 17 hex digits
  std::string name;
  uint64_t size_bytes = 0;
  std::string volume_type;
  std::string state;           // "available"
  int64_t create_time_ms = 0;  // Unix epoch, ms
  uint64_t lineage = 0;        // internal map namespace (docs/design.md)
  uint64_t head_epoch = 0;
};

struct PoolInfo {
  std::string path;
  uint32_t chunk_size_bytes = 0;
  uint64_t capacity_bytes = 0;   // 0 = unlimited
  uint64_t used_bytes = 0;       // chunks in use * chunk size
  uint64_t data_file_bytes = 0;  // host space the data files really occupy
  uint64_t meta_bytes = 0;       // LMDB pages in use
  uint64_t volume_count = 0;
  uint64_t free_chunks = 0;          // below the frontier, reusable
  uint64_t frontier_chunks = 0;      // chunk numbers ever handed out
  uint64_t pending_map_changes = 0;  // map changes not committed yet (the overlay)
  std::string io_engine;             // "io_uring" or "sync" (or "sim")
  bool direct_io = false;
  std::string latched_error;  // empty unless a fatal I/O error latched the pool
};

struct CheckReport {
  uint64_t versions = 0;     // map entries checked
  uint64_t data_chunks = 0;  // physical chunks referenced
  uint64_t volumes = 0;
  std::vector<std::string> problems;  // empty when every invariant holds
};

constexpr uint64_t kMaxVolumeBytes = 64ull << 40;  // 64 TiB (io2 Block Express)

class Pool {
 public:
  virtual ~Pool() = default;

  // Creates a new, empty pool in `dir` (created if missing; must not already hold a pool).
  // Errors: AlreadyExists, InvalidArgument (chunk size), IOError.
  static Status Create(const std::string& dir, const PoolOptions& options);
  // Opens an existing pool, recovering from a crash if needed.
  // Errors: NotFound (no pool there), Busy (held by another process), Corruption (foreign or
  // damaged metadata), IOError.
  static Result<std::unique_ptr<Pool>> Open(const std::string& dir, const PoolOptions& options);

  // Creates a thin volume; durable on return. Errors: InvalidArgument, AlreadyExists (name).
  virtual Result<VolumeInfo> CreateVolume(const VolumeSpec& spec) = 0;
  // Looks a volume up by id, or by Name when that name is unique. Errors: NotFound.
  virtual Result<VolumeInfo> DescribeVolume(const std::string& id_or_name) = 0;
  virtual std::vector<VolumeInfo> ListVolumes() = 0;
  // Deletes a volume and frees its space (punched once the delete is durable). Durable on
  // return. Errors: NotFound, Busy (the volume is open).
  virtual Status DeleteVolume(const std::string& volume_id) = 0;
  // Grows a volume online (open handles see the new size at once). Errors: NotFound,
  // InvalidArgument (shrinking, or a size that is not a multiple of 512 / too big).
  virtual Result<VolumeInfo> ResizeVolume(const std::string& volume_id, uint64_t new_size) = 0;
  // Opens a volume for I/O. The handle is shared: any number may be open at once.
  virtual Result<std::shared_ptr<Volume>> OpenVolume(const std::string& volume_id) = 0;

  // Commits every pending change durably. Errors: IOError (latched), NoSpace (metadata).
  virtual Status Flush() = 0;
  virtual PoolInfo Info() = 0;
  // Verifies every metadata invariant and the space accounting against the map.
  virtual Result<CheckReport> Check() = 0;
};

}  // namespace strata

#endif  // STRATA_POOL_H_
