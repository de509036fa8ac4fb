#include "remote/object_store.h"

#include <cstdlib>

#include "util/cancel.h"

namespace strata::remote {

Status ObjectStore::Run(S3Request* request) {
  Run(std::vector<S3Request*>{request});
  return request->status;
}

Status ObjectStore::Put(const std::string& key, const void* data, size_t length, bool if_absent) {
  S3Request r;
  r.method = S3Request::Method::kPut;
  r.key = key;
  r.body = data;
  r.body_bytes = length;
  if (if_absent) {
    r.headers.emplace_back("If-None-Match", "*");
  }
  return Run(&r);
}

Result<std::string> ObjectStore::Get(const std::string& key, size_t max_bytes) {
  S3Request r;
  r.key = key;
  r.max_response_bytes = max_bytes;
  STRATA_RETURN_IF_ERROR(Run(&r));
  return std::move(r.response);
}

Result<std::string> ObjectStore::GetRange(const std::string& key, uint64_t offset,
                                          uint64_t length) {
  S3Request r;
  r.key = key;
  r.max_response_bytes = static_cast<size_t>(length);
  r.headers.emplace_back(
      "Range", "bytes=" + std::to_string(offset) + "-" + std::to_string(offset + length - 1));
  STRATA_RETURN_IF_ERROR(Run(&r));
  if (r.response.size() != length) {
    return Status::Corruption(Describe() + ": GET " + key + " range at " + std::to_string(offset) +
                              ": " + std::to_string(r.response.size()) + " bytes instead of " +
                              std::to_string(length));
  }
  return std::move(r.response);
}

Result<uint64_t> ObjectStore::Head(const std::string& key) {
  S3Request r;
  r.method = S3Request::Method::kHead;
  r.key = key;
  STRATA_RETURN_IF_ERROR(Run(&r));
  auto it = r.response_headers.find("content-length");
  return it == r.response_headers.end() ? 0 : std::strtoull(it->second.c_str(), nullptr, 10);
}

Status ObjectStore::Delete(const std::string& key) {
  S3Request r;
  r.method = S3Request::Method::kDelete;
  r.key = key;
  Status s = Run(&r);
  return s.code() == Status::Code::kNotFound && r.http_status == 404 ? Status::OK() : s;
}

Status ObjectStore::ForEachPage(const std::string& sub_prefix,
                                const std::function<Status(const ListPage&)>& fn) {
  const std::string what = Describe() + ": listing " + sub_prefix;
  std::string token, last_key;
  uint32_t empty_run = 0;
  for (uint32_t pages = 0;; pages++) {
    if (pages >= kMaxListPages) {
      return Status::Corruption(what + ": more than " + std::to_string(kMaxListPages) +
                                " pages (a remote that never ends its listing?)");
    }
    if (CancelScope::Cancelled()) {
      return Status::Shutdown(what + ": cancelled");
    }
    STRATA_ASSIGN_OR_RETURN(ListPage page, List(sub_prefix, token));
    for (const auto& [key, size] : page.objects) {
      if (!last_key.empty() && key <= last_key) {
        return Status::Corruption(what + ": keys out of order or repeated ('" + key + "' after '" +
                                  last_key + "'): a page served twice?");
      }
      last_key = key;
    }
    empty_run = page.objects.empty() ? empty_run + 1 : 0;
    if (page.next_token &&
        (*page.next_token == token || page.next_token->empty() || empty_run > kMaxEmptyPages)) {
      return Status::Corruption(what +
                                ": the remote repeats its continuation token or sends "
                                "pages without keys");
    }
    STRATA_RETURN_IF_ERROR(fn(page));
    if (!page.next_token) {
      return Status::OK();
    }
    token = *page.next_token;
  }
}

}  // namespace strata::remote
