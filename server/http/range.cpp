// Range parsing with coalescing; no allocation.
#include "server/http/range.h"

#include <algorithm>

#include "server/http/token.h"

namespace edge::http {
namespace {

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = v;
  return true;
}

}  // namespace

RangeSet parse_range(std::string_view header, std::uint64_t size) {
  RangeSet rs;
  header = trim_ows(header);
  std::size_t eq = header.find('=');
  if (eq == std::string_view::npos || !iequals(trim_ows(header.substr(0, eq)), "bytes")) return rs;
  std::string_view list = header.substr(eq + 1);
  bool syntax_ok = true;
  bool any = false;
  std::size_t elements = 0;
  for_each_list_element(list, [&](std::string_view el) {
    if (!syntax_ok) return;
    any = true;
    if (++elements > RangeSet::kMax) {
      syntax_ok = false;
      return;
    }
    std::size_t dash = el.find('-');
    if (dash == std::string_view::npos) {
      syntax_ok = false;
      return;
    }
    std::string_view a = trim_ows(el.substr(0, dash)), b = trim_ows(el.substr(dash + 1));
    std::uint64_t first = 0, last = 0;
    if (a.empty()) {  // suffix: "-N"
      std::uint64_t n = 0;
      if (!parse_u64(b, n)) {
        syntax_ok = false;
        return;
      }
      if (n == 0 || size == 0) return;  // unsatisfiable element
      first = n >= size ? 0 : size - n;
      last = size - 1;
    } else {
      if (!parse_u64(a, first)) {
        syntax_ok = false;
        return;
      }
      if (b.empty()) {
        last = size ? size - 1 : 0;
      } else {
        if (!parse_u64(b, last) || last < first) {
          syntax_ok = false;
          return;
        }
        if (last >= size) last = size ? size - 1 : 0;
      }
      if (first >= size) return;  // unsatisfiable element
    }
    rs.ranges[rs.count++] = {first, last};
  });
  if (!syntax_ok || !any) {
    rs.count = 0;
    return rs;
  }
  if (rs.count == 0) {
    rs.kind = RangeSet::Kind::kUnsatisfiable;
    return rs;
  }
  std::sort(rs.ranges.begin(), rs.ranges.begin() + static_cast<std::ptrdiff_t>(rs.count),
            [](const ByteRange& x, const ByteRange& y) { return x.first < y.first; });
  std::size_t out = 0;
  for (std::size_t i = 1; i < rs.count; ++i) {
    if (rs.ranges[i].first <= rs.ranges[out].last + 1) {
      rs.ranges[out].last = std::max(rs.ranges[out].last, rs.ranges[i].last);
    } else {
      rs.ranges[++out] = rs.ranges[i];
    }
  }
  rs.count = out + 1;
  rs.kind = RangeSet::Kind::kSatisfiable;
  return rs;
}

}  // namespace edge::http
