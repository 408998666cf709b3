// Content codings (RFC 9110 8.4.1) and Accept-Encoding negotiation (RFC 9110 12.5.3).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace edge::http {

enum class Coding : std::uint8_t { kIdentity = 0, kBr = 1, kZstd = 2, kGzip = 3 };
constexpr std::size_t kCodingCount = 4;

std::string_view coding_name(Coding c);                         // "identity", "br", "zstd", "gzip"
std::optional<Coding> coding_from_name(std::string_view name);  // case-insensitive; "x-gzip" too

// A set of codings as a bit mask (bit = 1 << coding).
using CodingSet = std::uint8_t;
constexpr CodingSet coding_bit(Coding c) {
  return static_cast<CodingSet>(1u << static_cast<unsigned>(c));
}

// Picks the coding for a response. `preference` lists the server's codings in order (e.g. br, zstd,
// gzip); `available` says which of them this representation has. The client's q-values decide;
// among equal q-values the server's order wins. Returns kIdentity when nothing else is acceptable,
// the header is absent, or it is malformed. (When even identity is refused, identity is still
// sent: RFC 9110 allows it, and a 406 for a static asset helps nobody.)
Coding negotiate_coding(std::string_view accept_encoding, const Coding* preference,
                        std::size_t count, CodingSet available);

}  // namespace edge::http
