#include "metrics_exporter.h"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

namespace strata::nbd {

// Reads every volume's counters at scrape time: nothing is copied on the I/O path.
class VolumeCollector final : public prometheus::Collectable {
 public:
  explicit VolumeCollector(Pool* pool) : pool_(pool) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    struct Def {
      const char* name;
      const char* help;
      MetricType type;
      double (*get)(const VolumeMetrics&);
    };
    static const Def kDefs[] = {
        {"VolumeReadOps", "Read operations completed", MetricType::Counter,
         [](const VolumeMetrics& m) { return static_cast<double>(m.read_ops); }},
        {"VolumeWriteOps", "Write operations completed", MetricType::Counter,
         [](const VolumeMetrics& m) { return static_cast<double>(m.write_ops); }},
        {"VolumeReadBytes", "Bytes read", MetricType::Counter,
         [](const VolumeMetrics& m) { return static_cast<double>(m.read_bytes); }},
        {"VolumeWriteBytes", "Bytes written", MetricType::Counter,
         [](const VolumeMetrics& m) { return static_cast<double>(m.write_bytes); }},
        {"VolumeTotalReadTime", "Seconds spent by all reads (sum of latencies)",
         MetricType::Counter, [](const VolumeMetrics& m) { return m.total_read_time_s; }},
        {"VolumeTotalWriteTime", "Seconds spent by all writes (sum of latencies)",
         MetricType::Counter, [](const VolumeMetrics& m) { return m.total_write_time_s; }},
        {"VolumeIdleTime", "Seconds with no request in flight", MetricType::Counter,
         [](const VolumeMetrics& m) { return m.idle_time_s; }},
        {"VolumeQueueLength", "Requests in flight", MetricType::Gauge,
         [](const VolumeMetrics& m) { return static_cast<double>(m.queue_length); }},
        {"BurstBalance", "Percent of burst credits left (gp2, st1, sc1)", MetricType::Gauge,
         [](const VolumeMetrics& m) { return m.burst_balance_percent; }},
        {"VolumeThroughputPercentage",
         "Percent of provisioned IOPS delivered in the last whole minute", MetricType::Gauge,
         [](const VolumeMetrics& m) { return m.throughput_percentage; }},
        {"VolumeConsumedReadWriteOps", "I/O units consumed (256 KiB SSD, 1 MiB HDD)",
         MetricType::Counter,
         [](const VolumeMetrics& m) { return static_cast<double>(m.consumed_read_write_ops); }},
    };
    std::vector<prometheus::MetricFamily> families;
    for (const Def& d : kDefs) {
      families.push_back({d.name, d.help, d.type, {}});
    }
    for (const VolumeInfo& v : pool_->ListVolumes()) {
      auto m = pool_->DescribeVolumeMetrics(v.volume_id);
      if (!m.ok()) {
        continue;  // deleted between the listing and now
      }
      for (size_t i = 0; i < std::size(kDefs); i++) {
        prometheus::ClientMetric metric;
        metric.label = {{"volume_id", v.volume_id}, {"volume_type", v.volume_type}};
        const double value = kDefs[i].get(*m);
        (kDefs[i].type == MetricType::Counter ? metric.counter.value : metric.gauge.value) = value;
        families[i].metric.push_back(std::move(metric));
      }
    }
    return families;
  }

 private:
  Pool* pool_;
};

Result<std::unique_ptr<MetricsExporter>> MetricsExporter::Start(Pool* pool,
                                                                const std::string& address) {
  if (address.find(':') == std::string::npos) {
    return Status::InvalidArgument("--metrics-listen wants HOST:PORT, got '" + address + "'");
  }
  std::unique_ptr<MetricsExporter> out(new MetricsExporter());
  out->collector_ = std::make_shared<VolumeCollector>(pool);
  try {
    out->exposer_ = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception& e) {
    return Status::IOError("--metrics-listen " + address + ": " + e.what(), 0);
  }
  out->exposer_->RegisterCollectable(out->collector_);
  return out;
}

MetricsExporter::~MetricsExporter() = default;

}  // namespace strata::nbd
