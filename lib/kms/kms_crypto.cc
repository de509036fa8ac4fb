#include "kms/kms_crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <memory>

namespace strata::kms {

Secret& Secret::operator=(const Secret& other) {
  if (this != &other) {
    Wipe();
    bytes_ = other.bytes_;
  }
  return *this;
}

Secret::Secret(Secret&& other) noexcept : bytes_(other.bytes_) { other.Wipe(); }

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = other.bytes_;
    other.Wipe();
  }
  return *this;
}

void Secret::Wipe() {
  if (!bytes_.empty()) {
    OPENSSL_cleanse(bytes_.data(), bytes_.size());
    bytes_.clear();
  }
}

namespace {

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)>;

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* U(std::string* s) { return reinterpret_cast<unsigned char*>(s->data()); }

Status CryptoError(const char* what) {
  return Status::IOError(std::string("OpenSSL: ") + what + " failed", 0);
}

}  // namespace

Result<Secret> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(U(&out), static_cast<int>(n)) != 1) {
    return CryptoError("RAND_bytes");
  }
  return Secret(std::move(out));
}

Result<Secret> Hkdf(const Secret& key, std::string_view salt, std::string_view info, size_t n) {
  if (n == 0 || n > 255 * 32 || key.empty()) {
    return Status::InvalidArgument("HKDF: bad key or output length");
  }
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr), &EVP_PKEY_CTX_free);
  std::string out(n, '\0');
  size_t len = n;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), U(salt), static_cast<int>(salt.size())) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), U(key.bytes()), static_cast<int>(key.size())) != 1 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), U(info), static_cast<int>(info.size())) != 1 ||
      EVP_PKEY_derive(ctx.get(), U(&out), &len) != 1 || len != n) {
    OPENSSL_cleanse(out.data(), out.size());
    return CryptoError("HKDF");
  }
  return Secret(std::move(out));
}

Result<std::string> Hmac(const Secret& key, std::string_view data) {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.bytes().data(), static_cast<int>(key.size()), U(data), data.size(),
           U(&out), &len) == nullptr) {
    return CryptoError("HMAC");
  }
  out.resize(len);
  return out;
}

Result<std::string> Seal(const Secret& key, std::string_view aad, std::string_view plaintext) {
  if (key.size() != kAeadKeyBytes || plaintext.size() > (size_t{1} << 30)) {
    return Status::InvalidArgument("seal: bad key or plaintext length");
  }
  STRATA_ASSIGN_OR_RETURN(Secret nonce, RandomBytes(kAeadNonceBytes));
  std::string out(kAeadOverhead + plaintext.size(), '\0');
  out.replace(0, kAeadNonceBytes, nonce.bytes());
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  unsigned char* ct = U(&out) + kAeadOverhead;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key.bytes()), U(nonce.bytes())) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, U(plaintext), static_cast<int>(plaintext.size())) !=
          1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kAeadTagBytes,
                          U(&out) + kAeadNonceBytes) != 1) {
    return CryptoError("AES-256-GCM seal");
  }
  return out;
}

Result<Secret> Open(const Secret& key, std::string_view aad, std::string_view sealed) {
  if (key.size() != kAeadKeyBytes) {
    return Status::InvalidArgument("open: bad key length");
  }
  if (sealed.size() < kAeadOverhead || sealed.size() > (size_t{1} << 30) + kAeadOverhead) {
    return Status::Corruption("sealed bytes of an impossible length");
  }
  const size_t n = sealed.size() - kAeadOverhead;
  std::string out(n, '\0');
  std::string tag(sealed.substr(kAeadNonceBytes, kAeadTagBytes));
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  bool ok =
      ctx &&
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key.bytes()), U(sealed)) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx.get(), U(&out), &len, U(sealed) + kAeadOverhead, static_cast<int>(n)) ==
          1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAeadTagBytes, U(&tag)) == 1;
  int final_len = 0;
  ok = ok && EVP_DecryptFinal_ex(ctx.get(), U(&out) + len, &final_len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return Status::Corruption("authentication failed: wrong key, or altered bytes");
  }
  return Secret(std::move(out));
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(U(&out), U(bytes), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0 || text.size() > (size_t{1} << 30)) {
    return Status::InvalidArgument("not base64 (its length is not a multiple of 4)");
  }
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(U(&out), U(text), static_cast<int>(text.size()));
  if (n < 0) {
    return Status::InvalidArgument("not base64");
  }
  size_t pad = 0;
  for (size_t i = text.size(); i > 0 && pad < 2 && text[i - 1] == '='; i--) {
    pad++;
  }
  out.resize(static_cast<size_t>(n) - pad);  // EVP_DecodeBlock counts the padding as zeros
  return out;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<std::string> NewUuid() {
  STRATA_ASSIGN_OR_RETURN(Secret r, RandomBytes(16));
  std::string hex;
  static const char* digits = "0123456789abcdef";
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      hex += '-';
    }
    const auto b = static_cast<unsigned char>(r.bytes()[i]);
    hex += digits[b >> 4];
    hex += digits[b & 15];
  }
  return hex;
}

}  // namespace strata::kms
