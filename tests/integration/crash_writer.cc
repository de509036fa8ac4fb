// Helper for kill9_test: writes rounds of deterministic 4 KiB blocks to a volume, flushes after
// each round and prints "flushed N" once the flush is acknowledged. It never exits by itself:
// the test kills it with SIGKILL at a random moment.
//
// usage: crash_writer POOL VOLUME_ID SEED
#include <cstdio>
#include <cstdlib>
#include <string>

#include "strata/pool.h"

#include "kill9_pattern.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: crash_writer POOL VOLUME_ID SEED\n");
    return 2;
  }
  strata::PoolOptions options;
  options.commit_interval_ms = 50;  // background commits too, so kills land mid-commit
  auto pool = strata::Pool::Open(argv[1], options);
  if (!pool.ok()) {
    std::fprintf(stderr, "open: %s\n", pool.status().ToString().c_str());
    return 1;
  }
  auto volume = (*pool)->OpenVolume(argv[2]);
  if (!volume.ok()) {
    std::fprintf(stderr, "open volume: %s\n", volume.status().ToString().c_str());
    return 1;
  }
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  for (uint32_t round = 0;; round++) {
    for (uint32_t i = 0; i < strata::kill9::kBlocksPerRound; i++) {
      strata::kill9::Block b = strata::kill9::BlockOf(seed, round, i);
      strata::Status s = (*volume)->Write(b.offset, b.data, /*fua=*/false);
      if (!s.ok()) {
        std::fprintf(stderr, "write: %s\n", s.ToString().c_str());
        return 1;
      }
    }
    strata::Status s = (*volume)->Flush();
    if (!s.ok()) {
      std::fprintf(stderr, "flush: %s\n", s.ToString().c_str());
      return 1;
    }
    std::printf("flushed %u\n", round);
    std::fflush(stdout);
  }
}
