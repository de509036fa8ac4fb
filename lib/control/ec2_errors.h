// A Status as EC2 reports it: the error code (InvalidVolume.NotFound, IncorrectState, ...), the
// message, and the HTTP status the EC2 Query API answers with. The CLI prints the same code, so
// a script sees one name for one error whichever way it asked.
#ifndef STRATA_CONTROL_EC2_ERRORS_H_
#define STRATA_CONTROL_EC2_ERRORS_H_

#include <string>

#include "strata/status.h"

namespace strata::control {

struct Ec2Error {
  std::string code;
  std::string message;
  int http_status = 400;
};

// A message that starts with an EC2 code ("IncorrectState: ...") keeps it; otherwise the code
// follows from the Status code and the resource the message names (NotFound for "volume vol-…"
// is InvalidVolume.NotFound). REQUIRES: !status.ok().
Ec2Error Ec2ErrorOf(const Status& status);
// "CODE: message", as the CLI prints it after "strata: error: ".
std::string Ec2ErrorText(const Status& status);

}  // namespace strata::control

#endif  // STRATA_CONTROL_EC2_ERRORS_H_
