// The Redis rate-limit store (see redis_limiter.h).
#include "server/redis_limiter.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <atomic>
#include <charconv>
#include <cstring>

#include <hiredis/adapters/libuv.h>
#include <spdlog/spdlog.h>

#include "server/worker.h"

namespace edge {
namespace {

// GCRA over all of a request's limits at once (counted only when every limit allows), with the
// Redis server's clock so that every edge agrees. ARGV: T and tolerance (µs) per key. Returns
// {allowed, then per key: remaining, reset µs, wait µs}. tat is stored as an integer string
// ('%.0f': Lua would print a large number in exponent form).
constexpr const char* kScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local base, new = {}, {}
local allowed = 1
for i = 1, n do
  local T, tau = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0) or 0
  base[i] = math.max(tat, now)
  new[i] = base[i] + T
  if new[i] - now > tau then allowed = 0 end
end
local out = {allowed}
for i = 1, n do
  local T, tau = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  if new[i] - now > tau then
    out[#out+1] = 0; out[#out+1] = base[i] - now; out[#out+1] = new[i] - tau - now
  else
    if allowed == 1 then
      redis.call('SET', KEYS[i], string.format('%.0f', new[i]), 'PX', math.floor((new[i] - now) / 1000) + 1)
    end
    out[#out+1] = math.floor((tau - (new[i] - now)) / T); out[#out+1] = new[i] - now; out[#out+1] = 0
  end
end
return out
)lua";

// Workers each have their connection: the outage is logged when the first goes down and the end
// when the last is back. Error replies (OOM, READONLY…) are logged once until a good reply.
std::atomic<int> g_down_workers{0};
std::atomic<bool> g_error_logged{false};

std::string sha1_hex(std::string_view s) {
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

}  // namespace

RedisLimiter::RedisLimiter(Worker& w, const routes::RateLimitSettings& s)
    : w_(w), s_(s), sha_(sha1_hex(kScript)) {
  uv_timer_init(w_.loop(), &retry_);
  retry_.data = this;
}

RedisLimiter::~RedisLimiter() = default;

void RedisLimiter::start() {
  connect();
}

void RedisLimiter::retry_later() {
  uv_timer_start(
      &retry_, [](uv_timer_t* t) { static_cast<RedisLimiter*>(t->data)->connect(); }, 1000, 0);
}

void RedisLimiter::connect() {
  if (stopping_ || ctx_) return;
  ctx_ = redisAsyncConnect(s_.redis_host.c_str(), s_.redis_port);
  if (!ctx_ || ctx_->err) {
    went_down(ctx_ ? ctx_->errstr : "out of memory");
    if (ctx_) redisAsyncFree(ctx_);
    ctx_ = nullptr;
    retry_later();
    return;
  }
  ctx_->data = this;
  connect_started_ms_ = w_.now_ms();
  if (redisLibuvAttach(ctx_, w_.loop()) != REDIS_OK) {
    ctx_->ev.cleanup = nullptr;
    redisAsyncFree(ctx_);
    ctx_ = nullptr;
    went_down("cannot attach to the loop");
    retry_later();
    return;
  }
  redisAsyncSetConnectCallback(ctx_, on_connect);
  redisAsyncSetDisconnectCallback(ctx_, on_disconnect);
  // A first command (hiredis 0.14 watches for the connect only once something is queued).
  if (s_.redis_db != 0) {
    std::string db = std::to_string(s_.redis_db);
    const char* argv[] = {"SELECT", db.c_str()};
    std::size_t len[] = {6, db.size()};
    redisAsyncCommandArgv(
        ctx_,
        [](redisAsyncContext*, void* r, void*) {
          auto* reply = static_cast<redisReply*>(r);
          if (reply && reply->type == REDIS_REPLY_ERROR)
            spdlog::error("rate limit store: SELECT: {}", std::string_view(reply->str, reply->len));
        },
        nullptr, 2, argv, len);
  }
  // Usable only once Redis answers (a stopped Redis still completes the TCP connect).
  redisAsyncCommand(ctx_, on_pong, nullptr, "PING");
}

void RedisLimiter::on_connect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<RedisLimiter*>(c->data);
  if (status != REDIS_OK) {
    // hiredis frees the context after this callback.
    self->ctx_ = nullptr;
    self->connected_ = false;
    self->went_down(c->errstr);
    if (!self->stopping_) self->retry_later();
    return;
  }
  // connected_ waits for the PONG.
}

void RedisLimiter::on_pong(redisAsyncContext* c, void* r, void*) {
  auto* self = static_cast<RedisLimiter*>(c->data);
  auto* reply = static_cast<redisReply*>(r);
  if (!self || !reply || self->ctx_ != c) return;
  if (reply->type == REDIS_REPLY_ERROR) {  // NOAUTH, too many clients…: not usable; retried
    self->went_down(std::string(reply->str, reply->len).c_str());
    return;
  }
  self->connected_ = true;
  if (self->down_) {
    self->down_ = false;
    if (g_down_workers.fetch_sub(1) == 1)
      spdlog::info("rate limit store redis://{}:{} reachable again: limits are shared again",
                   self->s_.redis_host, self->s_.redis_port);
  }
}

void RedisLimiter::on_disconnect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<RedisLimiter*>(c->data);
  self->ctx_ = nullptr;
  self->connected_ = false;
  self->pending_ = 0;
  if (self->stopping_) return;
  self->went_down(status == REDIS_OK ? "connection closed" : c->errstr);
  self->retry_later();
}

void RedisLimiter::went_down(const char* why) {
  if (stopping_ || down_) return;
  down_ = true;
  if (g_down_workers.fetch_add(1) == 0) {
    const char* policy = s_.on_store_error == routes::RateLimitSettings::OnError::kLocal
                             ? "using local counters"
                         : s_.on_store_error == routes::RateLimitSettings::OnError::kAllow
                             ? "allowing every request"
                             : "refusing limited requests (503)";
    spdlog::warn("rate limit store redis://{}:{} unreachable ({}): {} until it is back",
                 s_.redis_host, s_.redis_port, why ? why : "?", policy);
  }
}

LimitTicket* RedisLimiter::decide(const std::vector<routes::RateLimit>& limits,
                                  const std::vector<std::string>& keys, LimitWaiter* waiter) {
  if (!usable()) return nullptr;
  auto* t = new LimitTicket;  // freed in on_reply (hiredis calls it once, even on disconnect)
  t->waiter = waiter;
  t->limits = limits.size();
  t->args.reserve(3 + limits.size() * 3);
  t->args.emplace_back("EVALSHA");
  t->args.push_back(sha_);
  t->args.push_back(std::to_string(limits.size()));
  for (std::size_t i = 0; i < limits.size(); ++i) {
    std::string k = "edge:rl:";
    k.append(keys[i]);
    t->args.push_back(std::move(k));
  }
  for (const auto& l : limits) {
    t->args.push_back(std::to_string(l.interval_us()));
    t->args.push_back(std::to_string(l.tolerance_us()));
  }
  if (!send(t, false)) {
    delete t;
    return nullptr;  // the caller applies the store-error policy
  }
  return t;
}

bool RedisLimiter::send(LimitTicket* t, bool eval) {
  if (eval) {
    t->args[0] = "EVAL";
    t->args[1] = kScript;
  }
  const char* argv[32];
  std::size_t len[32];
  std::size_t n = std::min<std::size_t>(t->args.size(), 32);
  for (std::size_t i = 0; i < n; ++i) {
    argv[i] = t->args[i].data();
    len[i] = t->args[i].size();
  }
  if (pending_ == 0) last_progress_ms_ = w_.now_ms();
  ++pending_;
  if (!ctx_ ||
      redisAsyncCommandArgv(ctx_, on_reply, t, static_cast<int>(n), argv, len) != REDIS_OK) {
    --pending_;
    return false;
  }
  return true;
}

void RedisLimiter::on_reply(redisAsyncContext* c, void* r, void* priv) {
  auto* t = static_cast<LimitTicket*>(priv);
  auto* self = static_cast<RedisLimiter*>(c->data);
  auto* reply = static_cast<redisReply*>(r);
  if (self && self->pending_ > 0) --self->pending_;
  if (self) self->last_progress_ms_ = self->w_.now_ms();
  if (reply && reply->type == REDIS_REPLY_ERROR && !t->retried && self && self->usable() &&
      std::strncmp(reply->str, "NOSCRIPT", 8) == 0) {
    t->retried = true;  // the script is not cached there yet (a restart, SCRIPT FLUSH)
    if (self->send(t, true)) return;
  }
  LimitWaiter* waiter = t->waiter;
  std::size_t n = t->limits;
  delete t;
  if (!waiter) return;  // the connection went away meanwhile
  bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 + 3 * n && n <= 16;
  if (!ok) {
    if (reply && reply->type == REDIS_REPLY_ERROR && !g_error_logged.exchange(true))
      spdlog::warn(
          "rate limit store: {} (the store-error policy applies; logged once until it "
          "answers again)",
          std::string_view(reply->str, reply->len));
    waiter->limit_decided(false, false, nullptr);
    return;
  }
  g_error_logged.store(false, std::memory_order_relaxed);
  routes::LimitResult res[16];
  bool allowed = reply->element[0]->integer == 1;
  for (std::size_t i = 0; i < n; ++i) {
    long long remaining = reply->element[1 + 3 * i]->integer;
    res[i].remaining = remaining > 0 ? static_cast<std::uint64_t>(remaining) : 0;
    res[i].reset_us = reply->element[2 + 3 * i]->integer;
    res[i].wait_us = reply->element[3 + 3 * i]->integer;
    res[i].allowed = res[i].wait_us == 0;
  }
  waiter->limit_decided(true, allowed, res);
}

void RedisLimiter::check(std::uint64_t now_ms) {
  if (!ctx_) return;
  // hiredis 0.14's libuv adapter drops a poll error (a refused connect, a reset) without telling
  // anyone: a connect that has not finished in 1 s, or requests unanswered for 1 s, mean down.
  bool stuck_connect = !connected_ && now_ms - connect_started_ms_ >= 1000;
  bool stuck_requests = pending_ > 0 && now_ms - last_progress_ms_ >= 1000;
  if (!stuck_connect && !stuck_requests) return;
  went_down(stuck_connect ? "cannot connect" : "no answer within 1 s");
  // Pending requests get a null reply (the store-error policy); then a new connection.
  redisAsyncContext* c = ctx_;
  ctx_ = nullptr;
  connected_ = false;
  pending_ = 0;
  c->onDisconnect = nullptr;
  redisAsyncFree(c);
  retry_later();
}

void RedisLimiter::stop() {
  stopping_ = true;
  uv_timer_stop(&retry_);
  uv_close(reinterpret_cast<uv_handle_t*>(&retry_), nullptr);
  if (ctx_) {
    redisAsyncContext* c = ctx_;
    ctx_ = nullptr;
    connected_ = false;
    redisAsyncFree(c);  // pending requests get the store-error policy; the poll handle closes
  }
}

}  // namespace edge
