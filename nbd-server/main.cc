// strata-nbd: serves the volumes of a pool over NBD. Foreground; logs to stderr.
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "strata/compute.h"
#include "strata/hydration.h"
#include "strata/pool.h"

#include "api_server.h"
#include "compute_exports.h"
#include "control/control_socket.h"
#include "metrics_exporter.h"
#include "server.h"
#include "util/text.h"

int main(int argc, char** argv) {
  // Access-key secrets, PSKs and TLS keys live in this process: no core dump carries them, and
  // no other process of the same user may ptrace it (docs/security.md).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  CLI::App app{"strata-nbd: serve every volume of a Strata pool over NBD"};
  std::string pool_dir;
  if (const char* env = std::getenv("STRATA_POOL"); env != nullptr) {
    pool_dir = env;
  }
  std::string socket_path, listen;
  strata::nbd::ServerLimits limits;
  app.add_option("--pool", pool_dir, "pool directory (default $STRATA_POOL)");
  app.add_option("--socket", socket_path, "serve on this unix socket");
  app.add_option("--listen", listen,
                 "serve on HOST:PORT (default 127.0.0.1:10809 unless --socket is given)");
  app.add_flag("--read-only", limits.read_only, "refuse every write (EPERM)");
  bool no_volume_limits = false;
  std::string metrics_listen;
  app.add_flag("--no-volume-limits", no_volume_limits,
               "serve every volume at full speed, ignoring its EBS performance model");
  app.add_option("--metrics-listen", metrics_listen,
                 "serve Prometheus metrics at http://HOST:PORT/metrics (off by default)");
  std::string api_listen;
  app.add_option("--api-listen", api_listen,
                 "serve the EC2 Query API at http://HOST:PORT/ (SigV4 with the pool's access "
                 "keys; off by default)");
  app.add_option("--max-connections", limits.max_connections, "(256)")->check(CLI::Range(1, 65536));
  app.add_option("--max-payload", limits.max_payload_bytes, "bytes per request (32 MiB)")
      ->check(CLI::Range(4096, 256 << 20));
  app.add_option("--handshake-timeout-ms", limits.handshake_timeout_ms, "(10000)")
      ->check(CLI::Range(100, 3600000));
  app.add_option("--max-requests", limits.max_requests_in_flight, "in flight per connection (64)")
      ->check(CLI::Range(1, 1024));
  app.add_option(
         "--max-handshakes", limits.max_handshakes,
         "handshakes in progress at once; beyond, an idle one is dropped or accepting waits (64)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--max-handshakes-per-peer", limits.max_handshakes_per_peer,
                 "handshakes in progress from one TCP address (16)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--max-connection-buffer-bytes", limits.max_connection_buffer_bytes,
                 "request buffers one connection may hold; beyond, its socket is not read (64 MiB)")
      ->check(CLI::Range(uint64_t{1} << 20, uint64_t{1} << 40));
  app.add_option("--max-buffer-bytes", limits.max_buffer_bytes,
                 "request buffers all connections may hold (1 GiB)")
      ->check(CLI::Range(uint64_t{1} << 20, uint64_t{1} << 44));
  app.add_option("--io-timeout-ms", limits.io_timeout_ms,
                 "a client leaving a reply unread or a WRITE payload unfinished this long is "
                 "disconnected (30000)")
      ->check(CLI::Range(100, 86400000));
  // TLS, with nbdkit's flags (nbd-server/tls.h).
  std::string tls_mode;
  strata::nbd::TlsOptions tls;
  app.add_option("--tls", tls_mode,
                 "off|on|require: STARTTLS (default: require when credentials are given, else "
                 "off)")
      ->check(CLI::IsMember({"off", "on", "require"}));
  app.add_option("--tls-certificates", tls.certificates_dir,
                 "DIR with ca-cert.pem, server-cert.pem, server-key.pem (as qemu and nbdkit)");
  app.add_flag("--tls-verify-peer", tls.verify_peer,
               "clients must present a certificate signed by DIR/ca-cert.pem");
  app.add_option("--tls-psk", tls.psk_file, "psktool's IDENTITY:HEXKEY file");
  bool allow_insecure_tcp = false;
  app.add_flag("--allow-insecure-tcp", allow_insecure_tcp,
               "--listen on a non-loopback address without TLS required");
  std::string socket_mode = "0600", socket_group;
  app.add_option("--socket-mode", socket_mode,
                 "permissions of the --socket file, octal (0600: the owner only; whoever can "
                 "connect can read and write the volumes)");
  app.add_option("--socket-group", socket_group, "group owning the --socket file (name or gid)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (pool_dir.empty()) {
    std::fprintf(stderr, "strata-nbd: error: --pool is required (or set STRATA_POOL)\n");
    return 2;
  }
  if (limits.max_connection_buffer_bytes < uint64_t{limits.max_payload_bytes} + (2 << 20) ||
      limits.max_buffer_bytes < limits.max_connection_buffer_bytes) {
    std::fprintf(stderr,
                 "strata-nbd: error: --max-connection-buffer-bytes must exceed --max-payload by "
                 "2 MiB, and --max-buffer-bytes must be at least --max-connection-buffer-bytes\n");
    return 2;
  }
  // Sockets handed over by systemd (or systemd-socket-activate, as qemu-nbd and nbdkit take
  // them): served as they are; no default listener then.
  const int inherited = sd_listen_fds(/*unset_environment=*/1);
  if (socket_path.empty() && listen.empty() && inherited <= 0) {
    listen = "127.0.0.1:10809";
  }
  char* mode_end = nullptr;
  const unsigned long mode = std::strtoul(socket_mode.c_str(), &mode_end, 8);
  if (socket_mode.empty() || *mode_end != '\0' || mode > 0777 || (mode & 0600) != 0600) {
    std::fprintf(stderr,
                 "strata-nbd: error: --socket-mode wants octal permissions that include 0600, "
                 "not '%s'\n",
                 strata::EscapeText(socket_mode).c_str());
    return 2;
  }
  gid_t gid = static_cast<gid_t>(-1);
  if (!socket_group.empty()) {
    const group* g = getgrnam(socket_group.c_str());
    char* gid_end = nullptr;
    const unsigned long number = std::strtoul(socket_group.c_str(), &gid_end, 10);
    if (g != nullptr) {
      gid = g->gr_gid;
    } else if (*gid_end == '\0') {
      gid = static_cast<gid_t>(number);
    } else {
      std::fprintf(stderr, "strata-nbd: error: --socket-group: no group '%s'\n",
                   strata::EscapeText(socket_group).c_str());
      return 2;
    }
  }
  const bool credentials = !tls.certificates_dir.empty() || !tls.psk_file.empty();
  tls.mode = tls_mode == "on"                  ? strata::nbd::TlsMode::kOn
             : tls_mode == "require"           ? strata::nbd::TlsMode::kRequire
             : tls_mode.empty() && credentials ? strata::nbd::TlsMode::kRequire
                                               : strata::nbd::TlsMode::kOff;
  std::unique_ptr<strata::nbd::TlsCredentials> tls_credentials;
  strata::nbd::TlsKeyPairs key_pairs;
  if (tls.mode != strata::nbd::TlsMode::kOff) {
    auto checked = strata::nbd::TlsCredentials::Load(tls);  // (before the pool: a usage error)
    if (!checked.ok()) {
      std::fprintf(stderr, "strata-nbd: error: %s\n", checked.status().ToString().c_str());
      return 2;
    }
    std::fprintf(stderr, "strata-nbd: TLS %s (%s%s%s)\n",
                 tls.mode == strata::nbd::TlsMode::kOn ? "on" : "required",
                 tls.certificates_dir.empty() ? "" : "X.509",
                 !tls.certificates_dir.empty() && !tls.psk_file.empty() ? " and " : "",
                 tls.psk_file.empty() ? "" : "PSK");
  } else if (credentials || tls.verify_peer) {
    std::fprintf(stderr, "strata-nbd: error: --tls=off with TLS credentials given\n");
    return 2;
  }

  // Signals are taken by the accept loop's signalfd; every thread inherits the mask.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);

  strata::PoolOptions options;
  options.enforce_volume_limits = !no_volume_limits;  // the EBS emulation: on unless asked
  auto pool = strata::Pool::Open(pool_dir, options);
  if (!pool.ok()) {
    std::fprintf(stderr, "strata-nbd: error: %s\n", pool.status().ToString().c_str());
    return 1;
  }
  auto compute = strata::Compute::Open(pool->get(), strata::ComputeOptions{});
  if (!compute.ok()) {
    std::fprintf(stderr, "strata-nbd: error: %s\n", compute.status().ToString().c_str());
    return 1;
  }
  // Restores from remotes resume here: on-demand fetches for the exports, the rest in the
  // background. Destroyed before the pool (declared after it).
  strata::HydrationOptions hydration;
  hydration.log = [](const std::string& line) {
    std::fprintf(stderr, "strata-nbd: %s\n", line.c_str());
  };
  auto hydrations = strata::Hydrations::Start(pool->get(), hydration);
  if (!hydrations.ok()) {
    std::fprintf(stderr, "strata-nbd: error: %s\n", hydrations.status().ToString().c_str());
    return 1;
  }
  if (tls.mode != strata::nbd::TlsMode::kOff) {
    // The pool's key pairs are TLS identities too (docs/security.md "Key pairs").
    strata::Compute* c = compute->get();
    key_pairs.psk = [c](const std::string& name) { return c->KeyPairPsk(name); };
    key_pairs.certificate = [c](const std::string& fp) { return c->KeyPairOfCertificate(fp); };
    auto ca = c->KeyPairCaCertificate();
    if (ca.ok()) {
      key_pairs.ca_pem = *ca;
    }
    auto loaded = ca.ok()
                      ? strata::nbd::TlsCredentials::Load(tls, &key_pairs)
                      : strata::Result<std::unique_ptr<strata::nbd::TlsCredentials>>(ca.status());
    if (!loaded.ok()) {
      std::fprintf(stderr, "strata-nbd: error: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    tls_credentials = std::move(*loaded);
  }
  std::unique_ptr<strata::nbd::MetricsExporter> metrics;
  if (!metrics_listen.empty()) {
    auto started = strata::nbd::MetricsExporter::Start(pool->get(), metrics_listen);
    if (!started.ok()) {
      std::fprintf(stderr, "strata-nbd: error: %s\n", started.status().ToString().c_str());
      return 1;
    }
    metrics = std::move(*started);
    std::fprintf(stderr, "strata-nbd: metrics at http://%s/metrics\n", metrics_listen.c_str());
  }
  std::unique_ptr<strata::nbd::ApiServer> api;
  if (!api_listen.empty()) {
    auto started = strata::nbd::ApiServer::Start(compute->get(), api_listen, tls.certificates_dir,
                                                 allow_insecure_tcp);
    if (!started.ok()) {
      std::fprintf(stderr, "strata-nbd: error: %s\n", started.status().ToString().c_str());
      return 1;
    }
    api = std::move(*started);
    std::fprintf(stderr, "strata-nbd: EC2 API at %s://%s (port %d)\n",
                 tls.certificates_dir.empty() ? "http" : "https", api_listen.c_str(), api->port());
  }
  strata::Status status;
  {
    strata::nbd::ComputeExports exports(compute->get());
    strata::nbd::Server server(pool->get(), &exports, limits, tls_credentials.get());
    // The control socket first: once the NBD socket exists, both accept connections.
    strata::Compute* c = compute->get();
    status = server.ListenControl(strata::ControlSocketPath(pool_dir),
                                  [c](int fd) { strata::ServeControlConnection(fd, c); });
    if (status.ok() && !socket_path.empty()) {
      status = server.ListenUnix(socket_path, static_cast<mode_t>(mode), gid);
    }
    if (status.ok() && !listen.empty()) {
      status = server.ListenTcp(listen, allow_insecure_tcp);
    }
    for (int i = 0; status.ok() && i < inherited; i++) {
      status = server.ListenInherited(SD_LISTEN_FDS_START + i, allow_insecure_tcp);
    }
    if (!status.ok()) {
      std::fprintf(stderr, "strata-nbd: error: %s\n", status.ToString().c_str());
      return 1;
    }
    // The first few writable exports, with their URIs; the rest are counted (a pool of 76k
    // volumes logged 142k lines at every start).
    constexpr size_t kExportsLogged = 16;
    size_t writable = 0;
    for (const auto& e : exports.List()) {
      if (e.name.starts_with("snap-") || e.name.starts_with("ami-")) {
        continue;  // listed by NBD LIST; the log names the writable ones
      }
      if (++writable > kExportsLogged) {
        continue;
      }
      const char* scheme = tls.mode == strata::nbd::TlsMode::kRequire ? "nbds" : "nbd";
      std::string uri = !socket_path.empty()
                            ? std::string(scheme) + "+unix:///" + e.name + "?socket=" + socket_path
                        : !listen.empty() ? std::string(scheme) + "://" + listen + "/" + e.name
                                          : "(on the inherited sockets)";
      std::fprintf(stderr, "strata-nbd: export %s (%s): %s\n", strata::EscapeText(e.name).c_str(),
                   strata::EscapeText(e.description).c_str(), strata::EscapeText(uri).c_str());
    }
    if (writable > kExportsLogged) {
      std::fprintf(stderr,
                   "strata-nbd: and %zu more writable exports (NBD LIST and strata "
                   "describe-volumes name them)\n",
                   writable - kExportsLogged);
    }
    sd_notify(0, "READY=1");  // (no-op unless started by systemd with Type=notify)
    status = server.Run(signal_fd);
    sd_notify(0, "STOPPING=1");
  }
  api.reset();  // (requests in progress finish first: they use the pool)
  metrics.reset();
  hydrations->reset();  // its fetches write into the pool: it goes first
  compute->reset();
  pool->reset();
  return status.ok() ? 0 : 1;
}
