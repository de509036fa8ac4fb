// Snapshot costs, each at two scales (bench/README.md has the results and their ratios):
//
//   BM_CreateSnapshot/<GiB mapped>/<snapshots>  one CreateSnapshot, durable (NullEnv data, LMDB
//                                               on disk): 1 vs 64 GiB mapped, 1 vs 1000 snapshots
//   BM_SnapshotBump/<GiB mapped>/<snapshots>    the same without its commit (drain + epoch bump)
//   BM_ReadWithSnapshots/<snapshots>            4 KiB random reads' metadata path, 0 vs 1000
//                                               snapshots (16 chunks rewritten between each)
//   BM_ListChangedBlocks/<GiB mapped>           10 changed chunks between two snapshots
//   BM_CowWrite/<qd>/<chunk KiB>, BM_Overwrite   4 KiB random writes on the real disk: first write
//                                               to a chunk after a snapshot vs an overwrite
//   BM_CowWriteFilled/<qd>/64                   the same, timed until the background filler has
//                                               copied the rest of each chunk too
//   BM_ReadLatencyDuringReclaim/<reclaiming>    QD1 read latency while 64k versions are freed
//
// STRATA_BENCH_DIR picks the directory for the pools (default /var/tmp).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include <benchmark/benchmark.h>

#include "strata/pool.h"

#include "io_driver.h"
#include "null_env.h"

namespace strata {
namespace {

constexpr uint64_t kChunk = 65536;

std::string BenchDir(const std::string& name) {
  const char* base = std::getenv("STRATA_BENCH_DIR");
  std::string dir = std::string(base != nullptr ? base : "/var/tmp") + "/strata-snapbench-" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

void Must(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench setup failed: %s\n", s.ToString().c_str());
    std::abort();
  }
}

struct Fixture {
  NullEnv env;
  std::unique_ptr<Pool> pool;
  std::string volume_id;
  std::shared_ptr<Volume> volume;
  uint64_t mapped_chunks = 0;
};

// A pool (NullEnv data) with one volume of `gib` GiB mapped and `snapshots` snapshots, each
// after 16 random chunks were rewritten.
Fixture& Mapped(int gib, int snapshots) {
  static std::map<std::pair<int, int>, Fixture*> fixtures;
  Fixture*& fx = fixtures[{gib, snapshots}];
  if (fx != nullptr) {
    return *fx;
  }
  fx = new Fixture();
  std::string dir = BenchDir("map" + std::to_string(gib) + "-" + std::to_string(snapshots));
  PoolOptions options;
  options.env = &fx->env;
  options.commit_interval_ms = 0;
  Must(Pool::Create(dir, options));
  fx->pool = std::move(*Pool::Open(dir, options));
  auto info = fx->pool->CreateVolume(VolumeSpec{128ull << 30, "map", "gp3", ""});
  fx->volume_id = info->volume_id;
  fx->volume = *fx->pool->OpenVolume(info->volume_id);
  fx->mapped_chunks = (uint64_t{static_cast<unsigned>(gib)} << 30) / kChunk;
  std::vector<std::byte> block(4096, std::byte{1});
  for (uint64_t c = 0; c < fx->mapped_chunks; c++) {
    Must(fx->volume->Write(c * kChunk, block, false));
    if (c % 65536 == 65535) {
      Must(fx->pool->Flush());
    }
  }
  std::mt19937_64 rng(9);
  for (int s = 0; s < snapshots; s++) {
    for (int i = 0; i < 16; i++) {
      Must(fx->volume->Write((rng() % fx->mapped_chunks) * kChunk, block, false));
    }
    Must(fx->pool->CreateSnapshot(fx->volume_id, "").status());
  }
  Must(fx->pool->Flush());
  return *fx;
}

// Each iteration takes a snapshot; between iterations (untimed) it is deleted again, so the
// count stays at `snapshots`.
void BM_CreateSnapshot(benchmark::State& state) {
  Fixture& fx = Mapped(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  for (auto _ : state) {
    auto snap = fx.pool->CreateSnapshot(fx.volume_id, "bench");
    state.PauseTiming();
    if (!snap.ok()) {
      state.SkipWithError("snapshot failed");
      break;
    }
    Must(fx.pool->DeleteSnapshot(snap->snapshot_id));
    Must(fx.pool->WaitForReclaim());
    state.ResumeTiming();
  }
}
BENCHMARK(BM_CreateSnapshot)
    ->Args({1, 1})
    ->Args({64, 1})
    ->Args({1, 1000})
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(1.0);

void BM_ReadWithSnapshots(benchmark::State& state) {
  Fixture& fx = Mapped(1, static_cast<int>(state.range(0)));
  std::mt19937_64 rng(1);
  std::vector<std::byte> buf(4096);
  for (auto _ : state) {
    if (!fx.volume->Read((rng() % fx.mapped_chunks) * kChunk, buf).ok()) {
      state.SkipWithError("read failed");
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReadWithSnapshots)->Arg(0)->Arg(1000)->MinTime(1.0);

// Changed blocks between two snapshots 10 chunk writes apart, on 1 vs 64 GiB mapped.
void BM_ListChangedBlocks(benchmark::State& state) {
  Fixture& fx = Mapped(static_cast<int>(state.range(0)), 0);
  static std::map<int, std::pair<std::string, std::string>> pairs;
  auto& pair = pairs[static_cast<int>(state.range(0))];
  if (pair.first.empty()) {
    pair.first = fx.pool->CreateSnapshot(fx.volume_id, "a")->snapshot_id;
    std::vector<std::byte> block(4096, std::byte{3});
    for (uint64_t i = 0; i < 10; i++) {
      Must(fx.volume->Write((i * 7919 % fx.mapped_chunks) * kChunk, block, false));
    }
    pair.second = fx.pool->CreateSnapshot(fx.volume_id, "b")->snapshot_id;
  }
  for (auto _ : state) {
    auto list = fx.pool->ListChangedBlocks(pair.first, pair.second, kChunk, 0, 1000);
    if (!list.ok() || list->blocks.size() != 10) {
      state.SkipWithError("wrong changed-block list");
      break;
    }
  }
}
BENCHMARK(BM_ListChangedBlocks)->Arg(1)->Arg(64)->Unit(benchmark::kMicrosecond)->MinTime(1.0);

// ---- real disk: copy-on-write vs overwrite

struct DiskFixture {
  std::unique_ptr<Pool> pool;
  std::string volume_id;
  std::shared_ptr<Volume> volume;
  std::unique_ptr<EventLoop> loop;
};

// A filled 1 GiB volume in a pool of `chunk_kib` KiB chunks, on the real disk.
DiskFixture& Disk(int chunk_kib) {
  static std::map<int, DiskFixture*> fixtures;
  DiskFixture*& fx = fixtures[chunk_kib];
  if (fx == nullptr) {
    auto* f = new DiskFixture();
    std::string dir = BenchDir("disk" + std::to_string(chunk_kib));
    PoolOptions options;
    options.chunk_size_bytes = static_cast<uint32_t>(chunk_kib) * 1024;
    options.background_fill = std::getenv("STRATA_BENCH_NO_FILL") == nullptr;
    Must(Pool::Create(dir, options));
    f->pool = std::move(*Pool::Open(dir, options));
    auto info = f->pool->CreateVolume(VolumeSpec{1ull << 30, "cow", "gp3", ""});
    f->volume_id = info->volume_id;
    f->volume = *f->pool->OpenVolume(info->volume_id);
    std::vector<std::byte> block(8 << 20, std::byte{0x33});
    for (uint64_t off = 0; off < (1ull << 30); off += block.size()) {
      Must(f->volume->Write(off, block, false));
    }
    Must(f->pool->Flush());
    f->loop = std::move(*EventLoop::Create(nullptr, 256));
    fx = f;
  }
  return *fx;
}

// `cow`: a fresh snapshot before each batch. `until_filled`: the batch ends when the background
// filler has also copied the rest of every chunk it made partial (the whole cost of the copy).
void WriteBench(benchmark::State& state, bool cow, bool until_filled = false) {
  DiskFixture& fx = Disk(static_cast<int>(state.range(1)));
  const uint32_t qd = static_cast<uint32_t>(state.range(0));
  QueueDriver driver(fx.volume.get(), fx.loop.get(), IoRequest::Kind::kWrite, qd, 4096, 1ull << 30,
                     qd * 31 + (cow ? 1 : 0));
  std::string snap;
  uint64_t total = 0;
  double snapshot_max_ms = 0;
  double snapshot_total_ms = 0;
  uint64_t snapshots = 0;
  for (auto _ : state) {
    state.PauseTiming();
    if (cow) {  // a fresh snapshot: almost every chunk the next writes touch is shared
      auto t0 = std::chrono::steady_clock::now();
      auto s = fx.pool->CreateSnapshot(fx.volume_id, "");  // fills what the last batch left
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      snapshot_max_ms = std::max(snapshot_max_ms, ms);
      snapshot_total_ms += ms;
      snapshots++;
      if (!snap.empty()) {
        Must(fx.pool->DeleteSnapshot(snap));
      }
      snap = s->snapshot_id;
      Must(fx.pool->WaitForReclaim());
    }
    state.ResumeTiming();
    if (!driver.Run(1024)) {
      state.SkipWithError("write failed");
      break;
    }
    while (until_filled && fx.pool->Info().partial_chunks != 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    total += 1024;
  }
  if (!snap.empty()) {
    Must(fx.pool->DeleteSnapshot(snap));
    Must(fx.pool->WaitForReclaim());
  }
  state.counters["IOPS"] =
      benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
  if (cow) {
    state.counters["snapshot_max_ms"] = snapshot_max_ms;
    state.counters["snapshot_mean_ms"] = snapshot_total_ms / static_cast<double>(snapshots);
  }
}
void BM_Overwrite(benchmark::State& state) { WriteBench(state, false); }
void BM_CowWrite(benchmark::State& state) { WriteBench(state, true); }
void BM_CowWriteFilled(benchmark::State& state) { WriteBench(state, true, true); }
// Args: queue depth, chunk size in KiB (64: the default; 4: copy-on-write of a 4 KiB write is a
// whole-chunk write, nothing to copy).
BENCHMARK(BM_Overwrite)->ArgsProduct({{1, 32}, {64, 4}})->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_CowWrite)->ArgsProduct({{1, 32}, {64, 4}})->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_CowWriteFilled)->ArgsProduct({{1, 32}, {64}})->UseRealTime()->MinTime(2.0);

// ---- foreground reads while a large snapshot delete is reclaimed

void BM_ReadLatencyDuringReclaim(benchmark::State& state) {
  const bool reclaiming = state.range(0) != 0;
  Fixture& fx = Mapped(4, 0);  // 65,536 chunks mapped
  std::mt19937_64 rng(5);
  std::vector<std::byte> buf(4096);
  std::vector<double> lat_us;
  for (auto _ : state) {
    state.PauseTiming();
    std::string snap;
    if (reclaiming) {  // a snapshot whose 65,536 chunks were all rewritten since: all unique
      snap = fx.pool->CreateSnapshot(fx.volume_id, "")->snapshot_id;
      std::vector<std::byte> block(4096, std::byte{7});
      for (uint64_t c = 0; c < fx.mapped_chunks; c++) {
        Must(fx.volume->Write(c * kChunk, block, false));
      }
      Must(fx.pool->Flush());
      Must(fx.pool->DeleteSnapshot(snap));  // the reclaimer starts now
    }
    state.ResumeTiming();
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (std::chrono::steady_clock::now() < until) {
      auto t0 = std::chrono::steady_clock::now();
      if (!fx.volume->Read((rng() % fx.mapped_chunks) * kChunk, buf).ok()) {
        state.SkipWithError("read failed");
      }
      lat_us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    state.PauseTiming();
    Must(fx.pool->WaitForReclaim());
    state.ResumeTiming();
  }
  std::sort(lat_us.begin(), lat_us.end());
  auto pct = [&lat_us](double p) {
    return lat_us.empty() ? 0.0 : lat_us[static_cast<size_t>(p * (lat_us.size() - 1))];
  };
  state.counters["p50_us"] = pct(0.5);
  state.counters["p99_us"] = pct(0.99);
  state.counters["max_us"] = lat_us.empty() ? 0.0 : lat_us.back();
  state.counters["reads"] = static_cast<double>(lat_us.size());
}
BENCHMARK(BM_ReadLatencyDuringReclaim)->Arg(0)->Arg(1)->Iterations(3)->UseRealTime();

}  // namespace
}  // namespace strata

BENCHMARK_MAIN();
