// Remote objects (docs/remote-format.md): round trips, and every kind of damage refused by name.
#include "remote/remote_format.h"

#include <sys/stat.h>

#include <cstring>

#include <gtest/gtest.h>
#include <xxhash.h>
#include <zstd.h>

#include "strata/remote.h"

#include "testutil/test_util.h"
#include "util/coding.h"

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

std::vector<IndexEntry> Entries(const std::vector<BlockRef>& refs) {
  std::vector<IndexEntry> out;
  for (const BlockRef& r : refs) {
    out.push_back(IndexEntry{r, PieceTable()});
  }
  return out;
}

// A pieced block of `raw` bytes whose pieces store 100 bytes each.
IndexEntry Pieced(uint8_t seed, uint32_t raw) {
  IndexEntry e{Ref(seed), PieceTable()};
  e.ref.raw = raw;
  e.ref.flags = kFlagZstd | kFlagPieces;
  e.ref.stored = 0;
  for (uint32_t p = 0; p < PieceCount(e.ref); p++) {
    e.pieces.stored[p] = 100;
    e.pieces.sha256[p].fill(static_cast<uint8_t>(seed + p));
    e.ref.stored += 100;
  }
  return e;
}

// The object as format version 1 wrote it: version 1 in the header, `entries` (92-byte refs or
// node entries) as given, the XXH3 trailer.
std::string VersionOne(const char* magic, uint32_t level, uint32_t count,
                       const std::string& entries, uint32_t version = 1) {
  std::string out(magic, 8);
  char buf[12];
  PutLittleEndian32(buf, version);
  PutLittleEndian32(buf + 4, level);
  PutLittleEndian32(buf + 8, count);
  out.append(buf, 12);
  out += entries;
  char sum[8];
  PutLittleEndian64(sum, XXH3_64bits(out.data(), out.size()));
  return out.append(sum, 8);
}

TEST(RemoteFormatTest, IndexAndNodesRoundTrip) {
  std::vector<BlockRef> refs = {Ref(1), Ref(2), Ref(3)};
  std::vector<IndexEntry> entries = Entries(refs);
  entries.push_back(Pieced(4, 524288));
  entries.push_back(Pieced(5, 70000));  // a short last block: two pieces
  auto back = DecodeIndex(EncodeIndex(entries), "index/x");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 5u);
  EXPECT_EQ((*back)[2].ref.offset, 3000u);
  EXPECT_EQ((*back)[1].ref.sha256, refs[1].sha256);
  EXPECT_EQ(PieceCount((*back)[3].ref), 8u);
  EXPECT_EQ((*back)[3].pieces.sha256[7], entries[3].pieces.sha256[7]);
  EXPECT_EQ(PieceCount((*back)[4].ref), 2u);
  EXPECT_EQ(PieceRaw((*back)[4].ref, 1), 70000u - kPieceBytes);
  EXPECT_EQ((*back)[4].pieces.stored[1], 100u);
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
  const std::string good = EncodeIndex(Entries({Ref(1), Ref(2)}));
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
  std::vector<BlockRef> hostile(9, Ref(7));
  hostile[0].raw = 0xFFFFFFFFu;         // 4 GiB uncompressed
  hostile[1].raw = kMaxBlockBytes + 1;  // one byte past a block
  hostile[2].stored = 0x7FFFFFFFu;      // a range GET of 2 GiB
  hostile[3].flags = 2;                 // an unknown encoding
  hostile[4].flags = 0;                 // stored as is, yet lengths differ
  hostile[5].offset = kMaxPackBytes;    // past any pack (and offset + stored overflows less)
  hostile[6].flags = kFlagPieces;       // pieces that are not zstd frames
  hostile[7].flags = kFlagZstd | kFlagPieces;
  hostile[7].stored = 7;  // fewer bytes than its eight pieces need
  hostile[8].flags = kFlagZstd | kFlagPieces;
  hostile[8].stored = 8 * ZSTD_COMPRESSBOUND(kPieceBytes) + 1;  // more than they can
  for (size_t i = 0; i < hostile.size(); i++) {
    auto index = DecodeIndex(EncodeIndex(Entries({Ref(1), hostile[i]})), "index/h");
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

// A piece table is checked against its ref before a reader plans a range by it: every piece
// within zstd's bound, all of them adding up to the stored length, nothing past the last.
TEST(RemoteFormatTest, PieceTablesOutOfBoundsAreRefused) {
  std::vector<IndexEntry> hostile(5, Pieced(3, 524288));
  hostile[0].pieces.stored[2] += 1;  // no longer adds up to the stored length
  hostile[1].pieces.stored[0] = 0;   // an empty piece
  hostile[1].pieces.stored[1] += 100;
  hostile[2] = Pieced(3, 70000);
  hostile[2].pieces.sha256[2].fill(1);  // a hash past its two pieces
  hostile[3].pieces.stored[0] = ZSTD_COMPRESSBOUND(kPieceBytes) + 1;
  hostile[3].ref.stored += ZSTD_COMPRESSBOUND(kPieceBytes) + 1 - 100;
  hostile[4] = IndexEntry{Ref(4), PieceTable()};
  hostile[4].pieces.stored[0] = 5;  // a whole block with a piece table
  for (size_t i = 0; i < hostile.size(); i++) {
    auto index = DecodeIndex(EncodeIndex({Pieced(1, 524288), hostile[i]}), "index/p");
    EXPECT_EQ(index.status().code(), Status::Code::kCorruption) << i;
    EXPECT_NE(index.status().ToString().find("index/p"), std::string::npos) << i;
  }
}

// Buckets written by format version 1 stay readable: its indexes (92-byte entries, no piece
// tables) and nodes decode as whole blocks; a pieced block in a version 1 index is refused.
TEST(RemoteFormatTest, VersionOneObjectsStillDecode) {
  std::string refs;
  for (uint8_t seed : {1, 2}) {
    const std::string one = EncodeIndex(Entries({Ref(seed)}));
    refs += one.substr(20, 92);  // (a ref is encoded alike in both versions)
  }
  auto index = DecodeIndex(VersionOne("STRTPIDX", 0, 2, refs), "index/v1");
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  ASSERT_EQ(index->size(), 2u);
  EXPECT_EQ((*index)[1].ref.sha256, Ref(2).sha256);
  EXPECT_EQ(PieceCount((*index)[1].ref), 0u);
  Node leaf;
  leaf.blocks = {{3, Ref(1)}};
  const std::string v2 = EncodeNode(leaf);
  auto node = DecodeNode(VersionOne("STRTNODE", 0, 1, v2.substr(20, v2.size() - 28)), "nodes/v1");
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  EXPECT_EQ(node->blocks[0].second.xxh3, Ref(1).xxh3);
  const std::string pieced = EncodeIndex({Pieced(1, 524288)}).substr(20, 92);
  EXPECT_EQ(DecodeIndex(VersionOne("STRTPIDX", 0, 1, pieced), "index/v1").status().code(),
            Status::Code::kCorruption);
  const std::string v4 = VersionOne("STRTPIDX", 0, 0, "", 4);
  EXPECT_NE(DecodeIndex(v4, "i").status().ToString().find("version"), std::string::npos);
  const std::string node_v3 = VersionOne("STRTNODE", 0, 0, "", 3);  // nodes stay at version 2
  EXPECT_NE(DecodeNode(node_v3, "n").status().ToString().find("version"), std::string::npos);
}

// A block of 8 pieces whose pieces 0, 3 and 7 are its own (back to back from its offset in its
// pack) and the others borrowed from two other packs.
IndexEntry Spanning(uint8_t seed) {
  IndexEntry e = Pieced(seed, 524288);
  e.ref.flags |= kFlagSpans;
  e.ref.stored = 0;
  for (uint32_t p = 0; p < 8; p++) {
    if (p == 0 || p == 3 || p == 7) {
      e.ref.stored += 100;
      continue;
    }
    PiecePlace place{Hash{}, 5000u * p};
    place.pack.fill(0xee);
    place.pack[0] = static_cast<uint8_t>(p % 2);
    e.pieces.borrowed.emplace_back(p, place);
  }
  return e;
}

// Rewrites piece `piece` of entry `entry` of an encoded version 3 index (its place), and seals
// it again: what a writer of the bucket can make.
std::string WithPlace(std::string index, size_t entry, uint32_t piece, const Hash& pack,
                      uint64_t offset) {
  char* at = index.data() + 20 + entry * (92 + 8 * 76) + 92 + piece * 76;
  std::memcpy(at + 36, pack.data(), 32);
  PutLittleEndian64(at + 68, offset);
  index.resize(index.size() - 8);
  char sum[8];
  PutLittleEndian64(sum, XXH3_64bits(index.data(), index.size()));
  return index.append(sum, 8);
}

// A pack index with a spanning block goes at version 3 and keeps every piece's place; one
// without stays at version 2 (its places follow from its refs).
TEST(RemoteFormatTest, SpanningBlocksRoundTripInVersionThree) {
  std::vector<IndexEntry> entries = {Pieced(1, 524288), Spanning(2), IndexEntry{Ref(3), {}}};
  const std::string bytes = EncodeIndex(entries);
  EXPECT_EQ(GetLittleEndian32(bytes.data() + 8), 3u);
  auto back = DecodeIndex(bytes, "index/s");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 3u);
  const IndexEntry& spanning = (*back)[1];
  EXPECT_TRUE(Spans(spanning.ref));
  EXPECT_EQ(spanning.pieces.borrowed, entries[1].pieces.borrowed);
  EXPECT_EQ(PlaceOf(spanning.ref, spanning.pieces, 2).offset, 10000u);
  EXPECT_EQ(PlaceOf(spanning.ref, spanning.pieces, 3),
            (PiecePlace{spanning.ref.pack, spanning.ref.offset + 100}));
  EXPECT_EQ(PlaceOf(spanning.ref, spanning.pieces, 7),
            (PiecePlace{spanning.ref.pack, spanning.ref.offset + 200}));
  EXPECT_TRUE((*back)[0].pieces.borrowed.empty());
  EXPECT_EQ(PlaceOf((*back)[0].ref, (*back)[0].pieces, 2).offset, entries[0].ref.offset + 200);
  const std::string plain = EncodeIndex({Pieced(1, 524288)});
  EXPECT_EQ(GetLittleEndian32(plain.data() + 8), 2u);
  auto placed = DecodeIndex(plain, "index/p");
  ASSERT_TRUE(placed.ok());
  EXPECT_EQ(PlaceOf((*placed)[0].ref, (*placed)[0].pieces, 5),
            (PiecePlace{Pieced(1, 524288).ref.pack, Pieced(1, 524288).ref.offset + 500}));
  EXPECT_TRUE(CheckRef(entries[1].ref, "x").ok());
}

// Every way a piece's place can be wrong is refused before anything is fetched by it.
TEST(RemoteFormatTest, SpanningPlacesOutOfBoundsAreRefused) {
  const IndexEntry e = Spanning(2);
  const std::string good = EncodeIndex({Spanning(1), e});
  ASSERT_TRUE(DecodeIndex(good, "index/g").ok());
  Hash other;
  other.fill(0xee);
  const std::vector<std::string> hostile = {
      WithPlace(good, 1, 3, e.ref.pack, e.ref.offset + 101),  // its own not back to back
      WithPlace(good, 1, 1, other, kMaxPackBytes - 50),       // a borrowed piece past any pack
      WithPlace(good, 1, 7, other, 0),  // its own pieces short of its stored length
      WithPlace(good, 1, 0, other, 0),  // every piece borrowed: stored is not 0
      WithPlace(good, 1, 2, e.ref.pack, e.ref.offset + 100),  // out of order
  };
  for (size_t i = 0; i < hostile.size(); i++) {
    EXPECT_EQ(DecodeIndex(hostile[i], "index/h").status().code(), Status::Code::kCorruption) << i;
  }
  IndexEntry unmarked = Spanning(2);
  unmarked.ref.flags = kFlagZstd | kFlagPieces;  // borrowing without saying so
  EXPECT_EQ(DecodeIndex(EncodeIndex({Spanning(1), unmarked}), "index/u").status().code(),
            Status::Code::kCorruption);
  // A place past a block's last piece.
  IndexEntry short_block = Pieced(3, 70000);  // two pieces
  short_block.ref.flags |= kFlagSpans;
  std::string tail = EncodeIndex({Spanning(1), short_block});
  EXPECT_EQ(DecodeIndex(WithPlace(tail, 1, 4, other, 10), "index/t").status().code(),
            Status::Code::kCorruption);
  // A spanning ref in a version 2 index (or a leaf of a version 2 reader's tree) is not
  // misread: the version 2 encoding has no places.
  std::string v2 = EncodeIndex({Pieced(1, 524288)});
  v2[20 + 80] = static_cast<char>(kFlagZstd | kFlagPieces | kFlagSpans);
  v2.resize(v2.size() - 8);
  char sum[8];
  PutLittleEndian64(sum, XXH3_64bits(v2.data(), v2.size()));
  v2.append(sum, 8);
  EXPECT_EQ(DecodeIndex(v2, "index/v2").status().code(), Status::Code::kCorruption);
  BlockRef no_own = Spanning(1).ref;
  no_own.stored = 0;
  EXPECT_FALSE(CheckRef(no_own, "x").ok());
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
