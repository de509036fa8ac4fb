// What a fresh AWS account has for networking, read-only: one default VPC (172.31.0.0/16), one
// default subnet in the pool's zone, and the account attributes that name them. Strata does no
// networking (an instance's exports are NBD sockets, guarded by security groups and key pairs:
// docs/security.md); these records exist so that tools which look for them before they launch
// or create (Ansible's ec2_instance, Terraform's aws_vpc and aws_subnet data sources) find them.
// docs/ec2-api.md "The default VPC".
#include <algorithm>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "control/handlers.h"

namespace strata::control {

namespace {

using nlohmann::json;

json DefaultVpc() {
  return json{
      {"CidrBlock", kDefaultVpcCidr},
      {"DhcpOptionsId", kDefaultDhcpOptionsId},
      {"State", "available"},
      {"VpcId", kDefaultVpcId},
      {"OwnerId", kOwnerId},
      {"InstanceTenancy", "default"},
      {"CidrBlockAssociationSet", json::array({{{"AssociationId", kDefaultVpcCidrAssociationId},
                                                {"CidrBlock", kDefaultVpcCidr},
                                                {"CidrBlockState", {{"State", "associated"}}}}})},
      {"IsDefault", true},
      {"Tags", json::array()}};
}

json DefaultSubnet() {
  return json{{"AvailabilityZone", kZone},
              {"AvailabilityZoneId", "use1-az1"},
              {"AvailableIpAddressCount", 4091},
              {"CidrBlock", kDefaultSubnetCidr},
              {"DefaultForAz", true},
              {"MapPublicIpOnLaunch", true},
              {"State", "available"},
              {"SubnetId", kDefaultSubnetId},
              {"VpcId", kDefaultVpcId},
              {"OwnerId", kOwnerId},
              {"AssignIpv6AddressOnCreation", false},
              {"Ipv6CidrBlockAssociationSet", json::array()},
              {"SubnetArn", std::string("arn:aws:ec2:") + kRegion + ":" + kOwnerId + ":subnet/" +
                                kDefaultSubnetId},
              {"EnableDns64", false},
              {"Tags", json::array()}};
}

std::string Text(const json& v) {
  return v.is_string()    ? v.get<std::string>()
         : v.is_boolean() ? (v.get<bool>() ? "true" : "false")
                          : v.dump();
}

// One item's values for a filter: `fields` maps EC2's filter names to the item's members.
FilterField FieldsOf(std::vector<std::pair<std::string, std::string>> fields) {
  return [fields = std::move(fields)](
             const json& item, const std::string& name) -> std::optional<std::vector<std::string>> {
    for (const auto& [filter, member] : fields) {
      if (filter == name) {
        if (member.starts_with("cidr-assoc.")) {  // a member of each CIDR association
          std::vector<std::string> out;
          for (const json& a : item["CidrBlockAssociationSet"]) {
            const std::string key = member.substr(11);
            out.push_back(key == "State" ? Text(a["CidrBlockState"]["State"]) : Text(a[key]));
          }
          return out;
        }
        return std::vector<std::string>{Text(item[member])};
      }
    }
    return std::nullopt;
  };
}

std::vector<std::string> NamesOf(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<std::string> names;
  for (const auto& [filter, member] : fields) {
    names.push_back(filter);
  }
  return names;
}

// Ids asked for must exist: EC2's NotFound names the first that does not.
Status CheckIds(const json& args, const char* arg, const std::string& only, const char* code,
                const char* kind) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, arg));
  for (const std::string& id : ids) {
    if (id != only) {
      return Status::NotFound(std::string(code) + ": The " + kind + " ID '" + id +
                              "' does not exist");
    }
  }
  return Status::OK();
}

Result<json> DescribeVpcs(Compute*, const json& args) {
  STRATA_RETURN_IF_ERROR(CheckIds(args, "vpc-ids", kDefaultVpcId, "InvalidVpcID.NotFound", "vpc"));
  // (EC2's DescribeVpcs filters)
  static const std::vector<std::pair<std::string, std::string>> kFields = {
      {"cidr", "CidrBlock"},
      {"cidr-block-association.cidr-block", "cidr-assoc.CidrBlock"},
      {"cidr-block-association.association-id", "cidr-assoc.AssociationId"},
      {"cidr-block-association.state", "cidr-assoc.State"},
      {"dhcp-options-id", "DhcpOptionsId"},
      {"is-default", "IsDefault"},
      {"isDefault", "IsDefault"},
      {"owner-id", "OwnerId"},
      {"state", "State"},
      {"vpc-id", "VpcId"}};
  STRATA_ASSIGN_OR_RETURN(json vpcs, ApplyFilters(args, json::array({DefaultVpc()}),
                                                  NamesOf(kFields), FieldsOf(kFields)));
  return json{{"Vpcs", vpcs}};
}

Result<json> DescribeSubnets(Compute*, const json& args) {
  STRATA_RETURN_IF_ERROR(
      CheckIds(args, "subnet-ids", kDefaultSubnetId, "InvalidSubnetID.NotFound", "subnet"));
  // (EC2's DescribeSubnets filters)
  static const std::vector<std::pair<std::string, std::string>> kFields = {
      {"availability-zone", "AvailabilityZone"},
      {"availabilityZone", "AvailabilityZone"},
      {"availability-zone-id", "AvailabilityZoneId"},
      {"availabilityZoneId", "AvailabilityZoneId"},
      {"available-ip-address-count", "AvailableIpAddressCount"},
      {"cidr-block", "CidrBlock"},
      {"cidr", "CidrBlock"},
      {"cidrBlock", "CidrBlock"},
      {"default-for-az", "DefaultForAz"},
      {"defaultForAz", "DefaultForAz"},
      {"map-public-ip-on-launch", "MapPublicIpOnLaunch"},
      {"owner-id", "OwnerId"},
      {"state", "State"},
      {"subnet-arn", "SubnetArn"},
      {"subnet-id", "SubnetId"},
      {"vpc-id", "VpcId"}};
  STRATA_ASSIGN_OR_RETURN(json subnets, ApplyFilters(args, json::array({DefaultSubnet()}),
                                                     NamesOf(kFields), FieldsOf(kFields)));
  return json{{"Subnets", subnets}};
}

Result<json> DescribeAccountAttributes(Compute*, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto names, StringListArg(args, "attribute-names"));
  const std::vector<std::pair<std::string, std::string>> kAttributes = {
      {"supported-platforms", "VPC"}, {"default-vpc", kDefaultVpcId},
      {"max-instances", "20"},        {"vpc-max-security-groups-per-interface", "5"},
      {"max-elastic-ips", "5"},       {"vpc-max-elastic-ips", "5"}};
  json out = json::array();
  for (const auto& [name, value] : kAttributes) {
    if (names.empty() || std::find(names.begin(), names.end(), name) != names.end()) {
      out.push_back({{"AttributeName", name},
                     {"AttributeValues", json::array({{{"AttributeValue", value}}})}});
    }
  }
  for (const std::string& name : names) {
    if (std::none_of(kAttributes.begin(), kAttributes.end(),
                     [&name](const auto& a) { return a.first == name; })) {
      return Status::InvalidArgument("InvalidParameterValue: the attribute '" + name +
                                     "' is not an account attribute");
    }
  }
  return json{{"AccountAttributes", out}};
}

// The default VPC's attributes, as a new account's default VPC has them.
Result<json> DescribeVpcAttribute(Compute*, const json& args) {
  STRATA_ASSIGN_OR_RETURN(std::string vpc, StringArg(args, "vpc-id"));
  STRATA_ASSIGN_OR_RETURN(std::string attribute, StringArg(args, "attribute"));
  if (vpc != kDefaultVpcId) {
    return Status::NotFound("InvalidVpcID.NotFound: The vpc ID '" + vpc + "' does not exist");
  }
  static const std::map<std::string, std::pair<std::string, bool>> kAttributes = {
      {"enableDnsSupport", {"EnableDnsSupport", true}},
      {"enableDnsHostnames", {"EnableDnsHostnames", true}},
      {"enableNetworkAddressUsageMetrics", {"EnableNetworkAddressUsageMetrics", false}}};
  auto it = kAttributes.find(attribute);
  if (it == kAttributes.end()) {
    return Status::InvalidArgument("InvalidParameterValue: Value (" + attribute +
                                   ") for parameter attribute is invalid. Unknown attribute.");
  }
  return json{{"VpcId", vpc}, {it->second.first, {{"Value", it->second.second}}}};
}

// Network interfaces: Strata's instances have none (their exports are the server's sockets), so
// every listing is empty; Terraform lists a security group's before deleting it.
Result<json> DescribeNetworkInterfaces(Compute*, const json& args) {
  STRATA_ASSIGN_OR_RETURN(auto ids, StringListArg(args, "network-interface-ids"));
  if (!ids.empty()) {
    return Status::NotFound("InvalidNetworkInterfaceID.NotFound: The networkInterface ID '" +
                            ids[0] + "' does not exist");
  }
  static const std::map<std::string, std::string> kPaths = [] {
    std::map<std::string, std::string> paths;
    for (const char* name :
         {"addresses.private-ip-address", "attachment.attachment-id", "attachment.instance-id",
          "attachment.status", "availability-zone", "description", "group-id", "group-name",
          "interface-type", "mac-address", "network-interface-id", "owner-id", "private-ip-address",
          "private-dns-name", "requester-managed", "status", "subnet-id", "vpc-id"}) {
      paths[name] = "";
    }
    return paths;
  }();
  STRATA_ASSIGN_OR_RETURN(json items, ApplyPathFilters(args, json::array(), kPaths));
  return json{{"NetworkInterfaces", items}};
}

// The default VPC's main route table: local traffic within 172.31.0.0/16 (a record for tools).
Result<json> DescribeRouteTables(Compute*, const json& args) {
  const json table = {
      {"RouteTableId", kDefaultRouteTableId},
      {"VpcId", kDefaultVpcId},
      {"OwnerId", kOwnerId},
      {"Associations", json::array({{{"Main", true},
                                     {"RouteTableAssociationId", kDefaultRouteTableAssociationId},
                                     {"RouteTableId", kDefaultRouteTableId},
                                     {"AssociationState", {{"State", "associated"}}}}})},
      {"Routes", json::array({{{"DestinationCidrBlock", kDefaultVpcCidr},
                               {"GatewayId", "local"},
                               {"Origin", "CreateRouteTable"},
                               {"State", "active"}}})},
      {"PropagatingVgws", json::array()},
      {"Tags", json::array()}};
  STRATA_RETURN_IF_ERROR(CheckIds(args, "route-table-ids", kDefaultRouteTableId,
                                  "InvalidRouteTableID.NotFound", "route table"));
  static const std::map<std::string, std::string> kPaths = {
      {"association.main", "Associations[]/Main"},
      {"association.route-table-association-id", "Associations[]/RouteTableAssociationId"},
      {"association.route-table-id", "Associations[]/RouteTableId"},
      {"association.subnet-id", "Associations[]/SubnetId"},
      {"association.gateway-id", "Associations[]/GatewayId"},
      {"owner-id", "OwnerId"},
      {"route-table-id", "RouteTableId"},
      {"route.destination-cidr-block", "Routes[]/DestinationCidrBlock"},
      {"route.gateway-id", "Routes[]/GatewayId"},
      {"route.origin", "Routes[]/Origin"},
      {"route.state", "Routes[]/State"},
      {"vpc-id", "VpcId"}};
  STRATA_ASSIGN_OR_RETURN(json items, ApplyPathFilters(args, json::array({table}), kPaths));
  return json{{"RouteTables", items}};
}

}  // namespace

void AddNetworkHandlers(HandlerTable* table) {
  table->emplace("describe-vpc-attribute", DescribeVpcAttribute);
  table->emplace("describe-network-interfaces", DescribeNetworkInterfaces);
  table->emplace("describe-route-tables", DescribeRouteTables);
  table->emplace("describe-vpcs", DescribeVpcs);
  table->emplace("describe-subnets", DescribeSubnets);
  table->emplace("describe-account-attributes", DescribeAccountAttributes);
}

}  // namespace strata::control
