// The security-header preset and per-route overrides.
#include "routes/security_headers.h"

#include <gtest/gtest.h>

using namespace edge::routes;

namespace {

std::string get(const HeaderPairs& h, const std::string& name) {
  for (const auto& [n, v] : h)
    if (n == name) return v;
  return "<absent>";
}

}  // namespace

TEST(SecurityHeaders, PresetMatchesHelmetAndThePlatform) {
  SecurityPolicy p;
  HeaderPairs tls = route_headers(p, {}, true);
  EXPECT_EQ(get(tls, "Strict-Transport-Security"), "max-age=63072000; includeSubDomains");
  EXPECT_EQ(get(tls, "X-Frame-Options"), "DENY");
  EXPECT_EQ(get(tls, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(get(tls, "Referrer-Policy"), "no-referrer");
  EXPECT_EQ(get(tls, "Cross-Origin-Opener-Policy"), "same-origin");
  EXPECT_EQ(get(tls, "Cross-Origin-Resource-Policy"), "same-origin");
  EXPECT_EQ(get(tls, "X-DNS-Prefetch-Control"), "off");
  std::string csp = get(tls, "Content-Security-Policy");
  EXPECT_NE(csp.find("default-src 'self'"), std::string::npos);
  EXPECT_NE(csp.find("style-src 'self' 'unsafe-inline' https://fonts.googleapis.com"),
            std::string::npos);
  EXPECT_NE(csp.find("font-src 'self' https://fonts.gstatic.com"), std::string::npos);
  EXPECT_NE(csp.find("img-src 'self' data: https:"), std::string::npos);
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos);
  EXPECT_NE(csp.find("connect-src 'self' https://api.stripe.com"), std::string::npos);
  EXPECT_NE(csp.find("upgrade-insecure-requests"), std::string::npos);
}

TEST(SecurityHeaders, NoHstsOrUpgradeOverPlainHttp) {
  SecurityPolicy p;
  RouteSecurity r;
  r.headers = {{"Strict-Transport-Security", "max-age=1"}};
  HeaderPairs plain = route_headers(p, r, false);
  EXPECT_EQ(get(plain, "Strict-Transport-Security"), "<absent>");
  EXPECT_EQ(get(plain, "Content-Security-Policy").find("upgrade-insecure-requests"),
            std::string::npos);
}

TEST(SecurityHeaders, RouteOverridesKeepTheRest) {
  SecurityPolicy p;
  RouteSecurity r;
  r.headers = {{"X-Frame-Options", "SAMEORIGIN"}, {"X-Extra", "1"}};
  r.remove = {"X-XSS-Protection"};
  r.csp = {{"connect-src", {"'self'", "https://api.example.com"}}, {"object-src", {}}};
  HeaderPairs h = route_headers(p, r, true);
  EXPECT_EQ(get(h, "X-Frame-Options"), "SAMEORIGIN");
  EXPECT_EQ(get(h, "X-Extra"), "1");
  EXPECT_EQ(get(h, "X-XSS-Protection"), "<absent>");
  EXPECT_EQ(get(h, "X-Content-Type-Options"), "nosniff");  // the rest of the preset stays
  std::string csp = get(h, "Content-Security-Policy");
  EXPECT_NE(csp.find("connect-src 'self' https://api.example.com"), std::string::npos);
  EXPECT_EQ(csp.find("object-src"), std::string::npos);
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos);
}

TEST(SecurityHeaders, ReportOnlyAndDisabled) {
  SecurityPolicy p;
  p.csp_report_only = true;
  HeaderPairs h = route_headers(p, {}, false);
  EXPECT_EQ(get(h, "Content-Security-Policy"), "<absent>");
  EXPECT_NE(get(h, "Content-Security-Policy-Report-Only"), "<absent>");
  RouteSecurity off;
  off.enabled = false;
  off.headers = {{"X-Only", "this"}};
  HeaderPairs o = route_headers(p, off, true);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].first, "X-Only");
}
