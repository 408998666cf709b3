// The security-header policy: helmet's defaults with the platform's CSP as the preset, HSTS only
// on TLS, and per-route overrides that replace or remove single headers while keeping the rest.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace edge::routes {

using HeaderPairs = std::vector<std::pair<std::string, std::string>>;
using CspDirectives = std::vector<std::pair<std::string, std::vector<std::string>>>;

struct SecurityPolicy {
  bool enabled = true;
  bool hsts = true;
  std::uint64_t hsts_max_age = 63072000;  // two years, as the platform's nginx sent
  bool hsts_include_subdomains = true;
  bool hsts_preload = false;
  CspDirectives csp = default_csp();
  bool csp_report_only = false;
  HeaderPairs headers = default_headers();  // everything but CSP and HSTS

  // helmet 7's directives merged with the SAMIA TAROT platform's (fonts, Stripe).
  static CspDirectives default_csp();
  static HeaderPairs default_headers();
};

// Per-route changes to the preset.
struct RouteSecurity {
  bool enabled = true;  // false: this route gets none of the preset
  CspDirectives csp;    // replaces these directives (an empty list removes one)
  HeaderPairs headers;  // the route's `headers`: replace same-named preset headers, add others
  std::vector<std::string> remove;  // preset headers this route drops
};

// Replaces the header of that name (case-insensitive), or appends it.
void set_header(HeaderPairs& headers, const std::string& name, const std::string& value);

// Replaces each directive of `changes` in `csp`, or appends it (an empty source list stays empty:
// callers drop those as their rules say).
void merge_csp(CspDirectives& csp, const CspDirectives& changes);

// The CSP header value. `tls` adds upgrade-insecure-requests (on plain HTTP it would send the
// browser to an https:// that may not exist).
std::string csp_value(const CspDirectives& csp, bool tls);

// The headers a route adds to every response, for plain HTTP or TLS.
HeaderPairs route_headers(const SecurityPolicy& policy, const RouteSecurity& route, bool tls);

}  // namespace edge::routes
