// Route matching: prefix and exact compare bytes of the normalised path; regex routes run
// std::regex only when reached.
#include "routes/route_table.h"

#include "server/http/path.h"
#include "server/http/token.h"

namespace edge::routes {

bool host_matches(const std::vector<std::string>& hosts, std::string_view host) {
  if (hosts.empty()) return true;
  for (const std::string& h : hosts) {
    if (h.starts_with("*.")) {
      std::string_view suffix = std::string_view(h).substr(1);  // ".example.com"
      if (host.size() > suffix.size() &&
          http::iequals(host.substr(host.size() - suffix.size()), suffix))
        return true;
    } else if (http::iequals(host, h)) {
      return true;
    }
  }
  return false;
}

void expand_captures(std::string_view tmpl, const std::array<std::string_view, 10>& captures,
                     std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '$' && i + 1 < tmpl.size() && tmpl[i + 1] >= '0' && tmpl[i + 1] <= '9') {
      out.append(captures[static_cast<std::size_t>(tmpl[i + 1] - '0')]);
      ++i;
    } else {
      out.push_back(tmpl[i]);
    }
  }
}

std::string Route::describe() const {
  std::string s;
  switch (match) {
    case Match::kAll:
      s.append("*");
      break;
    case Match::kExact:
      s.append("path ").append(pattern);
      break;
    case Match::kPrefix:
      s.append("prefix ").append(pattern);
      break;
    case Match::kRegex:
      s.append("regex ").append(pattern);
      break;
  }
  if (!hosts.empty()) {
    s.append(" host");
    for (const auto& h : hosts) s.append(" ").append(h);
  }
  if (rewrite) s.append(" rewrite ").append(*rewrite);
  s += " -> ";
  s += handler ? handler->kind() : "?";
  return s;
}

const Route* RouteTable::match(http::Exchange& ex, bool& bad_rewrite) const {
  bad_rewrite = false;
  std::string_view path = ex.req.path;
  for (const Route& r : routes_) {
    if (!host_matches(r.hosts, ex.req.host)) continue;
    bool ok = false;
    switch (r.match) {
      case Route::Match::kAll:
        ok = true;
        break;
      case Route::Match::kExact:
        ok = path == r.pattern;
        break;
      case Route::Match::kPrefix:
        ok = path.starts_with(r.pattern);
        break;
      case Route::Match::kRegex: {
        std::match_results<std::string_view::const_iterator> m;
        if (std::regex_search(path.begin(), path.end(), m, *r.regex)) {
          ok = true;
          for (std::size_t i = 0; i < ex.captures.size(); ++i) {
            ex.captures[i] =
                i < m.size() && m[i].matched
                    ? std::string_view(&*m[i].first, static_cast<std::size_t>(m[i].length()))
                    : std::string_view{};
          }
        }
        break;
      }
    }
    if (!ok) continue;
    if (r.match != Route::Match::kRegex) {
      ex.captures.fill({});
      ex.captures[0] = path;
    }
    if (r.rewrite) {
      expand_captures(*r.rewrite, ex.captures, ex.rewrite_buf);
      if (http::normalize_path(ex.rewrite_buf, ex.scratch2, /*decode=*/false) !=
          http::PathError::kOk) {
        bad_rewrite = true;
        return &r;
      }
      ex.path_buf.swap(
          ex.scratch2);  // captures keep pointing into scratch2, untouched until next request
      ex.req.path = ex.path_buf;
    }
    return &r;
  }
  return nullptr;
}

}  // namespace edge::routes
