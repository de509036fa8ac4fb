#include "control/identity_api.h"

#include <pugixml.hpp>
#include <sstream>

#include "control/control.h"

namespace strata::control {

namespace {

struct Service {
  const char* name;
  const char* ns;  // the XML namespace of its replies
};
constexpr Service kSts{"sts", "https://sts.amazonaws.com/doc/2011-06-15/"};
constexpr Service kIam{"iam", "https://iam.amazonaws.com/doc/2010-05-08/"};

std::string Text(const pugi::xml_document& doc) {
  std::ostringstream out;
  doc.save(out, "", pugi::format_raw);
  return out.str();
}

// The service's ErrorResponse document (the shape both STS and IAM use).
QueryReply Error(const Service& service, const std::string& code, const std::string& message,
                 const std::string& request_id) {
  pugi::xml_document doc;
  pugi::xml_node root = doc.append_child("ErrorResponse");
  root.append_attribute("xmlns").set_value(service.ns);
  pugi::xml_node error = root.append_child("Error");
  error.append_child("Type").text().set("Sender");
  error.append_child("Code").text().set(code.c_str());
  error.append_child("Message").text().set(message.c_str());
  root.append_child("RequestId").text().set(request_id.c_str());
  return {400, Text(doc)};
}

// <ACTIONResponse><ACTIONResult>...</ACTIONResult><ResponseMetadata>: the node to fill.
pugi::xml_node Begin(pugi::xml_document* doc, const Service& service, const std::string& action,
                     const std::string& request_id) {
  pugi::xml_node root = doc->append_child((action + "Response").c_str());
  root.append_attribute("xmlns").set_value(service.ns);
  pugi::xml_node result = root.append_child((action + "Result").c_str());
  root.append_child("ResponseMetadata").append_child("RequestId").text().set(request_id.c_str());
  return result;
}

std::string UserArn() { return std::string("arn:aws:iam::") + kAccountId + ":user/" + kUserName; }

}  // namespace

QueryReply ExecuteIdentityQuery(Compute* compute, const std::string& service_name,
                                const std::vector<std::pair<std::string, std::string>>& params,
                                const std::string& access_key_id, const std::string& request_id) {
  const Service& service = service_name == "iam" ? kIam : kSts;
  std::string action;
  for (const auto& [name, value] : params) {
    if (name == "Action") {
      action = value;
    }
  }
  pugi::xml_document doc;
  if (service_name == "sts" && action == "GetCallerIdentity") {
    pugi::xml_node result = Begin(&doc, service, action, request_id);
    result.append_child("Arn").text().set(UserArn().c_str());
    result.append_child("UserId").text().set(access_key_id.c_str());
    result.append_child("Account").text().set(kAccountId);
    return {200, Text(doc)};
  }
  if (service_name == "iam" && action == "GetUser") {
    for (const auto& [name, value] : params) {
      if (name == "UserName" && value != kUserName) {
        return Error(service, "NoSuchEntity", "The user with name " + value + " cannot be found.",
                     request_id);
      }
    }
    pugi::xml_node user = Begin(&doc, service, action, request_id).append_child("User");
    user.append_child("Path").text().set("/");
    user.append_child("UserName").text().set(kUserName);
    user.append_child("UserId").text().set(access_key_id.c_str());
    user.append_child("Arn").text().set(UserArn().c_str());
    int64_t created_ms = 0;
    for (const AccessKeyInfo& k : compute->ListAccessKeys()) {
      if (k.access_key_id == access_key_id) {
        created_ms = k.create_time_ms;
      }
    }
    user.append_child("CreateDate").text().set(IsoTime(created_ms).c_str());
    return {200, Text(doc)};
  }
  if (service_name == "iam" && action == "ListAccountAliases") {  // an account has none at first
    pugi::xml_node result = Begin(&doc, service, action, request_id);
    result.append_child("AccountAliases");
    result.append_child("IsTruncated").text().set("false");
    return {200, Text(doc)};
  }
  return Error(service, "InvalidAction",
               "this endpoint serves " +
                   std::string(service_name == "iam" ? "iam:GetUser and iam:ListAccountAliases"
                                                     : "sts:GetCallerIdentity") +
                   " of " + service_name + ", not '" + action.substr(0, 64) + "'",
               request_id);
}

}  // namespace strata::control
