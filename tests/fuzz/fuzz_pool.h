// The fuzz targets' pool: 4 KiB chunks on a SimEnv (data in memory), metadata on tmpfs when
// there is one (FLUSH and FUA in the inputs commit LMDB, which fsyncs), commits only on demand.
// Aborts if it cannot be made: a fuzz run without its pool would test nothing.
#ifndef STRATA_TESTS_FUZZ_FUZZ_POOL_H_
#define STRATA_TESTS_FUZZ_FUZZ_POOL_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "strata/compute.h"
#include "strata/pool.h"

#include "io/sim_env.h"

namespace strata::fuzz {

inline std::unique_ptr<Pool> MakePool(SimEnv* env, const std::string& name, bool with_volume) {
  const std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
  const std::string dir = base + "/strata-" + name + "-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  PoolOptions options;
  options.env = env;
  options.commit_interval_ms = 0;
  options.chunk_size_bytes = 4096;
  if (!Pool::Create(dir, options).ok()) {
    std::abort();
  }
  auto pool = Pool::Open(dir, options);
  if (!pool.ok() ||
      (with_volume && !(*pool)->CreateVolume(VolumeSpec{1 << 20, "disk", "gp3", ""}).ok())) {
    std::abort();
  }
  return std::move(*pool);
}

// A pool as above with the EC2 layer on it (instance store refused: nothing may outlive a run).
struct ComputeFixture {
  ComputeFixture(uint64_t seed, const std::string& name) : env(seed) {
    pool = MakePool(&env, name, /*with_volume=*/true);
    ComputeOptions options;
    options.hosts_instance_store = false;
    auto opened = Compute::Open(pool.get(), options);
    if (!opened.ok()) {
      std::abort();
    }
    compute = std::move(*opened);
  }
  SimEnv env;
  std::unique_ptr<Pool> pool;
  std::unique_ptr<Compute> compute;
};

}  // namespace strata::fuzz

#endif  // STRATA_TESTS_FUZZ_FUZZ_POOL_H_
