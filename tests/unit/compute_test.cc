// Images, instances, instance store and tags through the library API (docs/compute.md).
#include "strata/compute.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>

#include <gtest/gtest.h>

#include "strata/pool.h"

#include "compute/compute_impl.h"
#include "control/shorthand.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint64_t kVolumeBytes = 8ull << 20;

// A launch of `image` with what `set` changes from RunSpec's defaults.
RunSpec LaunchSpec(const std::string& image, const std::function<void(RunSpec&)>& set = nullptr) {
  RunSpec r;
  r.image_id = image;
  if (set) {
    set(r);
  }
  return r;
}

class ComputeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PoolOptions o;
    o.chunk_size_bytes = 4096;
    o.commit_interval_ms = 0;
    ASSERT_TRUE(Pool::Create(dir_.path(), o).ok());
    Open();
  }
  void Open(bool hosts_instance_store = true, const std::string& kms_root_key = "") {
    PoolOptions o;
    o.commit_interval_ms = 0;
    auto pool = Pool::Open(dir_.path(), o);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = std::move(*pool);
    ComputeOptions co;
    co.hosts_instance_store = hosts_instance_store;
    co.kms_root_key = kms_root_key;
    auto compute = Compute::Open(pool_.get(), co);
    ASSERT_TRUE(compute.ok()) << compute.status().ToString();
    compute_ = std::move(*compute);
  }
  void Reopen(bool hosts_instance_store = true) {
    compute_.reset();
    pool_.reset();
    Open(hosts_instance_store);
  }
  // Reopens with the pool's KMS under `root_key` ("": none given).
  void ReopenWithKmsRoot(const std::string& root_key) {
    compute_.reset();
    pool_.reset();
    Open(/*hosts_instance_store=*/true, root_key);
  }

  // A volume holding `pattern` at offset 0, snapshotted: the snapshot id.
  std::string SnapshotWith(const std::vector<std::byte>& pattern) {
    auto info = pool_->CreateVolume(VolumeSpec{kVolumeBytes, "", "gp3", ""});
    EXPECT_TRUE(info.ok());
    {
      auto v = *pool_->OpenVolume(info->volume_id);
      EXPECT_TRUE(v->Write(0, pattern, true).ok());
    }
    auto snap = pool_->CreateSnapshot(info->volume_id, "root");
    EXPECT_TRUE(snap.ok());
    EXPECT_TRUE(pool_->DeleteVolume(info->volume_id).ok());
    return snap->snapshot_id;
  }

  ImageSpec Spec(const std::string& name, const std::string& snapshot) {
    ImageSpec spec;
    spec.name = name;
    BlockDeviceMapping root;
    root.device_name = "/dev/xvda";
    root.snapshot_id = snapshot;
    BlockDeviceMapping data;
    data.device_name = "/dev/sdf";
    data.volume_size_gib = 1;
    BlockDeviceMapping store;
    store.device_name = "/dev/sdb";
    store.virtual_name = "ephemeral0";
    spec.mappings = {root, data, store};
    return spec;
  }

  std::vector<std::byte> ReadExport(const std::string& name, uint64_t offset, size_t n) {
    auto v = compute_->OpenExport(name);
    EXPECT_TRUE(v.ok()) << name << ": " << v.status().ToString();
    std::vector<std::byte> out(n);
    EXPECT_TRUE((*v)->Read(offset, out).ok());
    return out;
  }
  void WriteExport(const std::string& name, uint64_t offset, const std::vector<std::byte>& data) {
    auto v = compute_->OpenExport(name);
    ASSERT_TRUE(v.ok()) << name << ": " << v.status().ToString();
    ASSERT_TRUE((*v)->Write(offset, data, true).ok());
  }
  std::string VolumeOf(const InstanceInfo& info, const std::string& device) {
    for (const InstanceDevice& d : info.devices) {
      if (d.device_name == device) {
        return d.volume_id;
      }
    }
    return "";
  }

  test::TempDir dir_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<Compute> compute_;
};

TEST_F(ComputeTest, ImageHoldsItsSnapshotUntilDeregistered) {
  const std::string snap = SnapshotWith(test::RandomBytes(65536, 1));
  auto image = compute_->RegisterImage(Spec("web", snap));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  Status s = pool_->DeleteSnapshot(snap);
  EXPECT_EQ(s.code(), Status::Code::kBusy);
  EXPECT_NE(s.message().find(image->image_id), std::string::npos) << s.ToString();
  Reopen();  // the hold is rebuilt from the records
  EXPECT_EQ(pool_->DeleteSnapshot(snap).code(), Status::Code::kBusy);
  ASSERT_TRUE(compute_->DeregisterImage(image->image_id).ok());
  EXPECT_TRUE(pool_->DeleteSnapshot(snap).ok());
  EXPECT_EQ(compute_->DescribeImage(image->image_id).status().code(), Status::Code::kNotFound);
}

TEST_F(ComputeTest, BadImagesAreRefused) {
  const std::string snap = SnapshotWith(test::RandomBytes(4096, 2));
  ImageSpec spec = Spec("ok-name", snap);
  ASSERT_TRUE(compute_->RegisterImage(spec).ok());
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kAlreadyExists);
  spec.name = "x";
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kInvalidArgument);
  spec = Spec("no-root", snap);
  spec.root_device_name = "/dev/sda1";
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kInvalidArgument);
  spec = Spec("missing-snap", "snap-00000000000000000");
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kNotFound);
  spec = Spec("bad-ephemeral", snap);
  spec.mappings[2].virtual_name = "ephemeral99";
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kInvalidArgument);
  spec = Spec("dup-device", snap);
  spec.mappings[1].device_name = "/dev/xvda";
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kInvalidArgument);
  spec = Spec("too-small", snap);
  spec.mappings[0].volume_size_gib = 0;
  spec.mappings[1].volume_size_gib = 0;  // an EBS mapping needs a snapshot or a size
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kInvalidArgument);
}

TEST_F(ComputeTest, MappingsCarryVolumeTypesWithTheirRules) {
  const std::string snap = SnapshotWith(test::RandomBytes(4096, 17));
  ImageSpec spec = Spec("typed", snap);
  spec.mappings[0].volume_type = "io2";  // needs Iops
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kInvalidArgument);
  spec.mappings[0].volume_type = "st1";  // not a boot volume
  EXPECT_EQ(compute_->RegisterImage(spec).status().code(), Status::Code::kInvalidArgument);
  spec.mappings[0].volume_type = "io2";
  spec.mappings[0].volume_size_gib = 8;
  spec.mappings[0].iops = 4000;
  spec.mappings[1].volume_type = "gp3";
  spec.mappings[1].volume_size_gib = 8;
  spec.mappings[1].iops = 4000;
  spec.mappings[1].throughput_mibps = 500;
  auto image = compute_->RegisterImage(spec);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  auto instances = compute_->RunInstances(LaunchSpec(image->image_id));
  ASSERT_TRUE(instances.ok()) << instances.status().ToString();
  auto root = pool_->DescribeVolume(VolumeOf((*instances)[0], "/dev/xvda"));
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->volume_type, "io2");
  EXPECT_EQ(root->iops, 4000u);
  auto data = pool_->DescribeVolume(VolumeOf((*instances)[0], "/dev/sdf"));
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->throughput_mibps, 500u);
  auto derived = compute_->CreateImage((*instances)[0].instance_id, "typed-copy", "");
  ASSERT_TRUE(derived.ok()) << derived.status().ToString();
  EXPECT_EQ(derived->mappings[0].iops, 4000u);
}

TEST_F(ComputeTest, InstancesAreIsolatedClonesThatCostNoData) {
  const auto root = test::RandomBytes(1 << 20, 3);
  const std::string snap = SnapshotWith(root);
  auto image = compute_->RegisterImage(Spec("web", snap));
  ASSERT_TRUE(image.ok());
  const uint64_t used_before = pool_->Info().used_bytes;
  RunSpec run;
  run.image_id = image->image_id;
  run.count = 3;
  run.instance_type = "m5d.large";
  auto instances = compute_->RunInstances(run);
  ASSERT_TRUE(instances.ok()) << instances.status().ToString();
  ASSERT_EQ(instances->size(), 3u);
  EXPECT_EQ(pool_->Info().used_bytes, used_before);  // clones: no data copied
  const std::string a = (*instances)[0].instance_id, b = (*instances)[1].instance_id;
  EXPECT_EQ(ReadExport(a + "/xvda", 0, root.size()), root);
  EXPECT_EQ(ReadExport(b + "/xvda", 0, root.size()), root);
  const auto scribble = test::RandomBytes(8192, 4);
  WriteExport(a + "/xvda", 4096, scribble);
  EXPECT_EQ(ReadExport(a + "/xvda", 4096, scribble.size()), scribble);
  EXPECT_EQ(ReadExport(b + "/xvda", 0, root.size()), root);
  EXPECT_EQ(ReadExport(image->image_id, 0, root.size()), root);  // the image export: read-only
  auto image_export = compute_->OpenExport(image->image_id);
  ASSERT_TRUE(image_export.ok());
  EXPECT_TRUE((*image_export)->read_only());
  // The data volume is new and empty; instance store is sized by the type.
  EXPECT_TRUE(test::AllZero(ReadExport(a + "/sdf", 0, 4096)));
  auto store = compute_->OpenExport(a + "/sdb");
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->size_bytes(), 75'000'000'000ull);
  auto volume = pool_->DescribeVolume(VolumeOf((*instances)[0], "/dev/xvda"));
  ASSERT_TRUE(volume.ok());
  EXPECT_EQ(volume->snapshot_id, snap);
  auto attached = compute_->AttachmentOf(volume->volume_id);
  ASSERT_TRUE(attached.has_value());
  EXPECT_EQ(attached->first, a);
  EXPECT_EQ(pool_->DeleteVolume(volume->volume_id).code(), Status::Code::kBusy);
}

TEST_F(ComputeTest, StopWipesInstanceStoreAndKeepsEbs) {
  auto image = compute_->RegisterImage(Spec("web", SnapshotWith(test::RandomBytes(4096, 5))));
  ASSERT_TRUE(image.ok());
  auto instances = compute_->RunInstances(
      LaunchSpec(image->image_id, [&](RunSpec& r) { r.instance_type = "c5d.large"; }));
  ASSERT_TRUE(instances.ok()) << instances.status().ToString();
  const std::string id = (*instances)[0].instance_id;
  const auto data = test::RandomBytes(4096, 6);
  WriteExport(id + "/sdb", 1 << 20, data);
  WriteExport(id + "/xvda", 1 << 20, data);
  EXPECT_EQ(ReadExport(id + "/sdb", 1 << 20, 4096), data);
  {
    auto held = compute_->OpenExport(id + "/sdb");  // a client still attached: stop refused
    ASSERT_TRUE(held.ok());
    EXPECT_EQ(compute_->StopInstances({id}).status().code(), Status::Code::kBusy);
  }
  // A reboot keeps both.
  ASSERT_TRUE(compute_->RebootInstances({id}).ok());
  EXPECT_EQ(ReadExport(id + "/sdb", 1 << 20, 4096), data);
  auto stopped = compute_->StopInstances({id});
  ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
  EXPECT_EQ((*stopped)[0].current_state, "stopped");
  EXPECT_EQ(compute_->OpenExport(id + "/xvda").status().code(), Status::Code::kNotFound);
  ASSERT_TRUE(compute_->StartInstances({id}).ok());
  EXPECT_TRUE(test::AllZero(ReadExport(id + "/sdb", 1 << 20, 4096)));
  EXPECT_EQ(ReadExport(id + "/xvda", 1 << 20, 4096), data);
  // A process restart is a host failure for instance store: wiped; EBS and state survive.
  WriteExport(id + "/sdb", 0, data);
  Reopen();
  auto info = compute_->DescribeInstance(id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, "running");
  EXPECT_TRUE(test::AllZero(ReadExport(id + "/sdb", 0, 4096)));
  EXPECT_EQ(ReadExport(id + "/xvda", 1 << 20, 4096), data);
}

TEST_F(ComputeTest, TerminateDeletesExactlyTheDeleteOnTerminationVolumes) {
  auto image = compute_->RegisterImage(Spec("web", SnapshotWith(test::RandomBytes(4096, 7))));
  ASSERT_TRUE(image.ok());
  auto instances = compute_->RunInstances(
      LaunchSpec(image->image_id, [&](RunSpec& r) { r.disable_api_termination = true; }));
  ASSERT_TRUE(instances.ok());
  const InstanceInfo& inst = (*instances)[0];
  EXPECT_EQ(inst.devices.size(), 2u);  // t3 has no instance store: ephemeral0 is ignored
  const std::string root = VolumeOf(inst, "/dev/xvda"), data = VolumeOf(inst, "/dev/sdf");
  auto extra = pool_->CreateVolume(VolumeSpec{kVolumeBytes, "", "gp3", ""});
  ASSERT_TRUE(extra.ok());
  ASSERT_TRUE(compute_->AttachVolume(extra->volume_id, inst.instance_id, "/dev/sdg").ok());
  EXPECT_EQ(compute_->AttachVolume(extra->volume_id, inst.instance_id, "/dev/sdh").status().code(),
            Status::Code::kInvalidArgument);  // already attached
  // Termination protection: refused, nothing changed.
  auto refused = compute_->TerminateInstances({inst.instance_id});
  EXPECT_EQ(refused.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("disableApiTermination"), std::string::npos);
  ASSERT_TRUE(compute_->SetTerminationProtection(inst.instance_id, false).ok());
  auto done = compute_->TerminateInstances({inst.instance_id});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(pool_->DescribeVolume(root).status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(pool_->DescribeVolume(data).ok());  // DeleteOnTermination false for non-root
  EXPECT_TRUE(pool_->DescribeVolume(extra->volume_id).ok());
  EXPECT_FALSE(compute_->AttachmentOf(data).has_value());
  EXPECT_TRUE(pool_->DeleteVolume(data).ok());  // available again: no hold
  auto info = compute_->DescribeInstance(inst.instance_id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, "terminated");
  EXPECT_EQ(compute_->StartInstances({inst.instance_id}).status().code(),
            Status::Code::kInvalidArgument);
}

TEST_F(ComputeTest, DetachRulesAndDeviceNames) {
  auto image = compute_->RegisterImage(Spec("web", SnapshotWith(test::RandomBytes(4096, 8))));
  ASSERT_TRUE(image.ok());
  auto instances = compute_->RunInstances(LaunchSpec(image->image_id));
  ASSERT_TRUE(instances.ok());
  const InstanceInfo& inst = (*instances)[0];
  EXPECT_EQ(compute_->DetachVolume(VolumeOf(inst, "/dev/xvda")).status().code(),
            Status::Code::kInvalidArgument);  // the root of a running instance
  auto extra = pool_->CreateVolume(VolumeSpec{kVolumeBytes, "", "gp3", ""});
  ASSERT_TRUE(extra.ok());
  EXPECT_EQ(compute_->AttachVolume(extra->volume_id, inst.instance_id, "/dev/sdf").status().code(),
            Status::Code::kInvalidArgument);  // device taken
  EXPECT_EQ(compute_->AttachVolume(extra->volume_id, inst.instance_id, "sdz").status().code(),
            Status::Code::kInvalidArgument);
  ASSERT_TRUE(compute_->AttachVolume(extra->volume_id, inst.instance_id, "/dev/sdz").ok());
  WriteExport(inst.instance_id + "/sdz", 0, test::RandomBytes(4096, 9));
  auto detached = compute_->DetachVolume(extra->volume_id);
  ASSERT_TRUE(detached.ok()) << detached.status().ToString();
  EXPECT_EQ(compute_->OpenExport(inst.instance_id + "/sdz").status().code(),
            Status::Code::kNotFound);
  EXPECT_EQ(ReadExport(extra->volume_id, 0, 4096), test::RandomBytes(4096, 9));
  ASSERT_TRUE(compute_->StopInstances({inst.instance_id}).ok());
  EXPECT_TRUE(compute_->DetachVolume(VolumeOf(inst, "/dev/xvda")).ok());  // stopped: allowed
}

// Attach and delete of one volume race from two threads: exactly one wins each round, and no
// instance is left pointing at a deleted volume (before the hold was taken first, both could
// succeed within a few dozen rounds). CheckReferences() finds a dangling attachment when one is
// made.
TEST_F(ComputeTest, AttachAndDeleteOfAVolumeAreSerialised) {
  auto image = compute_->RegisterImage(Spec("race", SnapshotWith(test::RandomBytes(4096, 8))));
  ASSERT_TRUE(image.ok());
  auto instances = compute_->RunInstances(LaunchSpec(image->image_id));
  ASSERT_TRUE(instances.ok());
  const std::string inst = (*instances)[0].instance_id;
  int attached = 0, deleted = 0;
  for (int round = 0; round < 200; round++) {
    auto vol = pool_->CreateVolume(VolumeSpec{kVolumeBytes, "", "gp3", ""});
    ASSERT_TRUE(vol.ok());
    Status attach, del;
    std::thread a(
        [&] { attach = compute_->AttachVolume(vol->volume_id, inst, "/dev/sdq").status(); });
    std::thread d([&] { del = pool_->DeleteVolume(vol->volume_id); });
    a.join();
    d.join();
    ASSERT_NE(attach.ok(), del.ok())
        << "round " << round << ": attach " << attach.ToString() << ", delete " << del.ToString();
    ASSERT_TRUE(compute_->CheckReferences().empty()) << compute_->CheckReferences()[0];
    if (attach.ok()) {
      attached++;
      ASSERT_TRUE(compute_->DetachVolume(vol->volume_id).ok());
      ASSERT_TRUE(pool_->DeleteVolume(vol->volume_id).ok());
    } else {
      deleted++;
    }
  }
  EXPECT_EQ(attached + deleted, 200);
  // A dangling reference (as the race used to leave, or a hand-edited pool): Check names it.
  auto vol = pool_->CreateVolume(VolumeSpec{kVolumeBytes, "", "gp3", ""});
  ASSERT_TRUE(compute_->AttachVolume(vol->volume_id, inst, "/dev/sdq").ok());
  pool_->ReleaseHold(vol->volume_id, inst);
  ASSERT_TRUE(pool_->DeleteVolume(vol->volume_id).ok());
  auto problems = compute_->CheckReferences();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find(vol->volume_id), std::string::npos) << problems[0];
}

TEST_F(ComputeTest, CreateImageSnapshotsEveryEbsVolumeAndLaunches) {
  auto image = compute_->RegisterImage(Spec("base", SnapshotWith(test::RandomBytes(4096, 10))));
  ASSERT_TRUE(image.ok());
  auto first = compute_->RunInstances(
      LaunchSpec(image->image_id, [&](RunSpec& r) { r.instance_type = "m5d.large"; }));
  ASSERT_TRUE(first.ok());
  const std::string id = (*first)[0].instance_id;
  const auto root = test::RandomBytes(12288, 11), data = test::RandomBytes(4096, 12);
  WriteExport(id + "/xvda", 0, root);
  WriteExport(id + "/sdf", 8192, data);
  EXPECT_EQ(compute_->CreateImage(id, "base", "").status().code(), Status::Code::kAlreadyExists);
  auto derived = compute_->CreateImage(id, "derived", "from a running instance");
  ASSERT_TRUE(derived.ok()) << derived.status().ToString();
  EXPECT_EQ(derived->mappings.size(), 3u);
  EXPECT_EQ(derived->source_instance_id, id);
  auto second = compute_->RunInstances(LaunchSpec(derived->image_id));
  ASSERT_TRUE(second.ok());
  const std::string id2 = (*second)[0].instance_id;
  EXPECT_EQ(ReadExport(id2 + "/xvda", 0, root.size()), root);
  EXPECT_EQ(ReadExport(id2 + "/sdf", 8192, data.size()), data);
}

TEST_F(ComputeTest, InstanceStoreRootIsSeededCannotStopAndDiesWithTheProcess) {
  const auto root = test::RandomBytes(300000, 13);
  ImageSpec spec = Spec("store-backed", SnapshotWith(root));
  spec.root_device_type = "instance-store";
  auto image = compute_->RegisterImage(spec);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(compute_->RunInstances(LaunchSpec(image->image_id)).status().code(),
            Status::Code::kNotSupported);  // no instance store on t3
  auto instances = compute_->RunInstances(LaunchSpec(image->image_id, [&](RunSpec& r) {
    r.count = 2;
    r.instance_type = "i3.large";
  }));
  ASSERT_TRUE(instances.ok()) << instances.status().ToString();
  const std::string id = (*instances)[0].instance_id;
  EXPECT_EQ(ReadExport(id + "/xvda", 0, root.size()), root);
  WriteExport(id + "/xvda", 0, test::RandomBytes(4096, 14));
  EXPECT_EQ(ReadExport((*instances)[1].instance_id + "/xvda", 0, root.size()), root);
  EXPECT_EQ(compute_->StopInstances({id}).status().code(), Status::Code::kNotSupported);
  EXPECT_EQ(compute_->CreateSnapshots({id + "/xvda"}, "").status().code(),
            Status::Code::kNotSupported);
  EXPECT_EQ(compute_->CreateImage(id, "again", "").status().code(), Status::Code::kNotSupported);
  const std::string data_volume = VolumeOf((*instances)[0], "/dev/sdf");
  Reopen(/*hosts_instance_store=*/false);
  auto info = compute_->DescribeInstance(id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, "terminated");
  EXPECT_NE(info->state_reason.find("Server.InternalError"), std::string::npos);
  EXPECT_TRUE(pool_->DescribeVolume(data_volume).ok());  // not DeleteOnTermination: kept
  // A short-lived process cannot host a new instance-store root.
  EXPECT_EQ(compute_
                ->RunInstances(
                    LaunchSpec(image->image_id, [&](RunSpec& r) { r.instance_type = "i3.large"; }))
                .status()
                .code(),
            Status::Code::kNotSupported);
}

TEST_F(ComputeTest, InterruptedTerminationFinishesAtOpen) {
  auto image = compute_->RegisterImage(Spec("web", SnapshotWith(test::RandomBytes(4096, 15))));
  ASSERT_TRUE(image.ok());
  auto instances = compute_->RunInstances(LaunchSpec(image->image_id));
  ASSERT_TRUE(instances.ok());
  // The state a crash right after the terminate commit leaves: terminated, root queued.
  InstanceRecord rec;
  rec.info = (*instances)[0];
  const std::string root = VolumeOf(rec.info, "/dev/xvda");
  rec.info.state = "terminated";
  rec.info.devices.clear();
  rec.pending_deletes = {root};
  ASSERT_TRUE(
      pool_->CommitRecords({{kInstancesTable, rec.info.instance_id, InstanceCodec().Encode(rec)}})
          .ok());
  Reopen();
  EXPECT_EQ(pool_->DescribeVolume(root).status().code(), Status::Code::kNotFound);
  auto check = pool_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->problems.empty());
}

// One truth: a volume's Name tag is its name in the pool (found and exported by it). Renaming by
// tag moves the name; deleting the tag removes it; a Name tag an earlier release kept in the tag
// table becomes the name at open.
TEST_F(ComputeTest, AVolumesNameTagIsItsName) {
  auto volume = pool_->CreateVolume(VolumeSpec{1 << 20, "", "gp3", ""});
  ASSERT_TRUE(volume.ok());
  const std::string id = volume->volume_id;
  ASSERT_TRUE(compute_->CreateTags({id}, {{"Name", "data1"}, {"env", "dev"}}).ok());
  EXPECT_EQ(pool_->DescribeVolume("data1")->volume_id, id);
  EXPECT_TRUE(compute_->OpenExport("data1").ok());
  ASSERT_TRUE(compute_->CreateTags({id}, {{"Name", "data2"}}).ok());
  EXPECT_EQ(pool_->DescribeVolume("data1").status().code(), Status::Code::kNotFound);
  EXPECT_FALSE(compute_->OpenExport("data1").ok());  // the old name no longer exports it
  EXPECT_EQ(compute_->TagsOf(id), (Tags{{"Name", "data2"}, {"env", "dev"}}));
  ASSERT_TRUE(compute_->DeleteTags({id}, {{"Name", std::nullopt}}).ok());
  EXPECT_EQ(pool_->DescribeVolume(id)->name, "");
  EXPECT_EQ(compute_->TagsOf(id), (Tags{{"env", "dev"}}));
  // As an earlier release stored it: the Name in the tag table, the volume unnamed.
  ASSERT_TRUE(
      pool_->CommitRecords({{kTagsTable, id, EncodeTags({{"Name", "old"}, {"env", "dev"}})}}).ok());
  Reopen();
  EXPECT_EQ(pool_->DescribeVolume("old")->volume_id, id);
  EXPECT_EQ(compute_->TagsOf(id), (Tags{{"Name", "old"}, {"env", "dev"}}));
  Reopen();  // (moved once: the tag record no longer holds it)
  EXPECT_EQ(compute_->TagsOf(id), (Tags{{"Name", "old"}, {"env", "dev"}}));
}

TEST_F(ComputeTest, AVolumesLastModificationIsKeptAndForgottenWithIt) {
  auto volume = pool_->CreateVolume(VolumeSpec{1ull << 30, "", "gp2", ""});
  ASSERT_TRUE(volume.ok());
  const std::string id = volume->volume_id;
  EXPECT_EQ(compute_->DescribeVolumeModifications({id}).status().code(), Status::Code::kNotFound);
  VolumeModification grow;
  grow.size_bytes = 2ull << 30;
  grow.volume_type = "gp3";
  auto started = compute_->ModifyVolume(id, grow);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_EQ(started->state, "modifying");  // EC2's reply
  EXPECT_EQ(started->end_time_ms, 0);
  VolumeModification rename;
  rename.name = "x";
  EXPECT_EQ(compute_->ModifyVolume(id, rename).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(compute_->ModifyVolume(id, VolumeModification{}).status().code(),
            Status::Code::kInvalidArgument);
  Reopen();
  auto kept = compute_->DescribeVolumeModifications({});
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 1u);
  const VolumeModificationInfo& m = (*kept)[0];
  EXPECT_EQ(m.volume_id, id);
  EXPECT_EQ(m.state, "completed");
  EXPECT_EQ(m.original_size_bytes, 1ull << 30);
  EXPECT_EQ(m.target_size_bytes, 2ull << 30);
  EXPECT_EQ(m.original_volume_type, "gp2");
  EXPECT_EQ(m.target_volume_type, "gp3");
  EXPECT_EQ(m.target_iops, 3000u);  // gp3's baseline
  EXPECT_GE(m.end_time_ms, m.start_time_ms);
  ASSERT_TRUE(pool_->DeleteVolume(id).ok());
  EXPECT_TRUE(compute_->DescribeVolumeModifications({})->empty());
  Reopen();  // the record of a deleted volume is dropped at open
  EXPECT_TRUE(pool_->ReadRecords(kModificationsTable)->empty());
}

TEST_F(ComputeTest, TagsOnEveryResource) {
  const std::string snap = SnapshotWith(test::RandomBytes(4096, 16));
  auto image = compute_->RegisterImage(Spec("web", snap));
  ASSERT_TRUE(image.ok());
  RunSpec run = LaunchSpec(image->image_id, [&](RunSpec& r) {
    r.tags = {{"Name", "web"}};
    r.volume_tags = {{"team", "blue"}};
  });
  auto instances = compute_->RunInstances(run);
  ASSERT_TRUE(instances.ok());
  const std::string id = (*instances)[0].instance_id;
  EXPECT_EQ(compute_->TagsOf(id).at("Name"), "web");
  EXPECT_EQ(compute_->TagsOf(VolumeOf((*instances)[0], "/dev/xvda")).at("team"), "blue");
  ASSERT_TRUE(compute_->CreateTags({snap, image->image_id, id}, {{"env", "prod"}}).ok());
  EXPECT_EQ(compute_->CreateTags({"vol-00000000000000000"}, {{"a", "b"}}).code(),
            Status::Code::kNotFound);
  EXPECT_EQ(compute_->CreateTags({id}, {{"aws:x", "b"}}).code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(compute_->DeleteTags({id}, {{"env", std::string("staging")}}).ok());  // no match
  EXPECT_EQ(compute_->TagsOf(id).count("env"), 1u);
  ASSERT_TRUE(compute_->DeleteTags({id}, {{"env", std::nullopt}}).ok());
  EXPECT_EQ(compute_->TagsOf(id).count("env"), 0u);
  Reopen();
  EXPECT_EQ(compute_->TagsOf(snap).at("env"), "prod");
  EXPECT_EQ(compute_->TagsOf(id).at("Name"), "web");
}

TEST(Shorthand, ParsesTheAwsCliForms) {
  auto m = control::ParseShorthand(
      "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1,VolumeSize=8,DeleteOnTermination=true}");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)["DeviceName"], "/dev/xvda");
  EXPECT_EQ((*m)["Ebs"]["VolumeSize"], "8");
  auto t =
      control::ParseShorthand("ResourceType=instance,Tags=[{Key=Name,Value=web},{Key=a,Value=}]");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)["Tags"].size(), 2u);
  EXPECT_EQ((*t)["Tags"][1]["Value"], "");
  auto f = control::ParseShorthand("Name=tag:Name,Values=web,db");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)["Values"], nlohmann::json::array({"web", "db"}));
  auto j = control::ParseShorthand(R"([{"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}])");
  ASSERT_TRUE(j.ok());
  EXPECT_TRUE(j->is_array());
  for (const char* bad : {"Ebs={SnapshotId=x", "=x", "Tags=[{Key=a}", "NoEquals", "A=1,A=2",
                          "A={B={C={D={E={F={G={H={I={J=1}}}}}}}}}"}) {
    EXPECT_FALSE(control::ParseShorthand(bad).ok()) << bad;
  }
}

// A security group rule (its description optional).
SecurityGroupRule Rule(const std::string& protocol, int32_t from, int32_t to,
                       const std::string& cidr, const std::string& description = "") {
  SecurityGroupRule r;
  r.protocol = protocol;
  r.from_port = from;
  r.to_port = to;
  r.cidr = cidr;
  r.description = description;
  return r;
}

}  // namespace
// A launch's BlockDeviceMappings change its image's: the root grown with another type and its
// DeleteOnTermination, a mapping removed (NoDevice), one added; what cannot be honoured is
// refused before anything is made.
TEST_F(ComputeTest, LaunchMappingsChangeTheImagesMappings) {
  auto image = compute_->RegisterImage(Spec("web", SnapshotWith(test::RandomBytes(4096, 5))));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  auto launch = [&](std::vector<LaunchMapping> mappings) {
    RunSpec run = LaunchSpec(image->image_id, [&](RunSpec& r) {
      r.instance_type = "m5d.large";
      r.mappings = std::move(mappings);
    });
    return compute_->RunInstances(run);
  };
  LaunchMapping root;
  root.device_name = "/dev/xvda";
  root.volume_size_gib = 4;
  root.volume_type = "io1";
  root.iops = 200;
  root.delete_on_termination = false;
  LaunchMapping gone;
  gone.device_name = "/dev/sdf";
  gone.no_device = true;
  LaunchMapping extra;
  extra.device_name = "/dev/sdg";
  extra.volume_size_gib = 3;
  extra.volume_type = "gp2";
  auto instances = launch({root, gone, extra});
  ASSERT_TRUE(instances.ok()) << instances.status().ToString();
  const InstanceInfo& info = (*instances)[0];
  auto root_volume = pool_->DescribeVolume(VolumeOf(info, "/dev/xvda"));
  ASSERT_TRUE(root_volume.ok());
  EXPECT_EQ(root_volume->size_bytes, 4ull << 30);
  EXPECT_EQ(root_volume->volume_type, "io1");
  EXPECT_EQ(root_volume->iops, 200u);
  EXPECT_EQ(ReadExport(info.instance_id + "/xvda", 0, 4096), test::RandomBytes(4096, 5));
  EXPECT_EQ(VolumeOf(info, "/dev/sdf"), "");  // removed
  auto added = pool_->DescribeVolume(VolumeOf(info, "/dev/sdg"));
  ASSERT_TRUE(added.ok());
  EXPECT_EQ(added->size_bytes, 3ull << 30);
  for (const InstanceDevice& d : info.devices) {
    if (d.device_name == "/dev/xvda") {
      EXPECT_FALSE(d.delete_on_termination);
    }
  }
  const size_t volumes = pool_->ListVolumes().size();
  LaunchMapping no_root;
  no_root.device_name = "/dev/xvda";
  no_root.no_device = true;
  LaunchMapping other_snapshot;
  other_snapshot.device_name = "/dev/xvda";
  other_snapshot.snapshot_id = "snap-00000000000000000";
  LaunchMapping not_bootable = root;
  not_bootable.volume_size_gib = 5000;  // st1 may be this large, but it cannot boot
  not_bootable.volume_type = "st1";
  not_bootable.iops.reset();
  for (const LaunchMapping& bad : {no_root, other_snapshot, not_bootable}) {
    EXPECT_EQ(launch({bad}).status().code(), Status::Code::kInvalidArgument) << bad.device_name;
  }
  for (const char* user_data : {"not base64!", "QUJD=", "QQ==QUJD"}) {
    RunSpec run = LaunchSpec(image->image_id, [&](RunSpec& r) { r.user_data = user_data; });
    EXPECT_EQ(compute_->RunInstances(run).status().code(), Status::Code::kInvalidArgument)
        << user_data;
  }
  RunSpec big = LaunchSpec(image->image_id,
                           [&](RunSpec& r) { r.user_data = std::string(16384 / 3 * 4 + 4, 'A'); });
  EXPECT_EQ(compute_->RunInstances(big).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(pool_->ListVolumes().size(), volumes);  // nothing made by a refused launch
}

// Security groups: rules by CIDR (IPv4, IPv6, IPv4-mapped) and port range admit peers to an
// instance's devices and attached volumes; the groups and the instance's choice survive a reopen.
TEST_F(ComputeTest, SecurityGroupsAdmitByAddressAndPortAndPersist) {
  auto image = compute_->RegisterImage(Spec("web", SnapshotWith(test::RandomBytes(4096, 3))));
  ASSERT_TRUE(image.ok());
  auto sg = compute_->CreateSecurityGroup("web", "web servers", {});
  ASSERT_TRUE(sg.ok()) << sg.status().ToString();
  EXPECT_EQ(compute_->CreateSecurityGroup("web", "again", {}).status().code(),
            Status::Code::kAlreadyExists);
  RunSpec run =
      LaunchSpec(image->image_id, [&](RunSpec& r) { r.security_group_ids = {sg->group_id}; });
  auto instances = compute_->RunInstances(run);
  ASSERT_TRUE(instances.ok()) << instances.status().ToString();
  const std::string dev = (*instances)[0].instance_id + "/xvda";
  const std::string vol = VolumeOf((*instances)[0], "/dev/xvda");
  auto admit = [&](const std::string& name, const std::string& address, uint16_t port) {
    return compute_->AdmitExport(name, ExportPeer{address, port, ""}).code();
  };
  constexpr auto kDenied = Status::Code::kPermissionDenied;
  EXPECT_EQ(admit(dev, "10.1.2.3", 10809), kDenied);  // no rules: nothing
  EXPECT_EQ(admit(vol, "10.1.2.3", 10809), kDenied);  // the attached volume by its id too
  EXPECT_EQ(admit(dev, "", 0), Status::Code::kOk);    // the unix socket
  EXPECT_EQ(admit("snap-0123", "10.1.2.3", 10809), Status::Code::kOk);  // not an instance's
  auto authorize = [&](const std::string& id, SecurityGroupRule rule) {
    return compute_->AuthorizeRules(id, false, {rule}).status().code();
  };
  ASSERT_EQ(authorize(sg->group_id, Rule("tcp", 10800, 10899, "10.0.0.0/8")), Status::Code::kOk);
  EXPECT_EQ(authorize(sg->group_id, Rule("tcp", 10800, 10899, "10.0.0.0/8")),
            Status::Code::kAlreadyExists);
  ASSERT_EQ(authorize(sg->group_id, Rule("tcp", 10809, 10809, "fd00::/8")), Status::Code::kOk);
  // kept, as EC2 keeps it, but an NBD client is TCP: it admits nobody
  ASSERT_EQ(authorize(sg->group_id, Rule("udp", 1, 65535, "11.0.0.0/8")), Status::Code::kOk);
  EXPECT_EQ(authorize(sg->group_id, Rule("sctp", 1, 2, "10.0.0.0/8")),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(authorize(sg->group_id, Rule("tcp", 1, 2, "10.0.0.0/33")),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(authorize(sg->group_id, Rule("tcp", 2, 1, "10.0.0.0/8")),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(admit(dev, "10.1.2.3", 10809), Status::Code::kOk);
  EXPECT_EQ(admit(dev, "::ffff:10.1.2.3", 10809), Status::Code::kOk);  // IPv4-mapped
  EXPECT_EQ(admit(dev, "11.1.2.3", 10809), kDenied);
  EXPECT_EQ(admit(dev, "10.1.2.3", 10900), kDenied);  // past the port range
  EXPECT_EQ(admit(dev, "fd12::1", 10809), Status::Code::kOk);
  EXPECT_EQ(admit(dev, "fe80::1", 10809), kDenied);
  EXPECT_EQ(compute_->DeleteSecurityGroup(sg->group_id).code(), Status::Code::kBusy);
  Reopen();
  EXPECT_EQ(admit(dev, "10.1.2.3", 10809), Status::Code::kOk);
  EXPECT_EQ(admit(dev, "11.1.2.3", 10809), kDenied);
  ASSERT_TRUE(
      compute_->RevokeRules(sg->group_id, false, {Rule("tcp", 10800, 10899, "10.0.0.0/8")}).ok());
  EXPECT_EQ(admit(dev, "10.1.2.3", 10809), kDenied);
  auto open = compute_->CreateSecurityGroup("open", "all", {});
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(authorize(open->group_id, Rule("-1", 0, 0, "0.0.0.0/0")), Status::Code::kOk);
  ASSERT_TRUE(
      compute_->SetInstanceSecurityGroups((*instances)[0].instance_id, {open->group_id}).ok());
  EXPECT_EQ(admit(dev, "11.1.2.3", 1), Status::Code::kOk);
  EXPECT_TRUE(compute_->DeleteSecurityGroup(sg->group_id).ok());
  Reopen();
  EXPECT_EQ(compute_->ListSecurityGroups().size(), 2u);  // "open" and the default group
  EXPECT_EQ(compute_->DescribeInstance((*instances)[0].instance_id)->security_group_ids,
            std::vector<std::string>{open->group_id});
}

// EC2's rule model: several rules in one call (all or none), ids that survive a reopen, revoke by
// id or by permission, outbound rules with EC2's default, descriptions, and the default group.
TEST_F(ComputeTest, SecurityGroupRulesHaveIdsDescriptionsAndDirections) {
  auto groups = compute_->ListSecurityGroups();
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].group_name, "default");
  EXPECT_EQ(compute_->DeleteSecurityGroup(groups[0].group_id).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(compute_->CreateSecurityGroup("default", "x", {}).status().code(),
            Status::Code::kInvalidArgument);
  auto sg = compute_->CreateSecurityGroup("db", "database", {});
  ASSERT_TRUE(sg.ok());
  ASSERT_EQ(sg->egress.size(), 1u);  // EC2's default: every protocol to 0.0.0.0/0
  EXPECT_EQ(sg->egress[0].protocol, "-1");
  EXPECT_EQ(sg->egress[0].cidr, "0.0.0.0/0");
  SecurityGroupRule ssh = Rule("tcp", 22, 22, "10.0.0.0/8", "ssh");
  SecurityGroupRule web = Rule("6", 80, 80, "::/0");  // tcp by number
  SecurityGroupRule ping = Rule("icmp", -1, -1, "0.0.0.0/0");
  auto added = compute_->AuthorizeRules(sg->group_id, false, {ssh, web, ping});
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  ASSERT_EQ(added->size(), 3u);
  EXPECT_TRUE((*added)[0].rule_id.starts_with("sgr-"));
  EXPECT_EQ((*added)[1].protocol, "tcp");
  // all or none: one duplicate refuses the whole call
  SecurityGroupRule other = Rule("tcp", 443, 443, "10.0.0.0/8");
  EXPECT_EQ(compute_->AuthorizeRules(sg->group_id, false, {other, ssh}).status().code(),
            Status::Code::kAlreadyExists);
  EXPECT_EQ(compute_->AuthorizeRules(sg->group_id, false, {other, other}).status().code(),
            Status::Code::kAlreadyExists);
  EXPECT_EQ(compute_->DescribeSecurityGroup(sg->group_id)->ingress.size(), 3u);
  SecurityGroupRule renamed = ssh;
  renamed.description = "admin ssh";
  ASSERT_TRUE(compute_->UpdateRuleDescriptions(sg->group_id, false, {renamed}).ok());
  ASSERT_TRUE(compute_->RevokeRules(sg->group_id, true, {sg->egress[0]}).ok());
  Reopen();
  auto g = compute_->DescribeSecurityGroup(sg->group_id);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->egress.empty());
  ASSERT_EQ(g->ingress.size(), 3u);
  EXPECT_EQ(g->ingress[0].description, "admin ssh");
  EXPECT_EQ(g->ingress[1].rule_id, (*added)[1].rule_id);
  SecurityGroupRule by_id;
  by_id.rule_id = (*added)[1].rule_id;
  auto removed = compute_->RevokeRules(sg->group_id, false, {by_id});
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ((*removed)[0].cidr, "::/0");
  EXPECT_EQ(compute_->RevokeRules(sg->group_id, false, {by_id}).status().code(),
            Status::Code::kNotFound);
  EXPECT_EQ(compute_->RevokeRules(sg->group_id, false, {other}).status().code(),
            Status::Code::kNotFound);
  EXPECT_EQ(compute_->ListSecurityGroups().size(), 2u);  // one default group, still
}

// Key pairs: x509 ones are certificates of the pool's CA, found by fingerprint; PSK ones keep
// their key for the server; both survive a reopen; an instance launched with one admits only a
// peer that proved it.
// A pool whose KMS holds keys opens read-only without its root key (issue 32): encrypted volumes
// are refused, plaintext ones read but never written, no change is made; with the key it is
// writable again.
TEST_F(ComputeTest, WithoutItsRootKeyAKmsPoolOpensReadOnly) {
  const std::string root(32, '\x5a');
  EXPECT_TRUE(pool_->Info().read_only.empty());  // no KMS yet: nothing to need a key for
  ReopenWithKmsRoot(root);
  auto secret = compute_->CreateVolume(VolumeSpec{kVolumeBytes, "", "gp3", ""}, true, "");
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  auto plain = compute_->CreateVolume(VolumeSpec{kVolumeBytes, "", "gp3", ""}, false, "");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  const auto pattern = test::RandomBytes(4096, 9);
  ASSERT_TRUE((*compute_->OpenVolume(plain->volume_id))->Write(0, pattern, true).ok());

  ReopenWithKmsRoot("");
  EXPECT_NE(pool_->Info().read_only.find("--kms-root-key"), std::string::npos);
  auto refused = compute_->OpenVolume(secret->volume_id);
  EXPECT_FALSE(refused.ok());
  auto v = compute_->OpenVolume(plain->volume_id);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE((*v)->read_only());
  std::vector<std::byte> got(4096);
  ASSERT_TRUE((*v)->Read(0, got).ok());
  EXPECT_EQ(got, pattern);
  EXPECT_EQ((*v)->Write(0, pattern, false).code(), Status::Code::kReadOnly);
  v->reset();
  auto made = compute_->CreateVolume(VolumeSpec{kVolumeBytes, "", "gp3", ""}, false, "");
  EXPECT_EQ(made.status().code(), Status::Code::kReadOnly) << made.status().ToString();
  EXPECT_EQ(pool_->DeleteVolume(plain->volume_id).code(), Status::Code::kReadOnly);
  EXPECT_EQ(pool_->ListVolumes().size(), 2u);

  ReopenWithKmsRoot(root);
  EXPECT_TRUE(pool_->Info().read_only.empty());
  auto w = compute_->OpenVolume(secret->volume_id);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_TRUE((*w)->Write(0, pattern, true).ok());
}

// EC2's RegisterImage takes Encrypted/KmsKeyId for a new empty volume: the image keeps them
// (across a reopen), and every launch encrypts that volume under the key with a data key of its
// own; encrypting a plaintext snapshot at registration is still refused.
TEST_F(ComputeTest, AnImagesEmptyVolumeIsEncryptedAtEachLaunch) {
  const std::string root(32, '\x33');
  ReopenWithKmsRoot(root);
  auto key = compute_->kms()->CreateKey("data disks", {});
  ASSERT_TRUE(key.ok());
  ImageSpec spec = Spec("enc-data", SnapshotWith(test::RandomBytes(4096, 3)));
  spec.mappings[1].encrypted = true;
  spec.mappings[1].kms_key_id = key->key_id;
  auto image = compute_->RegisterImage(spec);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  ImageSpec refused = Spec("enc-root", spec.mappings[0].snapshot_id);
  refused.mappings[0].encrypted = true;  // a plaintext snapshot: re-encrypting it is a launch's
  EXPECT_EQ(compute_->RegisterImage(refused).status().code(), Status::Code::kNotSupported);
  ReopenWithKmsRoot(root);  // the image kept its mapping's encryption
  std::vector<std::string> data_keys;
  for (int launch = 0; launch < 2; launch++) {
    auto launched = compute_->RunInstances(LaunchSpec(image->image_id));
    ASSERT_TRUE(launched.ok()) << launched.status().ToString();
    for (const InstanceDevice& d : launched->front().devices) {
      if (d.volume_id.empty()) {
        continue;  // instance store
      }
      auto vol = pool_->DescribeVolume(d.volume_id);
      ASSERT_TRUE(vol.ok());
      const EncryptionInfo e = DescribeEncryption(vol->encryption);
      if (d.device_name == "/dev/sdf") {
        EXPECT_TRUE(e.encrypted);
        EXPECT_EQ(e.kms_key_arn, key->arn);
        data_keys.push_back(e.data_key_id);
      } else {
        EXPECT_FALSE(e.encrypted) << d.device_name;  // the root, as its plaintext snapshot
      }
    }
  }
  ASSERT_EQ(data_keys.size(), 2u);
  EXPECT_NE(data_keys[0], data_keys[1]);  // each launch's empty volume has its own data key
}

TEST_F(ComputeTest, KeyPairsAreIdentitiesThatSurviveAReopen) {
  auto x509 = compute_->CreateKeyPair("alice", "x509");
  ASSERT_TRUE(x509.ok()) << x509.status().ToString();
  EXPECT_NE(x509->second.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(x509->second.find("PRIVATE KEY"), std::string::npos);
  auto psk = compute_->CreateKeyPair("bob", "psk");
  ASSERT_TRUE(psk.ok()) << psk.status().ToString();
  EXPECT_EQ(psk->second.substr(0, 4), "bob:");
  EXPECT_EQ(psk->second.size(), 4 + 64 + 1u);
  EXPECT_EQ(compute_->CreateKeyPair("bob", "psk").status().code(), Status::Code::kAlreadyExists);
  EXPECT_EQ(compute_->CreateKeyPair("carol", "rsa").status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(compute_->CreateKeyPair("a:b", "psk").status().code(), Status::Code::kInvalidArgument);
  const std::string cert = x509->second.substr(0, x509->second.find("-----BEGIN", 10));
  EXPECT_EQ(compute_->ImportKeyPair("alice2", "not a certificate").status().code(),
            Status::Code::kInvalidArgument);
  auto imported = compute_->ImportKeyPair("alice2", cert);
  ASSERT_TRUE(imported.ok()) << imported.status().ToString();
  EXPECT_EQ(imported->fingerprint, x509->first.fingerprint);
  auto image = compute_->RegisterImage(Spec("web", SnapshotWith(test::RandomBytes(4096, 4))));
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(
      compute_
          ->RunInstances(LaunchSpec(image->image_id, [&](RunSpec& r) { r.key_name = "nobody"; }))
          .status()
          .code(),
      Status::Code::kNotFound);
  auto instances =
      compute_->RunInstances(LaunchSpec(image->image_id, [&](RunSpec& r) { r.key_name = "bob"; }));
  ASSERT_TRUE(instances.ok()) << instances.status().ToString();
  const std::string dev = (*instances)[0].instance_id + "/xvda";
  Reopen();
  EXPECT_EQ(compute_->ListKeyPairs().size(), 3u);
  const std::string hex = psk->second.substr(4, 64);
  auto key = compute_->KeyPairPsk("bob");
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->size(), 32u);
  EXPECT_FALSE(compute_->KeyPairPsk("alice").has_value());  // not a PSK
  EXPECT_EQ(compute_->KeyPairOfCertificate(x509->first.fingerprint).value_or(""), "alice");
  EXPECT_EQ(compute_->AdmitExport(dev, ExportPeer{"", 0, ""}).code(),
            Status::Code::kPermissionDenied);
  EXPECT_EQ(compute_->AdmitExport(dev, ExportPeer{"", 0, "alice"}).code(),
            Status::Code::kPermissionDenied);
  EXPECT_TRUE(compute_->AdmitExport(dev, ExportPeer{"", 0, "bob"}).ok());
  ASSERT_TRUE(compute_->DeleteKeyPair("bob").ok());
  EXPECT_EQ(compute_->DeleteKeyPair("bob").code(), Status::Code::kNotFound);
  Reopen();
  EXPECT_FALSE(compute_->KeyPairPsk("bob").has_value());
  // (as EC2: the instance still requires the key it was launched with)
  EXPECT_EQ(compute_->AdmitExport(dev, ExportPeer{"", 0, ""}).code(),
            Status::Code::kPermissionDenied);
}

}  // namespace strata
