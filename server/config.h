// The configuration snapshot: loaded from one TOML file, validated whole, immutable once built.
// Errors are reported as "file:line: what is wrong" and change nothing.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cache/store.h"
#include "routes/route_table.h"
#include "server/http/ip.h"
#include "server/http/metrics.h"
#include "server/http/upstream.h"
#include "tls/tls_context.h"

namespace edge {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ListenConfig {
  std::string address;  // as written (after ${VAR} expansion)
  std::string host;     // numeric address
  int port = 0;
  bool ipv6 = false;
  int line = 0;
  // The TLS context new connections use (null: plain HTTP); connections keep the context they
  // started with. A reload (SIGHUP) builds new contexts in a new snapshot, carrying the session
  // ticket keys of the listener with the same address over.
  struct TlsSlot {
    std::atomic<std::shared_ptr<const tls::TlsContext>> ctx;
  };
  std::shared_ptr<TlsSlot> tls;
  tls::TlsOptions tls_options;
  int tls_line = 0;
  bool https_redirect = false;  // answer every request (but /health) with a redirect to https://
  int https_port = 443;
  unsigned max_conns_per_ip = 0;  // concurrent connections per client address (0: no limit)
  bool admin = false;             // the [admin] listener: served by Config::admin_routes
  bool http2 = true;              // TLS: offer "h2" by ALPN
  bool h2c = false;               // plain: HTTP/2 with prior knowledge (the client's preface)
  http::metrics::ListenerStats* stats = nullptr;
};

struct ServerConfig {
  unsigned workers = 1;
  std::chrono::milliseconds grace_period{10000};
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds keepalive_timeout{75000};
  std::chrono::milliseconds send_timeout{60000};
  std::size_t max_request_line = 8 * 1024;
  std::size_t max_header_bytes = 32 * 1024;
  std::size_t max_headers = 100;
  std::string server_header = "samia-edge";
  http::IpRanges trusted_proxies;  // peers whose CF-Connecting-IP / X-Forwarded-For are believed
  std::string pid_file;            // written at start, removed at stop (edge --reload reads it)
  // Client connections open at once, all public listeners and workers together (the admin
  // listener is not counted); one more is closed as soon as it is accepted. "auto" (the default):
  // three quarters of the open-file limit, the rest left for upstreams, files and logs.
  std::uint64_t max_connections = 0;
};

// [http2]: the HTTP/2 codec's settings (every listener that speaks it).
struct Http2Config {
  std::uint32_t max_concurrent_streams = 128;
  std::uint32_t initial_window_size = 256 * 1024;  // per stream, for request bodies
  std::uint32_t connection_window = 1024 * 1024;   // all streams of a connection together
  std::uint32_t reset_burst = 1000;                // RST_STREAMs a client may send at once,
  std::uint32_t reset_rate = 33;                   // then per second (rapid reset)
};

struct LogConfig {
  std::string access = "stdout";  // stdout | stderr | off | path
  std::string error = "stderr";   // stderr | stdout | path
  std::string level = "info";
};

struct Config {
  std::string path;  // the file it came from
  ServerConfig server;
  Http2Config http2;
  LogConfig log;
  std::vector<ListenConfig> listeners;
  routes::SecurityPolicy security;
  routes::RouteTable routes;
  routes::RouteTable admin_routes;  // [admin]: metrics, status, health, purge
  std::string admin_token;          // [admin] token (empty: none)
  std::uint64_t generation = 1;     // 1 at start, +1 per reload
  std::vector<std::shared_ptr<http::UpstreamPool>> upstreams;  // [[upstream]], in file order
  routes::RateLimitSettings rate_limit;                        // [rate_limit]
  std::shared_ptr<cache::Store> cache_store;      // [cache]: shared by all workers and routes
  std::shared_ptr<routes::LocalLimiter> limiter;  // counters all workers share
  bool has_limits = false;                        // some route has rate_limit
  std::shared_ptr<routes::ConnCounter> conns_per_ip = std::make_shared<routes::ConnCounter>();
  // Public client connections open now ([server] max_connections), all workers.
  std::shared_ptr<std::atomic<std::uint64_t>> conns_total =
      std::make_shared<std::atomic<std::uint64_t>>(0);
  std::chrono::steady_clock::time_point started;

  // Human-readable summary of listeners and routes (for --check).
  std::string describe() const;
};

// Loads and validates a config file; throws ConfigError("file:line: problem").
// `previous` (a reload): what must outlive a reload is carried over from it — the per-IP
// connection counts, the rate-limit counters, the cache store (unless [cache] size changed),
// upstream servers' health, TLS session-ticket keys; settings that need a restart ([server]
// workers, [log] destinations, [rate_limit] store) keep their running values and are named in
// `warnings`.
std::shared_ptr<const Config> load_config(const std::string& path,
                                          std::chrono::steady_clock::time_point started,
                                          const Config* previous = nullptr,
                                          std::vector<std::string>* warnings = nullptr);

// "${VAR}" / "${VAR:-default}" expansion; throws std::runtime_error naming an unset variable.
std::string expand_env(std::string_view s);

// "10s", "500ms", "15m", "2h", "1d"; false when malformed.
bool parse_duration(std::string_view s, std::chrono::milliseconds& out);
// "8k", "32k", "1m", "1g" (powers of 1024) or plain bytes; false when malformed.
bool parse_size(std::string_view s, std::uint64_t& out);

}  // namespace edge
