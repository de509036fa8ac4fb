// Control verbs for security groups, with EC2's names and JSON (docs/security.md).
#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>

#include "control/control.h"
#include "control/handlers.h"

namespace strata {

using json = nlohmann::json;

namespace {

json GroupJson(const SecurityGroupInfo& g) {
  json permissions = json::array();
  for (const IngressRule& r : g.ingress) {
    const bool v6 = r.cidr.find(':') != std::string::npos;
    json p = {{"IpProtocol", r.protocol},
              {"IpRanges", v6 ? json::array() : json::array({{{"CidrIp", r.cidr}}})},
              {"Ipv6Ranges", v6 ? json::array({{{"CidrIpv6", r.cidr}}}) : json::array()}};
    if (r.protocol != "-1") {
      p["FromPort"] = r.from_port;
      p["ToPort"] = r.to_port;
    }
    permissions.push_back(p);
  }
  return json{
      {"GroupId", g.group_id},
      {"GroupName", g.group_name},
      {"Description", g.description},
      {"IpPermissions", permissions},
      // EC2's default egress rule, which every new group in a VPC carries (Strata's
      // exports only take connections: there is nothing outbound to guard)
      {"IpPermissionsEgress", json::array({{{"IpProtocol", "-1"},
                                            {"IpRanges", json::array({{{"CidrIp", "0.0.0.0/0"}}})},
                                            {"Ipv6Ranges", json::array()},
                                            {"PrefixListIds", json::array()},
                                            {"UserIdGroupPairs", json::array()}}})},
      {"OwnerId", control::kOwnerId},
      {"VpcId", control::kDefaultVpcId},
      {"Tags", control::TagsJson(g.tags)}};
}

// A group's values for one of EC2's DescribeSecurityGroups filters; nullopt: not a filter.
std::optional<std::vector<std::string>> GroupField(const json& g, const std::string& name) {
  auto rules = [&g](const char* list, const char* member) {
    std::vector<std::string> out;
    for (const json& p : g[list]) {
      if (std::string(member) == "cidr") {
        for (const json& r : p["IpRanges"]) {
          out.push_back(r["CidrIp"].get<std::string>());
        }
        for (const json& r : p["Ipv6Ranges"]) {
          out.push_back(r["CidrIpv6"].get<std::string>());
        }
      } else if (p.contains(member)) {
        out.push_back(p[member].is_string() ? p[member].get<std::string>() : p[member].dump());
      }
    }
    return out;
  };
  static const std::map<std::string, std::string> kPlain = {{"description", "Description"},
                                                            {"group-id", "GroupId"},
                                                            {"group-name", "GroupName"},
                                                            {"owner-id", "OwnerId"},
                                                            {"vpc-id", "VpcId"}};
  if (auto it = kPlain.find(name); it != kPlain.end()) {
    return std::vector<std::string>{g[it->second].get<std::string>()};
  }
  static const std::map<std::string, std::string> kRule = {{"cidr", "cidr"},
                                                           {"protocol", "IpProtocol"},
                                                           {"from-port", "FromPort"},
                                                           {"to-port", "ToPort"}};
  for (const auto& [prefix, list] :
       {std::pair<std::string, const char*>{"ip-permission.", "IpPermissions"},
        {"egress.ip-permission.", "IpPermissionsEgress"}}) {
    if (name.starts_with(prefix)) {
      auto it = kRule.find(name.substr(prefix.size()));
      if (it != kRule.end()) {
        return rules(list, it->second.c_str());
      }
    }
  }
  return std::nullopt;
}

// --protocol tcp|-1|all --port N|N-M --cidr C.
Result<IngressRule> RuleArg(const json& args) {
  IngressRule rule;
  const std::string protocol = control::OptionalStringArg(args, "protocol");
  rule.protocol = protocol.empty() ? "tcp" : protocol;
  STRATA_ASSIGN_OR_RETURN(rule.cidr, control::StringArg(args, "cidr"));
  const std::string port = control::OptionalStringArg(args, "port");
  if (rule.protocol == "tcp") {
    const size_t dash = port.find('-', 1);
    char* end1 = nullptr;
    char* end2 = nullptr;
    const std::string from = port.substr(0, dash);
    const std::string to = dash == std::string::npos ? from : port.substr(dash + 1);
    const unsigned long a = std::strtoul(from.c_str(), &end1, 10);
    const unsigned long b = std::strtoul(to.c_str(), &end2, 10);
    if (port.empty() || *end1 != '\0' || *end2 != '\0' || from.empty() || to.empty() || a > 65535 ||
        b > 65535) {
      return Status::InvalidArgument("--port wants a TCP port or range (10809, 10800-10899)");
    }
    rule.from_port = static_cast<uint16_t>(a);
    rule.to_port = static_cast<uint16_t>(b);
  }
  return rule;
}

Result<json> CreateSecurityGroup(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "group-name"));
  STRATA_ASSIGN_OR_RETURN(std::string description, control::StringArg(args, "description"));
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo g, compute->CreateSecurityGroup(name, description, {}));
  return json{{"GroupId", g.group_id}};
}

Result<json> DescribeSecurityGroups(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "group-ids"));
  STRATA_ASSIGN_OR_RETURN(auto names, control::StringListArg(args, "group-names"));
  json items = json::array();
  if (ids.empty()) {
    for (const SecurityGroupInfo& g : compute->ListSecurityGroups()) {
      if (names.empty() || std::find(names.begin(), names.end(), g.group_name) != names.end()) {
        items.push_back(GroupJson(g));
      }
    }
  }
  for (const std::string& name : names) {  // EC2 names the first missing one
    if (ids.empty() && std::none_of(items.begin(), items.end(),
                                    [&name](const json& g) { return g["GroupName"] == name; })) {
      return Status::NotFound("InvalidGroup.NotFound: The security group '" + name +
                              "' does not exist in default VPC '" + control::kDefaultVpcId + "'");
    }
  }
  for (const std::string& id : ids) {
    STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo g, compute->DescribeSecurityGroup(id));
    items.push_back(GroupJson(g));
  }
  static const std::vector<std::string> kFilters = {"description",
                                                    "group-id",
                                                    "group-name",
                                                    "owner-id",
                                                    "vpc-id",
                                                    "ip-permission.cidr",
                                                    "ip-permission.protocol",
                                                    "ip-permission.from-port",
                                                    "ip-permission.to-port",
                                                    "egress.ip-permission.cidr",
                                                    "egress.ip-permission.protocol",
                                                    "egress.ip-permission.from-port",
                                                    "egress.ip-permission.to-port"};
  STRATA_ASSIGN_OR_RETURN(items,
                          control::ApplyFilters(args, std::move(items), kFilters, GroupField));
  return json{{"SecurityGroups", items}};
}

Result<json> DeleteSecurityGroup(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "group-id"));
  STRATA_RETURN_IF_ERROR(compute->DeleteSecurityGroup(id));
  return json::object();
}

Result<json> ChangeIngress(Compute* compute, const json& args, bool authorize) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "group-id"));
  STRATA_ASSIGN_OR_RETURN(IngressRule rule, RuleArg(args));
  STRATA_RETURN_IF_ERROR(authorize ? compute->AuthorizeIngress(id, rule)
                                   : compute->RevokeIngress(id, rule));
  return json{{"Return", true}};
}

json KeyPairJson(const KeyPairInfo& k) {
  return json{{"KeyPairId", k.key_pair_id},
              {"KeyName", k.key_name},
              {"KeyType", k.key_type},
              {"KeyFingerprint", k.fingerprint},
              {"CreateTime", IsoTime(k.create_time_ms)},
              {"Tags", control::TagsJson(k.tags)}};
}

Result<json> CreateKeyPair(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "key-name"));
  STRATA_ASSIGN_OR_RETURN(
      auto created, compute->CreateKeyPair(name, control::OptionalStringArg(args, "key-type")));
  json out = {{"KeyPairId", created.first.key_pair_id},
              {"KeyName", created.first.key_name},
              {"KeyFingerprint", created.first.fingerprint},
              {"KeyMaterial", created.second}};
  if (created.first.key_type == "x509") {
    // The certificate's issuer: qemu checks its own certificate against its ca-cert.pem.
    STRATA_ASSIGN_OR_RETURN(out["CaCertificate"], compute->KeyPairCaCertificate());
  }
  return out;
}

Result<json> ImportKeyPair(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "key-name"));
  STRATA_ASSIGN_OR_RETURN(std::string pem, control::StringArg(args, "public-key-material"));
  STRATA_ASSIGN_OR_RETURN(KeyPairInfo k, compute->ImportKeyPair(name, pem));
  return json{
      {"KeyPairId", k.key_pair_id}, {"KeyName", k.key_name}, {"KeyFingerprint", k.fingerprint}};
}

Result<json> DescribeKeyPairs(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto names, control::StringListArg(args, "key-names"));
  json items = json::array();
  for (const KeyPairInfo& k : compute->ListKeyPairs()) {
    if (names.empty() || std::find(names.begin(), names.end(), k.key_name) != names.end()) {
      items.push_back(KeyPairJson(k));
    }
  }
  for (const std::string& name : names) {  // EC2 names the first missing one, with its code
    if (std::none_of(items.begin(), items.end(),
                     [&name](const json& k) { return k["KeyName"] == name; })) {
      return Status::NotFound("InvalidKeyPair.NotFound: The key pair '" + name +
                              "' does not exist");
    }
  }
  return json{{"KeyPairs", items}};
}

Result<json> DeleteKeyPair(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "key-name"));
  STRATA_RETURN_IF_ERROR(compute->DeleteKeyPair(name));
  return json::object();
}

// IAM's AccessKey shapes (aws iam create-access-key / list-access-keys).
json AccessKeyJson(const AccessKeyInfo& k) {
  return json{{"UserName", "strata"},
              {"AccessKeyId", k.access_key_id},
              {"Status", "Active"},
              {"CreateDate", IsoTime(k.create_time_ms)}};
}

Result<json> CreateAccessKey(Compute* compute, const json&) {
  STRATA_ASSIGN_OR_RETURN(auto created, compute->CreateAccessKey());
  json key = AccessKeyJson(created.first);
  key["SecretAccessKey"] = created.second;
  return json{{"AccessKey", key}};
}

Result<json> ListAccessKeys(Compute* compute, const json&) {
  json items = json::array();
  for (const AccessKeyInfo& k : compute->ListAccessKeys()) {
    items.push_back(AccessKeyJson(k));
  }
  return json{{"AccessKeyMetadata", items}, {"IsTruncated", false}};
}

Result<json> DeleteAccessKey(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "access-key-id"));
  STRATA_RETURN_IF_ERROR(compute->DeleteAccessKey(id));
  return json::object();
}

}  // namespace

namespace control {

void AddSecurityHandlers(HandlerTable* table) {
  table->emplace("create-access-key", CreateAccessKey);
  table->emplace("list-access-keys", ListAccessKeys);
  table->emplace("delete-access-key", DeleteAccessKey);
  table->emplace("create-key-pair", CreateKeyPair);
  table->emplace("import-key-pair", ImportKeyPair);
  table->emplace("describe-key-pairs", DescribeKeyPairs);
  table->emplace("delete-key-pair", DeleteKeyPair);
  table->emplace("create-security-group", CreateSecurityGroup);
  table->emplace("describe-security-groups", DescribeSecurityGroups);
  table->emplace("delete-security-group", DeleteSecurityGroup);
  table->emplace("authorize-security-group-ingress",
                 [](Compute* c, const json& a) { return ChangeIngress(c, a, true); });
  table->emplace("revoke-security-group-ingress",
                 [](Compute* c, const json& a) { return ChangeIngress(c, a, false); });
}

}  // namespace control

}  // namespace strata
