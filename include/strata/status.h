// Status and Result<T>: how every fallible Strata call reports failure.
//
// No Strata function throws. A Status is OK or carries a code, a message and, for I/O errors, the
// errno that caused it (the NBD server maps codes and errnos onto NBD error replies). Status is
// one pointer wide: OK is a null pointer, so the success path costs nothing.
#ifndef STRATA_STATUS_H_
#define STRATA_STATUS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "strata/export.h"

namespace strata {

class [[nodiscard]] STRATA_EXPORT Status {
 public:
  enum class Code : uint8_t {
    kOk = 0,
    kNotFound,          // an id or name that does not exist
    kAlreadyExists,     // a name or id that is taken
    kInvalidArgument,   // malformed input: bad size, unit, range, flag
    kOutOfRange,        // I/O past the end of a volume
    kNoSpace,           // pool capacity or host file system full; LMDB map cannot grow
    kBusy,              // held by someone else: a locked pool, an open volume
    kReadOnly,          // write to something that cannot be written
    kNotSupported,      // operation not possible on this object
    kCorruption,        // metadata or data that fails a check
    kIOError,           // the OS failed an I/O; sys_errno() tells which
    kShutdown,          // the pool is closing or latched after a fatal error
    kPermissionDenied,  // a client a security group or key pair does not admit
  };

  Status() = default;
  Status(Code code, std::string_view message, int sys_errno = 0);
  Status(const Status& other) { *this = other; }
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status AlreadyExists(std::string_view msg) { return Status(Code::kAlreadyExists, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, msg);
  }
  static Status OutOfRange(std::string_view msg) { return Status(Code::kOutOfRange, msg); }
  static Status NoSpace(std::string_view msg) { return Status(Code::kNoSpace, msg, 28); }
  static Status Busy(std::string_view msg) { return Status(Code::kBusy, msg); }
  static Status ReadOnly(std::string_view msg) { return Status(Code::kReadOnly, msg); }
  static Status NotSupported(std::string_view msg) { return Status(Code::kNotSupported, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status IOError(std::string_view msg, int sys_errno) {
    return Status(Code::kIOError, msg, sys_errno);
  }
  static Status Shutdown(std::string_view msg) { return Status(Code::kShutdown, msg); }
  static Status PermissionDenied(std::string_view msg) {
    return Status(Code::kPermissionDenied, msg);
  }
  // Maps a negative or positive errno onto the closest code (ENOSPC -> kNoSpace, ...).
  static Status FromErrno(std::string_view context, int err);

  bool ok() const { return rep_ == nullptr; }
  Code code() const { return rep_ ? rep_->code : Code::kOk; }
  int sys_errno() const { return rep_ ? rep_->sys_errno : 0; }
  const std::string& message() const;
  // "NotFound: volume vol-... does not exist" (or "OK").
  std::string ToString() const;
  // Returns a copy whose message is prefixed with `context` and ": ".
  Status WithContext(std::string_view context) const;

 private:
  struct Rep {
    Code code;
    int sys_errno;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;
};

STRATA_EXPORT const char* CodeName(Status::Code code);

// Either a T or a non-OK Status. Access to value() on an error is a programming error (aborts).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) {
      status_ = Status(Status::Code::kInvalidArgument, "Result built from an OK status");
    }
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & {
    CheckOk();
    return *value_;
  }
  const T& value() const& {
    CheckOk();
    return *value_;
  }
  T&& value() && {
    CheckOk();
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  void CheckOk() const {
    if (!value_.has_value()) {
      __builtin_trap();
    }
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace strata

#define STRATA_CONCAT_INNER_(a, b) a##b
#define STRATA_CONCAT_(a, b) STRATA_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define STRATA_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::strata::Status strata_status_ = (expr); \
    if (!strata_status_.ok()) {               \
      return strata_status_;                  \
    }                                         \
  } while (0)

// `lhs = value of expr`, or returns its Status from the enclosing function.
#define STRATA_ASSIGN_OR_RETURN(lhs, expr) \
  STRATA_ASSIGN_OR_RETURN_IMPL_(STRATA_CONCAT_(strata_result_, __LINE__), lhs, expr)
#define STRATA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) {                                    \
    return tmp.status();                              \
  }                                                   \
  lhs = std::move(tmp).value()

#endif  // STRATA_STATUS_H_
