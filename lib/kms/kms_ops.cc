// The KMS's cryptographic operations (kms_impl.h). A CiphertextBlob is
//   "SKMS" | 0x01 | key id (36 ASCII) | material version (4 bytes, big-endian) | sealed
// where sealed is AES-256-GCM (kms_crypto.h) under that version of the key's material, with the
// 45-byte header and the canonical encryption context as AAD. docs/kms.md has the layout.
#include <cstring>

#include "kms/kms_impl.h"
#include "util/check.h"

namespace strata::kms {

namespace {

constexpr char kMagic[] = "SKMS";
constexpr size_t kHeaderBytes = 4 + 1 + 36 + 4;

Status KmsError(Status::Code code, const char* exception, const std::string& message) {
  return Status(code, std::string(exception) + ": " + message);
}

std::string Header(const std::string& key_id, uint32_t version) {
  std::string h(kMagic, 4);
  h += '\x01';
  h += key_id;
  for (int shift = 24; shift >= 0; shift -= 8) {
    h += static_cast<char>((version >> shift) & 0xff);
  }
  STRATA_CHECK(h.size() == kHeaderBytes);
  return h;
}

Status CheckContext(const KmsContext& context) {
  size_t bytes = 0;
  for (const auto& [k, v] : context) {
    bytes += k.size() + v.size();
  }
  if (bytes > kMaxContextBytes) {
    return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                    "an encryption context is at most 8192 bytes");
  }
  return Status::OK();
}

Status CheckLength(size_t n, size_t max, const char* what) {
  if (n == 0 || n > max) {
    return KmsError(Status::Code::kInvalidArgument, "ValidationException",
                    std::string(what) + " must be 1 to " + std::to_string(max) + " bytes");
  }
  return Status::OK();
}

Status BadBlob() {
  return KmsError(Status::Code::kCorruption, "InvalidCiphertextException",
                  "the ciphertext is not one this KMS made, was altered, or its encryption "
                  "context differs");
}

}  // namespace

std::string CanonicalContext(const KmsContext& context) {
  std::string out;
  for (const auto& [k, v] : context) {  // std::map: sorted, so one context has one encoding
    for (const std::string* s : {&k, &v}) {
      const uint32_t n = static_cast<uint32_t>(s->size());
      for (int shift = 24; shift >= 0; shift -= 8) {
        out += static_cast<char>((n >> shift) & 0xff);
      }
      out += *s;
    }
  }
  return out;
}

Result<std::string> KmsImpl::EncryptLocked(const KeyRecord& rec, const std::string& plaintext,
                                           const KmsContext& context) {
  const uint32_t version = rec.info.material_versions;
  STRATA_ASSIGN_OR_RETURN(Secret material, MaterialLocked(rec, version));
  const std::string header = Header(rec.info.key_id, version);
  STRATA_ASSIGN_OR_RETURN(std::string sealed,
                          Seal(material, header + CanonicalContext(context), plaintext));
  std::string blob = header + sealed;
  STRATA_CHECK(blob.size() <= kMaxBlobBytes);
  return blob;
}

Result<KmsPlaintext> KmsImpl::DecryptLocked(const std::string& blob, const KmsContext& context,
                                            const std::string& ref) {
  STRATA_RETURN_IF_ERROR(CheckContext(context));
  if (blob.size() < kHeaderBytes + kAeadOverhead || blob.size() > kMaxBlobBytes ||
      std::memcmp(blob.data(), kMagic, 4) != 0 || blob[4] != '\x01') {
    return BadBlob();
  }
  const std::string key_id = blob.substr(5, 36);
  uint32_t version = 0;
  for (size_t i = 41; i < kHeaderBytes; i++) {
    version = (version << 8) | static_cast<unsigned char>(blob[i]);
  }
  auto found = ResolveLocked(key_id);
  if (!found.ok()) {
    return found.status().code() == Status::Code::kNotFound ? BadBlob() : found.status();
  }
  KeyRecord* rec = *found;
  if (!ref.empty()) {
    STRATA_ASSIGN_OR_RETURN(KeyRecord * want, ResolveLocked(ref));
    if (want != rec) {
      return KmsError(Status::Code::kInvalidArgument, "IncorrectKeyException",
                      "the ciphertext was made under another key than " + want->info.arn);
    }
  }
  if (rec->info.state != "Enabled") {
    return Status(Status::Code::kBusy,
                  rec->info.state == "Disabled"
                      ? "DisabledException: " + rec->info.arn + " is disabled."
                      : "KMSInvalidStateException: " + rec->info.arn + " is pending deletion.");
  }
  if (version == 0 || version > rec->info.material_versions) {
    return BadBlob();
  }
  STRATA_ASSIGN_OR_RETURN(Secret material, MaterialLocked(*rec, version));
  auto plain = kms::Open(material, blob.substr(0, kHeaderBytes) + CanonicalContext(context),
                         std::string_view(blob).substr(kHeaderBytes));
  if (!plain.ok()) {
    return BadBlob();
  }
  return KmsPlaintext{plain->bytes(), rec->info.arn};
}

Result<KmsCiphertext> KmsImpl::Encrypt(const std::string& ref, const std::string& plaintext,
                                       const KmsContext& context) {
  STRATA_RETURN_IF_ERROR(CheckLength(plaintext.size(), kMaxPlaintextBytes, "Plaintext"));
  STRATA_RETURN_IF_ERROR(CheckContext(context));
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(KeyRecord * rec, UsableLocked(ref));
  STRATA_ASSIGN_OR_RETURN(std::string blob, EncryptLocked(*rec, plaintext, context));
  return KmsCiphertext{std::move(blob), rec->info.arn};
}

Result<KmsPlaintext> KmsImpl::Decrypt(const std::string& blob, const KmsContext& context,
                                      const std::string& ref) {
  MutexLock lock(&mu_);
  return DecryptLocked(blob, context, ref);
}

Result<KmsCiphertext> KmsImpl::ReEncrypt(const std::string& blob, const KmsContext& from_context,
                                         const std::string& source_ref, const std::string& to_ref,
                                         const KmsContext& to_context) {
  STRATA_RETURN_IF_ERROR(CheckContext(to_context));
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(KmsPlaintext plain, DecryptLocked(blob, from_context, source_ref));
  Secret wipe(plain.plaintext);
  STRATA_ASSIGN_OR_RETURN(KeyRecord * to, UsableLocked(to_ref));
  STRATA_ASSIGN_OR_RETURN(std::string out, EncryptLocked(*to, plain.plaintext, to_context));
  Secret wipe_plain(std::move(plain.plaintext));
  return KmsCiphertext{std::move(out), to->info.arn};
}

Result<KmsDataKey> KmsImpl::GenerateDataKey(const std::string& ref, uint32_t bytes,
                                            const KmsContext& context, bool with_plaintext) {
  STRATA_RETURN_IF_ERROR(CheckLength(bytes, kMaxDataKeyBytes, "NumberOfBytes"));
  STRATA_RETURN_IF_ERROR(CheckContext(context));
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(KeyRecord * rec, UsableLocked(ref));
  STRATA_ASSIGN_OR_RETURN(Secret key, RandomBytes(bytes));
  STRATA_ASSIGN_OR_RETURN(std::string blob, EncryptLocked(*rec, key.bytes(), context));
  return KmsDataKey{with_plaintext ? key.bytes() : std::string(), std::move(blob), rec->info.arn};
}

}  // namespace strata::kms
