// Seeded crash simulator for the remote (docs/remote-format.md): two hosts, each with its own
// pool, push, delete, collect and restore snapshots in one shared bucket (SimObjectStore) while
// processes die at random mutations (the request in flight takes effect or not), requests fail
// with 503, and one host acts in the middle of the other's push (concurrent pushes of
// overlapping data, a delete or a GC meanwhile). A reference model holds every snapshot's bytes.
//
// Checked after every step: the remote lists every snapshot it surely holds and nothing it never
// completed; every listed snapshot restores byte-identical (every few steps and at the end); a
// failed restore leaves no visible volume. At the end every snapshot is deleted, the markers of
// dead pushes age out, and one GC must leave the bucket empty: nothing leaks, whatever died where.
//
// STRATA_REMOTE_SIM_SEEDS=N runs N seeds (default 200, about 25 s); STRATA_REMOTE_SIM_SEED=S runs
// one seed.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <span>

#include <gtest/gtest.h>

#include "strata/pool.h"
#include "strata/remote.h"

#include "remote/remote_internal.h"
#include "sim/sim_object_store.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint64_t kBlock = 512 << 10;  // the remote's block
constexpr uint64_t kVolumeBytes = 12 * kBlock;
constexpr int kPatterns = 16;  // block contents shared by both hosts: dedup across pools

using Bytes = std::vector<std::byte>;

// What the seeds exercised, printed at the end: a simulator that never crashes anything proves
// nothing.
struct Tally {
  uint64_t deaths = 0, pushes = 0, reruns = 0, meanwhile = 0, deletes = 0, collections = 0,
           restores = 0, failed_restores = 0, slow_collections = 0, outlived_leases = 0,
           pieces_borrowed = 0;
} tally;

// Block content `p` (1..kPatterns); odd ones compress, even ones do not.
Bytes Pattern(int p) {
  Bytes b = test::RandomBytes(kBlock, 1000 + p);
  if (p % 2 == 1) {
    for (size_t i = 64; i < b.size(); i++) {
      b[i] = b[i % 64];
    }
  }
  return b;
}

struct Host {
  test::TempDir dir;
  std::unique_ptr<Pool> pool;
  std::vector<std::string> volumes;
  std::map<std::string, Bytes> images;  // volume id -> what it holds now
  std::vector<std::string> snapshots;   // local snapshots, oldest first
};

class RemoteSimulation {
 public:
  explicit RemoteSimulation(uint64_t seed) : seed_(seed), rng_(seed) {
    tuning_.pack_target_bytes = 1 << 20;
    tuning_.packs_per_upload = 2;
    tuning_.batch_blocks = 4;
    tuning_.fetch_batch = 3;
    tuning_.pending_stale_ms = 3'600'000;
    tuning_.lease_ms = 600'000;
    tuning_.env = &bucket_.clock;
    for (int h = 0; h < 2; h++) {
      PoolOptions options;
      options.commit_interval_ms = 0;
      EXPECT_TRUE(Pool::Create(hosts_[h].dir.path(), options).ok());
      auto pool = Pool::Open(hosts_[h].dir.path(), options);
      EXPECT_TRUE(pool.ok()) << pool.status().ToString();
      hosts_[h].pool = std::move(*pool);
      for (int v = 0; v < 2; v++) {
        VolumeSpec spec;
        spec.size_bytes = kVolumeBytes;
        spec.volume_type = "unlimited";
        auto info = hosts_[h].pool->CreateVolume(spec);
        EXPECT_TRUE(info.ok());
        hosts_[h].volumes.push_back(info->volume_id);
        hosts_[h].images[info->volume_id] = Bytes(kVolumeBytes);
      }
    }
  }

  void Run(int steps) {
    for (step_ = 0; step_ < steps && !::testing::Test::HasFatalFailure(); step_++) {
      Step();
      CheckListing();
      if (step_ % 8 == 7) {
        CheckRestores();
      }
    }
    CheckRestores();
    DrainAndCheckEmpty();
  }

 private:
  std::string Where() const {
    return "seed " + std::to_string(seed_) + " step " + std::to_string(step_) + ": ";
  }

  // A process of host `h`: a fresh Remote over its own connection to the bucket.
  std::unique_ptr<Remote> Process(test::SimObjectStore** store_out, bool faults) {
    auto store = std::make_unique<test::SimObjectStore>(&bucket_, rng_());
    if (faults) {
      if (rng_() % 2 == 0) {
        store->die_at = bucket_.mutations + 1 + rng_() % 10;
      }
      store->flaky_percent = rng_() % 3 == 0 ? 5 : 0;
    }
    *store_out = store.get();
    RemoteSpec spec;
    spec.name = "sim";
    spec.url = "s3://sim";
    // A quarter of the processes write whole blocks, as format version 1 did: trees mix both
    // kinds, and a push must never take one kind's name for the other's.
    remote::RemoteTuning tuning = tuning_;
    tuning.pieced_blocks = rng_() % 4 != 0;
    // Half of them cut packs of 128 KiB: a push of a few blocks then makes several packs and
    // upload groups, and a death can fall between one group's marker and the indexes of the
    // packs before it.
    if (rng_() % 2 == 0) {
      tuning.pack_target_bytes = 128 << 10;
    }
    // Half of them borrow even a parent's piece that compresses to a few bytes: the patterns
    // that repeat make such pieces.
    if (rng_() % 2 == 0) {
      tuning.min_borrow_bytes = 1;
    }
    return remote::OpenRemoteOn(spec, std::move(store), tuning);
  }

  void Step() {
    const uint32_t dice = rng_() % 100;
    const int h = static_cast<int>(rng_() % 2);
    if (dice < 30) {
      Write(h);
    } else if (dice < 45) {
      Snapshot(h);
    } else if (dice < 70) {
      Push(h, /*faults=*/true);
    } else if (dice < 78) {
      DeleteRemote(/*faults=*/true);
    } else if (dice < 85) {
      Collect(/*faults=*/true);
    } else if (dice < 95) {
      RestoreOne(h, /*faults=*/true);
    } else {
      bucket_.clock.AdvanceClock(static_cast<uint64_t>(tuning_.pending_stale_ms + 1) *
                                 1'000'000);  // dead pushes' markers and leases age out
    }
  }

  // `small`: 4 KiB of unique bytes.
  void Write(int h, std::string vol = "", bool small = false) {
    Host& host = hosts_[h];
    if (vol.empty()) {
      vol = host.volumes[rng_() % host.volumes.size()];
    }
    auto volume = host.pool->OpenVolume(vol);
    ASSERT_TRUE(volume.ok());
    Bytes& image = host.images[vol];
    const uint64_t block = rng_() % (kVolumeBytes / kBlock);
    const uint32_t kind = small ? 6 : rng_() % 10;
    if (kind < 6) {  // a whole block of a shared pattern
      Bytes b = Pattern(1 + static_cast<int>(rng_() % kPatterns));
      ASSERT_TRUE((*volume)->Write(block * kBlock, b, false).ok());
      std::copy(b.begin(), b.end(), image.begin() + static_cast<ptrdiff_t>(block * kBlock));
    } else if (kind < 9) {  // 4 KiB of unique bytes somewhere (small: in a block with data)
      uint64_t at = (rng_() % (kVolumeBytes / 4096)) * 4096;
      std::vector<uint64_t> with_data;
      for (uint64_t b = 0; small && b < kVolumeBytes / kBlock; b++) {
        const auto first = image.begin() + static_cast<ptrdiff_t>(b * kBlock);
        if (std::any_of(first, first + kBlock, [](std::byte x) { return x != std::byte{0}; })) {
          with_data.push_back(b);
        }
      }
      if (!with_data.empty()) {
        at = with_data[rng_() % with_data.size()] * kBlock + (rng_() % (kBlock / 4096)) * 4096;
      }
      Bytes b = test::RandomBytes(4096, rng_());
      ASSERT_TRUE((*volume)->Write(at, b, false).ok());
      std::copy(b.begin(), b.end(), image.begin() + static_cast<ptrdiff_t>(at));
    } else {  // a block trimmed
      ASSERT_TRUE((*volume)->WriteZeroes(block * kBlock, kBlock, false, false).ok());
      std::fill_n(image.begin() + static_cast<ptrdiff_t>(block * kBlock), kBlock, std::byte{0});
    }
  }

  void Snapshot(int h, std::string vol = "") {
    Host& host = hosts_[h];
    if (vol.empty()) {
      vol = host.volumes[rng_() % host.volumes.size()];
    }
    auto snaps = host.pool->CreateSnapshots({vol}, "sim");
    ASSERT_TRUE(snaps.ok()) << snaps.status().ToString();
    host.snapshots.push_back(snaps->front().snapshot_id);
    contents_[snaps->front().snapshot_id] = host.images[vol];
    owner_[snaps->front().snapshot_id] = h;
    volume_of_[snaps->front().snapshot_id] = vol;
  }

  // Something the other host does in the middle of a push.
  void Meanwhile(int other) {
    const uint32_t dice = rng_() % 3;
    if (dice == 0) {
      Push(other, /*faults=*/false);
    } else if (dice == 1) {
      DeleteRemote(/*faults=*/false);
    } else {
      Collect(/*faults=*/false);
    }
  }

  void Push(int h, bool faults) {
    Host& host = hosts_[h];
    if (host.snapshots.empty()) {
      return;
    }
    // Half the pushes take a volume's oldest snapshot not pushed yet: chains of incremental
    // pushes, whose changed blocks borrow their parent's pieces (spanning blocks).
    // When every snapshot of the volume was pushed, the volume changes a little and a new
    // one is taken.
    std::string id = host.snapshots[rng_() % host.snapshots.size()];
    if (rng_() % 2 == 0) {
      const std::string vol = volume_of_.at(id);
      auto next = std::find_if(host.snapshots.begin(), host.snapshots.end(), [&](const auto& s) {
        return volume_of_.at(s) == vol && !pushed_.contains(s);
      });
      if (next == host.snapshots.end()) {
        Write(h, vol, /*small=*/true);
        Snapshot(h, vol);
        next = std::prev(host.snapshots.end());
      }
      id = *next;
    }
    test::SimObjectStore* store = nullptr;
    auto remote = Process(&store, faults);
    if (faults && rng_() % 4 == 0) {
      const uint64_t at = bucket_.mutations + 1 + rng_() % 12;
      store->before_mutation = [this, h, at, fired = false]() mutable {
        if (!fired && bucket_.mutations + 1 >= at) {
          fired = true;
          tally.meanwhile++;
          Meanwhile(1 - h);
        }
      };
    }
    auto pushed = remote->PushSnapshot(host.pool.get(), id, {}, {}, nullptr);
    tally.deaths += store->dead();
    pushed_.insert(id);
    if (pushed.ok()) {
      tally.pushes++;
      tally.pieces_borrowed += pushed->pieces_borrowed;
      sure_.insert(id);
      maybe_.erase(id);
      return;
    }
    const bool busy = pushed.status().code() == Status::Code::kBusy;  // a dead GC's lease
    ASSERT_TRUE(faults || busy) << Where()
                                << "a push without faults failed: " << pushed.status().ToString();
    maybe_.insert(id);  // the manifest may have been the request that died
    if (busy || !faults || rng_() % 5 < 3) {
      Recover(h, id);
    }
  }

  // The push is run again by a new process (after any lease a dead GC left has expired).
  void Recover(int h, const std::string& id) {
    test::SimObjectStore* store = nullptr;
    auto remote = Process(&store, false);
    auto pushed = remote->PushSnapshot(hosts_[h].pool.get(), id, {}, {}, nullptr);
    if (pushed.status().code() == Status::Code::kBusy) {
      bucket_.clock.AdvanceClock(static_cast<uint64_t>(tuning_.lease_ms + 1) * 1'000'000);
      pushed = remote->PushSnapshot(hosts_[h].pool.get(), id, {}, {}, nullptr);
    }
    ASSERT_TRUE(pushed.ok()) << Where()
                             << "the rerun of a push failed: " << pushed.status().ToString();
    tally.reruns++;
    sure_.insert(id);
    maybe_.erase(id);
  }

  void DeleteRemote(bool faults) {
    if (sure_.empty()) {
      return;
    }
    auto it = sure_.begin();
    std::advance(it, static_cast<ptrdiff_t>(rng_() % sure_.size()));
    const std::string id = *it;
    test::SimObjectStore* store = nullptr;
    auto remote = Process(&store, faults);
    auto gc = remote->DeleteSnapshot(id);
    tally.deaths += store->dead();
    if (gc.ok()) {
      tally.deletes++;
      sure_.erase(id);
      return;
    }
    if (gc.status().code() == Status::Code::kBusy) {
      return;  // a dead GC's lease: nothing was deleted
    }
    ASSERT_TRUE(faults) << Where() << "delete failed: " << gc.status().ToString();
    sure_.erase(id);
    maybe_.insert(id);
  }

  void Collect(bool faults) {
    test::SimObjectStore* store = nullptr;
    auto remote = Process(&store, faults);
    if (faults && rng_() % 3 == 0) {  // a slow GC: reads take long enough to outlive its lease
      store->slow_percent = 30;
      store->slow_ms = tuning_.lease_ms / 4;
      tally.slow_collections++;
    }
    auto gc = remote->CollectGarbage();
    tally.deaths += store->dead();
    tally.collections += gc.ok();
    tally.outlived_leases += gc.status().message().find("outlived its lease") != std::string::npos;
    ASSERT_EQ(bucket_.lease_violations, 0u)
        << Where() << "a GC deleted metadata or packs after its lease expired";
    ASSERT_TRUE(gc.ok() || faults || gc.status().code() == Status::Code::kBusy)
        << Where() << "GC failed: " << gc.status().ToString();
  }

  // Restores a listed snapshot into host h's pool and compares every byte with the model.
  void RestoreOne(int h, bool faults, const std::string& only = "") {
    std::vector<std::string> listed(sure_.begin(), sure_.end());
    if (listed.empty()) {
      return;
    }
    const std::string id = only.empty() ? listed[rng_() % listed.size()] : only;
    Pool* pool = hosts_[h].pool.get();
    const size_t volumes_before = pool->ListVolumes().size();
    test::SimObjectStore* store = nullptr;
    auto remote = Process(&store, faults);
    if (owner_.at(id) != h && rng_() % 3 == 0) {
      return PullOne(h, id, remote.get(), store);
    }
    VolumeSpec spec;
    spec.volume_type = "unlimited";
    auto restored = remote->RestoreVolume(pool, id, spec, {}, nullptr);
    tally.deaths += store->dead();
    if (!restored.ok()) {
      tally.failed_restores++;
      ASSERT_TRUE(faults) << Where() << "restore of " << id << ": " << restored.status().ToString();
      ASSERT_EQ(pool->ListVolumes().size(), volumes_before) << Where() << "half-restored volume";
      return;
    }
    auto volume = pool->OpenVolume(restored->volume.volume_id);
    ASSERT_TRUE(volume.ok());
    Bytes got(kVolumeBytes);
    ASSERT_TRUE((*volume)->Read(0, got).ok());
    volume->reset();
    ASSERT_TRUE(got == contents_.at(id)) << Where() << "restored " << id << " differs";
    ASSERT_TRUE(pool->DeleteVolume(restored->volume.volume_id).ok());
    tally.restores++;
  }

  // Pulls a snapshot of the other host into host h's pool under the same id, compares it, and
  // drops it again; a failed pull leaves no snapshot.
  void PullOne(int h, const std::string& id, Remote* remote, test::SimObjectStore* store) {
    Pool* pool = hosts_[h].pool.get();
    auto pulled = remote->PullSnapshot(pool, id, {}, nullptr);
    tally.deaths += store->dead();
    if (!pulled.ok()) {
      tally.failed_restores++;
      ASSERT_EQ(pool->DescribeSnapshot(id).status().code(), Status::Code::kNotFound)
          << Where() << "a failed pull left snapshot " << id;
      return;
    }
    ASSERT_EQ(pulled->snapshot_id, id) << Where() << "snapshot ids are global";
    auto snapshot = pool->OpenSnapshot(id);
    ASSERT_TRUE(snapshot.ok());
    Bytes got(kVolumeBytes);
    ASSERT_TRUE((*snapshot)->Read(0, got).ok());
    snapshot->reset();
    ASSERT_TRUE(got == contents_.at(id)) << Where() << "pulled " << id << " differs";
    ASSERT_TRUE(pool->DeleteSnapshot(id).ok());
    tally.restores++;
  }

  // The listing agrees with the model; what a dead process left undecided is decided by it.
  void CheckListing() {
    test::SimObjectStore* store = nullptr;
    auto remote = Process(&store, false);
    auto listed = remote->ListSnapshots();
    ASSERT_TRUE(listed.ok()) << Where() << listed.status().ToString();
    std::set<std::string> completed;
    for (const RemoteSnapshotInfo& i : *listed) {
      if (i.state == "completed") {
        completed.insert(i.snapshot_id);
        ASSERT_TRUE(sure_.count(i.snapshot_id) || maybe_.count(i.snapshot_id))
            << Where() << i.snapshot_id << " is listed but was never pushed";
      }
    }
    for (const std::string& id : sure_) {
      ASSERT_TRUE(completed.count(id)) << Where() << id << " was pushed but is not listed";
    }
    for (const std::string& id : maybe_) {
      if (completed.count(id)) {
        sure_.insert(id);
      }
    }
    maybe_.clear();
  }

  void CheckRestores() {
    for (const std::string& id : std::set<std::string>(sure_)) {
      RestoreOne(owner_.at(id) ^ 1, /*faults=*/false, id);  // restored on the other host
    }
  }

  // Deletes everything with healthy processes; once dead pushes' markers are stale, one GC must
  // leave nothing behind.
  void DrainAndCheckEmpty() {
    test::SimObjectStore* store = nullptr;
    auto remote = Process(&store, false);
    bucket_.clock.AdvanceClock(
        static_cast<uint64_t>(std::max(tuning_.pending_stale_ms, tuning_.lease_ms) + 1) *
        1'000'000);
    for (const std::string& id : std::set<std::string>(sure_)) {
      auto gc = remote->DeleteSnapshot(id);
      ASSERT_TRUE(gc.ok()) << Where() << "final delete of " << id << ": " << gc.status().ToString();
    }
    auto gc = remote->CollectGarbage();
    ASSERT_TRUE(gc.ok()) << Where() << gc.status().ToString();
    ASSERT_FALSE(gc->deferred) << Where() << "a dead push still counts as alive";
    std::string left;
    for (const auto& [key, bytes] : bucket_.objects) {
      left += " " + key;
    }
    ASSERT_TRUE(bucket_.objects.empty()) << Where() << "leaked:" << left;
  }

  uint64_t seed_;
  std::mt19937_64 rng_;
  int step_ = 0;
  remote::RemoteTuning tuning_;
  test::SimBucket bucket_;
  Host hosts_[2];
  std::map<std::string, Bytes> contents_;         // snapshot id -> its bytes
  std::map<std::string, int> owner_;              // snapshot id -> the host that took it
  std::map<std::string, std::string> volume_of_;  // snapshot id -> its volume
  std::set<std::string> pushed_;                  // snapshot ids a push was started for
  std::set<std::string> sure_;                    // listed by the remote for certain
  std::set<std::string> maybe_;  // a dead push or delete: decided by the next listing
};

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

TEST(RemoteCrashSimulation, PushDeleteCollectRestoreSurviveDeadProcesses) {
  const int steps = EnvInt("STRATA_REMOTE_SIM_STEPS", 40);
  if (const char* one = std::getenv("STRATA_REMOTE_SIM_SEED")) {
    RemoteSimulation(std::strtoull(one, nullptr, 10)).Run(steps);
    return;
  }
  const int seeds = EnvInt("STRATA_REMOTE_SIM_SEEDS", 200);
  for (int seed = 1; seed <= seeds && !HasFatalFailure(); seed++) {
    // An invariant that aborts the process names no seed: the last of these lines does.
    std::fprintf(stderr, "seed %d\n", seed);
    RemoteSimulation(static_cast<uint64_t>(seed)).Run(steps);
  }
  std::printf(
      "[ figures ] %d seeds: %llu processes died mid-operation; %llu pushes, %llu reruns, %llu "
      "operations by the other host mid-push, %llu deletes, %llu GCs, %llu restores checked "
      "byte for byte, %llu failed cleanly; %llu slow GCs, %llu of them outlived their lease and "
      "stopped; %llu pieces borrowed from parents (blocks spanning packs)\n",
      seeds, (unsigned long long)tally.deaths, (unsigned long long)tally.pushes,
      (unsigned long long)tally.reruns, (unsigned long long)tally.meanwhile,
      (unsigned long long)tally.deletes, (unsigned long long)tally.collections,
      (unsigned long long)tally.restores, (unsigned long long)tally.failed_restores,
      (unsigned long long)tally.slow_collections, (unsigned long long)tally.outlived_leases,
      (unsigned long long)tally.pieces_borrowed);
  // Spanning blocks are a state the pushes, restores and collections above must meet.
  EXPECT_TRUE(seeds < 20 || tally.pieces_borrowed > 0) << "no push borrowed a piece";
}

}  // namespace
}  // namespace strata
