// Heap buffers aligned for O_DIRECT. A volume reads into and writes from an aligned buffer in
// place; an unaligned one costs a bounce buffer and a copy of every byte (volume_impl.cc).
#ifndef STRATA_UTIL_ALIGNED_BUFFER_H_
#define STRATA_UTIL_ALIGNED_BUFFER_H_

#include <cstddef>
#include <cstdlib>
#include <memory>

#include "util/check.h"

namespace strata {

inline constexpr size_t kBufferAlign = 4096;  // the data files' O_DIRECT unit

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<std::byte[], FreeDeleter>;

// `bytes` rounded up to kBufferAlign, uninitialised. Aborts when memory is exhausted, as new does.
inline AlignedBuffer AllocateAligned(size_t bytes) {
  const size_t rounded = (bytes + kBufferAlign - 1) / kBufferAlign * kBufferAlign;
  auto* p = static_cast<std::byte*>(
      std::aligned_alloc(kBufferAlign, rounded == 0 ? kBufferAlign : rounded));
  STRATA_CHECK(p != nullptr);
  return AlignedBuffer(p);
}

}  // namespace strata

#endif  // STRATA_UTIL_ALIGNED_BUFFER_H_
