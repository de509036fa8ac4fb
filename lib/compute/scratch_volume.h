// ScratchVolume: an instance-store volume. Its data lives in an unlinked sparse file in the
// pool's scratch directory, so it vanishes when the volume is destroyed (instance stop or
// terminate) or the process exits, and never touches LMDB. Flush pushes data to the host disk
// (as a flush reaches an NVMe device), but nothing survives a stop or a restart.
//
// Always encrypted, as EC2's NVMe instance store is: AES-256-XTS (kms/xts.h) on 4 KiB units,
// under a random key made with the volume and held only in this object's memory. Destroying the
// volume destroys the key: a crypto-erase, O(1) whatever the size, so the file's blocks (freed
// to the host file system, or left on a crashed host) hold only ciphertext nobody can read.
// Punched ranges are holes and read as zeros.
#ifndef STRATA_COMPUTE_SCRATCH_VOLUME_H_
#define STRATA_COMPUTE_SCRATCH_VOLUME_H_

#include <memory>
#include <string>

#include "strata/volume.h"

#include "kms/xts.h"
#include "util/mutex.h"

namespace strata {

class ScratchVolume final : public Volume {
 public:
  // A zero-filled volume of `size_bytes` (a multiple of 512) in an unlinked file under `dir`.
  // Errors: IOError.
  static Result<std::shared_ptr<ScratchVolume>> Create(const std::string& dir,
                                                       const std::string& id, uint64_t size_bytes);
  ~ScratchVolume() override;

  const std::string& id() const override { return id_; }
  uint64_t size_bytes() const override { return size_bytes_; }
  uint32_t chunk_size_bytes() const override { return 4096; }
  bool read_only() const override { return false; }

  Status Read(uint64_t offset_bytes, std::span<std::byte> out) override;
  Status Write(uint64_t offset_bytes, std::span<const std::byte> data, bool fua) override;
  Status WriteZeroes(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole, bool fua) override;
  Status Trim(uint64_t offset_bytes, uint64_t length_bytes) override;
  // fdatasync: what a disk flush means; the data is still lost at stop, by design.
  Status Flush() override;
  Result<std::vector<Extent>> BlockStatus(uint64_t offset_bytes, uint64_t length_bytes) override;
  // Reads and writes go through `loop`'s io_uring engine (the POSIX Env's: file ids are fds).
  // 4 KiB-aligned I/O (all of it over NBD) uses O_DIRECT: io_uring runs buffered writes to one
  // file one at a time on a worker thread, 2.3x slower at QD32 (bench/README.md). Unaligned
  // I/O goes through the page cache; the kernel keeps the two coherent. Zeroing and trimming
  // punch holes synchronously.
  void Submit(EventLoop* loop, IoRequest* request) override;

 private:
  ScratchVolume(int fd, int direct_fd, std::string id, uint64_t size_bytes,
                std::unique_ptr<kms::XtsCipher> cipher)
      : fd_(fd),
        direct_fd_(direct_fd),
        id_(std::move(id)),
        size_bytes_(size_bytes),
        cipher_(std::move(cipher)) {}
  // Whole units: pread/pwrite plus the cipher. Partial units: read, patch and write back the
  // units around them, one such write at a time (rmw_mu_), so that two writes into different
  // bytes of one unit do not undo each other.
  Status ReadUnits(uint64_t offset_bytes, std::span<std::byte> out);
  Status WriteUnits(uint64_t offset_bytes, std::span<const std::byte> data);
  Status ReadModifyWrite(uint64_t offset_bytes, std::span<const std::byte> data) EXCLUDES(rmw_mu_);
  bool UnitAligned(uint64_t offset_bytes, uint64_t length_bytes) const {
    return offset_bytes % kUnit == 0 && length_bytes % kUnit == 0;
  }
  static constexpr uint32_t kUnit = 4096;  // one cipher call per page: 512 cost 1.3-1.6x
  Status CheckRange(uint64_t offset_bytes, uint64_t length_bytes) const;
  Status Punch(uint64_t offset_bytes, uint64_t length_bytes);
  // direct_fd_ for 4 KiB-aligned offset, length and buffer; fd_ otherwise.
  int FdFor(uint64_t offset_bytes, uint64_t length_bytes, const void* buf) const;

  const int fd_;         // buffered: reads (served from the page cache when hot), odd writes
  const int direct_fd_;  // O_DIRECT on the same file, or -1: 4 KiB-aligned writes
  const std::string id_;
  const uint64_t size_bytes_;
  const std::unique_ptr<kms::XtsCipher> cipher_;  // the only copy of the key
  Mutex rmw_mu_;
};

}  // namespace strata

#endif  // STRATA_COMPUTE_SCRATCH_VOLUME_H_
