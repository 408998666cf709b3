// One HTTP/1.1 connection: its socket (a uv_poll_t on a non-blocking fd: reads, writev and
// sendfile are ours), the llhttp parser, the read buffer, pending output, and its timeouts.
#pragma once
#include <llhttp.h>
#include <netinet/in.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "server/config.h"
#include "server/http/exchange.h"
#include "server/http/metrics.h"
#include "server/http2_session.h"
#include "server/proxy_session.h"
#include "server/redis_limiter.h"
#include "server/request_stage.h"
#include "server/worker.h"
#include "tls/tls_transport.h"

namespace edge {

class Worker;
namespace routes {
struct Route;
}

class Connection : public ProxyClient, public LimitWaiter, public CacheWaiter, public Http2Host {
 public:
  Connection(Worker& w, int fd, const sockaddr_storage& peer, unsigned listener);
  // `counted`: the connection holds one of [server] max_connections (released at its close).
  void start(bool counted = false);
  // Stops reading and closes once idle (graceful stop); closes at once when idle now.
  void close_when_idle();
  void close();                 // immediate
  void cache_ready() override;  // the fetch this request waited for ended: look in the cache
  // Timeout check from the worker's sweep.
  void check_timeout(std::uint64_t now_ms);
  void run_wake();        // the worker's deferred h2_wake()
  void config_changed();  // a reload was applied (the connection's listener may be gone)

  Connection* prev = nullptr;
  Connection* next = nullptr;

 private:
  // kWait: a proxied request is complete (or its body is not wanted) and the response is on its
  // way from the upstream; kTunnel: bytes pass both ways after a 101.
  // kLimit: waiting for the rate-limit store's decision (Redis) before anything else.
  // kCacheWait: parked until another request's fetch of the same cache key ends.
  enum class Phase : unsigned char {
    kHead,
    kBody,
    kWait,
    kTunnel,
    kLimit,
    kCacheWait,
    kH2,  // HTTP/2 (ALPN h2, or h2c's preface): h2_ runs the streams
    kLinger,
    kClosed
  };
  ~Connection() override;

  // ProxyClient
  bool proxy_head() override;
  bool proxy_body(const char* data, std::size_t len, bool& backlogged) override;
  void proxy_flush() override;
  void proxy_end() override;
  void proxy_fail(int status) override;
  void proxy_answer() override;
  bool proxy_upgraded() override;
  // LimitWaiter
  void limit_decided(bool ok, bool allowed, const routes::LimitResult* results) override;
  void proxy_request_drained() override;
  static void on_poll(uv_poll_t* p, int status, int events);
  static void on_close(uv_handle_t* h);
  static int on_url(llhttp_t* p, const char* at, std::size_t len);
  static int on_header_field(llhttp_t* p, const char* at, std::size_t len);
  static int on_header_value(llhttp_t* p, const char* at, std::size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, std::size_t len);
  static int on_chunk_header(llhttp_t* p);
  int count_trailer(std::size_t len);
  bool check_chunk_crlf(const char* at, const char* end);  // the CRLF after chunk data
  static int on_message_complete(llhttp_t* p);
  static const llhttp_settings_t& settings();

  void on_readable();
  void on_tls_readable();
  bool make_room();         // room at the end of the read buffer; false when there is none
  void drop_read_buffer();  // back to the worker (an idle connection holds none)
  void note_input();        // request bytes arrived: start the head's clock
  bool refill_from_tls();   // decrypted bytes into the read buffer; true when some came
  bool output_pending() const;
  bool flush_tls();
  bool write_tls_out();
  ssize_t send_ciphertext();  // one writev of queued ciphertext; errno set when < 0
  void await_next_request();
  void expire_in(std::chrono::milliseconds d);  // the connection's next timeout check  // best
                                                // effort, for alerts and close_notify
  void on_writable();
  void process();
  // Scans the request head for its end and for line-ending errors; returns the head length,
  // 0 when more bytes are needed, or -status on an error.
  long scan_head();
  bool parse_head(std::size_t head_len);
  void dispatch();
  void start_proxy();
  void after_head();               // the head is accepted: dispatch, or read the body first
  bool check_limits();             // true: go on now; false: answered (429/503) or waiting (kLimit)
  bool limits_go(LimitVerdict v);  // the rate-limit verdict applied to this connection
  bool reading_paused() const;
  void log_exchange(int status, std::uint64_t bytes);
  void respond_error(int status, bool close_after);
  void redirect_to_https(int port);
  void finish_response();
  void serialize_head(const routes::Route* route);
  bool flush();  // true when everything queued is written
  void update_poll();
  void start_linger();
  void begin_message();
  void release_exchange();

  void refresh_config();  // between requests: adopt a reloaded config

  // HTTP/2.
  bool maybe_h2();    // true: this connection speaks HTTP/2 now (or waits for h2c's preface)
  void process_h2();  // the client's bytes into the session, then h2_pump()
  void h2_pump();     // frames out until nothing is left or the socket is full
  const std::shared_ptr<const Config>& h2_config() override;
  const ListenConfig& h2_listener() override { return cfg_->listeners[listener_]; }
  const sockaddr_storage& h2_peer() const override { return peer_; }
  const char* h2_client_ip() const override { return client_ip_; }
  bool h2_tls() const override { return tls_ != nullptr; }
  void h2_wake() override;
  std::unique_ptr<Http2Session> h2_;
  bool h2_checked_ = false;  // the protocol was chosen
  bool h2_failed_ = false;   // a connection error: send what is queued (GOAWAY), then close
  bool wake_queued_ = false;
  enum class H2Wait : unsigned char { kNone, kIdle };
  H2Wait h2_wait_ = H2Wait::kNone;  // kIdle: the deadline counts keepalive_timeout

  Worker& w_;
  std::shared_ptr<const Config> cfg_;  // the snapshot this connection's exchange uses
  http::metrics::ListenerStats* stats_ = nullptr;
  int fd_;
  unsigned listener_;
  sockaddr_storage peer_;  // index into the config's listeners
  uv_poll_t poll_;
  int poll_events_ = 0;
  llhttp_t parser_;
  char client_ip_[INET6_ADDRSTRLEN] = {};
  char request_id_[17] = {};

  // Read buffer: bytes [start_, end_) are unparsed; head scanning resumes at scan_.
  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0, start_ = 0, end_ = 0, scan_ = 0, line_start_ = 0, head_end_ = 0;
  std::size_t lines_ = 0;
  bool first_line_done_ = false;
  bool big_buf_ = false;

  // Output: out_ (heads and small bodies) then body_ (a large memory or file body).
  std::string out_;
  std::size_t out_off_ = 0;
  http::Body body_;
  std::uint64_t body_sent_ = 0;

  std::unique_ptr<http::Exchange> ex_;  // the request in progress
  const routes::Route* route_ = nullptr;
  Phase phase_ = Phase::kHead;
  bool last_was_value_ = false;
  int parse_status_ = 0;  // an error status found while parsing
  bool keep_alive_ = true;
  bool message_done_ = false;
  bool closing_ = false;  // close after the queued output
  bool close_when_idle_ = false;
  bool peer_closed_ = false;
  bool answered_ = false;  // a response was queued since the last deadline for the next request  //
                           // TLS close_notify received
  std::unique_ptr<tls::TlsTransport> tls_;
  std::unique_ptr<ProxySession> proxy_;  // kept for the connection's next proxied request
  LimitTicket* limit_ticket_ = nullptr;  // a Redis decision in flight
  bool counted_ = false;                 // in [[listen]] max_conns_per_ip's count
  bool counted_total_ = false;           // in [server] max_connections' count
  bool proxying_ = false;                // a ProxySession works on the current exchange
  bool streaming_ = false;               // its response head went out; the body follows
  bool stream_chunked_ = false;
  bool processing_ = false;  // inside process(): callbacks must not re-enter it
  std::uint64_t stream_bytes_ = 0;
  bool head_started_ = false;  // some bytes of a request head arrived
  bool expect_continue_ = false;
  std::uint64_t body_seen_ = 0;
  std::uint64_t chunk_left_ = 0;  // data bytes left in the current chunk
  int crlf_left_ = 0;             // bytes of the CRLF after chunk data still to check
  std::size_t trailer_bytes_ = 0;
  std::uint64_t deadline_ms_ = 0;
  std::size_t header_count_ = 0;
  std::uint64_t bytes_out_for_log_ = 0;
  int status_for_log_ = 0;
};

}  // namespace edge
