// Range requests (RFC 9110 14): parsing a "bytes=" Range header against a representation size.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace edge::http {

struct ByteRange {
  std::uint64_t first;  // inclusive
  std::uint64_t last;   // inclusive
  std::uint64_t length() const { return last - first + 1; }
};

struct RangeSet {
  static constexpr std::size_t kMax =
      16;  // more ranges than this: answer the whole (RFC 9110 14.2)
  enum class Kind { kIgnore, kSatisfiable, kUnsatisfiable } kind = Kind::kIgnore;
  std::array<ByteRange, kMax> ranges{};
  std::size_t count = 0;
};

// Parses `Range` for a representation of `size` bytes. Invalid syntax, other units and too many
// ranges give kIgnore (serve 200); no satisfiable range gives kUnsatisfiable (416). Overlapping
// or adjacent ranges are coalesced.
RangeSet parse_range(std::string_view header, std::uint64_t size);

}  // namespace edge::http
