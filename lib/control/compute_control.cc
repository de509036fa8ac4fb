// The EC2 verbs of images, instances, attachments and tags (docs/compute.md).
#include <fnmatch.h>

#include <algorithm>

#include "control/control.h"
#include "control/ec2_errors.h"
#include "control/handlers.h"
#include "control/shorthand.h"

namespace strata {

namespace {

using control::OptionalStringArg;
using control::ShorthandListArg;
using control::StringArg;
using control::StringListArg;
using nlohmann::json;

int StateCode(const std::string& state) {
  static const std::map<std::string, int> kCodes = {{"pending", 0},        {"running", 16},
                                                    {"shutting-down", 32}, {"terminated", 48},
                                                    {"stopping", 64},      {"stopped", 80}};
  auto it = kCodes.find(state);
  return it == kCodes.end() ? -1 : it->second;
}

json StateJson(const std::string& state) {
  return json{{"Code", StateCode(state)}, {"Name", state}};
}

// ---------------------------------------------------------------- argument parsing

// A shorthand object's string field ("" when absent). Errors: not a string.
Result<std::string> Field(const json& obj, const char* key) {
  if (!obj.contains(key)) {
    return std::string();
  }
  if (!obj[key].is_string()) {
    return Status::InvalidArgument(std::string(key) + " must be a single value");
  }
  return obj[key].get<std::string>();
}

Result<std::optional<bool>> BoolField(const json& obj, const char* key) {
  if (!obj.contains(key)) {
    return std::optional<bool>();
  }
  if (obj[key].is_boolean()) {
    return std::optional<bool>(obj[key].get<bool>());
  }
  STRATA_ASSIGN_OR_RETURN(std::string text, Field(obj, key));
  if (text != "true" && text != "false") {
    return Status::InvalidArgument(std::string(key) + " must be true or false");
  }
  return std::optional<bool>(text == "true");
}

Result<uint64_t> NumberField(const json& obj, const char* key) {
  if (obj.contains(key) && obj[key].is_number_unsigned()) {
    return obj[key].get<uint64_t>();
  }
  STRATA_ASSIGN_OR_RETURN(std::string text, Field(obj, key));
  if (text.empty()) {
    return uint64_t{0};
  }
  char* end = nullptr;
  uint64_t v = std::strtoull(text.c_str(), &end, 10);
  if (end == nullptr || *end != '\0' || text[0] == '-') {
    return Status::InvalidArgument(std::string(key) + " must be a whole number");
  }
  return v;
}

// An Ebs block's Encrypted and KmsKeyId (what the launch or registration asks; the EC2 layer
// checks it against the snapshot: compute.h BlockDeviceMapping::encrypted).
Status EncryptionFields(const json& ebs, std::optional<bool>* encrypted, std::string* kms_key_id) {
  if (ebs.contains("Encrypted")) {
    const json& e = ebs["Encrypted"];
    if (!e.is_boolean() && e != "true" && e != "false") {
      return Status::InvalidArgument("InvalidParameterValue: Encrypted must be true or false");
    }
    *encrypted = e == true || e == "true";
  }
  STRATA_ASSIGN_OR_RETURN(*kms_key_id, Field(ebs, "KmsKeyId"));
  return Status::OK();
}

Result<BlockDeviceMapping> MappingArg(const json& j) {
  BlockDeviceMapping m;
  STRATA_ASSIGN_OR_RETURN(m.device_name, Field(j, "DeviceName"));
  STRATA_ASSIGN_OR_RETURN(m.virtual_name, Field(j, "VirtualName"));
  if (m.device_name.empty()) {
    return Status::InvalidArgument("a block device mapping needs DeviceName");
  }
  if (j.contains("Ebs")) {
    const json& ebs = j["Ebs"];
    if (!ebs.is_object() || !m.virtual_name.empty()) {
      return Status::InvalidArgument("Ebs of " + m.device_name +
                                     " must be {Key=Value,...}, "
                                     "without VirtualName");
    }
    STRATA_RETURN_IF_ERROR(EncryptionFields(ebs, &m.encrypted, &m.kms_key_id));
    STRATA_ASSIGN_OR_RETURN(m.snapshot_id, Field(ebs, "SnapshotId"));
    STRATA_ASSIGN_OR_RETURN(m.volume_size_gib, NumberField(ebs, "VolumeSize"));
    STRATA_ASSIGN_OR_RETURN(std::string type, Field(ebs, "VolumeType"));
    m.volume_type = type.empty() ? "gp3" : type;
    STRATA_ASSIGN_OR_RETURN(uint64_t iops, NumberField(ebs, "Iops"));
    STRATA_ASSIGN_OR_RETURN(uint64_t throughput, NumberField(ebs, "Throughput"));
    if (iops > UINT32_MAX || throughput > UINT32_MAX) {
      return Status::InvalidArgument("Iops/Throughput of " + m.device_name + " out of range");
    }
    m.iops = static_cast<uint32_t>(iops);
    m.throughput_mibps = static_cast<uint32_t>(throughput);
    STRATA_ASSIGN_OR_RETURN(m.delete_on_termination, BoolField(ebs, "DeleteOnTermination"));
  } else if (m.virtual_name.empty()) {
    return Status::InvalidArgument("mapping " + m.device_name + " needs Ebs={...} or VirtualName");
  }
  return m;
}

// One of RunInstances' BlockDeviceMappings: only the fields given (the rest stay the image's).
Result<LaunchMapping> LaunchMappingArg(const json& j) {
  LaunchMapping l;
  STRATA_ASSIGN_OR_RETURN(l.device_name, Field(j, "DeviceName"));
  STRATA_ASSIGN_OR_RETURN(l.virtual_name, Field(j, "VirtualName"));
  if (l.device_name.empty()) {
    return Status::InvalidArgument("a block device mapping needs DeviceName");
  }
  l.no_device = j.contains("NoDevice");
  if (!j.contains("Ebs")) {
    if (!l.no_device && l.virtual_name.empty()) {
      return Status::InvalidArgument("mapping " + l.device_name +
                                     " needs Ebs={...}, VirtualName or NoDevice");
    }
    return l;
  }
  const json& ebs = j["Ebs"];
  if (!ebs.is_object() || !l.virtual_name.empty() || l.no_device) {
    return Status::InvalidArgument("Ebs of " + l.device_name +
                                   " must be {Key=Value,...}, without VirtualName or NoDevice");
  }
  STRATA_RETURN_IF_ERROR(EncryptionFields(ebs, &l.encrypted, &l.kms_key_id));
  if (ebs.contains("SnapshotId")) {
    STRATA_ASSIGN_OR_RETURN(l.snapshot_id, Field(ebs, "SnapshotId"));
  }
  if (ebs.contains("VolumeType")) {
    STRATA_ASSIGN_OR_RETURN(l.volume_type, Field(ebs, "VolumeType"));
  }
  for (auto [key, member] :
       {std::pair{"Iops", &l.iops}, std::pair{"Throughput", &l.throughput_mibps}}) {
    if (ebs.contains(key)) {
      STRATA_ASSIGN_OR_RETURN(uint64_t v, NumberField(ebs, key));
      if (v > UINT32_MAX) {
        return Status::InvalidArgument(std::string(key) + " of " + l.device_name + " out of range");
      }
      *member = static_cast<uint32_t>(v);
    }
  }
  if (ebs.contains("VolumeSize")) {
    STRATA_ASSIGN_OR_RETURN(l.volume_size_gib, NumberField(ebs, "VolumeSize"));
  }
  STRATA_ASSIGN_OR_RETURN(l.delete_on_termination, BoolField(ebs, "DeleteOnTermination"));
  return l;
}

// --tag-specifications ResourceType=instance,Tags=[{Key=k,Value=v}]: tags per resource type.
Result<std::map<std::string, Tags>> TagSpecArg(const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto specs, ShorthandListArg(args, "tag-specifications"));
  std::map<std::string, Tags> out;
  for (const json& spec : specs) {
    STRATA_ASSIGN_OR_RETURN(std::string type, Field(spec, "ResourceType"));
    if (type.empty() || !spec.contains("Tags") || !spec["Tags"].is_array()) {
      return Status::InvalidArgument("--tag-specifications needs ResourceType=...,Tags=[...]");
    }
    for (const json& tag : spec["Tags"]) {
      if (!tag.is_object()) {
        return Status::InvalidArgument("each tag must be {Key=k,Value=v}");
      }
      STRATA_ASSIGN_OR_RETURN(std::string key, Field(tag, "Key"));
      STRATA_ASSIGN_OR_RETURN(std::string value, Field(tag, "Value"));
      if (key.empty()) {
        return Status::InvalidArgument("a tag needs a Key");
      }
      out[type][key] = value;
    }
  }
  return out;
}

// --tags Key=k,Value=v ... (Value optional: delete-tags by key).
Result<std::map<std::string, std::optional<std::string>>> TagsArg(const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto items, ShorthandListArg(args, "tags"));
  std::map<std::string, std::optional<std::string>> out;
  for (const json& tag : items) {
    STRATA_ASSIGN_OR_RETURN(std::string key, Field(tag, "Key"));
    if (key.empty()) {
      return Status::InvalidArgument("each tag needs Key=...");
    }
    if (tag.contains("Value")) {
      STRATA_ASSIGN_OR_RETURN(std::string value, Field(tag, "Value"));
      out[key] = value;
    } else {
      out[key] = std::nullopt;
    }
  }
  return out;
}

Result<Tags> TagsFor(const std::map<std::string, Tags>& specs, const std::string& type) {
  for (const auto& spec : specs) {
    const std::string& t = spec.first;  // (a named variable: clang 14 cannot capture bindings)
    static const char* kTypes[] = {"instance", "volume",         "image",
                                   "snapshot", "security-group", "key-pair"};
    if (std::none_of(std::begin(kTypes), std::end(kTypes), [&](const char* k) { return t == k; })) {
      return Status::InvalidArgument("ResourceType '" + t +
                                     "' is not instance, volume, image, snapshot, "
                                     "security-group or key-pair");
    }
  }
  auto it = specs.find(type);
  return it == specs.end() ? Tags{} : it->second;
}

// ---------------------------------------------------------------- output

// Security group names by id, for the replies that name an instance's groups.
using GroupNames = std::map<std::string, std::string>;
GroupNames GroupNamesOf(Compute* compute) {
  GroupNames out;
  for (const SecurityGroupInfo& g : compute->ListSecurityGroups()) {
    out[g.group_id] = g.group_name;
  }
  return out;
}

json SecurityGroupsJson(const std::vector<std::string>& ids, const GroupNames& names) {
  json out = json::array();
  for (const std::string& id : ids) {
    auto it = names.find(id);
    out.push_back({{"GroupId", id}, {"GroupName", it == names.end() ? "" : it->second}});
  }
  return out;
}

// An instance's private address in the default subnet (172.31.0.0/20), derived from its id: a
// record for tools that read one (Strata does no networking; exports are reached as the server).
std::string PrivateAddress(const std::string& instance_id) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (char c : instance_id) {
    h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  }
  const uint32_t host = 4 + h % 4087;  // .0-.3 and the last are AWS's own in every subnet
  return "172.31." + std::to_string(host >> 8) + "." + std::to_string(host & 0xff);
}

std::string PrivateDnsName(const std::string& address) {
  std::string dashed = address;
  std::replace(dashed.begin(), dashed.end(), '.', '-');
  return "ip-" + dashed + ".ec2.internal";
}

json MappingJson(const BlockDeviceMapping& m) {
  if (!m.virtual_name.empty()) {
    return json{{"DeviceName", m.device_name}, {"VirtualName", m.virtual_name}};
  }
  json ebs = {{"VolumeSize", m.volume_size_gib}, {"VolumeType", m.volume_type}};
  if (m.iops != 0) {
    ebs["Iops"] = m.iops;
  }
  if (m.throughput_mibps != 0) {
    ebs["Throughput"] = m.throughput_mibps;
  }
  if (!m.snapshot_id.empty()) {
    ebs["SnapshotId"] = m.snapshot_id;
  }
  ebs["DeleteOnTermination"] = m.delete_on_termination.value_or(false);
  return json{{"DeviceName", m.device_name}, {"Ebs", ebs}};
}

json ImageJson(Pool* pool, const ImageInfo& image) {
  json mappings = json::array();
  for (BlockDeviceMapping m : image.mappings) {
    if (m.virtual_name.empty() && !m.delete_on_termination) {
      m.delete_on_termination = m.device_name == image.root_device_name;
    }
    if (m.volume_size_gib == 0 && !m.snapshot_id.empty()) {  // shown as EC2 does: in GiB
      auto snap = pool->DescribeSnapshot(m.snapshot_id);
      m.volume_size_gib = snap.ok() ? control::GiBCeil(snap->volume_size_bytes) : 0;
    }
    mappings.push_back(MappingJson(m));
  }
  json out = {{"ImageId", image.image_id},
              {"Name", image.name},
              {"Description", image.description},
              {"State", image.state},
              {"CreationDate", IsoTime(image.creation_time_ms)},
              {"RootDeviceName", image.root_device_name},
              {"RootDeviceType", image.root_device_type},
              {"BlockDeviceMappings", mappings},
              {"ImageType", "machine"},
              {"Architecture", "x86_64"},
              {"VirtualizationType", "hvm"},
              {"Public", false},
              {"OwnerId", control::kOwnerId},
              {"Hypervisor", "xen"},
              {"EnaSupport", true},
              {"SriovNetSupport", "simple"},
              {"PlatformDetails", "Linux/UNIX"},
              {"UsageOperation", "RunInstances"},
              {"BootMode", "legacy-bios"},
              {"Tags", control::TagsJson(image.tags)}};
  if (!image.source_instance_id.empty()) {
    out["SourceInstanceId"] = image.source_instance_id;
  }
  return out;
}

// The fixed parts of an EC2 instance description that Strata's instances share: what tools read
// after every launch (Terraform indexes several directly).
json InstanceConstantsJson() {
  return json{{"Architecture", "x86_64"},
              {"Hypervisor", "xen"},
              {"VirtualizationType", "hvm"},
              {"Monitoring", {{"State", "disabled"}}},
              {"EbsOptimized", false},
              {"EnaSupport", true},
              {"SourceDestCheck", true},
              {"PublicDnsName", ""},
              {"PlatformDetails", "Linux/UNIX"},
              {"UsageOperation", "RunInstances"},
              {"BootMode", "legacy-bios"},
              {"CpuOptions", {{"CoreCount", 1}, {"ThreadsPerCore", 2}}},
              {"CapacityReservationSpecification", {{"CapacityReservationPreference", "open"}}},
              {"HibernationOptions", {{"Configured", false}}},
              {"EnclaveOptions", {{"Enabled", false}}},
              {"MaintenanceOptions", {{"AutoRecovery", "default"}}},
              {"MetadataOptions",
               {{"State", "applied"},
                {"HttpTokens", "optional"},
                {"HttpPutResponseHopLimit", 1},
                {"HttpEndpoint", "enabled"},
                {"HttpProtocolIpv6", "disabled"},
                {"InstanceMetadataTags", "disabled"}}},
              {"PrivateDnsNameOptions",
               {{"HostnameType", "ip-name"},
                {"EnableResourceNameDnsARecord", false},
                {"EnableResourceNameDnsAAAARecord", false}}},
              {"NetworkInterfaces", json::array()},
              {"ProductCodes", json::array()}};
}

json InstanceJson(const InstanceInfo& info, const GroupNames& group_names) {
  json ebs = json::array();
  json store = json::array();
  json exports = json::array();
  const bool up = info.state == "running" || info.state == "pending";
  for (const InstanceDevice& d : info.devices) {
    const std::string short_name =
        d.device_name.starts_with("/dev/") ? d.device_name.substr(5) : d.device_name;
    if (up) {
      exports.push_back(info.instance_id + "/" + short_name);
    }
    if (d.instance_store()) {
      store.push_back({{"DeviceName", d.device_name},
                       {"VirtualName", d.virtual_name.empty() ? "root" : d.virtual_name},
                       {"SizeBytes", d.size_bytes}});
      continue;
    }
    ebs.push_back({{"DeviceName", d.device_name},
                   {"Ebs",
                    {{"VolumeId", d.volume_id},
                     {"Status", "attached"},
                     {"AttachTime", IsoTime(d.attach_time_ms)},
                     {"DeleteOnTermination", d.delete_on_termination}}}});
  }
  const std::string address = PrivateAddress(info.instance_id);
  json out = InstanceConstantsJson();
  out.update(
      json{{"InstanceId", info.instance_id},
           {"ImageId", info.image_id},
           {"InstanceType", info.instance_type},
           {"State", StateJson(info.state)},
           {"LaunchTime", IsoTime(info.launch_time_ms)},
           {"RootDeviceName", info.root_device_name},
           {"RootDeviceType", info.root_device_type},
           {"BlockDeviceMappings", ebs},
           {"InstanceStoreVolumes", store},
           {"NbdExports", exports},
           {"DisableApiTermination", info.disable_api_termination},
           {"SecurityGroups", SecurityGroupsJson(info.security_group_ids, group_names)},
           {"KeyName", info.key_name},
           {"Placement",
            {{"AvailabilityZone", control::kZone}, {"GroupName", ""}, {"Tenancy", "default"}}},
           {"VpcId", control::kDefaultVpcId},
           {"SubnetId", control::kDefaultSubnetId},
           {"PrivateIpAddress", address},
           {"PrivateDnsName", PrivateDnsName(address)},
           {"ReservationId", info.reservation_id.empty() ? "r-" + info.instance_id.substr(2)
                                                         : info.reservation_id},  // (moved to it)
           {"AmiLaunchIndex", info.ami_launch_index},
           {"Tags", control::TagsJson(info.tags)}});
  if (!info.state_reason.empty()) {
    const size_t colon = info.state_reason.find(':');
    out["StateReason"] = {{"Code", info.state_reason.substr(0, colon)},
                          {"Message", info.state_reason}};
  }
  return out;
}

// A change as EC2 answers the verb that made it: in its transitional state (stopping, pending,
// shutting-down); Strata has finished it already, and describe-instances shows the final state.
std::string AnsweredState(const StateChange& c) {
  if (c.previous_state == c.current_state) {
    return c.current_state;  // nothing changed (stopping a stopped instance)
  }
  return c.current_state == "stopped"      ? "stopping"
         : c.current_state == "running"    ? "pending"
         : c.current_state == "terminated" ? "shutting-down"
                                           : c.current_state;
}

json StateChangesJson(const std::vector<StateChange>& changes) {
  json out = json::array();
  for (const StateChange& c : changes) {
    out.push_back({{"InstanceId", c.instance_id},
                   {"CurrentState", StateJson(AnsweredState(c))},
                   {"PreviousState", StateJson(c.previous_state)}});
  }
  return out;
}

json AttachmentJson(const std::string& instance_id, const InstanceDevice& d, const char* state) {
  return json{{"VolumeId", d.volume_id},
              {"InstanceId", instance_id},
              {"Device", d.device_name},
              {"State", state},
              {"AttachTime", IsoTime(d.attach_time_ms)},
              {"DeleteOnTermination", d.delete_on_termination}};
}

// EC2's reservations: the instances of one launch together, in launch order (an instance from
// before reservations were kept is its own, named after it).
json Reservations(json instances) {
  std::map<std::string, json> by_id;
  std::vector<std::string> order;
  for (json& item : instances) {
    std::string id = item["ReservationId"].get<std::string>();
    item.erase("ReservationId");
    if (by_id.count(id) == 0) {
      order.push_back(id);
      by_id[id] = {{"ReservationId", id},
                   {"OwnerId", control::kOwnerId},
                   {"Groups", json::array()},
                   {"Instances", json::array()}};
    }
    by_id[id]["Instances"].push_back(std::move(item));
  }
  json out = json::array();
  for (const std::string& id : order) {
    json& r = by_id[id];
    std::sort(r["Instances"].begin(), r["Instances"].end(), [](const json& a, const json& b) {
      return a["AmiLaunchIndex"].get<uint32_t>() < b["AmiLaunchIndex"].get<uint32_t>();
    });
    out.push_back(std::move(r));
  }
  return out;
}

// "3" or "2:5" (EC2's MinCount:MaxCount): Strata launches MaxCount or nothing.
Result<uint32_t> RunCount(const json& args) {
  const std::string text = OptionalStringArg(args, "count");
  const size_t colon = text.find(':');
  json max_only = {{"count", colon == std::string::npos ? text : text.substr(colon + 1)}};
  STRATA_ASSIGN_OR_RETURN(uint64_t max, control::IntegerArg(max_only, "count", 1));
  uint64_t min = max;
  if (colon != std::string::npos) {
    json min_only = {{"count", text.substr(0, colon)}};
    STRATA_ASSIGN_OR_RETURN(min, control::IntegerArg(min_only, "count", 1));
  }
  if (min == 0 || min > max || max > kMaxRunCount) {
    return Status::InvalidArgument(
        "InvalidParameterValue: --count must be N or MIN:MAX with 1 <= "
        "MIN <= MAX <= " +
        std::to_string(kMaxRunCount));
  }
  return static_cast<uint32_t>(max);
}

// ---------------------------------------------------------------- handlers

Result<json> RegisterImage(Compute* compute, const json& args) {
  ImageSpec spec;
  STRATA_ASSIGN_OR_RETURN(spec.name, StringArg(args, "name"));
  spec.description = OptionalStringArg(args, "description");
  const std::string root = OptionalStringArg(args, "root-device-name");
  spec.root_device_name = root.empty() ? "/dev/xvda" : root;
  const std::string type = OptionalStringArg(args, "root-device-type");
  spec.root_device_type = type.empty() ? "ebs" : type;
  STRATA_ASSIGN_OR_RETURN(auto mappings, ShorthandListArg(args, "block-device-mappings"));
  if (mappings.empty()) {
    return Status::InvalidArgument("missing --block-device-mappings");
  }
  for (const json& j : mappings) {
    STRATA_ASSIGN_OR_RETURN(BlockDeviceMapping m, MappingArg(j));
    spec.mappings.push_back(std::move(m));
  }
  STRATA_ASSIGN_OR_RETURN(auto tag_specs, TagSpecArg(args));
  STRATA_ASSIGN_OR_RETURN(spec.tags, TagsFor(tag_specs, "image"));
  STRATA_ASSIGN_OR_RETURN(ImageInfo image, compute->RegisterImage(spec));
  return json{{"ImageId", image.image_id}};
}

// EC2's DescribeImages filters, each to where its values are in an item ("": never here).
const std::map<std::string, std::string>& ImageFilterPaths() {
  static const auto* kPaths = new std::map<std::string, std::string>{
      {"architecture", "Architecture"},
      {"block-device-mapping.delete-on-termination",
       "BlockDeviceMappings[]/Ebs/DeleteOnTermination"},
      {"block-device-mapping.device-name", "BlockDeviceMappings[]/DeviceName"},
      {"block-device-mapping.encrypted", "BlockDeviceMappings[]/Ebs/Encrypted"},
      {"block-device-mapping.snapshot-id", "BlockDeviceMappings[]/Ebs/SnapshotId"},
      {"block-device-mapping.volume-size", "BlockDeviceMappings[]/Ebs/VolumeSize"},
      {"block-device-mapping.volume-type", "BlockDeviceMappings[]/Ebs/VolumeType"},
      {"creation-date", "CreationDate"},
      {"description", "Description"},
      {"ena-support", "EnaSupport"},
      {"hypervisor", "Hypervisor"},
      {"image-allowed", ""},
      {"image-id", "ImageId"},
      {"image-type", "ImageType"},
      {"is-public", "Public"},
      {"kernel-id", ""},
      {"manifest-location", ""},
      {"name", "Name"},
      {"owner-alias", ""},
      {"owner-id", "OwnerId"},
      {"platform", ""},
      {"platform-details", "PlatformDetails"},
      {"product-code", ""},
      {"product-code.type", ""},
      {"ramdisk-id", ""},
      {"root-device-name", "RootDeviceName"},
      {"root-device-type", "RootDeviceType"},
      {"source-image-id", ""},
      {"source-image-region", ""},
      {"source-instance-id", "SourceInstanceId"},
      {"sriov-net-support", "SriovNetSupport"},
      {"state", "State"},
      {"state-reason-code", ""},
      {"state-reason-message", ""},
      {"usage-operation", "UsageOperation"},
      {"virtualization-type", "VirtualizationType"}};
  return *kPaths;
}

Result<json> DescribeImages(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, "image-ids"));
  json items = json::array();
  STRATA_ASSIGN_OR_RETURN(bool mine, control::OwnersIncludeSelf(args, "owners"));
  if (!mine) {
    return json{{"Images", items}};
  }
  if (!ids.empty()) {
    for (const std::string& id : ids) {
      if (compute->RecentlyDeregistered(id)) {
        continue;  // as EC2: listed as nothing for a while, then NotFound
      }
      STRATA_ASSIGN_OR_RETURN(ImageInfo image, compute->DescribeImage(id));
      items.push_back(ImageJson(compute->pool(), image));
    }
  } else {
    for (const ImageInfo& image : compute->ListImages()) {
      items.push_back(ImageJson(compute->pool(), image));
    }
  }
  // ExecutableUsers: the images those accounts may launch ("self" and the owner: all of them;
  // another account: those shared with it or with "all").
  STRATA_ASSIGN_OR_RETURN(auto users, StringListArg(args, "executable-users"));
  json kept = json::array();
  for (json& item : items) {
    auto attributes = compute->AttributesOf(item["ImageId"].get<std::string>());
    const ResourceAttributes a = attributes.ok() ? *attributes : ResourceAttributes{};
    if (!a.deprecation_time.empty()) {  // (set by EnableImageDeprecation)
      item["DeprecationTime"] = a.deprecation_time;
    }
    const bool launchable =
        users.empty() || std::any_of(users.begin(), users.end(), [&a](const std::string& u) {
          return u == "self" || u == control::kOwnerId ||
                 std::count(a.user_ids.begin(), a.user_ids.end(), u) != 0 ||
                 std::count(a.groups.begin(), a.groups.end(), "all") != 0;
        });
    if (launchable) {
      kept.push_back(std::move(item));
    }
  }
  items = std::move(kept);
  STRATA_ASSIGN_OR_RETURN(items,
                          control::ApplyPathFilters(args, std::move(items), ImageFilterPaths()));
  return json{{"Images", items}};
}

Result<json> DeregisterImage(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, StringArg(args, "image-id"));
  STRATA_RETURN_IF_ERROR(compute->DeregisterImage(id));
  return json::object();
}

Result<json> CreateImage(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string instance, StringArg(args, "instance-id"));
  STRATA_ASSIGN_OR_RETURN(std::string name, StringArg(args, "name"));
  STRATA_ASSIGN_OR_RETURN(auto tag_specs, TagSpecArg(args));
  STRATA_ASSIGN_OR_RETURN(Tags tags, TagsFor(tag_specs, "image"));
  // --no-reboot changes nothing here: the snapshots are crash-consistent either way.
  STRATA_ASSIGN_OR_RETURN(
      ImageInfo image,
      compute->CreateImage(instance, name, OptionalStringArg(args, "description")));
  if (!tags.empty()) {
    STRATA_RETURN_IF_ERROR(compute->CreateTags({image.image_id}, tags));
  }
  return json{{"ImageId", image.image_id}};
}

Result<json> RunInstances(Compute* compute, const json& args) {
  RunSpec spec;
  STRATA_ASSIGN_OR_RETURN(spec.image_id, StringArg(args, "image-id"));
  STRATA_ASSIGN_OR_RETURN(spec.count, RunCount(args));
  const std::string type = OptionalStringArg(args, "instance-type");
  spec.instance_type = type.empty() ? "t3.micro" : type;
  spec.disable_api_termination = args.value("disable-api-termination", false);
  STRATA_ASSIGN_OR_RETURN(auto tag_specs, TagSpecArg(args));
  STRATA_ASSIGN_OR_RETURN(spec.tags, TagsFor(tag_specs, "instance"));
  STRATA_ASSIGN_OR_RETURN(spec.volume_tags, TagsFor(tag_specs, "volume"));
  STRATA_ASSIGN_OR_RETURN(spec.security_group_ids, StringListArg(args, "security-group-ids"));
  spec.key_name = OptionalStringArg(args, "key-name");
  STRATA_ASSIGN_OR_RETURN(auto mappings, ShorthandListArg(args, "block-device-mappings"));
  for (const json& j : mappings) {
    STRATA_ASSIGN_OR_RETURN(LaunchMapping l, LaunchMappingArg(j));
    spec.mappings.push_back(std::move(l));
  }
  spec.user_data = OptionalStringArg(args, "user-data");
  spec.cpu_credits = OptionalStringArg(args, "cpu-credits");
  STRATA_ASSIGN_OR_RETURN(auto instances, compute->RunInstances(spec));
  const GroupNames names = GroupNamesOf(compute);
  json items = json::array();
  for (InstanceInfo info : instances) {
    info.state = "pending";  // as EC2 answers run-instances; describe-instances shows running
    items.push_back(InstanceJson(info, names));
  }
  return Reservations(std::move(items)).at(0);  // EC2's RunInstances reply: one reservation
}

// EC2's DescribeInstances filters, each to where its values are in an item ("" for the values
// Strata's instances never have: IAM profiles, spot requests, public addresses, ...).
const std::map<std::string, std::string>& InstanceFilterPaths() {
  static const auto* kPaths = new std::map<std::string, std::string>{
      {"affinity", ""},
      {"architecture", "Architecture"},
      {"availability-zone", "Placement/AvailabilityZone"},
      {"block-device-mapping.attach-time", "BlockDeviceMappings[]/Ebs/AttachTime"},
      {"block-device-mapping.delete-on-termination",
       "BlockDeviceMappings[]/Ebs/DeleteOnTermination"},
      {"block-device-mapping.device-name", "BlockDeviceMappings[]/DeviceName"},
      {"block-device-mapping.status", "BlockDeviceMappings[]/Ebs/Status"},
      {"block-device-mapping.volume-id", "BlockDeviceMappings[]/Ebs/VolumeId"},
      {"boot-mode", "BootMode"},
      {"capacity-reservation-id", ""},
      {"client-token", ""},
      {"current-instance-boot-mode", "BootMode"},  // (the same here: no boot-mode changes)
      {"dns-name", "PublicDnsName"},
      {"ebs-optimized", "EbsOptimized"},
      {"ena-support", "EnaSupport"},
      {"enclave-options.enabled", "EnclaveOptions/Enabled"},
      {"hibernation-options.configured", "HibernationOptions/Configured"},
      {"host-id", ""},
      {"hypervisor", "Hypervisor"},
      {"iam-instance-profile.arn", ""},
      {"iam-instance-profile.id", ""},
      {"iam-instance-profile.name", ""},
      {"image-id", "ImageId"},
      {"instance-id", "InstanceId"},
      {"instance-lifecycle", ""},
      {"instance-state-code", "State/Code"},
      {"instance-state-name", "State/Name"},
      {"instance-type", "InstanceType"},
      {"instance.group-id", "SecurityGroups[]/GroupId"},
      {"instance.group-name", "SecurityGroups[]/GroupName"},
      {"ip-address", ""},
      {"ipv6-address", ""},
      {"kernel-id", ""},
      {"key-name", "KeyName"},
      {"launch-index", "AmiLaunchIndex"},
      {"launch-time", "LaunchTime"},
      {"maintenance-options.auto-recovery", "MaintenanceOptions/AutoRecovery"},
      {"metadata-options.http-endpoint", "MetadataOptions/HttpEndpoint"},
      {"metadata-options.http-protocol-ipv4", ""},
      {"metadata-options.http-protocol-ipv6", "MetadataOptions/HttpProtocolIpv6"},
      {"metadata-options.http-put-response-hop-limit", "MetadataOptions/HttpPutResponseHopLimit"},
      {"metadata-options.http-tokens", "MetadataOptions/HttpTokens"},
      {"metadata-options.instance-metadata-tags", "MetadataOptions/InstanceMetadataTags"},
      {"monitoring-state", "Monitoring/State"},
      {"network-interface.addresses.private-ip-address", ""},
      {"network-interface.attachment.attachment-id", ""},
      {"network-interface.network-interface-id", ""},
      {"network-interface.subnet-id", ""},
      {"network-interface.vpc-id", ""},
      {"outpost-arn", ""},
      {"owner-id", "OwnerId"},
      {"placement-group-name", "Placement/GroupName"},
      {"placement-partition-number", ""},
      {"platform", ""},
      {"platform-details", "PlatformDetails"},
      {"private-dns-name", "PrivateDnsName"},
      {"private-ip-address", "PrivateIpAddress"},
      {"product-code", ""},
      {"product-code.type", ""},
      {"ramdisk-id", ""},
      {"reason", "StateReason/Message"},
      {"requester-id", ""},
      {"reservation-id", "ReservationId"},
      {"root-device-name", "RootDeviceName"},
      {"root-device-type", "RootDeviceType"},
      {"source-dest-check", "SourceDestCheck"},
      {"spot-instance-request-id", ""},
      {"state", "State/Name"},  // (Strata's own short name, kept)
      {"state-reason-code", "StateReason/Code"},
      {"state-reason-message", "StateReason/Message"},
      {"subnet-id", "SubnetId"},
      {"tenancy", "Placement/Tenancy"},
      {"tpm-support", ""},
      {"usage-operation", "UsageOperation"},
      {"virtualization-type", "VirtualizationType"},
      {"vpc-id", "VpcId"}};
  return *kPaths;
}

Result<json> DescribeInstances(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, "instance-ids"));
  const GroupNames names = GroupNamesOf(compute);
  json items = json::array();
  if (!ids.empty()) {
    for (const std::string& id : ids) {
      STRATA_ASSIGN_OR_RETURN(InstanceInfo info, compute->DescribeInstance(id));
      items.push_back(InstanceJson(info, names));
    }
  } else {
    for (const InstanceInfo& info : compute->ListInstances()) {
      items.push_back(InstanceJson(info, names));
    }
  }
  for (json& item : items) {
    item["OwnerId"] = control::kOwnerId;  // (the reservation's; the owner-id filter reads it)
  }
  STRATA_ASSIGN_OR_RETURN(items,
                          control::ApplyPathFilters(args, std::move(items), InstanceFilterPaths()));
  for (json& item : items) {
    item.erase("OwnerId");
  }
  return json{{"Reservations", Reservations(std::move(items))}};
}

// EC2's instance status checks: a running Strata instance has passed both (its exports are
// served); any other state has no checks. Only running ones unless IncludeAllInstances.
json InstanceStatusJson(const json& instance) {
  const bool running = instance["State"]["Name"] == "running";
  const json check =
      running ? json{{"Status", "ok"},
                     {"Details", json::array({{{"Name", "reachability"}, {"Status", "passed"}}})}}
              : json{{"Status", "not-applicable"}};
  return json{{"InstanceId", instance["InstanceId"]},
              {"AvailabilityZone", control::kZone},
              {"InstanceState", instance["State"]},
              {"InstanceStatus", check},
              {"SystemStatus", check},
              {"Events", json::array()}};
}

Result<json> DescribeInstanceStatus(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, "instance-ids"));
  const json all = args.value("include-all-instances", json(false));
  const bool include_all = all == true || all == "true";
  json items = json::array();
  for (const std::string& id : ids) {
    STRATA_RETURN_IF_ERROR(compute->DescribeInstance(id).status());
  }
  for (const InstanceInfo& info : compute->ListInstances()) {
    if ((!ids.empty() && std::find(ids.begin(), ids.end(), info.instance_id) == ids.end()) ||
        (!include_all && info.state != "running")) {
      continue;
    }
    items.push_back(InstanceStatusJson(InstanceJson(info, {})));
  }
  static const std::map<std::string, std::string> kPaths = {
      {"availability-zone", "AvailabilityZone"},
      {"event.code", ""},
      {"event.description", ""},
      {"event.instance-event-id", ""},
      {"event.not-after", ""},
      {"event.not-before", ""},
      {"event.not-before-deadline", ""},
      {"instance-state-code", "InstanceState/Code"},
      {"instance-state-name", "InstanceState/Name"},
      {"instance-status.reachability", "InstanceStatus/Details[]/Status"},
      {"instance-status.status", "InstanceStatus/Status"},
      {"system-status.reachability", "SystemStatus/Details[]/Status"},
      {"system-status.status", "SystemStatus/Status"},
      {"attached-ebs-status.status", ""}};
  STRATA_ASSIGN_OR_RETURN(items, control::ApplyPathFilters(args, std::move(items), kPaths));
  return json{{"InstanceStatuses", items}};
}

// DescribeInstanceAttribute: one attribute of an instance, as EC2 answers it.
Result<json> DescribeInstanceAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, StringArg(args, "instance-id"));
  STRATA_ASSIGN_OR_RETURN(std::string attribute, StringArg(args, "attribute"));
  STRATA_ASSIGN_OR_RETURN(InstanceInfo info, compute->DescribeInstance(id));
  const json item = InstanceJson(info, GroupNamesOf(compute));
  auto value = [](json v) { return json{{"Value", std::move(v)}}; };
  const std::map<std::string, std::pair<std::string, json>> kAttributes = {
      {"instanceType", {"InstanceType", value(info.instance_type)}},
      {"disableApiTermination", {"DisableApiTermination", value(info.disable_api_termination)}},
      {"disableApiStop", {"DisableApiStop", value(false)}},
      {"instanceInitiatedShutdownBehavior", {"InstanceInitiatedShutdownBehavior", value("stop")}},
      {"rootDeviceName", {"RootDeviceName", value(info.root_device_name)}},
      {"blockDeviceMapping", {"BlockDeviceMappings", item["BlockDeviceMappings"]}},
      {"groupSet", {"Groups", item["SecurityGroups"]}},
      {"productCodes", {"ProductCodes", json::array()}},
      {"sourceDestCheck", {"SourceDestCheck", value(true)}},
      {"ebsOptimized", {"EbsOptimized", value(false)}},
      {"enaSupport", {"EnaSupport", value(true)}},
      {"enclaveOptions", {"EnclaveOptions", {{"Enabled", false}}}},
      {"userData", {info.user_data.empty() ? "" : "UserData", value(info.user_data)}},
      {"kernel", {"", json()}},
      {"ramdisk", {"", json()}},
      {"sriovNetSupport", {"", json()}}};
  auto it = kAttributes.find(attribute);
  if (it == kAttributes.end()) {
    return Status::InvalidArgument("InvalidParameterValue: Value (" + attribute +
                                   ") for parameter attribute is invalid. Unknown attribute.");
  }
  json out = {{"InstanceId", id}};
  if (!it->second.first.empty()) {
    out[it->second.first] = it->second.second;
  }
  return out;
}

// Burstable types' CPU credits: t2 launches standard, the later ones unlimited, as EC2's
// defaults (Terraform's aws_instance reads them for every t* instance). Others have none.
Result<json> DescribeInstanceCreditSpecifications(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, "instance-ids"));
  std::vector<InstanceInfo> instances;
  if (ids.empty()) {
    instances = compute->ListInstances();
  }
  for (const std::string& id : ids) {
    STRATA_ASSIGN_OR_RETURN(InstanceInfo info, compute->DescribeInstance(id));
    instances.push_back(std::move(info));
  }
  json items = json::array();
  for (const InstanceInfo& info : instances) {
    if (info.instance_type.starts_with("t") && info.state != "terminated") {
      items.push_back({{"InstanceId", info.instance_id},
                       {"CpuCredits", !info.cpu_credits.empty()               ? info.cpu_credits
                                      : info.instance_type.starts_with("t2.") ? "standard"
                                                                              : "unlimited"}});
    }
  }
  STRATA_ASSIGN_OR_RETURN(
      items, control::ApplyPathFilters(args, std::move(items), {{"instance-id", "InstanceId"}}));
  return json{{"InstanceCreditSpecifications", items}};
}

// ModifyInstanceCreditSpecification: each instance's own success or error, as EC2 answers.
Result<json> ModifyInstanceCreditSpecification(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto specs, ShorthandListArg(args, "instance-credit-specifications"));
  json ok = json::array();
  json failed = json::array();
  for (const json& spec : specs) {
    STRATA_ASSIGN_OR_RETURN(std::string id, Field(spec, "InstanceId"));
    STRATA_ASSIGN_OR_RETURN(std::string credits, Field(spec, "CpuCredits"));
    Status st = compute->SetCpuCredits(id, credits);
    if (st.ok()) {
      ok.push_back({{"InstanceId", id}});
    } else {
      const control::Ec2Error e = control::Ec2ErrorOf(st);
      failed.push_back({{"InstanceId", id}, {"Error", {{"Code", e.code}, {"Message", e.message}}}});
    }
  }
  return json{{"SuccessfulInstanceCreditSpecifications", ok},
              {"UnsuccessfulInstanceCreditSpecifications", failed}};
}

// GetInstanceUefiData: Strata's instances boot legacy BIOS, so there is no UEFI variable store.
Result<json> GetInstanceUefiData(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, StringArg(args, "instance-id"));
  STRATA_RETURN_IF_ERROR(compute->DescribeInstance(id).status());
  return json{{"InstanceId", id}, {"UefiData", ""}};
}

template <typename Fn>
Result<json> StateVerb(Compute* compute, const json& args, const char* key, Fn fn) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, "instance-ids"));
  if (ids.empty()) {
    return Status::InvalidArgument("missing --instance-ids");
  }
  STRATA_ASSIGN_OR_RETURN(auto changes, (compute->*fn)(ids));
  if (key == nullptr) {
    return json::object();
  }
  return json{{key, StateChangesJson(changes)}};
}

Result<json> ModifyInstanceAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, StringArg(args, "instance-id"));
  STRATA_ASSIGN_OR_RETURN(auto groups, StringListArg(args, "groups"));
  if (!groups.empty()) {
    STRATA_RETURN_IF_ERROR(compute->SetInstanceSecurityGroups(id, groups));
    return json::object();
  }
  if (args.contains("user-data")) {  // (the API's UserData.Value, base64)
    STRATA_RETURN_IF_ERROR(compute->SetUserData(id, OptionalStringArg(args, "user-data")));
    return json::object();
  }
  STRATA_ASSIGN_OR_RETURN(auto mappings, ShorthandListArg(args, "block-device-mappings"));
  if (!mappings.empty()) {  // DeleteOnTermination of attached volumes, as EC2 (all checked first)
    std::vector<std::pair<std::string, bool>> changes;
    for (const json& m : mappings) {
      STRATA_ASSIGN_OR_RETURN(std::string device, Field(m, "DeviceName"));
      const json ebs = m.value("Ebs", json::object());
      STRATA_ASSIGN_OR_RETURN(
          auto on, BoolField(ebs.is_object() ? ebs : json::object(), "DeleteOnTermination"));
      if (device.empty() || !on) {
        return Status::InvalidArgument(
            "--block-device-mappings wants DeviceName=D,Ebs={DeleteOnTermination=true|false}");
      }
      changes.emplace_back(device, *on);
    }
    STRATA_ASSIGN_OR_RETURN(InstanceInfo info, compute->DescribeInstance(id));
    // Every device is checked before anything changes. (A named variable: clang 14 cannot
    // capture a structured binding.)
    for (const auto& change : changes) {
      const std::string& device = change.first;
      if (std::none_of(info.devices.begin(), info.devices.end(), [&](const InstanceDevice& d) {
            return d.device_name == device && !d.instance_store();
          })) {
        return Status::NotFound("InvalidInstanceAttributeValue: no EBS volume is attached to " +
                                id + " at " + device);
      }
    }
    for (const auto& [device, on] : changes) {
      STRATA_RETURN_IF_ERROR(compute->SetDeleteOnTermination(id, device, on));
    }
    return json::object();
  }
  if (!args.contains("disable-api-termination") || !args["disable-api-termination"].is_boolean()) {
    return Status::InvalidArgument(
        "give --groups, --block-device-mappings, --disable-api-termination or "
        "--no-disable-api-termination");
  }
  STRATA_RETURN_IF_ERROR(
      compute->SetTerminationProtection(id, args["disable-api-termination"].get<bool>()));
  return json::object();
}

Result<json> AttachVolume(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string volume, StringArg(args, "volume-id"));
  STRATA_ASSIGN_OR_RETURN(std::string instance, StringArg(args, "instance-id"));
  STRATA_ASSIGN_OR_RETURN(std::string device, StringArg(args, "device"));
  STRATA_ASSIGN_OR_RETURN(InstanceDevice d, compute->AttachVolume(volume, instance, device));
  return AttachmentJson(instance, d, "attaching");  // as EC2 answers; describe shows in-use
}

Result<json> DetachVolume(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string volume, StringArg(args, "volume-id"));
  // EC2's optional InstanceId and Device must name the attachment there is (--force: Strata's
  // detach never waits on a guest, so it changes nothing).
  const std::string instance = control::OptionalStringArg(args, "instance-id");
  const std::string device = control::OptionalStringArg(args, "device");
  if (!instance.empty() || !device.empty()) {
    auto attached = compute->AttachmentOf(volume);
    if (!attached || (!instance.empty() && attached->first != instance) ||
        (!device.empty() && attached->second.device_name != device)) {
      return Status::NotFound(
          "InvalidAttachment.NotFound: The volume " + volume + " is not attached to " +
          (instance.empty() ? "any instance" : instance) + (device.empty() ? "" : " at " + device));
    }
  }
  STRATA_ASSIGN_OR_RETURN(auto detached, compute->DetachVolume(volume));
  return AttachmentJson(detached.first, detached.second, "detaching");
}

Result<json> CreateTags(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, "resources"));
  STRATA_ASSIGN_OR_RETURN(auto given, TagsArg(args));
  Tags tags;
  for (const auto& [key, value] : given) {
    tags[key] = value.value_or("");
  }
  STRATA_RETURN_IF_ERROR(compute->CreateTags(ids, tags));
  return json::object();
}

Result<json> DeleteTags(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, "resources"));
  if (ids.empty()) {
    return Status::InvalidArgument("missing --resources");
  }
  STRATA_ASSIGN_OR_RETURN(auto tags, TagsArg(args));
  STRATA_RETURN_IF_ERROR(compute->DeleteTags(ids, tags));
  return json::object();
}

// EC2's DescribeInstanceTypes filters: those of what Strata models (storage, architecture,
// virtualization), and "" for the rest (memory, network, EBS bandwidth): they match nothing.
const std::map<std::string, std::string>& InstanceTypeFilterPaths() {
  static const auto* kPaths = [] {
    auto* paths = new std::map<std::string, std::string>{
        {"burstable-performance-supported", "BurstablePerformanceSupported"},
        {"current-generation", "CurrentGeneration"},
        {"hypervisor", "Hypervisor"},
        {"instance-storage-info.disk.count", "InstanceStorageInfo/Disks[]/Count"},
        {"instance-storage-info.disk.size-in-gb", "InstanceStorageInfo/Disks[]/SizeInGB"},
        {"instance-storage-info.disk.type", "InstanceStorageInfo/Disks[]/Type"},
        {"instance-storage-info.nvme-support", "InstanceStorageInfo/NvmeSupport"},
        {"instance-storage-info.total-size-in-gb", "InstanceStorageInfo/TotalSizeInGB"},
        {"instance-storage-supported", "InstanceStorageSupported"},
        {"instance-type", "InstanceType"},
        {"processor-info.supported-architecture", "ProcessorInfo/SupportedArchitectures[]"},
        {"supported-boot-mode", "SupportedBootModes[]"},
        {"supported-root-device-type", "SupportedRootDeviceTypes[]"},
        {"supported-virtualization-type", "SupportedVirtualizationTypes[]"}};
    for (const char* unmodelled : {"auto-recovery-supported",
                                   "bare-metal",
                                   "dedicated-hosts-supported",
                                   "ebs-info.ebs-optimized-info.baseline-bandwidth-in-mbps",
                                   "ebs-info.ebs-optimized-info.baseline-iops",
                                   "ebs-info.ebs-optimized-info.baseline-throughput-in-mbps",
                                   "ebs-info.ebs-optimized-info.maximum-bandwidth-in-mbps",
                                   "ebs-info.ebs-optimized-info.maximum-iops",
                                   "ebs-info.ebs-optimized-info.maximum-throughput-in-mbps",
                                   "ebs-info.ebs-optimized-support",
                                   "ebs-info.encryption-support",
                                   "ebs-info.nvme-support",
                                   "free-tier-eligible",
                                   "hibernation-supported",
                                   "instance-storage-info.encryption-support",
                                   "memory-info.size-in-mib",
                                   "network-info.efa-supported",
                                   "network-info.ena-support",
                                   "network-info.encryption-in-transit-supported",
                                   "network-info.ipv4-addresses-per-interface",
                                   "network-info.ipv6-addresses-per-interface",
                                   "network-info.ipv6-supported",
                                   "network-info.maximum-network-cards",
                                   "network-info.maximum-network-interfaces",
                                   "network-info.network-performance",
                                   "nitro-enclaves-support",
                                   "nitro-tpm-support",
                                   "processor-info.sustained-clock-speed-in-ghz",
                                   "supported-usage-class",
                                   "vcpu-info.default-cores",
                                   "vcpu-info.default-threads-per-core",
                                   "vcpu-info.default-vcpus",
                                   "vcpu-info.valid-cores",
                                   "vcpu-info.valid-threads-per-core"}) {
      (*paths)[unmodelled] = "";
    }
    return paths;
  }();
  return *kPaths;
}

Result<json> DescribeInstanceTypes(Compute*, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto wanted, StringListArg(args, "instance-types"));
  for (const std::string& name : wanted) {
    if (std::none_of(InstanceTypes().begin(), InstanceTypes().end(),
                     [&name](const InstanceType& t) { return name == t.name; })) {
      return Status::InvalidArgument(
          "InvalidInstanceType: The following supplied instance types "
          "do not exist: [" +
          name + "]");
    }
  }
  json items = json::array();
  for (const InstanceType& t : InstanceTypes()) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), t.name) == wanted.end()) {
      continue;
    }
    const std::string name = t.name;
    json item = {{"InstanceType", name},
                 {"InstanceStorageSupported", t.instance_store_count > 0},
                 {"CurrentGeneration", true},
                 {"BurstablePerformanceSupported", name.starts_with("t")},
                 {"Hypervisor", "nitro"},
                 {"ProcessorInfo", {{"SupportedArchitectures", json::array({"x86_64"})}}},
                 {"SupportedBootModes", json::array({"legacy-bios"})},
                 {"SupportedRootDeviceTypes", json::array({"ebs", "instance-store"})},
                 {"SupportedVirtualizationTypes", json::array({"hvm"})}};
    if (t.instance_store_count > 0) {
      const uint64_t gb = t.instance_store_bytes / 1000000000ull;
      item["InstanceStorageInfo"] = {
          {"TotalSizeInGB", gb * t.instance_store_count},
          {"NvmeSupport", "required"},
          {"Disks",
           json::array({{{"Count", t.instance_store_count}, {"SizeInGB", gb}, {"Type", "ssd"}}})}};
    }
    items.push_back(item);
  }
  STRATA_ASSIGN_OR_RETURN(
      items, control::ApplyPathFilters(args, std::move(items), InstanceTypeFilterPaths()));
  return json{{"InstanceTypes", items}};
}

}  // namespace

namespace control {

Result<std::vector<json>> ShorthandListArg(const json& args, const char* name) {
  if (args.contains(name) && args[name].is_string()) {  // one structure (the API's form)
    return ShorthandListArg(json{{name, json::array({args[name]})}}, name);
  }
  STRATA_ASSIGN_OR_RETURN(auto texts, StringListArg(args, name));
  std::vector<json> out;
  for (const std::string& text : texts) {
    STRATA_ASSIGN_OR_RETURN(json j, control::ParseShorthand(text));
    if (j.is_array()) {
      for (json& item : j) {
        out.push_back(std::move(item));
      }
    } else {
      out.push_back(std::move(j));
    }
  }
  for (const json& j : out) {
    if (!j.is_object()) {
      return Status::InvalidArgument(std::string("--") + name + " items must be Key=Value lists");
    }
  }
  return out;
}

json ImageItemJson(Pool* pool, const ImageInfo& image) { return ImageJson(pool, image); }

Result<bool> OwnersIncludeSelf(const json& args, const char* name) {
  STRATA_ASSIGN_OR_RETURN(auto owners, StringListArg(args, name));
  return owners.empty() || std::any_of(owners.begin(), owners.end(), [](const std::string& o) {
           return o == "self" || o == kOwnerId;
         });
}

Result<Tags> TagSpecTags(const json& args, const std::string& resource_type) {
  STRATA_ASSIGN_OR_RETURN(auto specs, TagSpecArg(args));
  return TagsFor(specs, resource_type);
}

json TagsJson(const Tags& tags) {
  json out = json::array();
  for (const auto& [key, value] : tags) {
    out.push_back({{"Key", key}, {"Value", value}});
  }
  return out;
}

// EC2 DescribeTags: every tag of every resource, as (resource, key, value) rows.
Result<json> DescribeTags(Compute* compute, const json& args) {
  std::vector<std::pair<std::string, const char*>> resources;  // (id, EC2 resource type)
  for (const VolumeInfo& v : compute->pool()->ListVolumes()) {
    resources.emplace_back(v.volume_id, "volume");
  }
  for (const SnapshotInfo& s : compute->pool()->ListSnapshots()) {
    resources.emplace_back(s.snapshot_id, "snapshot");
  }
  for (const ImageInfo& i : compute->ListImages()) {
    resources.emplace_back(i.image_id, "image");
  }
  for (const InstanceInfo& i : compute->ListInstances()) {
    resources.emplace_back(i.instance_id, "instance");
  }
  for (const SecurityGroupInfo& g : compute->ListSecurityGroups()) {
    resources.emplace_back(g.group_id, "security-group");
  }
  for (const KeyPairInfo& k : compute->ListKeyPairs()) {
    resources.emplace_back(k.key_pair_id, "key-pair");
  }
  json rows = json::array();
  for (const auto& [id, type] : resources) {
    for (const auto& [key, value] : compute->TagsOf(id)) {
      rows.push_back({{"Key", key},
                      {"ResourceId", id},
                      {"ResourceType", type},
                      {"Value", value},
                      {"Tags", json::array()}});  // (Tags: only so tag: filters find nothing)
    }
  }
  STRATA_ASSIGN_OR_RETURN(
      rows, ApplyFilters(args, std::move(rows), {"key", "value", "resource-id", "resource-type"},
                         [](const json& row, const std::string& name) {
                           static const std::map<std::string, std::string> kFields = {
                               {"key", "Key"},
                               {"value", "Value"},
                               {"resource-id", "ResourceId"},
                               {"resource-type", "ResourceType"}};
                           return std::optional<std::vector<std::string>>(
                               {row[kFields.at(name)].get<std::string>()});
                         }));
  for (json& row : rows) {
    row.erase("Tags");
  }
  return json{{"Tags", rows}};
}

Result<json> DescribeAvailabilityZones(Compute*, const json& args) {
  json zones = json::array({{{"State", "available"},
                             {"OptInStatus", "opt-in-not-required"},
                             {"Messages", json::array()},
                             {"RegionName", control::kRegion},
                             {"ZoneName", control::kZone},
                             {"ZoneId", "use1-az1"},
                             {"GroupName", control::kRegion},
                             {"NetworkBorderGroup", control::kRegion},
                             {"ZoneType", "availability-zone"}}});
  STRATA_ASSIGN_OR_RETURN(auto names, StringListArg(args, "zone-names"));
  STRATA_ASSIGN_OR_RETURN(auto zone_ids, StringListArg(args, "zone-ids"));
  for (const std::string& name : names) {
    if (name != control::kZone) {
      return Status::InvalidArgument("InvalidParameterValue: Invalid availability zone: [" + name +
                                     "]");
    }
  }
  for (const std::string& id : zone_ids) {
    if (id != "use1-az1") {
      return Status::InvalidArgument("InvalidParameterValue: Invalid availability zone: [" + id +
                                     "]");
    }
  }
  static const std::map<std::string, std::string> kPaths = {
      {"group-name", "GroupName"},
      {"message", ""},
      {"opt-in-status", "OptInStatus"},
      {"parent-zone-id", ""},
      {"parent-zone-name", ""},
      {"region-name", "RegionName"},
      {"state", "State"},
      {"zone-id", "ZoneId"},
      {"zone-name", "ZoneName"},
      {"zone-type", "ZoneType"},
      {"network-border-group", "NetworkBorderGroup"}};
  STRATA_ASSIGN_OR_RETURN(zones, control::ApplyPathFilters(args, std::move(zones), kPaths));
  return json{{"AvailabilityZones", zones}};
}

Result<json> DescribeRegions(Compute*, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto names, StringListArg(args, "region-names"));
  for (const std::string& name : names) {
    if (name != control::kRegion) {
      return Status::InvalidArgument("InvalidParameterValue: Invalid region: " + name);
    }
  }
  json regions =
      json::array({{{"Endpoint", std::string("ec2.") + control::kRegion + ".amazonaws.com"},
                    {"RegionName", control::kRegion},
                    {"OptInStatus", "opt-in-not-required"}}});
  static const std::map<std::string, std::string> kPaths = {
      {"endpoint", "Endpoint"}, {"opt-in-status", "OptInStatus"}, {"region-name", "RegionName"}};
  STRATA_ASSIGN_OR_RETURN(regions, control::ApplyPathFilters(args, std::move(regions), kPaths));
  return json{{"Regions", regions}};
}

Result<json> ApplyFilters(const json& args, json items, const std::vector<std::string>& names,
                          const FilterField& field) {
  STRATA_ASSIGN_OR_RETURN(auto filters, ShorthandListArg(args, "filters"));
  for (const json& f : filters) {
    STRATA_ASSIGN_OR_RETURN(std::string name, Field(f, "Name"));
    if (name.empty() || !f.contains("Values")) {
      return Status::InvalidArgument("each filter needs Name=...,Values=...");
    }
    const bool by_tag = name.starts_with("tag:") || name == "tag-key";
    if (!by_tag && std::find(names.begin(), names.end(), name) == names.end()) {
      return Status::InvalidArgument("InvalidParameterValue: the filter '" + name + "' is invalid");
    }
    std::vector<std::string> wanted;
    for (const json& v : f["Values"].is_array() ? f["Values"] : json::array({f["Values"]})) {
      if (!v.is_string()) {
        return Status::InvalidArgument("filter values must be strings");
      }
      wanted.push_back(v.get<std::string>());
    }
    json kept = json::array();
    for (json& item : items) {
      std::optional<std::vector<std::string>> have;
      if (name.starts_with("tag:") || name == "tag-key") {
        std::vector<std::string> values;
        for (const json& tag : item["Tags"]) {
          if (name == "tag-key") {
            values.push_back(tag["Key"].get<std::string>());
          } else if (tag["Key"].get<std::string>() == name.substr(4)) {
            values.push_back(tag["Value"].get<std::string>());
          }
        }
        have = values;
      } else {
        have = field(item, name);
      }
      if (!have) {
        return Status::InvalidArgument("InvalidParameterValue: the filter '" + name +
                                       "' is invalid");
      }
      // EC2: a resource matches when any of its values matches any wanted value (* and ?).
      bool match = std::any_of(have->begin(), have->end(), [&](const std::string& v) {
        return std::any_of(wanted.begin(), wanted.end(), [&](const std::string& w) {
          return fnmatch(w.c_str(), v.c_str(), 0) == 0;
        });
      });
      if (match) {
        kept.push_back(std::move(item));
      }
    }
    items = std::move(kept);
  }
  return items;
}

namespace {

// The values at `path` in `item`, as text: "A/B" walks members, "A[]" every element of list A.
void CollectPath(const json& item, std::string_view path, std::vector<std::string>* out) {
  if (path.empty()) {
    if (item.is_string()) {
      out->push_back(item.get<std::string>());
    } else if (!item.is_null() && !item.is_structured()) {
      out->push_back(item.dump());  // numbers; booleans as true/false, as EC2 writes them
    }
    return;
  }
  const size_t slash = path.find('/');
  std::string_view step = path.substr(0, slash);
  const std::string_view rest = slash == std::string_view::npos ? "" : path.substr(slash + 1);
  const bool each = step.ends_with("[]");
  if (each) {
    step.remove_suffix(2);
  }
  if (!item.is_object() || !item.contains(std::string(step))) {
    return;
  }
  const json& next = item[std::string(step)];
  if (each && next.is_array()) {
    for (const json& element : next) {
      CollectPath(element, rest, out);
    }
  } else if (!each) {
    CollectPath(next, rest, out);
  }
}

}  // namespace

Result<json> ApplyPathFilters(const json& args, json items,
                              const std::map<std::string, std::string>& paths) {
  std::vector<std::string> names;
  for (const auto& [name, path] : paths) {
    names.push_back(name);
  }
  return ApplyFilters(args, std::move(items), names,
                      [&paths](const json& item, const std::string& name) {
                        std::vector<std::string> values;
                        CollectPath(item, paths.at(name), &values);
                        return std::optional(values);
                      });
}

void AddComputeHandlers(HandlerTable* table) {
  table->emplace("register-image", RegisterImage);
  table->emplace("describe-images", DescribeImages);
  table->emplace("deregister-image", DeregisterImage);
  table->emplace("create-image", CreateImage);
  table->emplace("run-instances", RunInstances);
  table->emplace("describe-instances", DescribeInstances);
  table->emplace("describe-instance-status", DescribeInstanceStatus);
  table->emplace("describe-instance-attribute", DescribeInstanceAttribute);
  table->emplace("describe-instance-credit-specifications", DescribeInstanceCreditSpecifications);
  table->emplace("modify-instance-credit-specification", ModifyInstanceCreditSpecification);
  table->emplace("get-instance-uefi-data", GetInstanceUefiData);
  table->emplace("stop-instances", [](Compute* c, const json& a) {
    return StateVerb(c, a, "StoppingInstances", &Compute::StopInstances);
  });
  table->emplace("start-instances", [](Compute* c, const json& a) {
    return StateVerb(c, a, "StartingInstances", &Compute::StartInstances);
  });
  table->emplace("reboot-instances", [](Compute* c, const json& a) {
    return StateVerb(c, a, nullptr, &Compute::RebootInstances);
  });
  table->emplace("terminate-instances", [](Compute* c, const json& a) {
    return StateVerb(c, a, "TerminatingInstances", &Compute::TerminateInstances);
  });
  table->emplace("modify-instance-attribute", ModifyInstanceAttribute);
  table->emplace("attach-volume", AttachVolume);
  table->emplace("detach-volume", DetachVolume);
  table->emplace("create-tags", CreateTags);
  table->emplace("delete-tags", DeleteTags);
  table->emplace("describe-instance-types", DescribeInstanceTypes);
  table->emplace("describe-tags", DescribeTags);
  table->emplace("describe-availability-zones", DescribeAvailabilityZones);
  table->emplace("describe-regions", DescribeRegions);
}

}  // namespace control

}  // namespace strata
