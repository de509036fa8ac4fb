// The record codec (util/record_codec.h) and every record type described with it: records
// written by earlier releases still decode (golden texts), encode and decode are inverse, and
// each way a stored record can be damaged is Corruption naming the record, never an exception.
#include "util/record_codec.h"

#include <gtest/gtest.h>

#include "compute/compute_records.h"
#include "store/records.h"

namespace strata {
namespace {

// Texts exactly as the hand-written encoders of earlier releases wrote them.
constexpr const char* kOldVolume =
    R"({"create_time_ms":1700000000000,"head_epoch":4,"iops":3000,"lineage":7,"name":"data",)"
    R"("size_bytes":1073741824,"snapshot_id":"snap-0123456789abcdef0","state":"available",)"
    R"("throughput_mibps":125,"volume_id":"vol-0123456789abcdef0","volume_type":"gp3"})";
constexpr const char* kOldSnapshot =
    R"({"description":"nightly","epoch":3,"lineage":7,"snapshot_id":"snap-0123456789abcdef0",)"
    R"("source_snapshot_id":"","start_time_ms":5,"state":"completed",)"
    R"("volume_id":"vol-0123456789abcdef0","volume_size_bytes":1073741824})";
constexpr const char* kOldLineage =
    R"({"frozen_head":0,"lineage":7,"parent":2,"parent_epoch":9,"reclaim":[3,5],)"
    R"("volume_id":"vol-0123456789abcdef0"})";
// Written before security groups and key pairs: no security_group_ids, no key_name.
constexpr const char* kOldInstance =
    R"({"devices":[{"attach_time_ms":6,"delete_on_termination":true,"device_name":"/dev/xvda",)"
    R"("seed_snapshot_id":"","size_bytes":0,"virtual_name":"","volume_id":"vol-1"}],)"
    R"("disable_api_termination":false,"image_id":"ami-1","instance_id":"i-1",)"
    R"("instance_type":"t3.micro","launch_time_ms":8,"pending_deletes":["vol-9"],)"
    R"("root_device_name":"/dev/xvda","root_device_type":"ebs","state":"running",)"
    R"("state_reason":""})";
constexpr const char* kOldImage =
    R"({"creation_time_ms":1,"description":"","image_id":"ami-1","mappings":[)"
    R"({"delete_on_termination":false,"device_name":"/dev/xvda","snapshot_id":"snap-1","virtual_name":"",)"
    R"("volume_size_gib":8,"volume_type":"gp3"},{"device_name":"/dev/sdb","snapshot_id":"",)"
    R"("virtual_name":"ephemeral0","volume_size_gib":0,"volume_type":"gp3"}],"name":"web",)"
    R"("root_device_name":"/dev/xvda","root_device_type":"ebs","source_instance_id":"",)"
    R"("state":"available"})";

TEST(RecordCodecTest, EngineRecordsOfEarlierReleasesDecodeAndReencodeIdentically) {
  auto volume = VolumeCodec().Decode("vol-0123456789abcdef0", kOldVolume);
  ASSERT_TRUE(volume.ok()) << volume.status().ToString();
  EXPECT_EQ(volume->name, "data");
  EXPECT_EQ(volume->iops, 3000u);
  EXPECT_EQ(volume->throughput_mibps, 125u);
  EXPECT_EQ(volume->snapshot_id, "snap-0123456789abcdef0");
  EXPECT_EQ(VolumeCodec().Encode(*volume), kOldVolume);  // the on-disk format is unchanged

  auto snapshot = SnapshotCodec().Decode("snap-0123456789abcdef0", kOldSnapshot);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status().ToString();
  EXPECT_EQ(snapshot->epoch, 3u);
  EXPECT_EQ(SnapshotCodec().Encode(*snapshot), kOldSnapshot);

  auto lineage = LineageCodec().Decode("7", kOldLineage);
  ASSERT_TRUE(lineage.ok()) << lineage.status().ToString();
  EXPECT_EQ(lineage->state.parent, 2u);
  EXPECT_EQ(lineage->state.reclaim, (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(LineageCodec().Encode(*lineage), kOldLineage);
}

TEST(RecordCodecTest, OptionalFieldsAreOmittedAtTheirDefault) {
  VolumeInfo v;
  v.volume_id = "vol-1";
  v.size_bytes = 1;
  v.lineage = 1;
  v.head_epoch = 1;
  const std::string text = VolumeCodec().Encode(v);
  EXPECT_EQ(text.find("iops"), std::string::npos) << text;
  EXPECT_EQ(text.find("snapshot_id"), std::string::npos) << text;
  auto back = VolumeCodec().Decode("vol-1", text);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->iops, 0u);
}

TEST(RecordCodecTest, Ec2RecordsOfEarlierReleasesDecodeAndRoundTrip) {
  auto instance = InstanceCodec().Decode("i-1", kOldInstance);
  ASSERT_TRUE(instance.ok()) << instance.status().ToString();
  EXPECT_TRUE(instance->info.security_group_ids.empty());
  EXPECT_TRUE(instance->info.key_name.empty());
  ASSERT_EQ(instance->info.devices.size(), 1u);
  EXPECT_TRUE(instance->info.devices[0].delete_on_termination);
  EXPECT_EQ(instance->pending_deletes, std::vector<std::string>{"vol-9"});
  instance->info.security_group_ids = {"sg-1", "sg-2"};
  instance->info.key_name = "ops";
  auto again = InstanceCodec().Decode("i-1", InstanceCodec().Encode(*instance));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->info.security_group_ids, instance->info.security_group_ids);
  EXPECT_EQ(again->info.key_name, "ops");
  EXPECT_EQ(InstanceCodec().Encode(*again), InstanceCodec().Encode(*instance));

  auto image = ImageCodec().Decode("ami-1", kOldImage);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  ASSERT_EQ(image->mappings.size(), 2u);
  EXPECT_EQ(image->mappings[0].delete_on_termination, std::optional<bool>(false));
  EXPECT_EQ(image->mappings[1].delete_on_termination, std::nullopt);  // absent: unset
  EXPECT_EQ(ImageCodec().Encode(*image), kOldImage);

  SecurityGroupInfo group{"sg-1", "web", "d", {}, {}, {}};
  group.ingress.push_back({"tcp", 10809, 10810, "10.0.0.0/8", "nbd", "sgr-1"});
  auto group_back = SecurityGroupCodec().Decode("sg-1", SecurityGroupCodec().Encode(group));
  ASSERT_TRUE(group_back.ok()) << group_back.status().ToString();
  EXPECT_EQ(group_back->ingress, group.ingress);
  EXPECT_TRUE(group_back->egress.empty());  // an empty list stays empty
  // A group written before outbound rules were kept had EC2's default one.
  auto old_group = SecurityGroupCodec().Decode(
      "sg-2", R"({"group_id":"sg-2","group_name":"old","description":"d","ingress":[]})");
  ASSERT_TRUE(old_group.ok()) << old_group.status().ToString();
  EXPECT_EQ(old_group->egress, DefaultEgressRules());

  StoredKeyPair key{{"key-1", "ops", "psk", "ab", 3, {}}, std::string(64, 'f')};
  auto key_back = KeyPairCodec().Decode("key-1", KeyPairCodec().Encode(key));
  ASSERT_TRUE(key_back.ok()) << key_back.status().ToString();
  EXPECT_EQ(key_back->material, key.material);
  EXPECT_EQ(key_back->info.key_name, "ops");
}

void ExpectCorruption(const Status& st, const std::string& names) {
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(names), std::string::npos) << st.ToString();
}

TEST(RecordCodecTest, DamagedRecordsAreCorruptionNamingTheRecord) {
  const std::string id = "vol-0123456789abcdef0";
  const std::string good = kOldVolume;
  auto without = [&](const std::string& field) {
    nlohmann::json j = nlohmann::json::parse(good);
    j.erase(field);
    return j.dump();
  };
  auto with = [&](const std::string& field, const nlohmann::json& value) {
    nlohmann::json j = nlohmann::json::parse(good);
    j[field] = value;
    return j.dump();
  };
  ExpectCorruption(VolumeCodec().Decode(id, "").status(), "volume record " + id);
  ExpectCorruption(VolumeCodec().Decode(id, "{\"volume_id\":").status(), "is not a JSON object");
  ExpectCorruption(VolumeCodec().Decode(id, "[1,2]").status(), "is not a JSON object");
  ExpectCorruption(VolumeCodec().Decode(id, without("name")).status(), "volume record " + id);
  ExpectCorruption(VolumeCodec().Decode(id, with("size_bytes", "big")).status(), "size_bytes");
  ExpectCorruption(VolumeCodec().Decode(id, with("iops", "x")).status(),
                   "'iops': type must be number");
  ExpectCorruption(VolumeCodec().Decode("vol-2", good).status(), "names " + id);
  ExpectCorruption(VolumeCodec().Decode(id, with("lineage", 0)).status(), "inconsistent");
  EXPECT_TRUE(VolumeCodec().Decode(id, with("added_later", 1)).ok());  // a newer writer's field

  ExpectCorruption(LineageCodec().Decode("8", kOldLineage).status(), "names 7");
  nlohmann::json image = nlohmann::json::parse(kOldImage);
  image["mappings"] = "none";
  ExpectCorruption(ImageCodec().Decode("ami-1", image.dump()).status(), "'mappings': not a list");
  image["mappings"] = nlohmann::json::array({1});
  ExpectCorruption(ImageCodec().Decode("ami-1", image.dump()).status(),
                   "image record ami-1: 'mappings': item 0: a block device mapping is not");
  image["mappings"] = nlohmann::json::array({nlohmann::json::object()});
  ExpectCorruption(ImageCodec().Decode("ami-1", image.dump()).status(),
                   "'mappings': item 0: 'device_name': key 'device_name' not found");
  StoredKeyPair key{{"key-1", "ops", "psk", "ab", 3, {}}, "not hex"};
  ExpectCorruption(KeyPairCodec().Decode("key-1", KeyPairCodec().Encode(key)).status(), "PSK");
  key.info.key_type = "rsa";
  ExpectCorruption(KeyPairCodec().Decode("key-1", KeyPairCodec().Encode(key)).status(), "rsa");
  ExpectCorruption(DecodeTags("vol-1", R"({"Name":3})").status(), "tag record vol-1");
  EXPECT_EQ(DecodeTags("vol-1", EncodeTags({{"Name", "a"}})).value(), (Tags{{"Name", "a"}}));
}

}  // namespace
}  // namespace strata
