#include "control/ebs_direct.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "control/handlers.h"
#include "util/ids.h"
#include "util/json_text.h"

namespace strata::control {

namespace {

using nlohmann::json;

constexpr int64_t kTokenLifeS = 7 * 24 * 3600;  // as EBS's block tokens
constexpr size_t kMaxStartBody = 64 * 1024;
constexpr size_t kMaxListResults = 10000;

EbsReply Error(int http_status, const char* type, const std::string& message) {
  EbsReply reply;
  reply.http_status = http_status;
  reply.body = DumpJson(json{{"Message", message}});
  reply.headers.emplace_back("x-amzn-ErrorType", type);
  return reply;
}

EbsReply Invalid(const std::string& message) { return Error(400, "ValidationException", message); }

// A Status as the EBS direct APIs name errors.
EbsReply Failure(const Status& s) {
  switch (s.code()) {
    case Status::Code::kNotFound:
      return Error(404, "ResourceNotFoundException", s.message());
    case Status::Code::kInvalidArgument:
    case Status::Code::kOutOfRange:
    case Status::Code::kNotSupported:  // e.g. Encrypted on a server without a KMS: says why
      return Invalid(s.message());
    case Status::Code::kBusy:
    case Status::Code::kAlreadyExists:
      return Error(409, "ConflictException", s.message());
    case Status::Code::kShutdown:
      return Error(503, "ServiceUnavailableException", s.message());
    default:
      return Error(500, "InternalServerException", s.ToString());
  }
}

EbsReply Json(int http_status, const json& body) {
  EbsReply reply;
  reply.http_status = http_status;
  reply.body = DumpJson(body);
  return reply;
}

std::string Base64(const uint8_t* data, size_t size) {
  gnutls_datum_t in{const_cast<uint8_t*>(data), static_cast<unsigned>(size)};
  gnutls_datum_t out{};
  if (gnutls_base64_encode2(&in, &out) != 0) {
    return "";
  }
  std::string text(reinterpret_cast<char*>(out.data), out.size);
  gnutls_free(out.data);
  return text;
}

std::string Sha256(const void* data, size_t size) {  // raw 32 bytes
  std::string digest(32, '\0');
  gnutls_hash_fast(GNUTLS_DIG_SHA256, data, size, digest.data());
  return digest;
}

std::string B64(const std::string& raw) {
  return Base64(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
}

// A decimal index or count of at most 12 digits; nullopt otherwise.
std::optional<uint64_t> Decimal(const std::string& text) {
  if (text.empty() || text.size() > 12 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoull(text);
}

std::string Header(const EbsRequest& r, const char* name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

std::vector<std::string> PathParts(const std::string& path) {
  std::vector<std::string> parts;
  for (size_t start = 1; start <= path.size() && parts.size() < 8;) {
    size_t end = path.find('/', start);
    end = end == std::string::npos ? path.size() : end;
    parts.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

}  // namespace

struct EbsDirect::Upload {
  Mutex mu;
  std::string snapshot_id;
  std::string volume_id;
  std::string client_token;
  std::string fingerprint;  // the StartSnapshot body less its ClientToken
  std::string description;
  Tags tags;
  uint64_t volume_bytes = 0;
  int64_t start_ms = 0;
  int64_t deadline_s = 0;
  json reply;  // StartSnapshot's, for a retry with the same ClientToken
  std::shared_ptr<Volume> volume GUARDED_BY(mu);
  std::map<uint64_t, std::string> checksums GUARDED_BY(mu);  // block -> raw SHA-256
  bool done GUARDED_BY(mu) = false;
};

EbsDirect::EbsDirect(Compute* compute) : compute_(compute), token_key_(32, '\0') {
  gnutls_rnd(GNUTLS_RND_KEY, token_key_.data(), token_key_.size());
}

EbsDirect::~EbsDirect() {
  std::map<std::string, std::shared_ptr<Upload>> uploads;
  {
    MutexLock lock(&mu_);
    uploads.swap(uploads_);
  }
  for (auto& [id, upload] : uploads) {
    MutexLock upload_lock(&upload->mu);
    upload->volume.reset();
    (void)compute_->pool()->DeleteVolume(upload->volume_id);  // (else: at the next open)
  }
}

EbsReply EbsDirect::Handle(const EbsRequest& r) {
  try {
    return Route(r);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong JSON type
    return Invalid(std::string("malformed request: ") + e.what());
  }
}

EbsReply EbsDirect::Route(const EbsRequest& r) {
  DropExpiredUploads();
  const std::vector<std::string> p = PathParts(r.path);
  if (p.empty() || p[0] != "snapshots") {
    return Invalid("not an EBS direct API path: " + r.path);
  }
  if (r.method == "POST" && p.size() == 1) {
    return Start(r);
  }
  if (r.method == "POST" && p.size() == 3 && p[1] == "completion") {
    return Complete(p[2], r);
  }
  if (r.method == "GET" && p.size() == 3 && (p[2] == "blocks" || p[2] == "changedblocks")) {
    return ListBlocks(p[1], r, p[2] == "changedblocks");
  }
  if (p.size() == 4 && p[2] == "blocks" && (r.method == "GET" || r.method == "PUT")) {
    std::optional<uint64_t> index = Decimal(p[3]);
    if (!index) {
      return Invalid("BlockIndex must be a non-negative integer");
    }
    return r.method == "GET" ? GetBlock(p[1], *index, r) : Put(p[1], *index, r);
  }
  return Invalid("no EBS direct API operation is " + r.method + " " + r.path);
}

// ---------------------------------------------------------------- read

std::string EbsDirect::Token(const std::string& snapshot_id, uint64_t index,
                             int64_t expiry_s) const {
  const std::string text =
      snapshot_id + "/" + std::to_string(index) + "/" + std::to_string(expiry_s);
  uint8_t mac[32];
  gnutls_hmac_fast(GNUTLS_MAC_SHA256, token_key_.data(), token_key_.size(), text.data(),
                   text.size(), mac);
  return std::to_string(expiry_s) + "." + Base64(mac, 24);
}

bool EbsDirect::TokenValid(const std::string& token, const std::string& snapshot_id,
                           uint64_t index) const {
  const size_t dot = token.find('.');
  std::optional<uint64_t> expiry = Decimal(token.substr(0, dot));
  if (dot == std::string::npos || !expiry || static_cast<int64_t>(*expiry) < time(nullptr)) {
    return false;
  }
  const std::string expected = Token(snapshot_id, index, static_cast<int64_t>(*expiry));
  return expected.size() == token.size() &&
         gnutls_memcmp(expected.data(), token.data(), token.size()) == 0;
}

EbsReply EbsDirect::ListBlocks(const std::string& snapshot_id, const EbsRequest& r, bool changed) {
  auto query = [&](const char* name) {
    auto it = r.query.find(name);
    return it == r.query.end() ? std::string() : it->second;
  };
  std::optional<uint64_t> max =
      query("maxResults").empty() ? kMaxListResults : Decimal(query("maxResults"));
  const std::string page =
      !query("pageToken").empty() ? query("pageToken") : query("startingBlockIndex");
  std::optional<uint64_t> start = page.empty() ? 0 : Decimal(page);
  if (!max || *max < 100 || *max > kMaxListResults || !start) {
    return Invalid(
        "maxResults must be 100 to 10000, and pageToken or startingBlockIndex a "
        "block index");
  }
  const std::string first = query("firstSnapshotId");
  Pool* pool = compute_->pool();
  Result<BlockList> list =
      changed ? pool->ListChangedBlocks(first, snapshot_id, kEbsBlockBytes, *start, *max)
              : pool->ListSnapshotBlocks(snapshot_id, kEbsBlockBytes, *start, *max);
  if (!list.ok()) {
    return Failure(list.status());
  }
  const int64_t expiry = time(nullptr) + kTokenLifeS;
  json blocks = json::array();
  for (uint64_t b : list->blocks) {
    json block = {{"BlockIndex", b}};
    if (!changed) {
      block["BlockToken"] = Token(snapshot_id, b, expiry);
    } else {
      block["SecondBlockToken"] = Token(snapshot_id, b, expiry);
      if (!first.empty()) {
        block["FirstBlockToken"] = Token(first, b, expiry);
      }
    }
    blocks.push_back(std::move(block));
  }
  json out = {{changed ? "ChangedBlocks" : "Blocks", blocks},
              {"ExpiryTime", expiry},
              {"VolumeSize", GiBCeil(list->volume_size_bytes)},
              {"BlockSize", kEbsBlockBytes}};
  if (list->next_block) {
    out["NextToken"] = std::to_string(*list->next_block);
  }
  return Json(200, out);
}

EbsReply EbsDirect::GetBlock(const std::string& snapshot_id, uint64_t index, const EbsRequest& r) {
  auto token = r.query.find("blockToken");
  if (token == r.query.end() || !TokenValid(token->second, snapshot_id, index)) {
    return Invalid("the block token is not valid for block " + std::to_string(index) + " of " +
                   snapshot_id + " (or has expired)");
  }
  auto snap = compute_->OpenSnapshot(snapshot_id);  // an encrypted one: plaintext, as EBS gives
  if (!snap.ok()) {
    return Failure(snap.status());
  }
  const uint64_t size = (*snap)->size_bytes();
  if (index >= (size + kEbsBlockBytes - 1) / kEbsBlockBytes) {
    return Invalid("block " + std::to_string(index) + " is past the end of " + snapshot_id);
  }
  const uint64_t offset = index * kEbsBlockBytes;
  EbsReply reply;
  reply.content_type = "application/octet-stream";
  reply.body.resize(std::min<uint64_t>(kEbsBlockBytes, size - offset));
  Status read = (*snap)->Read(
      offset, std::span(reinterpret_cast<std::byte*>(reply.body.data()), reply.body.size()));
  if (!read.ok()) {
    return Failure(read);
  }
  reply.headers = {{"x-amz-Data-Length", std::to_string(reply.body.size())},
                   {"x-amz-Checksum", B64(Sha256(reply.body.data(), reply.body.size()))},
                   {"x-amz-Checksum-Algorithm", "SHA256"}};
  return reply;
}

// ---------------------------------------------------------------- write

std::shared_ptr<EbsDirect::Upload> EbsDirect::FindUpload(const std::string& snapshot_id) {
  MutexLock lock(&mu_);
  auto it = uploads_.find(snapshot_id);
  return it == uploads_.end() ? nullptr : it->second;
}

void EbsDirect::DropExpiredUploads() {
  std::vector<std::shared_ptr<Upload>> expired;
  {
    MutexLock lock(&mu_);
    for (auto it = uploads_.begin(); it != uploads_.end();) {
      if (it->second->deadline_s < time(nullptr)) {
        expired.push_back(it->second);
        it = uploads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& upload : expired) {  // as EBS: a snapshot not completed in time is gone
    MutexLock lock(&upload->mu);
    upload->done = true;
    upload->volume.reset();
    (void)compute_->pool()->DeleteVolume(upload->volume_id);
  }
}

EbsReply EbsDirect::Start(const EbsRequest& r) {
  json body = r.body.size() <= kMaxStartBody ? json::parse(r.body, nullptr, false) : json();
  if (!body.is_object() || !body.contains("VolumeSize") ||
      !body["VolumeSize"].is_number_unsigned()) {
    return Invalid("StartSnapshot needs a JSON body with VolumeSize (GiB)");
  }
  const uint64_t gib = body["VolumeSize"].get<uint64_t>();
  const uint64_t timeout_min = body.value("Timeout", 60u);
  if (gib == 0 || gib > (kMaxVolumeBytes >> 30) || timeout_min < 10 || timeout_min > 4320) {
    return Invalid("VolumeSize must be 1 to 65536 GiB, Timeout 10 to 4320 minutes");
  }
  UploadEncryption encryption;  // Encrypted / KmsKeyArn, as EBS takes them
  if (body.contains("Encrypted")) {
    if (!body["Encrypted"].is_boolean()) {
      return Invalid("Encrypted must be true or false");
    }
    encryption.encrypted = body["Encrypted"].get<bool>();
  }
  if (body.contains("KmsKeyArn")) {
    if (!body["KmsKeyArn"].is_string() || body["KmsKeyArn"].get<std::string>().size() > 2048) {
      return Invalid("KmsKeyArn must be a key ARN");
    }
    encryption.kms_key_arn = body["KmsKeyArn"].get<std::string>();
  }
  const std::string token = body.value("ClientToken", "");
  json fingerprint = body;  // what a retry must repeat: everything but the token
  fingerprint.erase("ClientToken");
  if (std::optional<EbsReply> again = Repeated(token, fingerprint.dump())) {
    return *again;
  }
  auto upload = std::make_shared<Upload>();
  upload->client_token = token;
  upload->fingerprint = fingerprint.dump();
  upload->description = body.value("Description", "");
  for (const json& tag : body.value("Tags", json::array())) {
    upload->tags[tag.value("Key", "")] = tag.value("Value", "");
  }
  if (Status s = ValidateTags(upload->tags); !s.ok() || upload->description.size() > 255) {
    return Invalid(s.ok() ? "Description is longer than 255 bytes" : s.message());
  }
  {
    MutexLock lock(&mu_);
    if (uploads_.size() >= kMaxUploads) {
      return Error(400, "ConcurrentLimitExceededException",
                   "at most 16 snapshots may be uploading at once");
    }
  }
  if (Status s = OpenUploadVolume(upload.get(), gib, body.value("ParentSnapshotId", ""),
                                  timeout_min, encryption);
      !s.ok()) {
    return Failure(s);
  }
  MutexLock lock(&mu_);
  uploads_[upload->snapshot_id] = upload;
  return Json(201, upload->reply);
}

// Idempotency: the reply of an upload started with `token`, or a conflict when its parameters
// differ; nothing when no upload has the token.
std::optional<EbsReply> EbsDirect::Repeated(const std::string& token,
                                            const std::string& fingerprint) {
  if (token.empty()) {
    return std::nullopt;
  }
  MutexLock lock(&mu_);
  for (const auto& [id, upload] : uploads_) {
    if (upload->client_token == token) {
      return upload->fingerprint == fingerprint
                 ? Json(201, upload->reply)
                 : Error(409, "ConflictException",
                         "the ClientToken was used with other parameters");
    }
  }
  return std::nullopt;
}

// The upload's hidden volume (a clone of `parent` when given), its snapshot id and its reply.
Status EbsDirect::OpenUploadVolume(Upload* upload, uint64_t gib, const std::string& parent,
                                   uint64_t timeout_min, const UploadEncryption& encryption) {
  VolumeSpec spec;
  spec.size_bytes = gib << 30;
  spec.importing = true;  // hidden; deleted at the next open unless completed
  spec.volume_type = "unlimited";
  spec.snapshot_id = parent;
  Pool* pool = compute_->pool();
  // Encrypted as EBS decides: asked, by default, or because the parent is (the EC2 layer's
  // rules); the blocks put are plaintext and are encrypted as they are written.
  STRATA_ASSIGN_OR_RETURN(VolumeInfo volume, compute_->CreateVolume(spec, encryption.encrypted,
                                                                    encryption.kms_key_arn));
  auto handle = compute_->OpenVolume(volume.volume_id);
  if (!handle.ok()) {
    (void)pool->DeleteVolume(volume.volume_id);
    return handle.status();
  }
  do {
    upload->snapshot_id = NewResourceId("snap");
  } while (pool->DescribeSnapshot(upload->snapshot_id).ok());
  upload->volume_id = volume.volume_id;
  upload->volume_bytes = spec.size_bytes;
  upload->start_ms = volume.create_time_ms;
  upload->deadline_s = time(nullptr) + static_cast<int64_t>(timeout_min) * 60;
  upload->reply = {{"SnapshotId", upload->snapshot_id},
                   {"OwnerId", kOwnerId},
                   {"Status", "pending"},
                   {"StartTime", upload->start_ms / 1000.0},
                   {"VolumeSize", gib},
                   {"BlockSize", kEbsBlockBytes},
                   {"Description", upload->description},
                   {"Tags", TagsJson(upload->tags)}};
  if (!spec.snapshot_id.empty()) {
    upload->reply["ParentSnapshotId"] = spec.snapshot_id;
  }
  if (!volume.encryption.empty()) {
    upload->reply["KmsKeyArn"] = DescribeEncryption(volume.encryption).kms_key_arn;
  }
  MutexLock upload_lock(&upload->mu);
  upload->volume = std::move(*handle);
  return Status::OK();
}

EbsReply EbsDirect::Put(const std::string& snapshot_id, uint64_t index, const EbsRequest& r) {
  std::shared_ptr<Upload> upload = FindUpload(snapshot_id);
  if (upload == nullptr) {
    return Error(404, "ResourceNotFoundException", "snapshot " + snapshot_id + " is not pending");
  }
  const std::string digest = Sha256(r.body.data(), r.body.size());
  const std::string checksum = B64(digest);
  if (Header(r, "x-amz-data-length") != std::to_string(kEbsBlockBytes) ||
      r.body.size() != kEbsBlockBytes) {
    return Invalid("each block is 524288 bytes (x-amz-Data-Length and the body)");
  }
  if (Header(r, "x-amz-checksum-algorithm") != "SHA256" ||
      Header(r, "x-amz-checksum") != checksum) {
    return Invalid(
        "x-amz-Checksum is not the SHA-256 of the block (x-amz-Checksum-Algorithm "
        "SHA256)");
  }
  if (index >= upload->volume_bytes / kEbsBlockBytes) {
    return Invalid("block " + std::to_string(index) + " is past the end of the volume");
  }
  MutexLock lock(&upload->mu);
  if (upload->done) {
    return Error(404, "ResourceNotFoundException", "snapshot " + snapshot_id + " is not pending");
  }
  Status written = upload->volume->Write(
      index * kEbsBlockBytes,
      std::span(reinterpret_cast<const std::byte*>(r.body.data()), r.body.size()), false);
  if (!written.ok()) {
    return Failure(written);
  }
  upload->checksums[index] = digest;
  EbsReply reply = Json(201, json::object());  // (the model answers in headers)
  reply.headers = {{"x-amz-Checksum", checksum}, {"x-amz-Checksum-Algorithm", "SHA256"}};
  return reply;
}

EbsReply EbsDirect::Complete(const std::string& snapshot_id, const EbsRequest& r) {
  std::shared_ptr<Upload> upload = FindUpload(snapshot_id);
  if (upload == nullptr) {
    return Error(404, "ResourceNotFoundException", "snapshot " + snapshot_id + " is not pending");
  }
  EbsReply checked = Finish(upload.get(), r);
  if (checked.http_status != 202) {
    return checked;
  }
  {
    MutexLock map_lock(&mu_);
    uploads_.erase(snapshot_id);
  }
  Pool* pool = compute_->pool();
  Result<SnapshotInfo> sealed =
      pool->SealImport(upload->volume_id, upload->description, snapshot_id, true);
  if (!sealed.ok()) {
    (void)pool->DeleteVolume(upload->volume_id);
    return Failure(sealed.status());
  }
  if (!upload->tags.empty()) {
    (void)compute_->CreateTags({sealed->snapshot_id}, upload->tags);
  }
  return checked;
}

// Checks CompleteSnapshot's count and checksum, flushes the blocks and ends the upload (202),
// under the upload's lock: no PutSnapshotBlock lands after it.
EbsReply EbsDirect::Finish(Upload* upload, const EbsRequest& r) {
  MutexLock lock(&upload->mu);
  if (upload->done) {
    return Error(404, "ResourceNotFoundException",
                 "snapshot " + upload->snapshot_id + " is not pending");
  }
  std::optional<uint64_t> count = Decimal(Header(r, "x-amz-changedblockscount"));
  if (!count || *count != upload->checksums.size()) {
    return Invalid("x-amz-ChangedBlocksCount must be the number of blocks put (" +
                   std::to_string(upload->checksums.size()) + ")");
  }
  if (!Header(r, "x-amz-checksum").empty()) {  // LINEAR: SHA-256 of the blocks' in order
    std::string all;
    for (const auto& [index, digest] : upload->checksums) {
      all += digest;
    }
    if (Header(r, "x-amz-checksum-algorithm") != "SHA256" ||
        Header(r, "x-amz-checksum-aggregation-method") != "LINEAR" ||
        Header(r, "x-amz-checksum") != B64(Sha256(all.data(), all.size()))) {
      return Invalid("x-amz-Checksum is not the LINEAR SHA-256 aggregate of the blocks put");
    }
  }
  Status flushed = upload->volume->Flush();
  if (!flushed.ok()) {
    return Failure(flushed);  // (the upload stays: CompleteSnapshot may be retried)
  }
  upload->volume.reset();
  upload->done = true;
  return Json(202, {{"Status", "completed"}});
}

}  // namespace strata::control
