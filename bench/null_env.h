// NullEnv: an Env whose files hold nothing (writes vanish, reads return zeros, syncs are free).
// The map benchmarks use it to map 64 GiB of chunks in seconds and measure only the metadata
// path: chunk lock, overlay/LMDB lookup, group commit.
#ifndef STRATA_BENCH_NULL_ENV_H_
#define STRATA_BENCH_NULL_ENV_H_

#include <cstring>
#include <mutex>
#include <vector>

#include "strata/env.h"

#include "io/inline_engine.h"

namespace strata {

class NullEnv final : public Env {
 public:
  Result<FileId> OpenFile(const std::string&, bool, bool) override {
    std::lock_guard<std::mutex> lock(mu_);
    sizes_.push_back(0);
    return static_cast<FileId>(sizes_.size() - 1);
  }
  Status CloseFile(FileId) override { return Status::OK(); }
  Result<uint64_t> FileSize(FileId f) override {
    std::lock_guard<std::mutex> lock(mu_);
    return sizes_[f];
  }
  Result<uint64_t> AllocatedBytes(FileId) override { return uint64_t{0}; }
  Status Truncate(FileId f, uint64_t size) override {
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[f] = size;
    return Status::OK();
  }
  Status Sync(FileId) override { return Status::OK(); }
  Status PunchHole(FileId, uint64_t, uint64_t) override { return Status::OK(); }
  Status ReadSync(FileId, void* buf, size_t len, uint64_t) override {
    std::memset(buf, 0, len);
    return Status::OK();
  }
  Status WriteSync(FileId, const void*, size_t, uint64_t) override { return Status::OK(); }
  Result<std::unique_ptr<IoEngine>> NewEngine(uint32_t) override {
    return std::unique_ptr<IoEngine>(new Engine());
  }

 private:
  class Engine final : public InlineEngine {
   public:
    const char* name() const override { return "null"; }

   protected:
    int32_t Execute(IoOp* op) override {
      if (op->kind == IoOp::Kind::kRead) {
        std::memset(op->buf, 0, op->length_bytes);
      }
      return op->kind == IoOp::Kind::kSync ? 0 : static_cast<int32_t>(op->length_bytes);
    }
  };
  std::mutex mu_;
  std::vector<uint64_t> sizes_;
};

}  // namespace strata

#endif  // STRATA_BENCH_NULL_ENV_H_
