// libFuzzer target: hostile remote content. A small snapshot and an incremental child of it
// (whose changed block spans packs: it borrows pieces from the parent's) are pushed once into a
// simulated bucket; each input then rewrites one of the child's objects (the manifest, the root
// node, a pack index, a pack) and the eager restore and the lazy reader (the path strata-nbd
// serves reads through) read the child. A rewritten node or manifest is made self-consistent first
// (its trailer, its id, the manifest's checksum and root all match), as a writer of the bucket
// would make it, so the fuzzer reaches what lies behind the checksums. Every input must end in data
// or an error: no crash, no sanitizer report, no allocation sized by a claim (libFuzzer's
// -rss_limit_mb and -malloc_limit_mb catch one), no hang.
//
//   tools/fuzz.sh 60 remote_fuzz
#include <cstdlib>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "strata/pool.h"
#include "strata/remote.h"

#include "fuzz_pool.h"
#include "io/sim_env.h"
#include "remote/remote_format.h"
#include "remote/remote_internal.h"
#include "sim/sim_object_store.h"
#include "util/coding.h"

namespace {

using strata::remote::Hash;

constexpr uint64_t kBlock = 512 << 10;

struct Fixture {
  strata::SimEnv env{3};
  std::unique_ptr<strata::Pool> pool;
  strata::test::SimBucket bucket;
  std::map<std::string, std::string> pristine;
  strata::RemoteSpec spec;
  std::string snapshot_id;       // the child
  std::string parent_index_key;  // the parent's pack's index (version 2)
  std::string child_index_key;   // the child's (version 3: it holds a spanning block)

  Fixture() {
    pool = strata::fuzz::MakePool(&env, "remote-fuzz", /*with_volume=*/false);
    spec.name = "fuzz";
    spec.url = "s3://fuzz";
    auto vol = pool->CreateVolume(strata::VolumeSpec{3 * kBlock, "", "unlimited", ""});
    if (!vol.ok()) {
      std::abort();
    }
    std::vector<std::byte> data(3 * kBlock);
    for (size_t i = 0; i < data.size(); i++) {
      data[i] = static_cast<std::byte>((i * 7919) >> 9);  // compressible, not zero
    }
    auto handle = pool->OpenVolume(vol->volume_id);
    auto snap = handle.ok() && (*handle)->Write(0, data, true).ok()
                    ? pool->CreateSnapshots({vol->volume_id}, "fuzz")
                    : strata::Result<std::vector<strata::SnapshotInfo>>(handle.status());
    if (!snap.ok()) {
      std::abort();
    }
    strata::remote::RemoteTuning tuning;
    tuning.min_borrow_bytes = 1;  // (the data compresses well: borrow whatever is the same)
    auto remote = strata::remote::OpenRemoteOn(
        spec, std::make_unique<strata::test::SimObjectStore>(&bucket, 1), tuning);
    if (!remote->PushSnapshot(pool.get(), snap->front().snapshot_id, {}, {}, nullptr).ok()) {
      std::abort();
    }
    parent_index_key = KeyWithPrefix("index/");
    std::vector<std::byte> change(4096, std::byte{0x5a});
    auto child = (*handle)->Write(kBlock + 2 * (64 << 10), change, true).ok()
                     ? pool->CreateSnapshots({vol->volume_id}, "child")
                     : strata::Result<std::vector<strata::SnapshotInfo>>(handle.status());
    auto pushed =
        child.ok() ? remote->PushSnapshot(pool.get(), child->front().snapshot_id, {}, {}, nullptr)
                   : strata::Result<strata::PushStats>(child.status());
    if (!pushed.ok() || pushed->pieces_borrowed == 0) {
      std::abort();
    }
    snapshot_id = child->front().snapshot_id;
    for (const auto& [key, bytes] : bucket.objects) {
      if (key.starts_with("index/") && key != parent_index_key) {
        child_index_key = key;
      }
    }
    pristine = bucket.objects;
  }

  // The manifest's JSON line, with the root and checksum rewritten to `root`.
  void SetRoot(const Hash& root) {
    std::string& manifest = bucket.objects.at(strata::remote::ManifestKey(snapshot_id));
    auto m = nlohmann::json::parse(manifest.substr(0, manifest.find('\n')));
    m["root"] = strata::remote::HexOf(root);
    SetManifestLine(m.dump());
  }
  void SetManifestLine(const std::string& line) {
    bucket.objects[strata::remote::ManifestKey(snapshot_id)] =
        line + "\n" + strata::remote::HexOf(strata::remote::Sha256(line.data(), line.size())) +
        "\n";
  }
  std::string KeyWithPrefix(const std::string& prefix) const {
    for (const auto& [key, bytes] : bucket.objects) {
      if (key.starts_with(prefix)) {
        return key;
      }
    }
    std::abort();
  }
};

// An object of the remote format around `entries` (as many whole entries of `entry` bytes as
// the input holds): magic, version, level, count, the entries, the XXH3 trailer.
std::string Sealed(const char* magic, uint32_t level, size_t entry, const std::string& entries,
                   uint32_t version = strata::remote::kFormatVersion) {
  std::string out(magic, 8);
  char header[12];
  strata::PutLittleEndian32(header, version);
  strata::PutLittleEndian32(header + 4, level);
  strata::PutLittleEndian32(header + 8, static_cast<uint32_t>(entries.size() / entry));
  out.append(header, 12);
  out.append(entries, 0, entries.size() / entry * entry);
  char sum[8];
  strata::PutLittleEndian64(sum, XXH3_64bits(out.data(), out.size()));
  return out.append(sum, 8);
}

// A node; its id is its SHA-256, so the manifest can point at it.
std::string SealedNode(uint32_t level, const std::string& entries) {
  return Sealed("STRTNODE", level, 4 + (level == 0 ? 92 : 32), entries);
}

// A pack index (version 2: 92-byte refs and 288-byte piece tables), with its trailer right:
// what the lazy reader's piece path trusts only once the names match.
std::string SealedIndex(const std::string& entries) {
  return Sealed("STRTPIDX", 0, 92 + 8 * 36, entries);
}
// Version 3: piece tables of 8 x 76 bytes (length, hash, pack, offset), spanning refs allowed.
std::string SealedPlacedIndex(const std::string& entries) {
  return Sealed("STRTPIDX", 0, 92 + 8 * 76, entries, strata::remote::kSpanningIndexVersion);
}

void Mutate(Fixture* fx, uint8_t what, const std::string& input) {
  switch (what % 8) {
    case 0: {  // a self-consistent leaf of hostile refs
      const std::string node = SealedNode(0, input);
      const Hash id = strata::remote::Sha256(node.data(), node.size());
      fx->bucket.objects[strata::remote::NodeKey(id)] = node;
      fx->SetRoot(id);
      break;
    }
    case 1: {  // a self-consistent inner node (the depth stays the manifest's: 0)
      const std::string node = SealedNode(1 + (input.empty() ? 0 : input[0] % 3), input);
      const Hash id = strata::remote::Sha256(node.data(), node.size());
      fx->bucket.objects[strata::remote::NodeKey(id)] = node;
      fx->SetRoot(id);
      break;
    }
    case 2:  // a manifest line with a right checksum
      fx->SetManifestLine(input);
      break;
    case 3:  // the pack's bytes
      fx->bucket.objects[fx->KeyWithPrefix("packs/")] = input;
      break;
    case 4:  // the child's pack index, as is
      fx->bucket.objects[fx->child_index_key] = input;
      break;
    case 5:  // a self-consistent index of the pack the child borrows from
      fx->bucket.objects[fx->parent_index_key] = SealedIndex(input);
      break;
    case 6:  // a self-consistent index of the child's pack, with places
      fx->bucket.objects[fx->child_index_key] = SealedPlacedIndex(input);
      break;
    case 7: {  // the child's pack's bytes (the one holding its spanning block)
      const std::string id = fx->child_index_key.substr(std::strlen("index/"));
      fx->bucket.objects["packs/" + id.substr(0, 2) + "/" + id] = input;
      break;
    }
  }
}

void ReadLazily(Fixture* fx) {
  auto manifest = fx->bucket.objects.find(strata::remote::ManifestKey(fx->snapshot_id));
  if (manifest == fx->bucket.objects.end()) {
    return;
  }
  auto reader = strata::remote::SnapshotReader::OpenWithManifest(
      "fuzz", std::make_unique<strata::test::SimObjectStore>(&fx->bucket, 2), fx->snapshot_id,
      manifest->second);
  if (!reader.ok()) {
    return;
  }
  const uint64_t leaves = ((*reader)->volume_bytes() / kBlock + 1023) / 1024;
  for (uint64_t leaf = 0; leaf < std::min<uint64_t>(leaves, 4); leaf++) {
    auto refs = (*reader)->Leaf(leaf);
    if (!refs.ok()) {
      continue;
    }
    if (refs->size() > 1024) {
      std::abort();  // a leaf has at most kFanout entries
    }
    // As the hydrator does: a ref is checked against the block size before it sizes a buffer.
    std::vector<std::pair<uint64_t, strata::remote::BlockRef>> fetch;
    for (const auto& ref : *refs) {
      if (strata::remote::CheckRef(ref.second, "fuzz").ok() && ref.second.raw <= kBlock) {
        fetch.push_back(ref);
      }
    }
    std::vector<std::vector<std::byte>> raw(fetch.size());
    std::vector<std::span<std::byte>> out;
    for (size_t i = 0; i < fetch.size(); i++) {
      raw[i].resize(fetch[i].second.raw);
      out.emplace_back(raw[i]);
    }
    std::vector<strata::Status> status;
    (*reader)->Fetch(fetch, out, &status);
    if (status.size() != fetch.size()) {
      std::abort();  // every block gets its status
    }
    // As a lazy read's miss does: the first piece alone, and the rest of the block.
    std::vector<strata::remote::PieceFetch> pieces;
    for (size_t i = 0; i < fetch.size(); i++) {
      const strata::remote::BlockRef& ref = fetch[i].second;
      const uint32_t count = strata::remote::PieceCount(ref);
      if (count == 0) {
        continue;
      }
      pieces.push_back({fetch[i].first, ref, 0, 1, out[i].first(strata::remote::PieceRaw(ref, 0)),
                        strata::Status::OK(), 0});
      if (count > 1) {
        pieces.push_back({fetch[i].first, ref, 1, count,
                          out[i].subspan(strata::remote::kPieceBytes), strata::Status::OK(), 0});
      }
    }
    (*reader)->FetchPieces(&pieces);
  }
}

void RestoreEagerly(Fixture* fx) {
  auto remote = strata::remote::OpenRemoteOn(
      fx->spec, std::make_unique<strata::test::SimObjectStore>(&fx->bucket, 3));
  const size_t volumes = fx->pool->ListVolumes().size();
  auto restored = remote->RestoreVolume(fx->pool.get(), fx->snapshot_id,
                                        strata::VolumeSpec{0, "", "unlimited", ""}, {}, nullptr);
  if (restored.ok() && !fx->pool->DeleteVolume(restored->volume.volume_id).ok()) {
    std::abort();
  }
  if (fx->pool->ListVolumes().size() != volumes) {
    std::abort();  // a failed restore left its volume behind
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();
  if (size == 0) {
    return 0;
  }
  fx->bucket.objects = fx->pristine;
  Mutate(fx, data[0], std::string(reinterpret_cast<const char*>(data) + 1, size - 1));
  ReadLazily(fx);
  RestoreEagerly(fx);
  return 0;
}
