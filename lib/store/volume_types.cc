#include "store/volume_types.h"

#include <algorithm>
#include <cmath>

namespace strata {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kTiB = 1024.0 * 1024.0 * 1024.0 * 1024.0;

// One row per type: what EBS accepts (features.md §1g, the current API reference's gp3 limits).
struct TypeRule {
  const char* name;
  uint64_t min_gib, max_gib;  // min_gib 0: any size (gp2/gp3/standard below 1 GiB count as 1)
  bool iops_settable, iops_required;
  uint32_t min_iops, max_iops, iops_per_gib, default_iops;
  bool throughput_settable;
  uint32_t min_mibps, max_mibps, default_mibps;
};

constexpr TypeRule kRules[] = {
    {"gp2", 0, 16384, false, false, 0, 0, 0, 0, false, 0, 0, 0},
    {"gp3", 0, 16384, true, false, 3000, 80000, 500, 3000, true, 125, 2000, 125},
    {"io1", 4, 16384, true, true, 100, 64000, 50, 0, false, 0, 0, 0},
    {"io2", 4, 65536, true, true, 100, 256000, 1000, 0, false, 0, 0, 0},
    {"st1", 125, 16384, false, false, 0, 0, 0, 0, false, 0, 0, 0},
    {"sc1", 125, 16384, false, false, 0, 0, 0, 0, false, 0, 0, 0},
    {"standard", 0, 1024, false, false, 0, 0, 0, 0, false, 0, 0, 0},
    {"unlimited", 0, 65536, false, false, 0, 0, 0, 0, false, 0, 0, 0},
};

const TypeRule* FindRule(const std::string& name) {
  for (const TypeRule& r : kRules) {
    if (name == r.name) {
      return &r;
    }
  }
  return nullptr;
}

uint64_t GiBOf(uint64_t size_bytes) {
  return std::max<uint64_t>(1, (size_bytes + (1ull << 30) - 1) >> 30);
}

std::string N(uint64_t v) { return std::to_string(v); }

}  // namespace

const char* VolumeTypeList() { return "gp2, gp3, io1, io2, st1, sc1, standard, unlimited"; }

Result<VolumePerf> ValidatePerf(const VolumePerf& perf, uint64_t size_bytes) {
  const TypeRule* rule = FindRule(perf.volume_type);
  if (rule == nullptr) {
    return Status::InvalidArgument("unknown volume type '" + perf.volume_type + "' (" +
                                   VolumeTypeList() + ")");
  }
  const std::string& t = perf.volume_type;
  const uint64_t gib = GiBOf(size_bytes);
  if ((rule->min_gib != 0 && gib < rule->min_gib) || gib > rule->max_gib) {
    return Status::InvalidArgument("InvalidParameterValue: a " + t + " volume must be " +
                                   N(std::max<uint64_t>(rule->min_gib, 1)) + " GiB to " +
                                   N(rule->max_gib) + " GiB (asked: " + N(gib) + " GiB)");
  }
  VolumePerf out = perf;
  if (perf.iops != 0 && !rule->iops_settable) {
    return Status::InvalidArgument("InvalidParameterCombination: --iops is not supported for " + t +
                                   " volumes");
  }
  if (perf.throughput_mibps != 0 && !rule->throughput_settable) {
    return Status::InvalidArgument(
        "InvalidParameterCombination: --throughput is supported only for gp3 volumes");
  }
  if (rule->iops_required && perf.iops == 0) {
    return Status::InvalidArgument("MissingParameter: " + t + " volumes need --iops (" +
                                   N(rule->min_iops) + " to " + N(rule->max_iops) + ")");
  }
  if (rule->iops_settable) {
    out.iops = perf.iops == 0 ? rule->default_iops : perf.iops;
    if (out.iops < rule->min_iops || out.iops > rule->max_iops) {
      return Status::InvalidArgument("InvalidParameterValue: " + t + " IOPS must be " +
                                     N(rule->min_iops) + " to " + N(rule->max_iops) +
                                     " (asked: " + N(out.iops) + ")");
    }
    // The IOPS-to-size ratio; gp3's included 3,000 IOPS are allowed at any size.
    if (out.iops > std::max<uint64_t>(rule->default_iops, gib * rule->iops_per_gib)) {
      return Status::InvalidArgument(
          "InvalidParameterValue: " + t + " allows at most " + N(rule->iops_per_gib) +
          " IOPS per GiB: " + N(out.iops) + " IOPS need at least " +
          N((out.iops + rule->iops_per_gib - 1) / rule->iops_per_gib) + " GiB");
    }
  }
  if (rule->throughput_settable) {
    out.throughput_mibps = perf.throughput_mibps == 0 ? rule->default_mibps : perf.throughput_mibps;
    if (out.throughput_mibps < rule->min_mibps || out.throughput_mibps > rule->max_mibps) {
      return Status::InvalidArgument("InvalidParameterValue: gp3 throughput must be " +
                                     N(rule->min_mibps) + " to " + N(rule->max_mibps) +
                                     " MiB/s (asked: " + N(out.throughput_mibps) + ")");
    }
    // At most 0.25 MiB/s per provisioned IOPS above the included 125 MiB/s.
    if (out.throughput_mibps > rule->default_mibps && out.throughput_mibps * 4 > out.iops) {
      return Status::InvalidArgument(
          "InvalidParameterValue: gp3 throughput may be at most 0.25 MiB/s per IOPS: " +
          N(out.throughput_mibps) + " MiB/s need at least " + N(out.throughput_mibps * 4) +
          " IOPS");
    }
  }
  return out;
}

PerfModel ModelFor(const VolumePerf& perf, uint64_t size_bytes) {
  PerfModel m;
  const std::string& t = perf.volume_type;
  const double gib = static_cast<double>(GiBOf(size_bytes));
  const double tib = static_cast<double>(size_bytes) / kTiB;
  if (t == "unlimited") {
    return m;
  }
  m.limited = true;
  if (t == "gp2") {
    const double baseline = std::clamp(3.0 * gib, 100.0, 16000.0);
    m.baseline_iops = static_cast<uint32_t>(baseline);
    m.ops_per_s = baseline;
    if (baseline < 3000) {  // burst to 3,000 IOPS on 5.4 million I/O credits
      m.ops_per_s = 3000;
      m.credit_capacity = 5.4e6;
      m.credit_earn_per_s = baseline;
    }
    m.bytes_per_s = (gib <= 170 ? 128 : 250) * kMiB;
  } else if (t == "gp3") {
    m.ops_per_s = perf.iops;
    m.baseline_iops = m.provisioned_iops = perf.iops;
    m.bytes_per_s = perf.throughput_mibps * kMiB;
  } else if (t == "io1" || t == "io2") {
    m.ops_per_s = perf.iops;
    m.baseline_iops = m.provisioned_iops = perf.iops;
    const double cap = t == "io2" ? 4000 : (perf.iops <= 32000 ? 500 : 1000);
    m.bytes_per_s = std::min(perf.iops * 256.0 / 1024.0, cap) * kMiB;
  } else if (t == "st1" || t == "sc1") {
    const bool st1 = t == "st1";
    const double max_mibps = st1 ? 500 : 250;
    m.io_unit_bytes = 1 << 20;  // HDD: I/Os count per MiB
    m.ops_per_s = st1 ? 500 : 250;
    m.baseline_iops = static_cast<uint32_t>(m.ops_per_s);
    m.bytes_per_s = std::min((st1 ? 250.0 : 80.0) * tib, max_mibps) * kMiB;  // burst
    m.credit_capacity = tib * kTiB;  // 1 TiB of throughput credits per TiB
    m.credit_earn_per_s = std::min((st1 ? 40.0 : 12.0) * tib, max_mibps) * kMiB;  // baseline
    m.credits_in_bytes = true;
  } else {  // standard (magnetic): 40-200 IOPS, modelled at its 200 ceiling
    m.io_unit_bytes = 1 << 20;
    m.ops_per_s = 200;
    m.baseline_iops = 200;
  }
  return m;
}

uint32_t BaselineIops(const VolumePerf& perf, uint64_t size_bytes) {
  return ModelFor(perf, size_bytes).baseline_iops;
}

}  // namespace strata
