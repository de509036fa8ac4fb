// The verb table (lib/control/verbs.cc) is the one list of verbs the CLI builds its command line
// from and the control plane checks requests against: every verb reaches a handler, its
// arguments are well formed, and a request with an argument no verb has is refused.
#include "control/verbs.h"

#include <set>
#include <string>

#include <gtest/gtest.h>

#include "strata/compute.h"
#include "strata/pool.h"

#include "control/control.h"
#include "testutil/test_util.h"

namespace strata::control {
namespace {

using nlohmann::json;

TEST(VerbsTest, ArgumentsAreWellFormed) {
  std::set<std::string> paths, commands;
  for (const Verb& verb : Verbs()) {
    EXPECT_TRUE(paths.insert(verb.path).second) << "two verbs at " << verb.path;
    EXPECT_TRUE(commands.insert(verb.command).second) << "two verbs send " << verb.command;
    std::set<std::string> flags, keys;
    for (const VerbArg& a : verb.args) {
      const std::string flag = a.flag;
      EXPECT_TRUE(flags.insert(flag).second) << verb.path << " " << flag;
      EXPECT_FALSE(flag.empty() || flag == "--" || flag == "--output" || flag == "--pool")
          << verb.path << ": " << flag << " hides a global option";
      // Two arguments share a key only as a flag and its negation (--X / --no-X).
      if (!keys.insert(a.key).second) {
        EXPECT_EQ(a.kind, VerbArg::Kind::kFlag) << verb.path << " " << a.key;
        EXPECT_FALSE(a.flag_value) << verb.path << " " << a.key;
      }
    }
    for (const char* key : verb.one_of) {
      EXPECT_TRUE(keys.count(key)) << verb.path << ": one_of names an unknown key " << key;
    }
  }
}

class VerbsPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Pool::Create(dir_.path(), PoolOptions{}).ok());
    auto pool = Pool::Open(dir_.path(), PoolOptions{});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    auto compute = Compute::Open(pool_.get(), ComputeOptions{});
    ASSERT_TRUE(compute.ok());
    compute_ = std::move(*compute);
  }
  test::TempDir dir_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<Compute> compute_;
};

TEST_F(VerbsPoolTest, EveryVerbReachesAHandler) {
  for (const Verb& verb : Verbs()) {
    if (std::string(verb.command) == "pool-create") {
      continue;  // the CLI's own: it makes the pool the others need
    }
    // With no arguments a verb fails on what it lacks (or lists nothing): never "unknown".
    auto reply = ExecuteStreamCommand(
        compute_.get(), json{{"command", verb.command}, {"args", json::object()}}, nullptr);
    if (!reply.ok()) {
      EXPECT_EQ(reply.status().message().find("unknown command"), std::string::npos)
          << verb.command << ": " << reply.status().ToString();
    }
  }
}

TEST_F(VerbsPoolTest, AnArgumentTheVerbDoesNotHaveIsRefused) {
  auto info = pool_->CreateVolume(VolumeSpec{1 << 20, "", "gp3", ""});
  ASSERT_TRUE(info.ok());
  for (auto execute : {&ExecuteControl}) {
    auto reply =
        execute(compute_.get(), json{{"command", "delete-volume"},
                                     {"args", {{"volume-id", info->volume_id}, {"force", true}}}});
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(reply.status().message().find("has no argument 'force'"), std::string::npos)
        << reply.status().ToString();
  }
  auto stream = ExecuteStreamCommand(
      compute_.get(), json{{"command", "export-snapshot"}, {"args", {{"outputfile", "x"}}}},
      nullptr);
  EXPECT_EQ(stream.status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(pool_->DescribeVolume(info->volume_id).ok());  // nothing was done
}

}  // namespace
}  // namespace strata::control
