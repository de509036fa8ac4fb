// Rendering of a JSON reply as the AWS CLI does: json (indented), table, or text (tab-separated).
#ifndef STRATA_TOOLS_OUTPUT_H_
#define STRATA_TOOLS_OUTPUT_H_

#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

namespace strata {

void PrintReply(const nlohmann::json& reply, const std::string& format, std::ostream& out);

}  // namespace strata

#endif  // STRATA_TOOLS_OUTPUT_H_
