// Metrics: the registry of counter blocks and its two renderings (not a hot path: the admin
// listener calls them; they sum every worker's slice).
#include "server/metrics.h"

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <span>

#include "server/config.h"

namespace edge::metrics {

namespace hm = http::metrics;

Registry& registry() {
  static Registry r;
  return r;
}

void Registry::set_workers(unsigned n) {
  if (n > workers_.load()) workers_.store(n);
}

RouteStats* Registry::route(const std::string& label) {
  std::lock_guard lock(mu_);
  for (auto& r : routes_)
    if (r.label == label) return &r;
  return &routes_.emplace_back(label, workers());
}

UpstreamStats* Registry::upstream(const std::string& pool, const std::string& server) {
  std::lock_guard lock(mu_);
  for (auto& u : upstreams_)
    if (u.pool == pool && u.server == server) return &u;
  return &upstreams_.emplace_back(pool, server, workers());
}

ListenerStats* Registry::listener(const std::string& key) {
  std::lock_guard lock(mu_);
  for (auto& l : listeners_)
    if (l.key == key) return &l;
  return &listeners_.emplace_back(key, workers());
}

void Registry::name(ListenerStats* l, const std::string& label) {
  std::lock_guard lock(mu_);
  l->label = label;
}

void Registry::reload_done(bool ok) {
  (ok ? reloads_ok_ : reloads_failed_).fetch_add(1);
  last_reload_ok_.store(ok);
  if (!ok) return;
  reloaded_.store(true);
  last_reload_unix_ms_.store(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count());
}

double quantile(const std::uint64_t* counts, double q) {
  std::uint64_t total = 0;
  for (int i = 0; i <= hm::kBucketCount; ++i) total += counts[i];
  if (total == 0) return 0;
  double rank = q * static_cast<double>(total);
  std::uint64_t seen = 0;
  for (int i = 0; i <= hm::kBucketCount; ++i) {
    if (static_cast<double>(seen + counts[i]) >= rank && counts[i] > 0) {
      if (i == hm::kBucketCount) return hm::kBuckets[hm::kBucketCount - 1];  // beyond the last
      double lo = i == 0 ? 0 : hm::kBuckets[i - 1];
      double hi = hm::kBuckets[i];
      return lo + (hi - lo) * (rank - static_cast<double>(seen)) / static_cast<double>(counts[i]);
    }
    seen += counts[i];
  }
  return hm::kBuckets[hm::kBucketCount - 1];
}

namespace {

// Sums one counter over a block's slices.
template <class Block, class F>
std::uint64_t sum(const Block& b, F field) {
  std::uint64_t n = 0;
  for (unsigned w = 0; w < b.size(); ++w) n += field(b.at(w)).get();
  return n;
}

void label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

class Text {
 public:
  explicit Text(std::string& out) : o_(out) {}
  void family(const char* name, const char* type, const char* help) {
    o_ += "# HELP ";
    o_ += name;
    o_ += ' ';
    o_ += help;
    o_ += "\n# TYPE ";
    o_ += name;
    o_ += ' ';
    o_ += type;
    o_ += '\n';
  }
  using Label = std::pair<const char*, std::string_view>;
  // name{k1="v1",k2="v2"[,le="…"]} value
  void sample(std::string_view name, std::span<const Label> labels, double value,
              const char* le = nullptr) {
    o_ += name;
    if (!labels.empty() || le) {
      o_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) o_ += ',';
        first = false;
        o_ += k;
        o_ += "=\"";
        label_value(o_, v);
        o_ += '"';
      }
      if (le) {
        o_ += first ? "le=\"" : ",le=\"";
        o_ += le;
        o_ += '"';
      }
      o_ += '}';
    }
    char num[48];
    if (value >= 0 && value < 1e18 &&
        value == static_cast<double>(static_cast<std::uint64_t>(value)))
      std::snprintf(num, sizeof num, " %llu\n",
                    static_cast<unsigned long long>(static_cast<std::uint64_t>(value)));
    else
      std::snprintf(num, sizeof num, " %.6f\n", value);
    o_ += num;
  }
  void sample(std::string_view name, std::initializer_list<Label> labels, double value) {
    sample(name, std::span<const Label>(labels.begin(), labels.size()), value);
  }
  // A histogram's _bucket, _sum and _count lines for one label set.
  template <class Block, class F>
  void histogram(const char* name, std::initializer_list<Label> labels, const Block& b, F hist) {
    std::span<const Label> ls(labels.begin(), labels.size());
    std::uint64_t counts[hm::kBucketCount + 1] = {};
    std::uint64_t sum_us = 0;
    for (unsigned w = 0; w < b.size(); ++w) {
      const hm::Histogram& h = hist(b.at(w));
      for (int i = 0; i <= hm::kBucketCount; ++i) counts[i] += h.buckets[i].get();
      sum_us += h.sum_us.get();
    }
    std::string bucket = std::string(name) + "_bucket";
    std::uint64_t cumulative = 0;
    char le[32];
    for (int i = 0; i <= hm::kBucketCount; ++i) {
      cumulative += counts[i];
      if (i < hm::kBucketCount)
        std::snprintf(le, sizeof le, "%g", hm::kBuckets[i]);
      else
        std::snprintf(le, sizeof le, "+Inf");
      sample(bucket, ls, static_cast<double>(cumulative), le);
    }
    sample(std::string(name) + "_sum", ls, static_cast<double>(sum_us) / 1e6);
    sample(std::string(name) + "_count", ls, static_cast<double>(cumulative));
  }

 private:
  std::string& o_;
};

constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

std::string iso_now() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[64];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return ts;
}

}  // namespace

std::string Registry::prometheus(const Config& cfg) const {
  std::string out;
  out.reserve(16 * 1024);
  Text t(out);
  std::lock_guard lock(mu_);
  double start = std::chrono::duration<double>(started_.time_since_epoch()).count();
  double uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_steady_).count();

  t.family("edge_build_info", "gauge", "The running edge's version.");
  t.sample("edge_build_info", {{"version", EDGE_VERSION}}, 1);
  t.family("edge_start_time_seconds", "gauge", "When the process started (Unix time).");
  t.sample("edge_start_time_seconds", {}, start);
  t.family("edge_uptime_seconds", "gauge", "Seconds since the process started.");
  t.sample("edge_uptime_seconds", {}, uptime);

  t.family("edge_http_requests_total", "counter", "Responses by route and status class.");
  for (const auto& r : routes_)
    for (int c = 0; c < 5; ++c)
      t.sample("edge_http_requests_total", {{"route", r.label}, {"class", kClasses[c]}},
               static_cast<double>(sum(
                   r, [c](auto& x) -> auto& { return x.by_class[c]; })));
  t.family("edge_http_request_duration_seconds", "histogram",
           "Time from the request head to the response handed to the connection (the whole "
           "body for streamed responses).");
  for (const auto& r : routes_)
    t.histogram(
        "edge_http_request_duration_seconds", {{"route", r.label}}, r,
        [](auto& x) -> auto& { return x.latency; });
  // A counter family with one sample per block of `blocks`, labelled `key`=its label.
  auto per_block = [&t](const char* name, const char* help, const auto& blocks, const char* key,
                        auto field) {
    t.family(name, "counter", help);
    for (const auto& b : blocks)
      t.sample(name, {{key, b.label}}, static_cast<double>(sum(b, field)));
  };
  per_block(
      "edge_http_request_body_bytes_total", "Request body bytes by route.", routes_, "route",
      [](auto& x) -> auto& { return x.body_in; });
  per_block(
      "edge_http_response_bytes_total", "Response body bytes by route.", routes_, "route",
      [](auto& x) -> auto& { return x.body_out; });
  per_block(
      "edge_rate_limited_total", "Requests refused by a rate limit (429).", routes_, "route",
      [](auto& x) -> auto& { return x.limited; });
  t.family("edge_rate_limit_store_errors_total", "counter",
           "Rate-limit decisions the shared store (Redis) could not make.");
  t.sample("edge_rate_limit_store_errors_total", {},
           static_cast<double>(sum(
               process_, [](auto& x) -> auto& { return x.rate_limit_store_errors; })));

  t.family("edge_connections_open", "gauge", "Client connections open, by listener.");
  for (const auto& l : listeners_) {
    std::uint64_t opened = sum(
        l, [](auto& x) -> auto& { return x.opened; });
    std::uint64_t closed = sum(
        l, [](auto& x) -> auto& { return x.closed; });
    t.sample("edge_connections_open", {{"listener", l.label}},
             static_cast<double>(opened > closed ? opened - closed : 0));
  }
  per_block(
      "edge_connections_accepted_total", "Client connections accepted.", listeners_, "listener",
      [](auto& x) -> auto& { return x.accepted; });
  t.family("edge_connections_refused_total", "counter",
           "Connections closed at accept (max_conns_per_ip, max_connections).");
  for (const auto& l : listeners_) {
    t.sample("edge_connections_refused_total", {{"listener", l.label}, {"reason", "per_ip"}},
             static_cast<double>(sum(
                 l, [](auto& x) -> auto& { return x.refused_per_ip; })));
    t.sample("edge_connections_refused_total", {{"listener", l.label}, {"reason", "total"}},
             static_cast<double>(sum(
                 l, [](auto& x) -> auto& { return x.refused_total; })));
  }
  per_block(
      "edge_tls_handshakes_total", "TLS handshakes completed.", listeners_, "listener",
      [](auto& x) -> auto& { return x.tls_handshakes; });
  per_block(
      "edge_tls_resumptions_total", "TLS handshakes that resumed a session.", listeners_,
      "listener", [](auto& x) -> auto& { return x.tls_resumptions; });
  per_block(
      "edge_tls_handshake_errors_total", "TLS handshakes that failed.", listeners_, "listener",
      [](auto& x) -> auto& { return x.tls_errors; });

  t.family("edge_cache_requests_total", "counter", "Requests to cached routes by cache result.");
  for (const auto& r : routes_) {
    if (!r.cached.load()) continue;
    for (int k = 1; k <= 5; ++k)
      t.sample("edge_cache_requests_total",
               {{"route", r.label}, {"result", hm::kCacheResultNames[k]}},
               static_cast<double>(sum(
                   r, [k](auto& x) -> auto& { return x.cache[k]; })));
  }
  cache::Store::Stats cs{0, 0, 0, 0, 0};
  if (cfg.cache_store) cs = cfg.cache_store->stats();
  t.family("edge_cache_evictions_total", "counter", "Stored responses dropped to make room.");
  t.sample("edge_cache_evictions_total", {}, static_cast<double>(cs.evictions));
  t.family("edge_cache_purged_total", "counter", "Stored responses dropped by purges.");
  t.sample("edge_cache_purged_total", {}, static_cast<double>(cs.purged));
  t.family("edge_cache_bytes", "gauge", "Bytes held by the cache.");
  t.sample("edge_cache_bytes", {}, static_cast<double>(cs.bytes));
  t.family("edge_cache_objects", "gauge", "Responses held by the cache.");
  t.sample("edge_cache_objects", {}, static_cast<double>(cs.entries));
  t.family("edge_cache_capacity_bytes", "gauge", "The cache's size limit ([cache] size).");
  t.sample("edge_cache_capacity_bytes", {}, static_cast<double>(cs.capacity));

  t.family("edge_upstream_requests_total", "counter",
           "Upstream responses by server and status class.");
  for (const auto& u : upstreams_)
    for (int c = 0; c < 5; ++c)
      t.sample("edge_upstream_requests_total",
               {{"pool", u.pool}, {"server", u.server}, {"class", kClasses[c]}},
               static_cast<double>(sum(
                   u, [c](auto& x) -> auto& { return x.by_class[c]; })));
  t.family("edge_upstream_errors_total", "counter", "Upstream failures by server and kind.");
  for (const auto& u : upstreams_)
    for (int k = 0; k < 4; ++k)
      t.sample("edge_upstream_errors_total",
               {{"pool", u.pool}, {"server", u.server}, {"kind", hm::kUpstreamErrorNames[k]}},
               static_cast<double>(sum(
                   u, [k](auto& x) -> auto& { return x.errors[k]; })));
  t.family("edge_upstream_response_seconds", "histogram",
           "Time from sending a request upstream to its response head.");
  for (const auto& u : upstreams_)
    t.histogram(
        "edge_upstream_response_seconds", {{"pool", u.pool}, {"server", u.server}}, u,
        [](auto& x) -> auto& { return x.latency; });
  std::int64_t now_ms = http::UpstreamPool::now_ms();
  t.family("edge_upstream_up", "gauge",
           "1 when the server takes requests (active and passive health), else 0.");
  for (const auto& pool : cfg.upstreams)
    for (const auto& s : pool->servers)
      t.sample("edge_upstream_up", {{"pool", pool->name}, {"server", s->address}},
               s->available(now_ms) ? 1 : 0);
  t.family("edge_upstream_in_flight", "gauge", "Requests in flight to the server.");
  for (const auto& pool : cfg.upstreams)
    for (const auto& s : pool->servers)
      t.sample("edge_upstream_in_flight", {{"pool", pool->name}, {"server", s->address}},
               static_cast<double>(std::max(0, s->active.load(std::memory_order_relaxed))));

  t.family("edge_config_reloads_total", "counter", "Configuration reloads by result.");
  t.sample("edge_config_reloads_total", {{"result", "ok"}},
           static_cast<double>(reloads_ok_.load()));
  t.sample("edge_config_reloads_total", {{"result", "failed"}},
           static_cast<double>(reloads_failed_.load()));
  t.family("edge_config_last_reload_success", "gauge",
           "1 when the last reload succeeded (or none was tried), else 0.");
  t.sample("edge_config_last_reload_success", {}, last_reload_ok_.load() ? 1 : 0);
  t.family("edge_config_last_reload_timestamp_seconds", "gauge",
           "When the configuration was last reloaded successfully (the start time before).");
  t.sample("edge_config_last_reload_timestamp_seconds", {},
           reloaded_.load() ? static_cast<double>(last_reload_unix_ms_.load()) / 1000.0 : start);
  return out;
}

std::string Registry::status_json(const Config& cfg) const {
  std::lock_guard lock(mu_);
  std::uint64_t classes[5] = {};
  std::uint64_t counts[hm::kBucketCount + 1] = {};
  std::uint64_t in = 0, out = 0, limited = 0, cache[6] = {};
  for (const auto& r : routes_) {
    for (unsigned w = 0; w < r.size(); ++w) {
      const auto& x = r.at(w);
      for (int c = 0; c < 5; ++c) classes[c] += x.by_class[c].get();
      for (int i = 0; i <= hm::kBucketCount; ++i) counts[i] += x.latency.buckets[i].get();
      in += x.body_in.get();
      out += x.body_out.get();
      limited += x.limited.get();
      for (int k = 0; k < 6; ++k) cache[k] += x.cache[k].get();
    }
  }
  std::uint64_t open = 0;
  for (const auto& l : listeners_) {
    std::uint64_t o = sum(
        l, [](auto& x) -> auto& { return x.opened; });
    std::uint64_t c = sum(
        l, [](auto& x) -> auto& { return x.closed; });
    open += o > c ? o - c : 0;
  }
  nlohmann::ordered_json responses = nlohmann::ordered_json::object();
  std::uint64_t total = 0;
  for (int c = 0; c < 5; ++c) {
    responses[kClasses[c]] = classes[c];
    total += classes[c];
  }
  auto ms = [&](double q) {
    return static_cast<double>(static_cast<long long>(quantile(counts, q) * 1e6)) / 1000.0;
  };
  cache::Store::Stats cs{0, 0, 0, 0, 0};
  if (cfg.cache_store) cs = cfg.cache_store->stats();
  nlohmann::ordered_json ups = nlohmann::ordered_json::array();
  std::int64_t now_ms = http::UpstreamPool::now_ms();
  for (const auto& pool : cfg.upstreams) {
    for (const auto& s : pool->servers) {
      std::uint64_t reqs = 0, errs = 0;
      if (s->stats) {
        for (int c = 0; c < 5; ++c)
          reqs += sum(
              *s->stats, [c](auto& x) -> auto& { return x.by_class[c]; });
        for (int k = 0; k < 4; ++k)
          errs += sum(
              *s->stats, [k](auto& x) -> auto& { return x.errors[k]; });
      }
      ups.push_back({{"pool", pool->name},
                     {"server", s->address},
                     {"up", s->available(now_ms)},
                     {"in_flight", std::max(0, s->active.load(std::memory_order_relaxed))},
                     {"requests", reqs},
                     {"errors", errs}});
    }
  }
  double uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_steady_).count();
  nlohmann::ordered_json doc = {
      {"version", EDGE_VERSION},
      {"time", iso_now()},
      {"uptime_s", static_cast<double>(static_cast<long long>(uptime * 10)) / 10.0},
      {"workers", cfg.server.workers},
      {"requests", total},
      {"responses", responses},
      {"latency_ms", {{"p50", ms(0.5)}, {"p90", ms(0.9)}, {"p99", ms(0.99)}}},
      {"bytes_in", in},
      {"bytes_out", out},
      {"connections_open", open},
      {"cache",
       {{"hit", cache[1]},
        {"stale", cache[2]},
        {"revalidated", cache[3]},
        {"miss", cache[4]},
        {"bypass", cache[5]},
        {"bytes", cs.bytes},
        {"objects", cs.entries},
        {"capacity", cs.capacity},
        {"evictions", cs.evictions}}},
      {"rate_limited", limited},
      {"upstreams", ups},
      {"reloads",
       {{"ok", reloads_ok_.load()},
        {"failed", reloads_failed_.load()},
        {"last", reloads_ok_.load() + reloads_failed_.load() == 0
                     ? "none"
                     : (last_reload_ok_.load() ? "ok" : "failed")}}}};
  return doc.dump();
}

}  // namespace edge::metrics
