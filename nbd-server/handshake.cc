// Notes on the design: nbdkit splits the protocol by phase, and so do we. Every option has its
// own function; each consumes exactly the option's bytes (the stream stays in sync after any
// error) and answers with the spec's reply. Only protocol violations that make resynchronising
// impossible (bad magic, unknown client flags, absurd lengths) end the connection.
#include "handshake.h"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "budget.h"
#include "protocol.h"
#include "util/clock.h"
#include "util/text.h"

namespace strata::nbd {

namespace {

constexpr uint32_t kMaxOptionBytes = 64 * 1024;  // beyond this the client is not an NBD client

Status ReadFully(int fd, void* buf, size_t len, std::atomic<uint64_t>* activity_ns) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = recv(fd, p, len, 0);
    if (n == 0) {
      return Status::Shutdown("client closed the connection during the handshake");
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {  // SO_RCVTIMEO expired
      return Status::IOError("client too slow: handshake timed out", ETIMEDOUT);
    }
    if (n < 0) {
      return Status::FromErrno("handshake recv", errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
    if (activity_ns != nullptr) {
      activity_ns->store(MonotonicNowNs(), std::memory_order_relaxed);
    }
  }
  return Status::OK();
}

Status WriteFully(int fd, const void* buf, size_t len) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return Status::FromErrno("handshake send", errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return Status::OK();
}

class Negotiation {
 public:
  Negotiation(int fd, Pool* pool, ExportResolver* exports, const ServerLimits& limits,
              bool shutting_down, Negotiated* out, std::atomic<uint64_t>* activity_ns,
              const TlsCredentials* tls, const ExportResolver::Peer* peer)
      : fd_(fd),
        exports_(exports),
        pool_(pool),
        limits_(limits),
        shutting_down_(shutting_down),
        out_(out),
        activity_ns_(activity_ns),
        tls_(tls),
        peer_(peer != nullptr ? *peer : ExportResolver::Peer{}) {}

  Status Run() {
    uint8_t greeting[18];
    Put64(greeting, kNbdMagic);
    Put64(greeting + 8, kOptMagic);
    Put16(greeting + 16, kFlagFixedNewstyle | kFlagNoZeroes);
    STRATA_RETURN_IF_ERROR(Write(greeting, sizeof(greeting)));
    uint8_t client[4];
    STRATA_RETURN_IF_ERROR(Read(client, 4));
    uint32_t client_flags = Get32(client);
    if ((client_flags & ~(kClientFixedNewstyle | kClientNoZeroes)) != 0) {
      return Status::InvalidArgument("client set unknown handshake flags");  // MUST disconnect
    }
    no_zeroes_ = (client_flags & kClientNoZeroes) != 0;
    for (;;) {
      bool done = false;
      STRATA_RETURN_IF_ERROR(NextOption(&done));
      if (done) {
        return Status::OK();
      }
    }
  }

 private:
  // The connection's bytes: plaintext until STARTTLS, then through the TLS session.
  Status Read(void* buf, size_t len) {
    if (activity_ns_ != nullptr) {  // the server waits on the client from here
      activity_ns_->store(MonotonicNowNs(), std::memory_order_relaxed);
    }
    if (!out_->tls) {
      return ReadFully(fd_, buf, len, activity_ns_);
    }
    STRATA_RETURN_IF_ERROR(out_->tls->ReadFully(buf, len));
    if (activity_ns_ != nullptr) {
      activity_ns_->store(MonotonicNowNs(), std::memory_order_relaxed);
    }
    return Status::OK();
  }
  Status Write(const void* buf, size_t len) {
    return out_->tls ? out_->tls->WriteFully(buf, len) : WriteFully(fd_, buf, len);
  }

  Status NextOption(bool* done) {
    uint8_t head[16];
    STRATA_RETURN_IF_ERROR(Read(head, sizeof(head)));
    if (Get64(head) != kOptMagic) {
      return Status::InvalidArgument("option without IHAVEOPT magic");
    }
    uint32_t option = Get32(head + 8);
    uint32_t length = Get32(head + 12);
    if (length > kMaxOptionBytes) {
      return Status::InvalidArgument("option data of " + std::to_string(length) + " bytes");
    }
    data_.resize(length);
    STRATA_RETURN_IF_ERROR(Read(data_.data(), length));
    if (shutting_down_ && option != kOptAbort) {
      return Reply(option, kRepErrShutdown, "server is shutting down");
    }
    if (tls_ != nullptr && tls_->mode() == TlsMode::kRequire && !out_->tls &&
        option != kOptStartTls && option != kOptAbort) {
      if (option == kOptExportName) {  // it has no error reply: the spec says disconnect
        return Status::InvalidArgument("EXPORT_NAME before STARTTLS, and TLS is required");
      }
      if (!told_tls_required_) {  // once per connection (and the log is rate-limited)
        told_tls_required_ = true;
        ServerLog().Log(LogKey::kRefused, "a plaintext client asked for option %u: TLS is required",
                        option);
      }
      return Reply(option, kRepErrTlsReqd, "TLS is required: send STARTTLS first");
    }
    switch (option) {
      case kOptExportName:
        return ExportName(done);
      case kOptAbort:
        (void)Reply(option, kRepAck, "");
        return Status::Shutdown("client aborted the handshake");
      case kOptList:
        return List();
      case kOptInfo:
      case kOptGo:
        return InfoOrGo(option, done);
      case kOptStructuredReply:
        return StructuredReply();
      case kOptListMetaContext:
      case kOptSetMetaContext:
        return MetaContext(option);
      case kOptStartTls:
        return StartTls();
      default:
        return Reply(option, kRepErrUnsup, "unsupported option");
    }
  }

  Status Reply(uint32_t option, uint32_t type, const std::string& payload) {
    std::vector<uint8_t> buf(20 + payload.size());
    Put64(buf.data(), kRepMagic);
    Put32(buf.data() + 8, option);
    Put32(buf.data() + 12, type);
    Put32(buf.data() + 16, static_cast<uint32_t>(payload.size()));
    std::memcpy(buf.data() + 20, payload.data(), payload.size());
    return Write(buf.data(), buf.size());
  }

  // STARTTLS: acknowledged in plaintext, then the TLS handshake on the same socket. What was
  // negotiated before it is forgotten (the spec: an attacker may have injected it).
  Status StartTls() {
    if (tls_ == nullptr) {
      return Reply(kOptStartTls, kRepErrUnsup, "TLS is not enabled on this server");
    }
    if (out_->tls) {
      return Reply(kOptStartTls, kRepErrInvalid, "TLS is already on");
    }
    if (!data_.empty()) {
      return Reply(kOptStartTls, kRepErrInvalid, "STARTTLS takes no data");
    }
    STRATA_RETURN_IF_ERROR(Reply(kOptStartTls, kRepAck, ""));
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<TlsSession> session, tls_->NewSession(fd_));
    STRATA_RETURN_IF_ERROR(session->Handshake());
    peer_.key_name = session->key_name();
    out_->tls = std::move(session);
    out_->structured_replies = false;
    out_->allocation_context = false;
    out_->dirty_since_snapshot.clear();
    return Status::OK();
  }

  // The export, if it exists and this peer is admitted to it (a refusal is logged).
  Result<std::shared_ptr<Volume>> Open(const std::string& name) {
    auto opened = exports_->Open(name);
    if (!opened.ok() && opened.status().code() != Status::Code::kNotFound) {
      // An export that exists and will not open (an encrypted volume whose KMS key is disabled,
      // or no KMS here): the operator needs the reason, not only the client.
      ServerLog().Log(LogKey::kRefused, "could not open %s: %s", EscapeText(name, 128).c_str(),
                      EscapeText(opened.status().message()).c_str());
    }
    STRATA_ASSIGN_OR_RETURN(std::shared_ptr<Volume> volume, std::move(opened));
    Status admitted = exports_->Admit(volume->id(), peer_);
    if (!admitted.ok()) {
      ServerLog().Log(LogKey::kRefused, "refused %s to %s: %s",
                      peer_.address.empty() ? "a unix-socket client" : peer_.address.c_str(),
                      EscapeText(name, 128).c_str(), EscapeText(admitted.message()).c_str());
      return admitted;
    }
    return volume;
  }
  // ERR_POLICY for a refused peer, ERR_UNKNOWN for a name that does not exist.
  static uint32_t OpenError(const Status& s) {
    return s.code() == Status::Code::kPermissionDenied ? kRepErrPolicy : kRepErrUnknown;
  }

  uint16_t TransmissionFlags(const Volume& volume) const {
    uint16_t f = kHasFlags | kSendFlush | kSendFua | kSendTrim | kSendWriteZeroes | kSendCache |
                 kSendFastZero | kCanMultiConn;
    if (out_->structured_replies) {
      f |= kSendDf;
    }
    if (limits_.read_only || volume.read_only()) {
      f |= kReadOnly;
    }
    return f;
  }

  void Finish(std::shared_ptr<Volume> volume, const std::string& name) {
    out_->pool = pool_;
    out_->volume = std::move(volume);
    out_->export_name = name;
    out_->read_only = limits_.read_only || out_->volume->read_only();
    out_->transmission_flags = TransmissionFlags(*out_->volume);
  }

  Status ExportName(bool* done) {
    std::string name(data_.begin(), data_.end());
    auto volume = Open(name);
    if (!volume.ok()) {  // EXPORT_NAME cannot fail politely: the spec says close
      return volume.status();
    }
    uint8_t reply[10 + 124] = {};
    Put64(reply, (*volume)->size_bytes());
    Finish(*volume, name);
    Put16(reply + 8, out_->transmission_flags);
    *done = true;
    return Write(reply, no_zeroes_ ? 10 : sizeof(reply));
  }

  Status List() {
    if (!data_.empty()) {
      return Reply(kOptList, kRepErrInvalid, "LIST takes no data");
    }
    for (const ExportResolver::Entry& e : exports_->List()) {
      if (!exports_->Admit(e.name, peer_).ok()) {
        continue;  // what this peer may not open is not listed to it
      }
      std::string payload(4, '\0');
      Put32(reinterpret_cast<uint8_t*>(payload.data()), static_cast<uint32_t>(e.name.size()));
      payload += e.name + e.description;
      STRATA_RETURN_IF_ERROR(Reply(kOptList, kRepServer, payload));
    }
    return Reply(kOptList, kRepAck, "");
  }

  // Parses name length, name, then a u16 count of u16 info requests (INFO/GO).
  bool ParseInfoRequest(std::string* name, std::vector<uint16_t>* requests) {
    if (data_.size() < 6) {
      return false;
    }
    uint32_t name_len = Get32(data_.data());
    if (name_len > data_.size() - 6) {
      return false;
    }
    name->assign(data_.begin() + 4, data_.begin() + 4 + name_len);
    uint16_t count = Get16(data_.data() + 4 + name_len);
    if (data_.size() != 6 + name_len + 2u * count) {
      return false;
    }
    for (uint16_t i = 0; i < count; i++) {
      requests->push_back(Get16(data_.data() + 6 + name_len + 2 * i));
    }
    return true;
  }

  Status InfoReply(uint32_t option, uint16_t type, const std::string& body) {
    std::string payload(2, '\0');
    Put16(reinterpret_cast<uint8_t*>(payload.data()), type);
    return Reply(option, kRepInfo, payload + body);
  }

  Status InfoOrGo(uint32_t option, bool* done) {
    std::string name;
    std::vector<uint16_t> requests;
    if (!ParseInfoRequest(&name, &requests)) {
      return Reply(option, kRepErrInvalid, "malformed INFO/GO request");
    }
    auto volume = Open(name);
    if (!volume.ok()) {
      return Reply(option, OpenError(volume.status()), volume.status().message());
    }
    std::string body(12, '\0');
    auto* b = reinterpret_cast<uint8_t*>(body.data());
    Put64(b, (*volume)->size_bytes());
    Put16(b + 8, TransmissionFlags(**volume));
    body.resize(10);
    STRATA_RETURN_IF_ERROR(InfoReply(option, kInfoExport, body));
    for (uint16_t r : requests) {
      if (r == kInfoName) {
        STRATA_RETURN_IF_ERROR(InfoReply(option, kInfoName, (*volume)->id()));
      } else if (r == kInfoDescription) {
        std::string text = "Strata volume " + (*volume)->id();
        if ((*volume)->read_only()) {
          auto snap = pool_->DescribeSnapshot((*volume)->id());
          text = "Strata snapshot " + (*volume)->id() +
                 (snap.ok() ? " of " + snap->volume_id : std::string()) + " (read-only)";
        } else if (auto info = pool_->DescribeVolume((*volume)->id());
                   info.ok() && !info->name.empty()) {
          text += " (" + info->name + ")";
        }
        STRATA_RETURN_IF_ERROR(InfoReply(option, kInfoDescription, text));
      }
    }
    std::string sizes(12, '\0');
    auto* s = reinterpret_cast<uint8_t*>(sizes.data());
    Put32(s, 1);  // any alignment works: unaligned requests are read-modify-written inside
    Put32(s + 4, std::min((*volume)->chunk_size_bytes(), limits_.max_payload_bytes));
    Put32(s + 8, limits_.max_payload_bytes);
    STRATA_RETURN_IF_ERROR(InfoReply(option, kInfoBlockSize, sizes));
    STRATA_RETURN_IF_ERROR(Reply(option, kRepAck, ""));
    if (option == kOptGo) {
      Finish(*volume, name);
      *done = true;
    }
    return Status::OK();
  }

  Status StructuredReply() {
    if (!data_.empty()) {
      return Reply(kOptStructuredReply, kRepErrInvalid, "STRUCTURED_REPLY takes no data");
    }
    out_->structured_replies = true;
    return Reply(kOptStructuredReply, kRepAck, "");
  }

  Status MetaContext(uint32_t option) {
    // u32 export name length, name, u32 query count, queries (u32 length, string).
    const uint8_t* p = data_.data();
    size_t left = data_.size();
    auto take32 = [&](uint32_t* v) {
      if (left < 4) {
        return false;
      }
      *v = Get32(p);
      p += 4;
      left -= 4;
      return true;
    };
    uint32_t name_len, count;
    if (!take32(&name_len) || name_len > left) {
      return Reply(option, kRepErrInvalid, "malformed meta context request");
    }
    std::string name(reinterpret_cast<const char*>(p), name_len);
    p += name_len;
    left -= name_len;
    std::vector<std::string> queries;
    if (!take32(&count)) {
      return Reply(option, kRepErrInvalid, "malformed meta context request");
    }
    for (uint32_t i = 0; i < count; i++) {
      uint32_t len;
      if (!take32(&len) || len > left) {
        return Reply(option, kRepErrInvalid, "malformed meta context query");
      }
      queries.emplace_back(reinterpret_cast<const char*>(p), len);
      p += len;
      left -= len;
    }
    if (left != 0) {
      return Reply(option, kRepErrInvalid, "trailing bytes in meta context request");
    }
    if (option == kOptSetMetaContext) {
      out_->allocation_context = false;  // replaced even if this request fails
      out_->dirty_since_snapshot.clear();
      if (!out_->structured_replies) {
        return Reply(option, kRepErrInvalid, "SET_META_CONTEXT needs structured replies");
      }
    }
    auto volume = Open(name);
    if (!volume.ok()) {
      return Reply(option, OpenError(volume.status()),
                   volume.status().code() == Status::Code::kPermissionDenied
                       ? volume.status().message()
                       : "no such export: " + name);
    }
    const bool list = option == kOptListMetaContext;
    bool allocation = list && queries.empty();  // no query lists everything
    std::vector<std::string> dirty;             // snapshot ids
    for (const std::string& q : queries) {
      allocation = allocation || q == "base:allocation" || (list && q == "base:");
      if (list && (q == "qemu:" || q == kDirtyBitmapPrefix)) {
        for (const SnapshotInfo& snap : pool_->ListSnapshots()) {
          dirty.push_back(snap.snapshot_id);
        }
      } else if (q.starts_with(kDirtyBitmapPrefix)) {
        dirty.push_back(q.substr(sizeof(kDirtyBitmapPrefix) - 1));
      }
    }
    if (list && queries.empty()) {
      for (const SnapshotInfo& snap : pool_->ListSnapshots()) {
        dirty.push_back(snap.snapshot_id);
      }
    }
    if (allocation) {
      STRATA_RETURN_IF_ERROR(ReplyContext(option, kMetaContextAllocation, "base:allocation"));
      if (!list) {
        out_->allocation_context = true;
      }
    }
    // A dirty bitmap exists for every snapshot this export descends from (one, when setting).
    for (const std::string& snap : dirty) {
      if (!list && !out_->dirty_since_snapshot.empty()) {
        break;
      }
      const uint64_t probe = std::min<uint64_t>((*volume)->size_bytes(), 512);
      if (!pool_->ChangedExtents(**volume, snap, 0, probe).ok()) {
        continue;
      }
      STRATA_RETURN_IF_ERROR(
          ReplyContext(option, kMetaContextDirty, std::string(kDirtyBitmapPrefix) + snap));
      if (!list) {
        out_->dirty_since_snapshot = snap;
      }
    }
    return Reply(option, kRepAck, "");
  }

  Status ReplyContext(uint32_t option, uint32_t id, const std::string& context) {
    std::string payload(4, '\0');
    Put32(reinterpret_cast<uint8_t*>(payload.data()), option == kOptSetMetaContext ? id : 0);
    return Reply(option, kRepMetaContext, payload + context);
  }

  int fd_;
  ExportResolver* exports_;
  Pool* pool_;
  const ServerLimits& limits_;
  bool shutting_down_;
  Negotiated* out_;
  std::atomic<uint64_t>* activity_ns_;
  const TlsCredentials* tls_;
  ExportResolver::Peer peer_;  // key_name is set once TLS is up
  bool told_tls_required_ = false;
  bool no_zeroes_ = false;
  std::vector<uint8_t> data_;
};

}  // namespace

Status Negotiate(int fd, Pool* pool, ExportResolver* exports, const ServerLimits& limits,
                 bool shutting_down, Negotiated* out, std::atomic<uint64_t>* activity_ns,
                 const TlsCredentials* tls, const ExportResolver::Peer* peer) {
  return Negotiation(fd, pool, exports, limits, shutting_down, out, activity_ns, tls, peer).Run();
}

}  // namespace strata::nbd
