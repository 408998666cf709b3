// edge: command line, config loading, listeners, workers and signals.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <uv.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/config.h"
#include "server/listener.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/worker.h"

namespace {

constexpr const char* kUsage =
    "usage: edge [--config FILE] [--check | --reload] [--version] [--help]\n"
    "\n"
    "  --config FILE  configuration to run (default: conf/edge.toml)\n"
    "  --check        validate the configuration, print its listeners and routes, and exit\n"
    "                 (exit status 1 and \"file:line: problem\" when it is not valid)\n"
    "  --reload       validate the configuration, then tell the edge running it to reload\n"
    "                 (SIGHUP to the pid in its [server] pid_file)\n"
    "  --version      print the version and exit\n"
    "  --help         print this help and exit\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop gracefully (in-flight requests finish within grace_period);\n"
    "SIGHUP reloads the configuration (a bad one is refused and the old one keeps serving);\n"
    "SIGUSR1 reopens the log files (after logrotate moved them).\n";

struct Runtime {
  std::shared_ptr<const edge::Config> config;
  std::vector<std::unique_ptr<edge::Worker>> workers;
  std::shared_ptr<edge::AccessLogSink> sink;
  // The listening sockets of the config now serving: [listener][worker], in its order.
  std::vector<std::vector<int>> fds;
  bool stopping = false;
};

// A listener's identity across reloads: its metrics key (admin or not, its address, and which
// of the listeners with that address it is: two "127.0.0.1:0" are two listeners).
std::vector<std::string> listener_keys(const edge::Config& cfg) {
  std::vector<std::string> keys;
  for (const auto& l : cfg.listeners) keys.push_back(l.stats->key);
  return keys;
}

void announce(const edge::ListenConfig& l, int port) {
  std::string bound = (l.ipv6 ? "[" + l.host + "]" : l.host) + ":" + std::to_string(port);
  edge::metrics::registry().name(l.stats, bound);
  spdlog::info("{}listening on {}://{}:{}", l.admin ? "admin " : "", l.tls ? "https" : "http",
               l.ipv6 ? "[" + l.host + "]" : l.host, port);
}

void reload(Runtime& r) {
  std::vector<std::string> warnings;
  std::shared_ptr<const edge::Config> next;
  try {
    next = edge::load_config(r.config->path, r.config->started, r.config.get(), &warnings);
  } catch (const std::exception& e) {
    spdlog::error("SIGHUP: configuration not reloaded: {}{}",
                  dynamic_cast<const edge::ConfigError*>(&e) ? "" : r.config->path + ": ",
                  e.what());
    edge::metrics::registry().reload_done(false);
    return;
  }
  // Listeners that stay keep their sockets; new ones are opened now (a port in use fails the
  // reload, nothing changes).
  auto old_keys = listener_keys(*r.config);
  auto new_keys = listener_keys(*next);
  std::vector<std::vector<int>> fds(next->listeners.size());
  std::vector<edge::ListenConfig> fresh;
  std::vector<std::size_t> fresh_at;
  for (std::size_t i = 0; i < new_keys.size(); ++i) {
    auto it = std::find(old_keys.begin(), old_keys.end(), new_keys[i]);
    if (it != old_keys.end()) {
      fds[i] = r.fds[static_cast<std::size_t>(it - old_keys.begin())];
    } else {
      fresh.push_back(next->listeners[i]);
      fresh_at.push_back(i);
    }
  }
  std::vector<int> ports;
  try {
    auto opened = edge::open_listeners(fresh, next->server.workers, ports);
    for (std::size_t k = 0; k < fresh_at.size(); ++k) fds[fresh_at[k]] = std::move(opened[k]);
  } catch (const std::exception& e) {
    spdlog::error("SIGHUP: configuration not reloaded: {}", e.what());
    edge::metrics::registry().reload_done(false);
    return;
  }
  for (const auto& w : warnings) spdlog::warn("SIGHUP: {}", w);
  spdlog::set_level(spdlog::level::from_str(next->log.level));
  for (std::size_t k = 0; k < fresh_at.size(); ++k)
    announce(next->listeners[fresh_at[k]], ports[k]);
  for (std::size_t w = 0; w < r.workers.size(); ++w) {
    std::vector<int> mine;
    for (auto& per_listener : fds) mine.push_back(per_listener[w]);
    r.workers[w]->reload(next, std::move(mine));
  }
  r.fds = std::move(fds);
  r.config = next;
  // Logged once every worker took it (a request read after this line gets the new config):
  // each applies it on its own loop, within a loop turn.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (const auto& w : r.workers)
    while (w->applied_generation() < next->generation &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  edge::metrics::registry().reload_done(true);
  spdlog::info("SIGHUP: configuration reloaded (generation {})", next->generation);
}

// edge --reload: the running edge's pid from the pid file, then SIGHUP.
int send_reload(const edge::Config& cfg) {
  if (cfg.server.pid_file.empty()) {
    std::fprintf(stderr, "edge: %s has no [server] pid_file: cannot find the running edge\n",
                 cfg.path.c_str());
    return 1;
  }
  std::ifstream in(cfg.server.pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 1) {
    std::fprintf(stderr, "edge: cannot read a pid from %s (is edge running?)\n",
                 cfg.server.pid_file.c_str());
    return 1;
  }
  if (::kill(static_cast<pid_t>(pid), SIGHUP) != 0) {
    std::fprintf(stderr, "edge: cannot signal pid %ld from %s: %s\n", pid,
                 cfg.server.pid_file.c_str(), std::strerror(errno));
    return 1;
  }
  std::printf("edge: reload signalled to pid %ld\n", pid);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "conf/edge.toml";
  bool check = false;
  bool reload_running = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" || a == "-c") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "edge: --config needs a file\n%s", kUsage);
        return 2;
      }
      config_path = argv[++i];
    } else if (a.starts_with("--config=")) {
      config_path = a.substr(9);
    } else if (a == "--check" || a == "-t") {
      check = true;
    } else if (a == "--reload" || a == "-s") {
      reload_running = true;
    } else if (a == "--version" || a == "-v") {
      std::printf("edge %s\n", EDGE_VERSION);
      return 0;
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else {
      std::fprintf(stderr, "edge: unknown argument \"%s\"\n%s", a.c_str(), kUsage);
      return 2;
    }
  }

  // Every descriptor the system allows us (as Go servers and Caddy do; nginx asks for
  // worker_rlimit_nofile): the soft limit up to the hard one. [server] max_connections "auto"
  // is taken from it.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  auto started = std::chrono::steady_clock::now();
  std::shared_ptr<const edge::Config> cfg;
  try {
    cfg = edge::load_config(config_path, started);
  } catch (const edge::ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // a loader bug must still not take a running setup down
    std::fprintf(stderr, "%s: %s\n", config_path.c_str(), e.what());
    return 1;
  }
  if (check) {
    std::printf("%s", cfg->describe().c_str());
    return 0;
  }
  if (reload_running) return send_reload(*cfg);

  std::shared_ptr<edge::AccessLogSink> sink;
  std::vector<std::vector<int>> fds;
  std::vector<int> ports;
  try {
    edge::init_error_log(cfg->log);
    sink = edge::AccessLogSink::open(cfg->log);
    fds = edge::open_listeners(cfg->listeners, cfg->server.workers, ports);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edge: %s\n", e.what());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);

  Runtime rt;
  rt.config = cfg;
  rt.sink = sink;
  rt.fds = fds;
  if (!cfg->server.pid_file.empty()) {
    std::ofstream pf(cfg->server.pid_file, std::ios::trunc);
    pf << ::getpid() << "\n";
    if (!pf.flush()) {
      std::fprintf(stderr, "edge: cannot write pid file %s\n", cfg->server.pid_file.c_str());
      return 1;
    }
  }
  // Signals are caught before anything is announced, so a SIGTERM at any moment stops gracefully.
  uv_loop_t* loop = uv_default_loop();
  loop->data = &rt;
  uv_signal_t sigterm, sigint, sighup, sigusr1;
  auto on_stop = [](uv_signal_t* s, int signum) {
    auto* r = static_cast<Runtime*>(s->loop->data);
    if (r->stopping) return;
    r->stopping = true;
    spdlog::info("{}: stopping gracefully", signum == SIGINT ? "SIGINT" : "SIGTERM");
    for (auto& w : r->workers) w->request_stop();
    uv_stop(s->loop);
  };
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigterm, on_stop, SIGTERM);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, on_stop, SIGINT);
  uv_signal_init(loop, &sighup);
  uv_signal_start(
      &sighup,
      [](uv_signal_t* s, int) {
        auto* r = static_cast<Runtime*>(s->loop->data);
        if (!r->stopping) reload(*r);
      },
      SIGHUP);
  uv_signal_init(loop, &sigusr1);
  uv_signal_start(
      &sigusr1,
      [](uv_signal_t* s, int) {
        auto* r = static_cast<Runtime*>(s->loop->data);
        auto problems = edge::reopen_logs(r->config->log, r->sink.get());
        for (const auto& p : problems) spdlog::error("SIGUSR1: {}", p);
        if (problems.empty()) spdlog::info("SIGUSR1: logs reopened");
      },
      SIGUSR1);
  for (unsigned w = 0; w < cfg->server.workers; ++w) {
    std::vector<int> mine;
    for (auto& per_listener : fds) mine.push_back(per_listener[w]);
    rt.workers.push_back(std::make_unique<edge::Worker>(w, cfg, sink, mine));
  }
  for (std::size_t i = 0; i < cfg->listeners.size(); ++i) announce(cfg->listeners[i], ports[i]);
  spdlog::info("edge {} started: {} worker(s), config {}", EDGE_VERSION, cfg->server.workers,
               cfg->path);
  for (auto& w : rt.workers) w->start();

  uv_run(loop, UV_RUN_DEFAULT);
  for (auto& w : rt.workers) w->join();
  rt.workers.clear();
  if (!rt.config->server.pid_file.empty()) ::unlink(rt.config->server.pid_file.c_str());
  spdlog::info("stopped");
  spdlog::shutdown();
  return 0;
}
