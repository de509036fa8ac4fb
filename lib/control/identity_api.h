// Who is calling, as AWS's STS and IAM answer it, on the EC2 endpoint's listener: Terraform's AWS
// provider calls sts:GetCallerIdentity at start, and Ansible's ec2_security_group asks for the
// caller (sts:GetCallerIdentity, else iam:GetUser) before it deletes a group. Every access key of
// a pool belongs to one IAM user, "strata", in account 000000000000 (docs/ec2-api.md).
#ifndef STRATA_CONTROL_IDENTITY_API_H_
#define STRATA_CONTROL_IDENTITY_API_H_

#include <string>
#include <utility>
#include <vector>

#include "control/ec2_query.h"

namespace strata::control {

constexpr char kAccountId[] = "000000000000";
constexpr char kUserName[] = "strata";

// Runs one Query request of `service` ("sts" or "iam"), already authenticated as
// `access_key_id`: GetCallerIdentity (sts) and GetUser (iam, of the caller; its CreateDate is
// the key's); any other action is InvalidAction. Errors are the service's ErrorResponse document.
QueryReply ExecuteIdentityQuery(Compute* compute, const std::string& service,
                                const std::vector<std::pair<std::string, std::string>>& params,
                                const std::string& access_key_id, const std::string& request_id);

}  // namespace strata::control

#endif  // STRATA_CONTROL_IDENTITY_API_H_
