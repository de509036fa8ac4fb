// Control verbs for security groups, with EC2's names and JSON (docs/security.md).
#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>

#include "control/control.h"
#include "control/handlers.h"

namespace strata {

using json = nlohmann::json;

namespace {

bool HasPorts(const std::string& protocol) {
  return protocol == "tcp" || protocol == "udp" || protocol == "icmp" || protocol == "icmpv6";
}

bool IsV6(const SecurityGroupRule& r) { return r.cidr.find(':') != std::string::npos; }

// EC2's IpPermissions: rules with the same protocol and ports share one permission, each range
// with its description.
json PermissionsJson(const std::vector<SecurityGroupRule>& rules) {
  json out = json::array();
  for (const SecurityGroupRule& r : rules) {
    auto same = [&r](const json& p) {
      return p["IpProtocol"] == r.protocol &&
             (!HasPorts(r.protocol) || (p["FromPort"] == r.from_port && p["ToPort"] == r.to_port));
    };
    auto it = std::find_if(out.begin(), out.end(), same);
    if (it == out.end()) {
      json p = {{"IpProtocol", r.protocol},
                {"IpRanges", json::array()},
                {"Ipv6Ranges", json::array()},
                {"PrefixListIds", json::array()},
                {"UserIdGroupPairs", json::array()}};
      if (HasPorts(r.protocol)) {
        p["FromPort"] = r.from_port;
        p["ToPort"] = r.to_port;
      }
      out.push_back(std::move(p));
      it = out.end() - 1;
    }
    json range = {{IsV6(r) ? "CidrIpv6" : "CidrIp", r.cidr}};
    if (!r.description.empty()) {
      range["Description"] = r.description;
    }
    (*it)[IsV6(r) ? "Ipv6Ranges" : "IpRanges"].push_back(std::move(range));
  }
  return out;
}

json GroupJson(const SecurityGroupInfo& g) {
  return json{{"GroupId", g.group_id},
              {"GroupName", g.group_name},
              {"Description", g.description},
              {"IpPermissions", PermissionsJson(g.ingress)},
              {"IpPermissionsEgress", PermissionsJson(g.egress)},
              {"OwnerId", control::kOwnerId},
              {"VpcId", control::kDefaultVpcId},
              {"Tags", control::TagsJson(g.tags)}};
}

// EC2's SecurityGroupRule (DescribeSecurityGroupRules, and what Authorize* return).
json RuleJson(const std::string& group_id, bool egress, const SecurityGroupRule& r) {
  const bool ports = HasPorts(r.protocol);
  json out = {{"SecurityGroupRuleId", r.rule_id},
              {"GroupId", group_id},
              {"GroupOwnerId", control::kOwnerId},
              {"IsEgress", egress},
              {"IpProtocol", r.protocol},
              {"FromPort", ports ? r.from_port : -1},
              {"ToPort", ports ? r.to_port : -1},
              {IsV6(r) ? "CidrIpv6" : "CidrIpv4", r.cidr},
              {"Tags", json::array()}};
  if (!r.description.empty()) {
    out["Description"] = r.description;
  }
  return out;
}

// A group's values for one of EC2's DescribeSecurityGroups filters; nullopt: not a filter.
std::optional<std::vector<std::string>> GroupField(const json& g, const std::string& name) {
  auto rules = [&g](const char* list, const std::string& member) {
    std::vector<std::string> out;
    for (const json& p : g[list]) {
      if (member == "cidr" || member == "ipv6-cidr") {
        const bool v6 = member == "ipv6-cidr";
        for (const json& r : p[v6 ? "Ipv6Ranges" : "IpRanges"]) {
          out.push_back(r[v6 ? "CidrIpv6" : "CidrIp"].get<std::string>());
        }
      } else if (p.contains(member)) {
        out.push_back(p[member].is_string() ? p[member].get<std::string>() : p[member].dump());
      }  // (group references and prefix lists: rules never have them)
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
                                                           {"ipv6-cidr", "ipv6-cidr"},
                                                           {"protocol", "IpProtocol"},
                                                           {"from-port", "FromPort"},
                                                           {"to-port", "ToPort"},
                                                           {"group-id", "GroupId"},
                                                           {"group-name", "GroupName"},
                                                           {"user-id", "UserId"},
                                                           {"prefix-list-id", "PrefixListId"}};
  for (const auto& [prefix, list] :
       {std::pair<std::string, const char*>{"ip-permission.", "IpPermissions"},
        {"egress.ip-permission.", "IpPermissionsEgress"}}) {
    if (name.starts_with(prefix)) {
      auto it = kRule.find(name.substr(prefix.size()));
      if (it != kRule.end()) {
        return rules(list, it->second);
      }
    }
  }
  return std::nullopt;
}

// A number given as JSON or text (the Query API's values are all text). Errors: not an integer.
Result<int32_t> PortField(const json& p, const char* key, int32_t fallback) {
  if (!p.contains(key)) {
    return fallback;
  }
  if (p[key].is_number_integer()) {
    return p[key].get<int32_t>();
  }
  const std::string text = p[key].is_string() ? p[key].get<std::string>() : "";
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < -1 || v > 65535) {
    return Status::InvalidArgument(std::string("InvalidParameterValue: ") + key + " '" +
                                   p[key].dump() + "' is not a port (-1..65535)");
  }
  return static_cast<int32_t>(v);
}

std::string TextField(const json& obj, const char* key) {
  return obj.contains(key) && obj[key].is_string() ? obj[key].get<std::string>() : "";
}

// One EC2 IpPermission as rules, one per IP range.
Status AppendPermissionRules(const json& p, std::vector<SecurityGroupRule>* out) {
  for (const char* unsupported : {"UserIdGroupPairs", "PrefixListIds"}) {
    if (p.contains(unsupported) && !p[unsupported].empty()) {
      return Status::InvalidArgument(
          std::string("InvalidParameterValue: ") + unsupported +
          ": Strata's rules name IP ranges (IpRanges, Ipv6Ranges); rules that refer to other "
          "groups or to prefix lists are not supported");
    }
  }
  SecurityGroupRule base;
  base.protocol = TextField(p, "IpProtocol");
  if (base.protocol.empty()) {
    return Status::InvalidArgument("MissingParameter: IpPermissions needs IpProtocol");
  }
  STRATA_ASSIGN_OR_RETURN(base.from_port, PortField(p, "FromPort", 0));
  STRATA_ASSIGN_OR_RETURN(base.to_port, PortField(p, "ToPort", base.from_port));
  const size_t before = out->size();
  for (auto [list, key] : {std::pair{"IpRanges", "CidrIp"}, std::pair{"Ipv6Ranges", "CidrIpv6"}}) {
    if (!p.contains(list)) {
      continue;
    }
    if (!p[list].is_array()) {
      return Status::InvalidArgument(std::string("InvalidParameterValue: ") + list +
                                     " must be a list");
    }
    for (const json& range : p[list]) {
      SecurityGroupRule r = base;
      r.cidr = range.is_object() ? TextField(range, key) : "";
      r.description = range.is_object() ? TextField(range, "Description") : "";
      if (r.cidr.empty()) {
        return Status::InvalidArgument(std::string("MissingParameter: each of ") + list +
                                       " needs " + key);
      }
      out->push_back(std::move(r));
    }
  }
  if (out->size() == before) {
    return Status::InvalidArgument(
        "MissingParameter: a permission needs a source: IpRanges or Ipv6Ranges");
  }
  return Status::OK();
}

// The rules of a call: EC2's IpPermissions (API and --ip-permissions), or the CLI's one rule
// (--protocol tcp|udp|icmp|-1 --port N|N-M --cidr C [--description D]).
Result<std::vector<SecurityGroupRule>> RulesArg(const json& args) {
  std::vector<SecurityGroupRule> rules;
  STRATA_ASSIGN_OR_RETURN(auto permissions, control::ShorthandListArg(args, "ip-permissions"));
  for (const json& p : permissions) {
    STRATA_RETURN_IF_ERROR(AppendPermissionRules(p, &rules));
  }
  const std::string cidr = control::OptionalStringArg(args, "cidr");
  if (cidr.empty()) {
    return rules;
  }
  SecurityGroupRule rule;
  const std::string protocol = control::OptionalStringArg(args, "protocol");
  rule.protocol = protocol.empty() ? "tcp" : protocol;
  rule.cidr = cidr;
  rule.description = control::OptionalStringArg(args, "description");
  const std::string port = control::OptionalStringArg(args, "port");
  if (HasPorts(rule.protocol) || rule.protocol == "6" || rule.protocol == "17") {
    const size_t dash = port.find('-', 1);
    json range = {{"FromPort", port.substr(0, dash)},
                  {"ToPort", dash == std::string::npos ? port : port.substr(dash + 1)}};
    auto from = PortField(range, "FromPort", 0);
    auto to = PortField(range, "ToPort", 0);
    if (port.empty() || !from.ok() || !to.ok()) {
      return Status::InvalidArgument("--port wants a port or range (10809, 10800-10899)");
    }
    rule.from_port = *from;
    rule.to_port = *to;
  }
  rules.push_back(std::move(rule));
  return rules;
}

// The rules named by --security-group-rule-ids (revoke by id).
Result<std::vector<SecurityGroupRule>> RuleIdsArg(const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "security-group-rule-ids"));
  std::vector<SecurityGroupRule> rules;
  for (const std::string& id : ids) {
    if (!id.starts_with("sgr-")) {
      return Status::InvalidArgument("InvalidSecurityGroupRuleId.Malformed: '" + id +
                                     "' is not a security group rule id (sgr-...)");
    }
    SecurityGroupRule r;
    r.rule_id = id;
    rules.push_back(std::move(r));
  }
  return rules;
}

Result<json> CreateSecurityGroup(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string name, control::StringArg(args, "group-name"));
  STRATA_ASSIGN_OR_RETURN(std::string description, control::StringArg(args, "description"));
  const std::string vpc = control::OptionalStringArg(args, "vpc-id");
  if (!vpc.empty() && vpc != control::kDefaultVpcId) {
    return Status::NotFound("InvalidVpcID.NotFound: The vpc ID '" + vpc + "' does not exist");
  }
  STRATA_ASSIGN_OR_RETURN(Tags tags, control::TagSpecTags(args, "security-group"));
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo g,
                          compute->CreateSecurityGroup(name, description, tags));
  json out = {{"GroupId", g.group_id}};
  if (!tags.empty()) {
    out["Tags"] = control::TagsJson(tags);
  }
  return out;
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
  // EC2's documented filters (tag:KEY and tag-key are every Describe's)
  static const std::vector<std::string> kFilters = [] {
    std::vector<std::string> filters = {"description", "group-id", "group-name", "owner-id",
                                        "vpc-id"};
    for (const char* prefix : {"ip-permission.", "egress.ip-permission."}) {
      for (const char* field : {"cidr", "ipv6-cidr", "protocol", "from-port", "to-port", "group-id",
                                "group-name", "user-id", "prefix-list-id"}) {
        filters.push_back(std::string(prefix) + field);
      }
    }
    return filters;
  }();
  STRATA_ASSIGN_OR_RETURN(items,
                          control::ApplyFilters(args, std::move(items), kFilters, GroupField));
  return json{{"SecurityGroups", items}};
}

Result<json> DeleteSecurityGroup(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "group-id"));
  STRATA_RETURN_IF_ERROR(compute->DeleteSecurityGroup(id));
  return json::object();
}

Result<json> AuthorizeRules(Compute* compute, const json& args, bool egress) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "group-id"));
  STRATA_ASSIGN_OR_RETURN(auto rules, RulesArg(args));
  STRATA_ASSIGN_OR_RETURN(rules, compute->AuthorizeRules(id, egress, std::move(rules)));
  json out = {{"Return", true}, {"SecurityGroupRules", json::array()}};
  for (const SecurityGroupRule& r : rules) {
    out["SecurityGroupRules"].push_back(RuleJson(id, egress, r));
  }
  return out;
}

Result<json> RevokeRules(Compute* compute, const json& args, bool egress) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "group-id"));
  STRATA_ASSIGN_OR_RETURN(auto rules, RulesArg(args));
  STRATA_ASSIGN_OR_RETURN(auto by_id, RuleIdsArg(args));
  rules.insert(rules.end(), by_id.begin(), by_id.end());
  if (rules.empty()) {
    return Status::InvalidArgument(
        "MissingParameter: name the rules: IpPermissions (--cidr ...) or SecurityGroupRuleIds");
  }
  STRATA_ASSIGN_OR_RETURN(auto removed, compute->RevokeRules(id, egress, rules));
  json out = {{"Return", true}, {"RevokedSecurityGroupRules", json::array()}};
  for (const SecurityGroupRule& r : removed) {
    out["RevokedSecurityGroupRules"].push_back(RuleJson(id, egress, r));
  }
  return out;
}

// UpdateSecurityGroupRuleDescriptions{Ingress,Egress}: by permission (IpPermissions, each
// range's Description) or by id (SecurityGroupRuleDescriptions).
Result<json> UpdateRuleDescriptions(Compute* compute, const json& args, bool egress) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "group-id"));
  STRATA_ASSIGN_OR_RETURN(auto rules, RulesArg(args));
  STRATA_ASSIGN_OR_RETURN(auto by_id,
                          control::ShorthandListArg(args, "security-group-rule-descriptions"));
  for (const json& d : by_id) {
    SecurityGroupRule r;
    r.rule_id = TextField(d, "SecurityGroupRuleId");
    r.description = TextField(d, "Description");
    if (r.rule_id.empty()) {
      return Status::InvalidArgument(
          "MissingParameter: each SecurityGroupRuleDescription needs SecurityGroupRuleId");
    }
    rules.push_back(std::move(r));
  }
  if (rules.empty()) {
    return Status::InvalidArgument(
        "MissingParameter: IpPermissions or SecurityGroupRuleDescriptions");
  }
  STRATA_RETURN_IF_ERROR(compute->UpdateRuleDescriptions(id, egress, rules));
  return json{{"Return", true}};
}

// ModifySecurityGroupRules: each rule, by id, becomes what its SecurityGroupRule says (EC2's
// SecurityGroupRuleRequest: IpProtocol, FromPort, ToPort, CidrIpv4 or CidrIpv6, Description).
Result<json> ModifySecurityGroupRules(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string id, control::StringArg(args, "group-id"));
  STRATA_ASSIGN_OR_RETURN(auto updates, control::ShorthandListArg(args, "security-group-rules"));
  std::vector<SecurityGroupRule> rules;
  for (const json& u : updates) {
    const json request = u.value("SecurityGroupRule", json::object());
    if (!request.is_object()) {
      return Status::InvalidArgument(
          "InvalidParameterValue: SecurityGroupRule must be a structure");
    }
    SecurityGroupRule r;
    r.rule_id = TextField(u, "SecurityGroupRuleId");
    r.protocol = TextField(request, "IpProtocol");
    STRATA_ASSIGN_OR_RETURN(r.from_port, PortField(request, "FromPort", 0));
    STRATA_ASSIGN_OR_RETURN(r.to_port, PortField(request, "ToPort", r.from_port));
    r.cidr = TextField(request, "CidrIpv4");
    if (r.cidr.empty()) {
      r.cidr = TextField(request, "CidrIpv6");
    }
    r.description = TextField(request, "Description");
    if (request.contains("ReferencedGroupId") || request.contains("PrefixListId")) {
      return Status::InvalidArgument(
          "InvalidParameterValue: Strata's rules name IP ranges, not groups or prefix lists");
    }
    if (r.protocol.empty() || r.cidr.empty()) {
      return Status::InvalidArgument(
          "MissingParameter: a SecurityGroupRule needs IpProtocol and CidrIpv4 or CidrIpv6");
    }
    rules.push_back(std::move(r));
  }
  if (rules.empty()) {
    return Status::InvalidArgument("MissingParameter: SecurityGroupRules");
  }
  STRATA_RETURN_IF_ERROR(compute->ModifyRules(id, rules));
  return json{{"Return", true}};
}

// A rule's values for one of EC2's DescribeSecurityGroupRules filters; nullopt: not a filter.
std::optional<std::vector<std::string>> RuleField(const json& r, const std::string& name) {
  if (name == "group-id") {
    return std::vector<std::string>{r["GroupId"].get<std::string>()};
  }
  if (name == "security-group-rule-id") {
    return std::vector<std::string>{r["SecurityGroupRuleId"].get<std::string>()};
  }
  return std::nullopt;
}

Result<json> DescribeSecurityGroupRules(Compute* compute, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "security-group-rule-ids"));
  const std::set<std::string> wanted(ids.begin(), ids.end());  // (up to 1,000 per request)
  json items = json::array();
  for (const SecurityGroupInfo& g : compute->ListSecurityGroups()) {
    for (auto [list, egress] : {std::pair{&g.ingress, false}, std::pair{&g.egress, true}}) {
      for (const SecurityGroupRule& r : *list) {
        if (wanted.empty() || wanted.count(r.rule_id) != 0) {
          items.push_back(RuleJson(g.group_id, egress, r));
        }
      }
    }
  }
  std::set<std::string> found;
  for (const json& r : items) {
    found.insert(r["SecurityGroupRuleId"].get<std::string>());
  }
  for (const std::string& id : ids) {  // EC2 names the first missing one
    if (found.count(id) == 0) {
      return Status::NotFound("InvalidSecurityGroupRuleId.NotFound: The security group rule ID '" +
                              id + "' does not exist");
    }
  }
  static const std::vector<std::string> kFilters = {"group-id", "security-group-rule-id"};
  STRATA_ASSIGN_OR_RETURN(items,
                          control::ApplyFilters(args, std::move(items), kFilters, RuleField));
  return json{{"SecurityGroupRules", items}};
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
  STRATA_ASSIGN_OR_RETURN(auto ids, control::StringListArg(args, "key-pair-ids"));
  json items = json::array();
  for (const KeyPairInfo& k : compute->ListKeyPairs()) {
    if ((names.empty() || std::find(names.begin(), names.end(), k.key_name) != names.end()) &&
        (ids.empty() || std::find(ids.begin(), ids.end(), k.key_pair_id) != ids.end())) {
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
  for (const std::string& id : ids) {
    if (std::none_of(items.begin(), items.end(),
                     [&id](const json& k) { return k["KeyPairId"] == id; })) {
      return Status::NotFound("InvalidKeyPair.NotFound: The key pair ID '" + id +
                              "' does not exist");
    }
  }
  static const std::map<std::string, std::string> kPaths = {
      {"key-pair-id", "KeyPairId"}, {"fingerprint", "KeyFingerprint"}, {"key-name", "KeyName"}};
  STRATA_ASSIGN_OR_RETURN(items, control::ApplyPathFilters(args, std::move(items), kPaths));
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
  for (bool egress : {false, true}) {
    const std::string way = egress ? "egress" : "ingress";
    table->emplace("authorize-security-group-" + way,
                   [egress](Compute* c, const json& a) { return AuthorizeRules(c, a, egress); });
    table->emplace("revoke-security-group-" + way,
                   [egress](Compute* c, const json& a) { return RevokeRules(c, a, egress); });
    table->emplace(
        "update-security-group-rule-descriptions-" + way,
        [egress](Compute* c, const json& a) { return UpdateRuleDescriptions(c, a, egress); });
  }
  table->emplace("describe-security-group-rules", DescribeSecurityGroupRules);
  table->emplace("modify-security-group-rules", ModifySecurityGroupRules);
}

}  // namespace control

}  // namespace strata
