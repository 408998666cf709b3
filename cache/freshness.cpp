// RFC 9111 freshness arithmetic (see freshness.h).
#include "cache/freshness.h"

#include <algorithm>
#include <charconv>
#include <limits>

namespace edge::cache {
namespace {

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// delta-seconds (RFC 9111 1.2.2): digits only; too large saturates at 2^31.
std::optional<std::int64_t> delta_seconds(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.empty()) return std::nullopt;
  std::int64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = std::min<std::int64_t>(n * 10 + (c - '0'), std::int64_t{1} << 31);
  }
  return n;
}

}  // namespace

std::int64_t parse_age(std::string_view value) {
  value = trim(value);
  if (value.empty() || value.front() == '"') return 0;  // (quotes are Cache-Control's, not Age's)
  return delta_seconds(value).value_or(0);
}

CacheControl CacheControl::parse(std::string_view value) {
  CacheControl cc;
  while (!value.empty()) {
    // Split on commas outside quotes (no-cache="a, b").
    std::size_t i = 0;
    bool quoted = false;
    for (; i < value.size(); ++i) {
      if (value[i] == '"') quoted = !quoted;
      if (value[i] == ',' && !quoted) break;
    }
    std::string_view item = trim(value.substr(0, i));
    value = i < value.size() ? value.substr(i + 1) : std::string_view{};
    if (item.empty()) continue;
    std::size_t eq = item.find('=');
    std::string_view name = trim(item.substr(0, eq));
    std::string_view arg =
        eq == std::string_view::npos ? std::string_view{} : trim(item.substr(eq + 1));
    bool has_arg = eq != std::string_view::npos;
    auto number = [&](std::optional<std::int64_t>& out) {
      auto v = delta_seconds(arg);
      if (!v) {
        cc.malformed = true;
        return;
      }
      // Duplicates: the lowest wins (the safe reading of a conflict).
      out = out ? std::min(*out, *v) : *v;
    };
    if (ieq(name, "no-store"))
      cc.no_store = true;
    else if (ieq(name, "no-cache"))
      cc.no_cache = true;
    else if (ieq(name, "private"))
      cc.private_ = true;
    else if (ieq(name, "public"))
      cc.public_ = true;
    else if (ieq(name, "must-revalidate"))
      cc.must_revalidate = true;
    else if (ieq(name, "proxy-revalidate"))
      cc.proxy_revalidate = true;
    else if (ieq(name, "no-transform"))
      cc.no_transform = true;
    else if (ieq(name, "immutable"))
      cc.immutable = true;
    else if (ieq(name, "only-if-cached"))
      cc.only_if_cached = true;
    else if (ieq(name, "max-age"))
      number(cc.max_age);
    else if (ieq(name, "s-maxage"))
      number(cc.s_maxage);
    else if (ieq(name, "stale-while-revalidate"))
      number(cc.stale_while_revalidate);
    else if (ieq(name, "stale-if-error"))
      number(cc.stale_if_error);
    else if (ieq(name, "min-fresh"))
      number(cc.min_fresh);
    else if (ieq(name, "max-stale")) {
      if (has_arg)
        number(cc.max_stale);
      else
        cc.max_stale = std::numeric_limits<std::int64_t>::max();
    }
    // Unknown directives are ignored (RFC 9111 5.2.3).
  }
  return cc;
}

bool heuristically_cacheable(int status) {
  switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
      return true;
    default:
      return false;
  }
}

bool storable(const ResponseFacts& r, const CacheControl& req, bool authorization,
              const Policy& p) {
  const CacheControl& cc = r.cc;
  if (req.no_store || cc.no_store || cc.private_ || r.vary_star) return false;
  if (r.status < 200 || r.status == 206 || r.status == 304) return false;  // (206: not kept whole)
  if (r.has_set_cookie && !p.share_cookies) return false;
  // RFC 9111 3.5: a response to a request with Authorization only when it says it may be shared.
  if (authorization && !(cc.public_ || cc.s_maxage || cc.must_revalidate)) return false;
  // override: a CDN's edge TTL — for statuses worth keeping, never a 500 for two hours.
  if (p.override) return heuristically_cacheable(r.status);
  // Something that allows storing: explicit freshness, public, or a heuristically cacheable status.
  return cc.max_age || cc.s_maxage || r.expires || r.expires_invalid || cc.public_ ||
         heuristically_cacheable(r.status);
}

std::int64_t freshness_lifetime(const ResponseFacts& r, const Policy& p) {
  const CacheControl& cc = r.cc;
  if (p.override && heuristically_cacheable(r.status)) return p.ttl;
  if (cc.malformed) return 0;
  if (cc.s_maxage) return *cc.s_maxage;
  if (cc.max_age) return *cc.max_age;
  if (r.expires_invalid) return 0;
  if (r.expires) {
    std::time_t base = r.date ? *r.date : *r.expires;  // no Date: the response time (age covers it)
    return std::max<std::int64_t>(0, static_cast<std::int64_t>(*r.expires - base));
  }
  if (cc.public_ && p.ttl > 0) return p.ttl;  // the platform's edgeCacheTtl for "public" alone
  if (!heuristically_cacheable(r.status) && !cc.public_) return 0;
  // Heuristic (RFC 9111 4.2.2): 10 % of the time since Last-Modified, capped by the route's ttl.
  if (r.last_modified && r.date && *r.date > *r.last_modified) {
    std::int64_t h = static_cast<std::int64_t>(*r.date - *r.last_modified) / 10;
    return p.ttl > 0 ? std::min(h, p.ttl) : 0;
  }
  return 0;
}

std::int64_t current_age(const ResponseFacts& r, std::time_t request_time,
                         std::time_t response_time, std::time_t now) {
  std::int64_t apparent =
      r.date ? std::max<std::int64_t>(0, static_cast<std::int64_t>(response_time - *r.date)) : 0;
  std::int64_t response_delay = static_cast<std::int64_t>(response_time - request_time);
  std::int64_t corrected_age = r.age + std::max<std::int64_t>(0, response_delay);
  std::int64_t initial = std::max(apparent, corrected_age);
  return initial + std::max<std::int64_t>(0, static_cast<std::int64_t>(now - response_time));
}

}  // namespace edge::cache
