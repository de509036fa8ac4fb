// In-memory ByteSink / ByteSource for the snapshot stream tests.
#ifndef STRATA_TESTS_STRING_STREAM_H_
#define STRATA_TESTS_STRING_STREAM_H_

#include <algorithm>
#include <cstring>
#include <string>

#include "strata/stream.h"

namespace strata::test {

class StringSink final : public ByteSink {
 public:
  Status Write(const void* data, size_t length) override {
    bytes.append(static_cast<const char*>(data), length);
    return Status::OK();
  }
  Status Finish() override { return Status::OK(); }
  std::string bytes;
};

class StringSource final : public ByteSource {
 public:
  explicit StringSource(std::string b) : bytes_(std::move(b)) {}
  Result<size_t> Read(void* data, size_t length) override {
    size_t n = std::min(length, bytes_.size() - pos_);
    std::memcpy(data, bytes_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  std::string bytes_;
  size_t pos_ = 0;
};

}  // namespace strata::test

#endif  // STRATA_TESTS_STRING_STREAM_H_
