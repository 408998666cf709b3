// The proxy's request phase: the upstream target and header lines are re-serialised from the
// parsed request (never copied raw), so nothing ambiguous in the client's bytes reaches the
// upstream; hop-by-hop fields go, the X-Forwarded-* family is rebuilt.
#include "routes/proxy.h"

#include "server/http/status.h"
#include "server/http/token.h"

namespace edge::routes {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && http::iequals(s.substr(0, prefix.size()), prefix);
}

// Named in the request's Connection field (RFC 9110 7.6.1): hop-by-hop too.
bool named_by_connection(const http::HeaderList& h, std::string_view name) {
  for (const http::HeaderField& f : h) {
    if (!http::iequals(f.name, "Connection")) continue;
    bool found = false;
    http::for_each_list_element(f.value, [&](std::string_view el) {
      if (http::iequals(el, name)) found = true;
    });
    if (found) return true;
  }
  return false;
}

bool has_token(const http::HeaderList& h, std::string_view field, std::string_view token) {
  for (const http::HeaderField& f : h) {
    if (!http::iequals(f.name, field)) continue;
    bool found = false;
    http::for_each_list_element(f.value, [&](std::string_view el) {
      if (http::iequals(el, token)) found = true;
    });
    if (found) return true;
  }
  return false;
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

void ProxyHandler::handle(http::Exchange& ex) const {
  const http::Request& req = ex.req;
  if (req.method == http::Method::kConnect) {
    ex.set_static(405, "text/plain; charset=utf-8", "405 Method Not Allowed\n");
    return;
  }
  http::Forward& f = ex.forward;
  f.reset();
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

  bool upgrade = o_.websocket && has_token(req.headers, "Upgrade", "websocket") &&
                 has_token(req.headers, "Connection", "upgrade");
  std::string& h = f.headers;
  std::string_view incoming_xff, incoming_proto;
  for (const http::HeaderField& field : req.headers) {
    std::string_view n = field.name;
    if (is_hop_by_hop(n) || named_by_connection(req.headers, n)) {
      if (upgrade && http::iequals(n, "Upgrade")) continue;  // the runtime writes it
      continue;
    }
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

}  // namespace edge::routes
