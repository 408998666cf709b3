// Proxy routes: decide what goes upstream (which pool, which target, which headers) and hand the
// exchange to the runtime through http::Forward; the runtime connects, streams and retries.
#pragma once
#include <memory>
#include <string>

#include "cache/store.h"
#include "routes/compress_policy.h"
#include "server/http/exchange.h"
#include "server/http/metrics.h"
#include "server/http/upstream.h"

namespace edge::routes {

struct ProxyOptions {
  std::shared_ptr<const http::UpstreamPool> pool;
  std::string strip_prefix;  // removed from the front of the path sent upstream
  enum class HostMode : unsigned char { kPass, kUpstream, kFixed };
  HostMode host_mode = HostMode::kPass;
  std::string host;  // kFixed
  bool websocket = true;
  CompressOptions compress;  // responses compressed on the fly (Brotli, zstd, gzip) as they stream
  // The shared cache (null: off) and the route's rules for it.
  std::shared_ptr<cache::Store> cache;
  cache::Policy cache_policy;
  std::size_t cache_max_object = 8 << 20;
  std::int64_t cache_grace = 0;          // seconds a stale copy may stand in for a failing upstream
  bool cache_sort_query = false;         // the key's query parameters in sorted order
  bool cache_credentials_never = false;  // requests with Cookie/Authorization never use it
  std::vector<std::string> cache_ignore_params;  // query parameters left out of the key
};

class ProxyHandler : public http::Handler {
 public:
  explicit ProxyHandler(ProxyOptions o) : o_(std::move(o)) {}
  void handle(http::Exchange& ex) const override;
  bool takes_body() const override { return true; }
  bool streams() const override { return true; }
  const char* kind() const override { return "proxy"; }
  const ProxyOptions& options() const { return o_; }

 private:
  ProxyOptions o_;
};

// Header names a proxy never forwards as they came (hop-by-hop, framing, or set by the proxy).
bool is_hop_by_hop(std::string_view name);

// The cache key of a request: scheme://host[:port]/path?query as the client asked for it (the
// scheme a trusted proxy reports, the Host field as sent, the path normalised and re-encoded —
// so "/a%3Fb" never meets "/a?b", and a rewritten route never shares keys with another), the
// query's parameters filtered by `ignore` and sorted when `sort`. `scratch` is working space.
void cache_key(const http::Request& req, bool sort, const std::vector<std::string>& ignore,
               std::string& out, std::string& scratch);

// The same for an absolute URL ("https://Host:8443/a/../b?q"): false when it is not one.
bool url_cache_key(std::string_view url, std::string& out);

// Appends `path` to `out`, percent-encoding what may not stand in a path segment as it is.
void append_encoded_path(std::string& out, std::string_view path);

// Answers ex from the cache when a fresh stored response fits the request (a hit, or a 304 to a
// conditional request); true when answered. A stale one that fits is returned in `stale`.
// `refresh`: the answer is a stale copy within its stale-while-revalidate window, and this
// request took the key's lead to fetch it again in the background.
bool serve_from_cache(http::Exchange& ex, const ProxyOptions& o,
                      std::shared_ptr<const cache::CachedResponse>& stale, bool& refresh);

// Sets ex.resp to the stored response r (a hit: its headers and body from memory, 304 when the
// request's If-None-Match matches), with Age and `cache_status` (a view that must outlive the
// write, e.g. into ex.scratch2, which this also uses for Age).
void answer_from(http::Exchange& ex, std::shared_ptr<const cache::CachedResponse> r,
                 std::int64_t age, std::string_view cache_status);

// The JSON error body proxies answer with: {"error":"<reason>","request_id":"<id>"}.
void proxy_error(http::Exchange& ex, int status);

// What the cache did for a response of a cached route, read from its Cache-Status field: hit,
// stale (served stale: stale-while-revalidate, stale-if-error), revalidated (a 304 refreshed the
// copy), miss (fetched; stored or not), bypass (the request or method was not for the cache).
http::metrics::CacheResult cache_result(const http::Response& resp);

}  // namespace edge::routes
