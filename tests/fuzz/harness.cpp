// See harness.h.
#include "tests/fuzz/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "server/config.h"
#include "server/connection.h"
#include "server/log.h"
#include "server/worker.h"

namespace edge::fuzz {
namespace {

void write_file(const std::string& path, std::string_view content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << content;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fuzz harness: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

void set_nonblocking(int fd) {
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
}

}  // namespace

std::string_view Harness::good_reply() {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: public, "
         "max-age=60\r\nETag: \"u1\"\r\nContent-Length: 36\r\nConnection: close\r\n\r\n"
         "{\"card\":\"The Star\",\"reversed\":false}";
}

Harness& Harness::get() {
  static Harness* h = new Harness();  // never destroyed: the worker's loop lives to the end
  return *h;
}

Harness::Harness() {
  spdlog::set_level(spdlog::level::off);
  debug_ = std::getenv("EDGE_FUZZ_DEBUG") != nullptr;  // what edge answers, on stderr
  char tmpl[] = "/tmp/edge-fuzz-XXXXXX";
  if (!mkdtemp(tmpl)) die("mkdtemp");
  dir_ = tmpl;
  // The site: an SPA as Vite builds it.
  write_file(dir_ + "/public/index.html",
             "<!doctype html><html><head><script type=module src=/assets/app-3f2a1b.js>"
             "</script></head><body><div id=root></div></body></html>\n");
  std::string js;
  for (int i = 0; i < 400; ++i) js += "export const card" + std::to_string(i) + " = 'The Star';\n";
  write_file(dir_ + "/public/assets/app-3f2a1b.js", js);
  write_file(dir_ + "/public/assets/app-3f2a1b.js.br", "not really brotli");
  write_file(dir_ + "/public/robots.txt", "User-agent: *\n");

  // The upstream: a listening socket of ours.
  upstream_listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (upstream_listener_ < 0) die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(upstream_listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) die("bind");
  if (::listen(upstream_listener_, 64) < 0) die("listen");
  if (::getsockname(upstream_listener_, reinterpret_cast<sockaddr*>(&a), &len) < 0)
    die("getsockname");
  int port = ntohs(a.sin_port);

  std::string conf = R"([server]
workers = 1
header_timeout = "2s"
keepalive_timeout = "2s"
trusted_proxies = ["127.0.0.1"]
[log]
access = "/dev/null"
error = "stderr"
level = "off"
[cache]
size = "1m"
[[listen]]
address = "127.0.0.1:0"
h2c = true
[[upstream]]
name = "api"
servers = ["127.0.0.1:)" +
                     std::to_string(port) + R"("]
keepalive = 4
connect_timeout = "1s"
header_timeout = "2s"
read_timeout = "2s"
tries = 2
passive = { max_fails = 0 }  # a bad reply must not take the upstream out for the next inputs
[[route]]
path = "/health"
health = true
[[route]]
prefix = "/api/"
proxy = "api"
strip_prefix = "/api"
max_body = "64k"
rate_limit = { requests = 1000000, window = "1000m" }
cache = { ttl = "2h", grace = "1h" }
compress = { types = ["application/json"], min_size = 16 }
[[route]]
prefix = "/"
root = "public"
spa_fallback = "/index.html"
immutable = ["/assets/"]
)";
  write_file(dir_ + "/edge.toml", conf);
  std::shared_ptr<const Config> cfg;
  try {
    cfg = load_config(dir_ + "/edge.toml", std::chrono::steady_clock::now());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz harness: config: %s\n", e.what());
    std::abort();
  }
  worker_ = std::make_unique<Worker>(0, cfg, AccessLogSink::open(cfg->log), std::vector<int>{});
  worker_->start_handles();
  // A 1 ms tick, so a loop turn that waits never waits long (the harness's own sockets are not
  // in the loop: it services them between turns).
  static uv_timer_t tick;
  uv_timer_init(worker_->loop(), &tick);
  uv_timer_start(
      &tick, [](uv_timer_t*) {}, 1, 1);
}

void Harness::service_upstreams(std::string_view reply, bool& progress) {
  for (;;) {
    int fd = ::accept4(upstream_listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    ups_.push_back({fd, {}, false});
    progress = true;
  }
  char buf[16384];
  for (auto it = ups_.begin(); it != ups_.end();) {
    bool closed = false;
    for (;;) {
      ssize_t n = ::read(it->fd, buf, sizeof buf);
      if (n > 0) {
        progress = true;
        if (it->seen.size() < 65536) it->seen.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) closed = true;
      break;
    }
    if (!it->replied && it->seen.find("\r\n\r\n") != std::string::npos) {
      // The whole reply, then our side is done (a reply larger than the socket's buffer is cut:
      // an upstream closing mid-body, which edge must survive too).
      std::size_t off = 0;
      while (off < reply.size()) {
        ssize_t n = ::send(it->fd, reply.data() + off, reply.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
      }
      ::shutdown(it->fd, SHUT_WR);
      it->replied = true;
      progress = true;
    }
    if (closed) {
      ::close(it->fd);
      it = ups_.erase(it);
      progress = true;
    } else {
      ++it;
    }
  }
}

void Harness::exchange(std::string_view client, std::string_view upstream_reply) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
  set_nonblocking(sv[0]);
  set_nonblocking(sv[1]);
  sockaddr_storage peer{};
  auto* in = reinterpret_cast<sockaddr_in*>(&peer);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in->sin_port = htons(40000);
  std::size_t before = worker_->connections();
  auto* c = new Connection(*worker_, sv[1], peer, 0);  // freed by its close callback
  c->start();

  std::size_t off = 0;
  bool shut = false;
  char buf[65536];
  auto start = std::chrono::steady_clock::now();
  int idle = 0;
  for (;;) {
    bool progress = false;
    if (off < client.size()) {
      ssize_t n = ::send(sv[0], client.data() + off, client.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
        progress = true;
      } else if (n < 0 && errno != EAGAIN) {
        off = client.size();  // edge closed on us
      }
    }
    // All sent and edge quiet (it answered what it could and waits for more): the client's
    // end of input. (Shutting at once would look like a client leaving mid-request: edge drops
    // a proxied request then, as nginx does.)
    // (Quiet: a few loop turns with no byte moving and no work in libuv's thread pool.)
    bool pool_busy = worker_->loop()->active_reqs.count > 0;
    if (off == client.size() && !shut && idle > 8 && !pool_busy) {
      ::shutdown(sv[0], SHUT_WR);
      shut = true;
    }
    for (;;) {  // what edge answers is read and dropped (a client that reads)
      ssize_t n = ::read(sv[0], buf, sizeof buf);
      if (n <= 0) break;
      if (debug_) std::fwrite(buf, 1, static_cast<std::size_t>(n), stderr);
      progress = true;
    }
    service_upstreams(upstream_reply, progress);
    if (worker_->connections() == before) break;
    // Waiting (up to the 1 ms tick) only when nothing moves: for the thread pool, or for
    // edge's timers once the client is done.
    uv_run(worker_->loop(), idle > 8 && (pool_busy || shut) ? UV_RUN_ONCE : UV_RUN_NOWAIT);
    idle = progress ? 0 : idle + 1;
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(8)) {
      std::fprintf(stderr, "fuzz harness: edge kept the connection open for 8 s\n");
      std::abort();
    }
  }
  uv_run(worker_->loop(), UV_RUN_NOWAIT);  // close callbacks
  ::close(sv[0]);
  for (auto& u : ups_) ::close(u.fd);
  ups_.clear();
  worker_->access_log().flush();
}

}  // namespace edge::fuzz
