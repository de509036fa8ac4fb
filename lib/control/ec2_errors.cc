#include "control/ec2_errors.h"

#include <cctype>
#include <cstring>

namespace strata::control {

namespace {

// "InvalidParameterValue: ..." or "InvalidVolume.NotFound: ...": the code's length, else 0.
size_t LeadingCode(const std::string& message) {
  const size_t colon = message.find(": ");
  if (colon == std::string::npos || colon == 0 || colon > 64 ||
      !std::isupper(static_cast<unsigned char>(message[0]))) {
    return 0;
  }
  for (size_t i = 0; i < colon; i++) {
    const char c = message[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.') {
      return 0;
    }
  }
  return colon;
}

// The EC2 resource a message is about, by the words or ids it names.
const char* ResourceOf(const std::string& message) {
  struct Kind {
    const char* word;  // how our messages name it
    const char* id;    // its id prefix
    const char* ec2;   // EC2's error-code stem
  };
  static constexpr Kind kKinds[] = {
      {"security group", "sg-", "InvalidGroup"}, {"key pair", "key-", "InvalidKeyPair"},
      {"snapshot", "snap-", "InvalidSnapshot"},  {"volume", "vol-", "InvalidVolume"},
      {"image", "ami-", "InvalidAMIID"},         {"instance", "i-", "InvalidInstanceID"},
  };
  for (const Kind& k : kKinds) {
    if (message.starts_with(k.word) || message.find(std::string(" ") + k.id) != std::string::npos ||
        message.starts_with(k.id)) {
      return k.ec2;
    }
  }
  return nullptr;
}

}  // namespace

Ec2Error Ec2ErrorOf(const Status& status) {
  const std::string& message = status.message();
  if (const size_t n = LeadingCode(message); n != 0) {
    const std::string code = message.substr(0, n);
    return {code, message.substr(n + 2), code == "UnauthorizedOperation" ? 403 : 400};
  }
  const char* resource = ResourceOf(message);
  auto with = [&](const char* suffix, const char* fallback) {
    return resource != nullptr ? std::string(resource) + suffix : std::string(fallback);
  };
  using C = Status::Code;
  switch (status.code()) {
    case C::kNotFound:
      return {with(".NotFound", "InvalidParameterValue"), message, 400};
    case C::kAlreadyExists:
      return {with(".Duplicate", "InvalidParameterValue"), message, 400};
    case C::kBusy:
      return {resource != nullptr && std::strcmp(resource, "InvalidVolume") == 0
                  ? "VolumeInUse"
                  : with(".InUse", "IncorrectState"),
              message, 400};
    case C::kInvalidArgument:
    case C::kOutOfRange:
      return {"InvalidParameterValue", message, 400};
    case C::kReadOnly:
      return {"IncorrectState", message, 400};
    case C::kNotSupported:
      return {"UnsupportedOperation", message, 400};
    case C::kNoSpace:
      return {"InsufficientVolumeCapacity", message, 400};
    case C::kPermissionDenied:
      return {"UnauthorizedOperation", message, 403};
    case C::kShutdown:
      return {"Unavailable", message, 503};
    default:
      return {"InternalError", status.ToString(), 500};
  }
}

std::string Ec2ErrorText(const Status& status) {
  Ec2Error e = Ec2ErrorOf(status);
  return e.code + ": " + e.message;
}

}  // namespace strata::control
