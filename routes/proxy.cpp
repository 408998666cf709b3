// The proxy's request phase: the upstream target and header lines are re-serialised from the
// parsed request (never copied raw), so nothing ambiguous in the client's bytes reaches the
// upstream; hop-by-hop fields go, the X-Forwarded-* family is rebuilt.
#include "routes/proxy.h"

#include <algorithm>
#include <charconv>

#include "server/http/conditional.h"
#include "server/http/content_coding.h"
#include "server/http/date.h"
#include "server/http/path.h"
#include "server/http/status.h"
#include "server/http/token.h"

namespace edge::routes {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && http::iequals(s.substr(0, prefix.size()), prefix);
}

void add_line(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

unsigned fnv1a(std::string_view s) {
  unsigned h = 2166136261u;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

}  // namespace

bool is_hop_by_hop(std::string_view n) {
  switch (n.size()) {
    case 2:
      return http::iequals(n, "TE");
    case 7:
      return http::iequals(n, "Trailer") || http::iequals(n, "Upgrade");
    case 10:
      return http::iequals(n, "Connection") || http::iequals(n, "Keep-Alive");
    case 17:
      return http::iequals(n, "Transfer-Encoding");
    default:
      return starts_with_ci(n, "Proxy-");
  }
}

void append_encoded_path(std::string& out, std::string_view path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char ch : path) {
    auto c = static_cast<unsigned char>(ch);
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                std::string_view("-._~!$&'()*+,;=:@/").find(ch) != std::string_view::npos;
    if (keep) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

void proxy_error(http::Exchange& ex, int status) {
  ex.resp.reset();
  ex.scratch.assign("{\"error\":\"");
  ex.scratch.append(http::reason_phrase(status));
  ex.scratch.append("\",\"request_id\":\"");
  ex.scratch.append(ex.req.request_id);  // [A-Za-z0-9._:-] only: nothing to escape
  ex.scratch.append("\"}\n");
  ex.resp.status = status;
  ex.resp.content_type = "application/json";
  ex.resp.cache_control = "no-store";
  ex.resp.body.kind = http::Body::Kind::kMemory;
  ex.resp.body.data = ex.scratch;
}

namespace {

bool credentials(const http::Request& req) {
  return req.headers.find("Authorization") || req.headers.find("Cookie");
}

}  // namespace

void answer_from(http::Exchange& ex, std::shared_ptr<const cache::CachedResponse> r,
                 std::int64_t age, std::string_view cache_status) {
  http::Response& resp = ex.resp;
  resp.reset();
  resp.status = r->status;
  for (const auto& [k, v] : r->headers) resp.headers.add(k, v);
  std::string& buf = ex.scratch2;  // Age lives here; cache_status may too (it comes first)
  std::size_t at = buf.size();
  http::append_number(buf, age);
  resp.headers.add("Age", std::string_view(buf).substr(at));
  resp.headers.add("Cache-Status", cache_status);
  // A conditional request answered from the copy: If-None-Match, else If-Modified-Since.
  std::string_view inm = ex.req.headers.list("If-None-Match", ex.header_buf);
  std::string_view etag = r->header("ETag");
  bool not_modified = false;
  if (r->status / 100 != 2) {
    // (a stored 404 or 301 answers as it is)
  } else if (!inm.empty()) {
    not_modified = !etag.empty() && http::etag_list_matches(inm, etag, false);
  } else if (auto ims =
                 http::parse_http_date(http::trim_ows(ex.req.headers.get("If-Modified-Since")))) {
    auto lm = http::parse_http_date(http::trim_ows(r->header("Last-Modified")));
    not_modified = lm && *lm <= *ims;
  }
  resp.body.kind = not_modified ? http::Body::Kind::kNone : http::Body::Kind::kMemory;
  if (not_modified)
    resp.status = 304;
  else
    resp.body.data = r->body;
  resp.body.keep = std::move(r);
}

void cache_key(const http::Request& req, bool sort, const std::vector<std::string>& ignore,
               std::string& out, std::string& scratch) {
  std::string_view proto =
      req.peer_trusted ? http::trim_ows(req.headers.get("X-Forwarded-Proto")) : std::string_view{};
  if (proto != "http" && proto != "https") proto = req.tls ? "https" : "http";
  out.assign(proto).append("://");
  std::string_view host = http::trim_ows(req.headers.get("Host"));
  for (char c : host.empty() ? req.host : host) out.push_back(http::ascii_lower(c));
  scratch.clear();
  if (http::normalize_path(req.raw_path, scratch) != http::PathError::kOk) scratch = req.path;
  append_encoded_path(out, scratch);
  if (req.query.empty()) return;
  if (!sort && ignore.empty()) {
    out.append("?").append(req.query);
    return;
  }
  // (Only routes that ask for it pay for this.)
  std::vector<std::string_view> params;
  std::string_view q = req.query;
  while (!q.empty()) {
    std::size_t amp = q.find('&');
    std::string_view p = q.substr(0, amp);
    std::string_view name = p.substr(0, p.find('='));
    bool skip = p.empty();
    for (const auto& i : ignore) skip = skip || name == i;
    if (!skip) params.push_back(p);
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  if (sort) std::sort(params.begin(), params.end());
  for (std::size_t i = 0; i < params.size(); ++i) out.append(i ? "&" : "?").append(params[i]);
}

bool url_cache_key(std::string_view url, std::string& out) {
  std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return false;
  std::string_view s = url.substr(0, scheme);
  if (s != "http" && s != "https") return false;
  std::string_view rest = url.substr(scheme + 3);
  std::size_t slash = rest.find('/');
  std::string_view host = rest.substr(0, slash);
  std::string_view target = slash == std::string_view::npos ? "/" : rest.substr(slash);
  std::string_view path, query;
  http::split_target(target, path, query);
  std::string norm;
  if (host.empty() || http::normalize_path(path, norm) != http::PathError::kOk) return false;
  out.assign(s).append("://");
  for (char c : host) out.push_back(http::ascii_lower(c));
  append_encoded_path(out, norm);
  if (!query.empty()) out.append("?").append(query);
  return true;
}

bool serve_from_cache(http::Exchange& ex, const ProxyOptions& o,
                      std::shared_ptr<const cache::CachedResponse>& stale, bool& refresh) {
  refresh = false;
  const http::Request& req = ex.req;
  auto req_cc = cache::CacheControl::parse(req.headers.list("Cache-Control", ex.header_buf));
  if (req_cc.no_cache || req_cc.no_store) return false;
  if (http::iequals(http::trim_ows(req.headers.get("Pragma")), "no-cache")) return false;
  // The variant for the coding edge would send this client, else the identity one when edge
  // would not compress the response anyway.
  http::Coding pref = http::Coding::kIdentity;
  if (o.compress.enabled)
    pref = http::negotiate_coding(req.headers.list("Accept-Encoding", ex.header_buf),
                                  o.compress.codings.data(), o.compress.codings.size(),
                                  o.compress.coding_set());
  std::string_view coding =
      pref == http::Coding::kIdentity ? std::string_view{} : http::coding_name(pref);
  auto r = o.cache->lookup(ex.forward.cache_key, req.headers, coding);
  if (!r && !coding.empty()) {
    r = o.cache->lookup(ex.forward.cache_key, req.headers, {});
    if (r && r->compressible) r = nullptr;  // fetched again: the compressed variant is wanted
  }
  if (!r) return false;
  // One user's response never reaches another: with credentials, only what says it is shared
  // (or nothing, with credentials = "never").
  if (credentials(req) &&
      (o.cache_credentials_never || !(r->facts.cc.public_ || r->facts.cc.s_maxage)))
    return false;
  std::time_t now = ex.now ? ex.now : std::time(nullptr);
  std::int64_t age = r->age(now);
  bool usable = age < r->lifetime && !r->facts.cc.no_cache &&
                !(req_cc.max_age && age > *req_cc.max_age) &&
                !(req_cc.min_fresh && r->lifetime - age < *req_cc.min_fresh);
  if (!usable) {
    // stale-while-revalidate (RFC 5861): within its window, and when no fetch of it is running
    // yet, the stale copy answers now and this request refreshes it in the background.
    const auto& cc = r->facts.cc;
    bool swr = cc.stale_while_revalidate && !cc.must_revalidate && !cc.proxy_revalidate &&
               !cc.no_cache && !req_cc.max_age && !req_cc.min_fresh &&
               age - r->lifetime <= *cc.stale_while_revalidate && !req.has_body &&
               req.method == http::Method::kGet;
    if (!swr) {
      stale = std::move(r);  // revalidated upstream; stands in if the upstream fails
      return false;
    }
    // The first such request refreshes it; while that runs, the others get the stale copy too.
    refresh = o.cache->lead(ex.forward.cache_key, ex.worker_id);
    stale = r;
    std::string& buf = ex.scratch2;
    buf.reserve(96);
    buf.assign("edge; hit; ttl=");
    http::append_number(buf, r->lifetime - age);
    buf.append("; detail=stale-while-revalidate");
    std::size_t len = buf.size();
    answer_from(ex, std::move(r), age, std::string_view(buf).substr(0, len));
    return true;
  }
  // Cache-Status (RFC 9211) first in the buffer, Age after it (answer_from appends): reserved
  // so that the second append cannot move the first one's view.
  std::string& buf = ex.scratch2;
  buf.reserve(96);
  buf.assign("edge; hit; ttl=");
  http::append_number(buf, r->lifetime - age);
  std::size_t len = buf.size();
  answer_from(ex, std::move(r), age, std::string_view(buf).substr(0, len));
  return true;
}

void ProxyHandler::handle(http::Exchange& ex) const {
  const http::Request& req = ex.req;
  if (req.method == http::Method::kConnect) {
    ex.set_static(405, "text/plain; charset=utf-8", "405 Method Not Allowed\n");
    return;
  }
  http::Forward& f = ex.forward;
  f.reset();
  bool upgrade_request = req.headers.find("Upgrade") != nullptr;
  if (o_.cache && !upgrade_request) {
    // The URL's key: scheme, host and path (normalised) with the query as received.
    cache_key(req, o_.cache_sort_query, o_.cache_ignore_params, f.cache_key, ex.header_buf);
    if (req.method == http::Method::kGet || req.method == http::Method::kHead) {
      std::shared_ptr<const cache::CachedResponse> stale;
      bool refresh = false;
      bool answered = serve_from_cache(ex, o_, stale, refresh);
      if (answered && !refresh) return;
      f.cache_store = req.method == http::Method::kGet;
      f.cache_request_time = ex.now ? ex.now : std::time(nullptr);
      if (refresh) {
        // Answered with the stale copy; the forward below is for the background refresh, which
        // holds the lead serve_from_cache took (GET only).
        f.cache_refresh = true;
        f.cache_lead = true;
      } else if (req.method == http::Method::kGet && !req.has_body && !ex.cache_waited &&
                 !req.headers.find("Authorization") && !req.headers.find("Cookie") &&
                 !req.headers.find("Range") && !req.headers.find("If-None-Match") &&
                 !req.headers.find("If-Modified-Since")) {
        // Coalescing: one fetch per key at a time, the other misses wait for its outcome.
        if (o_.cache->lead(f.cache_key, ex.worker_id)) {
          f.cache_lead = true;
        } else {
          f.cache_wait = true;
          return;  // no pool: the runtime parks the request until the fetch is done
        }
      }
      if (stale) {
        f.cache_stale = stale;
        // Its validators go up unless the client sent its own (then a 304 is the client's).
        std::string_view etag = stale->header("ETag");
        std::string_view lm = stale->header("Last-Modified");
        bool own = !f.cache_refresh &&
                   (req.headers.find("If-None-Match") || req.headers.find("If-Modified-Since"));
        if (!own && (!etag.empty() || !lm.empty())) {
          f.cache_revalidating = true;
          if (!etag.empty()) add_line(f.headers, "If-None-Match", etag);
          if (!lm.empty()) add_line(f.headers, "If-Modified-Since", lm);
        }
      }
    } else if (req.method != http::Method::kOptions && req.method != http::Method::kTrace) {
      f.cache_invalidate = true;  // POST, PUT, PATCH, DELETE… (RFC 9111 4.4)
    }
  }
  f.pool = o_.pool.get();

  // Target: the normalised path (after any rewrite), minus strip_prefix, re-encoded, + query.
  std::string_view path = req.path;
  if (!o_.strip_prefix.empty() && path.starts_with(o_.strip_prefix) &&
      (path.size() == o_.strip_prefix.size() || path[o_.strip_prefix.size()] == '/' ||
       o_.strip_prefix.back() == '/')) {
    path.remove_prefix(o_.strip_prefix.size());
  }
  if (path.empty() || path.front() != '/') f.target.push_back('/');
  append_encoded_path(f.target, path);
  if (!req.query.empty()) f.target.append("?").append(req.query);

  std::string_view host_field = http::trim_ows(req.headers.get("Host"));
  switch (o_.host_mode) {
    case ProxyOptions::HostMode::kPass:
      f.host.assign(host_field.empty() ? req.host : host_field);
      break;
    case ProxyOptions::HostMode::kFixed:
      f.host = o_.host;
      break;
    case ProxyOptions::HostMode::kUpstream:
      break;  // the runtime writes the chosen server's address
  }

  bool upgrade = o_.websocket && req.headers.has_token("Upgrade", "websocket") &&
                 req.headers.has_token("Connection", "upgrade");
  std::string& h = f.headers;
  std::string_view incoming_xff, incoming_proto;
  for (const http::HeaderField& field : req.headers) {
    std::string_view n = field.name;
    // Hop-by-hop, and those the Connection field names (RFC 9110 7.6.1). (A tunnelled
    // Upgrade is written again below.)
    if (is_hop_by_hop(n) || req.headers.has_token("Connection", n)) continue;
    if (f.cache_refresh &&
        (http::iequals(n, "Range") || http::iequals(n, "If-Range") ||
         http::iequals(n, "If-None-Match") || http::iequals(n, "If-Modified-Since") ||
         http::iequals(n, "If-Match") || http::iequals(n, "If-Unmodified-Since")))
      continue;  // the background refresh asks for the whole representation, with our validators
    if (http::iequals(n, "Host") || http::iequals(n, "Content-Length") ||
        http::iequals(n, "Expect") || http::iequals(n, "X-Real-IP") ||
        http::iequals(n, "X-Request-Id") || http::iequals(n, "X-Forwarded-Host"))
      continue;
    if (http::iequals(n, "X-Forwarded-For")) {
      if (req.peer_trusted) {
        // Several lines form one list; keep them in order.
        if (incoming_xff.empty()) incoming_xff = req.headers.list("X-Forwarded-For", ex.header_buf);
      }
      continue;
    }
    if (http::iequals(n, "X-Forwarded-Proto")) {
      if (req.peer_trusted && incoming_proto.empty()) incoming_proto = http::trim_ows(field.value);
      continue;
    }
    if (!req.peer_trusted &&
        (http::iequals(n, "CF-Connecting-IP") || http::iequals(n, "Forwarded")))
      continue;  // an untrusted client's claim about itself is not passed on
    add_line(h, n, field.value);
  }
  if (upgrade) add_line(h, "Upgrade", "websocket");
  h.append("X-Forwarded-For: ");
  if (!incoming_xff.empty()) h.append(incoming_xff).append(", ");
  h.append(req.peer_ip.empty() ? req.client_ip : req.peer_ip).append("\r\n");
  bool proto_ok = incoming_proto == "http" || incoming_proto == "https";
  add_line(h, "X-Forwarded-Proto", proto_ok ? incoming_proto : (req.tls ? "https" : "http"));
  if (!host_field.empty()) add_line(h, "X-Forwarded-Host", host_field);
  add_line(h, "X-Real-IP", req.client_ip);
  add_line(h, "X-Request-Id", req.request_id);

  f.upgrade = upgrade;
  f.hash = fnv1a(req.client_ip);
  switch (req.method) {
    case http::Method::kGet:
    case http::Method::kHead:
    case http::Method::kOptions:
    case http::Method::kPut:
    case http::Method::kDelete:
    case http::Method::kTrace:
      f.idempotent = true;
      break;
    default:
      f.idempotent = false;
  }
}

http::metrics::CacheResult cache_result(const http::Response& resp) {
  using R = http::metrics::CacheResult;
  std::string_view cs = resp.headers.get("Cache-Status");
  if (!cs.starts_with("edge;")) return R::kNone;
  if (cs.find("; hit") != std::string_view::npos)
    return cs.find("detail=stale") != std::string_view::npos ? R::kStale : R::kHit;
  if (cs.find("fwd=stale; fwd-status=304") != std::string_view::npos) return R::kRevalidated;
  if (cs.find("fwd=request") != std::string_view::npos ||
      cs.find("fwd=method") != std::string_view::npos ||
      cs.find("fwd=bypass") != std::string_view::npos)
    return R::kBypass;
  return R::kMiss;  // fwd=miss, fwd=stale (a new response replaced the copy)
}

}  // namespace edge::routes
