// Encrypted volumes in the engine (strata/cipher.h, OpenOptions): reads and writes through the
// cipher match a plaintext model on every path (aligned and unaligned, in place, copy-on-write
// after a snapshot, sub-chunk copy-on-write and its fill, write-zeroes, trim, clones); no
// plaintext reaches the pool's files; a ciphertext copy under the same key reads back; and
// opens without the right cipher are refused.
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "strata/pool.h"

#include "kms/xts.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

using test::TempDir;

constexpr uint64_t kSize = 8 << 20;
constexpr char kWord[] = "PLAINTEXT-PATTERN-";  // 18 bytes, searched for in the pool's files

// `n` bytes of the pattern starting at phase `seed`, with the seed's byte every 1 KiB so that
// writes differ from each other.
std::vector<std::byte> Pattern(size_t n, uint64_t seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; i++) {
    out[i] = static_cast<std::byte>(i % 1024 == 1023 ? static_cast<char>('a' + seed % 26)
                                                     : kWord[(i + seed) % 18]);
  }
  return out;
}

// Whether any file under `dir` holds "PATTERN-PLAIN" or "PLAINTEXT-PAT" (pieces of kWord).
bool PoolHoldsPlaintext(const std::string& dir) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) {
      continue;
    }
    std::ifstream in(e.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.find("PATTERN-PLAIN") != std::string::npos ||
        bytes.find("PLAINTEXT-PAT") != std::string::npos) {
      return true;
    }
  }
  return false;
}

class EncryptedVolumeTest : public ::testing::TestWithParam<bool> {  // background fill
 protected:
  void SetUp() override {
    options_.chunk_size_bytes = 64 << 10;
    options_.background_fill = GetParam();
    ASSERT_TRUE(Pool::Create(dir_.path(), options_).ok());
    auto pool = Pool::Open(dir_.path(), options_);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = std::move(*pool);
    auto cipher = kms::XtsCipher::CreateRandom();
    ASSERT_TRUE(cipher.ok());
    cipher_ = std::move(*cipher);
  }
  OpenOptions WithKey() const {
    OpenOptions o;
    o.cipher = cipher_;
    return o;
  }
  std::string NewVolume(const std::string& envelope) {
    VolumeSpec spec;
    spec.size_bytes = kSize;
    spec.encryption = envelope;
    auto info = pool_->CreateVolume(spec);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    return info.ok() ? info->volume_id : "";
  }
  std::vector<std::byte> ReadAll(Volume* v) {
    std::vector<std::byte> out(v->size_bytes());
    Status s = v->Read(0, out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  TempDir dir_;
  PoolOptions options_;
  std::unique_ptr<Pool> pool_;
  std::shared_ptr<BlockCipher> cipher_;
};

TEST_P(EncryptedVolumeTest, OpensNeedTheRightCipher) {
  const std::string enc = NewVolume("{\"key\":\"test\"}");
  const std::string plain = NewVolume("");
  auto bare = pool_->OpenVolume(enc);
  EXPECT_EQ(bare.status().code(), Status::Code::kNotSupported) << bare.status().ToString();
  EXPECT_NE(bare.status().message().find("encrypted"), std::string::npos);
  EXPECT_EQ(pool_->OpenVolume(plain, WithKey()).status().code(), Status::Code::kNotSupported);
  EXPECT_TRUE(pool_->OpenVolume(enc, WithKey()).ok());
  OpenOptions raw;
  raw.ciphertext = true;
  EXPECT_TRUE(pool_->OpenVolume(enc, raw).ok());
  // Snapshots and clones carry the envelope, and refuse the same way.
  auto snap = pool_->CreateSnapshot(enc, "s");
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->encryption, "{\"key\":\"test\"}");
  EXPECT_EQ(pool_->OpenSnapshot(snap->snapshot_id).status().code(), Status::Code::kNotSupported);
  EXPECT_TRUE(pool_->OpenSnapshot(snap->snapshot_id, WithKey()).ok());
  VolumeSpec clone;
  clone.snapshot_id = snap->snapshot_id;
  auto c = pool_->CreateVolume(clone);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->encryption, snap->encryption);
  clone.encryption = "{\"key\":\"other\"}";
  EXPECT_EQ(pool_->CreateVolume(clone).status().code(), Status::Code::kInvalidArgument);
  // The envelope survives a reopen.
  pool_.reset();
  pool_ = std::move(*Pool::Open(dir_.path(), options_));
  EXPECT_EQ(pool_->DescribeVolume(c->volume_id)->encryption, "{\"key\":\"test\"}");
  EXPECT_EQ(pool_->OpenVolume(c->volume_id).status().code(), Status::Code::kNotSupported);
}

TEST_P(EncryptedVolumeTest, ChosenVolumeIds) {
  VolumeSpec spec;
  spec.size_bytes = kSize;
  spec.volume_id = "vol-0123456789abcdef0";
  auto info = pool_->CreateVolume(spec);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->volume_id, spec.volume_id);
  EXPECT_EQ(pool_->CreateVolume(spec).status().code(), Status::Code::kAlreadyExists);
  spec.volume_id = "vol-XYZ";
  EXPECT_EQ(pool_->CreateVolume(spec).status().code(), Status::Code::kInvalidArgument);
}

// Random writes, zeroes, trims, snapshots and clones against a model; every handle is read
// back through the cipher, and the pool's files never hold the plaintext.
TEST_P(EncryptedVolumeTest, MatchesAPlaintextModelOnEveryPath) {
  const std::string id = NewVolume("{\"key\":\"model\"}");
  auto vol = pool_->OpenVolume(id, WithKey());
  ASSERT_TRUE(vol.ok());
  std::vector<std::byte> model(kSize);
  std::vector<std::pair<std::string, std::vector<std::byte>>> snaps;
  std::mt19937_64 rng(GetParam() ? 7 : 8);
  for (int op = 0; op < 300; op++) {
    const uint32_t kind = rng() % 10;
    const bool aligned = rng() % 2 == 0;
    uint64_t len = aligned ? 4096 * (1 + rng() % 40) : 1 + rng() % 150000;
    uint64_t off = aligned ? 4096 * (rng() % (kSize / 4096)) : rng() % kSize;
    len = std::min(len, kSize - off);
    if (kind < 6) {
      auto data = Pattern(len, op);
      ASSERT_TRUE((*vol)->Write(off, data, rng() % 16 == 0).ok());
      std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
    } else if (kind == 6) {
      ASSERT_TRUE((*vol)->WriteZeroes(off, len, rng() % 2 == 0, false).ok());
      std::fill(model.begin() + static_cast<long>(off),
                model.begin() + static_cast<long>(off + len), std::byte{0});
    } else if (kind == 7) {
      ASSERT_TRUE((*vol)->Trim(off, len).ok());
      std::fill(model.begin() + static_cast<long>(off),
                model.begin() + static_cast<long>(off + len), std::byte{0});
    } else if (kind == 8 && snaps.size() < 6) {
      auto snap = pool_->CreateSnapshot(id, "s");
      ASSERT_TRUE(snap.ok());
      snaps.emplace_back(snap->snapshot_id, model);
    } else {
      std::vector<std::byte> out(len);
      ASSERT_TRUE((*vol)->Read(off, out).ok());
      ASSERT_TRUE(std::equal(out.begin(), out.end(), model.begin() + static_cast<long>(off)))
          << "op " << op << " read [" << off << ", +" << len << ")";
    }
  }
  EXPECT_EQ(ReadAll(vol->get()), model);
  for (const auto& [snap_id, image] : snaps) {
    auto snap = pool_->OpenSnapshot(snap_id, WithKey());
    ASSERT_TRUE(snap.ok());
    EXPECT_EQ(ReadAll(snap->get()), image) << snap_id;
    // A clone reads the snapshot's ciphertext with the same key, and writes its own.
    VolumeSpec spec;
    spec.snapshot_id = snap_id;
    auto clone_info = pool_->CreateVolume(spec);
    ASSERT_TRUE(clone_info.ok());
    auto clone = pool_->OpenVolume(clone_info->volume_id, WithKey());
    ASSERT_TRUE(clone.ok());
    auto data = Pattern(10000, 99);
    ASSERT_TRUE((*clone)->Write(70000, data, false).ok());
    std::vector<std::byte> want = image;
    std::copy(data.begin(), data.end(), want.begin() + 70000);
    EXPECT_EQ(ReadAll(clone->get()), want);
  }
  ASSERT_TRUE(pool_->Flush().ok());
  vol->reset();
  pool_.reset();  // everything on disk
  EXPECT_FALSE(PoolHoldsPlaintext(dir_.path()));
}

// Streams and the remote tier copy ciphertext: read as stored, written as stored into a volume
// under the same key, it reads back as the plaintext; under another key it is noise.
TEST_P(EncryptedVolumeTest, CiphertextCopiesUnderTheSameKey) {
  const std::string a = NewVolume("{\"key\":\"copy\"}");
  const std::string b = NewVolume("{\"key\":\"copy\"}");
  auto va = pool_->OpenVolume(a, WithKey());
  ASSERT_TRUE(va.ok());
  auto data = Pattern(kSize / 2, 3);
  ASSERT_TRUE((*va)->Write(12345, data, false).ok());
  OpenOptions raw;
  raw.ciphertext = true;
  auto ra = pool_->OpenVolume(a, raw);
  auto rb = pool_->OpenVolume(b, raw);
  ASSERT_TRUE(ra.ok() && rb.ok());
  std::vector<std::byte> stored = ReadAll(ra->get());
  EXPECT_EQ(std::search(stored.begin(), stored.end(), data.begin(), data.begin() + 64),
            stored.end());
  ASSERT_TRUE((*rb)->Write(0, stored, false).ok());
  auto vb = pool_->OpenVolume(b, WithKey());
  ASSERT_TRUE(vb.ok());
  EXPECT_EQ(ReadAll(vb->get()), ReadAll(va->get()));
  OpenOptions other;
  other.cipher = std::move(*kms::XtsCipher::CreateRandom());
  auto wrong = pool_->OpenVolume(b, other);
  ASSERT_TRUE(wrong.ok());
  std::vector<std::byte> noise(4096);
  ASSERT_TRUE((*wrong)->Read(16384, noise).ok());
  EXPECT_NE(std::vector<std::byte>(data.begin() + (16384 - 12345), data.begin() + (20480 - 12345)),
            noise);
}

// Single-byte writes into one 4 KiB unit, all in flight at once: each decrypts, patches and
// encrypts the unit under the chunk's lock, so none undoes another.
TEST_P(EncryptedVolumeTest, ConcurrentPartialWritesIntoOneUnitAllLand) {
  const std::string id = NewVolume("{\"key\":\"rmw\"}");
  auto vol = pool_->OpenVolume(id, WithKey());
  ASSERT_TRUE(vol.ok());
  auto loop = pool_->CreateEventLoop(64);
  ASSERT_TRUE(loop.ok());
  constexpr int kWrites = 48;
  std::vector<IoRequest> reqs(kWrites);
  std::vector<std::byte> bytes(kWrites);
  int done = 0;
  for (int i = 0; i < kWrites; i++) {
    bytes[i] = static_cast<std::byte>('A' + i);
    IoRequest& r = reqs[i];
    r.kind = IoRequest::Kind::kWrite;
    r.offset_bytes = 8192 + 3 * i;
    r.length_bytes = 1;
    r.data = &bytes[i];
    r.user = &done;
    r.callback = [](IoRequest* req, const Status& s) {
      EXPECT_TRUE(s.ok()) << s.ToString();
      ++*static_cast<int*>(req->user);
    };
    (*vol)->Submit(loop->get(), &r);
  }
  (*loop)->RunUntil([&done] { return done == kWrites; });
  std::vector<std::byte> unit(4096);
  ASSERT_TRUE((*vol)->Read(8192, unit).ok());
  for (int i = 0; i < kWrites; i++) {
    EXPECT_EQ(unit[3 * i], bytes[i]) << "write " << i << " was lost";
  }
}

INSTANTIATE_TEST_SUITE_P(Fill, EncryptedVolumeTest, ::testing::Bool());

}  // namespace
}  // namespace strata
