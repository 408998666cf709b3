// The admin routes (see admin.h). Not a hot path: documents are built per request.
#include "server/admin.h"

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "routes/cache_purge.h"
#include "routes/health.h"
#include "server/config.h"
#include "server/http/token.h"
#include "server/metrics.h"
#include "status_page.h"

namespace edge::admin {
namespace {

// base64(sha256(text)), for a CSP source expression.
std::string sha256_base64(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  unsigned char out[4 * EVP_MAX_MD_SIZE / 3 + 4];
  int n = EVP_EncodeBlock(out, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

// The text inside the first <tag>…</tag> of the page ("" when absent).
std::string_view element_text(std::string_view page, std::string_view tag) {
  std::string open = "<" + std::string(tag) + ">";
  std::string close = "</" + std::string(tag) + ">";
  std::size_t a = page.find(open);
  if (a == std::string_view::npos) return {};
  a += open.size();
  std::size_t b = page.find(close, a);
  return b == std::string_view::npos ? std::string_view{} : page.substr(a, b - a);
}

void common_headers(http::Exchange& ex) {
  ex.resp.cache_control = "no-store";
  ex.resp.headers.add("X-Content-Type-Options", "nosniff");
  ex.resp.headers.add("X-Frame-Options", "DENY");
  ex.resp.headers.add("Referrer-Policy", "no-referrer");
}

// Every admin answer: the token (unless the path is open), then the handler, then the common
// headers.
class AdminHandler : public http::Handler {
 public:
  AdminHandler(const Config& cfg, bool needs_token) : cfg_(cfg), needs_token_(needs_token) {}
  void handle(http::Exchange& ex) const final {
    if (needs_token_ && !cfg_.admin_token.empty()) {
      std::string_view auth = http::trim_ows(ex.req.headers.get("Authorization"));
      bool bearer = auth.size() > 7 && http::iequals(auth.substr(0, 7), "bearer ");
      if (!bearer || !same(http::trim_ows(auth.substr(7)), cfg_.admin_token)) {
        ex.set_static(401, "application/json", "{\"error\":\"Unauthorized\"}\n");
        ex.resp.headers.add("WWW-Authenticate", "Bearer realm=\"edge admin\"");
        common_headers(ex);
        return;
      }
    }
    serve(ex);
    common_headers(ex);
  }

 protected:
  virtual void serve(http::Exchange& ex) const = 0;
  // GET and HEAD only: false after answering 405.
  static bool readable(http::Exchange& ex) {
    if (ex.req.method == http::Method::kGet || ex.req.method == http::Method::kHead) return true;
    ex.set_static(405, "application/json", "{\"error\":\"Method Not Allowed\"}\n");
    ex.resp.headers.add("Allow", "GET, HEAD");
    return false;
  }
  const Config& cfg_;

 private:
  static bool same(std::string_view a, std::string_view b) {  // constant time for equal lengths
    if (a.size() != b.size()) return false;
    unsigned char d = 0;
    for (std::size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
    return d == 0;
  }
  bool needs_token_;
};

class MetricsHandler : public AdminHandler {
 public:
  using AdminHandler::AdminHandler;
  const char* kind() const override { return "metrics"; }

 protected:
  void serve(http::Exchange& ex) const override {
    if (!readable(ex)) return;
    ex.set_text(200, "text/plain; version=0.0.4; charset=utf-8",
                metrics::registry().prometheus(cfg_));
  }
};

class StatusJsonHandler : public AdminHandler {
 public:
  using AdminHandler::AdminHandler;
  const char* kind() const override { return "status"; }

 protected:
  void serve(http::Exchange& ex) const override {
    if (!readable(ex)) return;
    ex.set_text(200, "application/json", metrics::registry().status_json(cfg_));
  }
};

class StatusPageHandler : public AdminHandler {
 public:
  explicit StatusPageHandler(const Config& cfg) : AdminHandler(cfg, false) {
    std::string_view page = kStatusPage;
    csp_ = "default-src 'none'; script-src 'sha256-" + sha256_base64(element_text(page, "script")) +
           "'; style-src 'sha256-" + sha256_base64(element_text(page, "style")) +
           "'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'";
  }
  const char* kind() const override { return "status page"; }

 protected:
  void serve(http::Exchange& ex) const override {
    if (!readable(ex)) return;
    ex.set_static(200, "text/html; charset=utf-8", kStatusPage);
    ex.resp.headers.add("Content-Security-Policy", csp_);
  }

 private:
  std::string csp_;
};

class NotFoundHandler : public AdminHandler {
 public:
  using AdminHandler::AdminHandler;
  const char* kind() const override { return "admin 404"; }

 protected:
  void serve(http::Exchange& ex) const override {
    ex.set_static(404, "application/json", "{\"error\":\"Not Found\"}\n");
  }
};

// A route handler (health, cache purge) behind the admin token and headers.
class Wrapped : public AdminHandler {
 public:
  Wrapped(const Config& cfg, bool needs_token, std::unique_ptr<http::Handler> inner)
      : AdminHandler(cfg, needs_token), inner_(std::move(inner)) {}
  const char* kind() const override { return inner_->kind(); }

 protected:
  void serve(http::Exchange& ex) const override { inner_->handle(ex); }

 private:
  std::unique_ptr<http::Handler> inner_;
};

void add(Config& cfg, routes::Route::Match match, std::string pattern,
         std::unique_ptr<http::Handler> h) {
  routes::Route r;
  r.match = match;
  r.pattern = std::move(pattern);
  r.label = "admin";
  r.handler = std::move(h);
  r.security.enabled = false;
  cfg.admin_routes.routes().push_back(std::move(r));
}

}  // namespace

void add_routes(Config& cfg) {
  using M = routes::Route::Match;
  add(cfg, M::kExact, "/metrics", std::make_unique<MetricsHandler>(cfg, true));
  add(cfg, M::kExact, "/status", std::make_unique<StatusPageHandler>(cfg));
  add(cfg, M::kExact, "/status.json", std::make_unique<StatusJsonHandler>(cfg, true));
  add(cfg, M::kExact, "/health",
      std::make_unique<Wrapped>(
          cfg, false,
          std::make_unique<routes::HealthHandler>(EDGE_VERSION, cfg.started, cfg.upstreams)));
  // (With a token the purge's own check is the same bearer token; without one, loopback only.)
  add(cfg, M::kExact, "/cache/purge",
      std::make_unique<Wrapped>(
          cfg, true,
          std::make_unique<routes::CachePurgeHandler>(cfg.cache_store, cfg.admin_token)));
  add(cfg, M::kAll, "", std::make_unique<NotFoundHandler>(cfg, true));
}

}  // namespace edge::admin
