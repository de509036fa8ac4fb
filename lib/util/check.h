// Always-on invariant checks (TigerBeetle style): a broken storage invariant stops the process
// instead of corrupting data. Operating errors never use these; they return a Status.
#ifndef STRATA_UTIL_CHECK_H_
#define STRATA_UTIL_CHECK_H_

#include <cstdio>
#include <cstdlib>

namespace strata::internal {
[[noreturn]] inline void CheckFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "strata: invariant violated: %s at %s:%d\n", expr, file, line);
  std::abort();
}
}  // namespace strata::internal

#define STRATA_CHECK(expr)                                        \
  do {                                                            \
    if (__builtin_expect(!(expr), 0)) {                           \
      ::strata::internal::CheckFailed(#expr, __FILE__, __LINE__); \
    }                                                             \
  } while (0)

#ifdef NDEBUG
#define STRATA_DCHECK(expr) \
  do {                      \
  } while (0)
#else
#define STRATA_DCHECK(expr) STRATA_CHECK(expr)
#endif

#endif  // STRATA_UTIL_CHECK_H_
