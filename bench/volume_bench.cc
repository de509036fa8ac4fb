// Google Benchmark micro-benchmarks of the library (bench/README.md explains each).
//
//   BM_Volume/<pattern>/<qd>   4 KiB random I/O through the async API on the real disk
//                              (io_uring, O_DIRECT): randread and overwrite on a filled 1 GiB
//                              volume, firstwrite on a fresh thin volume (every write allocates)
//   BM_MapLookup/<GiB mapped>  one 4 KiB read's metadata path (NullEnv: no data I/O)
//   BM_GroupCommit/<GiB mapped> commit of 256 new mappings (NullEnv)
//
// STRATA_BENCH_DIR picks the directory for the pool (default: /var/tmp); it should be on the
// same file system as the raw-file fio run it is compared with (bench/run.sh does that).
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include <benchmark/benchmark.h>

#include "strata/event_loop.h"
#include "strata/pool.h"

#include "null_env.h"

namespace strata {
namespace {

std::string BenchDir(const std::string& name) {
  const char* base = std::getenv("STRATA_BENCH_DIR");
  std::string dir = std::string(base != nullptr ? base : "/var/tmp") + "/strata-bench-" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

// Keeps `qd` 4 KiB operations in flight on one loop at random offsets and counts completions;
// subclasses say how one is issued (through a Volume, or straight to a file).
class QdDriver {
 public:
  QdDriver(EventLoop* loop, uint32_t qd, uint64_t span_bytes, uint64_t seed)
      : loop_(loop), qd_(qd), span_blocks_(span_bytes / 4096), rng_(seed) {
    buffers_ = static_cast<std::byte*>(std::aligned_alloc(4096, uint64_t{qd} * 4096));
    std::memset(buffers_, 0x5a, uint64_t{qd} * 4096);
  }
  virtual ~QdDriver() { std::free(buffers_); }

  // Runs until `count` more operations completed. Returns false on an I/O error.
  bool Run(uint64_t count) {
    target_ = completed_ + count;
    for (uint32_t i = 0; i < qd_; i++) {
      Next(i);
    }
    while (in_flight_ > 0) {
      loop_->RunOnce(-1);
    }
    return ok_;
  }

 protected:
  virtual void Issue(uint32_t index, uint64_t offset_bytes, std::byte* buf) = 0;
  void Completed(uint32_t index, bool ok) {
    in_flight_--;
    completed_++;
    ok_ = ok_ && ok;
    if (completed_ + in_flight_ < target_) {
      Next(index);
    }
  }
  EventLoop* loop_;

 private:
  void Next(uint32_t index) {
    in_flight_++;
    Issue(index, (rng_() % span_blocks_) * 4096, buffers_ + uint64_t{index} * 4096);
  }
  uint32_t qd_;
  uint64_t span_blocks_;
  std::mt19937_64 rng_;
  std::byte* buffers_;
  uint64_t in_flight_ = 0, completed_ = 0, target_ = 0;
  bool ok_ = true;
};

class VolumeDriver final : public QdDriver {
 public:
  VolumeDriver(Volume* volume, EventLoop* loop, IoRequest::Kind kind, uint32_t qd,
               uint64_t span_bytes, uint64_t seed)
      : QdDriver(loop, qd, span_bytes, seed), volume_(volume), kind_(kind), requests_(qd) {
    for (uint32_t i = 0; i < qd; i++) {
      requests_[i].user = this;
      requests_[i].callback = [](IoRequest* r, const Status& s) {
        auto* d = static_cast<VolumeDriver*>(r->user);
        d->Completed(static_cast<uint32_t>(r - d->requests_.data()), s.ok());
      };
    }
  }

 private:
  void Issue(uint32_t index, uint64_t offset_bytes, std::byte* buf) override {
    IoRequest& r = requests_[index];
    r.kind = kind_;
    r.offset_bytes = offset_bytes;
    r.length_bytes = 4096;
    r.data = buf;
    volume_->Submit(loop_, &r);
  }
  Volume* volume_;
  IoRequest::Kind kind_;
  std::vector<IoRequest> requests_;
};

class FileDriver final : public QdDriver {
 public:
  FileDriver(FileId file, EventLoop* loop, IoOp::Kind kind, uint32_t qd, uint64_t span_bytes)
      : QdDriver(loop, qd, span_bytes, qd * 31), file_(file), kind_(kind), ops_(qd) {
    for (uint32_t i = 0; i < qd; i++) {
      ops_[i].ctx = this;
      ops_[i].done = [](IoOp* op) {
        auto* d = static_cast<FileDriver*>(op->ctx);
        d->Completed(static_cast<uint32_t>(op - d->ops_.data()), op->result >= 0);
      };
    }
  }

 private:
  void Issue(uint32_t index, uint64_t offset_bytes, std::byte* buf) override {
    IoOp& op = ops_[index];
    op.kind = kind_;
    op.file = file_;
    op.buf = buf;
    op.length_bytes = 4096;
    op.offset_bytes = offset_bytes;
    loop_->engine()->Submit(&op);
  }
  FileId file_;
  IoOp::Kind kind_;
  std::vector<IoOp> ops_;
};

struct DiskFixture {
  std::unique_ptr<Pool> pool;
  std::shared_ptr<Volume> filled;
  std::unique_ptr<EventLoop> loop;
};

DiskFixture& Disk() {
  static DiskFixture* f = [] {
    auto* fx = new DiskFixture();
    std::string dir = BenchDir("disk");
    PoolOptions options;
    if (!Pool::Create(dir, options).ok()) {
      std::abort();
    }
    fx->pool = std::move(*Pool::Open(dir, options));
    auto info = fx->pool->CreateVolume(VolumeSpec{1ull << 30, "filled", "gp3", ""});
    fx->filled = *fx->pool->OpenVolume(info->volume_id);
    std::vector<std::byte> block(8 << 20, std::byte{0x33});
    for (uint64_t off = 0; off < (1ull << 30); off += block.size()) {
      if (!fx->filled->Write(off, block, false).ok()) {
        std::abort();
      }
    }
    if (!fx->pool->Flush().ok()) {
      std::abort();
    }
    fx->loop = std::move(*EventLoop::Create(nullptr, 256));
    return fx;
  }();
  return *f;
}

void BM_Volume(benchmark::State& state, IoRequest::Kind kind, bool fresh) {
  DiskFixture& fx = Disk();
  const uint32_t qd = static_cast<uint32_t>(state.range(0));
  std::shared_ptr<Volume> volume = fx.filled;
  uint64_t span = 1ull << 30;
  if (fresh) {  // a new 64 GiB thin volume: random 4 KiB writes almost all allocate a chunk
    span = 64ull << 30;
    auto info = fx.pool->CreateVolume(VolumeSpec{span, "fresh", "gp3", ""});
    volume = *fx.pool->OpenVolume(info->volume_id);
  }
  VolumeDriver driver(volume.get(), fx.loop.get(), kind, qd, span, qd * 7919);
  uint64_t total = 0;
  for (auto _ : state) {
    if (!driver.Run(2048)) {
      state.SkipWithError("I/O error");
      break;
    }
    total += 2048;
  }
  state.SetItemsProcessed(static_cast<int64_t>(total));
  state.SetBytesProcessed(static_cast<int64_t>(total * 4096));
  state.counters["IOPS"] =
      benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
  if (fresh) {
    std::string id = volume->id();
    volume.reset();
    (void)fx.pool->DeleteVolume(id);
  }
}

BENCHMARK_CAPTURE(BM_Volume, randread, IoRequest::Kind::kRead, false)
    ->Arg(1)
    ->Arg(32)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Volume, overwrite, IoRequest::Kind::kWrite, false)
    ->Arg(1)
    ->Arg(32)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Volume, firstwrite, IoRequest::Kind::kWrite, true)
    ->Arg(1)
    ->Arg(32)
    ->UseRealTime()
    ->MinTime(2.0);

// ---- the same loop and engine straight on a raw file: the hardware limit without the store

void BM_RawFile(benchmark::State& state, IoOp::Kind kind, bool fresh) {
  DiskFixture& fx = Disk();
  Env* env = Env::Default();
  const std::string path = BenchDir(fresh ? "rawthin" : "rawfile");
  uint64_t span = fresh ? (64ull << 30) : (1ull << 30);
  FileId file = *env->OpenFile(path, true, true);
  if (fresh) {
    (void)env->Truncate(file, span);  // sparse: every write fills a hole
  } else {
    std::vector<std::byte> block(8 << 20, std::byte{0x44});
    void* aligned = std::aligned_alloc(4096, block.size());
    std::memcpy(aligned, block.data(), block.size());
    for (uint64_t off = 0; off < span; off += block.size()) {
      (void)env->WriteSync(file, aligned, block.size(), off);
    }
    std::free(aligned);
    (void)env->Sync(file);
  }
  FileDriver driver(file, fx.loop.get(), kind, static_cast<uint32_t>(state.range(0)), span);
  uint64_t total = 0;
  for (auto _ : state) {
    if (!driver.Run(2048)) {
      state.SkipWithError("I/O error");
      break;
    }
    total += 2048;
  }
  state.counters["IOPS"] =
      benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsRate);
  (void)env->CloseFile(file);
  std::filesystem::remove(path);
}

BENCHMARK_CAPTURE(BM_RawFile, randread, IoOp::Kind::kRead, false)
    ->Arg(1)
    ->Arg(32)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_RawFile, overwrite, IoOp::Kind::kWrite, false)
    ->Arg(1)
    ->Arg(32)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_RawFile, firstwrite, IoOp::Kind::kWrite, true)
    ->Arg(1)
    ->Arg(32)
    ->UseRealTime()
    ->MinTime(2.0);

// ---- metadata scaling (NullEnv)

struct MapFixture {
  NullEnv env;
  std::unique_ptr<Pool> pool;
  std::shared_ptr<Volume> volume;
  uint64_t mapped_chunks = 0;
};

// A pool whose one volume has `gib` GiB mapped (64 KiB chunks), committed.
MapFixture& Mapped(int gib) {
  static std::map<int, MapFixture*> fixtures;
  MapFixture*& fx = fixtures[gib];
  if (fx == nullptr) {
    fx = new MapFixture();
    std::string dir = BenchDir("map" + std::to_string(gib));
    PoolOptions options;
    options.env = &fx->env;
    options.commit_interval_ms = 0;
    if (!Pool::Create(dir, options).ok()) {
      std::abort();
    }
    fx->pool = std::move(*Pool::Open(dir, options));
    auto info = fx->pool->CreateVolume(VolumeSpec{128ull << 30, "map", "gp3", ""});
    fx->volume = *fx->pool->OpenVolume(info->volume_id);
    fx->mapped_chunks = (uint64_t{static_cast<unsigned>(gib)} << 30) / 65536;
    std::vector<std::byte> block(4096, std::byte{1});
    for (uint64_t c = 0; c < fx->mapped_chunks; c++) {
      if (!fx->volume->Write(c * 65536, block, false).ok()) {
        std::abort();
      }
      if (c % 65536 == 65535 && !fx->pool->Flush().ok()) {
        std::abort();
      }
    }
    if (!fx->pool->Flush().ok()) {
      std::abort();
    }
  }
  return *fx;
}

void BM_MapLookup(benchmark::State& state) {
  MapFixture& fx = Mapped(static_cast<int>(state.range(0)));
  std::mt19937_64 rng(1);
  std::vector<std::byte> buf(4096);
  for (auto _ : state) {
    uint64_t chunk = rng() % fx.mapped_chunks;
    if (!fx.volume->Read(chunk * 65536, buf).ok()) {
      state.SkipWithError("read failed");
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MapLookup)->Arg(1)->Arg(64)->MinTime(1.0);

void BM_GroupCommit(benchmark::State& state) {
  MapFixture& fx = Mapped(static_cast<int>(state.range(0)));
  std::mt19937_64 rng(2);
  std::vector<std::byte> block(4096, std::byte{2});
  const uint64_t unmapped_first = fx.mapped_chunks;
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < 256; i++) {  // 256 new mappings in the overlay
      uint64_t chunk = unmapped_first + rng() % ((128ull << 30) / 65536 - unmapped_first);
      (void)fx.volume->Write(chunk * 65536, block, false);
    }
    state.ResumeTiming();
    if (!fx.pool->Flush().ok()) {
      state.SkipWithError("flush failed");
    }
  }
  state.SetItemsProcessed(state.iterations() * 256);
}
BENCHMARK(BM_GroupCommit)->Arg(1)->Arg(64)->MinTime(1.0)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace strata

BENCHMARK_MAIN();
