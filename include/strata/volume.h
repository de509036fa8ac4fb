// Volume: a thin, byte-addressed block device inside a Pool.
#ifndef STRATA_VOLUME_H_
#define STRATA_VOLUME_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "strata/event_loop.h"
#include "strata/export.h"
#include "strata/status.h"

namespace strata {

// One asynchronous request to a Volume (see Volume::Submit).
struct IoRequest {
  enum class Kind : uint8_t { kRead, kWrite, kWriteZeroes, kTrim, kFlush };
  static constexpr uint32_t kFua = 1u << 0;     // write/zeroes/trim durable before completion
  static constexpr uint32_t kNoHole = 1u << 1;  // write-zeroes: keep the range allocated

  Kind kind = Kind::kRead;
  uint32_t flags = 0;
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
  std::byte* data = nullptr;  // kRead: destination; kWrite: source; others: unused
  // Runs once, on the thread running the EventLoop the request was submitted to.
  void (*callback)(IoRequest* request, const Status& status) = nullptr;
  void* user = nullptr;  // for the submitter
  // Output of kRead: bytes of the request that were holes (unallocated or trimmed) and were
  // filled with zeros without touching the disk. Equal to length_bytes: the range is all hole.
  uint64_t hole_bytes = 0;
  // (The implementation's per-request state lives in the implementation: nothing here names it.)
};

// One extent of BlockStatus: [offset, offset + length) is either allocated (data) or a hole
// that reads as zeros and uses no space. Allocated data may also be known to read as zeros (a
// write-zeroes that had to write): `zero`. Data not so marked may still hold zeros.
struct Extent {
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
  bool hole = false;  // true: unallocated or trimmed, reads as zeros
  bool zero = false;  // allocated, and reads as zeros (never set with `hole`)
};

constexpr size_t kMaxBlockStatusChunks = 65536;

// Thread-safe. Offsets and lengths are in bytes with any alignment; unaligned edges are handled
// inside by read-modify-write of 4 KiB units. A Volume keeps its Pool alive state-wise but the
// Pool must outlive it (destroy every Volume before its Pool).
class STRATA_EXPORT Volume {
 public:
  virtual ~Volume() = default;

  virtual const std::string& id() const = 0;
  // Current size; grows when the volume is modified (Pool::ModifyVolume), never shrinks.
  virtual uint64_t size_bytes() const = 0;
  virtual uint32_t chunk_size_bytes() const = 0;
  // True for a snapshot (Pool::OpenSnapshot): every mutation fails with ReadOnly.
  virtual bool read_only() const = 0;

  // Reads [offset, offset + out.size()). Unwritten and trimmed ranges read as zeros.
  // Errors: OutOfRange past the end; IOError from the disk; Shutdown if the pool is latched.
  virtual Status Read(uint64_t offset_bytes, std::span<std::byte> out) = 0;
  // Writes `data` at offset. Durable after a later Flush() returns OK, or on return with `fua`.
  // Errors: OutOfRange, NoSpace (pool full: nothing changed, works again once space is freed),
  // IOError, Shutdown.
  virtual Status Write(uint64_t offset_bytes, std::span<const std::byte> data, bool fua) = 0;
  // The range reads as zeros afterwards. Without `no_hole` whole chunks are deallocated.
  virtual Status WriteZeroes(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole,
                             bool fua) = 0;
  // Deallocates whole chunks in the range and zeroes the partial ones: the range reads as zeros.
  virtual Status Trim(uint64_t offset_bytes, uint64_t length_bytes) = 0;
  // Makes every write, zero and trim that completed before the call durable (group-committed
  // with other flushes). Errors: IOError (the pool latches: see docs/durability.md), Shutdown.
  virtual Status Flush() = 0;
  // Allocated and hole extents from `offset`, in order, merged. They cover the whole range unless
  // it holds more than kMaxBlockStatusChunks mapped chunks; then they cover a prefix (at least
  // one chunk) and the caller asks again from where they end. Cost: O(mapped chunks in range).
  virtual Result<std::vector<Extent>> BlockStatus(uint64_t offset_bytes, uint64_t length_bytes) = 0;

  // Asynchronous form of the calls above: starts `request` and returns at once; its callback runs
  // on `loop`'s thread when done. REQUIRES: called on `loop`'s thread; `request` and its buffer
  // stay valid until the callback. Range errors are reported through the callback too.
  virtual void Submit(EventLoop* loop, IoRequest* request) = 0;
};

}  // namespace strata

#endif  // STRATA_VOLUME_H_
