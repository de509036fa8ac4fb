// AWS Signature Version 4 (docs.aws.amazon.com "Signature Version 4 signing process"), on
// OpenSSL's SHA-256 and HMAC. The S3 client signs every request with it; tests check it against
// AWS's published vectors (tests/unit/sigv4_test.cc).
#ifndef STRATA_UTIL_SIGV4_H_
#define STRATA_UTIL_SIGV4_H_

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/status.h"

namespace strata::sigv4 {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials only; sent as x-amz-security-token
};

// Credentials as the AWS CLI resolves them: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
// (/ AWS_SESSION_TOKEN), else the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
// ~/.aws/credentials) under AWS_PROFILE (default "default"). A `named_profile` ("" = none) is
// read from the file alone, as the AWS CLI's --profile. NotFound when neither has them.
Result<AwsCredentials> ResolveCredentials(const std::string& named_profile);

// What is signed: every header in `headers` is signed (names in any case; values are trimmed and
// inner runs of spaces folded), the query as name/value pairs before encoding, and the payload's
// SHA-256 in hex (or "UNSIGNED-PAYLOAD").
struct SigningRequest {
  std::string method;  // "GET", "PUT", ...
  std::string path;    // URI-encoded once, as sent: "/bucket/key%24name"
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;  // include host and x-amz-date
  std::string payload_sha256_hex;
};

// SigV4's URI encoding: unreserved characters (A-Z a-z 0-9 - . _ ~) as they are, '/' as is unless
// `encode_slash`, every other byte as %XX (upper-case hex).
std::string UriEncode(std::string_view text, bool encode_slash);
// "20150830T123600Z" for a Unix time.
std::string AmzDate(time_t unix_seconds);
std::string Sha256Hex(const void* data, size_t length);
inline std::string Sha256Hex(std::string_view text) { return Sha256Hex(text.data(), text.size()); }
// The query string as sent and as signed: encoded names and values, sorted, joined with '&'
// (a name without value as "name=").
std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query);

// The parts of the signature, for tests and for messages that explain a mismatch.
std::string CanonicalRequest(const SigningRequest& request, std::string* signed_headers);
std::string StringToSign(const std::string& amz_date, const std::string& scope,
                         const std::string& canonical_request);

// The Authorization header value: "AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/
// aws4_request, SignedHeaders=..., Signature=...". `amz_date` must equal the request's
// x-amz-date header.
std::string Authorization(const AwsCredentials& credentials, const std::string& region,
                          const std::string& service, const std::string& amz_date,
                          const SigningRequest& request);

// ---- verification (the EC2 API endpoint) ----

// A request as a server received it.
struct ReceivedRequest {
  std::string method;
  std::string path;                                          // as sent (still URI-encoded)
  std::vector<std::pair<std::string, std::string>> query;    // decoded names and values
  std::vector<std::pair<std::string, std::string>> headers;  // every header received
  std::string_view body;
};

// The secret of an access key id; nullopt for an unknown one.
using SecretLookup = std::function<std::optional<std::string>(const std::string&)>;

constexpr int64_t kMaxClockSkewS = 15 * 60;  // as AWS: a signature older or newer is expired

// Verifies the request's SigV4 Authorization header for `service` in `region` at Unix time
// `now`. On success `access_key_id` (may be null) names who signed. Errors: PermissionDenied
// whose message starts with AWS's code: "AuthFailure: ..." (no, or an unknown, credential;
// malformed header; wrong scope; a signature that does not match) or "RequestExpired: ...".
// The messages say what failed, never what the signature should have been.
// With `allow_unsigned_payload`, x-amz-content-sha256: UNSIGNED-PAYLOAD leaves the body out of
// the signature (the EBS direct APIs' PutSnapshotBlock: each block carries its own SHA-256).
Status VerifySigV4(const ReceivedRequest& request, const std::string& region,
                   const std::string& service, const SecretLookup& secret_of, time_t now,
                   std::string* access_key_id, bool allow_unsigned_payload = false);

}  // namespace strata::sigv4

#endif  // STRATA_UTIL_SIGV4_H_
