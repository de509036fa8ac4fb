// JSON to text without exceptions. nlohmann::json::dump throws type_error 316 on a string that is
// not valid UTF-8; inputs are validated where they enter (util/text.h), and every dump of a value
// that may carry outside text goes through here, so that a string that slipped past is shown
// with U+FFFD instead of ending the process.
#ifndef STRATA_UTIL_JSON_TEXT_H_
#define STRATA_UTIL_JSON_TEXT_H_

#include <string>

#include <nlohmann/json.hpp>

namespace strata {

inline std::string DumpJson(const nlohmann::json& value, int indent = -1) {
  return value.dump(indent, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace strata

#endif  // STRATA_UTIL_JSON_TEXT_H_
