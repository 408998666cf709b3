// Compression policy and the shared variant store (a mutex is taken only while a file's variant
// is being looked up for the first time, never on the path of a served variant).
#include "routes/compress_policy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "server/http/mime.h"
#include "server/http/token.h"

namespace edge::routes {

SealedBytes::~SealedBytes() {
  if (fd >= 0) ::close(fd);
}

std::shared_ptr<const SealedBytes> SealedBytes::make(std::string_view data) {
  auto s = std::make_shared<SealedBytes>();
  s->size = data.size();
  if (data.empty()) return s;
  int fd = ::memfd_create("edge-variant", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd >= 0) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t w = ::write(fd, data.data() + off, data.size() - off);
      if (w <= 0) break;
      off += static_cast<std::size_t>(w);
    }
    // Sealed: nobody can change or truncate the bytes a response is being sent from.
    if (off == data.size() &&
        ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0) {
      s->fd = fd;
      return s;
    }
    ::close(fd);
  }
  s->bytes.assign(data);
  return s;
}

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
      if (media.size() > t.size() - 1 &&
          http::iequals(media.substr(0, t.size() - 1), std::string_view(t).substr(0, t.size() - 1)))
        return true;
    } else if (http::iequals(media, t)) {
      return true;
    }
  }
  return false;
}

http::Coding choose_stream_coding(const CompressOptions& o, std::string_view accept_encoding,
                                  int status, const http::HeaderList& h, bool& vary) {
  vary = false;
  if (!o.enabled || status < 200 || status == 204 || status == 206 || status == 304)
    return http::Coding::kIdentity;
  std::string_view ce = http::trim_ows(h.get("Content-Encoding"));
  if (!ce.empty() && !http::iequals(ce, "identity")) return http::Coding::kIdentity;
  if (h.find("Content-Range")) return http::Coding::kIdentity;
  bool no_transform = false;
  for (const http::HeaderField& f : h)
    if (http::iequals(f.name, "Cache-Control"))
      http::for_each_list_element(
          f.value, [&](std::string_view d) { no_transform |= http::iequals(d, "no-transform"); });
  if (no_transform) return http::Coding::kIdentity;
  std::string_view ct = h.get("Content-Type");
  if (ct.empty() || http::is_precompressed_type(ct) || !o.compressible_type(ct))
    return http::Coding::kIdentity;
  std::string_view cl = http::trim_ows(h.get("Content-Length"));
  if (!cl.empty()) {
    std::uint64_t n = 0;
    for (char c : cl) n = (c >= '0' && c <= '9') ? n * 10 + static_cast<std::uint64_t>(c - '0') : n;
    if (n < o.min_size) return http::Coding::kIdentity;
  }
  vary = true;
  return http::negotiate_coding(accept_encoding, o.codings.data(), o.codings.size(),
                                o.coding_set());
}

std::shared_ptr<const SealedBytes> VariantStore::find(const Key& k) {
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

void VariantStore::put(const Key& k, std::shared_ptr<const SealedBytes> v) {
  std::lock_guard lock(mu_);
  pending_.erase(k);
  if (map_.count(k) || v->size > max_bytes_) return;
  while (bytes_ + v->size > max_bytes_ && !lru_.empty()) {
    auto old = map_.find(lru_.back());
    bytes_ -= old->second.data->size;
    map_.erase(old);
    lru_.pop_back();
  }
  lru_.push_front(k);
  bytes_ += v->size;
  map_.emplace(k, Slot{std::move(v), lru_.begin()});
}

std::uint64_t VariantStore::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace edge::routes
