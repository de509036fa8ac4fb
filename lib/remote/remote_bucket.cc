// The bucket as every part of the remote tier reads it, and the helpers they share.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xxhash.h>
#include <zstd.h>

#include "strata/event_loop.h"
#include "strata/remote.h"

#include "remote/remote_format.h"
#include "remote/remote_parts.h"
#include "remote/s3_client.h"
#include "util/check.h"
#include "util/coding.h"
#include "util/json_text.h"
#include "util/parallel.h"
#include "util/submit_all.h"

namespace strata::remote {

using nlohmann::json;

std::string HashKey(const Hash& h) { return std::string(h.begin(), h.end()); }

unsigned Cores() { return std::clamp(std::thread::hardware_concurrency(), 1u, 16u); }

// Levels above the leaves that a tree over `blocks` blocks needs (0: one leaf is enough).
uint32_t DepthFor(uint64_t blocks) {
  uint32_t depth = 0;
  for (uint64_t span = kFanout; span < blocks; span *= kFanout) {
    depth++;
  }
  return depth;
}

// Fields of JSON read from the remote, which anyone with access to the bucket may have written:
// a field of the wrong type reads as absent, never as an exception.
std::string StringField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
uint64_t UintField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}
int64_t IntField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// The manifest: one JSON line, a newline, and the SHA-256 of that line in hex.
std::string EncodeManifest(const json& j) {
  const std::string line = DumpJson(j);
  return line + "\n" + HexOf(Sha256(line.data(), line.size())) + "\n";
}

Result<json> DecodeManifest(const std::string& bytes, const std::string& what) {
  const size_t nl = bytes.find('\n');
  Hash want;
  if (nl == std::string::npos || bytes.size() != nl + 66 ||
      !ParseHex(bytes.substr(nl + 1, 64), &want) || Sha256(bytes.data(), nl) != want) {
    return Status::Corruption("remote object " + what + ": damaged manifest (checksum)");
  }
  json j = json::parse(bytes.substr(0, nl), nullptr, false);
  if (j.is_object() && UintField(j, "format") > kManifestFormat) {
    return Status::NotSupported(
        "remote object " + what + ": manifest format " + std::to_string(UintField(j, "format")) +
        " is newer than this Strata reads (1 to " + std::to_string(kManifestFormat) + ")");
  }
  if (j.is_discarded() || !j.is_object() || UintField(j, "format") == 0 ||
      !j.value("snapshot_id", json()).is_string() ||
      !j.value("volume_size", json()).is_number_unsigned() ||
      !j.value("block_size", json()).is_number_unsigned() ||
      !j.value("depth", json()).is_number_unsigned() || !j.value("root", json()).is_string()) {
    return Status::Corruption("remote object " + what +
                              ": manifest fields missing or of the wrong type");
  }
  // Sizes the format allows, and a depth that matches them: tree walks trust both.
  const uint64_t size = j["volume_size"].get<uint64_t>();
  const uint64_t block = j["block_size"].get<uint64_t>();
  if (block != kRemoteBlockBytes || size == 0 || size > kMaxVolumeBytes ||
      j["depth"].get<uint64_t>() != DepthFor((size + block - 1) / block)) {
    return Status::Corruption("remote object " + what + ": manifest sizes or depth are impossible");
  }
  // An encrypted snapshot: its envelope (bounded as the engine bounds it) and keyed block ids,
  // both or neither: a manifest that says plaintext ids over ciphertext is refused.
  const json enc = j.value("encryption", json(""));
  const json ids = j.value("block_ids", json("sha256"));
  if (!enc.is_string() || enc.get_ref<const std::string&>().size() > kMaxEncryptionBytes ||
      !ids.is_string() ||
      ids.get<std::string>() !=
          (enc.get_ref<const std::string&>().empty() ? "sha256" : kKeyedBlockIds)) {
    return Status::Corruption("remote object " + what +
                              ": manifest encryption fields are inconsistent");
  }
  return j;
}

RemoteSnapshotInfo InfoOf(const json& m, const std::string& state) {
  RemoteSnapshotInfo i;
  i.snapshot_id = StringField(m, "snapshot_id");
  i.volume_id = StringField(m, "volume_id");
  i.description = StringField(m, "description");
  i.state = state;
  i.start_time_ms = IntField(m, "start_time_ms");
  i.volume_size_bytes = UintField(m, "volume_size");
  i.block_size_bytes = static_cast<uint32_t>(UintField(m, "block_size"));
  i.data_blocks = UintField(m, "data_blocks");
  i.parent_snapshot_id = StringField(m, "parent_snapshot_id");
  i.encryption = StringField(m, "encryption");
  auto tags = m.find("tags");
  if (tags != m.end() && tags->is_object()) {
    for (auto it = tags->begin(); it != tags->end() && i.tags.size() < kMaxTags; ++it) {
      if (it.value().is_string()) {
        i.tags.emplace(it.key(), it.value().get<std::string>());
      }
    }
  }
  return i;
}

// A block as stored in its pack, checked (length, zstd, XXH3, SHA-256) into `raw`. Nothing
// that fails a check is ever returned as data.
Status DecodeBlock(const std::string& stored, const BlockRef& ref, const BlockNamer& namer,
                   const std::string& what, std::vector<std::byte>* raw) {
  STRATA_RETURN_IF_ERROR(CheckRef(ref, what));  // (decoders check; this is the last line)
  raw->resize(ref.raw);
  return DecodeBlockInto(stored, ref, namer, what, *raw);
}

namespace {

// One zstd frame of exactly out.size() bytes. A thread's context is reused: ZSTD_decompress
// would make one per call, eight times per pieced block.
bool DecompressFrame(std::string_view frame, std::span<std::byte> out) {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(),
                                                                       ZSTD_freeDCtx);
  STRATA_CHECK(dctx != nullptr);  // (allocation failure)
  const size_t n =
      ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), frame.data(), frame.size());
  return !ZSTD_isError(n) && n == out.size();
}

// A pieced block: frame by frame (each one piece), each piece hashed; the list must name it.
Status DecodePiecedInto(std::string_view stored, const BlockRef& ref, const BlockNamer& namer,
                        const std::string& what, std::span<std::byte> out) {
  PieceTable table;
  const uint32_t count = PieceCount(ref);
  size_t at = 0;
  for (uint32_t p = 0; p < count; p++) {
    const size_t frame = ZSTD_findFrameCompressedSize(stored.data() + at, stored.size() - at);
    const std::span<std::byte> piece = out.subspan(size_t{p} * kPieceBytes, PieceRaw(ref, p));
    if (ZSTD_isError(frame) || !DecompressFrame(stored.substr(at, frame), piece)) {
      return Status::Corruption(what + ": does not decompress (damaged pack)");
    }
    table.sha256[p] = Sha256(piece.data(), piece.size());
    at += frame;
  }
  if (at != stored.size()) {
    return Status::Corruption(what + ": bytes past its last piece (damaged pack)");
  }
  if (XXH3_64bits(out.data(), out.size()) != ref.xxh3 ||
      PiecedName(namer, table, count) != ref.sha256) {
    return Status::Corruption(what + ": checksum mismatch (damaged pack)");
  }
  return Status::OK();
}

}  // namespace

Status DecodeBlockInto(std::string_view stored, const BlockRef& ref, const BlockNamer& namer,
                       const std::string& what, std::span<std::byte> out) {
  STRATA_RETURN_IF_ERROR(CheckRef(ref, what));
  STRATA_CHECK(out.size() == ref.raw);  // the caller sized it from the same ref
  if (stored.size() != ref.stored) {
    return Status::Corruption(what + ": short read (damaged or truncated pack)");
  }
  if (IsPieced(ref)) {
    return DecodePiecedInto(stored, ref, namer, what, out);
  }
  if (ref.flags & kFlagZstd) {
    if (!DecompressFrame(stored, out)) {
      return Status::Corruption(what + ": does not decompress (damaged pack)");
    }
  } else if (stored.size() == ref.raw) {
    std::memcpy(out.data(), stored.data(), ref.raw);
  } else {
    return Status::Corruption(what + ": stored and raw lengths disagree (damaged index)");
  }
  if (XXH3_64bits(out.data(), out.size()) != ref.xxh3 ||
      namer.Of(out.data(), out.size()) != ref.sha256) {
    return Status::Corruption(what + ": checksum mismatch (damaged pack)");
  }
  return Status::OK();
}

Status DecodePieceInto(std::string_view stored, const Hash& sha256, const std::string& what,
                       std::span<std::byte> out) {
  if (!DecompressFrame(stored, out)) {
    return Status::Corruption(what + ": does not decompress (damaged pack)");
  }
  if (Sha256(out.data(), out.size()) != sha256) {
    return Status::Corruption(what + ": checksum mismatch (damaged pack)");
  }
  return Status::OK();
}

Result<std::unique_ptr<BlockNamer>> NamerFor(const std::string& what, const std::string& encryption,
                                             const std::string& block_id_key) {
  if (encryption.empty()) {
    if (!block_id_key.empty()) {
      return Status::InvalidArgument(what + " is not encrypted: it takes no block-id key");
    }
    return std::make_unique<BlockNamer>();
  }
  if (block_id_key.empty()) {
    return Status::NotSupported(what +
                                " is encrypted: its remote copy is ciphertext named under a key "
                                "derived from its data key, so it needs the KMS key that wraps "
                                "that data key (through the EC2 layer)");
  }
  if (block_id_key.size() != BlockNamer::kKeyBytes) {
    return Status::InvalidArgument("a block-id key is 32 bytes");
  }
  return std::make_unique<BlockNamer>(block_id_key);
}

uint64_t SpanOf(uint32_t level) {
  uint64_t span = kFanout;
  for (uint32_t i = 0; i < level; i++) {
    span *= kFanout;
  }
  return span;  // blocks under one node of `level`
}

Bucket::Bucket(RemoteSpec spec, std::unique_ptr<ObjectStore> store, RemoteTuning tuning)
    : spec_(std::move(spec)),
      store_(std::move(store)),
      tuning_(std::move(tuning)),
      env_(tuning_.env ? tuning_.env : Env::Default()) {}

Status Bucket::PutIfAbsent(const std::string& key, const std::string& bytes) {
  Status s = store_->Put(key, bytes.data(), bytes.size(), /*if_absent=*/true);
  return s.code() == Status::Code::kAlreadyExists ? Status::OK() : s;  // content-addressed
}

Result<json> Bucket::GetManifest(const std::string& snapshot_id) {
  auto bytes = store_->Get(ManifestKey(snapshot_id), kMaxManifestBytes);
  if (bytes.status().code() == Status::Code::kNotFound) {
    return Status::NotFound(Name() + " holds no snapshot " + snapshot_id);
  }
  STRATA_RETURN_IF_ERROR(bytes.status());
  return DecodeManifest(*bytes, ManifestKey(snapshot_id));
}

Status Bucket::PutAllIfAbsent(const std::vector<std::pair<std::string, std::string>>& objects,
                              S3Request* also) {
  std::vector<S3Request> puts(objects.size());
  std::vector<S3Request*> batch;
  if (also != nullptr) {
    batch.push_back(also);
  }
  for (size_t i = 0; i < objects.size(); i++) {
    puts[i].method = S3Request::Method::kPut;
    puts[i].key = objects[i].first;
    puts[i].body = objects[i].second.data();
    puts[i].body_bytes = objects[i].second.size();
    puts[i].headers = {{"If-None-Match", "*"}};
    batch.push_back(&puts[i]);
  }
  store_->Run(batch);
  if (also != nullptr && !also->status.ok()) {
    return also->status;
  }
  for (const S3Request& put : puts) {
    if (!put.status.ok() && put.status.code() != Status::Code::kAlreadyExists) {
      return put.status;
    }
  }
  return Status::OK();
}

Result<Node> Bucket::GetNode(const Hash& hash) {
  STRATA_ASSIGN_OR_RETURN(std::vector<Node> nodes, GetNodes({hash}));
  return std::move(nodes[0]);
}

Result<std::vector<Node>> Bucket::GetNodes(const std::vector<Hash>& hashes) {
  STRATA_CHECK(hashes.size() <= kMaxNodesAtOnce);
  std::vector<S3Request> gets(hashes.size());
  std::vector<S3Request*> batch;
  for (size_t i = 0; i < hashes.size(); i++) {
    gets[i].key = NodeKey(hashes[i]);
    gets[i].max_response_bytes = kMaxNodeBytes;
    batch.push_back(&gets[i]);
  }
  store_->Run(batch);
  std::vector<Node> nodes;
  for (size_t i = 0; i < hashes.size(); i++) {
    STRATA_RETURN_IF_ERROR(gets[i].status);
    const std::string& bytes = gets[i].response;
    if (Sha256(bytes.data(), bytes.size()) != hashes[i]) {
      return Status::Corruption(Name() + ": object " + gets[i].key +
                                " does not match its name (damaged)");
    }
    STRATA_ASSIGN_OR_RETURN(Node n, DecodeNode(bytes, gets[i].key));
    nodes.push_back(std::move(n));
  }
  return nodes;
}

Result<std::vector<std::pair<std::string, uint64_t>>> Bucket::ListAll(const std::string& prefix) {
  std::vector<std::pair<std::string, uint64_t>> out;
  STRATA_RETURN_IF_ERROR(store_->ForEachPage(prefix, [&out](const auto& page) {
    out.insert(out.end(), page.objects.begin(), page.objects.end());
    return Status::OK();
  }));
  return out;
}

Status Bucket::WalkNodes(uint32_t level, const Hash& hash, uint64_t first,
                         const std::function<Status(uint64_t, const BlockRef&)>& on_block,
                         const std::function<void(const Hash&)>& on_node) {
  STRATA_ASSIGN_OR_RETURN(Node n, GetNode(hash));
  if (n.level != level) {
    return Status::Corruption(Name() + ": tree node " + HexOf(hash) + " at the wrong level");
  }
  if (on_node) {
    on_node(hash);
  }
  for (const auto& [slot, ref] : n.blocks) {
    if (on_block) {
      STRATA_RETURN_IF_ERROR(on_block(first + slot, ref));
    }
  }
  for (const auto& [slot, child] : n.children) {
    STRATA_RETURN_IF_ERROR(
        WalkNodes(level - 1, child, first + slot * SpanOf(level - 1), on_block, on_node));
  }
  return Status::OK();
}

}  // namespace strata::remote
