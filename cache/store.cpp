// The cache's memory store (see store.h). One mutex: a lookup is a hash probe and a splice of the
// LRU list, far shorter than anything else a hit does.
#include "cache/store.h"

#include <algorithm>

#include "server/http/token.h"

namespace edge::cache {

std::size_t CachedResponse::bytes() const {
  std::size_t n = sizeof(CachedResponse) + body.size() + coding.size();
  for (const auto& [k, v] : headers) n += k.size() + v.size() + 2 * sizeof(std::string);
  for (const auto& [k, v] : vary) n += k.size() + v.size() + 2 * sizeof(std::string);
  for (const auto& t : tags) n += t.size() + sizeof(std::string);
  return n;
}

std::string_view CachedResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (http::iequals(k, name)) return v;
  return {};
}

Store::Store(std::size_t max_bytes, std::size_t max_object)
    : max_bytes_(max_bytes), max_object_(max_object) {}

std::string Store::vary_value(const http::HeaderList& request, std::string_view name) {
  std::string out;
  for (const http::HeaderField& f : request) {
    if (!http::iequals(f.name, name)) continue;
    http::for_each_list_element(f.value, [&](std::string_view el) {
      if (!out.empty()) out.append(", ");
      out.append(el);
    });
  }
  return out;
}

bool Store::matches(const CachedResponse& r, const http::HeaderList& request,
                    std::string_view coding) const {
  if (r.coding != coding) return false;
  for (const auto& [name, value] : r.vary)
    if (vary_value(request, name) != value) return false;
  return true;
}

std::shared_ptr<const CachedResponse> Store::lookup(std::string_view key,
                                                    const http::HeaderList& request,
                                                    std::string_view coding) {
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return nullptr;
  for (auto& e : it->second) {
    if (!matches(*e->r, request, coding)) continue;
    lru_.splice(lru_.begin(), lru_, e->lru);
    return e->r;
  }
  return nullptr;
}

bool Store::insert(const std::string& key, std::shared_ptr<const CachedResponse> r,
                   std::uint64_t since) {
  std::size_t size = r->bytes();
  if (size > max_object_ || size > max_bytes_) return false;
  std::lock_guard lock(mu_);
  if (since != ~std::uint64_t{0} && generation_ > since) return false;  // purged meanwhile
  auto& variants = map_[key];
  // The same variant (same Vary values, same coding) is replaced.
  bool replaced = false;
  for (auto& e : variants) {
    if (e->r->coding != r->coding || e->r->vary != r->vary) continue;
    bytes_ -= e->r->bytes();
    bytes_ += size;
    e->r = std::move(r);
    lru_.splice(lru_.begin(), lru_, e->lru);
    replaced = true;
    break;
  }
  if (!replaced && variants.size() >= kMaxVariants) {
    erase(variants.front().get());
    ++evictions_;
  }
  auto& vs = map_[key];  // (erase may have removed the vector; taken again)
  if (!replaced) {
    auto e = std::make_unique<Entry>();
    e->key = key;
    e->r = std::move(r);
    lru_.push_front(e.get());
    e->lru = lru_.begin();
    vs.push_back(std::move(e));
    bytes_ += size;
    ++entries_;
  }
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    erase(lru_.back());
    ++evictions_;
  }
  return true;
}

void Store::erase(Entry* e) {
  auto it = map_.find(e->key);
  if (it == map_.end()) return;  // (every entry is in the map)
  lru_.erase(e->lru);
  bytes_ -= e->r->bytes();
  --entries_;
  auto& v = it->second;
  std::erase_if(v, [&](const std::unique_ptr<Entry>& x) { return x.get() == e; });  // frees e
  if (v.empty()) map_.erase(it);
}

Store::Stats Store::stats() const {
  std::lock_guard lock(mu_);
  return {bytes_, entries_, max_bytes_, evictions_, purged_};
}

std::uint64_t Store::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

std::size_t Store::purge(std::string_view key, bool fence) {
  std::lock_guard lock(mu_);
  if (fence) ++generation_;
  auto it = map_.find(key);
  if (it == map_.end()) return 0;
  std::size_t n = it->second.size();
  for (auto& e : it->second) {
    lru_.erase(e->lru);
    bytes_ -= e->r->bytes();
    --entries_;
  }
  map_.erase(it);
  if (fence) purged_ += n;
  return n;
}

std::size_t Store::purge_prefix(std::string_view prefix) {
  std::lock_guard lock(mu_);
  ++generation_;
  std::vector<Entry*> doomed;
  for (auto& [k, v] : map_)
    if (std::string_view(k).starts_with(prefix))
      for (auto& e : v) doomed.push_back(e.get());
  for (Entry* e : doomed) erase(e);
  purged_ += doomed.size();
  return doomed.size();
}

std::size_t Store::purge_tag(std::string_view tag) {
  std::lock_guard lock(mu_);
  ++generation_;
  std::vector<Entry*> doomed;
  for (auto& [k, v] : map_)
    for (auto& e : v)
      if (std::find(e->r->tags.begin(), e->r->tags.end(), tag) != e->r->tags.end())
        doomed.push_back(e.get());
  for (Entry* e : doomed) erase(e);
  purged_ += doomed.size();
  return doomed.size();
}

bool Store::lead(std::string_view key, unsigned worker) {
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  auto it = leads_.find(std::string(key));
  if (it == leads_.end() || now - it->second.since > std::chrono::seconds(30)) {
    leads_[std::string(key)] = Lead{now, {}};
    return true;
  }
  auto& w = it->second.waiters;
  if (w.size() <= worker) w.resize(worker + 1);
  w[worker] = true;
  return false;
}

void Store::done(std::string_view key) {
  std::string k(key);
  std::vector<std::function<void(const std::string&)>> wake;
  {
    std::lock_guard lock(mu_);
    auto it = leads_.find(k);
    if (it == leads_.end()) return;
    const auto& waiters = it->second.waiters;
    // Copies: a worker adopting this store after a reload may register while we call them.
    for (std::size_t w = 0; w < wake_.size() && w < waiters.size(); ++w)
      if (waiters[w] && wake_[w]) wake.push_back(wake_[w]);
    leads_.erase(it);
  }
  for (auto& f : wake) f(k);
}

void Store::on_done(unsigned worker, std::function<void(const std::string&)> wake) {
  std::lock_guard lock(mu_);
  if (wake_.size() <= worker) wake_.resize(worker + 1);
  wake_[worker] = std::move(wake);
}

std::size_t Store::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t Store::entries() const {
  std::lock_guard lock(mu_);
  return entries_;
}

}  // namespace edge::cache
