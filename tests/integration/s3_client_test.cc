// The S3 client against a real Ceph RADOS Gateway (tools/rgw.sh; S3_ENDPOINT, S3_ACCESS_KEY,
// S3_SECRET_KEY in the environment, as tools/test.sh and .ci/run set them). Skipped, saying so,
// when no server is configured.
#include "remote/s3_client.h"

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace strata::remote {
namespace {

class S3ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* endpoint = std::getenv("S3_ENDPOINT");
    if (endpoint == nullptr || endpoint[0] == '\0') {
      GTEST_SKIP() << "S3_ENDPOINT is not set: no S3 server to test against (tools/rgw.sh start)";
    }
    location_.endpoint = endpoint;
    location_.bucket = "strata-client-" + std::to_string(std::random_device{}() % 1000000000);
    location_.prefix = "p/";
    credentials_ = {std::getenv("S3_ACCESS_KEY"), std::getenv("S3_SECRET_KEY"), ""};
    auto client = S3Client::Create(location_, credentials_);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
    ASSERT_TRUE(client_->CreateBucket().ok());
  }
  void TearDown() override {
    if (client_ == nullptr) {
      return;
    }
    std::vector<std::string> keys;
    std::string token;
    for (;;) {
      auto page = client_->List("", token);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      for (const auto& [key, size] : page->objects) {
        keys.push_back(key);
      }
      if (!page->next_token) {
        break;
      }
      token = *page->next_token;
    }
    EXPECT_TRUE(client_->DeleteMany(keys).ok());
    S3Request r;
    r.method = S3Request::Method::kDelete;
    r.bucket_only = true;
    EXPECT_TRUE(client_->Run(&r).ok()) << r.status.ToString();
  }

  S3Location location_;
  AwsCredentials credentials_;
  std::unique_ptr<S3Client> client_;
};

TEST_F(S3ClientTest, PutGetRangeHeadDelete) {
  std::string data(1 << 20, '\0');
  std::mt19937 rng(1);
  for (char& c : data) {
    c = static_cast<char>(rng());
  }
  for (const std::string key :
       {"plain", "with space/and+plus=eq", "d\xc3\xa9j\xc3\xa0 vu", "a~b!c'd(e)*"}) {
    ASSERT_TRUE(client_->Put(key, data.data(), data.size()).ok()) << key;
    auto back = client_->Get(key);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, data) << key;
  }
  auto range = client_->GetRange("plain", 4097, 100);
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  EXPECT_EQ(*range, data.substr(4097, 100));
  auto size = client_->Head("plain");
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, data.size());
  ASSERT_TRUE(client_->Delete("plain").ok());
  EXPECT_EQ(client_->Get("plain").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(client_->Head("plain").status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(client_->Delete("plain").ok());  // deleting what is gone is not an error
}

TEST_F(S3ClientTest, ConditionalPutCreatesOnce) {
  ASSERT_TRUE(client_->Put("once", "a", 1, /*if_absent=*/true).ok());
  Status s = client_->Put("once", "b", 1, /*if_absent=*/true);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << s.ToString();
  EXPECT_EQ(*client_->Get("once"), "a");
}

TEST_F(S3ClientTest, ManyRequestsInFlightAndPagedListsAndBatchDeletes) {
  constexpr int kObjects = 1200;  // two DeleteObjects batches
  std::vector<std::string> bodies(kObjects);
  std::vector<S3Request> puts(kObjects);
  std::vector<S3Request*> batch;
  for (int i = 0; i < kObjects; i++) {
    bodies[i] = "object " + std::to_string(i);
    puts[i].method = S3Request::Method::kPut;
    puts[i].key = "many/" + std::to_string(100000 + i);
    puts[i].body = bodies[i].data();
    puts[i].body_bytes = bodies[i].size();
    batch.push_back(&puts[i]);
  }
  const auto start = std::chrono::steady_clock::now();
  client_->Run(batch);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const S3Request& r : puts) {
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  }
  std::printf("[ figures ] %d small PUTs, 16 in flight: %.2f s (%.0f/s)\n", kObjects, secs,
              kObjects / secs);
  std::vector<std::string> listed;
  std::string token;
  int pages = 0;
  for (;;) {
    auto page = client_->List("many/", token, 500);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    pages++;
    for (const auto& [key, size] : page->objects) {
      listed.push_back(key);
    }
    if (!page->next_token) {
      break;
    }
    token = *page->next_token;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(listed.size(), size_t{kObjects});
  EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end()));
  ASSERT_TRUE(client_->DeleteMany(listed).ok());
  auto after = client_->List("many/", "");
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->objects.empty());
}

TEST_F(S3ClientTest, WrongCredentialsMissingBucketAndNoServerAreClearErrors) {
  auto bad = S3Client::Create(location_, {credentials_.access_key_id, "wrong-secret", ""});
  ASSERT_TRUE(bad.ok());
  Status s = (*bad)->Put("x", "x", 1);
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_EQ(s.sys_errno(), EACCES);
  EXPECT_NE(s.message().find("HTTP 403 SignatureDoesNotMatch"), std::string::npos) << s.ToString();
  EXPECT_EQ((*bad)->Get("x").status().sys_errno(), EACCES);

  S3Location missing = location_;
  missing.bucket = "strata-no-such-bucket";
  auto none = S3Client::Create(missing, credentials_);
  s = (*none)->CheckBucket();
  EXPECT_EQ(s.code(), Status::Code::kNotFound);
  EXPECT_NE(s.message().find("bucket strata-no-such-bucket does not exist"), std::string::npos)
      << s.ToString();
  EXPECT_EQ((*none)->Put("x", "x", 1).code(), Status::Code::kNotFound);

  S3Location down = location_;
  down.endpoint = "http://127.0.0.1:1";  // nothing listens there
  S3Options quick;
  quick.max_attempts = 3;
  quick.backoff_ms = 10;
  auto gone = S3Client::Create(down, credentials_, quick);
  S3Request r;
  r.key = "x";
  const auto start = std::chrono::steady_clock::now();
  s = (*gone)->Run(&r);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5);
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_NE(s.message().find("127.0.0.1:1"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace strata::remote
