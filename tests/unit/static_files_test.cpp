// The static handler and the SPA rules, on a real temporary folder.
#include "routes/static_files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "routes/compression.h"
#include "server/http/path.h"

namespace fs = std::filesystem;
using namespace edge;

namespace {

class StaticTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("edge-static-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "assets");
    fs::create_directories(root_ / "docs");
    write("index.html", "<!doctype html><div id=root></div>");
    write("assets/index-Cq7Lx2Vd.js", "console.log('app')");
    write("assets/logo.svg", "<svg/>");
    write("docs/index.html", "docs");
    write("favicon.svg", "<svg/>");
    write(".env", "SECRET=1");
    write("big.bin", std::string(100000, 'x'));
    std::string text;
    for (int i = 0; i < 200; ++i)
      text += "function reading" + std::to_string(i) + "() { return 'tarot'; }\n";
    app_js_ = text;
    write("assets/app-Zx81Qw9e.js", text);
    write("assets/photo.png", std::string(5000, 'p'));
    outside_ = root_.string() + "-outside";
    { std::ofstream(outside_) << "outside"; }
    fs::create_symlink(outside_, root_ / "leak.txt");
    fs::create_symlink(root_ / "favicon.svg", root_ / "inside.svg");
    routes::StaticOptions o;
    o.root = root_.string();
    o.spa_fallback = "/index.html";
    o.immutable = {"/assets/"};
    o.inline_max = 64 * 1024;
    handler_ = std::make_unique<routes::StaticHandler>(o, 1);
  }
  void TearDown() override {
    handler_.reset();
    fs::remove_all(root_);
    fs::remove(outside_);
  }
  void write(const std::string& rel, const std::string& body) {
    std::ofstream(root_ / rel) << body;
  }

  http::Exchange& get(std::string_view target, http::Method m = http::Method::kGet) {
    ex_ = std::make_unique<http::Exchange>();
    ex_->now = std::time(nullptr);
    ex_->req.method = m;
    std::string_view path, query;
    http::split_target(target, path, query);
    ex_->req.raw_path = path;
    ex_->req.query = query;
    EXPECT_EQ(http::normalize_path(path, ex_->path_buf), http::PathError::kOk);
    ex_->req.path = ex_->path_buf;
    for (auto& [n, v] : extra_) ex_->req.headers.add(n, v);
    handler_->handle(*ex_);
    return *ex_;
  }
  std::string body(const http::Exchange& ex) {
    if (ex.resp.body.kind == http::Body::Kind::kMemory) return std::string(ex.resp.body.data);
    std::string s(ex.resp.body.length, '\0');
    EXPECT_EQ(::pread(ex.resp.body.fd, s.data(), s.size(), static_cast<off_t>(ex.resp.body.offset)),
              static_cast<ssize_t>(s.size()));
    return s;
  }

  fs::path root_;
  std::string outside_;
  std::unique_ptr<routes::StaticHandler> handler_;
  std::unique_ptr<http::Exchange> ex_;
  std::vector<std::pair<std::string, std::string>> extra_;
  std::string app_js_;
};

}  // namespace

TEST_F(StaticTest, ServesFilesWithTypeAndValidators) {
  auto& ex = get("/favicon.svg");
  EXPECT_EQ(ex.resp.status, 200);
  EXPECT_EQ(ex.resp.content_type, "image/svg+xml");
  EXPECT_EQ(body(ex), "<svg/>");
  EXPECT_TRUE(ex.resp.etag.starts_with("\""));
  EXPECT_EQ(ex.resp.last_modified.size(), 29u);
  EXPECT_EQ(ex.resp.cache_control, "no-cache");
}

TEST_F(StaticTest, SpaRouteGetsIndexWithNoCache) {
  auto& ex = get("/readings/42");
  EXPECT_EQ(ex.resp.status, 200);
  EXPECT_EQ(ex.resp.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(ex.resp.cache_control, "no-cache");
  EXPECT_EQ(body(ex), "<!doctype html><div id=root></div>");
}

TEST_F(StaticTest, MissingAssetIsARealNotFound) {
  for (const char* p : {"/assets/index-0ld0ld00.js", "/favicon.png", "/readings/42.json"}) {
    auto& ex = get(p);
    EXPECT_EQ(ex.resp.status, 404) << p;
    EXPECT_EQ(ex.resp.cache_control, "no-store") << p;
    EXPECT_EQ(ex.resp.content_type.find("html"), std::string_view::npos) << p;
  }
}

TEST_F(StaticTest, HashedAssetsAreImmutable) {
  auto& ex = get("/assets/index-Cq7Lx2Vd.js");
  EXPECT_EQ(ex.resp.status, 200);
  EXPECT_EQ(ex.resp.cache_control, "public, max-age=31536000, immutable");
  EXPECT_EQ(ex.resp.content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(get("/index.html").resp.cache_control, "no-cache");
}

TEST_F(StaticTest, DirectoryRedirectsThenServesIndex) {
  auto& ex = get("/docs?x=1");
  EXPECT_EQ(ex.resp.status, 301);
  EXPECT_EQ(ex.resp.location, "/docs/?x=1");
  auto& ex2 = get("/docs/");
  EXPECT_EQ(ex2.resp.status, 200);
  EXPECT_EQ(body(ex2), "docs");
}

TEST_F(StaticTest, DotfilesAndOutsideSymlinksAreNotServed) {
  EXPECT_EQ(get("/.env").resp.status, 404);
  EXPECT_EQ(get("/.git/config").resp.status, 404);
  auto& leak = get("/leak.txt");
  EXPECT_EQ(leak.resp.status, 404);
  auto& in = get("/inside.svg");
  EXPECT_EQ(in.resp.status, 200);
  EXPECT_EQ(body(in), "<svg/>");
}

TEST_F(StaticTest, MethodsOtherThanGetAndHeadAre405) {
  auto& ex = get("/index.html", http::Method::kPost);
  EXPECT_EQ(ex.resp.status, 405);
  EXPECT_EQ(ex.resp.headers.get("Allow"), "GET, HEAD");
}

TEST_F(StaticTest, ConditionalGetGives304) {
  std::string etag(get("/favicon.svg").resp.etag);
  extra_ = {{"If-None-Match", etag}};
  auto& ex = get("/favicon.svg");
  EXPECT_EQ(ex.resp.status, 304);
  EXPECT_EQ(ex.resp.body.kind, http::Body::Kind::kNone);
}

TEST_F(StaticTest, RangesOnLargeFiles) {
  extra_ = {{"Range", "bytes=10-19"}};
  auto& ex = get("/big.bin");
  EXPECT_EQ(ex.resp.status, 206);
  EXPECT_EQ(ex.resp.range_first, 10u);
  EXPECT_EQ(ex.resp.range_last, 19u);
  EXPECT_EQ(ex.resp.range_total, 100000u);
  EXPECT_EQ(body(ex), std::string(10, 'x'));
  extra_ = {{"Range", "bytes=200000-"}};
  auto& bad = get("/big.bin");
  EXPECT_EQ(bad.resp.status, 416);
  EXPECT_TRUE(bad.resp.range_unsatisfied);
  extra_ = {{"Range", "bytes=0-0,5-5"}};
  auto& multi = get("/big.bin");
  EXPECT_EQ(multi.resp.status, 206);
  EXPECT_TRUE(multi.resp.content_type.starts_with("multipart/byteranges; boundary="));
}

TEST_F(StaticTest, ChangedFilesAreSeenWithinASecond) {
  EXPECT_EQ(body(get("/favicon.svg")), "<svg/>");
  write("favicon.svg", "<svg>new</svg>");
  sleep(1);
  EXPECT_EQ(body(get("/favicon.svg")), "<svg>new</svg>");
}

TEST(HashedNames, ViteAndWebpackStyles) {
  EXPECT_TRUE(routes::looks_hashed("/assets/index-Cq7Lx2Vd.js"));
  EXPECT_TRUE(routes::looks_hashed("/assets/vendor-DkW3n1Xa.css"));
  EXPECT_TRUE(routes::looks_hashed("/static/js/main.3f2a1b9c.js"));
  EXPECT_TRUE(routes::looks_hashed("/a/logo-B_x9Zk2q.svg"));
  EXPECT_FALSE(routes::looks_hashed("/index.html"));
  EXPECT_FALSE(routes::looks_hashed("/assets/app.js"));
  EXPECT_FALSE(routes::looks_hashed("/components-Settings.js"));
  EXPECT_FALSE(routes::looks_hashed("/my-readings.js"));
}

TEST(DotSegments, WellKnownIsAllowed) {
  EXPECT_TRUE(routes::has_dot_segment("/.env"));
  EXPECT_TRUE(routes::has_dot_segment("/a/.git/config"));
  EXPECT_FALSE(routes::has_dot_segment("/.well-known/security.txt"));
  EXPECT_FALSE(routes::has_dot_segment("/a.b/c"));
}

TEST_F(StaticTest, CompressedVariantIsServedAndDecodes) {
  extra_ = {{"Accept-Encoding", "gzip, br"}};
  auto& ex = get("/assets/app-Zx81Qw9e.js");
  EXPECT_EQ(ex.resp.status, 200);
  EXPECT_EQ(ex.resp.headers.get("Content-Encoding"), "br");
  EXPECT_EQ(ex.resp.headers.get("Vary"), "Accept-Encoding");
  EXPECT_EQ(ex.resp.content_type, "text/javascript; charset=utf-8");
  std::string br = body(ex);
  EXPECT_LT(br.size(), app_js_.size() / 4);
  EXPECT_EQ(routes::decompress_all(http::Coding::kBr, br, 1 << 20), app_js_);
  std::string br_tag(ex.resp.etag);
  extra_ = {{"Accept-Encoding", "gzip"}};
  auto& gz = get("/assets/app-Zx81Qw9e.js");
  EXPECT_EQ(gz.resp.headers.get("Content-Encoding"), "gzip");
  EXPECT_EQ(routes::decompress_all(http::Coding::kGzip, body(gz), 1 << 20), app_js_);
  EXPECT_NE(std::string(gz.resp.etag), br_tag);
  extra_ = {};
  auto& id = get("/assets/app-Zx81Qw9e.js");
  EXPECT_EQ(id.resp.headers.find("Content-Encoding"), nullptr);
  EXPECT_EQ(id.resp.headers.get("Vary"), "Accept-Encoding");
  EXPECT_NE(std::string(id.resp.etag), br_tag);
}

TEST_F(StaticTest, VariantValidatorsAndRanges) {
  extra_ = {{"Accept-Encoding", "br"}};
  std::string tag(get("/assets/app-Zx81Qw9e.js").resp.etag);
  extra_ = {{"Accept-Encoding", "br"}, {"If-None-Match", tag}};
  auto& nm = get("/assets/app-Zx81Qw9e.js");
  EXPECT_EQ(nm.resp.status, 304);
  EXPECT_EQ(nm.resp.etag, tag);
  extra_ = {{"Accept-Encoding", "br"}, {"Range", "bytes=0-9"}};
  auto& r = get("/assets/app-Zx81Qw9e.js");
  EXPECT_EQ(r.resp.status, 206);
  EXPECT_EQ(r.resp.headers.find("Content-Encoding"), nullptr);
  EXPECT_EQ(body(r), app_js_.substr(0, 10));
}

TEST_F(StaticTest, ImagesAndSmallFilesAreNotCompressed) {
  extra_ = {{"Accept-Encoding", "br, gzip"}};
  auto& png = get("/assets/photo.png");
  EXPECT_EQ(png.resp.headers.find("Content-Encoding"), nullptr);
  EXPECT_EQ(png.resp.headers.find("Vary"), nullptr);
  auto& small = get("/favicon.svg");  // 6 bytes, under min_size
  EXPECT_EQ(small.resp.headers.find("Content-Encoding"), nullptr);
}
