// Encrypted snapshots in a remote (docs/remote-format.md "Encrypted snapshots"), on the in-memory
// bucket: what leaves is the pool's ciphertext under keyed block names, a restore needs the key
// and checks every name under it, and no equality leaks across keys. The real store, KMS and
// second host are tests/integration/encryption_interop.sh's.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "strata/pool.h"
#include "strata/remote.h"

#include "kms/xts.h"
#include "remote/remote_format.h"
#include "remote/remote_internal.h"
#include "sim/sim_object_store.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint64_t kBlock = 512 << 10;  // the remote's block
constexpr uint64_t kSize = 6 * kBlock;
using Bytes = std::vector<std::byte>;

// Incompressible data (it is stored as it is): if any plaintext leaks into the bucket, a scan
// for 4 KiB of it finds it.
Bytes Marked(uint64_t bytes, uint64_t seed = 7) { return test::RandomBytes(bytes, seed); }

class RemoteEncryptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PoolOptions options;
    options.commit_interval_ms = 0;
    for (auto* p : {&a_, &b_}) {
      ASSERT_TRUE(Pool::Create(p->dir.path(), options).ok());
      auto pool = Pool::Open(p->dir.path(), options);
      ASSERT_TRUE(pool.ok()) << pool.status().ToString();
      p->pool = std::move(*pool);
    }
    auto cipher = kms::XtsCipher::CreateRandom();
    ASSERT_TRUE(cipher.ok());
    cipher_ = std::move(*cipher);
    key_.block_id_key = std::string(32, 'k');
  }

  std::unique_ptr<Remote> OpenRemote() {
    RemoteSpec spec;
    spec.name = "sim";
    spec.url = "s3://sim";
    remote::RemoteTuning tuning;
    tuning.env = &bucket_.clock;
    return remote::OpenRemoteOn(spec, std::make_unique<test::SimObjectStore>(&bucket_, 1), tuning);
  }

  // A volume of `pool` holding `data` (through the cipher when `envelope` is set); its snapshot.
  std::string Snapshot(Pool* pool, const std::string& envelope, const Bytes& data) {
    VolumeSpec spec;
    spec.size_bytes = kSize;
    spec.volume_type = "unlimited";
    spec.encryption = envelope;
    auto info = pool->CreateVolume(spec);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    OpenOptions o;
    if (!envelope.empty()) {
      o.cipher = cipher_;
    }
    auto v = pool->OpenVolume(info->volume_id, o);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_TRUE((*v)->Write(0, data, false).ok());
    EXPECT_TRUE((*v)->Flush().ok());
    auto snap = pool->CreateSnapshot(info->volume_id, "");
    EXPECT_TRUE(snap.ok()) << snap.status().ToString();
    return snap->snapshot_id;
  }

  Bytes ReadVolume(Pool* pool, const std::string& id, bool with_key) {
    OpenOptions o;
    if (with_key) {
      o.cipher = cipher_;
    }
    auto v = pool->OpenVolume(id, o);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    Bytes out(kSize);
    EXPECT_TRUE((*v)->Read(0, out).ok());
    return out;
  }

  // Whether any object of the bucket holds `needle`.
  bool BucketHolds(const Bytes& needle) {
    const std::string n(reinterpret_cast<const char*>(needle.data()), needle.size());
    for (const auto& [key, value] : bucket_.objects) {
      if (value.find(n) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  struct Host {
    test::TempDir dir;
    std::unique_ptr<Pool> pool;
  };
  Host a_, b_;
  test::SimBucket bucket_;
  std::shared_ptr<BlockCipher> cipher_;
  RemoteEncryption key_;
  const std::string envelope_ = "{\"test\":\"lineage-1\"}";
};

TEST_F(RemoteEncryptionTest, CiphertextGoesUnderKeyedNamesAndRestoresOnlyWithTheKey) {
  const Bytes data = Marked(kSize - kBlock);  // the last block stays a hole
  const std::string snap = Snapshot(a_.pool.get(), envelope_, data);
  auto remote = OpenRemote();

  // Refused without the key, and a key for a plaintext snapshot is refused too.
  auto refused = remote->PushSnapshot(a_.pool.get(), snap, {}, {}, nullptr);
  ASSERT_EQ(refused.status().code(), Status::Code::kNotSupported) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("KMS key"), std::string::npos);
  auto pushed = remote->PushSnapshot(a_.pool.get(), snap, {}, key_, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(pushed->blocks_uploaded, 5u);
  EXPECT_EQ(pushed->snapshot.encryption, envelope_);
  EXPECT_FALSE(BucketHolds(Bytes(data.begin(), data.begin() + 4096)));  // 4 KiB of the mark

  // Listed as encrypted; a restore without the key or with another key gets nothing.
  auto listed = remote->DescribeSnapshot(snap);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->encryption, envelope_);
  const size_t volumes_before = b_.pool->ListVolumes().size();
  VolumeSpec spec;
  spec.volume_type = "unlimited";
  auto no_key = remote->RestoreVolume(b_.pool.get(), snap, spec, {}, nullptr);
  EXPECT_EQ(no_key.status().code(), Status::Code::kNotSupported);
  RemoteEncryption wrong = key_;
  wrong.block_id_key[0] = 'w';
  auto wrong_key = remote->RestoreVolume(b_.pool.get(), snap, spec, wrong, nullptr);
  EXPECT_EQ(wrong_key.status().code(), Status::Code::kCorruption) << wrong_key.status().ToString();
  EXPECT_EQ(b_.pool->ListVolumes().size(), volumes_before);  // nothing half-restored stays

  // With the key: the ciphertext lands unchanged, under the lineage's envelope, and the data
  // key decrypts it on the other pool.
  auto restored = remote->RestoreVolume(b_.pool.get(), snap, spec, key_, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(restored->volume.encryption, envelope_);
  Bytes want = data;
  want.resize(kSize);
  EXPECT_TRUE(ReadVolume(b_.pool.get(), restored->volume.volume_id, true) == want);
  // A re-wrapped envelope (the EC2 layer's, for another KMS) is the one the volume keeps.
  RemoteEncryption rewrapped = key_;
  rewrapped.envelope = "{\"test\":\"lineage-1, wrapped here\"}";
  auto pulled = remote->PullSnapshot(b_.pool.get(), snap, rewrapped, nullptr);
  ASSERT_TRUE(pulled.ok()) << pulled.status().ToString();
  EXPECT_EQ(pulled->encryption, rewrapped.envelope);
}

TEST_F(RemoteEncryptionTest, DedupStaysWithinALineage) {
  const Bytes data = Marked(kSize);
  const std::string plain = Snapshot(a_.pool.get(), "", data);
  const std::string first = Snapshot(a_.pool.get(), envelope_, data);
  auto remote = OpenRemote();
  auto p = remote->PushSnapshot(a_.pool.get(), plain, {}, {}, nullptr);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(BucketHolds(Bytes(data.begin(), data.begin() + 4096)));  // the scan finds plaintext
  // The same plaintext under a key shares nothing with it.
  auto e = remote->PushSnapshot(a_.pool.get(), first, {}, key_, nullptr);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->blocks_deduplicated, 0u);
  EXPECT_EQ(e->blocks_uploaded, 6u);

  // A clone in the same lineage (same data key, same logical blocks) dedups fully; one block
  // changed is the one block sent.
  auto clone_spec = VolumeSpec{};
  clone_spec.snapshot_id = first;
  clone_spec.volume_type = "unlimited";
  auto clone = a_.pool->CreateVolume(clone_spec);
  ASSERT_TRUE(clone.ok()) << clone.status().ToString();
  OpenOptions o;
  o.cipher = cipher_;
  auto v = a_.pool->OpenVolume(clone->volume_id, o);
  ASSERT_TRUE(v.ok());
  const Bytes change(4096, std::byte{0x5a});
  ASSERT_TRUE((*v)->Write(2 * kBlock + 8192, change, false).ok());
  ASSERT_TRUE((*v)->Flush().ok());
  auto second = a_.pool->CreateSnapshot(clone->volume_id, "");
  ASSERT_TRUE(second.ok());
  auto c = remote->PushSnapshot(a_.pool.get(), second->snapshot_id, {}, key_, nullptr);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->blocks_uploaded, 1u);
  EXPECT_EQ(c->blocks_deduplicated, 5u);
}

TEST_F(RemoteEncryptionTest, AManifestThatHidesItsEncryptionIsRefused) {
  const std::string snap = Snapshot(a_.pool.get(), envelope_, Marked(kBlock));
  const std::string again = Snapshot(a_.pool.get(), envelope_, Marked(kBlock, 8));
  auto remote = OpenRemote();
  ASSERT_TRUE(remote->PushSnapshot(a_.pool.get(), snap, {}, key_, nullptr).ok());
  ASSERT_TRUE(remote->PushSnapshot(a_.pool.get(), again, {}, key_, nullptr).ok());
  // A writer of the bucket rewrites the manifest, self-consistently, to say plaintext ids
  // over the same envelope: refused as inconsistent, never read as plaintext.
  std::string& m = bucket_.objects.at("snapshots/" + snap);
  const size_t nl = m.find('\n');
  std::string line = m.substr(0, nl);
  const std::string from = "\"block_ids\":\"hmac-sha256\"";
  const size_t at = line.find(from);
  ASSERT_NE(at, std::string::npos) << line;
  line.replace(at, from.size(), "\"block_ids\":\"sha256\"");
  m = line + "\n" + remote::HexOf(remote::Sha256(line.data(), line.size())) + "\n";
  auto listed = remote->DescribeSnapshot(snap);
  EXPECT_EQ(listed.status().code(), Status::Code::kCorruption) << listed.status().ToString();
  VolumeSpec spec;
  spec.volume_type = "unlimited";
  auto restored = remote->RestoreVolume(b_.pool.get(), snap, spec, key_, nullptr);
  EXPECT_EQ(restored.status().code(), Status::Code::kCorruption);
  // And a lazy reader (plaintext names only) refuses an encrypted snapshot outright.
  auto reader = remote::SnapshotReader::OpenOn(
      "sim", std::make_unique<test::SimObjectStore>(&bucket_, 2), again);
  EXPECT_EQ(reader.status().code(), Status::Code::kNotSupported);
}

}  // namespace
}  // namespace strata
