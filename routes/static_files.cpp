// Static files: lookup through openat2(RESOLVE_BENEATH) so neither ".." nor a symlink can leave the
// root, then validators, ranges and the SPA rules.
#include "routes/static_files.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "routes/compression.h"
#include "server/http/conditional.h"
#include "server/http/date.h"
#include "server/http/mime.h"
#include "server/http/path.h"
#include "server/http/range.h"

namespace edge::routes {
namespace {

constexpr std::string_view kImmutable = "public, max-age=31536000, immutable";
constexpr std::string_view kNoCache = "no-cache";
constexpr std::string_view kNoStore = "no-store";
constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";
constexpr std::uint64_t kMaxMultipart = 16 * 1024 * 1024;

int open_in_root(int root_fd, const std::string& real_root, const char* rel,
                 StaticOptions::Symlinks mode) {
  const int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
  if (mode == StaticOptions::Symlinks::kFollow) return ::openat(root_fd, rel, flags);
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<std::uint64_t>(flags);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  if (mode == StaticOptions::Symlinks::kNever) how.resolve |= RESOLVE_NO_SYMLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, root_fd, rel, &how, sizeof how));
  if (fd >= 0 || errno != EXDEV || mode != StaticOptions::Symlinks::kInside) return fd;
  // An absolute symlink: RESOLVE_BENEATH refuses it even when it points inside the root, so
  // resolve it and check where it landed (rare path).
  fd = ::openat(root_fd, rel, flags);
  if (fd < 0) return fd;
  char proc[64], target[4096];
  std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  ssize_t n = ::readlink(proc, target, sizeof target - 1);
  if (n > 0 && static_cast<std::size_t>(n) > real_root.size() &&
      std::string_view(target, static_cast<std::size_t>(n)).starts_with(real_root) &&
      target[real_root.size()] == '/')
    return fd;
  ::close(fd);
  errno = EXDEV;
  return -1;
}

constexpr std::size_t kMaxName = 4096;

// The root-relative path as a C string ("" is the root itself, "."); false when too long.
bool c_name(std::string_view rel, char (&out)[kMaxName]) {
  if (rel.size() >= kMaxName) return false;
  if (rel.empty()) rel = ".";
  std::memcpy(out, rel.data(), rel.size());
  out[rel.size()] = '\0';
  return true;
}

std::int64_t mtime_ns_of(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
}

bool hash_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

}  // namespace

FileEntry::~FileEntry() {
  if (fd >= 0) ::close(fd);
  for (Variant& v : variants)
    if (v.fd >= 0) ::close(v.fd);
}

bool looks_hashed(std::string_view path) {
  std::size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot + 1 == name.size()) return false;
  std::string_view stem = name.substr(0, dot);
  // Vite/Rollup: exactly 8 base64url characters after '-' or '.'.
  if (stem.size() > 9) {
    std::string_view h = stem.substr(stem.size() - 8);
    char sep = stem[stem.size() - 9];
    if (sep == '-' || sep == '.') {
      int digits = 0, upper = 0, lower = 0;
      bool ok = true;
      for (char c : h) {
        if (!hash_char(c)) ok = false;
        digits += c >= '0' && c <= '9';
        upper += c >= 'A' && c <= 'Z';
        lower += c >= 'a' && c <= 'z';
      }
      // A word such as "-Settings" is not a hash: ask for a digit, or mixed case beyond a capital.
      if (ok && (digits > 0 || (upper >= 2 && lower >= 1))) return true;
    }
  }
  // webpack: 8 to 32 hex digits after '.' or '-', with at least one digit.
  std::size_t sep = stem.find_last_of(".-");
  if (sep != std::string_view::npos && sep > 0) {
    std::string_view h = stem.substr(sep + 1);
    if (h.size() >= 8 && h.size() <= 32) {
      bool hex = true, digit = false;
      for (char c : h) {
        hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        digit = digit || (c >= '0' && c <= '9');
      }
      if (hex && digit) return true;
    }
  }
  return false;
}

bool has_dot_segment(std::string_view path) {
  if (path.starts_with("/.well-known/")) path.remove_prefix(12);
  for (std::size_t i = 0; i + 1 < path.size(); ++i)
    if (path[i] == '/' && path[i + 1] == '.') return true;
  return false;
}

std::shared_ptr<FileEntry> FileCache::load(std::string_view rel) const {
  auto e = std::make_shared<FileEntry>();
  char name[kMaxName];
  if (!c_name(rel, name)) return e;
  int fd = open_in_root(root_fd_, real_root_, name, opts_.symlinks);
  if (fd < 0) {
    e->type = errno == EACCES ? FileEntry::Type::kForbidden : FileEntry::Type::kMissing;
    return e;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return e;
  }
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  e->size = static_cast<std::uint64_t>(st.st_size);
  e->mtime = st.st_mtim.tv_sec;
  e->mtime_ns = mtime_ns_of(st);
  if (S_ISDIR(st.st_mode)) {
    e->type = FileEntry::Type::kDirectory;
    ::close(fd);
    return e;
  }
  if (!S_ISREG(st.st_mode)) {
    e->type = FileEntry::Type::kForbidden;
    ::close(fd);
    return e;
  }
  e->type = FileEntry::Type::kFile;
  char tag[64];
  int n = std::snprintf(
      tag, sizeof tag, "\"%llx%08lx-%llx\"", static_cast<unsigned long long>(st.st_mtim.tv_sec),
      static_cast<unsigned long>(st.st_mtim.tv_nsec), static_cast<unsigned long long>(e->size));
  e->etag.assign(tag, static_cast<std::size_t>(n));
  http::format_http_date(e->mtime, e->last_modified);
  e->content_type = http::mime_type(http::path_extension(rel));
  const CompressOptions& co = opts_.compress;
  e->compressible = co.enabled && e->size >= co.min_size && e->size <= co.max_size &&
                    !http::is_precompressed_type(e->content_type) &&
                    co.compressible_type(e->content_type);
  if (e->compressible) {
    for (http::Coding c : co.codings) {
      auto& v = e->variants[static_cast<std::size_t>(c)];
      std::string_view ext = c == http::Coding::kBr     ? ".br"
                             : c == http::Coding::kZstd ? ".zst"
                                                        : ".gz";
      if (co.precompressed && rel.size() + ext.size() < sizeof name) {
        std::memcpy(name + rel.size(), ext.data(), ext.size());
        name[rel.size() + ext.size()] = '\0';
        int vfd = open_in_root(root_fd_, real_root_, name, opts_.symlinks);
        name[rel.size()] = '\0';
        struct stat vst;
        if (vfd >= 0 && ::fstat(vfd, &vst) == 0 && S_ISREG(vst.st_mode) &&
            mtime_ns_of(vst) >= e->mtime_ns) {
          // A sibling not older than the file: its own size names it in the validator.
          v.fd = vfd;
          v.size = static_cast<std::uint64_t>(vst.st_size);
          char t[48];
          int tn = std::snprintf(
              t, sizeof t, "-%llx-%.*s\"", static_cast<unsigned long long>(v.size),
              static_cast<int>(http::coding_name(c).size()), http::coding_name(c).data());
          v.etag.assign(e->etag, 0, e->etag.size() - 1).append(t, static_cast<std::size_t>(tn));
          e->available |= http::coding_bit(c);
          continue;
        }
        if (vfd >= 0) ::close(vfd);
      }
      e->unknown |= http::coding_bit(c);
    }
  }
  if (e->size <= opts_.inline_max) {
    e->body.resize(e->size);
    std::size_t got = 0;
    while (got < e->size) {
      ssize_t r = ::pread(fd, e->body.data() + got, e->size - got, static_cast<off_t>(got));
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    if (got == e->size) {
      e->inlined = true;
      ::close(fd);
      return e;
    }
    e->body.clear();  // shrank under us: serve from the descriptor, revalidated next second
  }
  e->fd = fd;
  return e;
}

bool FileCache::unchanged(const FileEntry& e, std::string_view rel) const {
  char name[kMaxName];
  if (!c_name(rel, name)) return false;
  int fd = open_in_root(root_fd_, real_root_, name, opts_.symlinks);
  if (fd < 0) return e.type == FileEntry::Type::kMissing && errno != EACCES;
  struct stat st;
  bool same = ::fstat(fd, &st) == 0 && e.type != FileEntry::Type::kMissing && st.st_dev == e.dev &&
              st.st_ino == e.ino && static_cast<std::uint64_t>(st.st_size) == e.size &&
              mtime_ns_of(st) == e.mtime_ns;
  ::close(fd);
  return same;
}

std::shared_ptr<FileEntry> FileCache::lookup(std::string_view path, std::time_t now) {
  std::string_view rel = path.substr(1);
  auto it = map_.find(path);
  if (it != map_.end()) {
    FileEntry& e = *it->second;
    if (e.checked == now) return it->second;
    if (unchanged(e, rel)) {
      e.checked = now;
      return it->second;
    }
    it->second = load(rel);
    it->second->checked = now;
    return it->second;
  }
  if (map_.size() >= opts_.cache_entries) {
    // Bounded: drop entries not confirmed this second, then everything if still full.
    std::erase_if(map_, [now](const auto& kv) { return kv.second->checked != now; });
    if (map_.size() >= opts_.cache_entries) map_.clear();
  }
  auto e = load(rel);
  e->checked = now;
  map_.emplace(std::string(path), e);
  return e;
}

StaticHandler::StaticHandler(StaticOptions opts, unsigned workers) : opts_(std::move(opts)) {
  root_fd_ = ::open(opts_.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0)
    throw std::runtime_error("root \"" + opts_.root +
                             "\" is not a readable directory: " + std::strerror(errno));
  char real[4096];
  if (::realpath(opts_.root.c_str(), real))
    real_root_ = real;
  else
    real_root_ = opts_.root;
  store_ = std::make_shared<VariantStore>(opts_.compress.store_bytes);
  for (unsigned i = 0; i < workers; ++i)
    caches_.push_back(std::make_unique<FileCache>(opts_, root_fd_, real_root_));
}

StaticHandler::~StaticHandler() {
  caches_.clear();
  if (root_fd_ >= 0) ::close(root_fd_);
}

bool StaticHandler::is_immutable(std::string_view path) const {
  for (const std::string& p : opts_.immutable)
    if (path.starts_with(p)) return true;
  return opts_.hashed_assets && looks_hashed(path);
}

void StaticHandler::not_found(http::Exchange& ex) const {
  ex.set_static(404, kTextPlain, "404 Not Found\n");
  ex.resp.cache_control = kNoStore;
}

void StaticHandler::handle(http::Exchange& ex) const {
  http::Request& req = ex.req;
  if (req.method != http::Method::kGet && req.method != http::Method::kHead) {
    ex.set_static(405, kTextPlain, "405 Method Not Allowed\n");
    ex.resp.headers.add("Allow", "GET, HEAD");
    return;
  }
  std::string_view path = req.path;
  if (!opts_.allow_dotfiles && has_dot_segment(path)) return not_found(ex);
  FileCache& cache = *caches_[ex.worker_id];
  std::shared_ptr<FileEntry> e = cache.lookup(path, ex.now);
  if (e->type == FileEntry::Type::kDirectory) {
    if (!path.ends_with('/')) {
      ex.scratch.assign(req.raw_path);
      ex.scratch.push_back('/');
      if (!req.query.empty()) {
        ex.scratch.push_back('?');
        ex.scratch.append(req.query);
      }
      ex.set_static(301, kTextPlain, "301 Moved Permanently\n");
      ex.resp.location = ex.scratch;
      return;
    }
    ex.scratch2.assign(path);
    ex.scratch2.append(opts_.index);
    e = cache.lookup(ex.scratch2, ex.now);
    if (e->type == FileEntry::Type::kFile) {
      return serve_file(ex, e, is_immutable(ex.scratch2) ? kImmutable : kNoCache);
    }
  }
  if (e->type == FileEntry::Type::kFile) {
    std::string_view cc = is_immutable(path) ? kImmutable
                          : e->content_type.starts_with("text/html")
                              ? kNoCache
                              : std::string_view(opts_.cache_control);
    return serve_file(ex, e, cc);
  }
  if (e->type == FileEntry::Type::kForbidden) {
    ex.set_static(403, kTextPlain, "403 Forbidden\n");
    ex.resp.cache_control = kNoStore;
    return;
  }
  // Missing. A path that names a file (has an extension) is a real 404: an old asset must never
  // be answered with index.html. An app route gets the SPA shell.
  if (opts_.spa_fallback.empty() || !http::path_extension(path).empty()) return not_found(ex);
  e = cache.lookup(opts_.spa_fallback, ex.now);
  if (e->type != FileEntry::Type::kFile) return not_found(ex);
  serve_file(ex, e, kNoCache);
}

http::Coding StaticHandler::pick_coding(http::Exchange& ex,
                                        const std::shared_ptr<FileEntry>& e) const {
  std::string_view ae = ex.req.headers.list("Accept-Encoding", ex.header_buf);
  if (ae.empty()) return http::Coding::kIdentity;
  const auto& prefs = opts_.compress.codings;
  http::Coding c =
      http::negotiate_coding(ae, prefs.data(), prefs.size(), e->available | e->unknown);
  if (c == http::Coding::kIdentity || (e->available & http::coding_bit(c))) return c;
  // The client's choice is not compressed yet: ask the shared store, or have it compressed once
  // (off the loop) and answer with what is ready meanwhile.
  VariantStore::Key key{e->dev, e->ino, e->size, e->mtime_ns, c};
  auto& v = e->variants[static_cast<std::size_t>(c)];
  if (auto found = store_->find(key)) {
    e->unknown &= static_cast<http::CodingSet>(~http::coding_bit(c));
    if (found->size > 0) {
      v.made = std::move(found);
      v.size = v.made->size;
      v.etag.assign(e->etag, 0, e->etag.size() - 1)
          .append("-")
          .append(http::coding_name(c))
          .append("\"");
      e->available |= http::coding_bit(c);
      return c;
    }
  } else if (store_->claim(key)) {
    int level = opts_.compress.static_levels[static_cast<std::size_t>(c)];
    auto work = [store = store_, key, level, keep = e]() {
      std::string data;
      if (keep->inlined) {
        data = keep->body;
      } else {
        data.resize(keep->size);
        std::size_t got = 0;
        while (got < data.size()) {
          ssize_t r =
              ::pread(keep->fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
          if (r <= 0) break;
          got += static_cast<std::size_t>(r);
        }
        data.resize(got);
      }
      std::string out;
      try {
        out = compress_all(key.coding, data, level);
      } catch (const std::exception&) {
        out.clear();  // a codec failure (a bug, not an input problem): serve the identity
      }
      if (data.size() != keep->size || out.size() + 32 >= data.size())
        out.clear();  // no gain: identity
      store->put(key, SealedBytes::make(out));
    };
    if (ex.scheduler)
      ex.scheduler->offload(std::move(work));
    else
      work();
    return pick_coding(ex, e);
  }
  return http::negotiate_coding(ae, prefs.data(), prefs.size(), e->available);
}

void StaticHandler::serve_file(http::Exchange& ex, const std::shared_ptr<FileEntry>& e,
                               std::string_view cache_control) const {
  http::Response& resp = ex.resp;
  resp.etag = e->etag;
  resp.last_modified = std::string_view(e->last_modified, http::kHttpDateLen);
  resp.cache_control = cache_control;
  resp.headers.add("Accept-Ranges", "bytes");
  http::Coding coding = http::Coding::kIdentity;
  if (e->compressible) {
    resp.headers.add("Vary", "Accept-Encoding");
    // Ranges are answered from the identity representation: never bytes of one variant under the
    // validator of another.
    bool ranged = ex.req.method == http::Method::kGet && ex.req.headers.find("Range");
    if (!ranged) coding = pick_coding(ex, e);
  }
  if (coding != http::Coding::kIdentity) {
    const FileEntry::Variant& v = e->variants[static_cast<std::size_t>(coding)];
    resp.etag = v.etag;
    resp.headers.add("Content-Encoding", http::coding_name(coding));
    switch (http::evaluate_preconditions(ex.req.headers, ex.req.method, v.etag, e->mtime)) {
      case http::Precondition::kNotModified:
        resp.status = 304;
        return;
      case http::Precondition::kFailed:
        resp.headers.remove("Content-Encoding");
        ex.set_static(412, kTextPlain, "412 Precondition Failed\n");
        return;
      case http::Precondition::kProceed:
        break;
    }
    resp.status = 200;
    resp.content_type = e->content_type;
    resp.body = http::Body{};
    if (v.made && v.made->fd < 0) {
      resp.body.kind = http::Body::Kind::kMemory;
      resp.body.data = v.made->bytes;
      resp.body.keep = v.made;
    } else if (v.made) {
      resp.body.kind = http::Body::Kind::kFile;
      resp.body.fd = v.made->fd;
      resp.body.offset = 0;
      resp.body.length = v.made->size;
      resp.body.keep = v.made;
    } else {
      resp.body.kind = http::Body::Kind::kFile;
      resp.body.fd = v.fd;
      resp.body.offset = 0;
      resp.body.length = v.size;
      resp.body.keep = e;
    }
    return;
  }
  switch (http::evaluate_preconditions(ex.req.headers, ex.req.method, e->etag, e->mtime)) {
    case http::Precondition::kNotModified:
      resp.status = 304;
      return;
    case http::Precondition::kFailed:
      ex.set_static(412, kTextPlain, "412 Precondition Failed\n");
      return;
    case http::Precondition::kProceed:
      break;
  }
  resp.status = 200;
  resp.content_type = e->content_type;
  std::uint64_t first = 0, length = e->size;
  if (ex.req.method == http::Method::kGet && e->size > 0) {
    if (const http::HeaderField* rh = ex.req.headers.find("Range")) {
      if (http::if_range_allows(ex.req.headers.get("If-Range"), e->etag, e->mtime)) {
        http::RangeSet rs = http::parse_range(rh->value, e->size);
        if (rs.kind == http::RangeSet::Kind::kUnsatisfiable) {
          ex.set_static(416, kTextPlain, "416 Range Not Satisfiable\n");
          resp.content_range = resp.range_unsatisfied = true;
          resp.range_total = e->size;
          return;
        }
        if (rs.kind == http::RangeSet::Kind::kSatisfiable && rs.count == 1) {
          resp.status = 206;
          resp.content_range = true;
          resp.range_first = first = rs.ranges[0].first;
          resp.range_last = rs.ranges[0].last;
          resp.range_total = e->size;
          length = rs.ranges[0].length();
        } else if (rs.kind == http::RangeSet::Kind::kSatisfiable) {
          std::uint64_t total = 0;
          for (std::size_t i = 0; i < rs.count; ++i) total += rs.ranges[i].length();
          if (total <= kMaxMultipart) {
            std::string& b = ex.scratch;
            b.clear();
            std::string_view boundary = std::string_view(e->etag).substr(1, e->etag.size() - 2);
            char line[128];
            for (std::size_t i = 0; i < rs.count; ++i) {
              const http::ByteRange& r = rs.ranges[i];
              b.append("\r\n--")
                  .append(boundary)
                  .append("\r\nContent-Type: ")
                  .append(e->content_type);
              int n = std::snprintf(
                  line, sizeof line, "\r\nContent-Range: bytes %llu-%llu/%llu\r\n\r\n",
                  static_cast<unsigned long long>(r.first), static_cast<unsigned long long>(r.last),
                  static_cast<unsigned long long>(e->size));
              b.append(line, static_cast<std::size_t>(n));
              if (e->inlined) {
                b.append(e->body, r.first, r.length());
              } else {
                std::size_t at = b.size();
                b.resize(at + r.length());
                ssize_t got =
                    ::pread(e->fd, b.data() + at, r.length(), static_cast<off_t>(r.first));
                if (got != static_cast<ssize_t>(r.length())) {
                  ex.set_static(500, kTextPlain, "500 Internal Server Error\n");
                  return;
                }
              }
            }
            b.append("\r\n--").append(boundary).append("--\r\n");
            ex.scratch2.assign("multipart/byteranges; boundary=").append(boundary);
            resp.status = 206;
            resp.content_type = ex.scratch2;
            resp.body = http::Body{};
            resp.body.kind = http::Body::Kind::kMemory;
            resp.body.data = b;
            return;
          }
        }
      }
    }
  }
  resp.body = http::Body{};
  if (e->inlined) {
    resp.body.kind = http::Body::Kind::kMemory;
    resp.body.data = std::string_view(e->body).substr(first, length);
  } else {
    resp.body.kind = http::Body::Kind::kFile;
    resp.body.fd = e->fd;
    resp.body.offset = first;
    resp.body.length = length;
  }
  resp.body.keep = e;
}

}  // namespace edge::routes
