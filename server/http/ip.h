// IP addresses and CIDR ranges: the trusted-proxy list, and the real client address taken from
// CF-Connecting-IP / X-Forwarded-For when the peer is one of those proxies.
#pragma once
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/http/headers.h"

namespace edge::http {

struct IpAddress {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // IPv4 in the first 4

  static std::optional<IpAddress> parse(std::string_view text);  // "1.2.3.4", "::1", "[::1]"
  static IpAddress from(const sockaddr_storage& sa);             // IPv4-mapped IPv6 becomes IPv4
};

struct IpRange {
  IpAddress base;
  unsigned prefix = 0;
  // "10.0.0.0/8", "2400:cb00::/32", or one address; nullopt when malformed.
  static std::optional<IpRange> parse(std::string_view text);
  bool contains(const IpAddress& a) const;
};

class IpRanges {
 public:
  void add(const IpRange& r) { ranges_.push_back(r); }
  bool empty() const { return ranges_.empty(); }
  bool contains(const IpAddress& a) const {
    for (const auto& r : ranges_)
      if (r.contains(a)) return true;
    return false;
  }

 private:
  std::vector<IpRange> ranges_;
};

// The client's address as a trusted proxy reported it: CF-Connecting-IP when present, else the
// right-most X-Forwarded-For entry that is not itself a trusted proxy (the left-most when all
// are). Empty when the headers give no valid address. `scratch` joins multi-line X-Forwarded-For.
std::string_view forwarded_client(const HeaderList& headers, const IpRanges& trusted,
                                  std::string& scratch);

}  // namespace edge::http
