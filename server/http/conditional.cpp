// Preconditions in the order RFC 9110 13.2.2 gives.
#include "server/http/conditional.h"

#include "server/http/date.h"

namespace edge::http {
namespace {

std::string_view opaque(std::string_view tag, bool& weak) {
  weak = tag.starts_with("W/");
  if (weak) tag.remove_prefix(2);
  return tag;
}

}  // namespace

bool etag_list_matches(std::string_view list, std::string_view etag, bool strong) {
  if (trim_ows(list) == "*") return !etag.empty();
  bool etag_weak = false;
  std::string_view mine = opaque(etag, etag_weak);
  bool found = false;
  // Entity tags may contain commas inside quotes; split on commas outside quotes.
  std::size_t i = 0;
  while (i < list.size() && !found) {
    while (i < list.size() && (list[i] == ' ' || list[i] == '\t' || list[i] == ',')) ++i;
    std::size_t start = i;
    if (i < list.size() && list[i] == 'W' && i + 1 < list.size() && list[i + 1] == '/') i += 2;
    if (i < list.size() && list[i] == '"') {
      std::size_t close = list.find('"', i + 1);
      if (close == std::string_view::npos) return false;
      i = close + 1;
    } else {
      while (i < list.size() && list[i] != ',') ++i;  // malformed element: skip it
      continue;
    }
    bool weak = false;
    std::string_view theirs = opaque(list.substr(start, i - start), weak);
    if (strong && (weak || etag_weak)) continue;
    if (theirs == mine) found = true;
  }
  return found;
}

Precondition evaluate_preconditions(const HeaderList& headers, Method method, std::string_view etag,
                                    std::time_t last_modified) {
  const bool safe = method == Method::kGet || method == Method::kHead;
  if (const HeaderField* f = headers.find("If-Match")) {
    if (!etag_list_matches(f->value, etag, true)) return Precondition::kFailed;
  } else if (const HeaderField* u = headers.find("If-Unmodified-Since")) {
    auto t = parse_http_date(trim_ows(u->value));
    if (t && last_modified > *t) return Precondition::kFailed;
  }
  if (const HeaderField* f = headers.find("If-None-Match")) {
    if (etag_list_matches(f->value, etag, false))
      return safe ? Precondition::kNotModified : Precondition::kFailed;
  } else if (safe) {
    if (const HeaderField* m = headers.find("If-Modified-Since")) {
      auto t = parse_http_date(trim_ows(m->value));
      if (t && last_modified <= *t) return Precondition::kNotModified;
    }
  }
  return Precondition::kProceed;
}

bool if_range_allows(std::string_view if_range, std::string_view etag, std::time_t last_modified) {
  if_range = trim_ows(if_range);
  if (if_range.empty()) return true;
  if (if_range.front() == '"' || if_range.starts_with("W/")) {
    if (if_range.starts_with("W/") || etag.starts_with("W/")) return false;  // strong only
    return if_range == etag;
  }
  auto t = parse_http_date(if_range);
  return t && *t == last_modified;
}

}  // namespace edge::http
