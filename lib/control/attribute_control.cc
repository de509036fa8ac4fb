// EC2's attribute calls (Describe/Modify/Reset{Image,Snapshot,Volume,Instance}Attribute) and
// DescribeInstanceStatus / DescribeInstanceCreditSpecifications: what infrastructure tools read
// after every create (docs/ec2-api.md "Attributes").
#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>

#include "control/control.h"
#include "control/handlers.h"
#include "util/clock.h"

namespace strata {

using json = nlohmann::json;

namespace {

// EC2 reads an attribute's name leniently: Ansible's ec2_ami sends "Description " and
// "LaunchPermission". Compared trimmed and without case.
std::string AttributeKey(const json& args) {
  std::string out;
  for (char c : control::OptionalStringArg(args, "attribute")) {
    if (!std::isspace(static_cast<unsigned char>(c))) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

Status UnknownAttribute(const json& args) {
  return Status::InvalidArgument("InvalidParameterValue: Value (" +
                                 control::OptionalStringArg(args, "attribute") +
                                 ") for parameter attribute is invalid. Unknown attribute.");
}

json Value(json v) { return json{{"Value", std::move(v)}}; }

// EC2's LaunchPermission / CreateVolumePermission list.
json PermissionsJson(const ResourceAttributes& a) {
  json out = json::array();
  for (const std::string& group : a.groups) {
    out.push_back({{"Group", group}});
  }
  for (const std::string& user : a.user_ids) {
    out.push_back({{"UserId", user}});
  }
  return out;
}

// Applies one Add/Remove item ({"UserId": ...} or {"Group": ...}) to `a`.
Status ApplyPermission(const json& item, bool add, ResourceAttributes* a) {
  if (!item.is_object()) {
    return Status::InvalidArgument(
        "InvalidParameterValue: a permission is {UserId=...} or "
        "{Group=all}");
  }
  for (auto [key, list] : {std::pair{"UserId", &a->user_ids}, std::pair{"Group", &a->groups}}) {
    if (!item.contains(key) || !item[key].is_string()) {
      continue;
    }
    const std::string value = item[key].get<std::string>();
    if (add) {
      list->push_back(value);
    } else {
      list->erase(std::remove(list->begin(), list->end(), value), list->end());
    }
  }
  return Status::OK();
}

// The new permissions from EC2's two forms: a structure {Add: [...], Remove: [...]}
// (`structure` names the argument) or OperationType add|remove with UserIds and UserGroups
// (images) or GroupNames (snapshots).
Result<ResourceAttributes> ChangedPermissions(const json& args, const char* structure,
                                              const char* groups_arg, ResourceAttributes a) {
  STRATA_ASSIGN_OR_RETURN(auto changes, control::ShorthandListArg(args, structure));
  for (const json& change : changes) {
    for (auto [key, add] : {std::pair{"Add", true}, std::pair{"Remove", false}}) {
      for (const json& item : change.value(key, json::array())) {
        STRATA_RETURN_IF_ERROR(ApplyPermission(item, add, &a));
      }
    }
  }
  const std::string op = control::OptionalStringArg(args, "operation-type");
  STRATA_ASSIGN_OR_RETURN(auto users, control::StringListArg(args, "user-ids"));
  STRATA_ASSIGN_OR_RETURN(auto groups, control::StringListArg(args, groups_arg));
  if (op.empty() && (!users.empty() || !groups.empty())) {
    return Status::InvalidArgument("MissingParameter: OperationType (add or remove)");
  }
  if (!op.empty() && op != "add" && op != "remove") {
    return Status::InvalidArgument("InvalidParameterValue: OperationType is add or remove");
  }
  for (const std::string& u : users) {
    STRATA_RETURN_IF_ERROR(ApplyPermission({{"UserId", u}}, op == "add", &a));
  }
  for (const std::string& g : groups) {
    STRATA_RETURN_IF_ERROR(ApplyPermission({{"Group", g}}, op == "add", &a));
  }
  return a;
}

Result<json> DescribeImageAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "image-id"));
  STRATA_ASSIGN_OR_RETURN(ImageInfo image, compute->DescribeImage(id));
  STRATA_ASSIGN_OR_RETURN(ResourceAttributes a, compute->AttributesOf(id));
  const std::string key = AttributeKey(args);
  json out = {{"ImageId", id}};
  if (key == "description") {
    out["Description"] = Value(image.description);
  } else if (key == "launchpermission") {
    out["LaunchPermissions"] = PermissionsJson(a);
  } else if (key == "productcodes") {
    out["ProductCodes"] = json::array();
  } else if (key == "blockdevicemapping") {
    out["BlockDeviceMappings"] =
        control::ImageItemJson(compute->pool(), image)["BlockDeviceMappings"];
  } else if (key == "sriovnetsupport") {
    out["SriovNetSupport"] = Value("simple");
  } else if (key == "bootmode") {
    out["BootMode"] = Value("legacy-bios");
  } else if (key == "imdssupport") {
    out["ImdsSupport"] = Value("v2.0");
  } else if (key != "kernel" && key != "ramdisk" && key != "tpmsupport" && key != "uefidata" &&
             key != "lastlaunchedtime" && key != "deregistrationprotection") {
    return UnknownAttribute(args);  // (the others: EC2 answers with the image id alone)
  }
  return out;
}

Result<json> ModifyImageAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "image-id"));
  STRATA_ASSIGN_OR_RETURN(auto descriptions, control::ShorthandListArg(args, "description"));
  const std::string key = AttributeKey(args);
  if (!descriptions.empty() || (key == "description" && args.contains("value"))) {
    const std::string text = descriptions.empty() ? control::OptionalStringArg(args, "value")
                                                  : descriptions[0].value("Value", std::string());
    STRATA_RETURN_IF_ERROR(compute->SetImageDescription(id, text));
    return json::object();
  }
  if (!key.empty() && key != "launchpermission") {
    return Status::InvalidArgument(
        "InvalidParameterCombination: Strata modifies an image's "
        "description and launchPermission");
  }
  STRATA_ASSIGN_OR_RETURN(ResourceAttributes a, compute->AttributesOf(id));
  STRATA_ASSIGN_OR_RETURN(a, ChangedPermissions(args, "launch-permission", "user-groups", a));
  STRATA_RETURN_IF_ERROR(compute->SetAttributes(id, a));
  return json::object();
}

Result<json> DescribeSnapshotAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  STRATA_ASSIGN_OR_RETURN(ResourceAttributes a, compute->AttributesOf(id));
  const std::string key = AttributeKey(args);
  json out = {{"SnapshotId", id}};
  if (key == "createvolumepermission") {
    out["CreateVolumePermissions"] = PermissionsJson(a);
  } else if (key == "productcodes") {
    out["ProductCodes"] = json::array();
  } else {
    return UnknownAttribute(args);
  }
  return out;
}

Result<json> ModifySnapshotAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  const std::string key = AttributeKey(args);
  if (!key.empty() && key != "createvolumepermission") {
    return UnknownAttribute(args);
  }
  STRATA_ASSIGN_OR_RETURN(ResourceAttributes a, compute->AttributesOf(id));
  STRATA_ASSIGN_OR_RETURN(a,
                          ChangedPermissions(args, "create-volume-permission", "group-names", a));
  STRATA_RETURN_IF_ERROR(compute->SetAttributes(id, a));
  return json::object();
}

Result<json> ResetSnapshotAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "snapshot-id"));
  if (AttributeKey(args) != "createvolumepermission") {
    return UnknownAttribute(args);
  }
  STRATA_RETURN_IF_ERROR(compute->SetAttributes(id, ResourceAttributes{}));
  return json::object();
}

// EC2's account settings for encryption at rest (docs/security.md "Encryption at rest").
Result<json> SetEncryptionByDefault(Compute* compute, bool on) {
  STRATA_RETURN_IF_ERROR(compute->SetEncryptionByDefault(on));
  return json{{"EbsEncryptionByDefault", on}};
}

Result<json> DefaultKmsKeyReply(const Result<std::string>& arn) {
  if (!arn.ok()) {
    return arn.status();
  }
  return json{{"KmsKeyId", *arn}};
}

Result<json> DescribeVolumeAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "volume-id"));
  STRATA_ASSIGN_OR_RETURN(ResourceAttributes a, compute->AttributesOf(id));
  const std::string key = AttributeKey(args);
  json out = {{"VolumeId", id}};
  if (key == "autoenableio") {
    out["AutoEnableIO"] = Value(a.auto_enable_io);
  } else if (key == "productcodes") {
    out["ProductCodes"] = json::array();
  } else {
    return UnknownAttribute(args);
  }
  return out;
}

Result<json> ModifyVolumeAttribute(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "volume-id"));
  STRATA_ASSIGN_OR_RETURN(auto values, control::ShorthandListArg(args, "auto-enable-io"));
  const json value = values.empty() ? json() : values[0].value("Value", json());
  if (value != true && value != false && value != "true" && value != "false") {
    return Status::InvalidArgument("MissingParameter: AutoEnableIO.Value (true or false)");
  }
  STRATA_ASSIGN_OR_RETURN(ResourceAttributes a, compute->AttributesOf(id));
  a.auto_enable_io = value == true || value == "true";
  STRATA_RETURN_IF_ERROR(compute->SetAttributes(id, a));
  return json::object();
}

// "2027-01-01T00:00:00Z" or with fractions, as EC2's timestamps: the time in ms since the epoch.
Result<int64_t> ParseTimestamp(const std::string& text) {
  std::tm t{};
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &t);
  if (rest == nullptr) {
    return Status::InvalidArgument("InvalidParameterValue: '" + text +
                                   "' is not a timestamp (YYYY-MM-DDTHH:MM:SSZ)");
  }
  int64_t ms = 0;
  if (*rest == '.') {
    int digits = 0;
    for (rest++; std::isdigit(static_cast<unsigned char>(*rest)); rest++, digits++) {
      if (digits < 3) {
        ms = ms * 10 + (*rest - '0');
      }
    }
    for (; digits < 3; digits++) {
      ms *= 10;
    }
  }
  if (std::string(rest) != "Z" && std::string(rest) != "+00:00" && *rest != '\0') {
    return Status::InvalidArgument("InvalidParameterValue: '" + text + "' is not in UTC");
  }
  return static_cast<int64_t>(timegm(&t)) * 1000 + ms;
}

// EnableImageDeprecation: when the image stops being listed to others (a pool has no others:
// recorded, and shown as DeprecationTime). EC2 takes a time in the future, at most 10 years on.
Result<json> EnableImageDeprecation(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "image-id"));
  STRATA_ASSIGN_OR_RETURN(std::string at, control::StringArg(args, "deprecate-at"));
  STRATA_ASSIGN_OR_RETURN(int64_t ms, ParseTimestamp(at));
  const int64_t now = WallClockMs();
  if (ms <= now || ms > now + 10ll * 366 * 24 * 3600 * 1000) {
    return Status::InvalidArgument(
        "InvalidParameterValue: DeprecateAt must be in the future, at most 10 years on");
  }
  STRATA_ASSIGN_OR_RETURN(ResourceAttributes a, compute->AttributesOf(id));
  a.deprecation_time = IsoTime(ms);
  STRATA_RETURN_IF_ERROR(compute->SetAttributes(id, a));
  return json{{"Return", true}};
}

Result<json> DisableImageDeprecation(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "image-id"));
  STRATA_ASSIGN_OR_RETURN(ResourceAttributes a, compute->AttributesOf(id));
  a.deprecation_time.clear();
  STRATA_RETURN_IF_ERROR(compute->SetAttributes(id, a));
  return json{{"Return", true}};
}

}  // namespace

namespace control {

void AddAttributeHandlers(HandlerTable* table) {
  table->emplace("describe-image-attribute", DescribeImageAttribute);
  table->emplace("modify-image-attribute", ModifyImageAttribute);
  table->emplace("enable-image-deprecation", EnableImageDeprecation);
  table->emplace("disable-image-deprecation", DisableImageDeprecation);
  table->emplace("describe-snapshot-attribute", DescribeSnapshotAttribute);
  table->emplace("modify-snapshot-attribute", ModifySnapshotAttribute);
  table->emplace("reset-snapshot-attribute", ResetSnapshotAttribute);
  table->emplace("describe-volume-attribute", DescribeVolumeAttribute);
  table->emplace("enable-ebs-encryption-by-default", [](Compute* compute, const json&) {
    return SetEncryptionByDefault(compute, true);
  });
  table->emplace("disable-ebs-encryption-by-default", [](Compute* compute, const json&) {
    return SetEncryptionByDefault(compute, false);
  });
  table->emplace("get-ebs-encryption-by-default", [](Compute* compute, const json&) {
    return Result<json>(
        json{{"EbsEncryptionByDefault", compute->EncryptionByDefault()}, {"SseType", "sse-ebs"}});
  });
  table->emplace("get-ebs-default-kms-key-id", [](Compute* compute, const json&) {
    return DefaultKmsKeyReply(compute->DefaultKmsKey());
  });
  table->emplace("modify-ebs-default-kms-key-id", [](Compute* compute, const json& args) {
    auto ref = control::StringArg(args, "kms-key-id");
    return ref.ok() ? DefaultKmsKeyReply(compute->SetDefaultKmsKey(*ref))
                    : Result<json>(ref.status());
  });
  table->emplace("reset-ebs-default-kms-key-id", [](Compute* compute, const json&) {
    return DefaultKmsKeyReply(compute->SetDefaultKmsKey(""));
  });
  table->emplace("modify-volume-attribute", ModifyVolumeAttribute);
}

}  // namespace control

}  // namespace strata
