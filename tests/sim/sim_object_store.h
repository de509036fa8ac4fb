// An in-memory S3 bucket for the remote crash simulator: the ObjectStore seam with S3's
// semantics (atomic PUT, If-None-Match: *, ranged GET, paged listing, per-key DeleteObjects) and
// faults chosen by the test. Each "process" (host) talks to the shared bucket through its own
// SimObjectStore; when it dies, the request it was making takes effect or not (a coin) and it
// and every later request fail, as a kill -9 looks to the bucket. Requests of one batch are
// applied in a shuffled order: the real client runs them concurrently.
//
// The real server is tested by tests/integration (Ceph RGW); this store exists so that a seeded
// run can put a crash at every mutation of a push, a restore or a garbage collection.
#ifndef STRATA_TESTS_SIM_SIM_OBJECT_STORE_H_
#define STRATA_TESTS_SIM_SIM_OBJECT_STORE_H_

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "io/sim_env.h"
#include "remote/object_store.h"
#include "util/sigv4.h"

namespace strata::test {

struct SimBucket {
  // Recursive: a host acting "meanwhile" runs inside another's request. Held by every request,
  // so that a lazy restore's worker thread and the test may share the bucket.
  std::recursive_mutex mu;
  std::map<std::string, std::string> objects;
  uint64_t mutations = 0;  // PUTs and DELETEs applied or attempted, by every host
  // The bucket's clock (leases expire by it); the remote under test is given it as its Env
  // (RemoteTuning::env), and the test moves it with AdvanceClock.
  SimEnv clock{0};
  // Stepped: a remote on this clock runs no thread of its own (a push uploads on the caller's
  // thread), so a host acting "meanwhile" inside a request, holding `mu`, cannot deadlock
  // against one, and a seed replays the same requests in the same order.
  SimBucket() { clock.SetSteppedBackground(true); }
  bool down = false;  // every request fails as if the server were unreachable
  uint64_t runs = 0;  // rounds of requests (ObjectStore::Run calls), by every host
  uint64_t gets = 0;  // GETs answered, and their bytes
  uint64_t get_bytes = 0;
  // The GC lease's rule, checked on every DELETE: what a GC or a snapshot delete removes
  // (snapshots/, index/, nodes/, packs/) goes only while leases/gc exists and has not expired.
  uint64_t lease_violations = 0;
  uint64_t slow_requests = 0;  // reads that moved the clock on (SimObjectStore::slow_ms)
};

class SimObjectStore final : public remote::ObjectStore {
 public:
  SimObjectStore(SimBucket* bucket, uint64_t seed) : bucket_(bucket), rng_(seed) {}

  // Faults. The process dies at the mutation that makes bucket->mutations reach `die_at`.
  uint64_t die_at = UINT64_MAX;
  uint32_t flaky_percent = 0;  // each request fails with EIO (a mutation: taking effect or not)
  // Runs before each mutation of this process: another host acts "meanwhile".
  std::function<void()> before_mutation;
  // Slow reads: this share of GETs, HEADs and listings moves the bucket's clock on by slow_ms
  // (mutations never do), so that an operation can outlive a lease it took.
  uint32_t slow_percent = 0;
  int64_t slow_ms = 0;

  bool dead() const { return dead_; }
  std::string Describe() const override { return "s3://sim"; }

  void Run(const std::vector<remote::S3Request*>& requests) override {
    std::lock_guard<std::recursive_mutex> lock(bucket_->mu);
    bucket_->runs++;
    std::vector<remote::S3Request*> order = requests;
    std::shuffle(order.begin(), order.end(), rng_);
    for (remote::S3Request* r : order) {
      Apply(r);
    }
  }

  Result<ListPage> List(const std::string& sub_prefix, const std::string& token,
                        uint32_t max_keys) override {
    std::lock_guard<std::recursive_mutex> lock(bucket_->mu);
    if (dead_ || bucket_->down || Flaky()) {
      return Status::IOError("sim: ListObjectsV2 " + sub_prefix + ": connection refused", EIO);
    }
    Slow();
    ListPage page;
    const uint32_t limit = std::min<uint32_t>(max_keys, 3);  // small pages: paging is exercised
    auto it = token.empty() ? bucket_->objects.lower_bound(sub_prefix)
                            : bucket_->objects.upper_bound(token);
    for (; it != bucket_->objects.end() && it->first.compare(0, sub_prefix.size(), sub_prefix) == 0;
         ++it) {
      if (page.objects.size() == limit) {
        page.next_token = page.objects.back().first;
        break;
      }
      page.objects.emplace_back(it->first, it->second.size());
    }
    return page;
  }

  Status DeleteMany(const std::vector<std::string>& keys) override {
    std::lock_guard<std::recursive_mutex> lock(bucket_->mu);
    for (const std::string& key : keys) {  // DeleteObjects may stop part way
      remote::S3Request r;
      r.method = remote::S3Request::Method::kDelete;
      r.key = key;
      Apply(&r);
      if (!r.status.ok()) {
        return r.status;
      }
    }
    return Status::OK();
  }

 private:
  bool Coin() { return rng_() % 2 == 0; }
  void Slow() {
    if (slow_percent > 0 && rng_() % 100 < slow_percent) {
      bucket_->clock.AdvanceClock(static_cast<uint64_t>(slow_ms) * 1'000'000);
      bucket_->slow_requests++;
    }
  }
  bool LeaseHeld() const {
    auto it = bucket_->objects.find("leases/gc");
    if (it == bucket_->objects.end()) {
      return false;
    }
    const size_t at = it->second.find("\"until_ms\":");
    return at != std::string::npos &&
           std::strtoll(it->second.c_str() + at + 11, nullptr, 10) > bucket_->clock.WallClockMs();
  }
  static bool LeaseGuarded(const std::string& key) {
    for (const char* prefix : {"snapshots/", "index/", "nodes/", "packs/"}) {
      if (key.rfind(prefix, 0) == 0) {
        return true;
      }
    }
    return false;
  }
  bool Flaky() { return flaky_percent > 0 && rng_() % 100 < flaky_percent; }

  static void Fail(remote::S3Request* r, int http, Status status) {
    r->http_status = http;
    r->status = std::move(status);
    r->response.clear();
  }

  void Apply(remote::S3Request* r) {
    r->attempts = 1;
    r->response.clear();
    r->response_headers.clear();
    if (bucket_->down) {
      return Fail(r, 0, Status::IOError("sim: " + r->key + ": connection refused", EIO));
    }
    const bool mutation = r->method == remote::S3Request::Method::kPut ||
                          r->method == remote::S3Request::Method::kDelete;
    if (!dead_ && mutation) {
      if (before_mutation) {
        before_mutation();
      }
      if (++bucket_->mutations >= die_at) {
        dead_ = true;
        if (Coin()) {
          Execute(r);  // it reached the server before the process died
        }
      } else if (Flaky()) {
        if (Coin()) {
          Execute(r);
        }
        return Fail(r, 503, Status::IOError("sim: " + r->key + ": 503 SlowDown", EIO));
      }
    } else if (!dead_ && Flaky()) {
      return Fail(r, 503, Status::IOError("sim: " + r->key + ": 503 SlowDown", EIO));
    }
    if (!mutation) {
      Slow();
    }
    if (dead_) {
      return Fail(r, 0, Status::IOError("sim: " + r->key + ": the process is dead", EIO));
    }
    Execute(r);
  }

  std::string Header(const remote::S3Request& r, const std::string& name) const {
    for (const auto& [k, v] : r.headers) {
      if (k == name) {
        return v;
      }
    }
    return "";
  }

  void Execute(remote::S3Request* r) {
    auto it = bucket_->objects.find(r->key);
    r->status = Status::OK();
    r->http_status = 200;
    switch (r->method) {
      case remote::S3Request::Method::kPut:
        if (Header(*r, "If-None-Match") == "*" && it != bucket_->objects.end()) {
          return Fail(r, 412, Status::AlreadyExists("sim: " + r->key + ": 412"));
        }
        if (!r->payload_sha256_hex.empty() &&
            r->payload_sha256_hex != sigv4::Sha256Hex(r->body, r->body_bytes)) {
          return Fail(
              r, 400,
              Status::InvalidArgument("sim: " + r->key + ": 400 XAmzContentSHA256Mismatch"));
        }
        bucket_->objects[r->key].assign(static_cast<const char*>(r->body), r->body_bytes);
        return;
      case remote::S3Request::Method::kDelete:
        if (LeaseGuarded(r->key) && !LeaseHeld()) {
          bucket_->lease_violations++;
        }
        bucket_->objects.erase(r->key);
        r->http_status = 204;
        return;
      case remote::S3Request::Method::kPost:
        return Fail(r, 400, Status::InvalidArgument("sim: POST is not modelled"));
      case remote::S3Request::Method::kGet:
      case remote::S3Request::Method::kHead:
        break;
    }
    if (it == bucket_->objects.end()) {
      return Fail(r, 404, Status::NotFound("sim: " + r->key + ": 404 NoSuchKey"));
    }
    r->response_headers["content-length"] = std::to_string(it->second.size());
    if (r->method == remote::S3Request::Method::kHead) {
      return;
    }
    bucket_->gets++;
    const std::string range = Header(*r, "Range");
    if (range.empty()) {
      r->response = it->second;
      bucket_->get_bytes += r->response.size();
      return;
    }
    const uint64_t first = std::stoull(range.substr(6));
    const uint64_t last = std::stoull(range.substr(range.find('-') + 1));
    if (first >= it->second.size()) {
      return Fail(r, 416, Status::OutOfRange("sim: " + r->key + ": 416"));
    }
    r->http_status = 206;
    r->response = it->second.substr(first, last - first + 1);
    bucket_->get_bytes += r->response.size();
  }

  SimBucket* bucket_;
  std::mt19937_64 rng_;
  bool dead_ = false;
};

}  // namespace strata::test

#endif  // STRATA_TESTS_SIM_SIM_OBJECT_STORE_H_
