// libFuzzer target: Accept-Encoding negotiation (RFC 9110 12.5.3), for the static files'
// preference order and for on-the-fly compression of proxied responses. The first byte picks
// which codings the representation has. The answer is always one the representation has, or
// identity.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/http/content_coding.h"
#include "server/http/token.h"

using edge::http::Coding;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  auto available = static_cast<edge::http::CodingSet>(data[0] & 0x0f);
  std::string_view header(reinterpret_cast<const char*>(data + 1), size - 1);
  static constexpr Coding kPreference[] = {Coding::kBr, Coding::kZstd, Coding::kGzip};
  Coding c = edge::http::negotiate_coding(header, kPreference, 3, available);
  if (c != Coding::kIdentity && !(available & edge::http::coding_bit(c))) std::abort();
  // Each coding name the negotiation can return parses back to itself.
  if (edge::http::coding_from_name(edge::http::coding_name(c)) != c) std::abort();
  // Tokens taken from the field itself.
  edge::http::for_each_list_element(header, [](std::string_view el) {
    std::string_view name = el.substr(0, el.find(';'));
    (void)edge::http::coding_from_name(edge::http::trim_ows(name));
  });
  return 0;
}
