// The GC lease (gc-lease): one garbage collection at a time over a bucket.
#include <string>

#include <nlohmann/json.hpp>

#include "strata/remote.h"

#include "remote/remote_format.h"
#include "remote/remote_parts.h"
#include "util/check.h"
#include "util/json_text.h"

namespace strata::remote {

using nlohmann::json;

Status CheckNoGc(Bucket* bucket) {
  auto lease = bucket->store()->Get(kGcLeaseKey, kMaxManifestBytes);
  if (lease.status().code() == Status::Code::kNotFound) {
    return Status::OK();
  }
  STRATA_RETURN_IF_ERROR(lease.status());
  json j = json::parse(*lease, nullptr, false);
  const int64_t until = IntField(j, "until_ms");
  const int64_t now = bucket->NowMs();
  if (until > now) {
    return Status::Busy(bucket->Name() + " is collecting garbage (lease held until " +
                        std::to_string((until - now) / 1000) + " s from now); retry then");
  }
  return Status::OK();
}

Result<GcLease> GcLease::Take(Bucket* bucket) {
  const int64_t until = bucket->NowMs() + bucket->tuning().lease_ms;
  STRATA_CHECK(bucket->tuning().lease_ms > 0);
  const std::string lease = DumpJson(json{{"until_ms", until}});
  Status took = bucket->store()->Put(kGcLeaseKey, lease.data(), lease.size(), true);
  if (took.code() == Status::Code::kAlreadyExists) {
    STRATA_RETURN_IF_ERROR(CheckNoGc(bucket));  // Busy while it is held; an expired one is replaced
    STRATA_RETURN_IF_ERROR(bucket->store()->Put(kGcLeaseKey, lease.data(), lease.size()));
  } else {
    STRATA_RETURN_IF_ERROR(took);
  }
  return GcLease(bucket, until);
}

Status GcLease::Release() { return bucket_->store()->Delete(kGcLeaseKey); }

}  // namespace strata::remote
