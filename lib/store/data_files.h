// DataFiles: a pool's chunk files (POOL/data.0000 .. data.1023, each the address space of
// kDataFileBytes of chunks) and where a physical chunk lives in them (docs/on-disk-format.md).
//
// Thread-safety: FileOf and OffsetOf from any thread without a lock (a file's descriptor is
// published, release-ordered, before any chunk in it is handed out). Everything else is
// thread-safe through the class's own mutex, a leaf: it is taken under the pool mutex, never the
// other way round, and no I/O but a truncate or an open runs under it.
#ifndef STRATA_STORE_DATA_FILES_H_
#define STRATA_STORE_DATA_FILES_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "strata/env.h"

#include "util/mutex.h"

namespace strata {

constexpr uint64_t kDataFileBytes = 1ull << 40;  // address space of one chunk file
constexpr size_t kMaxDataFiles = 1024;           // 1 PiB of chunk addresses
// Data files are kept this far (sparse) past the frontier: a first write then fills a hole
// instead of extending the file, which ext4 serializes for O_DIRECT.
constexpr uint64_t kFileSizeAheadBytes = 1ull << 30;

class DataFiles {
 public:
  DataFiles(Env* env, std::string dir, uint32_t chunk_size_bytes, bool want_direct_io);
  ~DataFiles();  // closes every file
  DataFiles(const DataFiles&) = delete;
  DataFiles& operator=(const DataFiles&) = delete;

  // At open: opens the files the committed frontier reaches, cut back to it; files past it (an
  // allocation whose commit a crash lost) are emptied and closed. Bounded by kMaxDataFiles.
  // Errors: Corruption (a frontier past 1 PiB), IOError.
  Status OpenThrough(uint64_t frontier_chunks) EXCLUDES(mu_);
  // Makes chunk `phys` writable: opens (emptied) the files up to it and extends its file's
  // logical size (sparse) to cover it. Errors: NoSpace (past 1 PiB), IOError.
  Status Ensure(uint64_t phys) EXCLUDES(mu_);

  FileId FileOf(uint64_t phys) const;
  uint64_t OffsetOf(uint64_t phys) const { return (phys % chunks_per_file_) * chunk_size_; }
  // Whether two chunks are in the same file (one punch or write may cover both).
  bool SameFile(uint64_t a, uint64_t b) const {
    return a / chunks_per_file_ == b / chunks_per_file_;
  }
  // The open files, for syncs and space accounting.
  std::vector<FileId> Files() const EXCLUDES(mu_);
  // Whether O_DIRECT took on this host (set by OpenThrough).
  bool direct_io() const { return direct_io_.load(std::memory_order_relaxed); }

 private:
  std::string PathOf(size_t index) const;

  Env* const env_;
  const std::string dir_;
  const uint32_t chunk_size_;
  const uint64_t chunks_per_file_;
  const bool want_direct_io_;
  std::atomic<bool> direct_io_{false};
  std::array<std::atomic<FileId>, kMaxDataFiles> files_;  // -1 until open
  mutable Mutex mu_;
  std::array<uint64_t, kMaxDataFiles> sizes_ GUARDED_BY(mu_){};  // logical sizes set (sparse)
  size_t count_ GUARDED_BY(mu_) = 0;                             // files_[0, count_) are open
};

}  // namespace strata

#endif  // STRATA_STORE_DATA_FILES_H_
