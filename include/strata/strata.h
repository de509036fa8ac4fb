// Umbrella include for the Strata library.
#ifndef STRATA_STRATA_H_
#define STRATA_STRATA_H_

#include "strata/compute.h"
#include "strata/env.h"
#include "strata/event_loop.h"
#include "strata/pool.h"
#include "strata/status.h"
#include "strata/stream.h"
#include "strata/volume.h"

#endif  // STRATA_STRATA_H_
