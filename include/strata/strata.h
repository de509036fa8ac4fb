// Umbrella include for the Strata engine (libstrata). The EC2 layer on top (libstrata_ec2:
// images, instances, tags, security groups, key pairs) is "strata/compute.h".
#ifndef STRATA_STRATA_H_
#define STRATA_STRATA_H_

#include "strata/env.h"
#include "strata/event_loop.h"
#include "strata/exports.h"
#include "strata/pool.h"
#include "strata/status.h"
#include "strata/stream.h"
#include "strata/volume.h"

#endif  // STRATA_STRATA_H_
