// The control plane: every CLI verb as a JSON request executed against an open Pool.
//
// A request is {"command": "create-volume", "args": {...}}; the reply is the EC2-shaped JSON the
// CLI prints. The CLI runs requests itself on an idle pool; a running strata-nbd runs the same
// requests for it over its control socket, so the answers are identical either way.
#ifndef STRATA_CONTROL_CONTROL_H_
#define STRATA_CONTROL_CONTROL_H_

#include <functional>

#include <nlohmann/json.hpp>

#include "strata/compute.h"
#include "strata/pool.h"

namespace strata {

// Executes `request`. Errors: InvalidArgument (unknown command, missing or malformed argument)
// and whatever the Pool call returns.
Result<nlohmann::json> ExecuteControl(Compute* compute, const nlohmann::json& request);

// export-snapshot / import-snapshot / import-image run by the CLI on a pool it opened itself: "-"
// is its stdout / stdin, and `progress` (may be empty) is called as data moves. Through
// ExecuteControl (the server's control socket) only file paths are accepted, and there is no
// progress.
Result<nlohmann::json> ExecuteStreamCommand(
    Compute* compute, const nlohmann::json& request,
    const std::function<void(uint64_t, uint64_t)>& progress);

// copy-snapshot, and create-volume --remote, run by the CLI itself with `progress` (its progress
// bar). IsRemoteTransfer tells whether a request is one of them.
bool IsRemoteTransfer(const nlohmann::json& request);
Result<nlohmann::json> ExecuteRemoteTransfer(
    Compute* compute, const nlohmann::json& request,
    const std::function<void(uint64_t, uint64_t)>& progress);

// EC2 DescribeVolumes item for a volume (its attachment and tags from `compute`).
nlohmann::json VolumeJson(Compute* compute, const VolumeInfo& info);
// EC2 DescribeSnapshots item for a snapshot; `space` adds the space accounting fields.
nlohmann::json SnapshotJson(const SnapshotInfo& info, const SnapshotSpace* space, const Tags& tags);
// The CloudWatch AWS/EBS metric names of one volume's counters.
nlohmann::json MetricsJson(const VolumeMetrics& metrics);
// ISO 8601 UTC with milliseconds, as the AWS CLI prints times.
std::string IsoTime(int64_t unix_ms);

}  // namespace strata

#endif  // STRATA_CONTROL_CONTROL_H_
