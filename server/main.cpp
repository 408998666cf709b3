// edge: command line, config loading, listeners, workers and signals.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "server/config.h"
#include "server/listener.h"
#include "server/log.h"
#include "server/worker.h"

namespace {

constexpr const char* kUsage =
    "usage: edge [--config FILE] [--check] [--version] [--help]\n"
    "\n"
    "  --config FILE  configuration to run (default: conf/edge.toml)\n"
    "  --check        validate the configuration, print its listeners and routes, and exit\n"
    "                 (exit status 1 and \"file:line: problem\" when it is not valid)\n"
    "  --version      print the version and exit\n"
    "  --help         print this help and exit\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop gracefully (in-flight requests finish within grace_period).\n";

struct Runtime {
  std::shared_ptr<const edge::Config> config;
  std::vector<std::unique_ptr<edge::Worker>> workers;
  bool stopping = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "conf/edge.toml";
  bool check = false;
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
  // Signals are caught before anything is announced, so a SIGTERM at any moment stops gracefully.
  uv_loop_t* loop = uv_default_loop();
  loop->data = &rt;
  uv_signal_t sigterm, sigint, sighup;
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
        // Certificates and keys reload in place; the rest of the configuration reload comes with
        // the operations issue.
        auto* r = static_cast<Runtime*>(s->loop->data);
        auto problems = edge::reload_certificates(*r->config);
        for (const auto& p : problems) spdlog::error("SIGHUP: {}", p);
        if (problems.empty()) spdlog::info("SIGHUP: certificates reloaded");
      },
      SIGHUP);
  for (unsigned w = 0; w < cfg->server.workers; ++w) {
    std::vector<int> mine;
    for (auto& per_listener : fds) mine.push_back(per_listener[w]);
    rt.workers.push_back(std::make_unique<edge::Worker>(w, cfg, sink, mine));
  }
  for (std::size_t i = 0; i < cfg->listeners.size(); ++i) {
    const auto& l = cfg->listeners[i];
    spdlog::info("listening on {}://{}:{}", l.tls ? "https" : "http",
                 l.ipv6 ? "[" + l.host + "]" : l.host, ports[i]);
  }
  spdlog::info("edge {} started: {} worker(s), config {}", EDGE_VERSION, cfg->server.workers,
               cfg->path);
  for (auto& w : rt.workers) w->start();

  uv_run(loop, UV_RUN_DEFAULT);
  for (auto& w : rt.workers) w->join();
  rt.workers.clear();
  spdlog::info("stopped");
  spdlog::shutdown();
  return 0;
}
