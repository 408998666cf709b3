// Path normalisation: decoding, dot segments, and the tricks that must never leave the root.
#include "server/http/path.h"

#include <gtest/gtest.h>

using edge::http::normalize_path;
using edge::http::PathError;

namespace {

std::string norm(std::string_view in, PathError* err = nullptr) {
  std::string out;
  PathError e = normalize_path(in, out);
  if (err) *err = e;
  return e == PathError::kOk ? out : std::string("<error>");
}

}  // namespace

TEST(Path, PlainPathsStay) {
  EXPECT_EQ(norm("/"), "/");
  EXPECT_EQ(norm("/index.html"), "/index.html");
  EXPECT_EQ(norm("/assets/app.js"), "/assets/app.js");
  EXPECT_EQ(norm("/docs/"), "/docs/");
}

TEST(Path, DotSegmentsAreRemoved) {
  EXPECT_EQ(norm("/a/./b"), "/a/b");
  EXPECT_EQ(norm("/a/b/../c"), "/a/c");
  EXPECT_EQ(norm("/a/b/.."), "/a/");
  EXPECT_EQ(norm("/a/."), "/a/");
  EXPECT_EQ(norm("/a//b///c"), "/a/b/c");
  EXPECT_EQ(norm("/a/%2e%2E/b"), "/b");
  EXPECT_EQ(norm("/a/.%2e/b"), "/b");
}

TEST(Path, PercentDecoding) {
  EXPECT_EQ(norm("/a%20b"), "/a b");
  EXPECT_EQ(norm("/%E2%9C%93"), "/\xE2\x9C\x93");
  EXPECT_EQ(norm("/a%2Fb"), "/a/b");
}

TEST(Path, EscapesAreRefused) {
  PathError e;
  norm("/..", &e);
  EXPECT_EQ(e, PathError::kAboveRoot);
  norm("/../etc/passwd", &e);
  EXPECT_EQ(e, PathError::kAboveRoot);
  norm("/%2e%2e/%2e%2e/etc/passwd", &e);
  EXPECT_EQ(e, PathError::kAboveRoot);
  norm("/assets/..%2f..%2fetc/passwd", &e);
  EXPECT_EQ(e, PathError::kAboveRoot);
  norm("/a/../../b", &e);
  EXPECT_EQ(e, PathError::kAboveRoot);
}

TEST(Path, BadInputIsRefused) {
  PathError e;
  norm("/a%00b", &e);
  EXPECT_EQ(e, PathError::kNulByte);
  norm(std::string_view("/a\0b", 4), &e);
  EXPECT_EQ(e, PathError::kNulByte);
  norm("/a%zz", &e);
  EXPECT_EQ(e, PathError::kBadEncoding);
  norm("/a%2", &e);
  EXPECT_EQ(e, PathError::kBadEncoding);
  norm("a/b", &e);
  EXPECT_EQ(e, PathError::kNotOrigin);
  norm("", &e);
  EXPECT_EQ(e, PathError::kNotOrigin);
}

TEST(Path, RewrittenPathsAreNotDecodedTwice) {
  std::string out;
  ASSERT_EQ(normalize_path("/a%2525", out, /*decode=*/false), PathError::kOk);
  EXPECT_EQ(out, "/a%2525");
}

TEST(Path, Extension) {
  EXPECT_EQ(edge::http::path_extension("/a/b.min.js"), "js");
  EXPECT_EQ(edge::http::path_extension("/readings/42"), "");
  EXPECT_EQ(edge::http::path_extension("/a.b/c"), "");
  EXPECT_EQ(edge::http::path_extension("/.env"), "");
  EXPECT_EQ(edge::http::path_extension("/x."), "");
}
