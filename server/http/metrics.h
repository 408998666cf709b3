// Counters for /metrics and /status.json, as the code that counts sees them. Each block of
// counters is split into one slice per worker: a worker writes only its own slice (a relaxed load
// and store, no locked instruction, no shared cache line), and the admin listener reads every
// slice. Blocks live in the process-wide registry (server/metrics.h) for the process's life, so a
// reload that keeps a route or a server keeps its counts.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace edge::http::metrics {

// Written by one thread, read by any.
struct Counter {
  std::atomic<std::uint64_t> v{0};
  void add(std::uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(std::uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

// Latency buckets (upper bounds, seconds): Prometheus' defaults with finer steps below 5 ms (an
// edge answers in microseconds) and 2 s (the platform's response-time alert).
inline constexpr double kBuckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05,   0.1,     0.25,   0.5,   1,      2,     5,    10};
inline constexpr int kBucketCount = sizeof kBuckets / sizeof kBuckets[0];

struct Histogram {
  Counter buckets[kBucketCount + 1];  // per bucket (not cumulative); the last is +Inf
  Counter sum_us;
  void observe(std::uint64_t us) {
    static constexpr std::uint64_t kLimitsUs[] = {
        100,   250,    500,    1000,   2500,    5000,    10000,   25000,
        50000, 100000, 250000, 500000, 1000000, 2000000, 5000000, 10000000};
    static_assert(sizeof kLimitsUs / sizeof kLimitsUs[0] == kBucketCount);
    int i = 0;
    while (i < kBucketCount && us > kLimitsUs[i]) ++i;
    buckets[i].add();
    sum_us.add(us);
  }
};

inline int status_class(int status) {  // 0..4 for 1xx..5xx
  int c = status / 100 - 1;
  return c < 0 ? 0 : (c > 4 ? 4 : c);
}

enum class CacheResult : unsigned char { kNone, kHit, kStale, kRevalidated, kMiss, kBypass };
inline constexpr const char* kCacheResultNames[] = {"",     "hit",   "stale", "revalidated",
                                                    "miss", "bypass"};
enum class UpstreamError : unsigned char { kConnect, kTimeout, kReset, kBadResponse };
inline constexpr const char* kUpstreamErrorNames[] = {"connect", "timeout", "reset",
                                                      "bad_response"};

struct RouteCounters {
  Counter by_class[5];
  Histogram latency;
  Counter body_in, body_out;
  Counter limited;
  Counter cache[6];  // by CacheResult (kNone unused)
};

struct UpstreamCounters {
  Counter by_class[5];
  Counter errors[4];  // by UpstreamError
  Histogram latency;  // to the response head
};

struct ListenerCounters {
  Counter opened, closed, accepted, refused_per_ip, refused_total;
  Counter tls_handshakes, tls_resumptions, tls_errors;
};

// A block: one slice per worker, each on its own cache lines.
template <class T>
class PerWorker {
 public:
  explicit PerWorker(unsigned workers)
      : n_(workers ? workers : 1), slices_(std::make_unique<Slice[]>(n_)) {}
  T& at(unsigned worker) { return slices_[worker < n_ ? worker : 0].v; }
  const T& at(unsigned worker) const { return slices_[worker < n_ ? worker : 0].v; }
  unsigned size() const { return n_; }

 private:
  struct alignas(64) Slice {
    T v;
  };
  unsigned n_;
  std::unique_ptr<Slice[]> slices_;
};

struct RouteStats : PerWorker<RouteCounters> {
  RouteStats(std::string l, unsigned workers) : PerWorker(workers), label(std::move(l)) {}
  std::string label;
  std::atomic<bool> cached{false};  // some config gave the route a cache
};

struct UpstreamStats : PerWorker<UpstreamCounters> {
  UpstreamStats(std::string p, std::string s, unsigned workers)
      : PerWorker(workers), pool(std::move(p)), server(std::move(s)) {}
  std::string pool, server;
};

struct ListenerStats : PerWorker<ListenerCounters> {
  ListenerStats(std::string k, unsigned workers)
      : PerWorker(workers), key(k), label(std::move(k)) {}
  std::string key;    // the registry's: the address as configured (and its rank among equals)
  std::string label;  // in metrics: the bound address
};

}  // namespace edge::http::metrics
