// A real process writes and flushes; it is killed with SIGKILL at a random moment (mid-write,
// mid-flush, mid-commit); the pool is reopened and every flushed block must be there, every
// sector must hold content that some write put there (or zeros where nothing was ever written),
// and `pool check` must pass. Each round uses a new volume and deletes the previous one, so
// freed chunks are reused across crashes: a new volume must never show an old volume's data.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <xxhash.h>

#include "strata/pool.h"

#include "kill9_pattern.h"

namespace strata {
namespace {

constexpr uint32_t kSector = 512;

// Runs crash_writer, waits until it has acknowledged `rounds` flushes (plus a random delay), then
// SIGKILLs it. Returns the last round whose flush was acknowledged (-1 if none).
int RunAndKill(const std::string& pool, const std::string& volume, uint64_t seed, int rounds,
               int extra_delay_us) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  pid_t pid = fork();
  if (pid < 0) {  // (kill(-1) below would signal every process)
    ADD_FAILURE() << "fork failed";
    return -1;
  }
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    std::string seed_text = std::to_string(seed);
    execl(STRATA_CRASH_WRITER, "crash_writer", pool.c_str(), volume.c_str(), seed_text.c_str(),
          nullptr);
    _exit(127);
  }
  close(out[1]);
  FILE* in = fdopen(out[0], "r");
  int last = -1;
  unsigned round;
  while (last + 1 < rounds && std::fscanf(in, "flushed %u\n", &round) == 1) {
    last = static_cast<int>(round);
  }
  std::this_thread::sleep_for(std::chrono::microseconds(extra_delay_us));
  kill(pid, SIGKILL);
  // Flushes acknowledged before the kill landed still count.
  while (std::fscanf(in, "flushed %u\n", &round) == 1) {
    last = static_cast<int>(round);
  }
  fclose(in);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "crash_writer exited by itself: status " << status;
  return last;
}

// What each sector may read as: the last write of a flushed round (zeros if none), or anything
// a later, unacknowledged round wrote.
struct Expectation {
  std::map<uint64_t, uint64_t> durable;          // sector -> hash
  std::map<uint64_t, std::set<uint64_t>> later;  // sector -> hashes
};

Expectation Expect(uint64_t seed, int flushed, int attempted) {
  Expectation e;
  for (int round = 0; round <= attempted; round++) {
    for (uint32_t i = 0; i < kill9::kBlocksPerRound; i++) {
      kill9::Block b = kill9::BlockOf(seed, static_cast<uint32_t>(round), i);
      for (uint32_t s = 0; s < kill9::kBlockBytes / kSector; s++) {
        uint64_t sector = b.offset / kSector + s;
        uint64_t h = XXH3_64bits(b.data.data() + s * kSector, kSector);
        if (round <= flushed) {
          e.durable[sector] = h;
        } else {
          e.later[sector].insert(h);
        }
      }
    }
  }
  return e;
}

TEST(Kill9, FlushedWritesSurviveSigkill) {
  test::TempDir dir;
  const std::string pool_dir = dir.Sub("pool");
  PoolOptions options;
  options.chunk_size_bytes = 16384;
  ASSERT_TRUE(Pool::Create(pool_dir, options).ok());
  std::mt19937_64 rng(std::random_device{}());
  std::string previous;
  const int iterations = 6;
  for (int it = 0; it < iterations; it++) {
    const uint64_t seed = rng();
    SCOPED_TRACE("iteration " + std::to_string(it) + " seed " + std::to_string(seed));
    std::string volume;
    {
      auto pool = Pool::Open(pool_dir, options);
      ASSERT_TRUE(pool.ok()) << pool.status().ToString();
      if (!previous.empty()) {
        ASSERT_TRUE((*pool)->DeleteVolume(previous).ok());
      }
      auto info = (*pool)->CreateVolume(VolumeSpec{kill9::kVolumeBytes, "", "gp3", ""});
      ASSERT_TRUE(info.ok());
      volume = info->volume_id;
    }
    const int target = 2 + static_cast<int>(rng() % 8);
    const int flushed = RunAndKill(pool_dir, volume, seed, target, static_cast<int>(rng() % 3000));
    ASSERT_GE(flushed, target - 1);
    auto pool = Pool::Open(pool_dir, options);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    auto vol = (*pool)->OpenVolume(volume);
    ASSERT_TRUE(vol.ok());
    std::vector<std::byte> all(kill9::kVolumeBytes);
    ASSERT_TRUE((*vol)->Read(0, all).ok());
    // The writer may have got a few rounds past the last acknowledged flush.
    Expectation e = Expect(seed, flushed, flushed + 50);
    std::byte zeros[kSector] = {};
    const uint64_t zero = XXH3_64bits(zeros, kSector);
    uint64_t bad = 0;
    for (uint64_t s = 0; s < kill9::kVolumeBytes / kSector; s++) {
      uint64_t h = XXH3_64bits(all.data() + s * kSector, kSector);
      auto d = e.durable.find(s);
      auto l = e.later.find(s);
      bool ok = (d == e.durable.end() ? h == zero : h == d->second) ||
                (l != e.later.end() && l->second.count(h) > 0);
      bad += ok ? 0 : 1;
    }
    EXPECT_EQ(bad, 0u) << "sectors with content no acknowledged write explains";
    vol->reset();
    auto report = (*pool)->Check();
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->problems.empty()) << report->problems.front();
    previous = volume;
  }
}

}  // namespace
}  // namespace strata
