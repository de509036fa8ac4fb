// --api-listen: the EC2 Query API and the EBS direct APIs (docs/ec2-api.md) over HTTP, served by
// GNU libmicrohttpd (Debian's libmicrohttpd12). Every request must carry a SigV4 signature by one
// of the pool's access keys (strata create-access-key); anything else is AuthFailure and changes
// nothing.
//
// What a client can make the server hold is bounded before it is read (docs/ec2-api.md "Limits"):
// connections in all and per address, the request line and headers per connection, a body's
// size (decided from Content-Length before a byte of it is read; chunked bodies are refused as
// S3 refuses them, 411), the bodies of all requests being received at once, and the time a
// connection may idle or a request may take to arrive. Connections are polled, not given a
// thread each: an idle or slow client holds no worker.
#ifndef STRATA_NBD_API_SERVER_H_
#define STRATA_NBD_API_SERVER_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "strata/compute.h"

struct MHD_Daemon;

namespace strata::control {
class ClientTokens;
class EbsDirect;
}  // namespace strata::control

namespace strata::nbd {

struct ApiLimits {
  unsigned threads = 4;                        // polling threads; each runs its requests' work
  unsigned max_connections = 512;              // past it new connections are closed at accept
  unsigned max_connections_per_address = 128;  // per client IP address (boto3 pools up to 100)
  size_t max_body_bytes = 1 << 20;             // a larger Content-Length: 413, body unread
  size_t max_bodies_bytes = 64 << 20;          // all bodies in flight: past it 503, body unread
  size_t connection_memory_bytes = 32 << 10;   // request line and headers (past it: 431)
  unsigned idle_timeout_s = 10;                // a connection silent this long is closed
  unsigned request_timeout_s = 30;             // headers to the body's last byte
};

class ApiServer {
 public:
  // Listens on HOST:PORT. Errors: InvalidArgument (address), IOError (cannot bind).
  // With `tls_certificates_dir` (strata-nbd --tls-certificates: server-cert.pem and
  // server-key.pem) it serves HTTPS. A non-loopback address without TLS is refused unless
  // `allow_insecure`.
  static Result<std::unique_ptr<ApiServer>> Start(Compute* compute, const std::string& address,
                                                  const std::string& tls_certificates_dir,
                                                  bool allow_insecure,
                                                  const ApiLimits& limits = {});
  // Stops accepting and closes every connection; requests whose work has begun finish it first.
  ~ApiServer();
  int port() const { return port_; }

  // Everything a request handler needs; one per server, shared by the polling threads.
  struct Context;

 private:
  ApiServer() = default;
  std::unique_ptr<Context> context_;
  MHD_Daemon* daemon_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::string tls_cert_, tls_key_;  // PEM, alive as long as the daemon
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_API_SERVER_H_
