// libFuzzer target: one client byte stream through the handshake parser and then, if a GO or
// EXPORT_NAME succeeds, through the transmission request parser, against a volume in an
// in-memory pool (SimEnv). The server's replies are drained and discarded. Any crash, sanitizer
// report or hang is a bug: the protocol layer must validate every byte it is sent.
//
//   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DSTRATA_FUZZ=ON
//   build-fuzz/tests/nbd_fuzz -max_total_time=60 tests/fuzz/corpus
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "strata/compute.h"
#include "strata/event_loop.h"
#include "strata/pool.h"

#include "compute_exports.h"
#include "fuzz_pool.h"
#include "handshake.h"
#include "io/sim_env.h"
#include "transmission.h"

namespace {

struct Fixture {
  strata::SimEnv env{1};
  std::unique_ptr<strata::Pool> pool;
  std::unique_ptr<strata::EventLoop> loop;
  std::unique_ptr<strata::Compute> compute;
  std::unique_ptr<strata::nbd::ComputeExports> exports;  // the EC2 layer's names and admission

  Fixture() {
    pool = strata::fuzz::MakePool(&env, "fuzz", /*with_volume=*/true);
    loop = std::move(*strata::EventLoop::Create(&env, 64));
    compute = std::move(*strata::Compute::Open(pool.get(), strata::ComputeOptions{}));
    exports = std::make_unique<strata::nbd::ComputeExports>(compute.get());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return 0;
  }
  // The client side: write the input, then read and discard whatever the server answers.
  std::thread client([fd = fds[1], data, size] {
    for (size_t done = 0; done < size;) {
      ssize_t n = send(fd, data + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) {
        break;
      }
      done += static_cast<size_t>(n);
    }
    shutdown(fd, SHUT_WR);
    char sink[65536];
    while (recv(fd, sink, sizeof(sink), 0) > 0) {
    }
  });
  strata::nbd::ServerLimits limits;
  limits.max_payload_bytes = 1 << 20;
  limits.max_requests_in_flight = 8;
  limits.max_connection_buffer_bytes = 3 << 20;  // small: admission waits are reached
  limits.max_buffer_bytes = 3 << 20;
  static strata::nbd::ByteBudget in_flight(limits.max_buffer_bytes);
  static strata::nbd::ByteBudget retained(1 << 20);
  strata::nbd::Negotiated negotiated;
  std::atomic<bool> shutting_down{false};
  if (strata::nbd::Negotiate(fds[0], fx->pool.get(), fx->exports.get(), limits, false, &negotiated)
          .ok()) {
    strata::nbd::Connection connection(fds[0], std::move(negotiated), fx->loop.get(), limits,
                                       strata::nbd::Budgets{&in_flight, &retained}, &shutting_down);
    connection.Serve();
  }
  shutdown(fds[0], SHUT_RDWR);
  close(fds[0]);
  client.join();
  close(fds[1]);
  return 0;
}
