// libFuzzer target: the upstream response path. A well-formed client request goes to the proxied
// route; the input is the upstream's whole reply (status line, fields, body framing, trailers,
// 1xx, 304s, garbage), after which the upstream closes. edge's proxy session parses it, decides
// what the cache may keep, filters and forwards it (compressing when the client asks). The first
// byte picks the client's request.
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static std::uint64_t n = 0;
  // A fresh URL each time: a stored reply would answer the next input from the cache.
  std::string path = "/api/reading/" + std::to_string(++n);
  std::string req;
  switch (data[0] % 6) {
    case 0:
      req = "GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n";
      break;
    case 1:
      req = "HEAD " + path + " HTTP/1.1\r\nHost: a\r\n\r\n";
      break;
    case 2:
      req = "GET " + path + " HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip, br\r\n\r\n";
      break;
    case 3:
      req = "GET " + path +
            " HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"u1\"\r\nRange: bytes=0-3\r\n\r\n";
      break;
    case 4:
      req = "POST " + path + " HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
      break;
    case 5:  // a second request on the same connection after the first reply
      req = "GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\nGET /api/x" + std::to_string(n) +
            " HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
      break;
  }
  edge::fuzz::Harness::get().exchange(
      req, std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  return 0;
}
