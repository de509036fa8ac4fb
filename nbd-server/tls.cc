#include "tls.h"

#include <gnutls/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>

#include "util/check.h"

namespace strata::nbd {

namespace {

std::string GnutlsError(int rc) { return gnutls_strerror(rc); }

bool Readable(const std::string& path) { return access(path.c_str(), R_OK) == 0; }

// psktool's file: "identity:hexkey" per line. Identities are kept for the server's lookup.
Result<std::map<std::string, std::vector<uint8_t>>> ReadPskFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Status::NotFound("--tls-psk " + path + ": cannot read it");
  }
  std::map<std::string, std::vector<uint8_t>> keys;
  std::string line;
  for (int number = 1; std::getline(in, line); number++) {
    if (line.empty()) {
      continue;
    }
    const size_t colon = line.find(':');
    const std::string hex = colon == std::string::npos ? "" : line.substr(colon + 1);
    std::vector<uint8_t> key;
    for (size_t i = 0; i + 1 < hex.size() && hex.size() % 2 == 0; i += 2) {
      const int hi = std::isxdigit(static_cast<unsigned char>(hex[i]));
      const int lo = std::isxdigit(static_cast<unsigned char>(hex[i + 1]));
      if (!hi || !lo) {
        break;
      }
      key.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    if (colon == 0 || colon == std::string::npos || key.empty() || key.size() * 2 != hex.size()) {
      return Status::InvalidArgument("--tls-psk " + path + " line " + std::to_string(number) +
                                     ": not IDENTITY:HEXKEY (as psktool writes)");
    }
    keys[line.substr(0, colon)] = std::move(key);
  }
  if (keys.empty()) {
    return Status::InvalidArgument("--tls-psk " + path + ": no keys");
  }
  return keys;
}

// The PSK files' keys, by credentials object (GnuTLS's PSK callback has no user pointer: the
// session's pointer is the credentials).
struct PskTable {
  std::map<std::string, std::vector<uint8_t>> keys;
};

}  // namespace

// ---------------------------------------------------------------- credentials

TlsCredentials::~TlsCredentials() {
  if (x509_ != nullptr) {
    gnutls_certificate_free_credentials(x509_);
  }
  if (psk_ != nullptr) {
    gnutls_psk_free_server_credentials(psk_);
  }
  if (priority_ != nullptr) {
    gnutls_priority_deinit(priority_);
  }
  delete static_cast<PskTable*>(psk_table_);
}

Result<std::unique_ptr<TlsCredentials>> TlsCredentials::Load(const TlsOptions& options,
                                                             const TlsKeyPairs* key_pairs) {
  STRATA_CHECK(options.mode != TlsMode::kOff);
  if (options.certificates_dir.empty() && options.psk_file.empty()) {
    return Status::InvalidArgument("--tls needs --tls-certificates DIR or --tls-psk FILE");
  }
  if (options.verify_peer && options.certificates_dir.empty()) {
    return Status::InvalidArgument("--tls-verify-peer needs --tls-certificates (its ca-cert.pem)");
  }
  std::unique_ptr<TlsCredentials> creds(new TlsCredentials(options, key_pairs));
  if (!options.certificates_dir.empty()) {
    const std::string dir = options.certificates_dir + "/";
    for (const char* name : {"server-cert.pem", "server-key.pem"}) {
      if (!Readable(dir + name)) {
        return Status::NotFound("--tls-certificates: cannot read " + dir + name);
      }
    }
    gnutls_certificate_allocate_credentials(&creds->x509_);
    int rc =
        gnutls_certificate_set_x509_key_file(creds->x509_, (dir + "server-cert.pem").c_str(),
                                             (dir + "server-key.pem").c_str(), GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
      return Status::InvalidArgument(dir + "server-cert.pem / server-key.pem: " + GnutlsError(rc));
    }
    if (Readable(dir + "ca-cert.pem")) {
      rc = gnutls_certificate_set_x509_trust_file(creds->x509_, (dir + "ca-cert.pem").c_str(),
                                                  GNUTLS_X509_FMT_PEM);
      if (rc < 0) {
        return Status::InvalidArgument(dir + "ca-cert.pem: " + GnutlsError(rc));
      }
    } else if (options.verify_peer) {
      return Status::NotFound("--tls-verify-peer: cannot read " + dir + "ca-cert.pem");
    }
    if (key_pairs != nullptr && !key_pairs->ca_pem.empty()) {  // key pair certificates' issuer
      const gnutls_datum_t ca{
          reinterpret_cast<unsigned char*>(const_cast<char*>(key_pairs->ca_pem.data())),
          static_cast<unsigned>(key_pairs->ca_pem.size())};
      rc = gnutls_certificate_set_x509_trust_mem(creds->x509_, &ca, GNUTLS_X509_FMT_PEM);
      if (rc < 0) {
        return Status::Corruption("the pool's key pair CA: " + GnutlsError(rc));
      }
    }
    if (Readable(dir + "ca-crl.pem")) {
      rc = gnutls_certificate_set_x509_crl_file(creds->x509_, (dir + "ca-crl.pem").c_str(),
                                                GNUTLS_X509_FMT_PEM);
      if (rc < 0) {
        return Status::InvalidArgument(dir + "ca-crl.pem: " + GnutlsError(rc));
      }
    }
  }
  auto* table = new PskTable{};
  creds->psk_table_ = table;
  if (!options.psk_file.empty()) {
    STRATA_ASSIGN_OR_RETURN(table->keys, ReadPskFile(options.psk_file));
  }
  if (!options.psk_file.empty() || key_pairs != nullptr) {  // (PSK key pairs: always)
    gnutls_psk_allocate_server_credentials(&creds->psk_);
    gnutls_psk_set_server_credentials_function(creds->psk_, &TlsSession::PskLookup);
  }
  const char* priority = creds->psk_ == nullptr ? "NORMAL" : "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK";
  const int rc = gnutls_priority_init(&creds->priority_, priority, nullptr);
  if (rc < 0) {
    return Status::InvalidArgument(std::string("TLS priority ") + priority + ": " +
                                   GnutlsError(rc));
  }
  return creds;
}

Result<std::unique_ptr<TlsSession>> TlsCredentials::NewSession(int fd) const {
  gnutls_session_t s = nullptr;
  int rc = gnutls_init(&s, GNUTLS_SERVER);
  if (rc < 0) {
    return Status::IOError("TLS session: " + GnutlsError(rc), ENOMEM);
  }
  std::unique_ptr<TlsSession> session(new TlsSession(fd, s));
  gnutls_priority_set(s, priority_);
  if (x509_ != nullptr) {
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, x509_);
    if (options_.verify_peer) {
      gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
      gnutls_session_set_verify_cert(s, nullptr, 0);  // the chain to ca-cert.pem, and dates
    } else if (key_pairs_ != nullptr) {
      // A client may present a key pair's certificate: asked for, matched by fingerprint.
      gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
    }
  }
  if (psk_ != nullptr) {
    gnutls_credentials_set(s, GNUTLS_CRD_PSK, psk_);
  }
  session->psk_table_ = psk_table_;
  session->key_pairs_ = key_pairs_;
  gnutls_session_set_ptr(s, session.get());  // (for PskLookup)
  gnutls_transport_set_ptr(s, session.get());
  gnutls_transport_set_pull_function(s, &TlsSession::Pull);
  gnutls_transport_set_vec_push_function(s, &TlsSession::VecPush);
  return session;
}

// ---------------------------------------------------------------- session

int TlsSession::PskLookup(gnutls_session_t session, const char* identity, gnutls_datum_t* key) {
  auto* t = static_cast<TlsSession*>(gnutls_session_get_ptr(session));
  t->psk_identity_ = std::string(identity).substr(0, 128);
  const auto* table = static_cast<const PskTable*>(t->psk_table_);
  auto it = table->keys.find(identity);
  if (it == table->keys.end()) {
    std::optional<std::vector<uint8_t>> pair;
    if (t->key_pairs_ != nullptr && t->key_pairs_->psk) {
      pair = t->key_pairs_->psk(identity);
    }
    if (!pair.has_value() || pair->empty()) {
      t->psk_unknown_ = true;
      return -1;  // the handshake fails
    }
    t->psk_from_key_pair_ = true;
    key->data = static_cast<unsigned char*>(gnutls_malloc(pair->size()));
    if (key->data == nullptr) {
      return -1;
    }
    std::memcpy(key->data, pair->data(), pair->size());
    key->size = static_cast<unsigned int>(pair->size());
    return 0;
  }
  key->data = static_cast<unsigned char*>(gnutls_malloc(it->second.size()));
  if (key->data == nullptr) {
    return -1;
  }
  std::memcpy(key->data, it->second.data(), it->second.size());
  key->size = static_cast<unsigned int>(it->second.size());
  return 0;
}

TlsSession::~TlsSession() { gnutls_deinit(session_); }

ssize_t TlsSession::Pull(gnutls_transport_ptr_t self, void* buf, size_t len) {
  auto* t = static_cast<TlsSession*>(self);
  if (t->in_head_ == t->in_tail_) {
    if (t->memory_) {
      gnutls_transport_set_errno(t->session_, EAGAIN);
      return -1;
    }
    ssize_t n;
    do {
      n = recv(t->fd_, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      gnutls_transport_set_errno(t->session_, errno);  // EAGAIN: SO_RCVTIMEO expired
    }
    return n;
  }
  const size_t take = std::min(len, t->in_tail_ - t->in_head_);
  std::memcpy(buf, t->in_.data() + t->in_head_, take);
  t->in_head_ += take;
  return static_cast<ssize_t>(take);
}

ssize_t TlsSession::VecPush(gnutls_transport_ptr_t self, const giovec_t* iov, int count) {
  auto* t = static_cast<TlsSession*>(self);
  if (t->memory_) {
    size_t total = 0;
    for (int i = 0; i < count; i++) {
      const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
      t->out_.insert(t->out_.end(), p, p + iov[i].iov_len);
      total += iov[i].iov_len;
    }
    return static_cast<ssize_t>(total);
  }
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(reinterpret_cast<const iovec*>(iov));
  msg.msg_iovlen = static_cast<size_t>(count);
  ssize_t n;
  do {
    n = sendmsg(t->fd_, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    gnutls_transport_set_errno(t->session_, errno);
  }
  return n;
}

Status TlsSession::Failed(const std::string& what, int rc) {
  if (rc == GNUTLS_E_AGAIN) {
    return Status::IOError("client too slow: TLS " + what + " timed out", ETIMEDOUT);
  }
  if (rc == GNUTLS_E_PREMATURE_TERMINATION || rc == GNUTLS_E_PULL_ERROR ||
      rc == GNUTLS_E_PUSH_ERROR) {
    return Status::Shutdown("client closed the connection during the TLS " + what);
  }
  std::string text = "TLS " + what + " failed: " + GnutlsError(rc);
  if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || rc == GNUTLS_E_CERTIFICATE_ERROR) {
    gnutls_datum_t out{};
    const unsigned status = gnutls_session_get_verify_cert_status(session_);
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
      text += " (" + std::string(reinterpret_cast<char*>(out.data), out.size) + ")";
      gnutls_free(out.data);
    }
  }
  return Status::InvalidArgument(text);
}

Status TlsSession::Handshake() {
  int rc;
  do {
    rc = gnutls_handshake(session_);
  } while (rc == GNUTLS_E_INTERRUPTED ||
           (rc < 0 && rc != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(rc)));
  if (rc < 0) {
    Status failed = Failed("handshake", rc);
    if (!psk_identity_.empty() && failed.code() == Status::Code::kInvalidArgument) {
      // (the identity is the client's text: the caller escapes log lines)
      return Status::InvalidArgument(
          failed.message() + " (PSK identity '" + psk_identity_ + "'" +
          (psk_unknown_ ? " is not in the key file)" : ": is the client's key right?)"));
    }
    return failed;
  }
  IdentifyPeer();
  return Status::OK();
}

void TlsSession::IdentifyPeer() {
  if (gnutls_auth_get_type(session_) == GNUTLS_CRD_PSK) {
    const char* name = gnutls_psk_server_get_username(session_);
    peer_ = std::string("psk:") + (name != nullptr ? name : "");
    if (psk_from_key_pair_ && name != nullptr) {
      key_name_ = name;
    }
    return;
  }
  unsigned count = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session_, &count);
  gnutls_x509_crt_t crt;
  if (certs == nullptr || count == 0 || gnutls_x509_crt_init(&crt) != 0) {
    return;
  }
  gnutls_datum_t dn{};
  if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
    if (gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0) {
      peer_ = "x509:" + std::string(reinterpret_cast<char*>(dn.data), dn.size);
      gnutls_free(dn.data);
    }
    uint8_t digest[32];
    size_t size = sizeof(digest);
    const time_t now = time(nullptr);
    // (the handshake proved the client holds the certificate's key; its dates are checked here
    // because without --tls-verify-peer GnuTLS checks nothing)
    if (key_pairs_ != nullptr && key_pairs_->certificate &&
        gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, digest, &size) == 0 &&
        gnutls_x509_crt_get_activation_time(crt) <= now &&
        gnutls_x509_crt_get_expiration_time(crt) > now) {
      static const char kDigits[] = "0123456789abcdef";
      std::string hex;
      for (size_t i = 0; i < size; i++) {
        hex += kDigits[digest[i] >> 4];
        hex += kDigits[digest[i] & 15];
      }
      key_name_ = key_pairs_->certificate(hex).value_or("");
    }
  }
  gnutls_x509_crt_deinit(crt);
}

Status TlsSession::ReadFully(void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = gnutls_record_recv(session_, p, len);
    if (n == GNUTLS_E_INTERRUPTED) {
      continue;
    }
    if (n == 0) {
      return Status::Shutdown("client closed the TLS connection during the handshake");
    }
    if (n < 0) {
      return Failed("read", static_cast<int>(n));
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return Status::OK();
}

Status TlsSession::WriteFully(const void* buf, size_t len) {
  return SendRecord(static_cast<const uint8_t*>(buf), len);  // (blocking in this phase)
}

void TlsSession::StartMemoryTransport() {
  memory_ = true;
  in_.resize(kInboxBytes);
  staging_.reserve(kRecordBytes);
}

uint8_t* TlsSession::InboxSpace(size_t* len) {
  STRATA_CHECK(memory_);
  if (in_head_ == in_tail_) {
    in_head_ = in_tail_ = 0;
  } else if (in_.size() - in_tail_ < kRecordBytes + 1024) {  // room for a whole record
    std::memmove(in_.data(), in_.data() + in_head_, in_tail_ - in_head_);
    in_tail_ -= in_head_;
    in_head_ = 0;
  }
  *len = in_.size() - in_tail_;
  STRATA_CHECK(*len > 0);
  return in_.data() + in_tail_;
}

void TlsSession::InboxFilled(size_t n) {
  STRATA_CHECK(n <= in_.size() - in_tail_);
  in_tail_ += n;
}

ssize_t TlsSession::Decrypt(uint8_t* dst, size_t len) {
  STRATA_CHECK(memory_ && len > 0);
  for (;;) {
    const ssize_t n = gnutls_record_recv(session_, dst, len);
    if (n >= 0) {
      return n;
    }
    if (n == GNUTLS_E_AGAIN) {
      return kNeedInput;
    }
    if (n != GNUTLS_E_INTERRUPTED) {
      error_ = Failed("read", static_cast<int>(n)).message();
      return kFailed;
    }
  }
}

Status TlsSession::SendRecord(const uint8_t* data, size_t len) {
  while (len > 0) {
    const ssize_t n = gnutls_record_send(session_, data, len);
    if (n == GNUTLS_E_INTERRUPTED) {
      continue;
    }
    if (n < 0) {
      return Failed("write", static_cast<int>(n));
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return Status::OK();
}

Status TlsSession::Encrypt(const iovec* iov, size_t count) {
  STRATA_CHECK(memory_);
  for (size_t i = 0; i < count; i++) {
    const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
    size_t left = iov[i].iov_len;
    while (left > 0) {
      if (staging_.empty() && left >= kRecordBytes) {  // whole records straight from the source
        const size_t whole = left - left % kRecordBytes;
        STRATA_RETURN_IF_ERROR(SendRecord(p, whole));
        p += whole;
        left -= whole;
        continue;
      }
      const size_t take = std::min(left, kRecordBytes - staging_.size());
      staging_.insert(staging_.end(), p, p + take);
      p += take;
      left -= take;
      if (staging_.size() == kRecordBytes) {
        STRATA_RETURN_IF_ERROR(SendRecord(staging_.data(), staging_.size()));
        staging_.clear();
      }
    }
  }
  if (!staging_.empty()) {
    STRATA_RETURN_IF_ERROR(SendRecord(staging_.data(), staging_.size()));
    staging_.clear();
  }
  return Status::OK();
}

bool TlsSession::TakeOutbox(std::vector<uint8_t>* batch) {
  STRATA_CHECK(memory_ && batch->empty());
  if (out_.empty()) {
    return false;
  }
  std::swap(out_, *batch);
  return true;
}

void TlsSession::Bye() {
  memory_ = false;
  timeval timeout{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  (void)gnutls_bye(session_, GNUTLS_SHUT_WR);
}

}  // namespace strata::nbd
