// Path normalisation in one pass over the decoded bytes.
#include "server/http/path.h"

namespace edge::http {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void split_target(std::string_view target, std::string_view& path, std::string_view& query) {
  std::size_t q = target.find('?');
  if (q == std::string_view::npos) {
    path = target;
    query = {};
  } else {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  std::size_t frag = path.find('#');
  if (frag != std::string_view::npos) path = path.substr(0, frag);
}

PathError normalize_path(std::string_view raw, std::string& out, bool decode) {
  out.clear();
  if (raw.empty() || raw[0] != '/') return PathError::kNotOrigin;
  // Decode segment by segment; `seg_start` is where the current segment begins in `out`.
  out.push_back('/');
  std::size_t seg_start = 1;
  auto finish_segment = [&](bool at_end) -> bool {
    std::string_view seg(out.data() + seg_start, out.size() - seg_start);
    if (seg == ".") {
      out.resize(seg_start);
    } else if (seg == "..") {
      if (seg_start <= 1) return false;  // above the root
      out.resize(seg_start - 1);         // drop "/.." and the slash before it
      std::size_t prev = out.rfind('/');
      out.resize(prev + 1);
    } else if (!at_end) {
      if (!seg.empty()) out.push_back('/');
    }
    seg_start = out.size();
    return true;
  };
  for (std::size_t i = 1; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '%' && decode) {
      if (i + 2 >= raw.size()) return PathError::kBadEncoding;
      int hi = hex_value(raw[i + 1]), lo = hex_value(raw[i + 2]);
      if (hi < 0 || lo < 0) return PathError::kBadEncoding;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
      if (c == '\0') return PathError::kNulByte;
    } else if (c == '\0') {
      return PathError::kNulByte;
    }
    if (c == '/') {
      if (out.size() == seg_start) continue;  // merge repeated slashes
      if (!finish_segment(false)) return PathError::kAboveRoot;
      continue;
    }
    out.push_back(c);
  }
  if (!finish_segment(true)) return PathError::kAboveRoot;
  return PathError::kOk;
}

std::string_view path_extension(std::string_view path) {
  std::size_t slash = path.rfind('/');
  std::string_view last = slash == std::string_view::npos ? path : path.substr(slash + 1);
  std::size_t dot = last.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == last.size()) return {};
  return last.substr(dot + 1);
}

}  // namespace edge::http
