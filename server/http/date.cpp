// HTTP date formatting and parsing without locale or timezone state (thread-safe).
#include "server/http/date.h"

#include <cstring>

#include "server/http/token.h"

namespace edge::http {
namespace {

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void put2(char* p, int v) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
long days_from_civil(long y, unsigned m, unsigned d) {
  y -= m <= 2;
  const long era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<long>(doe) - 719468;
}

int month_index(std::string_view m) {
  for (int i = 0; i < 12; ++i)
    if (iequals(m, kMonths[i])) return i + 1;
  return 0;
}

bool parse_int(std::string_view s, int& out) {
  if (s.empty() || s.size() > 4) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

bool parse_time(std::string_view s, int& h, int& mi, int& sec) {
  if (s.size() != 8 || s[2] != ':' || s[5] != ':') return false;
  return parse_int(s.substr(0, 2), h) && parse_int(s.substr(3, 2), mi) &&
         parse_int(s.substr(6, 2), sec) && h < 24 && mi < 60 && sec < 61;
}

std::optional<std::time_t> make_time(int y, int mon, int d, int h, int mi, int s) {
  if (mon < 1 || d < 1 || d > 31 || y < 1970) return std::nullopt;
  long days = days_from_civil(y, static_cast<unsigned>(mon), static_cast<unsigned>(d));
  return static_cast<std::time_t>(days * 86400L + h * 3600L + mi * 60L + s);
}

}  // namespace

void format_http_date(std::time_t t, char* out) {
  long days = static_cast<long>(t / 86400);
  long secs = static_cast<long>(t % 86400);
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  // civil_from_days
  long z = days + 719468;
  const long era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long y = static_cast<long>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  int wday = static_cast<int>((days % 7 + 11) % 7);  // 1970-01-01 was a Thursday
  std::memcpy(out, kDays[wday], 3);
  out[3] = ',';
  out[4] = ' ';
  put2(out + 5, static_cast<int>(d));
  out[7] = ' ';
  std::memcpy(out + 8, kMonths[m - 1], 3);
  out[11] = ' ';
  put2(out + 12, static_cast<int>(y / 100));
  put2(out + 14, static_cast<int>(y % 100));
  out[16] = ' ';
  put2(out + 17, static_cast<int>(secs / 3600));
  out[19] = ':';
  put2(out + 20, static_cast<int>(secs / 60 % 60));
  out[22] = ':';
  put2(out + 23, static_cast<int>(secs % 60));
  std::memcpy(out + 25, " GMT", 4);
}

std::optional<std::time_t> parse_http_date(std::string_view s) {
  int d = 0, y = 0, h = 0, mi = 0, sec = 0;
  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
  if (s.size() == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
      s.substr(25) == " GMT") {
    int mon = month_index(s.substr(8, 3));
    if (!parse_int(s.substr(5, 2), d) || !parse_int(s.substr(12, 4), y) ||
        !parse_time(s.substr(17, 8), h, mi, sec))
      return std::nullopt;
    return make_time(y, mon, d, h, mi, sec);
  }
  // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
  std::size_t comma = s.find(", ");
  if (comma != std::string_view::npos && comma >= 6 && s.size() == comma + 24 &&
      s.substr(s.size() - 4) == " GMT") {
    std::string_view r = s.substr(comma + 2);
    if (r[2] != '-' || r[6] != '-' || r[9] != ' ') return std::nullopt;
    int mon = month_index(r.substr(3, 3));
    if (!parse_int(r.substr(0, 2), d) || !parse_int(r.substr(7, 2), y) ||
        !parse_time(r.substr(10, 8), h, mi, sec))
      return std::nullopt;
    y += y < 70 ? 2000 : 1900;
    return make_time(y, mon, d, h, mi, sec);
  }
  // asctime: Sun Nov  6 08:49:37 1994
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
    int mon = month_index(s.substr(4, 3));
    std::string_view ds = s.substr(8, 2);
    if (ds[0] == ' ') ds.remove_prefix(1);
    if (!parse_int(ds, d) || !parse_time(s.substr(11, 8), h, mi, sec) ||
        !parse_int(s.substr(20, 4), y))
      return std::nullopt;
    return make_time(y, mon, d, h, mi, sec);
  }
  return std::nullopt;
}

std::string_view DateCache::now() {
  return at(std::time(nullptr));
}

std::string_view DateCache::at(std::time_t t) {
  if (t != second_) {
    second_ = t;
    format_http_date(t, buf_);
  }
  return {buf_, kHttpDateLen};
}

}  // namespace edge::http
