// Garbage collection: mark what manifests and lazy restores reach, sweep the rest, under the
// lease (docs/remote-format.md "Garbage collection").
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/remote.h"

#include "remote/remote_format.h"
#include "remote/remote_parts.h"
#include "remote/s3_client.h"
#include "util/check.h"
#include "util/json_text.h"

namespace strata::remote {

using nlohmann::json;

Result<bool> Collector::ReadPushLeftovers(std::set<Hash>* orphans,
                                          std::vector<std::string>* settled) {
  auto add_packs = [orphans](const json& j, const char* field) {
    auto it = j.is_object() ? j.find(field) : j.end();
    for (size_t i = 0; it != j.end() && it->is_array() && i < it->size(); i++) {
      Hash h;
      if ((*it)[i].is_string() && remote::ParseHex((*it)[i].get<std::string>(), &h)) {
        orphans->insert(h);
      }
    }
  };
  for (const char* prefix : {remote::kPendingPrefix, remote::kOrphansPrefix}) {
    const bool markers = std::string(prefix) == remote::kPendingPrefix;
    STRATA_ASSIGN_OR_RETURN(auto keys, bucket_->ListAll(prefix));
    for (const auto& [key, size] : keys) {
      auto bytes = bucket_->store()->Get(
          key);  // (a GC's journal names every pack it dooms: the default cap)
      if (bytes.status().code() == Status::Code::kNotFound) {
        continue;  // a push finished since the listing
      }
      STRATA_RETURN_IF_ERROR(bytes.status());
      json j = json::parse(*bytes, nullptr, false);
      if (markers &&
          bucket_->NowMs() - IntField(j, "heartbeat_ms") < bucket_->tuning().pending_stale_ms) {
        return true;  // alive: it may be reusing any pack
      }
      add_packs(j, markers ? "in_flight" : "packs");
      add_packs(j, "orphans");
      settled->push_back(key);
    }
  }
  return false;
}

// Adds what the manifest's tree reaches. A node already marked is not walked again: nodes are
// content-addressed, so its subtree is marked too (the mark is O(distinct nodes)).
Status Collector::Mark(const json& manifest, std::set<Hash>* nodes, std::set<Hash>* packs) {
  Hash root;
  if (StringField(manifest, "root").empty()) {
    return Status::OK();
  }
  if (!remote::ParseHex(StringField(manifest, "root"), &root)) {
    return Status::Corruption(bucket_->Name() + ": manifest of " +
                              StringField(manifest, "snapshot_id") + ": bad root");
  }
  std::vector<std::pair<uint32_t, Hash>> stack = {{UintField(manifest, "depth"), root}};
  std::map<Hash, std::set<uint64_t>> spanning;
  while (!stack.empty()) {
    auto [level, hash] = stack.back();
    stack.pop_back();
    if (!nodes->insert(hash).second) {
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(Node n, bucket_->GetNode(hash));
    if (n.level != level || (level == 0 && !n.children.empty())) {
      return Status::Corruption(bucket_->Name() + ": tree node " + remote::HexOf(hash) +
                                " at the wrong level");
    }
    for (const auto& [slot, ref] : n.blocks) {
      packs->insert(ref.pack);
      if (remote::Spans(ref)) {
        spanning[ref.pack].insert(ref.offset);
      }
    }
    for (const auto& [slot, child] : n.children) {
      stack.emplace_back(level - 1, child);
    }
  }
  return MarkBorrowed(spanning, packs);
}

// A pack holding spanning blocks is indexed (a tree reaches it): its index says where their
// borrowed pieces are. Its blocks no tree reaches borrow nothing that is kept for them.
Status Collector::MarkBorrowed(const std::map<Hash, std::set<uint64_t>>& spanning,
                               std::set<Hash>* packs) {
  for (const auto& [pack, offsets] : spanning) {
    auto known = borrowed_.find(pack);
    if (known == borrowed_.end()) {
      const std::string key = remote::IndexKey(pack);
      STRATA_ASSIGN_OR_RETURN(std::string bytes, bucket_->store()->Get(key));
      STRATA_ASSIGN_OR_RETURN(std::vector<IndexEntry> entries, remote::DecodeIndex(bytes, key));
      std::map<uint64_t, std::vector<Hash>> from;
      for (const IndexEntry& e : entries) {
        if (!remote::Spans(e.ref)) {
          continue;
        }
        std::vector<Hash>& borrowed = from[e.ref.offset];
        for (const auto& [piece, place] : e.pieces.borrowed) {
          borrowed.push_back(place.pack);
        }
      }
      known = borrowed_.emplace(pack, std::move(from)).first;
    }
    for (uint64_t offset : offsets) {
      auto it = known->second.find(offset);
      if (it == known->second.end()) {
        return Status::Corruption(bucket_->Name() + ": a spanning block of pack " +
                                  remote::HexOf(pack) + " is not in its index (damaged index)");
      }
      packs->insert(it->second.begin(), it->second.end());
    }
  }
  return Status::OK();
}

// Lazy restores under way elsewhere keep their trees (their snapshot may be deleted meanwhile);
// markers whose heartbeat stopped are dropped with the other leftovers.
Status Collector::MarkRestores(std::set<Hash>* nodes, std::set<Hash>* packs,
                               std::vector<std::string>* settled) {
  STRATA_ASSIGN_OR_RETURN(auto markers, bucket_->ListAll(remote::kRestoringPrefix));
  for (const auto& [key, size] : markers) {
    auto bytes = bucket_->store()->Get(key, kMaxManifestBytes);
    if (bytes.status().code() == Status::Code::kNotFound) {
      continue;  // finished since the listing
    }
    STRATA_RETURN_IF_ERROR(bytes.status());
    json j = json::parse(*bytes, nullptr, false);
    if (!j.is_object() ||
        bucket_->NowMs() - IntField(j, "heartbeat_ms") >= bucket_->tuning().pending_stale_ms) {
      settled->push_back(key);
      continue;
    }
    Status marked = Mark(j, nodes, packs);
    if (marked.code() == Status::Code::kNotFound) {
      settled->push_back(key);  // its tree is gone already: that restore cannot finish
      continue;
    }
    STRATA_RETURN_IF_ERROR(marked);
  }
  return Status::OK();
}

// Mark and sweep, under the lease: whatever no manifest reaches goes, indexes before their packs
// (a push never picks a pack again once its index is gone). Only metadata is listed: snapshots/,
// index/, nodes/, pending/ and orphans/, never packs/.
Status Collector::Run(GcStats* stats) {
  STRATA_CHECK(lease_->until_ms() > 0);  // the caller took the lease (expiry: DeleteUnderLease)
  std::set<Hash> orphans;
  std::vector<std::string> settled;
  STRATA_ASSIGN_OR_RETURN(bool push_alive, ReadPushLeftovers(&orphans, &settled));
  if (push_alive) {
    stats->deferred = true;  // a push may be reusing any pack: free them another time
    return Status::OK();
  }
  std::set<Hash> keep_nodes, keep_packs;
  STRATA_RETURN_IF_ERROR(MarkRestores(&keep_nodes, &keep_packs, &settled));
  STRATA_RETURN_IF_ERROR(MarkManifests(&keep_nodes, &keep_packs));
  Sweep sweep;
  STRATA_RETURN_IF_ERROR(PlanSweep(keep_nodes, keep_packs, std::move(orphans), &sweep, stats));
  // What the sweep turns on, always checked: nothing a live manifest or restore reaches goes.
  for (const Hash& h : sweep.packs) {
    STRATA_CHECK(keep_packs.count(h) == 0);
  }
  AddPackSizes(&sweep, stats);
  return DeleteUnderLease(sweep, std::move(settled));
}

Status Collector::MarkManifests(std::set<Hash>* keep_nodes, std::set<Hash>* keep_packs) {
  STRATA_ASSIGN_OR_RETURN(auto manifests, bucket_->ListAll(remote::kManifestPrefix));
  for (const auto& [key, size] : manifests) {
    auto m = bucket_->GetManifest(key.substr(std::strlen(remote::kManifestPrefix)));
    if (m.status().code() == Status::Code::kNotFound) {
      continue;  // (no push runs, and deletes hold the lease: cannot happen, but harmless)
    }
    STRATA_RETURN_IF_ERROR(m.status());
    STRATA_RETURN_IF_ERROR(Mark(*m, keep_nodes, keep_packs));
  }
  return Status::OK();
}

// Indexes whose packs nothing keeps, orphaned packs (a dead push's, never indexed) that nothing
// keeps either, and unreached nodes. Only metadata is listed: index/ and nodes/.
Status Collector::PlanSweep(const std::set<Hash>& keep_nodes, const std::set<Hash>& keep_packs,
                            std::set<Hash> orphans, Sweep* sweep, GcStats* stats) {
  STRATA_ASSIGN_OR_RETURN(auto index_keys, bucket_->ListAll(remote::kIndexPrefix));
  for (const auto& [key, size] : index_keys) {
    Hash h;
    if (!remote::ParseHex(key.substr(std::strlen(remote::kIndexPrefix)), &h)) {
      continue;  // not ours
    }
    orphans.erase(h);  // indexed: judged by the mark below, not as an orphan
    if (!keep_packs.count(h)) {
      sweep->indexes.push_back(key);
      sweep->packs.push_back(h);
    }
  }
  std::erase_if(orphans, [&](const Hash& h) { return keep_packs.count(h) != 0; });
  stats->orphans_deleted = orphans.size();
  stats->packs_deleted = sweep->packs.size();
  sweep->packs.insert(sweep->packs.end(), orphans.begin(), orphans.end());
  STRATA_ASSIGN_OR_RETURN(auto node_keys, bucket_->ListAll(remote::kNodePrefix));
  for (const auto& [key, size] : node_keys) {
    Hash h;
    const size_t slash = key.rfind('/');
    if (remote::ParseHex(key.substr(slash + 1), &h) && !keep_nodes.count(h)) {
      sweep->keys.push_back(key);
      stats->nodes_deleted++;
      stats->bytes_freed += size;
    }
  }
  return Status::OK();
}

// Packs are never listed (there may be millions): a HEAD each tells its size.
void Collector::AddPackSizes(Sweep* sweep, GcStats* stats) {
  std::vector<S3Request> heads(sweep->packs.size());
  std::vector<S3Request*> batch;
  for (size_t i = 0; i < heads.size(); i++) {
    heads[i].method = S3Request::Method::kHead;
    heads[i].key = remote::PackKey(sweep->packs[i]);
    batch.push_back(&heads[i]);
  }
  bucket_->store()->Run(batch);
  for (const S3Request& r : heads) {
    auto it = r.response_headers.find("content-length");
    if (r.status.ok() && it != r.response_headers.end()) {
      stats->bytes_freed += std::strtoull(it->second.c_str(), nullptr, 10);
    }
    sweep->keys.push_back(r.key);
  }
}

// Every delete is made while the lease holds: checked before each batch (a GC that outlives it
// stops; a journal names the packs it had doomed, for the next GC).
Status Collector::DeleteUnderLease(const Sweep& sweep, std::vector<std::string> settled) {
  bool deleted = false;
  auto lease_holds = [&] {
    return lease_->Holds() ? Status::OK()
                           : Status::Busy(bucket_->Name() +
                                          ": garbage collection outlived its "
                                          "lease; " +
                                          (deleted ? "it stopped (the next "
                                                     "collection finishes)"
                                                   : "nothing was deleted"));
  };
  STRATA_RETURN_IF_ERROR(lease_holds());
  if (!sweep.packs.empty()) {
    // A journal first: a GC killed after it dropped an index but before the pack leaves the pack
    // named here, for the next GC (an index-less pack is invisible to the index/ listing).
    json journal = {{"packs", json::array()}};
    for (const Hash& h : sweep.packs) {
      journal["packs"].push_back(remote::HexOf(h));
    }
    const std::string bytes = DumpJson(journal);
    const std::string key =
        std::string(remote::kOrphansPrefix) + "gc-" + std::to_string(bucket_->NowMs());
    STRATA_RETURN_IF_ERROR(bucket_->store()->Put(key, bytes.data(), bytes.size()));
    settled.push_back(key);
  }
  const std::vector<std::string>* batches[] = {&sweep.indexes, &sweep.keys, &settled};
  for (const std::vector<std::string>* keys : batches) {
    STRATA_RETURN_IF_ERROR(lease_holds());
    deleted = true;
    STRATA_RETURN_IF_ERROR(bucket_->store()->DeleteMany(*keys));
  }
  return Status::OK();
}

}  // namespace strata::remote
