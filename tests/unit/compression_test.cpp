// Compression codecs: round trips through our decoder and the system tools, flushed streams that
// decode as they go, ratios, gzip determinism, and what the decoder refuses (corrupt, max_out).
#include "routes/compression.h"

// zlib's next_in as a pointer to const, as in compression.cpp.
#define ZLIB_CONST
#include <brotli/decode.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <vector>

using edge::http::Coding;
using namespace edge::routes;

namespace {

constexpr Coding kCodings[] = {Coding::kBr, Coding::kZstd, Coding::kGzip};
constexpr std::size_t kTextSize = 150 * 1024;
constexpr std::size_t kRandomSize = 1024 * 1024;

std::string name_of(Coding c) {
  return std::string(edge::http::coding_name(c));
}

// JavaScript-like text: statements drawn (skewed) from a pool of phrases built from keywords,
// identifiers and numbers, so it repeats like real code does without being one repeated phrase
// (which would make every codec look perfect).
std::string text_like(std::size_t size, unsigned seed = 42) {
  static const char* const kWords[] = {
      "function",   "return",         "const",     "let",           "if",
      "else",       "this",           "=>",        "===",           "document",
      "window",     "length",         "value",     "undefined",     "null",
      "true",       "false",          "for",       "new",           "export",
      "import",     "from",           "async",     "await",         "Promise",
      "Object",     "Array",          "map",       "filter",        "reduce",
      "push",       "console.log",    "options",   "config",        "response",
      "request",    "data",           "error",     "event",         "target",
      "className",  "style",          "innerHTML", "querySelector", "addEventListener",
      "prototype",  "JSON.stringify", "Math.max",  "while",         "typeof",
      "instanceof", "throw"};
  static const char* const kPunctuation[] = {" ", " ",   " ", "(",  ")",  "{",
                                             "}", ";\n", ".", ", ", " = "};
  std::mt19937 rng(seed);
  std::vector<std::string> phrases(4000);
  for (std::string& phrase : phrases) {
    for (unsigned n = 3 + rng() % 8; n > 0; --n) {
      unsigned kind = rng() % 10;
      if (kind == 0) {
        phrase += "v" + std::to_string(rng() % 2000);
      } else if (kind == 1) {
        phrase += std::to_string(rng() % 1000);
      } else {
        phrase += kWords[rng() % std::size(kWords)];
      }
      phrase += kPunctuation[rng() % std::size(kPunctuation)];
    }
  }
  std::geometric_distribution<std::size_t> pick(0.001);
  std::string out;
  out.reserve(size + 256);
  while (out.size() < size) out += phrases[std::min(pick(rng), phrases.size() - 1)];
  out.resize(size);
  return out;
}

std::string random_bytes(std::size_t size, unsigned seed = 7) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  for (char& ch : out) ch = static_cast<char>(rng());
  return out;
}

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "edge_compression_" + std::to_string(::getpid()) + "_" + name;
}

void write_file(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// stdio rather than istreambuf_iterator, which trips GCC 12's -Wnull-dereference.
std::string read_file(const std::string& path) {
  std::string data;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
    std::fclose(f);
  }
  return data;
}

// Decodes with brotli(1), zstd(1) or gzip(1): an independent implementation reading our bytes.
std::optional<std::string> decode_with_tool(Coding c, std::string_view encoded) {
  std::string in = temp_path(std::string("in.") + name_of(c));
  std::string out = temp_path("out");
  write_file(in, encoded);
  std::string tool = c == Coding::kBr     ? "brotli -d -c "
                     : c == Coding::kZstd ? "zstd -q -d -c "
                                          : "gzip -d -c ";
  int status = std::system((tool + "'" + in + "' > '" + out + "' 2>/dev/null").c_str());
  std::optional<std::string> result;
  if (status == 0) result = read_file(out);
  std::remove(in.c_str());
  std::remove(out.c_str());
  return result;
}

// The library's own streaming decoder, fed the encoded stream piece by piece, so a test can see
// what a client could decode from the bytes sent so far.
class PrefixDecoder {
 public:
  explicit PrefixDecoder(Coding c) : coding_(c) {
    switch (c) {
      case Coding::kBr:
        brotli_ = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
        break;
      case Coding::kZstd:
        zstd_ = ZSTD_createDCtx();
        break;
      case Coding::kGzip:
        if (inflateInit2(&zs_, 15 + 16) != Z_OK) throw std::runtime_error("inflateInit2");
        zlib_ready_ = true;
        break;
      case Coding::kIdentity:
        break;
    }
  }
  ~PrefixDecoder() {
    if (brotli_) BrotliDecoderDestroyInstance(brotli_);
    if (zstd_) ZSTD_freeDCtx(zstd_);
    if (zlib_ready_) inflateEnd(&zs_);
  }
  PrefixDecoder(const PrefixDecoder&) = delete;
  PrefixDecoder& operator=(const PrefixDecoder&) = delete;

  // False when the decoder reports an error.
  bool feed(std::string_view in) {
    std::uint8_t buf[16384];
    switch (coding_) {
      case Coding::kBr: {
        std::size_t avail_in = in.size();
        auto* next_in = reinterpret_cast<const std::uint8_t*>(in.data());
        for (;;) {
          std::size_t avail_out = sizeof buf;
          std::uint8_t* next_out = buf;
          BrotliDecoderResult r = BrotliDecoderDecompressStream(brotli_, &avail_in, &next_in,
                                                                &avail_out, &next_out, nullptr);
          decoded_.append(reinterpret_cast<char*>(buf), sizeof buf - avail_out);
          if (r == BROTLI_DECODER_RESULT_ERROR) return false;
          if (r == BROTLI_DECODER_RESULT_SUCCESS) {
            ended_ = true;
            return avail_in == 0;
          }
          // Out of input, the decoder pushes out only one buffer's worth of what it decoded;
          // the rest waits in its ring buffer until asked for.
          if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT && !BrotliDecoderHasMoreOutput(brotli_)) {
            return true;
          }
        }
      }
      case Coding::kZstd: {
        ZSTD_inBuffer src{in.data(), in.size(), 0};
        for (;;) {
          ZSTD_outBuffer dst{buf, sizeof buf, 0};
          std::size_t r = ZSTD_decompressStream(zstd_, &dst, &src);
          if (ZSTD_isError(r)) return false;
          decoded_.append(reinterpret_cast<char*>(buf), dst.pos);
          ended_ = r == 0;
          if (src.pos == src.size && dst.pos < dst.size) return true;
        }
      }
      case Coding::kGzip: {
        zs_.next_in = reinterpret_cast<const Bytef*>(in.data());
        zs_.avail_in = static_cast<uInt>(in.size());
        for (;;) {
          zs_.next_out = buf;
          zs_.avail_out = sizeof buf;
          int r = inflate(&zs_, Z_NO_FLUSH);
          decoded_.append(reinterpret_cast<char*>(buf), sizeof buf - zs_.avail_out);
          if (r == Z_STREAM_END) {
            ended_ = true;
            return zs_.avail_in == 0;
          }
          if (r != Z_OK && r != Z_BUF_ERROR) return false;
          if (zs_.avail_in == 0 && zs_.avail_out != 0) return true;
        }
      }
      case Coding::kIdentity:
        break;
    }
    return false;
  }
  const std::string& decoded() const { return decoded_; }
  bool ended() const { return ended_; }

 private:
  Coding coding_;
  BrotliDecoderState* brotli_ = nullptr;
  ZSTD_DCtx* zstd_ = nullptr;
  z_stream zs_{};
  bool zlib_ready_ = false;
  std::string decoded_;
  bool ended_ = false;
};

testing::AssertionResult refused(const std::optional<std::string>& got) {
  if (!got) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "decoded " << got->size() << " bytes instead of refusing";
}

// Compares without printing megabytes: sizes and the first differing offset.
testing::AssertionResult same_bytes(const std::optional<std::string>& got, std::string_view want) {
  if (!got) return testing::AssertionFailure() << "nothing decoded (nullopt)";
  if (*got == want) return testing::AssertionSuccess();
  auto [at, unused] = std::mismatch(got->begin(), got->end(), want.begin(), want.end());
  return testing::AssertionFailure() << "decoded " << got->size() << " bytes, want " << want.size()
                                     << ", first difference at " << (at - got->begin());
}

// RFC 8878 §3.1.1.1: the window a zstd frame asks of its decoder, read from the frame header.
std::uint64_t zstd_window_size(std::string_view frame) {
  auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(frame.at(i)); };
  std::uint8_t descriptor = byte(4);
  if (!(descriptor & 0x20)) {  // Window_Descriptor present
    std::uint8_t wd = byte(5);
    std::uint64_t base = std::uint64_t{1} << (10 + (wd >> 3));
    return base + base / 8 * (wd & 7);
  }
  // Single segment: the window is the content size, after the optional dictionary id.
  static constexpr std::size_t kDictIdBytes[] = {0, 1, 2, 4};
  static constexpr std::size_t kSizeBytes[] = {1, 2, 4, 8};
  std::size_t pos = 5 + kDictIdBytes[descriptor & 3];
  std::size_t width = kSizeBytes[descriptor >> 6];
  std::uint64_t size = 0;
  for (std::size_t i = 0; i < width; ++i) size |= std::uint64_t{byte(pos + i)} << (8 * i);
  return width == 2 ? size + 256 : size;
}

std::pair<int, int> level_range(Coding c) {
  switch (c) {
    case Coding::kBr:
      return {0, 11};
    case Coding::kZstd:
      return {1, 22};
    case Coding::kGzip:
      return {1, 9};
    case Coding::kIdentity:
      break;
  }
  return {0, 0};
}

class CompressionCodec : public testing::TestWithParam<Coding> {};

std::vector<std::pair<std::string, std::string>> sample_inputs() {
  return {{"empty", ""},
          {"one byte", "x"},
          {"150 KB text", text_like(kTextSize)},
          {"1 MiB random", random_bytes(kRandomSize)}};
}

TEST_P(CompressionCodec, RoundTripThroughDecompressAll) {
  Coding c = GetParam();
  for (const auto& [label, data] : sample_inputs()) {
    for (int level : {default_dynamic_level(c), default_static_level(c)}) {
      SCOPED_TRACE(label + " at level " + std::to_string(level));
      std::string encoded = compress_all(c, data, level);
      std::optional<std::string> decoded = decompress_all(c, encoded, data.size());
      EXPECT_TRUE(same_bytes(decoded, data));
    }
  }
}

TEST_P(CompressionCodec, RoundTripThroughSystemTool) {
  Coding c = GetParam();
  for (const auto& [label, data] : sample_inputs()) {
    SCOPED_TRACE(label);
    std::optional<std::string> decoded =
        decode_with_tool(c, compress_all(c, data, default_static_level(c)));
    EXPECT_TRUE(same_bytes(decoded, data)) << name_of(c) << " -d failed";
  }
}

TEST_P(CompressionCodec, EveryLevelRoundTripsAndOutOfRangeLevelsClamp) {
  Coding c = GetParam();
  std::string text = text_like(20 * 1024, 3);
  auto [lowest, highest] = level_range(c);
  for (int level = lowest; level <= highest; ++level) {
    SCOPED_TRACE(level);
    std::optional<std::string> decoded = decompress_all(c, compress_all(c, text, level), 1 << 20);
    EXPECT_TRUE(same_bytes(decoded, text));
  }
  // All three libraries are deterministic, so a clamped level gives the very same bytes.
  EXPECT_EQ(compress_all(c, text, lowest - 5), compress_all(c, text, lowest));
  EXPECT_EQ(compress_all(c, text, 1000), compress_all(c, text, highest));
}

TEST_P(CompressionCodec, ShrinksTextAndBarelyGrowsRandomData) {
  Coding c = GetParam();
  std::string text = text_like(kTextSize);
  std::size_t at_static = compress_all(c, text, default_static_level(c)).size();
  std::size_t at_dynamic = compress_all(c, text, default_dynamic_level(c)).size();
  // The generator lands near minified JavaScript: br 11 ~20%, zstd 19 ~20%, gzip 9 ~26%.
  EXPECT_LT(at_static, text.size() * 30 / 100) << "static " << at_static;
  EXPECT_LT(at_dynamic, text.size() * 32 / 100) << "dynamic " << at_dynamic;
  EXPECT_LE(at_static, at_dynamic);
  std::string noise = random_bytes(kRandomSize);
  EXPECT_LT(compress_all(c, noise, default_dynamic_level(c)).size(), noise.size() + 1024);
}

TEST_P(CompressionCodec, StreamFlushedPrefixesDecodeAsTheyGo) {
  Coding c = GetParam();
  std::unique_ptr<StreamEncoder> encoder = StreamEncoder::create(c, default_dynamic_level(c));
  ASSERT_NE(encoder, nullptr);
  PrefixDecoder client(c);
  std::string source = text_like(200 * 1024, 11);
  std::mt19937 rng(5);
  std::string fed;
  std::string out;
  std::size_t sent = 0;  // bytes of `out` already given to the client
  std::size_t pos = 0;
  for (int i = 0; i < 1000; ++i) {
    std::size_t len = 1 + rng() % 150;
    std::string_view chunk = std::string_view(source).substr(pos, len);
    pos += chunk.size();
    fed += chunk;
    bool flush = i % 10 == 9;
    encoder->write(chunk, flush, out);
    if (!flush) continue;
    ASSERT_TRUE(client.feed(std::string_view(out).substr(sent))) << "chunk " << i;
    sent = out.size();
    ASSERT_EQ(client.decoded().size(), fed.size()) << "chunk " << i;
    ASSERT_TRUE(same_bytes(client.decoded(), fed)) << "chunk " << i;
    EXPECT_FALSE(client.ended());
  }
  encoder->finish(out);
  ASSERT_TRUE(client.feed(std::string_view(out).substr(sent)));
  EXPECT_TRUE(client.ended());
  EXPECT_TRUE(same_bytes(client.decoded(), fed));
  // A finished stream is complete for the whole-buffer decoder and the system tool too.
  std::optional<std::string> whole = decompress_all(c, out, fed.size());
  EXPECT_TRUE(same_bytes(whole, fed));
  std::optional<std::string> by_tool = decode_with_tool(c, out);
  EXPECT_TRUE(same_bytes(by_tool, fed));
  EXPECT_LT(out.size(), fed.size() / 2) << "100 flushes still leave the text compressed";
}

TEST_P(CompressionCodec, StreamWritesWithNothingToSayAppendNothing) {
  Coding c = GetParam();
  std::unique_ptr<StreamEncoder> encoder = StreamEncoder::create(c, default_dynamic_level(c));
  std::string out = "already here";
  encoder->write("", false, out);
  encoder->write("", true, out);  // nothing fed yet: nothing to flush
  EXPECT_EQ(out, "already here");
  out.clear();
  encoder->write("abc", false, out);
  std::size_t after_data = out.size();
  encoder->write("", false, out);
  EXPECT_EQ(out.size(), after_data);
  encoder->write("", true, out);  // "abc" is pending: this flush must emit it
  std::size_t after_flush = out.size();
  EXPECT_GT(after_flush, after_data);
  PrefixDecoder client(c);
  ASSERT_TRUE(client.feed(out));
  EXPECT_EQ(client.decoded(), "abc");
  encoder->write("", true, out);  // a second flush has nothing new
  EXPECT_EQ(out.size(), after_flush);
  encoder->finish(out);
  EXPECT_EQ(decompress_all(c, out, 3), std::optional<std::string>("abc"));
}

TEST_P(CompressionCodec, StreamLargeWritesAreConsumedWhole) {
  Coding c = GetParam();
  std::string big = text_like(2 * 1024 * 1024, 9) + random_bytes(1024 * 1024, 9);
  for (bool flush : {false, true}) {
    SCOPED_TRACE(flush ? "flushed" : "not flushed");
    std::unique_ptr<StreamEncoder> encoder = StreamEncoder::create(c, default_dynamic_level(c));
    std::string out;
    encoder->write(big, flush, out);
    if (flush) {
      PrefixDecoder client(c);
      ASSERT_TRUE(client.feed(out));
      EXPECT_TRUE(same_bytes(client.decoded(), big));
    }
    encoder->write(big, false, out);
    encoder->finish(out);
    std::optional<std::string> decoded = decompress_all(c, out, 2 * big.size());
    EXPECT_TRUE(same_bytes(decoded, big + big));
  }
}

TEST_P(CompressionCodec, StreamWithNoInputFinishesAsAnEmptyBody) {
  Coding c = GetParam();
  std::unique_ptr<StreamEncoder> encoder = StreamEncoder::create(c, default_dynamic_level(c));
  std::string out;
  encoder->finish(out);
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(decompress_all(c, out, 0), std::optional<std::string>(""));
  EXPECT_EQ(decode_with_tool(c, out), std::optional<std::string>(""));
}

TEST_P(CompressionCodec, StreamRefusesUseAfterFinish) {
  Coding c = GetParam();
  std::unique_ptr<StreamEncoder> encoder = StreamEncoder::create(c, default_dynamic_level(c));
  std::string out;
  encoder->write("abc", false, out);
  encoder->finish(out);
  EXPECT_THROW(encoder->write("more", false, out), std::logic_error);
  EXPECT_THROW(encoder->finish(out), std::logic_error);
}

TEST_P(CompressionCodec, DecompressRefusesCorruptInput) {
  Coding c = GetParam();
  std::string text = text_like(20 * 1024, 4);
  std::string good = compress_all(c, text, default_dynamic_level(c));
  ASSERT_TRUE(same_bytes(decompress_all(c, good, text.size()), text));
  EXPECT_TRUE(refused(decompress_all(c, "", 1 << 20))) << "empty input";
  EXPECT_TRUE(refused(decompress_all(c, "this is plain text, not a compressed stream", 1 << 20)));
  EXPECT_TRUE(refused(decompress_all(c, good.substr(0, good.size() - 1), 1 << 20)))
      << "last byte missing";
  EXPECT_TRUE(refused(decompress_all(c, good.substr(0, good.size() / 2), 1 << 20)))
      << "second half missing";
  EXPECT_TRUE(refused(decompress_all(c, good + "garbage", 1 << 20))) << "trailing garbage";
  std::string flipped = good;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x20);
  std::optional<std::string> damaged = decompress_all(c, flipped, 1 << 20);
  if (c == Coding::kBr) {
    // Brotli has no checksum: a flipped bit may still decode, but never to the original.
    EXPECT_TRUE(!damaged || *damaged != text);
  } else {
    EXPECT_TRUE(refused(damaged)) << "the checksum (zstd) or CRC-32 (gzip) catches it";
  }
}

TEST_P(CompressionCodec, DecompressRespectsMaxOut) {
  Coding c = GetParam();
  // Zeros compress a thousandfold: the shape of a decompression bomb.
  std::string zeros(4 * 1024 * 1024, '\0');
  std::string bomb = compress_all(c, zeros, default_dynamic_level(c));
  EXPECT_LT(bomb.size(), zeros.size() / 200);
  EXPECT_TRUE(refused(decompress_all(c, bomb, zeros.size() - 1)));
  EXPECT_TRUE(refused(decompress_all(c, bomb, 1000)));
  EXPECT_TRUE(refused(decompress_all(c, bomb, 0)));
  std::optional<std::string> exact = decompress_all(c, bomb, zeros.size());
  EXPECT_TRUE(same_bytes(exact, zeros));
  // The same from a stream, where no size is declared up front.
  std::unique_ptr<StreamEncoder> encoder = StreamEncoder::create(c, default_dynamic_level(c));
  std::string streamed;
  encoder->write(zeros, false, streamed);
  encoder->finish(streamed);
  EXPECT_TRUE(refused(decompress_all(c, streamed, zeros.size() - 1)));
  exact = decompress_all(c, streamed, zeros.size());
  EXPECT_TRUE(same_bytes(exact, zeros));
  // An exact limit also works for a one-byte body and an empty one.
  EXPECT_EQ(decompress_all(c, compress_all(c, "x", 1), 1), std::optional<std::string>("x"));
  EXPECT_TRUE(refused(decompress_all(c, compress_all(c, "x", 1), 0)));
  EXPECT_EQ(decompress_all(c, compress_all(c, "", 1), 0), std::optional<std::string>(""));
}

TEST_P(CompressionCodec, DecompressConcatenation) {
  Coding c = GetParam();
  std::string a = text_like(10 * 1024, 1);
  std::string b = text_like(10 * 1024, 2);
  std::string joined = compress_all(c, a, 5) + compress_all(c, b, 5);
  std::optional<std::string> decoded = decompress_all(c, joined, 1 << 20);
  if (c == Coding::kBr) {
    EXPECT_TRUE(refused(decoded)) << "a brotli stream ends with its last meta-block";
  } else {
    // zstd frames and gzip members may follow one another (RFC 8878 §3, RFC 1952 §2.2).
    EXPECT_TRUE(same_bytes(decoded, a + b));
  }
}

INSTANTIATE_TEST_SUITE_P(Compression, CompressionCodec, testing::ValuesIn(kCodings),
                         [](const testing::TestParamInfo<Coding>& param_info) {
                           return std::string(name_of(param_info.param));
                         });

TEST(CompressionGzip, OutputIsByteIdenticalAcrossRuns) {
  std::string text = text_like(kTextSize);
  for (int level : {1, 6, 9}) {
    SCOPED_TRACE(level);
    std::string first = compress_all(Coding::kGzip, text, level);
    std::string second = compress_all(Coding::kGzip, text, level);
    EXPECT_TRUE(first == second);
    // RFC 1952 header: magic, deflate, no flags (so no file name), mtime 0.
    ASSERT_GE(first.size(), 10u);
    EXPECT_EQ(static_cast<unsigned char>(first[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(first[1]), 0x8b);
    EXPECT_EQ(first[2], 8);
    EXPECT_EQ(first[3], 0) << "FLG: no FNAME, FCOMMENT, FEXTRA";
    EXPECT_EQ(first.substr(4, 4), std::string(4, '\0')) << "MTIME";
  }
}

TEST(CompressionBrotli, BeatsGzipOnTextAtStaticLevels) {
  // The reason br comes first in the server's preference.
  std::string text = text_like(kTextSize);
  std::size_t br = compress_all(Coding::kBr, text, default_static_level(Coding::kBr)).size();
  std::size_t gzip = compress_all(Coding::kGzip, text, default_static_level(Coding::kGzip)).size();
  EXPECT_LT(br, gzip * 85 / 100) << "br " << br << ", gzip " << gzip;
}

TEST(CompressionZstd, WindowStaysWithin8MiB) {
  // RFC 9659: no zstd content coding may need a window over 8 MiB, and decompress_all (like
  // browsers) refuses one. A stream declares no size, so its window comes from the level alone.
  std::string text = text_like(64 * 1024, 8);
  for (int level : {19, 22}) {
    SCOPED_TRACE(level);
    std::unique_ptr<StreamEncoder> encoder = StreamEncoder::create(Coding::kZstd, level);
    std::string out;
    encoder->write(text, false, out);
    encoder->finish(out);
    EXPECT_LE(zstd_window_size(out), 8u * 1024 * 1024);
    EXPECT_TRUE(same_bytes(decompress_all(Coding::kZstd, out, text.size()), text));
  }
  // One-shot at an ultra level, on an input larger than the window. (decompress_all alone would
  // not notice: with the whole output in one buffer zstd decodes in one pass, with no window.)
  constexpr std::uint64_t kMaxWindow = 8 * 1024 * 1024;
  // The window in the header comes from the parameters, not the content, so cheap zeros will do.
  std::string big(kMaxWindow + 4096, '\0');
  for (int level : {19, 20, 22}) {
    SCOPED_TRACE(level);
    std::string encoded = compress_all(Coding::kZstd, big, level);
    EXPECT_LE(zstd_window_size(encoded), kMaxWindow);
    EXPECT_TRUE(same_bytes(decompress_all(Coding::kZstd, encoded, big.size()), big));
  }
  EXPECT_EQ(zstd_window_size(compress_all(Coding::kZstd, text, 22)), text.size())
      << "small inputs: a single segment, the window is the content";

  // A stream with a 16 MiB window shows the refusal is real.
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> raw(ZSTD_createCCtx(), ZSTD_freeCCtx);
  ASSERT_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(raw.get(), ZSTD_c_windowLog, 24)));
  std::string wide(ZSTD_compressBound(text.size()) + 64, '\0');
  ZSTD_inBuffer src{text.data(), text.size(), 0};
  ZSTD_outBuffer dst{wide.data(), wide.size(), 0};
  // e_continue first: given everything with e_end at once, zstd would learn the size and shrink
  // the window to it.
  ASSERT_FALSE(ZSTD_isError(ZSTD_compressStream2(raw.get(), &dst, &src, ZSTD_e_continue)));
  ASSERT_EQ(ZSTD_compressStream2(raw.get(), &dst, &src, ZSTD_e_end), 0u);
  wide.resize(dst.pos);
  EXPECT_EQ(zstd_window_size(wide), 16u * 1024 * 1024);
  EXPECT_TRUE(refused(decompress_all(Coding::kZstd, wide, text.size())));
  EXPECT_TRUE(same_bytes(decode_with_tool(Coding::kZstd, wide), text)) << "valid, just too wide";
}

TEST(CompressionZstd, StreamsStopAtLevel19) {
  std::string text = text_like(64 * 1024, 8);
  auto stream_at = [&](int level) {
    std::unique_ptr<StreamEncoder> encoder = StreamEncoder::create(Coding::kZstd, level);
    std::string out;
    encoder->write(text, false, out);
    encoder->finish(out);
    return out;
  };
  EXPECT_EQ(stream_at(22), stream_at(19));
  EXPECT_NE(stream_at(18), stream_at(19));
}

TEST(CompressionIdentity, CopiesAndHasNoEncoder) {
  EXPECT_EQ(compress_all(Coding::kIdentity, "plain", 9), "plain");
  EXPECT_EQ(decompress_all(Coding::kIdentity, "plain", 5), std::optional<std::string>("plain"));
  EXPECT_TRUE(refused(decompress_all(Coding::kIdentity, "plain", 4)));
  EXPECT_EQ(StreamEncoder::create(Coding::kIdentity, 5), nullptr);
}

TEST(CompressionLevels, Defaults) {
  EXPECT_EQ(default_static_level(Coding::kBr), 11);
  EXPECT_EQ(default_static_level(Coding::kZstd), 19);
  EXPECT_EQ(default_static_level(Coding::kGzip), 9);
  EXPECT_EQ(default_dynamic_level(Coding::kBr), 5);
  EXPECT_EQ(default_dynamic_level(Coding::kZstd), 3);
  EXPECT_EQ(default_dynamic_level(Coding::kGzip), 6);
}

}  // namespace
