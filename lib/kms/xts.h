// XtsCipher: AES-256-XTS over 4 KiB units (IEEE 1619, OpenSSL's EVP_aes_256_xts), the tweak
// of a unit being its *logical* number (little-endian, as dm-crypt's plain64), so that the same
// bytes at the same place of a volume encrypt the same way under one key, whichever physical
// chunk holds them.
//
// Units that are entirely zero bytes on the media are holes (never written, punched, or zeroed):
// Decrypt leaves them as zeros. So are 512-byte sectors of zeros inside a unit: a write of a unit
// over a hole that a power cut tore (disks keep 512-byte sectors whole, not 4 KiB) then reads as
// old or new in each sector, as a plaintext one would, not as noise. Ciphertext that happens to
// be a zero sector would read as zeros: the chance is 2^-4096 per sector. docs/security.md says
// what holes reveal.
//
// Thread-safe: each call takes an initialised cipher context from a small pool (the key
// schedule is made once per context, not per call). The key is wiped when the cipher goes.
#ifndef STRATA_KMS_XTS_H_
#define STRATA_KMS_XTS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "strata/cipher.h"

#include "kms/kms_crypto.h"
#include "util/mutex.h"

namespace strata::kms {

class XtsCipher final : public BlockCipher {
 public:
  static constexpr size_t kKeyBytes = 64;  // two AES-256 keys
  // Errors: InvalidArgument (key size; the two halves equal).
  static Result<std::unique_ptr<XtsCipher>> Create(const Secret& key);
  // A new random key (an instance-store device's: never stored anywhere).
  static Result<std::unique_ptr<XtsCipher>> CreateRandom();
  ~XtsCipher() override;
  XtsCipher(const XtsCipher&) = delete;
  XtsCipher& operator=(const XtsCipher&) = delete;

  static constexpr uint32_t unit_bytes() { return kUnitBytes; }
  // `length` bytes (a multiple of kUnitBytes) from `in` to `out` (may be the same buffer), the
  // first unit being logical unit `first_unit`.
  Status Encrypt(uint64_t first_unit, const std::byte* in, std::byte* out, size_t length) override;
  // The same the other way; all-zero units stay zeros (holes).
  Status Decrypt(uint64_t first_unit, const std::byte* in, std::byte* out, size_t length) override;

 private:
  struct Ctx;
  explicit XtsCipher(Secret key);
  Status Run(bool encrypt, uint64_t first_unit, const std::byte* in, std::byte* out, size_t length);
  static constexpr uint32_t kSectorBytes = 512;
  static constexpr uint32_t kSectorsPerUnit = kUnitBytes / kSectorBytes;
  static constexpr uint32_t kAllSectors = (1u << kSectorsPerUnit) - 1;
  // Bit i: sector i of the unit is all zero bytes.
  static uint32_t ZeroSectors(const std::byte* unit);
  Result<Ctx*> Take(bool encrypt) EXCLUDES(mu_);
  void Give(Ctx* ctx) EXCLUDES(mu_);

  const Secret key_;
  Mutex mu_;
  std::vector<Ctx*> free_ GUARDED_BY(mu_);  // at most kMaxIdle kept
  static constexpr size_t kMaxIdle = 16;
};

}  // namespace strata::kms

#endif  // STRATA_KMS_XTS_H_
