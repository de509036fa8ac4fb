// Per-volume I/O admission (the EBS performance models) and CloudWatch-named counters.
//
// A VolumeGovernor is shared by every handle and connection of one volume and outlives them (the
// pool keeps it with the volume's record), so limits and counters are per volume, not per client.
#ifndef STRATA_STORE_QOS_H_
#define STRATA_STORE_QOS_H_

#include <atomic>
#include <cstdint>

#include "strata/pool.h"

#include "store/volume_types.h"
#include "util/mutex.h"

namespace strata {

// Token buckets in "virtual time" (GCRA): each admitted request reserves its cost at once and is
// told when it may start; requests over the limit are delayed, never refused. Thread-safe.
class Limiter {
 public:
  // Applies a new model at once (modify-volume); a gp2/st1/sc1 bucket starts full, as on EBS.
  void Configure(const PerfModel& model, uint64_t now_ns);
  // Reserves the cost of a read or write of [offset, offset + length) and returns the steady
  // time (ns) at which it may start (<= now_ns: at once). Sequential I/O is merged into I/O units
  // as EBS counts it. `counted_ops` receives the I/O units charged.
  uint64_t Admit(uint64_t now_ns, uint64_t offset, uint64_t length, uint64_t* counted_ops);
  // Credits left, as a percentage of the bucket (100 without a bucket).
  double BurstBalancePercent(uint64_t now_ns);
  // Tests and benchmarks: empties or sets the credit bucket.
  void SetCreditsForTesting(double credits);

 private:
  void RefillLocked(uint64_t now_ns) REQUIRES(mu_);

  Mutex mu_;
  PerfModel model_ GUARDED_BY(mu_);
  double ops_tat_s_ GUARDED_BY(mu_) = 0;    // when the ops ceiling is next free (s, steady clock)
  double bytes_tat_s_ GUARDED_BY(mu_) = 0;  // when the bytes ceiling is next free
  double credits_ GUARDED_BY(mu_) = 0;      // may go negative: a debt the earn rate repays
  uint64_t credits_ns_ GUARDED_BY(mu_) = 0;
  // End of the last I/O: the next one at it is sequential.
  uint64_t seq_end_ GUARDED_BY(mu_) = UINT64_MAX;
  uint64_t run_bytes_ GUARDED_BY(mu_) = 0;  // bytes of the current sequential run
};

// CloudWatch AWS/EBS counters of one volume. Updated with relaxed atomics from every loop.
class VolumeCounters {
 public:
  explicit VolumeCounters(uint64_t created_ns) : created_ns_(created_ns) {}
  void Started(uint64_t now_ns);
  void Finished(bool write, uint64_t bytes, uint64_t counted_ops, uint64_t submit_ns,
                uint64_t now_ns);
  // A consistent-enough reading (each field atomic; not one snapshot).
  VolumeMetrics Read(uint64_t now_ns, double burst_balance, uint32_t provisioned_iops) const;

 private:
  std::atomic<uint64_t> read_ops_{0}, write_ops_{0}, read_bytes_{0}, write_bytes_{0};
  std::atomic<uint64_t> read_ns_{0}, write_ns_{0}, consumed_ops_{0};
  std::atomic<uint64_t> in_flight_{0}, busy_since_ns_{0}, busy_ns_{0};
  // Consumed I/O units per minute: the current and the last whole minute (throughput %).
  std::atomic<uint64_t> minute_{0}, minute_ops_{0}, last_minute_ops_{0};
  const uint64_t created_ns_;
};

struct VolumeGovernor {
  explicit VolumeGovernor(uint64_t now_ns) : counters(now_ns) {}
  Limiter limiter;
  VolumeCounters counters;
  std::atomic<bool> enforce{false};  // the model limits and the pool enforces limits
  std::atomic<bool> count{false};    // the pool collects metrics
  std::atomic<uint32_t> provisioned_iops{0};
  // Whether requests need the governor at all: otherwise the request path skips it.
  bool active() const {
    return enforce.load(std::memory_order_relaxed) || count.load(std::memory_order_relaxed);
  }
};

}  // namespace strata

#endif  // STRATA_STORE_QOS_H_
