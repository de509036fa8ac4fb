// Volume types and metrics (bench/README.md has the results):
//
//   BM_Gp2BurstThenBaseline   a 100 GiB gp2 volume with 2 s of burst credits left: 4 KiB random
//                             reads at QD32 for 6 s; IOPS in the first and the last second
//                             (the model: 3,000 while credits last, then the 300 baseline)
//   BM_Gp3Holds/<kind>        a gp3 volume provisioned at 4,000 IOPS and 200 MiB/s: 4 KiB random
//                             reads at QD32 (kind 0: IOPS-bound), 256 KiB (kind 1: bound by
//                             throughput); achieved / provisioned
//   BM_RandRead/<metrics>/<enforce>/<disk>  4 KiB random reads at QD32 on an unlimited volume:
//                             the cost of counting metrics (and of the governor with nothing to
//                             enforce), CPU-only and on the real disk
//
// Data files are a NullEnv (no disk) unless <disk>: the limiter and the counters are measured,
// not the device.
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>

#include <benchmark/benchmark.h>

#include "strata/pool.h"

#include "io_driver.h"
#include "null_env.h"
#include "store/pool_impl.h"

namespace strata {
namespace {

constexpr uint64_t kSpan = 256ull << 20;

void Must(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench setup failed: %s\n", s.ToString().c_str());
    std::abort();
  }
}

struct Bed {
  NullEnv env;
  std::unique_ptr<Pool> pool;
  std::shared_ptr<Volume> volume;
  std::string volume_id;
  std::unique_ptr<EventLoop> loop;
};

// A pool with one filled volume of `spec`; data on the real disk when `disk`, else a NullEnv.
std::unique_ptr<Bed> MakeBed(VolumeSpec spec, bool metrics, bool enforce, bool disk = false) {
  auto bed = std::make_unique<Bed>();
  const char* base = std::getenv("STRATA_BENCH_DIR");
  std::string dir = std::string(base != nullptr ? base : "/var/tmp") + "/strata-qosbench" +
                    (metrics ? "-m" : "") + (enforce ? "-e" : "") + (disk ? "-d" : "");
  std::filesystem::remove_all(dir);
  PoolOptions o;
  o.env = disk ? nullptr : &bed->env;
  o.collect_metrics = metrics;
  o.enforce_volume_limits = enforce;
  Must(Pool::Create(dir, o));
  bed->pool = std::move(*Pool::Open(dir, o));
  auto info = bed->pool->CreateVolume(spec);
  Must(info.status());
  bed->volume_id = info->volume_id;
  // Fill without limits, then put the type back: reads then map real chunks.
  VolumeModification open_up;
  open_up.volume_type = "unlimited";
  Must(bed->pool->ModifyVolume(info->volume_id, open_up).status());
  bed->volume = *bed->pool->OpenVolume(info->volume_id);
  auto* block = static_cast<std::byte*>(std::aligned_alloc(4096, 4 << 20));
  std::memset(block, 1, 4 << 20);
  for (uint64_t off = 0; off < kSpan; off += 4 << 20) {
    Must(bed->volume->Write(off, {block, 4u << 20}, false));
  }
  std::free(block);
  Must(bed->volume->Flush());
  VolumeModification back;
  back.volume_type = spec.volume_type;
  back.iops = spec.iops;
  back.throughput_mibps = spec.throughput_mibps;
  Must(bed->pool->ModifyVolume(info->volume_id, back).status());
  bed->loop = std::move(*bed->pool->CreateEventLoop(256));
  return bed;
}

QueueDriver Reader(Bed* bed, uint32_t qd, uint32_t bytes) {
  return QueueDriver(bed->volume.get(), bed->loop.get(), IoRequest::Kind::kRead, qd, bytes, kSpan,
                     42);
}

void BM_Gp2BurstThenBaseline(benchmark::State& state) {
  for (auto _ : state) {
    auto bed = MakeBed(VolumeSpec{100ull << 30, "", "gp2", ""}, true, true);
    auto* impl = dynamic_cast<PoolImpl*>(bed->pool.get());
    impl->GovernorForTesting(bed->volume_id)->limiter.SetCreditsForTesting(2 * 2700);
    QueueDriver reader = Reader(bed.get(), 32, 4096);
    const double first = static_cast<double>(reader.RunFor(1.0));
    reader.RunFor(4.0);
    const double last = static_cast<double>(reader.RunFor(1.0));
    state.counters["first_second_iops"] = first;
    state.counters["last_second_iops"] = last;
    state.counters["burst_model"] = 3000;
    state.counters["baseline_model"] = 300;
    auto m = bed->pool->DescribeVolumeMetrics(bed->volume_id);
    state.counters["BurstBalance"] = m->burst_balance_percent;
  }
}
BENCHMARK(BM_Gp2BurstThenBaseline)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

void BM_Gp3Holds(benchmark::State& state) {
  const bool by_bytes = state.range(0) == 1;
  VolumeSpec spec{100ull << 30, "", "gp3", ""};
  spec.iops = 4000;
  spec.throughput_mibps = 200;
  for (auto _ : state) {
    auto bed = MakeBed(spec, true, true);
    QueueDriver reader = Reader(bed.get(), by_bytes ? 8 : 32, by_bytes ? 256 << 10 : 4096);
    reader.RunFor(0.5);  // past the start-up tolerance
    const double seconds = 4.0;
    const double done = static_cast<double>(reader.RunFor(seconds));
    const double achieved = by_bytes ? done * 256 / 1024 / seconds : done / seconds;
    state.counters[by_bytes ? "MiBps" : "IOPS"] = achieved;
    state.counters["of_provisioned"] = achieved / (by_bytes ? 200.0 : 4000.0);
  }
}
BENCHMARK(BM_Gp3Holds)->Arg(0)->Arg(1)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

// Args: metrics on, enforcement on (with nothing to enforce), data on the real disk.
void BM_RandRead(benchmark::State& state) {
  static std::unique_ptr<Bed> beds[2][2][2];
  const int metrics = static_cast<int>(state.range(0)), enforce = static_cast<int>(state.range(1)),
            disk = static_cast<int>(state.range(2));
  auto& bed = beds[metrics][enforce][disk];
  if (!bed) {
    bed =
        MakeBed(VolumeSpec{1ull << 30, "", "unlimited", ""}, metrics == 1, enforce == 1, disk == 1);
  }
  QueueDriver reader = Reader(bed.get(), 32, 4096);
  uint64_t total = 0;
  for (auto _ : state) {
    total += reader.RunFor(0.2);
  }
  state.counters["IOPS"] =
      benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
}
// CPU only (NullEnv) in every combination; then the real disk (O_DIRECT, /var/tmp), metrics off
// and on, alternating three times.
BENCHMARK(BM_RandRead)
    ->ArgsProduct({{0, 1}, {0, 1}, {0}})
    ->Args({0, 0, 1})
    ->Args({1, 0, 1})
    ->Args({0, 0, 1})
    ->Args({1, 0, 1})
    ->Args({0, 0, 1})
    ->Args({1, 0, 1})
    ->UseRealTime()
    ->MinTime(3.0)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace strata

BENCHMARK_MAIN();
