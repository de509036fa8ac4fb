// XtsCipher: AES-256-XTS over fixed-size units (IEEE 1619, OpenSSL's EVP_aes_256_xts), the tweak
// of a unit being its *logical* number (little-endian, as dm-crypt's plain64), so that the same
// bytes at the same place of a volume encrypt the same way under one key, whichever physical
// chunk holds them.
//
// Units that are entirely zero bytes on the media are holes (never written, punched, or zeroed):
// Decrypt leaves them as zeros. A unit whose ciphertext happens to be all zeros would be read
// as zeros: the chance is 2^-4096 per 512-byte unit. docs/kms.md says what holes reveal.
//
// Thread-safe: each call takes an initialised cipher context from a small pool (the key
// schedule is made once per context, not per call). The key is wiped when the cipher goes.
#ifndef STRATA_KMS_XTS_H_
#define STRATA_KMS_XTS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kms/kms_crypto.h"
#include "util/mutex.h"

namespace strata::kms {

class XtsCipher {
 public:
  static constexpr size_t kKeyBytes = 64;  // two AES-256 keys
  // `unit_bytes`: 512 or 4096. Errors: InvalidArgument (key size; the two halves equal).
  static Result<std::unique_ptr<XtsCipher>> Create(const Secret& key, uint32_t unit_bytes);
  // A new random key (an instance-store device's: never stored anywhere).
  static Result<std::unique_ptr<XtsCipher>> CreateRandom(uint32_t unit_bytes);
  ~XtsCipher();
  XtsCipher(const XtsCipher&) = delete;
  XtsCipher& operator=(const XtsCipher&) = delete;

  uint32_t unit_bytes() const { return unit_bytes_; }
  // `length` bytes (a multiple of unit_bytes) from `in` to `out` (may be the same buffer), the
  // first unit being logical unit `first_unit`.
  Status Encrypt(uint64_t first_unit, const std::byte* in, std::byte* out, size_t length);
  // The same the other way; all-zero units stay zeros (holes).
  Status Decrypt(uint64_t first_unit, const std::byte* in, std::byte* out, size_t length);

 private:
  struct Ctx;
  XtsCipher(Secret key, uint32_t unit_bytes);
  Status Run(bool encrypt, uint64_t first_unit, const std::byte* in, std::byte* out, size_t length);
  Result<Ctx*> Take(bool encrypt) EXCLUDES(mu_);
  void Give(Ctx* ctx) EXCLUDES(mu_);

  const Secret key_;
  const uint32_t unit_bytes_;
  Mutex mu_;
  std::vector<Ctx*> free_ GUARDED_BY(mu_);  // at most kMaxIdle kept
  static constexpr size_t kMaxIdle = 16;
};

}  // namespace strata::kms

#endif  // STRATA_KMS_XTS_H_
