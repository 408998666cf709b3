// Metrics: histogram buckets, the quantile estimate, and the Prometheus and JSON renderings.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "server/config.h"

namespace hm = edge::http::metrics;

namespace {

std::uint64_t bucket_of(std::uint64_t us) {
  hm::Histogram h;
  h.observe(us);
  for (int i = 0; i <= hm::kBucketCount; ++i)
    if (h.buckets[i].get()) return static_cast<std::uint64_t>(i);
  return 999;
}

// The value of the first sample line starting with `prefix` (-1 when absent).
double sample(const std::string& text, const std::string& prefix) {
  std::size_t at = text.find("\n" + prefix);
  if (at == std::string::npos) return -1;
  at += 1 + prefix.size();
  return std::stod(text.substr(at + 1, text.find('\n', at) - at - 1));
}

}  // namespace

TEST(Metrics, HistogramBucketsAreUpperBounds) {
  EXPECT_EQ(bucket_of(0), 0u);
  EXPECT_EQ(bucket_of(100), 0u);  // le="0.0001" includes 100 µs
  EXPECT_EQ(bucket_of(101), 1u);
  EXPECT_EQ(bucket_of(2'000'000), 13u);  // le="2": the response-time alert's threshold
  EXPECT_EQ(hm::kBuckets[13], 2.0);
  EXPECT_EQ(bucket_of(60'000'000), static_cast<std::uint64_t>(hm::kBucketCount));  // +Inf
}

TEST(Metrics, QuantileInterpolatesWithinTheBucket) {
  std::uint64_t counts[hm::kBucketCount + 1] = {};
  EXPECT_EQ(edge::metrics::quantile(counts, 0.5), 0);
  counts[3] = 10;  // (0.0005, 0.001]
  EXPECT_NEAR(edge::metrics::quantile(counts, 0.5), 0.00075, 1e-9);
  EXPECT_NEAR(edge::metrics::quantile(counts, 1.0), 0.001, 1e-9);
  counts[hm::kBucketCount] = 90;  // beyond the last bound: the last bound
  EXPECT_EQ(edge::metrics::quantile(counts, 0.99), 10);
}

TEST(Metrics, SlicesArePerWorker) {
  hm::PerWorker<hm::RouteCounters> b(3);
  b.at(0).by_class[1].add();
  b.at(2).by_class[1].add(4);
  b.at(99).by_class[1].add();  // out of range: slice 0 (never in production)
  EXPECT_EQ(b.at(0).by_class[1].get(), 2u);
  EXPECT_EQ(b.at(2).by_class[1].get(), 4u);
  EXPECT_EQ(b.size(), 3u);
}

TEST(Metrics, PrometheusTextSumsWorkersAndEscapesLabels) {
  auto& reg = edge::metrics::registry();
  reg.set_workers(2);
  auto* r = reg.route("metrics-test \"q\\\"");
  r->at(0).by_class[1].add(2);
  r->at(1).by_class[1].add(3);
  r->at(1).by_class[4].add();
  r->at(0).latency.observe(50);
  r->at(1).latency.observe(3'000'000);
  edge::Config cfg;
  std::string text = reg.prometheus(cfg);
  const std::string label = R"(route="metrics-test \"q\\\"")";
  EXPECT_EQ(sample(text, "edge_http_requests_total{" + label + ",class=\"2xx\"}"), 5);
  EXPECT_EQ(sample(text, "edge_http_requests_total{" + label + ",class=\"5xx\"}"), 1);
  // Cumulative buckets, +Inf == _count, _sum in seconds.
  EXPECT_EQ(sample(text, "edge_http_request_duration_seconds_bucket{" + label + ",le=\"0.0001\"}"),
            1);
  EXPECT_EQ(sample(text, "edge_http_request_duration_seconds_bucket{" + label + ",le=\"2\"}"), 1);
  EXPECT_EQ(sample(text, "edge_http_request_duration_seconds_bucket{" + label + ",le=\"5\"}"), 2);
  EXPECT_EQ(sample(text, "edge_http_request_duration_seconds_bucket{" + label + ",le=\"+Inf\"}"),
            2);
  EXPECT_EQ(sample(text, "edge_http_request_duration_seconds_count{" + label + "}"), 2);
  EXPECT_NEAR(sample(text, "edge_http_request_duration_seconds_sum{" + label + "}"), 3.00005, 1e-6);
  // Each family is announced once, before its samples.
  for (const char* family : {"edge_http_requests_total", "edge_http_request_duration_seconds",
                             "edge_config_reloads_total", "edge_upstream_up"}) {
    std::string type = std::string("# TYPE ") + family + " ";
    std::size_t first = text.find(type);
    ASSERT_NE(first, std::string::npos) << family;
    EXPECT_EQ(text.find(type, first + 1), std::string::npos) << family;
    EXPECT_NE(text.find(std::string("# HELP ") + family + " "), std::string::npos) << family;
  }
}

TEST(Metrics, ReloadCountersAndStatusDocument) {
  auto& reg = edge::metrics::registry();
  reg.route("status-doc")->at(0).by_class[1].add(5);  // (ctest runs each test in a process)
  std::uint64_t ok = reg.reloads(true), failed = reg.reloads(false);
  reg.reload_done(false);
  reg.reload_done(true);
  EXPECT_EQ(reg.reloads(true), ok + 1);
  EXPECT_EQ(reg.reloads(false), failed + 1);
  edge::Config cfg;
  cfg.cache_store = std::make_shared<edge::cache::Store>(1 << 20, 1 << 20);
  auto doc = nlohmann::json::parse(reg.status_json(cfg));
  EXPECT_EQ(doc["reloads"]["last"], "ok");
  EXPECT_EQ(doc["cache"]["capacity"], 1 << 20);
  EXPECT_TRUE(doc["latency_ms"].contains("p99"));
  EXPECT_GE(doc["responses"]["2xx"].get<std::uint64_t>(), 5u);
  std::string text = reg.prometheus(cfg);
  EXPECT_EQ(sample(text, "edge_config_last_reload_success"), 1);
  EXPECT_EQ(sample(text, "edge_cache_capacity_bytes"), 1 << 20);
}
