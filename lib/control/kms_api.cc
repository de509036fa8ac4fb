#include "control/kms_api.h"

#include <openssl/crypto.h>

#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "kms/kms_crypto.h"
#include "util/json_text.h"
#include "util/text.h"

namespace strata::control {

namespace {

using nlohmann::json;

constexpr char kPrefix[] = "TrentService.";
constexpr size_t kMaxListLimit = 1000;

// An error a handler raises: KMS's exception name and its message.
struct KmsFault {
  std::string type;
  std::string message;
};

[[noreturn]] void Fail(const std::string& type, const std::string& message) {
  throw KmsFault{type, message};
}

// A Status from the KMS ("NotFoundException: ...") as KMS's error.
template <typename T>
T Take(Result<T> r) {
  if (!r.ok()) {
    const std::string& m = r.status().message();
    const size_t colon = m.find(": ");
    if (colon == std::string::npos || m.find(' ') < colon) {
      Fail("KMSInternalException", m);
    }
    Fail(m.substr(0, colon), m.substr(colon + 2));
  }
  return std::move(*r);
}
void Take(const Status& s) {
  if (!s.ok()) {
    (void)Take(Result<bool>(s));
  }
}

std::string Str(const json& in, const char* field, bool required = true) {
  if (!in.contains(field)) {
    if (required) {
      Fail("ValidationException", std::string("1 validation error detected: Value null at '") +
                                      field +
                                      "' failed to satisfy constraint: Member must not "
                                      "be null");
    }
    return "";
  }
  if (!in[field].is_string()) {
    Fail("SerializationException", std::string(field) + " must be a string");
  }
  return in[field].get<std::string>();
}

uint32_t Num(const json& in, const char* field, uint32_t fallback) {
  if (!in.contains(field)) {
    return fallback;
  }
  if (!in[field].is_number_integer() || in[field].get<int64_t>() < 0 ||
      in[field].get<int64_t>() > 1'000'000) {
    Fail("ValidationException", std::string(field) + " must be a small non-negative integer");
  }
  return in[field].get<uint32_t>();
}

std::string Blob(const json& in, const char* field) {
  auto bytes = kms::Base64Decode(Str(in, field));
  if (!bytes.ok()) {
    Fail("SerializationException", std::string(field) + " is not base64");
  }
  return *bytes;
}

KmsContext Context(const json& in, const char* field) {
  KmsContext out;
  if (!in.contains(field)) {
    return out;
  }
  if (!in[field].is_object() || in[field].size() > 64) {
    Fail("ValidationException", std::string(field) + " must be a map of at most 64 strings");
  }
  for (const auto& [k, v] : in[field].items()) {
    if (!v.is_string()) {
      Fail("ValidationException", std::string(field) + " values must be strings");
    }
    out[k] = v.get<std::string>();
  }
  return out;
}

std::map<std::string, std::string> Tags(const json& in) {
  std::map<std::string, std::string> out;
  if (!in.contains("Tags")) {
    return out;
  }
  if (!in["Tags"].is_array() || in["Tags"].size() > 50) {
    Fail("ValidationException", "Tags must be a list of at most 50");
  }
  for (const json& t : in["Tags"]) {
    if (!t.is_object()) {
      Fail("ValidationException", "a tag is {TagKey, TagValue}");
    }
    out[Str(t, "TagKey")] = Str(t, "TagValue");
  }
  return out;
}

double Seconds(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

json Metadata(const KmsKeyInfo& k) {
  json m = {{"AWSAccountId", "000000000000"},
            {"KeyId", k.key_id},
            {"Arn", k.arn},
            {"CreationDate", Seconds(k.creation_ms)},
            {"Enabled", k.state == "Enabled"},
            {"Description", k.description},
            {"KeyUsage", "ENCRYPT_DECRYPT"},
            {"KeyState", k.state},
            {"Origin", "AWS_KMS"},
            {"KeyManager", k.key_manager},
            {"CustomerMasterKeySpec", "SYMMETRIC_DEFAULT"},
            {"KeySpec", "SYMMETRIC_DEFAULT"},
            {"EncryptionAlgorithms", json::array({"SYMMETRIC_DEFAULT"})},
            {"MultiRegion", false}};
  if (k.state == "PendingDeletion") {
    m["DeletionDate"] = Seconds(k.deletion_ms);
    m["PendingDeletionWindowInDays"] = k.pending_window_days;
  }
  return m;
}

using Handler = std::function<json(Kms*, const json&)>;

// KMS's paging: the entries (in marker order) after `Marker`, at most `Limit` of them; each
// entry's marker is its `marker_field`.
json Page(const json& in, std::vector<json> entries, const char* list, const char* marker_field) {
  const uint32_t limit = Num(in, "Limit", 100);
  if (limit < 1 || limit > kMaxListLimit) {
    Fail("ValidationException", "Limit must be 1 to 1000");
  }
  const std::string marker = Str(in, "Marker", false);
  json out = {{list, json::array()}, {"Truncated", false}};
  for (json& e : entries) {
    if (!marker.empty() && e[marker_field].get<std::string>() <= marker) {
      continue;
    }
    if (out[list].size() == limit) {
      out["Truncated"] = true;
      out["NextMarker"] = out[list].back()[marker_field];
      break;
    }
    out[list].push_back(std::move(e));
  }
  return out;
}

json ListKeysReply(Kms* kms, const json& in) {
  std::vector<json> keys;
  for (const KmsKeyInfo& k : kms->ListKeys()) {
    keys.push_back({{"KeyId", k.key_id}, {"KeyArn", k.arn}});
  }
  return Page(in, std::move(keys), "Keys", "KeyId");
}

json ListAliasesReply(Kms* kms, const json& in) {
  std::vector<json> aliases;
  for (const KmsAliasInfo& a : Take(kms->ListAliases(Str(in, "KeyId", false)))) {
    aliases.push_back({{"AliasName", a.name},
                       {"AliasArn", a.arn},
                       {"TargetKeyId", a.target_key_id},
                       {"CreationDate", Seconds(a.creation_ms)},
                       {"LastUpdatedDate", Seconds(a.updated_ms)}});
  }
  return Page(in, std::move(aliases), "Aliases", "AliasName");
}

json RotationStatus(const KmsKeyInfo& k) {
  json out = {{"KeyId", k.arn}, {"KeyRotationEnabled", k.rotation_enabled}};
  if (k.rotation_enabled) {
    out["RotationPeriodInDays"] = k.rotation_period_days;
    out["NextRotationDate"] = Seconds(k.next_rotation_ms);
  }
  return out;
}

json DataKey(Kms* kms, const json& in, bool with_plaintext) {
  uint32_t bytes = Num(in, "NumberOfBytes", 0);
  const std::string spec = Str(in, "KeySpec", false);
  if ((bytes == 0) == spec.empty()) {
    Fail("ValidationException", "give exactly one of KeySpec and NumberOfBytes");
  }
  if (!spec.empty()) {
    if (spec != "AES_256" && spec != "AES_128") {
      Fail("ValidationException", "KeySpec must be AES_256 or AES_128");
    }
    bytes = spec == "AES_256" ? 32 : 16;
  }
  KmsDataKey key = Take(kms->GenerateDataKey(Str(in, "KeyId"), bytes,
                                             Context(in, "EncryptionContext"), with_plaintext));
  json out = {{"CiphertextBlob", kms::Base64Encode(key.blob)}, {"KeyId", key.key_arn}};
  if (with_plaintext) {
    out["Plaintext"] = kms::Base64Encode(key.plaintext);
    kms::Secret wipe(std::move(key.plaintext));
  }
  return out;
}

const std::map<std::string, Handler>& Handlers() {
  static const std::map<std::string, Handler> handlers = {
      {"CreateKey",
       [](Kms* kms, const json& in) {
         const std::string spec = Str(in, "KeySpec", false);
         const std::string usage = Str(in, "KeyUsage", false);
         if ((!spec.empty() && spec != "SYMMETRIC_DEFAULT") ||
             (!usage.empty() && usage != "ENCRYPT_DECRYPT")) {
           Fail("UnsupportedOperationException",
                "only SYMMETRIC_DEFAULT keys for ENCRYPT_DECRYPT are made here");
         }
         return json{{"KeyMetadata",
                      Metadata(Take(kms->CreateKey(Str(in, "Description", false), Tags(in))))}};
       }},
      {"DescribeKey",
       [](Kms* kms, const json& in) {
         return json{{"KeyMetadata", Metadata(Take(kms->DescribeKey(Str(in, "KeyId"))))}};
       }},
      {"ListKeys", ListKeysReply},
      {"EnableKey",
       [](Kms* kms, const json& in) {
         Take(kms->EnableKey(Str(in, "KeyId")));
         return json::object();
       }},
      {"DisableKey",
       [](Kms* kms, const json& in) {
         Take(kms->DisableKey(Str(in, "KeyId")));
         return json::object();
       }},
      {"ScheduleKeyDeletion",
       [](Kms* kms, const json& in) {
         KmsKeyInfo k =
             Take(kms->ScheduleKeyDeletion(Str(in, "KeyId"), Num(in, "PendingWindowInDays", 30)));
         return json{{"KeyId", k.arn},
                     {"DeletionDate", Seconds(k.deletion_ms)},
                     {"KeyState", k.state},
                     {"PendingWindowInDays", k.pending_window_days}};
       }},
      {"CancelKeyDeletion",
       [](Kms* kms, const json& in) {
         return json{{"KeyId", Take(kms->CancelKeyDeletion(Str(in, "KeyId"))).arn}};
       }},
      {"EnableKeyRotation",
       [](Kms* kms, const json& in) {
         Take(kms->EnableKeyRotation(Str(in, "KeyId"), Num(in, "RotationPeriodInDays", 365)));
         return json::object();
       }},
      {"DisableKeyRotation",
       [](Kms* kms, const json& in) {
         Take(kms->DisableKeyRotation(Str(in, "KeyId")));
         return json::object();
       }},
      {"GetKeyRotationStatus",
       [](Kms* kms, const json& in) {
         return RotationStatus(Take(kms->DescribeKey(Str(in, "KeyId"))));
       }},
      {"RotateKeyOnDemand",
       [](Kms* kms, const json& in) {
         return json{{"KeyId", Take(kms->RotateKeyOnDemand(Str(in, "KeyId"))).key_id}};
       }},
      {"ListResourceTags",
       [](Kms* kms, const json& in) {
         json tags = json::array();
         for (const auto& [k, v] : Take(kms->DescribeKey(Str(in, "KeyId"))).tags) {
           tags.push_back({{"TagKey", k}, {"TagValue", v}});
         }
         return json{{"Tags", tags}, {"Truncated", false}};
       }},
      {"GetKeyPolicy",
       [](Kms* kms, const json& in) {
         (void)Take(kms->DescribeKey(Str(in, "KeyId")));
         // One account, one user: the policy a new key gets, which is what is enforced.
         const json policy = {{"Version", "2012-10-17"},
                              {"Id", "key-default-1"},
                              {"Statement",
                               {{{"Sid", "Enable IAM User Permissions"},
                                 {"Effect", "Allow"},
                                 {"Principal", {{"AWS", "arn:aws:iam::000000000000:root"}}},
                                 {"Action", "kms:*"},
                                 {"Resource", "*"}}}}};
         return json{{"Policy", DumpJson(policy)}, {"PolicyName", "default"}};
       }},
      {"CreateAlias",
       [](Kms* kms, const json& in) {
         Take(kms->CreateAlias(Str(in, "AliasName"), Str(in, "TargetKeyId")));
         return json::object();
       }},
      {"UpdateAlias",
       [](Kms* kms, const json& in) {
         Take(kms->UpdateAlias(Str(in, "AliasName"), Str(in, "TargetKeyId")));
         return json::object();
       }},
      {"DeleteAlias",
       [](Kms* kms, const json& in) {
         Take(kms->DeleteAlias(Str(in, "AliasName")));
         return json::object();
       }},
      {"ListAliases", ListAliasesReply},
      {"Encrypt",
       [](Kms* kms, const json& in) {
         kms::Secret plain(Blob(in, "Plaintext"));
         KmsCiphertext c =
             Take(kms->Encrypt(Str(in, "KeyId"), plain.bytes(), Context(in, "EncryptionContext")));
         return json{{"CiphertextBlob", kms::Base64Encode(c.blob)},
                     {"KeyId", c.key_arn},
                     {"EncryptionAlgorithm", "SYMMETRIC_DEFAULT"}};
       }},
      {"Decrypt",
       [](Kms* kms, const json& in) {
         KmsPlaintext p =
             Take(kms->Decrypt(Blob(in, "CiphertextBlob"), Context(in, "EncryptionContext"),
                               Str(in, "KeyId", false)));
         kms::Secret wipe(std::move(p.plaintext));
         return json{{"KeyId", p.key_arn},
                     {"Plaintext", kms::Base64Encode(wipe.bytes())},
                     {"EncryptionAlgorithm", "SYMMETRIC_DEFAULT"}};
       }},
      {"ReEncrypt",
       [](Kms* kms, const json& in) {
         // (the source key comes from the blob, as in KMS; SourceKeyId only checks it)
         KmsPlaintext from =
             Take(kms->Decrypt(Blob(in, "CiphertextBlob"), Context(in, "SourceEncryptionContext"),
                               Str(in, "SourceKeyId", false)));
         kms::Secret wipe(std::move(from.plaintext));
         KmsCiphertext c = Take(kms->Encrypt(Str(in, "DestinationKeyId"), wipe.bytes(),
                                             Context(in, "DestinationEncryptionContext")));
         return json{{"CiphertextBlob", kms::Base64Encode(c.blob)},
                     {"SourceKeyId", from.key_arn},
                     {"KeyId", c.key_arn},
                     {"SourceEncryptionAlgorithm", "SYMMETRIC_DEFAULT"},
                     {"DestinationEncryptionAlgorithm", "SYMMETRIC_DEFAULT"}};
       }},
      {"GenerateDataKey", [](Kms* kms, const json& in) { return DataKey(kms, in, true); }},
      {"GenerateDataKeyWithoutPlaintext",
       [](Kms* kms, const json& in) { return DataKey(kms, in, false); }},
  };
  return handlers;
}

KmsReply Error(int status, const std::string& type, const std::string& message) {
  return {status, DumpJson(json{{"__type", type}, {"message", message}})};
}

}  // namespace

std::string KmsBase64Encode(std::string_view bytes) { return kms::Base64Encode(bytes); }

void WipeBytes(std::string* bytes) {
  OPENSSL_cleanse(bytes->data(), bytes->size());
  bytes->clear();
}

KmsReply ExecuteKmsJson(Kms* kms, std::string_view target, std::string_view body) {
  if (!target.starts_with(kPrefix)) {
    return Error(400, "UnknownOperationException", "not a KMS operation");
  }
  const std::string op(target.substr(sizeof(kPrefix) - 1));
  auto handler = Handlers().find(op);
  if (handler == Handlers().end()) {
    return Error(400, "UnknownOperationException",
                 "KMS operation " + EscapeText(op, 64) + " is not served here (docs/kms.md)");
  }
  if (kms == nullptr) {
    return Error(500, "KMSInternalException",
                 "no KMS here: it needs its root key, from strata-nbd --kms-root-key FILE (or "
                 "strata --kms-root-key FILE when no server holds the pool), or the "
                 "strata-kms-root-key systemd credential");
  }
  json in = json::parse(body.empty() ? std::string_view("{}") : body, nullptr,
                        /*allow_exceptions=*/false);
  if (!in.is_object()) {
    return Error(400, "SerializationException", "the request body is not a JSON object");
  }
  try {
    return {200, DumpJson(handler->second(kms, in))};
  } catch (const KmsFault& f) {
    return Error(f.type == "KMSInternalException" ? 500 : 400, f.type, f.message);
  } catch (const json::exception&) {
    return Error(400, "SerializationException", "a field has the wrong type");
  }
}

}  // namespace strata::control
