// Key pairs as TLS identities (docs/security.md "Key pairs"): client certificates signed by the
// pool's own CA (GnuTLS's X.509 API), imported certificates, and pre-shared keys.
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>

#include "compute/compute_impl.h"
#include "util/atomic_file.h"
#include "util/json_text.h"
#include "util/text.h"

namespace strata {

using json = nlohmann::json;

namespace {

constexpr int64_t kCertificateDays = 3650;

struct Crt {
  gnutls_x509_crt_t p = nullptr;
  Crt() { gnutls_x509_crt_init(&p); }
  ~Crt() { gnutls_x509_crt_deinit(p); }
};
struct Key {
  gnutls_x509_privkey_t p = nullptr;
  Key() { gnutls_x509_privkey_init(&p); }
  ~Key() { gnutls_x509_privkey_deinit(p); }
};

Status Check(int rc, const char* what) {
  return rc < 0 ? Status::IOError(std::string(what) + ": " + gnutls_strerror(rc), EIO)
                : Status::OK();
}

std::string Hex(const uint8_t* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; i++) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

Result<std::string> Export(gnutls_x509_crt_t crt) {
  gnutls_datum_t out{};
  STRATA_RETURN_IF_ERROR(Check(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &out), "export"));
  std::string pem(reinterpret_cast<char*>(out.data), out.size);
  gnutls_free(out.data);
  return pem;
}

Result<std::string> Export(gnutls_x509_privkey_t key) {
  gnutls_datum_t out{};
  STRATA_RETURN_IF_ERROR(
      Check(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &out), "export key"));
  std::string pem(reinterpret_cast<char*>(out.data), out.size);
  gnutls_free(out.data);
  return pem;
}

// A certificate for `key` named `cn`: a CA (signs itself) or a TLS client signed by the CA.
Status MakeCertificate(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, const std::string& cn,
                       gnutls_x509_crt_t ca, gnutls_x509_privkey_t ca_key) {
  uint8_t serial[16];
  STRATA_RETURN_IF_ERROR(Check(gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial)), "serial"));
  serial[0] &= 0x7f;  // a positive number
  const time_t now = time(nullptr);
  STRATA_RETURN_IF_ERROR(Check(gnutls_x509_crt_set_version(crt, 3), "version"));
  STRATA_RETURN_IF_ERROR(Check(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), "serial"));
  STRATA_RETURN_IF_ERROR(Check(gnutls_x509_crt_set_activation_time(crt, now - 3600), "dates"));
  STRATA_RETURN_IF_ERROR(
      Check(gnutls_x509_crt_set_expiration_time(crt, now + kCertificateDays * 86400), "dates"));
  STRATA_RETURN_IF_ERROR(Check(
      gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn.data(), cn.size()),
      "name"));
  STRATA_RETURN_IF_ERROR(Check(gnutls_x509_crt_set_key(crt, key), "key"));
  const bool is_ca = ca == nullptr;
  STRATA_RETURN_IF_ERROR(
      Check(gnutls_x509_crt_set_basic_constraints(crt, is_ca ? 1 : 0, -1), "constraints"));
  STRATA_RETURN_IF_ERROR(Check(
      gnutls_x509_crt_set_key_usage(crt, is_ca ? GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN
                                               : GNUTLS_KEY_DIGITAL_SIGNATURE),
      "usage"));
  if (!is_ca) {
    STRATA_RETURN_IF_ERROR(
        Check(gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0), "purpose"));
  }
  return Check(
      gnutls_x509_crt_sign2(crt, is_ca ? crt : ca, is_ca ? key : ca_key, GNUTLS_DIG_SHA256, 0),
      "sign");
}

Status GenerateKey(gnutls_x509_privkey_t key) {
  return Check(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                            GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
               "key generation");
}

Result<std::string> ReadText(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Status::FromErrno("read " + path, errno);
  }
  std::string text;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) {
    text.append(buf, n);
  }
  std::fclose(f);
  return text;
}

Status Import(gnutls_x509_crt_t crt, const std::string& pem) {
  const gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(pem.data())),
                         static_cast<unsigned>(pem.size())};
  return Check(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), "certificate");
}

Result<std::string> Fingerprint(gnutls_x509_crt_t crt) {
  uint8_t digest[32];
  size_t size = sizeof(digest);
  STRATA_RETURN_IF_ERROR(
      Check(gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, digest, &size), "fingerprint"));
  return Hex(digest, size);
}

}  // namespace

Status ComputeImpl::LoadKeyPairLocked(const std::string& id, const std::string& text) {
  STRATA_ASSIGN_OR_RETURN(StoredKeyPair k, KeyPairCodec().Decode(id, text));
  key_pairs_[k.info.key_name] = std::move(k);
  return Status::OK();
}

Result<std::pair<std::string, std::string>> ComputeImpl::CaLocked() {
  const std::string dir = pool_->Info().path + "/keypair-ca";
  if (!std::filesystem::exists(dir + "/ca-cert.pem")) {
    Key key;
    Crt crt;
    STRATA_RETURN_IF_ERROR(GenerateKey(key.p));
    STRATA_RETURN_IF_ERROR(
        MakeCertificate(crt.p, key.p, "Strata pool key pair CA", nullptr, nullptr));
    STRATA_ASSIGN_OR_RETURN(std::string key_pem, Export(key.p));
    STRATA_ASSIGN_OR_RETURN(std::string crt_pem, Export(crt.p));
    std::filesystem::create_directories(dir);
    chmod(dir.c_str(), 0700);
    STRATA_RETURN_IF_ERROR(WriteFileAtomically(dir, dir + "/ca-key.pem", key_pem));
    STRATA_RETURN_IF_ERROR(WriteFileAtomically(dir, dir + "/ca-cert.pem", crt_pem));
  }
  STRATA_ASSIGN_OR_RETURN(std::string crt_pem, ReadText(dir + "/ca-cert.pem"));
  STRATA_ASSIGN_OR_RETURN(std::string key_pem, ReadText(dir + "/ca-key.pem"));
  return std::make_pair(crt_pem, key_pem);
}

Result<std::string> ComputeImpl::KeyPairCaCertificate() {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(auto ca, CaLocked());
  return ca.first;
}

// An x509 key pair's certificate and key (the key returned, never stored).
Result<std::pair<std::string, std::string>> ComputeImpl::IssueLocked(const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(auto ca_pem, CaLocked());
  Crt ca;
  Key ca_key;
  STRATA_RETURN_IF_ERROR(Import(ca.p, ca_pem.first));
  const gnutls_datum_t d{reinterpret_cast<unsigned char*>(ca_pem.second.data()),
                         static_cast<unsigned>(ca_pem.second.size())};
  STRATA_RETURN_IF_ERROR(
      Check(gnutls_x509_privkey_import(ca_key.p, &d, GNUTLS_X509_FMT_PEM), "CA key"));
  Key key;
  Crt crt;
  STRATA_RETURN_IF_ERROR(GenerateKey(key.p));
  STRATA_RETURN_IF_ERROR(MakeCertificate(crt.p, key.p, name, ca.p, ca_key.p));
  STRATA_ASSIGN_OR_RETURN(std::string crt_pem, Export(crt.p));
  STRATA_ASSIGN_OR_RETURN(std::string key_pem, Export(key.p));
  return std::make_pair(crt_pem, key_pem);
}

Status ComputeImpl::StoreKeyPairLocked(KeyPairInfo info, const std::string& material) {
  do {
    info.key_pair_id = NewResourceId("key");
  } while (std::any_of(key_pairs_.begin(), key_pairs_.end(), [&](const auto& k) {
    return k.second.info.key_pair_id == info.key_pair_id;
  }));
  info.create_time_ms = WallClockMs();
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(
      {{kSecurityTable, info.key_pair_id, KeyPairCodec().Encode({info, material})}}));
  key_pairs_[info.key_name] = StoredKeyPair{info, material};
  return Status::OK();
}

Status ComputeImpl::CheckNewKeyNameLocked(const std::string& name) {
  if (name.empty() || name.size() > 255) {
    return Status::InvalidArgument("a key name is 1 to 255 characters");
  }
  STRATA_RETURN_IF_ERROR(ValidateText("key name", name, 255));
  if (name.find(':') != std::string::npos) {
    return Status::InvalidArgument("a key name has no ':' (it is a PSK identity)");
  }
  if (key_pairs_.count(name) != 0) {
    return Status::AlreadyExists("key pair '" + name + "' exists");
  }
  return Status::OK();
}

Result<std::pair<KeyPairInfo, std::string>> ComputeImpl::CreateKeyPair(const std::string& name,
                                                                       const std::string& type) {
  MutexLock lock(&mu_);
  STRATA_RETURN_IF_ERROR(CheckNewKeyNameLocked(name));
  KeyPairInfo info;
  info.key_name = name;
  info.key_type = type.empty() ? "x509" : type;
  if (info.key_type == "psk") {
    uint8_t key[32];
    STRATA_RETURN_IF_ERROR(Check(gnutls_rnd(GNUTLS_RND_KEY, key, sizeof(key)), "random key"));
    uint8_t digest[32];
    STRATA_RETURN_IF_ERROR(
        Check(gnutls_hash_fast(GNUTLS_DIG_SHA256, key, sizeof(key), digest), "fingerprint"));
    info.fingerprint = Hex(digest, sizeof(digest));
    const std::string hex = Hex(key, sizeof(key));
    STRATA_RETURN_IF_ERROR(StoreKeyPairLocked(info, hex));
    return std::make_pair(key_pairs_[name].info, name + ":" + hex + "\n");
  }
  if (info.key_type != "x509") {
    return Status::InvalidArgument("--key-type is x509 (a client certificate) or psk");
  }
  STRATA_ASSIGN_OR_RETURN(auto issued, IssueLocked(name));
  Crt crt;
  STRATA_RETURN_IF_ERROR(Import(crt.p, issued.first));
  STRATA_ASSIGN_OR_RETURN(info.fingerprint, Fingerprint(crt.p));
  STRATA_RETURN_IF_ERROR(StoreKeyPairLocked(info, issued.first));
  return std::make_pair(key_pairs_[name].info, issued.first + issued.second);
}

Result<KeyPairInfo> ComputeImpl::ImportKeyPair(const std::string& name,
                                               const std::string& certificate_pem) {
  MutexLock lock(&mu_);
  STRATA_RETURN_IF_ERROR(CheckNewKeyNameLocked(name));
  Crt crt;
  if (certificate_pem.size() > 64 * 1024 || !Import(crt.p, certificate_pem).ok()) {
    return Status::InvalidArgument("the key material is not an X.509 certificate in PEM");
  }
  KeyPairInfo info;
  info.key_name = name;
  info.key_type = "x509";
  STRATA_ASSIGN_OR_RETURN(info.fingerprint, Fingerprint(crt.p));
  STRATA_ASSIGN_OR_RETURN(std::string pem, Export(crt.p));  // only the certificate is kept
  STRATA_RETURN_IF_ERROR(StoreKeyPairLocked(info, pem));
  return key_pairs_[name].info;
}

std::vector<KeyPairInfo> ComputeImpl::ListKeyPairs() {
  MutexLock lock(&mu_);
  std::vector<KeyPairInfo> out;
  for (const auto& [name, k] : key_pairs_) {
    out.push_back(k.info);
    out.back().tags = TagsOfLocked(k.info.key_pair_id);
  }
  return out;
}

Status ComputeImpl::DeleteKeyPair(const std::string& name) {
  MutexLock lock(&mu_);
  auto it = key_pairs_.find(name);
  if (it == key_pairs_.end()) {
    return Status::NotFound("key pair '" + name + "' does not exist");
  }
  STRATA_RETURN_IF_ERROR(
      pool_->CommitRecords({{kSecurityTable, it->second.info.key_pair_id, std::nullopt}}));
  key_pairs_.erase(it);
  return Status::OK();
}

std::optional<std::vector<uint8_t>> ComputeImpl::KeyPairPsk(const std::string& name) {
  MutexLock lock(&mu_);
  auto it = key_pairs_.find(name);
  if (it == key_pairs_.end() || it->second.info.key_type != "psk") {
    return std::nullopt;
  }
  std::vector<uint8_t> key;
  const std::string& hex = it->second.material;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    key.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return key;
}

std::optional<std::string> ComputeImpl::KeyPairOfCertificate(const std::string& fingerprint) {
  MutexLock lock(&mu_);
  for (const auto& [name, k] : key_pairs_) {
    if (k.info.key_type == "x509" && k.info.fingerprint == fingerprint) {
      return name;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- access keys

namespace {

// `n` characters of `alphabet`, from the key-grade generator (rejection sampling: unbiased).
Result<std::string> RandomText(size_t n, std::string_view alphabet) {
  std::string out;
  while (out.size() < n) {
    uint8_t bytes[64];
    STRATA_RETURN_IF_ERROR(Check(gnutls_rnd(GNUTLS_RND_KEY, bytes, sizeof(bytes)), "random"));
    const unsigned limit = 256 - 256 % alphabet.size();
    for (uint8_t b : bytes) {
      if (b < limit && out.size() < n) {
        out += alphabet[b % alphabet.size()];
      }
    }
  }
  return out;
}

}  // namespace

Result<std::pair<AccessKeyInfo, std::string>> ComputeImpl::CreateAccessKey() {
  MutexLock lock(&mu_);
  constexpr size_t kMaxAccessKeys = 64;
  if (access_keys_.size() >= kMaxAccessKeys) {
    return Status::InvalidArgument("LimitExceeded: a pool holds at most 64 access keys");
  }
  StoredAccessKey key;
  do {
    STRATA_ASSIGN_OR_RETURN(std::string tail, RandomText(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
    key.info.access_key_id = "AKIA" + tail;
  } while (access_keys_.count(key.info.access_key_id) != 0);
  STRATA_ASSIGN_OR_RETURN(
      key.secret,
      RandomText(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"));
  key.info.create_time_ms = WallClockMs();
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(
      {{kSecurityTable, key.info.access_key_id, AccessKeyCodec().Encode(key)}}));
  access_keys_[key.info.access_key_id] = key;
  return std::make_pair(key.info, key.secret);
}

std::vector<AccessKeyInfo> ComputeImpl::ListAccessKeys() {
  MutexLock lock(&mu_);
  std::vector<AccessKeyInfo> out;
  for (const auto& [id, key] : access_keys_) {
    out.push_back(key.info);
  }
  return out;
}

Status ComputeImpl::DeleteAccessKey(const std::string& access_key_id) {
  MutexLock lock(&mu_);
  if (access_keys_.count(access_key_id) == 0) {
    return Status::NotFound("NoSuchEntity: access key " + access_key_id + " does not exist");
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({{kSecurityTable, access_key_id, std::nullopt}}));
  access_keys_.erase(access_key_id);
  return Status::OK();
}

std::optional<std::string> ComputeImpl::AccessKeySecret(const std::string& access_key_id) {
  MutexLock lock(&mu_);
  auto it = access_keys_.find(access_key_id);
  return it == access_keys_.end() ? std::nullopt : std::optional(it->second.secret);
}

}  // namespace strata
