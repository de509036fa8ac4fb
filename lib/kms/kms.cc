// The KMS's keys, aliases and root key (kms_impl.h). The cryptographic operations are in
// kms_ops.cc.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>

#include <nlohmann/json.hpp>

#include "kms/kms_impl.h"
#include "util/check.h"
#include "util/clock.h"
#include "util/json_text.h"

namespace strata {

namespace {

constexpr size_t kRootKeyBytes = 32;
constexpr char kCredentialName[] = "strata-kms-root-key";

Result<std::string> DecodeRootKey(std::string text, const std::string& path) {
  if (text.size() == kRootKeyBytes) {
    return text;  // raw bytes
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
    text.pop_back();
  }
  if (text.size() != 2 * kRootKeyBytes) {
    return Status::InvalidArgument("KMS root key " + path + ": expected 32 bytes or 64 hex digits");
  }
  std::string raw(kRootKeyBytes, '\0');
  for (size_t i = 0; i < kRootKeyBytes; i++) {
    const std::string pair = text.substr(2 * i, 2);
    if (!std::isxdigit(static_cast<unsigned char>(pair[0])) ||
        !std::isxdigit(static_cast<unsigned char>(pair[1]))) {
      kms::Secret wipe(std::move(raw));
      return Status::InvalidArgument("KMS root key " + path + ": not hex");
    }
    raw[i] = static_cast<char>(std::strtoul(pair.c_str(), nullptr, 16));
  }
  kms::Secret wipe_text(std::move(text));
  return raw;
}

// The file must not be readable by others, and must not travel with the pool.
Status CheckRootKeyPlace(const std::string& path, const std::string& pool_dir, int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("KMS root key " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return Status::InvalidArgument("KMS root key " + path +
                                   " is readable by others: chmod 600 it (mode must be 0600)");
  }
  char* real_file = realpath(path.c_str(), nullptr);
  char* real_pool = realpath(pool_dir.c_str(), nullptr);
  const bool inside = real_file != nullptr && real_pool != nullptr &&
                      std::strncmp(real_file, real_pool, std::strlen(real_pool)) == 0 &&
                      real_file[std::strlen(real_pool)] == '/';
  std::free(real_file);
  std::free(real_pool);
  if (inside) {
    return Status::InvalidArgument("KMS root key " + path +
                                   " lies inside the pool directory: it must never travel "
                                   "with the pool");
  }
  return Status::OK();
}

}  // namespace

Result<std::string> LoadKmsRootKey(const std::string& path_in, const std::string& pool_dir) {
  std::string path = path_in;
  if (path.empty()) {
    const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
    if (creds == nullptr || *creds == '\0') {
      return Status::NotFound("no KMS root key: give --kms-root-key FILE, or " +
                              std::string(kCredentialName) +
                              " as a systemd credential (LoadCredential=)");
    }
    path = std::string(creds) + "/" + kCredentialName;
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return Status::FromErrno("KMS root key " + path, errno);
  }
  Status place = path_in.empty() ? Status::OK() : CheckRootKeyPlace(path, pool_dir, fd);
  std::string text(2 * kRootKeyBytes + 3, '\0');  // a little more than any valid file
  const ssize_t n = place.ok() ? read(fd, text.data(), text.size()) : 0;
  close(fd);
  if (!place.ok()) {
    return place;
  }
  if (n < 0) {
    return Status::FromErrno("KMS root key " + path, errno);
  }
  text.resize(static_cast<size_t>(n));
  return DecodeRootKey(std::move(text), path);
}

Status CreateKmsRootKey(const std::string& path, const std::string& pool_dir) {
  STRATA_ASSIGN_OR_RETURN(kms::Secret key, kms::RandomBytes(kRootKeyBytes));
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return errno == EEXIST ? Status::AlreadyExists("KMS root key " + path + " exists already")
                           : Status::FromErrno("KMS root key " + path, errno);
  }
  Status s = CheckRootKeyPlace(path, pool_dir, fd);
  const bool written =
      s.ok() && write(fd, key.bytes().data(), key.size()) == static_cast<ssize_t>(key.size()) &&
      fsync(fd) == 0;
  close(fd);
  if (!written) {
    unlink(path.c_str());
    return s.ok() ? Status::IOError("KMS root key " + path + ": write failed", EIO) : s;
  }
  return Status::OK();
}

namespace kms {

namespace {

using nlohmann::json;

Status KmsError(Status::Code code, const char* exception, const std::string& message) {
  return Status(code, std::string(exception) + ": " + message);
}

std::string KeyArn(const std::string& key_id) {
  return "arn:aws:kms:us-east-1:000000000000:key/" + key_id;
}

bool ValidKeyId(const std::string& id) {  // 8-4-4-4-12 lowercase hex
  if (id.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < id.size(); i++) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? id[i] != '-' : !std::isxdigit(static_cast<unsigned char>(id[i]))) {
      return false;
    }
  }
  return true;
}

bool ValidAliasName(const std::string& name) {
  if (!name.starts_with("alias/") || name.size() <= 6 || name.size() > 256) {
    return false;
  }
  for (char c : name.substr(6)) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '/' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

std::string MaterialAad(const std::string& key_id, uint32_t version) {
  return "strata-kms material " + key_id + " v" + std::to_string(version);
}

Status WrongState(const KeyRecord& rec) {
  if (rec.info.state == "Disabled") {
    return KmsError(Status::Code::kBusy, "DisabledException", rec.info.arn + " is disabled.");
  }
  return KmsError(Status::Code::kBusy, "KMSInvalidStateException",
                  rec.info.arn + " is pending deletion.");
}

}  // namespace

std::string EncodeKey(const KeyRecord& rec) {
  const KmsKeyInfo& k = rec.info;
  json j = {{"description", k.description},
            {"state", k.state},
            {"manager", k.key_manager},
            {"created_ms", k.creation_ms},
            {"deletion_ms", k.deletion_ms},
            {"window_days", k.pending_window_days},
            {"rotation", k.rotation_enabled},
            {"rotation_days", k.rotation_period_days},
            {"next_rotation_ms", k.next_rotation_ms},
            {"tags", k.tags}};
  json materials = json::array();
  for (const std::string& sealed : rec.sealed_material) {
    materials.push_back(Base64Encode(sealed));
  }
  j["materials"] = materials;
  return DumpJson(j);
}

Result<KeyRecord> DecodeKey(const std::string& key_id, const std::string& text) {
  const Status bad = Status::Corruption("KMS key record " + key_id + " is malformed");
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!ValidKeyId(key_id) || !j.is_object()) {
    return bad;
  }
  try {
    KeyRecord rec;
    KmsKeyInfo& k = rec.info;
    k.key_id = key_id;
    k.arn = KeyArn(key_id);
    k.description = j.at("description").get<std::string>();
    k.state = j.at("state").get<std::string>();
    k.key_manager = j.at("manager").get<std::string>();
    k.creation_ms = j.at("created_ms").get<int64_t>();
    k.deletion_ms = j.at("deletion_ms").get<int64_t>();
    k.pending_window_days = j.at("window_days").get<uint32_t>();
    k.rotation_enabled = j.at("rotation").get<bool>();
    k.rotation_period_days = j.at("rotation_days").get<uint32_t>();
    k.next_rotation_ms = j.at("next_rotation_ms").get<int64_t>();
    k.tags = j.at("tags").get<std::map<std::string, std::string>>();
    const json& materials = j.at("materials");
    if (!materials.is_array() || materials.empty() || materials.size() > kMaxMaterialVersions) {
      return bad;
    }
    for (const json& m : materials) {
      STRATA_ASSIGN_OR_RETURN(std::string sealed, Base64Decode(m.get<std::string>()));
      if (sealed.size() != kAeadOverhead + kAeadKeyBytes) {
        return bad;
      }
      rec.sealed_material.push_back(std::move(sealed));
    }
    k.material_versions = static_cast<uint32_t>(rec.sealed_material.size());
    if (k.state != "Enabled" && k.state != "Disabled" && k.state != "PendingDeletion") {
      return bad;
    }
    return rec;
  } catch (const json::exception&) {
    return bad;
  }
}

KmsImpl::KmsImpl(Pool* pool, Secret wrap_key, KmsOptions options)
    : pool_(pool), wrap_key_(std::move(wrap_key)), options_(std::move(options)) {
  STRATA_CHECK(wrap_key_.size() == kAeadKeyBytes && options_.now_ms);
}

Status KmsImpl::Load() {
  STRATA_ASSIGN_OR_RETURN(auto records, pool_->ReadRecords(kTable));
  MutexLock lock(&mu_);
  for (const auto& [key, value] : records) {
    if (key.starts_with("key/")) {
      STRATA_ASSIGN_OR_RETURN(KeyRecord rec, DecodeKey(key.substr(4), value));
      keys_.emplace(rec.info.key_id, std::move(rec));
    } else if (key.starts_with("alias/")) {
      json j = json::parse(value, nullptr, false);
      if (!j.is_object() || !j.contains("target") || !j["target"].is_string() ||
          !j.contains("created_ms") || !j["created_ms"].is_number_integer() ||
          (j.contains("updated_ms") && !j["updated_ms"].is_number_integer())) {
        return Status::Corruption("KMS alias record " + key + " is malformed");
      }
      KmsAliasInfo a;
      a.name = key;
      a.arn = "arn:aws:kms:us-east-1:000000000000:" + key;
      a.target_key_id = j["target"].get<std::string>();
      a.creation_ms = j["created_ms"].get<int64_t>();
      a.updated_ms = j.value("updated_ms", a.creation_ms);
      aliases_.emplace(key, a);
    }
  }
  return Status::OK();
}

Result<bool> PoolHasKmsRoot(Pool* pool) {
  STRATA_RETURN_IF_ERROR(pool->OpenRecordTable(kTable));
  STRATA_ASSIGN_OR_RETURN(auto records, pool->ReadRecords(kTable));
  for (const auto& [key, value] : records) {
    if (key == "root") {
      return true;
    }
  }
  return false;
}

Result<std::unique_ptr<Kms>> OpenKms(Pool* pool, const std::string& root_key,
                                     const KmsOptions& options_in) {
  if (root_key.size() != kRootKeyBytes) {
    return Status::InvalidArgument("a KMS root key is 32 bytes");
  }
  KmsOptions options = options_in;
  if (!options.now_ms) {
    options.now_ms = [] { return WallClockMs(); };
  }
  STRATA_RETURN_IF_ERROR(pool->OpenRecordTable(kTable));
  STRATA_ASSIGN_OR_RETURN(auto records, pool->ReadRecords(kTable));
  std::string salt, check;
  for (const auto& [key, value] : records) {
    if (key == "root") {
      json j = json::parse(value, nullptr, false);
      if (!j.is_object() || !j.contains("salt") || !j["salt"].is_string() || !j.contains("check") ||
          !j["check"].is_string()) {
        return Status::Corruption("the KMS root record is malformed");
      }
      STRATA_ASSIGN_OR_RETURN(salt, Base64Decode(j["salt"].get<std::string>()));
      STRATA_ASSIGN_OR_RETURN(check, Base64Decode(j["check"].get<std::string>()));
    }
  }
  const Secret root(root_key);
  const bool first = salt.empty();
  if (first) {
    STRATA_ASSIGN_OR_RETURN(Secret s, RandomBytes(32));
    salt = s.bytes();
  }
  STRATA_ASSIGN_OR_RETURN(Secret check_key, Hkdf(root, salt, "strata kms root check v1", 32));
  STRATA_ASSIGN_OR_RETURN(std::string mac, Hmac(check_key, "strata kms root key"));
  if (first) {
    json j = {{"salt", Base64Encode(salt)}, {"check", Base64Encode(mac)}};
    STRATA_RETURN_IF_ERROR(pool->CommitRecords({{kTable, "root", DumpJson(j)}}));
  } else if (!ConstantTimeEqual(mac, check)) {
    return Status::InvalidArgument(
        "wrong KMS root key: this pool's keys were made under another one (nothing was "
        "decrypted with it)");
  }
  STRATA_ASSIGN_OR_RETURN(Secret wrap, Hkdf(root, salt, "strata kms wrap v1", kAeadKeyBytes));
  auto kms = std::make_unique<KmsImpl>(pool, std::move(wrap), options);
  STRATA_RETURN_IF_ERROR(kms->Load());
  return std::unique_ptr<Kms>(std::move(kms));
}

Result<std::string> KmsImpl::SealMaterial(const std::string& key_id, uint32_t version,
                                          const Secret& material) const {
  return Seal(wrap_key_, MaterialAad(key_id, version), material.bytes());
}

Result<Secret> KmsImpl::MaterialLocked(const KeyRecord& rec, uint32_t version) const {
  STRATA_CHECK(version >= 1 && version <= rec.sealed_material.size());
  auto material =
      kms::Open(wrap_key_, MaterialAad(rec.info.key_id, version), rec.sealed_material[version - 1]);
  if (!material.ok()) {  // the root check passed: the record itself was altered
    return KmsError(Status::Code::kCorruption, "KMSInternalException",
                    "the key material of " + rec.info.arn +
                        " does not open: the record was "
                        "altered");
  }
  STRATA_CHECK(material->size() == kAeadKeyBytes);
  return material;
}

Status KmsImpl::CommitKeyLocked(const KeyRecord& rec) {
  return pool_->CommitRecords({{kTable, "key/" + rec.info.key_id, EncodeKey(rec)}});
}

Status KmsImpl::HousekeepLocked() {
  const int64_t now = Now();
  for (auto it = keys_.begin(); it != keys_.end();) {
    KeyRecord& rec = it->second;
    if (rec.info.state == "PendingDeletion" && rec.info.deletion_ms <= now) {
      std::vector<RecordChange> changes{{kTable, "key/" + rec.info.key_id, std::nullopt}};
      for (const auto& [name, alias] : aliases_) {
        if (alias.target_key_id == rec.info.key_id) {
          changes.push_back({kTable, name, std::nullopt});
        }
      }
      STRATA_RETURN_IF_ERROR(pool_->CommitRecords(std::move(changes)));
      std::erase_if(aliases_, [&](const auto& a) { return a.second.target_key_id == it->first; });
      it = keys_.erase(it);  // the material is gone: what it encrypted is unrecoverable
      continue;
    }
    if (rec.info.rotation_enabled && rec.info.state == "Enabled" &&
        rec.info.next_rotation_ms <= now && rec.info.material_versions < kMaxMaterialVersions) {
      KeyRecord next = rec;
      STRATA_ASSIGN_OR_RETURN(Secret material, RandomBytes(kAeadKeyBytes));
      STRATA_ASSIGN_OR_RETURN(
          std::string sealed,
          SealMaterial(rec.info.key_id, rec.info.material_versions + 1, material));
      next.sealed_material.push_back(std::move(sealed));
      next.info.material_versions++;
      next.info.next_rotation_ms = now + int64_t{rec.info.rotation_period_days} * kDayMs;
      STRATA_RETURN_IF_ERROR(CommitKeyLocked(next));
      rec = std::move(next);
    }
    ++it;
  }
  return Status::OK();
}

Result<KeyRecord*> KmsImpl::ResolveLocked(const std::string& ref) {
  STRATA_RETURN_IF_ERROR(HousekeepLocked());
  if (ref.empty() || ref.size() > kMaxRefBytes) {
    return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                    "KeyId must be 1 to 2048 characters");
  }
  std::string id = ref;
  const std::string arn_prefix = "arn:aws:kms:us-east-1:000000000000:";
  if (id.starts_with(arn_prefix)) {
    id = id.substr(arn_prefix.size());
    if (id.starts_with("key/")) {
      id = id.substr(4);
    } else if (!id.starts_with("alias/")) {
      return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                      "not a key or alias ARN: " + ref);
    }
  } else if (id.starts_with("arn:")) {
    return KmsError(Status::Code::kNotFound, "NotFoundException",
                    "Key '" + ref + "' does not exist (another region or account)");
  }
  if (id.starts_with("alias/")) {
    auto a = aliases_.find(id);
    if (a == aliases_.end()) {
      return KmsError(Status::Code::kNotFound, "NotFoundException",
                      "Alias " + arn_prefix + id + " is not found.");
    }
    id = a->second.target_key_id;
  }
  auto k = keys_.find(id);
  if (k == keys_.end()) {
    return KmsError(Status::Code::kNotFound, "NotFoundException",
                    "Key '" + KeyArn(ValidKeyId(id) ? id : "<invalid>") + "' does not exist");
  }
  return &k->second;
}

Result<KeyRecord*> KmsImpl::UsableLocked(const std::string& ref) {
  STRATA_ASSIGN_OR_RETURN(KeyRecord * rec, ResolveLocked(ref));
  if (rec->info.state != "Enabled") {
    return WrongState(*rec);
  }
  return rec;
}

Result<KmsKeyInfo> KmsImpl::CreateKey(const std::string& description,
                                      const std::map<std::string, std::string>& tags) {
  if (description.size() > kMaxDescriptionBytes || tags.size() > 50) {
    return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                    "a description is at most 8192 bytes, and a key has at most 50 tags");
  }
  for (const auto& [key, value] : tags) {
    if (key.empty() || key.size() > 128 || value.size() > 256) {
      return KmsError(Status::Code::kInvalidArgument, "TagException",
                      "a tag key is 1 to 128 bytes, a value at most 256");
    }
  }
  MutexLock lock(&mu_);
  STRATA_RETURN_IF_ERROR(HousekeepLocked());
  if (keys_.size() >= kMaxKeys) {
    return KmsError(Status::Code::kNoSpace, "LimitExceededException",
                    "this pool holds " + std::to_string(kMaxKeys) + " keys already");
  }
  KeyRecord rec;
  STRATA_ASSIGN_OR_RETURN(rec.info.key_id, NewUuid());
  rec.info.arn = KeyArn(rec.info.key_id);
  rec.info.description = description;
  rec.info.state = "Enabled";
  rec.info.key_manager = "CUSTOMER";
  rec.info.creation_ms = Now();
  rec.info.tags = tags;
  STRATA_ASSIGN_OR_RETURN(Secret material, RandomBytes(kAeadKeyBytes));
  STRATA_ASSIGN_OR_RETURN(std::string sealed, SealMaterial(rec.info.key_id, 1, material));
  rec.sealed_material.push_back(std::move(sealed));
  STRATA_RETURN_IF_ERROR(CommitKeyLocked(rec));
  KmsKeyInfo info = rec.info;
  keys_.emplace(info.key_id, std::move(rec));
  return info;
}

Result<KmsKeyInfo> KmsImpl::DescribeKey(const std::string& ref) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(KeyRecord * rec, ResolveLocked(ref));
  return rec->info;
}

std::vector<KmsKeyInfo> KmsImpl::ListKeys() {
  MutexLock lock(&mu_);
  (void)HousekeepLocked();  // (a failed commit leaves the keys as they are: listed)
  std::vector<KmsKeyInfo> out;
  for (const auto& [id, rec] : keys_) {
    out.push_back(rec.info);
  }
  return out;
}

Result<KmsKeyInfo> KmsImpl::ChangeKey(const std::string& ref,
                                      const std::function<Status(KeyRecord*)>& change) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(KeyRecord * rec, ResolveLocked(ref));
  KeyRecord next = *rec;
  STRATA_RETURN_IF_ERROR(change(&next));
  STRATA_RETURN_IF_ERROR(CommitKeyLocked(next));
  *rec = std::move(next);
  return rec->info;
}

Result<KmsKeyInfo> KmsImpl::EnableKey(const std::string& ref) {
  return ChangeKey(ref, [](KeyRecord* r) {
    if (r->info.state == "PendingDeletion") {
      return WrongState(*r);
    }
    r->info.state = "Enabled";
    return Status::OK();
  });
}

Result<KmsKeyInfo> KmsImpl::DisableKey(const std::string& ref) {
  return ChangeKey(ref, [](KeyRecord* r) {
    if (r->info.state == "PendingDeletion") {
      return WrongState(*r);
    }
    r->info.state = "Disabled";
    return Status::OK();
  });
}

Result<KmsKeyInfo> KmsImpl::ScheduleKeyDeletion(const std::string& ref, uint32_t days) {
  if (days < 7 || days > 30) {
    return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                    "PendingWindowInDays must be between 7 and 30");
  }
  const int64_t now = Now();
  return ChangeKey(ref, [&](KeyRecord* r) {
    if (r->info.state == "PendingDeletion") {
      return WrongState(*r);
    }
    if (r->info.key_manager == "AWS") {
      return KmsError(Status::Code::kPermissionDenied, "AccessDeniedException",
                      "an AWS managed key cannot be deleted");
    }
    r->info.state = "PendingDeletion";
    r->info.pending_window_days = days;
    r->info.deletion_ms = now + int64_t{days} * kDayMs;
    return Status::OK();
  });
}

Result<KmsKeyInfo> KmsImpl::CancelKeyDeletion(const std::string& ref) {
  return ChangeKey(ref, [](KeyRecord* r) {
    if (r->info.state != "PendingDeletion") {
      return KmsError(Status::Code::kBusy, "KMSInvalidStateException",
                      r->info.arn + " is not pending deletion.");
    }
    r->info.state = "Disabled";  // as AWS: a cancelled deletion leaves the key disabled
    r->info.deletion_ms = 0;
    r->info.pending_window_days = 0;
    return Status::OK();
  });
}

Result<KmsKeyInfo> KmsImpl::EnableKeyRotation(const std::string& ref, uint32_t period_days) {
  if (period_days < 90 || period_days > 2560) {
    return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                    "RotationPeriodInDays must be between 90 and 2560");
  }
  const int64_t now = Now();
  return ChangeKey(ref, [&](KeyRecord* r) {
    if (r->info.state != "Enabled") {
      return WrongState(*r);
    }
    r->info.rotation_enabled = true;
    r->info.rotation_period_days = period_days;
    r->info.next_rotation_ms = now + int64_t{period_days} * kDayMs;
    return Status::OK();
  });
}

Result<KmsKeyInfo> KmsImpl::DisableKeyRotation(const std::string& ref) {
  return ChangeKey(ref, [](KeyRecord* r) {
    if (r->info.state != "Enabled") {
      return WrongState(*r);
    }
    r->info.rotation_enabled = false;
    r->info.next_rotation_ms = 0;
    return Status::OK();
  });
}

Result<KmsKeyInfo> KmsImpl::RotateKeyOnDemand(const std::string& ref) {
  return ChangeKey(ref, [&](KeyRecord* r) -> Status {
    if (r->info.state != "Enabled") {
      return WrongState(*r);
    }
    if (r->info.material_versions >= kMaxMaterialVersions) {
      return KmsError(Status::Code::kNoSpace, "LimitExceededException",
                      "a key is rotated at most 1000 times here");
    }
    STRATA_ASSIGN_OR_RETURN(Secret material, RandomBytes(kAeadKeyBytes));
    STRATA_ASSIGN_OR_RETURN(std::string sealed,
                            SealMaterial(r->info.key_id, r->info.material_versions + 1, material));
    r->sealed_material.push_back(std::move(sealed));
    r->info.material_versions++;
    return Status::OK();
  });
}

Result<KmsKeyInfo> KmsImpl::AwsManagedKey(const std::string& alias) {
  if (alias != "alias/aws/ebs") {
    return KmsError(Status::Code::kInvalidArgument, "NotFoundException",
                    "this KMS manages only alias/aws/ebs for AWS");
  }
  MutexLock lock(&mu_);
  STRATA_RETURN_IF_ERROR(HousekeepLocked());
  if (auto it = aliases_.find(alias); it != aliases_.end()) {
    STRATA_ASSIGN_OR_RETURN(KeyRecord * rec, ResolveLocked(it->second.target_key_id));
    return rec->info;
  }
  KeyRecord rec;
  STRATA_ASSIGN_OR_RETURN(rec.info.key_id, NewUuid());
  rec.info.arn = KeyArn(rec.info.key_id);
  rec.info.description = "Default key that protects my EBS volumes when no other key is defined";
  rec.info.state = "Enabled";
  rec.info.key_manager = "AWS";
  rec.info.creation_ms = Now();
  STRATA_ASSIGN_OR_RETURN(Secret material, RandomBytes(kAeadKeyBytes));
  STRATA_ASSIGN_OR_RETURN(std::string sealed, SealMaterial(rec.info.key_id, 1, material));
  rec.sealed_material.push_back(std::move(sealed));
  KmsAliasInfo a;
  a.name = alias;
  a.arn = "arn:aws:kms:us-east-1:000000000000:" + alias;
  a.target_key_id = rec.info.key_id;
  a.creation_ms = a.updated_ms = rec.info.creation_ms;
  json j = {
      {"target", a.target_key_id}, {"created_ms", a.creation_ms}, {"updated_ms", a.updated_ms}};
  // Key and alias in one commit: a crash leaves both or neither.
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(
      {{kTable, "key/" + rec.info.key_id, EncodeKey(rec)}, {kTable, alias, DumpJson(j)}}));
  KmsKeyInfo info = rec.info;
  keys_[info.key_id] = std::move(rec);
  aliases_[alias] = a;
  return info;
}

Result<KmsAliasInfo> KmsImpl::PutAlias(const std::string& name, const std::string& key_ref,
                                       bool create) {
  if (!ValidAliasName(name)) {
    return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                    "an alias name is alias/ and 1 to 250 of [A-Za-z0-9/_-]");
  }
  if (name.starts_with("alias/aws/")) {
    return KmsError(Status::Code::kInvalidArgument, "InvalidAliasNameException",
                    "alias/aws/ names are reserved for AWS managed keys");
  }
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(KeyRecord * rec, ResolveLocked(key_ref));
  if (key_ref.starts_with("alias/") || key_ref.find(":alias/") != std::string::npos) {
    return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                    "an alias targets a key id or key ARN, not another alias");
  }
  auto existing = aliases_.find(name);
  if (create && existing != aliases_.end()) {
    return KmsError(
        Status::Code::kAlreadyExists, "AlreadyExistsException",
        "An alias with the name arn:aws:kms:us-east-1:000000000000:" + name + " already exists");
  }
  if (!create && existing == aliases_.end()) {
    return KmsError(Status::Code::kNotFound, "NotFoundException",
                    "Alias arn:aws:kms:us-east-1:000000000000:" + name + " is not found.");
  }
  if (create && aliases_.size() >= kMaxAliases) {
    return KmsError(Status::Code::kNoSpace, "LimitExceededException", "too many aliases");
  }
  KmsAliasInfo a = create ? KmsAliasInfo{} : existing->second;
  a.name = name;
  a.arn = "arn:aws:kms:us-east-1:000000000000:" + name;
  a.target_key_id = rec->info.key_id;
  a.updated_ms = Now();
  a.creation_ms = create ? a.updated_ms : a.creation_ms;
  json j = {
      {"target", a.target_key_id}, {"created_ms", a.creation_ms}, {"updated_ms", a.updated_ms}};
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({{kTable, name, DumpJson(j)}}));
  aliases_[name] = a;
  return a;
}

Result<KmsAliasInfo> KmsImpl::CreateAlias(const std::string& name, const std::string& key_ref) {
  return PutAlias(name, key_ref, /*create=*/true);
}

Result<KmsAliasInfo> KmsImpl::UpdateAlias(const std::string& name, const std::string& key_ref) {
  return PutAlias(name, key_ref, /*create=*/false);
}

Status KmsImpl::DeleteAlias(const std::string& name) {
  MutexLock lock(&mu_);
  STRATA_RETURN_IF_ERROR(HousekeepLocked());
  if (aliases_.count(name) == 0) {
    return KmsError(Status::Code::kNotFound, "NotFoundException",
                    "Alias arn:aws:kms:us-east-1:000000000000:" +
                        (ValidAliasName(name) ? name : std::string("<invalid>")) +
                        " is not found.");
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({{kTable, name, std::nullopt}}));
  aliases_.erase(name);
  return Status::OK();
}

Result<std::vector<KmsAliasInfo>> KmsImpl::ListAliases(const std::string& key_ref) {
  MutexLock lock(&mu_);
  std::string only;
  if (!key_ref.empty()) {
    STRATA_ASSIGN_OR_RETURN(KeyRecord * rec, ResolveLocked(key_ref));
    only = rec->info.key_id;
  } else {
    STRATA_RETURN_IF_ERROR(HousekeepLocked());
  }
  std::vector<KmsAliasInfo> out;
  for (const auto& [name, a] : aliases_) {
    if (only.empty() || a.target_key_id == only) {
      out.push_back(a);
    }
  }
  return out;
}

}  // namespace kms

Result<bool> PoolHasKms(Pool* pool) { return kms::PoolHasKmsRoot(pool); }

Result<std::unique_ptr<Kms>> Kms::Open(Pool* pool, const std::string& root_key,
                                       const KmsOptions& options) {
  return kms::OpenKms(pool, root_key, options);
}

}  // namespace strata
