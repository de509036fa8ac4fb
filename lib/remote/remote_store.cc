// The remote (include/strata/remote.h): a facade that makes one part per call (remote_parts.h:
// Push, Collector under a GcLease, Restore) over the Bucket it owns, and serves listings and
// records itself. Opening a remote over S3 is here too.
#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/remote.h"

#include "remote/remote_format.h"
#include "remote/remote_internal.h"
#include "remote/remote_parts.h"
#include "remote/s3_client.h"
#include "util/json_text.h"

namespace strata {

namespace {

using nlohmann::json;
using remote::Hash;
using remote::kMaxManifestBytes;
using remote::S3Client;
using remote::S3Request;

class RemoteImpl final : public Remote {
 public:
  RemoteImpl(RemoteSpec spec, std::unique_ptr<remote::ObjectStore> store,
             remote::RemoteTuning tuning)
      : bucket_(std::move(spec), std::move(store), std::move(tuning)) {}

  Result<PushStats> PushSnapshot(Pool* pool, const std::string& snapshot_id,
                                 const std::map<std::string, std::string>& tags,
                                 const RemoteEncryption& encryption,
                                 const RemoteProgress& progress) override {
    return remote::Push(&bucket_, pool).Run(snapshot_id, tags, encryption, progress);
  }
  Result<std::vector<RemoteSnapshotInfo>> ListSnapshots() override;
  Result<RemoteSnapshotInfo> DescribeSnapshot(const std::string& snapshot_id) override;
  Result<RestoreStats> RestoreVolume(Pool* pool, const std::string& snapshot_id,
                                     const VolumeSpec& spec, const RemoteEncryption& encryption,
                                     const RemoteProgress& progress) override {
    return remote::Restore(&bucket_, pool).Volume(snapshot_id, spec, encryption, progress);
  }
  Result<GcStats> DeleteSnapshot(const std::string& snapshot_id) override;
  Result<GcStats> CollectGarbage() override;
  Result<SnapshotInfo> PullSnapshot(Pool* pool, const std::string& snapshot_id,
                                    const RemoteEncryption& encryption,
                                    const RemoteProgress& progress) override {
    return remote::Restore(&bucket_, pool).Pull(snapshot_id, encryption, progress);
  }
  Status PutRecord(const std::string& kind, const std::string& id,
                   const std::string& json_text) override;
  Result<std::string> GetRecord(const std::string& kind, const std::string& id) override;
  Result<std::vector<std::string>> ListRecords(const std::string& kind) override;
  Status DeleteRecord(const std::string& kind, const std::string& id) override;

 private:
  // Under the lease: `before` (the delete of a manifest, or nothing), then a collection.
  Result<GcStats> UnderLease(const std::function<Status()>& before);

  remote::Bucket bucket_;
};

// ---------------------------------------------------------------- list and describe

Result<std::vector<RemoteSnapshotInfo>> RemoteImpl::ListSnapshots() {
  std::vector<RemoteSnapshotInfo> out;
  std::set<std::string> seen;
  for (const char* prefix : {remote::kManifestPrefix, remote::kPendingPrefix}) {
    const bool pending = std::string(prefix) == remote::kPendingPrefix;
    Status listed = bucket_.store()->ForEachPage(prefix, [&](const auto& page) {
      std::vector<S3Request> gets(page.objects.size());
      std::vector<S3Request*> batch;
      for (size_t i = 0; i < gets.size(); i++) {
        gets[i].key = page.objects[i].first;
        // (a push's marker names the packs it carries from killed runs: the default cap)
        gets[i].max_response_bytes = pending ? 0 : kMaxManifestBytes;
        batch.push_back(&gets[i]);
      }
      bucket_.store()->Run(batch);
      for (S3Request& r : gets) {
        if (r.status.code() == Status::Code::kNotFound) {
          continue;  // finished or deleted since the listing
        }
        STRATA_RETURN_IF_ERROR(r.status);
        if (pending) {
          json j = json::parse(r.response, nullptr, false);
          if (j.is_object() &&
              bucket_.NowMs() - remote::IntField(j, "heartbeat_ms") <
                  bucket_.tuning().pending_stale_ms &&
              seen.insert(remote::StringField(j, "snapshot_id")).second) {
            out.push_back(remote::InfoOf(j, "pending"));
          }
          continue;
        }
        STRATA_ASSIGN_OR_RETURN(json m, remote::DecodeManifest(r.response, r.key));
        out.push_back(remote::InfoOf(m, "completed"));
        seen.insert(out.back().snapshot_id);
      }
      return Status::OK();
    });
    STRATA_RETURN_IF_ERROR(listed);
  }
  return out;
}

Result<RemoteSnapshotInfo> RemoteImpl::DescribeSnapshot(const std::string& snapshot_id) {
  STRATA_ASSIGN_OR_RETURN(json m, bucket_.GetManifest(snapshot_id));
  return remote::InfoOf(m, "completed");
}
Result<GcStats> RemoteImpl::UnderLease(const std::function<Status()>& before) {
  GcStats stats;
  // The lease first, then the look for pushes under way (CheckNoGc explains the order).
  STRATA_ASSIGN_OR_RETURN(remote::GcLease lease, remote::GcLease::Take(&bucket_));
  Status s = before ? before() : Status::OK();
  if (s.ok()) {
    s = remote::Collector(&bucket_, &lease).Run(&stats);
  }
  Status released = lease.Release();
  STRATA_RETURN_IF_ERROR(s);
  STRATA_RETURN_IF_ERROR(released);
  return stats;
}

Result<GcStats> RemoteImpl::DeleteSnapshot(const std::string& snapshot_id) {
  STRATA_RETURN_IF_ERROR(bucket_.GetManifest(snapshot_id).status());  // NotFound names it
  return UnderLease([&] { return bucket_.store()->Delete(remote::ManifestKey(snapshot_id)); });
}

Result<GcStats> RemoteImpl::CollectGarbage() { return UnderLease(nullptr); }

namespace {
bool ValidRecordName(const std::string& s) {
  return !s.empty() && s.size() <= 128 &&
         s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
             std::string::npos;
}
std::string RecordKey(const std::string& kind, const std::string& id) {
  return "records/" + kind + "/" + id;
}
}  // namespace

Status RemoteImpl::PutRecord(const std::string& kind, const std::string& id,
                             const std::string& json_text) {
  if (!ValidRecordName(kind) || !ValidRecordName(id)) {
    return Status::InvalidArgument("a remote record is named by 1 to 128 of A-Z a-z 0-9 . _ -");
  }
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded()) {
    return Status::InvalidArgument("a remote record is JSON");
  }
  const std::string bytes = remote::EncodeManifest(json{{"format", 1}, {"record", j}});
  return bucket_.store()->Put(RecordKey(kind, id), bytes.data(), bytes.size(), /*if_absent=*/true);
}

Result<std::string> RemoteImpl::GetRecord(const std::string& kind, const std::string& id) {
  if (!ValidRecordName(kind) || !ValidRecordName(id)) {
    return Status::InvalidArgument("a remote record is named by 1 to 128 of A-Z a-z 0-9 . _ -");
  }
  auto bytes = bucket_.store()->Get(RecordKey(kind, id), kMaxManifestBytes);
  if (bytes.status().code() == Status::Code::kNotFound) {
    return Status::NotFound(bucket_.Name() + " holds no " + kind + " " + id);
  }
  STRATA_RETURN_IF_ERROR(bytes.status());
  const size_t nl = bytes->find('\n');
  Hash want;
  if (nl == std::string::npos || bytes->size() != nl + 66 ||
      !remote::ParseHex(bytes->substr(nl + 1, 64), &want) ||
      remote::Sha256(bytes->data(), nl) != want) {
    return Status::Corruption(bucket_.Name() + ": record " + RecordKey(kind, id) + " is damaged");
  }
  json j = json::parse(bytes->substr(0, nl), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("record")) {
    return Status::Corruption(bucket_.Name() + ": record " + RecordKey(kind, id) + " is malformed");
  }
  return DumpJson(j["record"]);
}

Result<std::vector<std::string>> RemoteImpl::ListRecords(const std::string& kind) {
  if (!ValidRecordName(kind)) {
    return Status::InvalidArgument("a remote record kind is 1 to 128 of A-Z a-z 0-9 . _ -");
  }
  std::vector<std::string> out;
  const std::string prefix = "records/" + kind + "/";
  Status listed = bucket_.store()->ForEachPage(prefix, [&](const auto& page) {
    for (const auto& [key, size] : page.objects) {
      auto record = GetRecord(kind, key.substr(prefix.size()));
      if (record.status().code() == Status::Code::kNotFound) {
        continue;  // deleted since the listing
      }
      STRATA_RETURN_IF_ERROR(record.status());
      out.push_back(*record);
    }
    return Status::OK();
  });
  STRATA_RETURN_IF_ERROR(listed);
  return out;
}

Status RemoteImpl::DeleteRecord(const std::string& kind, const std::string& id) {
  STRATA_RETURN_IF_ERROR(GetRecord(kind, id).status());  // NotFound names it
  return bucket_.store()->Delete(RecordKey(kind, id));
}

}  // namespace
namespace {
// The S3 client for a remote: its location from the spec, credentials as the AWS CLI finds them.
Result<std::unique_ptr<S3Client>> OpenClient(const RemoteSpec& spec, uint32_t max_attempts,
                                             uint32_t operation_timeout_ms = 0) {
  remote::S3Location location;
  STRATA_RETURN_IF_ERROR(remote::ParseS3Url(spec.url, &location));
  location.region = spec.region.empty() ? "us-east-1" : spec.region;
  location.endpoint = spec.endpoint_url.empty() ? "https://s3." + location.region + ".amazonaws.com"
                                                : spec.endpoint_url;
  while (!location.endpoint.empty() && location.endpoint.back() == '/') {
    location.endpoint.pop_back();
  }
  STRATA_ASSIGN_OR_RETURN(sigv4::AwsCredentials credentials, remote::ResolveCredentials());
  remote::S3Options options;
  options.max_attempts = std::max<uint32_t>(1, max_attempts);
  options.operation_timeout_ms = operation_timeout_ms;
  return S3Client::Create(location, credentials, options);
}
}  // namespace

Result<std::unique_ptr<remote::ObjectStore>> remote::OpenObjectStore(
    const RemoteSpec& spec, uint32_t max_attempts, uint32_t operation_timeout_ms) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<S3Client> client,
                          OpenClient(spec, max_attempts, operation_timeout_ms));
  return std::unique_ptr<ObjectStore>(std::move(client));
}

Result<std::unique_ptr<Remote>> Remote::Open(const RemoteSpec& spec) {
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<S3Client> client,
                          OpenClient(spec, remote::S3Options().max_attempts));
  Status s = client->CheckBucket();
  if (!s.ok()) {
    return s.WithContext("remote " + spec.name);
  }
  return remote::OpenRemoteOn(spec, std::move(client));
}

std::unique_ptr<Remote> remote::OpenRemoteOn(const RemoteSpec& spec,
                                             std::unique_ptr<ObjectStore> store,
                                             const RemoteTuning& tuning) {
  return std::make_unique<RemoteImpl>(spec, std::move(store), tuning);
}

}  // namespace strata
