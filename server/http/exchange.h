// The protocol-neutral exchange: what a handler sees (request head) and answers (response head
// and a body source). Codecs (HTTP/1.1 now, HTTP/2 later) fill the request and write the response;
// handlers never see sockets or protocol versions.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "server/http/date.h"
#include "server/http/headers.h"
#include "server/http/method.h"
#include "server/http/token.h"
#include "server/http/upstream.h"

namespace edge::http {

// Where the response bytes come from. The codec decides how they reach the wire (writev for
// memory, sendfile for files on plain connections). `keep` holds the storage alive until written.
// kStream: bytes arrive later from an upstream; `length` is kUnknownLength when the upstream did
// not say (the codec then chunks, or closes after the body on HTTP/1.0).
struct Body {
  enum class Kind : unsigned char { kNone, kMemory, kFile, kStream };
  static constexpr std::uint64_t kUnknownLength = ~std::uint64_t{0};
  Kind kind = Kind::kNone;
  std::string_view data;  // kMemory
  int fd = -1;            // kFile
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::shared_ptr<const void> keep;

  std::uint64_t size() const { return kind == Kind::kMemory ? data.size() : length; }
};

struct Request {
  Method method = Method::kOther;
  std::string_view method_name;
  std::string_view target;    // as received
  std::string_view path;      // percent-decoded, dot segments removed (after any rewrite)
  std::string_view raw_path;  // the path as received, before decoding
  std::string_view query;     // without the '?'
  unsigned char version_minor = 1;
  bool h2 = false;  // arrived over HTTP/2 (HTTP/1.1 semantics otherwise)
  HeaderList headers;
  std::string_view host;        // Host header without port, lower-cased by the codec when needed
  std::string_view client_ip;   // the client's address: the peer's, or the one a trusted proxy gave
  std::string_view peer_ip;     // the socket peer's address
  bool peer_trusted = false;    // the peer is a trusted proxy ([server] trusted_proxies)
  std::string_view request_id;  // kept from the client when well-formed, else generated
  std::uint64_t content_length = 0;
  bool has_body = false;
  bool tls = false;

  // Clears the request for reuse, keeping the header list's capacity.
  void reset() {
    HeaderList keep = std::move(headers);
    *this = Request{};
    keep.clear();
    headers = std::move(keep);
  }
};

struct Response {
  int status = 200;
  std::string_view content_type;
  std::string_view cache_control;
  std::string_view etag;
  std::string_view last_modified;
  std::string_view location;
  HeaderList headers;  // further fields; values must outlive the write
  Body body;
  // Content-Range for 206/416, formatted by the codec.
  bool content_range = false;
  std::uint64_t range_first = 0, range_last = 0, range_total = 0;
  bool range_unsatisfied = false;  // "bytes */total"
  bool close = false;              // close the connection after this response

  // The value of Content-Range ("bytes 0-99/1000", "bytes */1000"), appended to out.
  void append_content_range(std::string& out) const {
    out.append("bytes ");
    if (range_unsatisfied) {
      out.push_back('*');
    } else {
      append_number(out, range_first);
      out.push_back('-');
      append_number(out, range_last);
    }
    out.push_back('/');
    append_number(out, range_total);
  }

  void reset() {
    status = 200;
    content_type = cache_control = etag = last_modified = location = {};
    headers.clear();
    body = Body{};
    content_range = range_unsatisfied = close = false;
    range_first = range_last = range_total = 0;
  }
};

// Runs work off the loop (compression, later cache refreshes) on the runtime's thread pool; the
// work must not touch per-worker state.
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual void offload(std::function<void()> work) = 0;
};

struct Exchange {
  Request req;
  Response resp;
  unsigned worker_id = 0;
  Scheduler* scheduler = nullptr;  // null: work runs inline (unit tests)
  std::time_t now = 0;
  std::chrono::steady_clock::time_point started;
  std::array<std::string_view, 10> captures{};  // $0..$9 of a regex route
  std::string path_buf;                         // storage for req.path
  std::string rewrite_buf;                      // storage for a rewritten path before decoding
  std::string scratch;                          // storage for generated bodies and headers
  std::string scratch2;
  std::string header_buf;     // a list header joined from several lines
  Forward forward;            // set by a proxy handler: the runtime forwards the request upstream
  std::string ip_buf;         // storage for req.client_ip when a trusted proxy named the client
  std::string extra_headers;  // "\r\nName: value" lines the codec adds (rate-limit headers)
  bool cache_waited = false;  // waited once for another request's fetch: no waiting again
  // For the access log and metrics: the upstream server that answered (or was tried last), the
  // time to its response head (-1: none), and the rate-limit decision (0 none, 1 allowed,
  // 2 limited).
  const UpstreamServer* upstream = nullptr;
  std::int64_t upstream_us = -1;
  unsigned char limit_outcome = 0;

  // A short generated body (error pages, JSON) owned by the exchange.
  void set_text(int status, std::string_view content_type, std::string_view text) {
    resp.status = status;
    resp.content_type = content_type;
    scratch.assign(text);
    resp.body = Body{};
    resp.body.kind = Body::Kind::kMemory;
    resp.body.data = scratch;
  }
  // A body from static storage (string literals), no copy.
  void set_static(int status, std::string_view content_type, std::string_view text) {
    resp.status = status;
    resp.content_type = content_type;
    resp.body = Body{};
    resp.body.kind = Body::Kind::kMemory;
    resp.body.data = text;
  }
};

// A handler answers an exchange synchronously, or (a proxy) fills ex.forward and lets the runtime
// forward the request: `streams()` handlers are called as soon as the request head is parsed,
// before the body, which then flows to the upstream as it arrives. Handlers are immutable parts of
// a config snapshot shared by all workers; per-worker state is indexed by Exchange::worker_id.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual void handle(Exchange& ex) const = 0;
  // Whether requests to this handler may carry a body (others get 413).
  virtual bool takes_body() const { return false; }
  virtual bool streams() const { return false; }
  virtual const char* kind() const = 0;
};

}  // namespace edge::http
