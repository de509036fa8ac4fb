// POOL/remotes.json: the pool's remote names. Written to a temporary file, synced, renamed over
// the old one and the directory synced: a crash leaves the old list or the new one.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "strata/env.h"
#include "strata/remote.h"

#include "remote/s3_client.h"
#include "util/json_text.h"
#include "util/text.h"

namespace strata {

namespace {

using nlohmann::json;

constexpr size_t kMaxRemotes = 64;

std::string ConfigPath(const std::string& pool_dir) { return pool_dir + "/remotes.json"; }

Status ValidateSpec(const RemoteSpec& spec) {
  if (spec.name.empty() || spec.name.size() > 64 ||
      spec.name.find_first_not_of(
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
          std::string::npos) {
    return Status::InvalidArgument("a remote name is 1 to 64 of A-Z a-z 0-9 . _ -, not '" +
                                   EscapeText(spec.name, 80) + "'");
  }
  remote::S3Location location;
  STRATA_RETURN_IF_ERROR(remote::ParseS3Url(spec.url, &location));
  STRATA_RETURN_IF_ERROR(ValidateText("--url", spec.url, 1024));
  STRATA_RETURN_IF_ERROR(ValidateText("--region", spec.region, 64));
  STRATA_RETURN_IF_ERROR(ValidateText("--endpoint-url", spec.endpoint_url, 1024));
  if (!spec.endpoint_url.empty() && !spec.endpoint_url.starts_with("http://") &&
      !spec.endpoint_url.starts_with("https://")) {
    return Status::InvalidArgument("--endpoint-url must start with http:// or https://");
  }
  return Status::OK();
}

Result<std::vector<RemoteSpec>> Load(const std::string& pool_dir) {
  std::vector<RemoteSpec> out;
  // (a few hundred bytes per remote; 1 MiB is far beyond any list a person keeps)
  Result<std::string> text = Env::Default()->ReadSmallFile(ConfigPath(pool_dir), 1 << 20);
  if (text.status().code() == Status::Code::kNotFound) {
    return out;  // none yet
  }
  STRATA_RETURN_IF_ERROR(text.status());
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("remotes") || !j["remotes"].is_array()) {
    return Status::Corruption(ConfigPath(pool_dir) + " is not a remote list");
  }
  for (const json& r : j["remotes"]) {
    if (!r.is_object() || !r.value("name", json()).is_string() ||
        !r.value("url", json()).is_string()) {
      return Status::Corruption(ConfigPath(pool_dir) + " has a malformed remote");
    }
    RemoteSpec spec;
    spec.name = r["name"].get<std::string>();
    spec.url = r["url"].get<std::string>();
    spec.endpoint_url = r.value("endpoint_url", std::string());
    spec.region = r.value("region", std::string("us-east-1"));
    out.push_back(spec);
  }
  return out;
}

Status Save(const std::string& pool_dir, const std::vector<RemoteSpec>& remotes) {
  json list = json::array();
  for (const RemoteSpec& r : remotes) {
    list.push_back(
        {{"name", r.name}, {"url", r.url}, {"endpoint_url", r.endpoint_url}, {"region", r.region}});
  }
  const std::string text = DumpJson(json{{"remotes", list}}, 2) + "\n";
  return Env::Default()->ReplaceFile(ConfigPath(pool_dir), text);
}

}  // namespace

Status AddRemote(const std::string& pool_dir, const RemoteSpec& spec) {
  STRATA_RETURN_IF_ERROR(ValidateSpec(spec));
  STRATA_ASSIGN_OR_RETURN(std::vector<RemoteSpec> remotes, Load(pool_dir));
  for (const RemoteSpec& r : remotes) {
    if (r.name == spec.name) {
      return Status::AlreadyExists("remote " + spec.name + " exists (" + r.url + ")");
    }
  }
  if (remotes.size() >= kMaxRemotes) {
    return Status::InvalidArgument("a pool has at most 64 remotes");
  }
  remotes.push_back(spec);
  return Save(pool_dir, remotes);
}

Result<std::vector<RemoteSpec>> ListRemotes(const std::string& pool_dir) { return Load(pool_dir); }

Result<RemoteSpec> FindRemote(const std::string& pool_dir, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(std::vector<RemoteSpec> remotes, Load(pool_dir));
  for (const RemoteSpec& r : remotes) {
    if (r.name == name) {
      return r;
    }
  }
  return Status::NotFound("no remote named '" + EscapeText(name, 80) +
                          "' (strata remote add NAME --url s3://BUCKET)");
}

Status RemoveRemote(const std::string& pool_dir, const std::string& name) {
  STRATA_ASSIGN_OR_RETURN(std::vector<RemoteSpec> remotes, Load(pool_dir));
  for (auto it = remotes.begin(); it != remotes.end(); ++it) {
    if (it->name == name) {
      remotes.erase(it);
      return Save(pool_dir, remotes);
    }
  }
  return Status::NotFound("no remote named '" + EscapeText(name, 80) + "'");
}

}  // namespace strata
