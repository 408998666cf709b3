// Building the per-route header lists once, at config load: the request path only copies them.
#include "routes/security_headers.h"

#include "server/http/token.h"

namespace edge::routes {

CspDirectives SecurityPolicy::default_csp() {
  return {
      {"default-src", {"'self'"}},
      {"base-uri", {"'self'"}},
      {"connect-src", {"'self'", "https://api.stripe.com"}},
      {"font-src", {"'self'", "https://fonts.gstatic.com"}},
      {"form-action", {"'self'"}},
      {"frame-ancestors", {"'none'"}},
      {"img-src", {"'self'", "data:", "https:"}},
      {"object-src", {"'none'"}},
      {"script-src", {"'self'"}},
      {"script-src-attr", {"'none'"}},
      {"style-src", {"'self'", "'unsafe-inline'", "https://fonts.googleapis.com"}},
  };
}

HeaderPairs SecurityPolicy::default_headers() {
  return {
      {"Cross-Origin-Opener-Policy", "same-origin"},
      {"Cross-Origin-Resource-Policy", "same-origin"},
      {"Origin-Agent-Cluster", "?1"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-DNS-Prefetch-Control", "off"},
      {"X-Download-Options", "noopen"},
      {"X-Frame-Options", "DENY"},
      {"X-Permitted-Cross-Domain-Policies", "none"},
      {"X-XSS-Protection", "0"},
  };
}

std::string csp_value(const CspDirectives& csp, bool tls) {
  std::string v;
  for (const auto& [name, sources] : csp) {
    if (!v.empty()) v.append("; ");
    v.append(name);
    for (const auto& s : sources) v.append(" ").append(s);
  }
  if (tls) v.append(v.empty() ? "" : "; ").append("upgrade-insecure-requests");
  return v;
}

void set_header(HeaderPairs& h, const std::string& name, const std::string& value) {
  for (auto& [n, v] : h) {
    if (http::iequals(n, name)) {
      v = value;
      return;
    }
  }
  h.emplace_back(name, value);
}

void merge_csp(CspDirectives& csp, const CspDirectives& changes) {
  for (const auto& [name, sources] : changes) {
    bool found = false;
    for (auto& d : csp) {
      if (d.first == name) {
        d.second = sources;
        found = true;
      }
    }
    if (!found) csp.emplace_back(name, sources);
  }
}

HeaderPairs route_headers(const SecurityPolicy& policy, const RouteSecurity& route, bool tls) {
  HeaderPairs out;
  if (policy.enabled && route.enabled) {
    CspDirectives csp = policy.csp;
    merge_csp(csp, route.csp);
    std::erase_if(csp, [](const auto& d) {
      return d.second.empty() && d.first != "upgrade-insecure-requests" &&
             d.first != "block-all-mixed-content";
    });
    if (!csp.empty())
      out.emplace_back(policy.csp_report_only ? "Content-Security-Policy-Report-Only"
                                              : "Content-Security-Policy",
                       csp_value(csp, tls));
    if (tls && policy.hsts) {
      std::string v = "max-age=" + std::to_string(policy.hsts_max_age);
      if (policy.hsts_include_subdomains) v += "; includeSubDomains";
      if (policy.hsts_preload) v += "; preload";
      out.emplace_back("Strict-Transport-Security", v);
    }
    out.insert(out.end(), policy.headers.begin(), policy.headers.end());
  }
  for (const auto& [n, v] : route.headers) set_header(out, n, v);
  for (const auto& r : route.remove)
    std::erase_if(out, [&](const auto& h) { return http::iequals(h.first, r); });
  if (!tls) {
    // Never over plain HTTP, whoever asked for it (RFC 6797 7.2).
    std::erase_if(
        out, [](const auto& h) { return http::iequals(h.first, "Strict-Transport-Security"); });
  }
  return out;
}

}  // namespace edge::routes
