#include "meta/meta_store.h"

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "util/check.h"
#include "util/coding.h"

namespace strata {

namespace {
constexpr char kMagic[] = "strata-pool";
constexpr size_t kKeyBytes = 24;
constexpr size_t kValueBytes = 16;

void EncodeKey(const MapKey& k, char* out) {
  PutBigEndian64(out, k.lineage);
  PutBigEndian64(out + 8, k.chunk);
  PutBigEndian64(out + 16, k.birth);
}
MapKey DecodeKey(const MDB_val& v) {
  STRATA_CHECK(v.mv_size == kKeyBytes);
  const char* p = static_cast<const char*>(v.mv_data);
  return MapKey{GetBigEndian64(p), GetBigEndian64(p + 8), GetBigEndian64(p + 16)};
}
// changes: (lineage, birth, chunk)
void EncodeChangeKey(const MapKey& k, char* out) {
  PutBigEndian64(out, k.lineage);
  PutBigEndian64(out + 8, k.birth);
  PutBigEndian64(out + 16, k.chunk);
}
void EncodeValue(const MapValue& v, char* out) {
  // Never write what DecodeValue refuses: known flags, and present units exactly on partials.
  STRATA_CHECK((v.flags & ~(MapValue::kTombstone | MapValue::kPartial)) == 0);
  STRATA_CHECK(!(v.tombstone() && v.partial()) && v.partial() == (v.present != 0));
  PutLittleEndian64(out, v.phys);
  PutLittleEndian32(out + 8, v.flags);
  PutLittleEndian32(out + 12, v.present);
}
Result<MapValue> DecodeValue(const MDB_val& v) {
  if (v.mv_size != kValueBytes) {
    return Status::Corruption("map value of " + std::to_string(v.mv_size) + " bytes");
  }
  const char* p = static_cast<const char*>(v.mv_data);
  MapValue out{GetLittleEndian64(p), GetLittleEndian32(p + 8), GetLittleEndian32(p + 12)};
  if ((out.flags & ~(MapValue::kTombstone | MapValue::kPartial)) != 0 ||
      (out.tombstone() && out.partial())) {
    return Status::Corruption("map value with unknown flags");
  }
  if (out.partial() != (out.present != 0)) {
    return Status::Corruption("partial map value without present units, or units on a whole one");
  }
  return out;
}
MDB_val Val(const void* data, size_t size) { return MDB_val{size, const_cast<void*>(data)}; }
MDB_val Val(const std::string& s) { return Val(s.data(), s.size()); }

std::string HeaderField(MDB_txn* txn, MDB_dbi dbi, const char* key, bool* found) {
  MDB_val k = Val(key, std::strlen(key));
  MDB_val v;
  int rc = mdb_get(txn, dbi, &k, &v);
  *found = rc == 0;
  return rc == 0 ? std::string(static_cast<char*>(v.mv_data), v.mv_size) : std::string();
}
}  // namespace

Status LmdbStatus(const char* what, int rc) {
  std::string msg = std::string(what) + ": " + mdb_strerror(rc);
  switch (rc) {
    case 0:
      return Status::OK();
    case MDB_MAP_FULL:  // errno 0 tells it from ENOSPC: the map, not the disk, is full
      return Status(Status::Code::kNoSpace, msg, 0);
    case MDB_NOTFOUND:
      return Status::NotFound(msg);
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_VERSION_MISMATCH:
    case MDB_PAGE_NOTFOUND:
      return Status::Corruption(msg);
    default:
      return rc > 0 ? Status::FromErrno(msg, rc) : Status::IOError(msg, EIO);
  }
}

Result<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& dir, bool create,
                                                   uint64_t map_bytes, uint64_t max_map_bytes) {
  std::string data_path = dir + "/data.mdb";
  struct stat st;
  if (!create && stat(data_path.c_str(), &st) != 0) {
    return Status::NotFound("no metadata at " + data_path);
  }
  if (create && mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("mkdir " + dir, errno);
  }
  std::unique_ptr<MetaStore> store(new MetaStore());
  if (!create && static_cast<uint64_t>(st.st_size) > map_bytes) {
    map_bytes = static_cast<uint64_t>(st.st_size);  // a grown map keeps its size
  }
  store->map_bytes_ = map_bytes;
  store->max_map_bytes_ = max_map_bytes;
  int rc = mdb_env_create(&store->env_);
  if (rc == 0) {
    rc = mdb_env_set_maxdbs(store->env_, 6 + kMaxLayerTables);
  }
  if (rc == 0) {
    rc = mdb_env_set_mapsize(store->env_, map_bytes);
  }
  if (rc == 0) {
    // Every concurrent map scan (block status on each NBD connection, control requests) holds a
    // reader slot for its duration; LMDB's default of 126 is below --max-connections.
    rc = mdb_env_set_maxreaders(store->env_, kMaxReaders);
  }
  if (rc == 0) {
    // NOTLS: read transactions are pooled and used from whichever thread holds the read mutex.
    rc = mdb_env_open(store->env_, dir.c_str(), MDB_NOTLS, 0600);
  }
  if (rc != 0) {
    return LmdbStatus(("open metadata " + dir).c_str(), rc);
  }
  STRATA_RETURN_IF_ERROR(store->OpenTables(create));
  return store;
}

MetaStore::~MetaStore() {
  for (ReadSlot& slot : read_slots_) {
    MutexLock lock(&slot.mu);
    if (slot.cursor != nullptr) {
      mdb_cursor_close(slot.cursor);
    }
    if (slot.txn != nullptr) {
      mdb_txn_abort(slot.txn);
    }
  }
  if (env_ != nullptr) {
    mdb_env_close(env_);
  }
}

Status MetaStore::OpenTables(bool create) {
  MDB_txn* txn;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) {
    return LmdbStatus("begin", rc);
  }
  // The first four tables exist in every pool; snapshots and lineages (format 2) are created on
  // first open (an older pool simply has none of their records yet). Layers' tables (the EC2
  // layer's images, instances, tags, security) are opened by OpenLayerTable.
  const char* names[] = {"pool", "volumes", "map", "changes", kSnapshotsTable, kLineagesTable};
  MDB_dbi* dbis[] = {&pool_dbi_,    &volumes_dbi_,   &map_dbi_,
                     &changes_dbi_, &snapshots_dbi_, &lineages_dbi_};
  static_assert(std::size(names) == std::size(dbis));
  for (size_t i = 0; i < std::size(names) && rc == 0; i++) {
    unsigned flags = (create || i >= 4) ? MDB_CREATE : 0;
    rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
  }
  if (rc == MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    return Status::Corruption("metadata has no Strata tables (not a Strata pool?)");
  }
  rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
  if (rc != 0) {
    return LmdbStatus("open tables", rc);
  }
  {
    MutexLock lock(&tables_mu_);
    tables_ = {{kVolumesTable, volumes_dbi_},
               {kSnapshotsTable, snapshots_dbi_},
               {kLineagesTable, lineages_dbi_}};
  }
  return OpenReadSlots();
}

Status MetaStore::OpenReadSlots() {
  for (ReadSlot& slot : read_slots_) {
    MutexLock lock(&slot.mu);
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &slot.txn);
    if (rc == 0) {
      rc = mdb_cursor_open(slot.txn, map_dbi_, &slot.cursor);
    }
    if (rc != 0) {
      return LmdbStatus("open read transaction", rc);
    }
    mdb_txn_reset(slot.txn);
  }
  return Status::OK();
}

MetaStore::ReadSlot& MetaStore::SlotForThisThread() {
  static std::atomic<size_t> next_thread{0};
  thread_local const size_t index = next_thread.fetch_add(1, std::memory_order_relaxed);
  return read_slots_[index % kReadSlots];
}

Result<PoolHeader> MetaStore::ReadHeader() {
  MDB_txn* txn;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return LmdbStatus("begin", rc);
  }
  bool found[7];
  std::string magic = HeaderField(txn, pool_dbi_, "magic", &found[0]);
  std::string version = HeaderField(txn, pool_dbi_, "format_version", &found[1]);
  std::string chunk = HeaderField(txn, pool_dbi_, "chunk_size", &found[2]);
  std::string capacity = HeaderField(txn, pool_dbi_, "capacity", &found[3]);
  std::string frontier = HeaderField(txn, pool_dbi_, "frontier", &found[4]);
  std::string next = HeaderField(txn, pool_dbi_, "next_lineage", &found[5]);
  std::string uuid = HeaderField(txn, pool_dbi_, "uuid", &found[6]);
  mdb_txn_abort(txn);
  if (!found[0]) {
    return Status::NotFound("metadata holds no pool header");
  }
  if (magic != kMagic) {
    return Status::Corruption("foreign metadata: magic is not '" + std::string(kMagic) + "'");
  }
  for (bool f : found) {
    if (!f) {
      return Status::Corruption("pool header is missing a field");
    }
  }
  PoolHeader h;
  if (version.size() != 4 || chunk.size() != 4 || capacity.size() != 8 || frontier.size() != 8 ||
      next.size() != 8) {
    return Status::Corruption("pool header field of the wrong size");
  }
  h.format_version = GetLittleEndian32(version.data());
  h.chunk_size_bytes = GetLittleEndian32(chunk.data());
  h.capacity_bytes = GetLittleEndian64(capacity.data());
  h.frontier_chunks = GetLittleEndian64(frontier.data());
  h.next_lineage = GetLittleEndian64(next.data());
  h.pool_uuid = uuid;
  if (h.format_version < kOldestReadableFormat || h.format_version > kFormatVersion) {
    return Status::Corruption("pool format version " + std::to_string(h.format_version) +
                              " is not supported (expected " + std::to_string(kFormatVersion) +
                              ")");
  }
  return h;
}

namespace {

Status ValidateLayerTableName(const std::string& table) {
  static constexpr const char* kEngineTables[] = {"pool",    "volumes",       "map",
                                                  "changes", kSnapshotsTable, kLineagesTable};
  bool well_formed = !table.empty() && table.size() <= 32 && table[0] >= 'a' && table[0] <= 'z';
  for (char c : table) {
    well_formed = well_formed && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (!well_formed) {
    return Status::InvalidArgument("record table name '" + table +
                                   "': 1-32 of [a-z0-9_], starting with a letter");
  }
  for (const char* engine : kEngineTables) {
    if (table == engine) {
      return Status::InvalidArgument("record table name '" + table + "' is the engine's own");
    }
  }
  return Status::OK();
}

}  // namespace

Status MetaStore::OpenLayerTable(const std::string& table) {
  STRATA_RETURN_IF_ERROR(ValidateLayerTableName(table));
  {
    MutexLock lock(&tables_mu_);
    if (tables_.count(table) != 0) {
      return Status::OK();
    }
  }
  // A write transaction first, then tables_mu_: the order ApplyBatch takes them in.
  MDB_txn* txn;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) {
    return LmdbStatus("begin", rc);
  }
  MutexLock lock(&tables_mu_);
  if (tables_.count(table) != 0) {
    mdb_txn_abort(txn);
    return Status::OK();
  }
  if (layer_tables_ >= kMaxLayerTables) {
    mdb_txn_abort(txn);
    return Status::InvalidArgument("a pool holds at most " + std::to_string(kMaxLayerTables) +
                                   " layer record tables");
  }
  MDB_dbi dbi;
  rc = mdb_dbi_open(txn, table.c_str(), MDB_CREATE, &dbi);
  rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
  if (rc != 0) {
    return LmdbStatus(("open record table " + table).c_str(), rc);
  }
  tables_[table] = dbi;
  layer_tables_++;
  return Status::OK();
}

Result<MDB_dbi> MetaStore::RecordDbi(const std::string& table) {
  MutexLock lock(&tables_mu_);
  auto it = tables_.find(table);
  if (it == tables_.end()) {
    return Status::InvalidArgument("record table '" + table + "' is not open");
  }
  return it->second;
}

Result<std::vector<std::pair<std::string, std::string>>> MetaStore::ReadRecords(
    const std::string& table) {
  STRATA_ASSIGN_OR_RETURN(MDB_dbi dbi, RecordDbi(table));
  MDB_txn* txn;
  MDB_cursor* cursor;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return LmdbStatus("begin", rc);
  }
  std::vector<std::pair<std::string, std::string>> out;
  rc = mdb_cursor_open(txn, dbi, &cursor);
  MDB_val k, v;
  for (int op = MDB_FIRST; rc == 0; op = MDB_NEXT) {
    rc = mdb_cursor_get(cursor, &k, &v, static_cast<MDB_cursor_op>(op));
    if (rc == 0) {
      out.emplace_back(std::string(static_cast<char*>(k.mv_data), k.mv_size),
                       std::string(static_cast<char*>(v.mv_data), v.mv_size));
    }
  }
  mdb_cursor_close(cursor);  // read-only cursors are not freed with their transaction
  mdb_txn_abort(txn);
  if (rc != MDB_NOTFOUND) {
    return LmdbStatus("read records", rc);
  }
  return out;
}

Result<std::optional<Version>> MetaStore::FindVersion(uint64_t lineage, uint64_t chunk,
                                                      uint64_t max_birth) {
  ReadSlot& slot = SlotForThisThread();
  MutexLock lock(&slot.mu);
  int rc = mdb_txn_renew(slot.txn);
  if (rc == 0) {
    rc = mdb_cursor_renew(slot.txn, slot.cursor);
  }
  if (rc != 0) {
    return LmdbStatus("renew read transaction", rc);
  }
  char key_bytes[kKeyBytes];
  EncodeKey(MapKey{lineage, chunk, max_birth}, key_bytes);
  MDB_val k = Val(key_bytes, kKeyBytes);
  MDB_val v;
  // The newest version <= max_birth is the key at or just before (lineage, chunk, max_birth).
  rc = mdb_cursor_get(slot.cursor, &k, &v, MDB_SET_RANGE);
  if (rc == 0 && std::memcmp(k.mv_data, key_bytes, kKeyBytes) != 0) {
    rc = mdb_cursor_get(slot.cursor, &k, &v, MDB_PREV);
  } else if (rc == MDB_NOTFOUND) {
    rc = mdb_cursor_get(slot.cursor, &k, &v, MDB_LAST);
  }
  std::optional<Version> out;
  if (rc == 0) {
    MapKey found = DecodeKey(k);
    // The seek lands at or before the probe: never on a newer key of this chunk.
    STRATA_CHECK(found.lineage != lineage || found.chunk != chunk || found.birth <= max_birth);
    if (found.lineage == lineage && found.chunk == chunk && found.birth <= max_birth) {
      Result<MapValue> value = DecodeValue(v);
      if (!value.ok()) {
        mdb_txn_reset(slot.txn);
        return value.status();
      }
      out = Version{found.birth, *value};
    }
  }
  mdb_txn_reset(slot.txn);
  if (rc != 0 && rc != MDB_NOTFOUND) {
    return LmdbStatus("map lookup", rc);
  }
  return out;
}

// Walks the map entries of `lineage` with first_chunk <= chunk < end_chunk in key order;
// fn returns false to stop. The one cursor loop behind the lineage scans below.
Status MetaStore::ScanLineageRange(uint64_t lineage, uint64_t first_chunk, uint64_t end_chunk,
                                   const std::function<bool(const MapKey&, const MapValue&)>& fn) {
  MDB_txn* txn;
  MDB_cursor* cursor;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return LmdbStatus("begin", rc);
  }
  rc = mdb_cursor_open(txn, map_dbi_, &cursor);
  char start[kKeyBytes];
  EncodeKey(MapKey{lineage, first_chunk, 0}, start);
  MDB_val k = Val(start, kKeyBytes), v;
  Status status;
  bool more = true;
  std::optional<MapKey> last;  // keys come in strictly increasing (chunk, birth) order
  for (int op = MDB_SET_RANGE; rc == 0 && more && status.ok(); op = MDB_NEXT) {
    rc = mdb_cursor_get(cursor, &k, &v, static_cast<MDB_cursor_op>(op));
    if (rc != 0) {
      break;
    }
    MapKey key = DecodeKey(k);
    if (key.lineage != lineage || key.chunk >= end_chunk) {
      break;
    }
    STRATA_CHECK(key.chunk >= first_chunk);
    STRATA_CHECK(!last || last->chunk < key.chunk ||
                 (last->chunk == key.chunk && last->birth < key.birth));
    last = key;
    Result<MapValue> value = DecodeValue(v);
    status = value.status();
    more = value.ok() && fn(key, *value);
  }
  mdb_cursor_close(cursor);  // read-only cursors are not freed with their transaction
  mdb_txn_abort(txn);
  STRATA_RETURN_IF_ERROR(status);
  return (rc == 0 || rc == MDB_NOTFOUND) ? Status::OK() : LmdbStatus("scan map", rc);
}

Status MetaStore::ScanNewest(uint64_t lineage, uint64_t first_chunk, uint64_t end_chunk,
                             uint64_t max_birth,
                             const std::function<bool(uint64_t, const Version&)>& fn) {
  std::optional<std::pair<uint64_t, Version>> best;  // newest usable version of the current chunk
  bool more = true;
  STRATA_RETURN_IF_ERROR(
      ScanLineageRange(lineage, first_chunk, end_chunk, [&](const MapKey& k, const MapValue& v) {
        if (best && best->first != k.chunk) {  // the previous chunk is complete
          more = fn(best->first, best->second);
          best.reset();
        }
        if (k.birth <= max_birth) {
          best = std::make_pair(k.chunk, Version{k.birth, v});
        }
        return more;
      }));
  if (more && best) {
    fn(best->first, best->second);
  }
  return Status::OK();
}

Status MetaStore::ForEachVersionOfLineage(
    uint64_t lineage, const std::function<Status(const MapKey&, const MapValue&)>& fn) {
  Status status;
  STRATA_RETURN_IF_ERROR(
      ScanLineageRange(lineage, 0, UINT64_MAX, [&](const MapKey& k, const MapValue& v) {
        status = fn(k, v);
        return status.ok();
      }));
  return status;
}

// Calls fn(key, value) for every entry of `dbi` in key order; stops at the first non-OK status.
Status MetaStore::ScanTable(MDB_dbi dbi,
                            const std::function<Status(const MDB_val&, const MDB_val&)>& fn) {
  MDB_txn* txn;
  MDB_cursor* cursor;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return LmdbStatus("begin", rc);
  }
  rc = mdb_cursor_open(txn, dbi, &cursor);
  MDB_val k, v;
  Status status;
  for (int op = MDB_FIRST; rc == 0 && status.ok(); op = MDB_NEXT) {
    rc = mdb_cursor_get(cursor, &k, &v, static_cast<MDB_cursor_op>(op));
    if (rc == 0) {
      status = k.mv_size == kKeyBytes ? fn(k, v)
                                      : Status::Corruption("key of " + std::to_string(k.mv_size) +
                                                           " bytes in the map or change index");
    }
  }
  mdb_cursor_close(cursor);  // read-only cursors are not freed with their transaction
  mdb_txn_abort(txn);
  STRATA_RETURN_IF_ERROR(status);
  return rc == MDB_NOTFOUND ? Status::OK() : LmdbStatus("scan", rc);
}

Status MetaStore::ForEachVersion(const std::function<Status(const MapKey&, const MapValue&)>& fn) {
  return ScanTable(map_dbi_, [&fn](const MDB_val& k, const MDB_val& v) {
    Result<MapValue> value = DecodeValue(v);
    return value.ok() ? fn(DecodeKey(k), *value) : value.status();
  });
}

Status MetaStore::ForEachChange(const std::function<Status(const MapKey&)>& fn) {
  return ScanTable(changes_dbi_, [&fn](const MDB_val& k, const MDB_val&) {
    const char* p = static_cast<const char*>(k.mv_data);
    return fn(MapKey{GetBigEndian64(p), GetBigEndian64(p + 16), GetBigEndian64(p + 8)});
  });
}

Status MetaStore::ScanChanges(uint64_t lineage, uint64_t first_birth, uint64_t first_chunk,
                              uint64_t last_birth, const std::function<bool(const MapKey&)>& fn) {
  MDB_txn* txn;
  MDB_cursor* cursor;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return LmdbStatus("begin", rc);
  }
  rc = mdb_cursor_open(txn, changes_dbi_, &cursor);
  char start[kKeyBytes];
  EncodeChangeKey(MapKey{lineage, first_chunk, first_birth}, start);
  MDB_val k = Val(start, kKeyBytes), v;
  for (int op = MDB_SET_RANGE; rc == 0; op = MDB_NEXT) {
    rc = mdb_cursor_get(cursor, &k, &v, static_cast<MDB_cursor_op>(op));
    if (rc != 0 || k.mv_size != kKeyBytes) {
      break;
    }
    const char* p = static_cast<const char*>(k.mv_data);
    MapKey key{GetBigEndian64(p), GetBigEndian64(p + 16), GetBigEndian64(p + 8)};
    if (key.lineage != lineage || key.birth > last_birth) {
      break;
    }
    STRATA_CHECK(key.birth >= first_birth);  // (the seek started there)
    if (!fn(key)) {
      break;
    }
  }
  mdb_cursor_close(cursor);  // read-only cursors are not freed with their transaction
  mdb_txn_abort(txn);
  return (rc == 0 || rc == MDB_NOTFOUND) ? Status::OK() : LmdbStatus("scan changes", rc);
}

Status MetaStore::ApplyHeader(MDB_txn* txn, const PoolHeader& h) {
  // A header the pool would refuse at its next open is never written.
  STRATA_CHECK(h.format_version > 0 && h.chunk_size_bytes > 0 &&
               (h.chunk_size_bytes & (h.chunk_size_bytes - 1)) == 0);
  STRATA_CHECK(h.next_lineage > 0 && !h.pool_uuid.empty());
  char u32[2][4], u64[3][8];
  PutLittleEndian32(u32[0], h.format_version);
  PutLittleEndian32(u32[1], h.chunk_size_bytes);
  PutLittleEndian64(u64[0], h.capacity_bytes);
  PutLittleEndian64(u64[1], h.frontier_chunks);
  PutLittleEndian64(u64[2], h.next_lineage);
  std::pair<const char*, MDB_val> fields[] = {{"magic", Val(kMagic, std::strlen(kMagic))},
                                              {"format_version", Val(u32[0], 4)},
                                              {"chunk_size", Val(u32[1], 4)},
                                              {"capacity", Val(u64[0], 8)},
                                              {"frontier", Val(u64[1], 8)},
                                              {"next_lineage", Val(u64[2], 8)},
                                              {"uuid", Val(h.pool_uuid)}};
  for (auto& [name, v] : fields) {
    MDB_val k = Val(name, std::strlen(name));
    const int rc = mdb_put(txn, pool_dbi_, &k, &v, 0);
    if (rc != 0) {
      return LmdbStatus("commit header", rc);
    }
  }
  return Status::OK();
}

Status MetaStore::ApplyBatch(MDB_txn* txn, const CommitBatch& batch) {
  int rc = 0;
  char key[kKeyBytes], change_key[kKeyBytes], value[kValueBytes];
  for (const auto& change : batch.map_changes) {
    STRATA_CHECK(change.key.lineage > 0);  // lineage 0 is never allocated
    EncodeKey(change.key, key);
    EncodeChangeKey(change.key, change_key);
    MDB_val k = Val(key, kKeyBytes), ck = Val(change_key, kKeyBytes);
    if (change.erase) {
      rc = mdb_del(txn, map_dbi_, &k, nullptr);
      if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = mdb_del(txn, changes_dbi_, &ck, nullptr);
      }
      rc = rc == MDB_NOTFOUND ? 0 : rc;
    } else {
      EncodeValue(change.value, value);
      MDB_val v = Val(value, kValueBytes), empty = Val("", 0);
      rc = mdb_put(txn, map_dbi_, &k, &v, 0);
      if (rc == 0) {
        rc = mdb_put(txn, changes_dbi_, &ck, &empty, 0);
      }
    }
    if (rc != 0) {
      return LmdbStatus("commit map", rc);
    }
  }
  for (uint64_t lineage : batch.erase_lineages) {
    STRATA_RETURN_IF_ERROR(EraseLineageInTxn(txn, lineage));
  }
  for (const CommitBatch::Record& r : batch.records) {
    STRATA_ASSIGN_OR_RETURN(MDB_dbi dbi, RecordDbi(r.table));
    MDB_val k = Val(r.key);
    if (r.value.has_value()) {
      MDB_val v = Val(*r.value);
      rc = mdb_put(txn, dbi, &k, &v, 0);
    } else {
      rc = mdb_del(txn, dbi, &k, nullptr);
      rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (rc != 0) {
      return LmdbStatus("commit record", rc);
    }
  }
  if (batch.header.has_value()) {
    STRATA_RETURN_IF_ERROR(ApplyHeader(txn, *batch.header));
  }
  return Status::OK();
}

Status MetaStore::Grow() {
  if (map_bytes_ >= max_map_bytes_) {
    return Status::NoSpace("metadata map is full at its maximum of " +
                           std::to_string(max_map_bytes_ >> 10) + " KiB");
  }
  // No pooled read transaction may be active: hold every slot (always in index order).
  std::vector<std::unique_ptr<MutexLock>> slots;
  for (ReadSlot& slot : read_slots_) {
    slots.push_back(std::make_unique<MutexLock>(&slot.mu));
  }
  uint64_t next = std::min(map_bytes_ * 2, max_map_bytes_);
  STRATA_CHECK(next > map_bytes_);  // (full at the maximum returned above)
  int rc = mdb_env_set_mapsize(env_, next);
  if (rc != 0) {
    return LmdbStatus("grow metadata map", rc);
  }
  map_bytes_ = next;
  return Status::OK();
}

Status MetaStore::Commit(const CommitBatch& batch) {
  for (;;) {
    MDB_txn* txn;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) {
      return LmdbStatus("begin write", rc);
    }
    Status status = ApplyBatch(txn, batch);
    if (status.ok()) {
      rc = mdb_txn_commit(txn);  // synced: default environment flags
      if (rc == 0) {
        return Status::OK();
      }
      status = LmdbStatus("commit", rc);
    } else {
      mdb_txn_abort(txn);
    }
    if (status.code() != Status::Code::kNoSpace || status.sys_errno() != 0) {
      return status;  // ENOSPC from the file system is not cured by a bigger map
    }
    STRATA_RETURN_IF_ERROR(Grow());
  }
}

Status MetaStore::EraseLineageInTxn(MDB_txn* txn, uint64_t lineage) {
  int rc = 0;
  for (MDB_dbi dbi : {map_dbi_, changes_dbi_}) {
    MDB_cursor* cursor;
    rc = mdb_cursor_open(txn, dbi, &cursor);
    if (rc != 0) {
      break;
    }
    char start[kKeyBytes] = {};
    PutBigEndian64(start, lineage);
    MDB_val k = Val(start, kKeyBytes), v;
    rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && GetBigEndian64(static_cast<char*>(k.mv_data)) == lineage) {
      rc = mdb_cursor_del(cursor, 0);
      if (rc == 0) {
        rc = mdb_cursor_get(cursor, &k, &v, MDB_GET_CURRENT);
      }
    }
    mdb_cursor_close(cursor);
    rc = (rc == MDB_NOTFOUND || rc == EINVAL) ? 0 : rc;
    if (rc != 0) {
      break;
    }
  }
  return LmdbStatus("erase volume map", rc);
}

uint64_t MetaStore::used_bytes() {
  MDB_envinfo info;
  MDB_stat stat;
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &stat);
  return (info.me_last_pgno + 1) * static_cast<uint64_t>(stat.ms_psize);
}

}  // namespace strata
