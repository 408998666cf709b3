// libFuzzer target: the config loader. The input is a whole config file (TOML): toml++ parses
// it and edge's loader validates it. Any outcome but a config or a ConfigError ("file:line:
// what is wrong") is a bug: another exception type, a crash, undefined behaviour.
#include <dlfcn.h>
#include <netdb.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "server/config.h"

// The loader resolves upstream and Redis host names: here only numeric addresses and
// "localhost" are, so no input ever sends a DNS query (this definition takes the place of
// libc's for the whole binary).
extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                           addrinfo** res) {
  using Fn = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  addrinfo h = hints ? *hints : addrinfo{};
  h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
  if (node && std::string_view(node) == "localhost") node = "127.0.0.1";
  return real(node, service, &h, res);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = [] {
    spdlog::set_level(spdlog::level::off);
    char tmpl[] = "/tmp/edge-fuzz-config-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    std::string dir = tmpl;
    std::FILE* f = std::fopen((dir + "/index.html").c_str(), "w");
    if (f) std::fclose(f);
    return dir + "/edge.toml";
  }();
  // What a config may legitimately do that a fuzzer must not: write a self-signed certificate
  // wherever `cert` points, or read a device or a kernel file as a certificate.
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // (TOML's \u escapes could spell them otherwise)
  for (std::string_view bad : {"self_signed", "/dev", "/proc", "/sys", "\\u", "\\U"})
    if (text.find(bad) != std::string_view::npos) return -1;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    auto cfg = edge::load_config(path, std::chrono::steady_clock::now());
    (void)cfg->describe();
  } catch (const edge::ConfigError&) {
  }
  return 0;
}
