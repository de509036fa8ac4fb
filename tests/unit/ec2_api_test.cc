// The EC2 layer's API surface on its own: errors as EC2 names them.
#include <gtest/gtest.h>

#include "control/ec2_errors.h"

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
