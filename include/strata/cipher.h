// BlockCipher: the seam through which an encrypted volume's data is encrypted and decrypted.
// The engine (libstrata) holds no key and links no cryptography: whoever opens an encrypted
// volume (Pool::OpenVolume with OpenOptions::cipher) supplies one. Strata's EC2 layer supplies
// AES-256-XTS under the volume's data key (docs/security.md, "Encryption at rest").
#ifndef STRATA_CIPHER_H_
#define STRATA_CIPHER_H_

#include <cstddef>
#include <cstdint>

#include "strata/export.h"
#include "strata/status.h"

namespace strata {

// Thread-safe. Works on whole units of kUnitBytes; a unit's tweak is its *logical* number in
// the volume (byte offset / kUnitBytes), never where it is stored, so the same ciphertext is valid
// in every chunk, snapshot and clone that holds that place of the volume's lineage.
class STRATA_EXPORT BlockCipher {
 public:
  static constexpr uint32_t kUnitBytes = 4096;
  virtual ~BlockCipher() = default;
  // Encrypts `length` bytes (a multiple of kUnitBytes) from `in` to `out` (which may be `in`),
  // the first unit being logical unit `first_unit`. Errors: IOError (the library failed).
  virtual Status Encrypt(uint64_t first_unit, const std::byte* in, std::byte* out,
                         size_t length) = 0;
  // The other way. A unit that is all zero bytes where it is stored is a hole (never written,
  // trimmed or zeroed) and decrypts to zeros: the engine keeps zeros as metadata. So does each
  // 512-byte sector of zeros inside a unit: a write over a hole torn by a power cut then reads
  // as old or new per sector (docs/durability.md), never as noise.
  virtual Status Decrypt(uint64_t first_unit, const std::byte* in, std::byte* out,
                         size_t length) = 0;
};

}  // namespace strata

#endif  // STRATA_CIPHER_H_
