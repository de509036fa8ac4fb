// libFuzzer target: the TLS paths of strata-nbd (nbd-server/tls.h). The first input byte picks
// what the client does after the plaintext greeting and STARTTLS:
//   even: sends the rest of the input as raw bytes where the TLS handshake should be (garbage,
//         truncated or half-valid records through the session's blocking transport);
//   odd:  completes a real TLS handshake (GnuTLS client, PSK) and sends the rest of the input
//         encrypted: the options and then the requests go through the handshake parser and the
//         event loop's memory transport (ReceiveTls, SendTls) as a TLS client's would.
// The server's replies are drained and discarded. Any crash, sanitizer report or hang is a bug.
//
//   build-fuzz/tests/nbd_tls_fuzz -max_total_time=60 tests/fuzz/corpus/nbd_tls
#include <gnutls/gnutls.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "strata/compute.h"
#include "strata/event_loop.h"
#include "strata/pool.h"

#include "compute_exports.h"
#include "fuzz_pool.h"
#include "handshake.h"
#include "io/sim_env.h"
#include "protocol.h"
#include "tls.h"
#include "transmission.h"

namespace {

constexpr char kKeyHex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct Fixture {
  strata::SimEnv env{1};
  std::unique_ptr<strata::Pool> pool;
  std::unique_ptr<strata::EventLoop> loop;
  std::unique_ptr<strata::Compute> compute;
  std::unique_ptr<strata::nbd::ComputeExports> exports;  // the EC2 layer's names and admission
  std::unique_ptr<strata::nbd::TlsCredentials> tls;
  gnutls_psk_client_credentials_t client_psk = nullptr;

  Fixture() {
    pool = strata::fuzz::MakePool(&env, "fuzz", /*with_volume=*/true);
    loop = std::move(*strata::EventLoop::Create(&env, 64));
    compute = std::move(*strata::Compute::Open(pool.get(), strata::ComputeOptions{}));
    exports = std::make_unique<strata::nbd::ComputeExports>(compute.get());
    const std::string path = "/tmp/strata-nbd-tls-fuzz-" + std::to_string(getpid()) + ".psk";
    std::ofstream(path) << "fuzz:" << kKeyHex << "\n";
    strata::nbd::TlsOptions options;
    options.mode = strata::nbd::TlsMode::kRequire;
    options.psk_file = path;
    tls = std::move(*strata::nbd::TlsCredentials::Load(options));
    unlink(path.c_str());
    gnutls_psk_allocate_client_credentials(&client_psk);
    const gnutls_datum_t key{reinterpret_cast<unsigned char*>(const_cast<char*>(kKeyHex)),
                             sizeof(kKeyHex) - 1};
    gnutls_psk_set_client_credentials(client_psk, "fuzz", &key, GNUTLS_PSK_KEY_HEX);
  }
};

bool SendAll(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t done = 0; done < size;) {
    ssize_t n = send(fd, p + done, size - done, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

bool RecvAll(int fd, void* data, size_t size) {
  auto* p = static_cast<uint8_t*>(data);
  for (size_t done = 0; done < size;) {
    ssize_t n = recv(fd, p + done, size - done, 0);
    if (n <= 0) {
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

// Greeting, flags, STARTTLS and its ACK in plaintext. False if the server did not ACK.
bool StartTls(int fd) {
  uint8_t greeting[18], flags[4], option[16], reply[20];
  strata::nbd::Put32(flags, strata::nbd::kClientFixedNewstyle | strata::nbd::kClientNoZeroes);
  strata::nbd::Put64(option, strata::nbd::kOptMagic);
  strata::nbd::Put32(option + 8, strata::nbd::kOptStartTls);
  strata::nbd::Put32(option + 12, 0);
  return RecvAll(fd, greeting, sizeof(greeting)) && SendAll(fd, flags, sizeof(flags)) &&
         SendAll(fd, option, sizeof(option)) && RecvAll(fd, reply, sizeof(reply)) &&
         strata::nbd::Get32(reply + 12) == strata::nbd::kRepAck;
}

void Client(int fd, const uint8_t* data, size_t size, gnutls_psk_client_credentials_t psk) {
  if (size > 0 && StartTls(fd)) {
    if ((data[0] & 1) == 0) {
      SendAll(fd, data + 1, size - 1);
    } else {
      gnutls_session_t s;
      gnutls_init(&s, GNUTLS_CLIENT);
      gnutls_priority_set_direct(s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", nullptr);
      gnutls_credentials_set(s, GNUTLS_CRD_PSK, psk);
      gnutls_transport_set_int(s, fd);
      if (gnutls_handshake(s) == 0) {
        for (size_t done = 1; done < size;) {
          ssize_t n = gnutls_record_send(s, data + done, size - done);
          if (n <= 0) {
            break;
          }
          done += static_cast<size_t>(n);
        }
      }
      gnutls_deinit(s);
    }
  }
  shutdown(fd, SHUT_WR);
  char sink[65536];
  while (recv(fd, sink, sizeof(sink), 0) > 0) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return 0;
  }
  std::thread client(Client, fds[1], data, size, fx->client_psk);
  strata::nbd::ServerLimits limits;
  limits.max_payload_bytes = 1 << 20;
  limits.max_requests_in_flight = 8;
  limits.max_connection_buffer_bytes = 3 << 20;
  limits.max_buffer_bytes = 3 << 20;
  static strata::nbd::ByteBudget in_flight(limits.max_buffer_bytes);
  static strata::nbd::ByteBudget retained(1 << 20);
  strata::nbd::Negotiated negotiated;
  std::atomic<bool> shutting_down{false};
  if (strata::nbd::Negotiate(fds[0], fx->pool.get(), fx->exports.get(), limits, false, &negotiated,
                             nullptr, fx->tls.get())
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
