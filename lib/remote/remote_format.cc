#include "remote/remote_format.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

#include <xxhash.h>
#include <zstd.h>

#include "util/check.h"
#include "util/coding.h"

namespace strata::remote {

namespace {

constexpr char kIndexMagic[8] = {'S', 'T', 'R', 'T', 'P', 'I', 'D', 'X'};
constexpr char kNodeMagic[8] = {'S', 'T', 'R', 'T', 'N', 'O', 'D', 'E'};
constexpr size_t kRefBytes = 32 + 32 + 8 + 4 + 4 + 4 + 8;
constexpr size_t kPieceTableBytes = size_t{kMaxPieces} * (4 + 32);
constexpr size_t kIndexEntryBytes = kRefBytes + kPieceTableBytes;  // version 2
constexpr size_t kPlacedPieceBytes = 4 + 32 + 32 + 8;              // + pack, offset
constexpr size_t kPlacedEntryBytes = kRefBytes + size_t{kMaxPieces} * kPlacedPieceBytes;
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 4;  // magic, version, level (or 0), count

void PutRef(std::string* out, const BlockRef& r) {
  char buf[kRefBytes];
  std::memcpy(buf, r.sha256.data(), 32);
  std::memcpy(buf + 32, r.pack.data(), 32);
  PutLittleEndian64(buf + 64, r.offset);
  PutLittleEndian32(buf + 72, r.stored);
  PutLittleEndian32(buf + 76, r.raw);
  PutLittleEndian32(buf + 80, r.flags);
  PutLittleEndian64(buf + 84, r.xxh3);
  out->append(buf, kRefBytes);
}

BlockRef GetRef(const char* p) {
  BlockRef r;
  std::memcpy(r.sha256.data(), p, 32);
  std::memcpy(r.pack.data(), p + 32, 32);
  r.offset = GetLittleEndian64(p + 64);
  r.stored = GetLittleEndian32(p + 72);
  r.raw = GetLittleEndian32(p + 76);
  r.flags = GetLittleEndian32(p + 80);
  r.xxh3 = GetLittleEndian64(p + 84);
  return r;
}

std::string Header(const char* magic, uint32_t version, uint32_t level, uint32_t count) {
  std::string out(magic, 8);
  char buf[12];
  PutLittleEndian32(buf, version);
  PutLittleEndian32(buf + 4, level);
  PutLittleEndian32(buf + 8, count);
  out.append(buf, 12);
  return out;
}

void Seal(std::string* out) {
  char sum[8];
  PutLittleEndian64(sum, XXH3_64bits(out->data(), out->size()));
  out->append(sum, 8);
}

// Checks magic, version (1 to max_version), size and trailer; sets version, level and count. An
// entry is entry_bytes(version) long. Errors: Corruption.
Status Open(const std::string& bytes, const char* magic, uint32_t max_version,
            size_t (*entry_bytes)(uint32_t, bool), const std::string& what, uint32_t* version,
            uint32_t* level, uint32_t* count) {
  const auto bad = [&what](const std::string& why) {
    return Status::Corruption("remote object " + what + ": " + why);
  };
  if (bytes.size() < kHeaderBytes + 8 || std::memcmp(bytes.data(), magic, 8) != 0) {
    return bad("not a Strata remote object of this kind (bad magic or too short)");
  }
  const uint64_t sum = GetLittleEndian64(bytes.data() + bytes.size() - 8);
  if (sum != XXH3_64bits(bytes.data(), bytes.size() - 8)) {
    return bad("checksum mismatch (damaged or truncated)");
  }
  *version = GetLittleEndian32(bytes.data() + 8);
  if (*version < 1 || *version > max_version) {
    return bad("format version " + std::to_string(*version) +
               " is not supported (this Strata reads versions 1 to " + std::to_string(max_version) +
               ")");
  }
  *level = GetLittleEndian32(bytes.data() + 12);
  *count = GetLittleEndian32(bytes.data() + 16);
  if (bytes.size() != kHeaderBytes + size_t{*count} * entry_bytes(*version, *level == 0) + 8) {
    return bad("size does not match its entry count");
  }
  return Status::OK();
}

size_t IndexEntryBytes(uint32_t version, bool /*leaf*/) {
  return version == 1 ? kRefBytes : version == 2 ? kIndexEntryBytes : kPlacedEntryBytes;
}
size_t NodeEntryBytes(uint32_t /*version*/, bool leaf) { return 4 + (leaf ? kRefBytes : 32); }

// The most a pieced block of `raw` bytes can store: each piece at zstd's bound.
uint64_t PiecedBound(uint32_t raw) {
  const uint32_t full = raw / kPieceBytes, rest = raw % kPieceBytes;
  return uint64_t{full} * ZSTD_COMPRESSBOUND(kPieceBytes) + (rest ? ZSTD_COMPRESSBOUND(rest) : 0);
}

void PutPieces(std::string* out, const PieceTable& t) {
  char buf[kPieceTableBytes];
  for (uint32_t p = 0; p < kMaxPieces; p++) {
    PutLittleEndian32(buf + 36 * p, t.stored[p]);
    std::memcpy(buf + 36 * p + 4, t.sha256[p].data(), 32);
  }
  out->append(buf, kPieceTableBytes);
}

void PutPlacedPieces(std::string* out, const BlockRef& ref, const PieceTable& t) {
  char buf[kMaxPieces * kPlacedPieceBytes] = {};
  for (uint32_t p = 0; p < PieceCount(ref); p++) {
    char* at = buf + kPlacedPieceBytes * p;
    const PiecePlace place = PlaceOf(ref, t, p);
    PutLittleEndian32(at, t.stored[p]);
    std::memcpy(at + 4, t.sha256[p].data(), 32);
    std::memcpy(at + 36, place.pack.data(), 32);
    PutLittleEndian64(at + 68, place.offset);
  }
  out->append(buf, sizeof(buf));
}

// A piece table as encoded: lengths and hashes, and (version 3) each piece's place. A place in
// the ref's pack must be where the block's own pieces lie (back to back from its offset); any
// other is listed as borrowed, for CheckPieces to judge. Errors: Corruption naming `what`.
Result<PieceTable> GetPieces(const char* p, uint32_t version, const BlockRef& ref,
                             const std::string& what) {
  PieceTable t;
  const size_t each = version == 2 ? 36 : kPlacedPieceBytes;
  uint64_t own = ref.offset;
  for (uint32_t i = 0; i < kMaxPieces; i++) {
    const char* at = p + each * i;
    t.stored[i] = GetLittleEndian32(at);
    std::memcpy(t.sha256[i].data(), at + 4, 32);
    if (version == 2) {
      continue;
    }
    PiecePlace place;
    std::memcpy(place.pack.data(), at + 36, 32);
    place.offset = GetLittleEndian64(at + 68);
    if (i >= PieceCount(ref)) {
      if (place != PiecePlace{}) {
        return Status::Corruption("remote object " + what + ": a piece table out of bounds");
      }
    } else if (place.pack != ref.pack) {
      t.borrowed.emplace_back(i, place);
    } else if (place.offset != own) {
      return Status::Corruption("remote object " + what +
                                ": a block's own pieces are not back to back from its offset");
    } else {
      own += t.stored[i];
    }
  }
  return t;
}

// A piece table against its (checked) ref: lengths, and borrowed pieces (only if it spans, in
// other packs, within 4 GiB, rising). Errors: Corruption naming `what`.
Status CheckPieces(const IndexEntry& e, const std::string& what) {
  const uint32_t count = PieceCount(e.ref);
  const auto bad = [&what](const char* why) {
    return Status::Corruption("remote object " + what + ": " + why);
  };
  const std::vector<std::pair<uint32_t, PiecePlace>>& borrowed = e.pieces.borrowed;
  if (!borrowed.empty() && !Spans(e.ref)) {
    return bad("a piece of a block that does not span lies in another pack");
  }
  uint64_t own = 0;
  for (uint32_t p = 0, b = 0; p < kMaxPieces; p++) {
    const uint32_t n = e.pieces.stored[p];
    const bool ok = p < count ? n > 0 && n <= ZSTD_COMPRESSBOUND(PieceRaw(e.ref, p))
                              : n == 0 && e.pieces.sha256[p] == Hash{};
    if (!ok) {
      return bad("a piece table out of bounds");
    }
    if (b < borrowed.size() && borrowed[b].first == p) {
      const PiecePlace& place = borrowed[b++].second;
      if (place.pack == e.ref.pack || place.offset > kMaxPackBytes - n ||
          (b < borrowed.size() && borrowed[b].first <= p)) {
        return bad("a borrowed piece's place out of bounds");
      }
    } else if (p < count) {
      own += n;
    }
  }
  if (!borrowed.empty() && borrowed.back().first >= count) {
    return bad("a borrowed piece past the block's pieces");
  }
  if (count > 0 && own != e.ref.stored) {
    return bad("a block's pieces do not add up to its stored length");
  }
  return Status::OK();
}

}  // namespace

bool IsPieced(const BlockRef& ref) { return (ref.flags & kFlagPieces) != 0; }
bool Spans(const BlockRef& ref) { return (ref.flags & kFlagSpans) != 0; }

PiecePlace PlaceOf(const BlockRef& ref, const PieceTable& table, uint32_t piece) {
  STRATA_CHECK(piece < PieceCount(ref));
  auto b = table.borrowed.begin();
  uint64_t at = ref.offset;
  for (uint32_t p = 0; p < piece; p++) {
    if (b != table.borrowed.end() && b->first == p) {
      ++b;
    } else {
      at += table.stored[p];
    }
  }
  if (b != table.borrowed.end() && b->first == piece) {
    return b->second;
  }
  return PiecePlace{ref.pack, at};
}

uint32_t PieceCount(const BlockRef& ref) {
  return IsPieced(ref) ? (ref.raw + kPieceBytes - 1) / kPieceBytes : 0;
}

uint32_t PieceRaw(const BlockRef& ref, uint32_t piece) {
  STRATA_CHECK(piece < PieceCount(ref));
  return std::min(kPieceBytes, ref.raw - piece * kPieceBytes);
}

Hash PiecedName(const BlockNamer& namer, const PieceTable& table, uint32_t count) {
  STRATA_CHECK(count <= kMaxPieces);
  return namer.Of(table.sha256.data(), size_t{count} * sizeof(Hash));  // (Hash is 32 bytes)
}

Status CheckRef(const BlockRef& r, const std::string& what) {
  const bool zstd = r.flags == kFlagZstd;
  const bool pieced = r.flags == (kFlagZstd | kFlagPieces);
  const bool spans = r.flags == (kFlagZstd | kFlagPieces | kFlagSpans);  // >= one piece its own
  const bool lengths_ok = r.raw > 0 && r.raw <= kMaxBlockBytes &&
                          (pieced  ? r.stored >= PieceCount(r) && r.stored <= PiecedBound(r.raw)
                           : spans ? r.stored > 0 && r.stored <= PiecedBound(r.raw)
                           : zstd  ? r.stored > 0 && r.stored <= ZSTD_COMPRESSBOUND(r.raw)
                                   : r.stored == r.raw);
  if ((r.flags != 0 && !zstd && !pieced && !spans) || !lengths_ok ||
      r.offset > kMaxPackBytes - r.stored) {
    return Status::Corruption("remote object " + what + ": a block ref out of bounds (raw " +
                              std::to_string(r.raw) + ", stored " + std::to_string(r.stored) +
                              ", flags " + std::to_string(r.flags) + ")");
  }
  return Status::OK();
}

std::string HexOf(const Hash& hash) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(64, '\0');
  for (size_t i = 0; i < 32; i++) {
    out[2 * i] = kDigits[hash[i] >> 4];
    out[2 * i + 1] = kDigits[hash[i] & 15];
  }
  return out;
}

bool ParseHex(const std::string& hex, Hash* hash) {
  if (hex.size() != 64) {
    return false;
  }
  for (size_t i = 0; i < 32; i++) {
    unsigned v = 0;
    for (int k = 0; k < 2; k++) {
      const char c = hex[2 * i + k];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) {
        return false;
      }
      v = v * 16 + static_cast<unsigned>(d);
    }
    (*hash)[i] = static_cast<uint8_t>(v);
  }
  return true;
}

Hash Sha256(const void* data, size_t length) {
  Hash h;
  SHA256(static_cast<const unsigned char*>(data), length, h.data());
  return h;
}

BlockNamer::BlockNamer(const std::string& key) : key_(key) {
  STRATA_CHECK(key_.size() == kKeyBytes);
}

BlockNamer::~BlockNamer() { OPENSSL_cleanse(key_.data(), key_.size()); }

Hash BlockNamer::Of(const void* data, size_t length) const {
  if (key_.empty()) {
    return Sha256(data, length);
  }
  Hash h;
  unsigned int n = 0;
  const unsigned char* out = HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
                                  static_cast<const unsigned char*>(data), length, h.data(), &n);
  STRATA_CHECK(out != nullptr && n == h.size());  // SHA-256 in OpenSSL cannot fail here
  return h;
}

void SortByOffset(std::vector<IndexEntry>* entries) {
  std::sort(entries->begin(), entries->end(),
            [](const IndexEntry& a, const IndexEntry& b) { return a.ref.offset < b.ref.offset; });
}

const IndexEntry* ListedEntry(const std::vector<IndexEntry>& entries, const BlockRef& ref,
                              const BlockNamer& namer) {
  auto it =
      std::lower_bound(entries.begin(), entries.end(), ref.offset,
                       [](const IndexEntry& e, uint64_t offset) { return e.ref.offset < offset; });
  if (it == entries.end() || it->ref.offset != ref.offset || it->ref.sha256 != ref.sha256 ||
      it->ref.pack != ref.pack || it->ref.stored != ref.stored || it->ref.raw != ref.raw ||
      it->ref.flags != ref.flags ||
      (IsPieced(ref) && PiecedName(namer, it->pieces, PieceCount(ref)) != ref.sha256)) {
    return nullptr;
  }
  return &*it;
}

std::string EncodeIndex(const std::vector<IndexEntry>& blocks) {
  // Version 2 where it says all: readers of version 2 take such a pack (and its entries are
  // about half the size).
  const bool placed =
      std::any_of(blocks.begin(), blocks.end(), [](const IndexEntry& e) { return Spans(e.ref); });
  const uint32_t version = placed ? kSpanningIndexVersion : kFormatVersion;
  std::string out = Header(kIndexMagic, version, 0, static_cast<uint32_t>(blocks.size()));
  out.reserve(out.size() + blocks.size() * IndexEntryBytes(version, true) + 8);
  for (const IndexEntry& e : blocks) {
    PutRef(&out, e.ref);
    if (placed) {
      PutPlacedPieces(&out, e.ref, e.pieces);
    } else {
      PutPieces(&out, e.pieces);
    }
  }
  Seal(&out);
  return out;
}

Result<std::vector<IndexEntry>> DecodeIndex(const std::string& bytes, const std::string& what) {
  uint32_t version, level, count;
  STRATA_RETURN_IF_ERROR(Open(bytes, kIndexMagic, kSpanningIndexVersion, IndexEntryBytes, what,
                              &version, &level, &count));
  const size_t entry_bytes = IndexEntryBytes(version, true);
  std::vector<IndexEntry> out(count);  // (count is bounded by the size just checked)
  for (uint32_t i = 0; i < count; i++) {
    const char* p = bytes.data() + kHeaderBytes + size_t{i} * entry_bytes;
    IndexEntry& e = out[i];
    e.ref = GetRef(p);
    STRATA_RETURN_IF_ERROR(CheckRef(e.ref, what));
    if ((version == 1 && IsPieced(e.ref)) || (version < kSpanningIndexVersion && Spans(e.ref))) {
      return Status::Corruption("remote object " + what +
                                ": a block of a later version in a version " +
                                std::to_string(version) + " index");
    }
    if (version > 1) {
      STRATA_ASSIGN_OR_RETURN(e.pieces, GetPieces(p + kRefBytes, version, e.ref, what));
    }
    STRATA_RETURN_IF_ERROR(CheckPieces(e, what));
  }
  return out;
}

std::string EncodeNode(const Node& node) {
  const bool leaf = node.level == 0;
  std::string out = Header(kNodeMagic, kFormatVersion, node.level,
                           static_cast<uint32_t>(leaf ? node.blocks.size() : node.children.size()));
  char slot[4];
  if (leaf) {
    for (const auto& [s, ref] : node.blocks) {
      PutLittleEndian32(slot, s);
      out.append(slot, 4);
      PutRef(&out, ref);
    }
  } else {
    for (const auto& [s, child] : node.children) {
      PutLittleEndian32(slot, s);
      out.append(slot, 4);
      out.append(reinterpret_cast<const char*>(child.data()), 32);
    }
  }
  Seal(&out);
  return out;
}

Result<Node> DecodeNode(const std::string& bytes, const std::string& what) {
  if (bytes.size() < kHeaderBytes) {
    return Status::Corruption("remote object " + what + ": too short");
  }
  const bool leaf = GetLittleEndian32(bytes.data() + 12) == 0;
  uint32_t version, level, count;
  STRATA_RETURN_IF_ERROR(
      Open(bytes, kNodeMagic, kFormatVersion, NodeEntryBytes, what, &version, &level, &count));
  Node node;
  node.level = level;
  int64_t last = -1;
  for (uint32_t i = 0; i < count; i++) {
    const char* p = bytes.data() + kHeaderBytes + size_t{i} * (4 + (leaf ? kRefBytes : 32));
    const uint32_t s = GetLittleEndian32(p);
    if (s >= kFanout || static_cast<int64_t>(s) <= last) {
      return Status::Corruption("remote object " + what + ": slots out of order or range");
    }
    last = s;
    if (leaf) {
      node.blocks.emplace_back(s, GetRef(p + 4));
      STRATA_RETURN_IF_ERROR(CheckRef(node.blocks.back().second, what));
    } else {
      Hash child;
      std::memcpy(child.data(), p + 4, 32);
      node.children.emplace_back(s, child);
    }
  }
  return node;
}

std::string PackKey(const Hash& pack) {
  const std::string hex = HexOf(pack);
  return "packs/" + hex.substr(0, 2) + "/" + hex;
}
std::string IndexKey(const Hash& pack) { return std::string(kIndexPrefix) + HexOf(pack); }
std::string NodeKey(const Hash& node) {
  const std::string hex = HexOf(node);
  return std::string(kNodePrefix) + hex.substr(0, 2) + "/" + hex;
}
std::string ManifestKey(const std::string& snapshot_id) {
  return std::string(kManifestPrefix) + snapshot_id;
}
std::string PendingKey(const std::string& snapshot_id) {
  return std::string(kPendingPrefix) + snapshot_id;
}

}  // namespace strata::remote
