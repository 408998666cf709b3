// Route matching: host, exact, prefix, regex with captures, rewrite; first match wins.
#include "routes/route_table.h"

#include <gtest/gtest.h>

#include "server/http/path.h"

using namespace edge;

namespace {

class Named : public http::Handler {
 public:
  explicit Named(const char* n) : n_(n) {}
  void handle(http::Exchange&) const override {}
  const char* kind() const override { return n_; }

 private:
  const char* n_;
};

routes::Route make(routes::Route::Match m, std::string pattern, const char* name) {
  routes::Route r;
  r.match = m;
  r.pattern = std::move(pattern);
  if (m == routes::Route::Match::kRegex) r.regex.emplace(r.pattern);
  r.handler = std::make_unique<Named>(name);
  return r;
}

const char* route_for(const routes::RouteTable& t, http::Exchange& ex, std::string_view path,
                      std::string_view host = "") {
  EXPECT_EQ(http::normalize_path(path, ex.path_buf), http::PathError::kOk);
  ex.req.path = ex.path_buf;
  ex.req.host = host;
  bool bad = false;
  const routes::Route* r = t.match(ex, bad);
  return r ? r->handler->kind() : "none";
}

}  // namespace

TEST(RouteTable, FirstMatchWinsInOrder) {
  routes::RouteTable t;
  t.routes().push_back(make(routes::Route::Match::kExact, "/health", "health"));
  auto api = make(routes::Route::Match::kRegex, "^/api/(.*)$", "api");
  api.rewrite = "/v1/$1";
  t.routes().push_back(std::move(api));
  auto admin = make(routes::Route::Match::kPrefix, "/", "admin");
  admin.hosts = {"admin.example.com"};
  t.routes().push_back(std::move(admin));
  t.routes().push_back(make(routes::Route::Match::kPrefix, "/", "site"));
  http::Exchange ex;
  EXPECT_STREQ(route_for(t, ex, "/health"), "health");
  EXPECT_STREQ(route_for(t, ex, "/health/x"), "site");
  EXPECT_STREQ(route_for(t, ex, "/api/readings/1"), "api");
  EXPECT_EQ(ex.req.path, "/v1/readings/1");
  EXPECT_STREQ(route_for(t, ex, "/x", "Admin.Example.com"), "admin");
  EXPECT_STREQ(route_for(t, ex, "/x", "www.example.com"), "site");
}

TEST(RouteTable, HostWildcards) {
  EXPECT_TRUE(routes::host_matches({"*.example.com"}, "a.example.com"));
  EXPECT_FALSE(routes::host_matches({"*.example.com"}, "example.com"));
  EXPECT_TRUE(routes::host_matches({}, "anything"));
}

TEST(RouteTable, ExpandCaptures) {
  std::array<std::string_view, 10> caps{};
  caps[0] = "/api/x";
  caps[1] = "x";
  std::string out;
  routes::expand_captures("/v1/$1?from=$0", caps, out);
  EXPECT_EQ(out, "/v1/x?from=/api/x");
}
