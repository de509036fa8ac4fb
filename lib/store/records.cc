#include "store/records.h"

namespace strata {

const RecordCodec<VolumeInfo>& VolumeCodec() {
  using V = VolumeInfo;
  static const RecordCodec<V> kCodec(
      "volume",
      {Required("volume_id", &V::volume_id), Required("name", &V::name),
       Required("size_bytes", &V::size_bytes), Required("volume_type", &V::volume_type),
       Required("state", &V::state), Required("create_time_ms", &V::create_time_ms),
       Required("lineage", &V::lineage), Required("head_epoch", &V::head_epoch),
       Optional("snapshot_id", &V::snapshot_id), Optional("iops", &V::iops),
       Optional("throughput_mibps", &V::throughput_mibps), Optional("encryption", &V::encryption)},
      [](const V& v) { return v.volume_id; },
      [](const V& v) {
        return v.lineage == 0 || v.head_epoch == 0 || v.size_bytes == 0
                   ? Status::Corruption("zero lineage, epoch or size")
                   : Status::OK();
      });
  return kCodec;
}

const RecordCodec<SnapshotInfo>& SnapshotCodec() {
  using S = SnapshotInfo;
  static const RecordCodec<S> kCodec(
      "snapshot",
      {Required("snapshot_id", &S::snapshot_id), Required("volume_id", &S::volume_id),
       Required("volume_size_bytes", &S::volume_size_bytes),
       Required("description", &S::description), Required("state", &S::state),
       Required("start_time_ms", &S::start_time_ms),
       Required("source_snapshot_id", &S::source_snapshot_id), Required("lineage", &S::lineage),
       Required("epoch", &S::epoch), Optional("encryption", &S::encryption)},
      [](const S& s) { return s.snapshot_id; },
      [](const S& s) {
        return s.lineage == 0 || s.epoch == 0 || s.volume_size_bytes == 0
                   ? Status::Corruption("zero lineage, epoch or size")
                   : Status::OK();
      });
  return kCodec;
}

const RecordCodec<LineageRecord>& LineageCodec() {
  using L = LineageRecord;
  using S = LineageState;
  static const RecordCodec<L> kCodec(
      "lineage",
      {Required("lineage", &L::lineage), Within(&L::state, Required("parent", &S::parent)),
       Within(&L::state, Required("parent_epoch", &S::parent_epoch)),
       Within(&L::state, Required("volume_id", &S::volume_id)),
       Within(&L::state, Required("frozen_head", &S::frozen_head)),
       Within(&L::state, Required("reclaim", &S::reclaim))},
      [](const L& l) { return std::to_string(l.lineage); },
      [](const L& l) { return l.lineage == 0 ? Status::Corruption("lineage 0") : Status::OK(); });
  return kCodec;
}

}  // namespace strata
