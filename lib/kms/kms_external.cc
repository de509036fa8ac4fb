// KmsRootKeyFromExternal (include/strata/kms.h): the root key wrapped by another KMS. The pool's
// `kms` table keeps "root_external": the endpoint and key it was made with, and the ciphertext.
#include <cstdlib>

#include "kms/kms_client.h"
#include "kms/kms_crypto.h"
#include "kms/kms_impl.h"
#include "util/json_text.h"

namespace strata {

namespace {

using nlohmann::json;

constexpr char kRecord[] = "root_external";
const json kContext = {{"strata-purpose", "kms-root-key"}};

Result<sigv4::AwsCredentials> EnvironmentCredentials() {
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (id == nullptr || secret == nullptr || *id == '\0' || *secret == '\0') {
    return Status::NotFound(
        "the external KMS needs credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  }
  const char* token = std::getenv("AWS_SESSION_TOKEN");
  return sigv4::AwsCredentials{id, secret, token != nullptr ? token : ""};
}

// The Plaintext of a reply, checked: 32 bytes of base64.
Result<std::string> RootFrom(const json& reply) {
  if (!reply.contains("Plaintext") || !reply["Plaintext"].is_string()) {
    return Status::Corruption("the external KMS answered without a Plaintext");
  }
  STRATA_ASSIGN_OR_RETURN(std::string root,
                          kms::Base64Decode(reply["Plaintext"].get<std::string>()));
  if (root.size() != 32) {
    kms::Secret wipe(std::move(root));
    return Status::Corruption("the external KMS returned a root key that is not 32 bytes");
  }
  return root;
}

Status CheckTimeout(uint32_t ms) {
  if (ms == 0 || ms > 300000) {
    return Status::InvalidArgument("an external KMS call's timeout is 1..300000 ms");
  }
  return Status::OK();
}

}  // namespace

Result<std::string> DecryptWithPeer(const KmsPeer& peer, const std::string& blob,
                                    const KmsContext& context, const std::string& key_ref) {
  STRATA_ASSIGN_OR_RETURN(
      sigv4::AwsCredentials credentials,
      peer.profile.empty() ? EnvironmentCredentials() : sigv4::ResolveCredentials(peer.profile));
  STRATA_RETURN_IF_ERROR(CheckTimeout(peer.call_timeout_ms));
  const kms::KmsEndpoint endpoint{peer.endpoint_url, peer.region, credentials,
                                  peer.call_timeout_ms};
  json request = {{"CiphertextBlob", kms::Base64Encode(blob)},
                  {"EncryptionContext", json(context)},
                  {"KeyId", key_ref}};  // the peer refuses a blob of another key
  STRATA_ASSIGN_OR_RETURN(json reply, kms::CallKms(endpoint, "Decrypt", request));
  if (!reply.contains("Plaintext") || !reply["Plaintext"].is_string()) {
    return Status::Corruption("the peer KMS answered without a Plaintext");
  }
  return kms::Base64Decode(reply["Plaintext"].get<std::string>());
}

Result<std::string> KmsRootKeyFromExternal(Pool* pool, const ExternalKmsRoot& ext) {
  STRATA_ASSIGN_OR_RETURN(sigv4::AwsCredentials credentials, EnvironmentCredentials());
  STRATA_RETURN_IF_ERROR(CheckTimeout(ext.call_timeout_ms));
  const kms::KmsEndpoint endpoint{ext.endpoint_url, ext.region, credentials, ext.call_timeout_ms};
  STRATA_RETURN_IF_ERROR(pool->OpenRecordTable(kms::kTable));
  STRATA_ASSIGN_OR_RETURN(auto records, pool->ReadRecords(kms::kTable));
  for (const auto& [key, value] : records) {
    if (key != kRecord) {
      continue;
    }
    json j = json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("blob") || !j["blob"].is_string()) {
      return Status::Corruption("the pool's external KMS root record is malformed");
    }
    json request = {{"CiphertextBlob", j["blob"]}, {"EncryptionContext", kContext}};
    if (!ext.key_id.empty()) {
      request["KeyId"] = ext.key_id;  // the external KMS refuses a blob of another key
    }
    STRATA_ASSIGN_OR_RETURN(json reply, kms::CallKms(endpoint, "Decrypt", request));
    return RootFrom(reply);
  }
  if (ext.key_id.empty()) {
    return Status::InvalidArgument("a first use of an external KMS names its key");
  }
  STRATA_ASSIGN_OR_RETURN(json reply, kms::CallKms(endpoint, "GenerateDataKey",
                                                   {{"KeyId", ext.key_id},
                                                    {"NumberOfBytes", 32},
                                                    {"EncryptionContext", kContext}}));
  STRATA_ASSIGN_OR_RETURN(std::string root, RootFrom(reply));
  if (!reply.contains("CiphertextBlob") || !reply["CiphertextBlob"].is_string() ||
      (reply.contains("KeyId") && !reply["KeyId"].is_string())) {
    kms::Secret wipe(std::move(root));
    return Status::Corruption(
        "the external KMS answered without a CiphertextBlob, or with a "
        "KeyId that is not a string");
  }
  const json record = {{"endpoint", ext.endpoint_url},
                       {"key_id", reply.contains("KeyId") ? reply["KeyId"] : json(ext.key_id)},
                       {"blob", reply["CiphertextBlob"]}};
  Status s = pool->CommitRecords({{kms::kTable, kRecord, DumpJson(record)}});
  if (!s.ok()) {
    kms::Secret wipe(std::move(root));
    return s;
  }
  return root;
}

}  // namespace strata
