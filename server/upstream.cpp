// Upstream connections and pools (see upstream.h). Each UpstreamConn holds two libuv handles (the
// TCP stream and a timer); it is freed when both close callbacks have run.
#include "server/upstream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "server/proxy_session.h"
#include "server/worker.h"

namespace edge {

namespace {
constexpr std::uint64_t kBurstIdleMs = 2000;
}  // namespace

Upstreams::Upstreams(Worker& w) : w_(w) {}

void Upstreams::retarget(const std::vector<std::shared_ptr<http::UpstreamPool>>& pools) {
  std::vector<PoolState> old;
  old.swap(pools_);
  retired_.clear();  // (round-robin positions only: sessions that still need one start afresh)
  pools_.resize(pools.size());
  for (std::size_t i = 0; i < pools.size(); ++i) pools_[i].pool = pools[i].get();
  for (auto& ps : old)
    for (auto& list : ps.idle) {
      auto copy = list;
      list.clear();
      for (UpstreamConn* c : copy) close(c);
    }
}

Upstreams::PoolState& Upstreams::state(const http::UpstreamPool& pool) {
  if (pool.index < pools_.size() && pools_[pool.index].pool == &pool) return pools_[pool.index];
  for (auto& ps : retired_)
    if (ps.pool == &pool) return ps;
  PoolState& ps = retired_.emplace_back();
  ps.pool = &pool;
  ps.retired = true;
  return ps;
}

Upstreams::~Upstreams() {
  for (UpstreamConn* c : spare_) delete c;
}

int Upstreams::pick(const http::UpstreamPool& pool, unsigned hash, std::uint64_t tried) {
  PoolState& ps = state(pool);
  std::size_t n = pool.servers.size();
  if (ps.current_weight.size() != n) ps.current_weight.assign(n, 0);
  std::int64_t now = http::UpstreamPool::now_ms();
  auto usable = [&](std::size_t i) {
    return i < 64 && !(tried & (1ULL << i)) && pool.servers[i]->available(now);
  };
  switch (pool.balance) {
    case http::UpstreamPool::Balance::kIpHash: {
      unsigned total = 0;
      for (const auto& s : pool.servers) total += s->weight;
      unsigned h = hash;
      for (int round = 0; round < 20 && total > 0; ++round) {
        unsigned point = h % total;
        std::size_t i = 0;
        while (point >= pool.servers[i]->weight) point -= pool.servers[i++]->weight;
        if (usable(i)) return static_cast<int>(i);
        h = h * 113 + 6271;  // rehash: the next choice for this client is still stable
      }
      break;  // fall back to round robin among the rest
    }
    case http::UpstreamPool::Balance::kLeastConn: {
      int best = -1;
      double best_load = 0;
      for (std::size_t k = 0; k < n; ++k) {
        std::size_t i = (ps.rr + k) % n;  // ties go round
        if (!usable(i)) continue;
        double load = static_cast<double>(pool.servers[i]->active.load(std::memory_order_relaxed)) /
                      pool.servers[i]->weight;
        if (best < 0 || load < best_load) {
          best = static_cast<int>(i);
          best_load = load;
        }
      }
      ps.rr = ps.rr + 1;
      return best;
    }
    case http::UpstreamPool::Balance::kRoundRobin:
      break;
  }
  // Smooth weighted round robin (nginx's): every usable server gains its weight, the largest
  // wins and pays the total.
  int best = -1;
  int total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!usable(i)) continue;
    int wgt = static_cast<int>(pool.servers[i]->weight);
    ps.current_weight[i] += wgt;
    total += wgt;
    if (best < 0 || ps.current_weight[i] > ps.current_weight[static_cast<std::size_t>(best)])
      best = static_cast<int>(i);
  }
  if (best >= 0) ps.current_weight[static_cast<std::size_t>(best)] -= total;
  return best;
}

UpstreamConn* Upstreams::acquire(const http::UpstreamPool& pool, unsigned server, ProxySession* s,
                                 bool allow_idle, bool& reused, int& err) {
  PoolState& ps = state(pool);
  if (ps.idle.size() != pool.servers.size()) ps.idle.resize(pool.servers.size());
  auto& idle = ps.idle[server];
  while (allow_idle && !idle.empty()) {
    UpstreamConn* c = idle.back();
    idle.pop_back();
    if (c->closing) continue;
    uv_timer_stop(&c->timer);
    c->session = s;
    c->rlen = 0;
    reused = true;
    return c;  // (a TLS connection in the pool has finished its handshake)
  }
  reused = false;
  // A closed connection's object (buffers included) is reused: past the keep-alive pool's size
  // every request opens a connection, and allocating each one showed in the profile.
  UpstreamConn* c;
  if (!spare_.empty()) {
    c = spare_.back();
    spare_.pop_back();
  } else {
    c = new UpstreamConn;  // back to spare_ (or freed) by on_closed once both handles are closed
    c->rbuf.reset(new char[UpstreamConn::kReadSize]);
  }
  c->owner = this;
  c->server = pool.servers[server].get();
  c->pool = &pool;
  c->server_index = server;
  c->session = s;
  uv_tcp_init(w_.loop(), &c->tcp);
  uv_timer_init(w_.loop(), &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->connect_req.data = c;
  c->write_req.data = c;
  c->open_handles = 2;
  uv_tcp_nodelay(&c->tcp, 1);
  int rc = uv_tcp_connect(&c->connect_req, &c->tcp,
                          reinterpret_cast<const sockaddr*>(&c->server->addr), on_connect);
  if (rc < 0) {
    c->session = nullptr;
    close(c);
    err = rc;
    return nullptr;
  }
  return c;
}

void Upstreams::on_connect(uv_connect_t* req, int status) {
  auto* c = static_cast<UpstreamConn*>(req->data);
  if (status == UV_ECANCELED || c->closing) return;
  if (status == 0 && c->pool->tls) {
    c->owner->tls_connected(c);
    return;
  }
  c->connected = status == 0;
  if (c->session) c->session->on_connect(status);
}

void Upstreams::tls_connected(UpstreamConn* c) {
  const http::UpstreamPool& pool = *c->pool;
  auto ctx = std::static_pointer_cast<const tls::ClientContext>(pool.tls);
  const std::string& name = pool.tls_server_name.empty() ? c->server->host : pool.tls_server_name;
  c->tls = std::make_unique<tls::TlsTransport>(ctx, name);
  c->tls->start();
  start_reading(c);
  flush_writes(c);  // the ClientHello
}

void Upstreams::tls_read(UpstreamConn* c, const char* data, std::size_t len) {
  bool was_done = c->tls->handshake_done();
  tls::TlsTransport::Result r = c->tls->feed(data, len);
  flush_writes(c);  // handshake messages, alerts
  if (r == tls::TlsTransport::Result::kError) {
    spdlog::warn("upstream {}: {}", c->server->address, c->tls->error_string());
    if (!was_done) {
      if (c->session) c->session->on_connect(UV_EPROTO);
    } else if (c->session) {
      c->session->on_read(UV_EPROTO, nullptr);
    } else {
      close(c);
    }
    return;
  }
  if (!was_done && c->tls->handshake_done()) {
    c->connected = true;
    if (c->session) c->session->on_connect(0);
    if (c->closing || !c->session) return;
    flush_writes(c);
  }
  // Decrypted bytes go where the session parses them (after a response head in progress).
  while (!c->closing) {
    std::string_view plain = c->tls->pending_plain();
    if (plain.empty()) break;
    if (!c->session) {  // idle: the server said something unasked
      close(c);
      return;
    }
    std::size_t room = UpstreamConn::kReadSize - c->rlen;
    std::size_t n = std::min(room, plain.size());
    if (n == 0) break;
    char* dst = c->rbuf.get() + c->rlen;
    std::memcpy(dst, plain.data(), n);
    c->tls->consume_plain(n);
    c->session->on_read(static_cast<ssize_t>(n), dst);
  }
  if (r == tls::TlsTransport::Result::kClosed && !c->closing) {
    if (c->session)
      c->session->on_read(UV_EOF, nullptr);
    else
      close(c);
  }
}

void Upstreams::write(UpstreamConn* c, std::string_view data) {
  c->pending.append(data);
  if (c->connected) flush_writes(c);
}

void Upstreams::flush_writes(UpstreamConn* c) {
  if (c->closing) return;
  std::string* src = &c->pending;
  if (c->tls) {
    if (c->tls->handshake_done() && !c->pending.empty()) {
      c->tls->write_plain(c->pending.data(), c->pending.size());
      c->pending.clear();
    }
    std::string_view chunks[16];
    std::size_t k;
    while ((k = c->tls->out_chunks(chunks, 16)) > 0) {
      std::size_t total = 0;
      for (std::size_t i = 0; i < k; ++i) {
        c->cipher.append(chunks[i]);
        total += chunks[i].size();
      }
      c->tls->consume_out(total);
    }
    src = &c->cipher;
  }
  if (c->write_busy || src->empty()) return;
  // Try the socket at once; only what it does not take goes through uv_write.
  uv_buf_t b = uv_buf_init(src->data(), static_cast<unsigned>(src->size()));
  int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1);
  // Never a callback from here: the session may be in the middle of queueing. An error shows
  // again in uv_write's callback.
  if (n == static_cast<int>(src->size())) {
    src->clear();
    return;
  }
  if (n > 0) src->erase(0, static_cast<std::size_t>(n));
  c->writing.swap(*src);
  src->clear();
  c->write_busy = true;
  b = uv_buf_init(c->writing.data(), static_cast<unsigned>(c->writing.size()));
  int rc = uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1, on_write);
  if (rc < 0) {  // reported from the timer, outside the caller's stack
    c->write_busy = false;
    c->deferred_error = rc;
    uv_timer_start(&c->timer, on_idle_timeout, 0, 0);
  }
}

void Upstreams::on_write(uv_write_t* req, int status) {
  auto* c = static_cast<UpstreamConn*>(req->data);
  c->write_busy = false;
  c->writing.clear();
  if (status == UV_ECANCELED || c->closing) return;
  if (status < 0) {
    if (c->session) c->session->on_write_done(status);
    return;
  }
  c->owner->flush_writes(c);
  if (!c->write_busy && c->backlog() == 0 && c->session) c->session->on_write_done(0);
}

void Upstreams::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* c = static_cast<UpstreamConn*>(h->data);
  if (c->tls) {  // ciphertext: fed to OpenSSL at once, so the worker's scratch will do
    *buf = uv_buf_init(c->owner->w_.io_scratch(), static_cast<unsigned>(Worker::kScratchSize));
    return;
  }
  *buf = uv_buf_init(c->rbuf.get() + c->rlen,
                     static_cast<unsigned>(UpstreamConn::kReadSize - c->rlen));
}

void Upstreams::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<UpstreamConn*>(s->data);
  if (n == 0 || c->closing) return;
  if (c->tls && n > 0) {
    c->owner->tls_read(c, buf->base, static_cast<std::size_t>(n));
    return;
  }
  if (c->tls && !c->connected && c->session) {  // closed during the handshake
    c->session->on_connect(static_cast<int>(n));
    return;
  }
  if (!c->session) {  // idle: the server closed it, or sent something unasked
    c->owner->close(c);
    return;
  }
  c->session->on_read(n, buf->base);
}

void Upstreams::start_reading(UpstreamConn* c) {
  if (c->reading || c->closing) return;
  c->reading = true;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read);
}

void Upstreams::stop_reading(UpstreamConn* c) {
  if (!c->reading || c->closing) return;
  c->reading = false;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
}

void Upstreams::release(UpstreamConn* c, bool keep) {
  c->session = nullptr;
  uv_timer_stop(&c->timer);
  PoolState& ps = state(*c->pool);
  const http::UpstreamPool* pool = ps.retired ? nullptr : c->pool;  // (retired: closed below)
  if (pool && ps.idle.size() != pool->servers.size()) ps.idle.resize(pool->servers.size());
  // Beyond `keepalive` idle connections (a burst), a few more are kept for kBurstIdleMs: under a
  // steady load above the pool's size they are taken again at once instead of each request
  // opening a connection (which cost 4x the CPU of a reused one at 1,000 clients).
  std::size_t idle = pool ? ps.idle[c->server_index].size() : 0;
  bool surplus = pool && idle >= pool->keepalive;
  std::size_t cap =
      pool && pool->keepalive > 0 ? std::max<std::size_t>(pool->keepalive * 16, 1024) : 0;
  if (!keep || !pool || c->closing || c->backlog() > 0 || w_.stopping() || idle >= cap) {
    close(c);
    return;
  }
  ++c->requests;
  c->rlen = 0;
  start_reading(c);  // EOF or stray bytes from the server close it
  ps.idle[c->server_index].push_back(c);
  auto ms = static_cast<std::uint64_t>(pool->keepalive_timeout.count());
  uv_timer_start(&c->timer, on_idle_timeout,
                 surplus ? std::min<std::uint64_t>(ms, kBurstIdleMs) : ms, 0);
}

void Upstreams::arm(UpstreamConn* c, std::chrono::milliseconds d) {
  uv_timer_start(&c->timer, on_idle_timeout, static_cast<std::uint64_t>(d.count()), 0);
}

void Upstreams::disarm(UpstreamConn* c) {
  uv_timer_stop(&c->timer);
}

void Upstreams::on_idle_timeout(uv_timer_t* t) {
  auto* c = static_cast<UpstreamConn*>(t->data);
  if (c->session && c->deferred_error) {
    int err = c->deferred_error;
    c->deferred_error = 0;
    c->session->on_write_done(err);
    return;
  }
  if (c->session) {
    c->session->on_timer();
    return;
  }
  c->owner->close(c);
}

void Upstreams::close(UpstreamConn* c) {
  if (c->closing) return;
  c->closing = true;
  c->session = nullptr;
  if (c->pool) {
    auto& idle = state(*c->pool).idle;
    if (c->server_index < idle.size()) std::erase(idle[c->server_index], c);
  }
  uv_timer_stop(&c->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
}

void Upstreams::on_closed(uv_handle_t* h) {
  auto* c = static_cast<UpstreamConn*>(h->data);
  if (--c->open_handles != 0) return;
  Upstreams* u = c->owner;
  if (u->spare_.size() >= 256 || u->w_.stopping() || c->writing.capacity() > 64 * 1024 ||
      c->pending.capacity() > 64 * 1024) {
    delete c;
    return;
  }
  // Back to a fresh state, keeping the buffers' storage.
  c->writing.clear();
  c->pending.clear();
  c->cipher.clear();
  c->tls.reset();
  c->session = nullptr;
  c->write_busy = c->connected = c->closing = c->reading = false;
  c->deferred_error = 0;
  c->requests = 0;
  c->rlen = 0;
  u->spare_.push_back(c);
}

void Upstreams::close_all() {
  for (auto& ps : pools_)
    for (auto& list : ps.idle) {
      auto copy = list;
      for (UpstreamConn* c : copy) close(c);
    }
}

std::size_t Upstreams::idle_count() const {
  std::size_t n = 0;
  for (const auto& ps : pools_)
    for (const auto& list : ps.idle) n += list.size();
  return n;
}

}  // namespace edge
