// Per-client rate limits: GCRA decisions (no double burst at a window edge), the client key (IP
// grouped by an IPv6 prefix, or a header or cookie), the in-process store shared by all workers
// (sharded, bounded), and the response headers (IETF RateLimit / RateLimit-Policy, Retry-After).
// The Redis store lives in server/ (it needs the event loop); it runs the same arithmetic.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "server/http/exchange.h"
#include "server/http/ip.h"

namespace edge::routes {

struct RateLimit {
  std::string name;  // "100-in-15min" unless named
  std::uint64_t requests = 0;
  std::chrono::milliseconds window{0};
  enum class Key : unsigned char { kIp, kHeader, kCookie };
  Key key = Key::kIp;
  std::string key_name;  // header or cookie name
  std::string id;        // unique in the config: "<route line>:<name>" (store keys)

  std::int64_t interval_us() const {  // T: one request's share of the window
    return static_cast<std::int64_t>(window.count()) * 1000 / static_cast<std::int64_t>(requests);
  }
  // The burst allowance: `requests` intervals (not the window itself: T is rounded down to whole
  // microseconds, and T x (requests + 1) may still fit in the window).
  std::int64_t tolerance_us() const { return interval_us() * static_cast<std::int64_t>(requests); }
};

struct RateLimitSettings {
  enum class Store : unsigned char { kMemory, kRedis };
  Store store = Store::kMemory;
  std::string redis_host = "127.0.0.1";
  int redis_port = 6379;
  int redis_db = 0;
  enum class OnError : unsigned char { kLocal, kAllow, kDeny };
  OnError on_store_error = OnError::kLocal;
  std::size_t max_keys = 100000;
  unsigned ipv6_prefix = 56;
  http::IpRanges allowlist;
  bool headers = true;
  std::string message = "Too many requests from this IP, please try again later.";
};

// One limit's verdict. When refused, `wait_us` is how long until a request would be allowed.
struct LimitResult {
  bool allowed = true;
  std::uint64_t remaining = 0;  // requests left after this one
  std::int64_t reset_us = 0;    // until the allowance is whole again
  std::int64_t wait_us = 0;     // refused: until the next request is allowed
};

// The GCRA step, shared by the local and the Redis store: `tat` is the stored theoretical
// arrival time (0: none); returns the verdict and, when allowed, the new tat.
LimitResult gcra(const RateLimit& l, std::int64_t now_us, std::int64_t tat, std::int64_t& new_tat);

// The key a request is counted under for limit `l` (appended to `out`, readable text: the address,
// or a 64-bit digest of a header or cookie value so that neither its size nor a stream of fresh
// values can grow the store).
// False when the client is on the allowlist (not limited at all).
bool limit_key(const RateLimit& l, const RateLimitSettings& s, const http::Request& req,
               std::string& out);

// Counters in this process: all workers share them. Sharded by key hash with a mutex each;
// bounded by max_keys (entries whose allowance is whole carry nothing and go first; then the
// ones closest to it).
class LocalLimiter {
 public:
  explicit LocalLimiter(std::size_t max_keys);
  // Decides all limits of one request at once: allowed only when each allows (and then each
  // counts it). results[i] for limits[i].
  bool decide(const std::vector<RateLimit>& limits, const std::vector<std::string>& keys,
              std::int64_t now_us, LimitResult* results);
  std::size_t size() const;

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Entry {
    std::int64_t tat;  // GCRA's theoretical arrival time
    std::int64_t tau;  // its limit's burst allowance (debts of different limits compared as shares)
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Entry, Hash, std::equal_to<>> tat;
    std::int64_t last_sweep_us = 0;
    std::uint64_t rng = 0x9e3779b97f4a7c15;  // picks where make_room() samples
  };
  static constexpr std::size_t kShards = 64;
  std::size_t shard_of(std::string_view key) const { return Hash{}(key) % kShards; }
  void make_room(Shard& s, std::int64_t now_us);

  std::size_t per_shard_;
  std::array<Shard, kShards> shards_;
};

// Concurrent connections per client address ([[listen]] max_conns_per_ip), counted across all
// workers. Sharded like the limiter; an address leaves the map when its count drops to zero.
class ConnCounter {
 public:
  bool acquire(const http::IpAddress& a, unsigned max);  // false: already at max
  void release(const http::IpAddress& a);

 private:
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, unsigned> count;
  };
  static std::string key(const http::IpAddress& a) {
    return std::string(reinterpret_cast<const char*>(a.bytes.data()), a.v6 ? 16 : 4);
  }
  Shard& shard(const std::string& k) { return shards_[std::hash<std::string>{}(k) % 16]; }
  std::array<Shard, 16> shards_;
};

// Microseconds on the steady clock, for the local store (a wall-clock step must not refuse or
// free everyone; a Redis store uses the server's TIME instead).
std::int64_t now_us();

// The headers for a decision: RateLimit-Policy and RateLimit of `limit` (the refusing one, or the
// one with the fewest remaining), as "\r\nName: value" lines appended to `out`; with Retry-After
// when refused.
void append_limit_headers(const RateLimit& limit, const LimitResult& r, std::string& out);

// The 429 answer: JSON body, no-store; the headers go to ex.extra_headers.
void refuse(http::Exchange& ex, const RateLimitSettings& s, const RateLimit& limit,
            const LimitResult& r);

}  // namespace edge::routes
