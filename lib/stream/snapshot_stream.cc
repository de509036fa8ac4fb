// Snapshot streams: export and import (docs/stream-format.md has the format byte by byte).
//
// Both directions work in batches of up to kBatchChunks chunks: the chunks of a batch are read
// and compressed (export) or decompressed, checked and written (import) by several threads at
// once, and the records go out (or are parsed) in order by the calling thread.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <xxhash.h>
#include <zstd.h>

#include "strata/event_loop.h"
#include "strata/stream.h"

#include "util/check.h"
#include "util/coding.h"
#include "util/parallel.h"
#include "util/submit_all.h"
#include "util/text.h"

namespace strata {

namespace {

constexpr char kMagic[8] = {'S', 'T', 'R', 'T', 'S', 'N', 'A', 'P'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kFlagIncremental = 1;
constexpr uint32_t kFlagEncrypted = 2;  // ciphertext, and the key's envelope in the header
constexpr size_t kRecordHeaderBytes = 40;
constexpr size_t kMaxStringBytes = 1024;
constexpr size_t kBatchChunks = 128;
constexpr uint32_t kMaxChunkBytes = 1u << 20;

enum RecordType : uint8_t { kData = 1, kRawData = 2, kZeroRun = 3, kEnd = 0xFF };

struct RecordHeader {
  uint8_t type = 0;
  uint32_t payload_bytes = 0;
  uint64_t sequence = 0;
  uint64_t first_chunk = 0;
  uint64_t chunk_count = 0;
  uint64_t checksum = 0;
};

void EncodeRecordHeader(const RecordHeader& h, char* out) {
  std::memset(out, 0, kRecordHeaderBytes);
  out[0] = static_cast<char>(h.type);
  PutLittleEndian32(out + 4, h.payload_bytes);
  PutLittleEndian64(out + 8, h.sequence);
  PutLittleEndian64(out + 16, h.first_chunk);
  PutLittleEndian64(out + 24, h.chunk_count);
  PutLittleEndian64(out + 32, h.checksum);
}

RecordHeader DecodeRecordHeader(const char* in) {
  RecordHeader h;
  h.type = static_cast<uint8_t>(in[0]);
  h.payload_bytes = GetLittleEndian32(in + 4);
  h.sequence = GetLittleEndian64(in + 8);
  h.first_chunk = GetLittleEndian64(in + 16);
  h.chunk_count = GetLittleEndian64(in + 24);
  h.checksum = GetLittleEndian64(in + 32);
  return h;
}

// XXH3 of a record: its header's first 32 bytes, then its uncompressed content.
uint64_t RecordChecksum(const char* header, const std::byte* data, size_t length) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, header, 32);
  if (length > 0) {
    XXH3_64bits_update(st, data, length);
  }
  uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

bool AllZero(const std::byte* p, size_t n) {
  static const std::byte zeros[4096] = {};
  for (size_t off = 0; off < n; off += sizeof(zeros)) {
    if (std::memcmp(p + off, zeros, std::min(n - off, sizeof(zeros))) != 0) {
      return false;
    }
  }
  return true;
}

// One zstd context per thread, reused: creating one per chunk cost a third of export's CPU.
ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> ctx(ZSTD_createCCtx(),
                                                                      ZSTD_freeCCtx);
  return ctx.get();
}
ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(),
                                                                      ZSTD_freeDCtx);
  return ctx.get();
}

unsigned Threads(unsigned requested) {
  unsigned n = requested != 0 ? requested : std::thread::hardware_concurrency();
  return std::clamp(n, 1u, 64u);
}

// The stream's own bytes: every byte written goes through here, into the whole-stream checksum.
class HashingSink {
 public:
  explicit HashingSink(ByteSink* sink) : sink_(sink), state_(XXH3_createState()) {
    XXH3_64bits_reset(state_);
  }
  ~HashingSink() { XXH3_freeState(state_); }
  Status Write(const void* data, size_t length) {
    XXH3_64bits_update(state_, data, length);
    bytes_ += length;
    return sink_->Write(data, length);
  }
  uint64_t digest() const { return XXH3_64bits_digest(state_); }
  uint64_t bytes() const { return bytes_; }

 private:
  ByteSink* sink_;
  XXH3_state_t* state_;
  uint64_t bytes_ = 0;
};

class HashingSource {
 public:
  explicit HashingSource(ByteSource* source) : source_(source), state_(XXH3_createState()) {
    XXH3_64bits_reset(state_);
  }
  ~HashingSource() { XXH3_freeState(state_); }
  // Reads exactly `length` bytes. Errors: Corruption (the stream ends early).
  Status ReadExactly(void* data, size_t length, const char* what) {
    size_t done = 0;
    while (done < length) {
      STRATA_ASSIGN_OR_RETURN(size_t n,
                              source_->Read(static_cast<char*>(data) + done, length - done));
      if (n == 0) {
        return Status::Corruption("stream truncated in " + std::string(what) + " at byte " +
                                  std::to_string(bytes_ + done));
      }
      done += n;
    }
    XXH3_64bits_update(state_, data, length);
    bytes_ += length;
    return Status::OK();
  }
  Result<bool> AtEnd() {
    char byte;
    STRATA_ASSIGN_OR_RETURN(size_t n, source_->Read(&byte, 1));
    return n == 0;
  }
  uint64_t digest() const { return XXH3_64bits_digest(state_); }
  uint64_t bytes() const { return bytes_; }

 private:
  ByteSource* source_;
  XXH3_state_t* state_;
  uint64_t bytes_ = 0;
};

// ---------------------------------------------------------------- header

struct StreamHeader {
  uint32_t flags = 0;
  uint32_t chunk_size = 0;
  uint64_t volume_size = 0;
  std::string snapshot_id, base_snapshot_id, volume_id, description;
  std::string encryption;  // the snapshot's envelope (kFlagEncrypted): its data is ciphertext
};

void PutString(std::string* out, const std::string& s) {
  char len[2] = {static_cast<char>(s.size() & 0xff), static_cast<char>(s.size() >> 8)};
  out->append(len, 2);
  out->append(s);
}

std::string EncodeHeader(const StreamHeader& h) {
  std::string out(kMagic, sizeof(kMagic));
  char fixed[24];
  PutLittleEndian32(fixed, kVersion);
  PutLittleEndian32(fixed + 4, h.flags);
  PutLittleEndian32(fixed + 8, h.chunk_size);
  PutLittleEndian32(fixed + 12, 0);
  PutLittleEndian64(fixed + 16, h.volume_size);
  out.append(fixed, sizeof(fixed));
  for (const std::string* s : {&h.snapshot_id, &h.base_snapshot_id, &h.volume_id, &h.description}) {
    PutString(&out, s->substr(0, kMaxStringBytes));
  }
  if ((h.flags & kFlagEncrypted) != 0) {
    STRATA_CHECK(h.encryption.size() <= kMaxEncryptionBytes);
    PutString(&out, h.encryption);
  }
  char sum[8];
  PutLittleEndian64(sum, XXH3_64bits(out.data(), out.size()));
  out.append(sum, 8);
  return out;
}

Result<StreamHeader> ReadHeader(HashingSource* in) {
  char fixed[8 + 24];
  STRATA_RETURN_IF_ERROR(in->ReadExactly(fixed, sizeof(fixed), "the header"));
  if (std::memcmp(fixed, kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("not a Strata snapshot stream (bad magic)");
  }
  std::string raw(fixed, sizeof(fixed));
  uint32_t version = GetLittleEndian32(fixed + 8);
  if (version != kVersion) {
    return Status::InvalidArgument("stream format version " + std::to_string(version) +
                                   " is not supported (this build reads " +
                                   std::to_string(kVersion) + ")");
  }
  StreamHeader h;
  h.flags = GetLittleEndian32(fixed + 12);
  h.chunk_size = GetLittleEndian32(fixed + 16);
  h.volume_size = GetLittleEndian64(fixed + 24);
  std::vector<std::string*> strings = {&h.snapshot_id, &h.base_snapshot_id, &h.volume_id,
                                       &h.description};
  if ((h.flags & kFlagEncrypted) != 0) {
    strings.push_back(&h.encryption);
  }
  for (std::string* s : strings) {
    unsigned char len[2];
    STRATA_RETURN_IF_ERROR(in->ReadExactly(len, 2, "the header"));
    size_t n = len[0] | (static_cast<size_t>(len[1]) << 8);
    if (n > (s == &h.encryption ? kMaxEncryptionBytes : kMaxStringBytes)) {
      return Status::Corruption("stream header string of " + std::to_string(n) + " bytes");
    }
    s->resize(n);
    STRATA_RETURN_IF_ERROR(in->ReadExactly(s->data(), n, "the header"));
    raw.append(reinterpret_cast<char*>(len), 2);
    raw.append(*s);
  }
  char sum[8];
  STRATA_RETURN_IF_ERROR(in->ReadExactly(sum, 8, "the header"));
  if (GetLittleEndian64(sum) != XXH3_64bits(raw.data(), raw.size())) {
    return Status::Corruption("stream header checksum mismatch");
  }
  if ((h.flags & ~(kFlagIncremental | kFlagEncrypted)) != 0 ||
      ((h.flags & kFlagEncrypted) != 0) == h.encryption.empty() || h.chunk_size < 4096 ||
      h.chunk_size > kMaxChunkBytes || (h.chunk_size & (h.chunk_size - 1)) != 0 ||
      h.volume_size == 0 || h.volume_size % 512 != 0 || h.volume_size > kMaxVolumeBytes ||
      ((h.flags & kFlagIncremental) != 0) == h.base_snapshot_id.empty()) {
    return Status::Corruption("stream header fields are inconsistent");
  }
  // The strings become records and JSON replies: refuse what is not printable UTF-8.
  const std::pair<const char*, const std::string*> fields[] = {
      {"snapshot id", &h.snapshot_id},
      {"base snapshot id", &h.base_snapshot_id},
      {"volume id", &h.volume_id},
      {"description", &h.description},
      {"encryption envelope", &h.encryption}};
  for (const auto& [field, value] : fields) {
    const std::string_view name(field);
    Status valid = ValidateText(field, *value,
                                name == "description"           ? 255
                                : name == "encryption envelope" ? kMaxEncryptionBytes
                                                                : 64);
    if (!valid.ok()) {
      return Status::Corruption("stream header: " + valid.message());
    }
  }
  return h;
}

// ---------------------------------------------------------------- export

struct ExportItem {
  uint64_t chunk = 0;
  std::vector<std::byte> raw;
  std::vector<char> compressed;
  bool zero = false;
  Status status;
};

class Exporter {
 public:
  Exporter(Pool* pool, const ExportOptions& o, ByteSink* sink) : pool_(pool), o_(o), out_(sink) {}

  Result<StreamStats> Run() {
    STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool_->DescribeSnapshot(o_.snapshot_id));
    OpenOptions as_stored;  // an encrypted snapshot leaves as ciphertext, with its envelope
    as_stored.ciphertext = true;
    STRATA_ASSIGN_OR_RETURN(volume_, pool_->OpenSnapshot(o_.snapshot_id, as_stored));
    STRATA_ASSIGN_OR_RETURN(loop_, pool_->CreateEventLoop(2 * kBatchChunks));
    chunk_ = volume_->chunk_size_bytes();
    size_ = volume_->size_bytes();
    StreamHeader h;
    h.flags = o_.base_snapshot_id.empty() ? 0 : kFlagIncremental;
    h.chunk_size = chunk_;
    h.volume_size = size_;
    h.snapshot_id = snap.snapshot_id;
    h.base_snapshot_id = o_.base_snapshot_id;
    h.volume_id = snap.volume_id;
    h.description = snap.description;
    h.encryption = snap.encryption;
    h.flags |= snap.encryption.empty() ? 0 : kFlagEncrypted;
    if (!o_.base_snapshot_id.empty()) {
      // Validates the pair (same volume, older base) before a byte is written.
      STRATA_RETURN_IF_ERROR(
          pool_->ListChangedBlocks(o_.base_snapshot_id, o_.snapshot_id, chunk_, 0, 1).status());
    }
    std::string header = EncodeHeader(h);
    STRATA_RETURN_IF_ERROR(out_.Write(header.data(), header.size()));
    Status s = Pipeline();
    for (Pending& b : batches_) {  // never free buffers that reads still land in
      loop_->RunUntil([&b] { return b.done == b.reads.size(); });
    }
    STRATA_RETURN_IF_ERROR(s);
    STRATA_RETURN_IF_ERROR(FlushZeroRun());
    STRATA_RETURN_IF_ERROR(WriteTrailer());
    STRATA_RETURN_IF_ERROR(out_.sink()->Finish());
    if (o_.progress) {
      o_.progress(size_, size_);
    }
    stats_.stream_bytes = out_.bytes();
    stats_.snapshot = snap;
    return stats_;
  }

 private:
  class Out {
   public:
    explicit Out(ByteSink* sink) : hashing_(sink), sink_(sink) {}
    Status Write(const void* p, size_t n) { return hashing_.Write(p, n); }
    uint64_t digest() const { return hashing_.digest(); }
    uint64_t bytes() const { return hashing_.bytes(); }
    ByteSink* sink() { return sink_; }

   private:
    HashingSink hashing_;
    ByteSink* sink_;
  };

  Result<BlockList> ListPage(uint64_t start) {
    if (o_.base_snapshot_id.empty()) {
      return pool_->ListSnapshotBlocks(o_.snapshot_id, chunk_, start, kMaxBlockListResults);
    }
    return pool_->ListChangedBlocks(o_.base_snapshot_id, o_.snapshot_id, chunk_, start,
                                    kMaxBlockListResults);
  }

  size_t RawBytes(uint64_t chunk) const {
    return static_cast<size_t>(std::min<uint64_t>(chunk_, size_ - chunk * chunk_));
  }

  // Two batches in flight: the next one's reads run while this one is compressed and written.
  Status Pipeline() {
    STRATA_RETURN_IF_ERROR(NextBatch(&batches_[0]));
    StartReads(&batches_[0]);
    for (int cur = 0; !batches_[cur].items.empty(); cur ^= 1) {
      Pending& next = batches_[cur ^ 1];
      STRATA_RETURN_IF_ERROR(NextBatch(&next));
      StartReads(&next);
      STRATA_RETURN_IF_ERROR(Finish(&batches_[cur]));
    }
    return Status::OK();
  }

  // A batch: its chunks, their reads (all submitted at once) and how many completed.
  struct Pending {
    std::vector<ExportItem> items;
    std::vector<IoRequest> reads;
    size_t done = 0;
    Status error;
  };

  // The next up to kBatchChunks chunks of the listing (fetching pages as needed); none at the end.
  Status NextBatch(Pending* b) {
    b->items.clear();
    while (b->items.size() < kBatchChunks) {
      if (page_pos_ == page_.blocks.size()) {
        if (!token_) {
          break;
        }
        STRATA_ASSIGN_OR_RETURN(page_, ListPage(*token_));
        token_ = page_.next_block;
        page_pos_ = 0;
        continue;
      }
      ExportItem& it = b->items.emplace_back();
      it.chunk = page_.blocks[page_pos_++];
      it.raw.resize(RawBytes(it.chunk));
    }
    return Status::OK();
  }

  void StartReads(Pending* b) {
    b->done = 0;
    b->error = Status::OK();
    b->reads.assign(b->items.size(), IoRequest{});
    for (size_t i = 0; i < b->items.size(); i++) {
      IoRequest& r = b->reads[i];
      r.kind = IoRequest::Kind::kRead;
      r.offset_bytes = b->items[i].chunk * chunk_;
      r.length_bytes = b->items[i].raw.size();
      r.data = b->items[i].raw.data();
      r.user = b;
      r.callback = [](IoRequest* req, const Status& st) {
        auto* p = static_cast<Pending*>(req->user);
        p->done++;
        if (!st.ok() && p->error.ok()) {
          p->error = st;
        }
      };
      volume_->Submit(loop_.get(), &r);
    }
  }

  // Waits for a batch's reads, compresses it in parallel, then writes its records in order.
  Status Finish(Pending* b) {
    loop_->RunUntil([b] { return b->done == b->items.size(); });
    STRATA_RETURN_IF_ERROR(b->error);
    const size_t n = b->items.size();
    std::vector<ExportItem>& items = b->items;
    ParallelFor(n, Threads(o_.threads), [&](size_t i) {
      ExportItem& it = items[i];
      it.status = Status::OK();
      it.zero = AllZero(it.raw.data(), it.raw.size());
      if (!it.zero) {
        it.compressed.resize(ZSTD_compressBound(it.raw.size()));
        size_t c = ZSTD_compressCCtx(ThreadCCtx(), it.compressed.data(), it.compressed.size(),
                                     it.raw.data(), it.raw.size(), o_.zstd_level);
        if (ZSTD_isError(c)) {
          it.status = Status::IOError(std::string("zstd: ") + ZSTD_getErrorName(c), EIO);
        } else {
          it.compressed.resize(c);
        }
      }
    });
    for (ExportItem& it : items) {
      STRATA_RETURN_IF_ERROR(it.status);
      STRATA_RETURN_IF_ERROR(it.zero ? AddZero(it.chunk) : WriteData(it));
    }
    if (o_.progress && n > 0) {
      o_.progress(std::min(size_, (items[n - 1].chunk + 1) * chunk_), size_);
    }
    return Status::OK();
  }

  // Zero chunks next to each other become one run record.
  Status AddZero(uint64_t chunk) {
    if (zero_count_ > 0 && zero_first_ + zero_count_ == chunk) {
      zero_count_++;
      return Status::OK();
    }
    STRATA_RETURN_IF_ERROR(FlushZeroRun());
    zero_first_ = chunk;
    zero_count_ = 1;
    return Status::OK();
  }

  Status FlushZeroRun() {
    if (zero_count_ == 0) {
      return Status::OK();
    }
    RecordHeader h{kZeroRun, 0, sequence_, zero_first_, zero_count_, 0};
    stats_.zero_chunks += zero_count_;
    zero_count_ = 0;
    return WriteRecord(h, nullptr, 0, nullptr, 0);
  }

  Status WriteData(const ExportItem& it) {
    STRATA_RETURN_IF_ERROR(FlushZeroRun());
    const bool raw = it.compressed.size() >= it.raw.size();  // incompressible: stored as is
    RecordHeader h{raw ? kRawData : kData, 0, sequence_, it.chunk, 1, 0};
    const void* payload = raw ? static_cast<const void*>(it.raw.data()) : it.compressed.data();
    h.payload_bytes = static_cast<uint32_t>(raw ? it.raw.size() : it.compressed.size());
    stats_.data_chunks++;
    stats_.volume_bytes += it.raw.size();
    return WriteRecord(h, it.raw.data(), it.raw.size(), payload, h.payload_bytes);
  }

  Status WriteRecord(RecordHeader h, const std::byte* raw, size_t raw_bytes, const void* payload,
                     size_t payload_bytes) {
    // What the importer's CheckRecord demands, asserted where it is made: consecutive sequence
    // numbers, chunks in strictly increasing order inside the volume, payloads that fit.
    STRATA_CHECK(h.sequence == sequence_ && h.sequence == stats_.records);
    STRATA_CHECK(h.chunk_count > 0 && h.first_chunk >= next_chunk_);
    STRATA_CHECK(h.first_chunk + h.chunk_count <= (size_ + chunk_ - 1) / chunk_);
    STRATA_CHECK(h.type == kZeroRun ? payload_bytes == 0 && raw_bytes == 0
                                    : h.chunk_count == 1 && raw_bytes > 0 && raw_bytes <= chunk_);
    STRATA_CHECK(payload_bytes == h.payload_bytes &&
                 (h.type != kRawData || payload_bytes == raw_bytes));
    next_chunk_ = h.first_chunk + h.chunk_count;
    char buf[kRecordHeaderBytes];
    EncodeRecordHeader(h, buf);
    h.checksum = RecordChecksum(buf, raw, raw_bytes);
    EncodeRecordHeader(h, buf);
    STRATA_RETURN_IF_ERROR(out_.Write(buf, sizeof(buf)));
    if (payload_bytes > 0) {
      STRATA_RETURN_IF_ERROR(out_.Write(payload, payload_bytes));
    }
    sequence_++;
    stats_.records++;
    return Status::OK();
  }

  // The end record: the record count, the chunk totals and the checksum of the whole stream.
  Status WriteTrailer() {
    STRATA_CHECK(zero_count_ == 0);  // the last zero run is written before the trailer
    STRATA_CHECK(stats_.data_chunks + stats_.zero_chunks <= (size_ + chunk_ - 1) / chunk_);
    RecordHeader h{kEnd, 0, sequence_, stats_.data_chunks, stats_.zero_chunks, 0};
    char buf[kRecordHeaderBytes];
    EncodeRecordHeader(h, buf);
    STRATA_RETURN_IF_ERROR(out_.Write(buf, 32));
    char sum[8];
    PutLittleEndian64(sum, out_.digest());
    return out_.Write(sum, 8);
  }

  Pool* pool_;
  const ExportOptions& o_;
  Out out_;
  std::shared_ptr<Volume> volume_;
  std::unique_ptr<EventLoop> loop_;
  uint32_t chunk_ = 0;
  uint64_t size_ = 0;
  BlockList page_;  // the listing page being cut into batches
  size_t page_pos_ = 0;
  std::optional<uint64_t> token_ = 0;  // the next page's start; nullopt after the last
  Pending batches_[2];
  uint64_t sequence_ = 0;
  uint64_t next_chunk_ = 0;  // the first chunk no record has covered yet
  uint64_t zero_first_ = 0, zero_count_ = 0;
  StreamStats stats_;
};

// ---------------------------------------------------------------- import

struct ImportItem {
  RecordHeader header;
  char header_bytes[kRecordHeaderBytes];
  std::vector<char> payload;
  std::vector<std::byte> raw;
  Status status;
};

class Importer {
 public:
  Importer(Pool* pool, const ImportOptions& o, ByteSource* source)
      : pool_(pool), o_(o), in_(source) {}

  Result<StreamStats> Run() {
    STRATA_ASSIGN_OR_RETURN(header_, ReadHeader(&in_));
    STRATA_ASSIGN_OR_RETURN(std::string base, FindBase());
    VolumeSpec spec;
    spec.size_bytes = header_.volume_size;
    spec.snapshot_id = base;
    spec.encryption = header_.encryption;  // a clone of a base must have the base's
    spec.importing = true;
    spec.volume_type = "unlimited";  // internal and hidden: any size, never throttled
    STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool_->CreateVolume(spec));
    Status s = Apply(info.volume_id);
    loop_.reset();
    volume_.reset();
    if (!s.ok()) {
      Status cleanup = pool_->DeleteVolume(info.volume_id);  // nothing half-imported stays
      (void)cleanup;  // if even that fails, the next open deletes the importing volume
      return s;
    }
    STRATA_ASSIGN_OR_RETURN(stats_.snapshot, pool_->SealImport(info.volume_id, header_.description,
                                                               header_.snapshot_id));
    stats_.stream_bytes = in_.bytes();
    return stats_;
  }

 private:
  // The local snapshot an incremental stream applies to: its base, or one imported from it.
  Result<std::string> FindBase() {
    if (header_.base_snapshot_id.empty()) {
      return std::string();
    }
    for (const SnapshotInfo& s : pool_->ListSnapshots()) {
      if (s.snapshot_id == header_.base_snapshot_id ||
          s.source_snapshot_id == header_.base_snapshot_id) {
        if (s.volume_size_bytes > header_.volume_size) {
          return Status::Corruption("incremental stream is smaller than its base");
        }
        return s.snapshot_id;
      }
    }
    return Status::NotFound("incremental stream needs base snapshot " + header_.base_snapshot_id +
                            ", which is not in this pool (import it first)");
  }

  Status Apply(const std::string& volume_id) {
    OpenOptions as_stored;  // ciphertext goes in as it came
    as_stored.ciphertext = true;
    STRATA_ASSIGN_OR_RETURN(volume_, pool_->OpenVolume(volume_id, as_stored));
    STRATA_ASSIGN_OR_RETURN(loop_, pool_->CreateEventLoop(2 * kBatchChunks));
    const uint64_t chunks = (header_.volume_size + header_.chunk_size - 1) / header_.chunk_size;
    for (;;) {
      ImportItem item;
      STRATA_RETURN_IF_ERROR(in_.ReadExactly(item.header_bytes, 32, "a record header"));
      item.header = DecodeRecordHeader(item.header_bytes);
      if (item.header.type == kEnd) {
        STRATA_RETURN_IF_ERROR(Drain());
        return CheckTrailer(item.header);
      }
      STRATA_RETURN_IF_ERROR(in_.ReadExactly(item.header_bytes + 32, 8, "a record header"));
      item.header = DecodeRecordHeader(item.header_bytes);
      STRATA_RETURN_IF_ERROR(CheckRecord(item.header, chunks));
      item.payload.resize(item.header.payload_bytes);
      STRATA_RETURN_IF_ERROR(
          in_.ReadExactly(item.payload.data(), item.payload.size(), "a record payload"));
      sequence_++;
      STRATA_CHECK(item.header.first_chunk + item.header.chunk_count > next_chunk_);
      next_chunk_ = item.header.first_chunk + item.header.chunk_count;
      batch_.push_back(std::move(item));
      if (batch_.size() == kBatchChunks) {
        STRATA_RETURN_IF_ERROR(Drain());
      }
    }
  }

  // Validation at the edge: types, order (strictly increasing chunks, consecutive sequence
  // numbers: a reordered stream stops here), bounds, sizes.
  Status CheckRecord(const RecordHeader& h, uint64_t chunks) {
    const uint64_t at = in_.bytes();
    auto bad = [at](const std::string& what) {
      return Status::Corruption("stream record at byte " + std::to_string(at) + ": " + what);
    };
    if (h.type != kData && h.type != kRawData && h.type != kZeroRun) {
      return bad("unknown record type " + std::to_string(h.type));
    }
    if (h.sequence != sequence_) {
      return bad("out of order (sequence " + std::to_string(h.sequence) + ", expected " +
                 std::to_string(sequence_) + ")");
    }
    if (h.first_chunk < next_chunk_ || h.chunk_count == 0 || h.first_chunk >= chunks ||
        h.chunk_count > chunks - h.first_chunk || (h.type != kZeroRun && h.chunk_count != 1)) {
      return bad("chunk range out of order or outside the volume");
    }
    const size_t raw = RawBytes(h.first_chunk);
    if ((h.type == kZeroRun && h.payload_bytes != 0) ||
        (h.type == kRawData && h.payload_bytes != raw) ||
        (h.type == kData && (h.payload_bytes == 0 || h.payload_bytes > ZSTD_compressBound(raw)))) {
      return bad("payload size does not fit the record");
    }
    return Status::OK();
  }

  size_t RawBytes(uint64_t chunk) const {
    return static_cast<size_t>(
        std::min<uint64_t>(header_.chunk_size, header_.volume_size - chunk * header_.chunk_size));
  }

  // Decompresses and checks the batch in parallel, then writes it all at once (the records'
  // chunks are disjoint, so their order does not matter).
  Status Drain() {
    ParallelFor(batch_.size(), Threads(o_.threads), [&](size_t i) {
      ImportItem& it = batch_[i];
      const RecordHeader& h = it.header;
      if (h.type == kZeroRun) {
        it.status = RecordChecksum(it.header_bytes, nullptr, 0) == h.checksum
                        ? Status::OK()
                        : Status::Corruption("zero-run record checksum mismatch");
        return;
      }
      it.raw.resize(RawBytes(h.first_chunk));
      if (h.type == kRawData) {
        std::memcpy(it.raw.data(), it.payload.data(), it.raw.size());
      } else {
        size_t n = ZSTD_decompressDCtx(ThreadDCtx(), it.raw.data(), it.raw.size(),
                                       it.payload.data(), it.payload.size());
        if (ZSTD_isError(n) || n != it.raw.size()) {
          it.status = Status::Corruption("chunk " + std::to_string(h.first_chunk) +
                                         " does not decompress to its size");
          return;
        }
      }
      it.status = RecordChecksum(it.header_bytes, it.raw.data(), it.raw.size()) == h.checksum
                      ? Status::OK()
                      : Status::Corruption("chunk " + std::to_string(h.first_chunk) +
                                           ": record checksum mismatch");
    });
    std::vector<IoRequest> writes(batch_.size());
    for (size_t i = 0; i < batch_.size(); i++) {
      const ImportItem& it = batch_[i];
      STRATA_RETURN_IF_ERROR(it.status);  // nothing of a damaged batch is written
      const uint64_t offset = it.header.first_chunk * header_.chunk_size;
      STRATA_CHECK(offset < header_.volume_size);  // CheckRecord bounded every record
      IoRequest& r = writes[i];
      r.offset_bytes = offset;
      if (it.header.type == kZeroRun) {
        r.kind = IoRequest::Kind::kWriteZeroes;
        r.length_bytes =
            std::min(it.header.chunk_count * header_.chunk_size, header_.volume_size - offset);
      } else {
        r.kind = IoRequest::Kind::kWrite;
        STRATA_CHECK(it.raw.size() == RawBytes(it.header.first_chunk));
        r.length_bytes = it.raw.size();
        r.data = const_cast<std::byte*>(it.raw.data());
      }
    }
    STRATA_RETURN_IF_ERROR(SubmitAll(volume_.get(), loop_.get(), &writes));
    for (const ImportItem& it : batch_) {
      STRATA_RETURN_IF_ERROR(it.status);
      stats_.records++;
      if (it.header.type == kZeroRun) {
        stats_.zero_chunks += it.header.chunk_count;
      } else {
        stats_.data_chunks++;
        stats_.volume_bytes += it.raw.size();
      }
    }
    if (o_.progress && !batch_.empty()) {
      o_.progress(std::min(header_.volume_size, next_chunk_ * header_.chunk_size),
                  header_.volume_size);
    }
    batch_.clear();
    return Status::OK();
  }

  Status CheckTrailer(const RecordHeader& end) {
    const uint64_t digest = in_.digest();  // of everything before the checksum field
    char sum[8];
    STRATA_RETURN_IF_ERROR(in_.ReadExactly(sum, 8, "the trailer"));
    const auto mismatch = [](const char* what, uint64_t counted, uint64_t read) {
      return Status::Corruption("stream trailer counts " + std::to_string(counted) + " " + what +
                                ", but the stream carried " + std::to_string(read));
    };
    if (end.sequence != sequence_) {
      return mismatch("records", end.sequence, sequence_);
    }
    if (end.first_chunk != stats_.data_chunks) {
      return mismatch("data chunks", end.first_chunk, stats_.data_chunks);
    }
    if (end.chunk_count != stats_.zero_chunks) {
      return mismatch("zero chunks", end.chunk_count, stats_.zero_chunks);
    }
    if (GetLittleEndian64(sum) != digest) {
      return Status::Corruption("stream checksum mismatch (records altered or reordered)");
    }
    STRATA_ASSIGN_OR_RETURN(bool at_end, in_.AtEnd());
    if (!at_end) {
      return Status::Corruption("data after the end of the stream");
    }
    if (o_.progress) {
      o_.progress(header_.volume_size, header_.volume_size);
    }
    return Status::OK();
  }

  Pool* pool_;
  const ImportOptions& o_;
  HashingSource in_;
  StreamHeader header_;
  std::shared_ptr<Volume> volume_;
  std::unique_ptr<EventLoop> loop_;
  std::vector<ImportItem> batch_;
  uint64_t sequence_ = 0;
  uint64_t next_chunk_ = 0;
  StreamStats stats_;
};

}  // namespace

// ---------------------------------------------------------------- fd sink and source

Status FdSink::Write(const void* data, size_t length) {
  const char* p = static_cast<const char*>(data);
  while (length > 0) {
    ssize_t n = write(fd_, p, length);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Status::FromErrno("write stream", errno);
    }
    p += n;
    length -= static_cast<size_t>(n);
  }
  return Status::OK();
}

Status FdSink::Finish() {
  if (fsync(fd_) != 0 && errno != EINVAL && errno != EROFS) {  // pipes cannot be synced
    return Status::FromErrno("sync stream", errno);
  }
  return Status::OK();
}

Result<size_t> FdSource::Read(void* data, size_t length) {
  for (;;) {
    ssize_t n = read(fd_, data, length);
    if (n >= 0) {
      return static_cast<size_t>(n);
    }
    if (errno != EINTR) {
      return Status::FromErrno("read stream", errno);
    }
  }
}

Result<StreamStats> ExportSnapshot(Pool* pool, const ExportOptions& options, ByteSink* sink) {
  return Exporter(pool, options, sink).Run();
}

Result<StreamStats> ImportSnapshot(Pool* pool, const ImportOptions& options, ByteSource* source) {
  return Importer(pool, options, source).Run();
}

}  // namespace strata
