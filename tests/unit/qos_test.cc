// Volume types: EBS's validation rules, the performance models, the limiter's arithmetic on a
// simulated clock, and enforcement and metrics through a real pool (and one on SimEnv's clock).
#include "store/qos.h"

#include <chrono>

#include <gtest/gtest.h>

#include "strata/pool.h"

#include "io/sim_env.h"
#include "store/pool_impl.h"
#include "store/volume_types.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kSecond = 1'000'000'000ull;

Status Check(const std::string& type, uint64_t gib, uint32_t iops = 0, uint32_t mibps = 0) {
  return ValidatePerf({type, iops, mibps}, gib * kGiB).status();
}

TEST(VolumeTypes, EbsRules) {
  auto gp3 = ValidatePerf({"gp3", 0, 0}, 8 * kGiB);
  ASSERT_TRUE(gp3.ok());
  EXPECT_EQ(gp3->iops, 3000u);
  EXPECT_EQ(gp3->throughput_mibps, 125u);
  EXPECT_TRUE(Check("gp3", 32, 16000, 1000).ok());
  EXPECT_FALSE(Check("gp3", 8, 2000).ok());          // below 3,000
  EXPECT_FALSE(Check("gp3", 10, 16000).ok());        // 500 IOPS/GiB: needs 32 GiB
  EXPECT_FALSE(Check("gp3", 100, 3000, 1000).ok());  // 0.25 MiB/s per IOPS: needs 4,000
  EXPECT_FALSE(Check("gp3", 100, 0, 2001).ok());
  EXPECT_FALSE(Check("gp3", 17 * 1024).ok());  // 16 TiB at most
  EXPECT_FALSE(Check("gp2", 100, 300).ok());   // gp2 IOPS follow the size
  EXPECT_FALSE(Check("gp2", 100, 0, 200).ok());
  EXPECT_FALSE(Check("io2", 100).ok());  // needs --iops
  EXPECT_TRUE(Check("io2", 100, 100000).ok());
  EXPECT_FALSE(Check("io2", 100, 100001).ok());  // 1,000 IOPS/GiB
  EXPECT_FALSE(Check("io1", 100, 5001).ok());    // 50 IOPS/GiB
  EXPECT_FALSE(Check("io1", 2, 100).ok());       // 4 GiB at least
  EXPECT_FALSE(Check("st1", 100).ok());          // 125 GiB at least
  EXPECT_TRUE(Check("sc1", 125).ok());
  EXPECT_FALSE(Check("standard", 2048).ok());
  EXPECT_TRUE(Check("unlimited", 64 * 1024).ok());
  Status unknown = Check("gp4", 8);
  EXPECT_EQ(unknown.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(unknown.message().find("gp2, gp3"), std::string::npos);
  EXPECT_TRUE(ValidatePerf({"gp3", 0, 0}, 64ull << 20).ok());  // below 1 GiB: counts as 1
}

TEST(VolumeTypes, Models) {
  PerfModel gp2 = ModelFor({"gp2", 0, 0}, 100 * kGiB);
  EXPECT_EQ(gp2.baseline_iops, 300u);
  EXPECT_EQ(gp2.ops_per_s, 3000);
  EXPECT_EQ(gp2.credit_capacity, 5.4e6);
  EXPECT_EQ(gp2.credit_earn_per_s, 300);
  PerfModel big = ModelFor({"gp2", 0, 0}, 2000 * kGiB);
  EXPECT_EQ(big.ops_per_s, 6000);
  EXPECT_EQ(big.credit_capacity, 0);  // at or above 3,000 baseline: no burst bucket
  EXPECT_EQ(ModelFor({"gp2", 0, 0}, 10 * kGiB).baseline_iops, 100u);
  PerfModel io1 = ModelFor({"io1", 64000, 0}, 2000 * kGiB);
  EXPECT_EQ(io1.bytes_per_s, 1000 * 1048576.0);
  PerfModel st1 = ModelFor({"st1", 0, 0}, 1024 * kGiB);
  EXPECT_EQ(st1.io_unit_bytes, 1u << 20);
  EXPECT_EQ(st1.bytes_per_s, 250 * 1048576.0);
  EXPECT_EQ(st1.credit_earn_per_s, 40 * 1048576.0);
  EXPECT_FALSE(ModelFor({"unlimited", 0, 0}, kGiB).limited);
}

// Admits `n` requests of `bytes` at random offsets, all at time `now`; returns the last start.
uint64_t AdmitAll(Limiter* l, uint64_t now, int n, uint64_t bytes, uint64_t* ops_total) {
  uint64_t last = 0;
  for (int i = 0; i < n; i++) {
    uint64_t ops;
    last = l->Admit(now, static_cast<uint64_t>(i) * 10 * bytes, bytes, &ops);
    *ops_total += ops;
  }
  return last;
}

TEST(Limiter, IopsCeiling) {
  Limiter l;
  l.Configure(ModelFor({"gp3", 3000, 125}, 100 * kGiB), 0);
  uint64_t ops = 0;
  const uint64_t last = AdmitAll(&l, 10 * kSecond, 9000, 4096, &ops);
  EXPECT_EQ(ops, 9000u);
  // 9,000 I/Os at 3,000 IOPS: the last starts ~3 s after the first.
  EXPECT_NEAR(static_cast<double>(last - 10 * kSecond) / kSecond, 3.0, 0.01);
}

TEST(Limiter, ThroughputCeilingAndIoSize) {
  Limiter l;
  l.Configure(ModelFor({"gp3", 3000, 125}, 100 * kGiB), 0);
  uint64_t ops = 0;
  const uint64_t last = AdmitAll(&l, kSecond, 250, 1 << 20, &ops);
  EXPECT_EQ(ops, 250u * 4);  // a 1 MiB I/O counts as four 256 KiB I/Os on SSD
  EXPECT_NEAR(static_cast<double>(last - kSecond) / kSecond, 2.0, 0.02);  // 250 MiB at 125 MiB/s
}

TEST(Limiter, SequentialIoIsMerged) {
  Limiter l;
  l.Configure(ModelFor({"gp3", 3000, 125}, 100 * kGiB), 0);
  uint64_t total = 0;
  for (uint64_t i = 0; i < 128; i++) {  // 512 KiB written 4 KiB at a time, in order
    uint64_t ops;
    l.Admit(kSecond, i * 4096, 4096, &ops);
    total += ops;
  }
  EXPECT_EQ(total, 2u);
}

TEST(Limiter, Gp2BurstsThenFallsToBaseline) {
  Limiter l;
  l.Configure(ModelFor({"gp2", 0, 0}, 100 * kGiB), 0);
  l.SetCreditsForTesting(3000);  // one second of burst left (earning 300/s meanwhile)
  uint64_t ops = 0;
  // 3,300 I/Os: the first ~3,300 ride the burst in about a second...
  uint64_t t = AdmitAll(&l, 0, 3300, 4096, &ops);
  EXPECT_LT(static_cast<double>(t) / kSecond, 1.2);
  // ...then credits are gone: 600 more take two seconds at the 300 IOPS baseline.
  t = AdmitAll(&l, t, 600, 4096, &ops);
  EXPECT_GT(static_cast<double>(t) / kSecond, 2.9);
  EXPECT_LT(static_cast<double>(t) / kSecond, 3.3);
  EXPECT_LT(l.BurstBalancePercent(t), 1.0);
}

TEST(Limiter, UnlimitedNeverDelays) {
  Limiter l;
  l.Configure(ModelFor({"unlimited", 0, 0}, kGiB), 0);
  uint64_t ops = 0;
  EXPECT_EQ(AdmitAll(&l, 5, 100000, 1 << 20, &ops), 5u);
  EXPECT_EQ(l.BurstBalancePercent(5), 100.0);
}

class EnforcedPool : public ::testing::Test {
 protected:
  void SetUp() override {
    PoolOptions o;
    o.chunk_size_bytes = 4096;
    o.enforce_volume_limits = true;
    ASSERT_TRUE(Pool::Create(dir_.path(), o).ok());
    pool_ = std::move(*Pool::Open(dir_.path(), o));
  }
  // Seconds taken by `n` 4 KiB writes at spread-out offsets.
  double TimeWrites(Volume* v, int n) {
    auto data = test::RandomBytes(4096, 1);
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; i++) {
      EXPECT_TRUE(v->Write(static_cast<uint64_t>(i) * 65536 % v->size_bytes(), data, false).ok());
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  test::TempDir dir_;
  std::unique_ptr<Pool> pool_;
};

TEST_F(EnforcedPool, ProvisionedIopsAreEnforcedAndModifiedLive) {
  VolumeSpec spec{8 * kGiB, "", "io1", ""};
  spec.iops = 100;
  auto info = pool_->CreateVolume(spec);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->iops, 100u);
  auto v = *pool_->OpenVolume(info->volume_id);
  // 60 writes at 100 IOPS: at least ~0.55 s (the first few ride the 5 ms tolerance).
  EXPECT_GT(TimeWrites(v.get(), 60), 0.5);
  auto m = pool_->DescribeVolumeMetrics(info->volume_id);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->write_ops, 60u);
  EXPECT_EQ(m->write_bytes, 60u * 4096);
  EXPECT_EQ(m->consumed_read_write_ops, 60u);
  EXPECT_GT(m->total_write_time_s, 0.5);  // latency includes the wait for the limit
  EXPECT_EQ(m->queue_length, 0u);
  VolumeModification mod;
  mod.volume_type = "unlimited";
  auto after = pool_->ModifyVolume(info->volume_id, mod);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->iops, 0u);
  EXPECT_LT(TimeWrites(v.get(), 200), 0.5);  // the open handle sees the change at once
  mod.volume_type = "io2";
  EXPECT_EQ(pool_->ModifyVolume(info->volume_id, mod).status().code(),
            Status::Code::kInvalidArgument);  // io2 needs --iops
  mod.iops = 1000;
  EXPECT_TRUE(pool_->ModifyVolume(info->volume_id, mod).ok());
  EXPECT_EQ(pool_->DescribeVolume(info->volume_id)->volume_type, "io2");
}

TEST(EnforcedPoolWithoutMetrics, LimitsReachAHandleOpenedUnlimited) {
  test::TempDir dir;
  PoolOptions o;
  o.chunk_size_bytes = 4096;
  o.enforce_volume_limits = true;
  o.collect_metrics = false;
  ASSERT_TRUE(Pool::Create(dir.path(), o).ok());
  auto pool = std::move(*Pool::Open(dir.path(), o));
  auto info = pool->CreateVolume(VolumeSpec{8 * kGiB, "", "unlimited", ""});
  ASSERT_TRUE(info.ok());
  auto v = *pool->OpenVolume(info->volume_id);  // opened while nothing needs the governor
  VolumeModification mod;
  mod.volume_type = "io1";
  mod.iops = 100;
  ASSERT_TRUE(pool->ModifyVolume(info->volume_id, mod).ok());
  auto data = test::RandomBytes(4096, 2);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 60; i++) {
    ASSERT_TRUE(v->Write(static_cast<uint64_t>(i) * 65536, data, false).ok());
  }
  EXPECT_GT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 0.5);
  EXPECT_EQ(pool->DescribeVolumeMetrics(info->volume_id)->write_ops, 0u);  // not counted
}

TEST_F(EnforcedPool, Gp2BurstBalanceIsReported) {
  auto info = pool_->CreateVolume(VolumeSpec{10 * kGiB, "", "gp2", ""});
  ASSERT_TRUE(info.ok());
  auto v = *pool_->OpenVolume(info->volume_id);
  TimeWrites(v.get(), 1000);
  auto m = pool_->DescribeVolumeMetrics(info->volume_id);
  ASSERT_TRUE(m.ok());
  EXPECT_LT(m->burst_balance_percent, 100.0);
  EXPECT_GT(m->burst_balance_percent, 99.9);  // 1,000 of 5.4 million credits
}

// The pool reads time from its Env: on a simulated clock an hour passes in one call, and a drained
// gp2 volume earns its burst credits back as it would idle for an hour.
TEST(EnforcedSimPool, Gp2CreditsRefillOnThePoolsClock) {
  test::TempDir dir;
  SimEnv env(7);
  PoolOptions o;
  o.chunk_size_bytes = 4096;
  o.enforce_volume_limits = true;
  o.env = &env;
  ASSERT_TRUE(Pool::Create(dir.path(), o).ok());
  auto pool = std::move(*Pool::Open(dir.path(), o));
  auto info = pool->CreateVolume(VolumeSpec{10 * kGiB, "", "gp2", ""});  // baseline 100 IOPS
  ASSERT_TRUE(info.ok());
  static_cast<PoolImpl*>(pool.get())
      ->GovernorForTesting(info->volume_id)
      ->limiter.SetCreditsForTesting(0);
  EXPECT_LT(pool->DescribeVolumeMetrics(info->volume_id)->burst_balance_percent, 0.01);
  auto v = *pool->OpenVolume(info->volume_id);
  auto data = test::RandomBytes(4096, 3);
  auto seconds_for_writes = [&](int n) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; i++) {
      EXPECT_TRUE(v->Write(static_cast<uint64_t>(i) * 65536, data, false).ok());
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  EXPECT_GT(seconds_for_writes(30), 0.25);  // drained: the 100 IOPS baseline
  env.AdvanceClock(3600 * kSecond);         // 360,000 credits of 5.4 million earned
  EXPECT_NEAR(pool->DescribeVolumeMetrics(info->volume_id)->burst_balance_percent, 6.67, 0.1);
  EXPECT_LT(seconds_for_writes(300), 0.25);  // bursting again at 3,000 IOPS
}

TEST_F(EnforcedPool, BadTypesAreRefusedAtCreation) {
  VolumeSpec spec{8 * kGiB, "", "io2", ""};
  EXPECT_EQ(pool_->CreateVolume(spec).status().code(), Status::Code::kInvalidArgument);
  spec.volume_type = "st1";
  EXPECT_EQ(pool_->CreateVolume(spec).status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(pool_->ListVolumes().empty());
}

}  // namespace
}  // namespace strata
