// Brotli, zstd and gzip over the system libraries (libbrotli, libzstd, zlib); every library state
// is owned by an RAII holder so an exception on the way out never leaks it.
#include "routes/compression.h"

// zlib's next_in becomes a pointer to const, so feeding a string_view needs no const_cast.
#define ZLIB_CONST
#include <brotli/decode.h>
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>

namespace edge::routes {
namespace {

using http::Coding;

// RFC 9659 §3: encoders must not need a zstd window over 8 MiB, and browsers refuse such frames.
// Levels up to 19 stay within it; 20..22 ("ultra") would ask for 32..128 MiB, so they are capped.
constexpr int kZstdMaxWindowLog = 23;
constexpr int kZstdMaxPlainLevel = 19;
// RFC 7932 §9.1: a window of 2^WBITS reaches back 2^WBITS - 16 bytes.
constexpr std::size_t kBrotliWindowGap = 16;
constexpr int kBrotliWindow = BROTLI_DEFAULT_WINDOW;  // 4 MiB, decodable by every client
constexpr int kGzipWindowBits = 15 + 16;              // 32 KiB window, gzip wrapper (RFC 1952)
constexpr int kGzipMemLevel = 8;                      // zlib's default, as gzip(1) uses
constexpr int kInflateAnyWindowBits = 15 + 32;        // accept gzip or zlib wrappers
constexpr int kGzipMinLevel = 1;  // 0 would be "stored", which is no compression at all
constexpr int kGzipMaxLevel = 9;
constexpr std::size_t kScratchSize = 32 * 1024;
// zlib counts bytes in uInt: larger buffers go through it in pieces of at most this size.
constexpr std::size_t kZlibMaxPiece = std::numeric_limits<uInt>::max();
constexpr std::size_t kDecodeMinBuffer = 16 * 1024;
constexpr std::size_t kGzipMinMember = 18;      // 10-byte header, empty deflate, 8-byte trailer
constexpr std::size_t kDeflateMaxRatio = 1032;  // deflate's best case: 258 bytes per 2 bits

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("compression: " + what);
}

void check_zstd(std::size_t result, const char* call) {
  if (ZSTD_isError(result)) fail(std::string(call) + ": " + ZSTD_getErrorName(result));
}

const std::uint8_t* bytes(std::string_view s) {
  return reinterpret_cast<const std::uint8_t*>(s.data());
}

int clamp_level(Coding c, int level) {
  switch (c) {
    case Coding::kBr:
      return std::clamp(level, BROTLI_MIN_QUALITY, BROTLI_MAX_QUALITY);
    case Coding::kZstd:
      return std::clamp(level, 1, ZSTD_maxCLevel());
    case Coding::kGzip:
      return std::clamp(level, kGzipMinLevel, kGzipMaxLevel);
    case Coding::kIdentity:
      break;
  }
  return 0;
}

struct BrotliEncoderDeleter {
  void operator()(BrotliEncoderState* s) const { BrotliEncoderDestroyInstance(s); }
};
struct BrotliDecoderDeleter {
  void operator()(BrotliDecoderState* s) const { BrotliDecoderDestroyInstance(s); }
};
struct ZstdCCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct ZstdDCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
using BrotliEncoderPtr = std::unique_ptr<BrotliEncoderState, BrotliEncoderDeleter>;
using BrotliDecoderPtr = std::unique_ptr<BrotliDecoderState, BrotliDecoderDeleter>;
using ZstdCCtxPtr = std::unique_ptr<ZSTD_CCtx, ZstdCCtxDeleter>;
using ZstdDCtxPtr = std::unique_ptr<ZSTD_DCtx, ZstdDCtxDeleter>;

// zlib keeps a pointer back to the z_stream it initialised, so these never copy or move.
class Deflater {
 public:
  explicit Deflater(int level) {
    if (deflateInit2(&zs_, level, Z_DEFLATED, kGzipWindowBits, kGzipMemLevel, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
      fail("deflateInit2 failed");
    }
  }
  ~Deflater() { deflateEnd(&zs_); }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
  z_stream* get() { return &zs_; }

 private:
  z_stream zs_{};
};

class Inflater {
 public:
  Inflater() {
    if (inflateInit2(&zs_, kInflateAnyWindowBits) != Z_OK) fail("inflateInit2 failed");
  }
  ~Inflater() { inflateEnd(&zs_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  z_stream* get() { return &zs_; }

 private:
  z_stream zs_{};
};

ZstdCCtxPtr make_zstd_cctx(int level) {
  ZstdCCtxPtr cctx(ZSTD_createCCtx());
  if (!cctx) throw std::bad_alloc();
  check_zstd(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level),
             "compressionLevel");
  // 4 bytes per frame buy end-to-end detection of a corrupted variant, as zstd(1) does by default.
  check_zstd(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1), "checksumFlag");
  if (level > kZstdMaxPlainLevel) {
    check_zstd(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, kZstdMaxWindowLog),
               "windowLog");
  }
  return cctx;
}

// The smallest window that still reaches back over the whole input: same output, but the client
// allocates no more than the file needs (as brotli(1) does for files).
int brotli_window_for(std::size_t size) {
  int lgwin = BROTLI_MIN_WINDOW_BITS;
  while (lgwin < kBrotliWindow && (std::size_t{1} << lgwin) - kBrotliWindowGap < size) ++lgwin;
  return lgwin;
}

std::string compress_brotli(std::string_view data, int quality) {
  std::size_t bound = BrotliEncoderMaxCompressedSize(data.size());
  if (bound == 0) fail("input too large for brotli");
  std::string out(bound, '\0');
  std::size_t size = bound;
  if (!BrotliEncoderCompress(quality, brotli_window_for(data.size()), BROTLI_MODE_GENERIC,
                             data.size(), bytes(data), &size,
                             reinterpret_cast<std::uint8_t*>(out.data()))) {
    fail("BrotliEncoderCompress failed");
  }
  out.resize(size);
  return out;
}

std::string compress_zstd(std::string_view data, int level) {
  ZstdCCtxPtr cctx = make_zstd_cctx(level);
  std::size_t bound = ZSTD_compressBound(data.size());
  check_zstd(bound, "ZSTD_compressBound");
  std::string out(bound, '\0');
  std::size_t size = ZSTD_compress2(cctx.get(), out.data(), out.size(), data.data(), data.size());
  check_zstd(size, "ZSTD_compress2");
  out.resize(size);
  return out;
}

std::string compress_gzip(std::string_view data, int level) {
  Deflater deflater(level);
  z_stream* zs = deflater.get();
  std::string out(deflateBound(zs, data.size()), '\0');
  std::size_t in_pos = 0;
  std::size_t out_pos = 0;
  for (;;) {
    if (zs->avail_in == 0 && in_pos < data.size()) {
      std::size_t piece = std::min(kZlibMaxPiece, data.size() - in_pos);
      zs->next_in = bytes(data) + in_pos;
      zs->avail_in = static_cast<uInt>(piece);
      in_pos += piece;
    }
    // deflateBound is an upper bound for a single Z_FINISH; growing is only a safety net.
    if (out_pos == out.size()) out.resize(out.size() * 2 + kScratchSize);
    std::size_t room = std::min(kZlibMaxPiece, out.size() - out_pos);
    zs->next_out = reinterpret_cast<Bytef*>(out.data() + out_pos);
    zs->avail_out = static_cast<uInt>(room);
    int result = deflate(zs, in_pos == data.size() ? Z_FINISH : Z_NO_FLUSH);
    out_pos += room - zs->avail_out;
    if (result == Z_STREAM_END) break;
    if (result != Z_OK && result != Z_BUF_ERROR) fail("deflate failed: " + std::to_string(result));
  }
  out.resize(out_pos);
  return out;
}

// Keeps the bookkeeping every codec shares: a write with nothing to say costs nothing, a flush
// right after a flush emits nothing (zlib would add an empty stored block), no use after finish.
class CodecStream : public StreamEncoder {
 public:
  void write(std::string_view in, bool flush, std::string& out) final {
    if (finished_) throw std::logic_error("StreamEncoder::write after finish");
    if (in.empty() && !(flush && unflushed_)) return;
    encode(in, flush ? Step::kFlush : Step::kProcess, out);
    unflushed_ = !flush;
  }
  void finish(std::string& out) final {
    if (finished_) throw std::logic_error("StreamEncoder::finish called twice");
    finished_ = true;
    encode({}, Step::kFinish, out);
  }

 protected:
  enum class Step : std::uint8_t { kProcess, kFlush, kFinish };
  virtual void encode(std::string_view in, Step step, std::string& out) = 0;

 private:
  bool unflushed_ = false;
  bool finished_ = false;
};

// Brotli keeps its own output buffer (next_out = NULL, then BrotliEncoderTakeOutput), so its
// bytes are copied once, straight into `out`.
class BrotliStream final : public CodecStream {
 public:
  explicit BrotliStream(int quality)
      : state_(BrotliEncoderCreateInstance(nullptr, nullptr, nullptr)) {
    if (!state_) throw std::bad_alloc();
    if (!BrotliEncoderSetParameter(state_.get(), BROTLI_PARAM_QUALITY,
                                   static_cast<std::uint32_t>(quality)) ||
        !BrotliEncoderSetParameter(state_.get(), BROTLI_PARAM_LGWIN, kBrotliWindow)) {
      fail("BrotliEncoderSetParameter failed");
    }
  }

 private:
  void encode(std::string_view in, Step step, std::string& out) override {
    BrotliEncoderOperation op = step == Step::kProcess ? BROTLI_OPERATION_PROCESS
                                : step == Step::kFlush ? BROTLI_OPERATION_FLUSH
                                                       : BROTLI_OPERATION_FINISH;
    std::size_t avail_in = in.size();
    const std::uint8_t* next_in = bytes(in);
    for (;;) {
      std::size_t avail_out = 0;
      if (!BrotliEncoderCompressStream(state_.get(), op, &avail_in, &next_in, &avail_out, nullptr,
                                       nullptr)) {
        fail("BrotliEncoderCompressStream failed");
      }
      // A flush or finish is complete only once a call leaves no output behind.
      bool had_output = BrotliEncoderHasMoreOutput(state_.get());
      while (BrotliEncoderHasMoreOutput(state_.get())) {
        std::size_t size = 0;  // 0: take everything there is
        const std::uint8_t* data = BrotliEncoderTakeOutput(state_.get(), &size);
        out.append(reinterpret_cast<const char*>(data), size);
      }
      if (avail_in != 0) continue;
      if (op == BROTLI_OPERATION_PROCESS) break;
      if (op == BROTLI_OPERATION_FINISH ? BrotliEncoderIsFinished(state_.get()) : !had_output) {
        break;
      }
    }
  }

  BrotliEncoderPtr state_;
};

class ZstdStream final : public CodecStream {
 public:
  explicit ZstdStream(int level)
      : cctx_(make_zstd_cctx(level)), scratch_(std::make_unique<char[]>(kScratchSize)) {}

 private:
  void encode(std::string_view in, Step step, std::string& out) override {
    ZSTD_EndDirective mode = step == Step::kProcess ? ZSTD_e_continue
                             : step == Step::kFlush ? ZSTD_e_flush
                                                    : ZSTD_e_end;
    ZSTD_inBuffer src{in.data(), in.size(), 0};
    for (;;) {
      ZSTD_outBuffer dst{scratch_.get(), kScratchSize, 0};
      std::size_t left = ZSTD_compressStream2(cctx_.get(), &dst, &src, mode);
      check_zstd(left, "ZSTD_compressStream2");
      out.append(scratch_.get(), dst.pos);
      // e_continue may keep data buffered; e_flush and e_end are done when nothing is left.
      if (mode == ZSTD_e_continue ? src.pos == src.size : left == 0) break;
    }
  }

  ZstdCCtxPtr cctx_;
  std::unique_ptr<char[]> scratch_;
};

class GzipStream final : public CodecStream {
 public:
  explicit GzipStream(int level)
      : deflater_(level), scratch_(std::make_unique<char[]>(kScratchSize)) {}

 private:
  void encode(std::string_view in, Step step, std::string& out) override {
    if (step == Step::kFinish) {
      run(in, Z_FINISH, out);
      return;
    }
    // Only the last piece carries the flush: flushing mid-write would only cost bytes.
    do {
      std::string_view piece = in.substr(0, kZlibMaxPiece);
      in.remove_prefix(piece.size());
      run(piece, step == Step::kFlush && in.empty() ? Z_SYNC_FLUSH : Z_NO_FLUSH, out);
    } while (!in.empty());
  }

  void run(std::string_view piece, int mode, std::string& out) {
    z_stream* zs = deflater_.get();
    zs->next_in = bytes(piece);
    zs->avail_in = static_cast<uInt>(piece.size());
    for (;;) {
      zs->next_out = reinterpret_cast<Bytef*>(scratch_.get());
      zs->avail_out = static_cast<uInt>(kScratchSize);
      int result = deflate(zs, mode);
      // Z_BUF_ERROR only says no progress was possible, e.g. the previous call filled the buffer
      // exactly and there was nothing left.
      if (result != Z_OK && result != Z_BUF_ERROR && result != Z_STREAM_END) {
        fail("deflate failed: " + std::to_string(result));
      }
      out.append(scratch_.get(), kScratchSize - zs->avail_out);
      if (mode == Z_FINISH ? result == Z_STREAM_END : zs->avail_out != 0) break;
    }
  }

  Deflater deflater_;
  std::unique_ptr<char[]> scratch_;
};

// Decoded bytes land straight in the result, which grows geometrically but never past max_out.
class DecodeBuffer {
 public:
  DecodeBuffer(std::size_t size_hint, std::size_t max_out) : max_out_(max_out) {
    buf_.resize(std::min(size_hint, max_out));
  }
  char* cursor() { return buf_.data() + used_; }
  std::size_t room() const { return buf_.size() - used_; }
  void advance(std::size_t n) { used_ += n; }
  // False at max_out: the decompression-bomb guard.
  bool grow() {
    if (buf_.size() >= max_out_) return false;
    std::size_t next = std::max(buf_.size() * 2, kDecodeMinBuffer);
    buf_.resize(buf_.size() > max_out_ / 2 ? max_out_ : std::min(next, max_out_));
    return true;
  }
  std::string take() {
    // The result may be kept (the cache), so it should not carry the growth slack.
    buf_.resize(used_);
    buf_.shrink_to_fit();
    return std::move(buf_);
  }

 private:
  std::string buf_;
  std::size_t used_ = 0;
  std::size_t max_out_;
};

// Without a size in the stream, assume text-like ratios and let the buffer grow.
std::size_t guess_decoded_size(std::size_t encoded) {
  return encoded > std::numeric_limits<std::size_t>::max() / 8
             ? encoded
             : std::max(encoded * 4, kDecodeMinBuffer);
}

// Each decoder below works the same way: call the library with the room there is; when the
// room runs out, grow, and at max_out keep calling with no room only while the decoder still
// consumes input (a trailer or checksum needs no output room), else give up.

std::optional<std::string> decompress_brotli(std::string_view data, std::size_t max_out) {
  BrotliDecoderPtr state(BrotliDecoderCreateInstance(nullptr, nullptr, nullptr));
  if (!state) throw std::bad_alloc();
  DecodeBuffer out(guess_decoded_size(data.size()), max_out);
  std::size_t avail_in = data.size();
  const std::uint8_t* next_in = bytes(data);
  for (;;) {
    std::size_t room = out.room();
    std::size_t avail_out = room;
    auto* next_out = reinterpret_cast<std::uint8_t*>(out.cursor());
    std::size_t before_in = avail_in;
    BrotliDecoderResult result = BrotliDecoderDecompressStream(state.get(), &avail_in, &next_in,
                                                               &avail_out, &next_out, nullptr);
    out.advance(room - avail_out);
    bool progress = avail_in != before_in || avail_out != room;
    if (result == BROTLI_DECODER_RESULT_SUCCESS) {
      if (avail_in != 0) return std::nullopt;  // trailing garbage
      return out.take();
    }
    if (result != BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) return std::nullopt;  // corrupt/short
    if (!out.grow() && !progress) return std::nullopt;
  }
}

std::optional<std::string> decompress_zstd(std::string_view data, std::size_t max_out) {
  ZstdDCtxPtr dctx(ZSTD_createDCtx());
  if (!dctx) throw std::bad_alloc();
  check_zstd(ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, kZstdMaxWindowLog),
             "windowLogMax");
  // The first frame usually records its size: decode into an exact buffer, or refuse at once.
  std::size_t hint = guess_decoded_size(data.size());
  unsigned long long declared = ZSTD_getFrameContentSize(data.data(), data.size());
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ZSTD_CONTENTSIZE_ERROR) {
    if (declared > max_out) return std::nullopt;
    hint = static_cast<std::size_t>(declared);
  }
  DecodeBuffer out(hint, max_out);
  ZSTD_inBuffer src{data.data(), data.size(), 0};
  for (;;) {
    ZSTD_outBuffer dst{out.cursor(), out.room(), 0};
    std::size_t before_in = src.pos;
    std::size_t left = ZSTD_decompressStream(dctx.get(), &dst, &src);
    if (ZSTD_isError(left)) return std::nullopt;
    out.advance(dst.pos);
    bool progress = src.pos != before_in || dst.pos != 0;
    bool input_done = src.pos == src.size;
    if (left == 0 && input_done) return out.take();  // last frame complete (0: frame ended)
    if (dst.pos == dst.size) {
      if (!out.grow() && !progress) return std::nullopt;
    } else if (input_done) {
      return std::nullopt;  // truncated
    }
  }
}

std::optional<std::string> decompress_gzip(std::string_view data, std::size_t max_out) {
  Inflater inflater;
  z_stream* zs = inflater.get();
  // A single member ends with ISIZE, the size mod 2^32: a good first guess, but untrusted, so
  // capped at what deflate can expand to (1032:1) lest a forged trailer reserve max_out.
  std::size_t hint = guess_decoded_size(data.size());
  if (data.size() >= kGzipMinMember) {
    const std::uint8_t* tail = bytes(data) + data.size() - 4;
    std::uint32_t isize =
        static_cast<std::uint32_t>(tail[0]) | static_cast<std::uint32_t>(tail[1]) << 8 |
        static_cast<std::uint32_t>(tail[2]) << 16 | static_cast<std::uint32_t>(tail[3]) << 24;
    if (data.size() <= std::numeric_limits<std::size_t>::max() / kDeflateMaxRatio) {
      hint = std::min<std::size_t>(isize, data.size() * kDeflateMaxRatio);
    }
  }
  DecodeBuffer out(hint, max_out);
  std::size_t in_pos = 0;
  for (;;) {
    if (zs->avail_in == 0 && in_pos < data.size()) {
      std::size_t piece = std::min(kZlibMaxPiece, data.size() - in_pos);
      zs->next_in = bytes(data) + in_pos;
      zs->avail_in = static_cast<uInt>(piece);
      in_pos += piece;
    }
    std::size_t room = std::min(kZlibMaxPiece, out.room());
    zs->next_out = reinterpret_cast<Bytef*>(out.cursor());
    zs->avail_out = static_cast<uInt>(room);
    uInt before_in = zs->avail_in;
    int result = inflate(zs, Z_NO_FLUSH);
    out.advance(room - zs->avail_out);
    bool progress = zs->avail_in != before_in || zs->avail_out != room;
    bool input_done = zs->avail_in == 0 && in_pos == data.size();
    if (result == Z_STREAM_END) {
      if (input_done) return out.take();
      // RFC 1952 §2.2: a gzip file is a series of members; gzip -d decodes them all.
      if (inflateReset(zs) != Z_OK) fail("inflateReset failed");
      continue;
    }
    if (result == Z_MEM_ERROR) throw std::bad_alloc();
    if (result != Z_OK && result != Z_BUF_ERROR) return std::nullopt;  // data error, dictionary
    if (out.room() == 0) {
      if (!out.grow() && !progress) return std::nullopt;
    } else if (input_done) {
      return std::nullopt;  // truncated
    } else if (!progress && zs->avail_in != 0) {
      return std::nullopt;  // cannot happen with room and input; never spin
    }
  }
}

}  // namespace

std::string compress_all(Coding c, std::string_view data, int level) {
  std::string out;
  switch (c) {
    case Coding::kIdentity:
      return std::string(data);
    case Coding::kBr:
      out = compress_brotli(data, clamp_level(c, level));
      break;
    case Coding::kZstd:
      out = compress_zstd(data, clamp_level(c, level));
      break;
    case Coding::kGzip:
      out = compress_gzip(data, clamp_level(c, level));
      break;
  }
  // Output was written into a worst-case-sized buffer and variants are kept for long.
  out.shrink_to_fit();
  return out;
}

std::optional<std::string> decompress_all(Coding c, std::string_view data, std::size_t max_out) {
  switch (c) {
    case Coding::kIdentity:
      if (data.size() > max_out) return std::nullopt;
      return std::string(data);
    case Coding::kBr:
      return decompress_brotli(data, max_out);
    case Coding::kZstd:
      return decompress_zstd(data, max_out);
    case Coding::kGzip:
      return decompress_gzip(data, max_out);
  }
  return std::nullopt;
}

std::unique_ptr<StreamEncoder> StreamEncoder::create(Coding c, int level) {
  switch (c) {
    case Coding::kIdentity:
      return nullptr;
    case Coding::kBr:
      return std::make_unique<BrotliStream>(clamp_level(c, level));
    case Coding::kZstd:
      // Without a known size zstd sizes its tables for the level's full window: ~660 MB per
      // stream at 22, 86 MB at 19. Ultra levels buy nothing once the window is capped anyway.
      return std::make_unique<ZstdStream>(std::min(clamp_level(c, level), kZstdMaxPlainLevel));
    case Coding::kGzip:
      return std::make_unique<GzipStream>(clamp_level(c, level));
  }
  return nullptr;
}

int default_static_level(Coding c) {
  switch (c) {
    case Coding::kBr:
      return BROTLI_MAX_QUALITY;  // 11
    case Coding::kZstd:
      return kZstdMaxPlainLevel;  // 19: the best that keeps the 8 MiB window
    case Coding::kGzip:
      return kGzipMaxLevel;  // 9
    case Coding::kIdentity:
      break;
  }
  return 0;
}

int default_dynamic_level(Coding c) {
  switch (c) {
    case Coding::kBr:
      return 5;
    case Coding::kZstd:
      return 3;
    case Coding::kGzip:
      return 6;
    case Coding::kIdentity:
      break;
  }
  return 0;
}

}  // namespace edge::routes
