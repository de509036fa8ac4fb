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
#include "testutil/test_util.h"

namespace strata::nbd {
namespace {

class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawClient() { close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const void* p, size_t n) { return send(fd_, p, n, MSG_NOSIGNAL) == ssize_t(n); }
  bool Recv(void* p, size_t n) {
    auto* b = static_cast<uint8_t*>(p);
    while (n > 0) {
      ssize_t r = recv(fd_, b, n, 0);
      if (r <= 0) {
        return false;
      }
      b += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  // True when the server closed the connection within the receive timeout: EOF, or a reset
  // (closing with unread client bytes makes the kernel send one).
  bool Closed() {
    uint8_t b;
    ssize_t r = recv(fd_, &b, 1, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
  }
  bool Greeting() {
    uint8_t g[18];
    return Recv(g, 18) && Get64(g) == kNbdMagic && Get64(g + 8) == kOptMagic;
  }
  void SendOption(uint32_t opt, const std::string& data) {
    uint8_t h[16];
    Put64(h, kOptMagic);
    Put32(h + 8, opt);
    Put32(h + 12, static_cast<uint32_t>(data.size()));
    Send(h, 16);
    Send(data.data(), data.size());
  }
  // Reads one option reply; returns its type (0 on failure) and payload.
  uint32_t OptionReply(std::string* payload = nullptr) {
    uint8_t h[20];
    if (!Recv(h, 20) || Get64(h) != kRepMagic) {
      return 0;
    }
    std::string p(Get32(h + 16), '\0');
    if (!Recv(p.data(), p.size())) {
      return 0;
    }
    if (payload != nullptr) {
      *payload = p;
    }
    return Get32(h + 12);
  }
  // Fixed newstyle + NO_ZEROES, then GO on `name`. Returns the export size (0 on failure).
  uint64_t Go(const std::string& name) {
    uint8_t flags[4];
    Put32(flags, kClientFixedNewstyle | kClientNoZeroes);
    if (!Greeting() || !Send(flags, 4)) {
      return 0;
    }
    std::string data(4, '\0');
    Put32(reinterpret_cast<uint8_t*>(data.data()), static_cast<uint32_t>(name.size()));
    data += name + std::string(2, '\0');
    SendOption(kOptGo, data);
    uint64_t size = 0;
    for (;;) {
      std::string p;
      uint32_t type = OptionReply(&p);
      if (type == kRepInfo && Get16(reinterpret_cast<const uint8_t*>(p.data())) == kInfoExport) {
        size = Get64(reinterpret_cast<const uint8_t*>(p.data()) + 2);
      } else if (type != kRepInfo) {
        return type == kRepAck ? size : 0;
      }
    }
  }
  void Request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length) {
    uint8_t r[28];
    Put32(r, kRequestMagic);
    Put16(r + 4, flags);
    Put16(r + 6, type);
    Put64(r + 8, cookie);
    Put64(r + 16, offset);
    Put32(r + 24, length);
    Send(r, 28);
  }
  // A simple reply: returns false on EOF/garbage; fills error and cookie.
  bool SimpleReply(uint32_t* error, uint64_t* cookie) {
    uint8_t h[16];
    if (!Recv(h, 16) || Get32(h) != kSimpleReplyMagic) {
      return false;
    }
    *error = Get32(h + 4);
    *cookie = Get64(h + 8);
    return true;
  }
  int fd() const { return fd_; }

 private:
  int fd_;
  bool connected_ = false;
};

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
