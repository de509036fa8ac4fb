#include "util/text.h"

#include <cstdint>
#include <cstdio>

namespace strata {

namespace {

// Length of the well-formed UTF-8 sequence at text[i] (1..4), or 0 if it is not one
// (Unicode 15, table 3-7). `*code_point` receives its value.
size_t Utf8SequenceAt(std::string_view text, size_t i, uint32_t* code_point) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[i + k]); };
  const uint8_t b0 = byte(0);
  const size_t left = text.size() - i;
  if (b0 < 0x80) {
    *code_point = b0;
    return 1;
  }
  size_t n;
  uint8_t lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    lo = b0 == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
    hi = b0 == 0xED ? 0x9F : 0xBF;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    lo = b0 == 0xF0 ? 0x90 : 0x80;
    hi = b0 == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (left < n || byte(1) < lo || byte(1) > hi) {
    return 0;
  }
  uint32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; k++) {
    if ((byte(k) & 0xC0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (byte(k) & 0x3F);
  }
  *code_point = cp;
  return n;
}

bool IsControl(uint32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

}  // namespace

std::string HexOf(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes.size());
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    size_t n = Utf8SequenceAt(text, i, &cp);
    if (n == 0) {
      return false;
    }
    i += n;
  }
  return true;
}

Status ValidateText(std::string_view field, std::string_view text, size_t max_bytes) {
  if (text.size() > max_bytes) {
    return Status::InvalidArgument(std::string(field) + " is longer than " +
                                   std::to_string(max_bytes) + " bytes");
  }
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    size_t n = Utf8SequenceAt(text, i, &cp);
    if (n == 0) {
      return Status::InvalidArgument(std::string(field) + " is not valid UTF-8 (byte " +
                                     std::to_string(i) + ")");
    }
    if (IsControl(cp)) {
      return Status::InvalidArgument(std::string(field) + " contains a control character (byte " +
                                     std::to_string(i) + ")");
    }
    i += n;
  }
  return Status::OK();
}

std::string EscapeText(std::string_view text, size_t max_bytes) {
  std::string out;
  const size_t shown = text.size() < max_bytes ? text.size() : max_bytes;
  out.reserve(shown + 8);
  for (size_t i = 0; i < shown;) {
    uint32_t cp;
    size_t n = Utf8SequenceAt(text.substr(0, shown), i, &cp);
    if (n != 0 && !IsControl(cp) && cp != '\\') {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    if (n == 0) {
      n = 1;  // an invalid byte is shown alone
    }
    for (size_t k = 0; k < n; k++) {
      const auto b = static_cast<uint8_t>(text[i + k]);
      if (b == '\n') {
        out += "\\n";
      } else if (b == '\t') {
        out += "\\t";
      } else if (b == '\\') {
        out += "\\\\";
      } else {
        char hex[5];
        std::snprintf(hex, sizeof(hex), "\\x%02x", b);
        out += hex;
      }
    }
    i += n;
  }
  if (shown < text.size()) {
    out += "...";
  }
  return out;
}

}  // namespace strata
