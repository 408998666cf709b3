// Background refreshes (see background_refresh.h).
#include "server/background_refresh.h"

#include "server/worker.h"

namespace edge {

BackgroundRefresh::BackgroundRefresh(Worker& w) : w_(w), session_(w, *this) {
  uv_timer_init(w_.loop(), &timer_);
  timer_.data = this;
}

BackgroundRefresh::~BackgroundRefresh() = default;

void BackgroundRefresh::start(Worker& w, const http::Exchange& ex, const routes::Route* route,
                              std::shared_ptr<const Config> cfg) {
  auto* r = new BackgroundRefresh(w);  // freed by done() through its timer's close callback
  r->cfg_ = std::move(cfg);
  r->copy_from(ex);
  w.link_refresh(r);
  r->session_.start(r->ex_, route, false, false);
}

void BackgroundRefresh::copy_from(const http::Exchange& src) {
  const http::Request& s = src.req;
  // Every view of the copy points into one string, sized first so that it never moves.
  std::size_t n = s.target.size() + s.path.size() + s.raw_path.size() + s.query.size() +
                  s.host.size() + s.client_ip.size() + s.peer_ip.size() + s.request_id.size();
  for (const http::HeaderField& f : s.headers) n += f.name.size() + f.value.size();
  storage_.reserve(n);
  auto keep = [&](std::string_view v) {
    std::size_t at = storage_.size();
    storage_.append(v);
    return std::string_view(storage_).substr(at, v.size());
  };
  http::Request& d = ex_.req;
  d.method = s.method;
  d.method_name = s.method_name;  // llhttp's static names
  d.version_minor = 1;
  d.target = keep(s.target);
  d.path = keep(s.path);
  d.raw_path = keep(s.raw_path);
  d.query = keep(s.query);
  d.host = keep(s.host);
  d.client_ip = keep(s.client_ip);
  d.peer_ip = keep(s.peer_ip);
  d.request_id = keep(s.request_id);
  d.peer_trusted = s.peer_trusted;
  d.tls = s.tls;
  for (const http::HeaderField& f : s.headers) {
    std::string_view name = keep(f.name);
    d.headers.add(name, keep(f.value));
  }
  ex_.forward = src.forward;
  ex_.forward.cache_refresh = false;
  ex_.worker_id = src.worker_id;
  ex_.scheduler = src.scheduler;
  ex_.now = src.now;
  ex_.started = src.started;
}

void BackgroundRefresh::done() {
  if (finishing_) return;
  finishing_ = true;
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* r = static_cast<BackgroundRefresh*>(t->data);
        r->w_.unlink_refresh(r);
        uv_close(reinterpret_cast<uv_handle_t*>(&r->timer_),
                 [](uv_handle_t* h) { delete static_cast<BackgroundRefresh*>(h->data); });
      },
      0, 0);
}

void BackgroundRefresh::abort() {
  session_.abort();
  done();
}

}  // namespace edge
