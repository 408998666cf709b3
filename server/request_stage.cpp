// The shared request stage (see request_stage.h).
#include "server/request_stage.h"

#include <algorithm>

#include "routes/proxy.h"
#include "routes/rate_limit.h"
#include "routes/route_table.h"
#include "server/http/ip.h"
#include "server/http/path.h"
#include "server/http/status.h"
#include "server/http/token.h"
#include "server/metrics.h"
#include "server/worker.h"

namespace edge {
namespace {

constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";

bool request_id_ok(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void resolve_client_ip(const Config& cfg, http::Exchange& ex, const sockaddr_storage& peer) {
  http::Request& req = ex.req;
  if (cfg.server.trusted_proxies.empty()) return;
  req.peer_trusted = cfg.server.trusted_proxies.contains(http::IpAddress::from(peer));
  if (!req.peer_trusted) return;
  std::string_view ip = http::forwarded_client(req.headers, cfg.server.trusted_proxies, ex.scratch);
  if (ip.empty()) return;
  ex.ip_buf.assign(ip);
  req.client_ip = ex.ip_buf;
}

// This request's keys into the worker's scratch; false: allowlisted.
bool limit_keys(Worker& w, const Config& cfg, const http::Exchange& ex,
                const routes::Route& route) {
  const auto& limits = route.limits;
  std::vector<std::string>& keys = w.limit_keys();
  if (keys.size() < limits.size()) keys.resize(limits.size());
  for (std::size_t i = 0; i < limits.size(); ++i) {
    keys[i].clear();
    if (!routes::limit_key(limits[i], cfg.rate_limit, ex.req, keys[i])) return false;
  }
  return true;
}

LimitVerdict apply(const Config& cfg, http::Exchange& ex, const routes::Route& route, bool allowed,
                   const routes::LimitResult* res) {
  const auto& limits = route.limits;
  // Allowed: the limit with the fewest left. Refused: the refusing one with the longest wait (a
  // Retry-After from a short burst limit would send the client back too early).
  std::size_t pick = 0, n = std::min<std::size_t>(limits.size(), 16);
  if (allowed) {
    for (std::size_t i = 1; i < n; ++i)
      if (res[i].remaining < res[pick].remaining) pick = i;
  } else {
    bool found = false;
    for (std::size_t i = 0; i < n; ++i) {
      if (!res[i].allowed && (!found || res[i].wait_us > res[pick].wait_us)) {
        pick = i;
        found = true;
      }
    }
  }
  ex.limit_outcome = allowed ? 1 : 2;
  if (!allowed) {
    routes::refuse(ex, cfg.rate_limit, limits[pick], res[pick]);
    return LimitVerdict::kAnswered;
  }
  if (cfg.rate_limit.headers)
    routes::append_limit_headers(limits[pick], res[pick], ex.extra_headers);
  return LimitVerdict::kGo;
}

LimitVerdict locally(Worker& w, const Config& cfg, http::Exchange& ex, const routes::Route& route) {
  routes::LimitResult res[16];
  bool allowed = cfg.limiter->decide(route.limits, w.limit_keys(), routes::now_us(), res);
  return apply(cfg, ex, route, allowed, res);
}

// The [rate_limit] on_store_error policy for this request (the keys are in the scratch).
LimitVerdict store_failed(Worker& w, const Config& cfg, http::Exchange& ex,
                          const routes::Route& route) {
  metrics::registry().process().at(w.id()).rate_limit_store_errors.add();
  switch (cfg.rate_limit.on_store_error) {
    case routes::RateLimitSettings::OnError::kAllow:
      ex.limit_outcome = 1;
      return LimitVerdict::kGo;
    case routes::RateLimitSettings::OnError::kDeny:
      routes::proxy_error(ex, 503);
      return LimitVerdict::kAnswered;
    case routes::RateLimitSettings::OnError::kLocal:
      break;
  }
  return locally(w, cfg, ex, route);
}

}  // namespace

Staged stage_request(Worker& w, const Config& cfg, const ListenConfig& lc, http::Exchange& ex,
                     std::string_view target, const sockaddr_storage& peer, char* request_id) {
  http::Request& req = ex.req;
  // Host without port; "[::1]:8080" keeps its brackets.
  std::string_view host = http::trim_ows(req.host);
  if (!host.empty() && host.front() != '[') {
    std::size_t colon = host.rfind(':');
    if (colon != std::string_view::npos) host = host.substr(0, colon);
  } else if (!host.empty()) {
    std::size_t close = host.find(']');
    if (close != std::string_view::npos) host = host.substr(0, close + 1);
  }
  req.host = host;
  std::string_view path, query;
  http::split_target(target, path, query);
  req.raw_path = path;
  req.query = query;
  resolve_client_ip(cfg, ex, peer);
  std::string_view rid = req.headers.get("X-Request-Id");
  if (request_id_ok(rid)) {
    req.request_id = rid;
  } else {
    w.make_request_id(request_id);
    req.request_id = std::string_view(request_id, 16);
  }
  Staged s;
  if (lc.https_redirect && !lc.admin && !req.tls && path != "/health") {
    s.kind = Staged::Kind::kRedirect;
    s.status = lc.https_port;
    return s;
  }
  if (http::normalize_path(path, ex.path_buf) != http::PathError::kOk) {
    s.kind = Staged::Kind::kError;
    s.status = 400;
    return s;
  }
  req.path = ex.path_buf;
  bool bad_rewrite = false;
  s.route = (lc.admin ? cfg.admin_routes : cfg.routes).match(ex, bad_rewrite);
  if (bad_rewrite) {
    s.kind = Staged::Kind::kError;
    s.status = 400;
    s.route = nullptr;
    return s;
  }
  if (req.has_body) {
    std::uint64_t limit = s.route ? s.route->max_body : 0;
    if (limit == 0 || req.content_length > limit) {
      s.kind = Staged::Kind::kError;
      s.status = 413;
      s.route = nullptr;
    }
  }
  return s;
}

bool https_redirect(http::Exchange& ex, int port) {
  http::Request& req = ex.req;
  std::string_view host = req.host;
  bool host_ok = !host.empty() && host.size() <= 255;
  for (char c : host)
    host_ok =
        host_ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == ':' || c == '[' || c == ']');
  if (!host_ok) return false;
  // 301 for GET/HEAD (what every client follows); 308 keeps the method and body of the rest.
  bool safe = req.method == http::Method::kGet || req.method == http::Method::kHead;
  ex.resp.reset();
  ex.scratch2.assign("https://").append(host);
  if (port != 443) ex.scratch2.append(":").append(std::to_string(port));
  ex.scratch2.append(req.raw_path.empty() ? std::string_view("/") : req.raw_path);
  if (!req.query.empty()) ex.scratch2.append("?").append(req.query);
  ex.set_static(safe ? 301 : 308, kTextPlain, "Redirecting to HTTPS\n");
  ex.resp.location = ex.scratch2;
  return true;
}

void error_page(http::Exchange& ex, int status) {
  ex.resp.reset();
  http::Response& r = ex.resp;
  r.status = status;
  r.content_type = kTextPlain;
  ex.scratch.clear();
  http::append_number(ex.scratch, static_cast<std::uint64_t>(status));
  ex.scratch.push_back(' ');
  ex.scratch.append(http::reason_phrase(status));
  ex.scratch.push_back('\n');
  r.body.kind = http::Body::Kind::kMemory;
  r.body.data = ex.scratch;
  r.cache_control = "no-store";
}

LimitVerdict decide_limits(Worker& w, const Config& cfg, http::Exchange& ex,
                           const routes::Route& route, LimitWaiter* waiter, LimitTicket*& ticket) {
  if (!limit_keys(w, cfg, ex, route)) return LimitVerdict::kGo;  // allowlisted
  if (cfg.rate_limit.store == routes::RateLimitSettings::Store::kRedis) {
    RedisLimiter* redis = w.redis();
    if (redis && redis->usable()) {
      ticket = redis->decide(route.limits, w.limit_keys(), waiter);
      if (ticket) return LimitVerdict::kWait;
    }
    return store_failed(w, cfg, ex, route);  // Redis is down
  }
  return locally(w, cfg, ex, route);
}

LimitVerdict limits_replied(Worker& w, const Config& cfg, http::Exchange& ex,
                            const routes::Route& route, bool ok, bool allowed,
                            const routes::LimitResult* results) {
  if (ok) return apply(cfg, ex, route, allowed, results);
  // The store failed this request (down, slow, an error): the policy, as when it is known down.
  // The keys again first: other requests used the worker's scratch meanwhile.
  if (!limit_keys(w, cfg, ex, route)) return LimitVerdict::kGo;
  return store_failed(w, cfg, ex, route);
}

void record_exchange(Worker& w, const routes::Route* route, const http::Exchange& ex, int status,
                     std::uint64_t bytes, std::uint64_t body_in) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                  ex.started)
                .count();
  auto cache = http::metrics::CacheResult::kNone;
  if (route && route->cached) cache = routes::cache_result(ex.resp);
  http::metrics::RouteStats* rs = route ? route->stats : w.unrouted();
  if (rs) {  // (admin routes are not counted)
    auto& c = rs->at(w.id());
    c.by_class[http::metrics::status_class(status)].add();
    c.latency.observe(static_cast<std::uint64_t>(us));
    c.body_in.add(body_in);
    c.body_out.add(bytes);
    if (ex.limit_outcome == 2) c.limited.add();
    if (cache != http::metrics::CacheResult::kNone) c.cache[static_cast<int>(cache)].add();
  }
  AccessLog& log = w.access_log();
  if (!log.enabled()) return;
  log.record(ex, route ? std::string_view(route->label) : std::string_view("-"), status, bytes,
             static_cast<double>(us) / 1000.0, cache);
}

void release_exchange(Worker& w, std::unique_ptr<http::Exchange> ex) {
  if (!ex) return;
  ex->forward.reset();
  ex->extra_headers.clear();
  ex->cache_waited = false;
  ex->upstream = nullptr;
  ex->upstream_us = -1;
  ex->limit_outcome = 0;
  ex->req.reset();
  ex->resp.reset();
  w.give_exchange(std::move(ex));
}

}  // namespace edge
