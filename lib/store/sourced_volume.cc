#include "store/sourced_volume.h"

#include <algorithm>
#include <future>

namespace strata {

bool SourcedVolume::Clip(uint64_t* offset_bytes, uint64_t* length_bytes) const {
  if (*length_bytes == 0) {
    return false;
  }
  // From the start of the first chunk: a partial write of a chunk reads the rest of it from the
  // snapshot, and that chunk may begin inside the snapshot when the request begins past it (the
  // volume grew: its first new bytes share the snapshot's last chunk).
  const uint64_t into_chunk = *offset_bytes % inner_->chunk_size_bytes();
  *offset_bytes -= into_chunk;
  *length_bytes += into_chunk;
  if (*offset_bytes >= source_bytes_) {
    return false;
  }
  *length_bytes = std::min(*length_bytes, source_bytes_ - *offset_bytes);
  return true;
}

Status SourcedVolume::EnsureSync(uint64_t offset_bytes, uint64_t length_bytes) {
  if (!Clip(&offset_bytes, &length_bytes) || source_->Present(offset_bytes, length_bytes)) {
    return Status::OK();
  }
  std::promise<Status> promise;
  std::future<Status> done = promise.get_future();
  source_->Ensure(offset_bytes, length_bytes,
                  [&promise](const Status& s) { promise.set_value(s); });
  return done.get();
}

Status SourcedVolume::Read(uint64_t offset_bytes, std::span<std::byte> out) {
  STRATA_RETURN_IF_ERROR(EnsureSync(offset_bytes, out.size()));
  return inner_->Read(offset_bytes, out);
}

Status SourcedVolume::Write(uint64_t offset_bytes, std::span<const std::byte> data, bool fua) {
  STRATA_RETURN_IF_ERROR(EnsureSync(offset_bytes, data.size()));
  return inner_->Write(offset_bytes, data, fua);
}

Status SourcedVolume::WriteZeroes(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole,
                                  bool fua) {
  STRATA_RETURN_IF_ERROR(EnsureSync(offset_bytes, length_bytes));
  return inner_->WriteZeroes(offset_bytes, length_bytes, no_hole, fua);
}

Status SourcedVolume::Trim(uint64_t offset_bytes, uint64_t length_bytes) {
  STRATA_RETURN_IF_ERROR(EnsureSync(offset_bytes, length_bytes));
  return inner_->Trim(offset_bytes, length_bytes);
}

Result<std::vector<Extent>> SourcedVolume::BlockStatus(uint64_t offset_bytes,
                                                       uint64_t length_bytes) {
  STRATA_RETURN_IF_ERROR(EnsureSync(offset_bytes, length_bytes));
  return inner_->BlockStatus(offset_bytes, length_bytes);
}

// The request waits for its range on the source's threads, then is handed back to its loop.
void SourcedVolume::Submit(EventLoop* loop, IoRequest* request) {
  uint64_t offset = request->offset_bytes;
  uint64_t length = request->length_bytes;
  if (request->kind == IoRequest::Kind::kFlush || !Clip(&offset, &length) ||
      source_->Present(offset, length)) {
    return inner_->Submit(loop, request);
  }
  std::shared_ptr<Volume> inner = inner_;
  source_->Ensure(offset, length, [loop, request, inner](const Status& s) {
    loop->Post([loop, request, inner, s] {
      if (!s.ok()) {
        request->callback(request, s);
        return;
      }
      inner->Submit(loop, request);
    });
  });
}

}  // namespace strata
