// KmsClient: a client of another KMS's AWS API (JSON 1.1 over HTTP(S), SigV4 service "kms"): AWS
// KMS itself, or a second Strata's --api-listen. libcurl, bounded: 5 s to connect, 30 s per call
// (KmsEndpoint::call_timeout_ms), replies past 64 KiB refused, no redirects followed. Errors carry
// the remote's exception name
// ("DisabledException: ...") or what failed on the way (IOError).
#ifndef STRATA_KMS_KMS_CLIENT_H_
#define STRATA_KMS_KMS_CLIENT_H_

#include <string>

#include <nlohmann/json.hpp>

#include "strata/status.h"

#include "util/sigv4.h"

namespace strata::kms {

struct KmsEndpoint {
  std::string url = "https://kms.us-east-1.amazonaws.com";  // scheme://host[:port]
  std::string region = "us-east-1";
  sigv4::AwsCredentials credentials;
  uint32_t call_timeout_ms = 30000;  // one call, connecting included (5 s at most of it)
};

// One call: `op` ("Decrypt") with `body`; the reply's JSON. Thread-safe.
Result<nlohmann::json> CallKms(const KmsEndpoint& endpoint, const std::string& op,
                               const nlohmann::json& body);

}  // namespace strata::kms

#endif  // STRATA_KMS_KMS_CLIENT_H_
