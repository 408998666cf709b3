// The MIME table: file extension -> Content-Type (with charset=utf-8 for text).
#pragma once
#include <string_view>

namespace edge::http {

// Content-Type for an extension (case-insensitive, without the dot); application/octet-stream
// when unknown.
std::string_view mime_type(std::string_view extension);

// Whether a type is already compressed (images, fonts, archives): never worth recompressing.
bool is_precompressed_type(std::string_view content_type);

}  // namespace edge::http
