// IP parsing and CIDR matching over inet_pton.
#include "server/http/ip.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

#include "server/http/token.h"

namespace edge::http {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  text = trim_ows(text);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  if (text.empty() || text.size() > 45) return std::nullopt;
  char buf[46];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) return a;
  if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.bytes.data(), kMapped, 12) == 0) {
      std::memmove(a.bytes.data(), a.bytes.data() + 12, 4);
      std::memset(a.bytes.data() + 4, 0, 12);
      return a;
    }
    a.v6 = true;
    return a;
  }
  return std::nullopt;
}

IpAddress IpAddress::from(const sockaddr_storage& sa) {
  IpAddress a;
  if (sa.ss_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    std::memcpy(a.bytes.data(), &s6->sin6_addr, 16);
    a.v6 = true;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      std::memmove(a.bytes.data(), a.bytes.data() + 12, 4);
      std::memset(a.bytes.data() + 4, 0, 12);
      a.v6 = false;
    }
  } else {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(&sa);
    std::memcpy(a.bytes.data(), &s4->sin_addr, 4);
  }
  return a;
}

std::optional<IpRange> IpRange::parse(std::string_view text) {
  std::size_t slash = text.find('/');
  auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  IpRange r;
  r.base = *addr;
  unsigned max = addr->v6 ? 128 : 32;
  r.prefix = max;
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    unsigned v = 0;
    auto res = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || res.ec != std::errc() || res.ptr != p.data() + p.size() || v > max)
      return std::nullopt;
    r.prefix = v;
  }
  return r;
}

bool IpRange::contains(const IpAddress& a) const {
  if (a.v6 != base.v6) return false;
  unsigned full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(a.bytes.data(), base.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == (base.bytes[full] & mask);
}

std::string_view forwarded_client(const HeaderList& headers, const IpRanges& trusted,
                                  std::string& scratch) {
  std::string_view cf = trim_ows(headers.get("CF-Connecting-IP"));
  if (!cf.empty() && IpAddress::parse(cf)) return cf;
  std::string_view xff = headers.list("X-Forwarded-For", scratch);
  std::string_view leftmost;
  // Right to left: each hop appended the address it saw.
  while (!xff.empty()) {
    std::size_t comma = xff.rfind(',');
    std::string_view el = trim_ows(comma == std::string_view::npos ? xff : xff.substr(comma + 1));
    xff = comma == std::string_view::npos ? std::string_view{} : xff.substr(0, comma);
    auto a = IpAddress::parse(el);
    if (!a) return leftmost;  // a malformed hop: believe nothing to its left
    if (!trusted.contains(*a)) return el;
    leftmost = el;
  }
  return leftmost;
}

}  // namespace edge::http
