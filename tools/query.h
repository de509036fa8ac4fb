// --query: a JMESPath expression applied to a reply before it is printed, as the AWS CLI does.
// The expression is evaluated by jp(1) (Debian package jp, the JMESPath project's reference
// tool), not by a home-made JMESPath: the language has enough corners (projections, slices,
// functions, literals) that a partial copy would answer scripts wrongly.
#ifndef STRATA_TOOLS_QUERY_H_
#define STRATA_TOOLS_QUERY_H_

#include <string>

#include <nlohmann/json.hpp>

#include "strata/status.h"

namespace strata {

// The value of `expression` over `reply`. Errors: InvalidArgument (an expression jp refuses,
// with jp's message; or jp is not installed); IOError (jp could not be run); Corruption (its
// answer was not JSON).
Result<nlohmann::json> JmesPathQuery(const nlohmann::json& reply, const std::string& expression);

}  // namespace strata

#endif  // STRATA_TOOLS_QUERY_H_
