#include "io/sim_env.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>

#include "io/inline_engine.h"
#include "util/check.h"

namespace strata {

namespace {
constexpr uint64_t kPage = 4096;
constexpr uint64_t kSector = 512;
using Pages = std::map<uint64_t, std::vector<char>>;  // page index -> 4 KiB; absent = zeros

void ApplyWrite(Pages* pages, uint64_t* size, const char* buf, uint64_t len, uint64_t off) {
  for (uint64_t done = 0; done < len;) {
    uint64_t pos = off + done;
    uint64_t in_page = pos % kPage;
    uint64_t n = std::min(len - done, kPage - in_page);
    auto& page = (*pages)[pos / kPage];
    if (page.empty()) {
      page.assign(kPage, 0);
    }
    std::memcpy(page.data() + in_page, buf + done, n);
    done += n;
  }
  *size = std::max(*size, off + len);
}

void ApplyPunch(Pages* pages, uint64_t off, uint64_t len) {
  for (uint64_t pos = off; pos < off + len;) {
    uint64_t in_page = pos % kPage;
    uint64_t n = std::min(off + len - pos, kPage - in_page);
    auto it = pages->find(pos / kPage);
    if (it != pages->end()) {
      if (n == kPage) {
        pages->erase(it);
      } else {
        std::memset(it->second.data() + in_page, 0, n);
      }
    }
    pos += n;
  }
}

void ApplyTruncate(Pages* pages, uint64_t* size, uint64_t new_size) {
  if (new_size < *size) {
    ApplyPunch(pages, new_size, *size - new_size);
  }
  *size = new_size;
}
}  // namespace

struct SimEnv::Pending {
  enum Kind { kWrite, kPunch, kTruncate } kind;
  uint64_t offset;
  uint64_t length;
  std::vector<char> data;
};

struct SimEnv::File {
  Pages current;  // what reads see
  uint64_t current_size = 0;
  Pages durable;  // what survives a crash for sure
  uint64_t durable_size = 0;
  std::vector<Pending> unsynced;
  int open_count = 0;
};

class SimEngine final : public InlineEngine {
 public:
  explicit SimEngine(SimEnv* env) : env_(env) {}
  const char* name() const override { return "sim"; }

 protected:
  int32_t Execute(IoOp* op) override { return env_->Execute(op); }

 private:
  SimEnv* env_;
};

SimEnv::SimEnv(uint64_t seed) : rng_(seed) {}
SimEnv::~SimEnv() = default;

SimEnv::File* SimEnv::Lookup(FileId id) {
  STRATA_CHECK(id >= 0 && static_cast<size_t>(id) < open_.size() && open_[id] != nullptr);
  return open_[id];
}

Result<FileId> SimEnv::OpenFile(const std::string& path, bool create, bool /*direct*/) {
  MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) {
    if (!create) {
      return Status::NotFound("sim file " + path);
    }
    it = files_.emplace(path, std::make_unique<File>()).first;
  }
  it->second->open_count++;
  open_.push_back(it->second.get());
  return static_cast<FileId>(open_.size() - 1);
}

Result<bool> SimEnv::FileExists(const std::string& path) {
  {
    MutexLock lock(&mu_);
    if (files_.count(path) != 0) {
      return true;
    }
  }
  return Env::FileExists(path);
}

namespace {

class SimFileLock final : public Env::FileLock {
 public:
  explicit SimFileLock(std::function<void()> release) : release_(std::move(release)) {}
  ~SimFileLock() override { release_(); }

 private:
  std::function<void()> release_;
};

}  // namespace

Result<std::unique_ptr<Env::FileLock>> SimEnv::LockFile(const std::string& path) {
  MutexLock lock(&mu_);
  if (fail_locks_) {
    return Status::IOError("sim: lock " + path, EIO);
  }
  if (!locked_.insert(path).second) {
    return Status::Busy("in use by another process (sim lock " + path + ")");
  }
  return std::unique_ptr<FileLock>(new SimFileLock([this, path] {
    MutexLock relock(&mu_);
    locked_.erase(path);
  }));
}

uint64_t SimEnv::MonotonicNs() {
  return Env::MonotonicNs() + clock_skew_ns_.load(std::memory_order_relaxed);
}

int64_t SimEnv::WallClockMs() {
  return Env::WallClockMs() +
         static_cast<int64_t>(clock_skew_ns_.load(std::memory_order_relaxed) / 1'000'000);
}

void SimEnv::AdvanceClock(uint64_t ns) { clock_skew_ns_.fetch_add(ns); }

void SimEnv::SetLockFailure(bool fail) {
  MutexLock lock(&mu_);
  fail_locks_ = fail;
}

Status SimEnv::CloseFile(FileId file) {
  MutexLock lock(&mu_);
  Lookup(file)->open_count--;
  open_[file] = nullptr;
  return Status::OK();
}

Result<uint64_t> SimEnv::FileSize(FileId file) {
  MutexLock lock(&mu_);
  return Lookup(file)->current_size;
}

Result<uint64_t> SimEnv::AllocatedBytes(FileId file) {
  MutexLock lock(&mu_);
  return static_cast<uint64_t>(Lookup(file)->current.size()) * kPage;
}

bool SimEnv::ConsumeMutation() {
  if (dead_) {
    return false;
  }
  if (power_fail_after_ == 0) {
    dead_ = true;
    return false;
  }
  if (power_fail_after_ > 0) {
    power_fail_after_--;
  }
  return true;
}

Status SimEnv::Truncate(FileId file, uint64_t size_bytes) {
  MutexLock lock(&mu_);
  if (!ConsumeMutation()) {
    return Status::IOError("sim truncate: no power", EIO);
  }
  File* f = Lookup(file);
  ApplyTruncate(&f->current, &f->current_size, size_bytes);
  f->unsynced.push_back(Pending{Pending::kTruncate, size_bytes, 0, {}});
  return Status::OK();
}

Status SimEnv::Sync(FileId file) {
  MutexLock lock(&mu_);
  int32_t rc = DoSync(Lookup(file));
  return rc < 0 ? Status::IOError("sim fdatasync", -rc) : Status::OK();
}

Status SimEnv::PunchHole(FileId file, uint64_t offset_bytes, uint64_t length_bytes) {
  MutexLock lock(&mu_);
  int32_t rc = DoPunch(Lookup(file), offset_bytes, length_bytes);
  return rc < 0 ? Status::IOError("sim punch", -rc) : Status::OK();
}

Status SimEnv::ReadSync(FileId file, void* buf, size_t length_bytes, uint64_t offset_bytes) {
  MutexLock lock(&mu_);
  int32_t rc = DoRead(Lookup(file), static_cast<char*>(buf), length_bytes, offset_bytes);
  return rc < 0 ? Status::IOError("sim read", -rc) : Status::OK();
}

Status SimEnv::WriteSync(FileId file, const void* buf, size_t length_bytes, uint64_t offset_bytes) {
  MutexLock lock(&mu_);
  int32_t rc = DoWrite(Lookup(file), static_cast<const char*>(buf), length_bytes, offset_bytes);
  return rc < 0 ? Status::FromErrno("sim write", rc) : Status::OK();
}

Result<std::unique_ptr<IoEngine>> SimEnv::NewEngine(uint32_t /*queue_depth*/) {
  return std::unique_ptr<IoEngine>(new SimEngine(this));
}

int32_t SimEnv::Execute(IoOp* op) {
  MutexLock lock(&mu_);
  File* f = Lookup(op->file);
  switch (op->kind) {
    case IoOp::Kind::kRead:
      return DoRead(f, static_cast<char*>(op->buf), op->length_bytes, op->offset_bytes);
    case IoOp::Kind::kWrite:
      return DoWrite(f, static_cast<const char*>(op->buf), op->length_bytes, op->offset_bytes);
    case IoOp::Kind::kSync:
      return DoSync(f);
    case IoOp::Kind::kRecv:
    case IoOp::Kind::kSendMsg:
      return -EOPNOTSUPP;  // sockets never go through the simulated disk
  }
  return -EINVAL;
}

int32_t SimEnv::DoRead(File* f, char* buf, uint64_t len, uint64_t off) {
  if (dead_) {
    return -EIO;
  }
  for (uint64_t done = 0; done < len;) {
    uint64_t pos = off + done;
    uint64_t in_page = pos % kPage;
    uint64_t n = std::min(len - done, kPage - in_page);
    auto it = f->current.find(pos / kPage);
    if (it == f->current.end() || pos >= f->current_size) {
      std::memset(buf + done, 0, n);
    } else {
      std::memcpy(buf + done, it->second.data() + in_page, n);
    }
    done += n;
  }
  return static_cast<int32_t>(len);
}

int32_t SimEnv::DoWrite(File* f, const char* buf, uint64_t len, uint64_t off) {
  if (no_space_) {  // like a real file system: filling a hole needs a block, and there is none
    for (uint64_t page = off / kPage; page <= (off + len - 1) / kPage; page++) {
      if (f->current.count(page) == 0) {
        return -ENOSPC;
      }
    }
  }
  if (!ConsumeMutation()) {
    return -EIO;
  }
  ApplyWrite(&f->current, &f->current_size, buf, len, off);
  f->unsynced.push_back(Pending{Pending::kWrite, off, len, std::vector<char>(buf, buf + len)});
  return static_cast<int32_t>(len);
}

int32_t SimEnv::DoSync(File* f) {
  if (fail_syncs_ > 0) {
    fail_syncs_--;
    return -EIO;
  }
  if (!ConsumeMutation()) {
    return -EIO;
  }
  f->durable = f->current;
  f->durable_size = f->current_size;
  f->unsynced.clear();
  return 0;
}

int32_t SimEnv::DoPunch(File* f, uint64_t off, uint64_t len) {
  if (!ConsumeMutation()) {
    return -EIO;
  }
  ApplyPunch(&f->current, off, len);
  f->unsynced.push_back(Pending{Pending::kPunch, off, len, {}});
  return 0;
}

void SimEnv::SetPowerFailAfter(int64_t ops) {
  MutexLock lock(&mu_);
  power_fail_after_ = ops;
}

void SimEnv::FailNextSyncs(int count) {
  MutexLock lock(&mu_);
  fail_syncs_ = count;
}

void SimEnv::SetNoSpace(bool no_space) {
  MutexLock lock(&mu_);
  no_space_ = no_space;
}

uint64_t SimEnv::unsynced_ops() const {
  MutexLock lock(&mu_);
  uint64_t n = 0;
  for (const auto& [path, f] : files_) {
    n += f->unsynced.size();
  }
  return n;
}

void SimEnv::Crash() {
  MutexLock lock(&mu_);
  for (auto& [path, f] : files_) {
    STRATA_CHECK(f->open_count == 0);
    for (const Pending& op : f->unsynced) {
      uint64_t fate = rng_() % 3;  // 0: lost, 1: reached the disk, 2: torn (writes only)
      if (fate == 0) {
        continue;
      }
      if (op.kind == Pending::kPunch) {
        ApplyPunch(&f->durable, op.offset, op.length);
      } else if (op.kind == Pending::kTruncate) {
        ApplyTruncate(&f->durable, &f->durable_size, op.offset);
      } else if (fate == 1) {
        ApplyWrite(&f->durable, &f->durable_size, op.data.data(), op.length, op.offset);
      } else {
        for (uint64_t s = 0; s < op.length; s += kSector) {
          if (rng_() % 2 == 0) {
            ApplyWrite(&f->durable, &f->durable_size, op.data.data() + s,
                       std::min(kSector, op.length - s), op.offset + s);
          }
        }
      }
    }
    f->unsynced.clear();
    f->current = f->durable;
    f->current_size = f->durable_size;
  }
  dead_ = false;
  power_fail_after_ = -1;
  fail_syncs_ = 0;
  no_space_ = false;
}

}  // namespace strata
