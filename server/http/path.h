// Request-target path normalisation: percent-decoding and dot-segment removal (RFC 3986 5.2.4)
// before any lookup, so no encoding trick reaches outside a root.
#pragma once
#include <string>
#include <string_view>

namespace edge::http {

enum class PathError { kOk, kNotOrigin, kBadEncoding, kNulByte, kAboveRoot };

// Normalises the path part of an origin-form target ("/a/%2e%2e/b" -> "/b"). Repeated slashes
// are merged. Fails on a path that is not absolute, bad %-escapes, NUL bytes, or ".." above "/".
// `out` is cleared first; its capacity is reused (no allocation once warm).
// With decode=false only dot segments and repeated slashes are handled (for rewritten paths,
// which are decoded already).
PathError normalize_path(std::string_view raw, std::string& out, bool decode = true);

// Splits a request target into path and query ("/a?b" -> "/a", "b").
void split_target(std::string_view target, std::string_view& path, std::string_view& query);

// The extension of the last path segment ("" if none): "/a/b.min.js" -> "js".
std::string_view path_extension(std::string_view path);

}  // namespace edge::http
