// Compression policy and the shared variant store (a mutex is taken only while a file's variant
// is being looked up for the first time, never on the path of a served variant).
#include "routes/compress_policy.h"

#include "server/http/token.h"

namespace edge::routes {

http::CodingSet CompressOptions::coding_set() const {
  http::CodingSet s = 0;
  for (http::Coding c : codings) s |= http::coding_bit(c);
  return s;
}

bool CompressOptions::compressible_type(std::string_view ct) const {
  std::size_t semi = ct.find(';');
  std::string_view media = http::trim_ows(ct.substr(0, semi));
  for (const std::string& t : types) {
    if (t.ends_with("/*")) {
      if (media.size() > t.size() - 1 && http::iequals(media.substr(0, t.size() - 1), std::string_view(t).substr(0, t.size() - 1)))
        return true;
    } else if (http::iequals(media, t)) {
      return true;
    }
  }
  return false;
}

std::shared_ptr<const std::string> VariantStore::find(const Key& k) {
  std::lock_guard lock(mu_);
  auto it = map_.find(k);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.data;
}

bool VariantStore::claim(const Key& k) {
  std::lock_guard lock(mu_);
  if (map_.count(k)) return false;
  return pending_.insert(k).second;
}

void VariantStore::put(const Key& k, std::shared_ptr<const std::string> v) {
  std::lock_guard lock(mu_);
  pending_.erase(k);
  if (map_.count(k) || v->size() > max_bytes_) return;
  while (bytes_ + v->size() > max_bytes_ && !lru_.empty()) {
    auto old = map_.find(lru_.back());
    bytes_ -= old->second.data->size();
    map_.erase(old);
    lru_.pop_back();
  }
  lru_.push_front(k);
  bytes_ += v->size();
  map_.emplace(k, Slot{std::move(v), lru_.begin()});
}

std::uint64_t VariantStore::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace edge::routes
