// Outbound connections to upstream servers, per worker: one UpstreamConn per TCP connection (a
// uv_tcp_t, its timer and buffers), the idle keep-alive pools, and server selection (weighted
// round robin, least connections, client-IP hash) over the shared health state.
#pragma once
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/http/upstream.h"
#include "tls/tls_transport.h"

namespace edge {

class Worker;
class ProxySession;
class Upstreams;

// One connection to an upstream server. While a session uses it, libuv events go to the session;
// idle in a pool, any byte or EOF from the server closes it (a server closing idle keep-alive
// connections is noticed at once, not by the next request).
struct UpstreamConn {
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_connect_t connect_req{};
  uv_write_t write_req{};
  Upstreams* owner = nullptr;
  http::UpstreamServer* server = nullptr;
  const http::UpstreamPool* pool = nullptr;  // alive while a session uses it (its snapshot)
  unsigned server_index = 0;
  ProxySession* session = nullptr;         // null: idle, or closing
  std::string writing;                     // bytes handed to uv_write, alive until its callback
  std::string pending;                     // bytes queued behind them (plaintext when TLS)
  std::unique_ptr<tls::TlsTransport> tls;  // HTTPS upstreams
  std::string cipher;                      // TLS: ciphertext not yet handed to the socket
  bool write_busy = false;
  bool connected = false;
  bool closing = false;
  bool reading = false;
  int deferred_error = 0;  // a write error waiting to be reported from the timer
  int open_handles = 0;
  std::uint64_t requests = 0;  // served on this connection
  std::unique_ptr<char[]> rbuf;
  std::size_t rlen = 0;  // bytes held at the front of rbuf (a response head in progress)
  static constexpr std::size_t kReadSize = 16 * 1024;

  std::size_t backlog() const { return writing.size() + pending.size() + cipher.size(); }
};

class Upstreams {
 public:
  explicit Upstreams(Worker& w);
  // A reload: the idle connections of the old pools close; the new config's pools start empty
  // (sessions still on the old snapshot finish on their connections, which then close).
  void retarget(const std::vector<std::shared_ptr<http::UpstreamPool>>& pools);
  ~Upstreams();

  // Picks a server of `pool` for a request, skipping servers in `tried` (a bit per server index)
  // and unavailable ones. Returns -1 when none is left.
  int pick(const http::UpstreamPool& pool, unsigned hash, std::uint64_t tried);
  // An idle connection to that server, or a new one (connecting; the session gets on_connect).
  // Null with `err` (a libuv error) when the connect could not even start.
  UpstreamConn* acquire(const http::UpstreamPool& pool, unsigned server, ProxySession* s,
                        bool allow_idle, bool& reused, int& err);
  // The session is done with it: pooled when `keep` and there is room, closed otherwise.
  void release(UpstreamConn* c, bool keep);
  void close(UpstreamConn* c);
  void write(UpstreamConn* c, std::string_view data);  // queues and starts writing
  void start_reading(UpstreamConn* c);
  void arm(UpstreamConn* c, std::chrono::milliseconds d);  // the session's timer on c
  void disarm(UpstreamConn* c);
  void stop_reading(UpstreamConn* c);
  void close_all();  // worker stop: idle connections go at once
  std::size_t idle_count() const;

  // Health-check connections come from here too (server/health_check.cpp), unpooled.
  Worker& worker() { return w_; }

 private:
  struct PoolState {
    const http::UpstreamPool* pool = nullptr;
    bool retired = false;                          // a pool of an older config: nothing pooled
    std::vector<std::vector<UpstreamConn*>> idle;  // per server, most recent last
    std::vector<int> current_weight;               // smooth weighted round robin
    unsigned rr = 0;
  };
  static void on_connect(uv_connect_t* req, int status);
  static void on_write(uv_write_t* req, int status);
  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_idle_timeout(uv_timer_t* t);
  static void on_closed(uv_handle_t* h);
  PoolState& state(const http::UpstreamPool& pool);
  void flush_writes(UpstreamConn* c);
  void tls_connected(UpstreamConn* c);  // TCP is up: begin the handshake
  void tls_read(UpstreamConn* c, const char* data, std::size_t len);

  Worker& w_;
  std::vector<PoolState> pools_;      // the current config's, by UpstreamPool::index
  std::vector<PoolState> retired_;    // older configs' pools still used by sessions (by pointer)
  std::vector<UpstreamConn*> spare_;  // closed connections' objects, for the next ones
};

}  // namespace edge
