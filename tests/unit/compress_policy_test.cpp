// Compression policy: which types, and when a streamed response must be left alone.
#include "routes/compress_policy.h"

#include <gtest/gtest.h>
#include <unistd.h>

using namespace edge;

namespace {

http::HeaderList headers(std::initializer_list<http::HeaderField> fs) {
  http::HeaderList h;
  for (auto& f : fs) h.add(f.name, f.value);
  return h;
}

std::string_view stream(const http::HeaderList& h, int status = 200,
                        std::string_view ae = "br, gzip") {
  routes::CompressOptions o;
  bool vary = false;
  return http::coding_name(routes::choose_stream_coding(o, ae, status, h, vary));
}

}  // namespace

TEST(CompressPolicy, Types) {
  routes::CompressOptions o;
  EXPECT_TRUE(o.compressible_type("text/html; charset=utf-8"));
  EXPECT_TRUE(o.compressible_type("application/json"));
  EXPECT_TRUE(o.compressible_type("image/svg+xml"));
  EXPECT_TRUE(o.compressible_type("TEXT/CSS"));
  EXPECT_FALSE(o.compressible_type("image/png"));
  EXPECT_FALSE(o.compressible_type("font/woff2"));
  EXPECT_FALSE(o.compressible_type("text"));
  EXPECT_FALSE(o.compressible_type("application/octet-stream"));
}

TEST(CompressPolicy, StreamedResponses) {
  auto json = headers({{"Content-Type", "application/json"}});
  EXPECT_EQ(stream(json), "br");
  EXPECT_EQ(stream(json, 200, "gzip"), "gzip");
  EXPECT_EQ(stream(json, 200, ""), "identity");
  EXPECT_EQ(stream(headers({{"Content-Type", "text/event-stream"}})), "br");
  EXPECT_EQ(stream(headers({{"Content-Type", "application/json"}, {"Content-Encoding", "gzip"}})),
            "identity");
  EXPECT_EQ(stream(headers(
                {{"Content-Type", "application/json"}, {"Cache-Control", "public, no-transform"}})),
            "identity");
  EXPECT_EQ(stream(headers({{"Content-Type", "image/png"}})), "identity");
  EXPECT_EQ(stream(headers({{"Content-Type", "application/json"}, {"Content-Length", "20"}})),
            "identity");
  EXPECT_EQ(stream(headers({{"Content-Type", "application/json"}, {"Content-Length", "2000"}})),
            "br");
  EXPECT_EQ(stream(json, 206), "identity");
  EXPECT_EQ(stream(json, 304), "identity");
  EXPECT_EQ(stream(json, 204), "identity");
  EXPECT_EQ(
      stream(headers({{"Content-Type", "application/json"}, {"Content-Range", "bytes 0-1/2"}})),
      "identity");
}

TEST(CompressPolicy, VaryIsSetWhenTheBodyCouldDiffer) {
  routes::CompressOptions o;
  bool vary = false;
  routes::choose_stream_coding(o, "", 200, headers({{"Content-Type", "text/html"}}), vary);
  EXPECT_TRUE(vary);
  routes::choose_stream_coding(o, "br", 200, headers({{"Content-Type", "image/png"}}), vary);
  EXPECT_FALSE(vary);
}

TEST(VariantStore, BoundedByBytesLeastRecentlyUsedFirst) {
  routes::VariantStore store(100);
  auto key = [](std::uint64_t ino) {
    return routes::VariantStore::Key{1, ino, 10, 5, http::Coding::kBr};
  };
  EXPECT_TRUE(store.claim(key(1)));
  EXPECT_FALSE(store.claim(key(1)));  // somebody is compressing it already
  store.put(key(1), routes::SealedBytes::make(std::string(60, 'a')));
  EXPECT_FALSE(store.claim(key(1)));  // done
  store.put(key(2), routes::SealedBytes::make(std::string(30, 'b')));
  ASSERT_NE(store.find(key(1)), nullptr);  // 1 is now the most recent
  store.put(key(3), routes::SealedBytes::make(std::string(30, 'c')));
  EXPECT_LE(store.bytes(), 100u);
  EXPECT_NE(store.find(key(1)), nullptr);
  EXPECT_EQ(store.find(key(2)), nullptr);  // least recently used went first
  EXPECT_NE(store.find(key(3)), nullptr);
  store.put(key(4), routes::SealedBytes::make(std::string(500, 'd')));  // larger than the bound
  EXPECT_EQ(store.find(key(4)), nullptr);
}

TEST(SealedBytes, ContentCannotChange) {
  auto s = routes::SealedBytes::make("compressed bytes");
  ASSERT_GE(s->fd, 0);
  char buf[64] = {};
  ASSERT_EQ(::pread(s->fd, buf, sizeof buf, 0), 16);
  EXPECT_STREQ(buf, "compressed bytes");
  EXPECT_LT(::pwrite(s->fd, "x", 1, 0), 0);  // sealed against writes
  EXPECT_NE(::ftruncate(s->fd, 1), 0);       // and against shrinking
}
