// libFuzzer target: Cache-Control (RFC 9111 5.2) and the freshness arithmetic fed by it, as the
// cache applies them to an upstream response: the field value is the input; the first byte picks
// the route's policy and the response's other facts. Checks that the arithmetic never overflows
// (UBSan) and that its answers stay in range.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cache/freshness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::uint8_t k = data[0];
  std::string_view value(reinterpret_cast<const char*>(data + 1), size - 1);
  edge::cache::CacheControl cc = edge::cache::CacheControl::parse(value);
  for (auto v :
       {cc.max_age, cc.s_maxage, cc.stale_while_revalidate, cc.stale_if_error, cc.min_fresh})
    if (v && *v < 0) std::abort();  // delta-seconds are never negative

  edge::cache::ResponseFacts r;
  r.status = (k & 1) ? 200 : 404;
  r.cc = cc;
  if (k & 2) r.date = 1'700'000'000;
  if (k & 4) r.expires = (k & 8) ? 1'700'000'600 : 0;
  if (k & 16) r.last_modified = 1'600'000'000;
  r.age = (k & 32) ? 3600 : 0;
  edge::cache::Policy p;
  p.ttl = (k & 64) ? 7200 : 0;
  p.override = (k & 128) != 0;
  edge::cache::CacheControl request_cc =
      edge::cache::CacheControl::parse(value.substr(value.size() / 2));
  (void)edge::cache::storable(r, request_cc, (k & 8) != 0, p);
  std::int64_t life = edge::cache::freshness_lifetime(r, p);
  if (life < 0) std::abort();
  std::int64_t age = edge::cache::current_age(r, 1'700'000'000, 1'700'000'001, 1'700'000'100);
  if (age < 0) std::abort();
  // The same bytes as an Age field (a regression: an upstream's long Age overflowed a signed
  // accumulator in the proxy, found by fuzz_upstream).
  std::int64_t a = edge::cache::parse_age(value);
  if (a < 0 || a > (std::int64_t{1} << 31)) std::abort();
  return 0;
}
