// The seam between the remote layer and the object store it talks to (leveldb's Env, for S3).
// S3Client (s3_client.h) is the one production implementation; tests/sim/ has an in-memory one
// that fails, and "crashes", at chosen requests so that the crash simulator can explore every
// point of a push, a restore and a garbage collection.
//
// The contract is S3's: PUT replaces an object atomically (readers see the old or the new bytes,
// never a mix), PUT with If-None-Match: * creates an object once, and a read after a completed
// write sees it (strong read-after-write consistency, as AWS S3 and Ceph RGW give).
#ifndef STRATA_REMOTE_OBJECT_STORE_H_
#define STRATA_REMOTE_OBJECT_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "strata/status.h"

namespace strata::remote {

struct S3Request {
  enum class Method { kGet, kPut, kHead, kDelete, kPost };
  Method method = Method::kGet;
  std::string key;  // below the store's prefix; "" with `bucket_only` addresses the bucket
  bool bucket_only = false;
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;  // Range, If-None-Match, ...
  const void* body = nullptr;                                // PUT/POST payload, not owned
  size_t body_bytes = 0;
  // The most response body this request may bring (0: the store's default cap). Set it to what
  // is asked for (a range's length, a node's largest size): a server that sends more fails the
  // request, and holds no more of our memory than that.
  size_t max_response_bytes = 0;
  // The body's SHA-256 in lower-case hex when the caller has it already (a pack is named by it):
  // signing then does not hash the body again. Empty: the store hashes it.
  std::string payload_sha256_hex = {};
  // The response is exactly max_response_bytes long when it succeeds (a range of a known
  // object): the store sizes its buffer once, not by growing it.
  bool exact_response = false;

  // Filled in by the store.
  Status status;  // OK for 2xx; see ObjectStore::Run for the mapping of failures
  int http_status = 0;
  std::string response;  // the body (GET data, XML), bounded by the store
  std::map<std::string, std::string> response_headers;  // lower-case names
  uint32_t attempts = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // "s3://bucket/prefix" (where the objects live), for messages.
  virtual std::string Describe() const = 0;

  // Runs every request, many at once, and sets each one's status: NotFound (404), AlreadyExists
  // (412, a conditional PUT lost), OutOfRange (416), IOError with EACCES (401, 403:
  // credentials), InvalidArgument (other 4xx), IOError with EIO (5xx, 429 or a transport error
  // after the store's retries; ETIMEDOUT past a deadline), Shutdown (the caller's CancelScope
  // said stop: util/cancel.h). A request that failed with EIO may still have taken effect.
  // Not thread-safe: one caller at a time.
  virtual void Run(const std::vector<S3Request*>& requests) = 0;

  struct ListPage {
    std::vector<std::pair<std::string, uint64_t>> objects;  // key below the prefix, size
    std::optional<std::string> next_token;
  };
  // Keys below prefix + `sub_prefix`, in key order, at most `max_keys` (1..1000).
  virtual Result<ListPage> List(const std::string& sub_prefix, const std::string& token,
                                uint32_t max_keys = 1000) = 0;
  // Every page of a listing, in order, each handed to `fn` (an error from it ends the walk).
  // A remote cannot make this loop forever: keys must rise strictly across the whole listing
  // (a repeated page or token is Corruption), at most kMaxListPages pages, at most
  // kMaxEmptyPages truncated pages with no key in a row, and the caller's CancelScope is
  // honoured between pages.
  static constexpr uint32_t kMaxListPages = 10000;  // 10M keys
  static constexpr uint32_t kMaxEmptyPages = 16;
  Status ForEachPage(const std::string& sub_prefix,
                     const std::function<Status(const ListPage&)>& fn);
  // Deletes the keys (in batches). Keys that do not exist are not an error.
  virtual Status DeleteMany(const std::vector<std::string>& keys) = 0;

  // Conveniences over Run.
  Status Run(S3Request* request);
  // `if_absent`: If-None-Match: * (the object is created once; AlreadyExists if it exists).
  Status Put(const std::string& key, const void* data, size_t length, bool if_absent = false);
  // `max_bytes`: the most the object may be (0: the store's default cap).
  Result<std::string> Get(const std::string& key, size_t max_bytes = 0);
  // [offset, offset + length) of the object; Corruption when fewer bytes come back.
  Result<std::string> GetRange(const std::string& key, uint64_t offset, uint64_t length);
  Result<uint64_t> Head(const std::string& key);  // the object's size
  Status Delete(const std::string& key);          // a missing key is not an error
};

}  // namespace strata::remote

#endif  // STRATA_REMOTE_OBJECT_STORE_H_
