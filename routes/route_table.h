// The route table: host + path matching (exact, prefix, regex with captures), optional rewrite,
// and the handler and response headers each route carries. First match wins, in file order.
#pragma once
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "routes/rate_limit.h"
#include "routes/security_headers.h"
#include "server/http/exchange.h"
#include "server/http/metrics.h"

namespace edge::routes {

struct Route {
  enum class Match { kAll, kExact, kPrefix, kRegex };
  int line = 0;       // where the route stands in its config file
  std::string label;  // in metrics and logs: its `name`, else its pattern ("-": none)
  http::metrics::RouteStats* stats = nullptr;  // its counters (null: not counted)
  bool cached = false;                         // a proxy route with a cache
  std::vector<std::string> hosts;  // lower-case; "*.example.com" matches subdomains; empty: any
  Match match = Match::kAll;
  std::string pattern;
  std::optional<std::regex> regex;
  std::optional<std::string> rewrite;  // with $0..$9
  std::unique_ptr<http::Handler> handler;
  RouteSecurity security;        // the route's headers, removals and CSP changes
  HeaderPairs headers_plain;     // everything added to each response, security preset included
  HeaderPairs h2_plain, h2_tls;  // the same with lower-case names (HTTP/2)
  HeaderPairs headers_tls;
  std::uint64_t max_body = 0;
  std::vector<RateLimit> limits;  // all must allow (rate_limit)

  std::string describe() const;
};

class RouteTable {
 public:
  std::vector<Route>& routes() { return routes_; }
  const std::vector<Route>& routes() const { return routes_; }

  // Finds the route for ex.req (host, path); fills ex.captures for regex routes and applies the
  // route's rewrite to ex.req.path. Returns nullptr when nothing matches. A rewrite that would
  // leave the root sets `bad_rewrite`.
  const Route* match(http::Exchange& ex, bool& bad_rewrite) const;

 private:
  std::vector<Route> routes_;
};

bool host_matches(const std::vector<std::string>& hosts, std::string_view host);

// Expands $0..$9 in `tmpl` from `captures` into `out`.
void expand_captures(std::string_view tmpl, const std::array<std::string_view, 10>& captures,
                     std::string& out);

}  // namespace edge::routes
