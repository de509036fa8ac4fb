// util/text.h: what counts as printable UTF-8, and how anything else is shown.
#include "util/text.h"

#include <gtest/gtest.h>

namespace strata {
namespace {

TEST(TextTest, Utf8ValidityFollowsUnicode) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(
      IsValidUtf8("donn\xc3\xa9"
                  "es \xe2\x82\xac \xf0\x9f\x92\xbe"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xc3("));             // bad continuation
}

TEST(TextTest, ValidateRefusesControlsAndLength) {
  EXPECT_TRUE(ValidateText("name", "web-01 \xc3\xa9", 64).ok());
  EXPECT_EQ(ValidateText("name", "a\nb", 64).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(ValidateText("name", "\x7f", 64).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(ValidateText("name", "\xc2\x9b", 64).code(), Status::Code::kInvalidArgument);  // C1
  Status s = ValidateText("tag value", "ok\xff", 64);
  EXPECT_EQ(s.ToString(), "InvalidArgument: tag value is not valid UTF-8 (byte 2)");
  EXPECT_EQ(ValidateText("name", std::string(65, 'a'), 64).ToString(),
            "InvalidArgument: name is longer than 64 bytes");
}

TEST(TextTest, EscapeKeepsOneLineAndPrintableText) {
  EXPECT_EQ(EscapeText("vol-1"), "vol-1");
  EXPECT_EQ(EscapeText("x\nstrata-nbd: forged"), "x\\nstrata-nbd: forged");
  EXPECT_EQ(EscapeText("\x1b[31mred\t"), "\\x1b[31mred\\t");
  EXPECT_EQ(EscapeText("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeText("\xff\xc3\xa9"), "\\xff\xc3\xa9");
  EXPECT_EQ(EscapeText("\xc2\x9b"), "\\xc2\\x9b");
  EXPECT_EQ(EscapeText("abcdef", 3), "abc...");
  EXPECT_EQ(EscapeText("\xc3\xa9\xc3\xa9", 3), "\xc3\xa9\\xc3...");  // a cut sequence is escaped
}

}  // namespace
}  // namespace strata
