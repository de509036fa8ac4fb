// The control socket: POOL/control.sock (mode 0600), served by strata-nbd while it holds the
// pool. One request per connection: a JSON object on one line ({"command": ..., "args": ...});
// one JSON reply line: {"ok": true, "result": ...} or {"ok": false, "error": "NotFound: ..."}.
#ifndef STRATA_CONTROL_CONTROL_SOCKET_H_
#define STRATA_CONTROL_CONTROL_SOCKET_H_

#include <string>

#include <nlohmann/json.hpp>

#include "strata/compute.h"

namespace strata {

constexpr size_t kMaxControlMessageBytes = 1 << 20;

std::string ControlSocketPath(const std::string& pool_dir);

// Serves one request on a connected socket (blocking, bounded by SO_RCVTIMEO set by the caller).
void ServeControlConnection(int fd, Compute* compute);

// Sends `request` to the server holding `pool_dir`. NotFound when no server answers there (the
// caller then opens the pool itself); the reply (which may itself report an error) otherwise.
Result<nlohmann::json> CallControl(const std::string& pool_dir, const nlohmann::json& request);

}  // namespace strata

#endif  // STRATA_CONTROL_CONTROL_SOCKET_H_
