// libFuzzer target: the HTTP/1.1 request path. The input is what a client sends on one
// connection (pipelined requests, bodies, chunked encoding, anything): edge's codec scans and
// parses it, the request stage normalises the target and picks the route, and the handlers answer
// (static files, SPA fallback, ranges, compression; the proxy to an upstream that answers well;
// the cache; the rate limit; /health). ASan and UBSan watch every byte; the harness aborts if
// edge never closes the connection.
#include <cstdint>
#include <string_view>

#include "tests/fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& h = edge::fuzz::Harness::get();
  h.exchange(std::string_view(reinterpret_cast<const char*>(data), size),
             edge::fuzz::Harness::good_reply());
  return 0;
}
