// Server: listeners (unix socket and/or TCP), one thread per connection (each with its own
// io_uring EventLoop), and a graceful stop on SIGTERM/SIGINT.
#ifndef STRATA_NBD_SERVER_H_
#define STRATA_NBD_SERVER_H_

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "strata/pool.h"

#include "handshake.h"

namespace strata::nbd {

class Server {
 public:
  Server(Compute* compute, const ServerLimits& limits)
      : compute_(compute), pool_(compute->pool()), limits_(limits) {}
  ~Server();
  Status ListenUnix(const std::string& path);
  // "HOST:PORT"; port 0 picks a free port (logged).
  Status ListenTcp(const std::string& host_port);
  // POOL/control.sock (mode 0600): the CLI's requests while this server holds the pool.
  Status ListenControl(const std::string& path);
  // Accepts until SIGTERM or SIGINT, then stops accepting, lets every connection finish the
  // requests it has received, commits, and returns. REQUIRES: SIGTERM/SIGINT blocked in every
  // thread (main does that before anything starts).
  Status Run(int signal_fd);

 private:
  struct Conn {
    std::thread thread;
    int fd = -1;
    std::mutex mu;
    bool done = false;
  };
  enum class Kind { kUnix, kTcp, kControl };
  Status Listen(int fd, Kind kind);
  void Accept(int listener, Kind kind);
  void ServeConnection(Conn* conn, bool tcp);
  void ServeControl(Conn* conn);
  void Reap(bool all);

  Compute* compute_;
  Pool* pool_;
  ServerLimits limits_;
  std::vector<int> listeners_;
  std::vector<Kind> listener_kinds_;
  std::string unix_path_;
  std::string control_path_;
  std::list<std::unique_ptr<Conn>> conns_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> served_{0};
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_SERVER_H_
