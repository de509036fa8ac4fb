// Fixed-width integer encodings: little-endian for values, big-endian for LMDB keys (so that
// memcmp order is numeric order).
#ifndef STRATA_UTIL_CODING_H_
#define STRATA_UTIL_CODING_H_

#include <cstdint>
#include <cstring>

namespace strata {

inline void PutBigEndian64(char* out, uint64_t v) {
  v = __builtin_bswap64(v);
  std::memcpy(out, &v, 8);
}
inline uint64_t GetBigEndian64(const char* in) {
  uint64_t v;
  std::memcpy(&v, in, 8);
  return __builtin_bswap64(v);
}
inline void PutLittleEndian64(char* out, uint64_t v) { std::memcpy(out, &v, 8); }
inline uint64_t GetLittleEndian64(const char* in) {
  uint64_t v;
  std::memcpy(&v, in, 8);
  return v;
}
inline void PutLittleEndian32(char* out, uint32_t v) { std::memcpy(out, &v, 4); }
inline uint32_t GetLittleEndian32(const char* in) {
  uint32_t v;
  std::memcpy(&v, in, 4);
  return v;
}

}  // namespace strata

#endif  // STRATA_UTIL_CODING_H_
