// Remote objects (docs/remote-format.md): round trips, and every kind of damage refused by name.
#include "remote/remote_format.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "strata/remote.h"

#include "testutil/test_util.h"

namespace strata::remote {
namespace {

BlockRef Ref(uint8_t seed) {
  BlockRef r;
  r.sha256.fill(seed);
  r.pack.fill(static_cast<uint8_t>(seed + 1));
  r.offset = 1000u * seed;
  r.stored = 300;
  r.raw = 524288;
  r.flags = kFlagZstd;
  r.xxh3 = 0x1234567890abcdefull + seed;
  return r;
}

TEST(RemoteFormatTest, IndexAndNodesRoundTrip) {
  std::vector<BlockRef> refs = {Ref(1), Ref(2), Ref(3)};
  auto back = DecodeIndex(EncodeIndex(refs), "index/x");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 3u);
  EXPECT_EQ((*back)[2].offset, 3000u);
  EXPECT_EQ((*back)[1].sha256, refs[1].sha256);
  Node leaf;
  leaf.blocks = {{0, Ref(4)}, {1023, Ref(5)}};
  auto node = DecodeNode(EncodeNode(leaf), "nodes/x");
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  EXPECT_EQ(node->blocks[1].first, 1023u);
  Node inner;
  inner.level = 2;
  inner.children = {{7, Sha256("a", 1)}};
  node = DecodeNode(EncodeNode(inner), "nodes/y");
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node->level, 2u);
  EXPECT_EQ(node->children[0].second, Sha256("a", 1));
  Hash h;
  EXPECT_TRUE(ParseHex(HexOf(Sha256("a", 1)), &h));
  EXPECT_EQ(h, Sha256("a", 1));
  EXPECT_FALSE(ParseHex("zz", &h));
  EXPECT_EQ(PackKey(h).substr(0, 9), "packs/" + HexOf(h).substr(0, 2) + "/");
}

TEST(RemoteFormatTest, DamageIsRefusedNamingTheObject) {
  const std::string good = EncodeIndex({Ref(1), Ref(2)});
  for (size_t at : {size_t{0}, size_t{9}, size_t{40}, good.size() - 1}) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    auto r = DecodeIndex(bad, "index/abc");
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << at;
    EXPECT_NE(r.status().message().find("index/abc"), std::string::npos);
  }
  EXPECT_FALSE(DecodeIndex(good.substr(0, good.size() - 9), "i").ok());  // truncated
  EXPECT_FALSE(DecodeIndex("", "i").ok());
  EXPECT_FALSE(DecodeNode(good, "n").ok());  // an index is not a node
  Node unordered;
  unordered.blocks = {{5, Ref(1)}, {5, Ref(2)}};
  EXPECT_EQ(DecodeNode(EncodeNode(unordered), "n").status().code(), Status::Code::kCorruption);
  Node out_of_range;
  out_of_range.blocks = {{kFanout, Ref(1)}};
  EXPECT_EQ(DecodeNode(EncodeNode(out_of_range), "n").status().code(), Status::Code::kCorruption);
}

// Refs that are well formed (trailer, sizes, slots) but claim lengths no block can have: refused
// at decoding, before a reader sizes a buffer by them.
TEST(RemoteFormatTest, RefsOutOfBoundsAreRefusedAtDecoding) {
  std::vector<BlockRef> hostile(6, Ref(7));
  hostile[0].raw = 0xFFFFFFFFu;         // 4 GiB uncompressed
  hostile[1].raw = kMaxBlockBytes + 1;  // one byte past a block
  hostile[2].stored = 0x7FFFFFFFu;      // a range GET of 2 GiB
  hostile[3].flags = 2;                 // an unknown encoding
  hostile[4].flags = 0;                 // stored as is, yet lengths differ
  hostile[5].offset = kMaxPackBytes;    // past any pack (and offset + stored overflows less)
  for (size_t i = 0; i < hostile.size(); i++) {
    auto index = DecodeIndex(EncodeIndex({Ref(1), hostile[i]}), "index/h");
    EXPECT_EQ(index.status().code(), Status::Code::kCorruption) << i;
    EXPECT_NE(index.status().ToString().find("index/h"), std::string::npos) << i;
    Node leaf;
    leaf.blocks = {{3, hostile[i]}};
    EXPECT_EQ(DecodeNode(EncodeNode(leaf), "nodes/h").status().code(), Status::Code::kCorruption)
        << i;
  }
  BlockRef plain = Ref(9);
  plain.flags = 0;
  plain.stored = plain.raw = 4096;
  EXPECT_TRUE(CheckRef(plain, "x").ok());
  EXPECT_TRUE(CheckRef(Ref(9), "x").ok());
}

TEST(RemoteConfigTest, AddListRemoveWithClearErrors) {
  test::TempDir dir;
  RemoteSpec spec{"backup", "s3://bucket-1/some/prefix", "http://127.0.0.1:7480", "us-east-1"};
  ASSERT_TRUE(AddRemote(dir.path(), spec).ok());
  EXPECT_EQ(AddRemote(dir.path(), spec).code(), Status::Code::kAlreadyExists);
  struct stat st;
  ASSERT_EQ(stat((dir.path() + "/remotes.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);
  for (const RemoteSpec& bad :
       {RemoteSpec{"a b", "s3://bucket", "", ""}, RemoteSpec{"x", "http://bucket", "", ""},
        RemoteSpec{"x", "s3://UPPER", "", ""}, RemoteSpec{"x", "s3://bucket", "ftp://host", ""},
        RemoteSpec{"x", "s3://bucket", "", "r\xff"}}) {
    EXPECT_EQ(AddRemote(dir.path(), bad).code(), Status::Code::kInvalidArgument) << bad.url;
  }
  auto found = FindRemote(dir.path(), "backup");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->endpoint_url, "http://127.0.0.1:7480");
  EXPECT_EQ(FindRemote(dir.path(), "nope").status().code(), Status::Code::kNotFound);
  ASSERT_TRUE(RemoveRemote(dir.path(), "backup").ok());
  EXPECT_TRUE(ListRemotes(dir.path())->empty());
  EXPECT_EQ(RemoveRemote(dir.path(), "backup").code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace strata::remote
