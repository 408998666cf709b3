// Rate-limit decisions shared between edge instances through Redis: one EVALSHA of a GCRA script
// per request (all of a route's limits at once, with the server's TIME as the clock), sent on the
// worker's own hiredis connection over libuv, so the loop never waits. When Redis is down or
// slow, the caller applies [rate_limit] on_store_error; the connection comes back by itself.
#pragma once
#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "routes/rate_limit.h"

struct redisAsyncContext;
struct redisReply;

namespace edge {

class Worker;

// What waits for a decision (implemented by Connection).
class LimitWaiter {
 public:
  virtual ~LimitWaiter() = default;
  // ok: the store answered (results[0..n) valid); !ok: it could not (apply the store-error policy).
  virtual void limit_decided(bool ok, bool allowed, const routes::LimitResult* results) = 0;
};

// One request's place in the queue of replies; the waiter is cleared when it goes away first.
struct LimitTicket {
  LimitWaiter* waiter = nullptr;
  std::size_t limits = 0;
  bool retried = false;           // sent again as EVAL after NOSCRIPT
  std::vector<std::string> args;  // kept for that retry
};

class RedisLimiter {
 public:
  RedisLimiter(Worker& w, const routes::RateLimitSettings& s);
  ~RedisLimiter();
  void start();
  void stop();
  bool usable() const { return ctx_ != nullptr && connected_; }
  // Sends the decision; returns the ticket (owned by the limiter until the reply) or null when
  // Redis is not usable now.
  LimitTicket* decide(const std::vector<routes::RateLimit>& limits,
                      const std::vector<std::string>& keys, LimitWaiter* waiter);
  // From the worker's sweep: a Redis that stopped answering is dropped (pending requests get the
  // store-error policy) and reconnected.
  void check(std::uint64_t now_ms);

 private:
  static void on_connect(const redisAsyncContext* c, int status);
  static void on_disconnect(const redisAsyncContext* c, int status);
  static void on_reply(redisAsyncContext* c, void* reply, void* priv);
  static void on_pong(redisAsyncContext* c, void* reply, void* priv);
  void connect();
  void retry_later();  // connect() again in a second
  bool send(LimitTicket* t, bool eval);
  void went_down(const char* why);

  Worker& w_;
  const routes::RateLimitSettings s_;  // a copy: it outlives the config it came from
  redisAsyncContext* ctx_ = nullptr;
  bool connected_ = false;
  bool down_ = false;  // this worker counts in the outage
  bool stopping_ = false;
  uv_timer_t retry_{};
  std::size_t pending_ = 0;
  std::uint64_t last_progress_ms_ = 0;
  std::uint64_t connect_started_ms_ = 0;
  std::string sha_;  // of the script
};

}  // namespace edge
