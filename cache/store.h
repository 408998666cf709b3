// The cache's storage: responses in memory, shared by all workers, bounded in bytes (least
// recently used first out), several variants per URL (Vary, and the content coding edge chose),
// purge by URL, prefix or Cache-Tag. Entries are immutable once stored and handed out as
// shared_ptr, so a hit is served from the stored bytes without a copy while a purge or a newer
// response replaces it.
#pragma once
#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/freshness.h"
#include "server/http/headers.h"

namespace edge::cache {

struct CachedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // as stored (no hop-by-hop fields)
  std::string body;
  ResponseFacts facts;
  std::time_t request_time = 0, response_time = 0;
  std::int64_t lifetime = 0;  // freshness lifetime (s)
  // The request header values this variant answered (names from the response's Vary), and the
  // content coding edge applied ("" = identity).
  std::vector<std::pair<std::string, std::string>> vary;
  std::string coding;
  std::vector<std::string> tags;  // Cache-Tag values
  bool compressible = false;      // edge compresses it for a client that accepts a coding

  std::size_t bytes() const;
  std::int64_t age(std::time_t now) const {
    return current_age(facts, request_time, response_time, now);
  }
  bool fresh(std::time_t now) const { return age(now) < lifetime; }
  std::string_view header(std::string_view name) const;
};

class Store {
 public:
  Store(std::size_t max_bytes, std::size_t max_object);

  // The variant of `key` matching the request's headers for its Vary names and `coding`, or null.
  std::shared_ptr<const CachedResponse> lookup(std::string_view key,
                                               const http::HeaderList& request,
                                               std::string_view coding);
  // Stores (replacing the variant with the same Vary values and coding). False when the object
  // is larger than max_object.
  // `since`: generation() when the response's fetch began; refused if a purge came after it (the
  // fetch may carry what the purge meant to drop). Stores unconditionally when left out.
  bool insert(const std::string& key, std::shared_ptr<const CachedResponse> r,
              std::uint64_t since = ~std::uint64_t{0});
  std::uint64_t generation() const;  // advanced by every purge
  // Every variant of a URL. `fence`: also keep out what fetches begun before bring back (an
  // operator's purge; not the invalidation an unsafe method makes, which is best effort).
  std::size_t purge(std::string_view key, bool fence = true);
  std::size_t purge_prefix(std::string_view prefix);  // every URL starting with it
  std::size_t purge_tag(std::string_view tag);        // every response tagged with it
  std::size_t bytes() const;
  std::size_t entries() const;
  struct Stats {
    std::size_t bytes, entries, capacity;
    std::uint64_t evictions;  // dropped to make room (LRU) or for a URL's variant limit
    std::uint64_t purged;     // dropped by an operator's purge
  };
  Stats stats() const;

  // Request coalescing: the first miss for a key leads (fetches, then calls done()); the others
  // (any worker) wait and are told when it is done, to look again. A lead older than 30 s is
  // taken as lost. `worker` < 64 identifies the waiter's worker for the wake-up.
  bool lead(std::string_view key, unsigned worker);
  void done(std::string_view key);
  // Each worker's wake-up: called (from the leader's thread) with a key it waits for.
  void on_done(unsigned worker, std::function<void(const std::string&)> wake);

  // The request's value for a Vary name, normalised (lists joined with ", ", blanks trimmed).
  static std::string vary_value(const http::HeaderList& request, std::string_view name);

 private:
  struct Entry;
  using Lru = std::list<Entry*>;
  struct Entry {
    std::string key;
    std::shared_ptr<const CachedResponse> r;
    Lru::iterator lru;
  };
  void erase(Entry* e);  // from the map and the LRU (lock held)
  bool matches(const CachedResponse& r, const http::HeaderList& request,
               std::string_view coding) const;

  struct Lead {
    std::chrono::steady_clock::time_point since;
    std::vector<bool> waiters;  // by worker id
  };
  static constexpr std::size_t kMaxVariants = 32;  // per URL (Vary: User-Agent…)
  std::unordered_map<std::string, Lead> leads_;
  std::vector<std::function<void(const std::string&)>> wake_;

  mutable std::mutex mu_;
  std::size_t max_bytes_, max_object_;
  std::size_t bytes_ = 0, entries_ = 0;
  std::uint64_t generation_ = 0;
  std::uint64_t evictions_ = 0, purged_ = 0;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::vector<std::unique_ptr<Entry>>, Hash, std::equal_to<>> map_;
  Lru lru_;  // front: most recently used
};

}  // namespace edge::cache
