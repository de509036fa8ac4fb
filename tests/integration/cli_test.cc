// Drives the real `strata` binary: JSON shapes, output formats, exit codes and one-line errors.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testutil/test_util.h"

namespace strata {
namespace {

struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};

CliRun Cli(const std::string& args) {
  test::TempDir tmp;
  std::string cmd =
      std::string(STRATA_CLI) + " " + args + " >" + tmp.Sub("out") + " 2>" + tmp.Sub("err");
  int status = std::system(cmd.c_str());
  auto slurp = [](const std::string& path) {
    std::string s;
    FILE* f = std::fopen(path.c_str(), "r");
    for (int c; f != nullptr && (c = std::fgetc(f)) != EOF;) {
      s.push_back(static_cast<char>(c));
    }
    if (f != nullptr) {
      std::fclose(f);
    }
    return s;
  };
  return CliRun{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(tmp.Sub("out")),
                slurp(tmp.Sub("err"))};
}

nlohmann::json Json(const CliRun& r) { return nlohmann::json::parse(r.out); }

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = "--pool " + dir_.Sub("pool") + " ";
    CliRun r = Cli(pool_ + "pool create --chunk-size 16KiB");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(Json(r)["Pool"]["ChunkSizeBytes"], 16384);
  }
  test::TempDir dir_;
  std::string pool_;
};

TEST_F(CliTest, VolumeLifecycle) {
  CliRun created = Cli(pool_ + "create-volume --size 2GiB --name web");
  ASSERT_EQ(created.exit_code, 0) << created.err;
  auto v = Json(created);
  std::string id = v["VolumeId"];
  EXPECT_EQ(id.size(), 21u);
  EXPECT_EQ(id.rfind("vol-", 0), 0u);
  EXPECT_EQ(v["Size"], 2);
  EXPECT_EQ(v["State"], "creating");  // as EC2 answers create-volume
  EXPECT_EQ(v["VolumeType"], "gp3");
  EXPECT_EQ(v["Tags"][0]["Value"], "web");

  CliRun bare = Cli(pool_ + "create-volume --size 8");  // bare number: GiB, as EBS
  ASSERT_EQ(bare.exit_code, 0) << bare.err;
  EXPECT_EQ(Json(bare)["SizeBytes"], 8ull << 30);

  auto all = Json(Cli(pool_ + "describe-volumes"));
  EXPECT_EQ(all["Volumes"].size(), 2u);
  auto one = Json(Cli(pool_ + "describe-volumes --volume-ids web"));
  ASSERT_EQ(one["Volumes"].size(), 1u);
  EXPECT_EQ(one["Volumes"][0]["VolumeId"], id);
  EXPECT_EQ(one["Volumes"][0]["State"], "available");  // finished: describe shows it

  CliRun grown = Cli(pool_ + "modify-volume --volume-id " + id + " --size 3");
  ASSERT_EQ(grown.exit_code, 0) << grown.err;
  EXPECT_EQ(Json(grown)["VolumeModification"]["TargetSize"], 3);
  CliRun shrink = Cli(pool_ + "modify-volume --volume-id " + id + " --size 1");
  EXPECT_EQ(shrink.exit_code, 1);
  EXPECT_NE(shrink.err.find("cannot shrink"), std::string::npos) << shrink.err;

  EXPECT_EQ(Cli(pool_ + "--output table describe-volumes").exit_code, 2);  // not offered
  // The AWS CLI's text rules: the volume's scalars in key order after VOLUMES, then each
  // nested list under its own identifier (the api_interop test compares with the AWS CLI).
  CliRun text = Cli(pool_ + "--output text describe-volumes --volume-ids " + id);
  EXPECT_EQ(text.out.rfind("VOLUMES\tus-east-1a\t", 0), 0u) << text.out;
  EXPECT_NE(text.out.find("\tFalse\t"), std::string::npos) << text.out;  // Encrypted
  EXPECT_NE(text.out.find("\nTAGS\tName\tweb\n"), std::string::npos) << text.out;

  // --query is JMESPath (evaluated by jp), applied before --output, as the AWS CLI does.
  CliRun queried = Cli(pool_ + "--output text describe-volumes --query \"Volumes[?VolumeId=='" +
                       id + "'].[Size,Tags[0].Value]\"");
  EXPECT_EQ(queried.exit_code, 0) << queried.err;
  EXPECT_EQ(queried.out, "3\tweb\n");
  EXPECT_EQ(Cli(pool_ + "describe-volumes --query 'length(Volumes)'").out, "2\n");
  EXPECT_EQ(Cli(pool_ + "describe-volumes --query Volumes[5]").out, "null\n");

  ASSERT_EQ(Cli(pool_ + "delete-volume --volume-id " + id).exit_code, 0);
  EXPECT_EQ(Json(Cli(pool_ + "describe-volumes"))["Volumes"].size(), 1u);
  auto info = Json(Cli(pool_ + "pool info"));
  EXPECT_EQ(info["Pool"]["VolumeCount"], 1);
  CliRun check = Cli(pool_ + "pool check");
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_EQ(Json(check)["Check"]["Ok"], true);
}

// The default pool path under a HOME with nothing in it yet: the missing parents are made, each
// owner-only, and the pool works.
TEST(CliDefaultPool, PoolCreateMakesTheDefaultPathsParents) {
  test::TempDir home;
  const std::string env = "env -u STRATA_POOL -u XDG_DATA_HOME HOME=" + home.path() + " ";
  ASSERT_EQ(std::system((env + STRATA_CLI + " pool create >/dev/null").c_str()), 0);
  struct stat st;
  for (const char* dir :
       {"/.local", "/.local/share", "/.local/share/strata", "/.local/share/strata/pool"}) {
    ASSERT_EQ(stat((home.path() + dir).c_str(), &st), 0) << dir;
    EXPECT_EQ(st.st_mode & 0777, 0700u) << dir;
  }
  EXPECT_EQ(std::system((env + STRATA_CLI + " create-volume --size 1 >/dev/null").c_str()), 0);
}

TEST_F(CliTest, BadInputGetsOneLineAndExitCodes) {
  struct Case {
    std::string args;
    int code;
    std::string says;
  } cases[] = {
      {"create-volume --size 0", 1, "greater than zero"},
      {"create-volume --size -5", 1, "not a number"},
      {"create-volume --size 12XB", 1, "unknown unit"},
      {"create-volume --size 65TiB", 1, "64 TiB"},
      {"create-volume --size 1000B", 1, "multiple of 512"},
      {"create-volume --size 99999999999999999999999", 1, "too large"},
      {"create-volume --size 1 --volume-type gp9", 1, "unknown volume type"},
      {"describe-volumes --volume-ids vol-00000000000000000", 1, "does not exist"},
      {"delete-volume --volume-id vol-00000000000000000", 1, "does not exist"},
      {"create-volume", 2, "needs --size or --snapshot-id"},
      {"create-volume --snapshot-id snap-00000000000000000", 1, "does not exist"},
      {"create-snapshot --volume-id vol-00000000000000000", 1, "does not exist"},
      {"create-snapshots --volume-ids vol-00000000000000000", 1, "does not exist"},
      {"delete-snapshot --snapshot-id snap-00000000000000000", 1, "does not exist"},
      {"describe-snapshots --snapshot-ids snap-00000000000000000", 1, "does not exist"},
      {"list-snapshot-blocks --snapshot-id snap-00000000000000000", 1, "does not exist"},
      {"list-changed-blocks --second-snapshot-id snap-0 --max-results x", 1,
       "non-negative integer"},
      {"get-snapshot-block --snapshot-id snap-0 --block-index 0 --outfile /tmp/x --block-size 7", 1,
       "multiple of the chunk size"},
      {"create-snapshot", 2, "--volume-id is required"},
      {"frobnicate", 2, "strata --help"},
      {"--output yaml describe-volumes", 2, "yaml"},
      {"create-volume --size 1 --dry-run", 1, "DryRunOperation: Request would have succeeded"},
      {"create-volume --size 1 --bogus --dry-run", 2, "--bogus"},
      {"create-volume --size 1 --availability-zone us-west-2b", 1,
       "InvalidParameterValue: the availability zone 'us-west-2b'"},
      {"--region eu-west-1 describe-volumes", 1, "InvalidParameterValue: the pool is in region"},
      {"describe-volumes --volume-ids vol-00000000000000000", 1,
       "InvalidVolume.NotFound: volume vol-00000000000000000"},  // EC2's code, once
      {"describe-volumes --query 'Volumes[0'", 1, "InvalidParameterValue: --query: SyntaxError"},
      {"describe-volumes --query -x", 1, "'-x' is not a JMESPath expression"},
  };
  for (const Case& c : cases) {
    CliRun r = Cli(pool_ + c.args);
    EXPECT_EQ(r.exit_code, c.code) << c.args << ": " << r.err;
    if (!c.says.empty()) {
      EXPECT_NE(r.err.find(c.says), std::string::npos) << c.args << ": " << r.err;
    }
    if (c.code != 0) {  // usage errors too: one line
      EXPECT_EQ(r.err.rfind("strata: error: ", 0), 0u) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_TRUE(r.out.empty()) << r.out;
    }
  }
  EXPECT_EQ(Json(Cli(pool_ + "describe-volumes"))["Volumes"].size(), 0u);  // nothing changed
  CliRun missing = Cli("--pool " + dir_.Sub("absent") + " describe-volumes");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no pool at"), std::string::npos) << missing.err;
}

// Before: SIGABRT (an exception from nlohmann::json::dump) on each of these.
TEST_F(CliTest, ArgumentsThatAreNotUtf8GetAClearError) {
  for (const char* args :
       {"create-volume --size 1 --name \"$(printf 'bad\\377\\376')\"",
        "create-tags --resources vol-0123456789abcdef0 --tags \"$(printf 'Key=k,Value=\\377')\"",
        "create-snapshot --volume-id x --description \"$(printf 'd\\377')\""}) {
    CliRun r = Cli(pool_ + args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find("is not valid UTF-8"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  CliRun r = Cli(pool_ + "create-volume --size 1 --name \"$(printf 'a\\033[2Jb')\"");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("control character"), std::string::npos) << r.err;
  EXPECT_EQ(Json(Cli(pool_ + "describe-volumes"))["Volumes"].size(), 0u);
}

TEST_F(CliTest, PoolHeldByAnotherProcessIsBusy) {
  pid_t holder = fork();
  ASSERT_GE(holder, 0) << "fork";  // (kill(-1) below would signal every process)
  if (holder == 0) {  // another process holding the pool lock, as a running server would
    int fd = open((dir_.Sub("pool") + "/LOCK").c_str(), O_RDWR);
    flock(fd, LOCK_EX);
    pause();
    _exit(0);
  }
  usleep(200000);
  CliRun r = Cli(pool_ + "describe-volumes");
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("in use by another process"), std::string::npos) << r.err;
  EXPECT_EQ(Cli(pool_ + "describe-volumes").exit_code, 0);
}

TEST(CliDefaults, PoolComesFromStrataPoolVariable) {
  test::TempDir dir;
  ASSERT_EQ(Cli("--pool " + dir.Sub("p") + " pool create").exit_code, 0);
  setenv("STRATA_POOL", dir.Sub("p").c_str(), 1);
  CliRun with_env = Cli("describe-volumes");
  unsetenv("STRATA_POOL");
  EXPECT_EQ(with_env.exit_code, 0) << with_env.err;
  EXPECT_EQ(Json(with_env)["Volumes"].size(), 0u);
}

}  // namespace
}  // namespace strata
