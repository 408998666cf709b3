// libFuzzer target: the other request-header grammars edge reads, chosen by the first byte:
// HTTP dates (If-Modified-Since, If-Range, Expires), entity-tag lists (If-None-Match, If-Match),
// If-Range, the preconditions as a whole, X-Forwarded-For / CF-Connecting-IP behind trusted
// proxies, IP addresses and CIDR ranges, the request target (split and normalised), and the
// config's durations and sizes.
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

#include "server/config.h"
#include "server/http/conditional.h"
#include "server/http/date.h"
#include "server/http/ip.h"
#include "server/http/path.h"

namespace http = edge::http;

namespace {

void dates(std::string_view s) {
  auto t = http::parse_http_date(s);
  if (!t) return;
  if (*t < 0) return;             // before 1970: not formatted
  if (*t > 253402300799) return;  // after 9999: past the IMF-fixdate's four digits
  char buf[64];
  http::format_http_date(*t, buf);
  auto again = http::parse_http_date(std::string_view(buf, http::kHttpDateLen));
  if (!again || *again != *t) std::abort();  // what edge writes, edge reads back
}

void preconditions(std::string_view s) {
  // Split the input into up to four fields' values at '\n'.
  static constexpr std::string_view kNames[] = {"If-None-Match", "If-Match", "If-Modified-Since",
                                                "If-Unmodified-Since"};
  http::HeaderList h;
  std::size_t i = 0;
  while (!s.empty() && i < 4) {
    std::size_t nl = s.find('\n');
    h.add(kNames[i++], s.substr(0, nl));
    s = nl == std::string_view::npos ? std::string_view{} : s.substr(nl + 1);
  }
  for (auto m : {http::Method::kGet, http::Method::kHead, http::Method::kPost})
    (void)http::evaluate_preconditions(h, m, "\"abc\"", 1'700'000'000);
  (void)http::if_range_allows(h.get("If-None-Match"), "\"abc\"", 1'700'000'000);
  (void)http::if_range_allows(h.get("If-None-Match"), "W/\"abc\"", 1'700'000'000);
  (void)http::etag_list_matches(h.get("If-Match"), "\"abc\"", true);
  (void)http::etag_list_matches(h.get("If-Match"), "\"abc\"", false);
}

void forwarded(std::string_view s) {
  static const http::IpRanges trusted = [] {
    http::IpRanges r;
    for (const char* c : {"127.0.0.0/8", "10.0.0.0/8", "::1", "2400:cb00::/32"})
      r.add(*http::IpRange::parse(c));
    return r;
  }();
  http::HeaderList h;
  std::size_t nl = s.find('\n');
  std::string_view first = s.substr(0, nl);
  std::string_view rest = nl == std::string_view::npos ? std::string_view{} : s.substr(nl + 1);
  h.add("X-Forwarded-For", first);
  if (!rest.empty() && rest[0] == 'C')
    h.add("CF-Connecting-IP", rest.substr(1));
  else if (!rest.empty())
    h.add("x-forwarded-for", rest);  // a second line: joined
  std::string scratch;
  std::string_view ip = http::forwarded_client(h, trusted, scratch);
  if (!ip.empty() && !http::IpAddress::parse(ip)) std::abort();  // only valid addresses come out
}

void addresses(std::string_view s) {
  if (auto a = http::IpAddress::parse(s)) {
    http::IpRange r{*a, a->v6 ? 128u : 32u};
    if (!r.contains(*a)) std::abort();
  }
  if (auto r = http::IpRange::parse(s)) {
    if (r->prefix > (r->base.v6 ? 128u : 32u)) std::abort();
    if (!r->contains(r->base)) std::abort();
  }
}

void target(std::string_view s) {
  std::string_view path, query;
  http::split_target(s, path, query);
  std::string out;
  if (http::normalize_path(path, out) != http::PathError::kOk) return;
  // A normalised path is absolute and has no dot segments and no NUL: safe to join to a root.
  if (out.empty() || out[0] != '/') std::abort();
  if (out.find('\0') != std::string::npos) std::abort();
  if (out.find("/../") != std::string::npos || out.ends_with("/..")) std::abort();
  if (out.find("/./") != std::string::npos || out.ends_with("/.")) std::abort();
  (void)http::path_extension(out);
  std::string again;
  if (http::normalize_path(out, again, false) != http::PathError::kOk || again != out)
    std::abort();  // normalising is idempotent
}

void config_values(std::string_view s) {
  std::chrono::milliseconds d;
  if (edge::parse_duration(s, d) && d.count() < 0) std::abort();  // no wrap-around
  std::uint64_t n;
  if (edge::parse_size(s, n) && n > (1ULL << 50)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view s(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 6) {
    case 0:
      dates(s);
      break;
    case 1:
      preconditions(s);
      break;
    case 2:
      forwarded(s);
      break;
    case 3:
      addresses(s);
      break;
    case 4:
      target(s);
      break;
    case 5:
      config_values(s);
      break;
  }
  return 0;
}
