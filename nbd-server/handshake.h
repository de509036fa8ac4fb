// Fixed-newstyle negotiation (the handshake phase). Blocking I/O on the connection's own thread,
// bounded by the handshake timeout set on the socket.
#ifndef STRATA_NBD_HANDSHAKE_H_
#define STRATA_NBD_HANDSHAKE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "strata/pool.h"

#include "exports.h"
#include "tls.h"

namespace strata::nbd {

// Every bound a client meets (nbd-server/README.md lists them with their flags).
struct ServerLimits {
  uint32_t max_payload_bytes = 32u << 20;
  uint32_t max_connections = 256;  // established (past the handshake)
  // Handshakes in progress at once; beyond, an idle one is dropped or accepting waits.
  uint32_t max_handshakes = 64;
  uint32_t max_handshakes_per_peer = 16;  // per TCP source address
  uint32_t handshake_timeout_ms = 10000;
  uint32_t max_requests_in_flight = 64;  // per connection
  // Request buffers one connection may hold (requests admitted, replies not yet sent); must
  // hold one request of max_payload_bytes.
  uint64_t max_connection_buffer_bytes = 64ull << 20;
  // The same across all connections.
  uint64_t max_buffer_bytes = 1ull << 30;
  // Idle small buffers kept for reuse across all connections.
  uint64_t max_retained_bytes = 256ull << 20;
  // A client that leaves a reply unread, or a WRITE payload unfinished, this long is
  // disconnected.
  uint32_t io_timeout_ms = 30000;
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
  // Set when the client upgraded with STARTTLS: transmission goes through it.
  std::unique_ptr<TlsSession> tls;
};

// Negotiates on `fd`. Returns OK with the export to serve, or an error (the caller closes):
// the client aborted, broke the protocol, or asked for an export that does not exist.
// Export names are `exports`'s (PoolExports: a volume id or unique Name, "" when the pool has
// one volume, or a snapshot id; strata-nbd's EC2 resolver adds image ids and INSTANCE-ID/DEVICE).
// `pool` is the pool the exports are volumes of (BLOCK_STATUS's snapshot contexts ask it).
// `activity_ns` (may be null) is set to CLOCK_MONOTONIC nanoseconds whenever the client sends
// bytes: when too many are in progress the server drops one idle this long (none: it waits).
// `tls` (null: TLS off) offers STARTTLS; with its mode kRequire nothing but STARTTLS and ABORT
// is answered before TLS is up (ERR_TLS_REQD), so no export name, size or list leaks.
// `peer` (may be null: admitted as this host) is who connects: an export `exports` does not
// admit it to (ExportResolver::Admit) is refused with ERR_POLICY and a log line, and left out
// of LIST.
Status Negotiate(int fd, Pool* pool, ExportResolver* exports, const ServerLimits& limits,
                 bool shutting_down, Negotiated* out, std::atomic<uint64_t>* activity_ns = nullptr,
                 const TlsCredentials* tls = nullptr, const ExportResolver::Peer* peer = nullptr);

}  // namespace strata::nbd

#endif  // STRATA_NBD_HANDSHAKE_H_
