// What a route compresses and how: codings in server order, compressible types, minimum size,
// levels; and the store that keeps each static file's compressed variants, compressed once.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "server/http/content_coding.h"
#include "server/http/headers.h"

namespace edge::routes {

struct CompressOptions {
  bool enabled = true;
  std::vector<http::Coding> codings = {http::Coding::kBr, http::Coding::kZstd, http::Coding::kGzip};
  // Media types (without parameters); "text/*" matches a whole top-level type.
  std::vector<std::string> types = {"text/*",
                                    "application/javascript",
                                    "application/json",
                                    "application/ld+json",
                                    "application/manifest+json",
                                    "application/xml",
                                    "application/rss+xml",
                                    "application/atom+xml",
                                    "application/wasm",
                                    "application/vnd.ms-fontobject",
                                    "image/svg+xml",
                                    "image/bmp",
                                    "image/vnd.microsoft.icon",
                                    "font/ttf",
                                    "font/otf"};
  std::uint64_t min_size = 256;
  std::uint64_t max_size = 16 * 1024 * 1024;  // larger static files are served as they are
  bool precompressed = true;                  // use app.js.br / .zst / .gz siblings
  int static_levels[http::kCodingCount] = {0, 11, 19, 9};
  int dynamic_levels[http::kCodingCount] = {0, 5, 3, 6};
  std::uint64_t store_bytes = 64 * 1024 * 1024;  // bound of the in-memory variant store

  http::CodingSet coding_set() const;
  // Whether a Content-Type (parameters ignored) is worth compressing.
  bool compressible_type(std::string_view content_type) const;
};

// For a streamed (proxied) response, the coding to apply with a StreamEncoder at the route's
// dynamic level, or identity when the response must be left as it is: already encoded
// (Content-Encoding), `Cache-Control: no-transform`, a range, a status without a body, a type not
// worth compressing, or a known length under min_size. `vary` tells whether the body could
// differ by Accept-Encoding (then the response needs `Vary: Accept-Encoding`).
http::Coding choose_stream_coding(const CompressOptions& o, std::string_view accept_encoding,
                                  int status, const http::HeaderList& response_headers, bool& vary);

// Bytes made once and served many times, kept in a sealed memfd so the codec can sendfile() them
// like a file on disk (a std::string would be copied into the socket on every request). Falls
// back to memory when memfd is not available.
struct SealedBytes {
  int fd = -1;
  std::uint64_t size = 0;
  std::string bytes;  // only when fd < 0
  SealedBytes() = default;
  SealedBytes(const SealedBytes&) = delete;
  SealedBytes& operator=(const SealedBytes&) = delete;
  ~SealedBytes();
  static std::shared_ptr<const SealedBytes> make(std::string_view data);
};

// Compressed variants of static files, shared by all workers, keyed by file identity (device,
// inode, size, mtime) so a changed file never gets an old variant. Bounded by bytes (LRU).
class VariantStore {
 public:
  struct Key {
    std::uint64_t dev, ino, size;
    std::int64_t mtime_ns;
    http::Coding coding;
    bool operator==(const Key&) const = default;
  };
  explicit VariantStore(std::uint64_t max_bytes) : max_bytes_(max_bytes) {}

  // The variant, an empty one (size 0) when compression did not pay (serve identity), or nullptr
  // when not known yet.
  std::shared_ptr<const SealedBytes> find(const Key& k);
  // True when the caller should compress this key now (nobody has, nobody is).
  bool claim(const Key& k);
  void put(const Key& k, std::shared_ptr<const SealedBytes> v);
  std::uint64_t bytes() const;

 private:
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      return std::hash<std::uint64_t>{}(k.ino * 31 + k.dev) ^
             std::hash<std::int64_t>{}(k.mtime_ns) ^ (static_cast<std::size_t>(k.coding) << 1) ^
             k.size;
    }
  };
  struct Slot {
    std::shared_ptr<const SealedBytes> data;
    std::list<Key>::iterator lru;
  };
  mutable std::mutex mu_;
  std::uint64_t max_bytes_;
  std::uint64_t bytes_ = 0;
  std::list<Key> lru_;  // front = most recent
  std::unordered_map<Key, Slot, KeyHash> map_;
  std::unordered_set<Key, KeyHash> pending_;
};

}  // namespace edge::routes
