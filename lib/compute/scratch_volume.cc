#include "compute/scratch_volume.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "strata/event_loop.h"

#include "util/aligned_buffer.h"
#include "util/check.h"

namespace strata {

namespace {

constexpr uint32_t kMaxOpBytes = 64u << 20;  // one IoOp moves at most this much

// One asynchronous read or write, cut into IoOps of at most kMaxOpBytes.
struct ScratchRequest {
  IoRequest* request = nullptr;
  EventLoop* loop = nullptr;
  kms::XtsCipher* decrypt = nullptr;  // a read: decrypt the data in place once it is in
  std::vector<IoOp> ops;
  size_t pending = 0;
  int first_error = 0;
  // A write's ciphertext (4 KiB-aligned, for O_DIRECT); kept, with its capacity, for reuse.
  AlignedBuffer bounce;
  size_t bounce_bytes = 0;
  std::byte* Bounce(size_t n) {
    if (n > bounce_bytes) {
      bounce = AllocateAligned(n);
      bounce_bytes = n;
    }
    return bounce.get();
  }
};

// Finished requests are kept per thread (their op vectors keep their capacity): the data path
// allocates nothing in steady state.
thread_local std::vector<std::unique_ptr<ScratchRequest>> free_requests;

ScratchRequest* TakeRequest() {
  if (free_requests.empty()) {
    return new ScratchRequest;
  }
  ScratchRequest* sr = free_requests.back().release();
  free_requests.pop_back();
  return sr;
}

void GiveRequest(ScratchRequest* sr) {
  if (free_requests.size() < 256 && sr->bounce_bytes <= (8u << 20)) {
    sr->first_error = 0;
    sr->decrypt = nullptr;
    free_requests.emplace_back(sr);
  } else {
    delete sr;
  }
}

void OnScratchIo(IoOp* op) {
  auto* sr = static_cast<ScratchRequest*>(op->ctx);
  if (op->result < 0 && sr->first_error == 0) {
    sr->first_error = -op->result;
  }
  if (--sr->pending > 0) {
    return;
  }
  IoRequest* request = sr->request;
  Status s = sr->first_error == 0 ? Status::OK()
                                  : Status::FromErrno("instance store I/O", sr->first_error);
  if (s.ok() && sr->decrypt != nullptr) {
    s = sr->decrypt->Decrypt(request->offset_bytes / sr->decrypt->unit_bytes(), request->data,
                             request->data, request->length_bytes);
  }
  GiveRequest(sr);
  request->callback(request, s);
}

}  // namespace

Result<std::shared_ptr<ScratchVolume>> ScratchVolume::Create(const std::string& dir,
                                                             const std::string& id,
                                                             uint64_t size_bytes) {
  if (size_bytes == 0 || size_bytes % 512 != 0) {
    return Status::InvalidArgument("instance store size must be a positive multiple of 512");
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("mkdir " + dir, errno);
  }
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // No O_TMPFILE here: a named file, unlinked at once.
    std::string path = dir + "/scratch-XXXXXX";
    fd = mkostemp(path.data(), O_CLOEXEC);
    if (fd >= 0) {
      unlink(path.c_str());
    }
  }
  if (fd < 0) {
    return Status::FromErrno("create instance store file in " + dir, errno);
  }
  if (ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
    int err = errno;
    close(fd);
    return Status::FromErrno("size instance store file", err);
  }
  auto cipher = kms::XtsCipher::CreateRandom();  // never stored: dies with the volume
  if (!cipher.ok()) {
    close(fd);
    return cipher.status();
  }
  // The same (unlinked) file again, for direct writes; -1 where O_DIRECT is refused (tmpfs).
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  int direct_fd = open(self.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  return std::shared_ptr<ScratchVolume>(
      new ScratchVolume(fd, direct_fd, id, size_bytes, std::move(*cipher)));
}

ScratchVolume::~ScratchVolume() {
  if (direct_fd_ >= 0) {
    close(direct_fd_);
  }
  close(fd_);
}

Status ScratchVolume::CheckRange(uint64_t offset_bytes, uint64_t length_bytes) const {
  if (offset_bytes > size_bytes_ || length_bytes > size_bytes_ - offset_bytes) {
    return Status::OutOfRange("I/O [" + std::to_string(offset_bytes) + ", +" +
                              std::to_string(length_bytes) + ") past the end of " + id_ + " (" +
                              std::to_string(size_bytes_) + " bytes)");
  }
  return Status::OK();
}

int ScratchVolume::FdFor(uint64_t offset_bytes, uint64_t length_bytes, const void* buf) const {
  const bool aligned = offset_bytes % 4096 == 0 && length_bytes % 4096 == 0 &&
                       reinterpret_cast<uintptr_t>(buf) % 4096 == 0;
  return aligned && direct_fd_ >= 0 ? direct_fd_ : fd_;
}

namespace {

Status RawRead(int fd, uint64_t offset_bytes, std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n =
        pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset_bytes + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n == 0 ? Status::IOError("instance store short read", EIO)
                    : Status::FromErrno("instance store read", errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status RawWrite(int fd, uint64_t offset_bytes, std::span<const std::byte> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset_bytes + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return Status::FromErrno("instance store write", n == 0 ? EIO : errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

}  // namespace

Status ScratchVolume::ReadUnits(uint64_t offset_bytes, std::span<std::byte> out) {
  STRATA_RETURN_IF_ERROR(RawRead(FdFor(offset_bytes, out.size(), out.data()), offset_bytes, out));
  return cipher_->Decrypt(offset_bytes / kUnit, out.data(), out.data(), out.size());
}

Status ScratchVolume::WriteUnits(uint64_t offset_bytes, std::span<const std::byte> data) {
  AlignedBuffer buf = AllocateAligned(data.size());
  STRATA_RETURN_IF_ERROR(
      cipher_->Encrypt(offset_bytes / kUnit, data.data(), buf.get(), data.size()));
  return RawWrite(FdFor(offset_bytes, data.size(), buf.get()), offset_bytes,
                  std::span<const std::byte>(buf.get(), data.size()));
}

Status ScratchVolume::Read(uint64_t offset_bytes, std::span<std::byte> out) {
  STRATA_RETURN_IF_ERROR(CheckRange(offset_bytes, out.size()));
  if (UnitAligned(offset_bytes, out.size())) {
    return ReadUnits(offset_bytes, out);
  }
  const uint64_t first = offset_bytes / kUnit * kUnit;
  const uint64_t end = (offset_bytes + out.size() + kUnit - 1) / kUnit * kUnit;
  AlignedBuffer buf = AllocateAligned(end - first);
  STRATA_RETURN_IF_ERROR(ReadUnits(first, std::span<std::byte>(buf.get(), end - first)));
  std::memcpy(out.data(), buf.get() + (offset_bytes - first), out.size());
  return Status::OK();
}

Status ScratchVolume::ReadModifyWrite(uint64_t offset_bytes, std::span<const std::byte> data) {
  const uint64_t first = offset_bytes / kUnit * kUnit;
  const uint64_t end = (offset_bytes + data.size() + kUnit - 1) / kUnit * kUnit;
  AlignedBuffer buf = AllocateAligned(end - first);
  MutexLock lock(&rmw_mu_);
  STRATA_RETURN_IF_ERROR(ReadUnits(first, std::span<std::byte>(buf.get(), end - first)));
  std::memcpy(buf.get() + (offset_bytes - first), data.data(), data.size());
  return WriteUnits(first, std::span<const std::byte>(buf.get(), end - first));
}

Status ScratchVolume::Write(uint64_t offset_bytes, std::span<const std::byte> data, bool) {
  STRATA_RETURN_IF_ERROR(CheckRange(offset_bytes, data.size()));
  if (data.empty()) {
    return Status::OK();
  }
  return UnitAligned(offset_bytes, data.size()) ? WriteUnits(offset_bytes, data)
                                                : ReadModifyWrite(offset_bytes, data);
}

Status ScratchVolume::Punch(uint64_t offset_bytes, uint64_t length_bytes) {
  STRATA_RETURN_IF_ERROR(CheckRange(offset_bytes, length_bytes));
  if (length_bytes == 0) {
    return Status::OK();
  }
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset_bytes),
                static_cast<off_t>(length_bytes)) != 0) {
    return Status::FromErrno("instance store punch", errno);
  }
  return Status::OK();
}

Status ScratchVolume::WriteZeroes(uint64_t offset_bytes, uint64_t length_bytes, bool no_hole,
                                  bool) {
  STRATA_RETURN_IF_ERROR(Punch(offset_bytes, length_bytes));
  if (no_hole && length_bytes > 0 &&
      fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset_bytes),
                static_cast<off_t>(length_bytes)) != 0) {
    return Status::FromErrno("instance store allocate", errno);
  }
  return Status::OK();
}

Status ScratchVolume::Flush() {
  return fdatasync(fd_) == 0 ? Status::OK() : Status::FromErrno("instance store flush", errno);
}

Status ScratchVolume::Trim(uint64_t offset_bytes, uint64_t length_bytes) {
  return Punch(offset_bytes, length_bytes);
}

Result<std::vector<Extent>> ScratchVolume::BlockStatus(uint64_t offset_bytes,
                                                       uint64_t length_bytes) {
  if (length_bytes == 0 || offset_bytes >= size_bytes_ ||
      length_bytes > size_bytes_ - offset_bytes) {
    return Status::OutOfRange("block status range [" + std::to_string(offset_bytes) + ", +" +
                              std::to_string(length_bytes) + ") is outside " + id_);
  }
  // The file system's own map: SEEK_DATA / SEEK_HOLE walk it without reading data.
  std::vector<Extent> out;
  const uint64_t end = offset_bytes + length_bytes;
  uint64_t pos = offset_bytes;
  while (pos < end && out.size() < kMaxBlockStatusChunks) {
    off_t data = lseek(fd_, static_cast<off_t>(pos), SEEK_DATA);
    uint64_t data_at = data < 0 ? end : std::min<uint64_t>(end, static_cast<uint64_t>(data));
    if (data_at > pos) {
      out.push_back(Extent{pos, data_at - pos, true});
      pos = data_at;
      continue;
    }
    off_t hole = lseek(fd_, static_cast<off_t>(pos), SEEK_HOLE);
    uint64_t hole_at = hole < 0 ? end : std::min<uint64_t>(end, static_cast<uint64_t>(hole));
    hole_at = std::max(hole_at, pos + 1);
    out.push_back(Extent{pos, hole_at - pos, false});
    pos = hole_at;
  }
  return out;
}

void ScratchVolume::Submit(EventLoop* loop, IoRequest* request) {
  STRATA_CHECK(request->callback != nullptr);
  auto finish_later = [loop, request](Status s) {
    loop->Defer([request, s] { request->callback(request, s); });  // never re-enter the caller
  };
  request->hole_bytes = 0;
  Status range = request->kind == IoRequest::Kind::kFlush
                     ? Status::OK()
                     : CheckRange(request->offset_bytes, request->length_bytes);
  if (request->kind == IoRequest::Kind::kFlush) {
    finish_later(Flush());  // metadata and data of one file: short, and rare
    return;
  }
  if (!range.ok() || request->length_bytes == 0) {
    finish_later(range);
    return;
  }
  if (request->kind == IoRequest::Kind::kTrim) {
    finish_later(Trim(request->offset_bytes, request->length_bytes));
    return;
  }
  if (request->kind == IoRequest::Kind::kWriteZeroes) {
    finish_later(WriteZeroes(request->offset_bytes, request->length_bytes,
                             (request->flags & IoRequest::kNoHole) != 0, false));
    return;
  }
  if (request->data == nullptr) {
    finish_later(Status::InvalidArgument("read/write without a buffer"));
    return;
  }
  const bool read = request->kind == IoRequest::Kind::kRead;
  if (!UnitAligned(request->offset_bytes, request->length_bytes)) {  // rare: partial units
    std::span<std::byte> bytes(request->data, request->length_bytes);
    finish_later(read ? Read(request->offset_bytes, bytes)
                      : Write(request->offset_bytes, bytes, false));
    return;
  }
  STRATA_CHECK(std::strcmp(loop->engine()->name(), "sim") != 0);  // fds, not simulated files
  ScratchRequest* sr = TakeRequest();
  sr->request = request;
  sr->loop = loop;
  std::byte* buf = request->data;
  if (read) {
    sr->decrypt = cipher_.get();
  } else {
    buf = sr->Bounce(request->length_bytes);
    Status s =
        cipher_->Encrypt(request->offset_bytes / kUnit, request->data, buf, request->length_bytes);
    if (!s.ok()) {
      GiveRequest(sr);
      finish_later(s);
      return;
    }
  }
  const int fd = FdFor(request->offset_bytes, request->length_bytes, buf);
  const uint64_t n_ops = (request->length_bytes + kMaxOpBytes - 1) / kMaxOpBytes;
  sr->ops.resize(n_ops);
  sr->pending = n_ops;
  for (uint64_t i = 0; i < n_ops; i++) {
    IoOp& op = sr->ops[i];
    op = IoOp{};  // a recycled op keeps the engine's progress of its last use
    const uint64_t at = i * kMaxOpBytes;
    op.kind = read ? IoOp::Kind::kRead : IoOp::Kind::kWrite;
    op.file = fd;
    op.buf = buf + at;
    op.length_bytes =
        static_cast<uint32_t>(std::min<uint64_t>(kMaxOpBytes, request->length_bytes - at));
    op.offset_bytes = request->offset_bytes + at;
    op.done = OnScratchIo;
    op.ctx = sr;
  }
  for (IoOp& op : sr->ops) {
    loop->engine()->Submit(&op);
  }
}

}  // namespace strata
