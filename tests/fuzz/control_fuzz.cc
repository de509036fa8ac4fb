// libFuzzer target: bytes as one control-socket request line (lib/control), executed against an
// in-memory pool (SimEnv) after the parse the socket does. No input may crash, abort (an
// exception escaping), or make a reply that cannot be printed. Verbs that name host files
// (streams, get-snapshot-block) or remotes are left out: a fuzzer must not write where it likes
// or reach the network.
//
//   tools/fuzz.sh 60 control_fuzz
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "strata/compute.h"
#include "strata/pool.h"

#include "control/control.h"
#include "fuzz_pool.h"
#include "io/sim_env.h"
#include "util/json_text.h"

namespace {

struct Fixture : strata::fuzz::ComputeFixture {
  Fixture() : ComputeFixture(3, "control-fuzz") {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();
  // Left out: verbs that name host files, and every remote verb (a fuzzer must not reach the
  // network: a remote names an endpoint).
  static const std::set<std::string> kLeftOut = {
      "export-snapshot", "import-snapshot", "import-image", "get-snapshot-block",
      "remote-add",      "remote-remove",   "remote-list",  "copy-snapshot"};
  nlohmann::json request = nlohmann::json::parse(data, data + size, nullptr, false);
  if (request.is_discarded()) {
    return 0;
  }
  if (request.is_object() && request.contains("command") && request["command"].is_string() &&
      kLeftOut.count(request["command"].get<std::string>()) != 0) {
    return 0;
  }
  if (request.is_object() && request.contains("args") && request["args"].is_object() &&
      request["args"].contains("remote")) {
    return 0;
  }
  strata::Result<nlohmann::json> reply = strata::ExecuteControl(fx->compute.get(), request);
  std::string text =
      strata::DumpJson(reply.ok() ? *reply : nlohmann::json(reply.status().ToString()));
  if (text.empty()) {
    std::abort();
  }
  // Keep the pool small across inputs: what inputs created goes again once there is much of it
  // (a deletion the pool refuses, e.g. a snapshot an image holds, is fine).
  if (fx->pool->ListSnapshots().size() > 16) {
    for (const strata::SnapshotInfo& snap : fx->pool->ListSnapshots()) {
      (void)fx->pool->DeleteSnapshot(snap.snapshot_id);
    }
  }
  if (fx->pool->ListVolumes().size() > 16) {
    for (const strata::VolumeInfo& v : fx->pool->ListVolumes()) {
      if (v.name != "disk") {
        (void)fx->pool->DeleteVolume(v.volume_id);
      }
    }
  }
  return 0;
}
