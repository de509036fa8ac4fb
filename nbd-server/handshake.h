// Fixed-newstyle negotiation (the handshake phase). Blocking I/O on the connection's own thread,
// bounded by the handshake timeout set on the socket.
#ifndef STRATA_NBD_HANDSHAKE_H_
#define STRATA_NBD_HANDSHAKE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "strata/compute.h"
#include "strata/pool.h"

namespace strata::nbd {

struct ServerLimits {
  uint32_t max_payload_bytes = 32u << 20;
  uint32_t max_connections = 256;
  uint32_t handshake_timeout_ms = 10000;
  uint32_t max_requests_in_flight = 64;  // per connection
  bool read_only = false;
};

struct Negotiated {
  Pool* pool = nullptr;
  std::shared_ptr<Volume> volume;
  std::string export_name;
  bool structured_replies = false;
  bool allocation_context = false;  // base:allocation selected
  // qemu:dirty-bitmap:SNAPSHOT selected: block status also reports what changed since SNAPSHOT.
  std::string dirty_since_snapshot;
  uint16_t transmission_flags = 0;
  bool read_only = false;
};

// Negotiates on `fd`. Returns OK with the export to serve, or an error (the caller closes):
// the client aborted, broke the protocol, or asked for an export that does not exist.
// Export names are Compute::OpenExport's: a volume id or unique Name ("" when the pool has one
// volume), a snapshot or image id, or INSTANCE-ID/DEVICE.
Status Negotiate(int fd, Compute* compute, const ServerLimits& limits, bool shutting_down,
                 Negotiated* out);

}  // namespace strata::nbd

#endif  // STRATA_NBD_HANDSHAKE_H_
