// Security groups: records, rules, and the admission of NBD clients to instances' exports
// (docs/security.md "Security groups").
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "compute/compute_impl.h"
#include "util/json_text.h"
#include "util/text.h"

namespace strata {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxRulesPerGroup = 60;  // EC2's default quota of inbound rules
constexpr size_t kMaxGroupsPerInstance = 5;

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

Status ValidateRule(IngressRule* rule) {
  if (rule->protocol == "all") {
    rule->protocol = "-1";
  }
  if (rule->protocol != "tcp" && rule->protocol != "-1") {
    return Status::InvalidArgument("protocol '" + rule->protocol +
                                   "': NBD is TCP; use tcp or -1 (all)");
  }
  if (rule->protocol == "-1") {
    rule->from_port = 0;
    rule->to_port = 65535;
  }
  if (rule->from_port > rule->to_port) {
    return Status::InvalidArgument("the port range " + std::to_string(rule->from_port) + "-" +
                                   std::to_string(rule->to_port) + " is empty");
  }
  return ParseCidr(rule->cidr).status();
}

bool Admits(const IngressRule& rule, const uint8_t address[16], uint16_t port) {
  auto prefix = ParseCidr(rule.cidr);  // (validated when the rule was added)
  return prefix.ok() && port >= rule.from_port && port <= rule.to_port &&
         Contains(*prefix, address);
}

}  // namespace

Status ComputeImpl::LoadSecurityLocked() {
  STRATA_ASSIGN_OR_RETURN(auto records, pool_->ReadRecords(kSecurityTable));
  for (const auto& [id, text] : records) {
    if (id.starts_with("sg-")) {
      STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo g, SecurityGroupCodec().Decode(id, text));
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

Result<SecurityGroupInfo> ComputeImpl::CreateSecurityGroup(const std::string& name,
                                                           const std::string& description,
                                                           const Tags& tags) {
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
  STRATA_RETURN_IF_ERROR(FindGroupLocked(group_id).status());
  for (const auto& [id, rec] : instances_) {
    const auto& ids = rec.info.security_group_ids;
    if (rec.info.state != "terminated" &&
        std::find(ids.begin(), ids.end(), group_id) != ids.end()) {
      return Status::Busy("security group " + group_id + " is used by instance " + id);
    }
  }
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(
      {{kSecurityTable, group_id, std::nullopt}, {kTagsTable, group_id, std::nullopt}}));
  groups_.erase(group_id);
  tags_.erase(group_id);
  return Status::OK();
}

Status ComputeImpl::AuthorizeIngress(const std::string& group_id, const IngressRule& rule) {
  IngressRule r = rule;
  STRATA_RETURN_IF_ERROR(ValidateRule(&r));
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo * g, FindGroupLocked(group_id));
  if (std::find(g->ingress.begin(), g->ingress.end(), r) != g->ingress.end()) {
    return Status::AlreadyExists("security group " + group_id + " already has that rule");
  }
  if (g->ingress.size() >= kMaxRulesPerGroup) {
    return Status::InvalidArgument("security group " + group_id + " has " +
                                   std::to_string(kMaxRulesPerGroup) + " rules, the most");
  }
  SecurityGroupInfo next = *g;
  next.ingress.push_back(r);
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords({GroupRecordOf(next)}));
  *g = std::move(next);
  return Status::OK();
}

Status ComputeImpl::RevokeIngress(const std::string& group_id, const IngressRule& rule) {
  IngressRule r = rule;
  STRATA_RETURN_IF_ERROR(ValidateRule(&r));
  MutexLock lock(&mu_);
  STRATA_ASSIGN_OR_RETURN(SecurityGroupInfo * g, FindGroupLocked(group_id));
  SecurityGroupInfo next = *g;
  auto it = std::find(next.ingress.begin(), next.ingress.end(), r);
  if (it == next.ingress.end()) {
    return Status::NotFound("security group " + group_id + " has no such rule");
  }
  next.ingress.erase(it);
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
    for (const IngressRule& r :
         g != groups_.end() ? g->second.ingress : std::vector<IngressRule>{}) {
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
