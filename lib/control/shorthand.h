// The AWS CLI's shorthand syntax for structured arguments, e.g.
//   DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1,VolumeSize=8}
//   ResourceType=instance,Tags=[{Key=Name,Value=web},{Key=env,Value=prod}]
//   Name=tag:Name,Values=web,db          (a key's value continues as a list)
// Text starting with '{' or '[' is parsed as JSON instead, as the AWS CLI does.
#ifndef STRATA_CONTROL_SHORTHAND_H_
#define STRATA_CONTROL_SHORTHAND_H_

#include <string>

#include <nlohmann/json.hpp>

#include "strata/status.h"

namespace strata::control {

// An object (or, for JSON input, whatever the JSON is). Scalars stay strings.
// Errors: InvalidArgument naming the position of the problem.
Result<nlohmann::json> ParseShorthand(const std::string& text);

}  // namespace strata::control

#endif  // STRATA_CONTROL_SHORTHAND_H_
