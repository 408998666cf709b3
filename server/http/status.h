// Status codes and their reason phrases.
#pragma once
#include <string_view>

namespace edge::http {

std::string_view reason_phrase(int status);

}  // namespace edge::http
