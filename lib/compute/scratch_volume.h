// ScratchVolume: an instance-store volume. Its data lives in an unlinked sparse file in the
// pool's scratch directory, so it vanishes when the volume is destroyed (instance stop or
// terminate) or the process exits, and never touches LMDB. No durability is promised: Flush
// succeeds at once, as it would on a disk whose contents are lost at every stop anyway.
#ifndef STRATA_COMPUTE_SCRATCH_VOLUME_H_
#define STRATA_COMPUTE_SCRATCH_VOLUME_H_

#include <memory>
#include <string>

#include "strata/volume.h"

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
  Status Flush() override { return Status::OK(); }
  Result<std::vector<Extent>> BlockStatus(uint64_t offset_bytes, uint64_t length_bytes) override;
  // Reads and writes go through `loop`'s io_uring engine (the POSIX Env's: file ids are fds);
  // zeroing and trimming punch holes synchronously (a metadata-only operation).
  void Submit(EventLoop* loop, IoRequest* request) override;

 private:
  ScratchVolume(int fd, std::string id, uint64_t size_bytes)
      : fd_(fd), id_(std::move(id)), size_bytes_(size_bytes) {}
  Status CheckRange(uint64_t offset_bytes, uint64_t length_bytes) const;
  Status Punch(uint64_t offset_bytes, uint64_t length_bytes);

  const int fd_;
  const std::string id_;
  const uint64_t size_bytes_;
};

}  // namespace strata

#endif  // STRATA_COMPUTE_SCRATCH_VOLUME_H_
