// One proxied exchange at the runtime's side: picks a server, sends the request the proxy handler
// prepared (head, then the body as the client sends it), parses the response with llhttp and
// streams it to the client connection, retries what may be retried, tunnels WebSockets. Each
// client connection owns at most one, reused for its next proxied request.
#pragma once
#include <llhttp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "server/http/content_coding.h"
#include "server/http/exchange.h"
#include "server/http/metrics.h"
#include "server/upstream.h"

namespace edge {

class Worker;
class Connection;
namespace routes {
struct Route;
struct ProxyOptions;
class StreamEncoder;
}  // namespace routes
namespace cache {
struct CachedResponse;
class Store;
}  // namespace cache

// What the session asks of the client connection (implemented by Connection).
class ProxyClient {
 public:
  virtual ~ProxyClient() = default;
  // ex.resp holds the response head (body kind kStream). Returns false if the client is gone.
  virtual bool proxy_head() = 0;
  // Response body bytes; returns false if the client is gone. `backlogged` tells the session to
  // stop reading the upstream until proxy_resume().
  virtual bool proxy_body(const char* data, std::size_t len, bool& backlogged) = 0;
  // Writes what proxy_head/proxy_body queued (once per upstream read: one send per read).
  virtual void proxy_flush() = 0;
  virtual void proxy_end() = 0;              // the response is complete
  virtual void proxy_fail(int status) = 0;   // before the head: answer this; after: abort
  virtual void proxy_answer() = 0;           // before the head: ex.resp is the whole answer
  virtual bool proxy_upgraded() = 0;         // 101 sent: the connection becomes a tunnel
  virtual void proxy_request_drained() = 0;  // the upstream took the body: read the client again
};

class ProxySession {
 public:
  ProxySession(Worker& w, ProxyClient& client);
  ~ProxySession();
  ProxySession(const ProxySession&) = delete;
  ProxySession& operator=(const ProxySession&) = delete;

  // Starts forwarding ex.forward. `body`: the request has a body that will follow through
  // request_body(); `chunked`: its length is unknown (sent upstream chunked).
  void start(http::Exchange& ex, const routes::Route* route, bool body, bool chunked);
  void request_body(const char* data, std::size_t len);
  void request_body_end();
  bool request_backlogged() const;
  void client_drained();  // the client took the response bytes: read the upstream again
  void tunnel_from_client(const char* data, std::size_t len);
  void client_eof();  // tunnel: the client closed its side
  void abort();       // the client connection is closing: drop the upstream
  bool active() const { return state_ != State::kIdle; }

  // Called by Upstreams for the connection this session holds.
  void on_connect(int status);
  void on_read(ssize_t n, const char* data);
  void on_write_done(int status);
  void on_timer();

 private:
  enum class State : unsigned char { kIdle, kConnecting, kWaiting, kBody, kTunnel };
  static int on_header_field(llhttp_t* p, const char* at, std::size_t len);
  static int on_header_value(llhttp_t* p, const char* at, std::size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, std::size_t len);
  static int on_message_complete(llhttp_t* p);
  static const llhttp_settings_t& settings();

  void attempt();
  void count_error(http::UpstreamServer& s, http::metrics::UpstreamError kind);
  void count_response(int status);  // a response head arrived (metrics, the access log)
  void send_request_head();
  void fail_attempt(int status, bool retryable);  // this try failed
  void note_failure(http::UpstreamServer& s);     // passive health (logs when marked down)
  void finish(bool keep_upstream);
  void arm(std::chrono::milliseconds d);
  void feed(const char* data, std::size_t len);
  bool build_response_head();
  void choose_coding();  // on-the-fly compression of the response, when the route wants it
  bool pass_body(const char* data, std::size_t len, bool flush);  // through the encoder, if any
  bool end_encoding();           // the encoder's last bytes; false when the client went away
  void cache_decide();           // the route's cache: store this response? (and Cache-Status)
  void cache_store();            // the response is complete: into the store
  void fail_client(int status);  // no response: a stale copy within its grace, or the error
  void refresh_from_304();       // the stale copy, revalidated: stored again and answered
  void end_lead();               // a coalesced fetch is over: its waiters look again

  Worker& w_;
  ProxyClient& client_;
  http::Exchange* ex_ = nullptr;
  const routes::Route* route_ = nullptr;
  const routes::ProxyOptions* opts_ = nullptr;  // the route's proxy options (null: not a proxy)
  const http::UpstreamPool* pool_ = nullptr;
  UpstreamConn* up_ = nullptr;
  State state_ = State::kIdle;
  llhttp_t parser_{};
  std::string head_;               // the request head for the current try
  std::string body_copy_;          // the request body so far, kept for a retry while it is small
  std::string scratch_;            // a chunk being framed
  http::HeaderList resp_headers_;  // views into the connection's read buffer
  std::unique_ptr<routes::StreamEncoder> encoder_;
  std::string encoded_;                             // the encoder's output for one read
  std::string vary_;                                // storage for a merged Vary
  std::string etag_;                                // storage for a weakened ETag
  http::Coding coding_ = http::Coding::kIdentity;   // what choose_coding applied
  bool compressible_ = false;                       // ... and whether it could have
  std::shared_ptr<cache::CachedResponse> capture_;  // the response on its way into the cache
  std::shared_ptr<cache::Store> cache_;
  std::shared_ptr<const cache::CachedResponse> stale_;  // from the exchange's Forward
  bool revalidated_ = false;  // a 304 refreshed stale_: the client gets the stored copy
  std::shared_ptr<cache::Store> lead_store_;  // set while this exchange leads its key's fetch
  std::string lead_key_;
  std::string cache_status_;
  std::size_t cache_max_object_ = 0;
  std::uint64_t capture_since_ = 0;  // the store's generation when the capture began
  bool body_replayable_ = true;
  bool has_body_ = false, chunked_ = false, body_done_ = false;
  bool sent_any_ = false;          // some request byte reached the current connection
  bool response_started_ = false;  // some response byte arrived
  bool head_sent_ = false;         // the client got the response head
  bool reused_ = false;
  bool message_done_ = false;
  bool upgrade_ = false;
  bool last_was_value_ = false;
  bool paused_ = false;  // not reading the upstream (client backlogged)
  bool fresh_ = false;   // the next try opens a new connection (the last reused one was stale)
  unsigned tries_ = 0;
  std::chrono::steady_clock::time_point attempt_started_;
  std::uint64_t tried_ = 0;
  int last_fail_ = 502;
};

}  // namespace edge
