// Snapshot streams: full and incremental round trips between pools of different chunk sizes, and
// every kind of damaged stream refused with nothing left behind.
#include "strata/stream.h"

#include <chrono>
#include <cstring>
#include <random>

#include <gtest/gtest.h>
#include <xxhash.h>

#include "strata/pool.h"

#include "testutil/string_stream.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

using test::StringSink;
using test::StringSource;

std::unique_ptr<Pool> NewPool(const std::string& dir, uint32_t chunk) {
  PoolOptions o;
  o.chunk_size_bytes = chunk;
  EXPECT_TRUE(Pool::Create(dir, o).ok());
  return std::move(*Pool::Open(dir, o));
}

std::vector<std::byte> ReadSnapshot(Pool* pool, const std::string& id) {
  auto snap = pool->OpenSnapshot(id);
  EXPECT_TRUE(snap.ok()) << snap.status().ToString();
  std::vector<std::byte> out((*snap)->size_bytes());
  EXPECT_TRUE((*snap)->Read(0, out).ok());
  return out;
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = NewPool(dir_.Sub("src"), 65536);
    dst_ = NewPool(dir_.Sub("dst"), 16384);  // another chunk size: streams are portable
    auto info = src_->CreateVolume(VolumeSpec{(8 << 20) + 512 * 3, "", "gp3", ""});
    vol_ = *src_->OpenVolume(info->volume_id);
    image_.assign(vol_->size_bytes(), std::byte{0});
    Write(0, test::RandomBytes(1 << 20, 1));
    Write(3 << 20, std::vector<std::byte>(65536, std::byte{0}));  // data that is all zeros
    Write((8 << 20) + 100, test::RandomBytes(1000, 2));           // into the partial last chunk
    s1_ = src_->CreateSnapshot(vol_->id(), "one")->snapshot_id;
    image1_ = image_;
    Write(65536 * 5 + 7, test::RandomBytes(70000, 3));
    ASSERT_TRUE(vol_->Trim(0, 65536).ok());
    std::memset(image_.data(), 0, 65536);
    s2_ = src_->CreateSnapshot(vol_->id(), "two")->snapshot_id;
  }
  void Write(uint64_t off, const std::vector<std::byte>& data) {
    ASSERT_TRUE(vol_->Write(off, data, false).ok());
    std::memcpy(image_.data() + off, data.data(), data.size());
  }
  std::string Export(const std::string& snap, const std::string& base) {
    ExportOptions o;
    o.snapshot_id = snap;
    o.base_snapshot_id = base;
    o.threads = 2;
    StringSink sink;
    auto stats = ExportSnapshot(src_.get(), o, &sink);
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    return sink.bytes;
  }
  Result<StreamStats> Import(std::string bytes) {
    StringSource source(std::move(bytes));
    return ImportSnapshot(dst_.get(), ImportOptions{}, &source);
  }
  void ExpectNothingLeft(size_t snapshots) {
    EXPECT_TRUE(dst_->ListVolumes().empty());
    EXPECT_EQ(dst_->ListSnapshots().size(), snapshots);
    ASSERT_TRUE(dst_->WaitForReclaim().ok());
    auto report = dst_->Check();
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->problems.empty());
  }

  test::TempDir dir_;
  std::unique_ptr<Pool> src_, dst_;
  std::shared_ptr<Volume> vol_;
  std::vector<std::byte> image_, image1_;
  std::string s1_, s2_;
};

TEST_F(StreamTest, FullThenIncrementalRoundTrip) {
  std::string full = Export(s1_, "");
  auto one = Import(full);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->snapshot.source_snapshot_id, s1_);
  EXPECT_EQ(one->snapshot.description, "one");
  EXPECT_EQ(ReadSnapshot(dst_.get(), one->snapshot.snapshot_id), image1_);
  EXPECT_GE(one->zero_chunks, 1u);  // the zero-filled chunk went as a zero run
  std::string inc = Export(s2_, s1_);
  EXPECT_LT(inc.size(), full.size() / 4);  // only what changed
  auto two = Import(inc);
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(ReadSnapshot(dst_.get(), two->snapshot.snapshot_id), image_);
  EXPECT_EQ(two->snapshot.source_snapshot_id, s2_);
  // The base stays intact; no volume is left visible.
  EXPECT_EQ(ReadSnapshot(dst_.get(), one->snapshot.snapshot_id), image1_);
  ExpectNothingLeft(2);
  // Replication goes on from the copy: its snapshots export incrementally to a third pool.
  auto third = NewPool(dir_.Sub("third"), 4096);
  auto relay = [&](const std::string& snap, const std::string& base) {
    ExportOptions o;
    o.snapshot_id = snap;
    o.base_snapshot_id = base;
    StringSink sink;
    EXPECT_TRUE(ExportSnapshot(dst_.get(), o, &sink).ok());
    StringSource source(sink.bytes);
    return ImportSnapshot(third.get(), ImportOptions{}, &source);
  };
  auto t1 = relay(one->snapshot.snapshot_id, "");
  ASSERT_TRUE(t1.ok()) << t1.status().ToString();
  auto t2 = relay(two->snapshot.snapshot_id, one->snapshot.snapshot_id);
  ASSERT_TRUE(t2.ok()) << t2.status().ToString();
  EXPECT_EQ(ReadSnapshot(third.get(), t2->snapshot.snapshot_id), image_);
  EXPECT_EQ(ReadSnapshot(third.get(), t1->snapshot.snapshot_id), image1_);
  // An incremental stream whose base is not here is refused.
  auto orphan = NewPool(dir_.Sub("orphan"), 65536);
  StringSource source(inc);
  EXPECT_EQ(ImportSnapshot(orphan.get(), ImportOptions{}, &source).status().code(),
            Status::Code::kNotFound);
}

TEST_F(StreamTest, DamagedStreamsAreRefusedAndLeaveNothing) {
  const std::string full = Export(s1_, "");
  std::mt19937_64 rng(7);
  // Truncated anywhere, including inside the header and the trailer.
  for (size_t cut : {size_t{0}, size_t{10}, size_t{60}, full.size() / 2, full.size() - 1}) {
    auto r = Import(full.substr(0, cut));
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << "cut at " << cut;
  }
  // A flipped bit anywhere.
  for (int i = 0; i < 20; i++) {
    std::string bad = full;
    size_t at = rng() % bad.size();
    bad[at] = static_cast<char>(bad[at] ^ (1 << (rng() % 8)));
    auto r = Import(bad);
    EXPECT_FALSE(r.ok()) << "bit flip at byte " << at;
  }
  // Bytes after the end.
  EXPECT_EQ(Import(full + "x").status().code(), Status::Code::kCorruption);
  // Not a stream at all.
  EXPECT_EQ(Import(std::string(4096, 'z')).status().code(), Status::Code::kCorruption);
  ExpectNothingLeft(0);
  EXPECT_EQ(dst_->Info().used_bytes, 0u);
}

TEST_F(StreamTest, ReorderedRecordsAreRefused) {
  // Two incremental streams' records are swapped by splicing: the first data record of the
  // stream is moved after the second. Locate records by walking the format (40-byte headers).
  const std::string s = Export(s2_, s1_);
  size_t header_end = 8 + 24;
  for (int i = 0; i < 4; i++) {
    size_t n = static_cast<unsigned char>(s[header_end]) |
               (static_cast<size_t>(static_cast<unsigned char>(s[header_end + 1])) << 8);
    header_end += 2 + n;
  }
  header_end += 8;
  auto record_size = [&s](size_t at) {
    uint32_t payload;
    std::memcpy(&payload, s.data() + at + 4, 4);
    return 40 + size_t{payload};
  };
  size_t a = header_end, b = a + record_size(a);
  ASSERT_LT(b + record_size(b), s.size());
  std::string swapped = s.substr(0, a) + s.substr(b, record_size(b)) + s.substr(a, record_size(a)) +
                        s.substr(b + record_size(b));
  ASSERT_EQ(swapped.size(), s.size());
  ASSERT_TRUE(Import(Export(s1_, "")).ok());  // the base is here
  auto r = Import(swapped);
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  EXPECT_NE(r.status().message().find("out of order"), std::string::npos) << r.status().ToString();
  ExpectNothingLeft(1);
}

// A crash in the middle of an import leaves an importing volume: hidden, and gone at the next open.
TEST_F(StreamTest, AnInterruptedImportIsGoneAfterReopen) {
  VolumeSpec spec{1 << 20, "half", "gp3", ""};
  spec.importing = true;
  auto info = dst_->CreateVolume(spec);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(dst_->ListVolumes().empty());
  EXPECT_EQ(dst_->DescribeVolume("half").status().code(), Status::Code::kNotFound);
  auto v = *dst_->OpenVolume(info->volume_id);
  ASSERT_TRUE(v->Write(0, test::RandomBytes(65536, 9), true).ok());
  v.reset();
  dst_.reset();
  PoolOptions o;
  dst_ = std::move(*Pool::Open(dir_.Sub("dst"), o));
  EXPECT_EQ(dst_->DescribeVolume(info->volume_id).status().code(), Status::Code::kNotFound);
  ExpectNothingLeft(0);
  EXPECT_EQ(dst_->Info().used_bytes, 0u);
}

// PublishImport makes an importing volume an ordinary one, durably (a remote restore's end).
TEST_F(StreamTest, APublishedImportIsAnOrdinaryVolumeAfterReopen) {
  VolumeSpec spec{1 << 20, "whole", "gp3", ""};
  spec.importing = true;
  auto info = dst_->CreateVolume(spec);
  ASSERT_TRUE(info.ok());
  auto v = *dst_->OpenVolume(info->volume_id);
  const auto data = test::RandomBytes(65536, 10);
  ASSERT_TRUE(v->Write(4096, data, false).ok());
  ASSERT_TRUE(v->Flush().ok());
  v.reset();
  auto published = dst_->PublishImport(info->volume_id);
  ASSERT_TRUE(published.ok()) << published.status().ToString();
  EXPECT_EQ(published->state, "available");
  EXPECT_EQ(dst_->PublishImport(info->volume_id).status().code(),
            Status::Code::kInvalidArgument);  // once
  EXPECT_EQ(dst_->PublishImport("vol-0000000000000000f").status().code(), Status::Code::kNotFound);
  dst_.reset();
  PoolOptions o;
  dst_ = std::move(*Pool::Open(dir_.Sub("dst"), o));
  ASSERT_EQ(dst_->ListVolumes().size(), 1u);
  EXPECT_EQ(dst_->DescribeVolume("whole")->volume_id, info->volume_id);
  std::vector<std::byte> got(data.size());
  ASSERT_TRUE((*dst_->OpenVolume(info->volume_id))->Read(4096, got).ok());
  EXPECT_EQ(got, data);
}

// Streams written by hand (docs/stream-format.md), for what the exporter never writes.
class CraftedStream {
 public:
  CraftedStream(uint32_t chunk, uint64_t volume_size, const std::string& description) {
    bytes_ = "STRTSNAP";
    Put32(1);  // version
    Put32(0);  // flags: full
    Put32(chunk);
    Put32(0);
    Put64(volume_size);
    for (const std::string& str : {std::string("snap-0123456789abcdef0"), std::string(),
                                   std::string("vol-0123456789abcdef0"), description}) {
      bytes_.push_back(static_cast<char>(str.size() & 0xff));
      bytes_.push_back(static_cast<char>(str.size() >> 8));
      bytes_ += str;
    }
    Put64(XXH3_64bits(bytes_.data(), bytes_.size()));
  }
  void ZeroRun(uint64_t first_chunk, uint64_t count) {
    const size_t at = bytes_.size();
    bytes_.push_back(3);
    bytes_.append(3, '\0');
    Put32(0);
    Put64(records_++);
    Put64(first_chunk);
    Put64(count);
    Put64(XXH3_64bits(bytes_.data() + at, 32));
  }
  std::string Finish(uint64_t data_chunks, uint64_t zero_chunks) {
    bytes_.push_back(static_cast<char>(0xFF));
    bytes_.append(3, '\0');
    Put32(0);
    Put64(records_);
    Put64(data_chunks);
    Put64(zero_chunks);
    Put64(XXH3_64bits(bytes_.data(), bytes_.size()));
    return bytes_;
  }

 private:
  void Put32(uint32_t v) {
    for (int i = 0; i < 4; i++) {
      bytes_.push_back(static_cast<char>(v >> (8 * i)));
    }
  }
  void Put64(uint64_t v) {
    for (int i = 0; i < 8; i++) {
      bytes_.push_back(static_cast<char>(v >> (8 * i)));
    }
  }
  std::string bytes_;
  uint64_t records_ = 0;
};

// Before: a 237-byte stream declaring 64 TiB of 4 KiB chunks in one zero run took 124 s of CPU.
TEST_F(StreamTest, ZeroRunCostsWhatIsMappedNotWhatIsDeclared) {
  const uint64_t size = 64ull << 40, chunks = size / 4096;
  CraftedStream stream(4096, size, "all zeros");
  stream.ZeroRun(0, chunks);
  const std::string bytes = stream.Finish(0, chunks);
  const auto start = std::chrono::steady_clock::now();
  auto r = Import(bytes);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::printf(
      "[ figures ] %zu-byte stream, one zero run over 64 TiB of 4 KiB chunks: imported "
      "in %.4f s\n",
      bytes.size(), secs);
  EXPECT_LT(secs, 5.0);
  EXPECT_EQ(r->snapshot.volume_size_bytes, size);
  EXPECT_EQ(dst_->Info().used_bytes, 0u);
}

TEST_F(StreamTest, HeaderTextMustBePrintableUtf8) {
  for (const std::string& description : {std::string("bad \xff\xfe"), std::string("\x1b[31mred")}) {
    CraftedStream stream(4096, 1 << 20, description);
    stream.ZeroRun(0, 1);
    auto r = Import(stream.Finish(0, 1));
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
    EXPECT_NE(r.status().message().find("stream header: description"), std::string::npos)
        << r.status().ToString();
  }
  ExpectNothingLeft(0);
}

TEST_F(StreamTest, TrailerMismatchNamesWhatWasCounted) {
  CraftedStream stream(4096, 1 << 20, "");
  stream.ZeroRun(0, 1);
  auto r = Import(stream.Finish(5, 1));
  EXPECT_EQ(r.status().ToString(),
            "Corruption: stream trailer counts 5 data chunks, but the stream carried 0");
  CraftedStream zeros(4096, 1 << 20, "");
  zeros.ZeroRun(0, 1);
  r = Import(zeros.Finish(0, 7));
  EXPECT_EQ(r.status().ToString(),
            "Corruption: stream trailer counts 7 zero chunks, but the stream carried 1");
  ExpectNothingLeft(0);
}

}  // namespace
}  // namespace strata
