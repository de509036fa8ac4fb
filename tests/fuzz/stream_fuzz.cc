// libFuzzer target: bytes as a snapshot stream, imported into an in-memory pool (SimEnv). Every
// input must end in a snapshot or an error that leaves nothing behind; no crash, sanitizer
// report, hang, or cost beyond what the input carries (a declared size is not a cost).
//
//   tools/fuzz.sh 60 stream_fuzz
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "strata/pool.h"
#include "strata/stream.h"

#include "fuzz_pool.h"
#include "io/sim_env.h"

namespace {

class BytesSource final : public strata::ByteSource {
 public:
  BytesSource(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  strata::Result<size_t> Read(void* out, size_t length) override {
    const size_t n = std::min(length, size_ - at_);
    std::memcpy(out, data_ + at_, n);
    at_ += n;
    return n;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

struct Fixture {
  strata::SimEnv env{2};
  std::unique_ptr<strata::Pool> pool;

  Fixture() { pool = strata::fuzz::MakePool(&env, "stream-fuzz", /*with_volume=*/false); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();
  BytesSource source(data, size);
  strata::ImportOptions options;
  options.threads = 1;
  auto imported = strata::ImportSnapshot(fx->pool.get(), options, &source);
  if (imported.ok()) {  // keep the pool small: what was imported goes again
    if (!fx->pool->DeleteSnapshot(imported->snapshot.snapshot_id).ok()) {
      std::abort();
    }
  }
  if (!fx->pool->ListVolumes().empty()) {
    std::abort();  // an import that failed left its volume behind
  }
  return 0;
}
