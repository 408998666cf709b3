// Active health checks (see health_check.h). A probe is a uv_tcp_t and a timer freed when both
// close; the response is read until llhttp has its status line and headers.
#include "server/health_check.h"

#include <llhttp.h>

#include <spdlog/spdlog.h>

#include "server/worker.h"
#include "tls/tls_transport.h"

namespace edge {

struct HealthChecker::Probe {
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_connect_t connect_req{};
  uv_write_t write_req{};
  HealthChecker* owner = nullptr;
  PoolTimer* pt = nullptr;
  std::size_t server = 0;
  std::string request;
  char buf[4096];
  llhttp_t parser{};
  int status = 0;
  int open_handles = 2;
  bool finished = false;
  std::unique_ptr<tls::TlsTransport> tls;  // HTTPS pools: the check goes through TLS too
  bool request_sent = false;
};

namespace {

const llhttp_settings_t& probe_settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t x;
    llhttp_settings_init(&x);
    x.on_headers_complete = [](llhttp_t* p) {
      if (p->status_code < 200) return 0;  // interim: the final status follows
      static_cast<int*>(p->data)[0] = p->status_code;
      return static_cast<int>(HPE_PAUSED);
    };
    return x;
  }();
  return s;
}

}  // namespace

HealthChecker::HealthChecker(Worker& w) : w_(w) {}

HealthChecker::~HealthChecker() = default;

void HealthChecker::start() {
  cfg_ = w_.config();  // the pools probed stay alive as long as the checker
  for (const auto& pool : cfg_->upstreams) {
    if (pool->health_interval.count() <= 0) continue;
    auto pt = std::make_unique<PoolTimer>();
    pt->owner = this;
    pt->pool = pool.get();
    pt->in_flight.assign(pool->servers.size(), nullptr);
    uv_timer_init(w_.loop(), &pt->timer);
    pt->timer.data = pt.get();
    uv_timer_start(
        &pt->timer,
        [](uv_timer_t* t) {
          auto* p = static_cast<PoolTimer*>(t->data);
          p->owner->tick(*p);
        },
        0, static_cast<std::uint64_t>(pool->health_interval.count()));
    timers_.push_back(std::move(pt));
  }
}

void HealthChecker::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& pt : timers_) {
    uv_timer_stop(&pt->timer);
    for (Probe*& p : pt->in_flight)
      if (p) done(p, false, nullptr);
    // The PoolTimer lives in timers_ until the checker goes; the close callback has nothing to
    // free.
    uv_close(reinterpret_cast<uv_handle_t*>(&pt->timer), nullptr);
  }
}

void HealthChecker::tick(PoolTimer& pt) {
  for (std::size_t i = 0; i < pt.pool->servers.size(); ++i)
    if (!pt.in_flight[i]) launch(pt, i);
}

void HealthChecker::launch(PoolTimer& pt, std::size_t server) {
  const http::UpstreamPool& pool = *pt.pool;
  const http::UpstreamServer& s = *pool.servers[server];
  auto* p = new Probe;  // freed when both handles are closed
  p->owner = this;
  p->pt = &pt;
  p->server = server;
  p->request = "GET " + pool.health_path + " HTTP/1.1\r\nHost: " + s.address +
               "\r\nUser-Agent: samia-edge-health\r\nConnection: close\r\n\r\n";
  llhttp_init(&p->parser, HTTP_RESPONSE, &probe_settings());
  p->parser.data = &p->status;
  uv_tcp_init(w_.loop(), &p->tcp);
  uv_timer_init(w_.loop(), &p->timer);
  p->tcp.data = p->timer.data = p->connect_req.data = p->write_req.data = p;
  pt.in_flight[server] = p;
  uv_timer_start(
      &p->timer,
      [](uv_timer_t* t) {
        auto* pr = static_cast<Probe*>(t->data);
        pr->owner->done(pr, false, "timed out");
      },
      static_cast<std::uint64_t>(pool.health_timeout.count()), 0);
  int rc = uv_tcp_connect(&p->connect_req, &p->tcp, reinterpret_cast<const sockaddr*>(&s.addr),
                          [](uv_connect_t* req, int status) {
                            auto* pr = static_cast<Probe*>(req->data);
                            if (pr->finished) return;
                            if (status < 0) {
                              pr->owner->done(pr, false, uv_strerror(status));
                              return;
                            }
                            pr->owner->connected(pr);
                          });
  if (rc < 0) done(p, false, uv_strerror(rc));
}

namespace {

// One write with its own buffer (a probe sends a few small ones; not a hot path).
void send_bytes(uv_tcp_t* tcp, std::string_view data) {
  struct Write {
    uv_write_t req;
    std::string bytes;
  };
  auto* w = new Write{{}, std::string(data)};
  uv_buf_t b = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(tcp), &b, 1,
               [](uv_write_t* r, int) { delete reinterpret_cast<Write*>(r); }) < 0)
    delete w;
}

void send_tls_out(uv_tcp_t* tcp, tls::TlsTransport& t) {
  while (t.pending_out_size() > 0) {
    std::string_view chunk = t.pending_out();
    send_bytes(tcp, chunk);
    t.consume_out(chunk.size());
  }
}

}  // namespace

void HealthChecker::connected(Probe* p) {
  const http::UpstreamPool& pool = *p->pt->pool;
  if (pool.tls) {
    auto ctx = std::static_pointer_cast<const tls::ClientContext>(pool.tls);
    const std::string& name =
        pool.tls_server_name.empty() ? pool.servers[p->server]->host : pool.tls_server_name;
    p->tls = std::make_unique<tls::TlsTransport>(ctx, name);
    p->tls->start();
    send_tls_out(&p->tcp, *p->tls);
  } else {
    send_bytes(&p->tcp, p->request);
    p->request_sent = true;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&p->tcp),
      [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
        auto* q = static_cast<Probe*>(h->data);
        *buf = uv_buf_init(q->buf, sizeof q->buf);
      },
      [](uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
        auto* q = static_cast<Probe*>(st->data);
        if (q->finished || n == 0) return;
        if (n < 0) {
          q->owner->done(q, false, "closed before answering");
          return;
        }
        q->owner->received(q, buf->base, static_cast<std::size_t>(n));
      });
}

void HealthChecker::received(Probe* p, const char* data, std::size_t len) {
  std::string_view plain(data, len);
  if (p->tls) {
    tls::TlsTransport::Result r = p->tls->feed(data, len);
    send_tls_out(&p->tcp, *p->tls);
    if (r == tls::TlsTransport::Result::kError) {
      done(p, false, p->tls->error_string().c_str());
      return;
    }
    if (!p->tls->handshake_done()) return;
    if (!p->request_sent) {
      p->tls->write_plain(p->request.data(), p->request.size());
      send_tls_out(&p->tcp, *p->tls);
      p->request_sent = true;
    }
    plain = p->tls->pending_plain();
    if (plain.empty()) {
      if (r == tls::TlsTransport::Result::kClosed) done(p, false, "closed before answering");
      return;
    }
  }
  llhttp_errno_t err = llhttp_execute(&p->parser, plain.data(), plain.size());
  if (p->tls) p->tls->consume_plain(plain.size());
  if (err == HPE_PAUSED) {
    bool ok = p->status >= 200 && p->status < 400;
    done(p, ok, ok ? nullptr : "bad status");
  } else if (err != HPE_OK) {
    done(p, false, "malformed response");
  }
}

void HealthChecker::done(Probe* p, bool ok, const char* why) {
  if (p->finished) return;
  p->finished = true;
  p->pt->in_flight[p->server] = nullptr;
  if (!stopped_) {
    const http::UpstreamPool& pool = *p->pt->pool;
    std::string reason = why ? why : "";
    if (!ok && p->status) reason += " " + std::to_string(p->status);
    record(pool, *pool.servers[p->server], ok, reason.c_str());
  }
  uv_timer_stop(&p->timer);
  auto free_half = [](uv_handle_t* h) {
    auto* q = static_cast<Probe*>(h->data);
    if (--q->open_handles == 0) delete q;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&p->timer), free_half);
  uv_close(reinterpret_cast<uv_handle_t*>(&p->tcp), free_half);
}

void HealthChecker::record(const http::UpstreamPool& pool, http::UpstreamServer& s, bool ok,
                           const char* why) {
  int streak = s.check_streak.load(std::memory_order_relaxed);
  streak = ok ? (streak > 0 ? streak + 1 : 1) : (streak < 0 ? streak - 1 : -1);
  s.check_streak.store(streak, std::memory_order_relaxed);
  bool up = s.checked_up.load(std::memory_order_relaxed);
  if (!up && streak >= pool.rise) {
    s.checked_up.store(true, std::memory_order_relaxed);
    s.down_until_ms.store(0, std::memory_order_relaxed);  // a passing check ends a passive timeout
    spdlog::info("upstream {} server {}: health check passed {} times, up", pool.name, s.address,
                 streak);
  } else if (up && -streak >= pool.fall) {
    s.checked_up.store(false, std::memory_order_relaxed);
    spdlog::warn("upstream {} server {}: health check failed {} times ({}), down", pool.name,
                 s.address, -streak, why);
  }
}

}  // namespace edge
