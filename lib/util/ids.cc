#include "util/ids.h"

#include <cinttypes>
#include <cstdio>
#include <random>

namespace strata {

std::string RandomIdTail() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char id[24];
  std::snprintf(id, sizeof(id), "%01x%016" PRIx64, static_cast<unsigned>(rng() & 0xf), rng());
  return id;
}

std::string NewResourceId(const char* prefix) { return std::string(prefix) + "-" + RandomIdTail(); }

}  // namespace strata
