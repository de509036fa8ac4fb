// The KMS's AWS API (docs/kms.md): JSON 1.1 over HTTP POST, `X-Amz-Target: TrentService.<Op>`,
// SigV4 service "kms", as `aws kms`, boto3 and Terraform speak it. Served on strata-nbd's
// --api-listen beside the EC2 Query API. Errors are KMS's: HTTP 400 (500 for an internal one)
// with {"__type": "<Exception>", "message": "..."}.
#ifndef STRATA_CONTROL_KMS_API_H_
#define STRATA_CONTROL_KMS_API_H_

#include <string>
#include <string_view>

#include "strata/kms.h"

namespace strata::control {

struct KmsReply {
  int http_status = 200;
  std::string body;  // application/x-amz-json-1.1
};

// Base64 as the KMS's JSON carries blobs (the CLI sends fileb:// arguments so).
std::string KmsBase64Encode(std::string_view bytes);
// Zeroes a string that held a secret (OPENSSL_cleanse), then empties it.
void WipeBytes(std::string* bytes);

// Runs one request. `target`: the X-Amz-Target header; `kms` null when this server has no KMS
// (every call then answers why). Never throws.
KmsReply ExecuteKmsJson(Kms* kms, std::string_view target, std::string_view body);

}  // namespace strata::control

#endif  // STRATA_CONTROL_KMS_API_H_
