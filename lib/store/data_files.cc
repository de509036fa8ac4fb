#include "store/data_files.h"

#include <algorithm>
#include <cstdio>

#include "util/check.h"

namespace strata {

DataFiles::DataFiles(Env* env, std::string dir, uint32_t chunk_size_bytes, bool want_direct_io)
    : env_(env),
      dir_(std::move(dir)),
      chunk_size_(chunk_size_bytes),
      chunks_per_file_(kDataFileBytes / chunk_size_bytes),
      want_direct_io_(want_direct_io) {
  for (auto& f : files_) {
    f.store(-1, std::memory_order_relaxed);
  }
}

DataFiles::~DataFiles() {
  for (FileId f : Files()) {
    (void)env_->CloseFile(f);
  }
}

std::string DataFiles::PathOf(size_t index) const {
  char name[32];
  std::snprintf(name, sizeof(name), "/data.%04zu", index);
  return dir_ + name;
}

Status DataFiles::OpenThrough(uint64_t frontier) {
  const size_t needed =
      frontier == 0 ? 1 : static_cast<size_t>((frontier - 1) / chunks_per_file_ + 1);
  if (needed > kMaxDataFiles) {
    return Status::Corruption("pool header's frontier (" + std::to_string(frontier) +
                              " chunks) is past the " + std::to_string(kMaxDataFiles) +
                              " data files a pool can have");
  }
  MutexLock lock(&mu_);
  STRATA_CHECK(count_ == 0);
  // The scan stops at the first missing file past those needed, and at kMaxDataFiles.
  for (size_t i = 0; i < kMaxDataFiles; i++) {
    const std::string path = PathOf(i);
    STRATA_ASSIGN_OR_RETURN(bool exists, env_->FileExists(path));
    if (i >= needed && !exists) {
      break;
    }
    STRATA_ASSIGN_OR_RETURN(FileId f, env_->OpenFile(path, /*create=*/true, want_direct_io_));
    const uint64_t first = i * chunks_per_file_;
    const uint64_t keep = frontier > first ? std::min(frontier - first, chunks_per_file_) : 0;
    Status cut = env_->Truncate(f, keep * chunk_size_);
    if (!cut.ok() || i >= needed) {  // past the frontier: nothing in it is live
      (void)env_->CloseFile(f);
      STRATA_RETURN_IF_ERROR(cut);
      continue;
    }
    files_[i].store(f, std::memory_order_release);
    sizes_[i] = keep * chunk_size_;
    count_ = i + 1;
  }
  direct_io_.store(env_->DirectIo(files_[0].load(std::memory_order_relaxed)),
                   std::memory_order_relaxed);
  return Status::OK();
}

Status DataFiles::Ensure(uint64_t phys) {
  const size_t index = static_cast<size_t>(phys / chunks_per_file_);
  if (index >= kMaxDataFiles) {
    return Status::NoSpace("pool address space exhausted");
  }
  MutexLock lock(&mu_);
  while (count_ <= index) {
    STRATA_ASSIGN_OR_RETURN(FileId f, env_->OpenFile(PathOf(count_), true, want_direct_io_));
    // Past the frontier, so nothing in it is live; a leftover's bytes must never be read as a new
    // chunk's unwritten part.
    Status emptied = env_->Truncate(f, 0);
    if (!emptied.ok()) {
      (void)env_->CloseFile(f);
      return emptied;
    }
    files_[count_].store(f, std::memory_order_release);
    sizes_[count_] = 0;
    count_++;
  }
  const uint64_t end = OffsetOf(phys) + chunk_size_;
  if (end > sizes_[index]) {
    const uint64_t size = std::min(kDataFileBytes, end + kFileSizeAheadBytes);
    STRATA_RETURN_IF_ERROR(env_->Truncate(files_[index].load(std::memory_order_relaxed), size));
    sizes_[index] = size;
  }
  return Status::OK();
}

FileId DataFiles::FileOf(uint64_t phys) const {
  const FileId f = files_[phys / chunks_per_file_].load(std::memory_order_acquire);
  STRATA_CHECK(f >= 0);
  return f;
}

std::vector<FileId> DataFiles::Files() const {
  MutexLock lock(&mu_);
  std::vector<FileId> out;
  out.reserve(count_);
  for (size_t i = 0; i < count_; i++) {
    out.push_back(files_[i].load(std::memory_order_relaxed));
  }
  return out;
}

}  // namespace strata
