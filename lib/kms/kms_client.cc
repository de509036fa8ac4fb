#include "kms/kms_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <ctime>
#include <memory>

#include "util/json_text.h"
#include "util/text.h"

namespace strata::kms {

namespace {

constexpr size_t kMaxReplyBytes = 64 << 10;

size_t OnData(char* data, size_t size, size_t count, void* user) {
  auto* out = static_cast<std::string*>(user);
  if (out->size() + size * count > kMaxReplyBytes) {
    return 0;  // curl fails the transfer (CURLE_WRITE_ERROR)
  }
  out->append(data, size * count);
  return size * count;
}

// "http://host:port" -> "host:port" (what the Host header carries). Errors: InvalidArgument.
Result<std::string> HostOf(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos ||
      (url.compare(0, scheme, "http") != 0 && url.compare(0, scheme, "https") != 0)) {
    return Status::InvalidArgument("KMS endpoint " + url + ": expected http(s)://HOST[:PORT]");
  }
  std::string host = url.substr(scheme + 3);
  if (host.empty() || host.find('/') != std::string::npos) {
    return Status::InvalidArgument("KMS endpoint " + url + ": expected http(s)://HOST[:PORT]");
  }
  return host;
}

}  // namespace

Result<nlohmann::json> CallKms(const KmsEndpoint& endpoint, const std::string& op,
                               const nlohmann::json& body_json) {
  STRATA_ASSIGN_OR_RETURN(std::string host, HostOf(endpoint.url));
  const std::string body = DumpJson(body_json);
  const std::string target = "TrentService." + op;
  const std::string amz_date = sigv4::AmzDate(std::time(nullptr));
  sigv4::SigningRequest signing{"POST", "/", {}, {}, sigv4::Sha256Hex(body)};
  signing.headers = {{"host", host},
                     {"content-type", "application/x-amz-json-1.1"},
                     {"x-amz-date", amz_date},
                     {"x-amz-target", target}};
  if (!endpoint.credentials.session_token.empty()) {
    signing.headers.emplace_back("x-amz-security-token", endpoint.credentials.session_token);
  }
  const std::string auth =
      sigv4::Authorization(endpoint.credentials, endpoint.region, "kms", amz_date, signing);
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) {
    return Status::IOError("KMS call: curl_easy_init failed", ENOMEM);
  }
  curl_slist* headers = nullptr;
  for (const auto& [name, value] : signing.headers) {
    if (name != "host") {
      headers = curl_slist_append(headers, (name + ": " + value).c_str());
    }
  }
  headers = curl_slist_append(headers, ("authorization: " + auth).c_str());
  std::string reply;
  CURL* e = curl.get();
  curl_easy_setopt(e, CURLOPT_URL, (endpoint.url + "/").c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<uint32_t>(5000, endpoint.call_timeout_ms)));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(endpoint.call_timeout_ms));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &OnData);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &reply);
  const CURLcode code = curl_easy_perform(e);
  curl_slist_free_all(headers);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (code == CURLE_WRITE_ERROR) {
    return Status::IOError("KMS " + endpoint.url + ": its reply passed 64 KiB", EIO);
  }
  if (code != CURLE_OK) {
    return Status::IOError("KMS " + endpoint.url + ": " + curl_easy_strerror(code), EIO);
  }
  nlohmann::json j = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return Status::IOError("KMS " + endpoint.url + ": HTTP " + std::to_string(status) +
                               " with a reply that is not a JSON object",
                           EIO);
  }
  if (status != 200) {
    auto text = [&j](const char* field) {
      return j.contains(field) && j[field].is_string() ? j[field].get<std::string>() : "";
    };
    std::string type = text("__type").empty() ? "UnknownError" : text("__type");
    type = type.substr(type.rfind('#') + 1);  // AWS may send "com.amazonaws.kms#NotFound..."
    const std::string message = text("message").empty() ? text("Message") : text("message");
    return Status(
        Status::Code::kInvalidArgument,
        EscapeText(type, 64) + ": " + EscapeText(message, 512) + " (KMS " + endpoint.url + ")");
  }
  return j;
}

}  // namespace strata::kms
