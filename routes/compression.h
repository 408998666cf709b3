// Brotli, zstd and gzip codecs: one-shot compression for static variants, streaming encoders for
// proxied bodies, and bounded decompression for tests and the cache.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "server/http/content_coding.h"

namespace edge::routes {

// One-shot compression of a whole buffer. level: br 0..11, zstd 1..19 (22 allowed), gzip 1..9;
// levels out of range are clamped. Output for gzip is a real gzip member (RFC 1952) with no file
// name and mtime 0, so it is byte-identical across runs. kIdentity returns a copy. zstd frames
// never need a window over 8 MiB (RFC 9659), whatever the level.
std::string compress_all(http::Coding c, std::string_view data, int level);

// Decompression of a whole buffer (used by tests and later by the cache); returns std::nullopt on
// corrupt, truncated or trailing-garbage input or when the output would exceed max_out bytes
// (decompression-bomb guard). Concatenated zstd frames and gzip members are accepted. zstd
// decoding never allocates a window over 8 MiB (RFC 9659's limit, as browsers apply it): a frame
// that would need one is refused, unless it fits max_out whole and decodes in one pass.
std::optional<std::string> decompress_all(http::Coding c, std::string_view data,
                                          std::size_t max_out);

// Streaming encoder for proxied bodies: chunks go in as they arrive from the upstream.
class StreamEncoder {
 public:
  // nullptr for kIdentity. Levels clamp as for compress_all, except zstd streams stop at 19: with
  // no size known, levels 20..22 allocate hundreds of MB per stream for no gain.
  static std::unique_ptr<StreamEncoder> create(http::Coding c, int level);
  virtual ~StreamEncoder() = default;
  // Appends the compressed form of `in` to `out`. With flush = true everything fed so far must be
  // decodable by the client from the bytes output so far (server-sent events are flushed as the
  // upstream flushes): brotli FLUSH, zstd e_flush, zlib Z_SYNC_FLUSH. A flush with nothing fed
  // since the previous one appends nothing.
  virtual void write(std::string_view in, bool flush, std::string& out) = 0;
  // Ends the stream (trailer/final block) and appends it to `out`. Call once; write() after
  // finish() throws std::logic_error.
  virtual void finish(std::string& out) = 0;
};

// Default levels: static files (compressed once and kept) and dynamic (streamed) responses.
int default_static_level(http::Coding c);   // br 11, zstd 19, gzip 9
int default_dynamic_level(http::Coding c);  // br 5, zstd 3, gzip 6

}  // namespace edge::routes
