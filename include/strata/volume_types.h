// The EBS volume types as published (docs/volume-types.md): which IOPS and throughput each
// accepts, checked the way EBS checks them. Public so that layers above the engine (the EC2
// layer's images and launch mappings) validate with the engine's own rules.
#ifndef STRATA_VOLUME_TYPES_H_
#define STRATA_VOLUME_TYPES_H_

#include <cstdint>
#include <string>

#include "strata/export.h"
#include "strata/status.h"

namespace strata {

// Provisioned settings of a volume: type, IOPS, throughput (0 = the type's default).
struct VolumePerf {
  std::string volume_type = "gp3";
  uint32_t iops = 0;
  uint32_t throughput_mibps = 0;
};

// Checks `perf` for a volume of `size_bytes` as EBS does, filling in the type's defaults.
// Errors: InvalidArgument naming the rule (e.g. "io2 needs --iops", "gp3 IOPS 2000 is below
// 3000").
STRATA_EXPORT Result<VolumePerf> ValidatePerf(const VolumePerf& perf, uint64_t size_bytes);
// What EC2 shows as a volume's Iops: the steady rate its type gives at this size without
// credits (gp2: 3 per GiB, 100 to 16,000; provisioned types: their IOPS), 0 for a type without
// an IOPS model (st1, sc1, standard, unlimited).
STRATA_EXPORT uint32_t BaselineIops(const VolumePerf& perf, uint64_t size_bytes);
// "gp2, gp3, io1, io2, st1, sc1, standard, unlimited"
STRATA_EXPORT const char* VolumeTypeList();

}  // namespace strata

#endif  // STRATA_VOLUME_TYPES_H_
