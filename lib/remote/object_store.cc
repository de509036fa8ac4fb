#include "remote/object_store.h"

#include <cstdlib>

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

Result<std::string> ObjectStore::Get(const std::string& key) {
  S3Request r;
  r.key = key;
  STRATA_RETURN_IF_ERROR(Run(&r));
  return std::move(r.response);
}

Result<std::string> ObjectStore::GetRange(const std::string& key, uint64_t offset,
                                          uint64_t length) {
  S3Request r;
  r.key = key;
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

}  // namespace strata::remote
