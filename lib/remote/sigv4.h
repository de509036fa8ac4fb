// AWS Signature Version 4 (docs.aws.amazon.com "Signature Version 4 signing process"), on
// OpenSSL's SHA-256 and HMAC. The S3 client signs every request with it; tests check it against
// AWS's published vectors (tests/unit/sigv4_test.cc).
#ifndef STRATA_REMOTE_SIGV4_H_
#define STRATA_REMOTE_SIGV4_H_

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace strata::remote {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials only; sent as x-amz-security-token
};

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

}  // namespace strata::remote

#endif  // STRATA_REMOTE_SIGV4_H_
