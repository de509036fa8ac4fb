#include "output.h"

#include <algorithm>
#include <vector>

namespace strata {

namespace {

using nlohmann::json;

std::string Scalar(const json& v) {
  if (v.is_string()) {
    return v.get<std::string>();
  }
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) {
      out += (out.empty() ? "" : ",") +
             (e.is_object() && e.contains("Value") ? Scalar(e["Value"]) : Scalar(e));
    }
    return out;
  }
  return v.dump();
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
      out << reply.dump(2) << "\n";
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

}  // namespace strata
