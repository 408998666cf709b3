// libFuzzer target: the Range header (RFC 9110 14) against a representation size. The first 8
// bytes are the size, the rest the field value. Checks what the serving code relies on: every
// satisfiable range lies inside the representation, ranges are sorted, apart and at most kMax.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "server/http/range.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 8) return 0;
  std::uint64_t rep = 0;
  std::memcpy(&rep, data, 8);
  rep %= (std::uint64_t{1} << 50);  // up to a petabyte: past any file, short of overflow games
  std::string_view header(reinterpret_cast<const char*>(data + 8), size - 8);
  edge::http::RangeSet rs = edge::http::parse_range(header, rep);
  using Kind = edge::http::RangeSet::Kind;
  if (rs.kind != Kind::kSatisfiable) {
    if (rs.count != 0) std::abort();
    return 0;
  }
  if (rs.count == 0 || rs.count > edge::http::RangeSet::kMax) std::abort();
  for (std::size_t i = 0; i < rs.count; ++i) {
    const auto& r = rs.ranges[i];
    if (r.first > r.last || r.last >= rep) std::abort();
    if (i > 0 && r.first <= rs.ranges[i - 1].last + 1) std::abort();  // coalesced and sorted
  }
  return 0;
}
