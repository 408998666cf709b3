// The MIME table, sorted for binary search; covers what a modern SPA build and its public/ hold.
#include "server/http/mime.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "server/http/token.h"

namespace edge::http {
namespace {

struct Entry {
  std::string_view ext;
  std::string_view type;
};

// Keep sorted by extension (checked by a unit test).
constexpr std::array kTable = {
    Entry{"7z", "application/x-7z-compressed"},
    Entry{"aac", "audio/aac"},
    Entry{"apng", "image/apng"},
    Entry{"avif", "image/avif"},
    Entry{"bin", "application/octet-stream"},
    Entry{"bmp", "image/bmp"},
    Entry{"br", "application/octet-stream"},
    Entry{"cjs", "text/javascript; charset=utf-8"},
    Entry{"css", "text/css; charset=utf-8"},
    Entry{"csv", "text/csv; charset=utf-8"},
    Entry{"eot", "application/vnd.ms-fontobject"},
    Entry{"flac", "audio/flac"},
    Entry{"gif", "image/gif"},
    Entry{"gz", "application/gzip"},
    Entry{"htm", "text/html; charset=utf-8"},
    Entry{"html", "text/html; charset=utf-8"},
    Entry{"ico", "image/vnd.microsoft.icon"},
    Entry{"ics", "text/calendar; charset=utf-8"},
    Entry{"jpeg", "image/jpeg"},
    Entry{"jpg", "image/jpeg"},
    Entry{"js", "text/javascript; charset=utf-8"},
    Entry{"json", "application/json"},
    Entry{"jsonld", "application/ld+json"},
    Entry{"jxl", "image/jxl"},
    Entry{"m4a", "audio/mp4"},
    Entry{"map", "application/json"},
    Entry{"md", "text/markdown; charset=utf-8"},
    Entry{"mjs", "text/javascript; charset=utf-8"},
    Entry{"mp3", "audio/mpeg"},
    Entry{"mp4", "video/mp4"},
    Entry{"oga", "audio/ogg"},
    Entry{"ogg", "audio/ogg"},
    Entry{"ogv", "video/ogg"},
    Entry{"opus", "audio/opus"},
    Entry{"otf", "font/otf"},
    Entry{"pdf", "application/pdf"},
    Entry{"png", "image/png"},
    Entry{"rss", "application/rss+xml"},
    Entry{"svg", "image/svg+xml"},
    Entry{"tar", "application/x-tar"},
    Entry{"tif", "image/tiff"},
    Entry{"tiff", "image/tiff"},
    Entry{"ts", "video/mp2t"},
    Entry{"ttf", "font/ttf"},
    Entry{"txt", "text/plain; charset=utf-8"},
    Entry{"vtt", "text/vtt; charset=utf-8"},
    Entry{"wasm", "application/wasm"},
    Entry{"wav", "audio/wav"},
    Entry{"webm", "video/webm"},
    Entry{"webmanifest", "application/manifest+json"},
    Entry{"webp", "image/webp"},
    Entry{"woff", "font/woff"},
    Entry{"woff2", "font/woff2"},
    Entry{"xml", "application/xml"},
    Entry{"zip", "application/zip"},
    Entry{"zst", "application/zstd"},
};

static_assert(std::is_sorted(kTable.begin(), kTable.end(),
                             [](const Entry& a, const Entry& b) { return a.ext < b.ext; }));

}  // namespace

std::string_view mime_type(std::string_view extension) {
  char lower[16];
  if (extension.empty() || extension.size() > sizeof(lower)) return "application/octet-stream";
  for (std::size_t i = 0; i < extension.size(); ++i) lower[i] = ascii_lower(extension[i]);
  std::string_view key(lower, extension.size());
  auto it = std::lower_bound(kTable.begin(), kTable.end(), key,
                             [](const Entry& e, std::string_view k) { return e.ext < k; });
  if (it != kTable.end() && it->ext == key) return it->type;
  return "application/octet-stream";
}

bool is_precompressed_type(std::string_view t) {
  if (t.starts_with("image/")) return t != "image/svg+xml" && t != "image/bmp";
  if (t.starts_with("audio/") || t.starts_with("video/")) return true;
  if (t == "font/woff" || t == "font/woff2") return true;
  return t == "application/zip" || t == "application/gzip" || t == "application/zstd" ||
         t == "application/x-7z-compressed" || t == "application/pdf";
}

}  // namespace edge::http
