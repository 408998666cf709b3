// A proxied exchange (see proxy_session.h). The request head is written once per try from the
// handler's Forward; the body follows as the client sends it, copied for a retry while small.
// Retry rule: a try that failed before any response byte is repeated on another server when the
// request is complete in memory and either nothing reached the server (connect failure) or the
// method is idempotent (a reset, a close, a response head cut short, or no response within
// header_timeout; not once the server sent part of its answer within that time).
#include "server/proxy_session.h"

#include <charconv>

#include <spdlog/spdlog.h>

#include "cache/store.h"
#include "routes/compression.h"
#include "routes/proxy.h"
#include "routes/route_table.h"
#include "server/http/date.h"
#include "server/worker.h"

namespace edge {
namespace {

constexpr std::size_t kReplayMax = 64 * 1024;  // request bodies kept for a retry up to this
constexpr std::size_t kBacklogMax = 256 * 1024;

}  // namespace

ProxySession::ProxySession(Worker& w, ProxyClient& client) : w_(w), client_(client) {}

ProxySession::~ProxySession() {
  abort();
}

const llhttp_settings_t& ProxySession::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t x;
    llhttp_settings_init(&x);
    x.on_header_field = on_header_field;
    x.on_header_value = on_header_value;
    x.on_headers_complete = on_headers_complete;
    x.on_body = on_body;
    x.on_message_complete = on_message_complete;
    return x;
  }();
  return s;
}

void ProxySession::start(http::Exchange& ex, const routes::Route* route, bool body, bool chunked) {
  ex_ = &ex;
  route_ = route;
  pool_ = ex.forward.pool;
  has_body_ = body;
  chunked_ = chunked;
  body_done_ = !body;
  body_copy_.clear();
  body_replayable_ = true;
  head_sent_ = false;
  upgrade_ = ex.forward.upgrade;
  tries_ = 0;
  tried_ = 0;
  last_fail_ = 503;
  fresh_ = false;
  encoder_.reset();
  capture_.reset();
  stale_ = std::static_pointer_cast<const cache::CachedResponse>(ex.forward.cache_stale);
  revalidated_ = false;
  lead_store_.reset();
  const auto* handler =
      route ? dynamic_cast<const routes::ProxyHandler*>(route->handler.get()) : nullptr;
  opts_ = handler ? &handler->options() : nullptr;
  if (ex.forward.cache_lead && opts_ && opts_->cache) {
    lead_store_ = opts_->cache;
    lead_key_ = ex.forward.cache_key;
  }
  attempt();
}

void ProxySession::count_error(http::UpstreamServer& s, http::metrics::UpstreamError kind) {
  if (s.stats) s.stats->at(w_.id()).errors[static_cast<int>(kind)].add();
}

void ProxySession::count_response(int status) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                  attempt_started_)
                .count();
  ex_->upstream_us = us;
  if (!up_ || !up_->server->stats) return;
  auto& c = up_->server->stats->at(w_.id());
  c.by_class[http::metrics::status_class(status)].add();
  c.latency.observe(static_cast<std::uint64_t>(us));
}

void ProxySession::attempt() {
  Upstreams& ups = w_.upstreams();
  int idx = tries_ < pool_->tries ? ups.pick(*pool_, ex_->forward.hash, tried_) : -1;
  if (idx < 0) {
    if (tries_ == 0)
      spdlog::warn("proxy {}: pool {} has no healthy server", ex_->req.request_id, pool_->name);
    state_ = State::kIdle;
    fail_client(tries_ == 0 ? 503 : last_fail_);
    return;
  }
  tried_ |= 1ULL << idx;
  ++tries_;
  int err = 0;
  up_ = ups.acquire(*pool_, static_cast<unsigned>(idx), this, !fresh_, reused_, err);
  fresh_ = false;
  http::UpstreamServer& server = *pool_->servers[static_cast<std::size_t>(idx)];
  ex_->upstream = &server;
  ex_->upstream_us = -1;
  attempt_started_ = std::chrono::steady_clock::now();
  llhttp_init(&parser_, HTTP_RESPONSE, &settings());
  parser_.data = this;
  message_done_ = response_started_ = false;
  last_was_value_ = false;
  paused_ = false;
  resp_headers_.clear();
  if (!up_) {
    spdlog::warn("proxy {}: cannot connect to {}: {}", ex_->req.request_id, server.address,
                 uv_strerror(err));
    sent_any_ = false;
    state_ = State::kConnecting;
    count_error(server, http::metrics::UpstreamError::kConnect);
    note_failure(server);
    fail_attempt(502, true);
    return;
  }
  server.active.fetch_add(1, std::memory_order_relaxed);
  send_request_head();
  if (reused_) {
    state_ = State::kWaiting;
    sent_any_ = true;
    ups.start_reading(up_);
    arm(body_done_ ? pool_->header_timeout : pool_->write_timeout);
  } else {
    state_ = State::kConnecting;
    sent_any_ = false;
    arm(pool_->connect_timeout);
  }
}

void ProxySession::send_request_head() {
  const http::Request& req = ex_->req;
  const http::Forward& f = ex_->forward;
  head_.clear();
  head_.append(req.method_name).append(" ").append(f.target).append(" HTTP/1.1\r\nHost: ");
  head_.append(f.host.empty() ? std::string_view(up_->server->address) : std::string_view(f.host));
  head_.append("\r\n").append(f.headers);
  if (has_body_) {
    if (chunked_) {
      head_.append("Transfer-Encoding: chunked\r\n");
    } else {
      head_.append("Content-Length: ");
      http::append_number(head_, req.content_length);
      head_.append("\r\n");
    }
  } else if (req.method == http::Method::kPost || req.method == http::Method::kPut ||
             req.method == http::Method::kPatch) {
    head_.append("Content-Length: 0\r\n");
  }
  if (upgrade_)
    head_.append("Connection: Upgrade\r\n");
  else if (pool_->keepalive == 0)
    head_.append("Connection: close\r\n");
  head_.append("\r\n");
  Upstreams& ups = w_.upstreams();
  ups.write(up_, head_);
  if (!body_copy_.empty()) ups.write(up_, body_copy_);  // a retry replays what came so far
}

void ProxySession::arm(std::chrono::milliseconds d) {
  if (up_) w_.upstreams().arm(up_, d);
}

void ProxySession::request_body(const char* data, std::size_t len) {
  if (state_ == State::kIdle || len == 0) return;
  std::string_view framed(data, len);
  if (chunked_) {
    // The client's chunk boundaries are not kept: each piece that arrived becomes one chunk.
    scratch_.clear();
    http::append_number(scratch_, len, 16);
    scratch_.append("\r\n").append(data, len).append("\r\n");
    framed = scratch_;
  }
  if (body_replayable_) {
    if (body_copy_.size() + framed.size() <= kReplayMax) {
      body_copy_.append(framed);
    } else {
      body_replayable_ = false;
      std::string().swap(body_copy_);
    }
  }
  if (!up_) return;
  w_.upstreams().write(up_, framed);
  if (state_ == State::kWaiting) arm(pool_->write_timeout);
}

void ProxySession::request_body_end() {
  if (body_done_) return;
  body_done_ = true;
  if (state_ == State::kIdle) return;
  if (chunked_) {
    if (body_replayable_) body_copy_.append("0\r\n\r\n");
    if (up_) w_.upstreams().write(up_, "0\r\n\r\n");
  }
  if (state_ == State::kWaiting && !response_started_) arm(pool_->header_timeout);
}

bool ProxySession::request_backlogged() const {
  return up_ && up_->backlog() > kBacklogMax;
}

void ProxySession::client_drained() {
  if (paused_ && up_) {
    paused_ = false;
    w_.upstreams().start_reading(up_);
    arm(pool_->read_timeout);  // the pause was the client's: the server's clock starts again
  }
}

void ProxySession::tunnel_from_client(const char* data, std::size_t len) {
  if (state_ != State::kTunnel || !up_) return;
  w_.upstreams().write(up_, std::string_view(data, len));
  arm(pool_->read_timeout);
}

void ProxySession::client_eof() {
  if (state_ == State::kTunnel) abort();
}

void ProxySession::end_lead() {
  if (!lead_store_) return;
  auto store = std::move(lead_store_);
  lead_store_.reset();
  store->done(lead_key_);
}

void ProxySession::abort() {
  end_lead();
  encoder_.reset();
  capture_.reset();
  if (up_) {
    up_->server->active.fetch_sub(1, std::memory_order_relaxed);
    w_.upstreams().close(up_);
    up_ = nullptr;
  }
  state_ = State::kIdle;
}

void ProxySession::on_connect(int status) {
  if (state_ != State::kConnecting || !up_) return;
  if (status < 0) {
    spdlog::warn("proxy {}: cannot connect to {}: {}", ex_->req.request_id, up_->server->address,
                 uv_strerror(status));
    count_error(*up_->server, http::metrics::UpstreamError::kConnect);
    fail_attempt(502, true);
    return;
  }
  state_ = State::kWaiting;
  sent_any_ = true;
  Upstreams& ups = w_.upstreams();
  ups.start_reading(up_);
  arm(body_done_ ? pool_->header_timeout : pool_->write_timeout);
  ups.write(up_, {});  // starts writing what was queued while connecting
  // All of it may have gone at once (no write callback then): a client paused for the
  // backlog reads again.
  if (up_ && up_->backlog() == 0) client_.proxy_request_drained();
}

void ProxySession::on_write_done(int status) {
  if (state_ == State::kIdle) return;
  if (status < 0) {
    if (state_ == State::kTunnel) {
      abort();
      client_.proxy_end();
      return;
    }
    if (!response_started_) {
      spdlog::warn("proxy {}: writing to {}: {}", ex_->req.request_id, up_->server->address,
                   uv_strerror(status));
      count_error(*up_->server, http::metrics::UpstreamError::kReset);
      fail_attempt(502, true);
    }
    return;  // a response is arriving: the read side reports how it ends
  }
  if (up_ && up_->backlog() == 0) client_.proxy_request_drained();
}

void ProxySession::on_timer() {
  switch (state_) {
    case State::kConnecting:
      spdlog::warn("proxy {}: connecting to {} timed out", ex_->req.request_id,
                   up_->server->address);
      count_error(*up_->server, http::metrics::UpstreamError::kTimeout);
      fail_attempt(504, true);
      break;
    case State::kWaiting:
      if (!body_done_ && up_->backlog() == 0) {
        // Everything the client sent went up: the client is the slow one (its own timeout
        // answers it), not the server.
        arm(pool_->write_timeout);
        break;
      }
      // (kWaiting: no response head went to the client yet.) Another server may answer an
      // idempotent request, as with nginx's proxy_next_upstream timeout; a POST is not repeated
      // (fail_attempt's rule), nor a request whose server already said something (a 1xx such
      // as 102 Processing, or part of its head): it is working on it.
      if (!body_done_)
        spdlog::warn("proxy {}: {} stopped reading the request body", ex_->req.request_id,
                     up_->server->address);
      else
        spdlog::warn("proxy {}: {} sent no response in time", ex_->req.request_id,
                     up_->server->address);
      count_error(*up_->server, http::metrics::UpstreamError::kTimeout);
      fail_attempt(504, !response_started_);
      break;
    case State::kBody:
      spdlog::warn("proxy {}: reading the response from {} timed out", ex_->req.request_id,
                   up_->server->address);
      count_error(*up_->server, http::metrics::UpstreamError::kTimeout);
      note_failure(*up_->server);
      abort();
      client_.proxy_fail(504);
      break;
    case State::kTunnel:
      abort();
      client_.proxy_end();
      break;
    case State::kIdle:
      break;
  }
}

void ProxySession::note_failure(http::UpstreamServer& s) {
  if (pool_->note_failure(s))
    spdlog::warn("upstream {} server {}: marked down for {} ms after {} failures", pool_->name,
                 s.address, pool_->fail_timeout.count(), pool_->max_fails);
}

void ProxySession::fail_attempt(int status, bool retryable) {
  http::UpstreamServer* server = up_ ? up_->server : nullptr;
  bool was_connecting = state_ == State::kConnecting && !sent_any_;
  // A reused connection that failed before any response byte was probably closed by the server
  // while idle (the race its keep-alive timeout leaves), once per connection at most.
  bool stale = up_ && reused_ && !response_started_ && status == 502 && retryable;
  unsigned stale_index = up_ ? up_->server_index : 0;
  if (up_) {
    server->active.fetch_sub(1, std::memory_order_relaxed);
    w_.upstreams().close(up_);
    up_ = nullptr;
  }
  if (server && !stale) note_failure(*server);
  last_fail_ = status;
  // A stale keep-alive connection the server closed as we reused it looks like a reset: safe to
  // repeat only under the same rules as any reset.
  bool replay_ok = body_replayable_ && (was_connecting || ex_->forward.idempotent);
  if (stale && replay_ok && !head_sent_) {
    // Not the server's fault and not a try: again on a new connection, the same server allowed.
    tried_ &= ~(1ULL << stale_index);
    --tries_;
    fresh_ = true;
    attempt();
    return;
  }
  if (retryable && replay_ok && !head_sent_ && tries_ < pool_->tries) {
    attempt();
    return;
  }
  state_ = State::kIdle;
  fail_client(status);
}

void ProxySession::fail_client(int status) {
  end_lead();
  // stale-if-error (RFC 5861): the origin's allowance or the route's grace.
  if (stale_ && !head_sent_) {
    std::int64_t grace = opts_ ? opts_->cache_grace : 0;
    if (stale_->facts.cc.stale_if_error) grace = std::max(grace, *stale_->facts.cc.stale_if_error);
    std::int64_t age = stale_->age(std::time(nullptr));
    bool may = !stale_->facts.cc.must_revalidate && !stale_->facts.cc.proxy_revalidate &&
               !stale_->facts.cc.no_cache;
    if (may && age - stale_->lifetime <= grace) {
      cache_status_.assign("edge; hit; fwd=stale; fwd-status=").append(std::to_string(status));
      cache_status_.append("; detail=stale-if-error");
      spdlog::info("proxy {}: upstream failed ({}): serving the stale copy (age {} s)",
                   ex_->req.request_id, status, age);
      ex_->scratch2.clear();
      routes::answer_from(*ex_, stale_, age, cache_status_);
      stale_.reset();
      client_.proxy_answer();
      return;
    }
  }
  client_.proxy_fail(status);
}

void ProxySession::refresh_from_304() {
  // RFC 9111 4.3.4: the stored headers updated with the 304's (but the framing), lifetime anew.
  // Never merged: framing, edge's own fields, Set-Cookie (one user's, in a shared copy), and
  // the fields edge derived for the variant it made (ETag weakened, Vary, Content-Encoding).
  auto fresh = std::make_shared<cache::CachedResponse>(*stale_);
  bool edge_coded = !stale_->coding.empty();
  auto merged = [&](std::string_view n) {
    return !(routes::is_hop_by_hop(n) || http::iequals(n, "Content-Length") ||
             http::iequals(n, "Date") || http::iequals(n, "Server") ||
             http::iequals(n, "X-Powered-By") || http::iequals(n, "Age") ||
             http::iequals(n, "Set-Cookie") || http::iequals(n, "X-Request-Id") ||
             (edge_coded && (http::iequals(n, "ETag") || http::iequals(n, "Vary") ||
                             http::iequals(n, "Content-Encoding"))));
  };
  // Fields the 304 carries replace the stored ones of that name (all its lines, in order).
  for (const http::HeaderField& h : resp_headers_)
    if (merged(h.name))
      std::erase_if(fresh->headers,
                    [&](const auto& kv) { return http::iequals(kv.first, h.name); });
  for (const http::HeaderField& h : resp_headers_)
    if (merged(h.name)) fresh->headers.emplace_back(h.name, h.value);
  std::string_view cc = resp_headers_.list("Cache-Control", scratch_);
  if (!cc.empty()) fresh->facts.cc = cache::CacheControl::parse(cc);
  // No Date on the 304: the refresh time (the old Date would leave the copy stale at once).
  auto d = http::parse_http_date(http::trim_ows(resp_headers_.get("Date")));
  fresh->facts.date = d ? d : std::optional<std::time_t>(std::time(nullptr));
  if (std::string_view e = resp_headers_.get("Expires"); !e.empty()) {
    fresh->facts.expires = http::parse_http_date(http::trim_ows(e));
    fresh->facts.expires_invalid = !fresh->facts.expires;
  }
  fresh->facts.age = 0;
  fresh->request_time = static_cast<std::time_t>(ex_->forward.cache_request_time);
  fresh->response_time = std::time(nullptr);
  bool stored = false;
  if (opts_ && opts_->cache) {
    const routes::ProxyOptions& o = *opts_;
    fresh->lifetime = cache::freshness_lifetime(fresh->facts, o.cache_policy);
    // The 304 may have changed what may be shared (private, no-store…): checked again.
    auto req_cc =
        cache::CacheControl::parse(ex_->req.headers.list("Cache-Control", ex_->header_buf));
    cache::ResponseFacts facts = fresh->facts;
    facts.has_set_cookie = false;
    if (cache::storable(facts, req_cc, ex_->req.headers.find("Authorization") != nullptr,
                        o.cache_policy) &&
        fresh->lifetime > 0) {
      o.cache->insert(ex_->forward.cache_key, fresh);
      stored = true;
    } else {
      o.cache->purge(ex_->forward.cache_key, false);  // no longer shareable: this client only
    }
  }
  cache_status_.assign(stored ? "edge; fwd=stale; fwd-status=304; stored"
                              : "edge; fwd=stale; fwd-status=304");
  ex_->scratch2.clear();
  routes::answer_from(*ex_, fresh, fresh->age(std::time(nullptr)), cache_status_);
  // The 304's Set-Cookie is this client's (never stored): passed on to it.
  for (const http::HeaderField& h : resp_headers_)
    if (http::iequals(h.name, "Set-Cookie")) ex_->resp.headers.add(h.name, h.value);
  stale_.reset();
}

void ProxySession::finish(bool keep_upstream) {
  end_lead();  // (any path: a tunnel, a response cut, …)
  if (up_) {
    up_->server->active.fetch_sub(1, std::memory_order_relaxed);
    w_.upstreams().release(up_, keep_upstream);
    up_ = nullptr;
  }
  state_ = State::kIdle;
  client_.proxy_end();
}

void ProxySession::on_read(ssize_t n, const char* data) {
  if (state_ == State::kIdle || !up_) return;
  if (n < 0) {
    if (state_ == State::kTunnel) {
      abort();
      client_.proxy_end();
      return;
    }
    if (n == UV_EOF && state_ == State::kBody && head_sent_ && llhttp_message_needs_eof(&parser_) &&
        llhttp_finish(&parser_) == HPE_OK) {
      // A body delimited by the close: EOF completes it.
      if (!end_encoding()) return;
      cache_store();
      end_lead();
      finish(false);
      return;
    }
    if (!head_sent_ && response_started_) {
      spdlog::warn("proxy {}: {} closed the connection in the middle of the response head",
                   ex_->req.request_id, up_->server->address);
      count_error(*up_->server, http::metrics::UpstreamError::kReset);
      fail_attempt(502, true);  // nothing reached the client: a reset, retried as one
      return;
    }
    if (!response_started_) {
      spdlog::warn("proxy {}: {} closed the connection before answering ({})", ex_->req.request_id,
                   up_->server->address, n == UV_EOF ? "EOF" : uv_strerror(static_cast<int>(n)));
      if (!reused_)  // (a reused one probably went stale while idle: not the server's fault)
        count_error(*up_->server, http::metrics::UpstreamError::kReset);
      fail_attempt(502, true);
      return;
    }
    spdlog::warn("proxy {}: {} cut the response short", ex_->req.request_id, up_->server->address);
    count_error(*up_->server, http::metrics::UpstreamError::kReset);
    note_failure(*up_->server);
    abort();
    client_.proxy_fail(502);
    return;
  }
  response_started_ = true;
  if (state_ == State::kTunnel) {
    bool backlogged = false;
    arm(pool_->read_timeout);
    if (!client_.proxy_body(data, static_cast<std::size_t>(n), backlogged)) return;
    client_.proxy_flush();
    if (backlogged && up_ && state_ == State::kTunnel) {
      paused_ = true;
      w_.upstreams().stop_reading(up_);
    }
    return;
  }
  feed(data, static_cast<std::size_t>(n));
}

void ProxySession::feed(const char* data, std::size_t len) {
  bool in_head = state_ != State::kBody;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  if (state_ == State::kIdle) return;  // the client went away during a callback
  if (err == HPE_PAUSED_UPGRADE && upgrade_ && head_sent_) {
    std::size_t used = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
    state_ = State::kTunnel;
    up_->rlen = 0;
    if (!client_.proxy_upgraded()) return;
    arm(pool_->read_timeout);
    if (used < len) {
      bool backlogged = false;
      if (client_.proxy_body(data + used, len - used, backlogged)) client_.proxy_flush();
    }
    return;
  }
  if (err == HPE_PAUSED && message_done_) {
    // Reusable when the server keeps it open, the request went out whole and nothing followed.
    std::size_t used = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
    if (!end_encoding()) return;
    bool keep = llhttp_should_keep_alive(&parser_) && body_done_ && used == len && !upgrade_ &&
                up_->backlog() == 0 && !(up_->tls && !up_->tls->pending_plain().empty());
    if (revalidated_) {  // the answer is the refreshed stored copy, set in ex.resp
      if (up_) {
        up_->server->active.fetch_sub(1, std::memory_order_relaxed);
        w_.upstreams().release(up_, keep);
        up_ = nullptr;
      }
      state_ = State::kIdle;
      end_lead();
      client_.proxy_answer();
      return;
    }
    cache_store();
    end_lead();  // (stored first: the waiters find it)
    finish(keep);
    return;
  }
  if (err != HPE_OK) {
    spdlog::warn("proxy {}: bad response from {}: {} ({})", ex_->req.request_id,
                 up_->server->address, llhttp_errno_name(err), llhttp_get_error_reason(&parser_));
    count_error(*up_->server, http::metrics::UpstreamError::kBadResponse);
    if (!head_sent_) {
      fail_attempt(502, false);
    } else {
      note_failure(*up_->server);
      abort();
      client_.proxy_fail(502);
    }
    return;
  }
  if (in_head && state_ != State::kBody) {
    // The head continues in the next read: keep these bytes where the header views point.
    up_->rlen += len;
    if (up_->rlen >= UpstreamConn::kReadSize) {
      spdlog::warn("proxy {}: response head from {} larger than {} bytes", ex_->req.request_id,
                   up_->server->address, UpstreamConn::kReadSize);
      count_error(*up_->server, http::metrics::UpstreamError::kBadResponse);
      fail_attempt(502, false);
    }
    return;
  }
  up_->rlen = 0;
  // What this read brought goes out now, decodable (server-sent events must not wait).
  if (encoder_ && !pass_body(nullptr, 0, true)) return;
  client_.proxy_flush();
  if (state_ == State::kIdle) return;
  if (paused_) {  // the client is behind: no reading, and no clock on the server meanwhile
    w_.upstreams().stop_reading(up_);
    w_.upstreams().disarm(up_);
  } else {
    arm(pool_->read_timeout);
  }
}

bool ProxySession::pass_body(const char* data, std::size_t len, bool flush) {
  bool backlogged = false;
  std::string_view out(data, len);
  if (encoder_) {
    encoded_.clear();
    encoder_->write(std::string_view(data, len), flush, encoded_);
    if (encoded_.empty()) return true;
    out = encoded_;
  }
  if (capture_) {  // the bytes as the client gets them (a hit needs no compression)
    if (capture_->body.size() + out.size() > cache_max_object_)
      capture_.reset();
    else
      capture_->body.append(out);
  }
  bool ok = client_.proxy_body(out.data(), out.size(), backlogged);
  if (backlogged) paused_ = true;
  return ok && state_ != State::kIdle;
}

bool ProxySession::end_encoding() {
  if (!encoder_) return true;
  encoded_.clear();
  encoder_->finish(encoded_);
  encoder_.reset();
  bool backlogged = false;
  if (encoded_.empty()) return true;
  if (capture_) {
    if (capture_->body.size() + encoded_.size() > cache_max_object_)
      capture_.reset();
    else
      capture_->body.append(encoded_);
  }
  return client_.proxy_body(encoded_.data(), encoded_.size(), backlogged) && state_ != State::kIdle;
}

void ProxySession::cache_decide() {
  capture_.reset();
  cache_.reset();
  if (!opts_ || !opts_->cache) return;
  const routes::ProxyOptions& o = *opts_;
  http::Response& r = ex_->resp;
  const http::Forward& f = ex_->forward;
  const http::Request& req = ex_->req;
  if (f.cache_invalidate) {  // an unsafe method that succeeded: the stored URL is out of date
    r.headers.add("Cache-Status", "edge; fwd=method");
    if (r.status >= 400) return;
    o.cache->purge(f.cache_key, false);
    // … and the URLs its Location / Content-Location name on the same host (RFC 9111 4.4).
    for (const char* name : {"Location", "Content-Location"}) {
      std::string_view v = http::trim_ows(resp_headers_.get(name));
      if (v.empty()) continue;
      std::string origin =
          f.cache_key.substr(0, f.cache_key.find('/', f.cache_key.find("://") + 3));
      std::string url = v.starts_with("/") ? origin + std::string(v) : std::string(v);
      std::string key;
      if (!routes::url_cache_key(url, key)) continue;
      if (!key.starts_with(origin) || (key.size() > origin.size() && key[origin.size()] != '/'))
        continue;  // another host's URL: not ours to drop
      o.cache->purge(key, false);
    }
    return;
  }
  if (req.method != http::Method::kGet && req.method != http::Method::kHead) {
    r.headers.add("Cache-Status", "edge; fwd=method");
    return;
  }
  cache::ResponseFacts facts;
  facts.status = r.status;
  facts.cc = cache::CacheControl::parse(resp_headers_.list("Cache-Control", scratch_));
  auto date = [&](std::string_view name, std::optional<std::time_t>& out, bool* invalid) {
    std::string_view v = resp_headers_.get(name);
    if (v.empty()) return;
    out = http::parse_http_date(http::trim_ows(v));
    if (!out && invalid) *invalid = true;
  };
  date("Date", facts.date, nullptr);
  date("Expires", facts.expires, &facts.expires_invalid);
  date("Last-Modified", facts.last_modified, nullptr);
  facts.age = cache::parse_age(resp_headers_.get("Age"));
  facts.has_set_cookie = resp_headers_.find("Set-Cookie") != nullptr;
  // Accept-Encoding is covered by the stored coding when edge decides the coding (the upstream
  // sent identity); a body the upstream encoded itself varies on it like on any field.
  std::string_view up_ce = http::trim_ows(resp_headers_.get("Content-Encoding"));
  bool upstream_encoded = !up_ce.empty() && !http::iequals(up_ce, "identity");
  std::vector<std::pair<std::string, std::string>> vary;
  bool vary_ae = false;
  http::for_each_list_element(resp_headers_.list("Vary", scratch_), [&](std::string_view name) {
    if (name == "*") {
      facts.vary_star = true;
    } else if (!http::iequals(name, "Accept-Encoding") || upstream_encoded) {
      vary_ae = vary_ae || http::iequals(name, "Accept-Encoding");
      vary.emplace_back(name, cache::Store::vary_value(req.headers, name));
    }
  });
  if (upstream_encoded && !vary_ae)  // (an upstream that forgot its Vary)
    vary.emplace_back("Accept-Encoding", cache::Store::vary_value(req.headers, "Accept-Encoding"));
  auto req_cc = cache::CacheControl::parse(req.headers.list("Cache-Control", ex_->header_buf));
  bool authorization = req.headers.find("Authorization") != nullptr;
  bool cookie = req.headers.find("Cookie") != nullptr;
  bool credentials_shared = !o.cache_credentials_never && (facts.cc.public_ || facts.cc.s_maxage);
  bool ok = f.cache_store && cache::storable(facts, req_cc, authorization, o.cache_policy) &&
            (!(cookie || authorization) || credentials_shared);
  std::int64_t lifetime = cache::freshness_lifetime(facts, o.cache_policy);
  if (!ok || lifetime <= 0) {
    end_lead();  // the waiters go upstream themselves now, not after this whole response
    bool asked = req_cc.no_cache || req_cc.no_store ||
                 http::iequals(http::trim_ows(req.headers.get("Pragma")), "no-cache");
    r.headers.add("Cache-Status", asked ? "edge; fwd=request" : "edge; fwd=miss");
    return;
  }
  auto c = std::make_shared<cache::CachedResponse>();
  c->status = r.status;
  for (const http::HeaderField& h : r.headers) {
    // Never stored: one user's Set-Cookie, and Age (computed anew on every hit).
    if (http::iequals(h.name, "Set-Cookie") || http::iequals(h.name, "Age")) continue;
    c->headers.emplace_back(h.name, h.value);
  }
  c->facts = facts;
  c->request_time = static_cast<std::time_t>(f.cache_request_time);
  c->response_time = std::time(nullptr);
  c->lifetime = lifetime;
  c->vary = std::move(vary);
  if (coding_ != http::Coding::kIdentity) c->coding = http::coding_name(coding_);
  c->compressible = compressible_;
  http::for_each_list_element(resp_headers_.list("Cache-Tag", scratch_),
                              [&](std::string_view t) { c->tags.emplace_back(t); });
  capture_ = std::move(c);
  cache_ = o.cache;
  capture_since_ = o.cache->generation();
  cache_max_object_ = o.cache_max_object;
  r.headers.add("Cache-Status", "edge; fwd=miss; stored");
}

void ProxySession::cache_store() {
  if (capture_ && cache_ && ex_->req.method == http::Method::kGet)
    cache_->insert(ex_->forward.cache_key, std::move(capture_), capture_since_);
  capture_.reset();
}

void ProxySession::choose_coding() {
  encoder_.reset();
  coding_ = http::Coding::kIdentity;
  compressible_ = false;
  if (!opts_) return;
  const routes::CompressOptions& o = opts_->compress;
  if (!o.enabled) return;
  http::Response& r = ex_->resp;
  bool vary = false;
  http::Coding c = routes::choose_stream_coding(
      o, ex_->req.headers.list("Accept-Encoding", ex_->header_buf), r.status, resp_headers_, vary);
  compressible_ = vary;
  coding_ = c;
  if (vary) {
    bool found = false;
    for (std::size_t i = 0; i < r.headers.size(); ++i) {
      http::HeaderField& f = r.headers[i];
      if (!http::iequals(f.name, "Vary")) continue;
      found = true;
      bool has = false;
      http::for_each_list_element(f.value, [&](std::string_view el) {
        has |= el == "*" || http::iequals(el, "Accept-Encoding");
      });
      if (!has) {
        vary_.assign(f.value).append(", Accept-Encoding");
        f.value = vary_;
      }
      break;
    }
    if (!found) r.headers.add("Vary", "Accept-Encoding");
  }
  if (c == http::Coding::kIdentity) return;
  r.headers.add("Content-Encoding", http::coding_name(c));
  r.body.length = http::Body::kUnknownLength;
  for (std::size_t i = 0; i < r.headers.size(); ++i) {
    http::HeaderField& f = r.headers[i];
    if (http::iequals(f.name, "ETag") && f.value.starts_with("\"")) {
      // The bytes differ from the upstream's: weak, as nginx. One ETag only (build_response_head
      // keeps the first): a second assign() here would free the buffer the first view points to
      // (found by fuzz_upstream: a heap use-after-free when the head was written).
      etag_.assign("W/").append(f.value);
      f.value = etag_;
      break;
    }
  }
  if (ex_->req.method != http::Method::kHead)
    encoder_ = routes::StreamEncoder::create(c, o.dynamic_levels[static_cast<std::size_t>(c)]);
}

int ProxySession::on_header_field(llhttp_t* p, const char* at, std::size_t len) {
  auto* s = static_cast<ProxySession*>(p->data);
  if (p->flags & F_TRAILING) return 0;
  if (s->resp_headers_.empty() || s->last_was_value_) {
    s->resp_headers_.add(std::string_view(at, len), {});
    s->last_was_value_ = false;
  } else {
    http::extend_view(s->resp_headers_[s->resp_headers_.size() - 1].name, at, len);
  }
  return 0;
}

int ProxySession::on_header_value(llhttp_t* p, const char* at, std::size_t len) {
  auto* s = static_cast<ProxySession*>(p->data);
  if (p->flags & F_TRAILING) return 0;  // response trailers are not passed on
  if (s->resp_headers_.empty()) return -1;
  http::extend_view(s->resp_headers_[s->resp_headers_.size() - 1].value, at, len);
  s->last_was_value_ = true;
  return 0;
}

int ProxySession::on_headers_complete(llhttp_t* p) {
  auto* s = static_cast<ProxySession*>(p->data);
  int status = p->status_code;
  if (status < 200 && status != 101) {  // 100, 103: interim, not passed on
    s->resp_headers_.clear();
    s->last_was_value_ = false;
    return 0;
  }
  s->count_response(status);
  if (status == 101 && !s->upgrade_) return -1;  // a switch nobody asked for
  if (status == 304 && s->stale_ && s->ex_->forward.cache_revalidating) {
    // Our validators matched: the stored copy is good again; the client gets it, not this 304.
    s->refresh_from_304();
    s->revalidated_ = true;
    s->state_ = State::kBody;
    return 1;
  }
  if (status != 101 && s->upgrade_) {
    s->upgrade_ = false;  // refused: an ordinary response, then the client connection closes
  }
  if (!s->build_response_head()) return HPE_USER;
  s->state_ = State::kBody;
  if (!s->client_.proxy_head()) return HPE_PAUSED;  // the client is gone: state_ is kIdle
  s->head_sent_ = true;
  if (status == 101) return 2;
  // No body, whatever framing the head announces (llhttp 8 would read one for 204/304).
  bool bodiless = s->ex_->req.method == http::Method::kHead || status == 204 || status == 304;
  return bodiless ? 1 : 0;
}

bool ProxySession::build_response_head() {
  http::Response& r = ex_->resp;
  r.reset();
  r.status = parser_.status_code;
  const routes::Route* route = route_;
  auto route_sets = [&](std::string_view name) {
    if (!route) return false;
    for (const auto& [n, v] : ex_->req.tls ? route->headers_tls : route->headers_plain)
      if (http::iequals(n, name)) return true;
    for (const auto& n : route->security.remove)
      if (http::iequals(n, name)) return true;
    return false;
  };
  const http::HeaderList& h = resp_headers_;
  bool etag_seen = false;
  for (const http::HeaderField& f : h) {
    std::string_view n = f.name;
    if (!http::is_token(n)) return false;  // "Bad Name: x" would reach the client as it is
    // A value continued on the next line (obs-fold, RFC 9112 5.2) spans the line break: refused.
    if (f.value.find_first_of("\r\n") != std::string_view::npos) return false;
    if (routes::is_hop_by_hop(n)) {
      if (r.status == 101 && (http::iequals(n, "Upgrade") || http::iequals(n, "Connection")))
        r.headers.add(n, f.value);
      continue;
    }
    if (http::iequals(n, "Content-Length") || http::iequals(n, "Server") ||
        http::iequals(n, "Date") || http::iequals(n, "X-Powered-By") ||
        http::iequals(n, "X-Request-Id") || route_sets(n))
      continue;
    if (h.has_token("Connection", n)) continue;
    if (http::iequals(n, "ETag")) {  // a singleton field (RFC 9110 8.8.3): the first one counts
      if (etag_seen) continue;
      etag_seen = true;
    }
    r.headers.add(n, f.value);
  }
  r.body.kind = http::Body::Kind::kStream;
  if (parser_.flags & F_CHUNKED)
    r.body.length = http::Body::kUnknownLength;
  else if (parser_.flags & F_CONTENT_LENGTH)
    r.body.length = parser_.content_length;
  else if (r.status == 204 || r.status == 304 || r.status == 101 ||
           ex_->req.method == http::Method::kHead)
    r.body.length = ex_->req.method == http::Method::kHead ? http::Body::kUnknownLength : 0;
  else
    r.body.length = http::Body::kUnknownLength;  // until the server closes
  if (r.status != 101) {
    choose_coding();
    cache_decide();
  }
  return true;
}

int ProxySession::on_body(llhttp_t* p, const char* at, std::size_t len) {
  auto* s = static_cast<ProxySession*>(p->data);
  return s->pass_body(at, len, false) ? 0 : HPE_PAUSED;
}

int ProxySession::on_message_complete(llhttp_t* p) {
  auto* s = static_cast<ProxySession*>(p->data);
  if (s->state_ != State::kBody) return 0;  // an interim response ended
  if (p->upgrade) return 0;                 // llhttp pauses with HPE_PAUSED_UPGRADE
  s->message_done_ = true;
  return HPE_PAUSED;
}

}  // namespace edge
