#include "util/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include "strata/env.h"

namespace strata::sigv4 {

namespace {

std::string Hex(const unsigned char* bytes, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

std::string Hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Trimmed, with each inner run of spaces folded to one (SigV4's canonical header value).
std::string CanonicalValue(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) {
      out.push_back(' ');
      space = false;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string UriEncode(std::string_view text, bool encode_slash) {
  static const char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
  }
  return out;
}

std::string AmzDate(time_t unix_seconds) {
  struct tm tm;
  gmtime_r(&unix_seconds, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string Sha256Hex(const void* data, size_t length) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(static_cast<const unsigned char*>(data), length, digest);
  return Hex(digest, sizeof(digest));
}

std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) {
    encoded.emplace_back(UriEncode(name, true), UriEncode(value, true));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    out += (out.empty() ? "" : "&") + name + "=" + value;
  }
  return out;
}

std::string CanonicalRequest(const SigningRequest& r, std::string* signed_headers) {
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& [name, value] : r.headers) {
    headers.emplace_back(Lower(name), CanonicalValue(value));
  }
  std::sort(headers.begin(), headers.end());
  std::string canonical_headers, names;
  for (const auto& [name, value] : headers) {
    canonical_headers += name + ":" + value + "\n";
    names += (names.empty() ? "" : ";") + name;
  }
  *signed_headers = names;
  return r.method + "\n" + r.path + "\n" + CanonicalQuery(r.query) + "\n" + canonical_headers +
         "\n" + names + "\n" + r.payload_sha256_hex;
}

std::string StringToSign(const std::string& amz_date, const std::string& scope,
                         const std::string& canonical_request) {
  return "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + Sha256Hex(canonical_request);
}

std::string Authorization(const AwsCredentials& credentials, const std::string& region,
                          const std::string& service, const std::string& amz_date,
                          const SigningRequest& request) {
  const std::string day = amz_date.substr(0, 8);
  const std::string scope = day + "/" + region + "/" + service + "/aws4_request";
  std::string signed_headers;
  const std::string canonical = CanonicalRequest(request, &signed_headers);
  std::string key = Hmac("AWS4" + credentials.secret_access_key, day);
  key = Hmac(key, region);
  key = Hmac(key, service);
  key = Hmac(key, "aws4_request");
  const std::string mac = Hmac(key, StringToSign(amz_date, scope, canonical));
  return "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + "/" + scope +
         ", SignedHeaders=" + signed_headers +
         ", Signature=" + Hex(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
}

namespace {

Status AuthFailure(const std::string& why) {
  return Status::PermissionDenied("AuthFailure: " + why);
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The received value of header `name` (lower case); nullptr if absent or given twice.
const std::string* HeaderValue(const ReceivedRequest& request, const std::string& name) {
  const std::string* found = nullptr;
  for (const auto& [n, v] : request.headers) {
    if (Lower(n) == name) {
      if (found != nullptr) {
        return nullptr;
      }
      found = &v;
    }
  }
  return found;
}

// "AWS4-HMAC-SHA256 Credential=AK/DAY/REGION/SERVICE/aws4_request, SignedHeaders=a;b,
// Signature=hex" -> its three fields.
bool ParseAuthorization(const std::string& header, std::string* credential,
                        std::string* signed_headers, std::string* signature) {
  const std::string kScheme = "AWS4-HMAC-SHA256 ";
  if (!header.starts_with(kScheme) || header.size() > 4096) {
    return false;
  }
  std::string rest = header.substr(kScheme.size());
  for (size_t start = 0; start < rest.size();) {
    size_t end = rest.find(',', start);
    end = end == std::string::npos ? rest.size() : end;
    std::string part = rest.substr(start, end - start);
    part.erase(0, part.find_first_not_of(' '));
    const size_t eq = part.find('=');
    const std::string key = eq == std::string::npos ? part : part.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : part.substr(eq + 1);
    if (key == "Credential") {
      *credential = value;
    } else if (key == "SignedHeaders") {
      *signed_headers = value;
    } else if (key == "Signature") {
      *signature = value;
    }
    start = end + 1;
  }
  return !credential->empty() && !signed_headers->empty() && signature->size() == 64;
}

// "20150830T123600Z" -> Unix time; -1 if malformed.
int64_t ParseAmzDate(const std::string& text) {
  tm t{};
  if (text.size() != 16 || strptime(text.c_str(), "%Y%m%dT%H%M%SZ", &t) == nullptr) {
    return -1;
  }
  return static_cast<int64_t>(timegm(&t));
}

}  // namespace

Status VerifySigV4(const ReceivedRequest& request, const std::string& region,
                   const std::string& service, const SecretLookup& secret_of, time_t now,
                   std::string* access_key_id, bool allow_unsigned_payload) {
  const std::string* header = HeaderValue(request, "authorization");
  std::string credential, signed_list, signature;
  if (header == nullptr) {
    return AuthFailure("the request is not signed (no Authorization header)");
  }
  if (!ParseAuthorization(*header, &credential, &signed_list, &signature)) {
    return AuthFailure(
        "the Authorization header is not AWS4-HMAC-SHA256 with Credential, "
        "SignedHeaders and Signature");
  }
  const std::string* date = HeaderValue(request, "x-amz-date");
  const int64_t signed_at = date == nullptr ? -1 : ParseAmzDate(*date);
  if (signed_at < 0) {
    return AuthFailure("the request has no valid X-Amz-Date header");
  }
  if (signed_at < now - kMaxClockSkewS || signed_at > now + kMaxClockSkewS) {
    return Status::PermissionDenied("RequestExpired: the request was signed at " + *date +
                                    ", more than 15 minutes from the server's time");
  }
  const size_t slash = credential.find('/');
  const std::string key_id = credential.substr(0, slash);
  const std::string scope = slash == std::string::npos ? "" : credential.substr(slash + 1);
  if (scope != date->substr(0, 8) + "/" + region + "/" + service + "/aws4_request") {
    return AuthFailure("the credential scope '" + scope + "' is not today's for " + service +
                       " in " + region);
  }
  std::optional<std::string> secret = secret_of(key_id);
  if (!secret) {
    return AuthFailure("the access key " + key_id + " does not exist");
  }
  SigningRequest canonical{request.method, request.path, request.query, {}, ""};
  bool host_signed = false;  // a whole name in the list, not a substring ("xhost")
  for (size_t start = 0; start <= signed_list.size();) {
    size_t end = signed_list.find(';', start);
    end = end == std::string::npos ? signed_list.size() : end;
    const std::string name = signed_list.substr(start, end - start);
    const std::string* value = HeaderValue(request, name);
    if (name.empty() || name != Lower(name) || value == nullptr) {
      return AuthFailure("signed header '" + name + "' is missing, repeated or not lower case");
    }
    canonical.headers.emplace_back(name, *value);
    host_signed = host_signed || name == "host";
    start = end + 1;
  }
  if (HeaderValue(request, "host") == nullptr || !host_signed) {
    return AuthFailure("the Host header must be signed");
  }
  const std::string* payload = HeaderValue(request, "x-amz-content-sha256");
  canonical.payload_sha256_hex = Sha256Hex(request.body);
  if (allow_unsigned_payload && payload != nullptr && *payload == "UNSIGNED-PAYLOAD") {
    canonical.payload_sha256_hex = "UNSIGNED-PAYLOAD";
  } else if (payload != nullptr && *payload != canonical.payload_sha256_hex) {
    return AuthFailure("x-amz-content-sha256 is not the SHA-256 of the body");
  }
  const std::string expected =
      Authorization({key_id, *secret, ""}, region, service, *date, canonical);
  const std::string expected_signature = expected.substr(expected.size() - 64);
  if (CRYPTO_memcmp(expected_signature.data(), signature.data(), 64) != 0) {
    return AuthFailure(
        "the signature does not match (wrong secret key, or the request was "
        "changed after signing)");
  }
  if (access_key_id != nullptr) {
    *access_key_id = key_id;
  }
  return Status::OK();
}

Result<AwsCredentials> ResolveCredentials(const std::string& named_profile) {
  AwsCredentials c;
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (named_profile.empty() && id != nullptr && secret != nullptr && id[0] != '\0' &&
      secret[0] != '\0') {
    c.access_key_id = id;
    c.secret_access_key = secret;
    if (const char* token = std::getenv("AWS_SESSION_TOKEN"); token != nullptr) {
      c.session_token = token;
    }
    return c;
  }
  std::string path;
  if (const char* file = std::getenv("AWS_SHARED_CREDENTIALS_FILE"); file != nullptr && file[0]) {
    path = file;
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    path = std::string(home) + "/.aws/credentials";
  }
  const char* profile_env = std::getenv("AWS_PROFILE");
  const std::string profile = !named_profile.empty()                     ? named_profile
                              : profile_env != nullptr && profile_env[0] ? profile_env
                                                                         : "default";
  // (a credentials file of a few profiles is a few KiB; a larger one is not read)
  Result<std::string> text = Env::Default()->ReadSmallFile(path, 1 << 20);
  std::istringstream in(text.ok() ? *text : std::string());
  std::string line, section;
  auto trim = [](std::string s) {
    size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
    return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
  };
  for (int lines = 0; lines < 100000 && std::getline(in, line); lines++) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') {
      continue;
    }
    if (line.front() == '[' && line.back() == ']') {
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    size_t eq = line.find('=');
    if (section != profile || eq == std::string::npos) {
      continue;
    }
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (key == "aws_access_key_id") {
      c.access_key_id = value;
    } else if (key == "aws_secret_access_key") {
      c.secret_access_key = value;
    } else if (key == "aws_session_token") {
      c.session_token = value;
    }
  }
  if (c.access_key_id.empty() || c.secret_access_key.empty()) {
    return Status::NotFound(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile '" +
        profile + "' in " + (path.empty() ? "~/.aws/credentials" : path));
  }
  return c;
}

}  // namespace strata::sigv4
