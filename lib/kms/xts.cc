#include "kms/xts.h"

#include <openssl/evp.h>

#include <cstring>

#include "util/check.h"

namespace strata::kms {

// The provider's AES-256-XTS, fetched once: the implicit fetch of EVP_aes_256_xts() costs a
// lookup per initialisation, and every unit initialises its tweak.
const EVP_CIPHER* Xts() {
  static EVP_CIPHER* const kXts = EVP_CIPHER_fetch(nullptr, "AES-256-XTS", nullptr);
  return kXts;
}

// One direction's context, keyed once; each unit only sets its tweak.
struct XtsCipher::Ctx {
  EVP_CIPHER_CTX* ctx = nullptr;
  bool encrypt = false;
  ~Ctx() { EVP_CIPHER_CTX_free(ctx); }
};

XtsCipher::XtsCipher(Secret key) : key_(std::move(key)) {}

XtsCipher::~XtsCipher() {
  MutexLock lock(&mu_);
  for (Ctx* c : free_) {
    delete c;  // EVP_CIPHER_CTX_free wipes the key schedule
  }
}

Result<std::unique_ptr<XtsCipher>> XtsCipher::Create(const Secret& key) {
  if (key.size() != kKeyBytes) {
    return Status::InvalidArgument("an XTS key is 64 bytes");
  }
  if (CRYPTO_memcmp(key.bytes().data(), key.bytes().data() + 32, 32) == 0) {
    return Status::InvalidArgument("an XTS key's two halves must differ (IEEE 1619)");
  }
  return std::unique_ptr<XtsCipher>(new XtsCipher(key));
}

Result<std::unique_ptr<XtsCipher>> XtsCipher::CreateRandom() {
  STRATA_ASSIGN_OR_RETURN(Secret key, RandomBytes(kKeyBytes));
  return Create(key);
}

Result<XtsCipher::Ctx*> XtsCipher::Take(bool encrypt) {
  {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < free_.size(); i++) {
      if (free_[i]->encrypt == encrypt) {
        Ctx* c = free_[i];
        free_.erase(free_.begin() + static_cast<long>(i));
        return c;
      }
    }
  }
  auto c = std::make_unique<Ctx>();
  c->encrypt = encrypt;
  c->ctx = EVP_CIPHER_CTX_new();
  const auto* key = reinterpret_cast<const unsigned char*>(key_.bytes().data());
  if (c->ctx == nullptr || Xts() == nullptr ||
      EVP_CipherInit_ex2(c->ctx, Xts(), key, nullptr, encrypt ? 1 : 0, nullptr) != 1) {
    return Status::IOError("OpenSSL: AES-256-XTS init failed", 0);
  }
  return c.release();
}

void XtsCipher::Give(Ctx* ctx) {
  MutexLock lock(&mu_);
  if (free_.size() < kMaxIdle) {
    free_.push_back(ctx);
  } else {
    delete ctx;
  }
}

uint32_t XtsCipher::ZeroSectors(const std::byte* unit) {
  static const std::byte kZeros[kSectorBytes] = {};
  uint32_t mask = 0;
  for (uint32_t i = 0; i < kSectorsPerUnit;
       i++) {  // ciphertext: the first byte nearly always ends it
    if (std::memcmp(unit + i * kSectorBytes, kZeros, kSectorBytes) == 0) {
      mask |= 1u << i;
    }
  }
  return mask;
}

Status XtsCipher::Run(bool encrypt, uint64_t first_unit, const std::byte* in, std::byte* out,
                      size_t length) {
  STRATA_CHECK(length % kUnitBytes == 0);
  STRATA_ASSIGN_OR_RETURN(Ctx * c, Take(encrypt));
  Status s;
  for (size_t at = 0; at < length && s.ok(); at += kUnitBytes) {
    const uint32_t zero_sectors = encrypt ? 0 : ZeroSectors(in + at);
    if (zero_sectors == kAllSectors) {
      std::memset(out + at, 0, kUnitBytes);  // a hole: zeros on the media are zeros
      continue;
    }
    unsigned char tweak[16] = {};
    const uint64_t unit = first_unit + at / kUnitBytes;
    for (int i = 0; i < 8; i++) {
      tweak[i] = static_cast<unsigned char>(unit >> (8 * i));
    }
    int n = 0;
    if (EVP_CipherInit_ex2(c->ctx, nullptr, nullptr, tweak, -1, nullptr) != 1 ||
        EVP_CipherUpdate(c->ctx, reinterpret_cast<unsigned char*>(out + at), &n,
                         reinterpret_cast<const unsigned char*>(in + at),
                         static_cast<int>(kUnitBytes)) != 1 ||
        n != static_cast<int>(kUnitBytes)) {
      s = Status::IOError("OpenSSL: AES-256-XTS failed", 0);
    }
    for (uint32_t i = 0; zero_sectors != 0 && i < kSectorsPerUnit; i++) {
      if ((zero_sectors >> i) & 1) {  // a write torn over a hole: this sector is still hole
        std::memset(out + at + i * kSectorBytes, 0, kSectorBytes);
      }
    }
  }
  Give(c);
  return s;
}

Status XtsCipher::Encrypt(uint64_t first_unit, const std::byte* in, std::byte* out, size_t length) {
  return Run(true, first_unit, in, out, length);
}

Status XtsCipher::Decrypt(uint64_t first_unit, const std::byte* in, std::byte* out, size_t length) {
  return Run(false, first_unit, in, out, length);
}

}  // namespace strata::kms
