#include <gtest/gtest.h>

#include <mmtune/core/strings.h>

#include <cstdlib>

namespace mmtune {
namespace test_strings {

TEST(Strings, EditDistanceCountsInsertDeleteSubstitute) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("lr", "lr"), 0u);
  EXPECT_EQ(edit_distance("train.lrr", "train.lr"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("flaw", "lawn"), 2u);
}

TEST(Strings, ClosestMatchOnlySuggestsPlausibleTypos) {
  const std::vector<std::string> keys{"train.lr", "train.blr", "train.epochs"};
  EXPECT_EQ(closest_match("train.lrr", keys), "train.lr");
  EXPECT_EQ(closest_match("train.epoch", keys), "train.epochs");
  EXPECT_EQ(closest_match("completely.different", keys), std::nullopt);
  EXPECT_EQ(closest_match("x", {}), std::nullopt);
  EXPECT_EQ(closest_match("proj", {"layers", "projector"}), "projector");  // abbreviation
}

TEST(Strings, FormatDoubleIsShortestAndRoundTrips) {
  EXPECT_EQ(format_double(1e-4), "1e-4");
  EXPECT_EQ(format_double(1e-8), "1e-8");
  EXPECT_EQ(format_double(1.125e-3), "0.001125");
  EXPECT_EQ(format_double(10.0), "10.0");
  EXPECT_EQ(format_double(0.1), "0.1");
  EXPECT_EQ(format_double(-2.5), "-2.5");
  EXPECT_EQ(format_double(1e21), "1e21");
  for (double v : {1e-4, 0.1, 1.0 / 3.0, 9e-3, 123456.789, 5e-324}) {
    EXPECT_EQ(std::strtod(format_double(v).c_str(), nullptr), v) << format_double(v);
  }
}

TEST(Strings, SplitKeepsEmptyPartsAndJoinInverts) {
  EXPECT_EQ(split("a.b..c", '.'), (std::vector<std::string>{"a", "b", "", "c"}));
  EXPECT_EQ(split("", '.'), (std::vector<std::string>{""}));
  EXPECT_EQ(join(split("train.lr", '.'), "."), "train.lr");
  EXPECT_EQ(cat("step ", 3, " loss ", 0.5), "step 3 loss 0.5");
}

TEST(Strings, TrimDropsAsciiWhitespaceAtBothEnds) {
  EXPECT_EQ(trim(" \t\n a b \r\f\v"), "a b");
  EXPECT_EQ(trim(" \n "), "");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim("x"), "x");
  EXPECT_EQ(trim("\xc2\xa0x"), "\xc2\xa0x");  // non-ASCII spaces stay (Python's str.strip on bytes)
}

}  // namespace test_strings
}  // namespace mmtune
