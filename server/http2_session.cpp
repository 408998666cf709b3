// HTTP/2 streams as exchanges (see http2_session.h). nghttp2 does the framing, HPACK, flow control
// and the protocol's checks; this file maps a stream's HEADERS and DATA to an Exchange, runs the
// shared request stage, and answers with the exchange's response (memory, file or a stream from an
// upstream) through a data provider.
#include "server/http2_session.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include <spdlog/spdlog.h>

#include "routes/proxy.h"
#include "routes/route_table.h"
#include "server/background_refresh.h"
#include "server/http/token.h"
#include "server/request_stage.h"
#include "server/worker.h"

namespace edge {
namespace {

constexpr std::size_t kStreamHighWater = 256 * 1024;  // proxied bytes queued per stream

}  // namespace

struct Http2Session::Stream : public ProxyClient, public LimitWaiter, public CacheWaiter {
  enum class Phase : unsigned char { kHead, kLimit, kBody, kCacheWait, kProxy, kResponse };

  Http2Session* s = nullptr;
  std::int32_t id = 0;
  Phase phase = Phase::kHead;
  std::shared_ptr<const Config> cfg;
  const ListenConfig* lc = nullptr;
  std::unique_ptr<http::Exchange> ex;
  const routes::Route* route = nullptr;
  char request_id[17] = {};

  // The request head as received: names and values in `store`, views made once it is complete.
  struct Field {
    std::uint32_t name, name_len, value, value_len;
  };
  std::string store;
  std::vector<Field> fields;
  std::int32_t method = -1, path = -1, authority = -1;  // indexes into fields
  std::size_t head_bytes = 0;
  int head_error = 0;  // 431 when the head is too large
  bool end_stream = false;
  bool body_up = false;  // the proxy was started with a body following
  std::string early;     // body bytes held until the proxy starts (rate limit, cache wait)
  std::uint64_t last_input_ms = 0;     // the request's last bytes (headers, DATA): its body clock
  std::uint64_t blocked_since_ms = 0;  // response data waiting on the client's window since
  std::uint64_t blocked_mark = 0;      // bytes_out then (progress restarts the clock)
  std::uint64_t wait_since_ms = 0;     // kCacheWait: since when
  int cookies = 0;                     // cookie fields (joined once the head is complete)
  std::uint64_t body_in = 0;
  std::size_t unconsumed = 0;  // DATA bytes not yet credited back (a backlogged upstream)

  std::unique_ptr<ProxySession> proxy;
  bool proxying = false;
  LimitTicket* ticket = nullptr;
  bool waiting_cache = false;

  // The response.
  bool submitted = false;
  int status = 0;
  http::Body body;
  std::uint64_t sent = 0;
  std::string buf;  // proxied bytes not yet framed
  std::size_t buf_off = 0;
  bool buf_end = false;
  bool deferred = false;
  bool eof = false;  // the response's last DATA was produced
  std::uint64_t bytes_out = 0;
  std::string nv_store;  // the response's made header bytes
  std::vector<nghttp2_nv> nv;

  void clear() {
    id = 0;
    phase = Phase::kHead;
    cfg.reset();
    lc = nullptr;
    route = nullptr;
    store.clear();
    fields.clear();
    method = path = authority = -1;
    head_bytes = 0;
    head_error = 0;
    end_stream = false;
    body_up = false;
    early.clear();
    last_input_ms = wait_since_ms = blocked_since_ms = blocked_mark = 0;
    cookies = 0;
    body_in = 0;
    unconsumed = 0;
    proxying = false;
    ticket = nullptr;
    waiting_cache = false;
    submitted = false;
    status = 0;
    body = http::Body{};
    sent = 0;
    buf.clear();
    buf_off = 0;
    buf_end = false;
    deferred = false;
    eof = false;
    bytes_out = 0;
  }

  std::string_view name(const Field& f) const { return {store.data() + f.name, f.name_len}; }
  std::string_view value(const Field& f) const { return {store.data() + f.value, f.value_len}; }
  std::string_view pseudo(std::int32_t i) const {
    return i < 0 ? std::string_view{} : value(fields[static_cast<std::size_t>(i)]);
  }
  bool sending_blocked() const;  // response data waits on the client's flow-control window
  void resume() {
    if (deferred && s->session_) {
      deferred = false;
      nghttp2_session_resume_data(s->session_, id);
    }
  }
  // Body bytes held back from the client's windows are given back (the request is answered or
  // gone: what it still sends is dropped).
  void credit() {
    early.clear();
    if (unconsumed && s->session_) nghttp2_session_consume(s->session_, id, unconsumed);
    unconsumed = 0;
  }
  // The request is over for the upstream (answered here, timed out, too large, gone).
  void drop_upstream() {
    if (proxying && proxy) proxy->abort();
    proxying = false;
    credit();
  }

  // ProxyClient
  bool proxy_head() override {
    s->respond(*this);
    return true;
  }
  bool proxy_body(const char* data, std::size_t len, bool& backlogged) override {
    buf.append(data, len);
    backlogged = buf.size() - buf_off > kStreamHighWater;
    resume();
    return true;
  }
  void proxy_flush() override { s->host_.h2_wake(); }
  void proxy_end() override {
    proxying = false;
    credit();
    buf_end = true;
    resume();
    s->host_.h2_wake();
  }
  void proxy_fail(int code) override {
    proxying = false;
    credit();
    if (submitted) {
      s->reset(*this, NGHTTP2_INTERNAL_ERROR);  // the client sees the truncation
    } else {
      routes::proxy_error(*ex, code);
      s->respond(*this);
    }
    s->host_.h2_wake();
  }
  void proxy_answer() override {
    proxying = false;
    credit();
    s->respond(*this);
    s->host_.h2_wake();
  }
  bool proxy_upgraded() override { return false; }  // (no Upgrade in HTTP/2)
  void proxy_request_drained() override {
    last_input_ms = s->w_.now_ms();  // (the client waited on our window, not the reverse)
    credit();                        // (nothing is held in `early` once the proxy runs)
    s->host_.h2_wake();
  }
  // LimitWaiter
  void limit_decided(bool ok, bool allowed, const routes::LimitResult* results) override {
    ticket = nullptr;
    if (phase != Phase::kLimit) return;
    switch (limits_replied(s->w_, *cfg, *ex, *route, ok, allowed, results)) {
      case LimitVerdict::kGo:
        s->after_limits(*this);
        break;
      case LimitVerdict::kAnswered:
        s->respond(*this);
        break;
      case LimitVerdict::kWait:
        break;
    }
    s->host_.h2_wake();
  }
  // CacheWaiter
  void cache_ready() override {
    if (phase != Phase::kCacheWait) return;
    if (waiting_cache) s->w_.cache_unwait(ex->forward.cache_key, this);
    waiting_cache = false;
    ex->cache_waited = true;  // a miss now fetches without waiting again
    s->start_proxy(*this);
    s->host_.h2_wake();
  }
};

Http2Session::Http2Session(Worker& w, Http2Host& host) : w_(w), host_(host) {
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
  const Config& cfg = *host_.h2_config();
  const Http2Config& h = cfg.http2;
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  // Flow control by hand: a stream's DATA is credited back once taken (at once, or when the
  // upstream took it), so a slow upstream slows its client instead of filling memory.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // The known floods: rapid reset (CVE-2023-44487), CONTINUATION (CVE-2024-28182), SETTINGS and
  // PING floods (acks queued without being read), oversized SETTINGS frames.
  nghttp2_option_set_stream_reset_rate_limit(opt, h.reset_burst, h.reset_rate);
  nghttp2_option_set_max_continuations(opt, 8);
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  nghttp2_session_server_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h.initial_window_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<std::uint32_t>(cfg.server.max_header_bytes)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<std::int32_t>(h.connection_window));
}

Http2Session::~Http2Session() {
  // Streams still open go with the connection: their upstreams, tickets and waits are dropped.
  nghttp2_session* s = session_;
  session_ = nullptr;  // (what the streams' cleanup calls back sees no session)
  std::vector<Stream*> open = live_;
  for (Stream* st : open) release(st);
  if (s) nghttp2_session_del(s);
}

Http2Session::Stream* Http2Session::find(std::int32_t id) const {
  if (!session_) return nullptr;
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, id));
}

bool Http2Session::receive(const char* data, std::size_t len) {
  ssize_t n = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), len);
  if (n < 0) {
    spdlog::debug("http2 from {}: {}", host_.h2_client_ip(), nghttp2_strerror(static_cast<int>(n)));
    if (n != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
      nghttp2_session_terminate_session(
          session_, n == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
    return false;
  }
  return true;
}

void Http2Session::produce(std::string& out, std::size_t limit) {
  while (out.size() < limit) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) failed_ = true;  // (out of memory, a callback failure: the connection ends)
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
}

bool Http2Session::done() const {
  return !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
}

bool Http2Session::wants_write() const {
  return nghttp2_session_want_write(session_) != 0;
}

void Http2Session::shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

// ---- nghttp2 callbacks ----------------------------------------------------------------------

int Http2Session::on_begin_headers(nghttp2_session* session, const nghttp2_frame* f, void* user) {
  auto* self = static_cast<Http2Session*>(user);
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  std::unique_ptr<Stream> sp;
  if (!self->spare_.empty()) {
    sp = std::move(self->spare_.back());
    self->spare_.pop_back();
  } else {
    sp = std::make_unique<Stream>();
    sp->store.reserve(1024);
    sp->fields.reserve(24);
  }
  Stream* st = sp.release();  // owned through live_ until release()
  st->s = self;
  st->id = f->hd.stream_id;
  st->last_input_ms = self->w_.now_ms();  // (a header block must complete within header_timeout)
  st->cfg = self->host_.h2_config();
  st->lc = &self->host_.h2_listener();
  self->live_.push_back(st);
  ++self->streams_;
  nghttp2_session_set_stream_user_data(session, f->hd.stream_id, st);
  return 0;
}

int Http2Session::on_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name,
                            size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                            void* user) {
  auto* self = static_cast<Http2Session*>(user);
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  Stream* st = self->find(f->hd.stream_id);
  if (!st || st->head_error) return 0;
  const ServerConfig& sc = st->cfg->server;
  st->head_bytes += namelen + valuelen + 32;  // (as SETTINGS_MAX_HEADER_LIST_SIZE counts)
  if (st->head_bytes > sc.max_header_bytes || st->fields.size() >= sc.max_headers + 4) {
    st->head_error = 431;
    return 0;
  }
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  Stream::Field fd;
  fd.name = static_cast<std::uint32_t>(st->store.size());
  fd.name_len = static_cast<std::uint32_t>(namelen);
  st->store.append(n);
  fd.value = static_cast<std::uint32_t>(st->store.size());
  fd.value_len = static_cast<std::uint32_t>(valuelen);
  st->store.append(v);
  auto idx = static_cast<std::int32_t>(st->fields.size());
  st->fields.push_back(fd);
  if (n == ":method")
    st->method = idx;
  else if (n == ":path")
    st->path = idx;
  else if (n == ":authority")
    st->authority = idx;
  else if (n == "cookie")
    ++st->cookies;
  return 0;
}

int Http2Session::on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* user) {
  auto* self = static_cast<Http2Session*>(user);
  Stream* st = self->find(f->hd.stream_id);
  if (!st) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    st->end_stream = end;
    self->headers_done(*st);
    return 0;
  }
  if (end && (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS)) {  // (trailers)
    st->end_stream = true;
    self->request_end(*st);
  }
  return 0;
}

int Http2Session::on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                                size_t len, void* user) {
  auto* self = static_cast<Http2Session*>(user);
  Stream* st = self->find(id);
  if (!st) {
    nghttp2_session_consume_connection(session, len);
    return 0;
  }
  st->body_in += len;
  st->last_input_ms = self->w_.now_ms();
  bool too_big = st->route && st->ex && st->body_in > st->route->max_body;
  if (too_big && !st->submitted) {  // a body without Content-Length grew past max_body
    st->drop_upstream();
    self->respond_error(*st, 413);
  } else if (too_big && st->proxying) {  // the answer is on its way: the request is cut
    st->drop_upstream();
    self->reset(*st, NGHTTP2_CANCEL);
  } else if (!st->proxying && !st->submitted && st->route && st->route->handler->streams() &&
             (st->phase == Stream::Phase::kLimit || st->phase == Stream::Phase::kCacheWait)) {
    // Before the proxy starts (a Redis decision, a cache wait): kept, credited once forwarded.
    st->early.append(reinterpret_cast<const char*>(data), len);
    st->unconsumed += len;
    return 0;
  } else if (st->proxying && st->proxy) {
    st->proxy->request_body(reinterpret_cast<const char*>(data), len);
    if (st->proxy->request_backlogged()) {
      st->unconsumed += len;  // credited when the upstream takes it (proxy_request_drained)
      return 0;
    }
  }
  nghttp2_session_consume(session, id, len);
  return 0;
}

int Http2Session::on_stream_close(nghttp2_session*, int32_t id, uint32_t, void* user) {
  auto* self = static_cast<Http2Session*>(user);
  Stream* st = self->find(id);
  if (!st) return 0;
  if (st->ex) {
    if (st->submitted)
      self->finished(*st);
    else  // the client gave up
      record_exchange(self->w_, st->route, *st->ex, 499, 0, st->body_in);
  }
  self->release(st);
  return 0;
}

int Http2Session::on_frame_send(nghttp2_session* session, const nghttp2_frame* f, void* user) {
  auto* self = static_cast<Http2Session*>(user);
  if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
  if (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) return 0;
  Stream* st = self->find(f->hd.stream_id);
  // A complete response before the request's end (413, 429, an error): the client is asked to
  // stop sending the rest (RFC 9113 8.1), instead of uploading into the void.
  if (st && !st->end_stream && !st->proxying)
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
  return 0;
}

bool Http2Session::Stream::sending_blocked() const {
  if (!submitted || body.kind == http::Body::Kind::kNone || eof || !s->session_) return false;
  return nghttp2_session_get_stream_remote_window_size(s->session_, id) <= 0 ||
         nghttp2_session_get_remote_window_size(s->session_) <= 0;
}

void Http2Session::observe(std::uint64_t now) {
  for (Stream* st : live_) {
    if (!st->sending_blocked()) {
      st->blocked_since_ms = 0;
    } else if (st->blocked_since_ms == 0 || st->bytes_out != st->blocked_mark) {
      st->blocked_since_ms = now;  // stuck from now (or again, after some progress)
      st->blocked_mark = st->bytes_out;
    }
  }
}

// A stream's request body clock runs while the client owes bytes it can send (not while it waits
// for window we hold back for a slow upstream).
static bool body_clock(const Http2Session::Stream& st) {
  return !st.end_stream && st.unconsumed == 0;
}

std::uint64_t Http2Session::next_deadline(std::uint64_t body_timeout_ms,
                                          std::uint64_t send_timeout_ms) const {
  std::uint64_t d = 0;
  auto earliest = [&](std::uint64_t t) { d = d == 0 ? t : std::min(d, t); };
  for (const Stream* st : live_) {
    if (st->phase == Stream::Phase::kCacheWait) earliest(st->wait_since_ms + kCacheWaitMs);
    if (body_clock(*st)) earliest(st->last_input_ms + body_timeout_ms);
    if (st->blocked_since_ms) earliest(st->blocked_since_ms + send_timeout_ms);
  }
  return d;
}

void Http2Session::expire(std::uint64_t now, std::uint64_t body_timeout_ms,
                          std::uint64_t send_timeout_ms) {
  std::vector<Stream*> open = live_;  // (release only happens inside nghttp2's calls, not here)
  for (Stream* st : open) {
    if (!st->ex) {  // a header block left unfinished blocks the whole connection
      if (now >= st->last_input_ms + body_timeout_ms) {
        nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
        failed_ = true;
        return;
      }
      continue;
    }
    if (st->phase == Stream::Phase::kCacheWait && now >= st->wait_since_ms + kCacheWaitMs) {
      st->cache_ready();  // waited long enough: it fetches itself
      continue;
    }
    if (st->blocked_since_ms && now >= st->blocked_since_ms + send_timeout_ms) {
      // Its response waits on a window the client does not open (zero-window stall): this
      // stream goes, with its upstream; the others go on.
      st->drop_upstream();
      st->blocked_since_ms = 0;
      reset(*st, NGHTTP2_CANCEL);
      continue;
    }
    if (!body_clock(*st) || now < st->last_input_ms + body_timeout_ms) continue;
    // The client stopped sending its request body (as HTTP/1.1's header_timeout between reads).
    st->drop_upstream();
    if (!st->submitted)
      respond_error(*st, 408);  // (then RST_STREAM NO_ERROR once it is sent: on_frame_send)
    else
      reset(*st, NGHTTP2_CANCEL);
    st->last_input_ms = now;  // (if the client still says nothing, the next expiry resets it)
  }
}

ssize_t Http2Session::read_body(nghttp2_session*, int32_t, uint8_t* out, size_t length,
                                uint32_t* flags, nghttp2_data_source* src, void*) {
  auto* st = static_cast<Stream*>(src->ptr);
  const http::Body& b = st->body;
  std::size_t n = 0;
  switch (b.kind) {
    case http::Body::Kind::kMemory:
      n = std::min<std::size_t>(length, b.data.size() - st->sent);
      std::memcpy(out, b.data.data() + st->sent, n);
      st->sent += n;
      if (st->sent >= b.data.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      break;
    case http::Body::Kind::kFile: {
      std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(length, b.length - st->sent));
      ssize_t r = ::pread(b.fd, out, want, static_cast<off_t>(b.offset + st->sent));
      if (r <= 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the file shrank: reset
      n = static_cast<std::size_t>(r);
      st->sent += n;
      if (st->sent >= b.length) *flags |= NGHTTP2_DATA_FLAG_EOF;
      break;
    }
    case http::Body::Kind::kStream: {
      std::size_t have = st->buf.size() - st->buf_off;
      if (have == 0) {
        if (st->buf_end) {
          *flags |= NGHTTP2_DATA_FLAG_EOF;
          break;
        }
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
      }
      bool was_high = have > kStreamHighWater;
      n = std::min(length, have);
      std::memcpy(out, st->buf.data() + st->buf_off, n);
      st->buf_off += n;
      if (st->buf_off == st->buf.size()) {
        st->buf.clear();
        st->buf_off = 0;
        if (st->buf_end) *flags |= NGHTTP2_DATA_FLAG_EOF;
      } else if (st->buf_off >= 64 * 1024 && st->buf_off >= st->buf.size() / 2) {
        st->buf.erase(0, st->buf_off);  // bounded: what was sent goes
        st->buf_off = 0;
      }
      if (was_high && st->buf.size() - st->buf_off <= kStreamHighWater && st->proxy)
        st->proxy->client_drained();  // the upstream may send more
      break;
    }
    case http::Body::Kind::kNone:
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      break;
  }
  st->bytes_out += n;
  if (*flags & NGHTTP2_DATA_FLAG_EOF) st->eof = true;
  return static_cast<ssize_t>(n);
}

// ---- The request's walk ---------------------------------------------------------------------

void Http2Session::headers_done(Stream& st) {
  st.ex = w_.take_exchange();
  http::Exchange& ex = *st.ex;
  ex.started = std::chrono::steady_clock::now();
  ex.now = std::time(nullptr);
  ex.worker_id = w_.id();
  ex.scheduler = &w_;
  http::Request& req = ex.req;
  req.client_ip = host_.h2_client_ip();
  req.peer_ip = req.client_ip;
  req.tls = host_.h2_tls();
  req.version_minor = 1;  // HTTP/1.1 semantics for everything downstream
  req.h2 = true;
  st.last_input_ms = w_.now_ms();
  w_.make_request_id(st.request_id);
  req.request_id = std::string_view(st.request_id, 16);
  if (st.head_error) {
    respond_error(st, st.head_error);
    return;
  }
  // Split cookie crumbs go back into one field (RFC 9113 8.2.3), joined once here.
  std::string_view cookie;
  if (st.cookies > 1) {
    std::size_t at = st.store.size(), need = 0;
    for (const auto& f : st.fields)
      if (st.name(f) == "cookie") need += f.value_len + 2;
    st.store.reserve(at + need);  // (the store is final before any view is taken)
    for (const auto& f : st.fields)
      if (st.name(f) == "cookie") {
        if (st.store.size() > at) st.store.append("; ");
        st.store.append(st.value(f));
      }
    cookie = std::string_view(st.store.data() + at, st.store.size() - at);
  }
  std::string_view method = st.pseudo(st.method);
  std::string_view target = st.pseudo(st.path);
  req.method = http::parse_method(method);
  req.method_name = method;
  req.target = target;
  if (req.method == http::Method::kConnect || !target.starts_with("/")) {
    respond_error(st, req.method == http::Method::kConnect ? 405 : 400);
    return;
  }
  if (!cookie.empty()) req.headers.add("cookie", cookie);
  std::string_view host;
  int hosts = 0;
  bool has_length = false;
  for (const auto& f : st.fields) {
    std::string_view n = st.name(f);
    if (n.starts_with(':') || (n == "cookie" && !cookie.empty())) continue;
    req.headers.add(n, st.value(f));
    if (n == "host") {
      host = st.value(f);
      ++hosts;
    }
    if (n == "content-length") {
      std::string_view v = st.value(f);
      std::uint64_t cl = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), cl);
      if (ec != std::errc() || p != v.data() + v.size()) {
        respond_error(st, 400);
        return;
      }
      req.content_length = cl;
      has_length = true;
    }
  }
  if (st.authority >= 0) {
    std::string_view authority = st.pseudo(st.authority);
    // A host field that says something else is a malformed request (RFC 9113 8.3.1): one host
    // routes, caches and goes upstream.
    if (hosts > 1 || (hosts == 1 && !http::iequals(host, authority))) {
      respond_error(st, 400);
      return;
    }
    if (hosts == 0) req.headers.add("Host", authority);
    host = authority;
  } else if (hosts > 1) {
    respond_error(st, 400);
    return;
  }
  req.host = host;
  req.has_body = !st.end_stream && !(has_length && req.content_length == 0);
  st.last_input_ms = w_.now_ms();
  Staged staged = stage_request(w_, *st.cfg, *st.lc, ex, target, host_.h2_peer(), st.request_id);
  switch (staged.kind) {
    case Staged::Kind::kRedirect:
      if (https_redirect(ex, staged.status))
        respond(st);
      else
        respond_error(st, 400);
      return;
    case Staged::Kind::kError:
      respond_error(st, staged.status);
      return;
    case Staged::Kind::kRoute:
      break;
  }
  st.route = staged.route;
  if (st.route && !st.route->limits.empty()) {
    switch (decide_limits(w_, *st.cfg, ex, *st.route, &st, st.ticket)) {
      case LimitVerdict::kGo:
        break;
      case LimitVerdict::kWait:
        st.phase = Stream::Phase::kLimit;
        return;
      case LimitVerdict::kAnswered:
        respond(st);
        return;
    }
  }
  after_limits(st);
}

void Http2Session::after_limits(Stream& st) {
  if (st.route && st.route->handler->streams()) {
    start_proxy(st);
  } else if (st.end_stream) {
    dispatch(st);
  } else {
    st.phase = Stream::Phase::kBody;  // answered at the end of the body (which is dropped)
  }
}

void Http2Session::request_end(Stream& st) {
  if (st.proxying && st.proxy) {
    if (st.body_up) st.proxy->request_body_end();
    return;
  }
  if (st.phase == Stream::Phase::kBody && !st.submitted) dispatch(st);
}

void Http2Session::dispatch(Stream& st) {
  http::Exchange& ex = *st.ex;
  if (!st.route) {
    error_page(ex, 404);
  } else {
    st.route->handler->handle(ex);
  }
  respond(st);
}

void Http2Session::start_proxy(Stream& st) {
  http::Exchange& ex = *st.ex;
  ex.forward.reset();
  st.route->handler->handle(ex);
  if (ex.forward.cache_refresh) {  // answered from a stale copy; fetched again meanwhile
    BackgroundRefresh::start(w_, ex, st.route, st.cfg);
    ex.forward.pool = nullptr;
  }
  if (ex.forward.cache_wait) {
    st.phase = Stream::Phase::kCacheWait;
    st.waiting_cache = true;
    st.wait_since_ms = w_.now_ms();  // (at most 5 s, then it fetches itself: expire())
    w_.cache_wait(ex.forward.cache_key, &st);
    return;
  }
  if (!ex.forward.pool) {
    respond(st);
    return;
  }
  if (!st.proxy) st.proxy = std::make_unique<ProxySession>(w_, st);
  st.proxying = true;
  st.phase = Stream::Phase::kProxy;
  bool known_length = ex.req.headers.find("content-length") != nullptr;
  bool body = !st.end_stream || !st.early.empty();
  st.body_up = body;
  st.proxy->start(ex, st.route, body, !known_length);
  if (!st.proxying) return;  // answered at once (no server)
  if (!st.early.empty()) {   // body bytes that came while the rate limit was decided
    st.proxy->request_body(st.early.data(), st.early.size());
    st.early.clear();
    if (!st.proxy->request_backlogged()) st.proxy_request_drained();
  }
  if (body && st.end_stream && st.proxying) st.proxy->request_body_end();
}

void Http2Session::respond_error(Stream& st, int status) {
  if (st.submitted) return;
  st.route = nullptr;
  error_page(*st.ex, status);
  respond(st);
}

void Http2Session::respond(Stream& st) {
  if (st.submitted || !session_) return;
  st.submitted = true;
  st.phase = Stream::Phase::kResponse;
  if (!st.proxying) st.credit();  // (a proxied head: the body may still be going up)
  http::Exchange& ex = *st.ex;
  const http::Response& r = ex.resp;
  st.status = r.status;
  st.body = r.body;
  st.sent = 0;
  // Header fields point at storage that outlives the HEADERS frame (the config, the exchange,
  // literals); what has to be made (numbers, the date, lower-cased names, upstream fields whose
  // bytes the next read reuses) goes into nv_store, reserved first so that it never moves.
  std::string& o = st.nv_store;
  o.clear();
  // A proxied response's fields are views into the upstream's read buffer, which its next read
  // reuses (before the frame is written): those are copied too.
  bool streamed = r.body.kind == http::Body::Kind::kStream;
  std::size_t bound = 192 + ex.extra_headers.size();
  for (const http::HeaderField& f : r.headers) bound += f.name.size() + f.value.size();
  if (streamed)
    bound += r.content_type.size() + r.etag.size() + r.last_modified.size() +
             r.cache_control.size() + r.location.size();
  o.reserve(bound);
  st.nv.clear();
  // Values that change with every response are not indexed: they would only churn HPACK's
  // dynamic table and push out the long fields that repeat (CSP, HSTS, the security preset).
  // (nghttp2 already leaves content-length, etag, location, age and set-cookie out of it; the
  // flag makes the others "never indexed".)
  auto put = [&](std::string_view name, std::string_view value, bool varies = false) {
    nghttp2_nv x;
    x.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
    x.namelen = name.size();
    x.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
    x.valuelen = value.size();
    x.flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE |
              (varies ? NGHTTP2_NV_FLAG_NO_INDEX : 0);
    st.nv.push_back(x);
  };
  auto copy = [&](std::string_view v) {
    std::size_t at = o.size();
    o.append(v);
    return std::string_view(o.data() + at, v.size());
  };
  auto stable = [&](std::string_view v) { return streamed ? copy(v) : v; };
  auto lower = [&](std::string_view n) {
    std::size_t at = o.size();
    o.resize(at + n.size());
    for (std::size_t i = 0; i < n.size(); ++i) o[at + i] = http::ascii_lower(n[i]);
    return std::string_view(o.data() + at, n.size());
  };
  auto number = [&](std::uint64_t v) {
    char num[24];
    auto [end, ec] = std::to_chars(num, num + sizeof num, v);
    (void)ec;
    return copy(std::string_view(num, static_cast<std::size_t>(end - num)));
  };
  put(":status", number(static_cast<std::uint64_t>(r.status)));
  put("server", st.cfg->server.server_header);
  put("date", copy(w_.dates().at(ex.now)));  // (one new entry a second)
  if (!r.content_type.empty()) put("content-type", stable(r.content_type));
  bool no_body =
      ex.req.method == http::Method::kHead || r.status == 304 || r.status == 204 || r.status < 200;
  if (r.status != 304 && r.status != 204 && r.status >= 200 &&
      (r.body.kind != http::Body::Kind::kStream || r.body.length != http::Body::kUnknownLength))
    put("content-length", number(r.body.size()));
  if (!r.etag.empty()) put("etag", stable(r.etag));
  if (!r.last_modified.empty()) put("last-modified", stable(r.last_modified), true);
  if (!r.cache_control.empty()) put("cache-control", stable(r.cache_control));
  if (!r.location.empty()) put("location", stable(r.location));
  if (r.content_range) {
    std::size_t at = o.size();
    r.append_content_range(o);
    put("content-range", std::string_view(o.data() + at, o.size() - at), true);
  }
  for (const http::HeaderField& f : r.headers)
    if (!routes::is_hop_by_hop(f.name)) put(lower(f.name), copy(f.value));
  if (st.route)
    for (const auto& [name, value] : ex.req.tls ? st.route->h2_tls : st.route->h2_plain)
      put(name, value);
  // Fields the codec adds ("\r\nName: value" lines: the rate-limit headers).
  std::string_view extra = ex.extra_headers;
  while (extra.size() > 2) {
    extra.remove_prefix(2);
    std::size_t eol = extra.find("\r\n");
    std::string_view line = extra.substr(0, eol);
    std::size_t colon = line.find(':');
    if (colon != std::string_view::npos)
      put(lower(line.substr(0, colon)), http::trim_ows(line.substr(colon + 1)), true);
    if (eol == std::string_view::npos) break;
    extra.remove_prefix(eol);
  }
  put("x-request-id", ex.req.request_id, true);
  nghttp2_data_provider provider;
  provider.source.ptr = &st;
  provider.read_callback = read_body;
  bool has_data = !no_body && (r.body.kind == http::Body::Kind::kStream || r.body.size() > 0);
  if (!has_data) st.body = http::Body{};
  int rv = nghttp2_submit_response(session_, st.id, st.nv.data(), st.nv.size(),
                                   has_data ? &provider : nullptr);
  if (rv != 0) reset(st, NGHTTP2_INTERNAL_ERROR);
}

void Http2Session::finished(Stream& st) {
  record_exchange(w_, st.route, *st.ex, st.status, st.bytes_out, st.body_in);
}

void Http2Session::reset(Stream& st, std::uint32_t code) {
  if (session_) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, st.id, code);
}

void Http2Session::release(Stream* st) {
  st->drop_upstream();  // (its held-back bytes are credited: nghttp2 would not, once closed)
  if (st->ticket) st->ticket->waiter = nullptr;  // its reply finds nobody
  if (st->waiting_cache && st->ex) w_.cache_unwait(st->ex->forward.cache_key, st);
  if (st->ex) edge::release_exchange(w_, std::move(st->ex));
  if (session_) nghttp2_session_set_stream_user_data(session_, st->id, nullptr);
  std::erase(live_, st);
  --streams_;
  std::unique_ptr<Stream> owned(st);
  owned->clear();
  if (spare_.size() < 16 && session_)
    spare_.push_back(std::move(owned));  // (its ProxySession and buffers are kept for the next)
}

}  // namespace edge
