// The KMS's cryptography, all of it OpenSSL's (EVP): random bytes, HKDF-SHA256, AES-256-GCM
// sealing and SHA-256 HMAC. Nothing here is a cipher or a KDF of our own; this file only fixes
// how they are called and checks every length before it sizes anything.
#ifndef STRATA_KMS_KMS_CRYPTO_H_
#define STRATA_KMS_KMS_CRYPTO_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "strata/status.h"

namespace strata::kms {

// Bytes that are zeroised (OPENSSL_cleanse) when they go: key material, plaintext data keys.
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string bytes) : bytes_(std::move(bytes)) {}
  Secret(const Secret& other) : bytes_(other.bytes_) {}
  Secret& operator=(const Secret& other);
  Secret(Secret&& other) noexcept;
  Secret& operator=(Secret&& other) noexcept;
  ~Secret() { Wipe(); }
  const std::string& bytes() const { return bytes_; }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  void Wipe();

 private:
  std::string bytes_;
};

constexpr size_t kAeadKeyBytes = 32;    // AES-256-GCM
constexpr size_t kAeadNonceBytes = 12;  // random per seal: at most 2^32 seals per key (NIST)
constexpr size_t kAeadTagBytes = 16;
constexpr size_t kAeadOverhead = kAeadNonceBytes + kAeadTagBytes;

// `n` bytes from OpenSSL's CSPRNG. Errors: IOError when it cannot be seeded.
Result<Secret> RandomBytes(size_t n);
// HKDF-SHA256 (RFC 5869) of `key` with `salt` and `info`, `n` bytes (n <= 255 * 32).
Result<Secret> Hkdf(const Secret& key, std::string_view salt, std::string_view info, size_t n);
// HMAC-SHA256 of `data` under `key`.
Result<std::string> Hmac(const Secret& key, std::string_view data);
// AES-256-GCM: nonce || tag || ciphertext, `aad` authenticated with it. `key`: 32 bytes.
Result<std::string> Seal(const Secret& key, std::string_view aad, std::string_view plaintext);
// Opens what Seal made. Errors: Corruption when anything (key, aad, bytes) is not what was
// sealed: GCM tells a wrong key or a tampered byte apart from nothing, and says so for both.
Result<Secret> Open(const Secret& key, std::string_view aad, std::string_view sealed);
// 16 random bytes in a UUID's 8-4-4-4-12 hex form: KMS key ids, EBS data key ids.
Result<std::string> NewUuid();
// Standard base64 with padding. Decode refuses anything else (InvalidArgument).
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view text);
// Equal in constant time (for MACs).
bool ConstantTimeEqual(std::string_view a, std::string_view b);

}  // namespace strata::kms

#endif  // STRATA_KMS_KMS_CRYPTO_H_
