// scaling_bench: how the data path scales with threads. N threads, each with its own EventLoop
// and its own volume of one pool, keep 32 random 4 KiB requests in flight for a few seconds;
// reads, then in-place overwrites, of volumes written in full and committed (every lookup goes
// to the committed map, as on a long-running pool). Rounds are interleaved (every thread count
// once per round) and the median of each is reported, with its ratio to one thread.
//
//   scaling_bench DIR|null [SECONDS_PER_CASE] [ROUNDS] [MAX_THREADS]
//
// DIR: where the pool goes (made and removed here). `null`: the data files are a NullEnv (no
// data I/O at all, completions inline; LMDB on /dev/shm), so what is measured is the data path's
// own CPU and locks, the part that must scale with cores. bench/scaling.sh runs both.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "strata/pool.h"

#include "io_driver.h"
#include "null_env.h"

namespace strata {
namespace {

constexpr uint64_t kVolumeBytes = 256ull << 20;  // per thread: 4,096 chunks of 64 KiB
constexpr uint32_t kQueueDepth = 32;

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "scaling_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

std::vector<std::shared_ptr<Volume>> MakeVolumes(Pool* pool, int count) {
  std::vector<std::shared_ptr<Volume>> volumes;
  std::vector<std::byte> block(8 << 20, std::byte{0x33});
  for (int i = 0; i < count; i++) {
    auto info = pool->CreateVolume(
        VolumeSpec{kVolumeBytes, "scale-" + std::to_string(i), "unlimited", "", false});
    if (!info.ok()) Die("create volume", info.status());
    auto volume = pool->OpenVolume(info->volume_id);
    if (!volume.ok()) Die("open volume", volume.status());
    for (uint64_t off = 0; off < kVolumeBytes; off += block.size()) {
      Status s = (*volume)->Write(off, block, false);
      if (!s.ok()) Die("fill", s);
    }
    volumes.push_back(*volume);
  }
  Status s = pool->Flush();  // everything committed: lookups read the map in LMDB
  if (!s.ok()) Die("flush", s);
  return volumes;
}

// Requests per second with `threads` threads, each on its own volume and loop.
double RunCase(Pool* pool, const std::vector<std::shared_ptr<Volume>>& volumes, int threads,
               IoRequest::Kind kind, double seconds) {
  std::vector<uint64_t> done(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; t++) {
    workers.emplace_back([&, t] {
      auto loop = pool->CreateEventLoop(256);
      if (!loop.ok()) Die("event loop", loop.status());
      QueueDriver driver(volumes[static_cast<size_t>(t)].get(), loop->get(), kind, kQueueDepth,
                         4096, kVolumeBytes, 7919u * static_cast<uint64_t>(t + 1));
      done[static_cast<size_t>(t)] = driver.RunFor(seconds);
      if (!driver.ok()) Die("I/O", Status::IOError("a request failed", 5));
    });
  }
  for (std::thread& w : workers) w.join();
  uint64_t total = 0;
  for (uint64_t d : done) total += d;
  return static_cast<double>(total) / seconds;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: scaling_bench DIR [SECONDS_PER_CASE] [ROUNDS] [MAX_THREADS]\n");
    return 2;
  }
  const bool null_data = std::string(argv[1]) == "null";
  const std::string dir =
      (null_data ? std::string("/dev/shm") : std::string(argv[1])) + "/strata-scaling-pool";
  const double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  const int max_threads = argc > 4 ? std::atoi(argv[4]) : 8;
  std::filesystem::remove_all(dir);
  NullEnv null_env;
  PoolOptions options;
  options.env = null_data ? &null_env : nullptr;
  Status s = Pool::Create(dir, options);
  if (!s.ok()) Die("create pool", s);
  auto pool = Pool::Open(dir, options);
  if (!pool.ok()) Die("open pool", pool.status());
  auto volumes = MakeVolumes(pool->get(), max_threads);
  std::vector<int> counts;
  for (int t = 1; t <= max_threads; t *= 2) counts.push_back(t);
  // (kind, threads) -> IOPS of each round
  std::map<std::pair<int, int>, std::vector<double>> iops;
  for (int r = 0; r < rounds; r++) {
    for (IoRequest::Kind kind : {IoRequest::Kind::kRead, IoRequest::Kind::kWrite}) {
      for (int t : counts) {
        iops[{static_cast<int>(kind), t}].push_back(
            RunCase(pool->get(), volumes, t, kind, seconds));
      }
    }
  }
  std::printf("| case | threads | IOPS (median of %d) | vs 1 thread |\n|---|---|---|---|\n",
              rounds);
  for (IoRequest::Kind kind : {IoRequest::Kind::kRead, IoRequest::Kind::kWrite}) {
    const double one = Median(iops[{static_cast<int>(kind), 1}]);
    for (int t : counts) {
      const double m = Median(iops[{static_cast<int>(kind), t}]);
      std::printf("| %s | %d | %.0f | %.2fx |\n",
                  kind == IoRequest::Kind::kRead ? "4 KiB randread QD32" : "4 KiB overwrite QD32",
                  t, m, m / one);
    }
  }
  volumes.clear();
  pool->reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) { return strata::Main(argc, argv); }
