// The transmission phase of one connection: receive -> validate -> dispatch -> reply, on one
// EventLoop whose io_uring carries both the socket and the volume's disk I/O.
//
// Up to `max_requests_in_flight` requests run at once and complete out of order. A request is
// admitted only when its buffer fits the connection's and the server's budgets (budget.h);
// otherwise the connection stops reading its socket until replies go out. Requests of up to
// 64 KiB use small buffers the connection keeps for reuse (no allocation per request in steady
// state); larger ones get a buffer of their own, kept after their reply (up to 8, within the
// server's retained budget) for the next request of the same size. READ data lands in the
// slot's buffer and is sent from it. Replies go out one sendmsg at a time; while many small
// requests are in flight, finished replies wait briefly for more (HoldReplies), so that one
// sendmsg carries several.
//
// Over TLS (the client sent STARTTLS) the same loop carries ciphertext: received bytes go into
// the session's inbox and are decrypted into the same places (the receive buffer, or a large
// WRITE's slot); replies are encrypted from their slots into a batch of at most 1 MiB of
// plaintext at a time, sent while the next is made. The cost is the cipher's own pass over the
// bytes: READ data is encrypted from the slot it was read into, and no other copy is added.
//
// A watchdog disconnects a client that leaves a reply unread, or a WRITE payload unfinished, for
// longer than the I/O timeout; a stalled payload ends the reading side only, so the replies the
// client can still take are sent.
#ifndef STRATA_NBD_TRANSMISSION_H_
#define STRATA_NBD_TRANSMISSION_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "strata/event_loop.h"
#include "strata/volume.h"

#include "budget.h"
#include "handshake.h"
#include "protocol.h"

namespace strata::nbd {

class Connection {
 public:
  Connection(int fd, Negotiated negotiated, EventLoop* loop, const ServerLimits& limits,
             Budgets budgets, const std::atomic<bool>* shutting_down);
  ~Connection();
  // Serves until the client disconnects or breaks the protocol and every request received has
  // been answered (or the client is gone).
  void Serve();

 private:
  static constexpr size_t kHeaderRoom = 4096;  // keeps READ data 4 KiB-aligned for O_DIRECT
  static constexpr size_t kMaxChunks = 16;     // structured READ chunks before falling back to one
  // Buffers of requests up to 64 KiB are this size and kept for reuse.
  static constexpr size_t kSmallBufferBytes = kHeaderRoom + (64 << 10);
  static constexpr size_t kKeptExtents = 64;  // extent vectors larger than this are freed
  static constexpr uint64_t kWatchdogNs = 1'000'000'000;

  struct Slot {
    Connection* conn = nullptr;
    bool busy = false;
    IoRequest request;
    uint8_t* buffer = nullptr;  // kHeaderRoom bytes, then data
    size_t capacity = 0;
    uint64_t charged = 0;  // budget bytes taken for this request
    uint64_t cookie = 0;
    uint16_t type = 0;
    uint16_t flags = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
    std::vector<Extent> extents;      // READ: holes to announce; BLOCK_STATUS: the answer
    std::vector<ChangeExtent> dirty;  // BLOCK_STATUS: the qemu:dirty-bitmap: answer
    uint8_t headers[kMaxChunks * 32 + 64];
    iovec iov[2 * kMaxChunks + 2];
    int iov_count = 0;
    std::string message;  // error text of a structured error chunk
  };

  void Receive();
  // Where received plaintext goes next: the pending WRITE's slot (payload_direct_) or rbuf_.
  uint8_t* NextDestination(size_t* len);
  // `n` plaintext bytes arrived at NextDestination's place.
  void Took(size_t n);
  static void OnRecv(IoOp* op);
  // TLS: decrypts what the inbox holds, else receives ciphertext. Loops rather than recursing.
  void ReceiveTls();
  void ProcessBuffered();
  bool TakePayloadFromBuffer();
  void HandleHeader(const uint8_t* header);
  Slot* TakeSlot();
  // The budget bytes a request's buffer takes (0: it needs none).
  uint64_t ChargeFor(uint16_t type, uint32_t length) const;
  bool TakeBudget(uint64_t bytes);
  void GiveBudget(uint64_t bytes);
  // Admission refused for budget: resumes parsing when bytes come back.
  void WaitForBudget();
  // A buffer with room for `data_bytes` after kHeaderRoom; within the request's charge.
  bool EnsureCapacity(Slot* s, size_t data_bytes);
  void ReleaseBuffer(Slot* s);
  void Watchdog();
  // Runs `fn` on the loop after `delay_ns`, unless the connection is gone by then (the loop may
  // outlive it).
  void After(uint64_t delay_ns, std::function<void()> fn);
  void Dispatch(Slot* s);
  void DispatchRead(Slot* s);
  void DispatchWriteZeroes(Slot* s, uint32_t fua);
  void DispatchBlockStatus(Slot* s);
  uint32_t Validate(const Slot& s) const;
  void SubmitVolume(Slot* s, IoRequest::Kind kind, uint32_t flags);
  static void OnVolumeDone(IoRequest* request, const Status& status);
  void ReplyOk(Slot* s);
  void ReplyError(Slot* s, uint32_t error, const std::string& message);
  void ReplyRead(Slot* s);
  void ReplyBlockStatus(Slot* s);
  void Enqueue(Slot* s);
  void SendNext();
  // Whether the queued replies wait for more to finish (many small requests in flight).
  bool HoldReplies();
  // The queued replies (up to kMaxSendIov iovecs) become msg_'s batch.
  void GatherBatch();
  // One sendmsg of `msg` on the loop; OnSent follows.
  void SubmitSend(msghdr* msg);
  // The batch is on the wire: its slots are released.
  void FinishBatch();
  // The client is gone: every pending reply is dropped.
  void DropReplies();
  static void OnSent(IoOp* op);
  // TLS: encrypts the next part of the batch and sends it; finishes the batch once all is out.
  void SendTls();
  void SubmitTlsFlight();
  void Release(Slot* s);
  void StopReceiving();
  bool Finished() const;

  int fd_;
  Negotiated n_;
  EventLoop* loop_;
  const ServerLimits& limits_;
  const Budgets budgets_;
  const std::atomic<bool>* shutting_down_;
  std::vector<std::unique_ptr<Slot>> slots_;
  uint64_t charged_ = 0;                 // budget bytes this connection holds
  std::vector<uint8_t*> small_buffers_;  // idle kSmallBufferBytes buffers (retained budget)
  // Idle larger buffers and their sizes (retained budget), reused for a request of that size.
  static constexpr size_t kKeptLargeBuffers = 8;
  std::vector<std::pair<uint8_t*, size_t>> large_buffers_;
  bool budget_retry_ = false;      // a timer will retry admission
  uint64_t recv_progress_ns_ = 0;  // last time payload bytes arrived
  uint64_t send_progress_ns_ = 0;  // last time a send moved bytes (or started)
  bool timed_out_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  // Receiving: one recv fills rbuf_ with as many requests as the client has sent (many headers
  // per system call at high queue depth); large WRITE payloads are received straight into
  // their slot instead.
  static constexpr size_t kReceiveBufferBytes = 256 * 1024;
  static constexpr size_t kDirectPayloadBytes = 64 * 1024;  // larger remainders skip the buffer
  IoOp recv_op_;
  std::vector<uint8_t> rbuf_;
  size_t rhead_ = 0;           // first unparsed byte
  size_t rtail_ = 0;           // end of received bytes
  Slot* recv_slot_ = nullptr;  // WRITE whose payload is being received
  size_t payload_got_ = 0;
  bool payload_direct_ = false;  // the pending recv writes into recv_slot_'s buffer
  bool receiving_ = false;       // a recv op is in flight
  bool paused_ = false;          // a header waits for a free slot
  bool stopped_ = false;         // no more requests will be read (DISC, EOF, error, shutdown)

  // Sending: queued replies are gathered into one sendmsg (up to kMaxSendIov iovecs).
  static constexpr size_t kMaxSendIov = 512;
  std::deque<Slot*> send_queue_;
  size_t sending_slots_ = 0;  // queue entries covered by the sendmsg in flight
  bool sending_ = false;
  uint64_t hold_since_ns_ = 0;  // when the queued replies began to be held (0: not held)
  static constexpr uint32_t kHoldMinOutstanding = 16;
  static constexpr uint64_t kReplyHoldNs = 100'000;
  bool peer_gone_ = false;
  IoOp send_op_;
  msghdr msg_{};
  std::vector<iovec> send_iov_;
  uint32_t outstanding_ = 0;  // requests submitted to the volume, not yet completed

  // TLS (null without): the session, owned by n_.
  static constexpr size_t kTlsBatchBytes = 128 << 10;  // plaintext encrypted per send
  TlsSession* tls_ = nullptr;
  bool in_receive_tls_ = false;
  bool receive_tls_again_ = false;
  bool tls_receive_held_ = false;    // the outbox is over its bound: decrypting waits for a send
  std::vector<uint8_t> tls_flight_;  // ciphertext being sent
  size_t tls_flight_sent_ = 0;
  iovec tls_iov_{};
  msghdr tls_msg_{};
  std::vector<iovec> tls_part_;
};

}  // namespace strata::nbd

#endif  // STRATA_NBD_TRANSMISSION_H_
