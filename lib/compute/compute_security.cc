// Security groups: records, rules, and the admission of NBD clients to instances' exports
// (docs/security.md "Security groups").
#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "compute/compute_impl.h"
#include "util/json_text.h"
#include "util/text.h"

namespace strata {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxRulesPerGroup = 60;  // EC2's default quota, inbound and outbound each
constexpr size_t kMaxGroupsPerInstance = 5;
constexpr const char* kDefaultGroupName = "default";

// An address and prefix in 16 bytes (IPv4 as IPv4-mapped IPv6, its prefix shifted by 96).
struct Prefix {
  uint8_t bytes[16] = {};
  int bits = 0;
};

bool ParseAddress(const std::string& text, uint8_t out[16], bool* v4) {
  in_addr a4;
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    std::memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    std::memcpy(out + 12, &a4, 4);
    *v4 = true;
    return true;
  }
  in6_addr a6;
  if (inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    std::memcpy(out, &a6, 16);
    *v4 = IN6_IS_ADDR_V4MAPPED(&a6);  // ::ffff:a.b.c.d is the IPv4 address
    return true;
  }
  return false;
}

Result<Prefix> ParseCidr(const std::string& cidr) {
  const size_t slash = cidr.find('/');
  Prefix p;
  bool v4 = false;
  if (slash == std::string::npos || !ParseAddress(cidr.substr(0, slash), p.bytes, &v4)) {
    return Status::InvalidArgument("'" + cidr + "' is not a CIDR block (a.b.c.d/n or x::y/n)");
  }
  const std::string bits = cidr.substr(slash + 1);
  const int max = v4 ? 32 : 128;
  if (bits.empty() || bits.size() > 3 ||
      !std::all_of(bits.begin(), bits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(bits) > max) {
    return Status::InvalidArgument("'" + cidr + "': the prefix length must be 0 to " +
                                   std::to_string(max));
  }
  p.bits = std::stoi(bits) + (v4 ? 96 : 0);
  return p;
}

bool Contains(const Prefix& p, const uint8_t address[16]) {
  for (int i = 0; i < p.bits; i++) {
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (i % 8));
    if ((p.bytes[i / 8] & mask) != (address[i / 8] & mask)) {
      return false;
    }
  }
  return true;
}

// EC2's protocol names; a number stands for itself (6 is tcp, as EC2 reads it).
Status NormalizeProtocol(std::string* protocol) {
  static const std::map<std::string, std::string> kByNumber = {
      {"6", "tcp"}, {"17", "udp"}, {"1", "icmp"}, {"58", "icmpv6"}, {"all", "-1"}};
  if (auto it = kByNumber.find(*protocol); it != kByNumber.end()) {
    *protocol = it->second;
  }
  const std::string& p = *protocol;
  if (p == "tcp" || p == "udp" || p == "icmp" || p == "icmpv6" || p == "-1") {
    return Status::OK();
  }
  const bool number = !p.empty() && p.size() <= 3 &&
                      std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!number || std::stoi(p) > 255) {
    return Status::InvalidArgument("InvalidParameterValue: Invalid value '" + p +
                                   "' for IP protocol. Unknown protocol.");
  }
  return Status::OK();
}

Status ValidateRule(SecurityGroupRule* rule) {
  STRATA_RETURN_IF_ERROR(NormalizeProtocol(&rule->protocol));
  const std::string& p = rule->protocol;
  if (p == "tcp" || p == "udp") {
    if (rule->from_port < 0 || rule->to_port > 65535 || rule->from_port > rule->to_port) {
      return Status::InvalidArgument("InvalidParameterValue: the port range " +
                                     std::to_string(rule->from_port) + "-" +
                                     std::to_string(rule->to_port) + " is not 0..65535, low first");
    }
  } else if (p == "icmp" || p == "icmpv6") {
    if (rule->from_port < -1 || rule->from_port > 255 || rule->to_port < -1 ||
        rule->to_port > 255) {
      return Status::InvalidArgument(
          "InvalidParameterValue: an ICMP rule's type (FromPort) and code (ToPort) are -1..255");
    }
  } else {  // every port of every protocol, or of one without ports
    rule->from_port = 0;
    rule->to_port = 65535;
  }
  STRATA_RETURN_IF_ERROR(ValidateText("rule description", rule->description, 255));
  return ParseCidr(rule->cidr).status();
}

// Whether the rule lets an NBD client (TCP) at `address` reach `port`.
bool Admits(const SecurityGroupRule& rule, const uint8_t address[16], uint16_t port) {
  if (rule.protocol != "tcp" && rule.protocol != "-1") {
    return false;
  }
  auto prefix = ParseCidr(rule.cidr);  // (validated when the rule was added)
  return prefix.ok() && port >= rule.from_port && port <= rule.to_port &&
         Contains(*prefix, address);
}

// A rule id for a rule stored before rules had ids: derived from what the rule is, so it stays
// the same across restarts (two rules of one group never share a permission).
std::string DerivedRuleId(const std::string& group_id, bool egress, const SecurityGroupRule& r) {
  const std::string what = group_id + (egress ? "/out/" : "/in/") + r.protocol + "/" +
                           std::to_string(r.from_port) + "/" + std::to_string(r.to_port) + "/" +
                           r.cidr;
  const XXH128_hash_t h = XXH3_128bits(what.data(), what.size());
  char hex[40];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return "sgr-" + std::string(hex, 17);
}

void GiveRuleIds(SecurityGroupInfo* g) {
  for (auto [list, egress] : {std::pair{&g->ingress, false}, std::pair{&g->egress, true}}) {
    for (SecurityGroupRule& r : *list) {
      if (r.rule_id.empty()) {
        r.rule_id = DerivedRuleId(g->group_id, egress, r);
      }
    }
  }
}

// The index in `have` of each rule of `wanted` (by rule_id if it has one, else by permission).
// Errors: NotFound (InvalidPermission.NotFound) naming the first that matches none.
Result<std::vector<size_t>> MatchRules(const std::string& group_id,
                                       const std::vector<SecurityGroupRule>& have,
                                       const std::vector<SecurityGroupRule>& wanted) {
  std::vector<size_t> out;
  for (const SecurityGroupRule& w : wanted) {
    auto it = std::find_if(have.begin(), have.end(), [&w](const SecurityGroupRule& h) {
      return w.rule_id.empty() ? h.SamePermission(w) : h.rule_id == w.rule_id;
    });
    if (it == have.end()) {
      return Status::NotFound(
          "InvalidPermission.NotFound: The specified rule does not exist in this security group " +
          group_id + " (" +
          (w.rule_id.empty() ? w.protocol + " " + std::to_string(w.from_port) + "-" +
                                   std::to_string(w.to_port) + " " + w.cidr
                             : w.rule_id) +
          ")");
    }
    out.push_back(static_cast<size_t>(it - have.begin()));
  }
  return out;
}

}  // namespace

Status ComputeImpl::LoadSecurityLocked() {
  STRATA_ASSIGN_OR_RETURN(auto records, pool_->ReadRecords(kSecurityTable));
  for (const auto& [id, text] : records) {
    if (id.starts_with("sg-")) {
      STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo g, SecurityGroupCodec().Decode(id, text));
      GiveRuleIds(&g);
      groups_[id] = std::move(g);
    } else if (id.starts_with("key-")) {
      STRATA_RETURN_IF_ERROR(LoadKeyPairLocked(id, text));
    } else if (id.starts_with("AKIA")) {
      STRATA_ASSIGN_OR_RETURN(StoredAccessKey k, AccessKeyCodec().Decode(id, text));
      access_keys_[id] = std::move(k);
    }
  }
  return Status::OK();
}

RecordChange ComputeImpl::GroupRecordOf(const SecurityGroupInfo& g) const {
  return {kSecurityTable, g.group_id, SecurityGroupCodec().Encode(g)};
}

Result<SecurityGroupInfo*> ComputeImpl::FindGroupLocked(const std::string& group_id) {
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    return Status::NotFound("security group " + group_id + " does not exist");
  }
  return &it->second;
}

void ComputeImpl::AddDefaultGroupLocked(std::vector<RecordChange>* records) {
  for (const auto& [id, g] : groups_) {
    if (g.group_name == kDefaultGroupName) {
      return;
    }
  }
  // No inbound rule: EC2's default group admits its own members, which here is nobody.
  SecurityGroupInfo g;
  g.group_id = NewResourceId("sg");
  g.group_name = kDefaultGroupName;
  g.description = "default VPC security group";
  g.egress = DefaultEgressRules();
  g.egress[0].rule_id = NewResourceId("sgr");
  records->push_back(GroupRecordOf(g));
  groups_[g.group_id] = std::move(g);
}

Result<SecurityGroupInfo> ComputeImpl::CreateSecurityGroup(const std::string& name,
                                                           const std::string& description,
                                                           const Tags& tags) {
  if (name == kDefaultGroupName) {
    return Status::InvalidArgument(
        "InvalidGroup.Reserved: The security group 'default' is reserved");
  }
  if (name.empty() || name.size() > 255 || name.starts_with("sg-")) {
    return Status::InvalidArgument("a group name is 1 to 255 characters and does not begin sg-");
  }
  STRATA_RETURN_IF_ERROR(ValidateText("group name", name, 255));
  STRATA_RETURN_IF_ERROR(ValidateText("group description", description, 255));
  if (description.empty()) {
    return Status::InvalidArgument("a security group needs a description (as EC2)");
  }
  STRATA_RETURN_IF_ERROR(ValidateTags(tags));
  MutexLock lock(&mu_);
  for (const auto& [id, g] : groups_) {
    if (g.group_name == name) {
      return Status::AlreadyExists("security group '" + name + "' exists: " + id);
    }
  }
  SecurityGroupInfo g;
  g.group_id = NewResourceId("sg");
  g.group_name = name;
  g.description = description;
  g.egress = DefaultEgressRules();
  g.egress[0].rule_id = NewResourceId("sgr");
  tags_[g.group_id] = tags;
  std::vector<RecordChange> records = {GroupRecordOf(g)};
  if (!tags.empty()) {
    records.push_back(TagRecordOf(g.group_id));
  }
  Status s = pool_->CommitRecords(std::move(records));
  if (!s.ok()) {
    tags_.erase(g.group_id);
    return s;
  }
  groups_[g.group_id] = g;
  g.tags = tags;
  return g;
}

Result<SecurityGroupInfo> ComputeImpl::DescribeSecurityGroup(const std::string& group_id) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo * g, FindGroupLocked(group_id));
  SecurityGroupInfo out = *g;
  out.tags = TagsOfLocked(group_id);
  return out;
}

std::vector<SecurityGroupInfo> ComputeImpl::ListSecurityGroups() {
  MutexLock lock(&mu_);
  std::vector<SecurityGroupInfo> out;
  for (const auto& [id, g] : groups_) {
    out.push_back(g);
    out.back().tags = TagsOfLocked(id);
  }
  return out;
}

Status ComputeImpl::DeleteSecurityGroup(const std::string& group_id) {
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo * g, FindGroupLocked(group_id));
  if (g->group_name == kDefaultGroupName) {
    return Status::InvalidArgument("CannotDelete: the default security group " + group_id +
                                   " cannot be deleted");
  }
  for (const auto& [id, rec] : instances_) {
    const auto& ids = rec.info.security_group_ids;
    if (rec.info.state != "terminated" &&
        std::find(ids.begin(), ids.end(), group_id) != ids.end()) {
      return Status::Busy("DependencyViolation: resource " + group_id +
                          " has a dependent object (instance " + id + ")");
    }
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(
      {{kSecurityTable, group_id, std::nullopt}, {kTagsTable, group_id, std::nullopt}}));
  groups_.erase(group_id);
  tags_.erase(group_id);
  return Status::OK();
}

Result<std::vector<SecurityGroupRule>> ComputeImpl::AuthorizeRules(
    const std::string& group_id, bool egress, std::vector<SecurityGroupRule> rules) {
  if (rules.empty()) {
    return Status::InvalidArgument("MissingParameter: no rule given (IpPermissions)");
  }
  for (size_t i = 0; i < rules.size(); i++) {
    STRATA_RETURN_IF_ERROR(ValidateRule(&rules[i]));
    rules[i].rule_id = NewResourceId("sgr");
    for (size_t j = 0; j < i; j++) {
      if (rules[j].SamePermission(rules[i])) {
        return Status::AlreadyExists("InvalidPermission.Duplicate: the rule " + rules[i].protocol +
                                     " " + rules[i].cidr + " is given twice");
      }
    }
  }
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo * g, FindGroupLocked(group_id));
  SecurityGroupInfo next = *g;
  std::vector<SecurityGroupRule>& list = egress ? next.egress : next.ingress;
  for (const SecurityGroupRule& r : rules) {
    if (std::any_of(list.begin(), list.end(),
                    [&r](const SecurityGroupRule& h) { return h.SamePermission(r); })) {
      return Status::AlreadyExists(
          "InvalidPermission.Duplicate: the specified rule \"peer: " + r.cidr + ", " + r.protocol +
          ", from port: " + std::to_string(r.from_port) +
          ", to port: " + std::to_string(r.to_port) + "\" already exists in " + group_id);
    }
  }
  if (list.size() + rules.size() > kMaxRulesPerGroup) {
    return Status::InvalidArgument("RulesPerSecurityGroupLimitExceeded: security group " +
                                   group_id + " may have " + std::to_string(kMaxRulesPerGroup) +
                                   (egress ? " outbound" : " inbound") + " rules, the most");
  }
  list.insert(list.end(), rules.begin(), rules.end());
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({GroupRecordOf(next)}));
  *g = std::move(next);
  return rules;
}

Result<std::vector<SecurityGroupRule>> ComputeImpl::RevokeRules(
    const std::string& group_id, bool egress, const std::vector<SecurityGroupRule>& rules) {
  std::vector<SecurityGroupRule> wanted = rules;
  for (SecurityGroupRule& w : wanted) {
    if (w.rule_id.empty()) {
      STRATA_RETURN_IF_ERROR(ValidateRule(&w));
    }
  }
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo * g, FindGroupLocked(group_id));
  SecurityGroupInfo next = *g;
  std::vector<SecurityGroupRule>& list = egress ? next.egress : next.ingress;
  STRATA_ASSIGN_OR_RETURN(std::vector<size_t> found, MatchRules(group_id, list, wanted));
  std::set<size_t> gone(found.begin(), found.end());
  std::vector<SecurityGroupRule> kept, removed;
  for (size_t i = 0; i < list.size(); i++) {
    (gone.count(i) != 0 ? removed : kept).push_back(list[i]);
  }
  list = std::move(kept);
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({GroupRecordOf(next)}));
  *g = std::move(next);
  return removed;
}

Status ComputeImpl::ModifyRules(const std::string& group_id,
                                const std::vector<SecurityGroupRule>& rules) {
  std::vector<SecurityGroupRule> wanted = rules;
  for (SecurityGroupRule& w : wanted) {
    if (w.rule_id.empty()) {
      return Status::InvalidArgument("MissingParameter: each rule needs its SecurityGroupRuleId");
    }
    STRATA_RETURN_IF_ERROR(ValidateRule(&w));
  }
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo * g, FindGroupLocked(group_id));
  SecurityGroupInfo next = *g;
  for (const SecurityGroupRule& w : wanted) {
    bool found = false;
    for (std::vector<SecurityGroupRule>* list : {&next.ingress, &next.egress}) {
      for (SecurityGroupRule& r : *list) {
        if (r.rule_id != w.rule_id) {
          continue;
        }
        for (const SecurityGroupRule& other : *list) {
          if (other.rule_id != w.rule_id && other.SamePermission(w)) {
            return Status::AlreadyExists("InvalidPermission.Duplicate: " + group_id +
                                         " already has that rule (" + other.rule_id + ")");
          }
        }
        r = w;
        found = true;
      }
    }
    if (!found) {
      return Status::NotFound("InvalidSecurityGroupRuleId.NotFound: The security group rule ID '" +
                              w.rule_id + "' does not exist in " + group_id);
    }
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({GroupRecordOf(next)}));
  *g = std::move(next);
  return Status::OK();
}

Status ComputeImpl::UpdateRuleDescriptions(const std::string& group_id, bool egress,
                                           const std::vector<SecurityGroupRule>& rules) {
  std::vector<SecurityGroupRule> wanted = rules;
  for (SecurityGroupRule& w : wanted) {
    if (w.rule_id.empty()) {
      STRATA_RETURN_IF_ERROR(ValidateRule(&w));
    } else {
      STRATA_RETURN_IF_ERROR(ValidateText("rule description", w.description, 255));
    }
  }
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo * g, FindGroupLocked(group_id));
  SecurityGroupInfo next = *g;
  std::vector<SecurityGroupRule>& list = egress ? next.egress : next.ingress;
  STRATA_ASSIGN_OR_RETURN(std::vector<size_t> found, MatchRules(group_id, list, wanted));
  for (size_t i = 0; i < found.size(); i++) {
    list[found[i]].description = wanted[i].description;
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({GroupRecordOf(next)}));
  *g = std::move(next);
  return Status::OK();
}

Status ComputeImpl::CheckGroupsLocked(const std::vector<std::string>& group_ids) {
  if (group_ids.size() > kMaxGroupsPerInstance) {
    return Status::InvalidArgument("an instance has at most " +
                                   std::to_string(kMaxGroupsPerInstance) + " security groups");
  }
  for (const std::string& id : group_ids) {
    STRATA_RETURN_IF_ERROR(FindGroupLocked(id).status());
  }
  return Status::OK();
}

Status ComputeImpl::SetInstanceSecurityGroups(const std::string& instance_id,
                                              const std::vector<std::string>& group_ids) {
  if (group_ids.empty()) {
    return Status::InvalidArgument("--groups needs at least one security group id");
  }
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(InstanceRecord * rec, FindInstanceLocked(instance_id));
  STRATA_RETURN_IF_ERROR(CheckGroupsLocked(group_ids));
  InstanceRecord next = *rec;
  next.info.security_group_ids = group_ids;
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({InstanceRecordOf(next)}));
  *rec = std::move(next);
  return Status::OK();
}

Status ComputeImpl::AdmitExport(const std::string& name, const ExportPeer& peer) {
  MutexLock lock(&mu_);
  std::string instance_id;
  if (name.starts_with("i-")) {
    instance_id = name.substr(0, name.find('/'));
  } else if (auto attached = AttachmentOfLocked(name)) {
    instance_id = attached->first;
  }
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) {
    return Status::OK();  // not an instance's
  }
  const std::string& key = it->second.info.key_name;
  if (!key.empty() && peer.key_name != key) {
    return Status::PermissionDenied(
        instance_id + " was launched with key pair '" + key + "': connect over TLS with it" +
        (peer.key_name.empty() ? std::string() : " (this client proved '" + peer.key_name + "')"));
  }
  if (it->second.info.security_group_ids.empty() || peer.address.empty()) {
    return Status::OK();  // unguarded, or this host's unix socket
  }
  uint8_t address[16];
  bool v4 = false;
  if (!ParseAddress(peer.address, address, &v4)) {
    return Status::PermissionDenied("unreadable peer address '" + peer.address + "'");
  }
  const auto& ids = it->second.info.security_group_ids;
  for (const std::string& id : ids) {
    auto g = groups_.find(id);
    for (const SecurityGroupRule& r :
         g != groups_.end() ? g->second.ingress : std::vector<SecurityGroupRule>{}) {
      if (Admits(r, address, peer.local_port)) {
        return Status::OK();
      }
    }
  }
  std::string names;
  for (const std::string& id : ids) {
    names += (names.empty() ? "" : ", ") + id;
  }
  return Status::PermissionDenied("no inbound rule of " + instance_id + "'s security groups (" +
                                  names + ") admits " + peer.address + " to tcp port " +
                                  std::to_string(peer.local_port));
}

}  // namespace strata
