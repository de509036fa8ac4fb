// Encryption at rest, as EBS does it (docs/security.md "Encryption at rest"): one 64-byte
// AES-256-XTS data key per lineage, made by the KMS (GenerateDataKeyWithoutPlaintext, context
// aws:ebs:id), kept only wrapped in the volume's record (the engine's opaque envelope), and
// unwrapped into a cipher each time a volume or snapshot is opened. Plus EC2's account settings
// for encryption by default.
#include <nlohmann/json.hpp>

#include "compute/compute_impl.h"
#include "kms/kms_crypto.h"
#include "kms/xts.h"
#include "util/json_text.h"

namespace strata {

namespace {

using json = nlohmann::json;

constexpr const char* kSettingsKey = "ebs_encryption";
constexpr const char* kContextKey = "aws:ebs:id";
constexpr const char* kManagedAlias = "alias/aws/ebs";

// The envelope (VolumeSpec::encryption) of a data key, as JSON text:
// {"v":1,"kms_key":ARN,"context":VOLUME-ID,"data_key_id":UUID,"wrapped":BASE64}.
struct Envelope {
  std::string kms_key_arn;
  std::string context_id;  // aws:ebs:id the data key was made with: its lineage's first volume
  std::string data_key_id;
  std::string wrapped;  // the KMS's ciphertext blob
};

std::string EncodeEnvelope(const Envelope& e) {
  return DumpJson(json{{"v", 1},
                       {"kms_key", e.kms_key_arn},
                       {"context", e.context_id},
                       {"data_key_id", e.data_key_id},
                       {"wrapped", kms::Base64Encode(e.wrapped)}});
}

// Errors: Corruption (a record that is not one of ours).
Result<Envelope> DecodeEnvelope(const std::string& id, const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto str = [&j](const char* k) { return j.contains(k) && j[k].is_string(); };
  if (!j.is_object() || j.value("v", json()) != 1 || !str("kms_key") || !str("context") ||
      !str("data_key_id") || !str("wrapped")) {
    return Status::Corruption("the encryption envelope of " + id + " is malformed");
  }
  Envelope e;
  e.kms_key_arn = j["kms_key"].get<std::string>();
  e.context_id = j["context"].get<std::string>();
  e.data_key_id = j["data_key_id"].get<std::string>();
  auto wrapped = kms::Base64Decode(j["wrapped"].get<std::string>());
  if (!wrapped.ok()) {
    return Status::Corruption("the wrapped data key of " + id + " is not base64");
  }
  e.wrapped = std::move(*wrapped);
  return e;
}

// A KMS error as EC2 reports a key it cannot use.
Status KeyError(const Status& s, const std::string& ref) {
  if (s.code() == Status::Code::kNotFound) {
    return Status::InvalidArgument("InvalidParameterValue: KmsKeyId " + ref +
                                   " does not exist in this pool's KMS (" + s.message() + ")");
  }
  if (s.code() == Status::Code::kBusy) {
    return Status::Busy("IncorrectState: the KMS key " + ref + " cannot be used: " + s.message());
  }
  return s;
}

}  // namespace

EncryptionInfo DescribeEncryption(const std::string& envelope) {
  EncryptionInfo info;
  if (envelope.empty()) {
    return info;
  }
  info.encrypted = true;  // even when the envelope is damaged: its data is ciphertext
  if (auto e = DecodeEnvelope("", envelope); e.ok()) {
    info.kms_key_arn = e->kms_key_arn;
    info.data_key_id = e->data_key_id;
  }
  return info;
}

// ---------------------------------------------------------------- settings

Status ComputeImpl::LoadSettingsLocked() {
  STRATA_ASSIGN_OR_RETURN(auto records, pool_->ReadRecords(kSettingsTable));
  for (const auto& [key, text] : records) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (key != kSettingsKey || !j.is_object() || !j.value("by_default", json()).is_boolean() ||
        !j.value("kms_key", json()).is_string()) {
      return Status::Corruption("settings record " + key + " is malformed");
    }
    encryption_by_default_ = j["by_default"].get<bool>();
    default_kms_key_ = j["kms_key"].get<std::string>();
  }
  return Status::OK();
}

Status ComputeImpl::SaveSettingsLocked(bool by_default, const std::string& default_key) {
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(
      {{kSettingsTable, kSettingsKey,
        DumpJson(json{{"by_default", by_default}, {"kms_key", default_key}})}}));
  encryption_by_default_ = by_default;
  default_kms_key_ = default_key;
  return Status::OK();
}

bool ComputeImpl::EncryptionByDefault() {
  MutexLock lock(&mu_);
  return encryption_by_default_;
}

Status ComputeImpl::SetEncryptionByDefault(bool on) {
  MutexLock lock(&mu_);
  return SaveSettingsLocked(on, default_kms_key_);
}

Result<std::string> ComputeImpl::DefaultKmsKey() {
  {
    MutexLock lock(&mu_);
    if (!default_kms_key_.empty()) {
      return default_kms_key_;
    }
  }
  if (kms_ == nullptr) {  // nothing to make the managed key in: its alias names it
    return std::string("alias/aws/ebs");
  }
  STRATA_ASSIGN_OR_RETURN(KmsKeyInfo managed, kms_->AwsManagedKey(kManagedAlias));
  return managed.arn;
}

Result<std::string> ComputeImpl::SetDefaultKmsKey(const std::string& ref) {
  std::string arn;
  if (!ref.empty()) {
    if (kms_ == nullptr) {
      return Status::NotSupported(
          "UnsupportedOperation: this process has no KMS (start it with --kms-root-key)");
    }
    auto key = kms_->DescribeKey(ref);
    if (!key.ok()) {
      return KeyError(key.status(), ref);
    }
    arn = key->arn;
  }
  {
    MutexLock lock(&mu_);
    STRATA_RETURN_IF_ERROR(SaveSettingsLocked(encryption_by_default_, arn));
  }
  return DefaultKmsKey();
}

// ---------------------------------------------------------------- keys

Result<KmsKeyInfo> ComputeImpl::UsableKmsKey(const std::string& ref) {
  std::string wanted = ref;
  if (wanted.empty()) {
    MutexLock lock(&mu_);
    wanted = default_kms_key_;
  }
  return UsableKeyNamed(wanted);
}

Result<KmsKeyInfo> ComputeImpl::LaunchKeyLocked(const std::string& ref) {
  return UsableKeyNamed(ref.empty() ? default_kms_key_ : ref);
}

Result<KmsKeyInfo> ComputeImpl::UsableKeyNamed(const std::string& wanted) {
  if (kms_ == nullptr) {
    return Status::NotSupported(
        "UnsupportedOperation: encrypted volumes need the pool's KMS, and this process has none "
        "(start strata-nbd with --kms-root-key, or give the CLI --kms-root-key)");
  }
  auto key = wanted.empty() || wanted == kManagedAlias ||
                     wanted == std::string("arn:aws:kms:us-east-1:000000000000:") + kManagedAlias
                 ? kms_->AwsManagedKey(kManagedAlias)
                 : kms_->DescribeKey(wanted);
  if (!key.ok()) {
    return KeyError(key.status(), wanted);
  }
  if (key->state != "Enabled") {
    return Status::Busy("IncorrectState: the KMS key " + key->arn + " is " + key->state);
  }
  return key;
}

Result<std::string> ComputeImpl::NewEnvelope(const std::string& volume_id, const KmsKeyInfo& key) {
  auto data_key =
      kms_->GenerateDataKey(key.arn, kms::XtsCipher::kKeyBytes, {{kContextKey, volume_id}},
                            /*with_plaintext=*/false);
  if (!data_key.ok()) {
    return KeyError(data_key.status(), key.arn);
  }
  Envelope e;
  e.kms_key_arn = key.arn;
  e.context_id = volume_id;
  STRATA_ASSIGN_OR_RETURN(e.data_key_id, kms::NewUuid());
  e.wrapped = std::move(data_key->blob);
  return EncodeEnvelope(e);
}

Result<kms::Secret> ComputeImpl::UnwrapDataKey(const std::string& id, const std::string& envelope,
                                               bool* here) {
  STRATA_ASSIGN_OR_RETURN(Envelope e, DecodeEnvelope(id, envelope));
  *here = kms_ != nullptr && kms_->DescribeKey(e.kms_key_arn).ok();
  const KmsContext context = {{kContextKey, e.context_id}};
  Result<std::string> plain = Status::NotFound("");
  if (*here) {
    auto local = kms_->Decrypt(e.wrapped, context, e.kms_key_arn);
    plain = local.ok() ? Result<std::string>(std::move(local->plaintext)) : local.status();
  } else if (!options_.kms_peer.endpoint_url.empty()) {
    plain = DecryptWithPeer(options_.kms_peer, e.wrapped, context, e.kms_key_arn);
  } else {
    return Status::NotSupported(
        id + " is encrypted under KMS key " + e.kms_key_arn + ", which " +
        (kms_ == nullptr ? std::string("this process has no KMS to use (start it with the pool's "
                                       "--kms-root-key)")
                         : std::string("this pool's KMS does not hold")) +
        "; it needs that key, here or in a peer KMS (strata-nbd --kms-peer-url)");
  }
  if (plain.ok() && plain->size() != kms::XtsCipher::kKeyBytes) {  // (a peer's reply)
    kms::Secret wipe(std::move(*plain));
    plain = Status::Corruption("the KMS returned a data key that is not " +
                               std::to_string(kms::XtsCipher::kKeyBytes) + " bytes");
  }
  if (!plain.ok()) {
    return InvalidKmsKeyState(id + " cannot be opened (" + plain.status().message() + ")");
  }
  return kms::Secret(std::move(*plain));
}

Result<std::shared_ptr<BlockCipher>> ComputeImpl::CipherFor(const std::string& id,
                                                            const std::string& envelope) {
  bool here = false;
  STRATA_ASSIGN_OR_RETURN(kms::Secret key, UnwrapDataKey(id, envelope, &here));
  STRATA_ASSIGN_OR_RETURN(std::unique_ptr<kms::XtsCipher> cipher, kms::XtsCipher::Create(key));
  return std::shared_ptr<BlockCipher>(std::move(cipher));
}

// ---------------------------------------------------------------- remotes

namespace {

// The key an encrypted lineage's block names in a remote are made with (HMAC-SHA256): derived
// from the data key by HKDF, so the names say nothing without it, and bound to the data key's
// id and the format's purpose so that it serves no other use.
Result<std::string> BlockIdKey(const kms::Secret& data_key, const std::string& data_key_id) {
  STRATA_ASSIGN_OR_RETURN(kms::Secret k,
                          kms::Hkdf(data_key, "strata-remote-block-ids-v1", data_key_id, 32));
  return k.bytes();
}

}  // namespace

Result<RemoteEncryption> ComputeImpl::RemoteEncryptionToPush(const std::string& snapshot_id) {
  STRATA_ASSIGN_OR_RETURN(SnapshotInfo info, pool_->DescribeSnapshot(snapshot_id));
  RemoteEncryption out;
  if (info.encryption.empty()) {
    return out;
  }
  bool here = false;
  STRATA_ASSIGN_OR_RETURN(kms::Secret key, UnwrapDataKey(snapshot_id, info.encryption, &here));
  STRATA_ASSIGN_OR_RETURN(Envelope e, DecodeEnvelope(snapshot_id, info.encryption));
  STRATA_ASSIGN_OR_RETURN(out.block_id_key, BlockIdKey(key, e.data_key_id));
  return out;
}

Result<RemoteEncryption> ComputeImpl::RemoteEncryptionToRestore(const std::string& snapshot_id,
                                                                const std::string& envelope) {
  RemoteEncryption out;
  if (envelope.empty()) {
    return out;
  }
  bool here = false;
  STRATA_ASSIGN_OR_RETURN(kms::Secret key, UnwrapDataKey(snapshot_id, envelope, &here));
  STRATA_ASSIGN_OR_RETURN(Envelope e, DecodeEnvelope(snapshot_id, envelope));
  STRATA_ASSIGN_OR_RETURN(out.block_id_key, BlockIdKey(key, e.data_key_id));
  if (here) {
    return out;  // the manifest's envelope serves as it is
  }
  if (kms_ == nullptr) {
    return Status::NotSupported("restoring encrypted " + snapshot_id +
                                " needs this pool's KMS (--kms-root-key) to keep its data key");
  }
  // The same data key (the ciphertext lands unchanged), wrapped for this pool's KMS.
  STRATA_ASSIGN_OR_RETURN(std::string default_ref, DefaultKmsKey());
  STRATA_ASSIGN_OR_RETURN(KmsKeyInfo local, UsableKmsKey(default_ref));
  auto wrapped = kms_->Encrypt(local.arn, key.bytes(), {{kContextKey, e.context_id}});
  if (!wrapped.ok()) {
    return KeyError(wrapped.status(), local.arn);
  }
  e.kms_key_arn = local.arn;
  e.wrapped = std::move(wrapped->blob);
  out.envelope = EncodeEnvelope(e);
  return out;
}

// ---------------------------------------------------------------- volumes

Result<std::shared_ptr<Volume>> ComputeImpl::OpenVolume(const std::string& volume_id) {
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool_->DescribeVolume(volume_id));
  if (info.encryption.empty()) {
    return pool_->OpenVolume(info.volume_id);
  }
  OpenOptions o;
  STRATA_ASSIGN_OR_RETURN(o.cipher, CipherFor(info.volume_id, info.encryption));
  return pool_->OpenVolume(info.volume_id, o);
}

Result<std::shared_ptr<Volume>> ComputeImpl::OpenSnapshot(const std::string& snapshot_id) {
  STRATA_ASSIGN_OR_RETURN(SnapshotInfo info, pool_->DescribeSnapshot(snapshot_id));
  if (info.encryption.empty()) {
    return pool_->OpenSnapshot(snapshot_id);
  }
  OpenOptions o;
  STRATA_ASSIGN_OR_RETURN(o.cipher, CipherFor(snapshot_id, info.encryption));
  return pool_->OpenSnapshot(snapshot_id, o);
}

Result<VolumeInfo> ComputeImpl::CreateVolume(const VolumeSpec& spec, std::optional<bool> encrypted,
                                             const std::string& kms_key_id) {
  if (!kms_key_id.empty() && !encrypted.value_or(false)) {
    return Status::InvalidArgument(
        "InvalidParameterDependency: The parameter KmsKeyId requires the parameter Encrypted to "
        "be set.");
  }
  const bool want = encrypted.value_or(EncryptionByDefault());
  if (!spec.snapshot_id.empty()) {
    STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool_->DescribeSnapshot(spec.snapshot_id));
    const EncryptionInfo have = DescribeEncryption(snap.encryption);
    if (encrypted == false && have.encrypted) {
      return Status::InvalidArgument(
          "InvalidParameterCombination: a volume from encrypted snapshot " + snap.snapshot_id +
          " is encrypted");
    }
    if (!want && !have.encrypted) {
      return pool_->CreateVolume(spec);
    }
    if (have.encrypted && kms_key_id.empty()) {
      return pool_->CreateVolume(spec);  // the lineage's data key: an instant clone
    }
    STRATA_ASSIGN_OR_RETURN(KmsKeyInfo key, UsableKmsKey(kms_key_id));
    if (have.encrypted && key.arn == have.kms_key_arn) {
      return pool_->CreateVolume(spec);
    }
    return CopyToNewKey(spec, key);  // another key, or encrypting plaintext: a full copy
  }
  if (!want) {
    return pool_->CreateVolume(spec);
  }
  STRATA_ASSIGN_OR_RETURN(KmsKeyInfo key, UsableKmsKey(kms_key_id));
  VolumeSpec s = spec;
  s.volume_id = NewResourceId("vol");
  STRATA_ASSIGN_OR_RETURN(s.encryption, NewEnvelope(s.volume_id, key));
  return pool_->CreateVolume(s);
}

Result<VolumeInfo> ComputeImpl::CopyToNewKey(VolumeSpec spec, const KmsKeyInfo& key) {
  STRATA_ASSIGN_OR_RETURN(SnapshotInfo snap, pool_->DescribeSnapshot(spec.snapshot_id));
  STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Volume> from, OpenSnapshot(snap.snapshot_id));
  const bool importing = spec.importing;
  spec.snapshot_id.clear();
  spec.size_bytes = std::max(spec.size_bytes, snap.volume_size_bytes);
  spec.importing = true;  // hidden, and gone at the next open, until the copy is whole
  spec.volume_id = NewResourceId("vol");
  STRATA_ASSIGN_OR_RETURN(spec.encryption, NewEnvelope(spec.volume_id, key));
  STRATA_ASSIGN_OR_RETURN(VolumeInfo info, pool_->CreateVolume(spec));
  Status copied;
  {
    OpenOptions o;
    auto cipher = CipherFor(info.volume_id, info.encryption);
    o.cipher = cipher.ok() ? *cipher : nullptr;
    auto to = cipher.ok() ? pool_->OpenVolume(info.volume_id, o)
                          : Result<std::shared_ptr<Volume>>(cipher.status());
    copied = to.ok() ? CopyVolumeData(from.get(), to->get()) : to.status();
  }
  if (!copied.ok()) {
    (void)pool_->DeleteVolume(info.volume_id);
    return copied;
  }
  if (importing) {
    return info;
  }
  return pool_->PublishImport(info.volume_id);
}

}  // namespace strata
