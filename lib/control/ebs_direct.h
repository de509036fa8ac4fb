// The EBS direct APIs (docs/ec2-api.md "EBS direct APIs"): REST + JSON under /snapshots, as
// coldsnap and boto3's "ebs" client speak them. Read: ListSnapshotBlocks, ListChangedBlocks and
// GetSnapshotBlock, with block tokens that name one block of one snapshot until they expire.
// Write: StartSnapshot, PutSnapshotBlock and CompleteSnapshot upload a disk as a snapshot; it is
// listed only once complete (its blocks go into a hidden importing volume, sealed at the end; a
// crash or a timeout leaves nothing). Blocks are 512 KiB, checksums SHA-256, as EBS's.
// Authentication is the caller's (SigV4, service "ebs").
#ifndef STRATA_CONTROL_EBS_DIRECT_H_
#define STRATA_CONTROL_EBS_DIRECT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/compute.h"

#include "util/mutex.h"

namespace strata::control {

struct EbsRequest {
  std::string method;
  std::string path;                            // "/snapshots/snap-…/blocks/3" (decoded)
  std::map<std::string, std::string> query;    // decoded
  std::map<std::string, std::string> headers;  // names lower case
  std::string_view body;
};

struct EbsReply {
  int http_status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

constexpr uint32_t kEbsBlockBytes = 512 * 1024;
constexpr size_t kMaxUploads = 16;  // StartSnapshot uploads in progress at once

class EbsDirect {
 public:
  explicit EbsDirect(Compute* compute);
  ~EbsDirect();
  EbsReply Handle(const EbsRequest& request);

 private:
  struct Upload;
  EbsReply Route(const EbsRequest& request);
  EbsReply ListBlocks(const std::string& snapshot_id, const EbsRequest& request, bool changed);
  EbsReply GetBlock(const std::string& snapshot_id, uint64_t index, const EbsRequest& request);
  EbsReply Start(const EbsRequest& request);
  std::optional<EbsReply> Repeated(const std::string& token, const std::string& fingerprint)
      EXCLUDES(mu_);
  struct UploadEncryption {
    std::optional<bool> encrypted;  // absent: encryption by default (or the parent's) decides
    std::string kms_key_arn;
  };
  Status OpenUploadVolume(Upload* upload, uint64_t gib, const std::string& parent,
                          uint64_t timeout_min, const UploadEncryption& encryption);
  EbsReply Put(const std::string& snapshot_id, uint64_t index, const EbsRequest& request);
  EbsReply Complete(const std::string& snapshot_id, const EbsRequest& request);
  EbsReply Finish(Upload* upload, const EbsRequest& request);
  std::shared_ptr<Upload> FindUpload(const std::string& snapshot_id) EXCLUDES(mu_);
  void DropExpiredUploads() EXCLUDES(mu_);
  std::string Token(const std::string& snapshot_id, uint64_t index, int64_t expiry_s) const;
  bool TokenValid(const std::string& token, const std::string& snapshot_id, uint64_t index) const;

  Compute* const compute_;
  std::string token_key_;  // random per process: tokens die with it (and after 7 days)
  Mutex mu_;               // the map only; taken after no upload's own lock
  std::map<std::string, std::shared_ptr<Upload>> uploads_ GUARDED_BY(mu_);
};

}  // namespace strata::control

#endif  // STRATA_CONTROL_EBS_DIRECT_H_
