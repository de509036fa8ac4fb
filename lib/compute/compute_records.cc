#include "compute/compute_records.h"

#include <algorithm>
#include <cctype>

namespace strata {

namespace {

const RecordCodec<BlockDeviceMapping>& MappingCodec() {
  using M = BlockDeviceMapping;
  static const RecordCodec<M> kCodec(
      "block device mapping",
      {Required("device_name", &M::device_name), Required("virtual_name", &M::virtual_name),
       Required("snapshot_id", &M::snapshot_id), Required("volume_size_gib", &M::volume_size_gib),
       Required("volume_type", &M::volume_type), Optional("iops", &M::iops),
       Optional("throughput_mibps", &M::throughput_mibps),
       Optional("delete_on_termination", &M::delete_on_termination),
       // (an image's new empty volume encrypted at launch; absent before images kept them)
       Optional("encrypted", &M::encrypted), Optional("kms_key_id", &M::kms_key_id)});
  return kCodec;
}

const RecordCodec<InstanceDevice>& DeviceCodec() {
  using D = InstanceDevice;
  static const RecordCodec<D> kCodec(
      "instance device",
      {Required("device_name", &D::device_name), Required("volume_id", &D::volume_id),
       Required("virtual_name", &D::virtual_name), Required("size_bytes", &D::size_bytes),
       Required("seed_snapshot_id", &D::seed_snapshot_id),
       Required("delete_on_termination", &D::delete_on_termination),
       Required("attach_time_ms", &D::attach_time_ms)});
  return kCodec;
}

const RecordCodec<SecurityGroupRule>& RuleCodec() {
  using R = SecurityGroupRule;
  static const RecordCodec<R> kCodec(
      "security group rule",
      {Required("protocol", &R::protocol), Required("from_port", &R::from_port),
       Required("to_port", &R::to_port), Required("cidr", &R::cidr),
       // (absent in rules written before descriptions and rule ids: ids are given at load)
       Optional("description", &R::description), Optional("rule_id", &R::rule_id)});
  return kCodec;
}

bool IsHexKey(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c));
         });
}

}  // namespace

const RecordCodec<ImageInfo>& ImageCodec() {
  using I = ImageInfo;
  static const RecordCodec<I> kCodec(
      "image",
      {Required("image_id", &I::image_id), Required("name", &I::name),
       Required("description", &I::description), Required("state", &I::state),
       Required("root_device_name", &I::root_device_name),
       Required("root_device_type", &I::root_device_type),
       Required("creation_time_ms", &I::creation_time_ms),
       Required("source_instance_id", &I::source_instance_id),
       Records("mappings", &I::mappings, &MappingCodec())},
      [](const I& image) { return image.image_id; });
  return kCodec;
}

const RecordCodec<InstanceRecord>& InstanceCodec() {
  using R = InstanceRecord;
  using I = InstanceInfo;
  static const RecordCodec<R> kCodec(
      "instance",
      {Within(&R::info, Required("instance_id", &I::instance_id)),
       Within(&R::info, Required("image_id", &I::image_id)),
       Within(&R::info, Required("instance_type", &I::instance_type)),
       Within(&R::info, Required("state", &I::state)),
       Within(&R::info, Required("state_reason", &I::state_reason)),
       Within(&R::info, Required("launch_time_ms", &I::launch_time_ms)),
       Within(&R::info, Required("root_device_name", &I::root_device_name)),
       Within(&R::info, Required("root_device_type", &I::root_device_type)),
       Within(&R::info, Required("disable_api_termination", &I::disable_api_termination)),
       Within(&R::info, Records("devices", &I::devices, &DeviceCodec())),
       // (the two below are absent in records written before security groups and key pairs)
       Within(&R::info, Optional("security_group_ids", &I::security_group_ids)),
       Within(&R::info, Optional("key_name", &I::key_name)),
       Within(&R::info, Optional("reservation_id", &I::reservation_id)),
       Within(&R::info, Optional("ami_launch_index", &I::ami_launch_index)),
       Within(&R::info, Optional("user_data", &I::user_data)),
       Within(&R::info, Optional("cpu_credits", &I::cpu_credits)),
       Required("pending_deletes", &R::pending_deletes)},
      [](const R& rec) { return rec.info.instance_id; });
  return kCodec;
}

std::vector<SecurityGroupRule> DefaultEgressRules() {
  SecurityGroupRule all;
  all.protocol = "-1";
  all.from_port = 0;
  all.to_port = 65535;
  all.cidr = "0.0.0.0/0";
  return {all};
}

const RecordCodec<SecurityGroupInfo>& SecurityGroupCodec() {
  using G = SecurityGroupInfo;
  static const RecordCodec<G> kCodec(
      "security group",
      {Required("group_id", &G::group_id), Required("group_name", &G::group_name),
       Required("description", &G::description), Records("ingress", &G::ingress, &RuleCodec()),
       // groups written before outbound rules were kept had EC2's default one
       RecordsSince("egress", &G::egress, &RuleCodec(), DefaultEgressRules)},
      [](const G& g) { return g.group_id; });
  return kCodec;
}

const RecordCodec<StoredKeyPair>& KeyPairCodec() {
  using S = StoredKeyPair;
  using K = KeyPairInfo;
  static const RecordCodec<S> kCodec(
      "key pair",
      {Within(&S::info, Required("key_pair_id", &K::key_pair_id)),
       Within(&S::info, Required("key_name", &K::key_name)),
       Within(&S::info, Required("key_type", &K::key_type)),
       Within(&S::info, Required("fingerprint", &K::fingerprint)),
       Within(&S::info, Required("create_time_ms", &K::create_time_ms)),
       Required("material", &S::material)},
      [](const S& k) { return k.info.key_pair_id; },
      [](const S& k) {
        if (k.info.key_type != "x509" && k.info.key_type != "psk") {
          return Status::Corruption("key type " + k.info.key_type);
        }
        return k.info.key_type == "psk" && !IsHexKey(k.material)
                   ? Status::Corruption("a PSK that is not 64 hex digits")
                   : Status::OK();
      });
  return kCodec;
}

const RecordCodec<StoredAccessKey>& AccessKeyCodec() {
  using S = StoredAccessKey;
  using A = AccessKeyInfo;
  static const RecordCodec<S> kCodec(
      "access key",
      {Within(&S::info, Required("access_key_id", &A::access_key_id)),
       Within(&S::info, Required("create_time_ms", &A::create_time_ms)),
       Required("secret", &S::secret)},
      [](const S& k) { return k.info.access_key_id; },
      [](const S& k) {
        return k.info.access_key_id.size() == 20 && k.info.access_key_id.starts_with("AKIA") &&
                       k.secret.size() == 40
                   ? Status::OK()
                   : Status::Corruption("not an access key id and a 40-character secret");
      });
  return kCodec;
}

const RecordCodec<VolumeModificationInfo>& ModificationCodec() {
  using M = VolumeModificationInfo;
  static const RecordCodec<M> kCodec(
      "volume modification",
      {Required("volume_id", &M::volume_id), Required("state", &M::state),
       Required("original_size_bytes", &M::original_size_bytes),
       Required("target_size_bytes", &M::target_size_bytes),
       Required("original_volume_type", &M::original_volume_type),
       Required("target_volume_type", &M::target_volume_type),
       Required("original_iops", &M::original_iops), Required("target_iops", &M::target_iops),
       Required("original_throughput_mibps", &M::original_throughput_mibps),
       Required("target_throughput_mibps", &M::target_throughput_mibps),
       Required("start_time_ms", &M::start_time_ms), Required("end_time_ms", &M::end_time_ms)},
      [](const M& m) { return m.volume_id; });
  return kCodec;
}

std::string EncodeTags(const Tags& tags) { return DumpJson(nlohmann::json(tags)); }

Result<Tags> DecodeTags(const std::string& id, const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption("tag record " + id + " is not a JSON object");
  }
  try {
    return j.get<Tags>();
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption("tag record " + id + ": " + e.what());
  }
}

const RecordCodec<ResourceAttributes>& AttributesCodec() {
  using A = ResourceAttributes;
  static const RecordCodec<A> kCodec(
      "attributes", {Optional("user_ids", &A::user_ids), Optional("groups", &A::groups),
                     Optional("auto_enable_io", &A::auto_enable_io),
                     Optional("deprecation_time", &A::deprecation_time)});
  return kCodec;
}

}  // namespace strata
