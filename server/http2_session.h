// HTTP/2 (nghttp2) on a client connection: the second codec beside HTTP/1.1, chosen by ALPN "h2"
// (or the prior-knowledge preface on an `h2c` listener). The connection keeps the socket, TLS,
// output buffer and timeouts; this session turns its bytes into frames and each stream into an
// exchange that walks the same request stage (server/request_stage.h), handlers, proxy, cache and
// rate limits as an HTTP/1.1 request.
#pragma once
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/config.h"
#include "server/http/exchange.h"
#include "server/proxy_session.h"
#include "server/redis_limiter.h"

namespace edge {

class Worker;
class Http2Session;

// What the session needs of its connection.
class Http2Host {
 public:
  virtual ~Http2Host() = default;
  // The config snapshot and listener for a new stream (the connection adopts a reloaded config
  // between streams, as between HTTP/1.1 requests).
  virtual const std::shared_ptr<const Config>& h2_config() = 0;
  virtual const ListenConfig& h2_listener() = 0;
  virtual const sockaddr_storage& h2_peer() const = 0;
  virtual const char* h2_client_ip() const = 0;
  virtual bool h2_tls() const = 0;
  // Frames are waiting (a stream got data from an upstream): produce and write them.
  virtual void h2_wake() = 0;
};

class Http2Session {
 public:
  Http2Session(Worker& w, Http2Host& host);
  ~Http2Session();
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  // Bytes from the client; false on a connection error (GOAWAY queued: send, then close).
  bool receive(const char* data, std::size_t len);
  // Appends frames to `out` until it holds `limit` bytes or nothing is left to send.
  void produce(std::string& out, std::size_t limit);
  bool done() const;  // nothing more to read or write: close the connection
  bool wants_write() const;
  std::size_t open_streams() const { return streams_; }
  bool failed() const { return failed_; }
  // The streams' own clocks: a request body (or header block) the client stopped sending
  // (body_timeout_ms since its last bytes: 408, a reset, or GOAWAY for a header block), a cache
  // wait past 5 s (it fetches itself), a response stuck on a window the client does not open
  // (send_timeout_ms without progress: that stream is reset). observe(): after each pump, notes
  // which responses are stuck. next_deadline: the earliest (0: none), on the worker's clock.
  void observe(std::uint64_t now_ms);
  std::uint64_t next_deadline(std::uint64_t body_timeout_ms, std::uint64_t send_timeout_ms) const;
  void expire(std::uint64_t now_ms, std::uint64_t body_timeout_ms, std::uint64_t send_timeout_ms);
  // Graceful stop or reload: GOAWAY with the last stream taken; the open ones finish.
  void shutdown();

  struct Stream;

 private:
  friend struct Stream;
  static ssize_t on_send(nghttp2_session*, const uint8_t*, size_t, int, void*);
  static int on_begin_headers(nghttp2_session* s, const nghttp2_frame* f, void* user);
  static int on_header(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session* s, const nghttp2_frame* f, void* user);
  static int on_data_chunk(nghttp2_session* s, uint8_t flags, int32_t id, const uint8_t* data,
                           size_t len, void* user);
  static int on_stream_close(nghttp2_session* s, int32_t id, uint32_t code, void* user);
  static int on_frame_send(nghttp2_session* s, const nghttp2_frame* f, void* user);
  static ssize_t read_body(nghttp2_session* s, int32_t id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* src, void* user);

  Stream* find(int32_t id) const;
  void headers_done(Stream& st);  // the request head is complete
  void request_end(Stream& st);   // END_STREAM from the client
  void after_limits(Stream& st);
  void dispatch(Stream& st);     // a handler answers (not streamed)
  void start_proxy(Stream& st);  // a streaming handler: forward, body following
  void respond(Stream& st);      // submits ex.resp
  void respond_error(Stream& st, int status);
  void finished(Stream& st);  // the whole response went out: log and count
  void release(Stream* st);
  void reset(Stream& st, std::uint32_t code);

  Worker& w_;
  Http2Host& host_;
  nghttp2_session* session_ = nullptr;
  std::string* out_ = nullptr;  // during produce()
  std::vector<std::unique_ptr<Stream>> spare_;
  std::vector<Stream*> live_;  // open streams (owned; freed or kept in spare_ by release())
  std::size_t streams_ = 0;
  bool shutting_down_ = false;
  bool failed_ = false;
  static constexpr std::uint64_t kCacheWaitMs = 5000;  // as HTTP/1.1 (nginx's cache_lock_timeout)
};

}  // namespace edge
