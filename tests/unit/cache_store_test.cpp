// The cache's memory store: variants by Vary and coding, replacement, the byte bound (LRU), the
// object-size bound, purge by URL / prefix / tag, and freshness of a stored response.
#include "cache/store.h"

#include <gtest/gtest.h>

using namespace edge;

namespace {

std::shared_ptr<cache::CachedResponse> response(
    std::string body, std::vector<std::pair<std::string, std::string>> vary = {},
    std::string coding = "") {
  auto r = std::make_shared<cache::CachedResponse>();
  r->body = std::move(body);
  r->headers = {{"Content-Type", "application/json"}, {"ETag", "\"v1\""}};
  r->vary = std::move(vary);
  r->coding = std::move(coding);
  return r;
}

}  // namespace

TEST(CacheStore, VariantsByVaryAndCoding) {
  cache::Store s(1 << 20, 1 << 16);
  http::HeaderList en, fr;
  en.add("Accept-Language", "en");
  fr.add("Accept-Language", "fr");
  ASSERT_TRUE(s.insert("GET https://samia.example/api/cards",
                       response("english", {{"Accept-Language", "en"}})));
  ASSERT_TRUE(s.insert("GET https://samia.example/api/cards",
                       response("french", {{"Accept-Language", "fr"}})));
  ASSERT_TRUE(s.insert("GET https://samia.example/api/cards",
                       response("br-english", {{"Accept-Language", "en"}}, "br")));
  EXPECT_EQ(s.entries(), 3u);
  EXPECT_EQ(s.lookup("GET https://samia.example/api/cards", en, "")->body, "english");
  EXPECT_EQ(s.lookup("GET https://samia.example/api/cards", fr, "")->body, "french");
  EXPECT_EQ(s.lookup("GET https://samia.example/api/cards", en, "br")->body, "br-english");
  EXPECT_EQ(s.lookup("GET https://samia.example/api/cards", fr, "br"), nullptr);
  http::HeaderList none;
  EXPECT_EQ(s.lookup("GET https://samia.example/api/cards", none, ""), nullptr);
  // the same variant again replaces it
  ASSERT_TRUE(s.insert("GET https://samia.example/api/cards",
                       response("english 2", {{"Accept-Language", "en"}})));
  EXPECT_EQ(s.entries(), 3u);
  EXPECT_EQ(s.lookup("GET https://samia.example/api/cards", en, "")->body, "english 2");
}

TEST(CacheStore, VaryValuesAreNormalised) {
  http::HeaderList a, b;
  a.add("Accept", "text/html,  application/json");
  b.add("Accept", "text/html");
  b.add("Accept", "application/json");
  EXPECT_EQ(cache::Store::vary_value(a, "accept"), cache::Store::vary_value(b, "Accept"));
}

TEST(CacheStore, BoundedByBytesLeastRecentlyUsedFirst) {
  std::size_t one = response(std::string(1000, 'x'))->bytes();
  cache::Store s(one * 3 + 10, 1 << 20);
  http::HeaderList h;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(s.insert("k" + std::to_string(i), response(std::string(1000, 'x'))));
  ASSERT_NE(s.lookup("k0", h, ""), nullptr);  // k0 used: k1 is now the oldest
  ASSERT_TRUE(s.insert("k3", response(std::string(1000, 'x'))));
  EXPECT_EQ(s.entries(), 3u);
  EXPECT_LE(s.bytes(), one * 3 + 10);
  EXPECT_EQ(s.lookup("k1", h, ""), nullptr);
  EXPECT_NE(s.lookup("k0", h, ""), nullptr);
  EXPECT_NE(s.lookup("k3", h, ""), nullptr);
  // an object over max_object is not stored
  cache::Store small(1 << 20, 100);
  EXPECT_FALSE(small.insert("big", response(std::string(1000, 'x'))));
  EXPECT_EQ(small.entries(), 0u);
}

TEST(CacheStore, Purge) {
  cache::Store s(1 << 20, 1 << 16);
  http::HeaderList h;
  auto tagged = response("t");
  tagged->tags = {"readings", "user-7"};
  s.insert("GET https://x/api/readings/1", tagged);
  s.insert("GET https://x/api/readings/2", response("2"));
  s.insert("GET https://x/api/cards", response("c"));
  EXPECT_EQ(s.purge_tag("user-7"), 1u);
  EXPECT_EQ(s.lookup("GET https://x/api/readings/1", h, ""), nullptr);
  EXPECT_EQ(s.purge_prefix("GET https://x/api/readings/"), 1u);
  EXPECT_EQ(s.purge("GET https://x/api/cards"), 1u);
  EXPECT_EQ(s.entries(), 0u);
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_EQ(s.purge("nothing"), 0u);
}

TEST(CacheStore, FreshnessOfAStoredResponse) {
  auto r = response("x");
  r->facts.date = 1000;
  r->request_time = r->response_time = 1000;
  r->lifetime = 60;
  EXPECT_TRUE(r->fresh(1059));
  EXPECT_FALSE(r->fresh(1060));
  EXPECT_EQ(r->age(1030), 30);
  EXPECT_EQ(r->header("etag"), "\"v1\"");
}

TEST(CacheStore, APurgeDuringAFetchKeepsItsResultOut) {
  cache::Store s(1 << 20, 1 << 16);
  http::HeaderList h;
  std::uint64_t since = s.generation();  // a fetch begins
  s.purge_tag("anything");               // an operator purges meanwhile
  EXPECT_FALSE(s.insert("k", response("old"), since));
  EXPECT_EQ(s.lookup("k", h, ""), nullptr);
  EXPECT_TRUE(s.insert("k", response("new"), s.generation()));  // a fetch begun after it
  EXPECT_NE(s.lookup("k", h, ""), nullptr);
}
