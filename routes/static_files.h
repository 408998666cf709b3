// Static files from a root folder, with the SPA rules built in (fallback for app routes, real 404s
// for missing assets, immutable caching for hashed assets), validators, ranges, and a per-worker
// open-file cache (descriptor, stat, validators and small bodies, revalidated once a second).
#pragma once
#include <array>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "routes/compress_policy.h"
#include "server/http/exchange.h"

namespace edge::routes {

struct StaticOptions {
  enum class Symlinks { kInside, kNever, kFollow };
  std::string root;                        // absolute
  std::string index = "index.html";        // served for directories
  std::string spa_fallback;                // "/index.html"; empty: no fallback
  std::vector<std::string> immutable;      // path prefixes with immutable caching
  bool hashed_assets = true;               // detect name-<hash>.ext as immutable
  std::string cache_control = "no-cache";  // other files
  bool allow_dotfiles = false;
  Symlinks symlinks = Symlinks::kInside;
  std::uint64_t inline_max = 64 * 1024;  // bodies up to this size are kept in memory
  std::size_t cache_entries = 4096;      // open-file cache bound, per worker
  CompressOptions compress;
};

// One file (or directory, or known-missing path) as seen at `checked`.
struct FileEntry {
  enum class Type : unsigned char { kMissing, kFile, kDirectory, kForbidden };
  Type type = Type::kMissing;
  int fd = -1;
  std::uint64_t size = 0;
  std::time_t mtime = 0;
  std::uint64_t dev = 0, ino = 0;
  std::int64_t mtime_ns = 0;
  std::time_t checked = 0;
  std::string etag;
  char last_modified[30] = {};
  std::string_view content_type;
  std::string body;  // whole file when small
  bool inlined = false;

  // Compressed variants (indexed by http::Coding): a precompressed sibling file or a variant from
  // the shared store. `unknown` are codings not yet asked of the store.
  struct Variant {
    int fd = -1;
    std::uint64_t size = 0;
    std::shared_ptr<const SealedBytes> made;  // compressed by edge, shared by workers
    std::string etag;
  };
  bool compressible = false;
  http::CodingSet available = 0;
  http::CodingSet unknown = 0;
  std::array<Variant, http::kCodingCount> variants;

  ~FileEntry();
};

class FileCache {
 public:
  FileCache(const StaticOptions& opts, int root_fd, const std::string& real_root)
      : opts_(opts), root_fd_(root_fd), real_root_(real_root) {}
  // The entry for a normalised path ("/a/b.js"), opened or revalidated as needed.
  std::shared_ptr<FileEntry> lookup(std::string_view path, std::time_t now);

 private:
  std::shared_ptr<FileEntry> load(std::string_view rel) const;
  bool unchanged(const FileEntry& e, std::string_view rel) const;

  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  const StaticOptions& opts_;
  int root_fd_;
  const std::string& real_root_;
  std::unordered_map<std::string, std::shared_ptr<FileEntry>, Hash, std::equal_to<>> map_;
};

class StaticHandler : public http::Handler {
 public:
  // Opens the root; throws std::runtime_error when it is not a readable directory.
  StaticHandler(StaticOptions opts, unsigned workers);
  ~StaticHandler() override;
  void handle(http::Exchange& ex) const override;
  const char* kind() const override { return "static"; }
  const StaticOptions& options() const { return opts_; }

 private:
  void serve_file(http::Exchange& ex, const std::shared_ptr<FileEntry>& e,
                  std::string_view cache_control) const;
  // The coding to answer with, resolving store variants on demand (may schedule compression).
  http::Coding pick_coding(http::Exchange& ex, const std::shared_ptr<FileEntry>& e) const;
  void not_found(http::Exchange& ex) const;
  bool is_immutable(std::string_view path) const;

  StaticOptions opts_;
  int root_fd_ = -1;
  std::string real_root_;
  std::shared_ptr<VariantStore> store_;
  mutable std::vector<std::unique_ptr<FileCache>> caches_;  // one per worker: no locks
};

// Vite / webpack style content-hashed file names: "index-Cq7Lx2Vd.js", "main.3f2a1b9c.js".
bool looks_hashed(std::string_view path);

// Whether any segment of the path is a dotfile (".env", ".git"), /.well-known/ excepted.
bool has_dot_segment(std::string_view path);

}  // namespace edge::routes
