// The purge endpoint (see cache_purge.h):
//   POST /__edge/purge?url=https://samia.example/api/cards      every variant of that URL (both
//                                                              schemes)
//   POST /__edge/purge?prefix=https://samia.example/api/        every URL starting with it
//   POST /__edge/purge?tag=readings                              every response tagged so
// Answers {"purged": N}.
#include "routes/cache_purge.h"

#include "routes/proxy.h"

#include <string_view>

#include "server/http/ip.h"
#include "server/http/path.h"
#include "server/http/token.h"

namespace edge::routes {
namespace {

// The value of `name` in a query string, percent-decoded into `out`; false when absent.
bool query_param(std::string_view query, std::string_view name, std::string& out) {
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name && eq != std::string_view::npos) {
      out.clear();
      std::string_view v = pair.substr(eq + 1);
      for (std::size_t i = 0; i < v.size(); ++i) {
        auto hex = [](char c) {
          return c >= '0' && c <= '9'   ? c - '0'
                 : c >= 'a' && c <= 'f' ? c - 'a' + 10
                 : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                        : -1;
        };
        if (v[i] == '%' && i + 2 < v.size() && hex(v[i + 1]) >= 0 && hex(v[i + 2]) >= 0) {
          out.push_back(static_cast<char>(hex(v[i + 1]) * 16 + hex(v[i + 2])));
          i += 2;
        } else {
          out.push_back(v[i] == '+' ? ' ' : v[i]);
        }
      }
      return true;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

bool loopback(std::string_view ip) {
  auto a = http::IpAddress::parse(ip);
  if (!a) return false;
  static const http::IpRange v4 = *http::IpRange::parse("127.0.0.0/8");
  static const http::IpRange v6 = *http::IpRange::parse("::1");
  return v4.contains(*a) || v6.contains(*a);
}

bool cache_key(std::string_view url, std::string& out) {
  return url_cache_key(url, out);
}

}  // namespace

void CachePurgeHandler::handle(http::Exchange& ex) const {
  const http::Request& req = ex.req;
  if (req.method != http::Method::kPost) {
    ex.set_static(405, "application/json", "{\"error\":\"use POST\"}\n");
    ex.resp.headers.add("Allow", "POST");
    return;
  }
  if (token_.empty() ? !loopback(req.peer_ip)
                     : http::trim_ows(req.headers.get("Authorization")) != "Bearer " + token_) {
    ex.set_static(403, "application/json", "{\"error\":\"Forbidden\"}\n");
    ex.resp.cache_control = "no-store";
    return;
  }
  std::string value, key;
  std::size_t n = 0;
  if (query_param(req.query, "url", value)) {
    if (!cache_key(value, key)) {
      ex.set_static(400, "application/json", "{\"error\":\"url must be http(s)://host/path\"}\n");
      return;
    }
    n = store_->purge(key);
    // The other scheme's copy of the same URL too.
    if (key.starts_with("https://"))
      key.replace(0, 5, "http");
    else
      key.replace(0, 4, "https");
    n += store_->purge(key);
  } else if (query_param(req.query, "prefix", value)) {
    if (!cache_key(value, key)) {
      ex.set_static(400, "application/json",
                    "{\"error\":\"prefix must be http(s)://host/path\"}\n");
      return;
    }
    n = store_->purge_prefix(key);
  } else if (query_param(req.query, "tag", value) && !value.empty()) {
    n = store_->purge_tag(value);
  } else {
    ex.set_static(400, "application/json", "{\"error\":\"give url=, prefix= or tag=\"}\n");
    return;
  }
  ex.set_text(200, "application/json", "{\"purged\":" + std::to_string(n) + "}\n");
  ex.resp.cache_control = "no-store";
}

}  // namespace edge::routes
