// KmsImpl: the pool's KMS (include/strata/kms.h; docs/kms.md). One record table, "kms":
//   "root"         the root key's salt and check value (made by the first open);
//   "key/<id>"     a key: its metadata and every version of its material, each sealed under the
//                  wrap key (HKDF of the root key) with the key id and version as AAD;
//   "alias/<name>" an alias (name without its "alias/" prefix) and its target.
// In memory: the same records, decoded; material stays sealed until an operation needs it.
// One mutex guards everything; every change is committed before memory shows it.
#ifndef STRATA_KMS_KMS_IMPL_H_
#define STRATA_KMS_KMS_IMPL_H_

#include <map>
#include <string>
#include <vector>

#include "strata/kms.h"

#include "kms/kms_crypto.h"
#include "util/mutex.h"

namespace strata::kms {

constexpr char kTable[] = "kms";
constexpr size_t kMaxKeys = 10000;  // per pool (AWS's default quota is 100,000 per region)
constexpr size_t kMaxAliases = 10000;
constexpr size_t kMaxPlaintextBytes = 4096;  // Encrypt
constexpr size_t kMaxDataKeyBytes = 1024;    // GenerateDataKey
constexpr size_t kMaxBlobBytes = 6144;       // CiphertextBlob
constexpr size_t kMaxContextBytes = 8192;    // an encryption context, keys and values
constexpr size_t kMaxDescriptionBytes = 8192;
constexpr size_t kMaxRefBytes = 2048;
constexpr uint32_t kMaxMaterialVersions = 1000;  // rotations of one key
constexpr int64_t kDayMs = 86'400'000;

struct KeyRecord {
  KmsKeyInfo info;
  std::vector<std::string> sealed_material;  // version v at [v - 1]
};

class KmsImpl final : public Kms {
 public:
  KmsImpl(Pool* pool, Secret wrap_key, KmsOptions options);
  Status Load() EXCLUDES(mu_);

  Result<KmsKeyInfo> CreateKey(const std::string& description,
                               const std::map<std::string, std::string>& tags) override;
  Result<KmsKeyInfo> DescribeKey(const std::string& ref) override;
  std::vector<KmsKeyInfo> ListKeys() override;
  Result<KmsKeyInfo> EnableKey(const std::string& ref) override;
  Result<KmsKeyInfo> DisableKey(const std::string& ref) override;
  Result<KmsKeyInfo> ScheduleKeyDeletion(const std::string& ref, uint32_t days) override;
  Result<KmsKeyInfo> CancelKeyDeletion(const std::string& ref) override;
  Result<KmsKeyInfo> EnableKeyRotation(const std::string& ref, uint32_t period_days) override;
  Result<KmsKeyInfo> DisableKeyRotation(const std::string& ref) override;
  Result<KmsKeyInfo> RotateKeyOnDemand(const std::string& ref) override;
  Result<KmsAliasInfo> CreateAlias(const std::string& name, const std::string& key_ref) override;
  Result<KmsAliasInfo> UpdateAlias(const std::string& name, const std::string& key_ref) override;
  Status DeleteAlias(const std::string& name) override;
  Result<std::vector<KmsAliasInfo>> ListAliases(const std::string& key_ref) override;
  Result<KmsCiphertext> Encrypt(const std::string& ref, const std::string& plaintext,
                                const KmsContext& context) override;
  Result<KmsPlaintext> Decrypt(const std::string& blob, const KmsContext& context,
                               const std::string& ref) override;
  Result<KmsCiphertext> ReEncrypt(const std::string& blob, const KmsContext& from_context,
                                  const std::string& source_ref, const std::string& to_ref,
                                  const KmsContext& to_context) override;
  Result<KmsDataKey> GenerateDataKey(const std::string& ref, uint32_t bytes,
                                     const KmsContext& context, bool with_plaintext) override;
  Result<KmsKeyInfo> AwsManagedKey(const std::string& alias) override EXCLUDES(mu_);

 private:
  int64_t Now() const { return options_.now_ms(); }
  // Destroys keys whose deletion date passed and rotates keys whose rotation is due.
  Status HousekeepLocked() REQUIRES(mu_);
  Result<KeyRecord*> ResolveLocked(const std::string& ref) REQUIRES(mu_);
  // The key, checked usable for cryptography (Enabled).
  Result<KeyRecord*> UsableLocked(const std::string& ref) REQUIRES(mu_);
  Status CommitKeyLocked(const KeyRecord& rec) REQUIRES(mu_);
  // A key's record after `change`, committed, then in memory.
  Result<KmsKeyInfo> ChangeKey(const std::string& ref,
                               const std::function<Status(KeyRecord*)>& change) EXCLUDES(mu_);
  Result<std::string> SealMaterial(const std::string& key_id, uint32_t version,
                                   const Secret& material) const;
  Result<Secret> MaterialLocked(const KeyRecord& rec, uint32_t version) const REQUIRES(mu_);
  Result<std::string> EncryptLocked(const KeyRecord& rec, const std::string& plaintext,
                                    const KmsContext& context) REQUIRES(mu_);
  Result<KmsPlaintext> DecryptLocked(const std::string& blob, const KmsContext& context,
                                     const std::string& ref) REQUIRES(mu_);
  Result<KmsAliasInfo> PutAlias(const std::string& name, const std::string& key_ref, bool create)
      EXCLUDES(mu_);

  Pool* const pool_;
  const Secret wrap_key_;
  const KmsOptions options_;
  Mutex mu_;
  std::map<std::string, KeyRecord> keys_ GUARDED_BY(mu_);
  std::map<std::string, KmsAliasInfo> aliases_ GUARDED_BY(mu_);  // by full name "alias/x"
};

// Exposed for tests: the record codecs and the blob layout.
std::string EncodeKey(const KeyRecord& rec);
Result<KeyRecord> DecodeKey(const std::string& key_id, const std::string& json);
std::string CanonicalContext(const KmsContext& context);

}  // namespace strata::kms

#endif  // STRATA_KMS_KMS_IMPL_H_
