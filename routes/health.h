// /health: the platform's health document {"status","timestamp","uptime","version","checks"}; each
// upstream pool is a check ("OK", or "FAIL: …" and status 503 when it has no healthy server).
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "server/http/exchange.h"
#include "server/http/upstream.h"

namespace edge::routes {

class HealthHandler : public http::Handler {
 public:
  HealthHandler(std::string version, std::chrono::steady_clock::time_point started,
                std::vector<std::shared_ptr<http::UpstreamPool>> pools = {})
      : version_(std::move(version)), started_(started), pools_(std::move(pools)) {}
  void handle(http::Exchange& ex) const override;
  const char* kind() const override { return "health"; }

 private:
  std::string version_;
  std::chrono::steady_clock::time_point started_;
  std::vector<std::shared_ptr<http::UpstreamPool>> pools_;
};

}  // namespace edge::routes
