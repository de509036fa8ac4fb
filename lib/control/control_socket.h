// The control socket: POOL/control.sock (mode 0600), served by strata-nbd while it holds the
// pool. One request per connection: a JSON object on one line ({"command": ..., "args": ...});
// one JSON reply line: {"ok": true, "result": ...} or {"ok": false, "error": "NotFound: ..."}.
#ifndef STRATA_CONTROL_CONTROL_SOCKET_H_
#define STRATA_CONTROL_CONTROL_SOCKET_H_

#include <cerrno>
#include <string>

#include <nlohmann/json.hpp>

#include "strata/compute.h"

namespace strata {

constexpr size_t kMaxControlMessageBytes = 1 << 20;  // a request (from whoever can connect)
// A reply (from the server holding the pool, to the CLI): describe-instances of a large pool.
constexpr size_t kMaxControlReplyBytes = size_t{1} << 30;
// CallControl's error when the request reached the server and its reply did not come back: the
// work may have been done (IOError with this errno).
constexpr int kControlReplyLost = ENOTCONN;

std::string ControlSocketPath(const std::string& pool_dir);

// Serves one request on a connected socket (blocking, bounded by SO_RCVTIMEO set by the caller).
void ServeControlConnection(int fd, Compute* compute);

// Sends `request` to the server holding `pool_dir`. NotFound when no server answers there (the
// caller then opens the pool itself); IOError with kControlReplyLost when the request was sent
// and no whole reply came back (the server may have done the work); the reply (which may itself
// report an error) otherwise.
Result<nlohmann::json> CallControl(const std::string& pool_dir, const nlohmann::json& request);

}  // namespace strata

#endif  // STRATA_CONTROL_CONTROL_SOCKET_H_
