#include "server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "strata/event_loop.h"

#include "transmission.h"
#include "util/cancel.h"
#include "util/check.h"
#include "util/clock.h"
#include "util/text.h"

namespace strata::nbd {

namespace {
constexpr int kMaxAcceptsPerTurn = 256;
// A handshake whose server has waited on its client this long, with nothing unread, is idle.
constexpr uint64_t kIdleGraceMs = 250;
constexpr int kDeferredAcceptMs = 10;  // the wait before accepting again when no slot is free
}  // namespace

Server::~Server() {
  for (int fd : listeners_) {
    close(fd);
  }
  for (const std::string& path : {unix_path_, control_path_}) {
    if (!path.empty()) {
      unlink(path.c_str());
    }
  }
}

namespace {
// A bound, listening unix socket at `path` (a stale socket file is replaced). The socket is
// bound and listening under a temporary name first and then renamed into place, so that a client
// that sees the path can connect: waiting for the file is a sufficient readiness check.
Result<int> UnixListener(const std::string& path, mode_t mode) {
  sockaddr_un addr{};
  const std::string temp = path + ".tmp" + std::to_string(getpid());
  if (temp.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument("socket path too long: " + path);
  }
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    return Status::AlreadyExists(path + " exists and is not a socket");
  }
  unlink(temp.c_str());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, temp.c_str(), temp.size() + 1);
  mode_t old = umask(static_cast<mode_t>(~mode & 0777));
  bool ok = fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  umask(old);
  if (!ok || listen(fd, 128) != 0 || rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    if (fd >= 0) {
      close(fd);
    }
    unlink(temp.c_str());
    return Status::FromErrno("listen on " + path, err);
  }
  return fd;
}
}  // namespace

Status Server::Listen(int fd, Kind kind) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);  // AcceptAll drains it
  listeners_.push_back(fd);
  listener_kinds_.push_back(kind);
  return Status::OK();
}

Status Server::ListenControl(const std::string& path, std::function<void(int fd)> serve) {
  STRATA_CHECK(serve != nullptr);
  STRATA_ASSIGN_OR_RETURN(int fd, UnixListener(path, 0600));
  serve_control_ = std::move(serve);
  control_path_ = path;
  return Listen(fd, Kind::kControl);
}

Status Server::ListenUnix(const std::string& path, mode_t mode, gid_t gid) {
  STRATA_ASSIGN_OR_RETURN(int fd, UnixListener(path, mode));
  unix_path_ = path;
  if (gid != static_cast<gid_t>(-1) && chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0) {
    const int err = errno;
    close(fd);
    return Status::FromErrno("--socket-group: chown " + path, err);
  }
  std::fprintf(stderr, "strata-nbd: listening on unix socket %s (mode %04o)\n", path.c_str(),
               static_cast<unsigned>(mode));
  return Listen(fd, Kind::kUnix);
}

namespace {}  // namespace

bool IsLoopback(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    return (ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr) >> 24) == 127;
  }
  if (addr->sa_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
  }
  return false;
}

Status Server::ListenTcp(const std::string& host_port, bool allow_insecure) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) {
    return Status::InvalidArgument("--listen wants HOST:PORT, not '" + host_port + "'");
  }
  std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return Status::InvalidArgument("--listen " + host_port + ": " + gai_strerror(rc));
  }
  const bool tls_required = tls_ != nullptr && tls_->mode() == TlsMode::kRequire;
  if (!IsLoopback(res->ai_addr) && !tls_required && !allow_insecure) {
    freeaddrinfo(res);
    return Status::InvalidArgument(
        "--listen " + host_port +
        " is not a loopback address: anyone who reaches it could read and write the volumes in "
        "plaintext; give TLS credentials (--tls-certificates or --tls-psk), or "
        "--allow-insecure-tcp on a network you trust");
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    int err = errno;
    freeaddrinfo(res);
    if (fd >= 0) {
      close(fd);
    }
    return Status::FromErrno("listen on " + host_port, err);
  }
  freeaddrinfo(res);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  uint16_t actual =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::fprintf(stderr, "strata-nbd: listening on tcp %s:%u\n", host.c_str(), actual);
  return Listen(fd, Kind::kTcp);
}

Status Server::ListenInherited(int fd, bool allow_insecure) {
  int type = 0, listening = 0;
  socklen_t len = sizeof(type);
  sockaddr_storage addr{};
  socklen_t addr_len = sizeof(addr);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
      getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) {
    return Status::InvalidArgument("inherited fd " + std::to_string(fd) +
                                   " is not a listening stream socket (ListenStream= in the "
                                   ".socket unit; Accept=no)");
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (addr.ss_family == AF_UNIX) {
    std::fprintf(stderr, "strata-nbd: listening on inherited unix socket %s\n",
                 reinterpret_cast<sockaddr_un*>(&addr)->sun_path);
    return Listen(fd, Kind::kUnix);
  }
  const bool tls_required = tls_ != nullptr && tls_->mode() == TlsMode::kRequire;
  if (!IsLoopback(reinterpret_cast<sockaddr*>(&addr)) && !tls_required && !allow_insecure) {
    return Status::InvalidArgument(
        "an inherited TCP socket is not on a loopback address: give TLS credentials, or "
        "--allow-insecure-tcp on a network you trust");
  }
  std::fprintf(stderr, "strata-nbd: listening on inherited tcp socket, port %u\n",
               ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                                : reinterpret_cast<sockaddr_in*>(&addr)->sin_port));
  return Listen(fd, Kind::kTcp);
}

Status Server::Run(int signal_fd) {
  bool deferred = false;  // every handshake slot was busy: accept again after a short wait
  while (true) {
    std::vector<pollfd> fds;
    for (int l : deferred ? std::vector<int>() : listeners_) {
      fds.push_back(pollfd{l, POLLIN, 0});
    }
    fds.push_back(pollfd{signal_fd, POLLIN, 0});
    int rc = poll(fds.data(), fds.size(), deferred ? kDeferredAcceptMs : 1000);
    Reap(false);
    if (rc < 0 && errno != EINTR) {
      return Status::FromErrno("poll", errno);
    }
    if (fds.back().revents != 0) {
      signalfd_siginfo info;
      [[maybe_unused]] ssize_t n = read(signal_fd, &info, sizeof(info));
      std::fprintf(stderr, "strata-nbd: signal %u: finishing in-flight requests\n", info.ssi_signo);
      break;
    }
    const bool polled = !deferred;
    deferred = false;
    for (size_t i = 0; i < listeners_.size(); i++) {
      if ((!polled || fds[i].revents != 0) && !AcceptAll(listeners_[i], listener_kinds_[i])) {
        deferred = true;
      }
    }
  }
  shutting_down_ = true;
  for (int fd : listeners_) {
    close(fd);
  }
  listeners_.clear();
  for (auto& c : conns_) {  // end each connection's reading; its in-flight requests still finish
    MutexLock lock(&c->mu);
    if (!c->done) {
      shutdown(c->fd, SHUT_RD);
    }
  }
  Reap(true);
  Status s = pool_->Flush();
  std::fprintf(stderr,
               "strata-nbd: stopped after %llu connections (refused %llu, handshakes dropped "
               "%llu, failed %llu; %llu log lines suppressed); commit %s\n",
               static_cast<unsigned long long>(served_.load()),
               static_cast<unsigned long long>(refused_.load()),
               static_cast<unsigned long long>(evicted_.load()),
               static_cast<unsigned long long>(failed_.load()),
               static_cast<unsigned long long>(ServerLog().suppressed()), s.ToString().c_str());
  return s;
}

namespace {

constexpr uint32_t kMaxControlConnections = 16;

std::string PeerAddress(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, text, sizeof(text));
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, text,
              sizeof(text));
  }
  return text;
}
}  // namespace

bool Server::AcceptAll(int listener, Kind kind) {
  for (int i = 0; i < kMaxAcceptsPerTurn; i++) {
    if (kind != Kind::kControl && CountHandshakes("").first >= limits_.max_handshakes &&
        !EvictIdleHandshake("")) {
      return false;  // the next client waits in the backlog, in arrival order
    }
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = accept4(listener, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      return true;  // EAGAIN: nothing more pending (or a transient error: poll again)
    }
    Admit(fd, kind, kind == Kind::kTcp ? PeerAddress(addr) : std::string());
  }
  return true;
}

void Server::Admit(int fd, Kind kind, std::string peer) {
  if (kind == Kind::kControl ? control_open_ >= kMaxControlConnections
                             : established_.load() >= limits_.max_connections) {
    refused_++;
    ServerLog().Log(LogKey::kRefused, "refusing a connection%s%s: %u already open",
                    peer.empty() ? "" : " from ", peer.c_str(),
                    kind == Kind::kControl ? kMaxControlConnections : limits_.max_connections);
    close(fd);
    return;
  }
  if (!peer.empty() && CountHandshakes(peer).second >= limits_.max_handshakes_per_peer &&
      !EvictIdleHandshake(peer)) {
    refused_++;
    ServerLog().Log(LogKey::kRefused,
                    "refusing a connection from %s: %u handshakes from it in "
                    "progress",
                    peer.c_str(), limits_.max_handshakes_per_peer);
    close(fd);
    return;
  }
  auto conn = std::make_unique<Conn>();
  conn->fd = fd;
  conn->peer = std::move(peer);
  conn->activity_ns.store(MonotonicNowNs());
  Conn* c = conn.get();
  conns_.push_back(std::move(conn));
  if (kind == Kind::kControl) {
    control_open_++;
    c->control = true;
    c->thread = std::thread([this, c] { ServeControl(c); });
  } else {
    c->thread = std::thread([this, c, kind] { ServeConnection(c, kind == Kind::kTcp); });
  }
}

std::pair<uint32_t, uint32_t> Server::CountHandshakes(const std::string& peer) {
  uint32_t total = 0, from_peer = 0;
  for (auto& c : conns_) {
    if (!c->evicted && !c->control && c->phase.load() == Phase::kHandshake) {
      total++;
      from_peer += !peer.empty() && c->peer == peer ? 1 : 0;
    }
  }
  return {total, from_peer};
}

bool Server::EvictIdleHandshake(const std::string& peer) {
  std::vector<std::pair<uint64_t, Conn*>> candidates;  // (waiting since, connection)
  for (auto& c : conns_) {
    if (!c->evicted && !c->control && c->phase.load() == Phase::kHandshake &&
        (peer.empty() || c->peer == peer)) {
      candidates.emplace_back(c->activity_ns.load(std::memory_order_relaxed), c.get());
    }
  }
  std::sort(candidates.begin(), candidates.end());
  const uint64_t now = MonotonicNowNs();
  for (auto [since, victim] : candidates) {
    if (now - std::min(now, since) < kIdleGraceMs * 1000000ull) {
      return false;  // the rest waited on their clients for less time still
    }
    MutexLock lock(&victim->mu);
    int unread = 0;
    if (victim->done || victim->phase.load() != Phase::kHandshake ||
        ioctl(victim->fd, FIONREAD, &unread) != 0 || unread > 0) {
      continue;  // finished meanwhile, or its client did speak and the server is behind
    }
    shutdown(victim->fd, SHUT_RDWR);  // its blocking recv returns; the thread ends
    victim->evicted = true;
    evicted_++;
    ServerLog().Log(LogKey::kEvicted, "dropping an idle handshake%s%s for a new connection",
                    victim->peer.empty() ? "" : " from ", victim->peer.c_str());
    return true;
  }
  return false;
}

void Server::ServeControl(Conn* conn) {
  timeval timeout{5, 0};
  setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(conn->fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  conn->phase = Phase::kEstablished;
  // Work for a CLI that hung up, or past SIGTERM, is not wanted: remote transfers and listings
  // stop at their next turn (util/cancel.h) so the thread is free and shutdown is prompt.
  CancelScope cancel([this, fd = conn->fd] {
    if (shutting_down_.load(std::memory_order_relaxed)) {
      return true;
    }
    pollfd p{fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  });
  try {
    serve_control_(conn->fd);
  } catch (const std::exception& e) {  // a bug, not a reason to end the server
    ServerLog().Log(LogKey::kConnection, "control request failed: %s", e.what());
  }
  MutexLock lock(&conn->mu);
  close(conn->fd);
  conn->done = true;
  conn->phase = Phase::kDone;
}

void Server::ServeConnection(Conn* conn, bool tcp) {
  const int fd = conn->fd;
  if (tcp) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  timeval timeout{static_cast<time_t>(limits_.handshake_timeout_ms / 1000),
                  static_cast<suseconds_t>((limits_.handshake_timeout_ms % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  try {
    Negotiated negotiated;
    ExportResolver::Peer peer;
    if (tcp) {
      peer.address = conn->peer;
      sockaddr_storage local{};
      socklen_t len = sizeof(local);
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
      peer.local_port =
          ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&local)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    }
    Status s = Negotiate(fd, pool_, exports_, limits_, shutting_down_, &negotiated,
                         &conn->activity_ns, tls_, &peer);
    if (s.ok()) {
      ServeNegotiated(conn, std::move(negotiated));
    } else if (s.code() != Status::Code::kShutdown) {
      failed_++;
      ServerLog().Log(LogKey::kHandshake, "handshake%s%s ended: %s",
                      conn->peer.empty() ? "" : " from ", conn->peer.c_str(),
                      EscapeText(s.ToString()).c_str());
    }
  } catch (const std::exception& e) {  // a bug, not a reason to end the server
    ServerLog().Log(LogKey::kConnection, "connection ended by an internal error: %s", e.what());
  }
  MutexLock lock(&conn->mu);
  close(fd);
  conn->done = true;
  conn->phase = Phase::kDone;
}

void Server::ServeNegotiated(Conn* conn, Negotiated negotiated) {
  if (established_.fetch_add(1) >= limits_.max_connections) {
    established_--;
    refused_++;
    ServerLog().Log(LogKey::kRefused, "refusing a connection to %s: %u already open",
                    EscapeText(negotiated.export_name, 128).c_str(), limits_.max_connections);
    return;
  }
  {
    MutexLock lock(&conn->mu);  // against an eviction deciding meanwhile
    if (conn->evicted) {
      established_--;
      return;
    }
    conn->phase = Phase::kEstablished;
  }
  timeval none{0, 0};
  setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
  setsockopt(conn->fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
  auto loop = EventLoop::Create(nullptr, 256);
  if (loop.ok()) {
    served_++;
    Connection connection(conn->fd, std::move(negotiated), loop->get(), limits_,
                          Budgets{&in_flight_budget_, &retained_budget_}, &shutting_down_);
    connection.Serve();
  } else {
    ServerLog().Log(LogKey::kConnection, "%s", loop.status().ToString().c_str());
  }
  established_--;
}

void Server::Reap(bool all) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    bool done;
    {
      MutexLock lock(&(*it)->mu);
      done = (*it)->done;
    }
    if (done || all) {
      (*it)->thread.join();
      if ((*it)->control) {
        control_open_--;
      }
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace strata::nbd
