// A small S3 client: path-style requests to any S3-compatible server (tested against Ceph RGW),
// signed with SigV4 (sigv4.h), carried by libcurl's multi interface so that many requests run at
// once over kept-alive connections. Retries 5xx, 429 and transport errors with bounded
// exponential backoff; every other answer is final. Errors are one line naming the remote, the
// request and the HTTP status with S3's error code.
#ifndef STRATA_REMOTE_S3_CLIENT_H_
#define STRATA_REMOTE_S3_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "strata/env.h"
#include "strata/status.h"

#include "remote/object_store.h"
#include "util/sigv4.h"

namespace strata::remote {

// SigV4 (util/sigv4.h) is shared with the EC2 endpoint, which verifies what S3 clients sign.
using sigv4::AwsCredentials;
using sigv4::SigningRequest;

struct S3Location {
  std::string endpoint = "https://s3.amazonaws.com";  // scheme://host[:port], no path
  std::string region = "us-east-1";
  std::string bucket;
  std::string prefix;  // "" or "some/prefix/" (keys are prefix + key)
  // "s3://bucket/prefix" for messages.
  std::string Describe() const;
};

struct S3Options {
  uint32_t max_in_flight = 16;  // requests (and connections) at once
  uint32_t max_attempts = 5;    // per request, for retryable failures
  uint32_t backoff_ms = 100;    // first retry delay; doubles, with jitter, up to 5 s
  uint32_t connect_timeout_ms = 5000;
  uint32_t stall_timeout_s = 10;  // a transfer below 1 KiB/s for this long fails (retryable)
  // One attempt's whole time: request_timeout_ms plus its known size (body, or the response it
  // asked for) at min_rate_bytes_per_s. A trickle above the stall rate ends here too.
  uint32_t request_timeout_ms = 30000;
  uint32_t min_rate_bytes_per_s = 256 << 10;
  // One Run's whole time, retries included (0: only the attempts' own bounds). Past it every
  // request not yet done fails with ETIMEDOUT: an NBD read waiting on a lazy restore's fetch
  // fails in bounded time (docs/remote-format.md).
  uint32_t operation_timeout_ms = 0;
  size_t max_response_bytes = 64u << 20;      // a request's own max_response_bytes may lower it
  size_t max_list_response_bytes = 8u << 20;  // 1,000 keys of 1 KiB and their XML fit
  // The clock deadlines and retry delays are measured on; null: Env::Default(). Not owned.
  Env* env = nullptr;
};

class S3Client final : public ObjectStore {
 public:
  static Result<std::unique_ptr<S3Client>> Create(const S3Location& location,
                                                  const sigv4::AwsCredentials& credentials,
                                                  const S3Options& options = S3Options());
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  const S3Location& location() const { return location_; }
  std::string Describe() const override { return location_.Describe(); }

  // Up to max_in_flight requests at once over kept-alive connections (ObjectStore::Run).
  using ObjectStore::Run;
  void Run(const std::vector<S3Request*>& requests) override;
  // DeleteObjects in batches of 1,000.
  Status DeleteMany(const std::vector<std::string>& keys) override;
  // ListObjectsV2.
  Result<ListPage> List(const std::string& sub_prefix, const std::string& token,
                        uint32_t max_keys = 1000) override;
  // NotFound naming the bucket if it does not exist; the credentials' error if they are wrong.
  Status CheckBucket();
  Status CreateBucket();

 private:
  S3Client(S3Location location, sigv4::AwsCredentials credentials, S3Options options);
  struct Transfer;
  void Sign(const S3Request& request, Transfer* transfer, time_t now) const;
  std::string Url(const S3Request& request) const;
  std::string PathOf(const S3Request& request) const;
  Status Finish(S3Request* request, int curl_code, const std::string& curl_error) const;
  // Starts one attempt of `request` on a (reused) easy handle.
  std::unique_ptr<Transfer> StartTransfer(S3Request* request);
  // Ends `transfer` (done, or given up): its handle goes back to the idle list.
  void Retire(Transfer* transfer);
  Status Abandoned(const S3Request& request, const char* why, int sys_errno) const;
  struct RunQueue;
  void AbandonAll(RunQueue* queue, bool cancelled);
  void CollectDone(RunQueue* queue);
  Env* Clock() const { return options_.env ? options_.env : Env::Default(); }

  S3Location location_;
  sigv4::AwsCredentials credentials_;
  S3Options options_;
  std::string host_;              // host[:port] as signed
  void* multi_ = nullptr;         // CURLM
  std::vector<void*> idle_easy_;  // CURL handles kept for reuse (their connections stay open)
};

// Credentials as the AWS CLI resolves them (sigv4::ResolveCredentials).
inline Result<AwsCredentials> ResolveCredentials() { return sigv4::ResolveCredentials(""); }

// "s3://bucket[/prefix]" into bucket and prefix ("prefix/"). InvalidArgument otherwise.
Status ParseS3Url(const std::string& url, S3Location* location);

}  // namespace strata::remote

#endif  // STRATA_REMOTE_S3_CLIENT_H_
