// Runs a batch of volume requests all at once on a loop (the disk sees a deep queue) and waits
// for every one of them. For batch work (streams, remotes), never for the NBD data path.
#ifndef STRATA_UTIL_SUBMIT_ALL_H_
#define STRATA_UTIL_SUBMIT_ALL_H_

#include <vector>

#include "strata/event_loop.h"
#include "strata/volume.h"

namespace strata {

// Overwrites each request's user and callback. Returns the first error.
inline Status SubmitAll(Volume* volume, EventLoop* loop, std::vector<IoRequest>* requests) {
  struct Tally {
    size_t done = 0;
    Status first_error;
  } tally;
  for (IoRequest& r : *requests) {
    r.user = &tally;
    r.callback = [](IoRequest* req, const Status& st) {
      auto* t = static_cast<Tally*>(req->user);
      t->done++;
      if (!st.ok() && t->first_error.ok()) {
        t->first_error = st;
      }
    };
    volume->Submit(loop, &r);
  }
  const size_t n = requests->size();
  loop->RunUntil([&tally, n] { return tally.done == n; });
  return tally.first_error;
}

}  // namespace strata

#endif  // STRATA_UTIL_SUBMIT_ALL_H_
