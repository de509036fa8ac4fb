// The deterministic write pattern shared by crash_writer and kill9_test.
#ifndef STRATA_TESTS_KILL9_PATTERN_H_
#define STRATA_TESTS_KILL9_PATTERN_H_

#include <cstdint>
#include <random>
#include <vector>

#include "testutil/test_util.h"

namespace strata::kill9 {

constexpr uint64_t kVolumeBytes = 32ull << 20;
constexpr uint32_t kBlockBytes = 4096;
constexpr uint32_t kBlocksPerRound = 48;

struct Block {
  uint64_t offset;
  std::vector<std::byte> data;
};

inline Block BlockOf(uint64_t seed, uint32_t round, uint32_t index) {
  std::mt19937_64 rng(seed * 1000003 + round * 1009 + index);
  uint64_t slot = rng() % (kVolumeBytes / kBlockBytes);
  return Block{slot * kBlockBytes, test::RandomBytes(kBlockBytes, rng())};
}

}  // namespace strata::kill9

#endif  // STRATA_TESTS_KILL9_PATTERN_H_
