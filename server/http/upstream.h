// Upstream pools as the proxy (routes/) and the runtime (server/) both see them: the configured
// servers and their shared health state (atomics, written by any worker and the health checker),
// and the forward request a handler hands to the runtime. No sockets here.
#pragma once
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace edge::http {

namespace metrics {
struct UpstreamStats;
}

struct UpstreamServer {
  std::string address;  // as written: "127.0.0.1:5000", "api.example.com:443"
  std::string host;     // host part (for Host, SNI)
  int port = 0;
  unsigned weight = 1;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;

  // Shared state. `checked_up`: the active health check's verdict (true until it says otherwise).
  // Passive: failures counted in a window; enough of them take the server out until down_until.
  std::atomic<bool> checked_up{true};
  std::atomic<int> check_streak{0};  // >0 successes in a row, <0 failures in a row
  std::atomic<std::uint32_t> fails{0};
  std::atomic<std::int64_t> window_start_ms{0};
  std::atomic<std::int64_t> down_until_ms{0};
  std::atomic<int> active{0};               // requests in flight, all workers (least_conn)
  metrics::UpstreamStats* stats = nullptr;  // counters (the process-wide registry's block)

  bool available(std::int64_t now_ms) const {
    return checked_up.load(std::memory_order_relaxed) &&
           now_ms >= down_until_ms.load(std::memory_order_relaxed);
  }
};

struct UpstreamPool {
  enum class Balance : unsigned char { kRoundRobin, kLeastConn, kIpHash };
  std::string name;
  int line = 0;
  unsigned index = 0;  // position in the config's pool list (per-worker state is indexed by it)
  std::vector<std::unique_ptr<UpstreamServer>> servers;
  Balance balance = Balance::kRoundRobin;
  unsigned keepalive = 32;  // idle connections per server per worker
  std::chrono::milliseconds keepalive_timeout{60000};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds header_timeout{60000};
  std::chrono::milliseconds read_timeout{60000};
  std::chrono::milliseconds write_timeout{60000};
  unsigned tries = 3;

  // Active health check (interval 0: none).
  std::string health_path;
  std::chrono::milliseconds health_interval{0};
  std::chrono::milliseconds health_timeout{2000};
  int rise = 2;
  int fall = 3;

  // HTTPS upstreams: the client TLS context (a tls::ClientContext, opaque at this level) and the
  // name for SNI and certificate verification (empty: each server's host).
  std::shared_ptr<const void> tls;
  std::string tls_server_name;

  // Passive health.
  unsigned max_fails = 3;
  std::chrono::milliseconds fail_window{10000};
  std::chrono::milliseconds fail_timeout{30000};

  // Milliseconds on the clock the runtime's health state uses (steady clock).
  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  std::size_t available_count() const {
    std::int64_t now = now_ms();
    std::size_t n = 0;
    for (const auto& s : servers) n += s->available(now) ? 1 : 0;
    return n;
  }
  // A failure seen while proxying (connect error, timeout, reset, malformed response). Returns
  // true when it took the server out.
  bool note_failure(UpstreamServer& s) const {
    if (max_fails == 0) return false;
    std::int64_t now = now_ms();
    std::int64_t start = s.window_start_ms.load(std::memory_order_relaxed);
    if (now - start > fail_window.count()) {
      s.window_start_ms.store(now, std::memory_order_relaxed);
      s.fails.store(1, std::memory_order_relaxed);
      if (max_fails > 1) return false;
    } else if (s.fails.fetch_add(1, std::memory_order_relaxed) + 1 < max_fails) {
      return false;
    }
    s.fails.store(0, std::memory_order_relaxed);
    s.down_until_ms.store(now + fail_timeout.count(), std::memory_order_relaxed);
    return true;
  }
};

// What a proxy handler asks of the runtime: forward the exchange's request to `pool`. The
// handler writes the request's header lines (re-serialised, filtered) into `headers`; the runtime
// adds the request line, Host (when `host` is empty: the chosen server's host:port), the body
// framing, and Connection.
struct Forward {
  const UpstreamPool* pool = nullptr;
  std::string target;       // origin-form path + query sent upstream
  std::string headers;      // "Name: value\r\n" lines
  std::string host;         // Host sent upstream; empty: the server's address
  unsigned hash = 0;        // ip_hash key
  bool upgrade = false;     // tunnel an Upgrade: websocket
  bool idempotent = false;  // may be replayed on another server after a reset
  // The route's cache: the key of this request's URL; `cache_store`: the response may be stored
  // (a cacheable request that missed); `cache_invalidate`: an unsafe method that, answered with
  // success, drops the stored URL.
  std::string cache_key;
  bool cache_store = false;
  bool cache_invalidate = false;
  std::int64_t cache_request_time = 0;
  // A stored response that is stale (a cache::CachedResponse, opaque here): served if the
  // upstream fails within its stale-if-error grace; `cache_revalidating`: its validators went up
  // with the request, so a 304 refreshes it.
  std::shared_ptr<const void> cache_stale;
  bool cache_revalidating = false;
  // Coalescing: this request leads the fetch of its key (the runtime reports when it ends), or
  // another one does and this one waits for it (no pool then).
  bool cache_lead = false;
  bool cache_wait = false;
  // stale-while-revalidate: the response (the stale copy) is already in ex.resp; the runtime
  // refreshes the URL in the background with this forward.
  bool cache_refresh = false;

  void reset() {
    pool = nullptr;
    target.clear();
    headers.clear();
    host.clear();
    cache_key.clear();
    hash = 0;
    upgrade = idempotent = cache_store = cache_invalidate = cache_revalidating = false;
    cache_lead = cache_wait = cache_refresh = false;
    cache_request_time = 0;
    cache_stale.reset();
  }
};

}  // namespace edge::http
