#ifndef STRATA_IO_URING_ENGINE_H_
#define STRATA_IO_URING_ENGINE_H_

#include <memory>

#include "strata/env.h"

namespace strata {

// An io_uring engine (liburing 2.3), or null with *err = -errno when the ring cannot be set up
// (EPERM/ENOSYS under seccomp or old kernels: the caller falls back to the sync engine).
std::unique_ptr<IoEngine> NewUringEngine(uint32_t queue_depth, int* err);

}  // namespace strata

#endif  // STRATA_IO_URING_ENGINE_H_
