// SourcedVolume: a volume or snapshot whose data reads through to a snapshot still arriving (a
// lazily restored remote snapshot). Every request first has its range made present by the
// snapshot's BlockSource, then goes to the pool's own handle. Whole-chunk writes need the range
// as much as reads do: a partial version's filler, and copy-on-write of a unit, read the
// predecessor, which is the arriving snapshot.
#ifndef STRATA_STORE_SOURCED_VOLUME_H_
#define STRATA_STORE_SOURCED_VOLUME_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "strata/pool.h"
#include "strata/volume.h"

namespace strata {

class SourcedVolume final : public Volume {
 public:
  // `source_bytes`: the size of the arriving snapshot (the volume may have grown past it).
  SourcedVolume(std::shared_ptr<Volume> inner, std::shared_ptr<BlockSource> source,
                uint64_t source_bytes)
      : inner_(std::move(inner)), source_(std::move(source)), source_bytes_(source_bytes) {}

  const Volume& inner() const { return *inner_; }
  const std::string& id() const override { return inner_->id(); }
  uint64_t size_bytes() const override { return inner_->size_bytes(); }
  uint32_t chunk_size_bytes() const override { return inner_->chunk_size_bytes(); }
  bool read_only() const override { return inner_->read_only(); }

  Status Read(uint64_t offset_bytes, std::span<std::byte> out) override;
  Status Write(uint64_t offset_bytes, std::span<const std::byte> data, bool fua) override;
  Status WriteZeroes(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole, bool fua) override;
  Status Trim(uint64_t offset_bytes, uint64_t length_bytes) override;
  Status Flush() override { return inner_->Flush(); }
  // Holes the source has not filled yet would read as zeros: the range is made present first.
  Result<std::vector<Extent>> BlockStatus(uint64_t offset_bytes, uint64_t length_bytes) override;
  void Submit(EventLoop* loop, IoRequest* request) override;

 private:
  // The part of [offset, offset + length) inside the arriving snapshot, made present; waits.
  Status EnsureSync(uint64_t offset_bytes, uint64_t length_bytes);
  // Widens to the first chunk's start, then clips to the source's size; false when nothing is
  // left.
  bool Clip(uint64_t* offset_bytes, uint64_t* length_bytes) const;

  std::shared_ptr<Volume> inner_;
  std::shared_ptr<BlockSource> source_;
  uint64_t source_bytes_;
};

}  // namespace strata

#endif  // STRATA_STORE_SOURCED_VOLUME_H_
