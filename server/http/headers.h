// Header fields as views: request headers point into the connection's read buffer, response
// headers into storage that outlives the write (static strings, the file cache, the route).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "server/http/token.h"

namespace edge::http {

struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// A parser callback's piece of a name or value appended to the view collected so far (the pieces
// are contiguous in the buffer being parsed).
inline void extend_view(std::string_view& v, const char* at, std::size_t len) {
  if (v.empty())
    v = std::string_view(at, len);
  else
    v = std::string_view(v.data(), static_cast<std::size_t>(at + len - v.data()));
}

class HeaderList {
 public:
  void clear() { fields_.clear(); }
  void reserve(std::size_t n) { fields_.reserve(n); }
  void add(std::string_view name, std::string_view value) { fields_.push_back({name, value}); }
  std::size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  const HeaderField& operator[](std::size_t i) const { return fields_[i]; }
  HeaderField& operator[](std::size_t i) { return fields_[i]; }
  auto begin() const { return fields_.begin(); }
  auto end() const { return fields_.end(); }

  // First field with this name (case-insensitive), or an empty view with found=false.
  const HeaderField* find(std::string_view name) const {
    for (const auto& f : fields_)
      if (iequals(f.name, name)) return &f;
    return nullptr;
  }
  std::string_view get(std::string_view name) const {
    const HeaderField* f = find(name);
    return f ? f->value : std::string_view{};
  }
  // A list-valued field (RFC 9110 5.3): all its lines joined with ", ". One line is returned as
  // it is; several are joined into `scratch`.
  std::string_view list(std::string_view name, std::string& scratch) const {
    const HeaderField* first = nullptr;
    bool joined = false;
    for (const auto& f : fields_) {
      if (!iequals(f.name, name)) continue;
      if (!first) {
        first = &f;
      } else {
        if (!joined) scratch.assign(first->value);
        joined = true;
        scratch.append(", ").append(f.value);
      }
    }
    if (joined) return scratch;
    return first ? first->value : std::string_view{};
  }
  // Whether a list-valued field (any of its lines) holds `token` (case-insensitive), e.g.
  // has_token("Connection", "upgrade").
  bool has_token(std::string_view name, std::string_view token) const {
    for (const auto& f : fields_) {
      if (!iequals(f.name, name)) continue;
      bool found = false;
      for_each_list_element(f.value,
                            [&](std::string_view el) { found = found || iequals(el, token); });
      if (found) return true;
    }
    return false;
  }
  void remove(std::string_view name) {
    std::erase_if(fields_, [&](const HeaderField& f) { return iequals(f.name, name); });
  }

 private:
  std::vector<HeaderField> fields_;
};

}  // namespace edge::http
