// A program that embeds Strata through its installed package (README "Embedding"): it makes a
// pool in DIR, a thin volume, writes and flushes (durable from here on), takes an instant
// snapshot, overwrites the volume, and reads the snapshot back: the snapshot holds the first
// write, the volume the second. Exits 0 when every byte is where it should be.
//
//   embed DIR
#include <strata/strata.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

int Fail(const char* what, const strata::Status& s) {
  std::fprintf(stderr, "embed: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

std::vector<std::byte> Pattern(size_t n, unsigned char seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; i++) {
    out[i] = static_cast<std::byte>((i * 131 + seed) & 0xff);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: embed DIR\n");
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
  strata::VolumeSpec spec;
  spec.size_bytes = 64ull << 20;
  spec.volume_type = "unlimited";
  auto info = (*pool)->CreateVolume(spec);
  if (!info.ok()) {
    return Fail("create a volume", info.status());
  }
  auto volume = (*pool)->OpenVolume(info->volume_id);
  if (!volume.ok()) {
    return Fail("open the volume", volume.status());
  }
  const std::vector<std::byte> first = Pattern(1 << 20, 1), second = Pattern(1 << 20, 2);
  if (strata::Status s = (*volume)->Write(4096, first, /*fua=*/false); !s.ok()) {
    return Fail("write", s);
  }
  if (strata::Status s = (*volume)->Flush(); !s.ok()) {
    return Fail("flush", s);
  }
  auto snapshot = (*pool)->CreateSnapshot(info->volume_id, "after the first write");
  if (!snapshot.ok()) {
    return Fail("snapshot", snapshot.status());
  }
  if (strata::Status s = (*volume)->Write(4096, second, /*fua=*/true); !s.ok()) {
    return Fail("overwrite", s);
  }
  auto frozen = (*pool)->OpenSnapshot(snapshot->snapshot_id);
  if (!frozen.ok()) {
    return Fail("open the snapshot", frozen.status());
  }
  std::vector<std::byte> got(first.size());
  if (strata::Status s = (*frozen)->Read(4096, got); !s.ok() || got != first) {
    return Fail("the snapshot's bytes", s.ok() ? strata::Status::Corruption("differ") : s);
  }
  if (strata::Status s = (*volume)->Read(4096, got); !s.ok() || got != second) {
    return Fail("the volume's bytes", s.ok() ? strata::Status::Corruption("differ") : s);
  }
  std::printf("embed: %s: volume %s, snapshot %s: every byte where it should be\n", dir.c_str(),
              info->volume_id.c_str(), snapshot->snapshot_id.c_str());
  return 0;
}
