// Resource attributes beside tags (images' launch permissions, snapshots' create-volume
// permissions, volumes' autoEnableIO) and image descriptions: EC2's *Attribute calls.
#include <algorithm>

#include "compute/compute_impl.h"
#include "compute/compute_records.h"
#include "util/text.h"

namespace strata {

namespace {

constexpr size_t kMaxSharedWith = 1000;  // EC2's limit on accounts an image is shared with

Status ValidateAttributes(const std::string& id, const ResourceAttributes& a) {
  const bool volume = id.starts_with("vol-");
  if (volume && (!a.user_ids.empty() || !a.groups.empty())) {
    return Status::InvalidArgument("a volume has no launch or create-volume permissions");
  }
  if (!volume && a.auto_enable_io) {
    return Status::InvalidArgument("InvalidParameterValue: autoEnableIO is a volume's attribute");
  }
  if (!a.deprecation_time.empty()) {
    const std::string& t = a.deprecation_time;  // as IsoTime writes it
    const bool shape = t.size() == 24 && t[4] == '-' && t[7] == '-' && t[10] == 'T' &&
                       t[13] == ':' && t[16] == ':' && t[19] == '.' && t[23] == 'Z';
    if (!id.starts_with("ami-") || !shape) {
      return Status::InvalidArgument(
          "InvalidParameterValue: a deprecation time is an image's, "
          "as YYYY-MM-DDTHH:MM:SS.mmmZ");
    }
  }
  if (a.user_ids.size() > kMaxSharedWith) {
    return Status::InvalidArgument("InvalidParameterValue: at most " +
                                   std::to_string(kMaxSharedWith) + " accounts");
  }
  for (const std::string& user : a.user_ids) {
    if (user.size() != 12 ||
        !std::all_of(user.begin(), user.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return Status::InvalidArgument("InvalidAMIAttributeItemValue: '" + user +
                                     "' is not an account id (12 digits)");
    }
  }
  for (const std::string& group : a.groups) {
    if (group != "all") {
      return Status::InvalidArgument("InvalidAMIAttributeItemValue: the group '" + group +
                                     "' is not 'all'");
    }
  }
  return Status::OK();
}

}  // namespace

Status ComputeImpl::LoadAttributesLocked(std::vector<RecordChange>* stale) {
  STRATA_ASSIGN_OR_RETURN(auto records, pool_->ReadRecords(kAttributesTable));
  for (const auto& [id, text] : records) {
    if (!ResourceExistsLocked(id).ok()) {  // deleted (snapshots and volumes: through the Pool)
      stale->push_back({kAttributesTable, id, std::nullopt});
      continue;
    }
    STRATA_ASSIGN_OR_RETURN(attributes_[id], AttributesCodec().Decode(id, text));
  }
  return Status::OK();
}

Result<ResourceAttributes> ComputeImpl::AttributesOf(const std::string& id) {
  MutexLock lock(&mu_);
  if (!id.starts_with("ami-") && !id.starts_with("snap-") && !id.starts_with("vol-")) {
    return Status::NotFound("'" + id + "' is not an image, snapshot or volume");
  }
  STRATA_RETURN_IF_ERROR(ResourceExistsLocked(id));
  auto it = attributes_.find(id);
  return it == attributes_.end() ? ResourceAttributes{} : it->second;
}

Status ComputeImpl::SetAttributes(const std::string& id, const ResourceAttributes& attributes) {
  ResourceAttributes a = attributes;
  std::sort(a.user_ids.begin(), a.user_ids.end());
  a.user_ids.erase(std::unique(a.user_ids.begin(), a.user_ids.end()), a.user_ids.end());
  std::sort(a.groups.begin(), a.groups.end());
  a.groups.erase(std::unique(a.groups.begin(), a.groups.end()), a.groups.end());
  STRATA_RETURN_IF_ERROR(ValidateAttributes(id, a));
  MutexLock lock(&mu_);
  if (!id.starts_with("ami-") && !id.starts_with("snap-") && !id.starts_with("vol-")) {
    return Status::NotFound("'" + id + "' is not an image, snapshot or volume");
  }
  STRATA_RETURN_IF_ERROR(ResourceExistsLocked(id));
  const bool defaults = a == ResourceAttributes{};
  STRATA_RETURN_IF_ERROR(pool_->CommitRecords(
      {{kAttributesTable, id,
        defaults ? std::nullopt : std::optional(AttributesCodec().Encode(a))}}));
  if (defaults) {
    attributes_.erase(id);
  } else {
    attributes_[id] = std::move(a);
  }
  return Status::OK();
}

Status ComputeImpl::SetImageDescription(const std::string& image_id,
                                        const std::string& description) {
  STRATA_RETURN_IF_ERROR(ValidateText("image description", description, 255));
  MutexLock lock(&mu_);
  auto it = images_.find(image_id);
  if (it == images_.end()) {
    return Status::NotFound("image " + image_id + " does not exist");
  }
  ImageInfo next = it->second;
  next.description = description;
  STRATA_RETURN_IF_ERROR(
      pool_->CommitRecords({{kImagesTable, image_id, ImageCodec().Encode(next)}}));
  it->second = std::move(next);
  return Status::OK();
}

}  // namespace strata
