#include "store/space.h"

#include <algorithm>
#include <utility>

#include "util/check.h"

namespace strata {

Space::Space(Env* env, std::string dir, uint32_t chunk_size_bytes, bool want_direct_io)
    : env_(env),
      chunk_size_(chunk_size_bytes),
      files_(env, std::move(dir), chunk_size_bytes, want_direct_io) {}

Status Space::Open(uint64_t frontier, uint64_t capacity_chunks, const std::vector<bool>& used) {
  STRATA_CHECK(used.size() == frontier);
  STRATA_RETURN_IF_ERROR(files_.OpenThrough(frontier));
  std::vector<uint64_t> free_chunks;
  for (uint64_t p = 0; p < frontier; p++) {
    if (!used[p]) {
      free_chunks.push_back(p);
    }
  }
  {
    MutexLock lock(&mu_);
    STRATA_CHECK(!alloc_);  // opened once
    alloc_.emplace(frontier, capacity_chunks, std::vector<uint64_t>{});
    frontier_.store(frontier, std::memory_order_release);
  }
  PunchFreed(std::move(free_chunks));
  STRATA_RETURN_IF_ERROR(Sync());
  MutexLock lock(&mu_);
  alloc_->AddClean(alloc_->TakePunched());  // the sync above made the punches durable
  return Status::OK();
}

std::optional<ChunkAllocator::Grant> Space::Allocate(bool prefer_dirty) {
  std::optional<ChunkAllocator::Grant> grant;
  {
    MutexLock lock(&mu_);
    grant = alloc_->Allocate(prefer_dirty);
    frontier_.store(alloc_->frontier(), std::memory_order_release);
  }
  if (!grant) {
    return std::nullopt;
  }
  if (!files_.Ensure(grant->phys).ok()) {  // a truncate, under DataFiles' lock only
    ReturnUnmapped(grant->phys);
    return std::nullopt;
  }
  ClearZeroUnits(grant->phys, UINT32_MAX);  // a new life for the chunk
  return grant;
}

void Space::ReturnUnmapped(uint64_t phys) {
  MutexLock lock(&mu_);
  alloc_->ReturnUnmapped(phys);
}

void Space::FreeAfterCommit(uint64_t phys, bool by_trim) {
  MutexLock lock(&mu_);
  alloc_->FreeAfterCommit(phys, by_trim);
}

bool Space::FreesPending() const {
  MutexLock lock(&mu_);
  return alloc_->pending_chunks() > 0;
}

Space::CommitCut Space::TakeForCommit() {
  CommitCut cut;
  MutexLock lock(&mu_);
  cut.freed = alloc_->TakePending(&cut.trimmed);
  cut.punched = alloc_->TakePunched();
  cut.frontier = alloc_->frontier();
  return cut;
}

void Space::Uncommitted(const CommitCut& cut) {
  MutexLock lock(&mu_);
  alloc_->RestorePending(cut.freed, cut.trimmed);
  alloc_->AddPunched(cut.punched);
}

std::vector<uint64_t> Space::Committed(CommitCut cut, size_t warm_reserve) {
  MutexLock lock(&mu_);
  alloc_->AddClean(cut.punched);  // their punch is covered by this commit's data sync
  size_t keep = 0;
  if (alloc_->dirty_chunks() < warm_reserve) {
    keep = std::min(cut.freed.size(), warm_reserve - alloc_->dirty_chunks());
  }
  const auto split = cut.freed.end() - static_cast<long>(keep);
  alloc_->AddDirty(std::vector<uint64_t>(split, cut.freed.end()));
  cut.freed.erase(split, cut.freed.end());
  return std::move(cut.freed);
}

void Space::PunchFreed(std::vector<uint64_t> chunks) {
  if (chunks.empty()) {
    return;
  }
  std::sort(chunks.begin(), chunks.end());
  std::vector<uint64_t> ok, failed;
  for (size_t i = 0; i < chunks.size();) {
    size_t j = i + 1;
    while (j < chunks.size() && chunks[j] == chunks[j - 1] + 1 &&
           files_.SameFile(chunks[j], chunks[i])) {
      j++;
    }
    Status s = env_->PunchHole(FileOf(chunks[i]), OffsetOf(chunks[i]), (j - i) * chunk_size_);
    std::vector<uint64_t>& into = s.ok() ? ok : failed;
    into.insert(into.end(), chunks.begin() + static_cast<long>(i),
                chunks.begin() + static_cast<long>(j));
    i = j;
  }
  MutexLock lock(&mu_);
  alloc_->AddPunched(ok);
  alloc_->AddDirty(failed);
}

bool Space::PunchTrimmedEarly(const std::vector<uint64_t>& trimmed) {
  bool punched = false;
  for (uint64_t p : trimmed) {
    punched = env_->PunchHole(FileOf(p), OffsetOf(p), chunk_size_).ok() || punched;
  }
  return punched;
}

Status Space::Sync() {
  for (FileId f : files_.Files()) {
    STRATA_RETURN_IF_ERROR(env_->Sync(f));
  }
  return Status::OK();
}

void Space::AddZeroUnits(uint64_t phys, uint32_t units) {
  MutexLock lock(&zero_mu_);
  zero_hints_any_.store(true);
  zero_hints_.Add(phys, units);
}

void Space::ClearZeroUnits(uint64_t phys, uint32_t units) {
  if (zero_hints_any_.load()) {
    MutexLock lock(&zero_mu_);
    zero_hints_.Clear(phys, units);
  }
}

uint32_t Space::ZeroUnits(uint64_t phys) const {
  if (!zero_hints_any_.load()) {
    return 0;
  }
  MutexLock lock(&zero_mu_);
  return zero_hints_.Get(phys);
}

Space::Usage Space::usage() const {
  MutexLock lock(&mu_);
  return Usage{alloc_->used_chunks(), alloc_->free_chunks(), alloc_->frontier()};
}

ChunkAllocator Space::AllocatorCopy() const {
  MutexLock lock(&mu_);
  return *alloc_;
}

}  // namespace strata
