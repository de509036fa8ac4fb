// Rendering of a JSON reply as the AWS CLI does: json (indented), or text (its tab-separated
// rules: an object's scalars on one line after its key in upper case, lists row by row).
#ifndef STRATA_TOOLS_OUTPUT_H_
#define STRATA_TOOLS_OUTPUT_H_

#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

namespace strata {

void PrintReply(const nlohmann::json& reply, const std::string& format, std::ostream& out);

// A one-line progress bar on stderr, redrawn at most ten times a second, only when stderr is a
// terminal. Call Update(done, total) as work moves; the destructor ends the line.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  void Update(uint64_t done, uint64_t total);

 private:
  std::string label_;
  bool tty_;
  bool drawn_ = false;
  int64_t start_ms_;
  int64_t last_ms_ = 0;
};

}  // namespace strata

#endif  // STRATA_TOOLS_OUTPUT_H_
