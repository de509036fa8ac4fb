// How the remote layer is put together, for tests: a Remote over any ObjectStore, with its sizes
// and its clock chosen by the caller. Remote::Open is this with an S3Client and the defaults.
#ifndef STRATA_REMOTE_REMOTE_INTERNAL_H_
#define STRATA_REMOTE_REMOTE_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "strata/remote.h"

#include "remote/object_store.h"

namespace strata::remote {

struct RemoteTuning {
  size_t pack_target_bytes = 16 << 20;  // a pack is sealed once it holds this much
  size_t packs_per_upload = 4;          // sealed packs uploaded together
  size_t batch_blocks = 64;             // blocks read, hashed and compressed together
  size_t fetch_batch = 32;              // range GETs in flight on restore
  // A push marker whose heartbeat is older than this belongs to a push that died.
  int64_t pending_stale_ms = 3600 * 1000;
  int64_t lease_ms = 10 * 60 * 1000;  // how long a GC may hold the lease
  // Wall-clock milliseconds since the epoch (markers and leases are compared across hosts).
  // Null: the system clock.
  std::function<int64_t()> now_ms;
};

std::unique_ptr<Remote> OpenRemoteOn(const RemoteSpec& spec, std::unique_ptr<ObjectStore> store,
                                     const RemoteTuning& tuning = RemoteTuning());

}  // namespace strata::remote

#endif  // STRATA_REMOTE_REMOTE_INTERNAL_H_
