// The request stage both codecs share (HTTP/1.1 in connection.cpp, HTTP/2 in http2_session.cpp),
// once a request head is parsed into ex.req: the host without its port, path and query, the real
// client IP, the request id, the HTTPS redirect, path normalisation, the route and the body
// limit; then the rate-limit decision (local, or a Redis round trip whose reply comes later).
#pragma once
#include <sys/socket.h>

#include <string_view>

#include "server/config.h"
#include "server/http/exchange.h"
#include "server/redis_limiter.h"

namespace edge {

class Worker;

struct Staged {
  enum class Kind : unsigned char { kRoute, kRedirect, kError };
  Kind kind = Kind::kRoute;
  int status = 0;                        // kError: answer with this status
  const routes::Route* route = nullptr;  // kRoute: null when no route matches (404)
};

// ex.req holds method, host (as sent), headers, tls, client_ip/peer_ip; `target` is the
// origin-form target. `request_id` (17 bytes) stores a generated id.
Staged stage_request(Worker& w, const Config& cfg, const ListenConfig& lc, http::Exchange& ex,
                     std::string_view target, const sockaddr_storage& peer, char* request_id);

// 301 (GET, HEAD) or 308 to the same URL on https://host[:port]; false (nothing written) when the
// request's host cannot be put in a URL (answer 400).
bool https_redirect(http::Exchange& ex, int port);

// An error page: "404 Not Found\n", no-store.
void error_page(http::Exchange& ex, int status);

enum class LimitVerdict : unsigned char {
  kGo,        // allowed (the RateLimit fields are in ex.extra_headers), or allowlisted
  kWait,      // a Redis decision is on its way to `waiter` (ticket set)
  kAnswered,  // refused: ex.resp holds the 429 (or the 503 of on_store_error = "deny")
};
LimitVerdict decide_limits(Worker& w, const Config& cfg, http::Exchange& ex,
                           const routes::Route& route, LimitWaiter* waiter, LimitTicket*& ticket);
// The Redis reply for a kWait (see LimitWaiter::limit_decided).
LimitVerdict limits_replied(Worker& w, const Config& cfg, http::Exchange& ex,
                            const routes::Route& route, bool ok, bool allowed,
                            const routes::LimitResult* results);

// The access-log line and the metrics of a finished exchange (`body_in`: request body bytes).
void record_exchange(Worker& w, const routes::Route* route, const http::Exchange& ex, int status,
                     std::uint64_t bytes, std::uint64_t body_in);

// Returns ex to the worker's pool, cleared for the next request.
void release_exchange(Worker& w, std::unique_ptr<http::Exchange> ex);

}  // namespace edge
