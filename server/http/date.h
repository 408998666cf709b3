// HTTP dates (RFC 9110 5.6.7): formatting IMF-fixdate, parsing the three accepted forms, and a
// per-thread cache so the Date header costs one comparison per request.
#pragma once
#include <ctime>
#include <optional>
#include <string_view>

namespace edge::http {

constexpr std::size_t kHttpDateLen = 29;  // "Sun, 06 Nov 1994 08:49:37 GMT"

// Writes exactly 29 characters to out.
void format_http_date(std::time_t t, char* out);
std::optional<std::time_t> parse_http_date(std::string_view s);

// The Date header value for the current second, refreshed at most once a second per thread.
class DateCache {
 public:
  std::string_view now();
  std::string_view at(std::time_t t);

 private:
  std::time_t second_ = -1;
  char buf_[kHttpDateLen + 1] = {};
};

}  // namespace edge::http
