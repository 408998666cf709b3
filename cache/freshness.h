// RFC 9111 arithmetic for a shared cache: Cache-Control parsing, whether a response may be stored,
// its freshness lifetime (s-maxage, max-age, Expires, the route's ttl, heuristics), its current
// age, and how long it may be served stale. Pure functions over parsed values: the storage and the
// proxy's use of them come with the cache itself (issue 6).
#pragma once
#include <cstdint>
#include <ctime>
#include <optional>
#include <string_view>

namespace edge::cache {

struct CacheControl {
  bool no_store = false;
  bool no_cache = false;  // qualified forms (no-cache="Set-Cookie") are taken as unqualified
  bool private_ = false;  // likewise private="…"
  bool public_ = false;
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  bool no_transform = false;
  bool immutable = false;
  bool only_if_cached = false;  // request
  std::optional<std::int64_t> max_age, s_maxage, stale_while_revalidate, stale_if_error;
  std::optional<std::int64_t> max_stale, min_fresh;  // request; max_stale = INT64_MAX when bare
  bool malformed = false;  // a known directive with a bad argument (RFC 9111 4.2.1: then stale)

  // Parses one Cache-Control field value (several lines joined with ", ").
  static CacheControl parse(std::string_view value);
};

// What the route says beyond the origin (conf: a route's cache table).
struct Policy {
  std::int64_t ttl = 0;        // lifetime for "public" without one, and the cap on heuristics
  bool override = false;       // the ttl for every storable response, whatever it says
  bool share_cookies = false;  // store responses with Set-Cookie
};

struct ResponseFacts {
  int status = 200;
  CacheControl cc;
  std::optional<std::time_t> date, expires, last_modified;
  bool expires_invalid = false;  // an Expires that does not parse means "already expired"
  std::int64_t age = 0;          // the Age field
  bool has_set_cookie = false;
  bool vary_star = false;
};

// Whether a shared cache may store the response to a GET/HEAD (RFC 9111 3, 3.5):
// `authorization`: the request carried Authorization.
bool storable(const ResponseFacts& r, const CacheControl& request_cc, bool authorization,
              const Policy& p);

// The freshness lifetime in seconds (RFC 9111 4.2.1, heuristics per 4.2.2 capped by p.ttl).
std::int64_t freshness_lifetime(const ResponseFacts& r, const Policy& p);

// The current age (RFC 9111 4.2.3) of a response received at `response_time` for a request sent
// at `request_time`, at `now`.
std::int64_t current_age(const ResponseFacts& r, std::time_t request_time,
                         std::time_t response_time, std::time_t now);

// The Age field's value (RFC 9111 5.1): delta-seconds, saturating at 2^31; 0 when it is not one.
std::int64_t parse_age(std::string_view value);

// Heuristically cacheable statuses (RFC 9110 15.1).
bool heuristically_cacheable(int status);

}  // namespace edge::cache
