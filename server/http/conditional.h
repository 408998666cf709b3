// Conditional requests (RFC 9110 13): entity-tag comparison and the evaluation order of
// If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since and If-Range.
#pragma once
#include <ctime>
#include <string_view>

#include "server/http/headers.h"
#include "server/http/method.h"

namespace edge::http {

enum class Precondition { kProceed, kNotModified, kFailed };

// Whether any tag of an If-None-Match / If-Match list matches `etag` (weak or strong comparison).
bool etag_list_matches(std::string_view list, std::string_view etag, bool strong);

// Evaluates the preconditions of a request for a representation with these validators.
Precondition evaluate_preconditions(const HeaderList& headers, Method method, std::string_view etag,
                                    std::time_t last_modified);

// Whether a Range request may be honoured given If-Range (true when If-Range is absent).
bool if_range_allows(std::string_view if_range, std::string_view etag, std::time_t last_modified);

}  // namespace edge::http
