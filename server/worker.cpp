// Worker loop: accept on its own listening sockets, a once-a-second sweep for timeouts, access-log
// flushing before the loop sleeps, graceful stop.
#include "server/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include "server/background_refresh.h"
#include "server/connection.h"
#include "server/health_check.h"
#include "server/metrics.h"

namespace edge {

Worker::Worker(unsigned id, std::shared_ptr<const Config> cfg, std::shared_ptr<AccessLogSink> sink,
               std::vector<int> listen_fds)
    : id_(id), config_(std::move(cfg)), access_log_(std::move(sink)) {
  uv_loop_init(&loop_);
  loop_.data = this;
  applied_generation_.store(config_->generation, std::memory_order_relaxed);
  for (int fd : listen_fds) {
    auto l = std::make_unique<Listener>();
    l->worker = this;
    l->fd = fd;
    l->index = static_cast<unsigned>(listeners_.size());
    listeners_.push_back(std::move(l));
  }
  // Every handle is initialised here, before the thread runs, so request_stop() is safe from
  // the moment the worker exists.
  uv_async_init(&loop_, &stop_async_,
                [](uv_async_t* a) { static_cast<Worker*>(a->loop->data)->begin_stop(); });
  uv_timer_init(&loop_, &sweep_timer_);
  uv_timer_init(&loop_, &grace_timer_);
  uv_timer_init(&loop_, &accept_pause_);
  uv_prepare_init(&loop_, &flush_prepare_);
  upstreams_ = std::make_unique<Upstreams>(*this);
  upstreams_->retarget(config_->upstreams);
  unrouted_ = metrics::registry().unrouted();
  uv_async_init(&loop_, &reload_async_,
                [](uv_async_t* a) { static_cast<Worker*>(a->loop->data)->apply_reload(); });
  uv_async_init(&loop_, &cache_async_,
                [](uv_async_t* a) { static_cast<Worker*>(a->loop->data)->cache_wake(); });
  watch_cache(config_->cache_store.get());
  if (wants_redis(*config_)) redis_ = std::make_unique<RedisLimiter>(*this, config_->rate_limit);
  if (id == 0) health_ = std::make_unique<HealthChecker>(*this);
  std::random_device rd;
  id_seed_ =
      (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ (static_cast<std::uint64_t>(id) << 56);
}

bool Worker::wants_redis(const Config& cfg) {
  return cfg.has_limits && cfg.rate_limit.store == routes::RateLimitSettings::Store::kRedis;
}

void Worker::watch_cache(cache::Store* store) {
  if (!store) return;
  store->on_done(id_, [this](const std::string& key) {
    {
      std::lock_guard lock(cache_mu_);
      cache_done_.push_back(key);
    }
    uv_async_send(&cache_async_);
  });
}

Worker::~Worker() {
  uv_loop_close(&loop_);
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::offload(std::function<void()> work) {
  struct Job {
    uv_work_t req;
    std::function<void()> fn;
  };
  auto* job = new Job{{}, std::move(work)};  // freed in the after-work callback
  job->req.data = job;
  int rc = uv_queue_work(
      &loop_, &job->req, [](uv_work_t* r) { static_cast<Job*>(r->data)->fn(); },
      [](uv_work_t* r, int) { delete static_cast<Job*>(r->data); });
  if (rc != 0) {
    job->fn();
    delete job;
  }
}

void Worker::request_stop() {
  uv_async_send(&stop_async_);
}

void Worker::run() {
  start_handles();
  uv_run(&loop_, UV_RUN_DEFAULT);
  access_log_.flush();
}

void Worker::start_handles() {
  uv_timer_start(
      &sweep_timer_, [](uv_timer_t* t) { static_cast<Worker*>(t->loop->data)->sweep(); }, 250, 250);
  if (health_) health_->start();
  if (redis_) redis_->start();
  uv_prepare_start(&flush_prepare_, [](uv_prepare_t* p) {
    auto* w = static_cast<Worker*>(p->loop->data);
    w->run_wakes();
    w->access_log_.flush();
  });
  for (auto& l : listeners_) {
    uv_poll_init(&loop_, &l->poll, l->fd);
    l->poll.data = l.get();
    start_accepting(*l);
  }
}

void Worker::on_accept(Listener& l) {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd =
        ::accept4(l.fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop accepting for a moment rather than spin on a ready socket.
        if (!accept_paused_) {
          spdlog::warn("worker {}: accept: {}; pausing accepts for 100 ms", id_,
                       std::strerror(errno));
          accept_paused_ = true;
          for (auto& x : listeners_) uv_poll_stop(&x->poll);
          uv_timer_start(
              &accept_pause_,
              [](uv_timer_t* t) {
                auto* w = static_cast<Worker*>(t->loop->data);
                w->accept_paused_ = false;
                if (w->stopping_) return;
                for (auto& x : w->listeners_) w->start_accepting(*x);
              },
              100, 0);
        }
      }
      return;  // EAGAIN and the rest
    }
    if (peer.ss_family == AF_INET || peer.ss_family == AF_INET6) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    const ListenConfig& lc = config_->listeners[l.index];
    auto& st = lc.stats->at(id_);
    st.accepted.add();
    // [server] max_connections (public listeners only: the admin listener stays reachable).
    auto& total = *config_->conns_total;
    if (!lc.admin &&
        total.fetch_add(1, std::memory_order_relaxed) >= config_->server.max_connections) {
      total.fetch_sub(1, std::memory_order_relaxed);
      st.refused_total.add();
      ::close(fd);
      continue;
    }
    unsigned max_per_ip = lc.max_conns_per_ip;
    if (max_per_ip && !config_->conns_per_ip->acquire(http::IpAddress::from(peer), max_per_ip)) {
      if (!lc.admin) total.fetch_sub(1, std::memory_order_relaxed);
      st.refused_per_ip.add();
      ::close(fd);  // over its client's share of connections (like nginx limit_conn)
      continue;
    }
    auto* c = new Connection(*this, fd, peer,
                             l.index);  // owned by its poll handle: freed in its close callback
    c->start(!lc.admin);
  }
}

void Worker::start_accepting(Listener& l) {
  uv_poll_start(&l.poll, UV_READABLE, [](uv_poll_t* p, int status, int) {
    auto* li = static_cast<Listener*>(p->data);
    if (status == 0) li->worker->on_accept(*li);
  });
}

void Worker::reload(std::shared_ptr<const Config> cfg, std::vector<int> listen_fds) {
  {
    std::lock_guard lock(reload_mu_);
    pending_config_ = std::move(cfg);
    pending_fds_.push_back(std::move(listen_fds));
  }
  uv_async_send(&reload_async_);
}

void Worker::apply_reload() {
  std::shared_ptr<const Config> cfg;
  std::vector<std::vector<int>> sets;
  {
    std::lock_guard lock(reload_mu_);
    cfg.swap(pending_config_);
    sets.swap(pending_fds_);
  }
  if (!cfg || sets.empty()) return;
  std::vector<int> fds = std::move(sets.back());
  auto ours = [&](int fd) {  // in use (or closed already) by a listener, or wanted now
    for (auto& l : listeners_)
      if (l && l->fd == fd) return true;
    return !stopping_ && std::find(fds.begin(), fds.end(), fd) != fds.end();
  };
  // Sockets opened for reloads that a later one replaced before this loop saw them (each closed
  // once: a socket kept by two pending reloads is in both sets).
  std::vector<int> unwanted;
  for (std::size_t i = 0; i + 1 < sets.size(); ++i)
    for (int fd : sets[i])
      if (!ours(fd)) unwanted.push_back(fd);
  if (stopping_)  // the listeners are closed already; new sockets are not needed
    for (int fd : fds)
      if (!ours(fd)) unwanted.push_back(fd);
  std::sort(unwanted.begin(), unwanted.end());
  unwanted.erase(std::unique(unwanted.begin(), unwanted.end()), unwanted.end());
  for (int fd : unwanted) ::close(fd);
  if (stopping_) {
    applied_generation_.store(cfg->generation, std::memory_order_release);  // (nothing to serve)
    return;
  }
  // Listeners: kept sockets keep their poll (no connection refused), new ones start, the rest
  // close.
  std::vector<std::unique_ptr<Listener>> next;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    std::unique_ptr<Listener> l;
    for (auto& old : listeners_)
      if (old && old->fd == fds[i]) l = std::move(old);
    if (!l) {
      l = std::make_unique<Listener>();
      l->worker = this;
      l->fd = fds[i];
      uv_poll_init(&loop_, &l->poll, l->fd);
      l->poll.data = l.get();
      if (!accept_paused_) start_accepting(*l);
    }
    l->index = static_cast<unsigned>(i);
    next.push_back(std::move(l));
  }
  for (auto& old : listeners_) {
    if (!old) continue;
    uv_poll_stop(&old->poll);
    ::close(old->fd);
    uv_close(reinterpret_cast<uv_handle_t*>(&old->poll),
             [](uv_handle_t* h) { delete static_cast<Listener*>(h->data); });
    old.release();  // freed by the close callback
  }
  listeners_ = std::move(next);

  std::shared_ptr<const Config> old = std::move(config_);
  config_ = std::move(cfg);
  upstreams_->retarget(config_->upstreams);
  if (config_->cache_store != old->cache_store) watch_cache(config_->cache_store.get());
  if (!redis_ && wants_redis(*config_)) {
    redis_ = std::make_unique<RedisLimiter>(*this, config_->rate_limit);
    redis_->start();
  }
  for (Connection* c = conns_; c;) {
    Connection* after = c->next;  // (config_changed may close c)
    c->config_changed();
    c = after;
  }
  if (health_) {  // worker 0: checks for the new pools (the old checker's handles close first)
    health_->stop();
    retired_health_.emplace_back(std::move(health_), uv_now(&loop_));
    health_ = std::make_unique<HealthChecker>(*this);
    health_->start();
  }
  applied_generation_.store(config_->generation, std::memory_order_release);
}

void Worker::defer_wake(Connection* c) {
  wakes_.push_back(c);
}

void Worker::cancel_wake(Connection* c) {
  std::erase(wakes_, c);
}

void Worker::run_wakes() {
  // (a connection that closes meanwhile stays allocated until its close callback, a later turn)
  while (!wakes_.empty()) {
    std::vector<Connection*> batch;
    batch.swap(wakes_);
    for (Connection* c : batch) c->run_wake();
  }
}

void Worker::link(Connection* c) {
  c->next = conns_;
  c->prev = nullptr;
  if (conns_) conns_->prev = c;
  conns_ = c;
  ++conn_count_;
}

void Worker::unlink(Connection* c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    conns_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --conn_count_;
  if (stopping_) maybe_finish();
}

void Worker::sweep() {
  std::uint64_t now = uv_now(&loop_);
  // Retired health checkers go once their handles have surely closed.
  std::erase_if(retired_health_, [now](const auto& r) { return now - r.second > 1000; });
  if (redis_) redis_->check(now);
  for (Connection* c = conns_; c;) {
    Connection* next = c->next;  // check_timeout may unlink c
    c->check_timeout(now);
    c = next;
  }
}

void Worker::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& l : listeners_) {
    uv_poll_stop(&l->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&l->poll), nullptr);
    ::close(l->fd);
  }
  uv_timer_stop(&accept_pause_);
  for (BackgroundRefresh* r = refreshes_; r; r = r->next) r->abort();
  upstreams_->close_all();
  if (health_) health_->stop();
  if (redis_) redis_->stop();
  for (Connection* c = conns_; c;) {
    Connection* next = c->next;
    c->close_when_idle();
    c = next;
  }
  auto grace = static_cast<std::uint64_t>(config_->server.grace_period.count());
  uv_timer_start(
      &grace_timer_,
      [](uv_timer_t* t) {
        auto* w = static_cast<Worker*>(t->loop->data);
        if (w->conn_count_)
          spdlog::warn("worker {}: grace period over, closing {} connections", w->id_,
                       w->conn_count_);
        for (Connection* c = w->conns_; c;) {
          Connection* next = c->next;
          c->close();
          c = next;
        }
      },
      grace, 0);
  maybe_finish();
}

void Worker::maybe_finish() {
  if (finished_ || conn_count_ != 0) return;
  finished_ = true;
  uv_timer_stop(&grace_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&grace_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&accept_pause_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&stop_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&flush_prepare_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&cache_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&reload_async_), nullptr);
}

void Worker::cache_wait(const std::string& key, CacheWaiter* c) {
  cache_waiters_[key].push_back(c);
}

void Worker::link_refresh(BackgroundRefresh* r) {
  r->next = refreshes_;
  if (refreshes_) refreshes_->prev = r;
  refreshes_ = r;
}

void Worker::unlink_refresh(BackgroundRefresh* r) {
  if (r->prev)
    r->prev->next = r->next;
  else if (refreshes_ == r)
    refreshes_ = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = nullptr;
}

void Worker::cache_unwait(const std::string& key, CacheWaiter* c) {
  auto it = cache_waiters_.find(key);
  if (it == cache_waiters_.end()) return;
  std::erase(it->second, c);
  if (it->second.empty()) cache_waiters_.erase(it);
}

void Worker::cache_wake() {
  std::vector<std::string> keys;
  {
    std::lock_guard lock(cache_mu_);
    keys.swap(cache_done_);
  }
  for (const std::string& k : keys) {
    auto it = cache_waiters_.find(k);
    if (it == cache_waiters_.end()) continue;
    std::vector<CacheWaiter*> waiting = std::move(it->second);
    cache_waiters_.erase(it);
    for (CacheWaiter* c : waiting) c->cache_ready();
  }
}

void Worker::make_request_id(char* out) {
  // splitmix64 over a per-worker random seed and a counter: unique, unpredictable enough for
  // correlation (not a secret), and allocation-free.
  std::uint64_t z = id_seed_ + 0x9e3779b97f4a7c15ULL * ++id_counter_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[z & 15];
    z >>= 4;
  }
  out[16] = '\0';
}

std::unique_ptr<char[]> Worker::take_buffer() {
  if (buffers_.empty()) return std::unique_ptr<char[]>(new char[kBufferSize]);
  auto b = std::move(buffers_.back());
  buffers_.pop_back();
  return b;
}

void Worker::give_buffer(std::unique_ptr<char[]> b) {
  if (buffers_.size() < 256) buffers_.push_back(std::move(b));
}

std::unique_ptr<http::Exchange> Worker::take_exchange() {
  if (exchanges_.empty()) {
    auto ex = std::make_unique<http::Exchange>();
    ex->req.headers.reserve(32);
    return ex;
  }
  auto ex = std::move(exchanges_.back());
  exchanges_.pop_back();
  return ex;
}

void Worker::give_exchange(std::unique_ptr<http::Exchange> ex) {
  if (exchanges_.size() < 256) exchanges_.push_back(std::move(ex));
}

}  // namespace edge
