// Server: listeners (unix socket and/or TCP), one thread per connection (each with its own
// io_uring EventLoop), and a graceful stop on SIGTERM/SIGINT.
//
// Connection slots: handshakes and established connections are counted apart, so clients that
// connect and never negotiate cannot shut out others. A handshake is *idle* when the server has
// waited on its client for kIdleGraceMs with nothing unread on its socket. When max_handshakes
// are in progress, the idlest idle one is dropped for a new connection; when none is idle (a
// flood of new or busy connections), accepting waits and new clients queue in the kernel's
// backlog in arrival order. A TCP source address holds at most max_handshakes_per_peer: past
// that its idlest idle handshake is dropped, or else its new connection is refused (only that
// address waits on itself). Past max_connections established, new clients are refused.
// Refusals are counted and logged at a bounded rate.
#ifndef STRATA_NBD_SERVER_H_
#define STRATA_NBD_SERVER_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "strata/pool.h"

#include "budget.h"
#include "handshake.h"
#include "util/mutex.h"

namespace strata::nbd {

// 127.0.0.0/8, ::1, or ::ffff:127.x.y.z.
bool IsLoopback(const sockaddr* addr);

class Server {
 public:
  // `pool`, `exports` and `tls` (may be null: TLS off) outlive the server.
  Server(Pool* pool, ExportResolver* exports, const ServerLimits& limits,
         const TlsCredentials* tls = nullptr)
      : exports_(exports), pool_(pool), limits_(limits), tls_(tls) {}
  ~Server();
  // `mode` (0600: the owner only) and `gid` (-1: the process's) decide who may connect: whoever
  // can reads and writes every volume that needs no key pair.
  Status ListenUnix(const std::string& path, mode_t mode = 0600,
                    gid_t gid = static_cast<gid_t>(-1));
  // "HOST:PORT"; port 0 picks a free port (logged). A non-loopback address needs TLS required
  // unless `allow_insecure`: the default never puts volumes on a network in plaintext.
  Status ListenTcp(const std::string& host_port, bool allow_insecure = false);
  // A listening socket handed over by systemd (LISTEN_FDS): unix or TCP, by its address; a TCP
  // one follows ListenTcp's rule. Errors: InvalidArgument (not a listening stream socket).
  Status ListenInherited(int fd, bool allow_insecure = false);
  // POOL/control.sock (mode 0600): the CLI's requests while this server holds the pool. `serve`
  // answers one connection (its fd, blocking; the server closes it after), on its own thread.
  Status ListenControl(const std::string& path, std::function<void(int fd)> serve);
  // Accepts until SIGTERM or SIGINT, then stops accepting, lets every connection finish the
  // requests it has received, commits, and returns. REQUIRES: SIGTERM/SIGINT blocked in every
  // thread (main does that before anything starts).
  Status Run(int signal_fd);

 private:
  enum class Phase : uint8_t { kHandshake, kEstablished, kDone };
  struct Conn {
    std::thread thread;
    int fd = -1;
    Mutex mu;
    bool done GUARDED_BY(mu) = false;
    std::atomic<Phase> phase{Phase::kHandshake};  // written by the connection's thread
    std::atomic<uint64_t> activity_ns{0};         // since when the server waits on the client
    std::atomic<bool> evicted{false};             // set by the accept thread, under mu
    bool control = false;                         // a control-socket connection
    std::string peer;                             // TCP source address; "" for unix
  };
  enum class Kind { kUnix, kTcp, kControl };
  Status Listen(int fd, Kind kind);
  // Accepts what is pending on `listener` (bounded per turn); false when it stopped because
  // every handshake slot is busy (the caller polls again shortly, without that listener).
  bool AcceptAll(int listener, Kind kind);
  void Admit(int fd, Kind kind, std::string peer);
  // Handshakes in progress: in all, and from `peer` (TCP; "" counts none).
  std::pair<uint32_t, uint32_t> CountHandshakes(const std::string& peer);
  // Drops the idlest idle handshake (from `peer` if not ""); false if none is idle.
  bool EvictIdleHandshake(const std::string& peer);
  void ServeConnection(Conn* conn, bool tcp);
  void ServeNegotiated(Conn* conn, Negotiated negotiated);
  void ServeControl(Conn* conn);
  void Reap(bool all);

  ExportResolver* exports_;
  std::function<void(int fd)> serve_control_;
  Pool* pool_;
  ServerLimits limits_;
  const TlsCredentials* tls_;
  std::vector<int> listeners_;
  std::vector<Kind> listener_kinds_;
  std::string unix_path_;
  std::string control_path_;
  std::list<std::unique_ptr<Conn>> conns_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> served_{0};
  std::atomic<uint32_t> established_{0};
  uint32_t control_open_ = 0;  // accept thread only
  // Counted for the stop line and the log.
  std::atomic<uint64_t> refused_{0};  // established connections full
  std::atomic<uint64_t> evicted_{0};  // handshakes dropped for newer ones
  std::atomic<uint64_t> failed_{0};   // handshakes that ended without an export
  ByteBudget in_flight_budget_{limits_.max_buffer_bytes};
  ByteBudget retained_budget_{limits_.max_retained_bytes};
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_SERVER_H_
