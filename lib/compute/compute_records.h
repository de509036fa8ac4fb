// The EC2 layer's records in the pool's layer tables (docs/on-disk-format.md §records): one codec
// per record type (util/record_codec.h), each a list of fields that encodes and decodes it.
#ifndef STRATA_COMPUTE_COMPUTE_RECORDS_H_
#define STRATA_COMPUTE_COMPUTE_RECORDS_H_

#include <string>
#include <vector>

#include "strata/compute.h"

#include "util/record_codec.h"

namespace strata {

// An instance as stored: what describe shows, plus the volumes still to delete after a
// terminate that could not delete them all.
struct InstanceRecord {
  InstanceInfo info;
  std::vector<std::string> pending_deletes;
};

// A key pair as stored: what describe shows, plus its material.
struct StoredKeyPair {
  KeyPairInfo info;
  std::string material;  // x509: the certificate (PEM); psk: the key (hex)
};

// An access key as stored: its id, secret and creation time (docs/security.md).
struct StoredAccessKey {
  AccessKeyInfo info;
  std::string secret;
};

const RecordCodec<ImageInfo>& ImageCodec();
const RecordCodec<StoredAccessKey>& AccessKeyCodec();
const RecordCodec<InstanceRecord>& InstanceCodec();
const RecordCodec<SecurityGroupInfo>& SecurityGroupCodec();
// EC2's default outbound rule of a new group: every protocol to 0.0.0.0/0 (its id not yet given).
std::vector<SecurityGroupRule> DefaultEgressRules();
const RecordCodec<StoredKeyPair>& KeyPairCodec();
const RecordCodec<VolumeModificationInfo>& ModificationCodec();
const RecordCodec<ResourceAttributes>& AttributesCodec();
// A resource's tags: one JSON object of key -> value under the resource's id.
std::string EncodeTags(const Tags& tags);
Result<Tags> DecodeTags(const std::string& id, const std::string& text);

}  // namespace strata

#endif  // STRATA_COMPUTE_COMPUTE_RECORDS_H_
