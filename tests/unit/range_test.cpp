// Range header parsing against a representation size (RFC 9110 14).
#include "server/http/range.h"

#include <gtest/gtest.h>

using edge::http::parse_range;
using edge::http::RangeSet;

TEST(Range, SingleRanges) {
  RangeSet r = parse_range("bytes=0-99", 1000);
  ASSERT_EQ(r.kind, RangeSet::Kind::kSatisfiable);
  ASSERT_EQ(r.count, 1u);
  EXPECT_EQ(r.ranges[0].first, 0u);
  EXPECT_EQ(r.ranges[0].last, 99u);
  r = parse_range("bytes=900-", 1000);
  EXPECT_EQ(r.ranges[0].first, 900u);
  EXPECT_EQ(r.ranges[0].last, 999u);
  r = parse_range("bytes=-100", 1000);
  EXPECT_EQ(r.ranges[0].first, 900u);
  EXPECT_EQ(r.ranges[0].last, 999u);
  r = parse_range("bytes=-5000", 1000);
  EXPECT_EQ(r.ranges[0].first, 0u);
  r = parse_range("bytes=500-5000", 1000);
  EXPECT_EQ(r.ranges[0].last, 999u);
}

TEST(Range, Unsatisfiable) {
  EXPECT_EQ(parse_range("bytes=1000-", 1000).kind, RangeSet::Kind::kUnsatisfiable);
  EXPECT_EQ(parse_range("bytes=2000-3000", 1000).kind, RangeSet::Kind::kUnsatisfiable);
  EXPECT_EQ(parse_range("bytes=-0", 1000).kind, RangeSet::Kind::kUnsatisfiable);
}

TEST(Range, InvalidIsIgnored) {
  EXPECT_EQ(parse_range("bytes=abc", 1000).kind, RangeSet::Kind::kIgnore);
  EXPECT_EQ(parse_range("items=0-1", 1000).kind, RangeSet::Kind::kIgnore);
  EXPECT_EQ(parse_range("bytes=5-1", 1000).kind, RangeSet::Kind::kIgnore);
  EXPECT_EQ(parse_range("bytes=", 1000).kind, RangeSet::Kind::kIgnore);
  EXPECT_EQ(parse_range("bytes=1", 1000).kind, RangeSet::Kind::kIgnore);
  std::string many = "bytes=";
  for (int i = 0; i < 20; ++i)
    many += std::to_string(i * 10) + "-" + std::to_string(i * 10 + 1) + ",";
  EXPECT_EQ(parse_range(many, 1000).kind, RangeSet::Kind::kIgnore);
}

TEST(Range, MultipleAreSortedAndCoalesced) {
  RangeSet r = parse_range("bytes=500-599, 0-99, 50-150, 151-160", 1000);
  ASSERT_EQ(r.kind, RangeSet::Kind::kSatisfiable);
  ASSERT_EQ(r.count, 2u);
  EXPECT_EQ(r.ranges[0].first, 0u);
  EXPECT_EQ(r.ranges[0].last, 160u);
  EXPECT_EQ(r.ranges[1].first, 500u);
  r = parse_range("bytes=0-1, 5000-6000", 1000);
  ASSERT_EQ(r.kind, RangeSet::Kind::kSatisfiable);
  EXPECT_EQ(r.count, 1u);
}
