// The fuzz harness for the byte paths that need a running edge: one Worker whose loop the harness
// drives, its config loaded from a real TOML file (a static SPA, a cached and rate-limited proxy
// route, h2c on), a Connection per input over a socketpair, and an upstream socket of the
// harness's own. Everything is edge's own code: the HTTP/1.1 codec, the HTTP/2 session, the
// request stage, the handlers, the proxy session and the cache; only the sockets are stand-ins.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace edge {
class Worker;
}

namespace edge::fuzz {

class Harness {
 public:
  static Harness& get();  // built once per process (the first input pays for it)

  // Writes `client` on a new connection and closes the write side; answers every request that
  // reaches the upstream with `upstream_reply` (then closes that upstream connection). Returns
  // when edge closed the connection. Aborts when it does not within a few seconds: a hang.
  void exchange(std::string_view client, std::string_view upstream_reply);

  // A reply a well-behaved upstream gives (cacheable JSON, Connection: close).
  static std::string_view good_reply();

 private:
  Harness();
  void service_upstreams(std::string_view reply, bool& progress);

  std::string dir_;
  bool debug_ = false;
  int upstream_listener_ = -1;
  struct Up {
    int fd;
    std::string seen;  // what edge sent (drained; the head is looked for)
    bool replied;
  };
  std::vector<Up> ups_;
  std::unique_ptr<Worker> worker_;
};

}  // namespace edge::fuzz
