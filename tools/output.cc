#include "output.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <vector>

#include "util/json_text.h"
#include "util/text.h"

namespace strata {

namespace {

using nlohmann::json;

// A scalar as the AWS CLI prints it (Python's str(): True, False, None), escaped: a value never
// moves the cursor or starts a terminal escape.
std::string Scalar(const json& v) {
  if (v.is_string()) {
    return EscapeText(v.get<std::string>(), 4096);
  }
  if (v.is_boolean()) {
    return v.get<bool>() ? "True" : "False";
  }
  return v.is_null() ? "None" : DumpJson(v);
}

bool IsScalar(const json& v) { return !v.is_object() && !v.is_array(); }

std::string Upper(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return text;
}

void Text(const json& item, const std::string& identifier, const std::vector<std::string>* keys,
          std::ostream& out);

// A list of scalars: one IDENTIFIER<tab>value line each, or (top level) one line of them.
void TextScalars(const std::vector<json>& items, const std::string& identifier, std::ostream& out) {
  if (!identifier.empty()) {
    for (const json& v : items) {
      out << Upper(identifier) << "\t" << Scalar(v) << "\n";
    }
    return;
  }
  for (size_t i = 0; i < items.size(); i++) {
    out << (i == 0 ? "" : "\t") << Scalar(items[i]);
  }
  out << "\n";
}

// The AWS CLI's text rules. An object: its scalars on one line (sorted by key, or in the order
// of `keys`, the scalar keys of every object of its list, so that rows line up), after its
// identifier (the key it was found under, upper case); then each non-scalar, identified by its
// key. A list of objects: each object with the list's identifier and keys.
void TextObject(const json& item, const std::string& identifier,
                const std::vector<std::string>* keys, std::ostream& out) {
  std::vector<std::string> scalars;
  std::vector<std::pair<std::string, const json*>> rest;
  if (keys == nullptr) {
    for (const auto& [k, v] : item.items()) {
      if (IsScalar(v)) {
        scalars.push_back(Scalar(v));
      } else {
        rest.emplace_back(k, &v);
      }
    }
  } else {
    for (const std::string& k : *keys) {
      scalars.push_back(item.contains(k) ? Scalar(item[k]) : "");
    }
    for (const auto& [k, v] : item.items()) {
      if (std::find(keys->begin(), keys->end(), k) == keys->end()) {
        rest.emplace_back(k, &v);
      }
    }
  }
  if (!scalars.empty()) {
    if (!identifier.empty()) {
      scalars.insert(scalars.begin(), Upper(identifier));
    }
    for (size_t i = 0; i < scalars.size(); i++) {
      out << (i == 0 ? "" : "\t") << scalars[i];
    }
    out << "\n";
  }
  for (const auto& [k, v] : rest) {
    Text(*v, k, nullptr, out);
  }
}

void TextList(const json& list, const std::string& identifier, std::ostream& out) {
  if (std::any_of(list.begin(), list.end(), [](const json& v) { return v.is_object(); })) {
    std::vector<std::string> keys;
    for (const json& v : list) {
      if (!v.is_object()) {
        continue;
      }
      for (const auto& [k, field] : v.items()) {
        if (IsScalar(field) && std::find(keys.begin(), keys.end(), k) == keys.end()) {
          keys.push_back(k);
        }
      }
    }
    std::sort(keys.begin(), keys.end());
    for (const json& v : list) {
      Text(v, identifier, &keys, out);
    }
    return;
  }
  std::vector<json> scalars;
  for (const json& v : list) {
    if (IsScalar(v)) {
      scalars.push_back(v);
    }
  }
  if (!scalars.empty()) {
    TextScalars(scalars, identifier, out);
  }
  for (const json& v : list) {
    if (!IsScalar(v)) {
      Text(v, identifier, nullptr, out);
    }
  }
}

void Text(const json& item, const std::string& identifier, const std::vector<std::string>* keys,
          std::ostream& out) {
  if (item.is_object()) {
    TextObject(item, identifier, keys, out);
  } else if (item.is_array()) {
    if (!item.empty()) {
      TextList(item, identifier, out);
    }
  } else {
    out << Scalar(item) << "\n";
  }
}

}  // namespace

void PrintReply(const json& reply, const std::string& format, std::ostream& out) {
  if (format == "text") {
    Text(reply, "", nullptr, out);
    return;
  }
  if (!reply.is_object() || !reply.empty()) {  // a query's answer may be null or a scalar
    out << DumpJson(reply, 2) << "\n";
  }
}

namespace {
int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), tty_(isatty(STDERR_FILENO) == 1), start_ms_(NowMs()) {}

ProgressBar::~ProgressBar() {
  if (drawn_) {
    std::fputc('\n', stderr);
  }
}

void ProgressBar::Update(uint64_t done, uint64_t total) {
  const int64_t now = NowMs();
  if (!tty_ || (now - last_ms_ < 100 && done < total)) {
    return;
  }
  last_ms_ = now;
  drawn_ = true;
  const double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const int width = 30;
  const int filled = static_cast<int>(fraction * width);
  const double secs = std::max<double>(0.001, static_cast<double>(now - start_ms_) / 1000.0);
  std::fprintf(stderr, "\r%s [%s%s] %3d%%  %.1f / %.1f MiB  %.0f MiB/s ", label_.c_str(),
               std::string(static_cast<size_t>(filled), '#').c_str(),
               std::string(static_cast<size_t>(width - filled), ' ').c_str(),
               static_cast<int>(fraction * 100), static_cast<double>(done) / (1 << 20),
               static_cast<double>(total) / (1 << 20),
               static_cast<double>(done) / (1 << 20) / secs);
  std::fflush(stderr);
}

}  // namespace strata
