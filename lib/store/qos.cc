#include "store/qos.h"

#include <algorithm>
#include <cmath>

namespace strata {

namespace {
// How far ahead of its ceiling a volume may run before requests wait: short bursts pass without
// a timer, long runs average to the ceiling.
constexpr double kBurstToleranceS = 0.005;
constexpr double kNsPerS = 1e9;
}  // namespace

void Limiter::Configure(const PerfModel& model, uint64_t now_ns) {
  MutexLock lock(&mu_);
  model_ = model;
  credits_ = model.credit_capacity;
  credits_ns_ = now_ns;
}

void Limiter::SetCreditsForTesting(double credits) {
  MutexLock lock(&mu_);
  credits_ = credits;
}

void Limiter::RefillLocked(uint64_t now_ns) {
  if (model_.credit_capacity > 0 && now_ns > credits_ns_) {
    credits_ = std::min(model_.credit_capacity,
                        credits_ + model_.credit_earn_per_s * (now_ns - credits_ns_) / kNsPerS);
  }
  credits_ns_ = std::max(credits_ns_, now_ns);
}

uint64_t Limiter::Admit(uint64_t now_ns, uint64_t offset, uint64_t length, uint64_t* counted_ops) {
  MutexLock lock(&mu_);
  // EBS counts an I/O once per started unit, and merges sequential I/Os into one.
  const uint64_t unit = model_.io_unit_bytes;
  uint64_t ops;
  if (offset == seq_end_) {
    ops = (run_bytes_ + length + unit - 1) / unit - (run_bytes_ + unit - 1) / unit;
    run_bytes_ += length;
  } else {
    ops = (length + unit - 1) / unit;
    run_bytes_ = length;
  }
  seq_end_ = offset + length;
  *counted_ops = ops;
  if (!model_.limited) {
    return now_ns;
  }
  const double now = now_ns / kNsPerS;
  double start = now;
  // A ceiling: each request starts no earlier than its turn, less the burst tolerance.
  auto gate = [&](double* tat, double cost, double rate) {
    if (rate <= 0 || cost <= 0) {
      return;
    }
    const double turn = std::max(*tat, now);
    start = std::max(start, turn - kBurstToleranceS);
    *tat = turn + cost / rate;
  };
  gate(&ops_tat_s_, static_cast<double>(ops), model_.ops_per_s);
  gate(&bytes_tat_s_, static_cast<double>(length), model_.bytes_per_s);
  if (model_.credit_capacity > 0) {  // credits: when in debt, wait until the baseline repays it
    RefillLocked(now_ns);
    credits_ -= model_.credits_in_bytes ? static_cast<double>(length) : static_cast<double>(ops);
    if (credits_ < 0) {
      start = std::max(start, now + (-credits_) / model_.credit_earn_per_s - kBurstToleranceS);
    }
  }
  return static_cast<uint64_t>(start * kNsPerS);
}

double Limiter::BurstBalancePercent(uint64_t now_ns) {
  MutexLock lock(&mu_);
  if (model_.credit_capacity <= 0) {
    return 100.0;
  }
  RefillLocked(now_ns);
  return std::max(0.0, credits_) * 100.0 / model_.credit_capacity;
}

void VolumeCounters::Started(uint64_t now_ns) {
  if (in_flight_.fetch_add(1, std::memory_order_relaxed) == 0) {
    busy_since_ns_.store(now_ns, std::memory_order_relaxed);
  }
}

void VolumeCounters::Finished(bool write, uint64_t bytes, uint64_t counted_ops, uint64_t submit_ns,
                              uint64_t now_ns) {
  (write ? write_ops_ : read_ops_).fetch_add(1, std::memory_order_relaxed);
  (write ? write_bytes_ : read_bytes_).fetch_add(bytes, std::memory_order_relaxed);
  (write ? write_ns_ : read_ns_).fetch_add(now_ns - submit_ns, std::memory_order_relaxed);
  consumed_ops_.fetch_add(counted_ops, std::memory_order_relaxed);
  const uint64_t minute = now_ns / (60 * 1'000'000'000ull);
  uint64_t seen = minute_.load(std::memory_order_relaxed);
  if (seen != minute && minute_.compare_exchange_strong(seen, minute)) {
    const uint64_t finished = minute_ops_.exchange(0, std::memory_order_relaxed);
    last_minute_ops_.store(seen + 1 == minute ? finished : 0, std::memory_order_relaxed);
  }
  minute_ops_.fetch_add(counted_ops, std::memory_order_relaxed);
  if (in_flight_.fetch_sub(1, std::memory_order_relaxed) == 1) {
    const uint64_t since = busy_since_ns_.load(std::memory_order_relaxed);
    busy_ns_.fetch_add(now_ns > since ? now_ns - since : 0, std::memory_order_relaxed);
  }
}

VolumeMetrics VolumeCounters::Read(uint64_t now_ns, double burst_balance,
                                   uint32_t provisioned_iops) const {
  VolumeMetrics m;
  m.read_ops = read_ops_.load(std::memory_order_relaxed);
  m.write_ops = write_ops_.load(std::memory_order_relaxed);
  m.read_bytes = read_bytes_.load(std::memory_order_relaxed);
  m.write_bytes = write_bytes_.load(std::memory_order_relaxed);
  m.total_read_time_s = read_ns_.load(std::memory_order_relaxed) / kNsPerS;
  m.total_write_time_s = write_ns_.load(std::memory_order_relaxed) / kNsPerS;
  m.queue_length = in_flight_.load(std::memory_order_relaxed);
  m.consumed_read_write_ops = consumed_ops_.load(std::memory_order_relaxed);
  uint64_t busy = busy_ns_.load(std::memory_order_relaxed);
  if (m.queue_length > 0) {
    const uint64_t since = busy_since_ns_.load(std::memory_order_relaxed);
    busy += now_ns > since ? now_ns - since : 0;
  }
  const uint64_t up = now_ns > created_ns_ ? now_ns - created_ns_ : 0;
  m.uptime_s = up / kNsPerS;
  m.idle_time_s = (up > busy ? up - busy : 0) / kNsPerS;
  m.burst_balance_percent = burst_balance;
  if (provisioned_iops > 0) {
    const uint64_t minute = now_ns / (60 * 1'000'000'000ull);
    const uint64_t seen = minute_.load(std::memory_order_relaxed);
    const uint64_t last = seen + 1 == minute ? minute_ops_.load(std::memory_order_relaxed)
                          : seen == minute   ? last_minute_ops_.load(std::memory_order_relaxed)
                                             : 0;
    m.throughput_percentage = std::min(100.0, last * 100.0 / (60.0 * provisioned_iops));
  }
  return m;
}

}  // namespace strata
