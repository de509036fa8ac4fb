#include "output.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "util/json_text.h"
#include "util/text.h"

namespace strata {

namespace {

using nlohmann::json;

// One cell's text, escaped: a value never moves the cursor or starts a terminal escape.
std::string Scalar(const json& v) {
  if (v.is_string()) {
    return EscapeText(v.get<std::string>(), 4096);
  }
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) {
      out += (out.empty() ? "" : ",") +
             (e.is_object() && e.contains("Value") ? Scalar(e["Value"]) : Scalar(e));
    }
    return out;
  }
  return DumpJson(v);
}

// The rows to print: a list of objects (the first array of objects found), or the object itself.
std::vector<json> Rows(const json& reply) {
  for (const auto& [key, value] : reply.items()) {
    if (value.is_array()) {
      return std::vector<json>(value.begin(), value.end());
    }
    if (value.is_object()) {
      return Rows(value).empty() ? std::vector<json>{value} : Rows(value);
    }
  }
  return reply.empty() ? std::vector<json>{} : std::vector<json>{reply};
}

void PrintTable(const std::vector<json>& rows, std::ostream& out) {
  if (rows.empty()) {
    return;
  }
  std::vector<std::string> keys;
  for (const auto& [k, v] : rows[0].items()) {
    keys.push_back(k);
  }
  std::vector<size_t> width(keys.size());
  std::vector<std::vector<std::string>> cells;
  for (size_t c = 0; c < keys.size(); c++) {
    width[c] = keys[c].size();
  }
  for (const json& row : rows) {
    cells.emplace_back();
    for (size_t c = 0; c < keys.size(); c++) {
      cells.back().push_back(row.contains(keys[c]) ? Scalar(row[keys[c]]) : "");
      width[c] = std::max(width[c], cells.back().back().size());
    }
  }
  auto line = [&](const std::vector<std::string>& v) {
    out << "|";
    for (size_t c = 0; c < v.size(); c++) {
      out << " " << v[c] << std::string(width[c] - v[c].size(), ' ') << " |";
    }
    out << "\n";
  };
  line(keys);
  for (const auto& row : cells) {
    line(row);
  }
}

}  // namespace

void PrintReply(const json& reply, const std::string& format, std::ostream& out) {
  if (format == "json") {
    if (!reply.empty()) {
      out << DumpJson(reply, 2) << "\n";
    }
    return;
  }
  std::vector<json> rows = Rows(reply);
  if (format == "table") {
    PrintTable(rows, out);
    return;
  }
  for (const json& row : rows) {  // text: one tab-separated line per row, values only
    std::string line;
    for (const auto& [k, v] : row.items()) {
      line += (line.empty() ? "" : "\t") + Scalar(v);
    }
    out << line << "\n";
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
