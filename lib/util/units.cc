#include "util/units.h"

#include <cctype>
#include <cstdio>

namespace strata {

Result<uint64_t> ParseSize(std::string_view text, uint64_t default_unit_bytes) {
  std::string quoted(1, '\'');
  quoted.append(text);
  quoted.push_back('\'');
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) {
      return Status::InvalidArgument("size " + quoted + " is too large");
    }
    value = value * 10 + digit;
    i++;
  }
  if (i == 0) {
    return Status::InvalidArgument("size " + quoted +
                                   " is not a number with an optional unit (e.g. 8, 256MiB)");
  }
  std::string unit;
  for (; i < text.size(); i++) {
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  }
  uint64_t scale;
  if (unit.empty()) {
    scale = default_unit_bytes;
  } else if (unit == "b") {
    scale = 1;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    scale = 1ull << 10;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    scale = 1ull << 20;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    scale = 1ull << 30;
  } else if (unit == "t" || unit == "tb" || unit == "tib") {
    scale = 1ull << 40;
  } else {
    return Status::InvalidArgument("size " + quoted + " has an unknown unit (use B, KiB, MiB, " +
                                   "GiB or TiB)");
  }
  if (value == 0) {
    return Status::InvalidArgument("size " + quoted + " must be greater than zero");
  }
  if (value > UINT64_MAX / scale) {
    return Status::InvalidArgument("size " + quoted + " is too large");
  }
  return value * scale;
}

std::string FormatSize(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  char out[32];
  if (v == static_cast<double>(static_cast<uint64_t>(v))) {
    std::snprintf(out, sizeof(out), "%llu %s", static_cast<unsigned long long>(v), units[u]);
  } else {
    std::snprintf(out, sizeof(out), "%.1f %s", v, units[u]);
  }
  return out;
}

}  // namespace strata
