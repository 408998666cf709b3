// The health document, built with nlohmann/json (not a hot path).
#include "routes/health.h"

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

namespace edge::routes {

void HealthHandler::handle(http::Exchange& ex) const {
  if (ex.req.method != http::Method::kGet && ex.req.method != http::Method::kHead) {
    ex.set_static(405, "text/plain; charset=utf-8", "405 Method Not Allowed\n");
    ex.resp.headers.add("Allow", "GET, HEAD");
    return;
  }
  auto sys_now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(sys_now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(sys_now.time_since_epoch()).count() %
      1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[64];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  double uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  nlohmann::ordered_json checks = nlohmann::ordered_json::object();
  bool healthy = true;
  for (const auto& pool : pools_) {
    std::size_t up = pool->available_count();
    if (up > 0) {
      checks[pool->name] = "OK";
    } else {
      healthy = false;
      checks[pool->name] =
          "FAIL: no healthy server (0/" + std::to_string(pool->servers.size()) + " up)";
    }
  }
  nlohmann::ordered_json doc = {
      {"status", healthy ? "OK" : "ERROR"},
      {"timestamp", ts},
      {"uptime", static_cast<double>(static_cast<long long>(uptime * 1000)) / 1000.0},
      {"version", version_},
      {"checks", checks}};
  ex.set_text(healthy ? 200 : 503, "application/json", doc.dump());
  ex.resp.cache_control = "no-store";
}

}  // namespace edge::routes
