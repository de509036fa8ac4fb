// libFuzzer target: the AWS CLI shorthand parser (--block-device-mappings, --tags, --filters,
// --tag-specifications). Any input: a value or an error, never a crash, and the value prints.
//
//   tools/fuzz.sh 60 shorthand_fuzz
#include <cstdlib>
#include <string>

#include "control/shorthand.h"
#include "util/json_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = strata::control::ParseShorthand(text);
  if (parsed.ok() && strata::DumpJson(*parsed).empty()) {
    std::abort();
  }
  return 0;
}
