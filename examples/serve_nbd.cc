// Serves a pool's volumes (by id or Name) and snapshots (read-only) over NBD on a unix socket,
// with the engine alone: no EC2 layer, no control socket. Stops on SIGINT or SIGTERM once every
// connection has finished the requests it sent. Built in the tree (the NBD library is not
// installed yet): build/nbd-server/serve_nbd_example POOL_DIR SOCKET.
#include <signal.h>
#include <sys/signalfd.h>

#include <cstdio>

#include "strata/pool.h"

#include "exports.h"
#include "server.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: serve_nbd POOL_DIR SOCKET\n");
    return 2;
  }
  sigset_t mask;  // blocked before any thread starts: Server::Run takes them from signal_fd
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  const int signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
  auto pool = strata::Pool::Open(argv[1], strata::PoolOptions{});
  strata::Status s = pool.status();
  if (s.ok()) {
    strata::nbd::PoolExports exports(pool->get());
    strata::nbd::Server server(pool->get(), &exports, strata::nbd::ServerLimits{});
    s = server.ListenUnix(argv[2]);
    s = s.ok() ? server.Run(signal_fd) : s;
  }
  if (!s.ok()) {
    std::fprintf(stderr, "serve_nbd: %s\n", s.ToString().c_str());
  }
  return s.ok() ? 0 : 1;
}
