// The EC2 layer's API surface on its own: errors as EC2 names them.
#include <gtest/gtest.h>

#include "control/ec2_errors.h"
#include "control/ec2_query.h"

namespace strata::control {
namespace {

TEST(Ec2ErrorsTest, CodesFollowTheResourceAndAreNeverDoubled) {
  struct Case {
    Status status;
    const char* code;
    int http;
  };
  const Case kCases[] = {
      {Status::NotFound("volume vol-1 does not exist"), "InvalidVolume.NotFound", 400},
      {Status::NotFound("snapshot snap-1 does not exist"), "InvalidSnapshot.NotFound", 400},
      {Status::NotFound("image ami-1 does not exist"), "InvalidAMIID.NotFound", 400},
      {Status::NotFound("instance i-1 does not exist"), "InvalidInstanceID.NotFound", 400},
      {Status::NotFound("security group sg-1 does not exist"), "InvalidGroup.NotFound", 400},
      {Status::Busy("snapshot snap-1 is in use by ami-2"), "InvalidSnapshot.InUse", 400},
      {Status::Busy("volume vol-1 is attached"), "VolumeInUse", 400},
      {Status::InvalidArgument("InvalidParameterValue: bad size"), "InvalidParameterValue", 400},
      {Status::InvalidArgument("IncorrectState: i-1 is stopped"), "IncorrectState", 400},
      {Status::InvalidArgument("--size: not a size"), "InvalidParameterValue", 400},
      {Status::PermissionDenied("not allowed"), "UnauthorizedOperation", 403},
      {Status::Shutdown("pool closing"), "Unavailable", 503},
      {Status::IOError("disk", 5), "InternalError", 500},
  };
  for (const Case& c : kCases) {
    Ec2Error e = Ec2ErrorOf(c.status);
    EXPECT_EQ(e.code, c.code) << c.status.ToString();
    EXPECT_EQ(e.http_status, c.http) << c.status.ToString();
  }
  EXPECT_EQ(Ec2ErrorText(Status::InvalidArgument("InvalidParameterValue: bad size")),
            "InvalidParameterValue: bad size");  // once, not "InvalidArgument: Invalid...: "
}

}  // namespace
}  // namespace strata::control

namespace strata::control {
namespace {

// EC2 never refuses a new ClientToken (the AWS CLI and boto3 send one with every create): past
// kMaxTokens the oldest answered tokens are forgotten, and the newest keep answering retries.
// Before, the 10,001st create of a day failed with RequestLimitExceeded.
TEST(ClientTokensTest, ANewTokenIsNeverRefusedAndMemoryStaysBounded) {
  ClientTokens tokens;
  const size_t n = ClientTokens::kMaxTokens + 500;
  for (size_t i = 0; i < n; i++) {
    const std::string key = "CreateVolume\n" + std::to_string(i);
    ASSERT_FALSE(tokens.Begin(key, "Size=1&", "r").has_value()) << "token " << i << " refused";
    tokens.Finish(key, QueryReply{200, "<volume " + std::to_string(i) + "/>"});
  }
  EXPECT_LE(tokens.size(), ClientTokens::kMaxTokens);
  auto newest = tokens.Begin("CreateVolume\n" + std::to_string(n - 1), "Size=1&", "r");
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(newest->xml, "<volume " + std::to_string(n - 1) + "/>");
  auto mismatch = tokens.Begin("CreateVolume\n" + std::to_string(n - 2), "Size=2&", "r");
  ASSERT_TRUE(mismatch.has_value());
  EXPECT_NE(mismatch->xml.find("IdempotentParameterMismatch"), std::string::npos);
  // A failed request's token is forgotten (its retry runs again), and many of them do not grow
  // the bookkeeping without bound.
  for (size_t i = 0; i < 3 * ClientTokens::kMaxTokens; i++) {
    const std::string key = "RunInstances\n" + std::to_string(i);
    ASSERT_FALSE(tokens.Begin(key, "x", "r").has_value());
    tokens.Finish(key, QueryReply{400, "<error/>"});
  }
  EXPECT_LE(tokens.size(), ClientTokens::kMaxTokens);
}

}  // namespace
}  // namespace strata::control
