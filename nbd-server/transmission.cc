#include "transmission.h"

#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "util/check.h"
#include "util/clock.h"
#include "util/text.h"

namespace strata::nbd {

namespace {

uint32_t NbdError(const Status& s, uint16_t type) {
  switch (s.code()) {
    case Status::Code::kOutOfRange:
      return (type == kCmdWrite || type == kCmdWriteZeroes) ? kENOSPC : kEINVAL;
    case Status::Code::kNoSpace:
      return kENOSPC;
    case Status::Code::kReadOnly:
      return kEPERM;
    case Status::Code::kInvalidArgument:
      return kEINVAL;
    case Status::Code::kShutdown:
      return kESHUTDOWN;
    case Status::Code::kNotSupported:
      return kENOTSUP;
    default:
      return kEIO;
  }
}

void ChunkHeader(uint8_t* p, uint16_t flags, uint16_t type, uint64_t cookie, uint32_t length) {
  Put32(p, kStructuredReplyMagic);
  Put16(p + 4, flags);
  Put16(p + 6, type);
  Put64(p + 8, cookie);
  Put32(p + 16, length);
}

}  // namespace

Connection::Connection(int fd, Negotiated negotiated, EventLoop* loop, const ServerLimits& limits,
                       Budgets budgets, const std::atomic<bool>* shutting_down)
    : fd_(fd),
      n_(std::move(negotiated)),
      loop_(loop),
      limits_(limits),
      budgets_(budgets),
      shutting_down_(shutting_down),
      tls_(n_.tls.get()) {
  STRATA_CHECK(budgets_.in_flight != nullptr && budgets_.retained != nullptr);
  // Every request must fit an empty connection's budget, or it would wait forever.
  STRATA_CHECK(ChargeFor(kCmdWrite, limits_.max_payload_bytes) <=
                   limits_.max_connection_buffer_bytes &&
               ChargeFor(kCmdBlockStatus, 0) <= limits_.max_connection_buffer_bytes &&
               limits_.max_connection_buffer_bytes <= budgets_.in_flight->limit());
  for (uint32_t i = 0; i < limits_.max_requests_in_flight; i++) {
    auto s = std::make_unique<Slot>();
    s->conn = this;
    s->request.user = s.get();
    s->request.callback = &Connection::OnVolumeDone;
    slots_.push_back(std::move(s));
  }
}

Connection::~Connection() {
  for (auto& s : slots_) {
    STRATA_CHECK(!s->busy || s->charged == 0);
    std::free(s->buffer);
  }
  for (uint8_t* b : small_buffers_) {
    std::free(b);
  }
  budgets_.retained->Give(small_buffers_.size() * kSmallBufferBytes);
  for (const auto& [b, capacity] : large_buffers_) {
    std::free(b);
    budgets_.retained->Give(capacity);
  }
  STRATA_CHECK(charged_ == 0);  // every admitted request was released
  *alive_ = false;              // timers still queued on the loop find the connection gone
}

void Connection::After(uint64_t delay_ns, std::function<void()> fn) {
  loop_->RunAfter(delay_ns, [alive = alive_, fn = std::move(fn)] {
    if (*alive) {
      fn();
    }
  });
}

void Connection::Serve() {
  rbuf_.resize(kReceiveBufferBytes);
  if (tls_ != nullptr) {
    tls_->StartMemoryTransport();
  }
  Receive();
  After(kWatchdogNs, [this] { Watchdog(); });
  loop_->RunUntil([this] { return Finished(); });
  if (tls_ != nullptr && !peer_gone_ && !timed_out_) {
    tls_->Bye();
  }
}

// Ends a connection whose client has stopped taking part: a reply unread or a WRITE payload
// unfinished for io_timeout_ms. Runs every second until the connection finishes.
void Connection::Watchdog() {
  if (Finished() || timed_out_) {
    return;
  }
  const uint64_t now = MonotonicNowNs();
  const uint64_t limit = uint64_t{limits_.io_timeout_ms} * 1'000'000;
  if (sending_ && now - send_progress_ns_ > limit) {
    ServerLog().Log(LogKey::kTimeout, "disconnecting a client of %s: it read no reply for %u ms",
                    EscapeText(n_.export_name, 128).c_str(), limits_.io_timeout_ms);
    timed_out_ = true;
    shutdown(fd_, SHUT_RDWR);  // the send in flight fails; every reply still queued is dropped
    return;
  }
  if (recv_slot_ != nullptr && now - recv_progress_ns_ > limit) {
    ServerLog().Log(LogKey::kTimeout,
                    "ending reads from a client of %s: a WRITE payload stalled for %u ms",
                    EscapeText(n_.export_name, 128).c_str(), limits_.io_timeout_ms);
    shutdown(fd_, SHUT_RD);  // replies already due still go out
  }
  After(kWatchdogNs, [this] { Watchdog(); });
}

bool Connection::Finished() const {
  return stopped_ && !receiving_ && outstanding_ == 0 && !sending_ && send_queue_.empty();
}

// ---------------------------------------------------------------- receiving

uint8_t* Connection::NextDestination(size_t* len) {
  if (recv_slot_ != nullptr && recv_slot_->length - payload_got_ >= kDirectPayloadBytes) {
    payload_direct_ = true;  // the rest of a large payload goes straight into its slot
    *len = recv_slot_->length - payload_got_;
    return recv_slot_->buffer + kHeaderRoom + payload_got_;
  }
  payload_direct_ = false;
  if (rhead_ == rtail_) {
    rhead_ = rtail_ = 0;
  } else if (rbuf_.size() - rtail_ < kDirectPayloadBytes) {  // compact what is left
    std::memmove(rbuf_.data(), rbuf_.data() + rhead_, rtail_ - rhead_);
    rtail_ -= rhead_;
    rhead_ = 0;
  }
  *len = rbuf_.size() - rtail_;
  STRATA_CHECK(*len > 0);  // a zero-length recv would read as EOF
  return rbuf_.data() + rtail_;
}

void Connection::Receive() {
  if (tls_ != nullptr) {
    ReceiveTls();
    return;
  }
  if (stopped_ || receiving_ || paused_) {
    return;
  }
  recv_op_ = IoOp{};
  recv_op_.kind = IoOp::Kind::kRecv;
  recv_op_.file = fd_;
  recv_op_.done = &Connection::OnRecv;
  recv_op_.ctx = this;
  size_t len = 0;
  recv_op_.buf = NextDestination(&len);
  recv_op_.length_bytes = static_cast<uint32_t>(len);
  receiving_ = true;
  loop_->engine()->Submit(&recv_op_);
}

void Connection::OnRecv(IoOp* op) {
  auto* c = static_cast<Connection*>(op->ctx);
  c->receiving_ = false;
  if (op->result <= 0) {  // the client closed (or vanished mid-request): answer what we have
    c->StopReceiving();
    return;
  }
  c->recv_progress_ns_ = MonotonicNowNs();
  if (c->tls_ != nullptr) {
    c->tls_->InboxFilled(static_cast<size_t>(op->result));
    c->ReceiveTls();
    return;
  }
  c->Took(static_cast<size_t>(op->result));
  c->ProcessBuffered();
}

void Connection::Took(size_t n) {
  if (payload_direct_) {
    payload_direct_ = false;
    payload_got_ += n;
    if (payload_got_ == recv_slot_->length) {
      Slot* s = recv_slot_;
      recv_slot_ = nullptr;
      Dispatch(s);
    }
  } else {
    rtail_ += n;
  }
}

void Connection::ReceiveTls() {
  if (in_receive_tls_) {  // called back from ProcessBuffered: the loop below goes on
    receive_tls_again_ = true;
    return;
  }
  in_receive_tls_ = true;
  do {
    receive_tls_again_ = false;
    if (stopped_ || receiving_ || paused_) {
      break;
    }
    if (tls_->outbox_bytes() > kTlsBatchBytes) {
      // Records the client sent made this much to answer (KeyUpdates) while it reads none:
      // nothing more is decrypted until a send drains it (the watchdog ends a client that never
      // reads), so no client can grow the outbox without bound.
      tls_receive_held_ = true;
      break;
    }
    size_t len = 0;
    uint8_t* dst = NextDestination(&len);
    const ssize_t n = tls_->Decrypt(dst, len);
    if (n > 0) {
      Took(static_cast<size_t>(n));
      ProcessBuffered();
      receive_tls_again_ = true;
    } else if (n == TlsSession::kNeedInput) {
      payload_direct_ = false;
      recv_op_ = IoOp{};
      recv_op_.kind = IoOp::Kind::kRecv;
      recv_op_.file = fd_;
      recv_op_.done = &Connection::OnRecv;
      recv_op_.ctx = this;
      recv_op_.buf = tls_->InboxSpace(&len);
      recv_op_.length_bytes = static_cast<uint32_t>(std::min<size_t>(len, UINT32_MAX));
      receiving_ = true;
      loop_->engine()->Submit(&recv_op_);
    } else {  // close_notify, or a broken record: nothing more can be read
      if (n == TlsSession::kFailed) {
        ServerLog().Log(LogKey::kConnection, "a TLS client of %s: %s",
                        EscapeText(n_.export_name, 128).c_str(), EscapeText(tls_->error()).c_str());
      }
      payload_direct_ = false;
      StopReceiving();
    }
  } while (receive_tls_again_);
  in_receive_tls_ = false;
  SendNext();  // (a KeyUpdate's answer, if the client asked for one)
}

// Moves buffered payload bytes into the pending WRITE's slot. True when the payload is whole.
bool Connection::TakePayloadFromBuffer() {
  size_t take = std::min(rtail_ - rhead_, recv_slot_->length - payload_got_);
  std::memcpy(recv_slot_->buffer + kHeaderRoom + payload_got_, rbuf_.data() + rhead_, take);
  rhead_ += take;
  payload_got_ += take;
  if (payload_got_ < recv_slot_->length) {
    return false;
  }
  Slot* s = recv_slot_;
  recv_slot_ = nullptr;
  Dispatch(s);
  return true;
}

// Handles every complete request in the buffer, then asks for more bytes.
void Connection::ProcessBuffered() {
  while (!stopped_ && !paused_) {
    if (recv_slot_ != nullptr) {
      if (!TakePayloadFromBuffer()) {
        break;  // the rest of the payload is still on the wire
      }
      continue;
    }
    if (rtail_ - rhead_ < kRequestHeaderBytes) {
      break;
    }
    HandleHeader(rbuf_.data() + rhead_);
  }
  Receive();
}

void Connection::StopReceiving() {
  stopped_ = true;
  if (recv_slot_ != nullptr) {  // the payload never arrived: nothing to answer
    Slot* s = recv_slot_;
    recv_slot_ = nullptr;
    Release(s);
  }
}

Connection::Slot* Connection::TakeSlot() {
  for (auto& s : slots_) {
    if (!s->busy) {
      s->busy = true;
      return s.get();
    }
  }
  return nullptr;
}

namespace {
size_t BufferBytes(size_t data_bytes) { return 4096 + ((data_bytes + 4095) & ~size_t{4095}); }
}  // namespace

uint64_t Connection::ChargeFor(uint16_t type, uint32_t length) const {
  size_t data = 0;
  if (type == kCmdRead || type == kCmdWrite) {
    if (length > limits_.max_payload_bytes) {
      return 0;  // refused (READ) or the end of the connection (WRITE): no buffer
    }
    data = length;
  } else if (type == kCmdBlockStatus) {
    data = 2 * (4 + 8 * kMaxBlockStatusChunks);  // both contexts at their longest
  } else {
    return 0;
  }
  return std::max(BufferBytes(data), kSmallBufferBytes);
}

// A connection with nothing in flight may always have one small request admitted, past the
// server's limit if need be (by at most max_connections small buffers in all): clients that hold
// the budget with stalled requests slow the others down but cannot stop them.
bool Connection::TakeBudget(uint64_t bytes) {
  if (bytes == 0) {
    return true;
  }
  if (bytes > limits_.max_connection_buffer_bytes - charged_) {
    return false;
  }
  if (!budgets_.in_flight->TryTake(bytes)) {
    if (charged_ != 0 || bytes > kSmallBufferBytes) {
      return false;
    }
    budgets_.in_flight->TakeAnyway(bytes);
  }
  charged_ += bytes;
  return true;
}

void Connection::GiveBudget(uint64_t bytes) {
  STRATA_CHECK(bytes <= charged_);
  charged_ -= bytes;
  budgets_.in_flight->Give(bytes);
}

// With requests of its own in flight, the connection resumes when one is released; with none, it
// waits for other connections' bytes, which it cannot be told of: it looks again every
// millisecond.
void Connection::WaitForBudget() {
  paused_ = true;
  if (charged_ > 0 || budget_retry_) {
    return;
  }
  budget_retry_ = true;
  After(1'000'000, [this] {
    budget_retry_ = false;
    if (paused_ && !stopped_) {
      paused_ = false;
      ProcessBuffered();
    }
  });
}

bool Connection::EnsureCapacity(Slot* s, size_t data_bytes) {
  const size_t need = BufferBytes(data_bytes);
  if (s->capacity >= need) {
    return true;
  }
  STRATA_CHECK(std::max(need, kSmallBufferBytes) <= s->charged);  // admitted for this size
  ReleaseBuffer(s);
  if (need <= kSmallBufferBytes && !small_buffers_.empty()) {
    s->buffer = small_buffers_.back();
    small_buffers_.pop_back();
    budgets_.retained->Give(kSmallBufferBytes);  // now counted in the request's charge
    s->capacity = kSmallBufferBytes;
    return true;
  }
  const size_t size = std::max(need, kSmallBufferBytes);
  for (auto it = large_buffers_.begin(); it != large_buffers_.end(); ++it) {
    if (it->second == size) {  // the same size again (a client's usual request size)
      s->buffer = it->first;
      s->capacity = size;
      large_buffers_.erase(it);
      budgets_.retained->Give(size);
      return true;
    }
  }
  s->buffer = static_cast<uint8_t*>(std::aligned_alloc(4096, size));
  s->capacity = s->buffer != nullptr ? size : 0;
  return s->buffer != nullptr;
}

// Keeps a small buffer for the next request while the connection and the server have room to;
// frees anything else.
void Connection::ReleaseBuffer(Slot* s) {
  if (s->buffer == nullptr) {
    return;
  }
  if (s->capacity == kSmallBufferBytes && small_buffers_.size() < slots_.size() &&
      budgets_.retained->TryTake(kSmallBufferBytes)) {
    small_buffers_.push_back(s->buffer);
  } else if (s->capacity > kSmallBufferBytes && large_buffers_.size() < kKeptLargeBuffers &&
             budgets_.retained->TryTake(s->capacity)) {
    // (allocating and freeing a large buffer per request costs page faults and munmap)
    large_buffers_.emplace_back(s->buffer, s->capacity);
  } else {
    std::free(s->buffer);
  }
  s->buffer = nullptr;
  s->capacity = 0;
}

// Consumes one request header from the buffer (unless no slot is free: then it waits there).
void Connection::HandleHeader(const uint8_t* header) {
  if (Get32(header) != kRequestMagic) {
    StopReceiving();  // garbage instead of a request: no way to resynchronise
    return;
  }
  Slot* s = TakeSlot();
  if (s == nullptr) {
    paused_ = true;  // every slot busy: the header stays buffered until one is released
    return;
  }
  const uint64_t charge = ChargeFor(Get16(header + 6), Get32(header + 24));
  if (!TakeBudget(charge)) {
    s->busy = false;  // the header stays buffered until bytes come back
    WaitForBudget();
    return;
  }
  s->charged = charge;
  rhead_ += kRequestHeaderBytes;
  s->flags = Get16(header + 4);
  s->type = Get16(header + 6);
  s->cookie = Get64(header + 8);
  s->offset = Get64(header + 16);
  s->length = Get32(header + 24);
  if (s->type == kCmdWrite) {
    if (s->length > limits_.max_payload_bytes || !EnsureCapacity(s, s->length)) {
      Release(s);  // a payload we will not buffer: the stream cannot be resynchronised
      StopReceiving();
      return;
    }
    if (s->length > 0) {
      recv_slot_ = s;
      payload_got_ = 0;
      recv_progress_ns_ = MonotonicNowNs();
      return;  // ProcessBuffered moves the payload in
    }
  }
  if (s->type == kCmdDisc) {
    Release(s);
    StopReceiving();
    return;
  }
  Dispatch(s);
}

// ---------------------------------------------------------------- dispatch

uint32_t Connection::Validate(const Slot& s) const {
  uint16_t allowed = kCmdFlagFua;
  if (s.type == kCmdWriteZeroes) {
    allowed |= kCmdFlagNoHole | kCmdFlagFastZero;
  } else if (s.type == kCmdRead && n_.structured_replies) {
    allowed |= kCmdFlagDf;
  } else if (s.type == kCmdBlockStatus) {
    allowed |= kCmdFlagReqOne;
  }
  if ((s.flags & ~allowed) != 0 || s.type > kCmdBlockStatus) {
    return kEINVAL;
  }
  if (shutting_down_->load(std::memory_order_relaxed)) {
    return kESHUTDOWN;
  }
  bool mutates = s.type == kCmdWrite || s.type == kCmdTrim || s.type == kCmdWriteZeroes;
  if (mutates && n_.read_only) {
    return kEPERM;
  }
  uint64_t size = n_.volume->size_bytes();
  if (s.offset > size || s.length > size - s.offset) {
    return (s.type == kCmdWrite || s.type == kCmdWriteZeroes) ? kENOSPC : kEINVAL;
  }
  if (s.type == kCmdRead && s.length > limits_.max_payload_bytes) {
    return kEINVAL;
  }
  if (s.type == kCmdBlockStatus &&
      ((!n_.allocation_context && n_.dirty_since_snapshot.empty()) || s.length == 0)) {
    return kEINVAL;
  }
  return 0;
}

void Connection::Dispatch(Slot* s) {
  uint32_t error = Validate(*s);
  if (error != 0) {
    ReplyError(s, error, "request refused");
    return;
  }
  const uint32_t fua = (s->flags & kCmdFlagFua) != 0 ? IoRequest::kFua : 0;
  switch (s->type) {
    case kCmdRead:
      return DispatchRead(s);
    case kCmdWrite:
      return SubmitVolume(s, IoRequest::Kind::kWrite, fua);
    case kCmdFlush:
      return SubmitVolume(s, IoRequest::Kind::kFlush, 0);
    case kCmdTrim:
      return SubmitVolume(s, IoRequest::Kind::kTrim, fua);
    case kCmdWriteZeroes:
      return DispatchWriteZeroes(s, fua);
    case kCmdCache:
      return ReplyOk(s);  // data is local: nothing to prefetch
    case kCmdBlockStatus:
      return DispatchBlockStatus(s);
    default:
      return ReplyError(s, kEINVAL, "unknown command");
  }
}

void Connection::DispatchRead(Slot* s) {
  s->extents.clear();
  // A read inside one chunk learns from the read itself whether it was a hole (no extra map scan
  // on the 4 KiB hot path); a longer one asks the map first, to announce holes.
  const uint64_t chunk = n_.volume->chunk_size_bytes();
  const bool one_chunk = s->offset / chunk == (s->offset + s->length - 1) / chunk;
  if (n_.structured_replies && (s->flags & kCmdFlagDf) == 0 && s->length > 0 && !one_chunk) {
    auto extents = n_.volume->BlockStatus(s->offset, s->length);
    if (extents.ok()) {
      s->extents = std::move(*extents);
    }
    if (s->extents.size() == 1 && s->extents[0].hole && s->extents[0].length_bytes == s->length) {
      ReplyRead(s);  // all hole: nothing to read
      return;
    }
  }
  if (!EnsureCapacity(s, s->length)) {
    ReplyError(s, kEIO, "out of memory");
    return;
  }
  SubmitVolume(s, IoRequest::Kind::kRead, 0);
}

void Connection::DispatchWriteZeroes(Slot* s, uint32_t fua) {
  uint32_t flags = fua | ((s->flags & kCmdFlagNoHole) != 0 ? IoRequest::kNoHole : 0);
  if ((s->flags & kCmdFlagFastZero) != 0) {
    uint32_t chunk = n_.volume->chunk_size_bytes();
    bool whole_chunks =
        s->offset % chunk == 0 &&
        (s->length % chunk == 0 || s->offset + s->length == n_.volume->size_bytes());
    if ((s->flags & kCmdFlagNoHole) != 0 || !whole_chunks) {
      ReplyError(s, kENOTSUP, "zeroing this range is not faster than writing it");
      return;
    }
  }
  SubmitVolume(s, IoRequest::Kind::kWriteZeroes, flags);
}

void Connection::DispatchBlockStatus(Slot* s) {
  Status st;
  s->extents.clear();
  s->dirty.clear();
  if (n_.allocation_context) {
    auto extents = n_.volume->BlockStatus(s->offset, s->length);
    st = extents.status();
    if (extents.ok()) {
      s->extents = std::move(*extents);
    }
  }
  if (st.ok() && !n_.dirty_since_snapshot.empty()) {
    // At most as far as the allocation answer reached (both describe the same prefix).
    uint64_t length = s->extents.empty() ? s->length : 0;
    for (const Extent& e : s->extents) {
      length += e.length_bytes;
    }
    const uint64_t chunk = n_.volume->chunk_size_bytes();
    length = std::min<uint64_t>(length, chunk * kMaxBlockStatusChunks - s->offset % chunk);
    auto dirty = n_.pool->ChangedExtents(*n_.volume, n_.dirty_since_snapshot, s->offset, length);
    st = dirty.status();
    if (dirty.ok()) {
      s->dirty = std::move(*dirty);
    }
  }
  if (!st.ok()) {
    ReplyError(s, NbdError(st, s->type), st.message());
    return;
  }
  ReplyBlockStatus(s);
}

void Connection::SubmitVolume(Slot* s, IoRequest::Kind kind, uint32_t flags) {
  IoRequest& r = s->request;
  r.kind = kind;
  r.flags = flags;
  r.offset_bytes = s->offset;
  r.length_bytes = kind == IoRequest::Kind::kFlush ? 0 : s->length;
  r.data = reinterpret_cast<std::byte*>(s->buffer != nullptr ? s->buffer + kHeaderRoom : nullptr);
  outstanding_++;
  n_.volume->Submit(loop_, &r);
}

void Connection::OnVolumeDone(IoRequest* request, const Status& status) {
  auto* s = static_cast<Slot*>(request->user);
  Connection* c = s->conn;
  c->outstanding_--;
  if (!status.ok()) {
    c->ReplyError(s, NbdError(status, s->type), status.message());
  } else if (s->type == kCmdRead) {
    c->ReplyRead(s);
  } else {
    c->ReplyOk(s);
  }
}

// ---------------------------------------------------------------- replies

void Connection::ReplyOk(Slot* s) {
  Put32(s->headers, kSimpleReplyMagic);
  Put32(s->headers + 4, 0);
  Put64(s->headers + 8, s->cookie);
  s->iov[0] = iovec{s->headers, kSimpleReplyBytes};
  s->iov_count = 1;
  Enqueue(s);
}

void Connection::ReplyError(Slot* s, uint32_t error, const std::string& message) {
  if (!n_.structured_replies) {
    Put32(s->headers, kSimpleReplyMagic);
    Put32(s->headers + 4, error);
    Put64(s->headers + 8, s->cookie);
    s->iov[0] = iovec{s->headers, kSimpleReplyBytes};
    s->iov_count = 1;
    Enqueue(s);
    return;
  }
  s->message = message.substr(0, 1024);
  ChunkHeader(s->headers, kReplyFlagDone, kChunkError, s->cookie,
              static_cast<uint32_t>(6 + s->message.size()));
  Put32(s->headers + kChunkHeaderBytes, error);
  Put16(s->headers + kChunkHeaderBytes + 4, static_cast<uint16_t>(s->message.size()));
  s->iov[0] = iovec{s->headers, kChunkHeaderBytes + 6};
  s->iov[1] = iovec{s->message.data(), s->message.size()};
  s->iov_count = 2;
  Enqueue(s);
}

void Connection::ReplyRead(Slot* s) {
  uint8_t* data = s->buffer != nullptr ? s->buffer + kHeaderRoom : nullptr;
  if (!n_.structured_replies) {
    Put32(s->headers, kSimpleReplyMagic);
    Put32(s->headers + 4, 0);
    Put64(s->headers + 8, s->cookie);
    s->iov[0] = iovec{s->headers, kSimpleReplyBytes};
    s->iov[1] = iovec{data, s->length};
    s->iov_count = s->length > 0 ? 2 : 1;
    Enqueue(s);
    return;
  }
  if (s->length == 0) {
    ChunkHeader(s->headers, kReplyFlagDone, kChunkNone, s->cookie, 0);
    s->iov[0] = iovec{s->headers, kChunkHeaderBytes};
    s->iov_count = 1;
    Enqueue(s);
    return;
  }
  // One chunk per extent (holes as OFFSET_HOLE), or one OFFSET_DATA for DF or many extents.
  std::vector<Extent>& ex = s->extents;
  if (ex.empty() && s->request.hole_bytes == s->length && (s->flags & kCmdFlagDf) == 0) {
    ex.assign(1, Extent{s->offset, s->length, true});  // the read found only holes
  }
  if (ex.empty() || ex.size() > kMaxChunks) {
    ex.assign(1, Extent{s->offset, s->length, false});
  }
  uint64_t covered = 0;
  for (const Extent& e : ex) {
    covered += e.length_bytes;
  }
  if (covered < s->length) {  // block status answered a prefix: the rest is sent as data
    ex.push_back(Extent{s->offset + covered, s->length - covered, false});
  }
  s->iov_count = 0;
  uint8_t* h = s->headers;
  for (size_t i = 0; i < ex.size(); i++) {
    const Extent& e = ex[i];
    uint16_t flags = i + 1 == ex.size() ? kReplyFlagDone : 0;
    if (e.hole) {
      ChunkHeader(h, flags, kChunkOffsetHole, s->cookie, 12);
      Put64(h + kChunkHeaderBytes, e.offset_bytes);
      Put32(h + kChunkHeaderBytes + 8, static_cast<uint32_t>(e.length_bytes));
      s->iov[s->iov_count++] = iovec{h, kChunkHeaderBytes + 12};
      h += kChunkHeaderBytes + 12;
    } else {
      ChunkHeader(h, flags, kChunkOffsetData, s->cookie, static_cast<uint32_t>(8 + e.length_bytes));
      Put64(h + kChunkHeaderBytes, e.offset_bytes);
      s->iov[s->iov_count++] = iovec{h, kChunkHeaderBytes + 8};
      s->iov[s->iov_count++] = iovec{data + (e.offset_bytes - s->offset), e.length_bytes};
      h += kChunkHeaderBytes + 8;
    }
  }
  Enqueue(s);
}

// One BLOCK_STATUS chunk per selected context (base:allocation, then the dirty bitmap); the
// last carries DONE.
void Connection::ReplyBlockStatus(Slot* s) {
  // Each answer is a prefix of at most kMaxBlockStatusChunks extents (what the charge covers).
  if (s->extents.size() > kMaxBlockStatusChunks) {
    s->extents.resize(kMaxBlockStatusChunks);
  }
  if (s->dirty.size() > kMaxBlockStatusChunks) {
    s->dirty.resize(kMaxBlockStatusChunks);
  }
  const bool one = (s->flags & kCmdFlagReqOne) != 0;
  if (one && s->extents.size() > 1) {
    s->extents.resize(1);
  }
  if (one && s->dirty.size() > 1) {
    s->dirty.resize(1);
  }
  const bool allocation = n_.allocation_context;
  const bool dirty = !n_.dirty_since_snapshot.empty();
  const size_t alloc_bytes = allocation ? 4 + 8 * s->extents.size() : 0;
  const size_t dirty_bytes = dirty ? 4 + 8 * s->dirty.size() : 0;
  if (!EnsureCapacity(s, alloc_bytes + dirty_bytes)) {
    ReplyError(s, kEIO, "out of memory");
    return;
  }
  uint8_t* p = s->buffer + kHeaderRoom;
  uint8_t* h = s->headers;
  s->iov_count = 0;
  if (allocation) {
    Put32(p, kMetaContextAllocation);
    for (size_t i = 0; i < s->extents.size(); i++) {
      Put32(p + 4 + 8 * i, static_cast<uint32_t>(s->extents[i].length_bytes));
      const Extent& e = s->extents[i];
      Put32(p + 8 + 8 * i, e.hole ? (kStateHole | kStateZero) : (e.zero ? kStateZero : 0));
    }
    ChunkHeader(h, dirty ? 0 : kReplyFlagDone, kChunkBlockStatus, s->cookie,
                static_cast<uint32_t>(alloc_bytes));
    s->iov[s->iov_count++] = iovec{h, kChunkHeaderBytes};
    s->iov[s->iov_count++] = iovec{p, alloc_bytes};
    h += kChunkHeaderBytes;
    p += alloc_bytes;
  }
  if (dirty) {
    Put32(p, kMetaContextDirty);
    for (size_t i = 0; i < s->dirty.size(); i++) {
      Put32(p + 4 + 8 * i, static_cast<uint32_t>(s->dirty[i].length_bytes));
      Put32(p + 8 + 8 * i, s->dirty[i].changed ? kStateDirty : 0);
    }
    ChunkHeader(h, kReplyFlagDone, kChunkBlockStatus, s->cookie,
                static_cast<uint32_t>(dirty_bytes));
    s->iov[s->iov_count++] = iovec{h, kChunkHeaderBytes};
    s->iov[s->iov_count++] = iovec{p, dirty_bytes};
  }
  Enqueue(s);
}

// ---------------------------------------------------------------- sending

void Connection::Enqueue(Slot* s) {
  if (peer_gone_) {
    Release(s);
    return;
  }
  send_queue_.push_back(s);
  SendNext();
}

// Gathers the replies queued so far into one sendmsg.
void Connection::SendNext() {
  if (tls_ != nullptr) {
    SendTls();
    return;
  }
  if (sending_ || send_queue_.empty() || HoldReplies()) {
    return;
  }
  hold_since_ns_ = 0;
  GatherBatch();
  SubmitSend(&msg_);
}

// While many small requests are in flight, a finished reply waits for others (until half of
// those still at the volume have finished too, or kReplyHoldNs) so that one sendmsg carries
// several and the client wakes once for them. On 2 vCPUs, where client and server share the one
// that takes the disk's interrupts, every wake-up is paid for by both; the hold lifted 4 KiB
// random writes 1.12-1.29x in A/B runs at equal server CPU (bench/README.md). A connection with
// fewer than kHoldMinOutstanding requests in flight, and any reply over 64 KiB, is never held:
// low queue depths pay no latency for it.
bool Connection::HoldReplies() {
  if (stopped_ || outstanding_ < kHoldMinOutstanding || send_queue_.size() * 2 >= outstanding_ ||
      send_queue_.back()->length > kSmallBufferBytes - kHeaderRoom) {
    return false;
  }
  const uint64_t now = MonotonicNowNs();
  if (hold_since_ns_ == 0) {
    hold_since_ns_ = now;
    After(kReplyHoldNs, [this] {  // the loop's timers wake it within a millisecond
      if (hold_since_ns_ != 0) {
        hold_since_ns_ = 1;  // long past: the held replies go now
        SendNext();
      }
    });
    return true;
  }
  return now - hold_since_ns_ < kReplyHoldNs;
}

void Connection::SubmitSend(msghdr* msg) {
  sending_ = true;
  send_progress_ns_ = MonotonicNowNs();
  send_op_ = IoOp{};
  send_op_.kind = IoOp::Kind::kSendMsg;
  send_op_.file = fd_;
  send_op_.buf = msg;
  send_op_.done = &Connection::OnSent;
  send_op_.ctx = this;
  loop_->engine()->Submit(&send_op_);
}

void Connection::GatherBatch() {
  send_iov_.clear();
  sending_slots_ = 0;
  for (Slot* s : send_queue_) {
    if (send_iov_.size() + static_cast<size_t>(s->iov_count) > kMaxSendIov) {
      break;
    }
    send_iov_.insert(send_iov_.end(), s->iov, s->iov + s->iov_count);
    sending_slots_++;
  }
  msg_ = msghdr{};
  msg_.msg_iov = send_iov_.data();
  msg_.msg_iovlen = send_iov_.size();
}

namespace {
// Drops the first `n` bytes of the message's iovecs.
void Advance(msghdr* m, size_t n) {
  while (n > 0 && m->msg_iovlen > 0) {
    size_t take = std::min(n, m->msg_iov[0].iov_len);
    m->msg_iov[0].iov_base = static_cast<uint8_t*>(m->msg_iov[0].iov_base) + take;
    m->msg_iov[0].iov_len -= take;
    n -= take;
    if (m->msg_iov[0].iov_len == 0) {
      m->msg_iov++;
      m->msg_iovlen--;
    }
  }
}
}  // namespace

void Connection::DropReplies() {
  peer_gone_ = true;
  StopReceiving();
  sending_slots_ = 0;
  msg_ = msghdr{};
  while (!send_queue_.empty()) {
    Slot* s = send_queue_.front();
    send_queue_.pop_front();
    Release(s);
  }
}

void Connection::OnSent(IoOp* op) {
  auto* c = static_cast<Connection*>(op->ctx);
  c->sending_ = false;
  if (op->result <= 0) {  // the client is gone: drop every pending reply
    c->DropReplies();
    return;
  }
  c->send_progress_ns_ = MonotonicNowNs();
  if (c->tls_ != nullptr) {
    c->tls_flight_sent_ += static_cast<size_t>(op->result);
    if (c->tls_flight_sent_ < c->tls_flight_.size()) {
      c->SubmitTlsFlight();
      return;
    }
    c->tls_flight_.clear();
    if (c->tls_flight_.capacity() > 4 * kTlsBatchBytes) {
      std::vector<uint8_t>().swap(c->tls_flight_);
    }
    c->tls_flight_sent_ = 0;
    c->SendTls();
    if (c->tls_receive_held_ && c->tls_->outbox_bytes() <= kTlsBatchBytes) {
      c->tls_receive_held_ = false;
      c->Receive();
    }
    return;
  }
  // Short send: advance the iovecs and send the rest of the batch.
  Advance(&c->msg_, static_cast<size_t>(op->result));
  if (c->msg_.msg_iovlen > 0) {
    c->sending_ = true;
    c->loop_->engine()->Submit(&c->send_op_);
    return;
  }
  c->FinishBatch();
}

void Connection::FinishBatch() {
  // Take the whole batch off the queue before releasing any slot: a release may resume parsing,
  // whose replies go straight to SendNext, which must not see (and resend) this batch.
  Slot* done[kMaxSendIov];
  const size_t count = sending_slots_;
  for (size_t i = 0; i < count; i++) {
    done[i] = send_queue_.front();
    send_queue_.pop_front();
  }
  sending_slots_ = 0;
  for (size_t i = 0; i < count; i++) {
    Release(done[i]);
  }
  SendNext();
}

void Connection::SendTls() {
  if (sending_ || peer_gone_) {
    return;
  }
  if (sending_slots_ > 0 && msg_.msg_iovlen == 0) {  // every byte of the batch is out
    FinishBatch();
    return;
  }
  if (sending_slots_ == 0 && !send_queue_.empty()) {
    GatherBatch();
  }
  if (msg_.msg_iovlen > 0) {
    tls_part_.clear();
    for (size_t budget = kTlsBatchBytes; budget > 0 && msg_.msg_iovlen > 0;) {
      const size_t take = std::min(budget, msg_.msg_iov[0].iov_len);
      tls_part_.push_back(iovec{msg_.msg_iov[0].iov_base, take});
      Advance(&msg_, take);
      budget -= take;
    }
    Status s = tls_->Encrypt(tls_part_.data(), tls_part_.size());
    if (!s.ok()) {
      ServerLog().Log(LogKey::kConnection, "a TLS client of %s: %s",
                      EscapeText(n_.export_name, 128).c_str(), EscapeText(s.ToString()).c_str());
      shutdown(fd_, SHUT_RDWR);
      DropReplies();
      return;
    }
  }
  if (tls_->TakeOutbox(&tls_flight_)) {
    SubmitTlsFlight();
  } else if (sending_slots_ > 0 && msg_.msg_iovlen == 0) {
    FinishBatch();  // (an empty batch: nothing was encrypted)
  }
}

void Connection::SubmitTlsFlight() {
  tls_iov_ = iovec{tls_flight_.data() + tls_flight_sent_, tls_flight_.size() - tls_flight_sent_};
  tls_msg_ = msghdr{};
  tls_msg_.msg_iov = &tls_iov_;
  tls_msg_.msg_iovlen = 1;
  SubmitSend(&tls_msg_);
}

void Connection::Release(Slot* s) {
  ReleaseBuffer(s);
  GiveBudget(s->charged);
  s->charged = 0;
  if (s->extents.capacity() > kKeptExtents) {
    std::vector<Extent>().swap(s->extents);  // a long BLOCK_STATUS answer is not kept
  }
  if (s->dirty.capacity() > kKeptExtents) {
    std::vector<ChangeExtent>().swap(s->dirty);
  }
  s->busy = false;
  if (paused_ && !stopped_) {  // a header was waiting in the buffer for a slot
    paused_ = false;
    ProcessBuffered();
  }
}

}  // namespace strata::nbd
