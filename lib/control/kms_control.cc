// The `strata kms ...` verbs (verbs.cc KmsVerbs): each one's arguments are the fields of its KMS
// request, sent through the KMS's own JSON API (kms_api.cc), so that the CLI and `aws kms` share
// one implementation, one set of checks and one reply shape.
#include <sstream>

#include "control/control.h"
#include "control/handlers.h"
#include "control/kms_api.h"
#include "util/json_text.h"

namespace strata::control {

namespace {

using nlohmann::json;

// "k=v,k2=v2" (the AWS CLI's shorthand for a map) or a JSON object.
Result<json> ContextArg(const std::string& text) {
  if (text.starts_with("{")) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      return Status::InvalidArgument("an encryption context is k=v,k2=v2 or a JSON object");
    }
    return j;
  }
  json out = json::object();
  std::stringstream pairs(text);
  for (std::string pair; std::getline(pairs, pair, ',');) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("an encryption context is k=v,k2=v2: '" + pair + "'");
    }
    out[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  return out;
}

// The KMS request a verb's arguments make.
Result<json> KmsRequest(const json& args) {
  json body = json::object();
  for (const auto& [key, value] : args.items()) {
    if (key == "confirm") {
      continue;
    }
    if (key == "NumberOfBytes" || key == "PendingWindowInDays" || key == "Limit" ||
        key == "RotationPeriodInDays") {
      STRATA_ASSIGN_OR_RETURN(uint64_t n, IntegerArg(args, key.c_str(), 0));
      body[key] = n;
    } else if (key.ends_with("EncryptionContext")) {
      STRATA_ASSIGN_OR_RETURN(body[key], ContextArg(value.get<std::string>()));
    } else if (key == "Tags") {
      STRATA_ASSIGN_OR_RETURN(std::vector<json> tags, ShorthandListArg(args, "Tags"));
      body[key] = tags;
    } else {
      body[key] = value;
    }
  }
  return body;
}

// The AWS CLI shows KMS's timestamps (epoch seconds on the wire) as ISO 8601: so does this.
void IsoTimes(json* j) {
  for (auto& [key, value] : j->items()) {
    if (value.is_structured()) {
      IsoTimes(&value);
    } else if (value.is_number() && key.ends_with("Date")) {
      value = IsoTime(static_cast<int64_t>(value.get<double>() * 1000.0 + 0.5));
    }
  }
}

Handler KmsHandler(const std::string& op) {
  return [op](Compute* compute, const json& args) -> Result<json> {
    if (op == "ScheduleKeyDeletion" && !args.value("confirm", false)) {
      return Status::InvalidArgument(
          "once the waiting period ends, the key is destroyed and every volume, snapshot and "
          "ciphertext encrypted under it is unrecoverable, by anyone; cancel-key-deletion undoes "
          "it until then. Give --confirm to schedule the deletion");
    }
    STRATA_ASSIGN_OR_RETURN(json body, KmsRequest(args));
    std::string text = DumpJson(body);
    KmsReply reply = ExecuteKmsJson(compute->kms(), "TrentService." + op, text);
    WipeBytes(&text);  // (a plaintext to encrypt)
    json out = json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
    if (reply.http_status != 200) {
      const std::string type = out.value("__type", "KMSInternalException");
      return Status(
          reply.http_status >= 500 ? Status::Code::kIOError : Status::Code::kInvalidArgument,
          type + ": " + out.value("message", ""));
    }
    IsoTimes(&out);
    return out;
  };
}

}  // namespace

void AddKmsHandlers(HandlerTable* table) {
  for (const char* op : {"CreateKey",
                         "DescribeKey",
                         "ListKeys",
                         "EnableKey",
                         "DisableKey",
                         "ScheduleKeyDeletion",
                         "CancelKeyDeletion",
                         "EnableKeyRotation",
                         "DisableKeyRotation",
                         "GetKeyRotationStatus",
                         "RotateKeyOnDemand",
                         "CreateAlias",
                         "UpdateAlias",
                         "DeleteAlias",
                         "ListAliases",
                         "Encrypt",
                         "Decrypt",
                         "ReEncrypt",
                         "GenerateDataKey",
                         "GenerateDataKeyWithoutPlaintext"}) {
    std::string command = "kms";
    for (const char* c = op; *c != '\0'; c++) {  // CreateKey -> kms-create-key
      if (std::isupper(static_cast<unsigned char>(*c))) {
        command += '-';
      }
      command += static_cast<char>(std::tolower(static_cast<unsigned char>(*c)));
    }
    (*table)[command] = KmsHandler(op);
  }
}

}  // namespace strata::control
