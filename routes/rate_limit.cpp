// Rate limits (see rate_limit.h). GCRA: each key stores a theoretical arrival time (tat); a
// request advances it by T = window / requests and is allowed while tat - now stays within the
// window, so `requests` can come at once and then one every T, with no second burst at the edge.
#include "routes/rate_limit.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "server/http/status.h"
#include "server/http/token.h"

namespace edge::routes {
namespace {

std::int64_t ceil_seconds(std::int64_t us) {
  return us <= 0 ? 0 : (us + 999999) / 1000000;
}

// The value of cookie `name` in a Cookie header ("a=1; sid=xyz"), or empty.
std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    std::size_t semi = header.find(';');
    std::string_view pair = http::trim_ows(header.substr(0, semi));
    std::size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name) return pair.substr(eq + 1);
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return {};
}

}  // namespace

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {

// 64 bits of a header or cookie value, as 16 hex digits: the same in every edge (Redis keys), of
// bounded size whatever the client sends. (FNV-1a with a final mix; collisions only merge two
// clients' budgets.)
void append_digest(std::string& out, std::string_view v) {
  std::uint64_t h = 1469598103934665603ULL;
  for (char c : v) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 60; i >= 0; i -= 4) out.push_back(kHex[(h >> i) & 15]);
}

}  // namespace

LimitResult gcra(const RateLimit& l, std::int64_t now, std::int64_t tat, std::int64_t& new_tat) {
  std::int64_t t = l.interval_us(), tau = l.tolerance_us();
  std::int64_t base = std::max(tat, now);
  LimitResult r;
  new_tat = base + t;
  if (new_tat - now > tau) {
    r.allowed = false;
    r.wait_us = new_tat - tau - now;
    r.reset_us = base - now;
    r.remaining = 0;
    new_tat = tat;
    return r;
  }
  r.reset_us = new_tat - now;
  r.remaining = std::min<std::uint64_t>(static_cast<std::uint64_t>((tau - (new_tat - now)) / t),
                                        l.requests - 1);
  return r;
}

bool limit_key(const RateLimit& l, const RateLimitSettings& s, const http::Request& req,
               std::string& out) {
  auto ip = http::IpAddress::parse(req.client_ip);
  if (ip && s.allowlist.contains(*ip)) return false;
  out.append(l.id).push_back(':');
  if (l.key == RateLimit::Key::kHeader) {
    std::string_view v = http::trim_ows(req.headers.get(l.key_name));
    if (!v.empty()) {
      out.append("h:");
      append_digest(out, v);
      return true;
    }
  } else if (l.key == RateLimit::Key::kCookie) {
    for (const http::HeaderField& f : req.headers) {
      if (!http::iequals(f.name, "Cookie")) continue;
      std::string_view v = cookie_value(f.value, l.key_name);
      if (!v.empty()) {
        out.append("c:");
        append_digest(out, v);
        return true;
      }
    }
  }
  // The client address, as text (readable in Redis); IPv6 by its prefix (one subscriber often
  // holds a whole /56 or /64).
  if (!ip) {
    out.append("ip:").append(req.client_ip);
    return true;
  }
  char text[INET6_ADDRSTRLEN];
  if (ip->v6) {
    unsigned prefix = s.ipv6_prefix;
    for (unsigned i = 0; i < 16; ++i) {
      unsigned bits = prefix >= (i + 1) * 8 ? 8 : (prefix > i * 8 ? prefix - i * 8 : 0);
      ip->bytes[i] &= static_cast<std::uint8_t>(bits == 8 ? 0xff : (0xff << (8 - bits)) & 0xff);
    }
    inet_ntop(AF_INET6, ip->bytes.data(), text, sizeof text);
    out.append("ip:").append(text).push_back('/');
    http::append_number(out, prefix);
  } else {
    inet_ntop(AF_INET, ip->bytes.data(), text, sizeof text);
    out.append("ip:").append(text);
  }
  return true;
}

LocalLimiter::LocalLimiter(std::size_t max_keys)
    : per_shard_(std::max<std::size_t>(max_keys / kShards, 16)) {}

void LocalLimiter::make_room(Shard& s, std::int64_t now) {
  // Keys whose allowance is whole again hold no information: dropped in one sweep, at most every
  // 100 ms (a flood of new keys must not make each request scan the shard).
  if (now - s.last_sweep_us >= 100000) {
    s.last_sweep_us = now;
    std::erase_if(s.tat, [&](const auto& kv) { return kv.second.tat <= now; });
    if (s.tat.size() < per_shard_) return;
  }
  // Still full (a flood of distinct keys): drop the entry closest to whole among kSample taken
  // from a pseudo-random bucket on, its debt as a share of its limit's allowance (a key of a
  // per-second limit and one of a per-hour limit compare fairly). A client deep in debt is almost
  // never the one: it would have to be the closest to whole of all kSample, so a flood cannot
  // wash a refused client out.
  constexpr std::size_t kSample = 32;
  std::size_t buckets = s.tat.bucket_count();
  s.rng ^= s.rng << 13;  // xorshift64
  s.rng ^= s.rng >> 7;
  s.rng ^= s.rng << 17;
  std::size_t b = static_cast<std::size_t>(s.rng % buckets);
  const std::string* victim = nullptr;
  double victim_debt = 0;
  std::size_t seen = 0;
  for (std::size_t tries = 0; tries < buckets && seen < kSample; ++tries) {
    std::size_t bucket = (b + tries) % buckets;
    for (auto it = s.tat.begin(bucket); it != s.tat.end(bucket) && seen < kSample; ++it, ++seen) {
      double debt = static_cast<double>(it->second.tat - now) /
                    static_cast<double>(std::max<std::int64_t>(1, it->second.tau));
      if (!victim || debt < victim_debt) {
        victim = &it->first;
        victim_debt = debt;
      }
    }
  }
  if (victim) s.tat.erase(s.tat.find(*victim));
}

bool LocalLimiter::decide(const std::vector<RateLimit>& limits,
                          const std::vector<std::string>& keys, std::int64_t now,
                          LimitResult* results) {
  // Decided and counted under the locks of every shard involved (taken in index order), so two
  // workers cannot both take the last slot.
  std::size_t n = std::min<std::size_t>(limits.size(), 16);
  std::size_t idx[16];
  for (std::size_t i = 0; i < n; ++i) idx[i] = shard_of(keys[i]);
  std::size_t order[16];
  std::size_t m = 0;
  for (std::size_t i = 0; i < n; ++i) order[m++] = idx[i];
  std::sort(order, order + m);
  m = static_cast<std::size_t>(std::unique(order, order + m) - order);
  for (std::size_t i = 0; i < m; ++i) shards_[order[i]].mu.lock();
  bool all = true;
  std::int64_t new_tat[16];
  for (std::size_t i = 0; i < n; ++i) {
    Shard& s = shards_[idx[i]];
    auto it = s.tat.find(std::string_view(keys[i]));
    results[i] = gcra(limits[i], now, it == s.tat.end() ? 0 : it->second.tat, new_tat[i]);
    all = all && results[i].allowed;
  }
  if (all) {
    for (std::size_t i = 0; i < n; ++i) {
      Shard& s = shards_[idx[i]];
      auto it = s.tat.find(std::string_view(keys[i]));
      if (it != s.tat.end()) {
        it->second.tat = new_tat[i];
      } else {
        if (s.tat.size() >= per_shard_) make_room(s, now);
        s.tat.emplace(keys[i], Entry{new_tat[i], limits[i].tolerance_us()});
      }
    }
  }
  for (std::size_t i = m; i-- > 0;) shards_[order[i]].mu.unlock();
  return all;
}

std::size_t LocalLimiter::size() const {
  std::size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.tat.size();
  }
  return n;
}

bool ConnCounter::acquire(const http::IpAddress& a, unsigned max) {
  std::string k = key(a);
  Shard& s = shard(k);
  std::lock_guard lock(s.mu);
  unsigned& n = s.count[k];
  if (n >= max) {
    if (n == 0) s.count.erase(k);
    return false;
  }
  ++n;
  return true;
}

void ConnCounter::release(const http::IpAddress& a) {
  std::string k = key(a);
  Shard& s = shard(k);
  std::lock_guard lock(s.mu);
  auto it = s.count.find(k);
  if (it == s.count.end()) return;
  if (--it->second == 0) s.count.erase(it);
}

void append_limit_headers(const RateLimit& l, const LimitResult& r, std::string& out) {
  // draft-ietf-httpapi-ratelimit-headers-08 (what express-rate-limit's "draft-8" sends).
  out.append("\r\nRateLimit-Policy: \"").append(l.name).append("\";q=");
  http::append_number(out, static_cast<std::int64_t>(l.requests));
  out.append(";w=");
  http::append_number(out, std::max<std::int64_t>(1, l.window.count() / 1000));
  out.append("\r\nRateLimit: \"").append(l.name).append("\";r=");
  http::append_number(out, static_cast<std::int64_t>(r.remaining));
  out.append(";t=");
  http::append_number(out, ceil_seconds(r.allowed ? r.reset_us : r.wait_us));
  if (!r.allowed) {
    out.append("\r\nRetry-After: ");
    http::append_number(out, std::max<std::int64_t>(1, ceil_seconds(r.wait_us)));
  }
}

void refuse(http::Exchange& ex, const RateLimitSettings& s, const RateLimit& limit,
            const LimitResult& r) {
  ex.resp.reset();
  ex.scratch.assign("{\"error\":\"");
  for (char c : s.message) {  // checked at load: printable, no quote or backslash to escape
    ex.scratch.push_back(c);
  }
  ex.scratch.append("\",\"retry_after\":");
  http::append_number(ex.scratch, std::max<std::int64_t>(1, ceil_seconds(r.wait_us)));
  ex.scratch.append(",\"request_id\":\"").append(ex.req.request_id).append("\"}\n");
  ex.resp.status = 429;
  ex.resp.content_type = "application/json";
  ex.resp.cache_control = "no-store";
  ex.resp.body.kind = http::Body::Kind::kMemory;
  ex.resp.body.data = ex.scratch;
  ex.extra_headers.clear();
  append_limit_headers(limit, r, ex.extra_headers);
}

}  // namespace edge::routes
