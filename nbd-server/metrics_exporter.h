// --metrics-listen: each volume's CloudWatch AWS/EBS metrics in Prometheus text format at
// /metrics, served by prometheus-cpp's exposer (civetweb), labelled by volume id and type.
#ifndef STRATA_NBD_METRICS_EXPORTER_H_
#define STRATA_NBD_METRICS_EXPORTER_H_

#include <memory>
#include <string>

#include "strata/pool.h"

namespace prometheus {
class Exposer;
}

namespace strata::nbd {

class MetricsExporter {
 public:
  // Listens on HOST:PORT. Errors: InvalidArgument (address), IOError (cannot bind).
  static Result<std::unique_ptr<MetricsExporter>> Start(Pool* pool, const std::string& address);
  ~MetricsExporter();

 private:
  MetricsExporter() = default;
  std::shared_ptr<class VolumeCollector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_METRICS_EXPORTER_H_
