// A program that embeds Strata's EC2 layer through the installed package (README "Embedding"):
// it makes a pool in DIR, writes a "root file system" to a volume, snapshots it, registers the
// snapshot as a machine image and launches two instances of it. Each instance boots from its
// own copy-on-write clone: both read the image's bytes, and what one writes the other never
// sees. Exits 0 when every byte is where it should be.
//
//   launch DIR
#include <strata/compute.h>
#include <strata/strata.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

int Fail(const char* what, const strata::Status& s) {
  std::fprintf(stderr, "launch: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

std::vector<std::byte> Pattern(size_t n, unsigned char seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; i++) {
    out[i] = static_cast<std::byte>((i * 167 + seed) & 0xff);
  }
  return out;
}

// The root volume of `instance` (its device /dev/xvda), opened.
strata::Result<std::shared_ptr<strata::Volume>> OpenRoot(strata::Pool* pool,
                                                         const strata::InstanceInfo& instance) {
  for (const strata::InstanceDevice& d : instance.devices) {
    if (d.device_name == instance.root_device_name) {
      return pool->OpenVolume(d.volume_id);
    }
  }
  return strata::Status::NotFound("instance " + instance.instance_id + " has no root device");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: launch DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  strata::PoolOptions options;
  if (strata::Status s = strata::Pool::Create(dir, options); !s.ok()) {
    return Fail("create the pool", s);
  }
  auto pool = strata::Pool::Open(dir, options);
  if (!pool.ok()) {
    return Fail("open the pool", pool.status());
  }
  auto compute = strata::Compute::Open(pool->get(), strata::ComputeOptions{});
  if (!compute.ok()) {
    return Fail("open the EC2 layer", compute.status());
  }
  // The "root file system": 1 MiB of pattern at 1 MiB into an 8 GiB volume.
  auto root = (*pool)->CreateVolume(strata::VolumeSpec{8ull << 30, "golden-root", "gp3", ""});
  if (!root.ok()) {
    return Fail("create the root volume", root.status());
  }
  const std::vector<std::byte> image_bytes = Pattern(1 << 20, 7);
  {
    auto volume = (*pool)->OpenVolume(root->volume_id);
    if (!volume.ok()) {
      return Fail("open the root volume", volume.status());
    }
    if (strata::Status s = (*volume)->Write(1 << 20, image_bytes, /*fua=*/true); !s.ok()) {
      return Fail("write the root volume", s);
    }
  }
  auto snapshot = (*pool)->CreateSnapshot(root->volume_id, "golden root");
  if (!snapshot.ok()) {
    return Fail("snapshot", snapshot.status());
  }
  strata::ImageSpec image_spec;
  image_spec.name = "golden";
  image_spec.mappings.push_back({.device_name = "/dev/xvda", .snapshot_id = snapshot->snapshot_id});
  auto image = (*compute)->RegisterImage(image_spec);
  if (!image.ok()) {
    return Fail("register the image", image.status());
  }
  strata::RunSpec run;
  run.image_id = image->image_id;
  run.count = 2;
  auto instances = (*compute)->RunInstances(run);
  if (!instances.ok()) {
    return Fail("run two instances", instances.status());
  }
  auto first = OpenRoot(pool->get(), (*instances)[0]);
  auto second = OpenRoot(pool->get(), (*instances)[1]);
  if (!first.ok() || !second.ok()) {
    return Fail("open the instances' roots", first.ok() ? second.status() : first.status());
  }
  const std::vector<std::byte> changed = Pattern(1 << 20, 99);
  if (strata::Status s = (*first)->Write(1 << 20, changed, /*fua=*/true); !s.ok()) {
    return Fail("write the first instance's root", s);
  }
  std::vector<std::byte> got(image_bytes.size());
  if (strata::Status s = (*first)->Read(1 << 20, got); !s.ok() || got != changed) {
    return Fail("the first root's bytes", s.ok() ? strata::Status::Corruption("differ") : s);
  }
  if (strata::Status s = (*second)->Read(1 << 20, got); !s.ok() || got != image_bytes) {
    return Fail("the second root's bytes", s.ok() ? strata::Status::Corruption("differ") : s);
  }
  std::printf("launch: %s: image %s, instances %s and %s: each on its own clone\n", dir.c_str(),
              image->image_id.c_str(), (*instances)[0].instance_id.c_str(),
              (*instances)[1].instance_id.c_str());
  return 0;
}
