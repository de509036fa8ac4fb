#include "remote/s3_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/md5.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <pugixml.hpp>
#include <random>
#include <sstream>

#include "util/cancel.h"
#include "util/check.h"

namespace strata::remote {

namespace {

constexpr uint32_t kMaxBackoffMs = 5000;
constexpr size_t kMaxDeleteBatch = 1000;
constexpr size_t kMaxErrorBodyBytes = 64 << 10;
const char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Monotonic milliseconds on the client's Env (deadlines and retry delays).
int64_t NowMs(Env* env) { return static_cast<int64_t>(env->MonotonicNs() / 1'000'000); }

const char* MethodName(S3Request::Method m) {
  switch (m) {
    case S3Request::Method::kGet:
      return "GET";
    case S3Request::Method::kPut:
      return "PUT";
    case S3Request::Method::kHead:
      return "HEAD";
    case S3Request::Method::kDelete:
      return "DELETE";
    case S3Request::Method::kPost:
      return "POST";
  }
  return "GET";
}

std::string Md5Base64(const void* data, size_t length) {
  unsigned char digest[MD5_DIGEST_LENGTH];
  EVP_Digest(data, length, digest, nullptr, EVP_md5(), nullptr);
  unsigned char out[32];
  int n = EVP_EncodeBlock(out, digest, sizeof(digest));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool Retryable(int http_status) { return http_status == 429 || http_status >= 500; }

}  // namespace

std::string S3Location::Describe() const {
  std::string p = prefix;
  if (!p.empty() && p.back() == '/') {
    p.pop_back();
  }
  return "s3://" + bucket + (p.empty() ? "" : "/" + p);
}

// One request's attempt on a curl easy handle.
struct S3Client::Transfer {
  S3Request* request = nullptr;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  size_t read_pos = 0;
  bool too_large = false;
  size_t max_response = 0;
  char error[CURL_ERROR_SIZE] = {};

  static size_t OnData(char* p, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t bytes = size * n;
    size_t limit = t->max_response;
    long http = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &http);
    if (http < 200 || http >= 300) {
      limit = std::max(limit, kMaxErrorBodyBytes);  // an error document names S3's code
    }
    if (t->request->response.size() + bytes > limit) {
      t->too_large = true;
      return 0;  // aborts the transfer
    }
    t->request->response.append(p, bytes);
    return bytes;
  }
  static size_t OnHeader(char* p, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string line(p, size * n);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      size_t end = line.find_last_not_of(" \r\n");
      size_t start = line.find_first_not_of(' ', colon + 1);
      t->request->response_headers[Lower(line.substr(0, colon))] =
          start == std::string::npos || end < start ? "" : line.substr(start, end - start + 1);
    }
    return size * n;
  }
  static size_t OnRead(char* out, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t left = t->request->body_bytes - t->read_pos;
    const size_t take = std::min(left, size * n);
    std::memcpy(out, static_cast<const char*>(t->request->body) + t->read_pos, take);
    t->read_pos += take;
    return take;
  }
};

S3Client::S3Client(S3Location location, sigv4::AwsCredentials credentials, S3Options options)
    : location_(std::move(location)), credentials_(std::move(credentials)), options_(options) {}

Result<std::unique_ptr<S3Client>> S3Client::Create(const S3Location& location,
                                                   const sigv4::AwsCredentials& credentials,
                                                   const S3Options& options) {
  const size_t scheme = location.endpoint.find("://");
  if (scheme == std::string::npos || location.bucket.empty() ||
      location.endpoint.find('/', scheme + 3) != std::string::npos) {
    return Status::InvalidArgument(
        "an S3 endpoint is scheme://host[:port] and needs a bucket, not '" + location.endpoint +
        "'");
  }
  if (options.max_in_flight == 0 || options.max_attempts == 0) {
    return Status::InvalidArgument("S3 options: max_in_flight and max_attempts must be positive");
  }
  GlobalInit();
  std::unique_ptr<S3Client> client(new S3Client(location, credentials, options));
  client->host_ = location.endpoint.substr(scheme + 3);
  client->multi_ = curl_multi_init();
  if (client->multi_ == nullptr) {
    return Status::IOError("curl_multi_init failed", ENOMEM);
  }
  curl_multi_setopt(client->multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                    static_cast<long>(options.max_in_flight));
  return client;
}

S3Client::~S3Client() {
  for (void* e : idle_easy_) {
    curl_easy_cleanup(static_cast<CURL*>(e));
  }
  if (multi_ != nullptr) {
    curl_multi_cleanup(static_cast<CURLM*>(multi_));
  }
}

std::string S3Client::PathOf(const S3Request& r) const {
  std::string path = "/" + sigv4::UriEncode(location_.bucket, true);
  if (!r.bucket_only) {
    path += "/" + sigv4::UriEncode(location_.prefix + r.key, false);
  }
  return path;
}

std::string S3Client::Url(const S3Request& r) const {
  const std::string query = sigv4::CanonicalQuery(r.query);
  return location_.endpoint + PathOf(r) + (query.empty() ? "" : "?" + query);
}

void S3Client::Sign(const S3Request& r, Transfer* t, time_t now) const {
  sigv4::SigningRequest s;
  s.method = MethodName(r.method);
  s.path = PathOf(r);
  s.query = r.query;
  s.payload_sha256_hex = r.body_bytes == 0               ? std::string(kEmptySha256)
                         : !r.payload_sha256_hex.empty() ? r.payload_sha256_hex
                                                         : sigv4::Sha256Hex(r.body, r.body_bytes);
  const std::string date = sigv4::AmzDate(now);
  s.headers = {
      {"host", host_}, {"x-amz-date", date}, {"x-amz-content-sha256", s.payload_sha256_hex}};
  if (!credentials_.session_token.empty()) {
    s.headers.emplace_back("x-amz-security-token", credentials_.session_token);
  }
  for (const auto& h : r.headers) {
    s.headers.push_back(h);
  }
  const std::string authorization =
      sigv4::Authorization(credentials_, location_.region, "s3", date, s);
  for (const auto& [name, value] : s.headers) {
    if (Lower(name) != "host") {
      t->headers = curl_slist_append(t->headers, (name + ": " + value).c_str());
    }
  }
  t->headers = curl_slist_append(t->headers, ("Authorization: " + authorization).c_str());
  t->headers = curl_slist_append(t->headers, "Expect:");  // no 100-continue round trip
  if (r.method == S3Request::Method::kPost) {
    t->headers = curl_slist_append(t->headers, "Content-Type: application/xml");
  }
}

Status S3Client::Finish(S3Request* r, int curl_code, const std::string& curl_error) const {
  const std::string what = location_.Describe() + ": " + MethodName(r->method) + " " +
                           (r->bucket_only ? "(bucket)" : r->key);
  if (curl_code != CURLE_OK) {
    return Status::IOError(
        what + ": " +
            (curl_error.empty() ? curl_easy_strerror(static_cast<CURLcode>(curl_code))
                                : curl_error) +
            " (" + location_.endpoint + ")",
        EIO);
  }
  const int http = r->http_status;
  if (http >= 200 && http < 300) {
    return Status::OK();
  }
  std::string code, message;
  pugi::xml_document doc;
  if (!r->response.empty() && doc.load_buffer(r->response.data(), r->response.size())) {
    code = doc.child("Error").child_value("Code");
    message = doc.child("Error").child_value("Message");
  }
  const std::string text = what + ": HTTP " + std::to_string(http) +
                           (code.empty() ? "" : " " + code) +
                           (message.empty() ? "" : ": " + message.substr(0, 200));
  if (http == 404 && code == "NoSuchBucket") {
    return Status::NotFound(location_.Describe() + ": bucket " + location_.bucket +
                            " does not exist at " + location_.endpoint);
  }
  switch (http) {
    case 404:
      return Status::NotFound(text);
    case 412:
      return Status::AlreadyExists(text);
    case 416:
      return Status::OutOfRange(text);
    case 401:
    case 403:
      return Status::IOError(text + " (check the credentials)", EACCES);
    default:
      return http >= 400 && http < 500 && http != 429 ? Status::InvalidArgument(text)
                                                      : Status::IOError(text, EIO);
  }
}

std::unique_ptr<S3Client::Transfer> S3Client::StartTransfer(S3Request* r) {
  auto t = std::make_unique<Transfer>();
  t->request = r;
  t->max_response = r->max_response_bytes > 0
                        ? std::min(r->max_response_bytes, options_.max_response_bytes)
                        : options_.max_response_bytes;
  r->attempts++;
  r->response.clear();
  if (r->exact_response) {
    r->response.reserve(t->max_response);  // (bounded as the response itself is)
  }
  r->response_headers.clear();
  r->http_status = 0;
  CURL* e;
  if (!idle_easy_.empty()) {
    e = static_cast<CURL*>(idle_easy_.back());
    idle_easy_.pop_back();
    curl_easy_reset(e);
  } else {
    e = curl_easy_init();
  }
  t->easy = e;
  const std::string url = Url(*r);
  // The attempt's whole time: a base, plus what it knows it moves at the slowest rate accepted.
  const uint64_t known = std::max<uint64_t>(r->body_bytes, r->max_response_bytes);
  const uint64_t timeout_ms =
      options_.request_timeout_ms + known * 1000 / std::max(1u, options_.min_rate_bytes_per_s);
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stall_timeout_s));
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 0L);  // (curl follows none unless asked; say so)
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::OnData);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
  switch (r->method) {
    case S3Request::Method::kHead:
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
      break;
    case S3Request::Method::kDelete:
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
      break;
    case S3Request::Method::kPut:
      curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(e, CURLOPT_READFUNCTION, &Transfer::OnRead);
      curl_easy_setopt(e, CURLOPT_READDATA, t.get());
      curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r->body_bytes));
      break;
    case S3Request::Method::kPost:
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r->body_bytes));
      break;
    case S3Request::Method::kGet:
      break;
  }
  Sign(*r, t.get(), static_cast<time_t>(Clock()->WallClockMs() / 1000));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
  curl_multi_add_handle(static_cast<CURLM*>(multi_), e);
  return t;
}

void S3Client::Retire(Transfer* t) {
  curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
  idle_easy_.push_back(t->easy);
  curl_slist_free_all(t->headers);
  t->headers = nullptr;
}

Status S3Client::Abandoned(const S3Request& r, const char* why, int sys_errno) const {
  std::string text = location_.Describe() + ": " + MethodName(r.method) + " " +
                     (r.bucket_only ? "(bucket)" : r.key) + ": " + why;
  if (!r.status.ok()) {
    text += " (last attempt: " + r.status.message() + ")";
  }
  return sys_errno == 0 ? Status::Shutdown(text) : Status::IOError(text, sys_errno);
}

// One Run's requests: those ready to start, those waiting out a retry's backoff, those on the
// wire.
struct S3Client::RunQueue {
  std::deque<S3Request*> ready;
  std::vector<std::pair<int64_t, S3Request*>> waiting;  // retry due time (ms), request
  std::map<CURL*, std::unique_ptr<Transfer>> active;
  std::mt19937 jitter{std::random_device{}()};
  bool empty() const { return ready.empty() && waiting.empty() && active.empty(); }
};

void S3Client::Run(const std::vector<S3Request*>& requests) {
  RunQueue q;
  q.ready.assign(requests.begin(), requests.end());
  const int64_t deadline = options_.operation_timeout_ms > 0
                               ? NowMs(Clock()) + options_.operation_timeout_ms
                               : std::numeric_limits<int64_t>::max();
  for (S3Request* r : requests) {
    r->attempts = 0;
    r->status = Status::OK();
  }
  while (!q.empty()) {
    const bool cancelled = CancelScope::Cancelled();
    if (cancelled || NowMs(Clock()) >= deadline) {
      AbandonAll(&q, cancelled);
      return;
    }
    const int64_t now = NowMs(Clock());
    for (auto it = q.waiting.begin(); it != q.waiting.end();) {
      if (it->first <= now) {
        q.ready.push_back(it->second);
        it = q.waiting.erase(it);
      } else {
        ++it;
      }
    }
    while (!q.ready.empty() && q.active.size() < options_.max_in_flight) {
      std::unique_ptr<Transfer> t = StartTransfer(q.ready.front());
      CURL* easy = t->easy;
      q.active.emplace(easy, std::move(t));
      q.ready.pop_front();
    }
    int running = 0;
    curl_multi_perform(static_cast<CURLM*>(multi_), &running);
    CollectDone(&q);
    int64_t wait_ms = 100;  // (also how soon a cancellation or the deadline is seen)
    for (const auto& [due, r] : q.waiting) {
      wait_ms = std::min<int64_t>(wait_ms, std::max<int64_t>(0, due - NowMs(Clock())));
    }
    if (!q.active.empty() || !q.waiting.empty()) {
      curl_multi_poll(static_cast<CURLM*>(multi_), nullptr, 0, static_cast<int>(wait_ms), nullptr);
    }
  }
}

// Everything not yet done fails now; what is on the wire is cut.
void S3Client::AbandonAll(RunQueue* q, bool cancelled) {
  const char* why = cancelled ? "cancelled (the caller left or the server is stopping)"
                              : "gave up: the operation's deadline passed";
  const int err = cancelled ? 0 : ETIMEDOUT;
  for (auto& [easy, t] : q->active) {
    Retire(t.get());
    t->request->status = Abandoned(*t->request, why, err);
  }
  for (auto& [due, r] : q->waiting) {
    r->status = Abandoned(*r, why, err);
  }
  for (S3Request* r : q->ready) {
    r->status = Abandoned(*r, why, err);
  }
}

// Finishes the transfers curl reports done; a retryable failure waits out its backoff.
void S3Client::CollectDone(RunQueue* q) {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(static_cast<CURLM*>(multi_), &left)) {
    if (msg->msg != CURLMSG_DONE) {
      continue;
    }
    auto it = q->active.find(msg->easy_handle);
    STRATA_CHECK(it != q->active.end());  // every handle on the multi is one of ours
    std::unique_ptr<Transfer> t = std::move(it->second);
    q->active.erase(it);
    S3Request* r = t->request;
    long http = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &http);
    r->http_status = static_cast<int>(http);
    const int code = msg->data.result;
    Retire(t.get());
    if (t->too_large) {
      r->status = Status::InvalidArgument(location_.Describe() + ": " + MethodName(r->method) +
                                          " " + r->key + ": reply larger than the " +
                                          std::to_string(t->max_response) + " bytes asked for");
      continue;
    }
    r->status = Finish(r, code, t->error);
    const bool retry = code != CURLE_OK || Retryable(r->http_status);
    if (retry && r->attempts < options_.max_attempts) {
      uint32_t delay = std::min<uint32_t>(kMaxBackoffMs, options_.backoff_ms << (r->attempts - 1));
      delay = delay / 2 + q->jitter() % (delay / 2 + 1);
      q->waiting.emplace_back(NowMs(Clock()) + delay, r);
    }
  }
}

Status S3Client::DeleteMany(const std::vector<std::string>& keys) {
  for (size_t first = 0; first < keys.size(); first += kMaxDeleteBatch) {
    pugi::xml_document doc;
    pugi::xml_node del = doc.append_child("Delete");
    del.append_child("Quiet").text().set("true");
    for (size_t i = first; i < std::min(keys.size(), first + kMaxDeleteBatch); i++) {
      del.append_child("Object").append_child("Key").text().set(
          (location_.prefix + keys[i]).c_str());
    }
    std::ostringstream xml;
    doc.save(xml, "", pugi::format_raw);
    const std::string body = xml.str();
    S3Request r;
    r.method = S3Request::Method::kPost;
    r.bucket_only = true;
    r.query = {{"delete", ""}};
    r.headers = {{"Content-MD5", Md5Base64(body.data(), body.size())}};
    r.body = body.data();
    r.body_bytes = body.size();
    STRATA_RETURN_IF_ERROR(Run(&r));
    pugi::xml_document reply;
    if (reply.load_buffer(r.response.data(), r.response.size())) {
      pugi::xml_node error = reply.child("DeleteResult").child("Error");
      if (error) {
        return Status::IOError(location_.Describe() + ": DeleteObjects: " +
                                   error.child_value("Key") + ": " + error.child_value("Code"),
                               EIO);
      }
    }
  }
  return Status::OK();
}

Result<ObjectStore::ListPage> S3Client::List(const std::string& sub_prefix,
                                             const std::string& token, uint32_t max_keys) {
  S3Request r;
  r.bucket_only = true;
  r.query = {{"list-type", "2"},
             {"prefix", location_.prefix + sub_prefix},
             {"max-keys", std::to_string(std::clamp<uint32_t>(max_keys, 1, 1000))}};
  if (!token.empty()) {
    r.query.emplace_back("continuation-token", token);
  }
  r.max_response_bytes = options_.max_list_response_bytes;
  STRATA_RETURN_IF_ERROR(Run(&r));
  pugi::xml_document doc;
  if (!doc.load_buffer(r.response.data(), r.response.size())) {
    return Status::Corruption(location_.Describe() + ": ListObjectsV2: reply is not XML");
  }
  pugi::xml_node result = doc.child("ListBucketResult");
  ListPage page;
  for (pugi::xml_node c = result.child("Contents"); c; c = c.next_sibling("Contents")) {
    std::string key = c.child_value("Key");
    if (key.compare(0, location_.prefix.size(), location_.prefix) != 0) {
      return Status::Corruption(location_.Describe() + ": ListObjectsV2 returned " + key +
                                ", outside the prefix");
    }
    if (page.objects.size() >= std::clamp<uint32_t>(max_keys, 1, 1000) ||
        (!page.objects.empty() &&
         key.substr(location_.prefix.size()) <= page.objects.back().first)) {
      return Status::Corruption(
          location_.Describe() +
          ": ListObjectsV2 returned more keys than asked for, or out of order");
    }
    page.objects.emplace_back(key.substr(location_.prefix.size()),
                              std::strtoull(c.child_value("Size"), nullptr, 10));
  }
  if (std::string(result.child_value("IsTruncated")) == "true") {
    page.next_token = result.child_value("NextContinuationToken");
  }
  return page;
}

Status S3Client::CheckBucket() {
  S3Request r;
  r.method = S3Request::Method::kHead;
  r.bucket_only = true;
  Status s = Run(&r);
  if (r.http_status == 404) {
    return Status::NotFound(location_.Describe() + ": bucket " + location_.bucket +
                            " does not exist at " + location_.endpoint);
  }
  return s;
}

Status S3Client::CreateBucket() {
  S3Request r;
  r.method = S3Request::Method::kPut;
  r.bucket_only = true;
  std::string body;
  if (location_.region != "us-east-1") {
    body = "<CreateBucketConfiguration><LocationConstraint>" + location_.region +
           "</LocationConstraint></CreateBucketConfiguration>";
    r.body = body.data();
    r.body_bytes = body.size();
  }
  Status s = Run(&r);
  if (r.http_status == 409 && r.response.find("BucketAlreadyOwnedByYou") != std::string::npos) {
    return Status::OK();
  }
  return s;
}

// ---------------------------------------------------------------- credentials and URLs

Status ParseS3Url(const std::string& url, S3Location* location) {
  if (!url.starts_with("s3://") || url.size() == 5) {
    return Status::InvalidArgument("a remote URL is s3://BUCKET[/PREFIX], not '" + url + "'");
  }
  const std::string rest = url.substr(5);
  const size_t slash = rest.find('/');
  location->bucket = rest.substr(0, slash);
  location->prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
  while (!location->prefix.empty() && location->prefix.back() == '/') {
    location->prefix.pop_back();
  }
  if (!location->prefix.empty()) {
    location->prefix += "/";
  }
  const std::string& b = location->bucket;
  const bool bucket_ok =
      b.size() >= 3 && b.size() <= 63 && std::all_of(b.begin(), b.end(), [](char ch) {
        return std::islower(static_cast<unsigned char>(ch)) ||
               std::isdigit(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.';
      });
  if (!bucket_ok) {
    return Status::InvalidArgument("bucket name '" + b +
                                   "' must be 3 to 63 lower-case letters, digits, '-' or '.'");
  }
  return Status::OK();
}

}  // namespace strata::remote
