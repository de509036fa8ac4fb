#include "control/ec2_query.h"

#include <gnutls/crypto.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <pugixml.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "control/control.h"
#include "control/ec2_errors.h"
#include "control/handlers.h"
#include "control/verbs.h"
#include "util/json_text.h"
#include "util/text.h"

namespace strata::control {

namespace {

using nlohmann::json;
using Params = std::map<std::string, std::string>;

enum Ec2Kind { kText, kBool, kInt, kTime, kStruct, kList };
struct Ec2Operation {
  const char* name;
  const char* input;
  const char* output;  // "" when the reply is <return>true</return>
};
struct Ec2Member {
  const char* shape;
  const char* member;  // the JSON name (as the control plane's replies use it)
  const char* query;   // the Query parameter name
  const char* xml;     // the XML element name
  Ec2Kind kind;
  const char* elem_shape;  // a structure's shape, or a list's item shape if a structure
  Ec2Kind item_kind;
  const char* item_xml;  // a list item's element name
};

#include "control/ec2_model.inc"

constexpr const char* kNamespace = "http://ec2.amazonaws.com/doc/2016-11-15/";
constexpr size_t kMaxListItems = 1000;
constexpr int kMaxDepth = 6;

const std::vector<const Ec2Member*>& MembersOf(const std::string& shape) {
  static const auto* kByShape = [] {
    auto* index = new std::unordered_map<std::string, std::vector<const Ec2Member*>>();
    for (const Ec2Member& m : kEc2Members) {
      (*index)[m.shape].push_back(&m);
    }
    return index;
  }();
  static const std::vector<const Ec2Member*> kNone;
  auto it = kByShape->find(shape);
  return it == kByShape->end() ? kNone : it->second;
}

// ---------------------------------------------------------------- request

// The value of one parameter (or structure of parameters) under `prefix`, by the model; null
// when absent. Marks what it read in `used`.
json ReadValue(const Params& params, const std::string& name, Ec2Kind kind, const char* shape,
               Ec2Kind item_kind, int depth, std::set<std::string>* used);

json ReadStruct(const Params& params, const std::string& prefix, const std::string& shape,
                int depth, std::set<std::string>* used) {
  json out = json::object();
  if (depth > kMaxDepth) {
    return out;
  }
  for (const Ec2Member* m : MembersOf(shape)) {
    json v =
        ReadValue(params, prefix + m->query, m->kind, m->elem_shape, m->item_kind, depth + 1, used);
    if (!v.is_null()) {
      out[m->member] = std::move(v);
    }
  }
  return out;
}

json ReadValue(const Params& params, const std::string& name, Ec2Kind kind, const char* shape,
               Ec2Kind item_kind, int depth, std::set<std::string>* used) {
  if (kind == kStruct) {
    json v = ReadStruct(params, name + ".", shape, depth, used);
    return v.empty() ? json() : v;
  }
  if (kind == kList) {  // EC2 lists are flattened: Name.1, Name.2, ...
    json items = json::array();
    for (size_t i = 1; i <= kMaxListItems; i++) {
      const std::string item = name + "." + std::to_string(i);
      json v = ReadValue(params, item, item_kind, shape, kText, depth, used);
      if (v.is_null()) {
        break;
      }
      items.push_back(std::move(v));
    }
    return items.empty() ? json() : items;
  }
  auto it = params.find(name);
  if (it == params.end()) {
    return json();
  }
  used->insert(name);
  if (kind == kBool && (it->second == "true" || it->second == "false")) {
    return it->second == "true";  // (a verb's flag; anything else reaches the verb as text)
  }
  return it->second;
}

std::string Kebab(const std::string& camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); i++) {
    const char c = camel[i];
    if (std::isupper(static_cast<unsigned char>(c)) && i > 0 &&
        !std::isupper(static_cast<unsigned char>(camel[i - 1]))) {
      out += '-';
    }
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// The control request's args: each member by its kebab-case name; structures and lists of them
// as JSON text (the verbs read AWS shorthand, which takes JSON), scalars as text.
json ControlArgs(const json& input) {
  json args = json::object();
  for (const auto& [member, value] : input.items()) {
    if (member == "DryRun") {
      continue;
    }
    json arg;
    if (value.is_array()) {
      arg = json::array();
      for (const json& item : value) {
        arg.push_back(item.is_string() ? item : json(DumpJson(item)));
      }
    } else {
      arg = value.is_string() || value.is_boolean() ? value : json(DumpJson(value));
    }
    args[Kebab(member)] = std::move(arg);
  }
  return args;
}

// Where an action's EC2 parameters and its verb's arguments differ, its adapter rewrites the
// model-shaped input into the verb's shape; every member then maps to the verb by name.
Status Refuse(const std::string& why) {
  return Status::InvalidArgument("InvalidParameterValue: " + why);
}

// Authorize/RevokeSecurityGroup{Ingress,Egress}: the legacy top-level rule (IpProtocol, FromPort,
// ToPort, CidrIp: EC2's older form, which the AWS CLI sends for --protocol/--port/--cidr) becomes
// one more IpPermissions item, the form the verbs read.
Status AdaptRuleParameters(json* input) {
  json rule = json::object();
  for (const char* legacy : {"IpProtocol", "FromPort", "ToPort", "CidrIp"}) {
    if (input->contains(legacy)) {
      rule[legacy] = (*input)[legacy];
      input->erase(legacy);
    }
  }
  if (rule.empty()) {
    return Status::OK();
  }
  if (!rule.contains("CidrIp")) {
    return Status::InvalidArgument("MissingParameter: CidrIp (or IpPermissions)");
  }
  rule["IpRanges"] = json::array({{{"CidrIp", rule["CidrIp"]}}});
  rule.erase("CidrIp");
  if (!rule.contains("IpProtocol")) {
    rule["IpProtocol"] = "tcp";
  }
  if (!input->contains("IpPermissions")) {
    (*input)["IpPermissions"] = json::array();
  }
  (*input)["IpPermissions"].push_back(std::move(rule));
  return Status::OK();
}

Status CheckSubnet(const json& subnet) {
  if (subnet.is_string() && subnet != kDefaultSubnetId) {
    return Status::NotFound("InvalidSubnetID.NotFound: The subnet ID '" +
                            subnet.get<std::string>() + "' does not exist");
  }
  return Status::OK();
}

// RunInstances' network parameters: Strata does no networking, so it takes what a launch into
// the default subnet says (Ansible's ec2_instance always sends one interface there, with the
// security groups) and refuses what it could not honour (a fixed or public address, a second
// interface), rather than launching something other than what was asked.
Status AdaptNetwork(json* in) {
  STRATA_RETURN_IF_ERROR(CheckSubnet(in->value("SubnetId", json())));
  in->erase("SubnetId");
  if (!in->contains("NetworkInterfaces")) {
    return Status::OK();
  }
  const json interfaces = (*in)["NetworkInterfaces"];
  in->erase("NetworkInterfaces");
  if (!interfaces.is_array() || interfaces.size() != 1 || !interfaces[0].is_object()) {
    return Status::NotSupported(
        "UnsupportedOperation: one network interface (DeviceIndex 0): Strata does no networking");
  }
  const json& nic = interfaces[0];
  STRATA_RETURN_IF_ERROR(CheckSubnet(nic.value("SubnetId", json())));
  for (const char* unsupported :
       {"NetworkInterfaceId", "PrivateIpAddress", "PrivateIpAddresses", "Ipv6Addresses",
        "Ipv6AddressCount", "SecondaryPrivateIpAddressCount"}) {
    if (nic.contains(unsupported)) {
      return Status::NotSupported(std::string("UnsupportedOperation: NetworkInterfaces.") +
                                  unsupported +
                                  ": Strata does no networking (an instance is "
                                  "reached through its NBD exports)");
    }
  }
  if (nic.value("AssociatePublicIpAddress", json()) == true) {
    return Status::NotSupported(
        "UnsupportedOperation: AssociatePublicIpAddress: Strata gives no public addresses");
  }
  if (nic.contains("Groups")) {
    if (in->contains("SecurityGroupIds")) {
      return Status::InvalidArgument(
          "InvalidParameterCombination: Network interfaces and an instance-level security "
          "groups may not be specified on the same request");
    }
    (*in)["SecurityGroupIds"] = nic["Groups"];
  }
  return Status::OK();
}

// Launch settings whose EC2 defaults are what every Strata instance is: the defaults (which
// Terraform always sends) are accepted, anything else refused.
Status AdaptLaunchDefaults(json* in) {
  struct Default {
    const char* parameter;
    const char* member;  // "" for a scalar parameter
    json value;
  };
  const Default kDefaults[] = {
      {"Monitoring", "Enabled", false},     {"HibernationOptions", "Configured", false},
      {"EnclaveOptions", "Enabled", false}, {"EbsOptimized", "", false},
      {"DisableApiStop", "", false},        {"InstanceInitiatedShutdownBehavior", "", "stop"}};
  for (const Default& d : kDefaults) {
    if (!in->contains(d.parameter)) {
      continue;
    }
    const json given = *d.member ? (*in)[d.parameter].value(d.member, d.value) : (*in)[d.parameter];
    if (given != d.value) {
      return Status::NotSupported(std::string("UnsupportedOperation: ") + d.parameter +
                                  (*d.member ? std::string(".") + d.member : "") + " " +
                                  given.dump() + ": every Strata instance has " + d.value.dump());
    }
    in->erase(d.parameter);
  }
  if (in->contains("Placement")) {
    const json zone = (*in)["Placement"].value("AvailabilityZone", json(""));
    const json tenancy = (*in)["Placement"].value("Tenancy", json("default"));
    if ((zone != "" && zone != kZone) || tenancy != "default") {
      return Status::InvalidArgument("InvalidParameterValue: Placement: the pool's zone is " +
                                     std::string(kZone) + " (default tenancy)");
    }
    in->erase("Placement");
  }
  return Status::OK();
}

const std::map<std::string, std::function<Status(json*)>>& Adapters() {
  static const auto* kAdapters = new std::map<std::string, std::function<Status(json*)>>{
      {"RunInstances",
       [](json* in) {  // MinCount/MaxCount (both required by EC2) -> --count MIN:MAX
         STRATA_RETURN_IF_ERROR(AdaptNetwork(in));
         STRATA_RETURN_IF_ERROR(AdaptLaunchDefaults(in));
         if (in->contains("CreditSpecification")) {  // {CpuCredits} -> --cpu-credits
           (*in)["CpuCredits"] = (*in)["CreditSpecification"].value("CpuCredits", json(""));
           in->erase("CreditSpecification");
         }
         const std::string min = in->value("MinCount", "1"), max = in->value("MaxCount", min);
         (*in)["Count"] = min + ":" + max;
         in->erase("MinCount");
         in->erase("MaxCount");
         return Status::OK();
       }},
      {"ModifyInstanceAttribute",
       [](json* in) {  // DisableApiTermination.Value -> the flag; UserData.Value -> its text
         if (in->contains("UserData")) {
           (*in)["UserData"] = (*in)["UserData"].value("Value", json(""));
         }
         if (in->contains("DisableApiTermination")) {
           json value = (*in)["DisableApiTermination"].value("Value", json());
           if (!value.is_boolean()) {
             return Refuse("DisableApiTermination.Value must be true or false");
           }
           (*in)["DisableApiTermination"] = value;
         }
         return Status::OK();
       }},
      {"RegisterImage",
       [](json* in) {  // the only architecture and virtualization there are here
         // (what every image here is, as DescribeImages and the instances report it; Terraform's
         // aws_ami always sends EnaSupport and SriovNetSupport)
         for (const auto& [key, only] : {std::pair<const char*, json>{"Architecture", "x86_64"},
                                         {"VirtualizationType", "hvm"},
                                         {"EnaSupport", true},
                                         {"SriovNetSupport", "simple"},
                                         {"BootMode", "legacy-bios"}}) {
           if (in->contains(key) && (*in)[key] != only) {
             return Refuse(std::string(key) + " must be " +
                           (only.is_string() ? only.get<std::string>() : only.dump()));
           }
           in->erase(key);
         }
         return Status::OK();
       }},
      {"CopySnapshot",
       [](json*) {  // EC2 copies between regions; Strata's remotes are S3 buckets
         return Status::NotSupported(
             "UnsupportedOperation: CopySnapshot copies between regions, and this endpoint "
             "serves one; push a snapshot to an S3 remote with 'strata copy-snapshot "
             "--destination-remote' (docs/remote-format.md)");
       }},
      {"AuthorizeSecurityGroupIngress", AdaptRuleParameters},
      {"RevokeSecurityGroupIngress", AdaptRuleParameters},
      {"AuthorizeSecurityGroupEgress", AdaptRuleParameters},
      {"RevokeSecurityGroupEgress", AdaptRuleParameters},
  };
  return *kAdapters;
}

// MaxResults/NextToken on a describe action: the endpoint pages the verb's whole reply (the
// verbs answer everything at once). A token is the index of the next item, bound to the action.
struct Page {
  size_t start = 0;
  size_t max = 0;  // 0: no paging asked
};

// EC2's ids, checked at the edge: an id of the wrong shape is `<Kind>.Malformed`, as EC2 answers
// it (tools tell a typo from a deleted resource by it), before any lookup.
Status CheckIdShapes(const json& input) {
  struct Kind {
    const char* member;  // the parameter, and its plural
    const char* prefix;
    const char* code;
  };
  static constexpr Kind kKinds[] = {{"InstanceId", "i-", "InvalidInstanceID.Malformed"},
                                    {"ImageId", "ami-", "InvalidAMIID.Malformed"},
                                    {"VolumeId", "vol-", "InvalidVolumeID.Malformed"},
                                    {"SnapshotId", "snap-", "InvalidSnapshotID.Malformed"},
                                    {"GroupId", "sg-", "InvalidGroupId.Malformed"}};
  for (const Kind& k : kKinds) {
    for (const std::string& member : {std::string(k.member), std::string(k.member) + "s"}) {
      if (!input.contains(member)) {
        continue;
      }
      const json& v = input[member];
      for (const json& id : v.is_array() ? v : json::array({v})) {
        const std::string text = id.is_string() ? id.get<std::string>() : "";
        const std::string tail = text.starts_with(k.prefix) ? text.substr(strlen(k.prefix)) : "";
        const bool hex = std::all_of(tail.begin(), tail.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
        });
        if (!hex || (tail.size() != 8 && tail.size() != 17)) {
          return Status::InvalidArgument(std::string(k.code) + ": Invalid id: \"" +
                                         text.substr(0, 64) + "\"");
        }
      }
    }
  }
  return Status::OK();
}

Result<Page> TakePage(const std::string& action, json* input) {
  Page page;
  if (input->contains("MaxResults")) {
    const std::string text = (*input)["MaxResults"].get<std::string>();
    if (text.empty() || text.size() > 5 ||
        text.find_first_not_of("0123456789") != std::string::npos || std::stoul(text) == 0 ||
        std::stoul(text) > kMaxListItems) {
      return Status::InvalidArgument("InvalidParameterValue: MaxResults must be 1 to 1000");
    }
    page.max = std::stoul(text);
    input->erase("MaxResults");
  }
  if (input->contains("NextToken")) {
    const std::string token = (*input)["NextToken"].get<std::string>();
    const std::string prefix = action + ":";
    const std::string index = token.starts_with(prefix) ? token.substr(prefix.size()) : "";
    if (index.empty() || index.size() > 9 ||
        index.find_first_not_of("0123456789") != std::string::npos) {
      return Status::InvalidArgument("InvalidNextToken: the token '" + token + "' is not valid");
    }
    page.start = std::stoul(index);
    page.max = page.max == 0 ? kMaxListItems : page.max;
    input->erase("NextToken");
  }
  return page;
}

// Cuts the reply's list (the output shape's list of structures) to the page.
void ApplyPage(const std::string& action, const std::string& output, const Page& page,
               json* reply) {
  if (page.max == 0) {
    return;
  }
  for (const Ec2Member* m : MembersOf(output)) {
    if (m->kind != kList || !reply->contains(m->member) || !(*reply)[m->member].is_array()) {
      continue;
    }
    json& items = (*reply)[m->member];
    const size_t start = std::min(page.start, items.size());
    const size_t end = std::min(items.size(), start + page.max);
    json kept(items.begin() + static_cast<ptrdiff_t>(start),
              items.begin() + static_cast<ptrdiff_t>(end));
    if (end < items.size()) {
      (*reply)["NextToken"] = action + ":" + std::to_string(end);
    }
    items = std::move(kept);
    return;
  }
}

// ---------------------------------------------------------------- reply

void WriteValue(pugi::xml_node parent, const char* element, const json& value, Ec2Kind kind,
                const char* shape, Ec2Kind item_kind, const char* item_xml, int depth);

void WriteStruct(pugi::xml_node node, const json& object, const std::string& shape, int depth) {
  if (!object.is_object() || depth > kMaxDepth) {
    return;
  }
  for (const Ec2Member* m : MembersOf(shape)) {
    auto it = object.find(m->member);
    if (it != object.end() && !it->is_null()) {
      WriteValue(node, m->xml, *it, m->kind, m->elem_shape, m->item_kind, m->item_xml, depth + 1);
    }
  }
}

std::string ScalarText(const json& value) {
  if (value.is_string()) {
    return value.get<std::string>();
  }
  if (value.is_boolean()) {
    return value.get<bool>() ? "true" : "false";
  }
  return value.dump();
}

void WriteValue(pugi::xml_node parent, const char* element, const json& value, Ec2Kind kind,
                const char* shape, Ec2Kind item_kind, const char* item_xml, int depth) {
  pugi::xml_node node = parent.append_child(element);
  if (kind == kStruct) {
    WriteStruct(node, value, shape, depth);
  } else if (kind == kList) {
    for (const json& item : value.is_array() ? value : json::array()) {
      WriteValue(node, item_xml, item, item_kind, shape, kText, "", depth);
    }
  } else {
    node.text().set(ScalarText(value).c_str());
  }
}

std::string XmlText(const pugi::xml_document& doc) {
  std::ostringstream out;
  doc.save(out, "", pugi::format_raw);
  return out.str();
}

QueryReply Success(const Ec2Operation& op, const json& reply, const std::string& request_id) {
  pugi::xml_document doc;
  pugi::xml_node decl = doc.append_child(pugi::node_declaration);
  decl.append_attribute("version") = "1.0";
  decl.append_attribute("encoding") = "UTF-8";
  pugi::xml_node root = doc.append_child((std::string(op.name) + "Response").c_str());
  root.append_attribute("xmlns") = kNamespace;
  root.append_child("requestId").text().set(request_id.c_str());
  if (*op.output == '\0') {
    root.append_child("return").text().set("true");
  } else {
    WriteStruct(root, reply, op.output, 0);
  }
  return {200, XmlText(doc)};
}

QueryReply Failure(const Status& status, const std::string& request_id) {
  Ec2Error e = Ec2ErrorOf(status);
  return Ec2ErrorReply(e.code, e.message, e.http_status, request_id);
}

}  // namespace

QueryReply Ec2ErrorReply(const std::string& code, const std::string& message, int http_status,
                         const std::string& request_id) {
  pugi::xml_document doc;
  pugi::xml_node decl = doc.append_child(pugi::node_declaration);
  decl.append_attribute("version") = "1.0";
  decl.append_attribute("encoding") = "UTF-8";
  pugi::xml_node root = doc.append_child("Response");
  pugi::xml_node error = root.append_child("Errors").append_child("Error");
  error.append_child("Code").text().set(code.c_str());
  error.append_child("Message").text().set(message.c_str());
  root.append_child("RequestID").text().set(request_id.c_str());
  return {http_status, XmlText(doc)};
}

std::optional<QueryReply> ClientTokens::Begin(const std::string& key,
                                              const std::string& fingerprint,
                                              const std::string& request_id) {
  MutexLock lock(&mu_);
  const int64_t now = time(nullptr);
  auto it = entries_.find(key);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (it != entries_.end() && !it->second.reply && done_.WaitUntil(deadline)) {
    it = entries_.find(key);  // the first request with this token is still running
  }
  if (it != entries_.end()) {
    if (it->second.fingerprint != fingerprint) {
      return Ec2ErrorReply("IdempotentParameterMismatch",
                           "the ClientToken was used with other parameters", 400, request_id);
    }
    if (!it->second.reply) {
      return Ec2ErrorReply("RequestLimitExceeded",
                           "the first request with this ClientToken is still running", 503,
                           request_id);
    }
    return it->second.reply;
  }
  EvictLocked(now, kMaxTokens - 1);
  entries_[key] = Entry{fingerprint, std::nullopt, now + kTokenLifeS};
  order_.push_back(key);
  return std::nullopt;
}

void ClientTokens::EvictLocked(int64_t now_s, size_t keep) {
  // Keys leave order_ only from the front; a key whose entry is gone (a failed request) is
  // skipped there, and a request still running goes to the back: it is answered soon.
  for (size_t turns = order_.size(); turns > 0 && !order_.empty(); turns--) {
    auto it = entries_.find(order_.front());
    const bool expired = it != entries_.end() && it->second.expiry_s < now_s;
    if (it != entries_.end() && !expired && entries_.size() <= keep) {
      return;
    }
    if (it != entries_.end() && !it->second.reply) {
      order_.push_back(order_.front());
    } else if (it != entries_.end()) {
      ForgetLocked(it);
    }
    order_.pop_front();
  }
  if (order_.size() > 2 * kMaxTokens) {  // failed requests' keys linger: compact, O(n) rarely
    std::deque<std::string> live;
    for (std::string& k : order_) {
      if (entries_.count(k)) {
        live.push_back(std::move(k));
      }
    }
    order_ = std::move(live);
  }
}

namespace {

// A token's record key: its action and token in hex (any bytes a client sends stay a valid key).
std::string TokenRecordKey(const std::string& key) { return HexOf(key); }

}  // namespace

Result<std::unique_ptr<ClientTokens>> ClientTokens::Open(Pool* pool) {
  STRATA_RETURN_IF_ERROR(pool->OpenRecordTable(kTable));
  STRATA_ASSIGN_OR_RETURN(auto records, pool->ReadRecords(kTable));
  auto tokens = std::make_unique<ClientTokens>();
  MutexLock lock(&tokens->mu_);
  const int64_t now = time(nullptr);
  std::vector<std::pair<int64_t, std::string>> by_expiry;
  for (const auto& [record_key, text] : records) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    const bool sound = j.is_object() && j.value("key", json()).is_string() &&
                       j.value("fingerprint", json()).is_string() &&
                       j.value("xml", json()).is_string() &&
                       j.value("expiry_s", json()).is_number_integer();
    if (!sound || j["expiry_s"].get<int64_t>() < now) {
      tokens->forgotten_.push_back(record_key);  // expired (or not ours): dropped
      continue;
    }
    const std::string key = j["key"].get<std::string>();
    tokens->entries_[key] =
        Entry{j["fingerprint"].get<std::string>(), QueryReply{200, j["xml"].get<std::string>()},
              j["expiry_s"].get<int64_t>()};
    by_expiry.emplace_back(j["expiry_s"].get<int64_t>(), key);
  }
  std::sort(by_expiry.begin(), by_expiry.end());
  for (auto& [expiry, key] : by_expiry) {
    tokens->order_.push_back(std::move(key));
  }
  tokens->pool_ = pool;
  return tokens;
}

void ClientTokens::ForgetLocked(std::map<std::string, Entry>::iterator it) {
  if (pool_ != nullptr && it->second.reply) {
    forgotten_.push_back(TokenRecordKey(it->first));
  }
  entries_.erase(it);
}

void ClientTokens::Finish(const std::string& key, const QueryReply& reply) {
  MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    if (reply.http_status == 200) {
      it->second.reply = reply;
    } else {
      entries_.erase(it);  // (never recorded: only answers are)
    }
  }
  if (pool_ != nullptr && it != entries_.end() && reply.http_status == 200) {
    std::vector<RecordChange> changes;
    for (const std::string& gone : forgotten_) {
      changes.push_back({kTable, gone, std::nullopt});
    }
    if (reply.xml.size() <= kMaxStoredReplyBytes) {
      changes.push_back({kTable, TokenRecordKey(key),
                         DumpJson(json{{"key", key},
                                       {"fingerprint", it->second.fingerprint},
                                       {"xml", reply.xml},
                                       {"expiry_s", it->second.expiry_s}})});
    }
    // A failed commit loses durability, not the answer: the entry stays in memory.
    if (pool_->CommitRecords(std::move(changes)).ok()) {
      forgotten_.clear();
    }
  }
  done_.SignalAll();
}

namespace {

// The request, less its ClientToken: what a retry must repeat (its SHA-256: records stay small).
std::string Fingerprint(const Params& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    if (name != "ClientToken") {
      out += std::to_string(name.size()) + ":" + name + "=" + std::to_string(value.size()) + ":" +
             value + "&";
    }
  }
  char digest[32];
  gnutls_hash_fast(GNUTLS_DIG_SHA256, out.data(), out.size(), digest);
  return HexOf(std::string_view(digest, sizeof(digest)));
}

QueryReply Execute(Compute* compute, const Params& params, const std::string& request_id);

}  // namespace

QueryReply ExecuteEc2Query(Compute* compute,
                           const std::vector<std::pair<std::string, std::string>>& list,
                           const std::string& request_id, ClientTokens* tokens) {
  if (list.size() > kMaxQueryParams) {
    return Ec2ErrorReply("InvalidParameterValue", "too many parameters", 400, request_id);
  }
  for (const auto& [name, value] : list) {  // (JSON would turn bad bytes into U+FFFD silently)
    if (!IsValidUtf8(name) || !IsValidUtf8(value)) {
      return Ec2ErrorReply("InvalidParameterValue",
                           "parameter " + EscapeText(name, 128) + " is not valid UTF-8", 400,
                           request_id);
    }
  }
  Params params(list.begin(), list.end());
  auto token = params.find("ClientToken");
  if (tokens == nullptr || token == params.end() || token->second.empty()) {
    return Execute(compute, params, request_id);
  }
  if (token->second.size() > 64) {
    return Ec2ErrorReply("InvalidParameterValue", "a ClientToken is at most 64 characters", 400,
                         request_id);
  }
  const std::string key = params["Action"] + "\n" + token->second;
  if (std::optional<QueryReply> earlier = tokens->Begin(key, Fingerprint(params), request_id)) {
    return *earlier;
  }
  QueryReply reply = Execute(compute, params, request_id);
  tokens->Finish(key, reply);
  return reply;
}

namespace {

QueryReply Execute(Compute* compute, const Params& params, const std::string& request_id) {
  auto action_param = params.find("Action");
  const std::string action = action_param == params.end() ? "" : action_param->second;
  const Ec2Operation* op = nullptr;
  for (const Ec2Operation& o : kEc2Operations) {
    op = action == o.name ? &o : op;
  }
  const std::string command = Kebab(action);
  if (op == nullptr || VerbOfCommand(command) == nullptr) {
    return Ec2ErrorReply("InvalidAction", "The action " + action + " is not valid here.", 400,
                         request_id);
  }
  std::set<std::string> used = {"Action", "Version"};
  json input = ReadStruct(params, "", op->input, 0, &used);
  for (const auto& [name, value] : params) {
    if (used.count(name) == 0) {
      return Ec2ErrorReply("UnknownParameter", "The parameter " + name + " is not recognized", 400,
                           request_id);
    }
  }
  input.erase("ClientToken");  // (idempotency: ExecuteEc2Query, with the server's ClientTokens)
  if (Status shapes = CheckIdShapes(input); !shapes.ok()) {
    return Failure(shapes, request_id);
  }
  if (auto adapter = Adapters().find(action); adapter != Adapters().end()) {
    Status adapted = adapter->second(&input);
    if (!adapted.ok()) {
      return Failure(adapted, request_id);
    }
  }
  Result<Page> page = TakePage(action, &input);
  if (!page.ok()) {
    return Failure(page.status(), request_id);
  }
  json request = {{"command", command}, {"args", ControlArgs(input)}};
  if (input.contains("DryRun") && input["DryRun"] == true) {
    Status s = CheckVerbArgs(command, request["args"]);
    return s.ok() ? Ec2ErrorReply("DryRunOperation",
                                  "Request would have succeeded, but DryRun flag is set.", 412,
                                  request_id)
                  : Failure(s, request_id);
  }
  Result<json> reply = ExecuteControl(compute, request);
  if (!reply.ok()) {
    return Failure(reply.status(), request_id);
  }
  ApplyPage(action, op->output, *page, &*reply);
  return Success(*op, *reply, request_id);
}

}  // namespace

}  // namespace strata::control
