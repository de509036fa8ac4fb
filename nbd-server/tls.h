// TLS on NBD connections (GnuTLS, as qemu-nbd and nbdkit use it): the NBD spec's STARTTLS.
//
// TlsCredentials are loaded once at start (X.509 from a directory in the layout qemu and nbdkit
// read, and/or psktool's PSK file) and shared by every connection. A TlsSession is one
// connection's: blocking on the socket during the handshake phase (bounded by the socket's
// timeouts, like the plaintext handshake), then driven by the connection's event loop through
// memory: ciphertext the loop received goes into the session's inbox, and what the session
// writes collects in its outbox for the loop to send. Nothing of GnuTLS's own I/O runs on the
// loop, so a slow peer never blocks it.
#ifndef STRATA_NBD_TLS_H_
#define STRATA_NBD_TLS_H_

#include <gnutls/gnutls.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/status.h"

namespace strata::nbd {

enum class TlsMode : uint8_t {
  kOff,      // STARTTLS is refused (ERR_UNSUP)
  kOn,       // offered: plaintext clients still work
  kRequire,  // every option but STARTTLS and ABORT gets ERR_TLS_REQD until TLS is up
};

struct TlsOptions {
  TlsMode mode = TlsMode::kOff;
  // ca-cert.pem, server-cert.pem, server-key.pem (and ca-crl.pem if present).
  std::string certificates_dir;
  bool verify_peer = false;  // clients must present a certificate signed by ca-cert.pem
  std::string psk_file;      // psktool's "identity:hexkey" lines
};

class TlsSession;

// The pool's key pairs as TLS identities (Compute's key pairs; asked at each handshake, so a key
// pair made while the server runs is good for the next connection).
struct TlsKeyPairs {
  std::function<std::optional<std::vector<uint8_t>>(const std::string& name)> psk;
  std::function<std::optional<std::string>(const std::string& sha256_hex)> certificate;
  std::string ca_pem;  // the pool's key pair CA: trusted for client certificates
};

class TlsCredentials {
 public:
  // Loads and checks every file named by `options` (a clear error naming the file otherwise).
  // REQUIRES: options.mode != kOff.
  // `key_pairs` (may be null) adds the pool's key pairs: PSK identities always (TLS on means PSK
  // on), client certificates requested and matched by fingerprint.
  static Result<std::unique_ptr<TlsCredentials>> Load(const TlsOptions& options,
                                                      const TlsKeyPairs* key_pairs = nullptr);
  ~TlsCredentials();
  TlsCredentials(const TlsCredentials&) = delete;
  TlsCredentials& operator=(const TlsCredentials&) = delete;

  TlsMode mode() const { return options_.mode; }
  // A server session on `fd` (connected, blocking, with SO_RCVTIMEO/SO_SNDTIMEO set).
  Result<std::unique_ptr<TlsSession>> NewSession(int fd) const;

 private:
  TlsCredentials(const TlsOptions& options, const TlsKeyPairs* key_pairs)
      : options_(options), key_pairs_(key_pairs) {}
  TlsOptions options_;
  const TlsKeyPairs* key_pairs_;
  gnutls_certificate_credentials_t x509_ = nullptr;
  gnutls_psk_server_credentials_t psk_ = nullptr;
  gnutls_priority_t priority_ = nullptr;
  void* psk_table_ = nullptr;  // the PSK file's keys (tls.cc), the sessions' pointer
};

class TlsSession {
 public:
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Blocking phase (the NBD handshake). Errors name what failed (a bad certificate, a wrong
  // PSK, a timeout, a client that closed).
  Status Handshake();
  Status ReadFully(void* buf, size_t len);
  Status WriteFully(const void* buf, size_t len);
  // Who the peer proved to be: "psk:IDENTITY", "x509:DN", or "" (no client authentication).
  const std::string& peer() const { return peer_; }
  // The pool key pair it proved (its PSK, or a certificate with the key pair's fingerprint,
  // in date), or "".
  const std::string& key_name() const { return key_name_; }

  // Event-loop phase: from here on the session never touches the socket.
  void StartMemoryTransport();
  // Ciphertext room at the inbox's tail (never empty), then how much was received there.
  uint8_t* InboxSpace(size_t* len);
  void InboxFilled(size_t n);
  // Decrypts up to `len` bytes into `dst`: > 0 bytes, 0 at the peer's close_notify,
  // kNeedInput when the inbox holds no whole record, or kFailed (error() says why).
  static constexpr ssize_t kNeedInput = -1;
  static constexpr ssize_t kFailed = -2;
  ssize_t Decrypt(uint8_t* dst, size_t len);
  // Encrypts the bytes into the outbox, in records of up to 16 KiB: small pieces (reply
  // headers) are gathered into one record with what follows, large ones encrypted in place.
  Status Encrypt(const struct iovec* iov, size_t count);
  // Moves the ciphertext written so far into *batch (empty), to be sent while the session goes
  // on writing into its own buffer (a KeyUpdate's answer may come while a batch is on the
  // wire). False if there is none.
  bool TakeOutbox(std::vector<uint8_t>* batch);
  // Ciphertext written and not yet taken (answers to KeyUpdates, alerts, a batch being made).
  size_t outbox_bytes() const { return out_.size(); }
  // A close_notify, sent with a short blocking write (the loop is done with the socket).
  void Bye();
  const std::string& error() const { return error_; }

 private:
  friend class TlsCredentials;
  TlsSession(int fd, gnutls_session_t session) : fd_(fd), session_(session) {}
  static int PskLookup(gnutls_session_t session, const char* identity, gnutls_datum_t* key);
  static ssize_t Pull(gnutls_transport_ptr_t self, void* buf, size_t len);
  static ssize_t VecPush(gnutls_transport_ptr_t self, const giovec_t* iov, int count);
  Status Failed(const std::string& what, int rc);

  static constexpr size_t kInboxBytes = 256 << 10;  // > one TLS record (16 KiB + overhead)
  static constexpr size_t kRecordBytes = 16 << 10;  // TLS's largest plaintext record
  Status SendRecord(const uint8_t* data, size_t len);

  const int fd_;
  gnutls_session_t session_;
  bool memory_ = false;  // the event-loop phase
  std::vector<uint8_t> in_;
  size_t in_head_ = 0, in_tail_ = 0;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> staging_;  // small pieces gathered into one record
  std::string peer_;
  std::string error_;
  const void* psk_table_ = nullptr;  // the credentials' PSK keys
  const TlsKeyPairs* key_pairs_ = nullptr;
  bool psk_from_key_pair_ = false;
  std::string key_name_;
  void IdentifyPeer();
  std::string psk_identity_;  // what the client asked for (at most 128 bytes)
  bool psk_unknown_ = false;
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_TLS_H_
