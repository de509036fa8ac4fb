// --api-listen: the EC2 Query API and the EBS direct APIs (docs/ec2-api.md) over HTTP, served by
// cpp-httplib on its own bounded set of threads. Every request must carry a SigV4 signature by one
// of the pool's access keys (strata create-access-key); anything else is AuthFailure and changes
// nothing.
#ifndef STRATA_NBD_API_SERVER_H_
#define STRATA_NBD_API_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "strata/compute.h"

namespace httplib {
class Server;
}

namespace strata::control {
class ClientTokens;
class EbsDirect;
}  // namespace strata::control

namespace strata::nbd {

struct ApiLimits {
  size_t threads = 4;               // requests served at once
  size_t queued = 64;               // connections accepted and waiting for a thread
  size_t max_body_bytes = 1 << 20;  // a larger request is refused unread (413)
  time_t io_timeout_s = 10;         // a client slower than this to send or read is dropped
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
  ~ApiServer();  // stops accepting, lets requests in progress finish
  int port() const { return port_; }

 private:
  ApiServer() = default;
  std::unique_ptr<control::ClientTokens> tokens_;  // EC2 idempotency while the server runs
  std::unique_ptr<control::EbsDirect> ebs_;        // the EBS direct APIs' uploads in progress
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_API_SERVER_H_
