// Hostile and broken clients against the real strata-nbd over a unix socket: each gets the spec's
// answer or a disconnect, and a well-behaved client is served afterwards every time.
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "../../nbd-server/protocol.h"
#include "raw_nbd_client.h"
#include "testutil/test_util.h"

namespace strata::nbd {
namespace {

class NbdHardening : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = dir_.Sub("pool");
    sock_ = dir_.Sub("sock");
    ASSERT_EQ(std::system((std::string(STRATA_CLI) + " --pool " + pool_ +
                           " pool create >/dev/null && " + STRATA_CLI + " --pool " + pool_ +
                           " create-volume --size 64MiB --name disk >/dev/null")
                              .c_str()),
              0);
    pid_ = fork();
    if (pid_ == 0) {
      execl(STRATA_NBD, "strata-nbd", "--pool", pool_.c_str(), "--socket", sock_.c_str(),
            "--handshake-timeout-ms", "500", "--max-payload", "1048576", nullptr);
      _exit(127);
    }
    for (int i = 0; i < 200 && access(sock_.c_str(), F_OK) != 0; i++) {
      usleep(20000);
    }
    ASSERT_EQ(access(sock_.c_str(), F_OK), 0) << "server did not start";
  }
  void TearDown() override {
    if (pid_ <= 0) {
      return;  // SetUp failed before the fork: kill(-1) would signal every process we may
    }
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "server status " << status;
  }
  // A well-behaved client still gets served: write, read back.
  void ExpectServed() {
    RawClient c(sock_);
    ASSERT_EQ(c.Go("disk"), 64u << 20);
    std::vector<uint8_t> data(4096, 0x5c);
    c.Request(kCmdWrite, 0, 1, 8192, 4096);
    c.Send(data.data(), data.size());
    uint32_t err;
    uint64_t cookie;
    ASSERT_TRUE(c.SimpleReply(&err, &cookie));
    EXPECT_EQ(err, 0u);
    c.Request(kCmdRead, 0, 2, 8192, 4096);
    ASSERT_TRUE(c.SimpleReply(&err, &cookie));
    std::vector<uint8_t> back(4096);
    ASSERT_TRUE(c.Recv(back.data(), back.size()));
    EXPECT_EQ(back, data);
  }
  // Runs the CLI (through the server's control socket); returns its stdout.
  std::string Cli(const std::string& args, int* exit_code) {
    std::string cmd = std::string(STRATA_CLI) + " --pool " + pool_ + " " + args + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) {
      out.append(buf, n);
    }
    int status = pclose(p);
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
  }
  int ServerFds() {
    int n = 0;
    DIR* d = opendir(("/proc/" + std::to_string(pid_) + "/fd").c_str());
    while (d != nullptr && readdir(d) != nullptr) {
      n++;
    }
    if (d != nullptr) {
      closedir(d);
    }
    return n;
  }

  test::TempDir dir_;
  std::string pool_, sock_;
  pid_t pid_ = -1;
};

TEST_F(NbdHardening, GarbageInsteadOfClientFlags) {
  RawClient c(sock_);
  ASSERT_TRUE(c.Greeting());
  c.Send("GET / HTTP/1.1\r\n\r\n", 18);
  EXPECT_TRUE(c.Closed());
  ExpectServed();
}

TEST_F(NbdHardening, UnknownClientFlagsEndTheConnection) {
  RawClient c(sock_);
  ASSERT_TRUE(c.Greeting());
  uint8_t flags[4];
  Put32(flags, 1u << 7);
  c.Send(flags, 4);
  EXPECT_TRUE(c.Closed());
  ExpectServed();
}

TEST_F(NbdHardening, OptionWithoutMagicAndOversizedOption) {
  for (int variant = 0; variant < 2; variant++) {
    RawClient c(sock_);
    ASSERT_TRUE(c.Greeting());
    uint8_t flags[4];
    Put32(flags, kClientFixedNewstyle);
    c.Send(flags, 4);
    uint8_t h[16];
    Put64(h, variant == 0 ? 0x1122334455667788ull : kOptMagic);
    Put32(h + 8, kOptGo);
    Put32(h + 12, variant == 0 ? 0 : 100u << 20);
    c.Send(h, 16);
    EXPECT_TRUE(c.Closed()) << variant;
  }
  ExpectServed();
}

TEST_F(NbdHardening, UnknownOptionIsUnsupportedAndNegotiationGoesOn) {
  RawClient c(sock_);
  ASSERT_TRUE(c.Greeting());
  uint8_t flags[4];
  Put32(flags, kClientFixedNewstyle);
  c.Send(flags, 4);
  c.SendOption(99, "some data the server must skip");
  EXPECT_EQ(c.OptionReply(), kRepErrUnsup);
  c.SendOption(kOptStartTls, "");
  EXPECT_EQ(c.OptionReply(), kRepErrUnsup);
  c.SendOption(kOptSetMetaContext, std::string(8, '\0'));  // before STRUCTURED_REPLY
  EXPECT_EQ(c.OptionReply(), kRepErrInvalid);
  c.SendOption(kOptList, "x");  // LIST with data
  EXPECT_EQ(c.OptionReply(), kRepErrInvalid);
  c.SendOption(kOptInfo, std::string(3, '\0'));  // truncated INFO
  EXPECT_EQ(c.OptionReply(), kRepErrInvalid);
  std::string unknown(4, '\0');
  Put32(reinterpret_cast<uint8_t*>(unknown.data()), 7);
  unknown += "nothere" + std::string(2, '\0');
  c.SendOption(kOptGo, unknown);
  EXPECT_EQ(c.OptionReply(), kRepErrUnknown);
  c.SendOption(kOptAbort, "");
  EXPECT_EQ(c.OptionReply(), kRepAck);
  EXPECT_TRUE(c.Closed());
  ExpectServed();
}

TEST_F(NbdHardening, TruncatedOptionAndSilentClientTimeOut) {
  {
    RawClient c(sock_);
    ASSERT_TRUE(c.Greeting());
    uint8_t flags[4];
    Put32(flags, kClientFixedNewstyle);
    c.Send(flags, 4);
    uint8_t h[16];
    Put64(h, kOptMagic);
    Put32(h + 8, kOptGo);
    Put32(h + 12, 100);
    c.Send(h, 16);
    c.Send("abc", 3);  // and then nothing: the handshake timeout (500 ms) ends it
    auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(c.Closed());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  }
  ExpectServed();
}

TEST_F(NbdHardening, BadRequestsGetTheSpecErrors) {
  RawClient c(sock_);
  ASSERT_EQ(c.Go("disk"), 64u << 20);
  struct Case {
    uint16_t type, flags;
    uint64_t offset;
    uint32_t length;
    uint32_t error;
  } cases[] = {
      {kCmdRead, 0, 64u << 20, 512, kEINVAL},           // read past the end
      {kCmdTrim, 0, (64u << 20) - 512, 1024, kEINVAL},  // trim past the end
      {kCmdRead, kCmdFlagNoHole, 0, 512, kEINVAL},      // flag not valid for READ
      {kCmdRead, 1 << 9, 0, 512, kEINVAL},              // unknown flag
      {42, 0, 0, 0, kEINVAL},                           // unknown command
      {kCmdBlockStatus, 0, 0, 4096, kEINVAL},           // no meta context negotiated
      {kCmdWriteZeroes, 0, (64u << 20) - 512, 1024, kENOSPC},
      {kCmdWriteZeroes, kCmdFlagFastZero | kCmdFlagNoHole, 0, 4096, kENOTSUP},
      {kCmdRead, 0, 0, 2u << 20, kEINVAL},  // over --max-payload
  };
  uint64_t cookie = 100;
  for (const Case& k : cases) {
    c.Request(k.type, k.flags, cookie, k.offset, k.length);
    uint32_t err;
    uint64_t got;
    ASSERT_TRUE(c.SimpleReply(&err, &got)) << k.type;
    EXPECT_EQ(got, cookie);
    EXPECT_EQ(err, k.error) << "command " << k.type << " flags " << k.flags;
    cookie++;
  }
  std::vector<uint8_t> data(1024, 1);  // write past the end: ENOSPC, payload consumed
  c.Request(kCmdWrite, 0, 7, (64u << 20) - 512, 1024);
  c.Send(data.data(), data.size());
  uint32_t err;
  uint64_t got;
  ASSERT_TRUE(c.SimpleReply(&err, &got));
  EXPECT_EQ(err, kENOSPC);
  ExpectServed();
}

TEST_F(NbdHardening, ManyRequestsInFlightAllAnsweredOnce) {
  RawClient c(sock_);
  ASSERT_EQ(c.Go("disk"), 64u << 20);
  std::vector<uint8_t> data(65536, 0x42);
  std::set<uint64_t> cookies;
  for (uint64_t i = 0; i < 200; i++) {  // more than the 64 slots: the server must pause reading
    if (i % 2 == 0) {
      c.Request(kCmdWrite, i % 10 == 0 ? kCmdFlagFua : 0, i, i * 65536, 65536);
      c.Send(data.data(), data.size());
    } else {
      c.Request(kCmdFlush, 0, i, 0, 0);
    }
    cookies.insert(i);
  }
  for (int i = 0; i < 200; i++) {
    uint32_t err;
    uint64_t cookie;
    ASSERT_TRUE(c.SimpleReply(&err, &cookie));
    EXPECT_EQ(err, 0u);
    EXPECT_EQ(cookies.erase(cookie), 1u) << "cookie " << cookie << " answered twice or unknown";
  }
  EXPECT_TRUE(cookies.empty());
}

// 128 small READs in flight at once (the server holds finished replies while many are in
// flight, so that one sendmsg carries several): each is answered once, with its own bytes.
TEST_F(NbdHardening, ManySmallReadsInFlightEachGetsItsOwnBytes) {
  RawClient c(sock_);
  ASSERT_EQ(c.Go("disk"), 64u << 20);
  constexpr uint64_t kReads = 128, kBytes = 4096;
  for (uint64_t i = 0; i < kReads; i++) {  // every block holds its own index
    std::vector<uint8_t> block(kBytes, static_cast<uint8_t>(i));
    c.Request(kCmdWrite, 0, i, i * kBytes * 3, kBytes);
    c.Send(block.data(), block.size());
  }
  for (uint64_t i = 0; i < kReads; i++) {
    uint32_t err;
    uint64_t cookie;
    ASSERT_TRUE(c.SimpleReply(&err, &cookie));
    ASSERT_EQ(err, 0u);
  }
  for (uint64_t i = 0; i < kReads; i++) {
    c.Request(kCmdRead, 0, 1000 + i, i * kBytes * 3, kBytes);
  }
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < kReads; i++) {
    uint32_t err;
    uint64_t cookie;
    ASSERT_TRUE(c.SimpleReply(&err, &cookie));
    ASSERT_EQ(err, 0u);
    std::vector<uint8_t> got(kBytes);
    ASSERT_TRUE(c.Recv(got.data(), got.size()));
    ASSERT_TRUE(cookie >= 1000 && cookie < 1000 + kReads) << cookie;
    EXPECT_TRUE(seen.insert(cookie).second) << "cookie " << cookie << " answered twice";
    EXPECT_EQ(got, std::vector<uint8_t>(kBytes, static_cast<uint8_t>(cookie - 1000)));
  }
  EXPECT_EQ(seen.size(), kReads);
}

TEST_F(NbdHardening, NothingAfterDisc) {
  RawClient c(sock_);
  ASSERT_EQ(c.Go("disk"), 64u << 20);
  c.Request(kCmdDisc, 0, 1, 0, 0);
  c.Request(kCmdRead, 0, 2, 0, 512);  // after DISC: never answered
  EXPECT_TRUE(c.Closed());
  ExpectServed();
}

TEST_F(NbdHardening, ClientVanishingMidPayloadLosesNothingElse) {
  {
    RawClient c(sock_);
    ASSERT_EQ(c.Go("disk"), 64u << 20);
    c.Request(kCmdWrite, 0, 1, 0, 1 << 20);
    std::vector<uint8_t> part(100000, 0xee);
    c.Send(part.data(), part.size());
  }  // closed mid-payload
  ExpectServed();
  RawClient c(sock_);
  ASSERT_EQ(c.Go("disk"), 64u << 20);
  c.Request(kCmdRead, 0, 3, 0, 4096);
  uint32_t err;
  uint64_t cookie;
  ASSERT_TRUE(c.SimpleReply(&err, &cookie));
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(c.Recv(back.data(), back.size()));
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0)) << "a half-received write was applied";
}

TEST_F(NbdHardening, OversizedWritePayloadEndsTheConnection) {
  RawClient c(sock_);
  ASSERT_EQ(c.Go("disk"), 64u << 20);
  c.Request(kCmdWrite, 0, 1, 0, 8u << 20);  // over --max-payload (1 MiB)
  EXPECT_TRUE(c.Closed());
  ExpectServed();
}

TEST_F(NbdHardening, GarbageRequestMagicEndsTheConnection) {
  RawClient c(sock_);
  ASSERT_EQ(c.Go("disk"), 64u << 20);
  c.Send("garbage garbage garbage garbage", 28);
  EXPECT_TRUE(c.Closed());
  ExpectServed();
}

TEST_F(NbdHardening, ThousandsOfConnectionsOpenedAndDropped) {
  ExpectServed();
  int fds_before = ServerFds();
  for (int i = 0; i < 2000; i++) {
    RawClient c(sock_);
    ASSERT_TRUE(c.connected()) << i;
    if (i % 3 == 1) {
      c.Greeting();  // some leave after the greeting, some at once, some mid-transmission
    } else if (i % 3 == 2) {
      c.Go("disk");
      c.Request(kCmdRead, 0, 1, 0, 4096);
    }
  }
  ExpectServed();
  for (int i = 0; i < 50 && ServerFds() > fds_before + 2; i++) {
    usleep(100000);  // connection threads finish and are reaped
  }
  EXPECT_LE(ServerFds(), fds_before + 2) << "file descriptors leak";
}

TEST_F(NbdHardening, ControlSocketRefusesGarbage) {
  std::string control = pool_ + "/control.sock";
  {
    RawClient c(control);
    ASSERT_TRUE(c.connected());
    c.Send("this is not json\n", 17);
    char reply[256] = {};
    ASSERT_GT(recv(c.fd(), reply, sizeof(reply) - 1, 0), 0);
    EXPECT_NE(std::string(reply).find("\"ok\":false"), std::string::npos) << reply;
    EXPECT_NE(std::string(reply).find("not JSON"), std::string::npos) << reply;
  }
  {
    RawClient c(control);
    c.Send("{\"command\": \"format-disk\"}\n", 28);
    char reply[256] = {};
    ASSERT_GT(recv(c.fd(), reply, sizeof(reply) - 1, 0), 0);
    EXPECT_NE(std::string(reply).find("unknown command"), std::string::npos) << reply;
  }
  {
    RawClient c(control);  // a line that never ends, past the 1 MiB bound: dropped
    std::string junk(64 * 1024, 'x');
    for (int i = 0; i < 20 && c.Send(junk.data(), junk.size()); i++) {
    }
    EXPECT_TRUE(c.Closed());
  }
  ExpectServed();
}

// Text that is not printable UTF-8, and JSON of the wrong shapes, get an error reply: the
// server neither aborts nor stores it (before: std::terminate in nlohmann::json::dump).
TEST_F(NbdHardening, ControlRequestsWithBadTextAreRefused) {
  const std::string control = pool_ + "/control.sock";
  auto call = [&](const std::string& line) {
    RawClient c(control);
    EXPECT_TRUE(c.connected());
    c.Send(line.data(), line.size());
    std::string reply;
    char buf[4096];
    for (ssize_t n; (n = recv(c.fd(), buf, sizeof(buf), 0)) > 0;) {
      reply.append(buf, static_cast<size_t>(n));
    }
    return reply;
  };
  std::string r =
      call("{\"command\":\"create-volume\",\"args\":{\"size\":\"1\",\"name\":\"b\xff\"}}\n");
  EXPECT_NE(r.find("not JSON"), std::string::npos) << r;
  r = call("{\"command\":\"create-volume\",\"args\":{\"size\":\"1\",\"name\":\"\\u001b[2J\"}}\n");
  EXPECT_NE(r.find("volume name contains a control character"), std::string::npos) << r;
  r = call("{\"command\":\"create-tags\",\"args\":{\"resources\":[\"vol-1\"],\"tags\":[7]}}\n");
  EXPECT_NE(r.find("\"ok\":false"), std::string::npos) << r;
  r = call("{\"command\":\"describe-volumes\",\"args\":{\"filters\":[{\"Name\":5}]}}\n");
  EXPECT_NE(r.find("\"ok\":false"), std::string::npos) << r;
  int code;
  Cli("create-volume --size 1 --name \"$(printf 'bad\\377\\376')\"", &code);
  EXPECT_EQ(code, 2);
  Cli("create-snapshot --volume-id disk --description \"$(printf 'd\\377')\"", &code);
  EXPECT_EQ(code, 2);
  Cli("create-tags --resources disk --tags \"$(printf 'Key=k,Value=\\377')\"", &code);
  EXPECT_EQ(code, 2);
  Cli("create-snapshot --volume-id disk --description \"$(printf 'd\\033[31m')\"", &code);
  EXPECT_EQ(code, 1);
  std::string volumes = Cli("describe-volumes", &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(volumes.find("bad"), std::string::npos);
  ExpectServed();
}

// A snapshot export is read-only: every mutation gets EPERM, reads work, and the snapshot cannot
// be deleted while the connection lasts.
TEST_F(NbdHardening, SnapshotExportRefusesMutations) {
  int code;
  std::string out = Cli("create-snapshot --volume-id disk", &code);
  ASSERT_EQ(code, 0) << out;
  size_t at = out.find("snap-");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string snap = out.substr(at, 22);
  RawClient c(sock_);
  ASSERT_EQ(c.Go(snap), 64u << 20);
  uint32_t err;
  uint64_t cookie;
  std::vector<uint8_t> data(4096, 0x11);
  c.Request(kCmdWrite, 0, 1, 0, 4096);
  c.Send(data.data(), data.size());
  ASSERT_TRUE(c.SimpleReply(&err, &cookie));
  EXPECT_EQ(err, kEPERM);
  for (uint16_t cmd : {kCmdTrim, kCmdWriteZeroes}) {
    c.Request(cmd, 0, 2, 0, 4096);
    ASSERT_TRUE(c.SimpleReply(&err, &cookie));
    EXPECT_EQ(err, kEPERM) << "command " << cmd;
  }
  c.Request(kCmdRead, 0, 3, 0, 4096);
  ASSERT_TRUE(c.SimpleReply(&err, &cookie));
  EXPECT_EQ(err, 0u);
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(c.Recv(back.data(), back.size()));
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));
  Cli("delete-snapshot --snapshot-id " + snap, &code);
  EXPECT_EQ(code, 1) << "a snapshot with a live export was deleted";
  ExpectServed();  // the volume itself stays writable
}

}  // namespace
}  // namespace strata::nbd
