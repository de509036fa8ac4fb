// strata-nbd: serves the volumes of a pool over NBD. Foreground; logs to stderr.
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

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

namespace {

// What the command line asked for, checked (CheckConfig, ResolveTls) before anything opens.
struct Config {
  std::string pool_dir;
  std::string socket_path, listen;
  strata::nbd::ServerLimits limits;
  bool no_volume_limits = false;
  std::string metrics_listen, api_listen;
  std::string kms_root_key_file;
  strata::ExternalKmsRoot kms_external;  // --kms-root-key-from-kms
  strata::KmsPeer kms_peer;              // --kms-peer-url
  std::string tls_mode;
  strata::nbd::TlsOptions tls;
  bool allow_insecure_tcp = false;
  std::string socket_mode = "0600", socket_group;
  // Derived by CheckConfig:
  unsigned long mode = 0600;
  gid_t gid = static_cast<gid_t>(-1);
  int inherited = 0;  // sockets handed over by systemd
};

void AddOptions(CLI::App& app, Config* c) {
  app.add_option("--pool", c->pool_dir, "pool directory (default $STRATA_POOL)");
  app.add_option("--socket", c->socket_path, "serve on this unix socket");
  app.add_option("--listen", c->listen,
                 "serve on HOST:PORT (default 127.0.0.1:10809 unless --socket is given)");
  app.add_flag("--read-only", c->limits.read_only, "refuse every write (EPERM)");
  app.add_flag("--no-volume-limits", c->no_volume_limits,
               "serve every volume at full speed, ignoring its EBS performance model");
  app.add_option("--metrics-listen", c->metrics_listen,
                 "serve Prometheus metrics at http://HOST:PORT/metrics (off by default)");
  app.add_option("--api-listen", c->api_listen,
                 "serve the EC2 Query API at http://HOST:PORT/ (SigV4 with the pool's access "
                 "keys; off by default)");
  app.add_option("--kms-root-key", c->kms_root_key_file,
                 "serve the pool's KMS, its keys wrapped under this root key (a 0600 file of 32 "
                 "bytes or 64 hex digits, outside the pool; default: the strata-kms-root-key "
                 "systemd credential, if given; else no KMS)");
  app.add_option("--kms-root-key-from-kms", c->kms_external.key_id,
                 "keep the KMS's root key wrapped by this key of another KMS (AWS KMS or a "
                 "second Strata) at --kms-endpoint-url, with AWS_ACCESS_KEY_ID/"
                 "AWS_SECRET_ACCESS_KEY; the pool holds only its ciphertext")
      ->excludes("--kms-root-key");
  app.add_option("--kms-endpoint-url", c->kms_external.endpoint_url,
                 "the external KMS: http(s)://HOST[:PORT] (with --kms-root-key-from-kms)");
  app.add_option("--kms-peer-url", c->kms_peer.endpoint_url,
                 "another KMS (AWS KMS, or a second strata-nbd's --api-listen) whose keys may "
                 "decrypt the data keys of encrypted remote snapshots restored here: "
                 "http(s)://HOST[:PORT]");
  app.add_option("--kms-peer-profile", c->kms_peer.profile,
                 "the credentials for --kms-peer-url: this profile of the shared credentials "
                 "file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials); default: "
                 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY");
  app.add_option("--kms-timeout-ms", c->kms_external.call_timeout_ms,
                 "each call to the external or peer KMS, at most (30000)")
      ->check(CLI::Range(1, 300000));
  app.add_option("--max-connections", c->limits.max_connections, "(256)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--max-payload", c->limits.max_payload_bytes, "bytes per request (32 MiB)")
      ->check(CLI::Range(4096, 256 << 20));
  app.add_option("--handshake-timeout-ms", c->limits.handshake_timeout_ms, "(10000)")
      ->check(CLI::Range(100, 3600000));
  app.add_option("--max-requests", c->limits.max_requests_in_flight,
                 "in flight per connection (64)")
      ->check(CLI::Range(1, 1024));
  app.add_option(
         "--max-handshakes", c->limits.max_handshakes,
         "handshakes in progress at once; beyond, an idle one is dropped or accepting waits (64)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--max-handshakes-per-peer", c->limits.max_handshakes_per_peer,
                 "handshakes in progress from one TCP address (16)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--max-connection-buffer-bytes", c->limits.max_connection_buffer_bytes,
                 "request buffers one connection may hold; beyond, its socket is not read (64 MiB)")
      ->check(CLI::Range(uint64_t{1} << 20, uint64_t{1} << 40));
  app.add_option("--max-buffer-bytes", c->limits.max_buffer_bytes,
                 "request buffers all connections may hold (1 GiB)")
      ->check(CLI::Range(uint64_t{1} << 20, uint64_t{1} << 44));
  app.add_option("--io-timeout-ms", c->limits.io_timeout_ms,
                 "a client leaving a reply unread or a WRITE payload unfinished this long is "
                 "disconnected (30000)")
      ->check(CLI::Range(100, 86400000));
  // TLS, with nbdkit's flags (nbd-server/c->tls.h).
  app.add_option("--tls", c->tls_mode,
                 "off|on|require: STARTTLS (default: require when credentials are given, else "
                 "off)")
      ->check(CLI::IsMember({"off", "on", "require"}));
  app.add_option("--tls-certificates", c->tls.certificates_dir,
                 "DIR with ca-cert.pem, server-cert.pem, server-key.pem (as qemu and nbdkit)");
  app.add_flag("--tls-verify-peer", c->tls.verify_peer,
               "clients must present a certificate signed by DIR/ca-cert.pem");
  app.add_option("--tls-psk", c->tls.psk_file, "psktool's IDENTITY:HEXKEY file");
  app.add_flag("--allow-insecure-tcp", c->allow_insecure_tcp,
               "--listen on a non-loopback address without TLS required");
  app.add_option("--socket-mode", c->socket_mode,
                 "permissions of the --socket file, octal (0600: the owner only; whoever can "
                 "connect can read and write the volumes)");
  app.add_option("--socket-group", c->socket_group, "group owning the --socket file (name or gid)");
}

// 0, or the exit code (2: a usage error, printed).
int CheckSocketOptions(Config* c) {
  char* mode_end = nullptr;
  c->mode = std::strtoul(c->socket_mode.c_str(), &mode_end, 8);
  if (c->socket_mode.empty() || *mode_end != '\0' || c->mode > 0777 || (c->mode & 0600) != 0600) {
    std::fprintf(stderr,
                 "strata-nbd: error: --socket-mode wants octal permissions that include 0600, "
                 "not '%s'\n",
                 strata::EscapeText(c->socket_mode).c_str());
    return 2;
  }
  if (!c->socket_group.empty()) {
    const group* g = getgrnam(c->socket_group.c_str());
    char* gid_end = nullptr;
    const unsigned long number = std::strtoul(c->socket_group.c_str(), &gid_end, 10);
    if (g != nullptr) {
      c->gid = g->gr_gid;
    } else if (*gid_end == '\0') {
      c->gid = static_cast<gid_t>(number);
    } else {
      std::fprintf(stderr, "strata-nbd: error: --socket-group: no group '%s'\n",
                   strata::EscapeText(c->socket_group).c_str());
      return 2;
    }
  }
  return 0;
}

// 0, or the exit code (2: a usage error, printed).
int CheckConfig(Config* c) {
  if (c->pool_dir.empty()) {
    std::fprintf(stderr, "strata-nbd: error: --pool is required (or set STRATA_POOL)\n");
    return 2;
  }
  const strata::nbd::ServerLimits& limits = c->limits;
  if (limits.max_connection_buffer_bytes < uint64_t{limits.max_payload_bytes} + (2 << 20) ||
      limits.max_buffer_bytes < limits.max_connection_buffer_bytes) {
    std::fprintf(stderr,
                 "strata-nbd: error: --max-connection-buffer-bytes must exceed --max-payload by "
                 "2 MiB, and --max-buffer-bytes must be at least --max-connection-buffer-bytes\n");
    return 2;
  }
  // Sockets handed over by systemd (or systemd-socket-activate, as qemu-nbd and nbdkit take
  // them): served as they are; no default listener then.
  c->inherited = sd_listen_fds(/*unset_environment=*/1);
  if (c->socket_path.empty() && c->listen.empty() && c->inherited <= 0) {
    c->listen = "127.0.0.1:10809";
  }
  return CheckSocketOptions(c);
}

// Sets c->tls.mode and checks the credential files (before the pool: a usage error). 0, or the
// exit code.
int ResolveTls(Config* c) {
  strata::nbd::TlsOptions& tls = c->tls;
  const bool credentials = !tls.certificates_dir.empty() || !tls.psk_file.empty();
  tls.mode = c->tls_mode == "on"                  ? strata::nbd::TlsMode::kOn
             : c->tls_mode == "require"           ? strata::nbd::TlsMode::kRequire
             : c->tls_mode.empty() && credentials ? strata::nbd::TlsMode::kRequire
                                                  : strata::nbd::TlsMode::kOff;
  if (tls.mode == strata::nbd::TlsMode::kOff) {
    if (credentials || tls.verify_peer) {
      std::fprintf(stderr, "strata-nbd: error: --tls=off with TLS credentials given\n");
      return 2;
    }
    return 0;
  }
  auto checked = strata::nbd::TlsCredentials::Load(tls);
  if (!checked.ok()) {
    std::fprintf(stderr, "strata-nbd: error: %s\n", checked.status().ToString().c_str());
    return 2;
  }
  std::fprintf(stderr, "strata-nbd: TLS %s (%s%s%s)\n",
               tls.mode == strata::nbd::TlsMode::kOn ? "on" : "required",
               tls.certificates_dir.empty() ? "" : "X.509",
               !tls.certificates_dir.empty() && !tls.psk_file.empty() ? " and " : "",
               tls.psk_file.empty() ? "" : "PSK");
  return 0;
}

// The server's TLS credentials with the pool's key pairs as identities too (docs/security.md
// "Key pairs"); null when TLS is off. `key_pairs` outlives the credentials.
strata::Result<std::unique_ptr<strata::nbd::TlsCredentials>> LoadTls(
    const Config& c, strata::Compute* compute, strata::nbd::TlsKeyPairs* key_pairs) {
  if (c.tls.mode == strata::nbd::TlsMode::kOff) {
    return std::unique_ptr<strata::nbd::TlsCredentials>();
  }
  key_pairs->psk = [compute](const std::string& name) { return compute->KeyPairPsk(name); };
  key_pairs->certificate = [compute](const std::string& fp) {
    return compute->KeyPairOfCertificate(fp);
  };
  STRATA_ASSIGN_OR_RETURN(key_pairs->ca_pem, compute->KeyPairCaCertificate());
  return strata::nbd::TlsCredentials::Load(c.tls, key_pairs);
}

void LogExports(const Config& c, const std::vector<strata::nbd::ExportResolver::Entry>& exports) {
  // The first few writable exports, with their URIs; the rest are counted (a pool of 76k
  // volumes logged 142k lines at every start).
  constexpr size_t kExportsLogged = 16;
  size_t writable = 0;
  for (const auto& e : exports) {
    if (e.name.starts_with("snap-") || e.name.starts_with("ami-")) {
      continue;  // listed by NBD LIST; the log names the writable ones
    }
    if (++writable > kExportsLogged) {
      continue;
    }
    const char* scheme = c.tls.mode == strata::nbd::TlsMode::kRequire ? "nbds" : "nbd";
    std::string uri = !c.socket_path.empty()
                          ? std::string(scheme) + "+unix:///" + e.name + "?socket=" + c.socket_path
                      : !c.listen.empty() ? std::string(scheme) + "://" + c.listen + "/" + e.name
                                          : "(on the c.inherited sockets)";
    std::fprintf(stderr, "strata-nbd: export %s (%s): %s\n", strata::EscapeText(e.name).c_str(),
                 strata::EscapeText(e.description).c_str(), strata::EscapeText(uri).c_str());
  }
  if (writable > kExportsLogged) {
    std::fprintf(stderr,
                 "strata-nbd: and %zu more writable exports (NBD LIST and strata "
                 "describe-volumes name them)\n",
                 writable - kExportsLogged);
  }
}

// Listens where asked, serves until SIGTERM/SIGINT. The process's exit code.
int Serve(const Config& c, strata::Pool* pool, strata::Compute* compute,
          const strata::nbd::TlsCredentials* tls_credentials, int signal_fd) {
  strata::nbd::ComputeExports exports(compute);
  strata::nbd::Server server(pool, &exports, c.limits, tls_credentials);
  // The control socket first: once the NBD socket exists, both accept connections.
  strata::Status status =
      server.ListenControl(strata::ControlSocketPath(c.pool_dir),
                           [compute](int fd) { strata::ServeControlConnection(fd, compute); });
  if (status.ok() && !c.socket_path.empty()) {
    status = server.ListenUnix(c.socket_path, static_cast<mode_t>(c.mode), c.gid);
  }
  if (status.ok() && !c.listen.empty()) {
    status = server.ListenTcp(c.listen, c.allow_insecure_tcp);
  }
  for (int i = 0; status.ok() && i < c.inherited; i++) {
    status = server.ListenInherited(SD_LISTEN_FDS_START + i, c.allow_insecure_tcp);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "strata-nbd: error: %s\n", status.ToString().c_str());
    return 1;
  }
  LogExports(c, exports.List());
  sd_notify(0, "READY=1");  // (no-op unless started by systemd with Type=notify)
  status = server.Run(signal_fd);
  sd_notify(0, "STOPPING=1");
  return status.ok() ? 0 : 1;
}

// Side services on their own ports: Prometheus metrics and the EC2 API (each off unless asked).
struct SideServices {
  std::unique_ptr<strata::nbd::MetricsExporter> metrics;
  std::unique_ptr<strata::nbd::ApiServer> api;
};
strata::Result<SideServices> StartSideServices(const Config& c, strata::Pool* pool,
                                               strata::Compute* compute) {
  SideServices out;
  if (!c.metrics_listen.empty()) {
    STRATA_ASSIGN_OR_RETURN(out.metrics,
                            strata::nbd::MetricsExporter::Start(pool, c.metrics_listen));
    std::fprintf(stderr, "strata-nbd: metrics at http://%s/metrics\n", c.metrics_listen.c_str());
  }
  if (!c.api_listen.empty()) {
    STRATA_ASSIGN_OR_RETURN(
        out.api, strata::nbd::ApiServer::Start(compute, c.api_listen, c.tls.certificates_dir,
                                               c.allow_insecure_tcp));
    std::fprintf(stderr, "strata-nbd: EC2 API at %s://%s (port %d)\n",
                 c.tls.certificates_dir.empty() ? "http" : "https", c.api_listen.c_str(),
                 out.api->port());
  }
  return out;
}

int Fail(const strata::Status& s) {
  std::fprintf(stderr, "strata-nbd: error: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

// The EC2 layer, with the pool's KMS when a root key is given (--kms-root-key, or the systemd
// credential). A root key asked for and not usable stops the server: it never runs without.
strata::Result<std::unique_ptr<strata::Compute>> OpenCompute(const Config& c, strata::Pool* pool) {
  strata::ComputeOptions options;
  options.kms_peer = c.kms_peer;
  options.kms_peer.call_timeout_ms = c.kms_external.call_timeout_ms;
  if (!c.kms_external.key_id.empty()) {
    if (c.kms_external.endpoint_url.empty()) {
      return strata::Status::InvalidArgument("--kms-root-key-from-kms needs --kms-endpoint-url");
    }
    STRATA_ASSIGN_OR_RETURN(options.kms_root_key,
                            strata::KmsRootKeyFromExternal(pool, c.kms_external));
    auto compute = strata::Compute::Open(pool, options);
    explicit_bzero(options.kms_root_key.data(), options.kms_root_key.size());
    return compute;
  }
  auto root_key = strata::LoadKmsRootKey(c.kms_root_key_file, c.pool_dir);
  if (root_key.ok()) {
    options.kms_root_key = std::move(*root_key);
  } else if (!c.kms_root_key_file.empty() ||
             root_key.status().code() != strata::Status::Code::kNotFound) {
    return root_key.status();
  }
  auto compute = strata::Compute::Open(pool, options);
  explicit_bzero(options.kms_root_key.data(), options.kms_root_key.size());
  return compute;
}

int main(int argc, char** argv) {
  // Access-key secrets, PSKs and TLS keys live in this process: no core dump carries them, and
  // no other process of the same user may ptrace it (docs/security.md).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  CLI::App app{"strata-nbd: serve every volume of a Strata pool over NBD"};
  Config c;
  if (const char* env = std::getenv("STRATA_POOL"); env != nullptr) {
    c.pool_dir = env;
  }
  AddOptions(app, &c);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (int code = CheckConfig(&c); code != 0) {
    return code;
  }
  if (int code = ResolveTls(&c); code != 0) {
    return code;
  }
  // Signals are taken by the accept loop's signalfd; every thread inherits the mask.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);

  strata::PoolOptions options;
  options.enforce_volume_limits = !c.no_volume_limits;  // the EBS emulation: on unless asked
  auto pool = strata::Pool::Open(c.pool_dir, options);
  if (!pool.ok()) {
    return Fail(pool.status());
  }
  auto compute = OpenCompute(c, pool->get());
  if (!compute.ok()) {
    return Fail(compute.status());
  }
  if (std::string why = (*pool)->Info().read_only; !why.empty()) {
    std::fprintf(stderr, "strata-nbd: the pool is open read-only: %s\n", why.c_str());
  }
  // Restores from remotes resume here: on-demand fetches for the exports, the rest in the
  // background. Destroyed before the pool (declared after it).
  strata::HydrationOptions hydration;
  hydration.log = [](const std::string& line) {
    std::fprintf(stderr, "strata-nbd: %s\n", line.c_str());
  };
  auto hydrations = strata::Hydrations::Start(pool->get(), hydration);
  if (!hydrations.ok()) {
    return Fail(hydrations.status());
  }
  strata::nbd::TlsKeyPairs key_pairs;
  auto tls_credentials = LoadTls(c, compute->get(), &key_pairs);
  if (!tls_credentials.ok()) {
    return Fail(tls_credentials.status());
  }
  auto side = StartSideServices(c, pool->get(), compute->get());
  if (!side.ok()) {
    return Fail(side.status());
  }
  const int code = Serve(c, pool->get(), compute->get(), tls_credentials->get(), signal_fd);
  side->api.reset();  // (requests in progress finish first: they use the pool)
  side->metrics.reset();
  hydrations->reset();  // its fetches write into the pool: it goes first
  compute->reset();
  pool->reset();
  return code;
}
