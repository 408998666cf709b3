// RFC 9111 arithmetic for the shared cache: Cache-Control parsing, storability, freshness
// lifetime and current age.
#include "cache/freshness.h"

#include <gtest/gtest.h>

#include <limits>

using namespace edge::cache;

TEST(Freshness, ParsesDirectives) {
  auto cc = CacheControl::parse(
      "public, max-age=60, S-MAXAGE=\"120\", no-cache=\"Set-Cookie, X\", stale-while-revalidate=30,"
      " stale-if-error=600, unknown=1, immutable");
  EXPECT_TRUE(cc.public_);
  EXPECT_EQ(cc.max_age, 60);
  EXPECT_EQ(cc.s_maxage, 120);
  EXPECT_TRUE(cc.no_cache);  // the qualified form, taken whole
  EXPECT_EQ(cc.stale_while_revalidate, 30);
  EXPECT_EQ(cc.stale_if_error, 600);
  EXPECT_TRUE(cc.immutable);
  EXPECT_FALSE(cc.malformed);
  auto bad = CacheControl::parse("max-age=abc");
  EXPECT_TRUE(bad.malformed);
  EXPECT_FALSE(bad.max_age);
  auto dup = CacheControl::parse("max-age=100, max-age=10");
  EXPECT_EQ(dup.max_age, 10);  // the lower one
  auto req = CacheControl::parse("max-stale, min-fresh=5, only-if-cached");
  EXPECT_EQ(req.max_stale, std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(req.min_fresh, 5);
  EXPECT_TRUE(req.only_if_cached);
  EXPECT_EQ(CacheControl::parse("max-age=99999999999").max_age, std::int64_t{1} << 31);
}

TEST(Freshness, Storable) {
  Policy p;
  ResponseFacts r;
  CacheControl req;
  r.cc = CacheControl::parse("max-age=60");
  EXPECT_TRUE(storable(r, req, false, p));
  r.cc = CacheControl::parse("private, max-age=60");
  EXPECT_FALSE(storable(r, req, false, p));
  r.cc = CacheControl::parse("no-store");
  EXPECT_FALSE(storable(r, req, false, p));
  r.cc = CacheControl::parse("max-age=60");
  EXPECT_FALSE(storable(r, CacheControl::parse("no-store"), false, p));
  // Authorization: only when the response says it may be shared
  EXPECT_FALSE(storable(r, req, true, p));
  r.cc = CacheControl::parse("s-maxage=60");
  EXPECT_TRUE(storable(r, req, true, p));
  // Set-Cookie: not shared unless configured
  r.has_set_cookie = true;
  EXPECT_FALSE(storable(r, req, false, p));
  p.share_cookies = true;
  EXPECT_TRUE(storable(r, req, false, p));
  // a status that is not heuristically cacheable, with nothing explicit
  ResponseFacts s;
  s.status = 302;
  EXPECT_FALSE(storable(s, req, false, Policy{}));
  s.status = 404;
  EXPECT_TRUE(storable(s, req, false, Policy{}));
  s.vary_star = true;
  EXPECT_FALSE(storable(s, req, false, Policy{}));
}

TEST(Freshness, Lifetime) {
  Policy p;
  p.ttl = 7200;  // the platform's edgeCacheTtl
  ResponseFacts r;
  r.cc = CacheControl::parse("max-age=60, s-maxage=300");
  EXPECT_EQ(freshness_lifetime(r, p), 300);  // s-maxage first for a shared cache
  r.cc = CacheControl::parse("max-age=60");
  EXPECT_EQ(freshness_lifetime(r, p), 60);
  r.cc = CacheControl::parse("public");
  EXPECT_EQ(freshness_lifetime(r, p), 7200);  // public alone: the route's ttl
  r.cc = {};
  r.date = 1'000'000;
  r.expires = 1'000'100;
  EXPECT_EQ(freshness_lifetime(r, p), 100);
  r.expires = std::nullopt;
  r.expires_invalid = true;
  EXPECT_EQ(freshness_lifetime(r, p), 0);
  // heuristic: 10 % of Date - Last-Modified, capped by the ttl
  ResponseFacts h;
  h.date = 1'000'000;
  h.last_modified = 1'000'000 - 5000;
  EXPECT_EQ(freshness_lifetime(h, p), 500);
  h.last_modified = 0;
  EXPECT_EQ(freshness_lifetime(h, p), 7200);
  EXPECT_EQ(freshness_lifetime(h, Policy{}), 0);  // no ttl: no heuristic freshness
  // override: the ttl whatever the origin says
  Policy o;
  o.ttl = 30;
  o.override = true;
  r.cc = CacheControl::parse("max-age=600");
  EXPECT_EQ(freshness_lifetime(r, o), 30);
  // a malformed directive: stale at once
  r.cc = CacheControl::parse("max-age=1x");
  EXPECT_EQ(freshness_lifetime(r, p), 0);
}

TEST(Freshness, CurrentAge) {
  ResponseFacts r;
  r.date = 1000;
  r.age = 5;
  // sent at 1000, received at 1002, now 1010: corrected age 5 + 2 = 7, plus 8 resident
  EXPECT_EQ(current_age(r, 1000, 1002, 1010), 15);
  // a Date far in the past dominates
  r.date = 900;
  r.age = 0;
  EXPECT_EQ(current_age(r, 1000, 1000, 1000), 100);
  // clock skew (Date in the future) never makes a negative age
  r.date = 2000;
  EXPECT_EQ(current_age(r, 1000, 1000, 1000), 0);
}

// A regression found by fuzz_upstream: an upstream's Age of 20 digits overflowed a signed
// accumulator (undefined behaviour); stray characters were skipped instead of invalidating it.
TEST(Freshness, AgeField) {
  EXPECT_EQ(parse_age("100"), 100);
  EXPECT_EQ(parse_age(" 100 "), 100);
  EXPECT_EQ(parse_age("99999999999999999999999"), std::int64_t{1} << 31);
  EXPECT_EQ(parse_age("kk11k"), 0);
  EXPECT_EQ(parse_age("-5"), 0);
  EXPECT_EQ(parse_age("\"5\""), 0);
  EXPECT_EQ(parse_age(""), 0);
}
