// A stale-while-revalidate refresh: the client already got the stale copy; this fetches the URL
// again with no client attached (its own copy of the request), so the cache holds a fresh copy
// for the next ones. One per URL at a time (it holds the key's coalescing lead).
#pragma once
#include <uv.h>

#include <memory>
#include <string>

#include "server/http/exchange.h"
#include "server/proxy_session.h"

namespace edge {

class Worker;

class BackgroundRefresh : public ProxyClient {
 public:
  // Copies what the session needs of `ex` (request head and forward) and starts it. `cfg` (the
  // snapshot `route` and the forward's pool belong to) is held until the refresh ends.
  static void start(Worker& w, const http::Exchange& ex, const routes::Route* route,
                    std::shared_ptr<const struct Config> cfg);
  void abort();  // worker stop

  BackgroundRefresh* prev = nullptr;
  BackgroundRefresh* next = nullptr;

 private:
  explicit BackgroundRefresh(Worker& w);
  ~BackgroundRefresh() override;
  void copy_from(const http::Exchange& ex);
  void done();  // frees this on the next loop turn (the session may still be on the stack)

  bool proxy_head() override { return true; }
  bool proxy_body(const char*, std::size_t, bool& backlogged) override {
    backlogged = false;  // the bytes go only into the cache
    return true;
  }
  void proxy_flush() override {}
  void proxy_end() override { done(); }
  void proxy_fail(int) override { done(); }
  void proxy_answer() override { done(); }
  bool proxy_upgraded() override {
    done();
    return false;
  }
  void proxy_request_drained() override {}

  Worker& w_;
  std::shared_ptr<const struct Config> cfg_;
  http::Exchange ex_;
  std::string storage_;  // the bytes ex_.req's views point into
  ProxySession session_;
  uv_timer_t timer_{};
  bool finishing_ = false;
};

}  // namespace edge
