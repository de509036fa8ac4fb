#include "strata/status.h"

#include <cerrno>
#include <cstring>

namespace strata {

Status::Status(Code code, std::string_view message, int sys_errno) {
  if (code != Code::kOk) {
    rep_ = std::make_unique<Rep>(Rep{code, sys_errno, std::string(message)});
  }
}

Status& Status::operator=(const Status& other) {
  if (this != &other) {
    rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
  }
  return *this;
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->message : kEmpty;
}

const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return "OK";
    case Status::Code::kNotFound:
      return "NotFound";
    case Status::Code::kAlreadyExists:
      return "AlreadyExists";
    case Status::Code::kInvalidArgument:
      return "InvalidArgument";
    case Status::Code::kOutOfRange:
      return "OutOfRange";
    case Status::Code::kNoSpace:
      return "NoSpace";
    case Status::Code::kBusy:
      return "Busy";
    case Status::Code::kReadOnly:
      return "ReadOnly";
    case Status::Code::kNotSupported:
      return "NotSupported";
    case Status::Code::kCorruption:
      return "Corruption";
    case Status::Code::kIOError:
      return "IOError";
    case Status::Code::kShutdown:
      return "Shutdown";
    case Status::Code::kPermissionDenied:
      return "PermissionDenied";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) {
    return "OK";
  }
  std::string out = std::string(CodeName(rep_->code)) + ": " + rep_->message;
  if (rep_->sys_errno != 0 && rep_->code == Code::kIOError) {
    out += " (";
    out += std::strerror(rep_->sys_errno);
    out += ")";
  }
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) {
    return Status();
  }
  return Status(rep_->code, std::string(context) + ": " + rep_->message, rep_->sys_errno);
}

Status Status::FromErrno(std::string_view context, int err) {
  if (err < 0) {
    err = -err;
  }
  std::string msg(context);
  switch (err) {
    case 0:
      return Status();
    case ENOSPC:
    case EDQUOT:
      return Status(Code::kNoSpace, msg + ": no space left on device", err);
    case ENOENT:
      return Status(Code::kNotFound, msg + ": no such file or directory", err);
    case EEXIST:
      return Status(Code::kAlreadyExists, msg + ": file exists", err);
    case EROFS:
    case EACCES:
    case EPERM:
      return Status(Code::kReadOnly, msg + ": " + std::strerror(err), err);
    default:
      return Status(Code::kIOError, msg, err);
  }
}

}  // namespace strata
