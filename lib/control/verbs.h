// The verb table: every `strata` verb once, with its arguments. The CLI builds its command line
// (CLI11) and its control request from it, and the control plane refuses a request that carries
// an argument its verb does not have, so the two can never drift apart.
#ifndef STRATA_CONTROL_VERBS_H_
#define STRATA_CONTROL_VERBS_H_

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/status.h"

namespace strata::control {

struct VerbArg {
  enum class Kind {
    kText,        // one string
    kPath,        // one file name, made absolute by the CLI ("-": stdin or stdout)
    kFileText,    // a file name (or file:// / fileb:// URL) whose contents the CLI sends
    kFileBase64,  // the same, any bytes, sent base64-encoded (the AWS CLI's blob arguments)
    kList,        // one or more strings
    kFlag,        // no value: sends `flag_value`
  };
  const char* flag;  // "--size"; without dashes: a positional argument
  const char* key;   // the request's args key
  Kind kind;
  const char* help;
  bool required = false;
  bool flag_value = true;  // kFlag: what it sends (--no-X sends false for key X)
};

struct Verb {
  const char* path;     // "create-volume", or "GROUP SUB": "pool info", "remote add"
  const char* command;  // the control request's command
  const char* help;
  std::vector<VerbArg> args;
  // At least one of these keys must be given (a usage error otherwise); empty: no such rule.
  std::vector<const char*> one_of = {};
};

// Every verb, in the order `strata --help` lists them.
const std::vector<Verb>& Verbs();
// The verb a control command belongs to; nullptr for a command no verb sends.
const Verb* VerbOfCommand(const std::string& command);
// OK when every key of `args` is an argument of `command`'s verb (or no verb has the command).
// Errors: InvalidArgument naming the unknown argument.
Status CheckVerbArgs(const std::string& command, const nlohmann::json& args);

}  // namespace strata::control

#endif  // STRATA_CONTROL_VERBS_H_
