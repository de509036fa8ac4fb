// Parsing and printing of byte sizes as users type them: "8" (GiB, as EBS), "256MiB", "2GiB".
#ifndef STRATA_UTIL_UNITS_H_
#define STRATA_UTIL_UNITS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "strata/status.h"

namespace strata {

// Parses a size: digits followed by an optional unit B, KiB, MiB, GiB, TiB (also K/M/G/T and
// KB/MB/GB/TB, all binary). A bare number means `default_unit_bytes` of it.
// Errors: InvalidArgument naming the input (empty, junk, zero, overflow).
Result<uint64_t> ParseSize(std::string_view text, uint64_t default_unit_bytes);
// "64 KiB", "1.5 GiB", "512 B".
std::string FormatSize(uint64_t bytes);

}  // namespace strata

#endif  // STRATA_UTIL_UNITS_H_
