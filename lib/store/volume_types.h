// The performance model each EBS volume type implies (its public half, the types' rules, is
// strata/volume_types.h; ../shared/research/features.md §1g; docs/volume-types.md).
#ifndef STRATA_STORE_VOLUME_TYPES_H_
#define STRATA_STORE_VOLUME_TYPES_H_

#include <cstdint>
#include <string>

#include "strata/status.h"
#include "strata/volume_types.h"

namespace strata {

// The limits the data path enforces for one volume (all zero for "unlimited").
struct PerfModel {
  bool limited = false;
  uint32_t io_unit_bytes =
      256 << 10;           // an I/O counts once per started unit (SSD 256 KiB, HDD 1 MiB)
  double ops_per_s = 0;    // steady ceiling on counted I/Os per second (0: none)
  double bytes_per_s = 0;  // steady ceiling on bytes per second (0: none)
  // A credit bucket (gp2: I/O credits; st1/sc1: throughput credits in bytes). While it holds
  // credits the ceilings above apply; once empty, the rate falls to what it earns per second.
  double credit_capacity = 0;    // 0: no bucket
  double credit_earn_per_s = 0;  // the baseline
  bool credits_in_bytes = false;
  uint32_t baseline_iops = 0;     // shown: the steady rate without credits
  uint32_t provisioned_iops = 0;  // io1/io2/gp3: what VolumeThroughputPercentage divides by
};

// The performance model of a validated `perf`.
PerfModel ModelFor(const VolumePerf& perf, uint64_t size_bytes);

}  // namespace strata

#endif  // STRATA_STORE_VOLUME_TYPES_H_
