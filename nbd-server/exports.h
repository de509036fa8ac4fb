// ExportResolver: what the NBD server asks about exports, and nothing else. The server knows the
// engine (Pool, Volume) and this interface; who decides what a name opens and who may open it is
// the embedder's. PoolExports serves a pool's volumes and snapshots to anyone who can connect;
// strata-nbd plugs in the EC2 layer's resolver (images, instance devices, security groups and key
// pairs: nbd-server/main.cc).
#ifndef STRATA_NBD_EXPORTS_H_
#define STRATA_NBD_EXPORTS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strata/exports.h"
#include "strata/pool.h"
#include "strata/status.h"
#include "strata/volume.h"

namespace strata::nbd {

class ExportResolver {
 public:
  // Who is asking: what the server knows of the connection.
  struct Peer {
    std::string address;      // the TCP source address; "" over the unix socket
    uint16_t local_port = 0;  // the TCP port it connected to
    std::string key_name;     // the key pair it proved over TLS ("" if none)
  };
  using Entry = ExportEntry;
  virtual ~ExportResolver() = default;
  // The volume an export name names. Errors: NotFound (no such export), others as the pool's.
  virtual Result<std::shared_ptr<Volume>> Open(const std::string& name) = 0;
  // Whether `peer` may use the export `name` (an export name or the opened volume's id). Errors:
  // PermissionDenied saying why (the server answers ERR_POLICY and logs it).
  virtual Status Admit(const std::string& name, const Peer& peer) = 0;
  // Every export, for NBD_OPT_LIST (the server lists only those Admit lets the peer use).
  virtual std::vector<Entry> List() = 0;
};

// A pool's volumes and snapshots by the engine's export names (strata/exports.h). Admits everyone:
// whoever can connect (the unix socket's mode, a TLS-required TCP listener) may use every export.
class PoolExports final : public ExportResolver {
 public:
  explicit PoolExports(Pool* pool) : pool_(pool) {}  // `pool` outlives this
  Result<std::shared_ptr<Volume>> Open(const std::string& name) override {
    return OpenPoolExport(pool_, name);
  }
  Status Admit(const std::string&, const Peer&) override { return Status::OK(); }
  std::vector<Entry> List() override { return ListPoolExports(pool_); }

 private:
  Pool* pool_;
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_EXPORTS_H_
