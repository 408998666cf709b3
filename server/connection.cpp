// The HTTP/1.1 codec. A request head is first scanned whole (line endings, limits), then parsed by
// llhttp in one call, so header views stay valid and pointing into the read buffer; responses are
// queued in order (pipelining) and written with writev/send, large files with sendfile.
#include "server/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <spdlog/spdlog.h>

#include "routes/proxy.h"
#include "routes/route_table.h"
#include "server/background_refresh.h"
#include "server/config.h"
#include "server/http/ip.h"
#include "server/http/path.h"
#include "server/http/status.h"
#include "server/metrics.h"
#include "server/request_stage.h"
#include "server/worker.h"

namespace edge {
namespace {

constexpr std::size_t kCopyBodyMax = 32 * 1024;    // bodies up to this are copied next to the head
constexpr std::size_t kOutHighWater = 256 * 1024;  // stop taking pipelined requests above this
constexpr std::uint64_t kLingerMs = 2000;
constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";

// Sets a flag for a scope (callbacks must not re-enter process() or the HTTP/2 pump).
struct FlagGuard {
  bool& flag;
  bool was;
  explicit FlagGuard(bool& f) : flag(f), was(f) { f = true; }
  ~FlagGuard() { flag = was; }
};

}  // namespace

Connection::Connection(Worker& w, int fd, const sockaddr_storage& peer, unsigned listener)
    : w_(w), cfg_(w.config()), fd_(fd), listener_(listener), peer_(peer) {
  if (peer.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
    inet_ntop(AF_INET6, &a->sin6_addr, client_ip_, sizeof client_ip_);
    // IPv4-mapped addresses are logged as plain IPv4.
    if (std::string_view(client_ip_).starts_with("::ffff:") && std::strchr(client_ip_, '.'))
      std::memmove(client_ip_, client_ip_ + 7, std::strlen(client_ip_ + 7) + 1);
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
    inet_ntop(AF_INET, &a->sin_addr, client_ip_, sizeof client_ip_);
  }
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
}

Connection::~Connection() = default;

const llhttp_settings_t& Connection::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t x;
    llhttp_settings_init(&x);
    x.on_url = on_url;
    x.on_header_field = on_header_field;
    x.on_header_value = on_header_value;
    x.on_headers_complete = on_headers_complete;
    x.on_body = on_body;
    x.on_chunk_header = on_chunk_header;
    x.on_message_complete = on_message_complete;
    return x;
  }();
  return s;
}

void Connection::start(bool counted) {
  counted_total_ = counted;
  if (const auto& slot = cfg_->listeners[listener_].tls)
    tls_ = std::make_unique<tls::TlsTransport>(slot->ctx.load());
  counted_ = cfg_->listeners[listener_].max_conns_per_ip != 0;
  stats_ = cfg_->listeners[listener_].stats;
  stats_->at(w_.id()).opened.add();
  uv_poll_init(w_.loop(), &poll_, fd_);
  poll_.data = this;
  w_.link(this);
  expire_in(cfg_->server.header_timeout);
  update_poll();
}

void Connection::update_poll() {
  if (phase_ == Phase::kClosed) return;
  int want;
  if (output_pending())
    want = UV_WRITABLE;  // backpressure: read no more until the output drains
  else if (reading_paused())
    want = 0;
  else
    want = UV_READABLE;
  if (want != poll_events_) {
    poll_events_ = want;
    if (want)
      uv_poll_start(&poll_, want, on_poll);
    else
      uv_poll_stop(&poll_);
  }
}

bool Connection::reading_paused() const {
  switch (phase_) {
    case Phase::kBody:
    case Phase::kTunnel:
      return (proxying_ && proxy_->request_backlogged()) || (buf_ && end_ == cap_ && start_ < end_);
    case Phase::kLimit:
    case Phase::kCacheWait:
      return true;
    case Phase::kWait:
      // Reading on only notices a client that leaves; pipelined bytes wait in the buffer. TLS
      // would decrypt into a buffer without bound: not read until the response is done.
      return tls_ != nullptr || (buf_ && end_ == cap_);
    default:
      return false;
  }
}

void Connection::on_poll(uv_poll_t* p, int status, int events) {
  auto* c = static_cast<Connection*>(p->data);
  if (status < 0) {
    c->close();
    return;
  }
  if (events & UV_WRITABLE) c->on_writable();
  if (c->phase_ != Phase::kClosed && (events & UV_READABLE)) c->on_readable();
}

void Connection::close() {
  if (phase_ == Phase::kClosed) return;
  if (phase_ == Phase::kCacheWait) w_.cache_unwait(ex_->forward.cache_key, this);
  phase_ = Phase::kClosed;
  if (proxy_) proxy_->abort();
  if (limit_ticket_) limit_ticket_->waiter = nullptr;  // its reply finds nobody
  limit_ticket_ = nullptr;
  h2_.reset();  // its streams drop their upstreams, rate-limit tickets and cache waits
  if (wake_queued_) w_.cancel_wake(this);
  wake_queued_ = false;
  if (counted_) cfg_->conns_per_ip->release(http::IpAddress::from(peer_));
  counted_ = false;
  if (counted_total_) cfg_->conns_total->fetch_sub(1, std::memory_order_relaxed);
  counted_total_ = false;
  proxying_ = streaming_ = false;
  stats_->at(w_.id()).closed.add();
  w_.unlink(this);
  drop_read_buffer();
  body_ = http::Body{};
  release_exchange();
  uv_poll_stop(&poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), on_close);
}

void Connection::on_close(uv_handle_t* h) {
  auto* c = static_cast<Connection*>(h->data);
  ::close(c->fd_);
  delete c;
}

void Connection::close_when_idle() {
  close_when_idle_ = true;
  if (phase_ == Phase::kH2) {  // GOAWAY: the open streams finish, no new ones
    h2_->shutdown();
    if (!processing_) h2_pump();
    return;
  }
  bool idle = phase_ == Phase::kHead && !head_started_ && start_ == end_ && !output_pending();
  if (idle) close();
}

void Connection::check_timeout(std::uint64_t now_ms) {
  if (phase_ == Phase::kClosed || deadline_ms_ == 0 || now_ms < deadline_ms_) return;
  if (phase_ == Phase::kH2) {
    deadline_ms_ = 0;
    if (output_pending()) {  // the client reads nothing of what is queued
      close();
      return;
    }
    if (h2_->open_streams() > 0) {  // a stream's own clock
      const ServerConfig& sc = cfg_->server;
      h2_->expire(now_ms, static_cast<std::uint64_t>(sc.header_timeout.count()),
                  static_cast<std::uint64_t>(sc.send_timeout.count()));
      if (h2_->failed()) h2_failed_ = true;
      h2_pump();
      return;
    }
    h2_->shutdown();  // idle past keepalive_timeout: GOAWAY and close
    h2_failed_ = true;
    h2_pump();
    return;
  }
  if (phase_ == Phase::kCacheWait) {  // waited long enough: fetch it ourselves
    cache_ready();
    return;
  }
  if (phase_ == Phase::kWait || phase_ == Phase::kTunnel || phase_ == Phase::kLimit ||
      (phase_ == Phase::kBody && proxying_ && proxy_->request_backlogged())) {
    // The upstream's timeouts govern; only a client that stopped reading is cut here.
    if (output_pending())
      close();
    else
      deadline_ms_ = 0;
    return;
  }
  if (phase_ == Phase::kLinger || output_pending()) {
    close();
  } else if (head_started_ || phase_ == Phase::kBody) {
    respond_error(408, true);
    if (phase_ != Phase::kClosed) process();
  } else {
    close();  // idle keep-alive
  }
}

void Connection::drop_read_buffer() {
  if (!buf_) return;
  if (!big_buf_) w_.give_buffer(std::move(buf_));  // (a grown one is freed)
  buf_.reset();
  start_ = end_ = 0;
}

bool Connection::make_room() {
  const ServerConfig& sc = cfg_->server;
  if (!buf_) {
    buf_ = w_.take_buffer();
    cap_ = Worker::kBufferSize;
    big_buf_ = false;
    start_ = end_ = scan_ = line_start_ = head_end_ = 0;
  }
  if (phase_ == Phase::kTunnel && start_ == end_) start_ = end_ = 0;
  if (end_ < cap_) return true;
  if (phase_ == Phase::kWait || phase_ == Phase::kTunnel || phase_ == Phase::kLimit ||
      phase_ == Phase::kCacheWait)
    return false;  // views point into it
  if (phase_ == Phase::kBody) {
    // Keep the head (the views use it) and the body bytes not parsed yet, moved down to it.
    if (start_ > head_end_) {
      std::memmove(buf_.get() + head_end_, buf_.get() + start_, end_ - start_);
      end_ -= start_ - head_end_;
      start_ = head_end_;
    }
  } else if (start_ > 0) {
    std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
    end_ -= start_;
    scan_ -= start_;
    line_start_ -= start_;
    start_ = 0;
  } else if (cap_ < sc.max_header_bytes + 1024) {
    std::size_t ncap = sc.max_header_bytes + 1024;
    std::unique_ptr<char[]> nb(new char[ncap]);
    std::memcpy(nb.get(), buf_.get(), end_);
    if (!big_buf_) w_.give_buffer(std::move(buf_));
    buf_ = std::move(nb);
    cap_ = ncap;
    big_buf_ = true;
  }
  if (end_ < cap_) return true;
  // A head filling the whole buffer leaves no room for its body; a head larger than every limit
  // is reported by scan_head.
  if (phase_ == Phase::kBody && start_ == end_) respond_error(413, true);
  return false;
}

void Connection::note_input() {
  const ServerConfig& sc = cfg_->server;
  if (phase_ == Phase::kHead && !head_started_ && start_ == end_) {
    head_started_ = true;
    expire_in(sc.header_timeout);
  } else if (phase_ == Phase::kBody) {
    expire_in(sc.header_timeout);
  }
}

void Connection::on_readable() {
  if (phase_ == Phase::kLinger) {
    char sink[4096];
    for (;;) {
      ssize_t n = ::read(fd_, sink, sizeof sink);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      close();
      return;
    }
  }
  if (tls_) {
    on_tls_readable();
    return;
  }
  if (!make_room()) {
    if (phase_ == Phase::kWait || phase_ == Phase::kTunnel) {
      update_poll();
      return;
    }
    if (phase_ != Phase::kClosed) process();
    return;
  }
  ssize_t n = ::read(fd_, buf_.get() + end_, cap_ - end_);
  if (n == 0) {
    close();
    return;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    close();
    return;
  }
  note_input();
  end_ += static_cast<std::size_t>(n);
  process();
}

void Connection::on_tls_readable() {
  char cipher[16 * 1024 + 512];
  ssize_t n = ::read(fd_, cipher, sizeof cipher);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    close();
    return;
  }
  if (n < 0) return;
  bool was_done = tls_->handshake_done();
  tls::TlsTransport::Result r = tls_->feed(cipher, static_cast<std::size_t>(n));
  if (!was_done && tls_->handshake_done()) {
    auto& st = stats_->at(w_.id());
    st.tls_handshakes.add();
    if (tls_->session_reused()) st.tls_resumptions.add();
  } else if (!was_done && r == tls::TlsTransport::Result::kError) {
    stats_->at(w_.id()).tls_errors.add();
  }
  switch (r) {
    case tls::TlsTransport::Result::kPlainHttp: {
      // Plain HTTP on the TLS port: a short answer in clear, then close.
      static constexpr std::string_view kMsg =
          "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "
          "29\r\n"
          "Connection: close\r\n\r\nThis port speaks HTTPS only.\n";
      (void)!::send(fd_, kMsg.data(), kMsg.size(), MSG_NOSIGNAL);
      tls_.reset();
      start_linger();
      return;
    }
    case tls::TlsTransport::Result::kError:
      spdlog::debug("tls from {}: {}", client_ip_, tls_->error_string());
      write_tls_out();  // the alert, if any
      close();
      return;
    case tls::TlsTransport::Result::kClosed:
      peer_closed_ = true;
      break;
    default:
      break;
  }
  process();
  if (peer_closed_ && phase_ != Phase::kClosed && !output_pending()) close();
}

bool Connection::refill_from_tls() {
  bool got = false;
  while (tls_ && !tls_->pending_plain().empty()) {
    if (!make_room()) break;
    note_input();
    end_ += tls_->read_plain(buf_.get() + end_, cap_ - end_);
    got = true;
  }
  return got;
}

bool Connection::output_pending() const {
  return out_off_ < out_.size() || body_.kind != http::Body::Kind::kNone ||
         (tls_ && tls_->pending_out_size() > 0);
}

void Connection::on_writable() {
  if (phase_ == Phase::kClosed) return;
  if (!flush()) {
    update_poll();
    return;
  }
  if (phase_ == Phase::kClosed || phase_ == Phase::kLinger) return;
  if (proxying_) proxy_->client_drained();
  process();  // pipelined requests waiting behind the output
}

void Connection::begin_message() {
  phase_ = Phase::kHead;
  scan_ = line_start_ = start_;
  lines_ = 0;
  first_line_done_ = false;
  head_started_ = start_ < end_;
  message_done_ = false;
  expect_continue_ = false;
  last_was_value_ = false;
  parse_status_ = 0;
  header_count_ = 0;
  body_seen_ = 0;
  chunk_left_ = 0;
  crlf_left_ = 0;
  trailer_bytes_ = 0;
  route_ = nullptr;
  if (llhttp_get_errno(&parser_) == HPE_PAUSED) llhttp_resume(&parser_);
}

long Connection::scan_head() {
  const ServerConfig& sc = cfg_->server;
  const char* p = buf_.get();
  if (scan_ == start_ && !first_line_done_) {
    // RFC 9112 2.2: ignore empty lines before the request line.
    while (start_ + 1 < end_ && p[start_] == '\r' && p[start_ + 1] == '\n') start_ += 2;
    scan_ = line_start_ = start_;
    if (start_ == end_) return 0;
  }
  std::size_t i = scan_;
  for (; i < end_; ++i) {
    unsigned char c = static_cast<unsigned char>(p[i]);
    if (i == line_start_ && first_line_done_ && (c == ' ' || c == '\t')) return -400;  // obs-fold
    if (c > '\r' && c != 0x7f) continue;
    if (c == '\t') continue;
    if (c == '\r') {
      if (i + 1 >= end_) break;
      if (p[i + 1] != '\n') return -400;  // bare CR
      std::size_t len = i - line_start_;
      if (!first_line_done_) {
        if (len > sc.max_request_line) return -414;
        if (len == 0) return -400;
        first_line_done_ = true;
      } else if (len == 0) {
        scan_ = i + 2;
        return static_cast<long>(i + 2 - start_);
      } else if (++lines_ > sc.max_headers) {
        return -431;
      }
      line_start_ = i + 2;
      ++i;
      continue;
    }
    return -400;  // bare LF, NUL or another control character in the head
  }
  scan_ = i;
  if (!first_line_done_ && end_ - line_start_ > sc.max_request_line) return -414;
  if (end_ - start_ >= sc.max_header_bytes) return -431;
  return 0;
}

int Connection::on_url(llhttp_t* p, const char* at, std::size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  http::extend_view(c->ex_->req.target, at, len);
  return 0;
}

int Connection::on_header_field(llhttp_t* p, const char* at, std::size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  // Trailers after a chunked body are dropped: they would land among the head's fields, with
  // views into body bytes the buffer no longer holds. (llhttp still bounds their syntax.)
  if (p->flags & F_TRAILING) return c->count_trailer(len);
  http::HeaderList& h = c->ex_->req.headers;
  if (h.empty() || c->last_was_value_) {
    h.add(std::string_view(at, len), {});
    c->last_was_value_ = false;
  } else {
    http::extend_view(h[h.size() - 1].name, at, len);
  }
  return 0;
}

int Connection::on_header_value(llhttp_t* p, const char* at, std::size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (p->flags & F_TRAILING) return c->count_trailer(len);
  http::HeaderList& h = c->ex_->req.headers;
  http::extend_view(h[h.size() - 1].value, at, len);
  c->last_was_value_ = true;
  return 0;
}

int Connection::on_headers_complete(llhttp_t* p) {
  auto* c = static_cast<Connection*>(p->data);
  http::Request& req = c->ex_->req;
  auto fail = [&](int status) {
    c->parse_status_ = status;
    return -1;
  };
  if (p->http_major != 1) return fail(505);
  req.version_minor = p->http_minor;
  int hosts = 0;
  for (const http::HeaderField& f : req.headers) {
    if (!http::is_token(f.name)) return fail(400);  // "X A:" or "X-A :" (RFC 9112 5.1)
    if (http::iequals(f.name, "Host")) {
      ++hosts;
      req.host = f.value;
    } else if (http::iequals(f.name, "Transfer-Encoding")) {
      if (req.version_minor == 0) return fail(400);
      if (!http::iequals(http::trim_ows(f.value), "chunked")) return fail(501);
    } else if (http::iequals(f.name, "Expect")) {
      if (!http::iequals(http::trim_ows(f.value), "100-continue")) return fail(417);
      c->expect_continue_ = true;
    }
  }
  if (hosts > 1 || (hosts == 0 && req.version_minor == 1)) return fail(400);
  req.has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
  req.content_length = (p->flags & F_CHUNKED) ? 0 : p->content_length;
  return 0;
}

int Connection::count_trailer(std::size_t len) {
  trailer_bytes_ += len;
  if (trailer_bytes_ > cfg_->server.max_header_bytes) {
    parse_status_ = 431;
    return -1;
  }
  return 0;
}

int Connection::on_chunk_header(llhttp_t* p) {
  static_cast<Connection*>(p->data)->chunk_left_ = p->content_length;
  return 0;
}

bool Connection::check_chunk_crlf(const char* at, const char* end) {
  for (; crlf_left_ > 0 && at < end; ++at, --crlf_left_)
    if (*at != (crlf_left_ == 2 ? '\r' : '\n')) return false;
  return true;
}

int Connection::on_body(llhttp_t* p, const char* at, std::size_t len) {
  auto* c = static_cast<Connection*>(p->data);
  if (p->flags & F_CHUNKED) {
    // llhttp 8 skips the two bytes after chunk data without looking at them: "5\r\nhelloXX0…"
    // would pass, and a proxy in front that reads it differently could smuggle a request.
    c->chunk_left_ -= std::min<std::uint64_t>(c->chunk_left_, len);
    if (c->chunk_left_ == 0) {
      c->crlf_left_ = 2;
      if (!c->check_chunk_crlf(at + len, c->buf_.get() + c->end_)) {
        c->parse_status_ = 400;
        return -1;
      }
    }
  }
  c->body_seen_ += len;
  if (c->route_ && c->body_seen_ > c->route_->max_body) {
    c->parse_status_ = 413;
    return -1;
  }
  if (c->proxying_) c->proxy_->request_body(at, len);  // others drop it
  return 0;
}

int Connection::on_message_complete(llhttp_t* p) {
  auto* c = static_cast<Connection*>(p->data);
  c->message_done_ = true;
  return HPE_PAUSED;
}

void Connection::refresh_config() {
  const auto& now = w_.config();
  if (now.get() == cfg_.get()) return;
  // A reload: the next request uses the new snapshot, on the same listener (found by address).
  const ListenConfig& mine = cfg_->listeners[listener_];
  for (std::size_t i = 0; i < now->listeners.size(); ++i) {
    const ListenConfig& l = now->listeners[i];
    if (l.stats == mine.stats && (l.tls != nullptr) == (tls_ != nullptr)) {  // (the same key)
      listener_ = static_cast<unsigned>(i);
      cfg_ = now;
      return;
    }
  }
  close_when_idle_ = true;  // its listener is gone: this request is its last
}

bool Connection::parse_head(std::size_t head_len) {
  refresh_config();
  if (!ex_) ex_ = w_.take_exchange();
  http::Exchange& ex = *ex_;
  ex.started = std::chrono::steady_clock::now();
  ex.now = std::time(nullptr);
  ex.worker_id = w_.id();
  ex.scheduler = &w_;
  ex.req.client_ip = client_ip_;
  ex.req.peer_ip = client_ip_;
  ex.req.tls = tls_ != nullptr;
  const char* head = buf_.get() + start_;
  llhttp_errno_t err = llhttp_execute(&parser_, head, head_len);
  std::size_t consumed = head_len;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    consumed = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - head);
    if (err == HPE_PAUSED_UPGRADE) {
      keep_alive_ = false;  // no protocol upgrade here yet: answer, then close
      message_done_ = true;
    }
  } else if (err != HPE_OK) {
    int status = parse_status_ ? parse_status_ : 400;
    start_ += head_len;
    respond_error(status, true);
    return false;
  }
  start_ += consumed;
  head_end_ = start_;
  http::Request& req = ex.req;
  req.method = http::parse_method(llhttp_method_name(static_cast<llhttp_method_t>(parser_.method)));
  req.method_name = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));

  // Target: origin-form, or absolute-form whose authority replaces Host.
  std::string_view target = req.target;
  if (!target.starts_with("/")) {
    std::size_t scheme = target.find("://");
    if (scheme == std::string_view::npos || req.method == http::Method::kConnect) {
      respond_error(400, true);
      return false;
    }
    std::string_view rest = target.substr(scheme + 3);
    std::size_t slash = rest.find('/');
    req.host = rest.substr(0, slash);
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  }
  const ListenConfig& lc = cfg_->listeners[listener_];
  Staged st = stage_request(w_, *cfg_, lc, ex, target, peer_, request_id_);
  switch (st.kind) {
    case Staged::Kind::kRedirect:
      redirect_to_https(st.status);
      return false;
    case Staged::Kind::kError:
      respond_error(st.status, true);
      return false;
    case Staged::Kind::kRoute:
      break;
  }
  route_ = st.route;
  // (100 Continue goes out in after_head: only once a rate limit, if any, allowed it)
  return true;
}

void Connection::process() {
  FlagGuard guard(processing_);
  if (phase_ == Phase::kH2) {
    process_h2();
    return;
  }
  if (!h2_checked_ && phase_ == Phase::kHead && maybe_h2()) return;
  while (phase_ == Phase::kHead || phase_ == Phase::kBody || phase_ == Phase::kTunnel) {
    if (body_.kind != http::Body::Kind::kNone || out_.size() - out_off_ > kOutHighWater) {
      if (!flush()) break;
      if (phase_ == Phase::kClosed || phase_ == Phase::kLinger) return;
      if (closing_) break;
    }
    if (closing_) break;
    if (phase_ == Phase::kHead) {
      if (start_ == end_ && !refill_from_tls()) break;
      long r = scan_head();
      if (r == 0 && refill_from_tls()) continue;
      if (r == 0) break;
      if (r < 0) {
        respond_error(static_cast<int>(-r), true);
        break;
      }
      if (!parse_head(static_cast<std::size_t>(r))) break;
      if (route_ && !route_->limits.empty() && !check_limits()) {
        if (phase_ == Phase::kLimit) break;
        continue;
      }
      after_head();
    } else if (phase_ == Phase::kTunnel) {
      if (start_ == end_ && !refill_from_tls()) break;
      if (proxy_->request_backlogged()) break;
      proxy_->tunnel_from_client(buf_.get() + start_, end_ - start_);
      start_ = end_ = 0;
    } else {
      if (proxying_ && proxy_->request_backlogged()) break;
      if (start_ == end_ && !refill_from_tls()) break;
      const char* data = buf_.get() + start_;
      if (crlf_left_ && !check_chunk_crlf(data, buf_.get() + end_)) {  // split across reads
        start_ = end_;
        respond_error(400, true);
        break;
      }
      llhttp_errno_t err = llhttp_execute(&parser_, data, end_ - start_);
      if (err == HPE_PAUSED) {
        start_ += static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
        if (proxying_) {
          proxy_->request_body_end();
          phase_ = Phase::kWait;
        } else {
          dispatch();
        }
      } else if (err == HPE_OK) {
        start_ = end_ = head_end_;  // body bytes consumed and dropped
      } else {
        start_ = end_;
        respond_error(parse_status_ ? parse_status_ : 400, true);
        break;
      }
    }
  }
  if (phase_ == Phase::kClosed) return;
  if (flush() && phase_ != Phase::kClosed && phase_ != Phase::kLinger) {
    if (closing_ && !proxying_) {  // (a proxied response may still be arriving)
      start_linger();
      return;
    }
    if (phase_ == Phase::kHead && start_ == end_) {
      drop_read_buffer();
      if (out_.empty() && out_.capacity()) w_.give_output(out_);
      if (close_when_idle_) {
        close();
        return;
      }
    }
  }
  if (phase_ != Phase::kClosed) update_poll();
}

void Connection::dispatch() {
  http::Exchange& ex = *ex_;
  // An Upgrade we do not speak is answered normally, then the connection closes: bytes after it
  // belong to another protocol.
  keep_alive_ = keep_alive_ && llhttp_should_keep_alive(&parser_) && !parser_.upgrade;
  if (!route_) {
    ex.set_static(404, kTextPlain, "404 Not Found\n");
    ex.resp.cache_control = "no-store";
  } else {
    route_->handler->handle(ex);
  }
  finish_response();
}

void Connection::respond_error(int status, bool close_after) {
  if (proxying_) {
    proxy_->abort();
    proxying_ = false;
    if (streaming_) {  // a response is half sent: nothing else can follow on this connection
      close();
      return;
    }
  }
  if (!ex_) ex_ = w_.take_exchange();
  http::Exchange& ex = *ex_;
  if (ex.req.request_id.empty()) {
    w_.make_request_id(request_id_);
    ex.req.request_id = std::string_view(request_id_, 16);
    ex.req.client_ip = client_ip_;
    ex.started = std::chrono::steady_clock::now();
    ex.now = std::time(nullptr);
  }
  error_page(ex, status);
  if (close_after) {
    closing_ = true;
    keep_alive_ = false;
  }
  route_ = nullptr;
  finish_response();
}

void Connection::redirect_to_https(int port) {
  http::Exchange& ex = *ex_;
  if (!https_redirect(ex, port)) {
    respond_error(400, ex.req.has_body);  // an unread body must not be taken for the next request
    return;
  }
  const http::Request& req = ex.req;
  // A body we will not read makes the connection unusable for the next request.
  if (req.has_body) closing_ = true;
  route_ = nullptr;
  finish_response();
}

void Connection::serialize_head(const routes::Route* route) {
  http::Exchange& ex = *ex_;
  const http::Response& r = ex.resp;
  const ServerConfig& sc = cfg_->server;
  std::string& o = out_;
  o.append("HTTP/1.1 ");
  http::append_number(o, static_cast<std::uint64_t>(r.status));
  o.push_back(' ');
  o.append(http::reason_phrase(r.status));
  o.append("\r\nServer: ");
  o.append(sc.server_header);
  o.append("\r\nDate: ");
  o.append(w_.dates().at(ex.now));
  if (!r.content_type.empty()) {
    o.append("\r\nContent-Type: ");
    o.append(r.content_type);
  }
  if (r.status != 304 && r.status != 204 && r.status >= 200) {
    if (r.body.kind != http::Body::Kind::kStream || r.body.length != http::Body::kUnknownLength) {
      o.append("\r\nContent-Length: ");
      http::append_number(o, r.body.size());
    } else if (stream_chunked_) {
      o.append("\r\nTransfer-Encoding: chunked");
    }
  }
  if (!r.etag.empty()) {
    o.append("\r\nETag: ");
    o.append(r.etag);
  }
  if (!r.last_modified.empty()) {
    o.append("\r\nLast-Modified: ");
    o.append(r.last_modified);
  }
  if (!r.cache_control.empty()) {
    o.append("\r\nCache-Control: ");
    o.append(r.cache_control);
  }
  if (!r.location.empty()) {
    o.append("\r\nLocation: ");
    o.append(r.location);
  }
  if (r.content_range) {
    o.append("\r\nContent-Range: ");
    r.append_content_range(o);
  }
  for (const http::HeaderField& f : r.headers) {
    o.append("\r\n");
    o.append(f.name);
    o.append(": ");
    o.append(f.value);
  }
  if (route) {
    for (const auto& [name, value] : ex.req.tls ? route->headers_tls : route->headers_plain) {
      o.append("\r\n");
      o.append(name);
      o.append(": ");
      o.append(value);
    }
  }
  o.append(ex.extra_headers);
  o.append("\r\nX-Request-Id: ");
  o.append(ex.req.request_id);
  if (r.status == 101)
    ;  // the upstream's Connection: upgrade went with its headers
  else if (closing_ || !keep_alive_)
    o.append("\r\nConnection: close");
  else if (ex.req.version_minor == 0)
    o.append("\r\nConnection: keep-alive");
  o.append("\r\n\r\n");
}

void Connection::finish_response() {
  http::Exchange& ex = *ex_;
  http::Response& r = ex.resp;
  if (close_when_idle_ || r.close) closing_ = true;
  if (!keep_alive_) closing_ = true;
  if (closing_) keep_alive_ = false;
  if (out_.capacity() < 1024) w_.take_output(out_);  // an idle connection holds no output buffer
  serialize_head(route_);
  answered_ = true;
  bool no_body =
      ex.req.method == http::Method::kHead || r.status == 304 || r.status == 204 || r.status < 200;
  std::uint64_t body_bytes = 0;
  if (!no_body && r.body.kind != http::Body::Kind::kNone && r.body.size() > 0) {
    body_bytes = r.body.size();
    if (r.body.kind == http::Body::Kind::kMemory && r.body.data.size() <= kCopyBodyMax) {
      out_.append(r.body.data);
    } else {
      body_ = std::move(r.body);
      body_sent_ = 0;
    }
  }
  log_exchange(r.status, body_bytes);
  if (body_.kind == http::Body::Kind::kNone) release_exchange();
  begin_message();
}

void Connection::log_exchange(int status, std::uint64_t bytes) {
  record_exchange(w_, route_, *ex_, status, bytes, body_seen_);
}

void Connection::release_exchange() {
  edge::release_exchange(w_, std::move(ex_));
}

bool Connection::flush() {
  if (tls_) return flush_tls();
  const ServerConfig& sc = cfg_->server;
  bool wrote = false;
  for (;;) {
    std::size_t pending = out_.size() - out_off_;
    ssize_t n;
    if (pending > 0) {
      if (body_.kind == http::Body::Kind::kMemory) {
        iovec iov[2] = {
            {out_.data() + out_off_, pending},
            {const_cast<char*>(body_.data.data() + body_sent_), body_.data.size() - body_sent_}};
        n = ::writev(fd_, iov, 2);
        if (n > 0) {
          std::size_t k = static_cast<std::size_t>(n);
          std::size_t a = std::min(k, pending);
          out_off_ += a;
          body_sent_ += k - a;
        }
      } else {
        int flags = MSG_NOSIGNAL | (body_.kind == http::Body::Kind::kFile ? MSG_MORE : 0);
        n = ::send(fd_, out_.data() + out_off_, pending, flags);
        if (n > 0) out_off_ += static_cast<std::size_t>(n);
      }
    } else if (body_.kind == http::Body::Kind::kMemory) {
      n = ::send(fd_, body_.data.data() + body_sent_, body_.data.size() - body_sent_, MSG_NOSIGNAL);
      if (n > 0) body_sent_ += static_cast<std::uint64_t>(n);
    } else if (body_.kind == http::Body::Kind::kFile) {
      off_t off = static_cast<off_t>(body_.offset + body_sent_);
      std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(body_.length - body_sent_, 4u << 20));
      n = ::sendfile(fd_, body_.fd, &off, want);
      if (n == 0) {  // the file shrank under us: the promised length cannot be kept
        close();
        return false;
      }
      if (n > 0) body_sent_ += static_cast<std::uint64_t>(n);
    } else {
      break;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        expire_in(sc.send_timeout);
        return false;
      }
      close();
      return false;
    }
    wrote = true;
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
    }
    if (body_.kind != http::Body::Kind::kNone && body_sent_ >= body_.size() &&
        out_off_ == out_.size()) {
      body_ = http::Body{};
      release_exchange();
    }
  }
  if (wrote && phase_ == Phase::kHead && answered_) await_next_request();
  if (wrote && proxying_) proxy_->client_drained();  // an upstream paused for us may go on
  return true;
}

void Connection::expire_in(std::chrono::milliseconds d) {
  deadline_ms_ = w_.now_ms() + static_cast<std::uint64_t>(d.count());
}

void Connection::await_next_request() {
  answered_ = false;
  // A response went out in full: the connection waits for the next request. (Reads alone never
  // move the deadline: a head dribbled byte by byte still has header_timeout in all.)
  const ServerConfig& sc = cfg_->server;
  bool partial = start_ < end_;
  head_started_ = partial;
  auto t = partial ? sc.header_timeout : sc.keepalive_timeout;
  expire_in(t);
}

ssize_t Connection::send_ciphertext() {
  std::string_view chunks[16];
  iovec iov[16];
  std::size_t k = tls_->out_chunks(chunks, 16);
  for (std::size_t i = 0; i < k; ++i)
    iov[i] = {const_cast<char*>(chunks[i].data()), chunks[i].size()};
  ssize_t n;
  do {
    n = ::writev(fd_, iov, static_cast<int>(k));
  } while (n < 0 && errno == EINTR);
  if (n > 0) tls_->consume_out(static_cast<std::size_t>(n));
  return n;
}

bool Connection::write_tls_out() {
  while (tls_ && tls_->pending_out_size() > 0)
    if (send_ciphertext() < 0) return false;
  return true;
}

bool Connection::flush_tls() {
  const ServerConfig& sc = cfg_->server;
  constexpr std::size_t kHighWater = 256 * 1024;  // ciphertext queued before the socket takes it
  constexpr std::size_t kChunk = 64 * 1024;
  bool wrote = false;
  for (;;) {
    // Encrypt what is queued, in full records, until enough ciphertext waits for the socket.
    while (tls_->handshake_done() && tls_->pending_out_size() < kHighWater) {
      if (out_off_ < out_.size()) {
        tls_->write_plain(out_.data() + out_off_, out_.size() - out_off_);
        out_off_ = out_.size();
      } else if (body_.kind == http::Body::Kind::kMemory && body_sent_ < body_.data.size()) {
        std::size_t n = std::min<std::size_t>(kChunk, body_.data.size() - body_sent_);
        tls_->write_plain(body_.data.data() + body_sent_, n);
        body_sent_ += n;
      } else if (body_.kind == http::Body::Kind::kFile && body_sent_ < body_.length) {
        char* scratch = w_.io_scratch();
        std::size_t want = static_cast<std::size_t>(
            std::min<std::uint64_t>(Worker::kScratchSize, body_.length - body_sent_));
        ssize_t n = ::pread(body_.fd, scratch, want, static_cast<off_t>(body_.offset + body_sent_));
        if (n <= 0) {  // the file shrank under us: the promised length cannot be kept
          close();
          return false;
        }
        tls_->write_plain(scratch, static_cast<std::size_t>(n));
        body_sent_ += static_cast<std::uint64_t>(n);
      } else {
        break;
      }
    }
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
    }
    if (body_.kind != http::Body::Kind::kNone && body_sent_ >= body_.size()) {
      body_ = http::Body{};
      release_exchange();
    }
    if (tls_->pending_out_size() == 0) break;
    if (send_ciphertext() < 0) {
      if (errno == EAGAIN) {
        expire_in(sc.send_timeout);
        return false;
      }
      close();
      return false;
    }
    wrote = true;
  }
  if (!output_pending() && start_ == end_ &&
      (phase_ == Phase::kHead || (phase_ == Phase::kH2 && h2_->open_streams() == 0)))
    tls_->release_buffers();
  // Handshake bytes and session tickets are not a response: a client that completed the
  // handshake still has header_timeout (from the accept) to send its request.
  if (wrote && phase_ == Phase::kHead && answered_ && !output_pending()) await_next_request();
  if (wrote && proxying_ && !output_pending()) proxy_->client_drained();
  return true;
}

void Connection::start_linger() {
  // Half-close and drain what the client still sends, so it reads our response instead of a reset.
  if (tls_) {
    tls_->shutdown();
    write_tls_out();
  }
  ::shutdown(fd_, SHUT_WR);
  phase_ = Phase::kLinger;
  expire_in(std::chrono::milliseconds(kLingerMs));
  if (poll_events_ != UV_READABLE) {
    poll_events_ = UV_READABLE;
    uv_poll_start(&poll_, UV_READABLE, on_poll);
  }
}

// ---- Proxied exchanges ----------------------------------------------------------------------

void Connection::start_proxy() {
  http::Exchange& ex = *ex_;
  // A refused Upgrade is answered normally, then the connection closes (set in parse_head).
  keep_alive_ = keep_alive_ && llhttp_should_keep_alive(&parser_);
  ex.forward.reset();
  route_->handler->handle(ex);
  bool body_follows = !message_done_;
  if (ex.forward.cache_refresh) {  // answered from a stale copy; fetched again meanwhile
    BackgroundRefresh::start(w_, ex, route_, cfg_);
    ex.forward.pool = nullptr;
  }
  if (ex.forward.cache_wait) {
    // Another request fetches this URL: wait for its outcome (then a hit, usually), not longer
    // than the upstream's header_timeout.
    phase_ = Phase::kCacheWait;
    w_.cache_wait(ex.forward.cache_key, this);
    // (at most 5 s, as nginx's proxy_cache_lock_timeout: then it fetches itself)
    expire_in(std::chrono::milliseconds(5000));
    update_poll();
    return;
  }
  if (!ex.forward.pool) {  // answered here (405 …): an unread body makes the connection unusable
    if (body_follows) closing_ = true;
    finish_response();
    return;
  }
  if (!proxy_) proxy_ = std::make_unique<ProxySession>(w_, *this);
  proxying_ = true;
  streaming_ = stream_chunked_ = false;
  stream_bytes_ = 0;
  deadline_ms_ = 0;
  phase_ = body_follows ? Phase::kBody : Phase::kWait;
  if (body_follows && start_ == end_) start_ = end_ = head_end_;
  proxy_->start(ex, route_, body_follows, (parser_.flags & F_CHUNKED) != 0);
  if (phase_ == Phase::kBody && proxying_) expire_in(cfg_->server.header_timeout);
}

bool Connection::proxy_head() {
  http::Exchange& ex = *ex_;
  http::Response& r = ex.resp;
  bool no_body =
      ex.req.method == http::Method::kHead || r.status == 304 || r.status == 204 || r.status < 200;
  if (!no_body && r.body.length == http::Body::kUnknownLength) {
    if (ex.req.version_minor == 0)
      keep_alive_ = false;  // HTTP/1.0: the end of the body is the end of the connection
    else
      stream_chunked_ = true;
  }
  // The connection's end is decided in proxy_end: a request body may still be on its way up.
  if (close_when_idle_ && r.status != 101) keep_alive_ = false;
  if (out_.capacity() < 1024) w_.take_output(out_);
  serialize_head(route_);
  streaming_ = true;
  return true;  // written with the body bytes of the same read (proxy_flush)
}

bool Connection::proxy_body(const char* data, std::size_t len, bool& backlogged) {
  if (phase_ == Phase::kClosed) return false;
  if (stream_chunked_) {
    http::append_number(out_, len, 16);
    out_.append("\r\n");
    out_.append(data, len).append("\r\n");
  } else {
    out_.append(data, len);
  }
  stream_bytes_ += len;
  if (out_.size() - out_off_ > kOutHighWater) {  // bounded: write now rather than queue more
    if (!flush()) update_poll();
    if (phase_ == Phase::kClosed) return false;
  }
  backlogged = out_.size() - out_off_ > kOutHighWater;
  return true;
}

void Connection::proxy_flush() {
  if (phase_ == Phase::kClosed) return;
  if (!flush()) update_poll();
}

void Connection::proxy_end() {
  if (phase_ == Phase::kClosed) return;
  proxying_ = false;
  if (phase_ == Phase::kTunnel) {  // either side closed, or the tunnel idled out
    closing_ = true;
    keep_alive_ = false;
    phase_ = Phase::kWait;
    if (!processing_) process();
    return;
  }
  if (stream_chunked_) out_.append("0\r\n\r\n");
  streaming_ = stream_chunked_ = false;
  log_exchange(ex_->resp.status, stream_bytes_);
  if (phase_ == Phase::kBody) closing_ = true;  // answered before the body ended: not read
  if (!keep_alive_) closing_ = true;
  answered_ = true;
  release_exchange();
  begin_message();
  if (!output_pending()) await_next_request();  // (flush() would only if it wrote now)
  if (!processing_) process();
}

void Connection::proxy_fail(int status) {
  if (phase_ == Phase::kClosed) return;
  proxying_ = false;
  if (streaming_) {  // the head went out: cut the connection so the client sees the truncation
    close();
    return;
  }
  routes::proxy_error(*ex_, status);
  if (phase_ == Phase::kBody) closing_ = true;
  finish_response();
  if (!processing_) process();
}

void Connection::cache_ready() {
  if (phase_ != Phase::kCacheWait) return;
  w_.cache_unwait(ex_->forward.cache_key, this);  // (from the timeout; a no-op when woken)
  phase_ = Phase::kHead;
  ex_->cache_waited = true;  // a miss now fetches without waiting again
  start_proxy();  // the route again: a hit now, or this request leads (or waits once more)
  if (!processing_ && phase_ != Phase::kClosed) process();
}

void Connection::proxy_answer() {
  if (phase_ == Phase::kClosed) return;
  proxying_ = false;
  if (phase_ == Phase::kBody) closing_ = true;
  finish_response();
  if (!processing_) process();
}

bool Connection::proxy_upgraded() {
  log_exchange(101, 0);
  streaming_ = false;
  phase_ = Phase::kTunnel;
  deadline_ms_ = 0;
  // Bytes the client sent after its request belong to the new protocol.
  if (start_ < end_) proxy_->tunnel_from_client(buf_.get() + start_, end_ - start_);
  start_ = end_ = 0;
  release_exchange();
  if (!flush()) update_poll();
  if (phase_ == Phase::kClosed) return false;
  update_poll();
  return true;
}

void Connection::proxy_request_drained() {
  if (phase_ == Phase::kClosed || processing_) return;
  if (phase_ == Phase::kBody) expire_in(cfg_->server.header_timeout);  // the client's turn
  update_poll();
  bool more = start_ < end_ || (tls_ && !tls_->pending_plain().empty());
  if ((phase_ == Phase::kBody || phase_ == Phase::kTunnel) && more) process();
}

// ---- Rate limits ----------------------------------------------------------------------------

void Connection::after_head() {
  if (expect_continue_ && !message_done_) out_.append("HTTP/1.1 100 Continue\r\n\r\n");
  if (route_ && route_->handler->streams()) {
    start_proxy();
  } else if (message_done_) {
    dispatch();
  } else {
    phase_ = Phase::kBody;
    if (start_ == end_) start_ = end_ = head_end_;
  }
}

bool Connection::check_limits() {
  return limits_go(decide_limits(w_, *cfg_, *ex_, *route_, this, limit_ticket_));
}

bool Connection::limits_go(LimitVerdict v) {
  switch (v) {
    case LimitVerdict::kGo:
      return true;
    case LimitVerdict::kWait:
      phase_ = Phase::kLimit;
      deadline_ms_ = 0;
      return false;
    case LimitVerdict::kAnswered:
      if (!message_done_) closing_ = true;  // the body is not read
      finish_response();
      return false;
  }
  return false;
}

void Connection::limit_decided(bool ok, bool allowed, const routes::LimitResult* results) {
  limit_ticket_ = nullptr;
  if (phase_ != Phase::kLimit) return;
  phase_ = Phase::kHead;
  expire_in(cfg_->server.header_timeout);  // the body, if any, has this long again
  bool go_on = limits_go(limits_replied(w_, *cfg_, *ex_, *route_, ok, allowed, results));
  if (go_on && phase_ == Phase::kHead) after_head();
  if (!processing_ && phase_ != Phase::kClosed) process();
}

// ---- HTTP/2 --------------------------------------------------------------------------------

bool Connection::maybe_h2() {
  if (tls_) {
    if (!tls_->handshake_done()) return false;
    h2_checked_ = true;
    if (tls_->alpn() != "h2") return false;
  } else {
    if (!cfg_->listeners[listener_].h2c) {
      h2_checked_ = true;
      return false;
    }
    // HTTP/2 with prior knowledge starts with the client's preface; anything else is HTTP/1.1.
    static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if (start_ == end_) return false;
    std::string_view got(buf_.get() + start_, end_ - start_);
    if (got.size() < kPreface.size() && kPreface.starts_with(got)) {
      update_poll();  // the rest of the preface
      return true;
    }
    h2_checked_ = true;
    if (!got.starts_with(kPreface)) return false;
  }
  phase_ = Phase::kH2;
  head_started_ = false;
  h2_ = std::make_unique<Http2Session>(w_, *this);
  process_h2();
  return true;
}

void Connection::process_h2() {
  bool ok = true;
  if (tls_) {
    for (;;) {
      std::string_view v = tls_->pending_plain();
      if (v.empty()) break;
      ok = h2_->receive(v.data(), v.size());
      tls_->consume_plain(v.size());
      if (!ok) break;
    }
  } else if (buf_ && start_ < end_) {
    ok = h2_->receive(buf_.get() + start_, end_ - start_);
    start_ = end_ = 0;
  }
  if (!ok) h2_failed_ = true;
  if (phase_ != Phase::kH2) return;
  if (start_ == end_) drop_read_buffer();
  h2_pump();
}

void Connection::h2_pump() {
  if (phase_ != Phase::kH2) return;
  FlagGuard guard(processing_);
  for (int round = 0; round < 64; ++round) {
    if (out_.capacity() < 1024) w_.take_output(out_);
    h2_->produce(out_, kOutHighWater);
    if (!output_pending()) break;
    if (!flush()) {  // the socket is full (on_writable goes on), or the connection closed
      h2_wait_ = H2Wait::kNone;  // (flush armed send_timeout; the next pump re-arms)
      if (phase_ != Phase::kClosed) update_poll();
      return;
    }
    if (phase_ != Phase::kH2) return;
    if (!h2_->wants_write()) break;
    if (round == 63) h2_wake();  // more to send: the next loop turn goes on
  }
  if (h2_->failed()) h2_failed_ = true;
  if (h2_failed_ || h2_->done()) {
    start_linger();  // (what the client still sends is drained, so it reads our GOAWAY)
    return;
  }
  // Idle: keepalive_timeout from the moment it became idle (frames such as PINGs do not move
  // it). Streams at work: their own clocks (request bodies, cache waits, stuck responses).
  const ServerConfig& sc = cfg_->server;
  h2_->observe(w_.now_ms());
  if (h2_->open_streams() == 0) {
    if (h2_wait_ != H2Wait::kIdle) expire_in(sc.keepalive_timeout);
    h2_wait_ = H2Wait::kIdle;
  } else {
    h2_wait_ = H2Wait::kNone;
    deadline_ms_ = h2_->next_deadline(static_cast<std::uint64_t>(sc.header_timeout.count()),
                                      static_cast<std::uint64_t>(sc.send_timeout.count()));
  }
  if (out_.empty() && out_.capacity()) w_.give_output(out_);
  update_poll();
}

const std::shared_ptr<const Config>& Connection::h2_config() {
  refresh_config();
  if (close_when_idle_ && h2_) h2_->shutdown();  // its listener is gone: this stream is the last
  return cfg_;
}

void Connection::h2_wake() {
  // Never from inside the caller (a proxy session, a stream): the pump may end and free streams.
  if (wake_queued_ || phase_ != Phase::kH2) return;
  wake_queued_ = true;
  w_.defer_wake(this);
}

void Connection::config_changed() {
  if (phase_ == Phase::kClosed) return;
  // A listener the new config no longer has: its connections finish what is in flight and close
  // (HTTP/2: GOAWAY now, not at the next stream).
  const auto& now = w_.config();
  for (const ListenConfig& l : now->listeners)
    if (l.stats == cfg_->listeners[listener_].stats) return;
  close_when_idle();
}

void Connection::run_wake() {
  wake_queued_ = false;
  if (phase_ == Phase::kH2 && !processing_) h2_pump();
}

}  // namespace edge
