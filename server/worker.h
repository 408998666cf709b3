// A worker: one thread, one libuv loop, its own SO_REUSEPORT listening sockets, its connections.
// Nothing on the path of a static hit is shared with other workers.
#pragma once
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "server/config.h"
#include "server/http/date.h"
#include "server/http/exchange.h"
#include "server/log.h"
#include "server/redis_limiter.h"
#include "server/upstream.h"

namespace edge {

class Connection;

// A request parked until another request's fetch of its cache key ends (coalescing): an HTTP/1.1
// connection or an HTTP/2 stream.
class CacheWaiter {
 public:
  virtual ~CacheWaiter() = default;
  virtual void cache_ready() = 0;  // look in the cache again
};

class Worker : public http::Scheduler {
 public:
  Worker(unsigned id, std::shared_ptr<const Config> cfg, std::shared_ptr<AccessLogSink> sink,
         std::vector<int> listen_fds);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();  // spawns the thread
  // The loop's timers, per-turn hooks and listeners, without a thread: for a caller that runs
  // the loop itself (the fuzz harness, tests/fuzz/). start() does this on its thread.
  void start_handles();
  std::size_t connections() const { return conn_count_; }
  void request_stop();  // thread-safe: stop accepting, finish in flight, exit the loop
  void join();
  void offload(std::function<void()> work) override;  // libuv thread pool
  // Thread-safe: the worker adopts a reloaded config and the listening sockets of its listeners
  // (one per listener, in the config's order). Sockets it had and still gets keep accepting; the
  // ones it no longer gets are closed. Connections take the new config at their next request.
  void reload(std::shared_ptr<const Config> cfg, std::vector<int> listen_fds);
  // The generation of the config this worker serves (thread-safe): a reload is in effect once
  // every worker reached it.
  std::uint64_t applied_generation() const {
    return applied_generation_.load(std::memory_order_acquire);
  }

  // Used by connections (worker thread only).
  unsigned id() const { return id_; }
  uv_loop_t* loop() { return &loop_; }
  const std::shared_ptr<const Config>& config() const { return config_; }
  http::DateCache& dates() { return dates_; }
  AccessLog& access_log() { return access_log_; }
  Upstreams& upstreams() { return *upstreams_; }
  RedisLimiter* redis() { return redis_.get(); }  // null unless [rate_limit] store is Redis
  std::vector<std::string>& limit_keys() { return limit_keys_; }  // scratch for one decision
  http::metrics::RouteStats* unrouted() { return unrouted_; }     // requests no route took
  // Requests parked until another request's fetch of their cache key ends (coalescing).
  void cache_wait(const std::string& key, CacheWaiter* c);
  void cache_unwait(const std::string& key, CacheWaiter* c);
  void link_refresh(class BackgroundRefresh* r);
  void unlink_refresh(class BackgroundRefresh* r);
  std::uint64_t now_ms() const { return uv_now(const_cast<uv_loop_t*>(&loop_)); }
  bool stopping() const { return stopping_; }
  void make_request_id(char* out16);  // 16 hex characters
  std::unique_ptr<char[]> take_buffer();
  void give_buffer(std::unique_ptr<char[]> b);
  static constexpr std::size_t kBufferSize = 16 * 1024;
  static constexpr std::size_t kScratchSize = 64 * 1024;
  // File bytes on their way into TLS records (used synchronously, one connection at a time).
  char* io_scratch() {
    if (!scratch_) scratch_.reset(new char[kScratchSize]);
    return scratch_.get();
  }

  // Output buffers move between connections so idle ones hold none (swap: no allocation).
  void take_output(std::string& out) {
    if (outputs_.empty()) {
      out.reserve(4096);
      return;
    }
    out.swap(outputs_.back());
    outputs_.pop_back();
  }
  void give_output(std::string& out) {
    if (outputs_.size() >= 256 || out.capacity() > 256 * 1024) {
      std::string().swap(out);
      return;
    }
    outputs_.emplace_back();
    outputs_.back().swap(out);
  }
  std::unique_ptr<http::Exchange> take_exchange();
  void give_exchange(std::unique_ptr<http::Exchange> ex);

  void link(Connection* c);
  void unlink(Connection* c);
  // A connection with output to produce outside the callback that asked (HTTP/2 streams fed by
  // upstreams): run once before the loop waits again.
  void defer_wake(Connection* c);
  void cancel_wake(Connection* c);

 private:
  struct Listener {
    Worker* worker;
    int fd;
    unsigned index;  // into Config::listeners
    uv_poll_t poll;
  };
  void run();
  void run_wakes();
  void on_accept(Listener& l);
  void start_accepting(Listener& l);
  void apply_reload();
  void begin_stop();
  void sweep();
  void maybe_finish();

  unsigned id_;
  std::shared_ptr<const Config> config_;
  uv_loop_t loop_{};
  uv_async_t stop_async_{};
  uv_timer_t sweep_timer_{};
  uv_timer_t grace_timer_{};
  uv_timer_t accept_pause_{};
  uv_prepare_t flush_prepare_{};
  uv_async_t reload_async_{};
  std::mutex reload_mu_;
  std::shared_ptr<const Config> pending_config_;
  std::vector<std::vector<int>> pending_fds_;  // one set per reload not yet applied
  std::vector<std::pair<std::unique_ptr<class HealthChecker>, std::uint64_t>> retired_health_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::thread thread_;
  http::DateCache dates_;
  AccessLog access_log_;
  std::unique_ptr<Upstreams> upstreams_;
  std::unique_ptr<RedisLimiter> redis_;
  std::vector<std::string> limit_keys_;
  http::metrics::RouteStats* unrouted_ = nullptr;
  std::unordered_map<std::string, std::vector<CacheWaiter*>> cache_waiters_;
  uv_async_t cache_async_{};  // another thread's fetch ended: keys in cache_done_
  std::mutex cache_mu_;
  std::vector<std::string> cache_done_;
  void cache_wake();
  void watch_cache(cache::Store* store);  // its fetches' ends wake this worker's waiters
  static bool wants_redis(const Config& cfg);
  class BackgroundRefresh* refreshes_ = nullptr;  // intrusive list
  std::unique_ptr<class HealthChecker> health_;   // worker 0 runs the active checks
  Connection* conns_ = nullptr;                   // intrusive list
  std::vector<Connection*> wakes_;
  std::size_t conn_count_ = 0;
  std::vector<std::unique_ptr<char[]>> buffers_;
  std::vector<std::unique_ptr<http::Exchange>> exchanges_;
  std::unique_ptr<char[]> scratch_;
  std::vector<std::string> outputs_;
  std::uint64_t id_seed_ = 0;
  std::uint64_t id_counter_ = 0;
  bool stopping_ = false;
  bool finished_ = false;
  bool accept_paused_ = false;
  std::atomic<std::uint64_t> applied_generation_{0};
};

}  // namespace edge
