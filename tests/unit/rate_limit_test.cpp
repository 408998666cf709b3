// GCRA arithmetic, client keys (IPv6 prefixes, headers, cookies, the allowlist), the local store's
// all-or-nothing decisions and its memory bound, and the 429 answer.
#include "routes/rate_limit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

using namespace edge;

namespace {

routes::RateLimit limit(std::uint64_t requests, long long window_ms, std::string name = "l") {
  routes::RateLimit l;
  l.requests = requests;
  l.window = std::chrono::milliseconds(window_ms);
  l.name = name;
  l.id = "1:" + name;
  return l;
}

constexpr std::int64_t kSec = 1000000;

}  // namespace

TEST(RateLimit, GcraBurstThenOneEveryInterval) {
  auto l = limit(5, 2000);  // T = 0.4 s
  std::int64_t now = 1000 * kSec, tat = 0, next = 0;
  for (int i = 0; i < 5; ++i) {
    auto r = routes::gcra(l, now, tat, next);
    ASSERT_TRUE(r.allowed) << i;
    EXPECT_EQ(r.remaining, static_cast<std::uint64_t>(4 - i));
    tat = next;
  }
  auto r = routes::gcra(l, now, tat, next);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.wait_us, 400000);  // the next one in T
  EXPECT_EQ(next, tat);          // a refusal changes nothing
  // after T one more, and only one: no second burst at the window's edge
  r = routes::gcra(l, now + 400000, tat, next);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 0u);
  tat = next;
  EXPECT_FALSE(routes::gcra(l, now + 400001, tat, next).allowed);
  // after the whole window, the whole burst again
  r = routes::gcra(l, now + 400000 + 2 * kSec, tat, next);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 4u);
}

TEST(RateLimit, KeysByIpPrefixHeaderCookieAndAllowlist) {
  routes::RateLimitSettings s;
  s.allowlist.add(*http::IpRange::parse("198.51.100.0/24"));
  auto l = limit(10, 1000);
  http::Request a, b;
  a.client_ip = "2001:db8:0:1::1";
  b.client_ip = "2001:db8:0:1:ffff::2";  // same /56
  std::string ka, kb;
  ASSERT_TRUE(routes::limit_key(l, s, a, ka));
  ASSERT_TRUE(routes::limit_key(l, s, b, kb));
  EXPECT_EQ(ka, kb);
  b.client_ip = "2001:db8:0:100::1";  // another /56
  kb.clear();
  routes::limit_key(l, s, b, kb);
  EXPECT_NE(ka, kb);
  s.ipv6_prefix = 128;
  ka.clear();
  kb.clear();
  b.client_ip = "2001:db8:0:1::2";
  routes::limit_key(l, s, a, ka);
  routes::limit_key(l, s, b, kb);
  EXPECT_NE(ka, kb);

  http::Request c;
  c.client_ip = "198.51.100.7";
  std::string kc;
  EXPECT_FALSE(routes::limit_key(l, s, c, kc));  // allowlisted

  auto h = limit(10, 1000);
  h.key = routes::RateLimit::Key::kHeader;
  h.key_name = "X-Api-Key";
  http::Request d, e;
  d.client_ip = e.client_ip = "203.0.113.1";
  d.headers.add("X-Api-Key", "k1");
  e.headers.add("X-Api-Key", "k2");
  std::string kd, ke;
  routes::limit_key(h, s, d, kd);
  routes::limit_key(h, s, e, ke);
  EXPECT_NE(kd, ke);

  auto ck = limit(10, 1000);
  ck.key = routes::RateLimit::Key::kCookie;
  ck.key_name = "sid";
  http::Request f, g;
  f.client_ip = g.client_ip = "203.0.113.1";
  f.headers.add("Cookie", "a=1; sid=abc; b=2");
  g.headers.add("Cookie", "sidx=abc");  // not the cookie: counted by IP
  std::string kf, kg, kip;
  routes::limit_key(ck, s, f, kf);
  routes::limit_key(ck, s, g, kg);
  EXPECT_NE(kf.find("c:"), std::string::npos);  // counted by the cookie (its digest)
  EXPECT_EQ(kg.find("c:"), std::string::npos);
}

TEST(RateLimit, LocalStoreCountsOnlyWhenAllAllow) {
  routes::LocalLimiter store(1000);
  std::vector<routes::RateLimit> limits = {limit(3, 10000, "burst"), limit(5, 60000, "slow")};
  std::vector<std::string> keys = {"burst-key", "slow-key"};
  routes::LimitResult res[2];
  std::int64_t now = 5000 * kSec;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store.decide(limits, keys, now, res));
  EXPECT_FALSE(store.decide(limits, keys, now, res));
  EXPECT_FALSE(res[0].allowed);
  EXPECT_TRUE(res[1].allowed);
  EXPECT_EQ(res[1].remaining, 1u);  // the refused request was not counted by "slow"
  // 20 s later "burst" is whole again; "slow" (12 s per request) had 2 left and got 1.67 back
  now += 20 * kSec;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(store.decide(limits, keys, now, res)) << i;
  EXPECT_FALSE(store.decide(limits, keys, now, res));
  EXPECT_FALSE(res[1].allowed);
}

TEST(RateLimit, LocalStoreIsBounded) {
  routes::LocalLimiter store(1000);  // 64 shards of at least 16
  std::vector<routes::RateLimit> limits = {limit(10, 3600000)};
  routes::LimitResult res[1];
  std::vector<std::string> keys(1);
  for (int i = 0; i < 50000; ++i) {
    keys[0] = "client-" + std::to_string(i);
    store.decide(limits, keys, 100 * kSec, res);
  }
  EXPECT_LE(store.size(), 64u * 16u);
}

// A regression (found by tests/hardening/test_floods.py): under a flood of distinct keys the
// store evicted nearly at random, so a refused client came back whole within a second.
TEST(RateLimit, FloodOfNewKeysDoesNotForgiveARefusedClient) {
  routes::LocalLimiter store(1000);
  std::vector<routes::RateLimit> limits = {limit(10, 3600000)};  // 10 per hour
  routes::LimitResult res[1];
  std::vector<std::string> victim = {"victim"};
  std::int64_t now = 100 * kSec;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store.decide(limits, victim, now, res));
  ASSERT_FALSE(store.decide(limits, victim, now, res));
  std::vector<std::string> keys(1);
  int let_through = 0;
  for (int i = 0; i < 200000; ++i) {
    now += 10;  // 100,000 new clients per second, one request each
    keys[0] = "flood-" + std::to_string(i);
    store.decide(limits, keys, now, res);
    if (i % 1000 == 999) let_through += store.decide(limits, victim, now, res) ? 1 : 0;
  }
  EXPECT_EQ(let_through, 0);
  EXPECT_LE(store.size(), 64u * 16u);
}

// Debts compare as shares of their own limit: a client refused by a per-minute limit (60 s of
// debt, all of its allowance) outlasts the flood keys of a per-day limit (2.4 h of debt each, a
// tenth of theirs), though its raw debt is the smaller.
TEST(RateLimit, FloodEvictionComparesDebtsAcrossLimits) {
  routes::LocalLimiter store(1000);
  std::vector<routes::RateLimit> burst = {limit(10, 60000)};     // 10 per minute
  std::vector<routes::RateLimit> daily = {limit(10, 86400000)};  // 10 per day
  routes::LimitResult res[1];
  std::vector<std::string> victim = {"burst:victim"};
  std::int64_t now = 100 * kSec;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store.decide(burst, victim, now, res));
  std::vector<std::string> keys(1);
  int let_through = 0;
  for (int i = 0; i < 20000; ++i) {
    now += 10;  // 200 ms of flood (the victim earns one request back every 6 s)
    keys[0] = "daily:flood-" + std::to_string(i);
    store.decide(daily, keys, now, res);
    if (i % 1000 == 999) let_through += store.decide(burst, victim, now, res) ? 1 : 0;
  }
  EXPECT_EQ(let_through, 0);
}

TEST(RateLimit, RefusalAndHeaders) {
  http::Exchange ex;
  ex.req.request_id = "rid1";
  routes::RateLimitSettings s;
  auto l = limit(100, 900000, "100-in-15min");
  routes::LimitResult r;
  r.allowed = false;
  r.wait_us = 8500000;
  routes::refuse(ex, s, l, r);
  EXPECT_EQ(ex.resp.status, 429);
  EXPECT_EQ(ex.resp.content_type, "application/json");
  EXPECT_EQ(ex.resp.body.data,
            "{\"error\":\"Too many requests from this IP, please try again later.\","
            "\"retry_after\":9,\"request_id\":\"rid1\"}\n");
  EXPECT_NE(ex.extra_headers.find("\r\nRateLimit-Policy: \"100-in-15min\";q=100;w=900"),
            std::string::npos);
  EXPECT_NE(ex.extra_headers.find("\r\nRateLimit: \"100-in-15min\";r=0;t=9"), std::string::npos);
  EXPECT_NE(ex.extra_headers.find("\r\nRetry-After: 9"), std::string::npos);
}

TEST(RateLimit, WorkersRacingForTheLastSlots) {
  // Four threads (workers) on one key: exactly `requests` are allowed in all.
  routes::LocalLimiter store(100000);
  std::vector<routes::RateLimit> limits = {limit(1000, 3600000)};
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<std::string> keys = {"one-client"};
      routes::LimitResult res[1];
      for (int i = 0; i < 1000; ++i)
        if (store.decide(limits, keys, 100 * kSec, res)) ++allowed;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 1000);
}

TEST(RateLimit, HeaderKeysAreDigests) {
  routes::RateLimitSettings s;
  auto h = limit(10, 1000);
  h.key = routes::RateLimit::Key::kHeader;
  h.key_name = "X-Api-Key";
  http::Request a;
  a.client_ip = "203.0.113.1";
  std::string huge(30000, 'k');
  a.headers.add("X-Api-Key", huge);
  std::string key;
  routes::limit_key(h, s, a, key);
  EXPECT_LT(key.size(), 64u);  // bounded whatever the client sends
  EXPECT_EQ(key.find(huge.substr(0, 20)), std::string::npos);
}
