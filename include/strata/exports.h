// Export names for a pool's own volumes and snapshots: what an NBD server (strata-nbd, or an
// embedder's with nbd::PoolExports) and the EC2 layer (Compute::OpenExport, which adds image ids
// and instance devices) open for a name, and list.
#ifndef STRATA_EXPORTS_H_
#define STRATA_EXPORTS_H_

#include <memory>
#include <string>
#include <vector>

#include "strata/export.h"
#include "strata/pool.h"
#include "strata/status.h"
#include "strata/volume.h"

namespace strata {

struct ExportEntry {
  std::string name;
  std::string description;
};

// A volume by id or by a Name only one volume has; "" for the only volume of a pool that has
// exactly one; a snapshot by id (read-only). Errors: NotFound (saying why), or the pool's;
// NotSupported for an encrypted one (only the EC2 layer, which holds the KMS, opens those:
// Compute::OpenExport).
STRATA_EXPORT Result<std::shared_ptr<Volume>> OpenPoolExport(Pool* pool, const std::string& name);
// The id of the volume or snapshot OpenPoolExport would open for `name`.
STRATA_EXPORT Result<std::string> ResolvePoolExport(Pool* pool, const std::string& name);

// Every name OpenPoolExport opens: each volume's id, its Name when unique (and not shaped like a
// snapshot id), each snapshot's id; an encrypted one's description says so.
STRATA_EXPORT std::vector<ExportEntry> ListPoolExports(Pool* pool);

}  // namespace strata

#endif  // STRATA_EXPORTS_H_
