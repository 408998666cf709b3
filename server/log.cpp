// Logs: spdlog for the error log; the access log is hand-serialised JSON into a reused buffer
// (a JSON library would allocate per line on the request path).
#include "server/log.h"

#include <fcntl.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>
#include <stdexcept>

namespace edge {

namespace {

// The error log file: formatted lines written to a descriptor that reopen_logs() may replace.
class FdSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  ~FdSink() override { ::close(fd_); }
  int fd() const { return fd_; }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::size_t off = 0;
    while (off < buf.size()) {
      ssize_t w = ::write(fd_, buf.data() + off, buf.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += static_cast<std::size_t>(w);
    }
  }
  void flush_() override {}

 private:
  int fd_;
};

std::shared_ptr<FdSink> g_error_file;

int open_append(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

}  // namespace

std::vector<std::string> reopen_logs(const LogConfig& cfg, AccessLogSink* access) {
  std::vector<std::string> problems;
  auto reopen = [&](const std::string& path, int fd) {
    int nfd = open_append(path);
    if (nfd < 0) {
      problems.push_back("cannot reopen " + path + ": " + std::strerror(errno));
      return;
    }
    if (::dup3(nfd, fd, O_CLOEXEC) < 0)
      problems.push_back("cannot reopen " + path + ": " + std::strerror(errno));
    ::close(nfd);
  };
  if (g_error_file) reopen(cfg.error, g_error_file->fd());
  if (access && access->owned() && access->fd() >= 0) reopen(cfg.access, access->fd());
  return problems;
}

void init_error_log(const LogConfig& cfg) {
  std::shared_ptr<spdlog::logger> logger;
  if (cfg.error == "stderr") {
    logger =
        std::make_shared<spdlog::logger>("edge", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  } else if (cfg.error == "stdout") {
    logger =
        std::make_shared<spdlog::logger>("edge", std::make_shared<spdlog::sinks::stdout_sink_mt>());
  } else {
    int fd = open_append(cfg.error);
    if (fd < 0)
      throw std::runtime_error("cannot open error log " + cfg.error + ": " + std::strerror(errno));
    g_error_file = std::make_shared<FdSink>(fd);
    logger = std::make_shared<spdlog::logger>("edge", g_error_file);
  }
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z [%l] %v");
  logger->set_level(spdlog::level::from_str(cfg.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

std::shared_ptr<AccessLogSink> AccessLogSink::open(const LogConfig& cfg) {
  auto s = std::make_shared<AccessLogSink>();
  if (cfg.access == "off") return s;
  if (cfg.access == "stdout") {
    s->fd_ = STDOUT_FILENO;
  } else if (cfg.access == "stderr") {
    s->fd_ = STDERR_FILENO;
  } else {
    s->fd_ = open_append(cfg.access);
    if (s->fd_ < 0)
      throw std::runtime_error("cannot open access log " + cfg.access + ": " +
                               std::strerror(errno));
    s->owned_ = true;
  }
  return s;
}

AccessLogSink::~AccessLogSink() {
  if (owned_ && fd_ >= 0) ::close(fd_);
}

void json_escape(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f || c >= 0x80) {
          // Bytes outside printable ASCII are escaped one by one: the log stays valid JSON
          // whatever a client sends.
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

void AccessLog::record(const http::Exchange& ex, std::string_view route, int status,
                       std::uint64_t bytes, double duration_ms, http::metrics::CacheResult cache) {
  if (!enabled()) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char head[64];
  int n = std::snprintf(head, sizeof head, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                        tm.tm_sec, ms);
  buf_.append(head, static_cast<std::size_t>(n));
  buf_ += ",\"request_id\":\"";
  json_escape(buf_, ex.req.request_id);
  buf_ += "\",\"client_ip\":\"";
  json_escape(buf_, ex.req.client_ip);
  buf_ += "\",\"method\":\"";
  json_escape(buf_, ex.req.method_name);
  buf_ += "\",\"protocol\":\"";
  buf_ += ex.req.h2 ? "HTTP/2" : (ex.req.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
  buf_ += "\",\"path\":\"";
  json_escape(buf_, ex.req.raw_path);
  buf_ += "\",\"query\":\"";
  json_escape(buf_, ex.req.query);
  char num[64];
  n = std::snprintf(num, sizeof num, "\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f", status,
                    static_cast<unsigned long long>(bytes), duration_ms);
  buf_.append(num, static_cast<std::size_t>(n));
  buf_ += ",\"user_agent\":\"";
  json_escape(buf_, ex.req.headers.get("User-Agent"));
  buf_ += "\",\"referer\":\"";
  json_escape(buf_, ex.req.headers.get("Referer"));
  buf_ += "\",\"route\":\"";
  json_escape(buf_, route);
  buf_ += "\",\"upstream\":\"";
  if (ex.upstream) json_escape(buf_, ex.upstream->address);
  if (ex.upstream_us >= 0) {
    n = std::snprintf(num, sizeof num, "\",\"upstream_ms\":%.3f",
                      static_cast<double>(ex.upstream_us) / 1000.0);
    buf_.append(num, static_cast<std::size_t>(n));
  } else {
    buf_ += "\",\"upstream_ms\":null";
  }
  buf_ += ",\"cache\":\"";
  buf_ += http::metrics::kCacheResultNames[static_cast<int>(cache)];
  static constexpr const char* kLimit[] = {"", "allowed", "limited"};
  buf_ += "\",\"rate_limit\":\"";
  buf_ += kLimit[ex.limit_outcome < 3 ? ex.limit_outcome : 0];
  buf_ += "\"}\n";
  if (buf_.size() > 48 * 1024) flush();
}

void AccessLog::flush() {
  if (buf_.empty() || !enabled()) return;
  std::size_t off = 0;
  while (off < buf_.size()) {
    ssize_t w = ::write(sink_->fd(), buf_.data() + off, buf_.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;  // a full disk or a closed pipe loses log lines, never requests
    off += static_cast<std::size_t>(w);
  }
  buf_.clear();
}

}  // namespace edge
