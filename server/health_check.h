// Active health checks: every `interval`, GET the pool's health path on each server (a fresh
// connection, `timeout` to answer); `rise` successes in a row mark a server up, `fall` failures
// down. Runs on worker 0's loop; the verdict is shared through UpstreamServer's atomics.
#pragma once
#include <uv.h>

#include <memory>
#include <vector>

#include "server/http/upstream.h"

namespace edge {

class Worker;

class HealthChecker {
 public:
  explicit HealthChecker(Worker& w);
  ~HealthChecker();
  void start();
  void stop();  // closes the timers and the probes in flight

 private:
  struct Probe;
  struct PoolTimer {
    uv_timer_t timer;
    HealthChecker* owner;
    const http::UpstreamPool* pool;
    std::vector<Probe*> in_flight;  // per server, null when none
  };
  void tick(PoolTimer& pt);
  void launch(PoolTimer& pt, std::size_t server);
  void connected(Probe* p);
  void received(Probe* p, const char* data, std::size_t len);
  void done(Probe* p, bool ok, const char* why);
  static void record(const http::UpstreamPool& pool, http::UpstreamServer& s, bool ok,
                     const char* why);

  Worker& w_;
  std::shared_ptr<const struct Config> cfg_;
  std::vector<std::unique_ptr<PoolTimer>> timers_;
  bool stopped_ = false;
};

}  // namespace edge
