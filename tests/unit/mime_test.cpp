// The MIME table: the types an SPA build needs, charset on text, and the fallback.
#include "server/http/mime.h"

#include <gtest/gtest.h>

using edge::http::mime_type;

TEST(Mime, ScriptsAreTextJavascript) {
  EXPECT_EQ(mime_type("js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mime_type("mjs"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mime_type("JS"), "text/javascript; charset=utf-8");
}

TEST(Mime, ModernWebTypes) {
  EXPECT_EQ(mime_type("wasm"), "application/wasm");
  EXPECT_EQ(mime_type("webmanifest"), "application/manifest+json");
  EXPECT_EQ(mime_type("woff2"), "font/woff2");
  EXPECT_EQ(mime_type("avif"), "image/avif");
  EXPECT_EQ(mime_type("svg"), "image/svg+xml");
  EXPECT_EQ(mime_type("json"), "application/json");
  EXPECT_EQ(mime_type("map"), "application/json");
  EXPECT_EQ(mime_type("webp"), "image/webp");
}

TEST(Mime, TextHasCharset) {
  EXPECT_EQ(mime_type("html"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type("css"), "text/css; charset=utf-8");
  EXPECT_EQ(mime_type("txt"), "text/plain; charset=utf-8");
}

TEST(Mime, UnknownIsOctetStream) {
  EXPECT_EQ(mime_type(""), "application/octet-stream");
  EXPECT_EQ(mime_type("nope"), "application/octet-stream");
  EXPECT_EQ(mime_type("averyveryverylongextension"), "application/octet-stream");
}

TEST(Mime, PrecompressedTypes) {
  EXPECT_TRUE(edge::http::is_precompressed_type("image/png"));
  EXPECT_TRUE(edge::http::is_precompressed_type("font/woff2"));
  EXPECT_FALSE(edge::http::is_precompressed_type("image/svg+xml"));
  EXPECT_FALSE(edge::http::is_precompressed_type("text/javascript; charset=utf-8"));
}
