// Resource ids as EC2 makes them: "PREFIX-" + 17 random hex digits (vol-, snap-, ami-, i-, sg-).
#ifndef STRATA_UTIL_IDS_H_
#define STRATA_UTIL_IDS_H_

#include <string>

namespace strata {

// 17 random hex digits (68 bits: ids made on different hosts do not meet in practice).
std::string RandomIdTail();
// `prefix` + "-" + RandomIdTail().
std::string NewResourceId(const char* prefix);

}  // namespace strata

#endif  // STRATA_UTIL_IDS_H_
