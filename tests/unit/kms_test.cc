// The pool's KMS through its library API (include/strata/kms.h, docs/kms.md), on a clock the test
// moves: rotation when due (old ciphertexts still open), destruction when a deletion's window
// ends (its ciphertexts never open again, its aliases go), the root key's check, and hostile
// inputs: altered key records, forged and truncated blobs, contexts, lengths.
#include "strata/kms.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "strata/pool.h"

#include "control/kms_api.h"
#include "kms/kms_crypto.h"
#include "kms/kms_impl.h"
#include "testutil/test_util.h"

namespace strata {
namespace {

constexpr int64_t kDay = 86'400'000;

class KmsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PoolOptions o;
    o.chunk_size_bytes = 4096;
    o.commit_interval_ms = 0;
    ASSERT_TRUE(Pool::Create(dir_.path(), o).ok());
    OpenPool();
    OpenKms(root_);
  }
  void OpenPool() {
    kms_.reset();
    pool_.reset();
    PoolOptions o;
    o.commit_interval_ms = 0;
    auto pool = Pool::Open(dir_.path(), o);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = std::move(*pool);
  }
  void OpenKms(const std::string& root) {
    KmsOptions options;
    options.now_ms = [this] { return now_; };
    auto kms = Kms::Open(pool_.get(), root, options);
    ASSERT_TRUE(kms.ok()) << kms.status().ToString();
    kms_ = std::move(*kms);
  }
  static bool Says(const Status& s, const std::string& exception) {
    return s.message().starts_with(exception + ": ");
  }
  test::TempDir dir_;
  std::string root_ = std::string(32, '\x42');
  int64_t now_ = 1'800'000'000'000;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<Kms> kms_;
};

TEST_F(KmsTest, RotationWhenDueKeepsOldCiphertextsOpen) {
  auto key = kms_->CreateKey("k", {});
  ASSERT_TRUE(key.ok());
  auto before = kms_->Encrypt(key->key_id, "made before", {});
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(kms_->EnableKeyRotation(key->key_id, 90).ok());
  now_ += 89 * kDay;
  EXPECT_EQ(kms_->DescribeKey(key->key_id)->material_versions, 1u);
  now_ += 2 * kDay;
  EXPECT_EQ(kms_->DescribeKey(key->key_id)->material_versions, 2u);
  auto after = kms_->Encrypt(key->key_id, "made after", {});
  ASSERT_TRUE(after.ok());
  EXPECT_NE(before->blob.substr(41, 4), after->blob.substr(41, 4));  // another material version
  ASSERT_TRUE(kms_->RotateKeyOnDemand(key->key_id).ok());
  OpenPool();  // and across a reopen
  OpenKms(root_);
  EXPECT_EQ(kms_->Decrypt(before->blob, {}, "")->plaintext, "made before");
  EXPECT_EQ(kms_->Decrypt(after->blob, {}, "")->plaintext, "made after");
  EXPECT_EQ(kms_->DescribeKey(key->key_id)->material_versions, 3u);
}

TEST_F(KmsTest, DeletionDestroysTheKeyWhenItsWindowEnds) {
  auto key = kms_->CreateKey("doomed", {});
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(kms_->CreateAlias("alias/doomed", key->key_id).ok());
  auto blob = kms_->Encrypt("alias/doomed", "gone soon", {});
  ASSERT_TRUE(blob.ok());
  EXPECT_TRUE(Says(kms_->ScheduleKeyDeletion(key->key_id, 6).status(), "ValidationException"));
  ASSERT_TRUE(kms_->ScheduleKeyDeletion(key->key_id, 7).ok());
  EXPECT_TRUE(Says(kms_->Decrypt(blob->blob, {}, "").status(), "KMSInvalidStateException"));
  now_ += 7 * kDay - 1;
  EXPECT_TRUE(kms_->DescribeKey(key->key_id).ok());
  now_ += 1;
  EXPECT_TRUE(Says(kms_->DescribeKey(key->key_id).status(), "NotFoundException"));
  EXPECT_TRUE(Says(kms_->Decrypt(blob->blob, {}, "").status(), "InvalidCiphertextException"));
  EXPECT_TRUE(kms_->ListAliases("")->empty()) << "its alias went with it";
  OpenPool();
  OpenKms(root_);
  EXPECT_TRUE(kms_->ListKeys().empty()) << "destroyed durably";
}

TEST_F(KmsTest, AWrongRootKeyIsRefusedAndTheRightOneStillWorks) {
  auto key = kms_->CreateKey("k", {});
  ASSERT_TRUE(key.ok());
  auto blob = kms_->Encrypt(key->key_id, "x", {});
  ASSERT_TRUE(blob.ok());
  OpenPool();
  KmsOptions options;
  auto wrong = Kms::Open(pool_.get(), std::string(32, '\x43'), options);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("wrong KMS root key"), std::string::npos);
  EXPECT_FALSE(Kms::Open(pool_.get(), "short", options).ok());
  OpenKms(root_);
  EXPECT_EQ(kms_->Decrypt(blob->blob, {}, "")->plaintext, "x");
}

TEST_F(KmsTest, AnAlteredKeyRecordIsRefusedNotUsed) {
  auto key = kms_->CreateKey("k", {});
  ASSERT_TRUE(key.ok());
  auto records = pool_->ReadRecords(kms::kTable);
  ASSERT_TRUE(records.ok());
  std::string json;
  for (const auto& [k, v] : *records) {
    if (k == "key/" + key->key_id) {
      json = v;
    }
  }
  auto rec = kms::DecodeKey(key->key_id, json);
  ASSERT_TRUE(rec.ok());
  rec->sealed_material[0][20] ^= 1;  // one bit of the sealed material
  ASSERT_TRUE(
      pool_->CommitRecords({{kms::kTable, "key/" + key->key_id, kms::EncodeKey(*rec)}}).ok());
  OpenPool();
  OpenKms(root_);
  Status s = kms_->Encrypt(key->key_id, "x", {}).status();
  EXPECT_TRUE(Says(s, "KMSInternalException")) << s.ToString();
  ASSERT_TRUE(pool_->CommitRecords({{kms::kTable, "key/" + key->key_id, "{\"state\":1}"}}).ok());
  OpenPool();
  KmsOptions options;
  EXPECT_EQ(Kms::Open(pool_.get(), root_, options).status().code(), Status::Code::kCorruption);
  ASSERT_TRUE(pool_
                  ->CommitRecords({{kms::kTable, "key/" + key->key_id, std::nullopt},
                                   {kms::kTable, "alias/x",
                                    R"({"target":"t","created_ms":1,"updated_ms":"soon"})"}})
                  .ok());
  OpenPool();
  EXPECT_EQ(Kms::Open(pool_.get(), root_, options).status().code(), Status::Code::kCorruption)
      << "an alias record of the wrong shape is refused, never thrown";
}

TEST_F(KmsTest, HostileBlobsAndContextsAreRefusedCleanly) {
  auto key = kms_->CreateKey("k", {});
  auto other = kms_->CreateKey("other", {});
  ASSERT_TRUE(key.ok() && other.ok());
  auto blob = kms_->Encrypt(key->key_id, "payload", {{"volume", "vol-1"}});
  ASSERT_TRUE(blob.ok());
  EXPECT_TRUE(Says(kms_->Decrypt(blob->blob, {{"volume", "vol-2"}}, "").status(),
                   "InvalidCiphertextException"));
  EXPECT_TRUE(Says(kms_->Decrypt(blob->blob, {}, "").status(), "InvalidCiphertextException"));
  EXPECT_TRUE(Says(kms_->Decrypt(blob->blob, {{"volume", "vol-1"}}, other->key_id).status(),
                   "IncorrectKeyException"));
  for (size_t cut : {size_t{0}, size_t{5}, size_t{44}, size_t{60}, blob->blob.size() - 1}) {
    EXPECT_TRUE(Says(kms_->Decrypt(blob->blob.substr(0, cut), {{"volume", "vol-1"}}, "").status(),
                     "InvalidCiphertextException"))
        << cut;
  }
  std::string forged = blob->blob;
  forged.replace(5, 36, other->key_id);  // the header is authenticated: another key's id fails
  EXPECT_TRUE(Says(kms_->Decrypt(forged, {{"volume", "vol-1"}}, "").status(),
                   "InvalidCiphertextException"));
  std::string version = blob->blob;
  version[44] = 9;  // a version the key does not have
  EXPECT_TRUE(Says(kms_->Decrypt(version, {{"volume", "vol-1"}}, "").status(),
                   "InvalidCiphertextException"));
  EXPECT_TRUE(
      Says(kms_->Decrypt(std::string(7000, 'S'), {}, "").status(), "InvalidCiphertextException"));
  EXPECT_TRUE(
      Says(kms_->Encrypt(key->key_id, std::string(4097, 'x'), {}).status(), "ValidationException"));
  EXPECT_TRUE(Says(kms_->Encrypt(key->key_id, "", {}).status(), "ValidationException"));
  EXPECT_TRUE(Says(kms_->Encrypt(key->key_id, "x", {{"k", std::string(9000, 'v')}}).status(),
                   "ValidationException"));
  EXPECT_TRUE(
      Says(kms_->GenerateDataKey(key->key_id, 1025, {}, true).status(), "ValidationException"));
  EXPECT_TRUE(Says(kms_->DescribeKey(std::string(3000, 'k')).status(), "ValidationException"));
  EXPECT_TRUE(
      Says(kms_->DescribeKey("arn:aws:kms:eu-west-1:1:key/x").status(), "NotFoundException"));
  EXPECT_EQ(kms_->Decrypt(blob->blob, {{"volume", "vol-1"}}, "alias/none").status().code(),
            Status::Code::kNotFound);
}

TEST_F(KmsTest, AliasesFollowTheirRulesAndUpdate) {
  auto a = kms_->CreateKey("a", {});
  auto b = kms_->CreateKey("b", {});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(Says(kms_->CreateAlias("team", a->key_id).status(), "ValidationException"));
  EXPECT_TRUE(Says(kms_->CreateAlias("alias/bad name", a->key_id).status(), "ValidationException"));
  EXPECT_TRUE(
      Says(kms_->CreateAlias("alias/aws/ebs", a->key_id).status(), "InvalidAliasNameException"));
  ASSERT_TRUE(kms_->CreateAlias("alias/team", a->key_id).ok());
  EXPECT_TRUE(Says(kms_->CreateAlias("alias/chain", "alias/team").status(), "ValidationException"));
  ASSERT_TRUE(kms_->UpdateAlias("alias/team", b->arn).ok());
  EXPECT_EQ(kms_->DescribeKey("alias/team")->key_id, b->key_id);
  EXPECT_EQ(kms_->DescribeKey("arn:aws:kms:us-east-1:000000000000:alias/team")->key_id, b->key_id);
  EXPECT_TRUE(kms_->ListAliases(a->key_id)->empty());
  ASSERT_TRUE(kms_->DeleteAlias("alias/team").ok());
  EXPECT_TRUE(Says(kms_->DeleteAlias("alias/team"), "NotFoundException"));
}

TEST_F(KmsTest, TheJsonApiPagesAndBoundsItsInputs) {
  for (int i = 0; i < 3; i++) {
    ASSERT_TRUE(kms_->CreateKey("k", {}).ok());
  }
  auto call = [&](const std::string& op, const std::string& body) {
    control::KmsReply r = control::ExecuteKmsJson(kms_.get(), "TrentService." + op, body);
    return std::make_pair(r.http_status, nlohmann::json::parse(r.body));
  };
  using nlohmann::json;
  auto [status, page1] = call("ListKeys", json{{"Limit", 2}}.dump());
  ASSERT_EQ(status, 200);
  EXPECT_EQ(page1["Keys"].size(), 2u);
  EXPECT_TRUE(page1["Truncated"].get<bool>());
  auto page2 = call("ListKeys", json{{"Limit", 2}, {"Marker", page1["NextMarker"]}}.dump()).second;
  EXPECT_EQ(page2["Keys"].size(), 1u);
  EXPECT_FALSE(page2["Truncated"].get<bool>());
  EXPECT_EQ(call("ListKeys", json{{"Limit", 0}}.dump()).second["__type"], "ValidationException");
  const json long_tag = {{"Tags", {{{"TagKey", "k"}, {"TagValue", std::string(300, 'v')}}}}};
  EXPECT_EQ(call("CreateKey", long_tag.dump()).second["__type"], "TagException");
  EXPECT_EQ(call("Encrypt", R"({"KeyId": 7, "Plaintext": "aGk="})").second["__type"],
            "SerializationException");
  EXPECT_EQ(call("Encrypt", "[1,2]").second["__type"], "SerializationException");
  EXPECT_EQ(call("Nope", "{}").second["__type"], "UnknownOperationException");
  EXPECT_EQ(control::ExecuteKmsJson(nullptr, "TrentService.ListKeys", "{}").http_status, 500);
}

TEST(KmsCryptoTest, SealOpensOnlyWithItsKeyAndAad) {
  auto key = kms::RandomBytes(32);
  auto other = kms::RandomBytes(32);
  ASSERT_TRUE(key.ok() && other.ok());
  auto sealed = kms::Seal(*key, "aad", "plaintext");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(kms::Open(*key, "aad", *sealed)->bytes(), "plaintext");
  EXPECT_FALSE(kms::Open(*other, "aad", *sealed).ok());
  EXPECT_FALSE(kms::Open(*key, "aae", *sealed).ok());
  EXPECT_FALSE(kms::Open(*key, "aad", sealed->substr(0, 27)).ok());
  EXPECT_EQ(*kms::Base64Decode(kms::Base64Encode("ab")), "ab");
  EXPECT_EQ(*kms::Base64Decode(kms::Base64Encode("abc")), "abc");
  EXPECT_FALSE(kms::Base64Decode("abc").ok());
  EXPECT_FALSE(kms::Base64Decode("ab!=").ok());
  // RFC 5869 test case 1 (HKDF-SHA256; OKM 3cb25f25...5865 in base64): how we call OpenSSL.
  const kms::Secret ikm(std::string(22, '\x0b'));
  std::string salt, info;
  for (int i = 0; i <= 12; i++) salt += static_cast<char>(i);
  for (int i = 0xf0; i <= 0xf9; i++) info += static_cast<char>(i);
  auto okm = kms::Hkdf(ikm, salt, info, 42);
  ASSERT_TRUE(okm.ok());
  EXPECT_EQ(kms::Base64Encode(okm->bytes()),
            "PLJfJfqs1XqQQ09k0DYvKi0tCpDPGlpMXbAtVuzExb80AHII1biHGFhl");
}

}  // namespace
}  // namespace strata
