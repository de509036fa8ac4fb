#include "control/shorthand.h"

namespace strata::control {

namespace {

using nlohmann::json;

constexpr int kMaxDepth = 8;

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Result<json> Run() {
    STRATA_ASSIGN_OR_RETURN(json out, Object('\0', 0));
    if (pos_ != s_.size()) {
      return Error("unexpected '" + std::string(1, s_[pos_]) + "'");
    }
    return out;
  }

 private:
  Status Error(const std::string& what) const {
    return Status::InvalidArgument("shorthand '" + s_ + "' at " + std::to_string(pos_) + ": " +
                                   what);
  }
  bool AtEnd(char close) const { return pos_ >= s_.size() || s_[pos_] == close; }

  // Does the token at pos_ (up to the next ',', or the closing char) hold a '=' (a new key)?
  bool NextIsKey(char close) const {
    for (size_t i = pos_; i < s_.size() && s_[i] != ',' && s_[i] != close; i++) {
      if (s_[i] == '=') {
        return true;
      }
      if (s_[i] == '{' || s_[i] == '[') {
        return false;
      }
    }
    return false;
  }

  std::string Scalar(char close) {
    size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != close) {
      pos_++;
    }
    return s_.substr(start, pos_ - start);
  }

  Result<json> Value(char close, int depth) {
    if (depth > kMaxDepth) {
      return Error("nested too deeply");
    }
    if (pos_ < s_.size() && s_[pos_] == '{') {
      pos_++;
      STRATA_ASSIGN_OR_RETURN(json obj, Object('}', depth + 1));
      if (pos_ >= s_.size() || s_[pos_] != '}') {
        return Error("missing '}'");
      }
      pos_++;
      return obj;
    }
    if (pos_ < s_.size() && s_[pos_] == '[') {
      pos_++;
      json list = json::array();
      while (!AtEnd(']')) {
        STRATA_ASSIGN_OR_RETURN(json item, Value(']', depth + 1));
        list.push_back(std::move(item));
        if (pos_ < s_.size() && s_[pos_] == ',') {
          pos_++;
        }
      }
      if (pos_ >= s_.size()) {
        return Error("missing ']'");
      }
      pos_++;
      return list;
    }
    return json(Scalar(close));
  }

  Result<json> Object(char close, int depth) {
    json obj = json::object();
    while (!AtEnd(close)) {
      size_t eq = s_.find('=', pos_);
      if (eq == std::string::npos) {
        return Error("expected Key=Value");
      }
      std::string key = s_.substr(pos_, eq - pos_);
      if (key.empty() || key.find_first_of(",{}[]") != std::string::npos) {
        return Error("bad key '" + key + "'");
      }
      pos_ = eq + 1;
      STRATA_ASSIGN_OR_RETURN(json value, Value(close, depth));
      // "Values=a,b": tokens without '=' continue the previous key's value as a list.
      while (pos_ < s_.size() && s_[pos_] == ',' && (pos_++, !AtEnd(close)) && !NextIsKey(close)) {
        if (!value.is_array()) {
          value = json::array({value});
        }
        STRATA_ASSIGN_OR_RETURN(json more, Value(close, depth));
        value.push_back(std::move(more));
      }
      if (obj.contains(key)) {
        return Error("key '" + key + "' given twice");
      }
      obj[key] = std::move(value);
    }
    return obj;
  }

  const std::string& s_;
  size_t pos_ = 0;
};

}  // namespace

Result<json> ParseShorthand(const std::string& text) {
  if (!text.empty() && (text[0] == '{' || text[0] == '[')) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      return Status::InvalidArgument("argument is not valid JSON: " + text);
    }
    return j;
  }
  if (text.empty()) {
    return Status::InvalidArgument("empty shorthand argument");
  }
  return Parser(text).Run();
}

}  // namespace strata::control
