// The error log (spdlog) and the JSON access log (one line per request, buffered per worker and
// written once per loop iteration).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/config.h"
#include "server/http/exchange.h"
#include "server/http/metrics.h"

namespace edge {

class AccessLogSink;

// Sets up the process-wide error log; throws std::runtime_error when the file cannot be opened.
// A file is written through a descriptor of ours, so reopen_logs() can swap it in place.
void init_error_log(const LogConfig& cfg);
// SIGUSR1 (logrotate): the error and access log files are opened again by name and take the place
// of the old descriptors (dup2: writers never see a closed descriptor). Returns problems, if any.
std::vector<std::string> reopen_logs(const LogConfig& cfg, AccessLogSink* access);

// The access-log destination shared by workers (a descriptor opened O_APPEND, or none).
class AccessLogSink {
 public:
  static std::shared_ptr<AccessLogSink> open(const LogConfig& cfg);  // throws on a bad path
  ~AccessLogSink();
  int fd() const { return fd_; }
  bool owned() const { return owned_; }

 private:
  int fd_ = -1;
  bool owned_ = false;
};

// A worker's buffer of access-log lines.
class AccessLog {
 public:
  explicit AccessLog(std::shared_ptr<AccessLogSink> sink) : sink_(std::move(sink)) {
    buf_.reserve(64 * 1024);
  }
  bool enabled() const { return sink_ && sink_->fd() >= 0; }
  void record(const http::Exchange& ex, std::string_view route, int status, std::uint64_t bytes,
              double duration_ms, http::metrics::CacheResult cache);
  void flush();

 private:
  std::shared_ptr<AccessLogSink> sink_;
  std::string buf_;
};

// Appends s to out as the inside of a JSON string.
void json_escape(std::string& out, std::string_view s);

}  // namespace edge
