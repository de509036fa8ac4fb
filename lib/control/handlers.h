// Internal to the control plane: the handler table and the argument helpers every verb shares.
#ifndef STRATA_CONTROL_HANDLERS_H_
#define STRATA_CONTROL_HANDLERS_H_

#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "strata/compute.h"
#include "strata/pool.h"

namespace strata::control {

// Where a pool's resources live, as EC2 names it: one region, one zone in it, one account.
// (A pool is one availability zone; the account id is the fixed one local AWS emulators use.)
constexpr const char* kRegion = "us-east-1";
constexpr const char* kZone = "us-east-1a";
constexpr const char* kOwnerId = "000000000000";
// The default VPC and subnet every pool has, as a fresh AWS account does (network_control.cc):
// records for tools that look them up; Strata does no networking.
constexpr const char* kDefaultVpcId = "vpc-0de7a017000000001";
constexpr const char* kDefaultVpcCidr = "172.31.0.0/16";
constexpr const char* kDefaultVpcCidrAssociationId = "vpc-cidr-assoc-0de7a017000000001";
constexpr const char* kDefaultDhcpOptionsId = "dopt-0de7a017000000001";
constexpr const char* kDefaultSubnetId = "subnet-0de7a017000000001";
constexpr const char* kDefaultSubnetCidr = "172.31.0.0/20";
constexpr const char* kDefaultRouteTableId = "rtb-0de7a017000000001";
constexpr const char* kDefaultRouteTableAssociationId = "rtbassoc-0de7a017000000001";

using Handler = std::function<Result<nlohmann::json>(Compute*, const nlohmann::json&)>;
using HandlerTable = std::map<std::string, Handler>;

// A required, non-empty string argument. Errors: InvalidArgument naming --name.
Result<std::string> StringArg(const nlohmann::json& args, const char* name);
// An optional string argument ("" when absent).
std::string OptionalStringArg(const nlohmann::json& args, const char* name);
// A list of strings (empty when absent). Errors: InvalidArgument (not a list of strings).
Result<std::vector<std::string>> StringListArg(const nlohmann::json& args, const char* name);
// Each argument of a list option, parsed as AWS shorthand (or JSON; a JSON list is flattened);
// a single string (the EC2 API's one structure) is a list of one.
// Errors: InvalidArgument (not shorthand; an item that is not an object).
Result<std::vector<nlohmann::json>> ShorthandListArg(const nlohmann::json& args, const char* name);
// An optional unsigned integer given as a number or a decimal string.
Result<uint64_t> IntegerArg(const nlohmann::json& args, const char* name, uint64_t fallback);
uint64_t GiBCeil(uint64_t bytes);

void AddSnapshotHandlers(HandlerTable* table);
void AddStreamHandlers(HandlerTable* table);
void AddComputeHandlers(HandlerTable* table);
void AddSecurityHandlers(HandlerTable* table);
void AddNetworkHandlers(HandlerTable* table);
void AddAttributeHandlers(HandlerTable* table);
void AddKmsHandlers(HandlerTable* table);
void AddRemoteHandlers(HandlerTable* table);  // last: it wraps three verbs of the others

// --owners / --owner-ids (EC2's Owners, OwnerIds): false when the list names owners but neither
// "self" nor the pool's account, whose resources are all there are; true when it is empty.
Result<bool> OwnersIncludeSelf(const nlohmann::json& args, const char* name);

// The tags --tag-specifications gives for `resource_type` (instance, volume, image, snapshot).
Result<Tags> TagSpecTags(const nlohmann::json& args, const std::string& resource_type);
// EC2 DescribeImages item for an image (its snapshots' sizes from `pool`).
nlohmann::json ImageItemJson(Pool* pool, const ImageInfo& image);
// EC2 "Tags" list: [{"Key": k, "Value": v}, ...].
nlohmann::json TagsJson(const Tags& tags);
// Keeps the items of `items` that match every filter of `args["filters"]`
// ([{"Name": n, "Values": [...]}]): `names` are the resource's filters besides tag:KEY and
// tag-key (any other is refused, even with nothing to filter), `field` maps one to an item's
// values.
using FilterField = std::function<std::optional<std::vector<std::string>>(
    const nlohmann::json& item, const std::string& name)>;
Result<nlohmann::json> ApplyFilters(const nlohmann::json& args, nlohmann::json items,
                                    const std::vector<std::string>& names,
                                    const FilterField& field);

// ApplyFilters by paths: each of EC2's filter names to where its values are in an item ("A/B"
// walks members, "A[]/B" every element of list A; values as text). An empty path is a filter
// EC2 documents for a value Strata's resources never have: it matches nothing.
Result<nlohmann::json> ApplyPathFilters(const nlohmann::json& args, nlohmann::json items,
                                        const std::map<std::string, std::string>& paths);

}  // namespace strata::control

#endif  // STRATA_CONTROL_HANDLERS_H_
