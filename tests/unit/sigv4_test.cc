// The SigV4 signer against AWS's published vectors: the generic test suite (get-vanilla,
// query order, post-vanilla) and the S3 API reference's worked examples.
#include "util/sigv4.h"

#include <gtest/gtest.h>

namespace strata::sigv4 {
namespace {

const AwsCredentials kSuite{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
const AwsCredentials kS3{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
const std::string kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string SignatureOf(const std::string& authorization) {
  return authorization.substr(authorization.find("Signature=") + 10);
}

TEST(SigV4Test, TestSuiteVectors) {
  EXPECT_EQ(Sha256Hex(""), kEmpty);
  SigningRequest get{"GET",
                     "/",
                     {},
                     {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}},
                     kEmpty};
  EXPECT_EQ(Authorization(kSuite, "us-east-1", "service", "20150830T123600Z", get),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  SigningRequest order = get;
  order.query = {{"Param2", "value2"}, {"Param1", "value1"}};
  EXPECT_EQ(SignatureOf(Authorization(kSuite, "us-east-1", "service", "20150830T123600Z", order)),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
  SigningRequest post = get;
  post.method = "POST";
  EXPECT_EQ(SignatureOf(Authorization(kSuite, "us-east-1", "service", "20150830T123600Z", post)),
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

TEST(SigV4Test, S3ReferenceExamples) {
  const std::string host = "examplebucket.s3.amazonaws.com", date = "20130524T000000Z";
  SigningRequest get{"GET",
                     "/test.txt",
                     {},
                     {{"Host", host},
                      {"Range", "bytes=0-9"},
                      {"x-amz-content-sha256", kEmpty},
                      {"x-amz-date", date}},
                     kEmpty};
  EXPECT_EQ(SignatureOf(Authorization(kS3, "us-east-1", "s3", date, get)),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  const std::string body = "Welcome to Amazon S3.";
  const std::string body_hash = Sha256Hex(body);
  EXPECT_EQ(body_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  EXPECT_EQ(UriEncode("/test$file.text", false), "/test%24file.text");
  SigningRequest put{"PUT",
                     UriEncode("/test$file.text", false),
                     {},
                     {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                      {"Host", host},
                      {"x-amz-content-sha256", body_hash},
                      {"x-amz-date", date},
                      {"x-amz-storage-class", "REDUCED_REDUNDANCY"}},
                     body_hash};
  EXPECT_EQ(SignatureOf(Authorization(kS3, "us-east-1", "s3", date, put)),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  SigningRequest lifecycle{"GET",
                           "/",
                           {{"lifecycle", ""}},
                           {{"Host", host}, {"x-amz-content-sha256", kEmpty}, {"x-amz-date", date}},
                           kEmpty};
  EXPECT_EQ(SignatureOf(Authorization(kS3, "us-east-1", "s3", date, lifecycle)),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
  SigningRequest list = lifecycle;
  list.query = {{"prefix", "J"}, {"max-keys", "2"}};
  EXPECT_EQ(CanonicalQuery(list.query), "max-keys=2&prefix=J");
  EXPECT_EQ(SignatureOf(Authorization(kS3, "us-east-1", "s3", date, list)),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4Test, EncodingAndDates) {
  EXPECT_EQ(UriEncode("a b+c/d~e", true), "a%20b%2Bc%2Fd~e");
  EXPECT_EQ(UriEncode("\xc3\xa9", true), "%C3%A9");
  EXPECT_EQ(AmzDate(1440938160), "20150830T123600Z");
  EXPECT_EQ(CanonicalQuery({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(CanonicalQuery({{"prefix", "a/b c"}, {"list-type", "2"}}),
            "list-type=2&prefix=a%2Fb%20c");
}

// The server side: AWS's get-vanilla vector verifies, and each way a request can be wrong is
// refused with AWS's code.
TEST(SigV4VerifyTest, TheSuiteVectorVerifiesAndEveryTamperingIsRefused) {
  const std::string kAuth =
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
      "SignedHeaders=host;x-amz-date, "
      "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
  const time_t kSignedAt = 1440938160;  // 2015-08-30T12:36:00Z
  ReceivedRequest good{"GET",
                       "/",
                       {},
                       {{"Host", "example.amazonaws.com"},
                        {"X-Amz-Date", "20150830T123600Z"},
                        {"Authorization", kAuth},
                        {"User-Agent", "unsigned headers are allowed"}},
                       ""};
  SecretLookup secrets = [](const std::string& id) -> std::optional<std::string> {
    return id == kSuite.access_key_id ? std::optional(kSuite.secret_access_key) : std::nullopt;
  };
  std::string who;
  ASSERT_TRUE(VerifySigV4(good, "us-east-1", "service", secrets, kSignedAt + 60, &who).ok());
  EXPECT_EQ(who, "AKIDEXAMPLE");
  auto refused = [&](const ReceivedRequest& r, time_t now, const std::string& code,
                     const SecretLookup& lookup) {
    Status s = VerifySigV4(r, "us-east-1", "service", lookup, now, nullptr);
    EXPECT_EQ(s.code(), Status::Code::kPermissionDenied) << s.ToString();
    EXPECT_TRUE(s.message().starts_with(code)) << s.ToString();
  };
  ReceivedRequest changed = good;
  changed.body = "x";  // a body the signature did not cover
  refused(changed, kSignedAt, "AuthFailure: the signature does not match", secrets);
  changed = good;
  changed.query = {{"Action", "DeleteVolume"}};
  refused(changed, kSignedAt, "AuthFailure: the signature does not match", secrets);
  refused(good, kSignedAt, "AuthFailure: the signature does not match",
          [](const std::string&) { return std::optional<std::string>("wrong secret"); });
  refused(good, kSignedAt, "AuthFailure: the access key AKIDEXAMPLE does not exist",
          [](const std::string&) { return std::nullopt; });
  refused(good, kSignedAt + 16 * 60, "RequestExpired", secrets);
  refused(good, kSignedAt - 16 * 60, "RequestExpired", secrets);
  EXPECT_EQ(VerifySigV4(good, "eu-west-1", "service", secrets, kSignedAt, nullptr).code(),
            Status::Code::kPermissionDenied);  // signed for another region
  changed = good;
  changed.headers.erase(changed.headers.begin());  // the signed Host header is missing
  refused(changed, kSignedAt, "AuthFailure: signed header 'host'", secrets);
  changed = good;
  changed.headers.pop_back();
  changed.headers.pop_back();  // no Authorization at all
  refused(changed, kSignedAt, "AuthFailure: the request is not signed", secrets);
  changed = good;
  changed.headers[2].second = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE";
  refused(changed, kSignedAt, "AuthFailure: the Authorization header", secrets);
  // A valid signature over "x-amz-date;xhost" leaves Host unsigned (a request replayable to any
  // host): "host" as a substring of another name is not "host" signed.
  SigningRequest xhost{"GET",
                       "/",
                       {},
                       {{"x-amz-date", "20150830T123600Z"}, {"xhost", "example.amazonaws.com"}},
                       kEmpty};
  changed = good;
  changed.headers = {
      {"Host", "elsewhere.example"},
      {"X-Amz-Date", "20150830T123600Z"},
      {"xhost", "example.amazonaws.com"},
      {"Authorization", Authorization(kSuite, "us-east-1", "service", "20150830T123600Z", xhost)}};
  refused(changed, kSignedAt, "AuthFailure: the Host header must be signed", secrets);
}

}  // namespace
}  // namespace strata::sigv4
