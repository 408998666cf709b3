// Validators: entity-tag comparison, dates, and the precondition order of RFC 9110 13.2.2.
#include "server/http/conditional.h"

#include <gtest/gtest.h>

#include "server/http/date.h"

using namespace edge::http;

namespace {
constexpr std::string_view kTag = "\"abc-10\"";
constexpr std::time_t kMtime = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT

HeaderList headers(std::initializer_list<HeaderField> fs) {
  HeaderList h;
  for (auto& f : fs) h.add(f.name, f.value);
  return h;
}
}  // namespace

TEST(Date, FormatAndParseAllThreeForms) {
  char buf[30];
  format_http_date(kMtime, buf);
  EXPECT_EQ(std::string_view(buf, kHttpDateLen), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), kMtime);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), kMtime);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), kMtime);
  EXPECT_FALSE(parse_http_date("yesterday").has_value());
  EXPECT_FALSE(parse_http_date("Sun, 06 Nox 1994 08:49:37 GMT").has_value());
  format_http_date(0, buf);
  EXPECT_EQ(std::string_view(buf, kHttpDateLen), "Thu, 01 Jan 1970 00:00:00 GMT");
  format_http_date(1800000000, buf);  // 2027-01-15
  EXPECT_EQ(std::string_view(buf, kHttpDateLen), "Fri, 15 Jan 2027 08:00:00 GMT");
}

TEST(ETag, ListMatching) {
  EXPECT_TRUE(etag_list_matches("\"abc-10\"", kTag, false));
  EXPECT_TRUE(etag_list_matches("\"x\", \"abc-10\"", kTag, false));
  EXPECT_TRUE(etag_list_matches("W/\"abc-10\"", kTag, false));
  EXPECT_FALSE(etag_list_matches("W/\"abc-10\"", kTag, true));
  EXPECT_TRUE(etag_list_matches("*", kTag, false));
  EXPECT_FALSE(etag_list_matches("\"abc-11\"", kTag, false));
  EXPECT_FALSE(etag_list_matches("abc-10", kTag, false));
  EXPECT_TRUE(etag_list_matches("\"a,b\", \"abc-10\"", kTag, false));
}

TEST(Preconditions, IfNoneMatchGives304ForGetAndHead) {
  auto h = headers({{"If-None-Match", "\"abc-10\""}});
  EXPECT_EQ(evaluate_preconditions(h, Method::kGet, kTag, kMtime), Precondition::kNotModified);
  EXPECT_EQ(evaluate_preconditions(h, Method::kHead, kTag, kMtime), Precondition::kNotModified);
  EXPECT_EQ(evaluate_preconditions(h, Method::kPost, kTag, kMtime), Precondition::kFailed);
}

TEST(Preconditions, IfNoneMatchWinsOverIfModifiedSince) {
  auto h = headers(
      {{"If-None-Match", "\"other\""}, {"If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}});
  EXPECT_EQ(evaluate_preconditions(h, Method::kGet, kTag, kMtime), Precondition::kProceed);
}

TEST(Preconditions, IfModifiedSince) {
  auto same = headers({{"If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}});
  EXPECT_EQ(evaluate_preconditions(same, Method::kGet, kTag, kMtime), Precondition::kNotModified);
  auto older = headers({{"If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT"}});
  EXPECT_EQ(evaluate_preconditions(older, Method::kGet, kTag, kMtime), Precondition::kProceed);
  auto junk = headers({{"If-Modified-Since", "not a date"}});
  EXPECT_EQ(evaluate_preconditions(junk, Method::kGet, kTag, kMtime), Precondition::kProceed);
}

TEST(Preconditions, IfMatchAndIfUnmodifiedSince) {
  EXPECT_EQ(evaluate_preconditions(headers({{"If-Match", "\"nope\""}}), Method::kGet, kTag, kMtime),
            Precondition::kFailed);
  EXPECT_EQ(
      evaluate_preconditions(headers({{"If-Match", "\"abc-10\""}}), Method::kGet, kTag, kMtime),
      Precondition::kProceed);
  EXPECT_EQ(
      evaluate_preconditions(headers({{"If-Unmodified-Since", "Sat, 05 Nov 1994 08:49:37 GMT"}}),
                             Method::kGet, kTag, kMtime),
      Precondition::kFailed);
}

TEST(IfRange, StrongTagOrExactDate) {
  EXPECT_TRUE(if_range_allows("", kTag, kMtime));
  EXPECT_TRUE(if_range_allows("\"abc-10\"", kTag, kMtime));
  EXPECT_FALSE(if_range_allows("\"abc-11\"", kTag, kMtime));
  EXPECT_FALSE(if_range_allows("W/\"abc-10\"", kTag, kMtime));
  EXPECT_TRUE(if_range_allows("Sun, 06 Nov 1994 08:49:37 GMT", kTag, kMtime));
  EXPECT_FALSE(if_range_allows("Sun, 06 Nov 1994 08:49:38 GMT", kTag, kMtime));
}
