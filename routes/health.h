// /health: the platform's health document {"status","timestamp","uptime","version","checks"}.
#pragma once
#include <chrono>
#include <string>

#include "server/http/exchange.h"

namespace edge::routes {

class HealthHandler : public http::Handler {
 public:
  HealthHandler(std::string version, std::chrono::steady_clock::time_point started)
      : version_(std::move(version)), started_(started) {}
  void handle(http::Exchange& ex) const override;
  const char* kind() const override { return "health"; }

 private:
  std::string version_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace edge::routes
