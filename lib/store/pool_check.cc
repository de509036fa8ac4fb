#include "store/pool_check.h"

#include <algorithm>
#include <set>

namespace strata {

CheckReport PoolCheck::Run() {
  CheckRecords();
  ScanVersions();
  CheckLiveness();
  CheckChangeIndex();
  CheckSpace();
  return std::move(report_);
}

void PoolCheck::Problem(std::string text) {
  if (report_.problems.size() < kMaxProblems) {
    report_.problems.push_back(std::move(text));
  }
}

void PoolCheck::CheckRecords() {
  for (const auto& [lineage, st] : view_.lineages) {
    bounds_[lineage] = {st.frozen_head, 0};
    if (st.parent != 0 && view_.lineages.count(st.parent) == 0) {
      Problem("clone lineage " + std::to_string(lineage) + " has no source");
    }
  }
  for (const auto& [id, rec] : view_.volumes) {
    auto bound = bounds_.find(rec.info.lineage);
    if (bound == bounds_.end()) {
      Problem("volume " + id + " has no lineage");
      continue;
    }
    bound->second = {rec.info.head_epoch, rec.info.size_bytes};
    report_.volumes++;
  }
  std::set<uint64_t> cloned;  // lineages some clone reads through (at a size no record keeps)
  for (const auto& [lineage, st] : view_.lineages) {
    cloned.insert(st.parent);
  }
  for (const auto& [id, rec] : view_.snapshots) {
    auto bound = bounds_.find(rec.info.lineage);
    if (bound == bounds_.end() ||
        rec.info.epoch >= std::max<uint64_t>(bound->second.first, 1) + 1) {
      Problem("snapshot " + id + " has no lineage or a future epoch");
      continue;
    }
    if (view_.lineages.at(rec.info.lineage).volume_id.empty() &&
        cloned.count(rec.info.lineage) == 0) {
      bound->second.second = std::max(bound->second.second, rec.info.volume_size_bytes);
    }
  }
}

void PoolCheck::ScanVersions() {
  const uint64_t frontier = view_.alloc.frontier();
  chunk_state_.assign(frontier, 0);
  Status s = view_.meta->ForEachVersion([&](const MapKey& k, const MapValue& v) -> Status {
    report_.versions++;
    keys_.push_back(k);
    kinds_.push_back(v.tombstone() ? kTombstone : v.partial() ? kPartial : kData);
    if (v.partial() && (v.present & ~view_.all_units) != 0) {
      Problem("partial version of chunk " + std::to_string(k.chunk) + " names units past it");
    }
    auto bound = bounds_.find(k.lineage);
    if (bound == bounds_.end()) {
      Problem("map entry for unknown lineage " + std::to_string(k.lineage));
    } else if (k.birth == 0 || k.birth > bound->second.first) {
      Problem("version born at epoch " + std::to_string(k.birth) + " after the head of lineage " +
              std::to_string(k.lineage));
    } else if (bound->second.second != 0 &&
               k.chunk * view_.chunk_size_bytes >= bound->second.second) {
      Problem("version past the end of lineage " + std::to_string(k.lineage));
    }
    if (v.tombstone()) {
      return Status::OK();
    }
    report_.data_chunks++;
    if (v.phys >= frontier) {
      Problem("physical chunk " + std::to_string(v.phys) + " past the frontier");
    } else if (chunk_state_[v.phys] != 0) {
      Problem("physical chunk " + std::to_string(v.phys) + " mapped twice");
    } else {
      chunk_state_[v.phys] = 1;
    }
    return Status::OK();
  });
  if (!s.ok()) {
    Problem("scanning the map: " + s.ToString());
  }
}

void PoolCheck::CheckLiveness() {
  for (size_t i = 0; i < keys_.size(); i++) {
    auto lineage = view_.lineages.find(keys_[i].lineage);
    if (lineage != view_.lineages.end()) {  // (an unknown lineage is reported by the scan)
      CheckVersionLive(i, lineage->second);
    }
  }
}

void PoolCheck::CheckVersionLive(size_t i, const LineageState& lineage) {
  const MapKey& k = keys_[i];
  auto same_chunk = [&](size_t j) {
    return keys_[j].lineage == k.lineage && keys_[j].chunk == k.chunk;
  };
  const bool last = i + 1 == keys_.size() || !same_chunk(i + 1);
  const bool first = i == 0 || !same_chunk(i - 1);
  const uint64_t next_birth = last ? UINT64_MAX : keys_[i + 1].birth;
  auto pin = lineage.pins.lower_bound(k.birth);
  bool live = pin != lineage.pins.end() && pin->first < next_birth;
  auto volume =
      lineage.volume_id.empty() ? view_.volumes.end() : view_.volumes.find(lineage.volume_id);
  const bool has_head = volume != view_.volumes.end();
  if (has_head) {
    const uint64_t head = volume->second.info.head_epoch;
    live = live || (head >= k.birth && head < next_birth);
  }
  if (!live) {
    Problem("dead version (lineage " + std::to_string(k.lineage) + ", chunk " +
            std::to_string(k.chunk) + ", born " + std::to_string(k.birth) +
            "): no live epoch sees it");
  }
  // Over a whole data version: its own lineage's, or for a clone the source's (which it pins).
  if (kinds_[i] == kPartial &&
      (!last || !has_head || (first ? lineage.parent == 0 : kinds_[i - 1] != kData))) {
    Problem("partial version (lineage " + std::to_string(k.lineage) + ", chunk " +
            std::to_string(k.chunk) + ") is not the head's newest over a whole version");
  }
}

void PoolCheck::CheckChangeIndex() {
  size_t change_count = 0;
  Status s = view_.meta->ForEachChange([&](const MapKey& k) -> Status {
    change_count++;
    if (!std::binary_search(keys_.begin(), keys_.end(), k)) {
      Problem("change record without a map entry (lineage " + std::to_string(k.lineage) + ")");
    }
    return Status::OK();
  });
  if (!s.ok()) {
    Problem("scanning changes: " + s.ToString());
  }
  if (change_count != keys_.size()) {
    Problem("change index has " + std::to_string(change_count) + " records for " +
            std::to_string(keys_.size()) + " versions");
  }
}

void PoolCheck::CheckSpace() {
  const ChunkAllocator& alloc = view_.alloc;
  const uint64_t frontier = alloc.frontier();
  for (uint64_t p : alloc.AllFree()) {
    if (p >= frontier || chunk_state_[p] != 0) {
      Problem("free chunk " + std::to_string(p) +
              " is also mapped, past the frontier or twice free");
    } else {
      chunk_state_[p] = 2;
    }
  }
  const uint64_t accounted = report_.data_chunks + alloc.free_chunks() + alloc.pending_chunks();
  if (accounted != frontier) {
    Problem("space accounting: " + std::to_string(report_.data_chunks) + " mapped + " +
            std::to_string(alloc.free_chunks()) + " free + " +
            std::to_string(alloc.pending_chunks()) + " pending != frontier " +
            std::to_string(frontier));
  }
  if (!view_.overlay_empty) {
    Problem("uncommitted map changes remain after a flush");
  }
}

}  // namespace strata
