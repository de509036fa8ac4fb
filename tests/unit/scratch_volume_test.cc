// Instance store's encryption (compute/scratch_volume.h, kms/xts.h): what reaches the file is
// only ciphertext, through every path (aligned and unaligned, synchronous and io_uring); holes
// read as zeros; unaligned writes into one unit do not undo each other; and a volume's key dies
// with it, so its old blocks are unreadable (a crypto-erase). Also XtsCipher on its own.
#include "compute/scratch_volume.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "strata/event_loop.h"

#include "kms/xts.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr uint64_t kSize = 4 << 20;

std::vector<std::byte> Pattern(size_t n) {
  std::vector<std::byte> out(n);
  const char* word = "PLAINTEXT-PATTERN-";
  for (size_t i = 0; i < n; i++) {
    out[i] = static_cast<std::byte>(word[i % 18]);
  }
  return out;
}

// Every byte of this process's open scratch files (found by their names in /proc/self/fd).
std::string RawScratchBytes(const std::string& dir) {
  std::string all;
  DIR* fds = opendir("/proc/self/fd");
  for (dirent* e; fds != nullptr && (e = readdir(fds)) != nullptr;) {
    char target[4096] = {};
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    if (readlink(link.c_str(), target, sizeof(target) - 1) <= 0 ||
        std::string(target).find(dir) != 0) {
      continue;
    }
    const int fd = open(link.c_str(), O_RDONLY);
    std::string bytes(kSize, '\0');
    EXPECT_EQ(pread(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(kSize));
    close(fd);
    all += bytes;
  }
  if (fds != nullptr) {
    closedir(fds);
  }
  return all;
}

TEST(ScratchVolumeTest, OnlyCiphertextReachesTheFileAndTheKeyDiesWithTheVolume) {
  test::TempDir dir;
  auto vol = ScratchVolume::Create(dir.path(), "i-1/sdb", kSize);
  ASSERT_TRUE(vol.ok()) << vol.status().ToString();
  const auto data = Pattern(64 << 10);
  ASSERT_TRUE((*vol)->Write(0, data, false).ok());                                // aligned
  ASSERT_TRUE((*vol)->Write(100'001, std::span(data).first(9'000), false).ok());  // unaligned
  auto loop = EventLoop::Create(Env::Default());
  ASSERT_TRUE(loop.ok());
  std::vector<std::byte> async_data = Pattern(1 << 20);
  IoRequest req;
  req.kind = IoRequest::Kind::kWrite;
  req.offset_bytes = 2 << 20;
  req.length_bytes = async_data.size();
  req.data = async_data.data();
  struct Outcome {
    bool done = false;
    Status result;
  } outcome;
  bool& done = outcome.done;
  Status& result = outcome.result;
  req.user = &outcome;
  req.callback = [](IoRequest* r, const Status& s) {
    auto* o = static_cast<Outcome*>(r->user);
    o->done = true;
    o->result = s;
  };
  (*vol)->Submit(loop->get(), &req);
  (*loop)->RunUntil([&] { return done; });
  ASSERT_TRUE(result.ok()) << result.ToString();
  const std::string raw = RawScratchBytes(dir.path());
  ASSERT_GE(raw.size(), kSize);
  EXPECT_EQ(raw.find("PLAINTEXT-PATTERN"), std::string::npos) << "plaintext in the file";

  std::vector<std::byte> back(64 << 10);
  ASSERT_TRUE((*vol)->Read(0, back).ok());
  EXPECT_EQ(back, data);
  std::vector<std::byte> odd(9'000);
  ASSERT_TRUE((*vol)->Read(100'001, odd).ok());
  EXPECT_EQ(0, std::memcmp(odd.data(), data.data(), odd.size()));
  std::vector<std::byte> async_back(1 << 20);
  done = false;
  req.kind = IoRequest::Kind::kRead;
  req.data = async_back.data();
  (*vol)->Submit(loop->get(), &req);
  (*loop)->RunUntil([&] { return done; });
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(async_back, async_data);
  // Holes read as zeros; a trimmed range too.
  std::vector<std::byte> hole(4096);
  ASSERT_TRUE((*vol)->Read(3 << 20, hole).ok());
  EXPECT_TRUE(test::AllZero(hole));
  ASSERT_TRUE((*vol)->Trim(0, 4096).ok());
  ASSERT_TRUE((*vol)->Read(0, hole).ok());
  EXPECT_TRUE(test::AllZero(hole));

  // The same ciphertext under any other key (the old one is gone with the volume) is noise.
  auto other = kms::XtsCipher::CreateRandom();
  ASSERT_TRUE(other.ok());
  std::string block = raw.substr(4096, 4096);
  std::vector<std::byte> guess(4096);
  ASSERT_TRUE((*other)
                  ->Decrypt(1, reinterpret_cast<const std::byte*>(block.data()), guess.data(), 4096)
                  .ok());
  EXPECT_NE(0, std::memcmp(guess.data(), data.data() + 4096, 4096));
  vol->reset();
  EXPECT_TRUE(RawScratchBytes(dir.path()).empty()) << "the file outlived its volume";
}

TEST(ScratchVolumeTest, UnalignedWritesIntoOneUnitKeepEachOther) {
  test::TempDir dir;
  auto vol = ScratchVolume::Create(dir.path(), "i-1/sdb", kSize);
  ASSERT_TRUE(vol.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; round++) {
        const std::byte b{static_cast<unsigned char>('a' + t)};
        EXPECT_TRUE((*vol)->Write(1000 + t * 3, std::span(&b, 1), false).ok());
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  std::vector<std::byte> unit(512);
  ASSERT_TRUE((*vol)->Read(512, unit).ok());
  for (int t = 0; t < 8; t++) {
    EXPECT_EQ(unit[1000 - 512 + t * 3], std::byte{static_cast<unsigned char>('a' + t)}) << t;
  }
}

TEST(XtsCipherTest, LogicalTweaksRoundTripsHolesAndKeyRules) {
  auto c = kms::XtsCipher::CreateRandom();
  ASSERT_TRUE(c.ok());
  const auto plain = Pattern(8192);
  std::vector<std::byte> at0(8192), at5(8192), back(8192);
  ASSERT_TRUE((*c)->Encrypt(0, plain.data(), at0.data(), 8192).ok());
  ASSERT_TRUE((*c)->Encrypt(5, plain.data(), at5.data(), 8192).ok());
  EXPECT_NE(at0, at5) << "the tweak is the unit's logical number";
  EXPECT_NE(0, std::memcmp(at0.data(), at0.data() + 4096, 4096));  // ...unit by unit
  ASSERT_TRUE((*c)->Decrypt(5, at5.data(), back.data(), 8192).ok());
  EXPECT_EQ(back, plain);
  ASSERT_TRUE((*c)->Decrypt(4, at5.data(), back.data(), 8192).ok());
  EXPECT_NE(back, plain);
  std::vector<std::byte> zeros(4096), out(4096, std::byte{1});
  ASSERT_TRUE((*c)->Decrypt(9, zeros.data(), out.data(), 4096).ok());
  EXPECT_TRUE(test::AllZero(out)) << "a hole reads as zeros";
  kms::Secret same(std::string(32, 'k') + std::string(32, 'k'));
  EXPECT_FALSE(kms::XtsCipher::Create(same).ok()) << "IEEE 1619: halves must differ";
  // (The unit is no longer a parameter to refuse: it is the seam's, fixed at compile time.)
  static_assert(kms::XtsCipher::unit_bytes() == BlockCipher::kUnitBytes &&
                BlockCipher::kUnitBytes == 4096);
  EXPECT_FALSE(kms::XtsCipher::Create(kms::Secret(std::string(65, 'k'))).ok());
  EXPECT_FALSE(kms::XtsCipher::Create(kms::Secret(std::string(32, 'k'))).ok());
}

}  // namespace
}  // namespace strata
