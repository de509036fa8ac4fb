// ComputeExports: the EC2 layer as strata-nbd's ExportResolver. Export names are
// Compute::OpenExport's (volumes, snapshots, image ids, INSTANCE-ID/DEVICE); admission is
// Compute::AdmitExport's (security groups, key pairs proved over TLS). Part of the strata-nbd
// program, not of the NBD library: the library knows only the engine and ExportResolver.
#ifndef STRATA_NBD_COMPUTE_EXPORTS_H_
#define STRATA_NBD_COMPUTE_EXPORTS_H_

#include "strata/compute.h"

#include "exports.h"

namespace strata::nbd {

class ComputeExports final : public ExportResolver {
 public:
  explicit ComputeExports(Compute* compute) : compute_(compute) {}  // `compute` outlives this
  Result<std::shared_ptr<Volume>> Open(const std::string& name) override {
    return compute_->OpenExport(name);
  }
  Status Admit(const std::string& name, const Peer& peer) override {
    return compute_->AdmitExport(name, ExportPeer{peer.address, peer.local_port, peer.key_name});
  }
  std::vector<Entry> List() override { return compute_->ListExports(); }

 private:
  Compute* compute_;
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_COMPUTE_EXPORTS_H_
