// A raw NBD client for tests that must send what no real client would: fixed newstyle by hand,
// option and request frames, replies read back byte by byte.
#ifndef STRATA_TESTS_INTEGRATION_RAW_NBD_CLIENT_H_
#define STRATA_TESTS_INTEGRATION_RAW_NBD_CLIENT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "../../nbd-server/protocol.h"

namespace strata::nbd {

class RawClient {
 public:
  // A unix socket client. `timeout_s` bounds every receive.
  explicit RawClient(const std::string& path, int timeout_s = 5) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{timeout_s, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  // A TCP client of 127.0.0.1:port whose source address is `source` (any 127.x.y.z).
  RawClient(const char* source, uint16_t port, int timeout_s = 5) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    inet_pton(AF_INET, source, &from.sin_addr);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    connected_ = bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from)) == 0 &&
                 connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0;
    timeval tv{timeout_s, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
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

}  // namespace strata::nbd

#endif  // STRATA_TESTS_INTEGRATION_RAW_NBD_CLIENT_H_
