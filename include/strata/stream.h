// Portable snapshot streams (docs/stream-format.md): a snapshot, full or incremental from a base
// snapshot, as a sequence of zstd-compressed, XXH3-checked records that another pool imports.
//
// The stream layer uses only the public Pool and Volume API and reads and writes through
// ByteSink / ByteSource, so a sink that uploads to an object store plugs in without touching the
// local storage code.
#ifndef STRATA_STREAM_H_
#define STRATA_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "strata/export.h"
#include "strata/pool.h"
#include "strata/status.h"

namespace strata {

class STRATA_EXPORT ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status Write(const void* data, size_t length) = 0;  // all of it, or an error
  virtual Status Finish() = 0;                                // flush and sync, as the sink can
};

class STRATA_EXPORT ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Fills up to `length` bytes; 0 at the end of the stream.
  virtual Result<size_t> Read(void* data, size_t length) = 0;
};

// A file descriptor as sink or source (a regular file, a pipe, stdin/stdout). Not owned.
class STRATA_EXPORT FdSink final : public ByteSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  Status Write(const void* data, size_t length) override;
  Status Finish() override;

 private:
  int fd_;
};

class STRATA_EXPORT FdSource final : public ByteSource {
 public:
  explicit FdSource(int fd) : fd_(fd) {}
  Result<size_t> Read(void* data, size_t length) override;

 private:
  int fd_;
};

// Progress: bytes of volume data done and in all (for a progress bar).
using StreamProgress = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

struct StreamStats {
  uint64_t records = 0;
  uint64_t data_chunks = 0;   // chunks carried as data
  uint64_t zero_chunks = 0;   // chunks carried as zero runs
  uint64_t volume_bytes = 0;  // uncompressed data bytes carried
  uint64_t stream_bytes = 0;  // bytes of the stream itself
  SnapshotInfo snapshot;      // import: the snapshot created
};

struct ExportOptions {
  std::string snapshot_id;
  std::string base_snapshot_id;  // empty: a full stream
  int zstd_level = 1;
  unsigned threads = 0;  // compression threads; 0: one per core
  StreamProgress progress;
};

// Writes the snapshot (or what changed since the base) to `sink`. The snapshot stays open (and
// so cannot be deleted) while it is exported. Errors: NotFound, InvalidArgument (a base of another
// volume, or not older), IOError from the sink.
STRATA_EXPORT Result<StreamStats> ExportSnapshot(Pool* pool, const ExportOptions& options,
                                                 ByteSink* sink);

struct ImportOptions {
  unsigned threads = 0;  // decompression threads; 0: one per core
  StreamProgress progress;
};

// Reads a stream into a new snapshot with byte-identical content. A full stream starts a new
// lineage; an incremental one is applied to a clone of the snapshot in this pool that is its base
// (the base itself, or a snapshot imported from it). The snapshot records the id it was exported
// as (SnapshotInfo::source_snapshot_id). A truncated, corrupted or reordered stream is refused
// with Corruption and leaves nothing behind. Errors: Corruption, NotFound (no base here),
// InvalidArgument (an unsupported version), NoSpace, IOError.
STRATA_EXPORT Result<StreamStats> ImportSnapshot(Pool* pool, const ImportOptions& options,
                                                 ByteSource* source);

}  // namespace strata

#endif  // STRATA_STREAM_H_
