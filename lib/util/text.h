// Text that crosses a trust boundary: names, descriptions, tags and ids from the CLI, the control
// socket, a stream or an NBD client. Validated where it enters (so that what is stored and
// printed as JSON is always valid UTF-8), and escaped where it is shown (a log line or a
// terminal must never take a client's bytes as a newline or an escape sequence).
#ifndef STRATA_UTIL_TEXT_H_
#define STRATA_UTIL_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "strata/status.h"

namespace strata {

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above
// U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Lower-case hex of `bytes` (two characters each).
std::string HexOf(std::string_view bytes);

// OK when `text` is valid UTF-8 of at most `max_bytes` bytes with no control character (C0, DEL
// or C1). Errors: InvalidArgument naming `field` and what is wrong (never echoing the bytes).
Status ValidateText(std::string_view field, std::string_view text, size_t max_bytes);

// `text` made safe for one log line or one terminal cell: control characters, backslashes and
// bytes that are not valid UTF-8 become \n, \t, \\ or \xHH; printable UTF-8 stays as it is. At
// most `max_bytes` of the input are shown ("..." marks a cut).
std::string EscapeText(std::string_view text, size_t max_bytes = 256);

}  // namespace strata

#endif  // STRATA_UTIL_TEXT_H_
