// Launch and instance-store costs (bench/README.md has the results and their ratios):
//
//   BM_RunInstances/<count>        one RunInstances of `count` instances from an image whose root
//                                  snapshot maps 256 MiB; durable; reports the data bytes the
//                                  launch added (0: every volume is a clone)
//   BM_RandomIo/<store>/<write>    4 KiB random I/O at QD32 over 1 GiB of a filled device on the
//                                  real disk: store 1 = instance store (unlinked scratch file),
//                                  0 = an EBS-mode pool volume; write 0 = read, 1 = write
//
// STRATA_BENCH_DIR picks the directory for the pools (default /var/tmp).
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>

#include <benchmark/benchmark.h>

#include "strata/compute.h"
#include "strata/pool.h"

#include "io_driver.h"

namespace strata {
namespace {

// A launch of `image` with what `set` changes from RunSpec's defaults.
RunSpec LaunchSpec(const std::string& image, const std::function<void(RunSpec&)>& set = nullptr) {
  RunSpec r;
  r.image_id = image;
  if (set) {
    set(r);
  }
  return r;
}

constexpr uint64_t kSpanBytes = 1ull << 30;

void Must(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench setup failed: %s\n", s.ToString().c_str());
    std::abort();
  }
}

struct Fixture {
  std::unique_ptr<Pool> pool;
  std::unique_ptr<Compute> compute;
  std::string image_id;
  std::string instance_id;  // an m5d.large: EBS root + instance store at /dev/sdb
  std::unique_ptr<EventLoop> loop;
};

void Fill(Volume* v, uint64_t bytes) {
  constexpr size_t kBlock = 8 << 20;
  auto* block = static_cast<std::byte*>(std::aligned_alloc(4096, kBlock));  // as NBD's buffers
  std::memset(block, 0x33, kBlock);
  for (uint64_t off = 0; off < bytes; off += kBlock) {
    Must(v->Write(off, {block, kBlock}, false));
  }
  std::free(block);
  Must(v->Flush());
}

Fixture& Get() {
  static Fixture* fx = [] {
    auto* f = new Fixture();
    const char* base = std::getenv("STRATA_BENCH_DIR");
    std::string dir = std::string(base != nullptr ? base : "/var/tmp") + "/strata-computebench";
    std::filesystem::remove_all(dir);
    Must(Pool::Create(dir, PoolOptions{}));
    f->pool = std::move(*Pool::Open(dir, PoolOptions{}));
    f->compute = std::move(*Compute::Open(f->pool.get(), ComputeOptions{}));
    auto root = f->pool->CreateVolume(VolumeSpec{2ull << 30, "", "gp3", ""});
    Fill(f->pool->OpenVolume(root->volume_id)->get(), 256ull << 20);
    auto snap = f->pool->CreateSnapshot(root->volume_id, "root");
    ImageSpec spec;
    spec.name = "bench";
    BlockDeviceMapping m;
    m.device_name = "/dev/xvda";
    m.snapshot_id = snap->snapshot_id;
    BlockDeviceMapping store;
    store.device_name = "/dev/sdb";
    store.virtual_name = "ephemeral0";
    spec.mappings = {m, store};
    f->image_id = f->compute->RegisterImage(spec)->image_id;
    auto inst = f->compute->RunInstances(
        LaunchSpec(f->image_id, [&](RunSpec& r) { r.instance_type = "m5d.large"; }));
    f->instance_id = (*inst)[0].instance_id;
    Fill(f->compute->OpenExport(f->instance_id + "/sdb")->get(), kSpanBytes);
    Fill(f->compute->OpenExport(f->instance_id + "/xvda")->get(), kSpanBytes);
    f->loop = std::move(*f->pool->CreateEventLoop(256));
    return f;
  }();
  return *fx;
}

void BM_RunInstances(benchmark::State& state) {
  Fixture& fx = Get();
  const auto count = static_cast<uint32_t>(state.range(0));
  uint64_t added = 0;
  for (auto _ : state) {
    const uint64_t before = fx.pool->Info().used_bytes;
    auto launched =
        fx.compute->RunInstances(LaunchSpec(fx.image_id, [&](RunSpec& r) { r.count = count; }));
    if (!launched.ok()) {
      state.SkipWithError(launched.status().ToString().c_str());
      break;
    }
    added += fx.pool->Info().used_bytes - before;
    state.PauseTiming();
    std::vector<std::string> ids;
    for (const InstanceInfo& i : *launched) {
      ids.push_back(i.instance_id);
    }
    Must(fx.compute->TerminateInstances(ids).status());
    Must(fx.pool->WaitForReclaim());
    state.ResumeTiming();
  }
  state.counters["data_bytes_added"] = static_cast<double>(added);
  state.counters["per_instance_us"] =
      benchmark::Counter(static_cast<double>(count), benchmark::Counter::kIsIterationInvariantRate |
                                                         benchmark::Counter::kInvert);
}
BENCHMARK(BM_RunInstances)->Arg(1)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_RandomIo(benchmark::State& state) {
  Fixture& fx = Get();
  const bool store = state.range(0) == 1, write = state.range(1) == 1;
  auto volume = fx.compute->OpenExport(fx.instance_id + (store ? "/sdb" : "/xvda"));
  Must(volume.status());
  QueueDriver driver(volume->get(), fx.loop.get(),
                     write ? IoRequest::Kind::kWrite : IoRequest::Kind::kRead, 32, 4096, kSpanBytes,
                     write ? 7 : 9);
  uint64_t total = 0;
  for (auto _ : state) {
    if (!driver.Run(4096)) {
      state.SkipWithError("I/O failed");
      break;
    }
    total += 4096;
  }
  state.counters["IOPS"] =
      benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RandomIo)->ArgsProduct({{1, 0}, {0, 1}})->UseRealTime()->MinTime(3.0);

}  // namespace
}  // namespace strata

BENCHMARK_MAIN();
