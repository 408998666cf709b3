// The process-wide metrics registry: blocks of per-worker counters for routes, upstream servers
// and listeners (created when a config names them, kept for the process's life), process counters,
// and the two renderings the admin listener serves: Prometheus text and the status page's JSON.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include "server/http/metrics.h"

namespace edge {
struct Config;
}

namespace edge::metrics {

using http::metrics::Counter;
using http::metrics::ListenerStats;
using http::metrics::RouteStats;
using http::metrics::UpstreamStats;

struct ProcessCounters {
  Counter rate_limit_store_errors;
};

class Registry {
 public:
  // The number of workers (slices per block). Set once before workers start; blocks made before
  // (config checks) get at least this many.
  void set_workers(unsigned n);
  unsigned workers() const { return workers_.load(std::memory_order_relaxed); }

  RouteStats* route(const std::string& label);
  RouteStats* unrouted() { return route("-"); }
  UpstreamStats* upstream(const std::string& pool, const std::string& server);
  ListenerStats* listener(const std::string& key);        // labelled `key` until named
  void name(ListenerStats* l, const std::string& label);  // the bound address
  http::metrics::PerWorker<ProcessCounters>& process() { return process_; }

  void reload_done(bool ok);
  std::uint64_t reloads(bool ok) const { return ok ? reloads_ok_.load() : reloads_failed_.load(); }

  // Prometheus text format 0.0.4 and the status document, for the config now serving.
  std::string prometheus(const Config& cfg) const;
  std::string status_json(const Config& cfg) const;

 private:
  std::atomic<unsigned> workers_{1};
  mutable std::mutex mu_;  // the block lists (load time and renderings only)
  std::deque<RouteStats> routes_;
  std::deque<UpstreamStats> upstreams_;
  std::deque<ListenerStats> listeners_;
  http::metrics::PerWorker<ProcessCounters> process_{256};  // ([server] workers <= 256)
  std::atomic<std::uint64_t> reloads_ok_{0}, reloads_failed_{0};
  std::atomic<bool> last_reload_ok_{true};
  std::atomic<bool> reloaded_{false};
  std::atomic<std::int64_t> last_reload_unix_ms_{0};
  const std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
  const std::chrono::steady_clock::time_point started_steady_ = std::chrono::steady_clock::now();
};

Registry& registry();

// Upper-bound quantile estimate from histogram buckets, as Prometheus' histogram_quantile
// (linear within a bucket). `counts` are per bucket (kBucketCount + 1, the last +Inf). Seconds.
double quantile(const std::uint64_t* counts, double q);

}  // namespace edge::metrics
