// Kms: a key management service in the pool, driven as AWS KMS is (docs/kms.md): symmetric
// keys (AES-256-GCM, "SYMMETRIC_DEFAULT"), aliases, envelope encryption (Encrypt, Decrypt,
// ReEncrypt, GenerateDataKey), enable/disable, scheduled deletion and rotation.
//
// Every key's material is kept in the pool only wrapped (AES-256-GCM) under a key derived
// (HKDF-SHA256) from a **root key that never enters the pool**: a pool copied without its root
// key reveals no key. The pool keeps a check value of the root key, so a wrong root key is
// refused at open, never used.
//
// Errors carry KMS's exception name first, "NotFoundException: Key '...' does not exist", with
// the Status code that fits (NotFound, InvalidArgument, Busy for a key in the wrong state,
// Corruption for a ciphertext that does not open). Thread-safe.
#ifndef STRATA_KMS_H_
#define STRATA_KMS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/export.h"
#include "strata/pool.h"
#include "strata/status.h"

namespace strata {

// An encryption context: authenticated with the ciphertext, never stored in it.
using KmsContext = std::map<std::string, std::string>;

struct KmsKeyInfo {
  std::string key_id;  // a UUID
  std::string arn;     // arn:aws:kms:us-east-1:000000000000:key/<key_id>
  std::string description;
  std::string state;        // "Enabled", "Disabled", "PendingDeletion"
  std::string key_manager;  // "CUSTOMER", or "AWS" for the managed alias/aws/ebs key
  int64_t creation_ms = 0;
  int64_t deletion_ms = 0;  // PendingDeletion: when it is destroyed
  uint32_t pending_window_days = 0;
  bool rotation_enabled = false;
  uint32_t rotation_period_days = 365;
  int64_t next_rotation_ms = 0;    // rotation enabled: when the next one happens
  uint32_t material_versions = 1;  // rotations + 1: every one still decrypts
  std::map<std::string, std::string> tags;
};

struct KmsAliasInfo {
  std::string name;  // "alias/..."
  std::string arn;   // arn:aws:kms:us-east-1:000000000000:alias/...
  std::string target_key_id;
  int64_t creation_ms = 0;
  int64_t updated_ms = 0;
};

struct KmsCiphertext {
  std::string blob;     // CiphertextBlob (opaque bytes; names its key)
  std::string key_arn;  // the key that made it
};

struct KmsPlaintext {
  std::string plaintext;  // the caller should wipe it when done
  std::string key_arn;
};

struct KmsDataKey {
  std::string plaintext;  // empty for GenerateDataKeyWithoutPlaintext
  std::string blob;
  std::string key_arn;
};

struct KmsOptions {
  // The wall clock in ms since the epoch (tests move it to see deletion and rotation happen).
  std::function<int64_t()> now_ms;
};

// Reads a root key: a file holding exactly 32 bytes, or 64 hex digits (and a newline). It must
// be a regular file of mode 0600 or stricter and lie outside `pool_dir`. `path` "" means
// $CREDENTIALS_DIRECTORY/strata-kms-root-key (systemd's LoadCredential=), when that is set.
// Errors: NotFound (no path and no credential), InvalidArgument (size, contents, mode, place).
STRATA_EXPORT Result<std::string> LoadKmsRootKey(const std::string& path,
                                                 const std::string& pool_dir);
// Whether the pool's KMS has been opened once (its root key's check value is recorded): such a
// pool holds keys sealed under a root key, and a process without that key must not change it
// (Compute opens it read-only). Errors: the pool's.
STRATA_EXPORT Result<bool> PoolHasKms(Pool* pool);
// Writes a new random root key to `path` (0600, refusing to overwrite). Errors: AlreadyExists.
STRATA_EXPORT Status CreateKmsRootKey(const std::string& path, const std::string& pool_dir);

// A pool's root key kept by another KMS (AWS KMS, or a second Strata's --api-listen), reached
// over its AWS API with SigV4 credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
// (/ AWS_SESSION_TOKEN).
struct ExternalKmsRoot {
  std::string endpoint_url;  // http(s)://HOST[:PORT]
  std::string key_id;        // the external key that wraps this pool's root key
  std::string region = "us-east-1";
  uint32_t call_timeout_ms = 30000;  // each call, bounded (1..300000)
};
// The pool's root key from an external KMS. The first call has the external KMS make one
// (GenerateDataKey, 32 bytes) and records only its ciphertext in the pool; every later call
// has it decrypted again. The pool never holds the root key, only a ciphertext that is useless
// without the external KMS and its key: disable or delete that key and the pool's KMS cannot
// open. Errors: NotFound (no credentials), the external KMS's own (e.g. "DisabledException:
// ..."), IOError (unreachable, bounded in time).
STRATA_EXPORT Result<std::string> KmsRootKeyFromExternal(Pool* pool, const ExternalKmsRoot& ext);

// Another KMS whose keys this process may use to decrypt (AWS KMS, or a second Strata's
// --api-listen), as an AWS account uses a key that another account shares with it: a remote
// snapshot whose data key is wrapped under one of its keys restores here. Credentials as
// ExternalKmsRoot's, or `profile` of the shared credentials file (the AWS CLI's --profile).
struct KmsPeer {
  std::string endpoint_url;  // http(s)://HOST[:PORT]; "" = none
  std::string profile;       // "" = as ExternalKmsRoot
  std::string region = "us-east-1";
  uint32_t call_timeout_ms = 30000;  // each call, bounded (1..300000)
};
// Decrypt on the peer: `blob` under `key_ref` (a key ARN) with `context`; the plaintext (the
// caller wipes it). Errors: NotFound (no credentials), the peer's own
// ("NotFoundException: ...", "DisabledException: ..."), IOError (unreachable, bounded in time),
// Corruption (a reply without a Plaintext).
STRATA_EXPORT Result<std::string> DecryptWithPeer(const KmsPeer& peer, const std::string& blob,
                                                  const KmsContext& context,
                                                  const std::string& key_ref);

class STRATA_EXPORT Kms {
 public:
  // Opens the pool's KMS with `root_key` (32 bytes; see LoadKmsRootKey). The first open records
  // the root key's check value. Errors: InvalidArgument (a root key other than the one this
  // pool's keys were made with, or of the wrong size), Corruption, and the pool's.
  static Result<std::unique_ptr<Kms>> Open(Pool* pool, const std::string& root_key,
                                           const KmsOptions& options = {});
  virtual ~Kms() = default;

  // ---- Keys. `ref`: a key id, key ARN, alias name ("alias/x") or alias ARN. ----
  virtual Result<KmsKeyInfo> CreateKey(const std::string& description,
                                       const std::map<std::string, std::string>& tags) = 0;
  virtual Result<KmsKeyInfo> DescribeKey(const std::string& ref) = 0;
  virtual std::vector<KmsKeyInfo> ListKeys() = 0;
  virtual Result<KmsKeyInfo> EnableKey(const std::string& ref) = 0;
  virtual Result<KmsKeyInfo> DisableKey(const std::string& ref) = 0;
  // 7..30 days; the key is Disabled-like (PendingDeletion) meanwhile and destroyed after.
  virtual Result<KmsKeyInfo> ScheduleKeyDeletion(const std::string& ref, uint32_t days) = 0;
  virtual Result<KmsKeyInfo> CancelKeyDeletion(const std::string& ref) = 0;  // -> Disabled
  // Automatic rotation every `period_days` (90..2560); older material still decrypts.
  virtual Result<KmsKeyInfo> EnableKeyRotation(const std::string& ref, uint32_t period_days) = 0;
  virtual Result<KmsKeyInfo> DisableKeyRotation(const std::string& ref) = 0;
  virtual Result<KmsKeyInfo> RotateKeyOnDemand(const std::string& ref) = 0;

  // The AWS managed key of a service ("alias/aws/ebs": EBS's default key), made with its alias
  // in one commit on first use, as AWS makes it. It cannot be deleted. Errors: InvalidArgument
  // (another alias), and the pool's.
  virtual Result<KmsKeyInfo> AwsManagedKey(const std::string& alias) = 0;

  // ---- Aliases: "alias/" + 1..250 of [A-Za-z0-9/_-]; "alias/aws/" is AWS's. ----
  virtual Result<KmsAliasInfo> CreateAlias(const std::string& name, const std::string& key_ref) = 0;
  virtual Result<KmsAliasInfo> UpdateAlias(const std::string& name, const std::string& key_ref) = 0;
  virtual Status DeleteAlias(const std::string& name) = 0;
  // Every alias, or those of one key (`key_ref` non-empty).
  virtual Result<std::vector<KmsAliasInfo>> ListAliases(const std::string& key_ref) = 0;

  // ---- Cryptography. Plaintext: 1..4096 bytes; data keys 1..1024 bytes. ----
  virtual Result<KmsCiphertext> Encrypt(const std::string& ref, const std::string& plaintext,
                                        const KmsContext& context) = 0;
  // `ref` non-empty: the blob must be that key's (IncorrectKeyException otherwise).
  virtual Result<KmsPlaintext> Decrypt(const std::string& blob, const KmsContext& context,
                                       const std::string& ref) = 0;
  virtual Result<KmsCiphertext> ReEncrypt(const std::string& blob, const KmsContext& from_context,
                                          const std::string& source_ref, const std::string& to_ref,
                                          const KmsContext& to_context) = 0;
  virtual Result<KmsDataKey> GenerateDataKey(const std::string& ref, uint32_t bytes,
                                             const KmsContext& context, bool with_plaintext) = 0;
};

}  // namespace strata

#endif  // STRATA_KMS_H_
