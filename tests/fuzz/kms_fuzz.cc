// libFuzzer target: the KMS's JSON 1.1 API (control/kms_api.cc) on a pool's KMS (SimEnv). The
// first line is the operation ("Encrypt" for TrentService.Encrypt), the rest its JSON body. The
// inputs may refer to the fixture's key ("$KEY") and a ciphertext it made ("$BLOB"), so that the
// fuzzer reaches past the lookups. No input may crash or abort, and every reply is a JSON object
// whose status is 200 or an error with KMS's __type.
//
//   tools/fuzz.sh 60 kms_fuzz
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "strata/kms.h"

#include "control/kms_api.h"
#include "fuzz_pool.h"
#include "kms/kms_crypto.h"

namespace {

struct Fixture : strata::fuzz::ComputeFixture {
  Fixture() : ComputeFixture(7, "kms-fuzz") {
    auto opened = strata::Kms::Open(pool.get(), std::string(32, 'r'));
    if (!opened.ok()) {
      std::abort();
    }
    kms = std::move(*opened);
    auto key = kms->CreateKey("fuzz", {});
    auto blob = key.ok() ? kms->Encrypt(key->key_id, "fuzz plaintext", {{"a", "b"}})
                         : strata::Result<strata::KmsCiphertext>(key.status());
    if (!blob.ok()) {
      std::abort();
    }
    key_id = key->key_id;
    blob64 = strata::kms::Base64Encode(blob->blob);
  }
  std::unique_ptr<strata::Kms> kms;
  std::string key_id, blob64;
};

void Replace(std::string* s, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = s->find(from, at)) != std::string::npos; at += to.size()) {
    s->replace(at, from.size(), to);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();
  if (size > 65536) {
    return 0;  // the HTTP layer refuses larger bodies before they get here
  }
  std::string input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const std::string op = input.substr(0, newline);
  std::string body = newline == std::string::npos ? "" : input.substr(newline + 1);
  Replace(&body, "$KEY", fx->key_id);
  Replace(&body, "$BLOB", fx->blob64);
  const strata::control::KmsReply reply =
      strata::control::ExecuteKmsJson(fx->kms.get(), "TrentService." + op, body);
  const nlohmann::json parsed = nlohmann::json::parse(reply.body, nullptr, false);
  if (!parsed.is_object() ||
      (reply.http_status != 200 && !(parsed.contains("__type") && parsed["__type"].is_string()))) {
    std::abort();
  }
  if (fx->kms->ListKeys().size() > 64) {  // bound the fixture: schedule the extras for deletion
    for (const strata::KmsKeyInfo& k : fx->kms->ListKeys()) {
      if (k.key_id != fx->key_id && k.state != "PendingDeletion") {
        (void)fx->kms->ScheduleKeyDeletion(k.key_id, 7);
      }
    }
  }
  (void)fx->kms->EnableKey(fx->key_id);  // a fuzzed DisableKey must not end the exploration
  return 0;
}
