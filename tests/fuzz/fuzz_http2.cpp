// libFuzzer target: the HTTP/2 frame path (h2c prior knowledge). The input follows the client
// preface: frames for nghttp2 and then edge's session (streams as exchanges, flow control, the
// per-stream clocks, GOAWAY), down the same request stage and handlers as HTTP/1.1.
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::string input;
  input.assign("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  input.append(reinterpret_cast<const char*>(data), size);
  edge::fuzz::Harness::get().exchange(input, edge::fuzz::Harness::good_reply());
  return 0;
}
